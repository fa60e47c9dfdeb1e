// The native data plane's N-API binding: what src/fastpath/native.ts calls.
// It turns JS arguments into relay.h calls and reports closed links back on
// the JS thread. The relay itself is relay.c; the TLS 1.3 record layer,
// record.c; the frame scanner, frames.c.
//
// Why a native plane: on the Node path every read wakes the event loop,
// crosses into V8 and goes through TLSWrap one 16 KiB record at a time. Here
// a read of up to `readBytes` becomes one write of sealed records, in C, on a
// thread of its own. node:tls still does every handshake and every check.

#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include <node_api.h>

#include "handshake_napi.h"
#include "judge_napi.h"
#include "passfd.h"
#include "relay.h"

#define NAPI_OK(call)                                            \
  do {                                                           \
    if ((call) != napi_ok) {                                     \
      napi_throw_error(env, NULL, "fastpath: N-API call failed"); \
      return NULL;                                               \
    }                                                            \
  } while (0)

static napi_threadsafe_function on_close, on_ask;
static judge_limits_t judge_limits;

// Relay thread (or JS thread, for a hand-over that failed at once): queues the report.
static void report(link_t *l) { napi_call_threadsafe_function(on_close, l, napi_tsfn_blocking); }

// A filtered link's question for the gateway's judge, on its way to the JS thread.
typedef struct {
  uint32_t id;
  uint64_t ticket;
  uint8_t *body;
  size_t body_len;
  bool magic;
  uint32_t fragments;
  size_t n_atoms;
  judge_str_t atoms[];  // texts copied behind the array
} question_t;

// Relay thread: copies what the question points into (the judge's cache) and queues it.
static bool ask(uint32_t id, uint64_t ticket, judge_out_t *q) {
  size_t text = 0;
  for (size_t i = 0; i < q->n_atoms; i++) text += q->atoms[i].len;
  question_t *m = malloc(sizeof *m + q->n_atoms * sizeof(judge_str_t) + text);
  if (!m) {
    free(q->body);
    return false;
  }
  uint8_t *t = (uint8_t *)&m->atoms[q->n_atoms];
  for (size_t i = 0; i < q->n_atoms; i++) {
    memcpy(t, q->atoms[i].p, q->atoms[i].len);
    m->atoms[i].p = t;
    m->atoms[i].len = q->atoms[i].len;
    t += q->atoms[i].len;
  }
  m->id = id;
  m->ticket = ticket;
  m->body = q->body;
  m->body_len = q->body_len;
  m->magic = q->magic;
  m->fragments = q->fragments;
  m->n_atoms = q->n_atoms;
  q->body = NULL;
  if (napi_call_threadsafe_function(on_ask, m, napi_tsfn_blocking) != napi_ok) {
    free(m->body);
    free(m);
    return false;
  }
  return true;
}

static void free_body(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

// JS thread: calls onAsk(id, ticket, body, magic, atoms, fragments).
static void call_js_ask(napi_env env, napi_value cb, void *ctx, void *data) {
  (void)ctx;
  question_t *m = data;
  if (env != NULL) {
    napi_value argv[6], undef;
    napi_get_undefined(env, &undef);
    napi_create_uint32(env, m->id, &argv[0]);
    napi_create_double(env, (double)m->ticket, &argv[1]);
    // The body moves to JS without a copy: it can be a whole reassembled message.
    if (m->body_len == 0 || napi_create_external_buffer(env, m->body_len, m->body, free_body, NULL, &argv[2]) != napi_ok) {
      void *d;
      napi_create_buffer_copy(env, m->body_len, m->body_len ? m->body : (const uint8_t *)"", &d, &argv[2]);
      free(m->body);
    }
    m->body = NULL;
    napi_get_boolean(env, m->magic, &argv[3]);
    napi_create_array_with_length(env, m->n_atoms, &argv[4]);
    for (size_t i = 0; i < m->n_atoms; i++) {
      napi_value a;
      napi_create_string_utf8(env, (const char *)m->atoms[i].p, m->atoms[i].len, &a);
      napi_set_element(env, argv[4], (uint32_t)i, a);
    }
    napi_create_uint32(env, m->fragments, &argv[5]);
    napi_call_function(env, undef, cb, 6, argv, NULL);
  }
  free(m->body);
  free(m);
}

static void set_buffer(napi_env env, napi_value obj, const char *key, const uint8_t *p, size_t n) {
  napi_value v;
  void *data = NULL;
  // A copy: the link's buffers are freed with it, right after this call.
  if (napi_create_buffer_copy(env, n, n ? p : (const uint8_t *)"", &data, &v) == napi_ok) napi_set_named_property(env, obj, key, v);
}

static void set_number(napi_env env, napi_value obj, const char *key, double d) {
  napi_value v;
  if (napi_create_double(env, d, &v) == napi_ok) napi_set_named_property(env, obj, key, v);
}

static napi_value scan_object(napi_env env, const frame_scan_t *s) {
  napi_value o;
  napi_create_object(env, &o);
  set_number(env, o, "remaining", s->remaining);
  set_number(env, o, "header", s->header);
  set_number(env, o, "headerBytes", s->header_bytes);
  return o;
}

// A detached link's state, in the shape adopt() takes (with the counters beside it).
static napi_value export_object(napi_env env, const relay_export_t *x) {
  napi_value o;
  napi_create_object(env, &o);
  set_number(env, o, "localFd", x->local_fd);
  set_number(env, o, "remoteFd", x->remote_fd);
  set_buffer(env, o, "txSecret", x->tx_secret, x->secret_len);
  set_buffer(env, o, "rxSecret", x->rx_secret, x->secret_len);
  set_number(env, o, "txSeq", (double)x->tx_seq);
  set_number(env, o, "rxSeq", (double)x->rx_seq);
  set_number(env, o, "txUpdates", (double)x->tx_updates);
  set_number(env, o, "rxUpdates", (double)x->rx_updates);
  set_buffer(env, o, "sealedToRemote", x->sealed_to_remote, x->sealed_to_remote_len);
  set_buffer(env, o, "walkedToLocal", x->walked_to_local, x->walked_to_local_len);
  set_buffer(env, o, "fromRemote", x->from_remote, x->from_remote_len);
  set_buffer(env, o, "rxHandshake", x->rx_handshake, x->rx_handshake_len);
  napi_set_named_property(env, o, "outScan", scan_object(env, &x->out_scan));
  napi_set_named_property(env, o, "inScan", scan_object(env, &x->in_scan));
  return o;
}

// JS thread: calls onClose(id, reason, ...counters, detached), then frees the link.
static void call_js_close(napi_env env, napi_value cb, void *ctx, void *data) {
  (void)ctx;
  link_t *l = data;
  if (env != NULL) {
    napi_value argv[3 + RELAY_COUNTERS], undef;
    uint64_t c[RELAY_COUNTERS];
    relay_export_t x;
    relay_link_counters(l, c);
    napi_get_undefined(env, &undef);
    napi_create_uint32(env, relay_link_id(l), &argv[0]);
    napi_create_string_utf8(env, relay_link_reason(l), NAPI_AUTO_LENGTH, &argv[1]);
    for (int i = 0; i < RELAY_COUNTERS; i++) napi_create_double(env, (double)c[i], &argv[2 + i]);
    argv[2 + RELAY_COUNTERS] = relay_link_detached(l, &x) ? export_object(env, &x) : undef;
    napi_call_function(env, undef, cb, 3 + RELAY_COUNTERS, argv, NULL);
  }
  relay_release(l);
}

static bool get_prop(napi_env env, napi_value obj, const char *key, napi_value *out) {
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return false;
  return napi_get_named_property(env, obj, key, out) == napi_ok;
}

static bool get_u32(napi_env env, napi_value obj, const char *key, uint32_t *out) {
  napi_value v;
  napi_valuetype t;
  // napi_get_value_uint32 wraps numbers past 2^32: only integers in range are taken.
  double d;
  if (!get_prop(env, obj, key, &v) || napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_double(env, v, &d) != napi_ok)
    return false;
  if (!(d >= 0 && d <= 4294967295.0) || d != (double)(uint32_t)d) return false;
  *out = (uint32_t)d;
  return true;
}

static bool get_u64(napi_env env, napi_value obj, const char *key, uint64_t *out) {
  napi_value v;
  double d;
  if (!get_prop(env, obj, key, &v) || napi_get_value_double(env, v, &d) != napi_ok) return false;
  // Exact integers only (2^53): sequence numbers and counters come from JS numbers.
  if (!(d >= 0 && d <= 9007199254740991.0) || d != (double)(uint64_t)d) return false;
  *out = (uint64_t)d;
  return true;
}

static bool get_bool(napi_env env, napi_value obj, const char *key, bool *out) {
  napi_value v;
  return get_prop(env, obj, key, &v) && napi_get_value_bool(env, v, out) == napi_ok;
}

static bool get_buf(napi_env env, napi_value obj, const char *key, const uint8_t **data, size_t *len) {
  napi_value v;
  void *p = NULL;
  if (!get_prop(env, obj, key, &v) || napi_get_buffer_info(env, v, &p, len) != napi_ok) return false;
  *data = p;
  return true;
}

// An optional buffer: absent is empty.
static bool get_opt_buf(napi_env env, napi_value obj, const char *key, const uint8_t **data, size_t *len) {
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok) return false;
  if (!has) {
    *data = NULL;
    *len = 0;
    return true;
  }
  return get_buf(env, obj, key, data, len);
}

static bool get_str(napi_env env, napi_value obj, const char *key, char *buf, size_t cap) {
  napi_value v;
  size_t n = 0;
  return get_prop(env, obj, key, &v) && napi_get_value_string_utf8(env, v, buf, cap, &n) == napi_ok && n < cap - 1;
}

// A direction's scanner state; with `handshake` ({side: 1 initiator | 2 acceptor, index, maxMessage, expect,
// hidden}: the messages the gateway walked, the link's limits.maxHandshakeMessageBytes, and the acceptor's
// expected name as latin1 bytes) one still in its distribution handshake.
static bool get_scan(napi_env env, napi_value obj, const char *key, frame_scan_t *s, uint64_t *frames, uint64_t *ticks) {
  napi_value o, h;
  if (!(get_prop(env, obj, key, &o) && get_u32(env, o, "remaining", &s->remaining) && get_u32(env, o, "header", &s->header) &&
        get_u32(env, o, "headerBytes", &s->header_bytes) && s->header_bytes <= 3 && get_u64(env, o, "frames", frames) &&
        get_u64(env, o, "ticks", ticks)))
    return false;
  if (!get_prop(env, o, "handshake", &h)) return true;
  uint32_t side = 0, index = 0, max_message = 0;
  bool hidden = false;
  const uint8_t *expect = NULL;
  size_t expect_len = 0;
  // Nothing of a frame is walked before the handshake is over.
  return s->remaining == 0 && s->header_bytes == 0 && *frames == 0 && *ticks == 0 && get_u32(env, h, "side", &side) &&
         get_u32(env, h, "index", &index) && get_u32(env, h, "maxMessage", &max_message) && get_opt_buf(env, h, "expect", &expect, &expect_len) && get_bool(env, h, "hidden", &hidden) &&
         (side == HS_INITIATOR || side == HS_ACCEPTOR) &&
         hs_init(&s->hs, (hs_side_t)side, index, max_message, (const char *)expect, expect_len, hidden);
}

// {full, names, calls} -> a judge filter, or NULL (a type error is thrown, or out of memory).
static judge_filter_t *get_filter(napi_env env, napi_value o) {
  bool full = false;
  judge_str_t *names = NULL, *calls = NULL;
  size_t nn = 0, nc = 0;
  judge_filter_t *f = NULL;
  if (get_bool(env, o, "full", &full) && judge_napi_strings(env, o, "names", &names, &nn) && judge_napi_strings(env, o, "calls", &calls, &nc))
    f = judge_filter_new(full, names, nn, calls, nc);
  judge_napi_free_strings(names, nn);
  judge_napi_free_strings(calls, nc);
  return f;
}

// init(onClose, {readBytes, rekeyRecords, maxHandshakeMessageBytes, maxFilterHeldBytes,
//       maxFragmentSequences, maxFragmentBytes, maxFragments, maxMessageBytes}, onAsk): starts the relay thread once.
static napi_value js_init(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t rb = 0, hs = 0, seqs = 0;
  uint64_t rekey = 0, held = 0;
  napi_valuetype ask_type = napi_undefined;
  if (argc < 3 || !get_u32(env, argv[1], "readBytes", &rb) || !get_u64(env, argv[1], "rekeyRecords", &rekey) ||
      !get_u32(env, argv[1], "maxHandshakeMessageBytes", &hs) || !get_u64(env, argv[1], "maxFilterHeldBytes", &held) ||
      !get_u32(env, argv[1], "maxFragmentSequences", &seqs) || !get_u64(env, argv[1], "maxFragmentBytes", &judge_limits.max_fragment_bytes) ||
      !get_u64(env, argv[1], "maxFragments", &judge_limits.max_fragments) ||
      !get_u64(env, argv[1], "maxMessageBytes", &judge_limits.max_message_bytes) || napi_typeof(env, argv[2], &ask_type) != napi_ok ||
      ask_type != napi_function) {
    napi_throw_type_error(env, NULL,
                          "fastpath: init(onClose, {readBytes, rekeyRecords, maxHandshakeMessageBytes, maxFilterHeldBytes, maxFragmentSequences, "
                          "maxFragmentBytes, maxFragments, maxMessageBytes}, onAsk)");
    return NULL;
  }
  judge_limits.max_sequences = seqs;
  napi_value name, ask_name;
  NAPI_OK(napi_create_string_utf8(env, "beamgate-fastpath-close", NAPI_AUTO_LENGTH, &name));
  NAPI_OK(napi_create_string_utf8(env, "beamgate-fastpath-ask", NAPI_AUTO_LENGTH, &ask_name));
  NAPI_OK(napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_js_close, &on_close));
  NAPI_OK(napi_create_threadsafe_function(env, argv[2], NULL, ask_name, 0, 1, NULL, NULL, NULL, call_js_ask, &on_ask));
  relay_config_t cfg = {.read_bytes = rb, .rekey_records = rekey, .max_hs_message = hs, .report = report, .ask = ask, .max_gate_held = held};
  char err[160];
  if (!relay_start(&cfg, err, sizeof err)) {
    napi_release_threadsafe_function(on_close, napi_tsfn_abort);
    napi_release_threadsafe_function(on_ask, napi_tsfn_abort);
    char msg[200];
    snprintf(msg, sizeof msg, "fastpath: %s", err);
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  // The relay thread must never keep the process alive on its own.
  NAPI_OK(napi_unref_threadsafe_function(env, on_close));
  NAPI_OK(napi_unref_threadsafe_function(env, on_ask));
  return NULL;
}

// adopt({localFd, remoteFd, cipher, hash, txSecret, txSeq, rxSecret, rxSeq, client,
//        toRemote, toLocal, fromRemote, outScan, inScan, maxFrameBytes, closeGraceMs}) -> id
static napi_value js_adopt(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value o;
  NAPI_OK(napi_get_cb_info(env, info, &argc, &o, NULL, NULL));
  relay_adopt_t a;
  memset(&a, 0, sizeof a);
  char cipher[32], hash[16];
  uint32_t lfd = 0, rfd = 0, max_frame = 0;
  bool ok = argc == 1 && get_u32(env, o, "localFd", &lfd) && get_u32(env, o, "remoteFd", &rfd) && lfd <= INT32_MAX && rfd <= INT32_MAX &&
            get_str(env, o, "cipher", cipher, sizeof cipher) && get_str(env, o, "hash", hash, sizeof hash) &&
            get_buf(env, o, "txSecret", &a.tx_secret, &a.tx_secret_len) && get_u64(env, o, "txSeq", &a.tx_seq) &&
            get_buf(env, o, "rxSecret", &a.rx_secret, &a.rx_secret_len) && get_u64(env, o, "rxSeq", &a.rx_seq) &&
            get_bool(env, o, "client", &a.client) && get_buf(env, o, "toRemote", &a.to_remote, &a.to_remote_len) &&
            get_buf(env, o, "toLocal", &a.to_local, &a.to_local_len) && get_buf(env, o, "fromRemote", &a.from_remote, &a.from_remote_len) &&
            get_scan(env, o, "outScan", &a.out_scan, &a.out_frames, &a.out_ticks) &&
            get_scan(env, o, "inScan", &a.in_scan, &a.in_frames, &a.in_ticks) && get_u32(env, o, "maxFrameBytes", &max_frame) &&
            get_u32(env, o, "closeGraceMs", &a.grace_ms) &&
            get_opt_buf(env, o, "sealedToRemote", &a.sealed_to_remote, &a.sealed_to_remote_len) &&
            get_opt_buf(env, o, "walkedToLocal", &a.walked_to_local, &a.walked_to_local_len) &&
            get_opt_buf(env, o, "rxHandshake", &a.rx_handshake, &a.rx_handshake_len);
  if (!ok) {
    napi_throw_type_error(env, NULL, "fastpath: bad adopt arguments");
    return NULL;
  }
  a.local_fd = (int)lfd;
  a.remote_fd = (int)rfd;
  a.cipher = cipher;
  a.hash = hash;
  a.out_scan.max_frame = a.in_scan.max_frame = max_frame;
  napi_value fo;
  if (get_prop(env, o, "filter", &fo)) {
    // A filtered link: {full, names, calls, atoms: [[slot, text], ...]} (the atoms the JS judge's cache held until now).
    judge_filter_t *f = get_filter(env, fo);
    judge_t *j = f ? judge_new(&judge_limits) : NULL;
    a.gate = j ? gate_new(j, f, max_frame) : NULL;
    if (!a.gate) {
      if (j) judge_free(j);
      judge_filter_free(f);
      napi_throw_error(env, NULL, "fastpath: bad filter, or out of memory for it");
      return NULL;
    }
    napi_value seeds;
    bool is = false;
    uint32_t n = 0;
    ok = get_prop(env, fo, "atoms", &seeds) && napi_is_array(env, seeds, &is) == napi_ok && is && napi_get_array_length(env, seeds, &n) == napi_ok;
    for (uint32_t i = 0; ok && i < n; i++) {
      napi_value pair, slot, text;
      uint32_t sl = 0;
      char buf[1024];
      size_t len = 0;
      ok = napi_get_element(env, seeds, i, &pair) == napi_ok && napi_get_element(env, pair, 0, &slot) == napi_ok &&
           napi_get_value_uint32(env, slot, &sl) == napi_ok && napi_get_element(env, pair, 1, &text) == napi_ok &&
           napi_get_value_string_utf8(env, text, buf, sizeof buf, &len) == napi_ok && len < sizeof buf - 1 &&
           judge_seed_atom(j, sl, (const uint8_t *)buf, len);
    }
    if (!ok) {
      gate_free(a.gate);
      napi_throw_type_error(env, NULL, "fastpath: bad filter atoms");
      return NULL;
    }
  }
  char err[200];
  long id = relay_adopt(&a, err, sizeof err);
  if (id < 0) {
    gate_free(a.gate);
    char msg[240];
    snprintf(msg, sizeof msg, "fastpath: %s", err);
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  napi_value res;
  NAPI_OK(napi_create_uint32(env, (uint32_t)id, &res));
  return res;
}

// close(id, abortive) -> whether such a link was open; its close is reported as usual.
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], res;
  uint32_t id;
  bool abortive;
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  NAPI_OK(napi_get_value_uint32(env, argv[0], &id));
  NAPI_OK(napi_get_value_bool(env, argv[1], &abortive));
  NAPI_OK(napi_get_boolean(env, relay_close(id, abortive), &res));
  return res;
}

// answer(id, ticket, pass, inject?) -> whether such a filtered link was open.
static napi_value js_answer(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], res;
  uint32_t id;
  double ticket;
  bool pass;
  void *inject = NULL;
  size_t inject_len = 0;
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3 || napi_get_value_uint32(env, argv[0], &id) != napi_ok || napi_get_value_double(env, argv[1], &ticket) != napi_ok ||
      napi_get_value_bool(env, argv[2], &pass) != napi_ok || !(ticket >= 1 && ticket <= 9007199254740991.0)) {
    napi_throw_type_error(env, NULL, "fastpath: answer(id, ticket, pass, inject?)");
    return NULL;
  }
  napi_valuetype t = napi_undefined;
  if (argc >= 4) NAPI_OK(napi_typeof(env, argv[3], &t));
  if (t != napi_undefined) NAPI_OK(napi_get_buffer_info(env, argv[3], &inject, &inject_len));
  NAPI_OK(napi_get_boolean(env, relay_answer(id, (uint64_t)ticket, pass, inject, inject_len), &res));
  return res;
}

// refilter(id, {full, names, calls}) -> whether such a filtered link was open.
static napi_value js_refilter(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], res;
  uint32_t id;
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || napi_get_value_uint32(env, argv[0], &id) != napi_ok) {
    napi_throw_type_error(env, NULL, "fastpath: refilter(id, filter)");
    return NULL;
  }
  judge_filter_t *f = get_filter(env, argv[1]);
  if (!f) {
    napi_throw_error(env, NULL, "fastpath: bad filter, or out of memory for it");
    return NULL;
  }
  NAPI_OK(napi_get_boolean(env, relay_refilter(id, f), &res));
  return res;
}

// detach(id) -> whether such a link was open; it is reported closed with its state, or ends as usual.
static napi_value js_detach(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], res;
  uint32_t id;
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  NAPI_OK(napi_get_value_uint32(env, argv[0], &id));
  NAPI_OK(napi_get_boolean(env, relay_detach(id), &res));
  return res;
}

// stats(id) -> the RELAY_COUNTERS counters, or undefined once the link is gone.
static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], arr, undef;
  uint32_t id;
  uint64_t c[RELAY_COUNTERS];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  NAPI_OK(napi_get_value_uint32(env, argv[0], &id));
  NAPI_OK(napi_get_undefined(env, &undef));
  if (!relay_stats(id, c)) return undef;
  NAPI_OK(napi_create_array_with_length(env, RELAY_COUNTERS, &arr));
  for (uint32_t i = 0; i < RELAY_COUNTERS; i++) {
    napi_value x;
    NAPI_OK(napi_create_double(env, (double)c[i], &x));
    NAPI_OK(napi_set_element(env, arr, i, x));
  }
  return arr;
}

// buffered() -> bytes all links hold in buffers (relay_buffered).
static napi_value js_buffered(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value res;
  NAPI_OK(napi_create_double(env, (double)relay_buffered(), &res));
  return res;
}

// filterHeld() -> bytes filtered links hold for messages not yet judged (relay_gate_held).
static napi_value js_filter_held(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value res;
  NAPI_OK(napi_create_double(env, (double)relay_gate_held(), &res));
  return res;
}

// trim() -> whether glibc gave memory back: freed heap pages at the top and inside every arena.
static napi_value js_trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value res;
  NAPI_OK(napi_get_boolean(env, malloc_trim(0) == 1, &res));
  return res;
}

// handshaking(id) -> whether a link handed over in its distribution handshake still walks it, or undefined once gone.
static napi_value js_handshaking(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], res;
  uint32_t id;
  bool hs = false;
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  NAPI_OK(napi_get_value_uint32(env, argv[0], &id));
  if (!relay_handshaking(id, &hs)) {
    NAPI_OK(napi_get_undefined(env, &res));
    return res;
  }
  NAPI_OK(napi_get_boolean(env, hs, &res));
  return res;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"init", NULL, js_init, NULL, NULL, NULL, napi_default, NULL},
      {"adopt", NULL, js_adopt, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"detach", NULL, js_detach, NULL, NULL, NULL, napi_default, NULL},
      {"answer", NULL, js_answer, NULL, NULL, NULL, napi_default, NULL},
      {"refilter", NULL, js_refilter, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_default, NULL},
      {"handshaking", NULL, js_handshaking, NULL, NULL, NULL, napi_default, NULL},
      {"buffered", NULL, js_buffered, NULL, NULL, NULL, napi_default, NULL},
      {"filterHeld", NULL, js_filter_held, NULL, NULL, NULL, napi_default, NULL},
      {"trim", NULL, js_trim, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  // Descriptor passing for a take-over (passfd.c): under `passfd`.
  if (!passfd_define(env, exports)) return NULL;
  // The native judge alone, for its tests against the TypeScript one: under `judge`.
  if (!judge_napi_init(env, exports)) return NULL;
  // The handshake walker alone, for its tests against the TypeScript one: under `handshake`.
  if (!handshake_napi_init(env, exports)) return NULL;
  return exports;
}
