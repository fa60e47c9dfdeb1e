// libFuzzer target over the distribution handshake walker (handshake.c) and
// the frame scanner that runs it first (frames.c): what a node, or a peer
// gateway, controls of a link handed to the engine before its handshake is
// over. The input's head sets up the walker, the rest is the stream:
//   byte 0   bit 0 acceptor (else initiator); bits 1-2 k: messages already
//            walked (initiator 1 + k, acceptor k mod 3); bit 3 an operator
//            (hidden required); bit 4 a frame limit of 100 (else none)
//   1-2      the bound on a message (big-endian, 0 for 65535)
//   3        the expected name's length (0 for 255), then its bytes
//   4 bytes  the seed of the stream that cuts the rest into chunks (empty
//            chunks too), as reads would
// (test/native/handshake.test.ts writes the seeds, native/fuzz/handshake-corpus,
// in this format). The stream is walked in one chunk and in those chunks,
// each chunk copied to a buffer of its own size so that reading past it is
// caught. Checked with abort():
// - a call uses at most the bytes it is given, all of them while the
//   handshake lasts;
// - once done, a call walks nothing more, and what follows is frames:
//   frames_scan counts exactly what a byte-by-byte scanner counts from there
//   (and refuses a frame over the limit exactly when it does);
// - a refusal is sticky: a walker that refused never walks on; every later
//   call, with bytes or without, refuses again with the same reason and
//   leaves the walker as it was (handshake.h);
// - one chunk or many: the same verdict, the same reason, the same framesFrom;
// - a reason is "refused:CODE:..." with one of the walker's codes;
// - what the walker accepts is a handshake the gateway takes: whole messages
//   within the bound up to framesFrom, each where its side may send it,
//   ending with that side's last message, and an acceptor's challenge (when
//   walked here) naming the expected node, hidden for an operator.
// Built with ASan and UBSan.

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "../frames.h"
#include "../handshake.h"
#include "ref_scan.h"

#define REASON_LEN (2 * HS_NAME_MAX + 128)

typedef struct {
  bool ok, done;
  size_t from;  // where frames begin (done only)
  char reason[REASON_LEN];
} verdict_t;

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t next(uint32_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 17;
  *x ^= *x << 5;
  return *x;
}

// The next chunk's length, at most `left`: empty, a few bytes, tens, hundreds, or the rest.
static size_t chunk_len(uint32_t *x, size_t left) {
  uint32_t r = next(x);
  size_t n;
  switch (r & 7) {
    case 0:
      n = 0;
      break;
    case 1:
    case 2:
      n = 1 + (r >> 8) % 3;
      break;
    case 3:
    case 4:
      n = 1 + (r >> 8) % 32;
      break;
    case 5:
    case 6:
      n = 1 + (r >> 8) % 300;
      break;
    default:
      n = left;
  }
  return n < left ? n : left;
}

// A copy of p[0, n) in a buffer of exactly n bytes (NULL for none), so ASan sees a read past the chunk.
static uint8_t *own(const uint8_t *p, size_t n) {
  if (!n) return NULL;
  uint8_t *b = malloc(n);
  CHECK(b, "out of memory in the fuzzer");
  memcpy(b, p, n);
  return b;
}

static void check_reason(const char *r, const hs_walk_t *w) {
  CHECK(strncmp(r, "refused:", 8) == 0, "a refusal's reason is not refused:CODE:detail");
  const char *code = r + 8;
  bool known = strncmp(code, "bad_handshake:", 14) == 0 || strncmp(code, "handshake_too_large:", 20) == 0 ||
               (strncmp(code, "operator_not_hidden:", 20) == 0 && w->side == HS_ACCEPTOR && w->hidden_required);
  CHECK(known, "a refusal with a code the walker does not give (here)");
}

// A walker that refused, called again (with `p[0, n)` or nothing): refused again, the same reason, nothing walked.
static void check_sticky(hs_walk_t *w, const char *reason, const uint8_t *p, size_t n) {
  hs_walk_t before;
  memcpy(&before, w, sizeof before);
  char again[REASON_LEN];
  size_t used = 0;
  uint8_t *b = own(p, n);
  CHECK(!hs_walk(w, b, n, &used, again, sizeof again), "a walker that refused walked on");
  CHECK(strcmp(again, reason) == 0, "a walker that refused refused again for another reason");
  CHECK(memcmp(&before, w, sizeof before) == 0, "a walker that refused changed when called again");
  free(b);
  CHECK(!hs_walk(w, NULL, 0, &used, again, sizeof again) && strcmp(again, reason) == 0, "a walker that refused took no bytes as a pass");
}

// A walker that is done, called again: walks nothing, changes nothing.
static void check_done_stays(hs_walk_t *w, const uint8_t *p, size_t n) {
  hs_walk_t before;
  memcpy(&before, w, sizeof before);
  char r[REASON_LEN];
  size_t used = 1;
  uint8_t *b = own(p, n);
  CHECK(hs_walk(w, b, n, &used, r, sizeof r) && used == 0, "a walker that is done walked bytes of frames");
  CHECK(memcmp(&before, w, sizeof before) == 0, "a walker that is done changed");
  free(b);
}

// What the walker accepted, p[0, from): whole messages a gateway takes, `index` of them already walked before.
static void check_accepted(const uint8_t *p, size_t from, hs_side_t side, uint32_t index, uint32_t max, const uint8_t *name, size_t nlen, bool hidden) {
  size_t i = 0;
  uint32_t k = index;
  bool last = false;
  while (i < from) {
    CHECK(!last, "the walker walked on after the last message");
    CHECK(from - i >= 2, "frames begin inside a message's length");
    size_t len = be16(p + i);
    CHECK(len <= max, "the walker took a message over the bound");
    CHECK(len >= 1 && from - i - 2 >= len, "frames begin inside a message, or after an empty one");
    const uint8_t *b = p + i + 2;
    if (side == HS_INITIATOR) {
      CHECK((b[0] == 's') || (b[0] == 'c' && len == 9) || (b[0] == 'r' && len == 21), "the initiator's walker took a message it may not send");
      last = b[0] == 'r';
    } else if (k == 0) {
      CHECK(b[0] == 's', "the acceptor's walker took a first message that is no status");
    } else if (k == 1) {
      size_t at, n;
      uint8_t flags;
      if (b[0] == 'N') {
        CHECK(len >= 19, "the walker took a truncated v6 challenge");
        n = be16(b + 17), at = 19, flags = b[8];
        CHECK(at + n <= len, "the walker took a v6 challenge whose name overruns it");
      } else {
        CHECK(b[0] == 'n' && len >= 12, "the walker took a second message that is no challenge");
        n = len - 11, at = 11, flags = b[6];
      }
      CHECK(n == nlen && memcmp(b + at, name, n) == 0, "the walker took a challenge naming another node");
      CHECK(!hidden || !(flags & 1), "the walker took an operator's published challenge");
    } else {
      CHECK(k == 2 && b[0] == 'a' && len == 17, "the acceptor's walker took a third message that is no challenge_ack");
      last = true;
    }
    i += 2 + len;
    k++;
  }
  CHECK(last, "the walker was done before the last message");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  uint8_t flags = data[0];
  hs_side_t side = flags & 1 ? HS_ACCEPTOR : HS_INITIATOR;
  uint32_t k = (flags >> 1) & 3;
  uint32_t index = side == HS_INITIATOR ? 1 + k : k % 3;
  bool hidden = flags & 8;
  uint64_t max_frame = flags & 16 ? 100 : UINT64_MAX;
  uint32_t max = be16(data + 1);
  if (!max) max = 65535;
  size_t nlen = data[3] ? data[3] : 255;
  if (size < 8 + nlen) return 0;
  const uint8_t *name = data + 4;
  uint32_t seed = be32(data + 4 + nlen) | 1;  // (xorshift never leaves 0)
  const uint8_t *s = data + 8 + nlen;
  size_t n = size - 8 - nlen;

  hs_walk_t fresh;
  CHECK(hs_init(&fresh, side, index, max, (const char *)name, nlen, hidden), "hs_init refused a walker the format describes");

  // In one chunk.
  verdict_t one = {0};
  hs_walk_t a;
  memcpy(&a, &fresh, sizeof a);
  size_t used = 0;
  uint8_t *whole = own(s, n);
  one.ok = hs_walk(&a, whole, n, &used, one.reason, sizeof one.reason);
  free(whole);
  if (one.ok) {
    CHECK(used <= n, "the walker used more than it was given");
    one.done = a.side == HS_DONE;
    CHECK(one.done || used == n, "the walker left bytes unwalked in its handshake");
    one.from = used;
    if (one.done) {
      check_done_stays(&a, s + used, n - used);
      check_accepted(s, used, side, index, max, name, nlen, hidden);
    }
  } else {
    check_reason(one.reason, &a);
    check_sticky(&a, one.reason, s, n);
  }

  // In chunks, through the walker and through frames_scan side by side.
  verdict_t many = {0};
  many.ok = true;
  hs_walk_t b;
  memcpy(&b, &fresh, sizeof b);
  frame_scan_t fs;
  memset(&fs, 0, sizeof fs);
  fs.max_frame = max_frame;
  memcpy(&fs.hs, &fresh, sizeof fs.hs);
  uint64_t frames = 0, ticks = 0;
  bool scan_ok = true;
  char scan_reason[REASON_LEN] = "";
  uint32_t x = seed;
  size_t off = 0;
  unsigned chunks = 0;
  while (off < n || chunks == 0) {
    // Past a bound on empty chunks, the rest at once (the stream of lengths may linger on zeros).
    size_t len = chunks++ < 4 * n + 16 ? chunk_len(&x, n - off) : n - off;
    uint8_t *c = own(s + off, len);
    if (many.ok && !many.done) {
      size_t u = SIZE_MAX;
      many.ok = hs_walk(&b, c, len, &u, many.reason, sizeof many.reason);
      if (many.ok) {
        CHECK(u <= len, "the walker used more than it was given");
        many.done = b.side == HS_DONE;
        CHECK(many.done || u == len, "the walker left bytes unwalked in its handshake");
        if (many.done) many.from = off + u;
      } else {
        check_reason(many.reason, &b);
        check_sticky(&b, many.reason, s + off, n - off);
      }
    } else if (many.ok) {
      check_done_stays(&b, c, len);
    }
    if (scan_ok) {
      bool before = fs.hs.side != HS_DONE;
      if (before) CHECK(frames_boundary(&fs, c, len) == SIZE_MAX, "a frame boundary while the handshake lasts");
      scan_ok = frames_scan(&fs, c, len, &frames, &ticks, scan_reason, sizeof scan_reason);
    }
    free(c);
    off += len;
    if (off == n && len == 0) break;
  }

  // One chunk or many: the same.
  CHECK(one.ok == many.ok, "one chunk and many: a different verdict");
  if (!one.ok) CHECK(strcmp(one.reason, many.reason) == 0, "one chunk and many: a different reason");
  else CHECK(one.done == many.done && (!one.done || one.from == many.from), "one chunk and many: frames begin elsewhere");

  // frames_scan: the walker's verdict, then frames exactly as the reference counts them from framesFrom.
  if (!one.ok) {
    CHECK(!scan_ok && strcmp(scan_reason, one.reason) == 0, "frames_scan and the walker: a different refusal");
  } else if (!one.done) {
    CHECK(scan_ok && frames == 0 && ticks == 0 && fs.hs.side == side, "frames_scan counted frames in the handshake");
  } else {
    ref_scan_t ref = {0};
    ref_scan(&ref, s + one.from, n - one.from, max_frame);
    CHECK(fs.hs.side == HS_DONE, "frames_scan's walker is not done");
    if (ref.over) {
      CHECK(!scan_ok && strncmp(scan_reason, "refused:frame_too_large:", 24) == 0, "frames_scan took a frame over the limit");
    } else {
      CHECK(scan_ok, "frames_scan refused what the reference takes");
      CHECK(frames == ref.frames && ticks == ref.ticks, "frames_scan counted frames after the handshake differently");
    }
  }
  return 0;
}
