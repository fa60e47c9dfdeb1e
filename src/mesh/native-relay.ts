// A link's life on the native data plane: its id in this process's engine,
// the counters it carried in (what Node relayed before the hand-over, or what
// another process's engine relayed before a take-over), and what another
// engine needs to go on with it. A take-over parks the link (the engine lets
// go of it, its state in hand); the link then moves to the next process, or,
// when that one fails, is adopted again here.

import assert from 'node:assert/strict';
import { closeSync } from 'node:fs';
import type { AdoptArgs, DetachedLink, NativeCounters, NativeEngine, NativeFilter } from '../fastpath/native.js';
import type { Refusal } from './refusal.js';

/** What an adopt needs beyond a detached link's own state, fixed for the link's life. */
export interface NativeParams {
  cipher: string;
  hash: string;
  client: boolean;
  maxFrameBytes: number;
  closeGraceMs: number;
}

/** A link the engine let go of, with its counters so far (every byte and frame since the link began). */
export interface ParkedLink {
  detached: DetachedLink;
  totals: NativeCounters;
}

/** How a native link ended: a protocol violation the engine found, or the reason it gives. */
export type NativeEnd = { refusal: Pick<Refusal, 'reason' | 'message'> } | { reason: string };

export const ZERO_COUNTERS: Readonly<NativeCounters> = Object.freeze({ bytesOut: 0, bytesIn: 0, framesOut: 0, framesIn: 0, ticksOut: 0, ticksIn: 0, keyUpdatesOut: 0, keyUpdatesIn: 0 });

export class NativeRelay {
  private id: number | undefined;
  /** Bytes and KeyUpdates before the current adopt (the engine counts those from zero; frames and ticks it is handed). */
  private base: NativeCounters;
  /** The last counters the engine reported, for the moment between its close and our finish. */
  private last: NativeCounters;
  private parking: ((parked: ParkedLink | undefined) => void) | undefined;
  private parked: ParkedLink | undefined;
  /** A filtered link's messages its native judge passed, as last reported at its close. */
  private judgedAtClose = 0;

  private constructor(
    private readonly engine: NativeEngine,
    private params: NativeParams | undefined,
    base: NativeCounters,
    /** Runs once, when the engine has closed the link for good. */
    private readonly ended: (end: NativeEnd) => void,
  ) {
    this.base = { ...base };
    this.last = { ...base };
  }

  /** For a link node:tls relayed so far: handOver() adopts it with `onClose`, then `adopted` is called with the id. */
  static forHandOver(engine: NativeEngine, ended: (end: NativeEnd) => void): NativeRelay {
    return new NativeRelay(engine, undefined, ZERO_COUNTERS, ended);
  }

  /** For a link another engine let go of (another process's, at a take-over): adopted at once; throws if the engine refuses it. */
  static fromParked(engine: NativeEngine, params: NativeParams, parked: ParkedLink, fds: { localFd: number; remoteFd: number }, ended: (end: NativeEnd) => void): NativeRelay {
    const relay = new NativeRelay(engine, params, parked.totals, ended);
    relay.adoptParked(parked, fds);
    return relay;
  }

  /** handOver() adopted the link: `nodeBytes` are what Node relayed before (the engine counts what came after, leftovers included). */
  adopted(id: number, params: NativeParams, nodeBytes: { out: number; in: number }): void {
    this.id = id;
    this.params = params;
    this.base = { ...ZERO_COUNTERS, bytesOut: nodeBytes.out, bytesIn: nodeBytes.in };
    this.last = { ...this.base };
  }

  /** Whether the engine still walks the link's distribution handshake (it was handed over before its end); undefined once gone. */
  handshaking(): boolean | undefined {
    return this.id === undefined ? undefined : this.engine.handshaking(this.id);
  }

  /** What another engine needs besides the detached state; known once adopted. */
  get adoptParams(): NativeParams {
    assert.ok(this.params, 'native relay asked for its parameters before it was adopted');
    return this.params;
  }

  get open(): boolean {
    return this.id !== undefined;
  }

  readonly onClose = (reason: string, counters: NativeCounters, detached?: DetachedLink, judged?: { passed: number }): void => {
    this.id = undefined;
    this.judgedAtClose = judged?.passed ?? 0;
    const totals = this.add(counters);
    this.last = totals;
    if (detached) {
      this.parked = { detached, totals };
      const w = this.parking;
      this.parking = undefined;
      w?.(this.parked);
      return;
    }
    const w = this.parking;
    this.parking = undefined;
    w?.(undefined);
    // "refused:REASON:detail": the engine found a protocol violation (a frame over the limit, a bad record).
    const refused = /^refused:([a-z_]+):(.*)$/s.exec(reason);
    this.ended(refused ? { refusal: { reason: refused[1] as Refusal['reason'], message: refused[2]! } } : { reason });
  };

  private add(c: NativeCounters): NativeCounters {
    const b = this.base;
    return { ...c, bytesOut: b.bytesOut + c.bytesOut, bytesIn: b.bytesIn + c.bytesIn, keyUpdatesOut: b.keyUpdatesOut + c.keyUpdatesOut, keyUpdatesIn: b.keyUpdatesIn + c.keyUpdatesIn };
  }

  /** Every byte, frame, tick and KeyUpdate since the link began. */
  totals(): NativeCounters {
    if (this.id === undefined) return this.parked?.totals ?? this.last;
    const live = this.engine.counters(this.id);
    return live ? this.add(live) : this.last;
  }

  close(abortive: boolean): void {
    if (this.id !== undefined) this.engine.close(this.id, abortive);
  }

  /** A filtered link: the gateway's verdict on its question `ticket` (native/gate.h). */
  answer(ticket: number, pass: boolean, inject?: Buffer): void {
    if (this.id !== undefined) this.engine.answer(this.id, ticket, pass, inject);
  }

  /** A filtered link: a reload's filter. */
  refilter(filter: NativeFilter): void {
    if (this.id !== undefined) this.engine.refilter(this.id, filter);
  }

  /** A filtered link: the messages its native judge passed itself, so far. */
  judgedPassed(): number {
    if (this.id === undefined) return this.judgedAtClose;
    return this.engine.judged(this.id)?.passed ?? this.judgedAtClose;
  }

  /**
   * Asks the engine to let go of the link: resolves with its state, or with
   * undefined when it was already ending (then `ended` runs as for any close).
   */
  park(): Promise<ParkedLink | undefined> {
    if (this.parked) return Promise.resolve(this.parked);
    if (this.id === undefined || !this.engine.detach(this.id)) return Promise.resolve(undefined);
    return new Promise((resolve) => (this.parking = resolve));
  }

  get parkedState(): ParkedLink | undefined {
    return this.parked;
  }

  /** A take-over that did not happen: the link is relayed here again, from where it stopped (or ends, if the engine refuses it). */
  unpark(): void {
    const parked = this.parked;
    if (!parked) return;
    this.parked = undefined;
    const { localFd, remoteFd } = parked.detached;
    let failed: string | undefined;
    try {
      this.adoptParked(parked, { localFd, remoteFd });
    } catch (err) {
      failed = (err as Error).message;
    }
    // The engine holds duplicates; the detached descriptors were ours to close (both sockets end here if it refused).
    closeSync(localFd);
    closeSync(remoteFd);
    if (failed !== undefined) this.ended({ reason: `not relayed again after a take-over that did not happen: ${failed}` });
  }

  /** The take-over happened: the link lives in the next process, which holds its own descriptors; ours are closed (no FIN: the next process's copies keep the connections). */
  release(): void {
    const parked = this.parked;
    this.parked = undefined;
    if (!parked) return;
    closeSync(parked.detached.localFd);
    closeSync(parked.detached.remoteFd);
  }

  private adoptParked(parked: ParkedLink, fds: { localFd: number; remoteFd: number }): void {
    const d = parked.detached;
    const t = parked.totals;
    this.base = { ...ZERO_COUNTERS, bytesOut: t.bytesOut, bytesIn: t.bytesIn, keyUpdatesOut: t.keyUpdatesOut, keyUpdatesIn: t.keyUpdatesIn };
    this.last = { ...t };
    const p = this.adoptParams;
    const args: AdoptArgs = {
      ...fds,
      cipher: p.cipher,
      hash: p.hash,
      client: p.client,
      txSecret: d.txSecret,
      txSeq: d.txSeq,
      rxSecret: d.rxSecret,
      rxSeq: d.rxSeq,
      toRemote: Buffer.alloc(0),
      toLocal: Buffer.alloc(0),
      fromRemote: d.fromRemote,
      sealedToRemote: d.sealedToRemote,
      walkedToLocal: d.walkedToLocal,
      rxHandshake: d.rxHandshake,
      outScan: { ...d.outScan, frames: t.framesOut, ticks: t.ticksOut },
      inScan: { ...d.inScan, frames: t.framesIn, ticks: t.ticksIn },
      maxFrameBytes: p.maxFrameBytes,
      closeGraceMs: p.closeGraceMs,
    };
    this.id = this.engine.adopt(args, this.onClose);
  }
}
