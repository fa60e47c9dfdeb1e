// A link this process took over from the gateway process before it: already
// on the native data plane, its TLS state and frame scanners where the other
// engine let go of them. It does what a Link does once handed to the engine
// (counters, close, refusals, reloads, the next take-over); it never had
// Node sockets.

import type { NativeCounters, NativeEngine } from '../fastpath/native.js';
import { flushLinkCounters, forgetHandedOff, type LinkDeps, type LinkInfo, linkLogFields, nativeCloseReason, recordLinkClosed } from '../mesh/link.js';
import type { RelayedLink } from '../mesh/link-table.js';
import { type NativeEnd, type NativeParams, NativeRelay, type ParkedLink } from '../mesh/native-relay.js';
import { Refusal } from '../mesh/refusal.js';
import type { LinkFilter } from '../policy/filter.js';

export type AdoptedLinkDeps = Pick<LinkDeps, 'metrics' | 'linkLog' | 'refusalLog' | 'table'> & { engine: NativeEngine };

export class AdoptedLink implements RelayedLink {
  private readonly flushed: NativeCounters;
  private readonly relay: NativeRelay;
  private closeReason = 'closed';
  private finished = false;

  /** Adopts the link into this process's engine at once (the caller has reserved its slot); throws if the engine refuses it. */
  constructor(
    readonly info: LinkInfo,
    readonly startedAt: number,
    params: NativeParams,
    parked: ParkedLink,
    fds: { localFd: number; remoteFd: number },
    private readonly deps: AdoptedLinkDeps,
  ) {
    // The old process flushed everything up to the park into the counters it handed over.
    this.flushed = { ...parked.totals };
    this.relay = NativeRelay.fromParked(deps.engine, params, parked, fds, (end) => this.ended(end));
    deps.table.established.add(this);
    deps.metrics.linksOpen.labels(info.peer, info.direction).inc();
  }

  get isFinished(): boolean {
    return this.finished;
  }

  readonly settling = false;

  private ended(end: NativeEnd): void {
    if (this.finished) return;
    this.closeReason = nativeCloseReason(end, this.closeReason, this.deps, this.info.peer, this.logFields());
    this.finished = true;
    this.flush();
    recordLinkClosed(this.deps, this, 'native', this.relay.totals(), this.closeReason);
  }

  flush(): void {
    flushLinkCounters(this.deps.metrics, this.info, this.flushed, this.relay.totals());
  }

  refuse(refusal: Pick<Refusal, 'reason' | 'message'>): void {
    if (this.finished || this.closeReason.startsWith('refused:')) return;
    this.deps.metrics.refused(refusal.reason);
    this.closeReason = `refused: ${refusal.reason}: ${refusal.message}`;
    this.deps.refusalLog.warn('link refused', refusal.reason, this.info.peer, { ...this.logFields(), detail: refusal.message });
    this.relay.close(true);
  }

  end(reason: string): void {
    this.closeReason = reason;
    this.relay.close(false);
  }

  destroyBoth(): void {
    this.relay.close(true);
  }

  /** Adopted links were relayed unfiltered (a filtered link never leaves node:tls): one a filter now applies to is cut. */
  refilter(next: LinkFilter | undefined): Refusal | undefined {
    if (!next) return undefined;
    return new Refusal('policy_denied', 'a filter now applies to this link, which was relayed unfiltered: its atom cache was never read, so it is cut and redialled filtered');
  }

  logFields(): Record<string, string> {
    return linkLogFields(this.info);
  }

  park(): Promise<ParkedLink | undefined> {
    return this.finished ? Promise.resolve(undefined) : this.relay.park();
  }

  get parked(): { state: ParkedLink; params: NativeParams } | undefined {
    const state = this.relay.parkedState;
    return state && { state, params: this.relay.adoptParams };
  }

  unpark(): void {
    this.relay.unpark();
  }

  handedOff(): void {
    this.relay.release();
    forgetHandedOff(this.deps, this);
    this.finished = true;
  }
}
