// The tap under node:tls (src/fastpath/tap.ts) on real TLS 1.3 connections
// between node:tls sockets: the keys it derives from the key log and the
// record numbers it counts are the ones node:tls itself uses, in each
// direction, including the session tickets a server sends after its
// handshake. Shown by speaking to node:tls in records sealed with them, and by
// opening records node:tls sealed. Then the native engine takes a detached
// client over, with each TLS 1.3 suite, and talks to node:tls for a node.

import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, createGatewayCert, type Pem } from '../../src/pki/generate.js';
import { opensAs, recordNonce, type Suite, type TrafficKeys } from '../../src/fastpath/keys.js';
import { TlsTap, type TapState } from '../../src/fastpath/tap.js';
import { tapOf } from '../../src/fastpath/handover.js';
import { type NativeCounters, nativeEngine } from '../../src/fastpath/native.js';
import { waitFor } from '../helpers/mesh.js';

/** Seals `plain` as one TLS 1.3 application_data record (RFC 8446 §5.2), as the native plane does. */
function seal(suite: Suite, keys: TrafficKeys, seq: number, plain: Buffer): Buffer {
  const header = Buffer.from([23, 3, 3, 0, 0]);
  header.writeUInt16BE(plain.length + 1 + 16, 3);
  const cipher = crypto.createCipheriv(suite.aead as crypto.CipherGCMTypes, keys.key, recordNonce(keys.iv, seq), { authTagLength: 16 });
  cipher.setAAD(header);
  const body = Buffer.concat([cipher.update(plain), cipher.update(Buffer.from([23])), cipher.final(), cipher.getAuthTag()]);
  return Buffer.concat([header, body]);
}

interface Pair {
  client: tls.TLSSocket;
  clientTap: TlsTap;
  server: tls.TLSSocket;
  serverTap: TlsTap;
  close(): void;
}

let ca: Pem;
let alpha: Pem;
let beta: Pem;

/** A client and a server as the gateways make them: both over taps, the server's through tls.Server's own listener. */
async function connectPair(ciphersuites?: string): Promise<Pair> {
  const ctx = (p: Pem) => ({ ca: ca.cert, cert: p.cert, key: p.key, minVersion: 'TLSv1.3' as const, ...(ciphersuites ? { ciphers: ciphersuites } : {}) });
  const server = tls.createServer({ ...ctx(beta), requestCert: true, rejectUnauthorized: true });
  const listener = server.listeners('connection')[0] as (this: tls.Server, s: unknown) => void;
  server.removeListener('connection', listener);
  const taps: TlsTap[] = [];
  server.on('keylog', (line: Buffer, sock: tls.TLSSocket) => tapOf(sock)?.keylog(line));
  const tcp = net.createServer((raw) => {
    const tap = new TlsTap(raw, 'server');
    taps.push(tap);
    listener.call(server, tap);
  });
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  const port = (tcp.address() as net.AddressInfo).port;
  const accepted = new Promise<tls.TLSSocket>((r) => server.once('secureConnection', r));
  const raw = net.connect({ host: '127.0.0.1', port });
  const clientTap = new TlsTap(raw, 'client');
  const client = tls.connect({ socket: clientTap, ...ctx(alpha), servername: 'beta', checkServerIdentity: () => undefined });
  client.on('keylog', (line: Buffer) => clientTap.keylog(line));
  await new Promise<void>((resolve, reject) => {
    client.once('secureConnect', resolve);
    client.once('error', reject);
  });
  const sock = await accepted;
  clientTap.setSuite(client.getCipher().standardName);
  const serverTap = taps[0]!;
  serverTap.setSuite(sock.getCipher().standardName);
  return {
    client,
    clientTap,
    server: sock,
    serverTap,
    close() {
      client.destroy();
      sock.destroy();
      tcp.close();
    },
  };
}

/** Sends `n` messages each way through node:tls and waits until each side has read them. */
async function exchange(p: Pair, n: number): Promise<void> {
  let atServer = 0;
  let atClient = 0;
  p.server.on('data', (c: Buffer) => (atServer += c.length));
  p.client.on('data', (c: Buffer) => (atClient += c.length));
  for (let i = 0; i < n; i++) {
    p.client.write(Buffer.alloc(100 + i, 1));
    p.server.write(Buffer.alloc(200 + i, 2));
  }
  const want = (base: number) => n * base + (n * (n - 1)) / 2;
  await waitFor('both sides to read everything', () => atServer === want(100) && atClient === want(200));
  p.server.removeAllListeners('data');
  p.client.removeAllListeners('data');
}

async function quietDetach(tap: TlsTap, sock: tls.TLSSocket): Promise<TapState> {
  sock.pause();
  tap.raw.pause();
  await waitFor('node:tls to finish writing', () => sock.writableLength === 0 && tap.flushed);
  const state = tap.detach();
  if (typeof state === 'string') throw new Error(state);
  return state;
}

beforeAll(async () => {
  ca = await createCa('tap test CA');
  [alpha, beta] = await Promise.all([createGatewayCert(ca, 'alpha'), createGatewayCert(ca, 'beta')]);
});

describe.each(['TLS_AES_256_GCM_SHA384', 'TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256'])('the tap with %s', (suiteName) => {
  let p: Pair;
  beforeAll(async () => {
    p = await connectPair(suiteName);
  });
  afterAll(() => p?.close());

  it('knows the negotiated suite and the client random of the connection', () => {
    expect(p.client.getCipher().standardName).toBe(suiteName);
    expect(p.clientTap.suite?.name).toBe(suiteName);
    expect(p.clientTap.clientRandom).toMatch(/^[0-9a-f]{64}$/);
    expect(p.serverTap.clientRandom).toBe(p.clientTap.clientRandom);
  });

  it('a client that leaves node:tls speaks to a server still on it: both sides agree on keys and record numbers', async () => {
    await exchange(p, 7);
    const c = await quietDetach(p.clientTap, p.client);
    // node:tls seals a write (or several queued together) into a record: at least one each way, and the tickets.
    expect(c.txSeq).toBeGreaterThanOrEqual(1);
    expect(c.rxSeq).toBeGreaterThanOrEqual(2);
    expect(c.unread.length).toBe(0);
    // The server, still on node:tls, opens what we seal with those keys at that number.
    const got = new Promise<Buffer>((r) => p.server.once('data', r));
    p.server.resume();
    p.clientTap.raw.write(seal(c.suite, c.tx, c.txSeq, Buffer.from('sealed outside node:tls')));
    expect((await got).toString()).toBe('sealed outside node:tls');
    // And what it seals next, we open at our count of its records; one number off does not open.
    const raw = new Promise<Buffer>((r) => p.clientTap.raw.once('data', r));
    p.clientTap.raw.resume();
    p.server.write('from node:tls');
    const record = await raw;
    expect(opensAs(c.suite, c.rx, c.rxSeq, record)).toBe(true);
    expect(opensAs(c.suite, c.rx, c.rxSeq + 1, record)).toBe(false);
    expect(opensAs(c.suite, c.tx, c.rxSeq, record)).toBe(false);
  });
});

describe('the tap on the server side', () => {
  it('a server that leaves node:tls counts its own session tickets, and the client on node:tls reads what it seals', async () => {
    const p = await connectPair();
    try {
      await exchange(p, 3);
      const s = await quietDetach(p.serverTap, p.server);
      expect(s.rxSeq).toBeGreaterThanOrEqual(1);
      // Its own records: the tickets it sent with the handshake, then at least one of data.
      expect(s.txSeq).toBeGreaterThanOrEqual(2);
      const got = new Promise<Buffer>((r) => p.client.once('data', r));
      p.serverTap.raw.write(seal(s.suite, s.tx, s.txSeq, Buffer.from('from the server, outside node:tls')));
      expect((await got).toString()).toBe('from the server, outside node:tls');
    } finally {
      p.close();
    }
  });

  it('bytes node:tls has not consumed are handed over whole, in order, with the record numbers left as they were', async () => {
    const p = await connectPair();
    try {
      await exchange(p, 2);
      // The server stops reading, then the client sends more: records that reach the socket while
      // node:tls is paused. Some may still go through node:tls (its reads are not all stopped by a
      // pause); the rest must come back whole from detach().
      p.server.pause();
      p.serverTap.raw.pause();
      for (let i = 0; i < 5; i++) p.client.write(Buffer.alloc(1000, i));
      const c = await quietDetach(p.clientTap, p.client);
      await waitFor('every byte to reach the server', () => p.serverTap.raw.bytesRead >= p.clientTap.raw.bytesWritten);
      await waitFor('the server to be quiet', () => p.server.writableLength === 0 && p.serverTap.flushed);
      const s = p.serverTap.detach();
      if (typeof s === 'string') throw new Error(s);
      let records = 0;
      for (let i = 0; i + 5 <= s.unread.length; i += 5 + s.unread.readUInt16BE(i + 3)) records++;
      // What node:tls consumed and what it did not add up to what the client sent, record for record.
      expect(s.rxSeq + records).toBe(c.txSeq);
      if (records > 0) expect(opensAs(s.suite, s.rx, s.rxSeq, s.unread.subarray(0, 5 + s.unread.readUInt16BE(3)))).toBe(true);
    } finally {
      p.close();
    }
  });
});

/** A distribution frame: 4-byte length, then the payload. */
function frame(payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(payload.length);
  return Buffer.concat([h, payload]);
}

function fdOf(s: net.Socket): number {
  return (s as unknown as { _handle: { fd: number } })._handle.fd;
}

/** Reads until `n` bytes have arrived on `s`. */
function readBytes(s: net.Socket, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let have = 0;
  return new Promise((resolve) => {
    const on = (c: Buffer) => {
      chunks.push(c);
      have += c.length;
      if (have >= n) {
        s.off('data', on);
        resolve(Buffer.concat(chunks));
      }
    };
    s.on('data', on);
  });
}

describe.each(['TLS_AES_256_GCM_SHA384', 'TLS_AES_128_GCM_SHA256', 'TLS_CHACHA20_POLY1305_SHA256'])('the native engine with %s, against node:tls', (suiteName) => {
  it('seals a node’s frames into records node:tls reads, opens node:tls’s records for the node, counts frames, and ends with close_notify', async () => {
    const { engine } = nativeEngine('native');
    const p = await connectPair(suiteName);
    try {
      await exchange(p, 2);
      const c = await quietDetach(p.clientTap, p.client);
      // The "node": a loopback TCP pair whose far end the engine takes.
      const tcp = net.createServer();
      await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
      const accepted = new Promise<net.Socket>((r) => tcp.once('connection', r));
      const node = net.connect({ host: '127.0.0.1', port: (tcp.address() as net.AddressInfo).port });
      const nodeSide = await accepted;
      const scan = { remaining: 0, header: 0, headerBytes: 0, frames: 0, ticks: 0 };
      let closed!: (v: { reason: string; counters: NativeCounters }) => void;
      const done = new Promise<{ reason: string; counters: NativeCounters }>((r) => (closed = r));
      const id = engine!.adopt(
        {
          localFd: fdOf(nodeSide),
          remoteFd: fdOf(p.clientTap.raw),
          cipher: c.suite.aead,
          hash: c.suite.hash,
          txSecret: c.txSecret,
          txSeq: c.txSeq,
          rxSecret: c.rxSecret,
          rxSeq: c.rxSeq,
          client: true,
          toRemote: Buffer.alloc(0),
          toLocal: Buffer.alloc(0),
          fromRemote: c.unread,
          outScan: scan,
          inScan: { ...scan },
          maxFrameBytes: 1024 * 1024,
          closeGraceMs: 5_000,
        },
        (reason, counters) => closed({ reason, counters }),
      );
      // The engine holds duplicates: Node's own handles go without a byte.
      nodeSide.destroy();
      p.clientTap.raw.destroy();
      tcp.close();

      // Node -> engine -> node:tls: 300 KiB in one frame and a tick, across many records.
      const out = frame(crypto.randomBytes(300 * 1024));
      const atServer = readBytes(p.server, out.length + 4);
      p.server.resume();
      node.write(Buffer.concat([out, Buffer.alloc(4)]));
      expect((await atServer).equals(Buffer.concat([out, Buffer.alloc(4)]))).toBe(true);
      // node:tls -> engine -> node: two frames.
      const back = Buffer.concat([frame(Buffer.from('first')), frame(crypto.randomBytes(70_000))]);
      const atNode = readBytes(node, back.length);
      p.server.write(back);
      expect((await atNode).equals(back)).toBe(true);
      expect(engine!.counters(id)).toEqual({ bytesOut: out.length + 4, bytesIn: back.length, framesOut: 1, framesIn: 2, ticksOut: 1, ticksIn: 0, keyUpdatesOut: 0, keyUpdatesIn: 0 });

      // The node hangs up: node:tls sees close_notify and EOF, answers with its own, and the link is over.
      const serverEnded = new Promise<void>((r) => p.server.once('end', r));
      node.end();
      await serverEnded;
      p.server.end();
      const result = await done;
      expect(result.reason).toBe('local node closed');
      expect(result.counters.framesIn).toBe(2);
      node.destroy();
    } finally {
      p.close();
    }
  });
});
