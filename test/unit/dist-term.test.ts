// The ETF decoder against real erl: fast-check generates random terms as
// Erlang source, one escript run of the host's erl encodes them all with
// term_to_binary (plain, minor_version 0 and compressed) and writes its own
// canonical text of each; the decoder must give the same text, the validator
// must accept every encoding, and every cut or corrupted encoding must give a
// typed error, never a throw.

import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { DIST_MAX_MATERIALISED_DEPTH, DIST_MAX_TERM_DEPTH } from '../../src/config/limits.js';
import { decodeExternal, FULL, TermReader, validateExternal } from '../../src/dist/term.js';
import { findRuntime, type OtpRuntime } from '../../src/erlang/roots.js';
import { canon, type ErlEncoded, erlEncode } from '../helpers/etf.js';

const bytesSrc = (b: number[]) => b.join(',');
const atomChars = fc.constantFrom('a', 'b', 'z', 'A', '_', '@', '0', ' ', "'", '\\', 'é', 'ü', 'ß', 'Ω', 'ж', '中', '😀');
const atom = fc.array(atomChars, { maxLength: 12 }).map((cs) => `binary_to_atom(<<${bytesSrc([...Buffer.from(cs.join(''), 'utf8')])}>>, utf8)`);
const plainName = fc.stringMatching(/^[a-z][a-z0-9_]{0,8}$/);
const byte = fc.integer({ min: 0, max: 255 });

const leaf = fc.oneof(
  fc.integer({ min: 0, max: 255 }).map(String),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map(String),
  fc.bigInt({ min: -(2n ** 900n), max: 2n ** 900n }).map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => {
    const b = Buffer.alloc(8);
    b.writeDoubleBE(d);
    return `(fun(<<F:64/float>>) -> F end)(<<16#${b.toString('hex')}:64>>)`;
  }),
  atom,
  fc.array(byte, { maxLength: 40 }).map((b) => `<<${bytesSrc(b)}>>`),
  fc.tuple(fc.array(byte, { maxLength: 5 }), fc.integer({ min: 1, max: 7 }), byte).map(([b, k, v]) => `<<${[...b.map(String), `${v % 2 ** k}:${k}`].join(',')}>>`),
  fc.array(byte, { minLength: 1, maxLength: 30 }).map((b) => `[${bytesSrc(b)}]`),
  fc.tuple(fc.integer({ min: 0, max: 32767 }), fc.integer({ min: 0, max: 8191 })).map(([n, s]) => `list_to_pid("<0.${n}.${s}>")`),
  fc.constant('make_ref()'),
  fc.integer({ min: 0, max: 2 ** 20 }).map((n) => `list_to_port("#Port<0.${n}>")`),
  fc.tuple(plainName, plainName, fc.integer({ min: 0, max: 255 })).map(([m, f, a]) => `fun '${m}':'${f}'/${a}`),
  fc.constant('[]'),
);

const { term } = fc.letrec<{ term: string; compound: string }>((tie) => ({
  term: fc.oneof({ depthSize: 'small', maxDepth: 5 }, leaf, tie('compound')),
  compound: fc.oneof(
    fc.array(tie('term'), { maxLength: 6 }).map((es) => `{${es.join(',')}}`),
    fc.array(tie('term'), { maxLength: 6 }).map((es) => `[${es.join(',')}]`),
    // An improper list: the tail is a non-list leaf (an atom).
    fc.tuple(fc.array(tie('term'), { minLength: 1, maxLength: 4 }), atom).map(([es, t]) => `[${es.join(',')}|${t}]`),
    fc.array(fc.tuple(tie('term'), tie('term')), { maxLength: 5 }).map((kvs) => `#{${kvs.map(([k, v]) => `${k} => ${v}`).join(', ')}}`),
    // A local fun (erl_eval) with a free variable: NEW_FUN with its environment.
    tie('term').map((t) => `(fun(K) -> fun(X) -> {X, K} end end)(${t})`),
  ),
}));

// Shapes random generation rarely reaches: sizes that switch encodings.
const FIXED = [
  'list_to_tuple(lists:seq(1, 300))', // LARGE_TUPLE
  'maps:from_list([{N, N * N} || N <- lists:seq(1, 40)])', // a map over 32 keys (hash map order)
  'lists:seq(1, 70000)', // LIST (too long for STRING)
  'lists:duplicate(65535, 7)', // the longest STRING
  'binary_to_atom(binary:copy(<<252/utf8>>, 255), utf8)', // 255 characters in 510 bytes: ATOM_UTF8
  'binary_to_atom(binary:copy(<<"x">>, 255), utf8)',
  "''",
  '1 bsl 2040', // SMALL_BIG's largest
  '-(1 bsl 2048)', // LARGE_BIG
  '-2147483648',
  '2147483648',
  'binary:copy(<<"abc">>, 100000)', // compresses
  'lists:foldl(fun(_, A) -> [A] end, [], lists:seq(1, 200))', // deep nesting, still materialised
  '{[], {}, #{}, <<>>, [[]], [{}]}',
];

let cases: { src: string; enc: ErlEncoded }[] = [];
const seed = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);

beforeAll(() => {
  const random = fc.sample(term, { numRuns: 400, seed });
  const srcs = [...random, ...FIXED];
  const encs = erlEncode(srcs);
  cases = srcs.map((src, i) => ({ src, enc: encs[i]! }));
}, 180_000);

describe(`ETF decoder against erl's term_to_binary (fast-check seed ${seed})`, () => {
  it('decodes every term as erl wrote it, in every encoding, and validates it', () => {
    expect(cases.length).toBe(400 + FIXED.length);
    for (const { src, enc } of cases) {
      for (const [form, buf] of [['plain', enc.ext], ['minor_version 0', enc.minor0], ['compressed', enc.compressed]] as const) {
        const r = decodeExternal(buf);
        if (!r.ok) throw new Error(`${form} ${src}: ${r.error.code} ${r.error.reason}`);
        expect(canon(r.term), `${form} ${src}`).toBe(enc.canon);
      }
      expect(validateExternal(enc.ext), src).toEqual({ ok: true });
      expect(validateExternal(enc.minor0), src).toEqual({ ok: true });
    }
  });

  it('the old tags appear: minor_version 0 writes ATOM_EXT and FLOAT_EXT', () => {
    const all = Buffer.concat(cases.map((c) => c.enc.minor0));
    expect(all.includes(Buffer.from([100]))).toBe(true);
    const float = cases.find((c) => c.src.includes('64/float'));
    expect(float?.enc.minor0.includes(99)).toBe(true);
    expect(cases.some((c) => c.enc.compressed[1] === 80)).toBe(true);
  });

  it('every cut of an encoding is a typed error (truncated), never a throw and never ok', () => {
    const rnd = fc.sample(fc.double({ min: 0, max: 1, noNaN: true }), { numRuns: 4000, seed });
    let k = 0;
    for (const { src, enc } of cases.slice(0, 400)) {
      const b = enc.ext;
      // Every prefix of small terms, ten random prefixes of the others.
      const cuts = b.length <= 64 ? [...Array(b.length).keys()] : Array.from({ length: 10 }, () => Math.min(b.length - 1, Math.floor(rnd[k++ % rnd.length]! * b.length)));
      for (const cut of cuts) {
        const r = decodeExternal(b.subarray(0, cut));
        expect(r.ok, `${src} cut at ${cut}`).toBe(false);
        if (!r.ok && cut > 1) expect(r.error.code, `${src} cut at ${cut}: ${r.error.reason}`).toBe('truncated');
        expect(validateExternal(b.subarray(0, cut)).ok).toBe(false);
      }
    }
  });

  it('a corrupted byte gives a term or a typed error, never a throw', () => {
    const picks = fc.sample(fc.tuple(fc.nat(), fc.nat(255)), { numRuns: 3000, seed });
    for (const [i, [at, v]] of picks.entries()) {
      const { enc } = cases[i % 400]!;
      const b = Buffer.from(enc.ext);
      b[1 + (at % (b.length - 1))] = v;
      const r = decodeExternal(b);
      if (!r.ok) expect(r.error.reason.length).toBeGreaterThan(0);
      const v2 = validateExternal(b);
      expect(v2.ok).toBe(r.ok);
    }
  });

  it('bounded materialisation keeps a prefix and validates the rest', () => {
    const big = cases.find((c) => c.src.startsWith('list_to_tuple'))!;
    const r = decodeExternal(big.enc.ext, { depth: 2, elements: 3, bytes: 8 });
    expect(r.ok).toBe(true);
    if (r.ok && typeof r.term === 'object' && r.term.type === 'tuple') {
      expect(r.term.arity).toBe(300);
      expect(r.term.elements).toEqual([1, 2, 3]);
    } else throw new Error('not a tuple');
    const deep = cases.find((c) => c.src.startsWith('lists:foldl'))!;
    const d = decodeExternal(deep.enc.ext, { depth: 3, elements: 8, bytes: 8 });
    expect(d.ok && canon(d.term)).toBe('[[[[...]]]]');
    // Deeper than DIST_MAX_MATERIALISED_DEPTH: kept to that depth, validated below.
    const n = DIST_MAX_MATERIALISED_DEPTH * 8;
    const b = Buffer.concat([Buffer.from([131]), Buffer.alloc(n * 2, Buffer.from([104, 1])), Buffer.from([106])]);
    const e = decodeExternal(b);
    expect(e.ok && canon(e.term)).toBe('{'.repeat(DIST_MAX_MATERIALISED_DEPTH) + '...' + '}'.repeat(DIST_MAX_MATERIALISED_DEPTH));
  });

  it('nesting over the bound is too_deep, validated with no call stack', () => {
    const n = DIST_MAX_TERM_DEPTH + 1;
    // [[[...]]] n deep: LIST(1) repeated, then NIL, then n NIL tails.
    const parts: Buffer[] = [Buffer.from([131])];
    for (let i = 0; i < n; i++) parts.push(Buffer.from([108, 0, 0, 0, 1]));
    parts.push(Buffer.alloc(n + 1, 106));
    const b = Buffer.concat(parts);
    const v = validateExternal(b);
    expect(v.ok === false && v.error.code).toBe('too_deep');
    const d = decodeExternal(b);
    expect(d.ok === false && d.error.code).toBe('too_deep');
    // One level less is fine.
    const ok = Buffer.concat([Buffer.from([131]), Buffer.concat(parts.slice(1, n)), Buffer.alloc(n, 106)]);
    expect(validateExternal(ok)).toEqual({ ok: true });
  });

  it('lying lengths fail at once instead of allocating or looping', () => {
    for (const b of [
      [131, 105, 0xff, 0xff, 0xff, 0xff], // a tuple of 4 G elements
      [131, 108, 0xff, 0xff, 0xff, 0xff, 106], // a list of 4 G elements
      [131, 116, 0x7f, 0xff, 0xff, 0xff], // a map of 2 G pairs
      [131, 109, 0xff, 0xff, 0xff, 0xff, 1], // a binary of 4 GB
      [131, 111, 0xff, 0xff, 0xff, 0xff, 0], // a bignum of 4 GB
    ]) {
      const r = decodeExternal(Buffer.from(b));
      expect(r.ok === false && r.error.code, String(b)).toBe('truncated');
    }
  });

  it('rejects values OTP never writes', () => {
    const bad = (b: number[], code: string) => {
      const r = decodeExternal(Buffer.from(b));
      expect(r.ok === false && r.error.code, String(b)).toBe(code);
    };
    bad([131, 200], 'bad_tag');
    bad([131, 70, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0], 'bad_value'); // infinity
    bad([131, 77, 0, 0, 0, 1, 0, 0], 'bad_value'); // 0 bits in the last byte
    bad([131, 110, 1, 2, 5], 'bad_value'); // sign 2
    bad([131, 119, 2, 0xc3, 0x28], 'bad_value'); // invalid UTF-8
    bad([131, 82, 0], 'bad_cache_ref'); // a cache reference outside a distribution header
    bad([131, 97, 1, 97, 2], 'trailing_bytes');
    bad([131, 88, 97, 1], 'bad_tag'); // a pid whose node is not an atom
  });

  it('counts terms against the reader bound', () => {
    const enc = cases.find((c) => c.src === 'lists:seq(1, 70000)')!.enc.ext;
    const r = new TermReader(enc, 1, enc.length, undefined, 1000);
    expect(() => r.skip()).toThrow(/more than 1000 terms/);
    const full = new TermReader(enc, 1);
    full.read(FULL);
    // 70,000 elements, the NIL tail and the list itself.
    expect(full.terms).toBe(70002);
  });
});

// The same generated terms encoded by OTP 27 and 29 (their Debian roots, when this machine has them).
for (const otp of ['27', '29']) {
  const runtime = findRuntime(otp);
  describe.skipIf(typeof runtime === 'string')(`ETF decoder against OTP ${otp}'s term_to_binary (seed ${seed})`, () => {
    let other: { src: string; enc: ErlEncoded }[] = [];
    beforeAll(() => {
      const srcs = [...fc.sample(term, { numRuns: 200, seed: seed + Number(otp) }), ...FIXED];
      const encs = erlEncode(srcs, runtime as OtpRuntime);
      other = srcs.map((src, i) => ({ src, enc: encs[i]! }));
    }, 180_000);

    it('decodes every term as that release wrote it, in every encoding', () => {
      expect(other.length).toBe(200 + FIXED.length);
      for (const { src, enc } of other) {
        for (const [form, buf] of [['plain', enc.ext], ['minor_version 0', enc.minor0], ['compressed', enc.compressed]] as const) {
          const r = decodeExternal(buf);
          if (!r.ok) throw new Error(`OTP ${otp} ${form} ${src}: ${r.error.code} ${r.error.reason}`);
          expect(canon(r.term), `OTP ${otp} ${form} ${src}`).toBe(enc.canon);
        }
        expect(validateExternal(enc.ext), src).toEqual({ ok: true });
      }
    });
  });
}
