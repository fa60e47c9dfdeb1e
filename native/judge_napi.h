// The native judge's test-only N-API surface (judge_napi.c): exports.judge.judgeFrames
// (and exports.judgeFrames), which test/native/judge.test.ts runs against the TypeScript judge.

#ifndef BEAMGATE_JUDGE_NAPI_H
#define BEAMGATE_JUDGE_NAPI_H

#include <node_api.h>

// Adds the exports to `exports`; returns it, or NULL when that failed (an exception is pending).
napi_value judge_napi_init(napi_env env, napi_value exports);

#endif
