// The distribution frame scanner of the native data plane: walks the 4-byte
// length prefixes of a link's frames (ticks are frames of length 0) as bytes
// pass, without copying them, and refuses a frame over the link's limit. A
// link handed over before its distribution handshake is over walks the rest
// of that first (handshake.h). Shared by the relay thread and the fuzz targets.

#ifndef BEAMGATE_FRAMES_H
#define BEAMGATE_FRAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "handshake.h"

typedef struct {
  uint32_t remaining;     // payload bytes of the current frame still to pass
  uint32_t header;        // a length prefix split across reads
  uint32_t header_bytes;  // how much of it has arrived (0-3)
  uint64_t max_frame;
  hs_walk_t hs;  // the handshake still to walk; HS_DONE (zeroed) for a link handed over framed
} frame_scan_t;

// Walks p[0, n); adds the frames and ticks that start in it. False (reason
// set, as "refused:frame_too_large:...", or the handshake walker's reason) on
// a frame over the limit or a handshake the gateway would refuse.
bool frames_scan(frame_scan_t *s, const uint8_t *p, size_t n, uint64_t *frames, uint64_t *ticks, char *reason, size_t reason_len);

// Where the frame now being walked ends within p[0, n): the first k at which
// the scanner, having walked p[0, k), is between frames (0 if it is now), or
// SIZE_MAX if that is not within these bytes (nor while the handshake lasts).
// Walks nothing itself: a frame the gateway writes of its own goes exactly there.
size_t frames_boundary(const frame_scan_t *s, const uint8_t *p, size_t n);

#endif
