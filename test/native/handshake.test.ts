// The native distribution handshake walker (native/handshake.c, fed through
// frames_scan by the test-only handshake.walk of native/handshake_napi.c)
// against the gateway's TypeScript walker on the same bytes: DistStream
// (src/framing/stream.ts: decodeHandshakeMessage, then checkOrder) with the
// checks the gateway's callbacks add (src/mesh/outbound.ts, inbound.ts: the
// acceptor's challenge names the node dialled, and an operator's is hidden,
// checkOperatorHidden), errors mapped as the gateway maps them (toRefusal).
// The walker takes a direction after the messages the gateway walked (at
// least the initiator's send_name): the TypeScript walker is given those
// first, the C one starts at their count. Vectors for every message kind and
// every refusal of handshake.c on both sides (v5 and v6 names and
// challenges, names of every length up to an atom's 255 and past it,
// operators, sizes at and over the bound, empty messages and chunks), each
// split at every byte; then random and mutated handshakes, followed by
// frames and split into random chunks: both accept with frames beginning at
// the same offset and the same frames and ticks after, or both refuse with
// the same code. And the fuzz target's seeds (native/fuzz/handshake-corpus)
// are handshakes both accept. Runs on build/fastpath.node, or on the module
// BEAMGATE_HANDSHAKE_MODULE names (the sanitizer build); skipped when that
// module is not built.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NATIVE_MODULE } from '../../src/fastpath/native.js';
import { challengeV6, DFLAG_PUBLISHED, encodeHandshakeMessage, sendNameV5, sendNameV6, type Side } from '../../src/framing/handshake.js';
import { DistStream } from '../../src/framing/stream.js';
import { Refusal, toRefusal } from '../../src/mesh/refusal.js';
import { checkOperatorHidden } from '../../src/mesh/source.js';

const MODULE = process.env.BEAMGATE_HANDSHAKE_MODULE ?? NATIVE_MODULE;
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SEEDS = join(ROOT, 'native/fuzz/handshake-corpus');

type NativeResult = { ok: true; done: boolean; framesFrom: number; frames: number; ticks: number } | { ok: false; reason: string; chunk: number };
type Walk = (side: number, index: number, expect: Buffer, hidden: boolean, maxMessage: number, chunks: Buffer[]) => NativeResult;

function load(): Walk | undefined {
  if (!existsSync(MODULE)) return undefined;
  const b = createRequire(import.meta.url)(MODULE) as { handshake?: { walk?: Walk } };
  return b.handshake?.walk;
}
const walk = load();

/** What either walker concluded: frames begin at framesFrom (-1 while the handshake lasts), or a refusal. */
type Verdict = { ok: true; done: boolean; framesFrom: number; frames: number; ticks: number } | { ok: false; code: string; detail: string };

interface Case {
  side: Side;
  /** Whole messages (with their lengths) the gateway walked before the hand-over: the TypeScript walker's first pushes. */
  prefix: Buffer[];
  /** The acceptor's expected name (latin1). */
  expect: string;
  hidden: boolean;
  maxMessage: number;
  /** What the walker is handed, split as reads split it. */
  chunks: Buffer[];
}

/** A frame limit neither walker reaches: the handshake is what is under test. */
const NO_FRAME_LIMIT = 2 ** 32;

function tsStream(c: Case): DistStream {
  const expectName = c.expect;
  return new DistStream(c.side, { maxHandshakeMessageBytes: c.maxMessage, maxFrameBytes: NO_FRAME_LIMIT }, (msg) => {
    // The acceptor-side callbacks of src/mesh/outbound.ts and inbound.ts (the initiator's judge its send_name, walked before the hand-over).
    if (c.side !== 'acceptor' || msg.tag !== 'challenge') return;
    if (msg.name !== expectName) throw new Refusal('bad_handshake', `challenge names ${msg.name}, expected ${expectName}`);
    if (c.hidden) checkOperatorHidden(msg.name, msg.flags);
  });
}

/** The TypeScript walker: the prefix, then the chunks; also the index the C walker starts at. */
function tsWalk(c: Case): { verdict: Verdict; index: number } {
  const s = tsStream(c);
  for (const p of c.prefix) s.push(p);
  // What the gateway hands over (src/mesh/link.ts): only between two messages.
  expect(s.betweenMessages).toBe(true);
  const index = s.scanState().handshake!.index;
  let base = 0;
  let framesFrom = -1;
  try {
    for (const ch of c.chunks) {
      const was = s.framed;
      const at = s.push(ch);
      if (!was && s.framed) framesFrom = base + at;
      base += ch.length;
    }
  } catch (err) {
    const r = toRefusal(err);
    return { verdict: { ok: false, code: r.reason, detail: r.message }, index };
  }
  return { verdict: { ok: true, done: s.framed, framesFrom, frames: s.frames, ticks: s.ticks }, index };
}

function nativeWalk(c: Case, index: number): Verdict {
  const r = walk!(c.side === 'initiator' ? 1 : 2, index, Buffer.from(c.expect, 'latin1'), c.hidden, c.maxMessage, c.chunks);
  if (r.ok) return { ok: true, done: r.done, framesFrom: r.framesFrom, frames: r.frames, ticks: r.ticks };
  const m = /^refused:([a-z_]+):(.*)$/s.exec(r.reason);
  expect(m, `native reason ${r.reason}`).not.toBeNull();
  expect(r.chunk).toBeLessThan(c.chunks.length);
  return { ok: false, code: m![1]!, detail: m![2]! };
}

const describeCase = (c: Case) =>
  `${c.side} after ${c.prefix.length} message(s), expect ${JSON.stringify(c.expect.slice(0, 40))}${c.expect.length > 40 ? `...(${c.expect.length})` : ''}, hidden ${c.hidden}, max ${c.maxMessage}, chunks ${c.chunks.map((b) => b.toString('hex')).join(' | ').slice(0, 600)}`;

/** Both walkers on one case: they must agree (codes, not details). Returns the verdict. */
function differential(c: Case): Verdict {
  const { verdict: ts, index } = tsWalk(c);
  const native = nativeWalk(c, index);
  const where = `${describeCase(c)}\n  native: ${JSON.stringify(native)}\n  TypeScript: ${JSON.stringify(ts)}`;
  if (ts.ok) expect(native, where).toEqual(ts);
  else {
    expect(native.ok, where).toBe(false);
    if (!native.ok) expect(native.code, where).toBe(ts.code);
  }
  return native;
}

// ---------------------------------------------------------------------------
// Messages (bodies, without their 2-byte length) and frames.

const msg = (body: Buffer | number[]): Buffer => encodeHandshakeMessage(Buffer.from(body));
const status = (s = 'ok'): Buffer => Buffer.concat([Buffer.from('s'), Buffer.from(s, 'latin1')]);
/** The complement an OTP 23/24 node sends after a v5 send_name: 'c', the high flags, the creation. */
const complement = (len = 9): Buffer => Buffer.concat([Buffer.from('c'), Buffer.alloc(len - 1, 7)]);
/** challenge_reply: 'r', the initiator's challenge, its 16-byte digest. */
const reply = (len = 21): Buffer => Buffer.concat([Buffer.from('r'), Buffer.alloc(len - 1, 0x5a)]);
/** challenge_ack: 'a', the acceptor's 16-byte digest. */
const ack = (len = 17): Buffer => Buffer.concat([Buffer.from('a'), Buffer.alloc(len - 1, 0xa5)]);
/** A v5 challenge, as OTP 22 and older write it: 'n', version 5, 4 bytes of flags, the challenge, the name to the end. */
function challengeV5(name: string, flags: number, challenge = 0x12345678): Buffer {
  const n = Buffer.from(name, 'latin1');
  const b = Buffer.alloc(11 + n.length);
  b[0] = 0x6e;
  b.writeUInt16BE(5, 1);
  b.writeUInt32BE(flags >>> 0, 3);
  b.writeUInt32BE(challenge >>> 0, 7);
  n.copy(b, 11);
  return b;
}
/** Any bytes after a tag. */
const tagged = (tag: number, rest: number[] | Buffer = []): Buffer => Buffer.concat([Buffer.from([tag]), Buffer.from(rest)]);

const tick = (): Buffer => Buffer.alloc(4);
function frame(len: number): Buffer {
  const b = Buffer.alloc(4 + len, 0x33);
  b.writeUInt32BE(len, 0);
  return b;
}

// Flags as OTP 26+ sends them: published (a normal node) or not (hidden), and bits past 32.
const FLAGS = 0x0000_000d_07df_7fbdn;
const HIDDEN_FLAGS = FLAGS & ~DFLAG_PUBLISHED;
const V5_FLAGS = 0x07df_7fbd;
const V5_HIDDEN = V5_FLAGS & ~1;

const A = 'a1@alpha';
const B = 'b1@beta';
const SEND_NAME = msg(sendNameV6(A, FLAGS, 7));

/** An initiator's case: the gateway walked a send_name (and `more` messages); then `rest`. */
const initiator = (rest: Buffer[], o: Partial<Case> & { more?: Buffer[] } = {}): Case => ({
  side: 'initiator',
  prefix: [o.prefix?.[0] ?? SEND_NAME, ...(o.more ?? [])],
  expect: o.expect ?? B,
  hidden: o.hidden ?? false,
  maxMessage: o.maxMessage ?? 4096,
  chunks: [Buffer.concat(rest)],
});
/** An acceptor's case after `prefix` (status, challenge: index 0 to 2), expecting `expect`. */
const acceptor = (rest: Buffer[], o: Partial<Case> = {}): Case => ({
  side: 'acceptor',
  prefix: o.prefix ?? [],
  expect: o.expect ?? B,
  hidden: o.hidden ?? false,
  maxMessage: o.maxMessage ?? 4096,
  chunks: [Buffer.concat(rest)],
});

/** A refusal both walkers give, with this code and (for both) this detail. */
function refused(c: Case, code: string, detail: string | RegExp): void {
  const { verdict: ts, index } = tsWalk(c);
  const native = nativeWalk(c, index);
  const where = describeCase(c);
  expect(ts, where).toMatchObject({ ok: false, code });
  expect(native, where).toMatchObject({ ok: false, code });
  if (!native.ok && !ts.ok) {
    if (typeof detail === 'string') {
      expect(native.detail, where).toBe(detail);
      expect(ts.detail, where).toBe(detail);
    } else {
      expect(native.detail, where).toMatch(detail);
      expect(ts.detail, where).toMatch(detail);
    }
  }
  splits(c);
}

/** An acceptance both walkers give: frames begin at framesFrom in the chunks. */
function accepted(c: Case, want: { done: boolean; framesFrom?: number; frames?: number; ticks?: number }): void {
  const v = differential(c);
  const total = c.chunks.reduce((n, b) => n + b.length, 0);
  expect(v, describeCase(c)).toEqual({ ok: true, done: want.done, framesFrom: want.done ? (want.framesFrom ?? total) : -1, frames: want.frames ?? 0, ticks: want.ticks ?? 0 });
  splits(c);
}

/** The same bytes split at every point (two chunks, and one byte at a time, with empty chunks between): the same verdict. */
function splits(c: Case): void {
  const all = Buffer.concat(c.chunks);
  const whole = differential({ ...c, chunks: [all] });
  const same = (v: Verdict, how: string) => {
    const where = `${describeCase(c)} split ${how}`;
    if (whole.ok) expect(v, where).toEqual(whole);
    else expect(v, where).toMatchObject({ ok: false, code: whole.code });
  };
  const step = Math.max(1, Math.ceil(all.length / 600));
  for (let k = 0; k <= all.length; k += step) same(differential({ ...c, chunks: [all.subarray(0, k), all.subarray(k)] }), `at ${k}`);
  const bytes: Buffer[] = [];
  for (let k = 0; k < all.length; k++) bytes.push(all.subarray(k, k + 1), Buffer.alloc(0));
  if (all.length <= 4000) same(differential({ ...c, chunks: bytes }), 'byte by byte');
}

// ---------------------------------------------------------------------------
// The fuzz target's input (native/fuzz/handshake_fuzz.c): a flags byte (bit 0
// acceptor, bits 1-2 the index (initiator 1 + k, acceptor k mod 3), bit 3
// hidden, bit 4 a small frame limit), the bound on a message (2 bytes, 0 for
// 65535), the expected name (a length byte, 0 for 255, and its bytes), a
// 4-byte seed for the chunking, then the stream.

interface FuzzInput {
  side: Side;
  index: number;
  hidden: boolean;
  smallFrames: boolean;
  maxMessage: number;
  expect: string;
  seed: number;
  stream: Buffer;
}

function fuzzInput(f: FuzzInput): Buffer {
  const k = f.side === 'initiator' ? f.index - 1 : f.index;
  if (k < 0 || k > 3) throw new Error('index out of the input format');
  const name = Buffer.from(f.expect, 'latin1');
  const head = Buffer.alloc(4);
  head[0] = (f.side === 'acceptor' ? 1 : 0) | (k << 1) | (f.hidden ? 8 : 0) | (f.smallFrames ? 16 : 0);
  head.writeUInt16BE(f.maxMessage === 65535 ? 0 : f.maxMessage, 1);
  head[3] = name.length === 255 ? 0 : name.length;
  const seed = Buffer.alloc(4);
  seed.writeUInt32BE(f.seed >>> 0);
  return Buffer.concat([head, name, seed, f.stream]);
}

function parseFuzzInput(b: Buffer): FuzzInput {
  const flags = b[0]!;
  const k = (flags >> 1) & 3;
  const side: Side = flags & 1 ? 'acceptor' : 'initiator';
  const len = b[3]! || 255;
  return {
    side,
    index: side === 'initiator' ? 1 + k : k % 3,
    hidden: (flags & 8) !== 0,
    smallFrames: (flags & 16) !== 0,
    maxMessage: b.readUInt16BE(1) || 65535,
    expect: b.toString('latin1', 4, 4 + len),
    seed: b.readUInt32BE(4 + len),
    stream: b.subarray(8 + len),
  };
}

/** The messages the gateway walked before a fuzz input's stream: a send_name and statuses, or the acceptor's first ones. */
function prefixFor(side: Side, index: number, expectName: string, hidden: boolean): Buffer[] {
  if (side === 'initiator') return [SEND_NAME, ...Array.from({ length: index - 1 }, () => msg(status('true')))];
  return [msg(status()), msg(challengeV6(expectName, hidden ? HIDDEN_FLAGS : FLAGS))].slice(0, index);
}

/** A few valid handshakes for the fuzz target to start from: both sides, every index, v5 and v6, operators, long names, frames after. */
function seedInputs(): Buffer[] {
  const long = 'n'.repeat(120) + '@' + 'h'.repeat(134);
  const out: FuzzInput[] = [];
  const tail = Buffer.concat([tick(), frame(3), tick(), frame(40)]);
  const base = { hidden: false, smallFrames: false, maxMessage: 4096, expect: B, seed: 1 };
  out.push({ ...base, side: 'initiator', index: 1, stream: Buffer.concat([msg(reply()), tail]) });
  out.push({ ...base, side: 'initiator', index: 1, seed: 7, stream: Buffer.concat([msg(status('true')), msg(complement()), msg(reply()), frame(200)]) });
  out.push({ ...base, side: 'initiator', index: 2, seed: 99, maxMessage: 23, stream: Buffer.concat([msg(complement()), msg(reply())]) });
  out.push({ ...base, side: 'initiator', index: 3, seed: 5, smallFrames: true, stream: Buffer.concat([msg(reply()), frame(100), frame(101)]) });
  out.push({ ...base, side: 'acceptor', index: 0, stream: Buffer.concat([msg(status()), msg(challengeV6(B, FLAGS)), msg(ack()), tail]) });
  out.push({ ...base, side: 'acceptor', index: 0, seed: 3, stream: Buffer.concat([msg(status('alive')), msg(challengeV5(B, V5_FLAGS)), msg(ack())]) });
  out.push({ ...base, side: 'acceptor', index: 0, seed: 11, hidden: true, expect: 'ops_1@alpha', stream: Buffer.concat([msg(status()), msg(challengeV6('ops_1@alpha', HIDDEN_FLAGS, 9, 2, Buffer.from([1, 2, 3]))), msg(ack()), tick()]) });
  out.push({ ...base, side: 'acceptor', index: 0, seed: 12, hidden: true, expect: 'ops_2@alpha', stream: Buffer.concat([msg(status()), msg(challengeV5('ops_2@alpha', V5_HIDDEN)), msg(ack()), frame(9)]) });
  out.push({ ...base, side: 'acceptor', index: 0, seed: 13, expect: long, maxMessage: 19 + 255, stream: Buffer.concat([msg(status()), msg(challengeV6(long, FLAGS)), msg(ack())]) });
  out.push({ ...base, side: 'acceptor', index: 0, seed: 14, expect: long, stream: Buffer.concat([msg(status()), msg(challengeV5(long, V5_FLAGS)), msg(ack()), tail]) });
  out.push({ ...base, side: 'acceptor', index: 1, seed: 21, expect: 'caf\u00e9@h\u00f4te', stream: Buffer.concat([msg(challengeV6('caf\u00e9@h\u00f4te', FLAGS)), msg(ack()), tail]) });
  out.push({ ...base, side: 'acceptor', index: 2, seed: 22, maxMessage: 0xffff, stream: Buffer.concat([msg(ack()), tail]) });
  return out.map(fuzzInput);
}

/** The verdict on a fuzz input, from both walkers (its chunking is the target's own business: one chunk here). */
function fuzzVerdict(input: Buffer): Verdict {
  const f = parseFuzzInput(input);
  return differential({ side: f.side, prefix: prefixFor(f.side, f.index, f.expect, f.hidden), expect: f.expect, hidden: f.hidden, maxMessage: f.maxMessage, chunks: [f.stream] });
}

// ---------------------------------------------------------------------------

describe.skipIf(!walk)(`the native handshake walker against the TypeScript one (${MODULE.split('/').pop()})`, () => {
  describe('the initiator (after its send_name)', () => {
    it('takes challenge_reply, after statuses and complements, and says where frames begin', () => {
      accepted(initiator([msg(reply())]), { done: true, framesFrom: 23 });
      accepted(initiator([msg(reply()), tick(), frame(5), frame(1000), tick()]), { done: true, framesFrom: 23, frames: 2, ticks: 2 });
      accepted(initiator([msg(status('true')), msg(reply()), frame(1)]), { done: true, framesFrom: 2 + 5 + 23, frames: 1 });
      accepted(initiator([msg(complement()), msg(reply())]), { done: true, framesFrom: 11 + 23 });
      accepted(initiator([msg(status('true')), msg(complement()), msg(reply()), tick()]), { done: true, framesFrom: 7 + 11 + 23, ticks: 1 });
      // A status of the tag alone, statuses and complements repeated: the order does not forbid them.
      accepted(initiator([msg(status('')), msg(status('false')), msg(complement()), msg(complement()), msg(reply())]), { done: true });
      // A v5 send_name before (an OTP 22 node), and more messages walked by the gateway.
      accepted(initiator([msg(complement()), msg(reply())], { prefix: [msg(sendNameV5(A, V5_FLAGS))] }), { done: true });
      accepted(initiator([msg(reply()), tick()], { more: [msg(status('true')), msg(complement())] }), { done: true, framesFrom: 23, ticks: 1 });
      // What follows the last message is frames, whatever it looks like.
      accepted(initiator([msg(reply()), msg(reply())]), { done: true, framesFrom: 23, frames: 1 });
    });

    it('waits while its handshake lasts', () => {
      accepted(initiator([msg(status('true'))]), { done: false });
      accepted(initiator([msg(complement()), msg(reply()).subarray(0, 22)]), { done: false });
      accepted(initiator([Buffer.from([0])]), { done: false });
      accepted({ ...initiator([]), chunks: [] }, { done: false });
      accepted({ ...initiator([]), chunks: [Buffer.alloc(0), Buffer.alloc(0)] }, { done: false });
    });

    it('refuses each malformed message with its reason', () => {
      refused(initiator([msg([])]), 'bad_handshake', 'empty handshake message');
      refused(initiator([msg(status('true')), msg([])]), 'bad_handshake', 'empty handshake message');
      refused(initiator([msg(complement(8))]), 'bad_handshake', 'complement message of wrong length');
      refused(initiator([msg(complement(10))]), 'bad_handshake', 'complement message of wrong length');
      refused(initiator([msg(tagged(0x63))]), 'bad_handshake', 'complement message of wrong length');
      refused(initiator([msg(reply(20))]), 'bad_handshake', 'challenge_reply of wrong length');
      refused(initiator([msg(reply(22))]), 'bad_handshake', 'challenge_reply of wrong length');
      refused(initiator([msg(tagged(0x72))]), 'bad_handshake', 'challenge_reply of wrong length');
      refused(initiator([msg(sendNameV6(A, FLAGS).subarray(0, 14))]), 'bad_handshake', 'send_name (v6) truncated');
      refused(initiator([msg(tagged(0x4e))]), 'bad_handshake', 'send_name (v6) truncated');
      refused(initiator([msg(sendNameV6(A, FLAGS).subarray(0, 15 + A.length - 1))]), 'bad_handshake', 'send_name (v6) name longer than the message');
      refused(initiator([msg(sendNameV5(A, V5_FLAGS).subarray(0, 7))]), 'bad_handshake', 'send_name (v5) truncated');
      refused(initiator([msg(tagged(0x6e, [0, 5]))]), 'bad_handshake', 'send_name (v5) truncated');
      for (const [tag, rest] of [[0x61, ack().subarray(1)], [0x00, []], [0xff, [1, 2, 3]], [0x6d, []], [0x4f, []]] as const)
        refused(initiator([msg(tagged(tag, Buffer.from(rest)))]), 'bad_handshake', `unexpected handshake tag ${tag} from the initiating node`);
      // A challenge is the acceptor's message: from the initiator its tag 'N' is a send_name's.
      refused(initiator([msg(challengeV5(B, V5_FLAGS))]), 'bad_handshake', 'initiator sent send_name out of order');
    });

    it('refuses a second send_name (v6 or v5), wherever it comes', () => {
      refused(initiator([msg(sendNameV6(A, FLAGS))]), 'bad_handshake', 'initiator sent send_name out of order');
      refused(initiator([msg(sendNameV6('', FLAGS))]), 'bad_handshake', 'initiator sent send_name out of order');
      refused(initiator([msg(sendNameV6(A, FLAGS, 1, Buffer.from('later data')))]), 'bad_handshake', 'initiator sent send_name out of order');
      refused(initiator([msg(sendNameV5(A, V5_FLAGS))]), 'bad_handshake', 'initiator sent send_name out of order');
      refused(initiator([msg(status('true')), msg(complement()), msg(sendNameV5(A, V5_FLAGS))]), 'bad_handshake', 'initiator sent send_name out of order');
      refused(initiator([msg(sendNameV5(A, V5_FLAGS))], { more: [msg(status('true'))] }), 'bad_handshake', 'initiator sent send_name out of order');
    });

    it('bounds each message at maxMessage, judged on its length alone', () => {
      accepted(initiator([msg(status('x'.repeat(99))), msg(reply())], { maxMessage: 100 }), { done: true });
      refused(initiator([msg(status('x'.repeat(100))), msg(reply())], { maxMessage: 100 }), 'handshake_too_large', 'handshake message of 101 bytes exceeds 100');
      // Before its body arrives, and before a bad tag is seen.
      refused({ ...initiator([], { maxMessage: 255 }), chunks: [Buffer.from([0x01, 0x00])] }, 'handshake_too_large', 'handshake message of 256 bytes exceeds 255');
      refused(initiator([Buffer.from([0x01, 0x00]), tagged(0xee)], { maxMessage: 255 }), 'handshake_too_large', 'handshake message of 256 bytes exceeds 255');
      refused(initiator([Buffer.from([0xff, 0xff])], { maxMessage: 65534 }), 'handshake_too_large', 'handshake message of 65535 bytes exceeds 65534');
      // (Under a bound this small the gateway walked a short send_name.)
      const short = [msg(sendNameV5('a', V5_FLAGS))];
      accepted(initiator([msg(reply())], { maxMessage: 21, prefix: short }), { done: true });
      refused(initiator([msg(reply())], { maxMessage: 20, prefix: short }), 'handshake_too_large', 'handshake message of 21 bytes exceeds 20');
      refused(initiator([msg(status('true')), msg(complement())], { maxMessage: 8, prefix: short }), 'handshake_too_large', 'handshake message of 9 bytes exceeds 8');
      accepted(initiator([msg(status()), Buffer.from([0xff, 0xff])], { maxMessage: 65535 }), { done: false });
      // An empty message is within any bound: refused for what it is.
      refused(initiator([msg([])], { maxMessage: 8, prefix: short }), 'bad_handshake', 'empty handshake message');
    });
  });

  describe('the acceptor', () => {
    const v6 = (name = B, flags = FLAGS) => msg(challengeV6(name, flags));
    const v5 = (name = B, flags = V5_FLAGS) => msg(challengeV5(name, flags));
    const ok = (ch: Buffer) => [msg(status()), ch, msg(ack())];

    it('takes status, a v6 or v5 challenge naming the node dialled, challenge_ack, and says where frames begin', () => {
      accepted(acceptor(ok(v6())), { done: true });
      accepted(acceptor([...ok(v6()), tick(), frame(7), tick()]), { done: true, framesFrom: 5 + 2 + 19 + B.length + 19, frames: 1, ticks: 2 });
      accepted(acceptor([...ok(v5()), frame(2)]), { done: true, framesFrom: 5 + 2 + 11 + B.length + 19, frames: 1 });
      accepted(acceptor(ok(msg(challengeV6(B, FLAGS, 1, 2, Buffer.from('data a later OTP appends'))))), { done: true });
      accepted(acceptor([msg(status('alive')), v6(), msg(ack())]), { done: true });
      accepted(acceptor([msg(status('')), v5(), msg(ack())]), { done: true });
      // Started later: after the status, or after the challenge too.
      accepted(acceptor([v6(), msg(ack()), tick()], { prefix: [msg(status())] }), { done: true, framesFrom: 2 + 19 + B.length + 19, ticks: 1 });
      accepted(acceptor([v5(), msg(ack())], { prefix: [msg(status())] }), { done: true });
      accepted(acceptor([msg(ack()), frame(3)], { prefix: [msg(status()), v6()] }), { done: true, framesFrom: 19, frames: 1 });
      // Latin-1 names compare byte for byte.
      accepted(acceptor(ok(v6('caf\u00e9@h\u00f4te')), { expect: 'caf\u00e9@h\u00f4te' }), { done: true });
      accepted(acceptor(ok(v5('\u00ff')), { expect: '\u00ff' }), { done: true });
    });

    it('waits while its handshake lasts', () => {
      accepted(acceptor([msg(status())]), { done: false });
      accepted(acceptor([msg(status()), v6()]), { done: false });
      accepted(acceptor([msg(status()), v6(), msg(ack()).subarray(0, 18)]), { done: false });
      accepted(acceptor([msg(status()), v6().subarray(0, 20)]), { done: false });
      accepted({ ...acceptor([]), chunks: [] }, { done: false });
    });

    it('refuses each malformed message with its reason', () => {
      refused(acceptor([msg([])]), 'bad_handshake', 'empty handshake message');
      refused(acceptor([msg(status()), msg([])]), 'bad_handshake', 'empty handshake message');
      refused(acceptor([msg([])], { prefix: [msg(status()), v6()] }), 'bad_handshake', 'empty handshake message');
      refused(acceptor([msg(status()), msg(challengeV6(B, FLAGS).subarray(0, 18))]), 'bad_handshake', 'challenge (v6) truncated');
      refused(acceptor([msg(status()), msg(tagged(0x4e))]), 'bad_handshake', 'challenge (v6) truncated');
      refused(acceptor([msg(status()), msg(challengeV6(B, FLAGS).subarray(0, 19 + B.length - 1))]), 'bad_handshake', 'challenge (v6) name longer than the message');
      refused(acceptor([msg(status()), msg(challengeV5(B, V5_FLAGS).subarray(0, 11))]), 'bad_handshake', 'challenge (v5) truncated');
      refused(acceptor([msg(status()), msg(tagged(0x6e))]), 'bad_handshake', 'challenge (v5) truncated');
      refused(acceptor([msg(status()), v6(), msg(ack(16))]), 'bad_handshake', 'challenge_ack of wrong length');
      refused(acceptor([msg(status()), v6(), msg(ack(18))]), 'bad_handshake', 'challenge_ack of wrong length');
      refused(acceptor([msg(tagged(0x61))]), 'bad_handshake', 'challenge_ack of wrong length');
      for (const [tag, rest] of [[0x72, reply().subarray(1)], [0x63, complement().subarray(1)], [0x00, []], [0xff, []], [0x41, []]] as const)
        refused(acceptor([msg(status()), msg(tagged(tag, Buffer.from(rest)))]), 'bad_handshake', `unexpected handshake tag ${tag} from the accepting node`);
      refused(acceptor([msg(reply())]), 'bad_handshake', 'unexpected handshake tag 114 from the accepting node');
    });

    it('refuses messages out of order (decoded first: a malformed one is refused for that)', () => {
      refused(acceptor([v6()]), 'bad_handshake', 'acceptor began with challenge, not status');
      refused(acceptor([v5()]), 'bad_handshake', 'acceptor began with challenge, not status');
      // The order before the name: a challenge naming another node, first, is out of order.
      refused(acceptor([v6('other@node')]), 'bad_handshake', 'acceptor began with challenge, not status');
      refused(acceptor([msg(ack())]), 'bad_handshake', 'acceptor began with challenge_ack, not status');
      refused(acceptor([msg(status()), msg(status())]), 'bad_handshake', 'acceptor sent status out of order');
      refused(acceptor([msg(status())], { prefix: [msg(status()), v6()] }), 'bad_handshake', 'acceptor sent status out of order');
      refused(acceptor([msg(status()), msg(ack())]), 'bad_handshake', 'acceptor sent challenge_ack out of order');
      refused(acceptor([msg(ack())], { prefix: [msg(status())] }), 'bad_handshake', 'acceptor sent challenge_ack out of order');
      refused(acceptor([msg(status()), v6(), v6()]), 'bad_handshake', 'acceptor sent challenge out of order');
      refused(acceptor([v5()], { prefix: [msg(status()), v6()] }), 'bad_handshake', 'acceptor sent challenge out of order');
      // ... and a malformed one out of order is malformed.
      refused(acceptor([msg(tagged(0x4e))]), 'bad_handshake', 'challenge (v6) truncated');
      refused(acceptor([msg(ack(3))]), 'bad_handshake', 'challenge_ack of wrong length');
      refused(acceptor([msg(status()), v6(), msg(tagged(0x6e, [0, 5]))]), 'bad_handshake', 'challenge (v5) truncated');
    });

    it('refuses a challenge that names another node: other bytes, shorter, longer, empty (v6 and v5)', () => {
      for (const enc of [v6, v5]) {
        refused(acceptor(ok(enc('b1@betb'))), 'bad_handshake', `challenge names b1@betb, expected ${B}`);
        refused(acceptor(ok(enc('B1@beta'))), 'bad_handshake', `challenge names B1@beta, expected ${B}`);
        refused(acceptor(ok(enc('b1@bet'))), 'bad_handshake', `challenge names b1@bet, expected ${B}`);
        refused(acceptor(ok(enc('b1@beta2'))), 'bad_handshake', `challenge names b1@beta2, expected ${B}`);
        // (A v5 challenge's name is what follows its fixed part: at least one byte, or it is truncated.)
        refused(acceptor(ok(enc(''))), 'bad_handshake', enc === v6 ? `challenge names , expected ${B}` : 'challenge (v5) truncated');
        refused(acceptor(ok(enc('\u00e91@beta'))), 'bad_handshake', `challenge names \u00e91@beta, expected ${B}`);
        // The expected name is no wildcard: a longer expectation than what came, too.
        refused(acceptor(ok(enc(B)), { expect: `${B}.example` }), 'bad_handshake', `challenge names ${B}, expected ${B}.example`);
        // And checked where it is walked: after the status the gateway walked.
        refused(acceptor([enc('x@y'), msg(ack())], { prefix: [msg(status())] }), 'bad_handshake', `challenge names x@y, expected ${B}`);
      }
      // A v6 challenge's name is its length's worth, not what follows it.
      refused(acceptor(ok(msg(challengeV6('b1@bet', FLAGS, 1, 1, Buffer.from('a'))))), 'bad_handshake', `challenge names b1@bet, expected ${B}`);
      // A v5 challenge's name runs to the end: a v6-style trailer makes it another name.
      refused(acceptor(ok(msg(Buffer.concat([challengeV5(B, V5_FLAGS), Buffer.from([0])])))), 'bad_handshake', /^challenge names b1@beta/);
    });

    it('names of an atom\u2019s 255 characters, and past it', () => {
      const n255 = 'x'.repeat(250) + '@host';
      const n256 = n255 + 'y';
      const other255 = 'x'.repeat(249) + 'z@host';
      for (const enc of [v6, v5]) {
        accepted(acceptor(ok(enc(n255)), { expect: n255 }), { done: true });
        refused(acceptor(ok(enc(other255)), { expect: n255 }), 'bad_handshake', `challenge names ${other255}, expected ${n255}`);
        // 256 and more characters never match (the C walker shows the first 255 of them).
        refused(acceptor(ok(enc(n256)), { expect: n255 }), 'bad_handshake', /^challenge names x{250}@host/);
        refused(acceptor(ok(enc('q'.repeat(1000))), { expect: n255 }), 'bad_handshake', /^challenge names q{255}/);
        refused(acceptor(ok(enc('q'.repeat(3000))), { expect: 'q' }), 'bad_handshake', /^challenge names q{255}/);
        refused(acceptor(ok(enc(n255.slice(1))), { expect: n255 }), 'bad_handshake', `challenge names ${n255.slice(1)}, expected ${n255}`);
        refused(acceptor(ok(enc(n255)), { expect: n255.slice(1) }), 'bad_handshake', `challenge names ${n255}, expected ${n255.slice(1)}`);
      }
      // The largest v6 challenge of a 255-character name fits a bound of exactly its size.
      accepted(acceptor(ok(v6(n255)), { expect: n255, maxMessage: 19 + 255 }), { done: true });
      refused(acceptor(ok(v6(n255)), { expect: n255, maxMessage: 19 + 254 }), 'handshake_too_large', `handshake message of ${19 + 255} bytes exceeds ${19 + 254}`);
      // An expected name the walker cannot hold is the caller's error.
      expect(() => walk!(2, 0, Buffer.from(n256), false, 4096, [])).toThrow(TypeError);
    });

    it('for an operator: a hidden challenge only (v6 and v5), the name checked first', () => {
      const ops = 'ops_1@alpha';
      accepted(acceptor(ok(v6(ops, HIDDEN_FLAGS)), { expect: ops, hidden: true }), { done: true });
      accepted(acceptor(ok(v5(ops, V5_HIDDEN)), { expect: ops, hidden: true }), { done: true });
      refused(acceptor(ok(v6(ops, FLAGS)), { expect: ops, hidden: true }), 'operator_not_hidden', `operator node ${ops} must run as a hidden node`);
      refused(acceptor(ok(v5(ops, V5_FLAGS)), { expect: ops, hidden: true }), 'operator_not_hidden', `operator node ${ops} must run as a hidden node`);
      refused(acceptor(ok(v6(ops, DFLAG_PUBLISHED)), { expect: ops, hidden: true }), 'operator_not_hidden', `operator node ${ops} must run as a hidden node`);
      refused(acceptor(ok(v5(ops, 1)), { expect: ops, hidden: true }), 'operator_not_hidden', `operator node ${ops} must run as a hidden node`);
      // Only the published bit counts: every other bit set, high or low.
      accepted(acceptor(ok(v6(ops, (1n << 64n) - 2n)), { expect: ops, hidden: true }), { done: true });
      accepted(acceptor(ok(v5(ops, 0xfffffffe)), { expect: ops, hidden: true }), { done: true });
      refused(acceptor(ok(v6(ops, 1n << 56n | 1n)), { expect: ops, hidden: true }), 'operator_not_hidden', `operator node ${ops} must run as a hidden node`);
      // A node that is no operator may be published or hidden.
      accepted(acceptor(ok(v6(B, HIDDEN_FLAGS))), { done: true });
      accepted(acceptor(ok(v5(B, V5_FLAGS))), { done: true });
      // A published challenge naming someone else: the name is what is wrong.
      refused(acceptor(ok(v6('ops_2@alpha', FLAGS)), { expect: ops, hidden: true }), 'bad_handshake', `challenge names ops_2@alpha, expected ${ops}`);
      refused(acceptor(ok(v5('ops_2@alpha', V5_FLAGS)), { expect: ops, hidden: true }), 'bad_handshake', `challenge names ops_2@alpha, expected ${ops}`);
      // After the challenge (walked by the gateway), the operator check is behind.
      accepted(acceptor([msg(ack())], { prefix: [msg(status()), v6(ops, HIDDEN_FLAGS)], expect: ops, hidden: true }), { done: true });
    });

    it('bounds each message at maxMessage, judged on its length alone', () => {
      const ch = v6();
      accepted(acceptor(ok(ch), { maxMessage: ch.length - 2 }), { done: true });
      refused(acceptor(ok(ch), { maxMessage: ch.length - 3 }), 'handshake_too_large', `handshake message of ${ch.length - 2} bytes exceeds ${ch.length - 3}`);
      accepted(acceptor([msg(status()), Buffer.from([0x10, 0x00])]), { done: false });
      refused(acceptor([msg(status()), Buffer.from([0x10, 0x01])]), 'handshake_too_large', 'handshake message of 4097 bytes exceeds 4096');
      refused(acceptor([Buffer.from([0x00, 0x04])], { maxMessage: 3 }), 'handshake_too_large', 'handshake message of 4 bytes exceeds 3');
      refused(acceptor([Buffer.from([0x00, 0x1f]), ack()], { prefix: [msg(status()), v6()], maxMessage: 30 }), 'handshake_too_large', 'handshake message of 31 bytes exceeds 30');
    });
  });

  it('refuses arguments that describe no hand-over (a TypeError)', () => {
    const e = Buffer.from(B);
    expect(walk!(1, 1, Buffer.alloc(0), false, 4096, [])).toEqual({ ok: true, done: false, framesFrom: -1, frames: 0, ticks: 0 });
    expect(walk!(2, 2, Buffer.from('x'.repeat(255)), true, 65535, [])).toMatchObject({ ok: true, done: false });
    expect(walk!(2, 0, Buffer.from('n'), false, 1, [])).toMatchObject({ ok: true, done: false });
    for (const [side, index, expectName, max] of [
      [0, 1, e, 4096],
      [3, 1, e, 4096],
      [1e9, 1, e, 4096],
      [1, 0, e, 4096], // the initiator's send_name is the gateway's
      [2, 3, e, 4096], // the acceptor's handshake is over after three
      [2, 2 ** 32, e, 4096],
      [2, 0, Buffer.alloc(0), 4096], // an acceptor must expect a name
      [2, 0, Buffer.alloc(256, 0x61), 4096],
      [2, 0, e, 0],
      [2, 0, e, 65536], // a 2-byte length never exceeds 65535: a larger bound is no bound the walker takes
      [1, 1, e, 2 ** 40],
    ] as const) {
      expect(() => walk!(side, index, expectName, false, max, []), `${side} ${index} ${expectName.length} ${max}`).toThrow(TypeError);
    }
    expect(() => walk!(1, 1.5, e, false, 4096, [])).toThrow(TypeError);
    expect(() => walk!(1, -1, e, false, 4096, [])).toThrow(TypeError);
    expect(() => walk!(1, 1, e, false, Number.NaN, [])).toThrow(TypeError);
    expect(() => walk!(1, 1, e, false, 4096, ['not a buffer' as unknown as Buffer])).toThrow(TypeError);
  });

  it('a handshake ending at the end of the bytes: a 0-length tail, empty chunks anywhere', () => {
    const hs = Buffer.concat([msg(status()), msg(challengeV6(B, FLAGS)), msg(ack())]);
    for (const [chunks, ticks] of [
      [[hs], 0],
      [[hs, Buffer.alloc(0)], 0],
      [[Buffer.alloc(0), hs], 0],
      [[hs.subarray(0, 5), Buffer.alloc(0), hs.subarray(5)], 0],
      [[hs, Buffer.alloc(0), tick()], 1],
    ] as const) {
      expect(differential({ ...acceptor([]), chunks: [...chunks] })).toEqual({ ok: true, done: true, framesFrom: hs.length, frames: 0, ticks });
    }
    const ir = msg(reply());
    expect(differential({ ...initiator([]), chunks: [ir.subarray(0, 1), ir.subarray(1), Buffer.alloc(0)] })).toEqual({ ok: true, done: true, framesFrom: 23, frames: 0, ticks: 0 });
    // A whole handshake and a split frame header after it.
    expect(differential({ ...initiator([]), chunks: [Buffer.concat([ir, Buffer.from([0, 0])]), Buffer.from([0, 1, 9])] })).toEqual({ ok: true, done: true, framesFrom: 23, frames: 1, ticks: 0 });
  });

  // -------------------------------------------------------------------------
  // Random and mutated handshakes.

  const latin1 = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max }).map((b) => Buffer.from(b).toString('latin1'));
  const nameArb = fc.oneof(
    { weight: 4, arbitrary: fc.stringMatching(/^[a-z][a-z0-9_]{0,10}@[a-z][a-z0-9.-]{0,12}$/) },
    { weight: 2, arbitrary: latin1(1, 40) },
    { weight: 1, arbitrary: latin1(250, 255) },
    { weight: 1, arbitrary: fc.constant('z'.repeat(255)) },
  );
  /** A name a challenge carries: mostly the expected one, or one like it, or another. */
  const challengeName = (expectName: string) =>
    fc.oneof(
      { weight: 6, arbitrary: fc.constant(expectName) },
      { weight: 1, arbitrary: fc.nat(expectName.length - 1).chain((i) => fc.integer({ min: 0, max: 255 }).map((c) => expectName.slice(0, i) + String.fromCharCode(c) + expectName.slice(i + 1))) },
      { weight: 1, arbitrary: fc.constant(expectName.slice(0, -1)) },
      { weight: 1, arbitrary: latin1(0, 3).map((t) => expectName + t) },
      { weight: 1, arbitrary: latin1(0, 300) },
      { weight: 1, arbitrary: fc.constant(expectName + 'q'.repeat(256)) },
    );
  const flags64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
  const bytesArb = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max }).map((b) => Buffer.from(b));
  /** Any one message a side might send, well formed or not. */
  const anyBody = (expectName: string, hidden: boolean) =>
    fc.oneof(
      bytesArb(0, 12).map((b) => Buffer.concat([Buffer.from('s'), b])),
      fc.integer({ min: 1, max: 12 }).map((n) => complement(n)),
      fc.constantFrom(9, 9, 8, 10).map((n) => complement(n)),
      fc.constantFrom(21, 21, 20, 22, 1).map((n) => reply(n)),
      fc.constantFrom(17, 17, 16, 18, 1).map((n) => ack(n)),
      fc.tuple(challengeName(expectName), flags64, fc.boolean(), bytesArb(0, 6)).map(([n, f, pub, t]) => challengeV6(n, pub || !hidden ? f : f & ~DFLAG_PUBLISHED, 1, 1, t)),
      fc.tuple(challengeName(expectName), fc.nat(), fc.boolean()).map(([n, f, pub]) => challengeV5(n, pub || !hidden ? f : f & ~1)),
      fc.tuple(nameArb, flags64).map(([n, f]) => sendNameV6(n, f)),
      fc.tuple(nameArb, fc.nat()).map(([n, f]) => sendNameV5(n, f)),
      fc.tuple(fc.constantFrom(0x4e, 0x6e, 0x73, 0x63, 0x72, 0x61), bytesArb(0, 24)).map(([t, b]) => tagged(t, b)),
      fc.tuple(fc.integer({ min: 0, max: 255 }), bytesArb(0, 24)).map(([t, b]) => tagged(t, b)),
      fc.constant(Buffer.alloc(0)),
    );
  /** A handshake that should pass from `index` on: what the side writes next, with the flags an operator must have (unless `leak`). */
  const validRest = (side: Side, index: number, expectName: string, hidden: boolean, leak = false) =>
    side === 'initiator'
      ? fc.tuple(fc.array(fc.oneof(bytesArb(0, 8).map((b) => Buffer.concat([Buffer.from('s'), b])), fc.constant(complement())), { maxLength: 3 })).map(([more]) => [...more, reply()])
      : fc
          .tuple(bytesArb(0, 8), flags64, fc.nat(), fc.boolean(), bytesArb(0, 4))
          .map(([st, f, f5, v5, t]) => {
            const ch = leak
              ? v5
                ? challengeV5(expectName, f5 | 1)
                : challengeV6(expectName, f | DFLAG_PUBLISHED, 1, 1, t)
              : v5
                ? challengeV5(expectName, hidden ? f5 & ~1 : f5)
                : challengeV6(expectName, hidden ? f & ~DFLAG_PUBLISHED : f, 1, 1, t);
            return [Buffer.concat([Buffer.from('s'), st]), ch, ack()].slice(index);
          });
  const framesArb = fc.array(fc.oneof(fc.constant(tick()), fc.integer({ min: 1, max: 40 }).map(frame)), { maxLength: 5 }).map((fs) => Buffer.concat(fs));
  /** One direction's setting: side, messages the gateway walked (prefix), expected name, operator, bound. */
  const setting = fc
    .tuple(fc.constantFrom<Side>('initiator', 'acceptor'), fc.nat(2), nameArb, fc.boolean(), fc.oneof(fc.constant(4096), fc.constant(65535), fc.integer({ min: 1, max: 300 })), fc.boolean())
    .map(([side, k, expectName, hidden, maxMessage, v5]) => {
      const prefix =
        side === 'initiator'
          ? [msg(v5 ? sendNameV5(A, V5_FLAGS) : sendNameV6(A, FLAGS)), ...Array.from({ length: k }, (_, i) => msg(i % 2 ? complement() : status('true')))]
          : [msg(status()), msg(challengeV6(expectName, hidden ? HIDDEN_FLAGS : FLAGS))].slice(0, k);
      // The gateway walked the prefix under the same bound.
      const bound = Math.max(maxMessage, ...prefix.map((m) => m.length - 2));
      return { side, index: side === 'initiator' ? 1 + k : k, expect: expectName, hidden, maxMessage: bound, prefix };
    });
  /** Cut points into `n` bytes, as reads cut them (repeated points: empty chunks). */
  const splitAt = (b: Buffer, cuts: number[]) => {
    const at = [...cuts.map((c) => c % (b.length + 1)), b.length].sort((x, y) => x - y);
    const out: Buffer[] = [];
    let from = 0;
    for (const k of at) {
      out.push(b.subarray(from, k));
      from = k;
    }
    return out;
  };
  const encode = (bodies: Buffer[], lies: [number, number][]) =>
    Buffer.concat(
      bodies.map((b, i) => {
        const m = msg(b);
        const lie = lies.find(([j]) => j === i);
        if (lie) m.writeUInt16BE(lie[1], 0);
        return m;
      }),
    );
  const mutateBytes = (b: Buffer, edits: [number, number, number][]) => {
    let out = Buffer.from(b);
    for (const [kind, at, v] of edits) {
      if (out.length === 0) break;
      const p = at % out.length;
      if (kind === 0) out[p] = out[p]! ^ (1 << (v & 7));
      else if (kind === 1) out = out.subarray(0, p);
      else if (kind === 2) out = Buffer.concat([out.subarray(0, p), Buffer.from([v]), out.subarray(p)]);
      else out = Buffer.concat([out.subarray(0, p), out.subarray(p + 1)]);
    }
    return out;
  };

  type Tally = Record<string, number>;
  const count = (t: Tally, v: Verdict) => {
    const key = v.ok ? (v.done ? 'done' : 'more') : v.code;
    t[key] = (t[key] ?? 0) + 1;
  };

  it('random handshakes: both walkers take the same ones, frames from the same offset, split anywhere', () => {
    const t: Tally = {};
    const valid = setting.chain((s) =>
      fc.record({ s: fc.constant(s), bodies: validRest(s.side, s.index, s.expect, s.hidden), tail: framesArb, cuts: fc.array(fc.nat(), { maxLength: 8 }) }),
    );
    fc.assert(
      fc.property(valid, ({ s, bodies, tail, cuts }) => {
        const stream = Buffer.concat([encode(bodies, []), tail]);
        count(t, differential({ side: s.side, prefix: s.prefix, expect: s.expect, hidden: s.hidden, maxMessage: s.maxMessage, chunks: splitAt(stream, cuts) }));
      }),
      { numRuns: 1500, seed: 21 },
    );
    // Valid handshakes pass unless a message is over a small bound.
    expect(t.done).toBeGreaterThan(600);
    expect(t.handshake_too_large).toBeGreaterThan(20);
    expect(Object.keys(t).sort()).toEqual(['done', 'handshake_too_large']);
  });

  it('mutated handshakes: messages replaced, added, dropped, lengths that lie, bytes flipped, cut and inserted', () => {
    const t: Tally = {};
    const mutated = setting.chain((s) =>
      fc.record({
        s: fc.constant(s),
        bodies: fc.oneof({ weight: 5, arbitrary: validRest(s.side, s.index, s.expect, s.hidden) }, { weight: 1, arbitrary: validRest(s.side, s.index, s.expect, s.hidden, true) }),
        swaps: fc.array(fc.tuple(fc.nat(4), fc.constantFrom('replace', 'insert', 'drop'), anyBody(s.expect, s.hidden)), { maxLength: 2 }),
        lies: fc.oneof({ weight: 4, arbitrary: fc.constant<[number, number][]>([]) }, { weight: 1, arbitrary: fc.array(fc.tuple(fc.nat(3), fc.integer({ min: 0, max: 0xffff })), { maxLength: 1 }) }),
        edits: fc.oneof({ weight: 3, arbitrary: fc.constant<[number, number, number][]>([]) }, { weight: 1, arbitrary: fc.array(fc.tuple(fc.nat(3), fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 3 }) }),
        tail: fc.oneof(framesArb, bytesArb(0, 12)),
        cuts: fc.array(fc.nat(), { maxLength: 8 }),
      }),
    );
    fc.assert(
      fc.property(mutated, ({ s, bodies, swaps, lies, edits, tail, cuts }) => {
        const bs = [...bodies];
        for (const [at, how, b] of swaps) {
          const i = Math.min(at, bs.length);
          if (how === 'insert') bs.splice(i, 0, b);
          else if (how === 'replace') bs.splice(i, 1, b);
          else bs.splice(i, 1);
        }
        const stream = mutateBytes(Buffer.concat([encode(bs, lies), tail]), edits);
        count(t, differential({ side: s.side, prefix: s.prefix, expect: s.expect, hidden: s.hidden, maxMessage: s.maxMessage, chunks: splitAt(stream, cuts) }));
      }),
      { numRuns: 6000, seed: 22 },
    );
    // Every outcome is reached, often.
    expect(t.done).toBeGreaterThan(800);
    expect(t.more).toBeGreaterThan(100);
    expect(t.bad_handshake).toBeGreaterThan(1000);
    expect(t.handshake_too_large).toBeGreaterThan(100);
    expect(t.operator_not_hidden).toBeGreaterThan(50);
  });

  it('random messages (any tag, any bytes, true lengths), and random bytes, after the messages the gateway walked', () => {
    const t: Tally = {};
    const body = fc.oneof(
      { weight: 3, arbitrary: fc.tuple(fc.constantFrom(0x4e, 0x6e, 0x73, 0x63, 0x72, 0x61), bytesArb(0, 30)).map(([tag, b]) => tagged(tag, b)) },
      { weight: 1, arbitrary: bytesArb(0, 30) },
    );
    fc.assert(
      fc.property(setting, fc.array(body, { maxLength: 4 }), bytesArb(0, 8), fc.array(fc.nat(), { maxLength: 4 }), (s, bodies, after, cuts) => {
        const b = Buffer.concat([encode(bodies, []), after]);
        count(t, differential({ side: s.side, prefix: s.prefix, expect: s.expect, hidden: s.hidden, maxMessage: s.maxMessage, chunks: splitAt(b, cuts) }));
      }),
      { numRuns: 3000, seed: 23 },
    );
    fc.assert(
      fc.property(setting, bytesArb(0, 64), fc.array(fc.nat(), { maxLength: 4 }), (s, b, cuts) => {
        count(t, differential({ side: s.side, prefix: s.prefix, expect: s.expect, hidden: s.hidden, maxMessage: s.maxMessage, chunks: splitAt(b, cuts) }));
      }),
      { numRuns: 1000, seed: 24 },
    );
    expect(t.bad_handshake).toBeGreaterThan(1000);
    expect(t.handshake_too_large).toBeGreaterThan(300);
    expect(t.more).toBeGreaterThan(300);
  });

  // -------------------------------------------------------------------------

  it('the fuzz target seeds (native/fuzz/handshake-corpus) are the handshakes written here, and both walkers take them', () => {
    const want = new Map(seedInputs().map((b) => [createHash('sha1').update(b).digest('hex'), b]));
    const have = readdirSync(SEEDS).sort();
    expect(have).toEqual([...want.keys()].sort());
    for (const name of have) {
      const b = readFileSync(join(SEEDS, name));
      expect(b.equals(want.get(name)!)).toBe(true);
      expect(fuzzVerdict(b), name).toMatchObject({ ok: true, done: true });
    }
  });
});

// The fuzz target's seed corpus (native/fuzz/handshake-corpus, for
// native/fuzz/handshake_fuzz.c) is seedInputs(), in the target's input format:
//   BEAMGATE_HANDSHAKE_CORPUS=native/fuzz/handshake-corpus npx vitest run test/native/handshake.test.ts
// writes it (files named by their sha1, as libFuzzer names them).
const CORPUS = process.env.BEAMGATE_HANDSHAKE_CORPUS;

describe.skipIf(!CORPUS)('the handshake fuzz target seed corpus', () => {
  it('writes valid handshakes of both sides', () => {
    mkdirSync(CORPUS!, { recursive: true });
    for (const b of seedInputs()) writeFileSync(join(CORPUS!, createHash('sha1').update(b).digest('hex')), b);
  });
});
