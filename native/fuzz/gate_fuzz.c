// libFuzzer target over a filtered link's gate (gate.c, with the judge it
// drives): what a peer gateway controls once a filtered link is on the native
// data plane. The input is a small program: push some bytes (split wherever
// the input says, as reads split them), answer the open question (pass or
// drop), switch the filter between full and messages. Checked on every step,
// against a plain walk of the same bytes: the node gets whole frames only,
// each one a frame the peer sent, in the order sent, none twice; a gate that
// waits is never pushed into; a failure is final. Built with ASan and UBSan.

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "../gate.h"

#define MAX_STREAM (1 << 20)
#define MAX_FRAMES 65536

// The peer's stream as sent, and where each of its frames starts and ends.
static uint8_t sent[MAX_STREAM], emitted[MAX_STREAM + 4];
static size_t sent_len, emitted_len;
static size_t frame_start[MAX_FRAMES], frame_end[MAX_FRAMES];
static size_t n_frames, walked;  // frames found so far in `sent`, and how far the walk got
static size_t next_frame;        // the first frame the node may still get (order)

static void walk_sent(void) {
  while (n_frames < MAX_FRAMES && sent_len - walked >= 4) {
    uint32_t len = (uint32_t)sent[walked] << 24 | (uint32_t)sent[walked + 1] << 16 | (uint32_t)sent[walked + 2] << 8 | sent[walked + 3];
    if (len > sent_len - walked - 4) break;
    frame_start[n_frames] = walked;
    frame_end[n_frames] = walked + 4 + len;
    n_frames++;
    walked += 4 + (size_t)len;
  }
}

// Every emitted byte must continue a frame the peer sent, frames whole and in order.
static bool emit(void *ctx, const uint8_t *p, size_t n) {
  (void)ctx;
  CHECK(emitted_len + n <= sizeof emitted, "the gate emitted more than was sent");
  memcpy(emitted + emitted_len, p, n);
  emitted_len += n;
  return true;
}

// The emitted bytes so far, cut into frames, must be whole frames of `sent`, a subsequence in order.
static size_t checked;  // emitted bytes already matched
static void check_emitted(void) {
  walk_sent();
  while (checked < emitted_len) {
    CHECK(emitted_len - checked >= 4, "the gate emitted part of a length prefix");
    uint32_t len = (uint32_t)emitted[checked] << 24 | (uint32_t)emitted[checked + 1] << 16 | (uint32_t)emitted[checked + 2] << 8 | emitted[checked + 3];
    CHECK(len <= emitted_len - checked - 4, "the gate emitted part of a frame");
    size_t k = next_frame;
    while (k < n_frames && (frame_end[k] - frame_start[k] != 4 + (size_t)len || memcmp(sent + frame_start[k], emitted + checked, 4 + (size_t)len) != 0)) k++;
    CHECK(k < n_frames, "the gate emitted a frame the peer did not send, or out of order");
    next_frame = k + 1;
    checked += 4 + (size_t)len;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sent_len = emitted_len = n_frames = walked = next_frame = checked = 0;
  if (size < 1) return 0;
  static const judge_str_t names[] = {{(const uint8_t *)"api", 3}};
  static const judge_str_t calls[] = {{(const uint8_t *)"erlang:node/0", 13}};
  bool full = data[0] & 1;
  judge_limits_t lim = {.max_sequences = 4, .max_fragment_bytes = 1 << 16, .max_fragments = 64, .max_message_bytes = 1 << 16};
  judge_filter_t *f = judge_filter_new(full, names, 1, calls, 1);
  judge_t *j = judge_new(&lim);
  CHECK(f && j, "out of memory in the fuzzer");
  gate_t *g = gate_new(j, f, 1 << 16);
  CHECK(g, "out of memory in the fuzzer");
  bool failed = false;
  judge_out_t q;
  char why[200];
  size_t i = 1;
  while (i < size && !failed) {
    uint8_t op = data[i++];
    gate_status_t s = GATE_OK;
    switch (op % 4) {
      case 0:
      case 1: {
        // Push the next up to 255 bytes (op's high bits pick how many).
        size_t n = (size_t)(op >> 2) * 4 + 1;
        if (n > size - i) n = size - i;
        if (gate_waiting(g) || sent_len + n > MAX_STREAM) continue;
        memcpy(sent + sent_len, data + i, n);
        sent_len += n;
        s = gate_push(g, data + i, n, emit, NULL, &q, why, sizeof why);
        i += n;
        break;
      }
      case 2:
        if (!gate_waiting(g)) continue;
        s = gate_answer(g, (op >> 2) & 1, emit, NULL, &q, why, sizeof why);
        break;
      case 3: {
        judge_filter_t *next = judge_filter_new((op >> 2) & 1, names, 1, calls, 1);
        CHECK(next, "out of memory in the fuzzer");
        gate_set_filter(g, next);
        continue;
      }
    }
    if (s == GATE_ASK) {
      CHECK(gate_waiting(g), "a question with the gate not waiting");
      free(q.body);
    }
    if (s == GATE_FAIL) {
      CHECK(why[0] != 0, "a failure without its reason");
      failed = true;
    }
    check_emitted();
  }
  gate_free(g);
  return 0;
}
