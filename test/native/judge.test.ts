// The native judge (native/judge.c and verdict.c, through the test-only judgeFrames of
// native/judge_napi.c) against the TypeScript decoder and judge on the same
// frames: real term_to_binary encodings (host erl) sent as OTP sends them,
// with the atom cache in use (new entries, references, slots overwritten),
// every operation of src/dist/control.ts, fragmented messages with
// interleaved sequences, pass-through headers, and random and mutated
// frames. For every frame: a native 'pass' is a message the TypeScript
// decoder decodes and judge() passes; an 'ask' hands over a body and atoms
// that decodeMessage turns into exactly what the TypeScript decoder got (the
// same message, or the same error); a 'fail' is the TypeScript decoder's
// header or fragment error, same code; a 'hold' is a fragment it holds too.
// And the common messages pass natively, or the fast path would not be one.
// Runs on build/fastpath.node, or on the module BEAMGATE_JUDGE_MODULE names
// (a stand-alone or sanitizer build); skipped when that module is not built.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { ALTACT_FLAG } from '../../src/dist/control.js';
import { decodeMessage, DirectionDecoder, type FrameResult } from '../../src/dist/decoder.js';
import { guard } from '../../src/dist/errors.js';
import { NATIVE_MODULE } from '../../src/fastpath/native.js';
import { judge } from '../../src/filter/verdict.js';
import type { LinkFilter } from '../../src/policy/filter.js';
import { erlEncode } from '../helpers/etf.js';
import { type Bytes, type Entry, atom, cacheRefs, list, nil, small, tuple, u16, u32, u64 } from '../helpers/etf-write.js';

const MODULE = process.env.BEAMGATE_JUDGE_MODULE ?? NATIVE_MODULE;

interface NativeResult {
  verdict: 'pass' | 'hold' | 'ask' | 'fail';
  earlier?: number;
  fragments?: number;
  body?: Buffer;
  magic?: boolean;
  atoms?: string[];
  code?: string;
  reason?: string;
}
interface NativeFilter {
  full: boolean;
  names: string[];
  calls: string[];
}
type JudgeFrames = (frames: Buffer[], filter: NativeFilter, seeds?: [number, string][]) => NativeResult[];

function load(): JudgeFrames | undefined {
  if (!existsSync(MODULE)) return undefined;
  const b = createRequire(import.meta.url)(MODULE) as { judge?: { judgeFrames?: JudgeFrames }; judgeFrames?: JudgeFrames };
  return b.judge?.judgeFrames ?? b.judgeFrames;
}
const judgeFrames = load();

const NAMES = ['bg_api', 'echo', 'caf\u00e9'];
const CALLS = ['erlang:phash2/1', 'lists:reverse/1', 'm:f/?', 'bg:work/2'];
const FILTER: NativeFilter = { full: false, names: NAMES, calls: CALLS };
const FULL: NativeFilter = { full: true, names: [], calls: [] };
const linkFilter = (f: NativeFilter): LinkFilter => ({ full: f.full, names: new Set(f.names), calls: new Set(f.calls), cut: false, fromGroup: 'a', toGroup: 'b' });

interface Tally {
  pass: number;
  hold: number;
  ask: number;
  fail: number;
}
const tally = (): Tally => ({ pass: 0, hold: 0, ask: 0, fail: 0 });

/** The message part of a FrameResult, as decodeMessage returns it. */
const messageOf = (r: Extract<FrameResult, { kind: 'message' }>) => ({ control: r.control, payloadHead: r.payloadHead });

/**
 * Runs the frames through both judges and checks every frame's native verdict
 * against the TypeScript decoder's result, up to the first frame that breaks
 * the direction (the link is cut there). Returns the native verdicts' counts
 * and each frame's verdict.
 */
function differential(frames: Buffer[], f: NativeFilter = FILTER, seeds?: [number, string][], t: Tally = tally()): NativeResult[] {
  const native = judgeFrames!(frames, f, seeds);
  expect(native).toHaveLength(frames.length);
  const d = new DirectionDecoder();
  for (const [slot, text] of seeds ?? []) d.cache.set(slot, text);
  const lf = linkFilter(f);
  for (let i = 0; i < frames.length; i++) {
    const c = native[i]!;
    const r = d.decode(frames[i]!);
    const where = `frame ${i} (${frames[i]!.subarray(0, 24).toString('hex')}...): native ${c.verdict} ${c.code ?? ''}, TypeScript ${r.kind} ${r.kind === 'error' ? r.code : ''}`;
    t[c.verdict]++;
    switch (c.verdict) {
      case 'fail':
        expect(r.kind, where).toBe('error');
        if (r.kind === 'error') expect(c.code, where).toBe(r.code);
        expect(c.reason!.length, where).toBeGreaterThan(10);
        break;
      case 'hold':
        expect(r.kind, where).toBe('fragment-pending');
        break;
      case 'pass':
        expect(r.kind, where).toBe('message');
        if (r.kind === 'message') {
          expect(judge(r, lf).pass, where).toBe(true);
          expect(c.fragments, where).toBe(r.fragments);
          expect(c.earlier ?? 0, where).toBe(r.fragments - 1);
        }
        break;
      case 'ask': {
        expect(r.kind === 'message' || r.kind === 'error', where).toBe(true);
        const m = guard(() => decodeMessage(c.body!, 0, c.magic ? undefined : c.atoms, c.magic!));
        if (r.kind === 'error') {
          expect(m.ok, where).toBe(false);
          if (!m.ok) expect(m.error.code, where).toBe(r.code);
        } else if (r.kind === 'message') {
          expect(m.ok, where).toBe(true);
          if (m.ok) expect(m.value, where).toEqual(messageOf(r));
          expect(c.magic, where).toBe(r.header === 'pass-through');
          expect(c.fragments, where).toBe(r.fragments);
          expect(c.earlier ?? 0, where).toBe(r.fragments - 1);
        }
        break;
      }
    }
    if (r.kind === 'error') break;
  }
  return native;
}

// ---------------------------------------------------------------------------
// Messages as OTP sends them: control and payload terms re-encoded with the
// sending node's atom cache (a slot per atom by hash, a new entry the first
// time, references after), then framed whole, in fragments, or pass-through.

/** One term's encoding, without its 131 (as after a distribution header). */
type Term = Bytes;

/** Where the term at `at` ends; its atoms (UTF-8 and latin-1 text tags) are reported to `onAtom`. */
function walk(b: Buffer, at: number, onAtom: (start: number, end: number, name: string) => void): number {
  const tag = b[at]!;
  const atomAt = (p: number) => {
    const t = b[p]!;
    const long = t === 118 || t === 100;
    const len = long ? b.readUInt16BE(p + 1) : b[p + 1]!;
    const s = p + (long ? 3 : 2);
    if (t !== 82) onAtom(p, s + len, b.toString(t === 118 || t === 119 ? 'utf8' : 'latin1', s, s + len));
    return t === 82 ? p + 2 : s + len;
  };
  let p = at + 1;
  switch (tag) {
    case 97:
      return p + 1;
    case 98:
      return p + 4;
    case 70:
      return p + 8;
    case 99:
      return p + 31;
    case 110:
      return p + 2 + b[p]!;
    case 111:
      return p + 5 + b.readUInt32BE(p);
    case 118:
    case 119:
    case 100:
    case 115:
    case 82:
      return atomAt(at);
    case 88:
      return atomAt(p) + 12;
    case 103:
      return atomAt(p) + 9;
    case 89:
      return atomAt(p) + 8;
    case 120:
      return atomAt(p) + 12;
    case 102:
      return atomAt(p) + 5;
    case 90:
    case 114: {
      const n = b.readUInt16BE(p);
      return atomAt(p + 2) + (tag === 90 ? 4 : 1) + 4 * n;
    }
    case 101:
      return atomAt(p) + 5;
    case 104:
    case 105: {
      const n = tag === 104 ? b[p]! : b.readUInt32BE(p);
      p += tag === 104 ? 1 : 4;
      for (let i = 0; i < n; i++) p = walk(b, p, onAtom);
      return p;
    }
    case 106:
      return p;
    case 107:
      return p + 2 + b.readUInt16BE(p);
    case 108: {
      const n = b.readUInt32BE(p);
      p += 4;
      for (let i = 0; i <= n; i++) p = walk(b, p, onAtom);
      return p;
    }
    case 109:
      return p + 4 + b.readUInt32BE(p);
    case 77:
      return p + 5 + b.readUInt32BE(p);
    case 116: {
      const n = b.readUInt32BE(p);
      p += 4;
      for (let i = 0; i < 2 * n; i++) p = walk(b, p, onAtom);
      return p;
    }
    case 113:
      p = atomAt(p);
      p = atomAt(p);
      return p + 2;
    case 112: {
      const numFree = b.readUInt32BE(p + 25);
      p = atomAt(p + 29);
      p = walk(b, p, onAtom);
      p = walk(b, p, onAtom);
      p = walk(b, p, onAtom);
      for (let i = 0; i < numFree; i++) p = walk(b, p, onAtom);
      return p;
    }
    default:
      throw new Error(`walk: tag ${tag}`);
  }
}

/** A sending node's side of one direction's atom cache. */
class Sender {
  private readonly slots = new Map<number, string>();
  private seq = 1000n;

  /** `mod`: how many slots atoms spread over (small: slots are overwritten often). */
  constructor(private readonly mod = 2048) {}

  private slotOf(name: string): number {
    let h = 0;
    for (const c of Buffer.from(name, 'utf8')) h = (h * 31 + c) >>> 0;
    return h % this.mod;
  }

  /**
   * The header's entries and the terms with their atoms turned into
   * references, as OTP's dist encoder does (at most 255 references; an atom
   * whose slot another atom of this message took stays inline, as does a
   * latin-1 atom the header cannot carry as written).
   */
  encode(terms: Term[], longAtoms = false): { refs: Bytes; body: Bytes } {
    const entries: Entry[] = [];
    const index = new Map<string, number>();
    const taken = new Map<number, string>();
    const out: Buffer[] = [];
    for (const t of terms) {
      const b = Buffer.from(t);
      let last = 0;
      walk(b, 0, (start, end, name) => {
        let ix = index.get(name);
        if (ix === undefined && entries.length < 255 && (b[start] === 118 || b[start] === 119)) {
          const slot = this.slotOf(name);
          if (!taken.has(slot)) {
            taken.set(slot, name);
            ix = entries.length;
            index.set(name, ix);
            entries.push(this.slots.get(slot) === name ? { slot } : { slot, atom: name });
            this.slots.set(slot, name);
          }
        }
        if (ix === undefined) return;
        out.push(b.subarray(last, start), Buffer.from([82, ix]));
        last = end;
      });
      out.push(b.subarray(last));
    }
    return { refs: cacheRefs(entries, longAtoms), body: [...Buffer.concat(out)] };
  }

  /** One message as whole frames: normal header with the cache, or in `pieces` fragments. */
  frames(terms: Term[], pieces = 1, longAtoms = false): Buffer[] {
    const { refs, body } = this.encode(terms, longAtoms);
    if (pieces <= 1) return [Buffer.from([131, 68, ...refs, ...body])];
    const seq = this.seq++;
    return fragment(seq, refs, body, pieces);
  }
}

/** A message's body cut into `pieces` fragments (ids counting down), the first with the header's references. */
function fragment(seq: bigint, refs: Bytes, body: Bytes, pieces: number): Buffer[] {
  const n = Math.max(1, Math.min(pieces, body.length));
  const size = Math.ceil(body.length / n);
  const out: Buffer[] = [];
  for (let k = 0; k < n; k++) {
    const chunk = body.slice(k * size, k === n - 1 ? body.length : (k + 1) * size);
    const id = BigInt(n - k);
    out.push(Buffer.from(k === 0 ? [131, 69, ...u64(seq), ...u64(id), ...refs, ...chunk] : [131, 70, ...u64(seq), ...u64(id), ...chunk]));
  }
  return out;
}

/** Pass-through: each term with its own 131, no atom cache. */
const passThrough = (...terms: Term[]): Buffer => Buffer.from([112, ...terms.flatMap((t) => [131, ...t])]);
const plain = (...terms: Term[]): Buffer => Buffer.from([131, 68, 0, ...terms.flat()]);

/**
 * Interleaves the frames of several messages, keeping each message's own
 * order. A message is encoded when its first frame goes out: the atom cache
 * entries it writes must precede the references of the messages after it.
 */
function interleave(messages: (() => Buffer[])[], choose: (n: number) => number): Buffer[] {
  const queues: { make?: () => Buffer[]; frames: Buffer[] }[] = messages.map((make) => ({ make, frames: [] }));
  const out: Buffer[] = [];
  for (;;) {
    const open = queues.filter((q) => q.make || q.frames.length > 0);
    if (open.length === 0) return out;
    const q = open[choose(open.length)]!;
    if (q.make) {
      q.frames = q.make();
      q.make = undefined;
    }
    out.push(q.frames.shift()!);
  }
}

const P = [88, ...atom('a@host'), ...u32(1), ...u32(0), ...u32(7)];
const Q = [88, ...atom('b@host'), ...u32(2), ...u32(0), ...u32(7)];
const R = [90, ...u16(3), ...atom('a@host'), ...u32(7), ...u32(9), ...u32(1), ...u32(2)];
const EMPTY = atom('');
const bin = (n: number, fill = 7): Bytes => [109, ...u32(n), ...new Array<number>(n).fill(fill)];
const str = (s: string): Bytes => [107, ...u16(s.length), ...Buffer.from(s, 'latin1')];
const exportFun = (m: string, f: string, a: number): Bytes => [113, ...atom(m), ...atom(f), 97, a];
const genCall = (req: Bytes): Bytes => tuple(atom('$gen_call'), tuple(P, R), req);
const genCast = (req: Bytes): Bytes => tuple(atom('$gen_cast'), req);
const rexCall = (m: string, f: string, args: Bytes, kind = 'call'): Bytes => tuple(atom(kind), atom(m), atom(f), args, P);
const MSG = tuple(atom('hello'), small(1));
/** A local fun of `module` (NEW_FUN_EXT) with these free variables; `slack` makes its Size lie. */
const localFun = (module: string, free: Bytes[] = [], slack = 0): Bytes => {
  const rest = [0, ...new Array<number>(16).fill(1), ...u32(0), ...u32(free.length), ...atom(module), ...small(0), ...small(0), ...P, ...free.flat()];
  return [112, ...u32(4 + rest.length + slack), ...rest];
};

const send = (payload: Bytes) => [tuple(small(2), EMPTY, Q), payload];
const regSend = (name: string, payload: Bytes) => [tuple(small(6), P, EMPTY, atom(name)), payload];
const spawnRequest = (m: string, f: string, a: number, args: Bytes, tt = false) => [
  tuple(small(tt ? 30 : 29), R, P, P, tuple(atom(m), atom(f), small(a)), list(atom('monitor')), ...(tt ? [atom('token')] : [])),
  args,
];

/** One message per operation of control.ts (and an unknown one), each with the payload its operation carries. */
const OPS: Record<string, Term[]> = {
  LINK: [tuple(small(1), P, Q)],
  SEND: send(MSG),
  EXIT: [tuple(small(3), P, Q, atom('normal'))],
  UNLINK: [tuple(small(4), P, Q)],
  NODE_LINK: [tuple(small(5))],
  REG_SEND: regSend('echo', MSG),
  GROUP_LEADER: [tuple(small(7), P, Q)],
  EXIT2: [tuple(small(8), P, Q, atom('kill'))],
  SEND_TT: [tuple(small(12), EMPTY, Q, atom('token')), MSG],
  EXIT_TT: [tuple(small(13), P, Q, atom('token'), atom('normal'))],
  REG_SEND_TT: [tuple(small(16), P, EMPTY, atom('echo'), atom('token')), MSG],
  EXIT2_TT: [tuple(small(18), P, Q, atom('token'), atom('kill'))],
  MONITOR_P: [tuple(small(19), P, atom('echo'), R)],
  DEMONITOR_P: [tuple(small(20), P, Q, R)],
  MONITOR_P_EXIT: [tuple(small(21), atom('echo'), P, R, atom('noproc'))],
  SEND_SENDER: [tuple(small(22), P, Q), MSG],
  SEND_SENDER_TT: [tuple(small(23), P, Q, atom('token')), MSG],
  PAYLOAD_EXIT: [tuple(small(24), P, Q), atom('normal')],
  PAYLOAD_EXIT_TT: [tuple(small(25), P, Q, atom('token')), atom('normal')],
  PAYLOAD_EXIT2: [tuple(small(26), P, Q), atom('kill')],
  PAYLOAD_EXIT2_TT: [tuple(small(27), P, Q, atom('token')), atom('kill')],
  PAYLOAD_MONITOR_P_EXIT: [tuple(small(28), Q, P, R), atom('normal')],
  SPAWN_REQUEST: spawnRequest('erpc', 'execute_call', 4, list(R, atom('erlang'), atom('phash2'), list(atom('x')))),
  SPAWN_REQUEST_TT: spawnRequest('erlang', 'apply', 2, list(exportFun('lists', 'reverse', 1), list(nil)), true),
  SPAWN_REPLY: [tuple(small(31), R, P, small(2), Q)],
  SPAWN_REPLY_TT: [tuple(small(32), R, P, small(0), atom('badarg'), atom('token'))],
  ALIAS_SEND: [tuple(small(33), P, R), MSG],
  ALIAS_SEND_TT: [tuple(small(34), P, R, atom('token')), MSG],
  UNLINK_ID: [tuple(small(35), small(17), P, Q)],
  UNLINK_ID_ACK: [tuple(small(36), [110, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8], P, Q)],
  ALTACT_SIG_SEND: [tuple(small(37), small(ALTACT_FLAG.NAME | ALTACT_FLAG.PRIO), P, atom('echo')), MSG],
  ALTACT_SIG_SEND_ALIAS: [tuple(small(37), small(ALTACT_FLAG.ALIAS), P, R, atom('token')), MSG],
  ALTACT_SIG_SEND_EXIT: [tuple(small(37), small(ALTACT_FLAG.EXIT), P, Q), atom('kill')],
  UNKNOWN: [tuple(small(99), P), MSG],
};

/** Each operation's frames: plain, with the cache, pass-through, in fragments. */
function opFrames(s: Sender, terms: Term[]): Buffer[][] {
  return [[plain(...terms)], s.frames(terms), s.frames(terms, 1, true), [passThrough(...terms)], s.frames(terms, 3)];
}

// A deterministic pseudo-random stream for interleavings.
function prng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

// ---------------------------------------------------------------------------

describe.skipIf(!judgeFrames)(`the native judge against the TypeScript one (${MODULE.split('/').pop()})`, () => {
  // Payloads real erl encodes: random terms (a fixed seed) and shapes that switch encodings.
  const leafSrc = fc.oneof(
    fc.integer({ min: 0, max: 255 }).map(String),
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map(String),
    fc.bigInt({ min: -(2n ** 600n), max: 2n ** 600n }).map(String),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(d);
      return `(fun(<<F:64/float>>) -> F end)(<<16#${b.toString('hex')}:64>>)`;
    }),
    fc.stringMatching(/^[a-z][a-zA-Z0-9_]{0,10}$/).map((a) => `'${a}'`),
    fc.constantFrom("'$gen_call'", "'$gen_cast'", 'system', 'io_request', "'EXIT'", 'call', 'cast', 'is_auth', 'which_children', 'features_request'),
    fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 30 }).map((b) => `<<${b.join(',')}>>`),
    fc.constant('<<1:3>>'),
    fc.constant('self()'),
    fc.constant('make_ref()'),
    fc.constant('list_to_port("#Port<0.5>")'),
    fc.constant('fun erlang:phash2/1'),
    fc.constant("binary_to_atom(<<\"caf\\x{e9}\"/utf8>>, utf8)"),
    fc.constant('[]'),
  );
  const { term: termSrc } = fc.letrec<{ term: string; compound: string }>((tie) => ({
    term: fc.oneof({ depthSize: 'small', maxDepth: 4 }, leafSrc, tie('compound')),
    compound: fc.oneof(
      fc.array(tie('term'), { maxLength: 5 }).map((es) => `{${es.join(',')}}`),
      fc.array(tie('term'), { maxLength: 5 }).map((es) => `[${es.join(',')}]`),
      fc.tuple(fc.array(tie('term'), { minLength: 1, maxLength: 3 }), leafSrc).map(([es, t]) => `[${es.join(',')}|${t}]`),
      fc.array(fc.tuple(tie('term'), tie('term')), { maxLength: 4 }).map((kvs) => `#{${kvs.map(([k, v]) => `${k} => ${v}`).join(', ')}}`),
      tie('term').map((t) => `(fun(K) -> fun(X) -> {X, K} end end)(${t})`),
    ),
  }));
  const FIXED = [
    'list_to_tuple(lists:seq(1, 300))',
    'lists:seq(1, 70000)',
    'lists:duplicate(65535, 7)',
    'binary_to_atom(binary:copy(<<252/utf8>>, 255), utf8)',
    "''",
    '1 bsl 2040',
    '-(1 bsl 2048)',
    'binary:copy(<<"abc">>, 100000)',
    'lists:foldl(fun(_, A) -> [A] end, [], lists:seq(1, 200))',
    "{'$gen_call', {self(), make_ref()}, {call, erlang, phash2, [x], self()}}",
    "{'$gen_call', {self(), make_ref()}, {call, os, cmd, [\"id\"], self()}}",
    "{'$gen_call', {self(), make_ref()}, {block_call, lists, reverse, [[1,2,3]], self()}}",
    "{'$gen_cast', {cast, m, f, [a | b], self()}}",
    "{'$gen_call', {self(), make_ref()}, which_children}",
    "{'$gen_call', {self(), make_ref()}, {start_child, x}}",
    "{'$gen_call', {self(), make_ref()}, is_auth}",
    "{system, {self(), make_ref()}, get_state}",
    "{io_request, self(), make_ref(), {put_chars, unicode, <<\"hi\">>}}",
    "{'EXIT', self(), kill}",
    "{code_call, self(), stop}",
    'stop',
    "{self(), features_request}",
    "{'$gen_call', {self(), make_ref()}, {get, key}}",
  ];
  let payloads: Term[] = [];

  beforeAll(() => {
    const srcs = [...fc.sample(termSrc, { numRuns: 250, seed: 42 }), ...FIXED];
    payloads = erlEncode(srcs).map((e) => [...e.ext.subarray(1)]);
  }, 180_000);

  it('agrees on every operation of control.ts, plain, with the atom cache, pass-through and in fragments, under both filters', () => {
    const t = tally();
    for (const filter of [FILTER, FULL]) {
      const s = new Sender();
      const frames = Object.values(OPS).flatMap((terms) => opFrames(s, terms).flat());
      differential(frames, filter, undefined, t);
    }
    expect(t.fail).toBe(0);
    expect(t.pass).toBeGreaterThan(100);
    expect(t.ask).toBeGreaterThan(10);
  });

  it('agrees on real term_to_binary payloads in every send, with the atom cache in use and slots overwritten', () => {
    const t = tally();
    const choose = prng(7);
    for (const mod of [2048, 7]) {
      for (const filter of [FILTER, FULL]) {
        // One link per 8 messages, whose fragments interleave (each message's own stay in order).
        for (let k = 0; k < payloads.length; k += 8) {
          const s = new Sender(mod);
          const messages: (() => Buffer[])[] = [];
          for (const [i, p] of payloads.slice(k, k + 8).entries()) {
            const n = k + i;
            const kind = n % 6;
            const terms =
              kind === 0
                ? send(p)
                : kind === 1
                  ? regSend(n % 12 === 1 ? 'echo' : 'global_name_server', p)
                  : kind === 2
                    ? [tuple(small(33), P, R), p]
                    : kind === 3
                      ? regSend('net_kernel', p)
                      : kind === 4
                        ? spawnRequest('erpc', 'execute_call', 4, list(R, atom('erlang'), atom('phash2'), list(p)))
                        : [tuple(small(24), P, Q), p];
            messages.push(() => s.frames(terms, 1 + (n % 4)));
            if (n % 5 === 0) messages.push(() => [passThrough(...terms)]);
          }
          differential(interleave(messages, choose), filter, undefined, t);
        }
      }
    }
    expect(t.fail).toBe(0);
    expect(t.hold).toBeGreaterThan(100);
    expect(t.pass).toBeGreaterThan(300);
  });

  it('fails as the TypeScript decoder does on broken headers and fragments, and stays failed', () => {
    const body = [...tuple(small(2), EMPTY, Q), ...MSG];
    const cases: Buffer[][] = [
      [Buffer.from([131])],
      [Buffer.from([130, 68, 0])],
      [Buffer.from([131, 71, 0])],
      [Buffer.from([131, 68])],
      [Buffer.from([131, 68, 2, 0x88])],
      [Buffer.from([131, 68, 1, 0x00, 5])], // a reference to an empty slot: bad_cache_ref
      [Buffer.from([131, 68, 1, 0x08, 5, 2, 0xc3, 0x28])], // a new entry that is not UTF-8
      [Buffer.from([131, 69, ...u64(1n), ...u64(0n), 0])],
      [Buffer.from([131, 69, ...u64(1n), ...u64(2n)])],
      [Buffer.from([131, 70, ...u64(1n), ...u64(1n), ...body])], // unknown sequence
      [...fragment(3n, [0], body, 3).slice(0, 1), ...fragment(3n, [0], body, 3).slice(2)], // out of order
      [...fragment(3n, [0], body, 3).slice(0, 1), ...fragment(3n, [0], body, 3)], // duplicate
      [Buffer.from([131, 69, ...u64(9n), ...u64(BigInt(2 ** 21)), 0, ...body])], // too many fragments declared
      Array.from({ length: 258 }, (_, i) => fragment(BigInt(i), [0], body, 2)[0]!), // too many sequences
      [Buffer.from([131, 70, ...u64(1n)])],
      [Buffer.from([5, 1, 2])],
    ];
    for (const frames of cases) {
      const all = [...frames, plain(...OPS.LINK!)];
      const native = differential(all);
      const failed = native.findIndex((r) => r.verdict === 'fail');
      expect(failed, frames[0]!.toString('hex')).toBeGreaterThanOrEqual(0);
      // Sticky: every frame after the first failure fails the same way.
      for (const r of native.slice(failed)) expect(r).toMatchObject({ verdict: 'fail', code: native[failed]!.code });
    }
    // The last fragment of a message in the middle of a failure-free run: a 'fragment' a frame after a 'message'.
    const s = new Sender();
    differential([...s.frames(send(bin(100)), 3), ...s.frames(regSend('echo', MSG), 2)]);
  });

  it('reads a header that names a slot and then overwrites it, as header.ts does', () => {
    const ok = [...tuple(small(6), P, EMPTY, [82, 0]), ...tuple([82, 1], [82, 2])];
    // Slot 5: "echo" from the seeds; the header refers to it (reference 0), then writes "other" there (1), then refers to it again (2).
    const refs = cacheRefs([{ slot: 5 }, { slot: 5, atom: 'other' }, { slot: 5 }]);
    const frames = [Buffer.from([131, 68, ...refs, ...ok]), plain(...regSend('echo', MSG))];
    const native = differential(frames, FILTER, [[5, 'echo']]);
    expect(native[0]).toMatchObject({ verdict: 'pass' });
    // The same as the first fragment of a message whose last fragment comes after slot 5 changed again.
    const body = ok;
    const f1 = Buffer.from([131, 69, ...u64(77n), ...u64(2n), ...refs, ...body.slice(0, 10)]);
    const other = Buffer.from([131, 68, ...cacheRefs([{ slot: 5, atom: 'bg_api' }]), ...tuple(small(6), P, EMPTY, [82, 0]), ...MSG]);
    const f2 = Buffer.from([131, 70, ...u64(77n), ...u64(1n), ...body.slice(10)]);
    const out = differential([f1, other, f2], { full: false, names: ['other'], calls: [] }, [[5, 'echo']]);
    expect(out.map((r) => r.verdict)).toEqual(['hold', 'ask', 'ask']);
    expect(out[2]!.atoms).toEqual(['echo', 'other', 'other']);
  });

  it('passes the common messages natively', () => {
    // A new link each time: one judge per differential run.
    const pass = (terms: Term[], f = FILTER, pieces = 1) => {
      const frames = new Sender().frames(terms, pieces);
      const out = differential(frames, f);
      expect(out.at(-1)!.verdict, JSON.stringify(terms).slice(0, 200)).toBe('pass');
    };
    pass(send(bin(64 * 1024)));
    pass(send(bin(300 * 1024)), FILTER, 5);
    pass(send(genCall(tuple(atom('get'), atom('key')))));
    pass(regSend('bg_api', genCall(tuple(atom('get'), atom('key')))));
    pass(regSend('echo', genCast(atom('ping'))));
    pass(regSend('bg_api', genCall(rexCall('erlang', 'phash2', list(atom('x'))))));
    pass(regSend('global_name_server', tuple(atom('init_connect'), small(1))));
    pass(regSend('pg', tuple(atom('discover'), P)));
    pass(regSend('net_kernel', genCall(tuple(atom('is_auth'), atom('a@host')))));
    pass(regSend('rex', tuple(P, atom('features_request'))));
    for (const op of ['LINK', 'UNLINK', 'EXIT', 'EXIT_TT', 'PAYLOAD_EXIT', 'PAYLOAD_EXIT_TT', 'MONITOR_P', 'DEMONITOR_P', 'MONITOR_P_EXIT', 'PAYLOAD_MONITOR_P_EXIT', 'SPAWN_REPLY', 'SPAWN_REPLY_TT', 'UNLINK_ID', 'UNLINK_ID_ACK', 'ALIAS_SEND', 'ALTACT_SIG_SEND_ALIAS'])
      pass(OPS[op]!);
    pass(spawnRequest('erpc', 'execute_call', 4, list(R, atom('erlang'), atom('phash2'), list(atom('x')))));
    pass(spawnRequest('erpc', 'execute_cast', 3, list(atom('bg'), atom('work'), list(small(1), small(2)))));
    pass(spawnRequest('erlang', 'apply', 2, list(exportFun('lists', 'reverse', 1), list(nil))));
    pass(spawnRequest('lists', 'reverse', 1, list(nil)), FILTER);
    expect(differential([passThrough(...send(MSG)), passThrough(...regSend('bg_api', genCast(atom('ping'))))]).map((r) => r.verdict)).toEqual(['pass', 'pass']);
    // Long atoms (2-byte lengths in the header).
    expect(differential([Buffer.from([131, 68, 1, 0x18, 5, 0, 3, 97, 98, 99, ...tuple(small(4), P, Q)])]).map((r) => r.verdict)).toEqual(['pass']);
    // Everything that decodes, under a full filter.
    for (const terms of Object.values(OPS)) pass(terms, FULL);
  });

  it('asks about what judge() denies or this judge does not read', () => {
    const ask = (terms: Term[]) => expect(differential(new Sender().frames(terms)).at(-1)!.verdict).toBe('ask');
    ask(send(tuple(atom('system'), tuple(P, R), atom('get_state'))));
    ask(send(tuple(atom('io_request'), P, R, tuple(atom('put_chars'), atom('unicode'), bin(2)))));
    ask(send(tuple(atom('EXIT'), P, atom('kill'))));
    ask(send(genCall(atom('which_children'))));
    ask(send(genCall(rexCall('os', 'cmd', list(str('id'))))));
    ask(regSend('nobody', MSG));
    ask(regSend('net_kernel', genCall(atom('nodes'))));
    ask(regSend('rex', genCall(rexCall('erlang', 'phash2', list(atom('x'))))));
    ask(spawnRequest('erpc', 'execute_call', 4, list(R, atom('os'), atom('cmd'), list(str('id')))));
    ask(spawnRequest('erlang', 'apply', 2, list(localFun('bg'), nil)));
    for (const op of ['NODE_LINK', 'GROUP_LEADER', 'EXIT2', 'EXIT2_TT', 'PAYLOAD_EXIT2', 'PAYLOAD_EXIT2_TT', 'ALTACT_SIG_SEND_EXIT', 'UNKNOWN']) ask(OPS[op]!);
    // A float in FLOAT_EXT text, a compressed payload: the TypeScript reader's to judge.
    ask(send([99, ...Buffer.from('1.5'.padEnd(31, '\0'), 'latin1')]));
    expect(differential([plain(...send([80, ...u32(10), 1, 2, 3]))])[0]!.verdict).toBe('ask');
  });

  it('refuses every term and control shape TermReader or toControl refuses, under either filter', () => {
    const utf8 = (s: string, tag = 118): Bytes => {
      const b = [...Buffer.from(s, 'utf8')];
      return tag === 118 ? [118, ...u16(b.length), ...b] : [tag, b.length, ...b];
    };
    const deep = (d: number): Bytes => [...Array.from({ length: d }, () => [108, ...u32(1)]).flat(), 106, ...new Array<number>(d).fill(106)];
    const big = (n: number): Bytes => [111, ...u32(n), 0, ...new Array<number>(n).fill(1)];
    const terms: Bytes[] = [
      [77, ...u32(1), 0, 5],
      [77, ...u32(1), 9, 5],
      [77, ...u32(1), 8, 5],
      [77, ...u32(0), 1],
      [110, 1, 2, 5],
      [110, 0, 1],
      [70, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0],
      [70, 0xff, 0xf0, 0, 0, 0, 0, 0, 0],
      [70, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1],
      [70, 0x7f, 0xef, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
      [99, ...Buffer.from('1.5e400'.padEnd(31, '\0'), 'latin1')],
      [119, 2, 0xc3, 0x28],
      [119, 3, 0xed, 0xa0, 0x80],
      [119, 2, 0xc0, 0x80],
      [119, 4, 0xf4, 0x90, 0x80, 0x80],
      [119, 3, 0xe2, 0x82],
      utf8('a'.repeat(255)),
      utf8('a'.repeat(256)),
      utf8('\u00fc'.repeat(255)),
      utf8('\u00fc'.repeat(256)),
      utf8('\ufeff' + '\u00fc'.repeat(255)),
      utf8('\ufeff' + '\u00fc'.repeat(256)),
      utf8('\ufeffecho', 119),
      [100, ...u16(256), ...new Array<number>(256).fill(97)],
      [100, ...u16(255), ...new Array<number>(255).fill(0xe9)],
      [115, 4, 0x63, 0x61, 0x66, 0xe9],
      [90, ...u16(0), ...atom('a@host'), ...u32(7)],
      [90, ...u16(6), ...atom('a@host'), ...u32(7), ...new Array<number>(24).fill(0)],
      [90, ...u16(5), ...atom('a@host'), ...u32(7), ...new Array<number>(20).fill(0)],
      localFun('bg'),
      localFun('bg', [], 1),
      localFun('bg', [], -1),
      localFun('bg', [MSG, localFun('inner', [nil])]),
      localFun('bg', [MSG], 1),
      localFun('bg', [MSG], -1),
      localFun('bg', [localFun('inner', [nil], 1)]),
      [113, ...atom('m'), ...atom('f'), 98, ...u32(1)],
      [113, ...atom('m'), ...small(1), 97, 1],
      [0],
      [200],
      [131, 106],
      [82, 5],
      [108, ...u32(1000), 106],
      [104, 5, 106],
      [116, ...u32(1), 106],
      [116, ...u32(1), 106, 106],
      [88, 97, 1, ...u32(1), ...u32(0), ...u32(7)],
      [89, ...atom('a@host'), ...u32(1), ...u32(2)],
      [120, ...atom('a@host'), ...u32(0), ...u32(1), ...u32(2)],
      [102, ...atom('a@host'), ...u32(1), 2],
      [101, ...atom('a@host'), ...u32(1), 2],
      [103, ...atom('a@host'), ...u32(1), ...u32(0), 2],
      deep(10_000),
      deep(10_001),
      big(4096),
      big(4097),
      [106, 106],
    ];
    const controls: Term[][] = [
      [tuple(small(29), R, P, P, tuple(small(1), atom('f'), small(4)), nil), nil],
      [tuple(small(29), R, P, P, tuple(atom('m'), atom('f')), nil), nil],
      [tuple(small(29), R, P, P, tuple(atom('m'), atom('f'), atom('a')), nil), nil],
      [tuple(small(29), R, P, P, tuple(atom('m'), atom('f'), [98, ...u32(0xffffffff)]), nil), nil],
      [tuple(small(1), R, Q)],
      [tuple(small(35), big(4096), P, Q)],
      [tuple(small(35), big(4097), P, Q)],
      [tuple(small(99), ...new Array<Bytes>(63).fill(nil))],
      [tuple(small(99), ...new Array<Bytes>(64).fill(nil))],
      [tuple([110, 1, 0, 2], P, Q)],
      [[104, 0]],
      [atom('link')],
      [tuple(small(31), R, P, big(2), Q)],
      [tuple(small(37), small(0), P, bin(1)), MSG],
      [tuple(small(37), small(0), P, Q, atom('token'), nil), MSG],
      [tuple(small(2), EMPTY, Q)],
      [tuple(small(1), P, Q), MSG],
      [tuple(small(6), P, EMPTY, atom('echo')), MSG, MSG],
      [[105, ...u32(3), ...small(1), ...P, ...Q]],
    ];
    const t = tally();
    for (const f of [FILTER, FULL]) {
      for (const x of terms) {
        const messages = [send(x), send(tuple(atom('$gen_call'), tuple(P, R), x)), [tuple(small(3), P, Q, x)], regSend('echo', x), [tuple(small(6), P, EMPTY, x), MSG]];
        for (const m of messages) {
          differential([plain(...m)], f, undefined, t);
          differential([passThrough(...m)], f, undefined, t);
          differential(fragment(5n, [0], m.flat(), 2), f, undefined, t);
        }
      }
      for (const c of controls) differential([plain(...c)], f, undefined, t);
    }
    expect(t.pass).toBeGreaterThan(100);
    expect(t.ask).toBeGreaterThan(500);
  });

  it('never passes what the TypeScript judge denies or cannot decode: random terms and mutated frames', () => {
    const t = tally();
    const pick = (n: number) => fc.nat({ max: n - 1 });
    const payload = pick(payloads.length).map((i) => payloads[i]!);
    const message = fc.oneof(
      payload.map((p) => send(p)),
      payload.map((p) => regSend('echo', genCall(p))),
      payload.map((p) => send(genCall(tuple(atom('call'), atom('m'), atom('f'), p, P)))),
      payload.map((p) => spawnRequest('erpc', 'execute_call', 4, list(R, atom('m'), atom('f'), p))),
      fc.constantFrom(...Object.values(OPS)),
    );
    const frames = fc.tuple(fc.array(fc.tuple(message, fc.integer({ min: 1, max: 4 }), fc.boolean()), { minLength: 1, maxLength: 6 }), fc.nat()).map(([ms, seed]) => {
      const s = new Sender(seed % 2 ? 2048 : 5);
      const choose = prng(seed);
      return interleave(
        ms.map(([terms, pieces, pt]) => () => (pt ? [passThrough(...terms)] : s.frames(terms, pieces))),
        choose,
      );
    });
    const mutate = fc.tuple(frames, fc.array(fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat(), fc.nat()).map(([fs, flips, cutAt, cutLen]) => {
      const out = fs.map((f) => Buffer.from(f));
      for (const [fi, at, v] of flips) {
        const f = out[fi % out.length]!;
        f[at % f.length] = v;
      }
      const k = cutAt % out.length;
      const f = out[k]!;
      const from = cutLen % f.length;
      out[k] = Buffer.concat([f.subarray(0, from), f.subarray(from + (cutLen % 5))]);
      return out.filter((x) => x.length > 0);
    });
    fc.assert(fc.property(frames, (fs) => void differential(fs, FILTER, undefined, t)), { numRuns: 300, seed: 11 });
    fc.assert(fc.property(mutate, (fs) => void differential(fs, FILTER, undefined, t)), { numRuns: 1500, seed: 12 });
    fc.assert(fc.property(mutate, (fs) => void differential(fs, FULL, undefined, t)), { numRuns: 500, seed: 13 });
    expect(t.pass).toBeGreaterThan(500);
    expect(t.ask).toBeGreaterThan(500);
    expect(t.fail).toBeGreaterThan(50);
  });
});

// The fuzz target's seed corpus (native/fuzz/judge-corpus, for
// native/fuzz/judge_fuzz.c) is made of these same messages:
//   BEAMGATE_JUDGE_CORPUS=native/fuzz/judge-corpus npx vitest run test/native/judge.test.ts
// writes it (files named by their sha1, as libFuzzer names them). An input
// is a flags byte (1: small fragment limits, 2: a seeded atom cache), then
// frames, each after a 2-byte length whose top bit asks for the full filter.
const CORPUS = process.env.BEAMGATE_JUDGE_CORPUS;

describe.skipIf(!CORPUS)('the judge fuzz target seed corpus', () => {
  it('writes inputs from real frames', () => {
    const input = (flags: number, frames: Buffer[], full = false): Buffer => {
      const parts: Buffer[] = [Buffer.from([flags])];
      for (const f of frames) {
        if (f.length > 0x7fff) continue;
        parts.push(Buffer.from([(full ? 0x80 : 0) | (f.length >> 8), f.length & 255]), f);
      }
      return Buffer.concat(parts);
    };
    const inputs: Buffer[] = [];
    for (const [i, terms] of Object.values(OPS).entries()) inputs.push(input(i % 4, opFrames(new Sender(i % 2 ? 2048 : 7), terms).flat(), i % 3 === 0));
    const srcs = fc.sample(fc.stringMatching(/^[a-z]{1,8}$/), { numRuns: 24, seed: 5 }).map(
      (a, i) => [`{'$gen_call', {self(), make_ref()}, {${a}, ${i}}}`, `[${a}, <<"${a}">>, ${i * 1000}, 3.5, -${i}]`, `{system, self(), ${a}}`, `#{${a} => make_ref(), ${i} => [x | y]}`][i % 4]!,
    );
    const encoded = erlEncode(srcs).map((e) => [...e.ext.subarray(1)]);
    const choose = prng(3);
    for (let k = 0; k < encoded.length; k++) {
      const s = new Sender(k % 4 ? 2048 : 5);
      const ms = encoded.slice(k, k + 2).flatMap((p, i) => [
        () => s.frames(send(p), 1 + ((k + i) % 3)),
        () => s.frames(regSend('echo', p), 2),
        () => [passThrough(...regSend('bg_api', p))],
        () => s.frames(spawnRequest('erpc', 'execute_call', 4, list(R, atom('erlang'), atom('phash2'), list(p)))),
      ]);
      inputs.push(input(k % 4, interleave(ms, choose), k % 6 === 0));
    }
    const body = [...tuple(small(2), EMPTY, Q), ...MSG];
    inputs.push(input(0, [...fragment(3n, [0], body, 3).slice(0, 1), ...fragment(3n, [0], body, 3).slice(2)]));
    inputs.push(input(1, Array.from({ length: 6 }, (_, i) => fragment(BigInt(i), [0], body, 2)[0]!)));
    inputs.push(input(2, [Buffer.from([131, 68, ...cacheRefs([{ slot: 3 }, { slot: 3, atom: 'other' }, { slot: 3 }]), ...tuple(small(6), P, EMPTY, [82, 0]), ...tuple([82, 1], [82, 2])])]));
    inputs.push(input(0, [plain(...send(bin(20000))), plain(...send([108, ...u32(3), 106, 106, 106, 106]))]));
    mkdirSync(CORPUS!, { recursive: true });
    for (const b of inputs) writeFileSync(join(CORPUS!, createHash('sha1').update(b).digest('hex')), b);
    expect(inputs.length).toBeGreaterThan(50);
  });
});
