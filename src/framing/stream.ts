// Observes one direction of a distribution connection as it is relayed. The
// relay forwards chunks untouched; this parser only walks them, so it never
// copies frame payloads. It holds at most one handshake message (bounded) and
// three bytes of a split frame header.

import { checkOrder, decodeHandshakeMessage, type HandshakeMessage, ProtocolError, type Side } from './handshake.js';

export interface StreamLimits {
  maxHandshakeMessageBytes: number;
  maxFrameBytes: number;
}

export class DistStream {
  /** Distribution frames seen after the handshake (ticks not included). */
  frames = 0;
  /** Zero-length frames: net_ticktime keep-alives. */
  ticks = 0;
  /** True once this direction has finished its handshake. */
  framed = false;

  private messages = 0;
  private hsBuf: Buffer | null = null;
  // Frame scanner state: payload bytes still to skip, and a split header.
  private remaining = 0;
  private headerBytes = 0;
  private header = 0;

  constructor(
    readonly side: Side,
    private readonly limits: StreamLimits,
    /** Called for each handshake message, in order; may throw to refuse it. */
    private readonly onMessage: (msg: HandshakeMessage) => void,
  ) {}

  /**
   * Offset in the last chunk pushed after which this direction stands between
   * two frames (the last such point), or -1: where a relay may insert a frame
   * of its own (a denied spawn's reply, src/filter/).
   */
  lastBoundary = -1;

  /**
   * Walks one chunk. Throws ProtocolError on anything malformed or too big.
   * Returns the offset where frames begin in it (its length while the
   * handshake goes on, 0 once it is over).
   */
  push(chunk: Buffer): number {
    let i = 0;
    this.lastBoundary = -1;
    if (!this.framed) {
      i = this.handshake(chunk);
      if (!this.framed) return chunk.length;
    }
    this.scanFrames(chunk, i);
    return i;
  }

  /** Whether the bytes walked so far end between two frames (after the handshake). */
  get atBoundary(): boolean {
    return this.framed && this.remaining === 0 && this.headerBytes === 0;
  }

  private handshake(chunk: Buffer): number {
    let data = chunk;
    let base = 0;
    if (this.hsBuf) {
      data = Buffer.concat([this.hsBuf, chunk]);
      base = this.hsBuf.length;
      this.hsBuf = null;
    }
    let i = 0;
    while (i + 2 <= data.length) {
      const len = data.readUInt16BE(i);
      if (len > this.limits.maxHandshakeMessageBytes) {
        throw new ProtocolError('handshake_too_large', `handshake message of ${len} bytes exceeds ${this.limits.maxHandshakeMessageBytes}`);
      }
      if (i + 2 + len > data.length) break;
      const msg = decodeHandshakeMessage(this.side, data.subarray(i + 2, i + 2 + len));
      const order = checkOrder(this.side, this.messages++, msg);
      this.onMessage(msg);
      i += 2 + len;
      if (order === 'done') {
        this.framed = true;
        // Offset into `chunk` where frames begin (the buffered prefix came before it).
        return i - base;
      }
    }
    if (i < data.length) this.hsBuf = Buffer.from(data.subarray(i));
    return chunk.length;
  }

  private scanFrames(chunk: Buffer, start: number): void {
    const n = chunk.length;
    const max = this.limits.maxFrameBytes;
    let i = start;
    while (i < n) {
      if (this.remaining === 0 && this.headerBytes === 0) this.lastBoundary = i;
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, n - i);
        this.remaining -= take;
        i += take;
        continue;
      }
      let len: number;
      if (this.headerBytes === 0 && i + 4 <= n) {
        len = chunk.readUInt32BE(i);
        i += 4;
      } else {
        while (this.headerBytes < 4 && i < n) {
          this.header = this.header * 256 + chunk[i++]!;
          this.headerBytes++;
        }
        if (this.headerBytes < 4) return;
        len = this.header;
        this.header = 0;
        this.headerBytes = 0;
      }
      if (len === 0) {
        this.ticks++;
        continue;
      }
      if (len > max) throw new ProtocolError('frame_too_large', `frame of ${len} bytes exceeds ${max}`);
      this.frames++;
      this.remaining = len;
    }
    if (this.remaining === 0 && this.headerBytes === 0) this.lastBoundary = n;
  }

  /**
   * Where the frame scanner stands, for a relay that takes this direction
   * over (the native data plane): the payload bytes still to skip, the bytes
   * of a split header, and the counts so far. Only in frame mode.
   */
  scanState(): { remaining: number; header: number; headerBytes: number; frames: number; ticks: number; handshake?: { side: Side; index: number } } {
    if (!this.framed) {
      // In the handshake: only between two of its messages (the native walker starts at a message, native/handshake.h).
      if (!this.betweenMessages) throw new Error('scanState() in the middle of a handshake message');
      return { remaining: 0, header: 0, headerBytes: 0, frames: 0, ticks: 0, handshake: { side: this.side, index: this.messages } };
    }
    return { remaining: this.remaining, header: this.header, headerBytes: this.headerBytes, frames: this.frames, ticks: this.ticks };
  }

  /** Whether this direction, still in its handshake, has walked whole messages only (and at least the initiator's send_name). */
  get betweenMessages(): boolean {
    return !this.framed && this.hsBuf === null && (this.side === 'acceptor' || this.messages > 0);
  }

  /** Bytes this parser holds right now (for the invariant that it stays bounded). */
  get bufferedBytes(): number {
    return (this.hsBuf?.length ?? 0) + this.headerBytes;
  }
}
