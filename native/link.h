// PRIVATE to relay.c and gated.c: the relay thread's view of a link, and the
// few helpers the two share. Nothing else includes it: fastpath.c and the
// other N-API code know a link only as relay.h's opaque link_t and reach it
// through relay.h's functions, so that the relay thread stays the one thread
// that touches a link's state, and the owner thread shares with it only what
// relay.h says (the command queue and link table under one mutex, and the
// counters, atomics).
//
// relay.c is the relay thread itself: epoll, a link's life cycle, the command
// queue, the records. gated.c is what a filtered link does with the bytes
// headed for its node (gate.h), and the frames of the gateway's own it sends
// the peer between the node's. They are split for legibility only: both run
// on the relay thread, except relay.c's owner-thread API and gated.c's
// relay_answer and relay_refilter, which only queue commands. G below is
// relay.c's state (G.mu is the queue's lock: queue_lock outside relay.c),
// F is gated.c's.

#ifndef BEAMGATE_LINK_H
#define BEAMGATE_LINK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gate.h"
#include "record.h"
#include "relay.h"

#define REASON_LEN 200

typedef enum { CMD_ADOPT, CMD_CLOSE, CMD_DETACH, CMD_ANSWER, CMD_REFILTER } cmd_kind;

typedef struct cmd {
  struct cmd *next;
  link_t *link;
  cmd_kind kind;
} cmd_t;

// One direction of a link: bytes read from its source, written to `dst`.
typedef struct {
  int dst;
  frame_scan_t scan;
  _Atomic uint64_t bytes, frames, ticks;
  // Output the kernel has not taken yet (allocated only while it is short).
  uint8_t *pend;
  size_t pend_off, pend_len;
  bool src_done;     // the source has ended (EOF, or close_notify from the peer)
  bool notify_sent;  // towards the peer only: close_notify sealed (written or pending)
  bool dst_shut;     // dst shut down for writing, after everything before it
} dir_t;

struct link {
  uint32_t id;
  int lfd, rfd;
  aead_t tx;
  rx_t rx;
  dir_t out;  // local node -> peer gateway (sealed)
  dir_t in;   // peer gateway -> local node (opened)
  _Atomic uint64_t key_updates_out, key_updates_in;
  // Ciphertext of a record split across reads, or (once) what Node read and did not open.
  uint8_t *carry;
  size_t carry_len, carry_cap;
  // Relay thread only.
  size_t held;            // bytes this link holds in buffers, as last added to G.held
  uint32_t lmask, rmask;  // interest registered in epoll (0: not in epoll)
  bool registered;
  bool closed;
  bool detached;  // closed by relay_detach: sockets and state left for another engine
  bool ending;  // a graceful close was asked for: what is pending goes, then both ways end
  bool detach_wanted;  // a detach asked for while the handshake lasted: taken once it is over
  // A direction still walks the distribution handshake (frames.h); cleared
  // once neither does, by whichever thread owns the link then. Read by the owner.
  _Atomic bool handshaking;
  uint32_t grace_ms;
  int64_t grace_deadline;  // ms, monotonic; 0 while both directions are open
  bool grace_expired;
  char reason[REASON_LEN];  // the first error; empty for an orderly end
  const char *first_end;    // what ended first: "local node closed", "peer closed" or "closing"
  link_t *grace_prev, *grace_next;
  link_t *next_closed;
  // Under G.mu.
  cmd_t adopt_cmd, close_cmd, detach_cmd;
  bool close_queued, detach_queued;
  int close_kind;  // 1 graceful, 2 abortive
  // A filtered link (gate.h); relay thread only but where said.
  gate_t *gate;
  uint64_t ticket;       // the question open, if the gate waits
  uint64_t gate_held;    // as last added to F.gate_held
  uint8_t *seed;         // plaintext node:tls opened before the hand-over: judged once registered
  size_t seed_len;
  uint8_t *inject;       // frames of ours for the peer, waiting for a frame boundary of the node's
  size_t inject_len;
  _Atomic uint64_t judged, asked;
  // Under G.mu: the answer and the new filter on their way.
  cmd_t answer_cmd, refilter_cmd;
  bool answer_queued, refilter_queued, answer_pass;
  uint64_t answer_ticket;
  uint8_t *answer_inject;
  size_t answer_inject_len;
  judge_filter_t *next_filter;
};

// relay.c, relay thread: the link's reason (the first cause wins), its
// output (what the kernel does not take is kept), sealing and walking.
void set_reason(link_t *l, const char *fmt, ...);
bool out_write(link_t *l, dir_t *d, const uint8_t *buf, size_t len, const char *side);
size_t seal_plain(link_t *l, const uint8_t *p, size_t n, uint8_t *out);
bool scan(link_t *l, dir_t *d, const uint8_t *p, size_t n);
// The configuration relay_start took: written before the relay thread started, read-only since.
const relay_config_t *relay_cfg(void);

// relay.c, owner thread: the link table and the command queue.
link_t *link_of(uint32_t id);  // NULL if no such link
void queue_lock(void);
void queue_unlock(void);
void enqueue(cmd_t *c);  // under queue_lock
void enqueue_once(bool *queued, cmd_t *c);  // under queue_lock: unless *queued, which it sets
void wake(void);         // the relay thread, to take what was queued

// What relay_answer or relay_refilter left for a filtered link with its
// command: taken out of the link under the queue's lock, used after it.
typedef struct {
  bool pass;
  uint64_t ticket;
  uint8_t *inject;
  size_t inject_len;
  judge_filter_t *filter;
} gate_mail_t;

// gated.c, relay thread but where said. Each false has set the link's reason: the caller cuts the link.
// F.gate_held brought up to date with what l's gate holds (0 once closed).
bool gate_account(link_t *l);
// Opened bytes for the local node: through the gate on a filtered link.
bool deliver_in(link_t *l, const uint8_t *p, size_t n);
// The plaintext node:tls opened before the hand-over: kept on the owner's
// thread in relay_adopt, delivered once the link has its id.
bool keep_seed(link_t *l, const uint8_t *p, size_t n);
bool deliver_seed(link_t *l);
// The node's bytes for the peer; frames of ours waiting go at the first frame boundary.
bool send_plain(link_t *l, const uint8_t *p, size_t n, uint8_t *sealed);
// The gateway's answer to the question open on a filtered link.
bool take_answer(link_t *l, bool pass, uint8_t *inject, size_t inject_len, uint8_t *sealed);
// Under the queue's lock (drain_commands).
void take_mail(link_t *l, cmd_kind kind, gate_mail_t *m);
// Owner thread: what a filtered link holds, freed with the link.
void free_filtered(link_t *l);

// Relay thread: a question is open, so nothing more reaches the node and the peer is not read until the answer.
static inline bool gate_waits(const link_t *l) { return l->gate && gate_waiting(l->gate); }

#endif
