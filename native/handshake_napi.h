// The handshake walker's test-only N-API surface (handshake_napi.c): exports.handshake.walk,
// which test/native/handshake.test.ts runs against the TypeScript walker.

#ifndef BEAMGATE_HANDSHAKE_NAPI_H
#define BEAMGATE_HANDSHAKE_NAPI_H

#include <node_api.h>

// Adds the exports to `exports`; returns it, or NULL when that failed (an exception is pending).
napi_value handshake_napi_init(napi_env env, napi_value exports);

#endif
