// The distribution handshake walker (handshake.c) alone, for its tests
// against the TypeScript one (test/native/handshake.test.ts):
//   handshake.walk(side, index, expect, hidden, maxMessage, chunks)
// sets up a frame scanner whose handshake walker is hs_init(side (1
// initiator, 2 acceptor), index (messages already walked), expect (the
// acceptor's expected name, latin1 bytes), hidden, maxMessage) and an
// unbounded frame limit, feeds it the chunks (Buffers) one by one through
// frames_scan, as the relay thread does, and returns
//   {ok: true, done, framesFrom, frames, ticks}   framesFrom: the offset into
//                                                 the chunks' concatenation where frames begin, or -1
//   {ok: false, reason: "refused:CODE:detail", chunk}   at the first refusal (in chunks[chunk]);
//                                                       the detail's names are latin1, as they came
// A TypeError if hs_init refuses the arguments. Each chunk is also walked by
// hs_walk on a copy of the walker, to learn where frames begin; the two must
// agree, or it throws. Not the relay's path; built into build/fastpath.node.

#include "handshake_napi.h"

#include <stdint.h>
#include <string.h>

#include "frames.h"
#include "handshake.h"

// Room for the longest detail handshake.c writes (two names of HS_NAME_MAX), so tests see it whole.
#define WALK_REASON_LEN (2 * HS_NAME_MAX + 128)

static napi_value type_error(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static bool get_uint(napi_env env, napi_value v, double max, uint32_t *out) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0)) return false;
  // Past `max`: the largest value, which hs_init judges (refuses) itself.
  if (d > max) {
    *out = (uint32_t)max;
    return true;
  }
  *out = (uint32_t)d;
  return d == (double)*out;
}

static bool set_num(napi_env env, napi_value o, const char *key, double d) {
  napi_value v;
  return napi_create_double(env, d, &v) == napi_ok && napi_set_named_property(env, o, key, v) == napi_ok;
}

static bool set_bool(napi_env env, napi_value o, const char *key, bool b) {
  napi_value v;
  return napi_get_boolean(env, b, &v) == napi_ok && napi_set_named_property(env, o, key, v) == napi_ok;
}

static napi_value js_walk(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6], res;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6)
    return type_error(env, "walk(side, index, expect, hidden, maxMessage, chunks)");
  uint32_t side = 0, index = 0, max_message = 0;
  bool hidden = false, is = false;
  void *expect = NULL;
  size_t expect_len = 0;
  uint32_t n = 0;
  if (!get_uint(env, argv[0], 255, &side) || !get_uint(env, argv[1], UINT32_MAX, &index) || napi_get_buffer_info(env, argv[2], &expect, &expect_len) != napi_ok ||
      napi_get_value_bool(env, argv[3], &hidden) != napi_ok || !get_uint(env, argv[4], UINT32_MAX, &max_message) ||
      napi_is_array(env, argv[5], &is) != napi_ok || !is || napi_get_array_length(env, argv[5], &n) != napi_ok)
    return type_error(env, "walk(side: number, index: number, expect: Buffer, hidden: boolean, maxMessage: number, chunks: Buffer[])");
  frame_scan_t s;
  memset(&s, 0, sizeof s);
  s.max_frame = UINT64_MAX;
  if (!hs_init(&s.hs, (hs_side_t)side, index, max_message, (const char *)expect, expect_len, hidden))
    return type_error(env, "walk: hs_init refused the arguments");
  uint64_t frames = 0, ticks = 0;
  double base = 0, frames_from = -1;
  for (uint32_t c = 0; c < n; c++) {
    napi_value e;
    void *data = NULL;
    size_t len = 0;
    if (napi_get_element(env, argv[5], c, &e) != napi_ok || napi_get_buffer_info(env, e, &data, &len) != napi_ok)
      return type_error(env, "walk: chunks must be an array of Buffers");
    const uint8_t *p = len ? data : NULL;
    char reason[WALK_REASON_LEN] = "", probe_reason[WALK_REASON_LEN] = "";
    bool walking = s.hs.side != HS_DONE, probe_ok = true;
    hs_walk_t probe;
    size_t used = 0;
    if (walking) {
      memcpy(&probe, &s.hs, sizeof probe);
      probe_ok = hs_walk(&probe, p, len, &used, probe_reason, sizeof probe_reason);
    }
    bool ok = frames_scan(&s, p, len, &frames, &ticks, reason, sizeof reason);
    if (walking && (ok != probe_ok || (ok ? memcmp(&probe, &s.hs, sizeof probe) != 0 : strcmp(reason, probe_reason) != 0))) {
      napi_throw_error(env, NULL, "walk: frames_scan and hs_walk disagree on the same bytes");
      return NULL;
    }
    if (!ok) {
      napi_value r;
      if (napi_create_object(env, &res) != napi_ok || !set_bool(env, res, "ok", false) ||
          napi_create_string_latin1(env, reason, NAPI_AUTO_LENGTH, &r) != napi_ok || napi_set_named_property(env, res, "reason", r) != napi_ok ||
          !set_num(env, res, "chunk", c))
        return NULL;
      return res;
    }
    if (walking && s.hs.side == HS_DONE) frames_from = base + (double)used;
    base += (double)len;
  }
  if (napi_create_object(env, &res) != napi_ok || !set_bool(env, res, "ok", true) || !set_bool(env, res, "done", s.hs.side == HS_DONE) ||
      !set_num(env, res, "framesFrom", frames_from) || !set_num(env, res, "frames", (double)frames) || !set_num(env, res, "ticks", (double)ticks))
    return NULL;
  return res;
}

napi_value handshake_napi_init(napi_env env, napi_value exports) {
  napi_value fn, obj;
  if (napi_create_function(env, "walk", NAPI_AUTO_LENGTH, js_walk, NULL, &fn) != napi_ok || napi_create_object(env, &obj) != napi_ok ||
      napi_set_named_property(env, obj, "walk", fn) != napi_ok || napi_set_named_property(env, exports, "handshake", obj) != napi_ok)
    return NULL;
  return exports;
}
