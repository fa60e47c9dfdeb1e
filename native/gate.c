// The firewall's gate on a filtered link: see gate.h.
//
// Frames that lie whole in the bytes given are judged where they lie, and a
// run of frames that pass goes out as one write; only a frame split across
// reads is gathered (its buffer grows as its bytes arrive, never to what a
// peer merely declares), and only a message that waits for an answer is copied.

#include "gate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

// A frame still arriving starts with room for this much and doubles up to its length.
#define GATE_FIRST_ROOM (64 * 1024)
#define NO_SPAN SIZE_MAX

struct gate {
  judge_t *judge;
  judge_filter_t *filter;
  uint64_t max_frame;
  // A length prefix split across reads, then the frame it announced (prefix included).
  uint8_t len_buf[4];
  size_t len_have;
  uint8_t *part;
  size_t part_have, part_need, part_cap;  // part_need 0: no frame is arriving
  // The open question: the message's earlier fragments and its last frame
  // (each with its prefix), and the bytes that came behind it.
  bool waiting;
  uint8_t *asked_earlier, *asked_frame, *backlog;
  size_t asked_earlier_len, asked_frame_len, backlog_len;
  uint64_t passed, asked;
};

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

gate_t *gate_new(judge_t *j, judge_filter_t *f, uint64_t max_frame) {
  gate_t *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  g->judge = j;
  g->filter = f;
  g->max_frame = max_frame;
  return g;
}

void gate_free(gate_t *g) {
  if (!g) return;
  judge_free(g->judge);
  judge_filter_free(g->filter);
  free(g->part);
  free(g->asked_earlier);
  free(g->asked_frame);
  free(g->backlog);
  free(g);
}

void gate_set_filter(gate_t *g, judge_filter_t *f) {
  judge_filter_free(g->filter);
  g->filter = f;
}

bool gate_waiting(const gate_t *g) { return g->waiting; }

uint64_t gate_held(const gate_t *g) {
  return (uint64_t)g->part_cap + g->asked_earlier_len + g->asked_frame_len + g->backlog_len + judge_held(g->judge);
}

uint64_t gate_passed(const gate_t *g) { return g->passed; }
uint64_t gate_asked(const gate_t *g) { return g->asked; }

static gate_status_t fail(char *reason, size_t reason_len, const char *fmt, const char *code, const char *why) {
  snprintf(reason, reason_len, fmt, code, why);
  return GATE_FAIL;
}

static gate_status_t too_large(char *reason, size_t reason_len, uint32_t len, uint64_t max) {
  snprintf(reason, reason_len, "refused:frame_too_large:frame of %u bytes exceeds %llu", len, (unsigned long long)max);
  return GATE_FAIL;
}

// Opens a question on a judged frame; `frame` (prefix included) becomes the gate's.
static gate_status_t ask(gate_t *g, judge_out_t *q, uint8_t *frame, size_t frame_len, const uint8_t *rest, size_t rest_len, char *reason, size_t reason_len) {
  g->asked_earlier = q->earlier;
  g->asked_earlier_len = q->earlier_len;
  q->earlier = NULL;
  q->earlier_len = 0;
  g->asked_frame = frame;
  g->asked_frame_len = frame_len;
  if (rest_len) {
    g->backlog = malloc(rest_len);
    if (!g->backlog) {
      free(q->body);
      q->body = NULL;
      snprintf(reason, reason_len, "out of memory for %zu bytes behind a message the gateway judges", rest_len);
      return GATE_FAIL;
    }
    memcpy(g->backlog, rest, rest_len);
    g->backlog_len = rest_len;
  }
  g->waiting = true;
  g->asked++;
  return GATE_ASK;
}

// Emits a message's earlier fragments (freed here) and then its last frame.
static bool emit_message(judge_out_t *q, const uint8_t *frame, size_t frame_len, gate_emit_fn emit, void *ctx) {
  bool ok = true;
  if (q->earlier_len) ok = emit(ctx, q->earlier, q->earlier_len);
  free(q->earlier);
  q->earlier = NULL;
  q->earlier_len = 0;
  return ok && emit(ctx, frame, frame_len);
}

// Judges the bytes given, from a frame boundary or from inside the frame arriving.
static gate_status_t run(gate_t *g, const uint8_t *p, size_t n, gate_emit_fn emit, void *ctx, judge_out_t *q, char *reason, size_t reason_len) {
  size_t i = 0, span = NO_SPAN;  // [span, i): frames that passed, not yet emitted
#define FLUSH()                                                        \
  do {                                                                 \
    if (span != NO_SPAN) {                                             \
      if (!emit(ctx, p + span, i - span)) return reason[0] = 0, GATE_FAIL; \
      span = NO_SPAN;                                                  \
    }                                                                  \
  } while (0)
  while (i < n) {
    if (g->len_have == 0 && g->part_need == 0 && n - i >= 4) {
      uint32_t len = be32(p + i);
      if (len > g->max_frame) return too_large(reason, reason_len, len, g->max_frame);
      if (len == 0 || n - i - 4 >= len) {
        judge_verdict_t v = len == 0 ? JUDGE_PASS : judge_frame(g->judge, g->filter, p + i + 4, len, q);
        if (v == JUDGE_PASS && q->earlier_len == 0) {
          if (span == NO_SPAN) span = i;
          i += 4 + (size_t)len;
          if (len) g->passed++;
          continue;
        }
        FLUSH();
        const uint8_t *frame = p + i;
        i += 4 + (size_t)len;
        switch (v) {
          case JUDGE_PASS:
            g->passed++;
            if (!emit_message(q, frame, 4 + (size_t)len, emit, ctx)) return reason[0] = 0, GATE_FAIL;
            continue;
          case JUDGE_HOLD:
            continue;
          case JUDGE_FAIL:
            return fail(reason, reason_len, "refused:dist_malformed:%s: %s", q->code, q->reason);
          case JUDGE_ASK: {
            uint8_t *copy = malloc(4 + (size_t)len);
            if (!copy) {
              free(q->earlier);
              free(q->body);
              q->earlier = q->body = NULL;
              snprintf(reason, reason_len, "out of memory for a message of %u bytes the gateway judges", len);
              return GATE_FAIL;
            }
            memcpy(copy, frame, 4 + (size_t)len);
            return ask(g, q, copy, 4 + (size_t)len, p + i, n - i, reason, reason_len);
          }
        }
      }
    }
    FLUSH();
    if (g->part_need == 0) {
      // The length prefix, possibly split across reads.
      while (g->len_have < 4 && i < n) g->len_buf[g->len_have++] = p[i++];
      if (g->len_have < 4) break;
      g->len_have = 0;
      uint32_t len = be32(g->len_buf);
      if (len > g->max_frame) return too_large(reason, reason_len, len, g->max_frame);
      if (len == 0) {
        if (!emit(ctx, g->len_buf, 4)) return reason[0] = 0, GATE_FAIL;
        continue;
      }
      size_t room = 4 + (size_t)len < GATE_FIRST_ROOM ? 4 + (size_t)len : GATE_FIRST_ROOM;
      g->part = malloc(room);
      if (!g->part) {
        snprintf(reason, reason_len, "out of memory for a frame of %u bytes", len);
        return GATE_FAIL;
      }
      memcpy(g->part, g->len_buf, 4);
      g->part_cap = room;
      g->part_have = 4;
      g->part_need = 4 + (size_t)len;
    }
    size_t take = g->part_need - g->part_have < n - i ? g->part_need - g->part_have : n - i;
    if (g->part_have + take > g->part_cap) {
      size_t cap = g->part_cap * 2 < g->part_have + take ? g->part_have + take : g->part_cap * 2;
      if (cap > g->part_need) cap = g->part_need;
      uint8_t *grown = realloc(g->part, cap);
      if (!grown) {
        snprintf(reason, reason_len, "out of memory for a frame of %zu bytes", g->part_need - 4);
        return GATE_FAIL;
      }
      g->part = grown;
      g->part_cap = cap;
    }
    memcpy(g->part + g->part_have, p + i, take);
    g->part_have += take;
    i += take;
    if (g->part_have < g->part_need) break;
    // A whole frame gathered: it is judged, and its buffer goes with the verdict.
    uint8_t *frame = g->part;
    size_t frame_len = g->part_need;
    g->part = NULL;
    g->part_have = g->part_need = g->part_cap = 0;
    judge_verdict_t v = judge_frame(g->judge, g->filter, frame + 4, frame_len - 4, q);
    switch (v) {
      case JUDGE_PASS: {
        g->passed++;
        bool ok = emit_message(q, frame, frame_len, emit, ctx);
        free(frame);
        if (!ok) return reason[0] = 0, GATE_FAIL;
        continue;
      }
      case JUDGE_HOLD:
        free(frame);
        continue;
      case JUDGE_FAIL:
        free(frame);
        return fail(reason, reason_len, "refused:dist_malformed:%s: %s", q->code, q->reason);
      case JUDGE_ASK:
        return ask(g, q, frame, frame_len, p + i, n - i, reason, reason_len);
    }
  }
  FLUSH();
#undef FLUSH
  return GATE_OK;
}

gate_status_t gate_push(gate_t *g, const uint8_t *p, size_t n, gate_emit_fn emit, void *ctx, judge_out_t *q, char *reason, size_t reason_len) {
  // The relay reads nothing of a direction while its gate waits (update_interest).
  CHECK(!g->waiting, "bytes pushed into a gate waiting for an answer");
  memset(q, 0, sizeof *q);
  return run(g, p, n, emit, ctx, q, reason, reason_len);
}

gate_status_t gate_answer(gate_t *g, bool pass, gate_emit_fn emit, void *ctx, judge_out_t *q, char *reason, size_t reason_len) {
  // The relay takes an answer only for the ticket of the question now open.
  CHECK(g->waiting, "an answer with no question open");
  memset(q, 0, sizeof *q);
  g->waiting = false;
  bool ok = true;
  if (pass) {
    if (g->asked_earlier_len) ok = emit(ctx, g->asked_earlier, g->asked_earlier_len);
    if (ok) ok = emit(ctx, g->asked_frame, g->asked_frame_len);
  }
  free(g->asked_earlier);
  free(g->asked_frame);
  g->asked_earlier = g->asked_frame = NULL;
  g->asked_earlier_len = g->asked_frame_len = 0;
  uint8_t *rest = g->backlog;
  size_t rest_len = g->backlog_len;
  g->backlog = NULL;
  g->backlog_len = 0;
  gate_status_t s = ok ? run(g, rest ? rest : (const uint8_t *)"", rest_len, emit, ctx, q, reason, reason_len) : (reason[0] = 0, GATE_FAIL);
  free(rest);
  return s;
}
