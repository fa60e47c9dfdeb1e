// CHECK: the engine's one way to abort the process. It guards invariants that
// no peer, no timing and no configuration can reach: each use says beside it
// why that holds. Anything a peer, a node, the kernel or a setting can cause
// (bad bytes, a failed write, a failed epoll_ctl, memory running out for one
// link) closes that one link with a reason instead.

#ifndef BEAMGATE_CHECK_H
#define BEAMGATE_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond, msg)                                                        \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "beamgate fastpath: invariant failed: %s (%s:%d)\n", msg, \
              __FILE__, __LINE__);                                              \
      abort();                                                                  \
    }                                                                           \
  } while (0)

#endif
