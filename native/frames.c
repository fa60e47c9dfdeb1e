// The distribution frame scanner: see frames.h.

#include "frames.h"

#include <stdint.h>
#include <stdio.h>

bool frames_scan(frame_scan_t *s, const uint8_t *p, size_t n, uint64_t *frames, uint64_t *ticks, char *reason, size_t reason_len) {
  size_t i = 0;
  if (s->hs.side != HS_DONE && !hs_walk(&s->hs, p, n, &i, reason, reason_len)) return false;
  while (i < n) {
    if (s->remaining > 0) {
      size_t take = s->remaining < n - i ? s->remaining : n - i;
      s->remaining -= (uint32_t)take;
      i += take;
      continue;
    }
    while (s->header_bytes < 4 && i < n) {
      s->header = (s->header << 8) | p[i++];
      s->header_bytes++;
    }
    if (s->header_bytes < 4) break;
    uint32_t len = s->header;
    s->header = 0;
    s->header_bytes = 0;
    if (len == 0) {
      (*ticks)++;
      continue;
    }
    if (len > s->max_frame) {
      snprintf(reason, reason_len, "refused:frame_too_large:frame of %u bytes exceeds %llu", len, (unsigned long long)s->max_frame);
      return false;
    }
    (*frames)++;
    s->remaining = len;
  }
  return true;
}

size_t frames_boundary(const frame_scan_t *s, const uint8_t *p, size_t n) {
  if (s->hs.side != HS_DONE) return SIZE_MAX;
  if (s->remaining > 0) return s->remaining <= n ? s->remaining : SIZE_MAX;  // header_bytes is 0 while a frame passes
  if (s->header_bytes == 0) return 0;
  size_t need = 4 - s->header_bytes;
  if (n < need) return SIZE_MAX;
  uint32_t len = s->header;
  for (size_t k = 0; k < need; k++) len = (len << 8) | p[k];
  return len <= n - need ? need + len : SIZE_MAX;
}
