// The native judge (judge.h): src/dist/'s DirectionDecoder (header.ts,
// atom-cache.ts, fragments.ts, decoder.ts) for one direction, with each whole
// message handed to verdict.c (control.ts, payload.ts and the passing half of
// src/filter/verdict.ts's judge()). What the TypeScript decoder fails on at
// the header or fragment level fails here with the same code; a message it
// passes is one that decodes exactly as decoder.ts would accept it (etf.c
// validates every term to its end) and that judge() would pass; anything else
// is asked. Single-frame messages cost no allocation once the atom cache is warm.

#include "judge.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etf.h"
#include "verdict.h"

// DIST_ATOM_CACHE_SLOTS: 8 segments of 256.
#define ATOM_CACHE_SLOTS 2048
// DIST_MAX_MESSAGE_BYTES: decoder.ts refuses a longer frame (the constant, not the fragment limits).
#define MAX_FRAME_BYTES (256ull * 1024 * 1024)

// ---------------------------------------------------------------------------
// The atom cache. A slot's text lives in a blob; a header's reference table
// and a fragmented message's (kept until its last fragment) point at blobs.
// A blob is rewritten in place only when nothing but its slot refers to it
// and no reference table of this frame does (epoch); else the slot gets a
// new one, so a table always reads what the slot held when the header named it.

typedef struct {
  uint32_t refs;
  uint16_t len, cap;
  uint64_t epoch;  // the last frame whose reference table names it (0: none)
  uint8_t text[];
} blob_t;

static void blob_unref(blob_t *b) {
  if (b && --b->refs == 0) free(b);
}

// A fragmented message in flight (fragments.ts's Sequence) and the frames it came in.
typedef struct {
  uint64_t id;
  uint64_t next;        // the fragment id due next
  uint64_t data_bytes;  // fragments.ts's `bytes`: the data after each header
  uint8_t *held;        // the frames so far, each after its 4-byte length
  size_t held_len, held_cap;
  uint32_t frames;
  uint32_t first_header;  // the first frame's header length: its data starts there
  uint32_t n_atoms;
  uint64_t atom_bytes;
  blob_t *atoms[256];  // the first fragment's reference table, each referenced
} seq_t;

struct judge {
  judge_limits_t limits;
  blob_t *cache[ATOM_CACHE_SLOTS];
  uint64_t epoch;
  // This frame's reference table.
  blob_t *tab[256];
  judge_str_t strs[256];
  // Blobs a table of the last frame still names, replaced in their slot: freed at the next frame.
  blob_t *retired[256];
  size_t n_retired;
  // Fragmented messages in flight.
  seq_t **seqs;
  uint32_t n_seqs, cap_seqs;
  uint32_t hint;         // where the last one found was: fragments mostly come back to back
  uint64_t frag_held;    // fragments.ts's `held`: data bytes of them all
  uint64_t held;         // judge_held(): their frames, lengths and atom texts
  seq_t *done;           // the message finished by the last frame: its atoms are out.atoms until the next
  etf_level_t *stack;    // etf.c's, ETF_MAX_DEPTH levels
  const char *failed;    // the code once failed
  char reason[JUDGE_REASON_LEN];
};

judge_t *judge_new(const judge_limits_t *limits) {
  judge_t *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->limits = *limits;
  j->stack = malloc(ETF_MAX_DEPTH * sizeof *j->stack);
  if (!j->stack) {
    free(j);
    return NULL;
  }
  return j;
}

static void seq_free(seq_t *s) {
  if (!s) return;
  for (uint32_t i = 0; i < s->n_atoms; i++) blob_unref(s->atoms[i]);
  free(s->held);
  free(s);
}

// What the last frame's out still pointed at.
static void settle(judge_t *j) {
  for (size_t i = 0; i < j->n_retired; i++) blob_unref(j->retired[i]);
  j->n_retired = 0;
  seq_free(j->done);
  j->done = NULL;
}

void judge_free(judge_t *j) {
  if (!j) return;
  settle(j);
  for (size_t i = 0; i < ATOM_CACHE_SLOTS; i++) blob_unref(j->cache[i]);
  for (uint32_t i = 0; i < j->n_seqs; i++) seq_free(j->seqs[i]);
  free(j->seqs);
  free(j->stack);
  free(j);
}

uint64_t judge_held(const judge_t *j) { return j->held; }

// Writes `text` into `slot` (atom-cache.ts's set). False: out of memory.
static bool cache_set(judge_t *j, uint32_t slot, const uint8_t *text, size_t len, bool in_frame) {
  blob_t *b = j->cache[slot];
  if (b && b->refs == 1 && (!in_frame || b->epoch != j->epoch) && b->cap >= len) {
    memcpy(b->text, text, len);
    b->len = (uint16_t)len;
    return true;
  }
  size_t cap = len < 32 ? 32 : len;
  blob_t *nb = malloc(sizeof *nb + cap);
  if (!nb) return false;
  nb->refs = 1;
  nb->len = (uint16_t)len;
  nb->cap = (uint16_t)cap;
  nb->epoch = 0;
  memcpy(nb->text, text, len);
  if (b) {
    // A table of this frame names it: it lives until the next frame. At most
    // one a reference of this header (255), so the array has room.
    if (in_frame && b->epoch == j->epoch) j->retired[j->n_retired++] = b;
    else blob_unref(b);
  }
  j->cache[slot] = nb;
  return true;
}

bool judge_seed_atom(judge_t *j, uint32_t slot, const uint8_t *utf8, size_t len) {
  if (slot >= ATOM_CACHE_SLOTS) return false;
  // A seed is the JS judge's text already (its BOM, if any, was dropped on the way in: keep it as is).
  size_t skip;
  if (!etf_utf8_atom(utf8, len, &skip)) return false;
  if (skip && len > 255) {
    // etf_utf8_atom dropped the BOM from its count; here it is a character.
    size_t chars = 0;
    for (size_t i = 0; i < len; i++) chars += (utf8[i] & 0xc0) != 0x80;
    if (chars > 255) return false;
  }
  return cache_set(j, slot, utf8, len, false);
}

// ---------------------------------------------------------------------------
// Failing: the direction's state is no longer the peer VM's.

static judge_verdict_t failed_out(judge_t *j, judge_out_t *out) {
  out->code = j->failed;
  snprintf(out->reason, sizeof out->reason, "%s", j->reason);
  return JUDGE_FAIL;
}

__attribute__((format(printf, 4, 5))) static judge_verdict_t fail(judge_t *j, judge_out_t *out, const char *code, const char *fmt, ...) {
  j->failed = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(j->reason, sizeof j->reason, fmt, ap);
  va_end(ap);
  return failed_out(j, out);
}

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint64_t be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

// ---------------------------------------------------------------------------
// The header's atom cache references (header.ts's atomCacheRefs): updates the
// cache, fills j->tab and j->strs. False: failed (out written).

static bool cache_refs(judge_t *j, const uint8_t *b, size_t len, size_t *at_io, uint32_t *n_out, judge_out_t *out) {
  size_t at = *at_io;
#define NEED(n, what)                                                                                                            \
  if (len - at < (size_t)(n)) {                                                                                                  \
    fail(j, out, "bad_header", "%s truncated: needs %zu bytes at offset %zu, %zu left", what, (size_t)(n), at, len - at); \
    return false;                                                                                                                \
  }
  NEED(1, "NumberOfAtomCacheRefs");
  uint32_t n = b[at++];
  *n_out = n;
  if (n == 0) {
    *at_io = at;
    return true;
  }
  size_t flag_bytes = (n >> 1) + 1;
  NEED(flag_bytes, "atom cache flags");
  const uint8_t *flags = b + at;
  at += flag_bytes;
#define NIBBLE(i) ((((i) & 1) ? flags[(i) >> 1] >> 4 : flags[(i) >> 1]) & 0x0f)
  bool long_atoms = (NIBBLE(n) & 1) != 0;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t fl = NIBBLE(i);
    NEED(1, "atom cache reference");
    uint32_t slot = (fl & 7) * 256 + b[at++];  // below ATOM_CACHE_SLOTS by construction
    if (fl & 8) {
      size_t tl;
      if (long_atoms) {
        NEED(2, "atom cache entry length");
        tl = be16(b + at);
        at += 2;
      } else {
        NEED(1, "atom cache entry length");
        tl = b[at++];
      }
      NEED(tl, "atom cache entry text");
      size_t skip;
      if (!etf_utf8_atom(b + at, tl, &skip)) {
        fail(j, out, "bad_header", "atom cache entry %u (slot %u) is not valid UTF-8 or has more than 255 characters", i, slot);
        return false;
      }
      if (!cache_set(j, slot, b + at + skip, tl - skip, true)) {
        fail(j, out, "out_of_memory", "out of memory for atom cache slot %u", slot);
        return false;
      }
      at += tl;
    } else if (!j->cache[slot]) {
      fail(j, out, "bad_cache_ref", "atom cache slot %u is empty (never written on this link)", slot);
      return false;
    }
    blob_t *e = j->cache[slot];
    e->epoch = j->epoch;
    j->tab[i] = e;
    j->strs[i] = (judge_str_t){e->text, e->len};
  }
#undef NIBBLE
#undef NEED
  *at_io = at;
  return true;
}

// ---------------------------------------------------------------------------
// Frames.

static judge_verdict_t ask(judge_t *j, judge_out_t *out, const uint8_t *body, size_t len, uint8_t *owned, uint32_t n_atoms, bool magic) {
  if (!owned) {
    owned = malloc(len ? len : 1);
    if (!owned) return fail(j, out, "out_of_memory", "out of memory for a message of %zu bytes to ask about", len);
    memcpy(owned, body, len);
  }
  out->body = owned;
  out->body_len = len;
  out->magic = magic;
  out->n_atoms = magic ? 0 : n_atoms;
  memcpy(out->atoms, j->strs, out->n_atoms * sizeof(judge_str_t));
  return JUDGE_ASK;
}

static judge_verdict_t whole(judge_t *j, const judge_filter_t *f, const uint8_t *body, size_t len, uint32_t n_atoms, bool magic, judge_out_t *out) {
  out->fragments = 1;
  if (verdict_passes(f, body, len, j->strs, n_atoms, magic, j->stack)) return JUDGE_PASS;
  return ask(j, out, body, len, NULL, n_atoms, magic);
}

static seq_t *seq_find(judge_t *j, uint64_t id, uint32_t *ix) {
  if (j->hint < j->n_seqs && j->seqs[j->hint]->id == id) {
    *ix = j->hint;
    return j->seqs[j->hint];
  }
  for (uint32_t i = 0; i < j->n_seqs; i++)
    if (j->seqs[i]->id == id) {
      *ix = j->hint = i;
      return j->seqs[i];
    }
  return NULL;
}

// Appends a frame with its 4-byte length to what the sequence holds.
static bool seq_keep(seq_t *s, const uint8_t *frame, size_t len) {
  size_t need = s->held_len + 4 + len;
  if (need > s->held_cap) {
    size_t cap = s->held_cap ? s->held_cap : 4096;
    while (cap < need) cap *= 2;
    uint8_t *p = realloc(s->held, cap);
    if (!p) return false;
    s->held = p;
    s->held_cap = cap;
  }
  uint8_t *d = s->held + s->held_len;
  d[0] = (uint8_t)(len >> 24);
  d[1] = (uint8_t)(len >> 16);
  d[2] = (uint8_t)(len >> 8);
  d[3] = (uint8_t)len;
  memcpy(d + 4, frame, len);
  s->held_len = need;
  s->frames++;
  return true;
}

// fragments.ts's account(): the message's bytes, and every sequence's together.
static bool account(judge_t *j, judge_out_t *out, uint64_t id, uint64_t add, uint64_t has) {
  if (has + add > j->limits.max_message_bytes) {
    fail(j, out, "too_large", "sequence %llu grows past %llu bytes", (unsigned long long)id, (unsigned long long)j->limits.max_message_bytes);
    return false;
  }
  if (j->frag_held + add > j->limits.max_fragment_bytes) {
    fail(j, out, "fragment_too_large", "%llu bytes of unfinished fragmented messages (at most %llu)", (unsigned long long)(j->frag_held + add),
         (unsigned long long)j->limits.max_fragment_bytes);
    return false;
  }
  return true;
}

static judge_verdict_t first(judge_t *j, const judge_filter_t *f, const uint8_t *frame, size_t len, size_t at, uint64_t id, uint64_t frag, uint32_t n_atoms,
                             judge_out_t *out) {
  uint32_t ix;
  if (seq_find(j, id, &ix)) return fail(j, out, "fragment_duplicate_sequence", "first fragment of sequence %llu, which is already in flight", (unsigned long long)id);
  if (frag > j->limits.max_fragments)
    return fail(j, out, "fragment_too_large", "sequence %llu declares %llu fragments (at most %llu)", (unsigned long long)id, (unsigned long long)frag,
                (unsigned long long)j->limits.max_fragments);
  if (frag == 1) return whole(j, f, frame + at, len - at, n_atoms, false, out);
  if (j->n_seqs >= j->limits.max_sequences)
    return fail(j, out, "fragment_too_many_sequences", "more than %u fragmented messages in flight", j->limits.max_sequences);
  uint64_t data = len - at;
  if (!account(j, out, id, data, 0)) return JUDGE_FAIL;
  if (j->n_seqs == j->cap_seqs) {
    uint32_t cap = j->cap_seqs ? 2 * j->cap_seqs : 8;
    seq_t **p = realloc(j->seqs, cap * sizeof *p);
    if (!p) return fail(j, out, "out_of_memory", "out of memory for a fragmented message");
    j->seqs = p;
    j->cap_seqs = cap;
  }
  seq_t *s = calloc(1, sizeof *s);
  if (!s || !seq_keep(s, frame, len)) {
    seq_free(s);
    return fail(j, out, "out_of_memory", "out of memory for a fragmented message");
  }
  s->id = id;
  s->next = frag - 1;
  s->data_bytes = data;
  s->first_header = (uint32_t)at;
  s->n_atoms = n_atoms;
  for (uint32_t i = 0; i < n_atoms; i++) {
    s->atoms[i] = j->tab[i];
    s->atoms[i]->refs++;
    s->atom_bytes += s->atoms[i]->len;
  }
  j->seqs[j->n_seqs] = s;
  j->hint = j->n_seqs++;
  j->frag_held += data;
  j->held += s->held_len + s->atom_bytes;
  return JUDGE_HOLD;
}

static judge_verdict_t continuation(judge_t *j, const judge_filter_t *f, const uint8_t *frame, size_t len, uint64_t id, uint64_t frag, judge_out_t *out) {
  uint32_t ix;
  seq_t *s = seq_find(j, id, &ix);
  if (!s)
    return fail(j, out, "fragment_unknown_sequence", "continuation (fragment %llu) of sequence %llu, which was never started or is finished", (unsigned long long)frag,
                (unsigned long long)id);
  if (frag != s->next)
    return fail(j, out, "fragment_out_of_order", "sequence %llu: fragment %llu where %llu was due", (unsigned long long)id, (unsigned long long)frag,
                (unsigned long long)s->next);
  uint64_t data = len - 18;
  if (!account(j, out, id, data, s->data_bytes)) return JUDGE_FAIL;
  if (frag > 1) {
    size_t before = s->held_len;
    if (!seq_keep(s, frame, len)) return fail(j, out, "out_of_memory", "out of memory for a fragmented message");
    s->data_bytes += data;
    j->frag_held += data;
    j->held += s->held_len - before;
    s->next = frag - 1;
    return JUDGE_HOLD;
  }
  // The last fragment: the message is whole.
  j->seqs[ix] = j->seqs[--j->n_seqs];
  j->frag_held -= s->data_bytes;
  j->held -= s->held_len + s->atom_bytes;
  j->done = s;  // its atoms stay until the next frame: out.atoms may point at them
  uint64_t total = s->data_bytes + data;
  uint8_t *body = malloc(total ? total : 1);
  if (!body) return fail(j, out, "out_of_memory", "out of memory for a message of %llu bytes", (unsigned long long)total);
  size_t o = 0;
  for (size_t at = 0, k = 0; at < s->held_len; k++) {
    size_t fl = ((size_t)s->held[at] << 24) | ((size_t)s->held[at + 1] << 16) | ((size_t)s->held[at + 2] << 8) | s->held[at + 3];
    size_t h = k == 0 ? s->first_header : 18;
    memcpy(body + o, s->held + at + 4 + h, fl - h);
    o += fl - h;
    at += 4 + fl;
  }
  memcpy(body + o, frame + 18, data);
  for (uint32_t i = 0; i < s->n_atoms; i++) j->strs[i] = (judge_str_t){s->atoms[i]->text, s->atoms[i]->len};
  out->earlier = s->held;
  out->earlier_len = s->held_len;
  out->fragments = s->frames + 1;
  s->held = NULL;
  if (verdict_passes(f, body, total, j->strs, s->n_atoms, false, j->stack)) {
    free(body);
    return JUDGE_PASS;
  }
  return ask(j, out, body, total, body, s->n_atoms, false);
}

judge_verdict_t judge_frame(judge_t *j, const judge_filter_t *f, const uint8_t *frame, size_t len, judge_out_t *out) {
  out->earlier = NULL;
  out->earlier_len = 0;
  out->body = NULL;
  out->body_len = 0;
  out->magic = false;
  out->n_atoms = 0;
  out->fragments = 0;
  out->code = NULL;
  out->reason[0] = 0;
  settle(j);
  if (j->failed) return failed_out(j, out);
  j->epoch++;
  if (len == 0) return JUDGE_PASS;  // a tick (the caller passes those itself)
  if (len > MAX_FRAME_BYTES) return fail(j, out, "too_large", "frame of %zu bytes over %llu", len, (unsigned long long)MAX_FRAME_BYTES);
  if (frame[0] == 112) return whole(j, f, frame + 1, len - 1, 0, true, out);  // pass-through: each term with its 131
  if (frame[0] != ETF_VERSION) return fail(j, out, "bad_header", "frame starts with %u, neither 131 nor 112 (pass-through)", frame[0]);
  if (len < 2) return fail(j, out, "bad_header", "header type truncated: needs 1 bytes at offset 1, 0 left");
  uint8_t type = frame[1];
  size_t at;
  uint32_t n_atoms;
  switch (type) {
    case 68:  // DIST_HEADER
      at = 2;
      if (!cache_refs(j, frame, len, &at, &n_atoms, out)) return JUDGE_FAIL;
      return whole(j, f, frame + at, len - at, n_atoms, false, out);
    case 69:    // DIST_FRAG_HEADER
    case 70: {  // DIST_FRAG_CONT
      if (len - 2 < 16) return fail(j, out, "bad_header", "fragment header truncated: needs 16 bytes at offset 2, %zu left", len - 2);
      uint64_t id = be64(frame + 2), frag = be64(frame + 10);
      if (frag == 0) return fail(j, out, "bad_header", "fragment id 0 in sequence %llu (ids count down to 1)", (unsigned long long)id);
      if (type == 70) return continuation(j, f, frame, len, id, frag, out);
      at = 18;
      if (!cache_refs(j, frame, len, &at, &n_atoms, out)) return JUDGE_FAIL;
      return first(j, f, frame, len, at, id, frag, n_atoms, out);
    }
    default:
      return fail(j, out, "bad_header", "unknown distribution header type %u after 131", type);
  }
}
