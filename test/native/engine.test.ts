// The native engine (native/*.c) on its own, over real loopback sockets: a
// test "node" on one side, a record peer with known traffic secrets on the
// other (test/helpers/record-peer.ts), so every record kind a compromised peer
// gateway could send can be sent. It runs on the shipped build, and again on
// the AddressSanitizer + UBSan build (sanitizer.test.ts sets
// BEAMGATE_ENGINE_MODULE), where any memory or undefined-behaviour error
// aborts the run. KeyUpdates are sent every REKEY_RECORDS records here, so
// every scenario also crosses key generations.

import crypto from 'node:crypto';
import { closeSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NATIVE_MAX_HANDSHAKE_MESSAGE_BYTES, NATIVE_READ_BYTES } from '../../src/config/limits.js';
import { tapOf } from '../../src/fastpath/handover.js';
import { type AdoptArgs, type DetachedLink, ENGINE_OPTIONS, type HandshakeState, loadBinding, NATIVE_MODULE, type NativeCounters, NativeEngine, type Question } from '../../src/fastpath/native.js';
import { challengeV6, encodeHandshakeMessage } from '../../src/framing/handshake.js';
import { TlsTap } from '../../src/fastpath/tap.js';
import { createCa, createGatewayCert } from '../../src/pki/generate.js';
import { atom, cacheRef, cont, first, normal, pid, plain, small, tuple } from '../helpers/etf-write.js';
import { waitFor } from '../helpers/mesh.js';
import {
  ALERT,
  APPLICATION_DATA,
  Direction,
  fdOf,
  frame,
  HANDSHAKE,
  hashLength,
  keyUpdate,
  newSessionTicket,
  RecordReader,
  SocketPairs,
  SUITE_NAMES,
  suite,
} from '../helpers/record-peer.js';

const MODULE = process.env.BEAMGATE_ENGINE_MODULE ?? NATIVE_MODULE;
/** Small, so that every scenario crosses KeyUpdates. */
const REKEY_RECORDS = 64;
/** How long a link's close may take to be reported on a loaded machine (under the sanitizer too). */
const CLOSE_TIMEOUT_MS = 30_000;
const GRACE_MS = 5_000;

let engine: NativeEngine;
const pairs = new SocketPairs();

interface Closed {
  reason: string;
  counters: NativeCounters;
  detached?: DetachedLink;
}

interface TestLink {
  id: number;
  /** The test's node: what the engine writes to it, and whether it ended. */
  node: net.Socket;
  nodeGot: () => Buffer;
  nodeEnded: Promise<void>;
  /** Settles when the node's socket has closed: everything the engine wrote to it has been read. */
  nodeClosed: Promise<void>;
  /** The peer gateway: seals with `seal` (the engine's receiving keys), reads the engine's records. */
  peer: net.Socket;
  seal: Direction;
  reader: RecordReader;
  closed: Promise<Closed>;
  suiteName: string;
}

interface LinkOptions {
  suiteName?: string;
  client?: boolean;
  /** Ciphertext handed over as read by Node but not opened: built with the peer's sealing keys. */
  fromRemote?: (seal: Direction) => Buffer;
  toLocal?: Buffer;
  toRemote?: Buffer;
  graceMs?: number;
  maxFrameBytes?: number;
  /** A filtered link: its filter, and where its questions go. */
  filter?: NonNullable<AdoptArgs['filter']>;
  onAsk?: (q: Question) => void;
  /** Directions still in their distribution handshake (native/handshake.h). */
  outHandshake?: HandshakeState;
  inHandshake?: HandshakeState;
}

async function openLink(opts: LinkOptions = {}): Promise<TestLink> {
  const s = suite(opts.suiteName ?? 'TLS_AES_256_GCM_SHA384');
  const [node, engineLocal] = await pairs.pair();
  const [engineRemote, peer] = await pairs.pair();
  const txSecret = crypto.randomBytes(hashLength(s));
  const rxSecret = crypto.randomBytes(hashLength(s));
  const seal = new Direction(s, rxSecret);
  const reader = new RecordReader(new Direction(s, txSecret));
  const got: Buffer[] = [];
  node.on('data', (c: Buffer) => got.push(c));
  const nodeEnded = new Promise<void>((r) => node.once('end', r));
  const nodeClosed = new Promise<void>((r) => node.once('close', () => r()));
  node.on('error', () => {});
  peer.on('data', (c: Buffer) => reader.feed(c));
  peer.on('error', () => {});
  const scan = { remaining: 0, header: 0, headerBytes: 0, frames: 0, ticks: 0 };
  let resolve!: (c: Closed) => void;
  const closed = new Promise<Closed>((r) => (resolve = r));
  const id = engine.adopt(
    {
      localFd: fdOf(engineLocal),
      remoteFd: fdOf(engineRemote),
      cipher: s.aead,
      hash: s.hash,
      txSecret,
      txSeq: 0,
      rxSecret,
      rxSeq: 0,
      client: opts.client ?? true,
      toRemote: opts.toRemote ?? Buffer.alloc(0),
      toLocal: opts.toLocal ?? Buffer.alloc(0),
      fromRemote: opts.fromRemote ? opts.fromRemote(seal) : Buffer.alloc(0),
      outScan: { ...scan, ...(opts.outHandshake && { handshake: opts.outHandshake }) },
      inScan: { ...scan, ...(opts.inHandshake && { handshake: opts.inHandshake }) },
      maxFrameBytes: opts.maxFrameBytes ?? 64 * 1024 * 1024,
      closeGraceMs: opts.graceMs ?? GRACE_MS,
      ...(opts.filter && { filter: opts.filter }),
    },
    (reason, counters, detached) => resolve({ reason, counters, detached }),
    opts.onAsk,
  );
  // The engine holds duplicates of both descriptors.
  engineLocal.destroy();
  engineRemote.destroy();
  return { id, node, nodeGot: () => Buffer.concat(got), nodeEnded, nodeClosed, peer, seal, reader, closed, suiteName: opts.suiteName ?? 'TLS_AES_256_GCM_SHA384' };
}

/** A Unix socket connected to itself through a listener: what passfd sends on one end arrives on the other. */
async function passfdChannel(): Promise<{ a: number; b: number; close: () => void }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'beamgate-passfd-'));
  const file = path.join(dir, 'c.sock');
  const server = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((r) => server.listen(file, r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const a = engine.passfd.connect(file);
  const sock = await accepted;
  const b = engine.passfd.dup(fdOf(sock));
  sock.destroy();
  server.close();
  return {
    a,
    b,
    close: () => {
      closeSync(a);
      closeSync(b);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function closeNotify(d: Direction): Buffer {
  return d.seal(ALERT, Buffer.from([1, 0]));
}

/** The engine reports a close before the test's side of the node socket has read what came before it. */
async function nodeClosedWithin(l: TestLink): Promise<void> {
  return Promise.race([
    l.nodeClosed,
    new Promise<never>((_, j) => setTimeout(() => j(new Error(`link ${l.id}: node socket not closed within ${CLOSE_TIMEOUT_MS} ms`)), CLOSE_TIMEOUT_MS)),
  ]);
}

async function closedWithin(l: TestLink): Promise<Closed> {
  return Promise.race([
    l.closed,
    new Promise<never>((_, j) => setTimeout(() => j(new Error(`link ${l.id} not closed within ${CLOSE_TIMEOUT_MS} ms`)), CLOSE_TIMEOUT_MS)),
  ]);
}

/** Seals `data` into application records, a KeyUpdate of the peer's every `every` records. */
function sealStream(d: Direction, data: Buffer, every = 50): Buffer {
  const out: Buffer[] = [];
  for (let i = 0, n = 0; i < data.length; i += 16384, n++) {
    if (n > 0 && n % every === 0) {
      out.push(d.seal(HANDSHAKE, keyUpdate(false)));
      d.update();
    }
    out.push(d.seal(APPLICATION_DATA, data.subarray(i, i + 16384)));
  }
  return Buffer.concat(out);
}

/**
 * The socket bound to 127.0.0.1:`port` (and connected to 127.0.0.1:`remotePort`, for one of the sockets a listener
 * accepted, which share its port), from /proc/net/tcp: its state (hex), its send queue (bytes not yet acknowledged) and
 * its receive queue (bytes acknowledged but not yet read by whoever holds the socket).
 */
function tcpSocket(port: number, remotePort?: number): { state: string; txQueue: number; rxQueue: number } | undefined {
  const hex = (p: number) => `0100007F:${p.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] !== hex(port) || (remotePort !== undefined && f[2] !== hex(remotePort))) continue;
    const [tx, rx] = f[4]!.split(':');
    return { state: f[3]!, txQueue: parseInt(tx!, 16), rxQueue: parseInt(rx!, 16) };
  }
  return undefined;
}

/** The TCP state (hex, /proc/net/tcp) of this process's socket bound to 127.0.0.1:`port`. */
function tcpState(port: number): string | undefined {
  return tcpSocket(port)?.state;
}

/** CPU time (ms) the relay thread has used, from /proc. */
function relayThreadCpuMs(): number {
  for (const tid of readdirSync('/proc/self/task')) {
    if (readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() !== 'beamgate-relay') continue;
    const fields = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, in clock ticks of 10 ms
  }
  throw new Error('no beamgate-relay thread in this process');
}

beforeAll(async () => {
  engine = new NativeEngine(loadBinding(MODULE), { ...ENGINE_OPTIONS, readBytes: NATIVE_READ_BYTES, rekeyRecords: REKEY_RECORDS, maxHandshakeMessageBytes: NATIVE_MAX_HANDSHAKE_MESSAGE_BYTES });
  await pairs.start();
});

afterAll(() => pairs.close());

describe(`the native engine (${MODULE.split('/').pop()})`, () => {
  it.each(SUITE_NAMES)('relays both ways with %s, follows and sends KeyUpdates, and ends on close_notify', async (suiteName) => {
    const l = await openLink({ suiteName });
    const out = crypto.randomBytes(3 * 1024 * 1024);
    const back = crypto.randomBytes(2 * 1024 * 1024);
    l.node.write(frame(out));
    l.peer.write(sealStream(l.seal, frame(back)));
    await waitFor('both streams relayed', () => l.reader.text.length === out.length + 4 && l.nodeGot().length === back.length + 4, 20_000);
    expect(l.reader.error).toBeUndefined();
    expect(l.reader.text.equals(frame(out))).toBe(true);
    expect(l.nodeGot().equals(frame(back))).toBe(true);
    // 3 MiB is 193 records: a KeyUpdate of ours after each 64.
    expect(l.reader.keyUpdates).toEqual([false, false, false]);
    const live = engine.counters(l.id)!;
    expect(live).toMatchObject({ framesOut: 1, framesIn: 1, keyUpdatesOut: 3, keyUpdatesIn: 2 });
    l.peer.write(closeNotify(l.seal));
    await l.nodeEnded; // the node gets its FIN and ends too
    const c = await closedWithin(l);
    expect(c.reason).toBe('peer closed');
    await waitFor('our close_notify at the peer', () => l.reader.closeNotify);
  });

  it('answers a KeyUpdate that asks for one before its next record', async () => {
    const l = await openLink();
    l.peer.write(l.seal.seal(HANDSHAKE, keyUpdate(true)));
    l.seal.update();
    l.peer.write(l.seal.seal(APPLICATION_DATA, frame(Buffer.from('after the update'))));
    await waitFor('the record under the new key', () => l.nodeGot().length === 20);
    l.node.write(frame(Buffer.from('reply')));
    await waitFor('the reply', () => l.reader.text.length === 9);
    expect(l.reader.error).toBeUndefined();
    expect(l.reader.keyUpdates).toEqual([false]);
    expect(engine.counters(l.id)).toMatchObject({ keyUpdatesOut: 1, keyUpdatesIn: 1 });
    l.node.destroy();
    l.peer.destroy();
    await closedWithin(l);
  });

  /** One stream holding every record kind a well-behaved peer may send after the handshake. */
  function everyKind(d: Direction): { stream: Buffer; plain: Buffer; records: number[] } {
    const parts: Buffer[] = [];
    const plain: Buffer[] = [];
    const data = (b: Buffer) => {
      plain.push(b);
      parts.push(d.seal(APPLICATION_DATA, b));
    };
    data(frame(Buffer.from('first frame, '.repeat(8))));
    data(Buffer.alloc(0)); // zero-length application data is allowed
    parts.push(d.seal(HANDSHAKE, newSessionTicket(48)));
    data(Buffer.from([0, 0, 0, 0])); // a tick
    parts.push(d.seal(ALERT, Buffer.from([1, 90]))); // user_canceled: a warning, close_notify follows
    data(frame(Buffer.from('padded')).subarray(0, 7));
    parts.push(d.seal(APPLICATION_DATA, frame(Buffer.from('padded')).subarray(7), 200));
    plain.push(frame(Buffer.from('padded')).subarray(7));
    parts.push(d.seal(HANDSHAKE, keyUpdate(false)));
    d.update();
    data(frame(Buffer.from('under the second key')));
    // A ticket and a KeyUpdate coalesced in one record: the KeyUpdate ends it.
    parts.push(d.seal(HANDSHAKE, Buffer.concat([newSessionTicket(32), keyUpdate(false)])));
    d.update();
    // A ticket split across two records.
    const t = newSessionTicket(40);
    parts.push(d.seal(HANDSHAKE, t.subarray(0, 3)));
    parts.push(d.seal(HANDSHAKE, t.subarray(3)));
    data(frame(Buffer.from('under the third key')));
    parts.push(closeNotify(d));
    const records: number[] = [];
    let at = 0;
    for (const p of parts) records.push((at += p.length));
    return { stream: Buffer.concat(parts), plain: Buffer.concat(plain), records };
  }

  /** The plaintext of the whole records in the first `k` bytes of the stream. */
  function plainBefore(d: ReturnType<typeof everyKind>, k: number, plainAt: number[]): number {
    let n = 0;
    for (let i = 0; i < d.records.length; i++) if (d.records[i]! <= k) n = plainAt[i]!;
    return n;
  }

  it('takes every record kind split at every byte boundary, the first part handed over with the link', async () => {
    // The stream's layout does not depend on the keys, only on their order: one layout for every link.
    const s = suite('TLS_AES_256_GCM_SHA384');
    const layout = everyKind(new Direction(s, Buffer.alloc(48)));
    // The plaintext delivered once each record is in.
    const ref = new RecordReader(new Direction(s, Buffer.alloc(48)));
    const plainAt: number[] = [];
    let prev = 0;
    for (const end of layout.records) {
      ref.feed(layout.stream.subarray(prev, end));
      prev = end;
      plainAt.push(ref.text.length);
    }
    expect(ref.error).toBeUndefined();
    expect(ref.text.equals(layout.plain)).toBe(true);
    const total = layout.stream.length;
    const BATCH = 24;
    for (let start = 1; start < total; start += BATCH) {
      const batch = [];
      for (let k = start; k < Math.min(total, start + BATCH); k++) {
        batch.push(
          (async () => {
            let kinds!: ReturnType<typeof everyKind>;
            const l = await openLink({
              fromRemote: (d) => {
                kinds = everyKind(d);
                return kinds.stream.subarray(0, k);
              },
            });
            const ready = plainBefore(kinds, k, plainAt);
            // The handed-over part first; the rest once the engine has shown it took that part.
            if (ready > 0) await waitFor(`link ${k}: the plaintext of the handed-over records`, () => l.nodeGot().length >= ready, CLOSE_TIMEOUT_MS);
            l.peer.write(kinds.stream.subarray(k));
            const c = await closedWithin(l);
            return { k, reason: c.reason, same: l.nodeGot().equals(kinds.plain), updates: c.counters.keyUpdatesIn };
          })(),
        );
      }
      for (const r of await Promise.all(batch)) expect(r).toEqual({ k: r.k, reason: 'peer closed', same: true, updates: 2 });
    }
  }, 300_000);

  it('closes the link, never the process, on 400 mutated streams; the node gets only a prefix of what was sealed', async () => {
    let seed = 0x5eed;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const reasons = new Map<string, number>();
    for (let round = 0; round < 400; round += 20) {
      const batch = [];
      for (let i = 0; i < 20; i++) {
        batch.push(
          (async () => {
            let kinds!: ReturnType<typeof everyKind>;
            const l = await openLink({ fromRemote: (d) => ((kinds = everyKind(d)), Buffer.alloc(0)) });
            const s = Buffer.from(kinds.stream);
            const at = rand(s.length);
            let m: Buffer;
            switch (rand(5)) {
              case 0: // flip a bit
                s[at] = s[at]! ^ (1 << rand(8));
                m = s;
                break;
              case 1: // cut
                m = s.subarray(0, at);
                break;
              case 2: // drop a byte
                m = Buffer.concat([s.subarray(0, at), s.subarray(at + 1)]);
                break;
              case 3: // insert a byte
                m = Buffer.concat([s.subarray(0, at), Buffer.from([rand(256)]), s.subarray(at)]);
                break;
              default: // repeat a stretch (a replay)
                m = Buffer.concat([s.subarray(0, at), s.subarray(rand(at + 1), at), s.subarray(at)]);
            }
            l.peer.end(m);
            const c = await closedWithin(l);
            const got = l.nodeGot();
            expect(kinds.plain.subarray(0, got.length).equals(got)).toBe(true);
            return c.reason.replace(/:.*$/s, '').replace(/ (socket error).*/, ' $1');
          })(),
        );
      }
      for (const r of await Promise.all(batch)) reasons.set(r, (reasons.get(r) ?? 0) + 1);
    }
    for (const r of reasons.keys()) expect(r).toMatch(/^(peer closed|refused|peer socket error)$/);
    expect(reasons.get('refused')).toBeGreaterThan(200);
  }, 300_000);

  // What RFC 8446 says ends a connection: each closes the link with its reason.
  const hostile: [string, (d: Direction) => Buffer, RegExp, LinkOptions?][] = [
    ['an inner plaintext of 16,385 bytes of content', (d) => d.seal(APPLICATION_DATA, Buffer.alloc(16385)), /record_overflow: an inner plaintext of 16386 bytes exceeds 16385/],
    ['16,384 bytes of content and one byte of padding', (d) => d.seal(APPLICATION_DATA, Buffer.alloc(16384), 1), /record_overflow: an inner plaintext of 16386/],
    ['a ciphertext of 16,641 bytes', () => Buffer.concat([Buffer.from([23, 3, 3, 0x41, 0x01]), Buffer.alloc(16641)]), /record_overflow: 16641 bytes of ciphertext exceed 16640/],
    ['a record of all padding', (d) => d.sealInner(Buffer.alloc(40)), /no content type, all padding/],
    ['a bad tag', (d) => { const r = d.seal(APPLICATION_DATA, Buffer.from('x')); r[r.length - 1]! ^= 1; return r; }, /bad_record_mac/],
    ['a record too short for a tag', () => Buffer.from([23, 3, 3, 0, 16, ...Buffer.alloc(16)]), /cannot hold a tag and a content type/],
    ['a plaintext alert', () => Buffer.from([21, 3, 3, 0, 2, 2, 40]), /not a protected TLS 1.3 record \(type 21/],
    ['a KeyUpdate followed by a ticket in one record', (d) => d.seal(HANDSHAKE, Buffer.concat([keyUpdate(false), newSessionTicket()])), /KeyUpdate not at the end of its record/],
    ['a truncated ticket, then application data', (d) => Buffer.concat([d.seal(HANDSHAKE, Buffer.from([4, 0xff, 0xff])), d.seal(APPLICATION_DATA, Buffer.from('x'))]), /type 23 inside a split handshake message/],
    ['a ticket whose lengths do not add up', (d) => { const t = newSessionTicket(); t[t.length - 9]! ^= 0x10; return d.seal(HANDSHAKE, t); }, /decode_error: malformed NewSessionTicket/],
    ['a ticket sent to a server', (d) => d.seal(HANDSHAKE, newSessionTicket()), /NewSessionTicket from the client/, { client: false }],
    ['an empty handshake record', (d) => d.seal(HANDSHAKE, Buffer.alloc(0)), /an empty handshake record/],
    ['a KeyUpdate of two bytes', (d) => d.seal(HANDSHAKE, Buffer.from([24, 0, 0, 2, 0, 0])), /decode_error: KeyUpdate of 2 bytes/],
    ['a KeyUpdate asking 2', (d) => d.seal(HANDSHAKE, Buffer.from([24, 0, 0, 1, 2])), /illegal_parameter: KeyUpdate request 2/],
    ['a CertificateRequest', (d) => d.seal(HANDSHAKE, Buffer.from([13, 0, 0, 4, 0, 0, 0, 0])), /CertificateRequest after the handshake/],
    ['a post-handshake message over the bound', (d) => d.seal(HANDSHAKE, Buffer.from([4, 0, 0x50, 0, 1, 2, 3])), /post-handshake message of 20480 bytes exceeds 16384/],
    ['a ClientHello', (d) => d.seal(HANDSHAKE, Buffer.from([1, 0, 0, 0])), /handshake message type 1 after the handshake/],
    ['an inner content type 24', (d) => d.seal(24, Buffer.from([1, 0, 0])), /record content type 24 after the handshake/],
    ['an alert of three bytes', (d) => d.seal(ALERT, Buffer.from([2, 40, 0])), /decode_error: an alert of 3 bytes/],
    ['a fatal alert', (d) => d.seal(ALERT, Buffer.from([2, 40])), /^peer socket error: TLS alert 40 from the peer$/],
  ];

  it.each(hostile)('%s', async (_what, build, reason, opts) => {
    const l = await openLink(opts);
    l.peer.write(l.seal.seal(APPLICATION_DATA, frame(Buffer.from('before'))));
    l.peer.write(build(l.seal));
    const c = await closedWithin(l);
    expect(c.reason).toMatch(reason);
    await nodeClosedWithin(l);
    expect(l.nodeGot().equals(frame(Buffer.from('before')))).toBe(true);
  });

  it('takes 16,384 bytes of content, the largest record', async () => {
    const l = await openLink();
    const big = frame(crypto.randomBytes(16380));
    l.peer.write(l.seal.seal(APPLICATION_DATA, big));
    await waitFor('the largest record', () => l.nodeGot().length === 16384);
    expect(l.nodeGot().equals(big)).toBe(true);
    l.peer.end(closeNotify(l.seal));
    expect((await closedWithin(l)).reason).toBe('peer closed');
  });

  it('refuses a frame over the limit from the node, and a FIN in the middle of a record from the peer', async () => {
    const a = await openLink({ maxFrameBytes: 1000 });
    a.node.write(frame(Buffer.alloc(2000)));
    expect((await closedWithin(a)).reason).toMatch(/^refused:frame_too_large:frame of 2000 bytes exceeds 1000$/);
    const b = await openLink();
    b.peer.end(b.seal.seal(APPLICATION_DATA, Buffer.from('cut short')).subarray(0, 20));
    expect((await closedWithin(b)).reason).toBe('peer socket error: connection closed in the middle of a TLS record');
  });

  it('waits out the close grace of a half-closed link without spinning the relay thread', async () => {
    const grace = 4_000;
    const l = await openLink({ graceMs: grace });
    // The peer stops reading while the node sends, until the engine holds output it cannot write.
    l.peer.pause();
    // The node writes one chunk at a time, the next only once the engine has read the last (the node's send queue and
    // the engine socket's receive queue both empty). Acknowledged is not enough: a slow engine (a sanitizer build, a
    // loaded machine) lets acknowledged chunks pile up unread until its receive window closes, and a FIN that meets a
    // closed window is dropped, not acknowledged. This way, when the engine stops reading, at most one chunk waits in
    // its socket's receive buffer and the node's FIN fits behind it.
    const chunk = Buffer.alloc(32 * 1024);
    const deadline = Date.now() + 20_000;
    for (;;) {
      const taken = l.node.writableLength === 0 && tcpSocket(l.node.localPort!)?.txQueue === 0;
      if (taken && engine.buffered() > 0) break;
      if (Date.now() > deadline) throw new Error('timed out waiting for the engine to hold output the peer does not read');
      if (taken && tcpSocket(l.node.remotePort!, l.node.localPort!)?.rxQueue === 0) l.node.write(chunk);
      await new Promise((r) => setTimeout(r, 1));
    }
    // The node ends: its FIN reaches the engine's socket.
    l.node.end();
    await waitFor('the node FIN acknowledged (FIN_WAIT2)', () => tcpState(l.node.localPort!) === '05', 10_000);
    // The peer ends its side with close_notify and no FIN: the engine passes the end on, and the local socket is shut both ways.
    l.peer.write(closeNotify(l.seal));
    await l.nodeEnded;
    const before = relayThreadCpuMs();
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, grace / 2)); // the window measured, not an assertion
    const used = relayThreadCpuMs() - before;
    const window = Date.now() - t0;
    const c = await closedWithin(l);
    expect(c.reason).toBe(`peer closed, and the peer did not read what was sent within the ${grace} ms grace period`);
    // Idle but for its own wake-ups; a spinning thread uses the whole window.
    expect(used).toBeLessThan(window * 0.1);
    l.peer.destroy();
  });

  it('holds one record at most for a record split across reads, and nothing once links close', async () => {
    const links: TestLink[] = [];
    for (let i = 0; i < 100; i++) links.push(await openLink());
    const base = engine.buffered();
    for (const l of links) l.peer.write(l.seal.seal(APPLICATION_DATA, Buffer.alloc(16000)).subarray(0, 1000));
    await waitFor('every split record carried', () => engine.buffered() - base >= 100 * 1000, 10_000);
    const held = engine.buffered() - base;
    // One record's worth each (16,645 bytes), not a read's.
    expect(held).toBeLessThanOrEqual(100 * (5 + 16384 + 256));
    for (const l of links) {
      l.node.destroy();
      l.peer.destroy();
    }
    await Promise.all(links.map(closedWithin));
    expect(engine.buffered()).toBe(base);
  });

  it('adopts and closes in bursts, closes right after adopts, graceful and abortive: every link reported once', async () => {
    let reported = 0;
    let adopted = 0;
    for (let round = 0; round < 25; round++) {
      const batch: Promise<Closed>[] = [];
      const links: TestLink[] = [];
      for (let i = 0; i < 24; i++) {
        // Ciphertext handed over with each link: its registration opens records, while more adopts and closes queue behind it.
        const l = await openLink({ fromRemote: (d) => sealStream(d, crypto.randomBytes(48 * 1024)) });
        adopted++;
        engine.close(l.id, i % 2 === 0);
        if (i % 3 === 0) engine.close(l.id, true);
        links.push(l);
        batch.push(closedWithin(l).then((c) => (reported++, c)));
      }
      for (const l of links) {
        l.node.destroy();
        l.peer.destroy();
      }
      await Promise.all(batch);
    }
    expect(reported).toBe(adopted);
    expect(engine.counters(0)).toBeUndefined();
  }, 120_000);
});

/** A dialling gateway's link handed over right after the node's send_name: the node initiates, the peer's node accepts as `expect`. */
function dialled(expect: string, hidden = false, maxMessage = 4096): Pick<LinkOptions, 'outHandshake' | 'inHandshake'> {
  return {
    outHandshake: { side: 1, index: 1, maxMessage, hidden: false },
    inHandshake: { side: 2, index: 0, maxMessage, hidden, expect: Buffer.from(expect, 'latin1') },
  };
}

const hsMessage = (body: Buffer | string) => encodeHandshakeMessage(typeof body === 'string' ? Buffer.from(body, 'latin1') : body);
const STATUS_OK = hsMessage('sok');
const REPLY = hsMessage(Buffer.concat([Buffer.from('r'), Buffer.alloc(20, 7)]));
const ACK = hsMessage(Buffer.concat([Buffer.from('a'), Buffer.alloc(16, 9)]));
const PUBLISHED = 1n;
const challenge = (name: string, flags = 0x0d07_df7f_bd00_0004n) => hsMessage(challengeV6(name, flags));

describe(`a link handed over in its distribution handshake (${MODULE.split('/').pop()})`, () => {
  it('walks the rest of the handshake byte by byte both ways, then counts frames; handshaking() says when it is over', async () => {
    const l = await openLink(dialled('b1@beta.demo'));
    expect(engine.handshaking(l.id)).toBe(true);
    const fromPeer = Buffer.concat([STATUS_OK, challenge('b1@beta.demo')]);
    // Every byte in its own record: the walker resumes at every split.
    for (const b of fromPeer) l.peer.write(l.seal.seal(APPLICATION_DATA, Buffer.from([b])));
    await waitFor('status and challenge at the node', () => l.nodeGot().length === fromPeer.length);
    l.node.write(REPLY);
    await waitFor('the reply at the peer', () => l.reader.text.length === REPLY.length);
    expect(engine.handshaking(l.id)).toBe(true); // the acceptor's ack is still to come
    l.peer.write(l.seal.seal(APPLICATION_DATA, Buffer.concat([ACK, frame(Buffer.from('first')), frame(Buffer.alloc(0)).subarray(0, 4)])));
    l.node.write(Buffer.concat([frame(Buffer.from('hello')), Buffer.alloc(4)]));
    await waitFor('ack and frames relayed', () => l.nodeGot().length === fromPeer.length + ACK.length + 9 + 4 && l.reader.text.length === REPLY.length + 13);
    expect(l.nodeGot().equals(Buffer.concat([fromPeer, ACK, frame(Buffer.from('first')), Buffer.alloc(4)]))).toBe(true);
    expect(engine.handshaking(l.id)).toBe(false);
    expect(engine.counters(l.id)).toMatchObject({ framesOut: 1, framesIn: 1, ticksOut: 1, ticksIn: 1 });
    l.peer.end(closeNotify(l.seal));
    expect((await closedWithin(l)).reason).toBe('peer closed');
  });

  it.each<[string, Buffer, RegExp, boolean?]>([
    ['a challenge naming another node', Buffer.concat([STATUS_OK, challenge('b2@beta.demo')]), /^refused:bad_handshake:challenge names b2@beta\.demo, expected b1@beta\.demo$/],
    ['a challenge from an operator that is not hidden', Buffer.concat([STATUS_OK, challenge('b1@beta.demo', PUBLISHED)]), /^refused:operator_not_hidden:operator node b1@beta\.demo must run as a hidden node$/, true],
    ['a challenge before the status', challenge('b1@beta.demo'), /^refused:bad_handshake:acceptor began with challenge, not status$/],
    ['a handshake message over the link limit', Buffer.concat([STATUS_OK, Buffer.from([0x10, 0x01])]), /^refused:handshake_too_large:handshake message of 4097 bytes exceeds 4096$/],
    ['an unknown tag', Buffer.concat([STATUS_OK, hsMessage('x')]), /^refused:bad_handshake:unexpected handshake tag 120 from the accepting node$/],
  ])('cuts the link on %s, the node getting only what came before', async (_what, bytes, reason, operator) => {
    const l = await openLink(dialled('b1@beta.demo', operator ?? false));
    l.peer.write(l.seal.seal(APPLICATION_DATA, bytes));
    expect((await closedWithin(l)).reason).toMatch(reason);
    await nodeClosedWithin(l);
    // Relayed up to the message before the refused one, never the refused one itself.
    expect(bytes.subarray(0, l.nodeGot().length).equals(l.nodeGot())).toBe(true);
    expect(l.nodeGot().length).toBeLessThanOrEqual(STATUS_OK.length);
  });

  it('cuts the link on a send_name from the initiating node after its first (the gateway walked that one)', async () => {
    const l = await openLink(dialled('b1@beta.demo'));
    l.node.write(hsMessage(Buffer.concat([Buffer.from('N'), Buffer.alloc(14)])));
    expect((await closedWithin(l)).reason).toBe('refused:bad_handshake:initiator sent send_name out of order');
  });

  it('lets go of a link asked to detach in its handshake only once that is over, framed', async () => {
    const l = await openLink(dialled('b1@beta.demo'));
    expect(engine.detach(l.id)).toBe(true);
    l.peer.write(l.seal.seal(APPLICATION_DATA, Buffer.concat([STATUS_OK, challenge('b1@beta.demo')])));
    await waitFor('status and challenge at the node', () => l.nodeGot().length === STATUS_OK.length + challenge('b1@beta.demo').length);
    l.node.write(REPLY);
    await waitFor('the reply at the peer', () => l.reader.text.length === REPLY.length);
    expect(engine.handshaking(l.id)).toBe(true); // still relaying: not detached in the middle
    l.peer.write(l.seal.seal(APPLICATION_DATA, ACK));
    const c = await closedWithin(l);
    expect(c.reason).toBe('detached');
    expect(c.detached!.outScan).toMatchObject({ remaining: 0, headerBytes: 0 });
    expect(l.nodeGot().subarray(-ACK.length).equals(ACK)).toBe(true);
    closeSync(c.detached!.localFd);
    closeSync(c.detached!.remoteFd);
  });

  it('refuses to adopt a filtered link in its handshake, or a handshake the gateway never hands over', async () => {
    await expect(openLink({ ...dialled('b1@beta.demo'), filter: { full: true, names: [], calls: [], atoms: [] }, onAsk: () => {} })).rejects.toThrow(/filtered link is handed over once its handshake is over/);
    await expect(openLink({ outHandshake: { side: 1, index: 0, maxMessage: 4096, hidden: false } })).rejects.toThrow(/bad adopt arguments/);
    await expect(openLink({ inHandshake: { side: 2, index: 0, maxMessage: 4096, hidden: false } })).rejects.toThrow(/bad adopt arguments/);
  });
});

describe(`detach and adopt again, as a take-over does (${MODULE.split('/').pop()})`, () => {
  it.each(SUITE_NAMES)('lets go of a link mid-stream with %s; adopted again through passed descriptors, it goes on byte for byte', async (suiteName) => {
    const l = await openLink({ suiteName });
    const s = suite(suiteName);
    // Neither end reads for now: the engine's output backs up, and what it
    // holds (sealed records for the peer, walked plaintext for the node) must move with the link.
    l.peer.pause();
    l.node.pause();
    const out = crypto.randomBytes(24 * 1024 * 1024);
    const back = crypto.randomBytes(12 * 1024 * 1024);
    l.node.write(frame(out));
    l.peer.write(sealStream(l.seal, frame(back)));
    await waitFor('both directions relaying', () => {
      const c = engine.counters(l.id);
      return c !== undefined && c.bytesOut > 1024 * 1024 && c.bytesIn > 1024 * 1024;
    }, 20_000);
    expect(engine.detach(l.id)).toBe(true);
    const before = await closedWithin(l);
    expect(before.reason).toBe('detached');
    const d = before.detached!;
    expect(d).toBeDefined();
    // The descriptors travel through the kernel as a take-over's do; the engine's own are closed behind them.
    const ch = await passfdChannel();
    const sent = engine.passfd.send(ch.a, Buffer.from('link'), [d.localFd, d.remoteFd], 10_000);
    const got = await engine.passfd.recv(ch.b, 1024, 8, 10_000);
    await sent;
    ch.close();
    expect(got.data.toString()).toBe('link');
    expect(got.fds).toHaveLength(2);
    closeSync(d.localFd);
    closeSync(d.remoteFd);
    let resolve!: (c: Closed) => void;
    const closed = new Promise<Closed>((r) => (resolve = r));
    const c0 = before.counters;
    const id = engine.adopt(
      {
        localFd: got.fds[0]!,
        remoteFd: got.fds[1]!,
        cipher: s.aead,
        hash: s.hash,
        txSecret: d.txSecret,
        txSeq: d.txSeq,
        rxSecret: d.rxSecret,
        rxSeq: d.rxSeq,
        client: true,
        toRemote: Buffer.alloc(0),
        toLocal: Buffer.alloc(0),
        fromRemote: d.fromRemote,
        sealedToRemote: d.sealedToRemote,
        walkedToLocal: d.walkedToLocal,
        rxHandshake: d.rxHandshake,
        outScan: { ...d.outScan, frames: c0.framesOut, ticks: c0.ticksOut },
        inScan: { ...d.inScan, frames: c0.framesIn, ticks: c0.ticksIn },
        maxFrameBytes: 64 * 1024 * 1024,
        closeGraceMs: GRACE_MS,
      },
      (reason, counters) => resolve({ reason, counters }),
    );
    closeSync(got.fds[0]!);
    closeSync(got.fds[1]!);
    l.peer.resume();
    l.node.resume();
    await waitFor('both streams relayed after the move', () => l.reader.text.length === out.length + 4 && l.nodeGot().length === back.length + 4, 60_000);
    expect(l.reader.error).toBeUndefined();
    expect(l.reader.text.equals(frame(out))).toBe(true);
    expect(l.nodeGot().equals(frame(back))).toBe(true);
    // 24 MiB is at least 1,537 records: a KeyUpdate after every 64, on both sides of the move.
    expect(l.reader.keyUpdates.length).toBeGreaterThanOrEqual(Math.floor(1537 / 64));
    const live = engine.counters(id)!;
    expect(live.bytesOut + c0.bytesOut).toBe(out.length + 4);
    expect(live.bytesIn + c0.bytesIn).toBe(back.length + 4);
    // The frame that began before the move is counted once, by the first engine's scanner state.
    expect(live).toMatchObject({ framesOut: 1, framesIn: 1 });
    l.node.end();
    await waitFor('close_notify from the adopting engine', () => l.reader.closeNotify, 20_000);
    l.peer.end(closeNotify(l.seal));
    const end = await Promise.race([closed, new Promise<never>((_, j) => setTimeout(() => j(new Error('moved link not closed')), CLOSE_TIMEOUT_MS))]);
    expect(end.reason).toBe('local node closed');
    await l.nodeEnded;
  });

  it('detaches, closes and adopts in bursts, in every order: every link reported once, as detached or closed', async () => {
    let reported = 0;
    let adopted = 0;
    let detached = 0;
    let detachFirst = 0;
    for (let round = 0; round < 20; round++) {
      const batch: Promise<Closed>[] = [];
      const links: TestLink[] = [];
      for (let i = 0; i < 24; i++) {
        // A frame's ciphertext handed over with each link: its registration opens records while commands queue behind it.
        const l = await openLink({ fromRemote: (d) => sealStream(d, frame(crypto.randomBytes(48 * 1024))) });
        adopted++;
        // Detach alone, detach twice, detach then close (either kind), close then detach.
        const order = i % 5;
        if (order !== 4) detachFirst++;
        if (order !== 4) engine.detach(l.id);
        if (order === 1) engine.detach(l.id);
        if (order === 2 || order === 4) engine.close(l.id, false);
        if (order === 3) engine.close(l.id, true);
        if (order === 4) engine.detach(l.id);
        links.push(l);
        batch.push(
          closedWithin(l).then((c) => {
            reported++;
            // A close taken first ends the link; a detach taken first moves it, unless a side closed before the relay thread took the command.
            if (order === 4 || !c.detached) expect(c.detached === undefined && /^(closing|local node closed|peer closed|local socket error|peer socket error)/.test(c.reason), c.reason).toBe(true);
            if (c.detached) {
              // A detached link's descriptors are the owner's now.
              detached++;
              expect(c.reason).toBe('detached');
              closeSync(c.detached.localFd);
              closeSync(c.detached.remoteFd);
            }
            return c;
          }),
        );
      }
      for (const l of links) {
        l.node.destroy();
        l.peer.destroy();
      }
      await Promise.all(batch);
    }
    expect(reported).toBe(adopted);
    expect(detached).toBeGreaterThan(0);
    expect(detached).toBeLessThanOrEqual(detachFirst);
  }, 120_000);

  it('leaves a link that has begun to end where it is: it closes as usual, not detached', async () => {
    const l = await openLink();
    l.node.end();
    await waitFor('close_notify sent', () => l.reader.closeNotify, 20_000);
    engine.detach(l.id);
    l.peer.end(closeNotify(l.seal));
    const c = await closedWithin(l);
    expect(c.reason).toBe('local node closed');
    expect(c.detached).toBeUndefined();
  });

  it('judges a filtered link: passes what its judge clears, holds an asked message and what follows until the answer, and writes our reply between two of the node frames', async () => {
    const questions: Question[] = [];
    const l = await openLink({ filter: { full: false, names: ['api'], calls: [], atoms: [] }, onAsk: (q) => questions.push(q) });
    // A send to a pid passes in C; exit/2 from another node is asked (the JS judge denies it); then another send and a tick.
    const send1 = frame(plain(tuple(small(2), atom(''), pid(1)), tuple(atom('hello'), small(1))));
    const exit2 = frame(plain(tuple(small(8), pid(9), pid(1), atom('kill'))));
    const send2 = frame(normal([{ slot: 5, atom: 'api' }], tuple(small(6), pid(9), atom(''), cacheRef(0)), tuple(atom('$gen_cast'), atom('ping'))));
    const tick = Buffer.alloc(4);
    l.peer.write(sealStream(l.seal, Buffer.concat([send1, exit2, send2, tick])));
    await waitFor('the question', () => questions.length === 1, 20_000);
    await waitFor('the send before it', () => l.nodeGot().length >= send1.length, 20_000);
    // Everything behind the asked message waits for the answer: order is the node's to keep.
    expect(l.nodeGot()).toEqual(send1);
    const q = questions[0]!;
    expect(q.magic).toBe(false);
    expect(q.fragments).toBe(1);
    expect(q.body).toEqual(exit2.subarray(4 + 3));
    // The node is in the middle of a frame: our reply goes after it, before its next one.
    const own = frame(plain(tuple(small(2), atom(''), pid(3)), atom('from_the_node')));
    const later = frame(plain(tuple(small(2), atom(''), pid(4)), atom('later')));
    l.node.write(own.subarray(0, 10));
    await waitFor('the first bytes of the node frame', () => l.reader.text.length === 10, 20_000);
    const reply = frame(plain(tuple(small(31), atom('reply'))));
    engine.answer(l.id, q.ticket, false, reply);
    await waitFor('the frames behind the dropped one', () => l.nodeGot().length === send1.length + send2.length + 4, 20_000);
    expect(l.nodeGot()).toEqual(Buffer.concat([send1, send2, tick]));
    l.node.write(Buffer.concat([own.subarray(10), later]));
    await waitFor('the node frames and our reply', () => l.reader.text.length === own.length + reply.length + later.length, 20_000);
    expect(l.reader.text).toEqual(Buffer.concat([own, reply, later]));
    expect(engine.judged(l.id)).toEqual({ passed: 2, asked: 1 });
    // An answer to a question no longer open changes nothing.
    engine.answer(l.id, q.ticket, true);
    engine.close(l.id, false);
    l.node.end();
    l.peer.write(closeNotify(l.seal));
    l.peer.end();
    const c = await closedWithin(l);
    expect(c.reason).not.toMatch(/refused/);
    expect(l.nodeGot()).toEqual(Buffer.concat([send1, send2, tick]));
  });

  it('judges a filtered link: a fragmented message goes on whole at its last fragment, an asked one that passes goes on with what followed, a bad header cuts the link', async () => {
    const questions: Question[] = [];
    const l = await openLink({ filter: { full: false, names: [], calls: [], atoms: [[7, 'seeded']] }, onAsk: (q) => questions.push(q) });
    // A send in three fragments (the control message in the first, the payload split), interleaved with a whole send.
    const control = tuple(small(2), atom(''), pid(1));
    const payload = [109, 0, 0, 0, 200, ...Array.from({ length: 200 }, (_, i) => i & 255)];
    const body = [...control, ...payload];
    const f3 = frame(first(42n, 3n, [], body.slice(0, 30)));
    const f2 = frame(cont(42n, 2n, body.slice(30, 120)));
    const f1 = frame(cont(42n, 1n, body.slice(120)));
    // The seeded cache slot: a send whose payload is the atom there.
    const seeded = frame(normal([{ slot: 7 }], tuple(small(2), atom(''), pid(1)), cacheRef(0)));
    l.peer.write(sealStream(l.seal, Buffer.concat([f3, seeded, f2])));
    await waitFor('the whole send between the fragments', () => l.nodeGot().length === seeded.length, 20_000);
    expect(l.nodeGot()).toEqual(seeded);
    // A group leader change is asked; the gateway lets it pass: it goes on, then what came after it.
    const gl = frame(plain(tuple(small(7), pid(9), pid(1))));
    l.peer.write(sealStream(l.seal, Buffer.concat([f1, gl, seeded])));
    await waitFor('the question', () => questions.length === 1, 20_000);
    expect(questions[0]!.body).toEqual(gl.subarray(4 + 3));
    engine.answer(l.id, questions[0]!.ticket, true);
    await waitFor('the rest', () => l.nodeGot().length === 2 * seeded.length + f3.length + f2.length + f1.length + gl.length, 20_000);
    expect(l.nodeGot()).toEqual(Buffer.concat([seeded, f3, f2, f1, gl, seeded]));
    expect(engine.judged(l.id)).toEqual({ passed: 3, asked: 1 });
    l.peer.write(sealStream(l.seal, frame(Buffer.from([131, 99, 0]))));
    const c = await closedWithin(l);
    expect(c.reason).toMatch(/^refused:dist_malformed:bad_header: /);
  });

  it('passfd refuses more descriptors than asked for (closing them), a message over the bound, and one that does not come in time', async () => {
    const [x, y] = await pairs.pair();
    const many = await passfdChannel();
    const sent = engine.passfd.send(many.a, Buffer.alloc(3), [fdOf(x), fdOf(y), fdOf(x)], 10_000);
    await expect(engine.passfd.recv(many.b, 1024, 2, 10_000)).rejects.toThrow(/more descriptors than 2/);
    await sent;
    many.close();
    const big = await passfdChannel();
    const sentBig = engine.passfd.send(big.a, Buffer.alloc(4096), [], 10_000);
    await expect(engine.passfd.recv(big.b, 1024, 2, 10_000)).rejects.toThrow(/4096 bytes exceeds 1024/);
    await sentBig;
    big.close();
    const quiet = await passfdChannel();
    await expect(engine.passfd.recv(quiet.b, 1024, 2, 200)).rejects.toThrow(/timed out/);
    quiet.close();
    x.destroy();
    y.destroy();
  });
});

describe('the native engine against node:tls', () => {
  it("sends KeyUpdates that OpenSSL follows, for 12 MiB through a real TLS 1.3 connection", async () => {
    const ca = await createCa('engine test CA');
    const [alpha, beta] = await Promise.all([createGatewayCert(ca, 'alpha'), createGatewayCert(ca, 'beta')]);
    const ctx = (p: { cert: string; key: string }) => ({ ca: ca.cert, cert: p.cert, key: p.key, minVersion: 'TLSv1.3' as const });
    const server = tls.createServer({ ...ctx(beta), requestCert: true, rejectUnauthorized: true });
    const secure = new Promise<tls.TLSSocket>((r) => server.once('secureConnection', r));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const raw = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port });
    const tap = new TlsTap(raw, 'client');
    const client = tls.connect({ socket: tap, ...ctx(alpha), servername: 'beta', checkServerIdentity: () => undefined });
    client.on('keylog', (line: Buffer) => tap.keylog(line));
    await new Promise<void>((r, j) => client.once('secureConnect', r).once('error', j));
    const sock = await secure;
    tap.setSuite(client.getCipher().standardName);
    // A round trip lets the server's tickets through before the hand-over.
    sock.write('ping');
    await new Promise((r) => client.once('data', r));
    client.pause();
    raw.pause();
    await waitFor('the tap flushed', () => tap.flushed);
    expect(tapOf(client)).toBe(tap);
    const state = tap.detach();
    if (typeof state === 'string') throw new Error(state);
    const [node, engineLocal] = await pairs.pair();
    let resolve!: (c: Closed) => void;
    const closed = new Promise<Closed>((r) => (resolve = r));
    const scan = { remaining: 0, header: 0, headerBytes: 0, frames: 0, ticks: 0 };
    const id = engine.adopt(
      {
        localFd: fdOf(engineLocal),
        remoteFd: fdOf(raw),
        cipher: state.suite.aead,
        hash: state.suite.hash,
        txSecret: state.txSecret,
        txSeq: state.txSeq,
        rxSecret: state.rxSecret,
        rxSeq: state.rxSeq,
        client: true,
        toRemote: Buffer.alloc(0),
        toLocal: Buffer.alloc(0),
        fromRemote: state.unread,
        outScan: scan,
        inScan: { ...scan },
        maxFrameBytes: 64 * 1024 * 1024,
        closeGraceMs: GRACE_MS,
      },
      (reason, counters) => resolve({ reason, counters }),
    );
    engineLocal.destroy();
    raw.on('error', () => {});
    raw.destroy();
    const payload = frame(crypto.randomBytes(12 * 1024 * 1024 - 4));
    const got: Buffer[] = [];
    let n = 0;
    sock.on('data', (c: Buffer) => (got.push(c), (n += c.length)));
    node.write(payload);
    await waitFor('node:tls read all of it', () => n === payload.length, 30_000);
    expect(Buffer.concat(got).equals(payload)).toBe(true);
    // 769 records: a KeyUpdate after each 64.
    expect(engine.counters(id)!.keyUpdatesOut).toBe(12);
    // And node:tls's own records still open after our updates (its keys did not change).
    sock.write(frame(Buffer.from('pong')));
    const back: Buffer[] = [];
    node.on('data', (c: Buffer) => back.push(c));
    await waitFor('node:tls to the node', () => Buffer.concat(back).equals(frame(Buffer.from('pong'))));
    node.end();
    sock.end();
    const c = await closedWithin({ closed, id } as TestLink);
    expect(c.reason).toMatch(/closed/);
    server.close();
  });
});
