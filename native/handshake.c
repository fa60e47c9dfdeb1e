// The distribution handshake walker: see handshake.h. Tags, lengths and
// order follow src/framing/handshake.ts (decodeHandshakeMessage, then
// checkOrder, then the gateway's check of the challenge's name), so that a
// handshake refused by one is refused by the other with the same reason.

#include "handshake.h"

#include <stdio.h>
#include <string.h>

#define DFLAG_PUBLISHED 0x01

bool hs_init(hs_walk_t *w, hs_side_t side, uint32_t index, uint32_t max_message, const char *expect, size_t expect_len, bool hidden_required) {
  memset(w, 0, sizeof *w);
  if (side != HS_INITIATOR && side != HS_ACCEPTOR) return false;
  // The initiator's first message is the send_name the gateway walked; the
  // acceptor writes three messages, the last of which ends its handshake.
  if (side == HS_INITIATOR ? index == 0 : index > 2) return false;
  if (max_message == 0 || max_message > UINT16_MAX) return false;
  if (side == HS_ACCEPTOR && (expect_len == 0 || expect_len > HS_NAME_MAX)) return false;
  w->side = (uint8_t)side;
  w->index = index;
  w->max_message = max_message;
  if (side == HS_ACCEPTOR) {
    memcpy(w->expect, expect, expect_len);
    w->expect_len = (uint8_t)expect_len;
    w->hidden_required = hidden_required;
  }
  return true;
}

static bool refuse(char *reason, size_t reason_len, const char *code, const char *detail) {
  snprintf(reason, reason_len, "refused:%s:%s", code, detail);
  return false;
}

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

// The challenge's name (`nlen` bytes, of which the head holds `held`) against
// the one expected, and an operator's hidden flag. A name of the expected
// length is all in the head (HS_HEAD_MAX covers a v6 challenge's fixed part
// and HS_NAME_MAX), so it is compared whole; any other cannot match.
static bool check_challenge(const hs_walk_t *w, const uint8_t *name, size_t nlen, size_t held, bool published, char *reason, size_t reason_len) {
  char detail[2 * HS_NAME_MAX + 48];
  if (nlen != w->expect_len || memcmp(name, w->expect, nlen) != 0) {
    size_t shown = nlen < held ? nlen : held;
    if (shown > HS_NAME_MAX) shown = HS_NAME_MAX;
    snprintf(detail, sizeof detail, "challenge names %.*s, expected %.*s", (int)shown, (const char *)name, (int)w->expect_len, w->expect);
    return refuse(reason, reason_len, "bad_handshake", detail);
  }
  if (w->hidden_required && published) {
    snprintf(detail, sizeof detail, "operator node %.*s must run as a hidden node", (int)nlen, (const char *)name);
    return refuse(reason, reason_len, "operator_not_hidden", detail);
  }
  return true;
}

// One whole message of `len` bytes, whose first bytes are in w->head: its
// decode, its place in the order, and the name check. *done once it is the
// last. Changes nothing in the walker: a refused message is refused again.
static bool message(const hs_walk_t *w, bool *done, char *reason, size_t reason_len) {
  const uint8_t *b = w->head;
  uint32_t len = w->len;
  uint32_t index = w->index;
  char detail[80];
  *done = false;
  if (len == 0) return refuse(reason, reason_len, "bad_handshake", "empty handshake message");
  if (w->side == HS_INITIATOR) {
    switch (b[0]) {
      case 'N':
        if (len < 15) return refuse(reason, reason_len, "bad_handshake", "send_name (v6) truncated");
        if (15u + be16(b + 13) > len) return refuse(reason, reason_len, "bad_handshake", "send_name (v6) name longer than the message");
        break;  // out of order below: only the first message may be a send_name
      case 'n':
        if (len < 8) return refuse(reason, reason_len, "bad_handshake", "send_name (v5) truncated");
        break;
      case 'c':
        if (len != 9) return refuse(reason, reason_len, "bad_handshake", "complement message of wrong length");
        return true;
      case 's':
        return true;
      case 'r':
        if (len != 21) return refuse(reason, reason_len, "bad_handshake", "challenge_reply of wrong length");
        *done = true;
        return true;
      default:
        snprintf(detail, sizeof detail, "unexpected handshake tag %u from the initiating node", b[0]);
        return refuse(reason, reason_len, "bad_handshake", detail);
    }
    // A send_name: index 0 is the gateway's, never walked here (hs_init).
    return refuse(reason, reason_len, "bad_handshake", "initiator sent send_name out of order");
  }
  switch (b[0]) {
    case 's':
      if (index != 0) return refuse(reason, reason_len, "bad_handshake", "acceptor sent status out of order");
      return true;
    case 'N': {
      if (len < 19) return refuse(reason, reason_len, "bad_handshake", "challenge (v6) truncated");
      size_t nlen = be16(b + 17);
      if (19 + nlen > len) return refuse(reason, reason_len, "bad_handshake", "challenge (v6) name longer than the message");
      if (index == 0) return refuse(reason, reason_len, "bad_handshake", "acceptor began with challenge, not status");
      if (index != 1) return refuse(reason, reason_len, "bad_handshake", "acceptor sent challenge out of order");
      return check_challenge(w, b + 19, nlen, HS_HEAD_MAX - 19, b[8] & DFLAG_PUBLISHED, reason, reason_len);
    }
    case 'n': {
      if (len < 12) return refuse(reason, reason_len, "bad_handshake", "challenge (v5) truncated");
      if (index == 0) return refuse(reason, reason_len, "bad_handshake", "acceptor began with challenge, not status");
      if (index != 1) return refuse(reason, reason_len, "bad_handshake", "acceptor sent challenge out of order");
      return check_challenge(w, b + 11, len - 11, HS_HEAD_MAX - 11, b[6] & DFLAG_PUBLISHED, reason, reason_len);
    }
    case 'a':
      if (len != 17) return refuse(reason, reason_len, "bad_handshake", "challenge_ack of wrong length");
      if (index == 0) return refuse(reason, reason_len, "bad_handshake", "acceptor began with challenge_ack, not status");
      if (index != 2) return refuse(reason, reason_len, "bad_handshake", "acceptor sent challenge_ack out of order");
      *done = true;
      return true;
    default:
      snprintf(detail, sizeof detail, "unexpected handshake tag %u from the accepting node", b[0]);
      return refuse(reason, reason_len, "bad_handshake", detail);
  }
}

// A refusal leaves the walker where it stood (a length over the bound, or a
// whole message refused): a later call, with bytes or without, refuses again
// with the same reason rather than walk on (the relay never calls again: the
// link is cut; this keeps a caller that did from walking past a refusal).
bool hs_walk(hs_walk_t *w, const uint8_t *p, size_t n, size_t *used, char *reason, size_t reason_len) {
  size_t i = 0;
  *used = 0;
  while (w->side != HS_DONE) {
    if (w->len_bytes < 2) {
      if (i == n) break;
      w->len = (uint16_t)(w->len << 8 | p[i++]);
      if (++w->len_bytes < 2) continue;
      w->have = 0;
    }
    if (w->len > w->max_message) {
      char detail[80];
      snprintf(detail, sizeof detail, "handshake message of %u bytes exceeds %u", w->len, w->max_message);
      return refuse(reason, reason_len, "handshake_too_large", detail);
    }
    size_t take = w->len - w->have < n - i ? w->len - w->have : n - i;
    if (take > 0 && w->have < HS_HEAD_MAX) {  // (p may be NULL when n is 0)
      size_t keep = take < HS_HEAD_MAX - w->have ? take : HS_HEAD_MAX - w->have;
      memcpy(w->head + w->have, p + i, keep);
    }
    w->have += (uint32_t)take;
    i += take;
    if (w->have < w->len) break;
    bool done = false;
    if (!message(w, &done, reason, reason_len)) return false;
    w->index++;
    w->len_bytes = 0;
    w->len = 0;
    w->have = 0;
    if (done) w->side = HS_DONE;
  }
  *used = i;
  return true;
}
