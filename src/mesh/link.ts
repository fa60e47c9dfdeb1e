// One relayed distribution link: a plain TCP socket to a local node and a TLS
// socket to the peer gateway. Chunks are forwarded as they arrive, without
// copies or stream pipes; each direction's DistStream walks them to enforce
// the framing, and counting is plain arithmetic flushed to Prometheus at
// scrape and at close.

import assert from 'node:assert/strict';
import type { X509Certificate } from 'node:crypto';
import type net from 'node:net';
import type { Limits } from '../config/limits.js';
import type { DistStream } from '../framing/stream.js';
import type { LinkLog } from '../log/link-log.js';
import type { RefusalLog } from '../log/refusal-log.js';
import type { GatewayMetrics, LinkDirection } from '../metrics/metrics.js';
import type { LinkTable } from './link-table.js';
import { type Refusal, toRefusal } from './refusal.js';

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
}

type Flow = 'out' | 'in';

export class Link {
  readonly startedAt = Date.now();
  private readonly bytes = { out: 0, in: 0 };
  private readonly flushed = { bytesOut: 0, bytesIn: 0, framesOut: 0, framesIn: 0, ticksOut: 0, ticksIn: 0 };
  private handshakeTimer: NodeJS.Timeout | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private socketsOpen = 2;
  private finished = false;
  private closeReason = 'closed';
  /** Whether writes to the local node are being held back for one writev (see forward). */
  private corked = false;

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
    for (const chunk of toLocal) this.forward(chunk, 'in');
    this.pump(this.local, this.remote, this.localStream, 'out');
    this.pump(this.remote, this.local, this.remoteStream, 'in');
    if (!this.handshakeDone()) {
      this.handshakeTimer = setTimeout(
        () => this.refuse({ reason: 'handshake_timeout', message: 'distribution handshake not finished in time' } as Refusal),
        Math.max(0, this.handshakeDeadline - Date.now()),
      );
    }
  }

  private handshakeDone(): boolean {
    return this.localStream.framed && this.remoteStream.framed;
  }

  private pump(src: net.Socket, dst: net.Socket, stream: DistStream, flow: Flow): void {
    const hwm = this.deps.limits.writeHighWaterMark;
    src.on('data', (chunk: Buffer) => {
      try {
        stream.push(chunk);
      } catch (err) {
        this.refuse(toRefusal(err));
        return;
      }
      this.forward(chunk, flow);
      if (dst.writableLength > hwm) src.pause();
      if (this.handshakeTimer && this.handshakeDone()) {
        clearTimeout(this.handshakeTimer);
        this.handshakeTimer = undefined;
      }
    });
    dst.on('drain', () => src.resume());
    src.on('end', () => {
      // The first reason wins: after end() (drain) the other side's FIN is the echo, not the cause.
      if (this.closeReason === 'closed') this.closeReason = flow === 'out' ? 'local node closed' : 'peer closed';
      dst.end();
    });
    src.on('error', (err) => {
      this.closeReason = `${flow === 'out' ? 'local' : 'peer'} socket error: ${err.message}`;
      this.destroyBoth();
    });
    src.on('close', () => this.socketClosed());
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
    if (this.finished) return;
    this.deps.metrics.refused(refusal.reason);
    this.closeReason = `refused: ${refusal.reason}: ${refusal.message}`;
    this.deps.refusalLog.warn('link refused', refusal.reason, this.info.peer, { ...this.logFields(), detail: refusal.message });
    this.destroyBoth();
  }

  /** Ends the link gracefully (drain, shutdown). */
  end(reason: string): void {
    this.closeReason = reason;
    this.local.end();
    this.remote.end();
  }

  destroyBoth(): void {
    this.local.destroy();
    this.remote.destroy();
  }

  /** Adds what was counted since the last flush to the Prometheus counters. */
  flush(): void {
    const { metrics } = this.deps;
    const { peer, localNode, remoteNode } = this.info;
    const f = this.flushed;
    const add = (counter: typeof metrics.bytes, dir: Flow, now: number, before: number) => {
      if (now > before) counter.labels(peer, dir, localNode, remoteNode).inc(now - before);
    };
    add(metrics.bytes, 'out', this.bytes.out, f.bytesOut);
    add(metrics.bytes, 'in', this.bytes.in, f.bytesIn);
    add(metrics.frames, 'out', this.localStream.frames, f.framesOut);
    add(metrics.frames, 'in', this.remoteStream.frames, f.framesIn);
    const ticksOut = this.localStream.ticks;
    const ticksIn = this.remoteStream.ticks;
    if (ticksOut > f.ticksOut) metrics.ticks.labels(peer, 'out').inc(ticksOut - f.ticksOut);
    if (ticksIn > f.ticksIn) metrics.ticks.labels(peer, 'in').inc(ticksIn - f.ticksIn);
    this.flushed.bytesOut = this.bytes.out;
    this.flushed.bytesIn = this.bytes.in;
    this.flushed.framesOut = this.localStream.frames;
    this.flushed.framesIn = this.remoteStream.frames;
    this.flushed.ticksOut = ticksOut;
    this.flushed.ticksIn = ticksIn;
  }

  get isFinished(): boolean {
    return this.finished;
  }

  private finish(): void {
    assert.ok(!this.finished, 'link finished twice');
    this.finished = true;
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.graceTimer);
    this.flush();
    const { metrics, table, linkLog } = this.deps;
    metrics.linksOpen.labels(this.info.peer, this.info.direction).dec();
    metrics.linksClosed.labels(this.info.peer, this.info.direction).inc();
    table.established.delete(this);
    table.release(this.info.peer);
    linkLog.info('link closed', this.info.peer, {
      ...this.logFields(),
      bytes_out: this.bytes.out,
      bytes_in: this.bytes.in,
      frames_out: this.localStream.frames,
      frames_in: this.remoteStream.frames,
      duration_ms: Date.now() - this.startedAt,
      reason: this.closeReason,
    });
  }

  logFields(): Record<string, string> {
    return { peer: this.info.peer, direction: this.info.direction, local_node: this.info.localNode, remote_node: this.info.remoteNode };
  }
}
