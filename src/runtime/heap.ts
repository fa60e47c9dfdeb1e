// Keeps a gateway's memory near its baseline after a burst of connections.
//
// Measured (a flood of 8,000 hostile TLS connections from a genuine peer, 64
// at once, 6 runs): RSS went from 60 MB to a 97-103 MB peak and stayed at
// 84-103 MB for 10 s to over a minute with no link open, while the JS heap in
// use was back at 9 MB. Two parts: V8's young generation (new
// space) grows from 2 MB to 24-32 MB while many connections' objects survive
// scavenges, and V8 gives it back only when its idle-time heuristics happen to
// run, which an idle gateway may never trigger; and glibc's main heap keeps
// 7-11 MB of freed OpenSSL and socket buffers (free() returns only the top of
// the heap; MALLOC_ARENA_MAX=2, and MALLOC_TRIM_THRESHOLD_ with
// MALLOC_MMAP_THRESHOLD_ at 128 KiB, made no difference).
//
// The young generation is the part to bound. A relay keeps its bytes in
// Buffers outside the JS heap and creates few short-lived objects per chunk,
// so a small new space costs it little: side by side on a loaded 2-core
// machine (three short runs each), relaying took 3.5-4.1 CPU s/GB with the
// bound and 3.3-3.5 without, throughput was within the runs' noise.
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
