// A reference frame scanner for the fuzz targets, byte by byte and as plain as
// it can be: what frames_scan (native/frames.c) must agree with on every input.
// A 4-byte big-endian length, then that many payload bytes; a zero length is a
// tick; a length over `max` stops the scan (the engine cuts the link there).
#ifndef BEAMGATE_FUZZ_REF_SCAN_H
#define BEAMGATE_FUZZ_REF_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint64_t need;  // payload bytes left of the current frame
  uint32_t hdr, hb;  // the length read so far, and how many of its 4 bytes
  uint64_t frames, ticks;
  bool over;  // a length over the bound was read: nothing after it counts
} ref_scan_t;

static inline void ref_scan(ref_scan_t *r, const uint8_t *p, size_t n, uint64_t max) {
  for (size_t i = 0; i < n && !r->over; i++) {
    if (r->need) {
      r->need--;
      continue;
    }
    r->hdr = r->hdr << 8 | p[i];
    if (++r->hb < 4) continue;
    r->hb = 0;
    if (r->hdr == 0) r->ticks++;
    else if (r->hdr > max) r->over = true;
    else r->frames++, r->need = r->hdr;
    r->hdr = 0;
  }
}

#endif
