// A TLS 1.3 record peer for the native engine's tests: seals and opens
// records (RFC 8446 §5.2) with traffic secrets the test chose, follows
// KeyUpdate in both directions, and can build every record kind a
// compromised peer gateway could send, well-formed or not. Real sockets carry
// the bytes; only the handshake is skipped (the engine never sees one).

import crypto from 'node:crypto';
import net from 'node:net';
import { expandLabel, recordNonce, type Suite, suiteByName, trafficKeys } from '../../src/fastpath/keys.js';

export const SUITE_NAMES = ['TLS_AES_256_GCM_SHA384', 'TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256'] as const;

export function suite(name: string): Suite {
  const s = suiteByName(name);
  if (!s) throw new Error(`unknown suite ${name}`);
  return s;
}

export function hashLength(s: Suite): number {
  return s.hash === 'sha384' ? 48 : 32;
}

/** One direction's keys: seals or opens in order, and moves to the next generation on KeyUpdate. */
export class Direction {
  seq: number;
  private key: Buffer;
  private iv: Buffer;
  updates = 0;

  constructor(
    readonly suite: Suite,
    public secret: Buffer,
    seq = 0,
  ) {
    this.seq = seq;
    ({ key: this.key, iv: this.iv } = trafficKeys(suite, secret));
  }

  update(): void {
    this.secret = expandLabel(this.suite.hash, this.secret, 'traffic upd', this.secret.length);
    ({ key: this.key, iv: this.iv } = trafficKeys(this.suite, this.secret));
    this.seq = 0;
    this.updates++;
  }

  /** A record whose inner plaintext is content, type and `padding` zeros; the header's length may be forced. */
  seal(type: number, content: Buffer, padding = 0): Buffer {
    const inner = Buffer.concat([content, Buffer.from([type]), Buffer.alloc(padding)]);
    return this.sealInner(inner);
  }

  sealInner(inner: Buffer): Buffer {
    const header = Buffer.from([23, 3, 3, 0, 0]);
    header.writeUInt16BE(inner.length + 16, 3);
    const c = crypto.createCipheriv(this.suite.aead as crypto.CipherGCMTypes, this.key, recordNonce(this.iv, this.seq++), { authTagLength: 16 });
    c.setAAD(header);
    return Buffer.concat([header, c.update(inner), c.final(), c.getAuthTag()]);
  }

  /** Opens one record (header included); throws on a bad tag. */
  open(record: Buffer): { type: number; content: Buffer } {
    const body = record.subarray(5);
    const d = crypto.createDecipheriv(this.suite.aead as crypto.CipherGCMTypes, this.key, recordNonce(this.iv, this.seq++), { authTagLength: 16 });
    d.setAAD(record.subarray(0, 5));
    d.setAuthTag(body.subarray(body.length - 16));
    const inner = Buffer.concat([d.update(body.subarray(0, body.length - 16)), d.final()]);
    let i = inner.length - 1;
    while (i >= 0 && inner[i] === 0) i--;
    if (i < 0) throw new Error('all-padding record');
    return { type: inner[i]!, content: inner.subarray(0, i) };
  }
}

export const APPLICATION_DATA = 23;
export const ALERT = 21;
export const HANDSHAKE = 22;

export function keyUpdate(requested: boolean): Buffer {
  return Buffer.from([24, 0, 0, 1, requested ? 1 : 0]);
}

/** A well-formed NewSessionTicket (RFC 8446 §4.6.1) with one extension. */
export function newSessionTicket(ticketBytes = 64): Buffer {
  const body = Buffer.concat([
    Buffer.from([0, 0, 0x1c, 0x20]), // lifetime
    crypto.randomBytes(4), // age_add
    Buffer.from([8]),
    crypto.randomBytes(8), // nonce
    Buffer.from([ticketBytes >> 8, ticketBytes & 0xff]),
    crypto.randomBytes(ticketBytes),
    Buffer.from([0, 8, 0, 42, 0, 4, 0, 0, 0x40, 0]), // extensions: early_data, max_early_data_size
  ]);
  return Buffer.concat([Buffer.from([4, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
}

/** What the engine sent the peer, opened: application data, alerts, handshake messages (KeyUpdate followed). */
export class RecordReader {
  private buf = Buffer.alloc(0);
  readonly data: Buffer[] = [];
  readonly alerts: number[] = [];
  readonly keyUpdates: boolean[] = [];
  tickets = 0;
  closeNotify = false;
  /** A handshake message split across records, until whole. */
  private hs = Buffer.alloc(0);
  error: string | undefined;

  constructor(readonly dir: Direction) {}

  feed(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    while (!this.error && this.buf.length >= 5) {
      const len = this.buf.readUInt16BE(3);
      if (this.buf.length < 5 + len) break;
      const record = this.buf.subarray(0, 5 + len);
      this.buf = this.buf.subarray(5 + len);
      try {
        const { type, content } = this.dir.open(record);
        if (type === APPLICATION_DATA) this.data.push(Buffer.from(content));
        else if (type === ALERT) {
          this.alerts.push(content[1]!);
          if (content[1] === 0) this.closeNotify = true;
        } else if (type === HANDSHAKE) {
          this.hs = Buffer.concat([this.hs, content]);
          while (this.hs.length >= 4 && this.hs.length >= 4 + this.hs.readUIntBE(1, 3)) {
            const m = this.hs.subarray(0, 4 + this.hs.readUIntBE(1, 3));
            this.hs = this.hs.subarray(m.length);
            if (m[0] === 4) this.tickets++;
            else if (m[0] === 24) {
              this.keyUpdates.push(m[4] === 1);
              this.dir.update();
            } else this.error = `unexpected handshake message ${m[0]}`;
          }
        } else this.error = `unexpected record type ${type}`;
      } catch (err) {
        this.error = (err as Error).message;
      }
    }
  }

  get text(): Buffer {
    return Buffer.concat(this.data);
  }
}

/** Connected loopback TCP pairs from one listener. */
export class SocketPairs {
  private server = net.createServer();
  private waiting = new Map<number, (s: net.Socket) => void>();
  /** Accepted before anyone asked for them (the accept and the connect race). */
  private arrived = new Map<number, net.Socket>();

  async start(): Promise<void> {
    this.server.on('connection', (s) => {
      const resolve = this.waiting.get(s.remotePort!);
      this.waiting.delete(s.remotePort!);
      if (resolve) resolve(s);
      else this.arrived.set(s.remotePort!, s);
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
  }

  async pair(): Promise<[net.Socket, net.Socket]> {
    const port = (this.server.address() as net.AddressInfo).port;
    const a = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((r, j) => a.once('connect', r).once('error', j));
    const early = this.arrived.get(a.localPort!);
    this.arrived.delete(a.localPort!);
    const b = early ?? (await new Promise<net.Socket>((r) => this.waiting.set(a.localPort!, r)));
    a.setNoDelay(true);
    b.setNoDelay(true);
    return [a, b];
  }

  close(): void {
    this.server.close();
  }
}

export function fdOf(s: net.Socket): number {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no descriptor');
  return fd;
}

/** The bytes of a distribution frame: a 4-byte length and the payload. */
export function frame(payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(payload.length);
  return Buffer.concat([h, payload]);
}
