// Keeps a gateway's memory near its baseline after a flood of connections,
// without taxing the relay the rest of the time.
//
// Measured (a flood of 8,000 hostile TLS connections from a genuine peer, 64
// at once, 6 runs): RSS went from 60 MB to a 97-103 MB peak and stayed at
// 84-103 MB for 10 s to over a minute with no link open, while the JS heap in
// use was back at 9 MB. Two parts: V8's young generation (new space) grows
// from 2 MB to 24-32 MB while many connections' objects survive scavenges,
// and V8 gives it back only when its idle-time heuristics happen to run, which
// an idle gateway may never trigger; and glibc's main heap keeps 7-11 MB of
// freed OpenSSL and socket buffers (free() returns only the top of the heap;
// MALLOC_ARENA_MAX=2, and MALLOC_TRIM_THRESHOLD_ with MALLOC_MMAP_THRESHOLD_
// at 128 KiB, made no difference).
//
// The young generation is the part to bound, but not always: with its growth
// stopped for good, relaying cost 2.9-3.2 CPU s/GB against 2.5-2.7 with V8's
// default growth, and round trips were slower (side by side, same machine,
// two runs each). So it is bounded only while connections churn: V8 reads its
// growth factor at every growth decision, and the guard below sets it to 1
// (new space keeps its size) while the TLS port accepts more than
// `floodConnectionsPerSecond`, and back to V8's default once `floodQuietMs`
// has passed with every second under it (floods come in bursts: a pause
// between two must not let new space grow at the start of the next). Once a
// flood is over, glibc is asked to give back what it freed (malloc_trim: every
// arena, not only the top of the main heap, where free() alone returns
// nothing), through the native module when it is loaded. A
// gateway starts bounded, as if it had just seen a flood: what it allocates
// starting up and its first connections do not grow new space either. `--max-semi-space-size` would need every launch path's command
// line, and would bound bulk relaying too.

import v8 from 'node:v8';

/** V8's own growth factor (`node --v8-options`): new space doubles when a scavenge finds it too small. */
const V8_DEFAULT_GROWTH_FACTOR = 2;
/** The window connections are counted in (the threshold is per second). */
export const CHURN_WINDOW_MS = 1_000;

/** Sets V8's young-generation growth: bounded (never grows) or V8's default. */
export function setYoungGenerationBounded(bounded: boolean): void {
  v8.setFlagsFromString(`--semi-space-growth-factor=${bounded ? 1 : V8_DEFAULT_GROWTH_FACTOR}`);
}

/** Bounds the young generation while connections arrive faster than a threshold (a flood), and only then. */
export class YoungGenerationGuard {
  private windowStart = Date.now();
  private inWindow = 0;
  /** Connections since the last check while bounded. */
  private sinceCheck = 0;
  /** When the last window over the threshold ended (or the bound began). */
  private lastBusy = 0;
  private bounded = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    /** Connections per CHURN_WINDOW_MS above which the growth is stopped, and how long it must be quiet before it may grow again. */
    private readonly limits: () => { floodConnectionsPerSecond: number; floodQuietMs: number },
    private readonly apply: (bounded: boolean) => void = setYoungGenerationBounded,
    /** Runs once each flood is over (malloc_trim, through the native module where it is loaded). */
    private readonly floodOver: () => void = () => {},
  ) {
    this.bound(Date.now());
  }

  /** A connection was accepted. */
  connection(): void {
    const now = Date.now();
    if (now - this.windowStart >= CHURN_WINDOW_MS) {
      this.windowStart = now;
      this.inWindow = 0;
    }
    this.inWindow++;
    this.sinceCheck++;
    if (!this.bounded && this.inWindow > this.limits().floodConnectionsPerSecond) this.bound(now);
  }

  private bound(now: number): void {
    this.bounded = true;
    this.sinceCheck = 0;
    this.lastBusy = now;
    this.apply(true);
    // Checked every window even when no connection comes: growth must come back for the relay.
    this.timer = setInterval(() => this.check(), CHURN_WINDOW_MS);
    this.timer.unref();
  }

  get isBounded(): boolean {
    return this.bounded;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** While bounded, once a window: growth comes back after floodQuietMs of windows at or under the threshold. */
  private check(): void {
    const now = Date.now();
    const { floodConnectionsPerSecond, floodQuietMs } = this.limits();
    if (this.sinceCheck > floodConnectionsPerSecond) this.lastBusy = now;
    this.sinceCheck = 0;
    if (now - this.lastBusy < floodQuietMs) return;
    this.bounded = false;
    clearInterval(this.timer);
    this.timer = undefined;
    this.apply(false);
    this.floodOver();
  }
}
