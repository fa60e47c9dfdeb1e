// The firewall's verdict on one message, for the native judge (judge.c):
// a filter's sets (src/policy/filter.ts's LinkFilter, hashed), the control
// message typed as src/dist/control.ts types it, the payload's head as
// src/dist/payload.ts reads it, and the passing half of
// src/filter/verdict.ts's judge(). judge.c frames, decodes the header and
// reassembles fragments; this file says whether the whole message surely
// passes. It never denies: false means the TypeScript judge is asked.

#include "verdict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// DIST_CONTROL_ELEMENTS: a control tuple with more elements is bad_control.
#define CONTROL_ELEMENTS 64
// DIST_CONTROL_BYTES: a big integer of more digit bytes is elided from the control (so not an integer).
#define CONTROL_BYTES 4096
// The control elements a rule reads: {Op, ..., Token} of SPAWN_REQUEST_TT is the longest.
#define CONTROL_FIELDS 7

// ---------------------------------------------------------------------------
// Filters: what src/policy/filter.ts's LinkFilter holds, with its sets hashed.

typedef struct {
  uint64_t hash;
  const uint8_t *p;  // NULL: empty
  size_t len;
} set_slot_t;

typedef struct {
  set_slot_t *slots;
  size_t mask;
} strset_t;

struct judge_filter {
  bool full;
  strset_t names, calls;
  uint8_t *text;  // the copied strings
};

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

static bool set_has(const strset_t *s, const uint8_t *p, size_t n) {
  uint64_t h = hash_bytes(p, n);
  for (size_t i = h & s->mask;; i = (i + 1) & s->mask) {
    const set_slot_t *e = &s->slots[i];
    if (!e->p) return false;
    if (e->hash == h && e->len == n && memcmp(e->p, p, n) == 0) return true;
  }
}

static bool set_build(strset_t *s, const judge_str_t *v, size_t n, uint8_t **text) {
  size_t cap = 4;
  while (cap < 2 * n + 2) cap *= 2;  // at most half full: a miss ends at an empty slot soon
  s->slots = calloc(cap, sizeof *s->slots);
  if (!s->slots) return false;
  s->mask = cap - 1;
  for (size_t k = 0; k < n; k++) {
    memcpy(*text, v[k].p, v[k].len);
    const uint8_t *p = *text;
    *text += v[k].len;
    if (set_has(s, p, v[k].len)) continue;
    uint64_t h = hash_bytes(p, v[k].len);
    size_t i = h & s->mask;
    while (s->slots[i].p) i = (i + 1) & s->mask;
    // An empty string still needs a non-NULL pointer to mark its slot used.
    s->slots[i] = (set_slot_t){h, v[k].len ? p : (const uint8_t *)"", v[k].len};
  }
  return true;
}

judge_filter_t *judge_filter_new(bool full, const judge_str_t *names, size_t n_names, const judge_str_t *calls, size_t n_calls) {
  judge_filter_t *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  f->full = full;
  size_t bytes = 1;
  for (size_t i = 0; i < n_names; i++) bytes += names[i].len;
  for (size_t i = 0; i < n_calls; i++) bytes += calls[i].len;
  f->text = malloc(bytes);
  uint8_t *t = f->text;
  if (!f->text || !set_build(&f->names, names, n_names, &t) || !set_build(&f->calls, calls, n_calls, &t)) {
    judge_filter_free(f);
    return NULL;
  }
  return f;
}

void judge_filter_free(judge_filter_t *f) {
  if (!f) return;
  free(f->names.slots);
  free(f->calls.slots);
  free(f->text);
  free(f);
}

// ---------------------------------------------------------------------------
// Control messages (control.ts).

enum {
  DOP_LINK = 1,
  DOP_SEND = 2,
  DOP_EXIT = 3,
  DOP_UNLINK = 4,
  DOP_NODE_LINK = 5,
  DOP_REG_SEND = 6,
  DOP_GROUP_LEADER = 7,
  DOP_EXIT2 = 8,
  DOP_SEND_TT = 12,
  DOP_EXIT_TT = 13,
  DOP_REG_SEND_TT = 16,
  DOP_EXIT2_TT = 18,
  DOP_MONITOR_P = 19,
  DOP_DEMONITOR_P = 20,
  DOP_MONITOR_P_EXIT = 21,
  DOP_SEND_SENDER = 22,
  DOP_SEND_SENDER_TT = 23,
  DOP_PAYLOAD_EXIT = 24,
  DOP_PAYLOAD_EXIT_TT = 25,
  DOP_PAYLOAD_EXIT2 = 26,
  DOP_PAYLOAD_EXIT2_TT = 27,
  DOP_PAYLOAD_MONITOR_P_EXIT = 28,
  DOP_SPAWN_REQUEST = 29,
  DOP_SPAWN_REQUEST_TT = 30,
  DOP_SPAWN_REPLY = 31,
  DOP_SPAWN_REPLY_TT = 32,
  DOP_ALIAS_SEND = 33,
  DOP_ALIAS_SEND_TT = 34,
  DOP_UNLINK_ID = 35,
  DOP_UNLINK_ID_ACK = 36,
  DOP_ALTACT_SIG_SEND = 37,
  DOP_MAX = 37,
};

// What verdict.ts's judge() does with an operation.
typedef enum {
  V_NONE,   // not an operation control.ts knows: UNKNOWN
  V_PASS,   // links, monitors, their exits, spawn replies
  V_PID,    // a send to a pid
  V_NAME,   // a send to a registered name
  V_ALIAS,  // a send to an alias
  V_ALTACT,
  V_SPAWN,
  V_DENY,   // exit/2, group leader, node link
} vclass_t;

// Per operation: its arities and the type of each element after the
// operation number, as toControl checks them:
//   p pid, r reference, a atom, P pid or atom (control.ts's proc), s small
//   integer (a JS number), i integer (number or bigint), m {atom, atom,
//   small}, R pid or atom, T pid, reference or atom, * anything.
typedef struct {
  uint8_t arity, arity2;  // arity2: ALTACT_SIG_SEND's token makes 5
  bool payload;           // control.ts's PAYLOAD_OPS
  vclass_t v;
  const char *fields;
} op_t;

static const op_t OPS[DOP_MAX + 1] = {
    [DOP_LINK] = {3, 0, false, V_PASS, "pp"},
    [DOP_SEND] = {3, 0, true, V_PID, "*p"},
    [DOP_EXIT] = {4, 0, false, V_PASS, "pp*"},
    [DOP_UNLINK] = {3, 0, false, V_PASS, "pp"},
    [DOP_NODE_LINK] = {1, 0, false, V_DENY, ""},
    [DOP_REG_SEND] = {4, 0, true, V_NAME, "p*a"},
    [DOP_GROUP_LEADER] = {3, 0, false, V_DENY, "pp"},
    [DOP_EXIT2] = {4, 0, false, V_DENY, "pp*"},
    [DOP_SEND_TT] = {4, 0, true, V_PID, "*p*"},
    [DOP_EXIT_TT] = {5, 0, false, V_PASS, "pp**"},
    [DOP_REG_SEND_TT] = {5, 0, true, V_NAME, "p*a*"},
    [DOP_EXIT2_TT] = {5, 0, false, V_DENY, "pp**"},
    [DOP_MONITOR_P] = {4, 0, false, V_PASS, "pPr"},
    [DOP_DEMONITOR_P] = {4, 0, false, V_PASS, "pPr"},
    [DOP_MONITOR_P_EXIT] = {5, 0, false, V_PASS, "Ppr*"},
    [DOP_SEND_SENDER] = {3, 0, true, V_PID, "pp"},
    [DOP_SEND_SENDER_TT] = {4, 0, true, V_PID, "pp*"},
    [DOP_PAYLOAD_EXIT] = {3, 0, true, V_PASS, "pp"},
    [DOP_PAYLOAD_EXIT_TT] = {4, 0, true, V_PASS, "pp*"},
    [DOP_PAYLOAD_EXIT2] = {3, 0, true, V_DENY, "pp"},
    [DOP_PAYLOAD_EXIT2_TT] = {4, 0, true, V_DENY, "pp*"},
    [DOP_PAYLOAD_MONITOR_P_EXIT] = {4, 0, true, V_PASS, "Ppr"},
    [DOP_SPAWN_REQUEST] = {6, 0, true, V_SPAWN, "rppm*"},
    [DOP_SPAWN_REQUEST_TT] = {7, 0, true, V_SPAWN, "rppm**"},
    [DOP_SPAWN_REPLY] = {5, 0, false, V_PASS, "rpsR"},
    [DOP_SPAWN_REPLY_TT] = {6, 0, false, V_PASS, "rpsR*"},
    [DOP_ALIAS_SEND] = {3, 0, true, V_ALIAS, "pr"},
    [DOP_ALIAS_SEND_TT] = {4, 0, true, V_ALIAS, "pr*"},
    [DOP_UNLINK_ID] = {4, 0, false, V_PASS, "ipp"},
    [DOP_UNLINK_ID_ACK] = {4, 0, false, V_PASS, "ipp"},
    [DOP_ALTACT_SIG_SEND] = {4, 5, true, V_ALTACT, "spT*"},
};

// ALTACT_SIG_SEND's EXIT flag (control.ts's ALTACT_FLAG.EXIT).
#define ALTACT_FLAG_EXIT 16

typedef struct {
  const op_t *op;    // NULL: UNKNOWN
  etf_val_t e[CONTROL_FIELDS];
  etf_val_t mfa[3];  // a {M, F, A} at element 4
  bool has_mfa;
} control_t;

static bool field_ok(char want, const etf_val_t *v, const control_t *c) {
  switch (want) {
    case 'p':
      return v->kind == ETF_K_PID;
    case 'r':
      return v->kind == ETF_K_REF;
    case 'a':
      return v->kind == ETF_K_ATOM;
    case 'P':
    case 'R':
      return v->kind == ETF_K_PID || v->kind == ETF_K_ATOM;
    case 's':
      return v->kind == ETF_K_INT;
    case 'i':
      return v->kind == ETF_K_INT || (v->kind == ETF_K_BIG && v->n <= CONTROL_BYTES);
    case 'T':
      return v->kind == ETF_K_PID || v->kind == ETF_K_REF || v->kind == ETF_K_ATOM;
    case 'm':
      return c->has_mfa && c->mfa[0].kind == ETF_K_ATOM && c->mfa[1].kind == ETF_K_ATOM && c->mfa[2].kind == ETF_K_INT;
    default:
      return true;
  }
}

// Reads and types the control message (decoder.ts's toControl(r.read(CONTROL_BOUNDS))). False: ask.
static bool read_control(etf_t *r, control_t *c) {
  etf_val_t t;
  if (!etf_open(r, 0, &t) || t.kind != ETF_K_TUPLE) return false;
  if (t.n == 0 || t.n > CONTROL_ELEMENTS) return false;
  c->has_mfa = false;
  for (uint32_t i = 0; i < t.n; i++) {
    if (i >= CONTROL_FIELDS) {
      if (!etf_skip(r, 1)) return false;
      continue;
    }
    etf_val_t *v = &c->e[i];
    if (!etf_open(r, 1, v)) return false;
    if (i == 4 && v->kind == ETF_K_TUPLE && v->n == 3) {
      for (int k = 0; k < 3; k++)
        if (!etf_open(r, 2, &c->mfa[k]) || !etf_finish(r, 2, &c->mfa[k])) return false;
      c->has_mfa = true;
    } else if (!etf_finish(r, 1, v)) {
      return false;
    }
  }
  if (c->e[0].kind != ETF_K_INT) return false;
  int64_t code = c->e[0].ival;
  c->op = code >= 0 && code <= DOP_MAX && OPS[code].fields ? &OPS[code] : NULL;
  if (!c->op) return true;
  if (t.n != c->op->arity && t.n != c->op->arity2) return false;
  for (uint32_t i = 1; i < t.n; i++) {
    const char *fs = c->op->fields;
    char want = i - 1 < strlen(fs) ? fs[i - 1] : '*';
    if (!field_ok(want, &c->e[i], c)) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Payload heads (payload.ts): what a rule reads of the payload.

typedef struct {
  bool has_tag, has_request, has_call, call_known, features, fun;
  etf_atom_t tag, request, cm, cf;
  uint64_t call_arity;
} head_t;

static bool is_any(const etf_atom_t *a, const char *const *lits) {
  for (; *lits; lits++)
    if (etf_atom_is(a, *lits)) return true;
  return false;
}

static const char *const REX_CALLS[] = {"call", "block_call", "cast", NULL};
static const char *const SUPERVISOR_REQUESTS[] = {"which_children", "count_children", "start_child", "restart_child",
                                                  "terminate_child", "delete_child", "get_childspec", "get_callback_module", NULL};

// term.ts's properLength of a term opened at `depth` (v), read to its end.
static bool proper_length(etf_t *r, uint32_t depth, const etf_val_t *v, bool *known, uint64_t *len) {
  *known = false;
  if (v->kind == ETF_K_NIL) {
    *known = true;
    *len = 0;
    return true;
  }
  if (v->kind == ETF_K_STRING) {
    *known = true;
    *len = v->n;
    return true;
  }
  if (v->kind != ETF_K_LIST) return etf_finish(r, depth, v);
  for (uint32_t i = 0; i < v->n; i++)
    if (!etf_skip(r, depth + 1)) return false;
  etf_val_t tail;
  if (!etf_open(r, depth + 1, &tail)) return false;
  if (tail.kind == ETF_K_NIL) {
    *known = true;
    *len = v->n;
  }
  return etf_finish(r, depth + 1, &tail);
}

// An atom at `depth` (*a set if it is one), read to its end.
static bool read_atom(etf_t *r, uint32_t depth, bool *is, etf_atom_t *a) {
  etf_val_t v;
  if (!etf_open(r, depth, &v)) return false;
  *is = v.kind == ETF_K_ATOM;
  if (*is) *a = v.atom;
  return etf_finish(r, depth, &v);
}

// The Req of a gen_call/gen_cast/system/io_request at depth 1 (payload.ts's head() and rex's call).
static bool read_request(etf_t *r, head_t *h, bool gen) {
  etf_val_t q;
  if (!etf_open(r, 1, &q)) return false;
  if (q.kind == ETF_K_ATOM) {
    h->has_request = true;
    h->request = q.atom;
    return true;
  }
  if (q.kind != ETF_K_TUPLE) return etf_finish(r, 1, &q);
  bool rex = false, hm = false, hf = false;
  for (uint32_t i = 0; i < q.n; i++) {
    if (i == 0) {
      if (!read_atom(r, 2, &h->has_request, &h->request)) return false;
      rex = gen && h->has_request && q.n >= 4 && is_any(&h->request, REX_CALLS);
    } else if (rex && i == 1) {
      if (!read_atom(r, 2, &hm, &h->cm)) return false;
    } else if (rex && i == 2) {
      if (!read_atom(r, 2, &hf, &h->cf)) return false;
    } else if (rex && i == 3) {
      etf_val_t a;
      if (!etf_open(r, 2, &a) || !proper_length(r, 2, &a, &h->call_known, &h->call_arity)) return false;
    } else if (!etf_skip(r, 2)) {
      return false;
    }
  }
  h->has_call = rex && hm && hf;
  return true;
}

// payload.ts's messageHead.
static bool read_message_head(etf_t *r, head_t *h) {
  etf_val_t t;
  if (!etf_open(r, 0, &t)) return false;
  if (t.kind == ETF_K_ATOM) {
    h->has_tag = true;
    h->tag = t.atom;
    return true;
  }
  if (t.kind != ETF_K_TUPLE) return etf_finish(r, 0, &t);
  int64_t req = -1;
  bool gen = false, from_pid = false;
  for (uint32_t i = 0; i < t.n; i++) {
    if (i == 0) {
      etf_val_t e;
      if (!etf_open(r, 1, &e)) return false;
      from_pid = e.kind == ETF_K_PID;
      if (e.kind == ETF_K_ATOM) {
        h->has_tag = true;
        h->tag = e.atom;
        bool call = etf_atom_is(&e.atom, "$gen_call"), cast = etf_atom_is(&e.atom, "$gen_cast");
        gen = call || cast;
        if ((call && t.n == 3) || (etf_atom_is(&e.atom, "system") && t.n == 3)) req = 2;
        else if (cast && t.n == 2) req = 1;
        else if (etf_atom_is(&e.atom, "io_request") && t.n == 4) req = 3;
      }
      if (!etf_finish(r, 1, &e)) return false;
    } else if (i == req) {
      if (!read_request(r, h, gen)) return false;
    } else if (i == 1 && t.n == 2 && from_pid) {
      // rex's {Pid, features_request} (verdict.ts's isFeaturesRequest).
      bool is;
      etf_atom_t a;
      if (!read_atom(r, 1, &is, &a)) return false;
      h->features = is && etf_atom_is(&a, "features_request");
    } else if (!etf_skip(r, 1)) {
      return false;
    }
  }
  return true;
}

typedef enum { W_NONE, W_EXECUTE_CALL, W_EXECUTE_CAST, W_APPLY } wrapper_t;

// payload.ts's spawnHead: the function erpc or erlang:apply/2 will run.
static bool read_spawn_head(etf_t *r, head_t *h, wrapper_t w) {
  etf_val_t t;
  if (!etf_open(r, 0, &t)) return false;
  if (t.kind != ETF_K_LIST) return etf_finish(r, 0, &t);
  uint32_t at = w == W_EXECUTE_CALL ? 1 : 0;
  bool mfa = (w == W_EXECUTE_CALL || w == W_EXECUTE_CAST) && t.n >= at + 3;
  bool hm = false, hf = false;
  for (uint32_t i = 0; i < t.n; i++) {
    if (mfa && i == at) {
      if (!read_atom(r, 1, &hm, &h->cm)) return false;
    } else if (mfa && i == at + 1) {
      if (!read_atom(r, 1, &hf, &h->cf)) return false;
    } else if (mfa && i == at + 2) {
      etf_val_t a;
      if (!etf_open(r, 1, &a) || !proper_length(r, 1, &a, &h->call_known, &h->call_arity)) return false;
    } else if (w == W_APPLY && t.n == 2 && i == 0) {
      etf_val_t fn;
      if (!etf_open(r, 1, &fn)) return false;
      if (fn.kind == ETF_K_EXPORT) {
        h->has_call = h->call_known = true;
        h->cm = fn.atom;
        h->cf = fn.atom2;
        h->call_arity = (uint64_t)fn.ival;
      } else if (fn.kind == ETF_K_FUN) {
        h->fun = true;
      }
      if (!etf_finish(r, 1, &fn)) return false;
    } else if (!etf_skip(r, 1)) {
      return false;
    }
  }
  if (mfa) h->has_call = hm && hf;
  return etf_skip(r, 1);  // the tail: a list's elements are read whatever it is
}

// ---------------------------------------------------------------------------
// The verdict (verdict.ts's judge(), its passing half).

// "M:F/A" (A a decimal, or "?" unknown) as verdict.ts's mfa() writes it.
#define MFA_MAX (2 * ETF_ATOM_UTF8_MAX + 24)
static size_t mfa_text(const etf_atom_t *m, const etf_atom_t *f, bool known, int64_t arity, uint8_t *out) {
  size_t n = etf_atom_utf8(m, out);
  out[n++] = ':';
  n += etf_atom_utf8(f, out + n);
  if (known) n += (size_t)snprintf((char *)out + n, 24, "/%lld", (long long)arity);
  else n += (size_t)snprintf((char *)out + n, 24, "/?");
  return n;
}

static bool calls_has(const judge_filter_t *f, const etf_atom_t *m, const etf_atom_t *fn, bool known, int64_t arity) {
  uint8_t buf[MFA_MAX];
  size_t n = mfa_text(m, fn, known, arity, buf);
  return set_has(&f->calls, buf, n);
}

// verdict.ts's forbiddenShape: true when none.
static bool shape_ok(const judge_filter_t *f, const head_t *h) {
  if (!h->has_tag) return true;
  static const char *const FORBIDDEN[] = {"system", "io_request", "EXIT", "code_call", "stop", NULL};
  if (is_any(&h->tag, FORBIDDEN)) return false;
  if (etf_atom_is(&h->tag, "$gen_call") || etf_atom_is(&h->tag, "$gen_cast")) {
    if (h->has_request && is_any(&h->request, SUPERVISOR_REQUESTS)) return false;
    if (h->has_call && !calls_has(f, &h->cm, &h->cf, h->call_known, (int64_t)h->call_arity)) return false;
  }
  return true;
}

// verdict.ts's send(): `name` NULL for a pid or an alias.
static bool send_passes(const judge_filter_t *f, const etf_atom_t *name, const head_t *h) {
  if (name) {
    if (etf_atom_is(name, "net_kernel")) return h->has_tag && etf_atom_is(&h->tag, "$gen_call") && h->has_request && etf_atom_is(&h->request, "is_auth");
    if (etf_atom_is(name, "rex")) return h->features;
    if (etf_atom_is(name, "global_name_server") || etf_atom_is(name, "pg")) return true;
    uint8_t buf[ETF_ATOM_UTF8_MAX];
    size_t n = etf_atom_utf8(name, buf);
    if (!set_has(&f->names, buf, n)) return false;
  }
  return shape_ok(f, h);
}

static wrapper_t wrapper_of(const control_t *c, uint8_t *buf, size_t *len) {
  *len = mfa_text(&c->mfa[0].atom, &c->mfa[1].atom, true, c->mfa[2].ival, buf);
  if (*len == 19 && memcmp(buf, "erpc:execute_call/4", 19) == 0) return W_EXECUTE_CALL;
  if (*len == 19 && memcmp(buf, "erpc:execute_cast/3", 19) == 0) return W_EXECUTE_CAST;
  if (*len == 14 && memcmp(buf, "erlang:apply/2", 14) == 0) return W_APPLY;
  return W_NONE;
}

// ---------------------------------------------------------------------------
// One message (decoder.ts's decodeMessage, then judge()): true when it passes.

bool verdict_passes(const judge_filter_t *f, const uint8_t *body, size_t len, const judge_str_t *atoms, size_t n_atoms, bool magic, etf_level_t *stack) {
  etf_t r;
  if (!etf_init(&r, body, len, magic ? NULL : atoms, magic ? 0 : n_atoms, stack)) return false;
  if (magic) {
    if (r.end == 0 || body[0] != ETF_VERSION) return false;
    r.pos = 1;
  }
  control_t c;
  if (!read_control(&r, &c)) return false;
  bool more = r.pos < r.end;
  vclass_t v = c.op ? c.op->v : V_NONE;
  if (!f->full && (v == V_NONE || v == V_DENY)) return false;  // judge() denies these whatever follows
  if (c.op && c.op->payload != more) return false;              // missing_payload, unexpected_payload
  head_t h;
  memset(&h, 0, sizeof h);
  wrapper_t w = W_NONE;
  uint8_t wbuf[MFA_MAX];
  size_t wlen = 0;
  if (v == V_SPAWN) w = wrapper_of(&c, wbuf, &wlen);
  if (more) {
    if (magic) {
      if (body[r.pos] != ETF_VERSION) return false;
      r.pos++;
    }
    bool ok;
    if (f->full || v == V_PASS) ok = etf_skip(&r, 0);
    else if (v == V_SPAWN) ok = w == W_NONE ? etf_skip(&r, 0) : read_spawn_head(&r, &h, w);
    else ok = read_message_head(&r, &h);
    if (!ok) return false;
  }
  if (r.pos != r.end || r.terms > ETF_MAX_TERMS) return false;  // trailing_bytes, too_many_terms
  if (f->full) return true;
  switch (v) {
    case V_PASS:
      return true;
    case V_PID:
    case V_ALIAS:
      return send_passes(f, NULL, &h);
    case V_NAME:
      return send_passes(f, &c.e[3].atom, &h);
    case V_ALTACT:
      if (c.e[1].ival & ALTACT_FLAG_EXIT) return false;
      return send_passes(f, c.e[3].kind == ETF_K_ATOM ? &c.e[3].atom : NULL, &h);
    case V_SPAWN:
      // verdict.ts's spawned(): a wrapper runs what its arguments name, known only with a proper argument list.
      if (w == W_NONE) return set_has(&f->calls, wbuf, wlen);
      return h.has_call && h.call_known && calls_has(f, &h.cm, &h.cf, true, (int64_t)h.call_arity);
    default:
      return false;
  }
}
