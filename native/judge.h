// The firewall's first judge on the native data plane: decodes each whole
// frame of one filtered direction as the receiving VM does (the distribution
// header and its atom cache, fragmented messages, the control message, the
// payload's head, the payload validated to its end) and passes what the
// link's filter surely lets through. Anything else (a message the filter
// would deny, a term it does not read, a compressed payload) is handed to the
// gateway's own judge (src/filter/verdict.ts) with the message's body and its
// atom references resolved. This judge never denies: it may only be stricter
// than the TypeScript one, never more lenient (test/native/judge.test.ts
// checks that on the same vectors). It errs only where the direction's state
// would no longer be the VM's (a bad header, a fragment out of order, a bound):
// then the link must be cut.
//
// One judge per filtered direction; it is used by one thread at a time.

#ifndef BEAMGATE_JUDGE_H
#define BEAMGATE_JUDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// A byte string (UTF-8 text of an atom or of "Module:Function/Arity").
typedef struct {
  const uint8_t *p;
  size_t len;
} judge_str_t;

// What a filter lets through, as src/policy/filter.ts's LinkFilter says.
// Immutable once made; a reload makes a new one.
typedef struct judge_filter judge_filter_t;

// `names`: registered names sends and gen_server calls may address beyond
// the system ones; `calls`: "Module:Function/Arity" erpc/rpc may run. The
// strings are copied. NULL when out of memory. (Defined in verdict.c, which reads them.)
judge_filter_t *judge_filter_new(bool full, const judge_str_t *names, size_t n_names, const judge_str_t *calls, size_t n_calls);
void judge_filter_free(judge_filter_t *f);

typedef struct {
  uint32_t max_sequences;      // fragmented messages in flight (DIST_MAX_FRAGMENT_SEQUENCES)
  uint64_t max_fragment_bytes; // bytes held for them (DIST_MAX_FRAGMENT_BYTES)
  uint64_t max_fragments;      // fragments one message may declare (DIST_MAX_FRAGMENTS_PER_MESSAGE)
  uint64_t max_message_bytes;  // a message's bytes, reassembled (DIST_MAX_MESSAGE_BYTES)
} judge_limits_t;

typedef struct judge judge_t;

// NULL when out of memory.
judge_t *judge_new(const judge_limits_t *limits);
void judge_free(judge_t *j);

// Puts an atom in a cache slot before the first frame (a link the gateway
// judged in JS until its hand-over). False: slot out of range, text not
// valid UTF-8 of at most 255 characters, or out of memory.
bool judge_seed_atom(judge_t *j, uint32_t slot, const uint8_t *utf8, size_t len);

// Bytes the judge holds now: fragments of messages not yet complete.
uint64_t judge_held(const judge_t *j);

typedef enum {
  JUDGE_PASS,  // forward out.earlier (if any), then this frame
  JUDGE_HOLD,  // a fragment of a message not yet complete: the judge kept a copy of the frame
  JUDGE_ASK,   // ask the gateway's judge; forward out.earlier and this frame only if it says pass
  JUDGE_FAIL,  // the direction is broken: cut the link with out.code and out.reason
} judge_verdict_t;

#define JUDGE_REASON_LEN 160

typedef struct {
  // JUDGE_PASS and JUDGE_ASK of the last fragment of a message: the earlier
  // frames of its sequence, each with its 4-byte length, in order. malloc'd;
  // the caller owns it (free). NULL/0 for a message of one frame.
  uint8_t *earlier;
  size_t earlier_len;
  // JUDGE_ASK: what src/dist/decoder.ts's decodeMessage(body, 0, atoms, magic) takes:
  // the control message and payload (reassembled), each term with its own
  // 131 when `magic` (the pass-through header), without otherwise. malloc'd;
  // the caller owns it (free).
  uint8_t *body;
  size_t body_len;
  bool magic;
  // JUDGE_ASK: the header's reference table, reference i's atom text; valid
  // until the next judge_frame or judge_free (they point into the judge's cache
  // or into the frame).
  judge_str_t atoms[256];
  size_t n_atoms;
  uint32_t fragments;  // frames the message came in
  // JUDGE_FAIL: a src/dist/errors.ts code ("bad_header", "fragment_out_of_order", ...) and the reason.
  const char *code;
  char reason[JUDGE_REASON_LEN];
} judge_out_t;

// Judges one non-empty frame: `frame` is what follows its 4-byte length
// (ticks, empty frames, never come here). `out` is written; on JUDGE_FAIL
// every later call fails the same way.
judge_verdict_t judge_frame(judge_t *j, const judge_filter_t *f, const uint8_t *frame, size_t len, judge_out_t *out);

#endif
