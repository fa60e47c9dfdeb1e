// Keeps a gateway's memory near its baseline after a burst of connections.
//
// Measured (a flood of 8,000 hostile TLS connections from a genuine peer, 64
// at once): RSS went from 60 MB to a 100 MB peak and often stayed at 84-101 MB
// for a minute and more with no link open, while the JS heap in use was back
// at 9 MB. Two parts: V8's young generation (new space) grows from 2 MB to
// 24-32 MB while many connections' objects survive scavenges, and V8 gives it
// back only when its idle-time heuristics happen to run, which an idle
// gateway may never trigger; and glibc's main heap keeps 7-11 MB of freed
// OpenSSL and socket buffers (the top of the heap is pinned, so free() cannot
// trim it; MALLOC_ARENA_MAX and MALLOC_TRIM_THRESHOLD_ made no difference).
//
// The young generation is the part to bound. A relay keeps its bytes in
// Buffers outside the JS heap and creates few short-lived objects per chunk,
// so a small new space costs it little (see the commit for the benchmark).
// `--max-semi-space-size` can only be given on the command line, which every
// launch path (CLI, container, unit, tests, benchmark) would have to repeat;
// V8 reads its growth factor at every growth decision instead, so setting it
// keeps new space at the size it has when the flag is set. Loading the
// gateway's modules alone grows it from 1 to 4 MB, so this module sets it
// when it is evaluated: the CLI imports it before anything else.

import v8 from 'node:v8';

/** V8's factor for growing new space after a scavenge; 1 means it never grows. */
const SEMI_SPACE_GROWTH_FACTOR = 1;

v8.setFlagsFromString(`--semi-space-growth-factor=${SEMI_SPACE_GROWTH_FACTOR}`);
