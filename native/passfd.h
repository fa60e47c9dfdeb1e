// Descriptor passing over a Unix stream socket (SCM_RIGHTS), for a take-over:
// the running gateway hands its listening sockets and its links' sockets to
// the process replacing it. Node passes handles only to its own children.

#ifndef BEAMGATE_PASSFD_H
#define BEAMGATE_PASSFD_H

#include <stdbool.h>

#include <node_api.h>

// The most descriptors one message carries (the kernel's SCM_MAX_FD is 253).
#define PASSFD_MAX_FDS 250

// Defines exports.passfd: connect, dup, peer, send, recv (see passfd.c).
bool passfd_define(napi_env env, napi_value exports);

#endif
