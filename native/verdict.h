// The firewall's verdict on one whole message (verdict.c), for the native
// judge (judge.c): whether the link's filter surely lets it through. Filters
// are made and freed through judge.h (judge_filter_new, judge_filter_free).
#ifndef BEAMGATE_VERDICT_H
#define BEAMGATE_VERDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etf.h"
#include "judge.h"

// True when `f` surely passes the message in `body` (its control message and
// payload, `magic`: each term with its own version byte, the pass-through
// header's form), read with the header's resolved `atoms` and `stack`
// (ETF_MAX_DEPTH levels). False asks: the message may be denied, or this
// judge does not read it.
bool verdict_passes(const judge_filter_t *f, const uint8_t *body, size_t len, const judge_str_t *atoms, size_t n_atoms, bool magic, etf_level_t *stack);

#endif
