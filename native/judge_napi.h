// The native judge's test-only N-API surface (judge_napi.c): exports.judge.judgeFrames
// (and exports.judgeFrames), which test/native/judge.test.ts runs against the TypeScript judge.

#ifndef BEAMGATE_JUDGE_NAPI_H
#define BEAMGATE_JUDGE_NAPI_H

#include <node_api.h>

// Adds the exports to `exports`; returns it, or NULL when that failed (an exception is pending).
napi_value judge_napi_init(napi_env env, napi_value exports);

#include <stdbool.h>

#include "judge.h"

// An array of strings from obj[key], each copied (malloc'd) into *out; false
// on anything but an array of strings, or out of memory. Free what was read
// with judge_napi_free_strings either way. Shared with fastpath.c's filters.
bool judge_napi_strings(napi_env env, napi_value obj, const char *key, judge_str_t **out, size_t *n);
void judge_napi_free_strings(judge_str_t *v, size_t n);

#endif
