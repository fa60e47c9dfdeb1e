// The distribution handshake walker of the native data plane. A link on a
// ready TLS connection is handed to the engine as soon as it exists, before
// its nodes' handshake is over (src/mesh/link.ts), so that the handshake's
// round trips cross no event loop. This walks one direction of what is left
// of that handshake (2-byte length-prefixed messages: ERTS User's Guide,
// "Distribution Protocol") as the bytes pass, without copying more than a
// message's head, and says where that direction's frames begin. It enforces
// what the gateway's own walker (src/framing/handshake.ts, stream.ts)
// enforces on the same messages: the bound on a message's size, each tag
// and length for its side, their order, and on the accepting side that its
// challenge names the node the link was dialled for and, for an operator,
// that it answers hidden. The initiating side's send_name, its first message,
// is always walked by the gateway before the hand-over (whether the link may
// exist at all is decided there), so the walker starts after it.
// Shared by the relay thread (through frames.c) and the fuzz target.

#ifndef BEAMGATE_HANDSHAKE_H
#define BEAMGATE_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// A node name is an atom: at most 255 characters (OTP's MAX_ATOM_CHARACTERS).
#define HS_NAME_MAX 255
// What a check reads of a message: a v6 challenge's fixed part and its name.
#define HS_HEAD_MAX (19 + HS_NAME_MAX)

typedef enum { HS_DONE = 0, HS_INITIATOR = 1, HS_ACCEPTOR = 2 } hs_side_t;

typedef struct {
  uint8_t side;       // hs_side_t, named after the node that writes this direction; HS_DONE once frames begin (and in a zeroed walker: a link handed over framed)
  uint8_t len_bytes;  // how much of the current message's length prefix has arrived (0-2)
  uint16_t len;       // the current message's length, once both bytes are in
  uint32_t index;     // messages walked before the current one
  uint32_t have;      // bytes of the current message's body walked
  uint32_t max_message;   // limits.maxHandshakeMessageBytes
  bool hidden_required;   // acceptor: the node answering is an operator, which must run hidden
  uint8_t expect_len;     // acceptor: the name its challenge must carry
  char expect[HS_NAME_MAX];
  uint8_t head[HS_HEAD_MAX];  // the current message's first bytes
} hs_walk_t;

// Sets up a walker for one direction: `index` messages of it already walked
// by the gateway (at least 1, the send_name, for the initiator), `expect`
// the acceptor's name (ignored for the initiator). False if the arguments
// cannot describe a handshake the gateway hands over (the caller's error).
bool hs_init(hs_walk_t *w, hs_side_t side, uint32_t index, uint32_t max_message, const char *expect, size_t expect_len, bool hidden_required);

// Walks p[0, n) while this direction's handshake lasts. *used: the bytes that
// belong to it (all n, unless its last message ended within them: the rest
// are frames, and w->side is HS_DONE). False, with reason set as
// "refused:REASON:detail", on anything the gateway's walker refuses.
bool hs_walk(hs_walk_t *w, const uint8_t *p, size_t n, size_t *used, char *reason, size_t reason_len);

#endif
