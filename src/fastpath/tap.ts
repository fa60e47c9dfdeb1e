// A tap between a gateway's TCP socket and node:tls. node:tls runs the whole
// TLS conversation over it as usual (handshake, certificates, the preamble and
// the distribution handshake), while the tap walks the TLS records that pass
// in each direction and counts those sealed with the application traffic
// keys. That count is each direction's record sequence number: with it, the
// keys from the key log, and the bytes node:tls has not consumed, a link can
// leave node:tls at a record boundary and go on in the native data plane
// (src/fastpath/handover.ts). Records are handed to node:tls whole, so
// OpenSSL never holds half of one at the hand-over.

import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import type net from 'node:net';
import { noteKeylogLine, opensAs, suiteByName, trafficKeys, type AppSecrets, type Suite, type TrafficKeys } from './keys.js';

const HEADER = 5;
const APPLICATION_DATA = 23;
const HANDSHAKE = 22;
/** Records of one direction kept before they can be told apart (a TLS 1.3 handshake sends a handful). */
const MAX_UNCLASSIFIED_RECORDS = 32;
/** The largest record a peer may send (RFC 8446 §5.2: 2^14 + 256 bytes of ciphertext). */
const MAX_RECORD = HEADER + 16384 + 256;

export type TapRole = 'client' | 'server';

/** Counts one direction's records sealed with the application traffic keys. */
class Direction {
  /** Application-key records seen (the next record's sequence number). */
  appRecords = 0;
  /** Whether the first application-key record has been seen: every later one is one too. */
  started = false;
  private unclassified: Buffer[] = [];
  /** Set once the suite and this direction's secret are known. */
  keys: TrafficKeys | undefined;
  /** The application traffic secret the keys come from (the native plane derives KeyUpdate's next keys from it). */
  secret: Buffer | undefined;

  constructor(private readonly tap: TlsTap) {}

  observe(record: Buffer): void {
    if (record[0] !== APPLICATION_DATA) return; // ClientHello, ServerHello, a compatibility ChangeCipherSpec
    if (this.started) {
      this.appRecords++;
      return;
    }
    this.unclassified.push(record);
    if (this.unclassified.length > MAX_UNCLASSIFIED_RECORDS) {
      this.tap.destroy(new Error(`more than ${MAX_UNCLASSIFIED_RECORDS} TLS records before the application keys were known`));
      return;
    }
    this.classify();
  }

  /** Tells handshake-key records from the first application-key one, once the keys are known. */
  classify(): void {
    const suite = this.tap.suite;
    if (!this.keys || !suite) return;
    for (const record of this.unclassified) {
      if (this.started) this.appRecords++;
      else if (opensAs(suite, this.keys, 0, record)) {
        this.started = true;
        this.appRecords = 1;
      }
    }
    this.unclassified = [];
  }

  get pending(): number {
    return this.unclassified.length;
  }
}

/** What a link needs to leave node:tls: both directions' keys and sequence numbers, and the unread ciphertext. */
export interface TapState {
  suite: Suite;
  role: TapRole;
  tx: TrafficKeys;
  txSecret: Buffer;
  txSeq: number;
  rx: TrafficKeys;
  rxSecret: Buffer;
  rxSeq: number;
  /** Ciphertext read from the socket that node:tls has not consumed, in order. */
  unread: Buffer;
}

export class TlsTap extends Duplex {
  private readonly rxDir = new Direction(this);
  private readonly txDir = new Direction(this);
  private readonly secrets: AppSecrets = {};
  /** Bytes of an incomplete record from the peer (and of an incomplete record from node:tls). */
  private rxPart: Buffer = Buffer.alloc(0);
  private txPart: Buffer = Buffer.alloc(0);
  /** The client random of the ClientHello, in hex: how a server's key log line names its connection. */
  clientRandom: string | undefined;
  suite: Suite | undefined;
  /** Set once the native data plane owns the socket: node:tls must not touch it again. */
  private detached = false;
  /**
   * Set when the peer sends something that is not a TLS record: from then on
   * its bytes go to node:tls as they come, so OpenSSL refuses them with its
   * own precise error (an HTTP request, a wrong version), and the connection
   * can never be handed over.
   */
  private opaque = false;

  constructor(
    readonly raw: net.Socket,
    readonly role: TapRole,
  ) {
    super({ allowHalfOpen: true });
    raw.on('data', this.onRawData);
    raw.on('end', () => {
      if (!this.detached) this.push(null);
    });
    raw.on('error', (err) => {
      if (!this.detached) this.destroy(err);
    });
    raw.on('close', () => {
      if (!this.detached) this.destroy();
    });
  }

  get remoteAddress(): string | undefined {
    return this.raw.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.raw.remotePort;
  }

  /** A key log line of this connection (node:tls 'keylog'). */
  keylog(line: Buffer): void {
    noteKeylogLine(this.secrets, line);
    this.deriveKeys();
  }

  /** The negotiated suite, once the handshake is done; records seen so far are then classified. */
  setSuite(standardName: string | undefined): boolean {
    this.suite = suiteByName(standardName);
    this.deriveKeys();
    return this.suite !== undefined;
  }

  private deriveKeys(): void {
    if (!this.suite) return;
    const ours = this.role === 'client' ? this.secrets.client : this.secrets.server;
    const theirs = this.role === 'client' ? this.secrets.server : this.secrets.client;
    if (ours && !this.txDir.keys) {
      this.txDir.keys = trafficKeys(this.suite, ours);
      this.txDir.secret = ours;
    }
    if (theirs && !this.rxDir.keys) {
      this.rxDir.keys = trafficKeys(this.suite, theirs);
      this.rxDir.secret = theirs;
    }
    this.txDir.classify();
    this.rxDir.classify();
  }

  private readonly onRawData = (chunk: Buffer): void => {
    assert.ok(!this.detached, 'raw data reached a detached tap');
    const data = this.rxPart.length ? Buffer.concat([this.rxPart, chunk]) : chunk;
    const end = this.opaque ? -1 : this.walk(data, this.rxDir, this.role === 'server');
    if (end === -1) {
      this.opaque = true;
      this.rxPart = Buffer.alloc(0);
      if (!this.push(data)) this.raw.pause();
      return;
    }
    this.rxPart = end < data.length ? Buffer.from(data.subarray(end)) : Buffer.alloc(0);
    if (end > 0 && !this.push(data.subarray(0, end))) this.raw.pause();
  };

  /** Walks whole records from the start of `data`; returns where the first incomplete one starts (-1: not TLS records). */
  private walk(data: Buffer, dir: Direction, hasClientHello: boolean): number {
    let i = 0;
    while (i + HEADER <= data.length) {
      const len = data.readUInt16BE(i + 3);
      const type = data[i]!;
      // What OpenSSL checks in a record header before it waits for the rest.
      if (type < 20 || type > 23 || data[i + 1] !== 3 || HEADER + len > MAX_RECORD) return -1;
      if (i + HEADER + len > data.length) break;
      const record = data.subarray(i, i + HEADER + len);
      if (hasClientHello && this.clientRandom === undefined && record[0] === HANDSHAKE && len >= 38 && record[5] === 1) {
        this.clientRandom = record.subarray(11, 43).toString('hex');
      }
      dir.observe(record);
      i += HEADER + len;
    }
    return i;
  }

  override _read(): void {
    if (!this.detached) this.raw.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.detached) return cb(new Error('node:tls wrote to a link the native data plane owns'));
    const data = this.txPart.length ? Buffer.concat([this.txPart, chunk]) : chunk;
    const end = this.walk(data, this.txDir, this.role === 'client');
    // node:tls itself writes nothing but records.
    assert.ok(end !== -1, 'node:tls wrote something that is not a TLS record');
    this.txPart = end < data.length ? Buffer.from(data.subarray(end)) : Buffer.alloc(0);
    // The callback waits for the socket: a TLSSocket whose writes are all done has put every record on the wire.
    this.raw.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.detached) this.raw.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.detached) this.raw.destroy(err ?? undefined);
    cb(err);
  }

  /** Whether every byte node:tls wrote has reached the kernel. */
  get flushed(): boolean {
    return this.writableLength === 0 && this.raw.writableLength === 0 && this.txPart.length === 0;
  }

  /**
   * Takes the socket away from node:tls, which must have stopped: no write of
   * its own pending, its reads paused. Returns the state the native data
   * plane continues from, or why it cannot.
   */
  detach(): TapState | string {
    if (this.detached) return 'already detached';
    if (this.opaque) return 'the peer sent bytes that are not TLS records';
    if (!this.suite) return 'the negotiated cipher suite is not one the native data plane supports';
    if (!this.txDir.keys || !this.rxDir.keys || !this.txDir.secret || !this.rxDir.secret) return 'the traffic secrets were not logged';
    if (this.txDir.pending || this.rxDir.pending) return 'records not yet classified';
    if (!this.flushed) return 'node:tls still has bytes to write';
    // Everything node:tls has not consumed: records queued in this stream, the
    // incomplete record, and what the socket has read since it was paused.
    this.removeAllListeners('data');
    this.raw.off('data', this.onRawData);
    const unread: Buffer[] = [];
    let queuedRecords = 0;
    for (let c = this.read() as Buffer | null; c !== null; c = this.read() as Buffer | null) {
      unread.push(c);
      queuedRecords += countRecords(c);
    }
    unread.push(this.rxPart);
    for (let c = this.raw.read() as Buffer | null; c !== null; c = this.raw.read() as Buffer | null) unread.push(c);
    const rxSeq = this.rxDir.appRecords - queuedRecords;
    assert.ok(rxSeq >= 0, 'more records queued than were counted');
    this.detached = true;
    return {
      suite: this.suite,
      role: this.role,
      tx: this.txDir.keys,
      txSecret: this.txDir.secret,
      txSeq: this.txDir.appRecords,
      rx: this.rxDir.keys,
      rxSecret: this.rxDir.secret,
      rxSeq,
      unread: Buffer.concat(unread),
    };
  }
}

/** Whole records in a chunk the tap pushed (it only ever pushes whole records). */
function countRecords(chunk: Buffer): number {
  let n = 0;
  for (let i = 0; i + HEADER <= chunk.length; i += HEADER + chunk.readUInt16BE(i + 3)) n++;
  return n;
}
