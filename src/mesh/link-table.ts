// The gateway's bookkeeping of relayed links: slots are reserved when a
// connection is accepted (so a flood of half-done handshakes counts against
// the limits too) and released exactly once when it closes.

import assert from 'node:assert/strict';
import type { Limits } from '../config/limits.js';
import type { LinkInfo } from './link.js';
import type { NativeParams, ParkedLink } from './native-relay.js';
import type { LinkFilter } from '../policy/filter.js';
import type { Refusal } from './refusal.js';

/** What the gateway does with an established link, wherever it is relayed (link.ts; takeover/adopted-link.ts for one taken from another process). */
export interface RelayedLink {
  readonly info: LinkInfo;
  readonly startedAt: number;
  readonly isFinished: boolean;
  /** Whether its move from node:tls to the native data plane is under way (a take-over lets it finish). */
  readonly settling: boolean;
  /** Adds what was counted since the last flush to the Prometheus counters. */
  flush(): void;
  refuse(refusal: Pick<Refusal, 'reason' | 'message'>): void;
  /** Ends the link gracefully (drain, shutdown). */
  end(reason: string): void;
  destroyBoth(): void;
  /** A reload's word on the link's filter: a refusal when it must be cut. */
  refilter(next: LinkFilter | undefined): Refusal | undefined;
  logFields(): Record<string, string>;
  /** A take-over: the engine lets go of the link; undefined for a link not on the native data plane, or ending. */
  park(): Promise<ParkedLink | undefined>;
  readonly parked: { state: ParkedLink; params: NativeParams } | undefined;
  /** The take-over did not happen: relayed here again. */
  unpark(): void;
  /** The take-over happened: gone from this process without a word on the wire. */
  handedOff(): void;
}

export class LinkTable {
  private total = 0;
  private readonly perPeer = new Map<string, number>();
  readonly established = new Set<RelayedLink>();
  /** Waiters of whenEmpty, called when the last slot is released. */
  private emptied: (() => void)[] = [];

  constructor(private limits: () => Limits) {}

  /** Reserves a slot for a link with `peer`; false when a limit is reached. */
  reserve(peer: string): boolean {
    const l = this.limits();
    const n = this.perPeer.get(peer) ?? 0;
    if (this.total >= l.maxLinks || n >= l.maxLinksPerPeer) return false;
    this.total++;
    this.perPeer.set(peer, n + 1);
    return true;
  }

  release(peer: string): void {
    const n = this.perPeer.get(peer) ?? 0;
    assert.ok(n > 0 && this.total > 0, `link slot released twice for peer ${peer}`);
    this.total--;
    if (n === 1) this.perPeer.delete(peer);
    else this.perPeer.set(peer, n - 1);
    if (this.total === 0) {
      const waiters = this.emptied;
      this.emptied = [];
      for (const w of waiters) w();
    }
  }

  /** Resolves when no slot is held, or after `timeoutMs`, whichever comes first. */
  whenEmpty(timeoutMs: number): Promise<void> {
    if (this.total === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.emptied = this.emptied.filter((w) => w !== done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.emptied.push(done);
    });
  }

  get count(): number {
    return this.total;
  }
}
