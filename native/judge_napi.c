// The native judge on its own, for its tests (test/native/judge.test.ts):
//   judgeFrames(frames: Buffer[], filter: {full, names, calls}, seeds?: [slot, text][])
// runs one judge (default limits, as src/dist/fragments.ts's) over the
// frames (each without its 4-byte length), so the atom cache and fragments
// carry from frame to frame, and returns one result per frame:
//   {verdict: 'pass'|'hold'|'ask'|'fail', earlier?, body?, magic?, atoms?, code?, reason?}
// `earlier` is how many frames the judge handed back to go before this one.
// Not the relay's path: that is gate.c on the relay thread. Built into
// build/fastpath.node, and on its own (-DJUDGE_STANDALONE) into a test module.

#include "judge_napi.h"

#include <stdlib.h>
#include <string.h>

#include "judge.h"

// src/config/limits.ts: DIST_MAX_FRAGMENT_SEQUENCES, DIST_MAX_FRAGMENT_BYTES,
// DIST_MAX_FRAGMENTS_PER_MESSAGE, DIST_MAX_MESSAGE_BYTES.
#define TEST_MAX_SEQUENCES 256
#define TEST_MAX_FRAGMENT_BYTES (256ull * 1024 * 1024)
#define TEST_MAX_FRAGMENTS (1024ull * 1024)
#define TEST_MAX_MESSAGE_BYTES (256ull * 1024 * 1024)

static napi_value type_error(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

// See judge_napi.h.
bool judge_napi_strings(napi_env env, napi_value obj, const char *key, judge_str_t **out, size_t *n) {
  napi_value arr;
  bool is = false;
  uint32_t len = 0;
  *out = NULL;
  *n = 0;
  if (napi_get_named_property(env, obj, key, &arr) != napi_ok || napi_is_array(env, arr, &is) != napi_ok || !is ||
      napi_get_array_length(env, arr, &len) != napi_ok)
    return false;
  judge_str_t *v = calloc(len ? len : 1, sizeof *v);
  if (!v) return false;
  *out = v;
  for (uint32_t i = 0; i < len; i++) {
    napi_value e;
    size_t bytes = 0;
    if (napi_get_element(env, arr, i, &e) != napi_ok || napi_get_value_string_utf8(env, e, NULL, 0, &bytes) != napi_ok) return false;
    char *t = malloc(bytes + 1);
    if (!t || napi_get_value_string_utf8(env, e, t, bytes + 1, &bytes) != napi_ok) {
      free(t);
      return false;
    }
    v[i].p = (const uint8_t *)t;
    v[i].len = bytes;
    *n = i + 1;
  }
  return true;
}

void judge_napi_free_strings(judge_str_t *v, size_t n) {
  for (size_t i = 0; i < n; i++) free((void *)v[i].p);
  free(v);
}

static bool set_str(napi_env env, napi_value o, const char *key, const char *s, size_t len) {
  napi_value v;
  return napi_create_string_utf8(env, s, len, &v) == napi_ok && napi_set_named_property(env, o, key, v) == napi_ok;
}

// One frame's result object.
static napi_value result(napi_env env, judge_verdict_t v, const judge_out_t *q) {
  static const char *const NAMES[] = {"pass", "hold", "ask", "fail"};
  napi_value o, x;
  if (napi_create_object(env, &o) != napi_ok || !set_str(env, o, "verdict", NAMES[v], NAPI_AUTO_LENGTH)) return NULL;
  if (v == JUDGE_PASS || v == JUDGE_ASK) {
    // The earlier frames, each after its length: count them, and check they tile the buffer exactly.
    uint32_t count = 0;
    size_t at = 0;
    while (at + 4 <= q->earlier_len) {
      size_t fl = ((size_t)q->earlier[at] << 24) | ((size_t)q->earlier[at + 1] << 16) | ((size_t)q->earlier[at + 2] << 8) | q->earlier[at + 3];
      at += 4 + fl;
      count++;
    }
    if (at != q->earlier_len) {
      napi_throw_error(env, NULL, "judge: earlier frames do not tile their buffer");
      return NULL;
    }
    if (q->earlier_len && (napi_create_uint32(env, count, &x) != napi_ok || napi_set_named_property(env, o, "earlier", x) != napi_ok)) return NULL;
    if (napi_create_uint32(env, q->fragments, &x) != napi_ok || napi_set_named_property(env, o, "fragments", x) != napi_ok) return NULL;
  }
  if (v == JUDGE_ASK) {
    void *data;
    if (napi_create_buffer_copy(env, q->body_len, q->body_len ? q->body : (const uint8_t *)"", &data, &x) != napi_ok ||
        napi_set_named_property(env, o, "body", x) != napi_ok)
      return NULL;
    if (napi_get_boolean(env, q->magic, &x) != napi_ok || napi_set_named_property(env, o, "magic", x) != napi_ok) return NULL;
    napi_value atoms;
    if (napi_create_array_with_length(env, q->n_atoms, &atoms) != napi_ok) return NULL;
    for (size_t i = 0; i < q->n_atoms; i++) {
      if (napi_create_string_utf8(env, (const char *)q->atoms[i].p, q->atoms[i].len, &x) != napi_ok || napi_set_element(env, atoms, (uint32_t)i, x) != napi_ok)
        return NULL;
    }
    if (napi_set_named_property(env, o, "atoms", atoms) != napi_ok) return NULL;
  }
  if (v == JUDGE_FAIL && (!set_str(env, o, "code", q->code, NAPI_AUTO_LENGTH) || !set_str(env, o, "reason", q->reason, NAPI_AUTO_LENGTH))) return NULL;
  return o;
}

static napi_value js_judge_frames(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], res = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) return type_error(env, "judgeFrames(frames, filter, seeds?)");
  bool is = false, full = false;
  uint32_t n = 0;
  napi_value fv;
  if (napi_is_array(env, argv[0], &is) != napi_ok || !is || napi_get_array_length(env, argv[0], &n) != napi_ok)
    return type_error(env, "judgeFrames: frames must be an array of Buffers");
  if (napi_get_named_property(env, argv[1], "full", &fv) != napi_ok || napi_get_value_bool(env, fv, &full) != napi_ok)
    return type_error(env, "judgeFrames: filter.full must be a boolean");
  judge_str_t *names = NULL, *calls = NULL;
  size_t nn = 0, nc = 0;
  judge_filter_t *f = NULL;
  if (judge_napi_strings(env, argv[1], "names", &names, &nn) && judge_napi_strings(env, argv[1], "calls", &calls, &nc)) f = judge_filter_new(full, names, nn, calls, nc);
  judge_napi_free_strings(names, nn);
  judge_napi_free_strings(calls, nc);
  if (!f) return type_error(env, "judgeFrames: filter must be {full, names: string[], calls: string[]}");
  judge_limits_t limits = {TEST_MAX_SEQUENCES, TEST_MAX_FRAGMENT_BYTES, TEST_MAX_FRAGMENTS, TEST_MAX_MESSAGE_BYTES};
  judge_t *j = judge_new(&limits);
  if (!j) {
    judge_filter_free(f);
    napi_throw_error(env, NULL, "judgeFrames: out of memory");
    return NULL;
  }
  napi_valuetype st = napi_undefined;
  if (argc >= 3 && napi_typeof(env, argv[2], &st) == napi_ok && st != napi_undefined) {
    uint32_t ns = 0;
    if (napi_is_array(env, argv[2], &is) != napi_ok || !is || napi_get_array_length(env, argv[2], &ns) != napi_ok) goto bad_seeds;
    for (uint32_t i = 0; i < ns; i++) {
      napi_value pair, slot, text;
      uint32_t sl = 0;
      char buf[1100];
      size_t len = 0;
      if (napi_get_element(env, argv[2], i, &pair) != napi_ok || napi_get_element(env, pair, 0, &slot) != napi_ok ||
          napi_get_value_uint32(env, slot, &sl) != napi_ok || napi_get_element(env, pair, 1, &text) != napi_ok ||
          napi_get_value_string_utf8(env, text, buf, sizeof buf, &len) != napi_ok || len >= sizeof buf - 1 || !judge_seed_atom(j, sl, (const uint8_t *)buf, len))
        goto bad_seeds;
    }
  }
  if (napi_create_array_with_length(env, n, &res) != napi_ok) goto done;
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    void *data = NULL;
    size_t len = 0;
    if (napi_get_element(env, argv[0], i, &e) != napi_ok || napi_get_buffer_info(env, e, &data, &len) != napi_ok) {
      res = type_error(env, "judgeFrames: frames must be an array of Buffers");
      goto done;
    }
    judge_out_t q;
    judge_verdict_t v = judge_frame(j, f, data, len, &q);
    napi_value o = result(env, v, &q);
    free(q.earlier);
    free(q.body);
    if (!o || napi_set_element(env, res, i, o) != napi_ok) {
      res = NULL;
      goto done;
    }
  }
done:
  judge_free(j);
  judge_filter_free(f);
  return res;
bad_seeds:
  judge_free(j);
  judge_filter_free(f);
  return type_error(env, "judgeFrames: seeds must be [slot, atom text][] the judge takes");
}

napi_value judge_napi_init(napi_env env, napi_value exports) {
  napi_value fn, obj;
  if (napi_create_function(env, "judgeFrames", NAPI_AUTO_LENGTH, js_judge_frames, NULL, &fn) != napi_ok || napi_create_object(env, &obj) != napi_ok ||
      napi_set_named_property(env, obj, "judgeFrames", fn) != napi_ok || napi_set_named_property(env, exports, "judge", obj) != napi_ok ||
      napi_set_named_property(env, exports, "judgeFrames", fn) != napi_ok)
    return NULL;
  return exports;
}

#ifdef JUDGE_STANDALONE
// The test module alone (build/judge-test.node): the judge without the relay.
NAPI_MODULE_INIT() { return judge_napi_init(env, exports); }
#endif
