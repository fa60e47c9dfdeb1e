// The relay thread of the native data plane: owns every adopted link's two
// sockets and cipher state, and moves bytes between them with epoll. One
// other thread, the owner (Node's JS thread, through fastpath.c), adopts
// links, asks them to close or to let go (detach), reads their counters and frees them once their
// close has been reported; the relay thread does everything else. The two
// share only the command queue and the link table (under one mutex) and the
// counters (atomics).

#ifndef BEAMGATE_RELAY_H
#define BEAMGATE_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frames.h"
#include "gate.h"

typedef struct link link_t;

typedef struct {
  size_t read_bytes;       // the most one read takes from a socket
  uint64_t rekey_records;  // records sealed under one key before we send a KeyUpdate (RFC 8446 §5.5)
  size_t max_hs_message;   // the largest post-handshake message a peer may send
  // Called once per link when it has closed (on the relay thread, or on the
  // owner's inside relay_adopt); the owner then calls relay_release.
  void (*report)(link_t *l);
  // Called on the relay thread when a filtered link's gate asks the
  // gateway's judge about a message (gate.h): q->body becomes the callee's;
  // everything else in q must be copied before it returns. False (out of
  // memory) cuts the link. The answer comes back through relay_answer.
  bool (*ask)(uint32_t id, uint64_t ticket, judge_out_t *q);
  // Bytes every filtered link may hold together for messages not yet judged (FILTER_MAX_HELD_BYTES).
  uint64_t max_gate_held;
} relay_config_t;

typedef struct {
  int local_fd, remote_fd;  // duplicated: the caller keeps (and closes) its own
  const char *cipher, *hash;
  const uint8_t *tx_secret, *rx_secret;
  size_t tx_secret_len, rx_secret_len;
  uint64_t tx_seq, rx_seq;
  bool client;  // we are the TLS client of this connection
  const uint8_t *to_remote, *to_local, *from_remote;
  size_t to_remote_len, to_local_len, from_remote_len;
  // What another engine had in flight when it let the link go (relay_detach):
  // records it sealed and the peer has not taken (numbered before tx_seq),
  // plaintext its scanner walked and the node has not taken, and a
  // post-handshake message it had only part of. Empty for a link from node:tls.
  const uint8_t *sealed_to_remote, *walked_to_local, *rx_handshake;
  size_t sealed_to_remote_len, walked_to_local_len, rx_handshake_len;
  // max_frame is taken from here; a scan whose hs.side is not HS_DONE walks
  // the rest of the distribution handshake first (never on a filtered link).
  frame_scan_t out_scan, in_scan;
  uint64_t out_frames, out_ticks, in_frames, in_ticks;
  uint32_t grace_ms;
  // A filtered link: the gate on what reaches the local node (taken by the
  // link once relay_adopt returns an id; still the caller's on -1). Such a
  // link starts between frames, with no other engine's bytes, and never detaches.
  gate_t *gate;
} relay_adopt_t;

// bytesOut, bytesIn, framesOut, framesIn, ticksOut, ticksIn, keyUpdatesOut, keyUpdatesIn,
// and on a filtered link: messages the gate's judge passed, questions asked of the gateway
#define RELAY_COUNTERS 10

// Starts the relay thread; false (err set) if it is running or cannot start.
bool relay_start(const relay_config_t *cfg, char *err, size_t err_len);
// Owner thread only. The link's id, or -1 with err set (nothing was taken).
long relay_adopt(const relay_adopt_t *a, char *err, size_t err_len);
// Owner thread only: asks a link to end (abortive: at once; else both streams
// end, then close within the grace). False if no such link.
bool relay_close(uint32_t id, bool abortive);
// Owner thread only: asks a link to let go of its sockets and state, for
// another process to adopt (a take-over). The link stops relaying and is
// reported with relay_link_detached true; a link that has begun to end is
// left to close as usual, and one still in its distribution handshake lets
// go once that is over. False if no such link.
bool relay_detach(uint32_t id);
// Owner thread only: the gateway's answer to question `ticket` of a
// filtered link: let the message through or drop it, and a frame of the
// gateway's own to write to the peer between two of the node's (`inject`,
// copied; a denied spawn request's reply). An answer to a question no
// longer open (the link closed, another link took the id) is ignored.
// False if no such link or out of memory.
bool relay_answer(uint32_t id, uint64_t ticket, bool pass, const uint8_t *inject, size_t inject_len);
// Owner thread only: a reload's new filter for a filtered link (ownership
// taken, also on false). False if no such link or it is not filtered.
bool relay_refilter(uint32_t id, judge_filter_t *f);
// Owner thread only: false once the link is gone.
bool relay_stats(uint32_t id, uint64_t out[RELAY_COUNTERS]);
// Owner thread only: whether a link handed over before its distribution
// handshake was over still walks it (*handshaking); false once the link is gone.
bool relay_handshaking(uint32_t id, bool *handshaking);
// Bytes all links hold in buffers now: output a socket has not taken, records
// split across reads, post-handshake messages split across records.
size_t relay_buffered(void);
// Of which filtered links hold for messages not yet judged (bounded by max_gate_held together).
uint64_t relay_gate_held(void);
// Of a reported link, on the owner thread.
uint32_t relay_link_id(const link_t *l);
const char *relay_link_reason(const link_t *l);
void relay_link_counters(const link_t *l, uint64_t out[RELAY_COUNTERS]);
// A detached link's state, for relay_adopt in another engine. Every pointer
// is valid until relay_release; the descriptors become the owner's, who must
// close them (relay_release does not).
typedef struct {
  int local_fd, remote_fd;
  const uint8_t *tx_secret, *rx_secret;
  size_t secret_len;
  uint64_t tx_seq, rx_seq, tx_updates, rx_updates;
  const uint8_t *sealed_to_remote, *walked_to_local, *from_remote, *rx_handshake;
  size_t sealed_to_remote_len, walked_to_local_len, from_remote_len, rx_handshake_len;
  frame_scan_t out_scan, in_scan;
} relay_export_t;
// Of a reported link: whether it was detached, and if so its state in `out`.
bool relay_link_detached(const link_t *l, relay_export_t *out);
// Owner thread only, once per reported link: frees it.
void relay_release(link_t *l);

#endif
