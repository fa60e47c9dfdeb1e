// The firewall's gate on a filtered link of the native data plane: the
// direction that reaches this host's node. It cuts the opened bytes into
// whole frames, has the judge (judge.h) judge each, and lets through what
// passes, in order. A message the judge cannot clear is asked of the
// gateway's own judge (src/filter/verdict.ts): the gate then holds that
// message and every byte after it until the answer comes, so the node sees
// frames in the order they were sent, each one judged. Ticks pass at once
// unless a question is open (they are frames too: order is kept).
//
// No sockets here: what passes goes to an emit callback, so the relay
// thread, the fuzz target and the tests drive the same code.

#ifndef BEAMGATE_GATE_H
#define BEAMGATE_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "judge.h"

typedef struct gate gate_t;

// Writes bytes that passed towards the node; false when that failed (the
// caller has set the link's reason), which stops the gate's work at once.
typedef bool (*gate_emit_fn)(void *ctx, const uint8_t *p, size_t n);

typedef enum {
  GATE_OK,    // everything given is judged, held as fragments, or part of a frame still arriving
  GATE_ASK,   // a message waits for gate_answer: its question is in `q`; the rest is kept
  GATE_FAIL,  // the link must be cut: `reason` says why (emit failed: the caller's own reason)
} gate_status_t;

// Takes ownership of `j` and `f`. `max_frame`: the link's frame bound (the
// scanner refused longer frames already; the gate refuses them again, never trusting that).
gate_t *gate_new(judge_t *j, judge_filter_t *f, uint64_t max_frame);
void gate_free(gate_t *g);

// A reload's new filter (ownership taken): it judges every message from the
// next one on; the judge's atom cache and fragments carry over.
void gate_set_filter(gate_t *g, judge_filter_t *f);

// Feeds opened bytes (after the handshake; a gate starts between frames).
// Must not be called while gate_waiting(). On GATE_ASK, `q` holds the
// question: q->body is the caller's to free; q->atoms are valid until the
// next call on this gate.
gate_status_t gate_push(gate_t *g, const uint8_t *p, size_t n, gate_emit_fn emit, void *ctx, judge_out_t *q, char *reason, size_t reason_len);

// The answer to the open question: `pass` lets the message through (its
// frames in order), else it is dropped. Then the bytes kept behind it are
// judged, which may end in another question.
gate_status_t gate_answer(gate_t *g, bool pass, gate_emit_fn emit, void *ctx, judge_out_t *q, char *reason, size_t reason_len);

bool gate_waiting(const gate_t *g);

// Bytes the gate holds now: a frame still arriving, a message waiting for
// its answer and the bytes behind it, the judge's fragments.
uint64_t gate_held(const gate_t *g);

// Messages the judge let through itself, and questions asked.
uint64_t gate_passed(const gate_t *g);
uint64_t gate_asked(const gate_t *g);

#endif
