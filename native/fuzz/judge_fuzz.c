// libFuzzer target over the native judge (judge.c, verdict.c, etf.c): what a peer
// controls on a filtered link after the hand-over is every frame it sends.
// The input is a flags byte, then frames, each after a 2-byte big-endian
// length whose top bit judges that frame under the full filter (a reload
// may switch filters between any two frames); the flags choose the
// fragment limits (small ones reach every bound) and whether the atom cache
// starts seeded. One judge takes every frame in order. Checked after every
// frame: the verdict and out's fields as judge.h promises them (a failure is
// sticky and names a code; a question's body and atoms are readable and
// bounded; a pass-through question's body is the frame after its 112), and
// the fragments: the harness keeps its own copy of every frame the judge
// said it holds, per sequence id, and the earlier frames handed back with a
// message's last fragment must be exactly those, in order, with their
// lengths; judge_held() covers them and is 0 when none is held. Built with
// ASan and UBSan (scripts/build-fuzz.sh), run by test/native/fuzz.test.ts.

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "../judge.h"

#define MAX_FRAME 0x7fff
#define MAX_SEQS 256  // DIST_MAX_FRAGMENT_SEQUENCES: the most the judge holds at once

// The harness's copy of what the judge holds: frames (with their 4-byte lengths) per sequence.
typedef struct {
  uint64_t id;
  uint8_t *frames;
  size_t len;
} held_t;

static held_t held[MAX_SEQS];
static size_t n_held;

static held_t *held_find(uint64_t id) {
  for (size_t i = 0; i < n_held; i++)
    if (held[i].id == id) return &held[i];
  return NULL;
}

static void held_add(uint64_t id, const uint8_t *f, size_t len) {
  held_t *h = held_find(id);
  if (!h) {
    CHECK(n_held < MAX_SEQS, "judge_fuzz: more sequences held than the limits allow");
    h = &held[n_held++];
    h->id = id;
    h->frames = NULL;
    h->len = 0;
  }
  h->frames = realloc(h->frames, h->len + 4 + len);
  CHECK(h->frames, "judge_fuzz: out of memory");
  uint8_t *d = h->frames + h->len;
  d[0] = (uint8_t)(len >> 24);
  d[1] = (uint8_t)(len >> 16);
  d[2] = (uint8_t)(len >> 8);
  d[3] = (uint8_t)len;
  memcpy(d + 4, f, len);
  h->len += 4 + len;
}

static void held_drop(held_t *h) {
  free(h->frames);
  *h = held[--n_held];
}

static uint64_t be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

// Reads every byte of what out points at, so ASan sees a dangling or short one.
static volatile uint8_t sink;
static void touch(const uint8_t *p, size_t n) {
  uint8_t s = 0;
  for (size_t i = 0; i < n; i++) s ^= p[i];
  sink = s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t flags = data[0];
  data++;
  size--;
  // src/config/limits.ts's defaults, or small ones every input can reach.
  judge_limits_t limits = (flags & 1) ? (judge_limits_t){4, 4096, 16, 8192} : (judge_limits_t){256, 256ull << 20, 1 << 20, 256ull << 20};
  judge_t *j = judge_new(&limits);
  static const judge_str_t names[] = {{(const uint8_t *)"echo", 4}, {(const uint8_t *)"bg_api", 6}};
  static const judge_str_t calls[] = {{(const uint8_t *)"erlang:phash2/1", 15}, {(const uint8_t *)"m:f/?", 5}};
  judge_filter_t *messages = judge_filter_new(false, names, 2, calls, 2);
  judge_filter_t *full = judge_filter_new(true, NULL, 0, NULL, 0);
  CHECK(j && messages && full, "judge_fuzz: out of memory");
  if (flags & 2) {
    static const char *const seeds[] = {"echo", "net_kernel", "$gen_call", "a@host", "", "rex", "call", "global_name_server"};
    for (uint32_t i = 0; i < 8; i++) CHECK(judge_seed_atom(j, i * 3, (const uint8_t *)seeds[i], strlen(seeds[i])), "judge_fuzz: a seed refused");
    CHECK(!judge_seed_atom(j, 2048, (const uint8_t *)"x", 1), "judge_fuzz: a seed past the cache taken");
    CHECK(!judge_seed_atom(j, 1, (const uint8_t *)"\xc3\x28", 2), "judge_fuzz: a seed that is not UTF-8 taken");
  }
  const char *failed = NULL;
  size_t at = 0;
  while (at + 2 <= size) {
    bool use_full = (data[at] & 0x80) != 0;
    size_t len = (((size_t)data[at] & 0x7f) << 8) | data[at + 1];
    at += 2;
    if (len > size - at) len = size - at;
    if (len == 0) continue;  // ticks never reach the judge
    if (len > MAX_FRAME) len = MAX_FRAME;
    const uint8_t *fr = data + at;
    at += len;
    // A copy of exactly the frame's bytes: ASan then sees any read past its end.
    uint8_t *frame = malloc(len);
    CHECK(frame, "judge_fuzz: out of memory");
    memcpy(frame, fr, len);
    judge_out_t out;
    judge_verdict_t v = judge_frame(j, use_full ? full : messages, frame, len, &out);
    CHECK(v == JUDGE_PASS || v == JUDGE_HOLD || v == JUDGE_ASK || v == JUDGE_FAIL, "judge_fuzz: verdict out of range");
    if (failed) CHECK(v == JUDGE_FAIL && out.code == failed, "judge_fuzz: a failed judge did not stay failed");
    bool fragment = len >= 18 && fr[0] == 131 && (fr[1] == 69 || fr[1] == 70);
    uint64_t seq = fragment ? be64(fr + 2) : 0, frag = fragment ? be64(fr + 10) : 0;
    switch (v) {
      case JUDGE_FAIL:
        CHECK(out.code && out.code[0] && out.reason[0], "judge_fuzz: a failure without its code or reason");
        CHECK(!out.earlier && !out.body, "judge_fuzz: a failure handed bytes out");
        failed = out.code;
        break;
      case JUDGE_HOLD:
        CHECK(fragment && !out.earlier && !out.body, "judge_fuzz: held what is not a fragment");
        held_add(seq, frame, len);
        break;
      case JUDGE_PASS:
      case JUDGE_ASK: {
        held_t *h = fragment && frag == 1 ? held_find(seq) : NULL;
        CHECK(!fragment || fr[1] == 69 || h, "judge_fuzz: a continuation passed without its sequence");
        if (h && !(fr[1] == 69 && frag == 1)) {
          // The last fragment: the frames handed back are the ones held, exactly.
          CHECK(out.earlier_len == h->len && memcmp(out.earlier, h->frames, h->len) == 0, "judge_fuzz: earlier frames are not the ones held");
          size_t count = 0;
          for (size_t k = 0; k < h->len; k += 4 + (((size_t)h->frames[k] << 24) | ((size_t)h->frames[k + 1] << 16) | ((size_t)h->frames[k + 2] << 8) | h->frames[k + 3]))
            count++;
          CHECK(out.fragments == count + 1, "judge_fuzz: fragments miscounted");
          held_drop(h);
        } else {
          CHECK(!out.earlier && out.earlier_len == 0 && out.fragments == 1, "judge_fuzz: earlier frames for a message of one frame");
        }
        if (v == JUDGE_ASK) {
          CHECK(out.body && out.n_atoms <= 256, "judge_fuzz: a question without its body");
          touch(out.body, out.body_len);
          for (size_t i = 0; i < out.n_atoms; i++) {
            CHECK(out.atoms[i].len <= 1020 && (out.atoms[i].p || out.atoms[i].len == 0), "judge_fuzz: an atom out of bounds");
            touch(out.atoms[i].p, out.atoms[i].len);
          }
          if (fr[0] == 112) CHECK(out.magic && out.n_atoms == 0 && out.body_len == len - 1 && memcmp(out.body, fr + 1, len - 1) == 0, "judge_fuzz: a pass-through body");
          else CHECK(!out.magic && (out.earlier_len > 0 || out.body_len < len), "judge_fuzz: a body longer than its frame");
        } else {
          CHECK(!out.body, "judge_fuzz: a pass with a body");
        }
        break;
      }
    }
    free(out.earlier);
    free(out.body);
    free(frame);
    // What the judge holds covers the frames it said it keeps.
    uint64_t mine = 0;
    for (size_t i = 0; i < n_held; i++) mine += held[i].len;
    if (!failed) {
      CHECK(judge_held(j) >= mine, "judge_fuzz: judge_held below the frames held");
      CHECK((judge_held(j) == 0) == (n_held == 0), "judge_fuzz: judge_held and the sequences held disagree");
    }
  }
  judge_free(j);
  judge_filter_free(messages);
  judge_filter_free(full);
  while (n_held) held_drop(&held[n_held - 1]);
  return 0;
}
