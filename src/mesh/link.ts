// One relayed distribution link: a plain TCP socket to a local node and a TLS
// socket to the peer gateway. Chunks are forwarded as they arrive, without
// copies or stream pipes; each direction's DistStream walks them to enforce
// the framing, and counting is plain arithmetic flushed to Prometheus at
// scrape and at close. With the native data plane, the link hands both
// sockets over once the distribution handshake is done (src/fastpath/), and
// from then on reads its counters from the engine.

import assert from 'node:assert/strict';
import type { X509Certificate } from 'node:crypto';
import type net from 'node:net';
import type tls from 'node:tls';
import type { Limits } from '../config/limits.js';
import type { DistStream } from '../framing/stream.js';
import type { LinkLog } from '../log/link-log.js';
import type { RefusalLog } from '../log/refusal-log.js';
import type { GatewayMetrics, LinkDirection } from '../metrics/metrics.js';
import type { LinkTable, RelayedLink } from './link-table.js';
import type { NativeCounters, NativeEngine, NativeFilter, Question, ScanState } from '../fastpath/native.js';
import { type NativeEnd, type NativeParams, NativeRelay, type ParkedLink } from './native-relay.js';
import { handOver, tapOf } from '../fastpath/handover.js';
import type { Denial, InboundFilter } from '../filter/link-filter.js';
import type { LinkFilter } from '../policy/filter.js';
import { deniedSpawnReply } from '../filter/spawn-reply.js';
import { Refusal, toRefusal } from './refusal.js';

/** A decrypted record at least this large is taken as bulk and coalesced with the records after it. */
export const COALESCE_MIN_BYTES = 8 * 1024;

export interface LinkInfo {
  peer: string;
  direction: LinkDirection;
  /** The local node's name (or its operator pattern, for bounded labels). */
  localNode: string;
  remoteNode: string;
  /** The node that dialled, by its own name (an operator's too): a reload admits it again. */
  sourceName: string;
  /** The node that was dialled, by its own name (an operator's too, when one is dialled back). */
  targetName: string;
  /** Whether the dialling node connected hidden (no DFLAG_PUBLISHED in its send_name): the policy may require it. */
  sourceHidden: boolean;
  /** The serial number of the peer gateway's certificate: a reload may revoke it. */
  peerSerial: string;
  /** The peer gateway's certificate: a reload may remove the CA that issued it. */
  peerCert: X509Certificate;
}

export interface LinkDeps {
  metrics: GatewayMetrics;
  linkLog: LinkLog;
  refusalLog: RefusalLog;
  limits: Limits;
  table: LinkTable;
  /** The native data plane, when this gateway runs it: links over a tap are handed to it once framed. */
  engine?: NativeEngine;
  /**
   * The firewall on what this link carries to the local node (src/filter/).
   * A filtered link goes to the native data plane too, between two frames:
   * its native judge (native/judge.h) then asks this one about every message
   * it does not let through itself.
   */
  filter?: InboundFilter;
  /**
   * The link may go to the native data plane before its distribution
   * handshake is over (an unfiltered link on a connection whose session
   * tickets have come): the engine relays and walks the rest of it
   * (native/handshake.h), so its round trips cross no event loop. The node
   * accepting must answer as `expect`, hidden when it is an operator.
   */
  early?: { expect: string; hidden: boolean };
}

/**
 * Replies to denied spawn requests waiting for the local node's direction to
 * reach a frame boundary. Past this many, a reply is not sent (the caller
 * waits for its own timeout): a peer flooding denied spawns gets no queue.
 */
export const MAX_PENDING_SPAWN_REPLIES = 64;

type Flow = 'out' | 'in';

export class Link implements RelayedLink {
  readonly startedAt = Date.now();
  private readonly bytes = { out: 0, in: 0 };
  private readonly flushed: NativeCounters = { bytesOut: 0, bytesIn: 0, framesOut: 0, framesIn: 0, ticksOut: 0, ticksIn: 0, keyUpdatesOut: 0, keyUpdatesIn: 0 };
  private handshakeTimer: NodeJS.Timeout | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private socketsOpen = 2;
  private finished = false;
  private closeReason = 'closed';
  /** Whether writes to the local node are being held back for one writev (see forward). */
  private corked = false;
  /** The link on the native data plane, once handed over; its counters come from there. */
  private native: NativeRelay | undefined;
  private handingOver = false;
  /** Whether beamgate_links_filtered counts this link. */
  private filteredCounted = false;
  /** Frames to write to the peer at the local direction's next frame boundary. */
  private replies: Buffer[] = [];
  private readonly handlers: Array<[net.Socket, string, (...args: never[]) => void]> = [];

  constructor(
    readonly info: LinkInfo,
    private readonly local: net.Socket,
    private readonly remote: net.Socket,
    /** Walks bytes read from the local node. */
    private readonly localStream: DistStream,
    /** Walks bytes read from the peer gateway. */
    private readonly remoteStream: DistStream,
    private readonly deps: LinkDeps,
    /** When the distribution handshake must be complete (ms since epoch). */
    private readonly handshakeDeadline: number,
  ) {}

  /** Takes over both sockets; `toRemote`/`toLocal` are bytes already read and walked. */
  start(toRemote: Buffer[], toLocal: Buffer[]): void {
    // A side that hung up before the link was up is an abandoned dial, never a
    // link: relaying its handshake would leave the far node holding a pending
    // connection (Erlang's up_pending) that blocks the next real dial until
    // net_setuptime. The handlers before start() catch that 'end'.
    assert.ok(!this.local.readableEnded && !this.remote.readableEnded, 'link started on a socket that had already ended');
    const { metrics, table } = this.deps;
    table.established.add(this);
    metrics.linksOpen.labels(this.info.peer, this.info.direction).inc();
    metrics.linksOpened.labels(this.info.peer, this.info.direction).inc();
    this.local.setNoDelay(true);
    this.remote.setNoDelay(true);
    for (const chunk of toRemote) this.forward(chunk, 'out');
    this.pump(this.local, this.remote, this.localStream, 'out');
    this.pump(this.remote, this.local, this.remoteStream, 'in');
    if (this.deps.filter) {
      this.filteredCounted = true;
      this.deps.metrics.linksFiltered.inc();
      // The dialling node's handshake is not over before the local node has answered it: bytes already read are
      // handshake messages, relayed as they are. Frames among them would have skipped the filter.
      if (this.remoteStream.framed) {
        this.refuse({ reason: 'dist_malformed', message: 'distribution frames sent before the handshake was answered' });
        return;
      }
    }
    // Synchronously after the pumps: no 'data' event can come between, so order is kept.
    for (const chunk of toLocal) this.forward(chunk, 'in');
    if (!this.handshakeDone()) {
      this.handshakeTimer = setTimeout(() => {
        // Handed over early, the handshake's end is the engine's to see.
        if (this.native?.handshaking() === false) return;
        this.refuse({ reason: 'handshake_timeout', message: 'distribution handshake not finished in time' } as Refusal);
      }, Math.max(0, this.handshakeDeadline - Date.now()));
      this.maybeHandOver();
    }
  }

  private handshakeDone(): boolean {
    return this.localStream.framed && this.remoteStream.framed;
  }

  /** Adds a listener the link removes again when it hands its sockets over. */
  private on(sock: net.Socket, event: string, fn: (...args: never[]) => void): void {
    sock.on(event, fn as (...args: unknown[]) => void);
    this.handlers.push([sock, event, fn]);
  }

  private pump(src: net.Socket, dst: net.Socket, stream: DistStream, flow: Flow): void {
    const hwm = this.deps.limits.writeHighWaterMark;
    this.on(src, 'data', (chunk: Buffer) => {
      let framesFrom: number;
      try {
        framesFrom = stream.push(chunk);
      } catch (err) {
        this.refuse(toRefusal(err));
        return;
      }
      if (flow === 'in' && this.deps.filter) this.filterIn(chunk, framesFrom);
      else if (flow === 'out' && this.replies.length > 0) this.forwardOutWithReplies(chunk);
      else this.forward(chunk, flow);
      if (dst.writableLength > hwm) src.pause();
      if (this.handshakeTimer && this.handshakeDone()) {
        clearTimeout(this.handshakeTimer);
        this.handshakeTimer = undefined;
      }
      this.maybeHandOver();
    });
    this.on(dst, 'drain', () => {
      if (!this.handingOver) src.resume();
    });
    this.on(src, 'end', () => {
      // The first reason wins: after end() (drain) the other side's FIN is the echo, not the cause.
      if (this.closeReason === 'closed') this.closeReason = flow === 'out' ? 'local node closed' : 'peer closed';
      dst.end();
    });
    this.on(src, 'error', (err: Error) => {
      this.closeReason = `${flow === 'out' ? 'local' : 'peer'} socket error: ${err.message}`;
      this.destroyBoth();
    });
    this.on(src, 'close', () => this.socketClosed());
  }

  /** Relays what the filter lets through to the local node; counts, logs and answers what it denies. */
  private filterIn(chunk: Buffer, framesFrom: number): void {
    const filter = this.deps.filter!;
    if (framesFrom > 0) this.forward(framesFrom >= chunk.length ? chunk : chunk.subarray(0, framesFrom), 'in');
    if (framesFrom >= chunk.length) return;
    const out = filter.push(chunk, framesFrom);
    for (const frame of out.forward) this.forward(frame, 'in');
    this.countPassed();
    for (const d of out.denied) {
      const answer = this.denied(d);
      if (answer === 'cut') return;
      if (answer) this.reply(answer);
    }
    if (out.error) this.refuse({ reason: out.error.limit ? 'buffer_limit' : 'dist_malformed', message: `${out.error.code}: ${out.error.reason}` } as Refusal);
  }

  /**
   * A denied message: counted and logged; the link is cut when a rule says
   * so ('cut'), else a denied spawn request gets its error reply (the frame
   * returned, for the peer), anything else is dropped (undefined).
   */
  private denied(d: Denial): 'cut' | Buffer | undefined {
    const { metrics } = this.deps;
    const f = this.deps.filter!.current;
    metrics.distJudged.labels('denied').inc();
    metrics.distDenied.labels(f.fromGroup, f.toGroup, d.op).inc();
    this.deps.refusalLog.warn('dist message denied', 'dist_denied', this.info.peer, {
      ...this.logFields(),
      from_node: this.info.remoteNode,
      to_node: this.info.localNode,
      from_group: f.fromGroup,
      to_group: f.toGroup,
      op: d.op,
      target: d.target,
      detail: d.why,
      action: f.cut ? 'cut' : 'drop',
    });
    if (f.cut) {
      this.refuse({ reason: 'dist_denied', message: `${d.op} to ${d.target} denied: ${d.why}` } as Refusal);
      return 'cut';
    }
    if (d.control.op === 'SPAWN_REQUEST' || d.control.op === 'SPAWN_REQUEST_TT') return deniedSpawnReply(d.control.reqId, d.control.from, d.header);
    return undefined;
  }

  /** Adds the messages passed since the last call to beamgate_dist_judged_total: the JS judge's, and the native judge's. */
  private countPassed(): void {
    const filter = this.deps.filter;
    if (!filter) return;
    const total = filter.judged - filter.denials + (this.native?.judgedPassed() ?? 0);
    if (total > this.judgedPassed) this.deps.metrics.distJudged.labels('passed').inc(total - this.judgedPassed);
    this.judgedPassed = Math.max(this.judgedPassed, total);
  }

  /** Messages the filter passed that are already counted in beamgate_dist_judged_total. */
  private judgedPassed = 0;

  /** A filtered link on the native data plane: its native judge asks about a message; the answer lets it pass, or not. */
  private readonly onAsk = (q: Question): void => {
    const relay = this.native;
    if (this.finished || !relay) return;
    this.deps.metrics.distQuestions.inc();
    const r = this.deps.filter!.judgeQuestion(q);
    if ('error' in r) return this.refuse({ reason: 'dist_malformed', message: `${r.error.code}: ${r.error.reason}` } as Refusal);
    if ('pass' in r) {
      relay.answer(q.ticket, true);
      this.countPassed();
      return;
    }
    const answer = this.denied(r.denial);
    if (answer === 'cut') return;
    relay.answer(q.ticket, false, answer);
  };

  /** Writes a frame of the gateway's own to the peer, between two of the local node's frames. */
  private reply(frame: Buffer): void {
    if (this.localStream.atBoundary && this.replies.length === 0) {
      this.bytes.out += frame.length;
      this.remote.write(frame);
      return;
    }
    if (this.replies.length >= MAX_PENDING_SPAWN_REPLIES) return;
    this.replies.push(frame);
  }

  /** Forwards a chunk of the local node's bytes with the waiting replies at its last frame boundary. */
  private forwardOutWithReplies(chunk: Buffer): void {
    const at = this.localStream.lastBoundary;
    if (at < 0) return this.forward(chunk, 'out');
    if (at > 0) this.forward(chunk.subarray(0, at), 'out');
    for (const frame of this.replies) this.forward(frame, 'out');
    this.replies = [];
    if (at < chunk.length) this.forward(chunk.subarray(at), 'out');
  }

  /**
   * Once both directions are framed, a link over a tap goes to the native
   * data plane. A link that cannot go quiet in time, or whose TLS state the
   * engine cannot take (another suite), stays on node:tls: it was only paused.
   */
  private maybeHandOver(): void {
    const engine = this.deps.engine;
    if (!engine || this.handingOver || this.native || this.finished) return;
    // A filtered direction goes between two frames, with nothing held and no reply of ours waiting.
    const filter = this.deps.filter;
    const early = this.deps.early;
    if (!this.handshakeDone()) {
      // Before the handshake's end only as `early` allows, each direction between two of its messages.
      const walkable = (s: DistStream) => s.framed || s.betweenMessages;
      if (!early || filter || !walkable(this.localStream) || !walkable(this.remoteStream)) return;
    }
    if (filter && (!filter.quiescent || !this.remoteStream.atBoundary || this.replies.length > 0)) return;
    const tap = tapOf(this.remote as tls.TLSSocket);
    if (!tap) return;
    this.handingOver = true;
    this.flushLocal();
    const relay = NativeRelay.forHandOver(engine, (end) => this.nativeEnded(end));
    handOver(
      engine,
      {
        local: this.local,
        remote: this.remote as tls.TLSSocket,
        tap,
        scan: () => ({ out: scanOf(this.localStream, early, this.deps.limits), in: scanOf(this.remoteStream, early, this.deps.limits) }),
        release: () => {
          for (const [sock, event, fn] of this.handlers) sock.off(event, fn as (...args: unknown[]) => void);
        },
        maxFrameBytes: this.deps.limits.maxFrameBytes,
        closeGraceMs: this.deps.limits.linkCloseGraceMs,
        ...(filter && { filter: { args: { ...nativeFilter(filter.current), atoms: filter.atomSlots() }, onAsk: this.onAsk } }),
      },
      relay.onClose,
      (result) => {
        if (result instanceof Error) {
          this.closeReason = result.message;
          this.deps.metrics.handovers.labels('failed').inc();
          return;
        }
        if (typeof result === 'object') {
          // Bytes Node relayed itself; everything after (the leftovers included) the engine counts.
          const { id, ...suite } = result;
          relay.adopted(id, { ...suite, maxFrameBytes: this.deps.limits.maxFrameBytes, closeGraceMs: this.deps.limits.linkCloseGraceMs }, this.bytes);
          this.native = relay;
          this.handingOver = false;
          this.deps.metrics.handovers.labels('native').inc();
          if (!this.handshakeDone()) this.deps.metrics.handoversInHandshake.inc();
          return;
        }
        this.handingOver = false;
        // A link that closed while it waited simply ended; one still open goes on on node:tls.
        if (this.finished) return;
        this.deps.metrics.handovers.labels('stayed').inc();
        this.deps.linkLog.info('link stays on node:tls', this.info.peer, { ...this.logFields(), detail: result });
        this.local.resume();
        this.remote.resume();
        tap.raw.resume();
      },
    );
  }

  /** The engine closed both sockets: the link is over. */
  private nativeEnded(end: NativeEnd): void {
    this.closeReason = nativeCloseReason(end, this.closeReason, this.deps, this.info.peer, this.logFields());
    this.finish();
  }

  /** Bytes, frames and ticks so far, each direction, wherever the link is relayed. */
  private totals(): NativeCounters {
    if (this.native) return this.native.totals();
    const l = this.localStream;
    const r = this.remoteStream;
    return { bytesOut: this.bytes.out, bytesIn: this.bytes.in, framesOut: l.frames, framesIn: r.frames, ticksOut: l.ticks, ticksIn: r.ticks, keyUpdatesOut: 0, keyUpdatesIn: 0 };
  }

  private forward(chunk: Buffer, flow: Flow): void {
    this.bytes[flow] += chunk.length;
    if (flow === 'out') {
      this.remote.write(chunk);
      return;
    }
    // TLS hands decrypted data over one record (at most 16 KiB) at a time, all
    // records of one socket read in a row. Large records mean bulk: hold them
    // back (cork) until the loop's check phase and write them with one writev,
    // not one syscall each. A short record is the end of a burst (or a small
    // message): it is written and everything held back is flushed at once.
    if (chunk.length >= COALESCE_MIN_BYTES) {
      if (!this.corked) {
        this.corked = true;
        this.local.cork();
        setImmediate(this.flushLocal);
      }
      this.local.write(chunk);
      return;
    }
    this.local.write(chunk);
    this.flushLocal();
  }

  private readonly flushLocal = (): void => {
    if (!this.corked) return;
    this.corked = false;
    this.local.uncork();
  };

  private socketClosed(): void {
    this.socketsOpen--;
    assert.ok(this.socketsOpen >= 0, 'link socket closed more than twice');
    if (this.socketsOpen === 1) {
      // One side is gone: give the other a moment to flush, then cut it.
      this.graceTimer = setTimeout(() => this.destroyBoth(), this.deps.limits.linkCloseGraceMs);
      this.graceTimer.unref();
      return;
    }
    this.finish();
  }

  /** Closes the link for a protocol violation: counted, logged, both sockets cut. */
  refuse(refusal: Pick<Refusal, 'reason' | 'message'>): void {
    if (this.finished || this.closeReason.startsWith('refused:')) return;
    this.deps.metrics.refused(refusal.reason);
    this.closeReason = `refused: ${refusal.reason}: ${refusal.message}`;
    this.deps.refusalLog.warn('link refused', refusal.reason, this.info.peer, { ...this.logFields(), detail: refusal.message });
    this.destroyBoth();
  }

  /** Ends the link gracefully (drain, shutdown). */
  end(reason: string): void {
    this.closeReason = reason;
    if (this.native) return this.native.close(false);
    this.local.end();
    this.remote.end();
  }

  destroyBoth(): void {
    if (this.native) return this.native.close(true);
    this.local.destroy();
    this.remote.destroy();
  }

  /** Adds what was counted since the last flush to the Prometheus counters. */
  flush(): void {
    flushLinkCounters(this.deps.metrics, this.info, this.flushed, this.totals());
    this.countPassed();
  }

  /**
   * A take-over asks the engine to let go of the link (src/takeover/): its
   * state, or undefined for a link not on the native data plane (relayed by
   * node:tls, which cannot be moved) or ending already.
   */
  park(): Promise<ParkedLink | undefined> {
    // A filtered link's judge state is this process's: it does not move (native/relay.c does not detach it either).
    if (!this.native || this.finished || this.deps.filter) return Promise.resolve(undefined);
    return this.native.park();
  }

  get parked(): { state: ParkedLink; params: NativeParams } | undefined {
    const state = this.native?.parkedState;
    return state && { state, params: this.native!.adoptParams };
  }

  /** The take-over did not happen: relayed here again from where it stopped. */
  unpark(): void {
    this.native?.unpark();
  }

  /** The take-over happened: the next process relays the link; here it is gone without a close on the wire. */
  handedOff(): void {
    this.native?.release();
    this.deps.filter?.release();
    forgetHandedOff(this.deps, this);
    this.finished = true;
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.graceTimer);
  }

  /**
   * A reload's word on this link's filter: the new one is put in force (the
   * decoder's state carries over), or, for a link that was not filtered and
   * now must be, the reason it has to be cut: its atom cache was never read.
   */
  refilter(next: LinkFilter | undefined): Refusal | undefined {
    const filter = this.deps.filter;
    if (filter) {
      filter.setFilter(next ?? { ...filter.current, full: true, cut: false });
      this.native?.refilter(nativeFilter(filter.current));
      return undefined;
    }
    if (!next) return undefined;
    return new Refusal('policy_denied', 'a filter now applies to this link, which was relayed unfiltered: its atom cache was never read, so it is cut and redialled filtered');
  }

  get isFinished(): boolean {
    return this.finished;
  }

  get settling(): boolean {
    return this.handingOver;
  }

  private finish(): void {
    assert.ok(!this.finished, 'link finished twice');
    this.finished = true;
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.graceTimer);
    this.flush();
    this.deps.filter?.release();
    if (this.filteredCounted) this.deps.metrics.linksFiltered.dec();
    recordLinkClosed(this.deps, this, this.native ? 'native' : 'node', this.totals(), this.closeReason);
  }

  logFields(): Record<string, string> {
    return linkLogFields(this.info);
  }
}

/** A direction's scanner state for the engine; one still in its handshake says what its acceptor must answer as. */
function scanOf(stream: DistStream, early: LinkDeps['early'], limits: Limits): ScanState {
  const { handshake, ...scan } = stream.scanState();
  if (!handshake) return scan;
  assert.ok(early, 'a link handed over in its handshake without `early`');
  const acceptor = handshake.side === 'acceptor';
  return {
    ...scan,
    handshake: { side: acceptor ? 2 : 1, index: handshake.index, maxMessage: limits.maxHandshakeMessageBytes, hidden: acceptor && early.hidden, ...(acceptor && { expect: Buffer.from(early.expect, 'latin1') }) },
  };
}

/** What the native judge needs of a filter (the rest, groups and the cut rule, stays with the JS judge that answers it). */
function nativeFilter(f: LinkFilter): NativeFilter {
  return { full: f.full, names: [...f.names], calls: [...f.calls] };
}

export function linkLogFields(info: LinkInfo): Record<string, string> {
  return { peer: info.peer, direction: info.direction, local_node: info.localNode, remote_node: info.remoteNode };
}

/** Adds what was counted since the last flush (`flushed`, updated) to the Prometheus counters. */
export function flushLinkCounters(metrics: GatewayMetrics, info: LinkInfo, flushed: NativeCounters, t: NativeCounters): void {
  const { peer, localNode, remoteNode } = info;
  const f = flushed;
  const add = (counter: typeof metrics.bytes, dir: Flow, now: number, before: number) => {
    if (now > before) counter.labels(peer, dir, localNode, remoteNode).inc(now - before);
  };
  add(metrics.bytes, 'out', t.bytesOut, f.bytesOut);
  add(metrics.bytes, 'in', t.bytesIn, f.bytesIn);
  add(metrics.frames, 'out', t.framesOut, f.framesOut);
  add(metrics.frames, 'in', t.framesIn, f.framesIn);
  if (t.ticksOut > f.ticksOut) metrics.ticks.labels(peer, 'out').inc(t.ticksOut - f.ticksOut);
  if (t.ticksIn > f.ticksIn) metrics.ticks.labels(peer, 'in').inc(t.ticksIn - f.ticksIn);
  if (t.keyUpdatesOut > f.keyUpdatesOut) metrics.keyUpdates.labels(peer, 'out').inc(t.keyUpdatesOut - f.keyUpdatesOut);
  if (t.keyUpdatesIn > f.keyUpdatesIn) metrics.keyUpdates.labels(peer, 'in').inc(t.keyUpdatesIn - f.keyUpdatesIn);
  for (const k of Object.keys(f) as (keyof NativeCounters)[]) f[k] = Math.max(f[k], t[k]);
}

/** The close reason of a link the engine closed; a violation it found is counted and logged as a refusal. */
export function nativeCloseReason(end: NativeEnd, current: string, deps: Pick<LinkDeps, 'metrics' | 'refusalLog'>, peer: string, fields: Record<string, string>): string {
  if ('refusal' in end) {
    const { reason, message } = end.refusal;
    deps.metrics.refused(reason);
    deps.refusalLog.warn('link refused', reason, peer, { ...fields, detail: message });
    return `refused: ${reason}: ${message}`;
  }
  return current === 'closed' ? end.reason : current;
}

/** A link is over: out of the table and the open gauge, counted closed, one log line. */
export function recordLinkClosed(deps: Pick<LinkDeps, 'metrics' | 'table' | 'linkLog'>, link: RelayedLink & { startedAt: number }, plane: 'native' | 'node', t: NativeCounters, reason: string): void {
  const { metrics, table, linkLog } = deps;
  const { info } = link;
  metrics.linksOpen.labels(info.peer, info.direction).dec();
  metrics.linksClosed.labels(info.peer, info.direction).inc();
  table.established.delete(link);
  table.release(info.peer);
  linkLog.info('link closed', info.peer, {
    ...linkLogFields(info),
    plane,
    bytes_out: t.bytesOut,
    bytes_in: t.bytesIn,
    frames_out: t.framesOut,
    frames_in: t.framesIn,
    duration_ms: Date.now() - link.startedAt,
    reason,
  });
}

/** A link handed to the next process at a take-over: out of this process's table, not closed (its counters went with the snapshot). */
export function forgetHandedOff(deps: Pick<LinkDeps, 'metrics' | 'table'>, link: RelayedLink): void {
  deps.metrics.linksOpen.labels(link.info.peer, link.info.direction).dec();
  deps.table.established.delete(link);
  deps.table.release(link.info.peer);
}
