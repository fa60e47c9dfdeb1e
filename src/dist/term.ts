// External Term Format (ERTS User's Guide, "External Term Format"; OTP's
// external.c) as OTP 23-29 emit it: a bounded reader that either
// materialises a term (up to a depth, a number of elements and a number of
// bytes per binary, beyond which sub-terms are validated and replaced by an
// `elided` marker) or only validates it, walking it with an explicit stack so
// that neither depth nor size can overflow the call stack or hang. Every bound
// is a named constant in src/config/limits.ts. Bad input fails with a
// DecodeFailure (see errors.ts); the exported functions return it as a value.

import { inflateSync } from 'node:zlib';
import { DIST_MAX_INFLATED_BYTES, DIST_MAX_MATERIALISED_DEPTH, DIST_MAX_MESSAGE_BYTES, DIST_MAX_TERM_DEPTH, DIST_MAX_TERMS } from '../config/limits.js';
import { type DecodeError, fail, guard } from './errors.js';

// Tags (external.h). Only these are accepted; anything else is `bad_tag`.
export const TAG = {
  VERSION: 131,
  NEW_FLOAT: 70,
  BIT_BINARY: 77,
  COMPRESSED: 80,
  ATOM_CACHE_REF: 82,
  NEW_PID: 88,
  NEW_PORT: 89,
  NEWER_REFERENCE: 90,
  SMALL_INTEGER: 97,
  INTEGER: 98,
  FLOAT: 99,
  ATOM: 100,
  REFERENCE: 101,
  PORT: 102,
  PID: 103,
  SMALL_TUPLE: 104,
  LARGE_TUPLE: 105,
  NIL: 106,
  STRING: 107,
  LIST: 108,
  BINARY: 109,
  SMALL_BIG: 110,
  LARGE_BIG: 111,
  NEW_FUN: 112,
  EXPORT: 113,
  NEW_REFERENCE: 114,
  SMALL_ATOM: 115,
  MAP: 116,
  ATOM_UTF8: 118,
  SMALL_ATOM_UTF8: 119,
  V4_PORT: 120,
} as const;

export interface Atom {
  type: 'atom';
  name: string;
}
export interface Float {
  type: 'float';
  value: number;
}
export interface Nil {
  type: 'nil';
}
/** A tuple; `elements` may hold fewer than `arity` when materialisation was bounded. */
export interface Tuple {
  type: 'tuple';
  arity: number;
  elements: Term[];
}
/**
 * A list (LIST_EXT): `length` elements before `tail` (NIL for a proper list).
 * `elements` may hold fewer than `length` when materialisation was bounded.
 */
export interface List {
  type: 'list';
  length: number;
  elements: Term[];
  tail: Term;
}
/** STRING_EXT: a proper list of bytes, kept as the bytes (a prefix when bounded). */
export interface ErlString {
  type: 'string';
  length: number;
  bytes: Buffer;
}
export interface ErlMap {
  type: 'map';
  size: number;
  entries: [Term, Term][];
}
/** A binary; `bytes` is a view into the frame (no copy), a prefix of `size` bytes when bounded. */
export interface Binary {
  type: 'binary';
  size: number;
  bytes: Buffer;
}
/** A bitstring: `bits` (1..8) of the last byte are used. */
export interface BitBinary {
  type: 'bitstring';
  size: number;
  bits: number;
  bytes: Buffer;
}
export interface Pid {
  type: 'pid';
  node: string;
  id: number;
  serial: number;
  creation: number;
}
export interface Port {
  type: 'port';
  node: string;
  id: bigint;
  creation: number;
}
export interface Ref {
  type: 'ref';
  node: string;
  creation: number;
  /** ID words as on the wire (the first is the least significant; ref_to_list prints them reversed). */
  ids: number[];
}
export interface Fun {
  type: 'fun';
  module: string;
  arity: number;
  uniq: string;
  index: number;
  oldIndex: number;
  oldUniq: number;
  pid: Pid;
  numFree: number;
  free: Term[];
}
export interface Export {
  type: 'export';
  module: string;
  function: string;
  arity: number;
}
/** A sub-term past a materialisation bound: it was validated, not kept. */
export interface Elided {
  type: 'elided';
  /** Its tag byte, and the bytes it took. */
  tag: number;
  bytes: number;
}

/** Integers are numbers when the wire form was SMALL_INTEGER/INTEGER, bigints for SMALL_BIG/LARGE_BIG. */
export type Term = number | bigint | Atom | Float | Nil | Tuple | List | ErlString | ErlMap | Binary | BitBinary | Pid | Port | Ref | Fun | Export | Elided;

export const NIL: Nil = Object.freeze({ type: 'nil' }) as Nil;

/** How much of a term to keep; past these, sub-terms are validated and elided. */
export interface Bounds {
  depth: number;
  elements: number;
  bytes: number;
}

/** Keep everything (but see DIST_MAX_MATERIALISED_DEPTH; still within DIST_MAX_TERM_DEPTH and the other hard bounds). */
export const FULL: Readonly<Bounds> = Object.freeze({ depth: DIST_MAX_TERM_DEPTH, elements: Infinity, bytes: Infinity });


const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * An atom's UTF-8 text, or undefined when it is not valid UTF-8 or has more
 * than 255 characters (OTP's limit counts code points, not bytes). Most atoms
 * are ASCII, which skips the TextDecoder (about ten times slower on short
 * strings).
 */
export function atomFromUtf8(buf: Buffer, start = 0, end = buf.length): string | undefined {
  const len = end - start;
  // Short ASCII atoms are built in JS: a Buffer view or toString costs a
  // native call each, which dominates a header full of new cache entries.
  if (len <= 64) {
    let s = '';
    let i = start;
    for (; i < end; i++) {
      const c = buf[i]!;
      if (c >= 0x80) break;
      s += String.fromCharCode(c);
    }
    if (i === end) return s;
  } else {
    let ascii = true;
    for (let i = start; i < end; i++) {
      if (buf[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return len <= 255 ? buf.toString('latin1', start, end) : undefined;
  }
  let s: string;
  try {
    s = utf8.decode(buf.subarray(start, end));
  } catch {
    return undefined;
  }
  return len <= 255 || [...s].length <= 255 ? s : undefined;
}

function isAtomTag(tag: number): boolean {
  return tag === TAG.ATOM_UTF8 || tag === TAG.SMALL_ATOM_UTF8 || tag === TAG.ATOM_CACHE_REF || tag === TAG.ATOM || tag === TAG.SMALL_ATOM;
}

/**
 * Reads terms from `buf[pos..end)`. `atoms` resolves ATOM_CACHE_REF indexes
 * (the per-message table a distribution header builds); without it such a
 * reference is an error. One reader counts terms across every term it reads,
 * so a message's control and payload share DIST_MAX_TERMS.
 */
export class TermReader {
  pos: number;
  terms = 0;

  constructor(
    readonly buf: Buffer,
    pos = 0,
    readonly end = buf.length,
    private readonly atoms?: readonly string[],
    private readonly maxTerms = DIST_MAX_TERMS,
    private readonly maxDepth = DIST_MAX_TERM_DEPTH,
  ) {
    this.pos = pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number, what: string): void {
    if (this.end - this.pos < n) fail('truncated', `${what} needs ${n} bytes at offset ${this.pos}, ${this.end - this.pos} left`);
  }

  u8(what = 'byte'): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  bytes(n: number, what: string): Buffer {
    this.need(n, what);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  private count(): void {
    if (++this.terms > this.maxTerms) fail('too_many_terms', `more than ${this.maxTerms} terms in one message`);
  }

  /** A declared element count must fit the bytes left (every term takes at least one byte): no huge allocation or loop from a lying length. */
  private plausible(n: number, what: string): void {
    if (n > this.end - this.pos) fail('truncated', `${what} declares ${n} elements but only ${this.end - this.pos} bytes are left`);
  }

  private atomText(tag: number): string {
    switch (tag) {
      case TAG.ATOM_UTF8:
      case TAG.SMALL_ATOM_UTF8: {
        const len = tag === TAG.ATOM_UTF8 ? this.u16('atom length') : this.u8('atom length');
        this.need(len, 'atom text');
        const s = atomFromUtf8(this.buf, this.pos, this.pos + len);
        this.pos += len;
        if (s === undefined) fail('bad_value', `atom at offset ${this.pos - len} is not valid UTF-8 or has more than 255 characters`);
        return s;
      }
      case TAG.ATOM:
      case TAG.SMALL_ATOM: {
        const len = tag === TAG.ATOM ? this.u16('atom length') : this.u8('atom length');
        if (len > 255) fail('bad_value', `latin-1 atom of ${len} characters (at most 255)`);
        return this.bytes(len, 'atom text').toString('latin1');
      }
      case TAG.ATOM_CACHE_REF: {
        const ix = this.u8('atom cache reference');
        const a = this.atoms?.[ix];
        if (a === undefined) {
          fail('bad_cache_ref', this.atoms ? `atom cache reference ${ix} past the ${this.atoms.length} references of the header` : `atom cache reference ${ix} outside a distribution header`);
        }
        return a;
      }
      default:
        return fail('bad_tag', `expected an atom, got tag ${tag} at offset ${this.pos - 1}`);
    }
  }

  /** Reads one atom term (any atom encoding), counting it. */
  atom(what: string): string {
    const tag = this.u8(what);
    if (!isAtomTag(tag)) fail('bad_tag', `${what}: expected an atom, got tag ${tag} at offset ${this.pos - 1}`);
    this.count();
    return this.atomText(tag);
  }

  private pidBody(tag: number): Pid {
    const node = this.atom('pid node');
    const id = this.u32('pid id');
    const serial = this.u32('pid serial');
    const creation = tag === TAG.NEW_PID ? this.u32('pid creation') : this.u8('pid creation');
    return { type: 'pid', node, id, serial, creation };
  }

  private pid(what: string): Pid {
    const tag = this.u8(what);
    if (tag !== TAG.NEW_PID && tag !== TAG.PID) fail('bad_tag', `${what}: expected a pid, got tag ${tag}`);
    this.count();
    return this.pidBody(tag);
  }

  private smallOrInt(what: string): number {
    const tag = this.u8(what);
    this.count();
    if (tag === TAG.SMALL_INTEGER) return this.u8(what);
    if (tag === TAG.INTEGER) {
      this.need(4, what);
      const v = this.buf.readInt32BE(this.pos);
      this.pos += 4;
      return v;
    }
    return fail('bad_tag', `${what}: expected an integer, got tag ${tag}`);
  }

  private bigDigits(n: number, sign: number, keep: boolean): bigint | null {
    if (sign > 1) fail('bad_value', `big integer sign byte ${sign} (0 or 1)`);
    const digits = this.bytes(n, 'big integer digits');
    if (!keep) return null;
    let hex = '';
    for (let i = n - 1; i >= 0; i--) hex += digits[i]!.toString(16).padStart(2, '0');
    const v = n === 0 ? 0n : BigInt('0x' + hex);
    return sign ? -v : v;
  }

  private float(): number {
    this.need(8, 'float');
    const v = this.buf.readDoubleBE(this.pos);
    this.pos += 8;
    if (!Number.isFinite(v)) fail('bad_value', `float at offset ${this.pos - 8} is not finite (OTP has no NaN or infinity)`);
    return v;
  }

  private oldFloat(): number {
    const raw = this.bytes(31, 'float (FLOAT_EXT)').toString('latin1');
    const text = raw.replace(/\0.*$/s, '');
    const v = Number(text.trim());
    if (!/^\s*[-+]?\d+(\.\d*)?(e[-+]?\d+)?\s*$/i.test(text) || !Number.isFinite(v)) fail('bad_value', `FLOAT_EXT text ${JSON.stringify(text)} is not a float`);
    return v;
  }

  private bitBits(): number {
    const bits = this.u8('bitstring bit count');
    if (bits < 1 || bits > 8) fail('bad_value', `bitstring with ${bits} bits in its last byte (1 to 8)`);
    return bits;
  }

  private refBody(tag: number): Ref {
    if (tag === TAG.REFERENCE) {
      const node = this.atom('reference node');
      const id = this.u32('reference id');
      return { type: 'ref', node, creation: this.u8('reference creation'), ids: [id] };
    }
    const len = this.u16('reference length');
    // OTP's references have 1 to 5 words (3 normally, 4-5 for some OTP 24+ kinds).
    if (len < 1 || len > 5) fail('bad_value', `reference of ${len} words (1 to 5)`);
    const node = this.atom('reference node');
    const creation = tag === TAG.NEWER_REFERENCE ? this.u32('reference creation') : this.u8('reference creation');
    this.need(4 * len, 'reference words');
    const ids: number[] = [];
    for (let i = 0; i < len; i++) ids.push(this.u32('reference word'));
    return { type: 'ref', node, creation, ids };
  }

  private portBody(tag: number): Port {
    const node = this.atom('port node');
    let id: bigint;
    if (tag === TAG.V4_PORT) {
      this.need(8, 'port id');
      id = this.buf.readBigUInt64BE(this.pos);
      this.pos += 8;
    } else {
      id = BigInt(this.u32('port id'));
    }
    const creation = tag === TAG.PORT ? this.u8('port creation') : this.u32('port creation');
    return { type: 'port', node, id, creation };
  }

  /** The fixed fields of NEW_FUN, up to its free variables; checks Size against where the fun ends. */
  private funHead(): { start: number; size: number; f: Omit<Fun, 'free'> } {
    const start = this.pos;
    const size = this.u32('fun size');
    const arity = this.u8('fun arity');
    const uniq = this.bytes(16, 'fun uniq').toString('hex');
    const index = this.u32('fun index');
    const numFree = this.u32('fun free variable count');
    this.plausible(numFree, 'fun');
    const module = this.atom('fun module');
    const oldIndex = this.smallOrInt('fun old index');
    const oldUniq = this.smallOrInt('fun old uniq');
    const pid = this.pid('fun pid');
    return { start, size, f: { type: 'fun', module, arity, uniq, index, oldIndex, oldUniq, pid, numFree } };
  }

  private funEnd(start: number, size: number): void {
    // Size counts itself and everything after it (the tag byte excluded).
    if (this.pos - start !== size) fail('bad_value', `fun declares ${size} bytes but took ${this.pos - start}`);
  }

  /**
   * Validates one term without keeping it, iteratively: `pending` is what is
   * left to read at the current level, the stack holds the outer levels'.
   * `depth` is the nesting the term starts at. Funs are the one compound whose
   * end must be checked after its children, so they push a marker.
   */
  skip(depth = 0): void {
    const stack: number[] = [];
    // Funs whose Size must be checked when their free variables end: [stack height, start, size].
    let funs: number[] | null = null;
    let pending = 1;
    for (;;) {
      if (pending === 0) {
        if (funs && funs.length > 0 && funs[funs.length - 3] === stack.length) {
          const size = funs.pop()!;
          const start = funs.pop()!;
          funs.pop();
          this.funEnd(start, size);
        }
        if (stack.length === 0) return;
        pending = stack.pop()!;
        continue;
      }
      pending--;
      this.count();
      const at = this.pos;
      const tag = this.u8('term tag');
      let open = 0;
      switch (tag) {
        case TAG.SMALL_INTEGER:
          this.bytes(1, 'small integer');
          break;
        case TAG.INTEGER:
          this.bytes(4, 'integer');
          break;
        case TAG.SMALL_BIG: {
          const n = this.u8('big length');
          this.bigDigits(n, this.u8('big sign'), false);
          break;
        }
        case TAG.LARGE_BIG: {
          const n = this.u32('big length');
          this.bigDigits(n, this.u8('big sign'), false);
          break;
        }
        case TAG.NEW_FLOAT:
          this.float();
          break;
        case TAG.FLOAT:
          this.oldFloat();
          break;
        case TAG.ATOM_UTF8:
        case TAG.SMALL_ATOM_UTF8:
        case TAG.ATOM:
        case TAG.SMALL_ATOM:
        case TAG.ATOM_CACHE_REF:
          this.atomText(tag);
          break;
        case TAG.NEW_PID:
        case TAG.PID:
          this.pidBody(tag);
          break;
        case TAG.NEW_PORT:
        case TAG.V4_PORT:
        case TAG.PORT:
          this.portBody(tag);
          break;
        case TAG.NEWER_REFERENCE:
        case TAG.NEW_REFERENCE:
        case TAG.REFERENCE:
          this.refBody(tag);
          break;
        case TAG.SMALL_TUPLE:
          open = this.u8('tuple arity');
          break;
        case TAG.LARGE_TUPLE:
          open = this.u32('tuple arity');
          break;
        case TAG.MAP: {
          const n = this.u32('map size');
          this.plausible(n, 'map');
          open = n * 2;
          break;
        }
        case TAG.NIL:
          break;
        case TAG.STRING:
          this.bytes(this.u16('string length'), 'string');
          break;
        case TAG.LIST:
          // The elements, then the tail.
          open = this.u32('list length') + 1;
          break;
        case TAG.BINARY:
          this.bytes(this.u32('binary length'), 'binary');
          break;
        case TAG.BIT_BINARY: {
          const n = this.u32('bitstring length');
          this.bitBits();
          this.bytes(n, 'bitstring');
          break;
        }
        case TAG.EXPORT:
          this.atom('export module');
          this.atom('export function');
          if (this.u8('export arity tag') !== TAG.SMALL_INTEGER) fail('bad_tag', 'export arity is not a small integer');
          this.count();
          this.u8('export arity');
          break;
        case TAG.NEW_FUN: {
          const { start, size, f } = this.funHead();
          if (f.numFree === 0) {
            this.funEnd(start, size);
          } else {
            (funs ??= []).push(stack.length + 1, start, size);
            open = f.numFree;
          }
          break;
        }
        default:
          fail('bad_tag', `unknown term tag ${tag} at offset ${at}`);
      }
      if (open > 0) {
        this.plausible(open, 'compound term');
        if (depth + stack.length + 1 > this.maxDepth) fail('too_deep', `terms nested more than ${this.maxDepth} deep`);
        stack.push(pending);
        pending = open;
      }
    }
  }

  /**
   * Reads one term, keeping it within `bounds` (relative to `depth`): deeper
   * sub-terms, elements past `bounds.elements` and binaries over
   * `bounds.bytes` are validated and elided.
   */
  read(bounds: Readonly<Bounds>, depth = 0): Term {
    if (depth > bounds.depth || depth >= DIST_MAX_MATERIALISED_DEPTH) return this.elide(depth);
    if (depth > this.maxDepth) fail('too_deep', `terms nested more than ${this.maxDepth} deep`);
    const at = this.pos;
    const tag = this.u8('term tag');
    const big = (n: number) => n > bounds.bytes;
    switch (tag) {
      case TAG.SMALL_INTEGER:
        this.count();
        return this.u8('small integer');
      case TAG.INTEGER:
        this.pos = at;
        return this.smallOrInt('integer');
      case TAG.SMALL_BIG:
      case TAG.LARGE_BIG: {
        const n = tag === TAG.SMALL_BIG ? this.u8('big length') : this.u32('big length');
        if (big(n)) return this.elideFrom(at, depth);
        this.count();
        return this.bigDigits(n, this.u8('big sign'), true)!;
      }
      case TAG.NEW_FLOAT:
        this.count();
        return { type: 'float', value: this.float() };
      case TAG.FLOAT:
        this.count();
        return { type: 'float', value: this.oldFloat() };
      case TAG.ATOM_UTF8:
      case TAG.SMALL_ATOM_UTF8:
      case TAG.ATOM:
      case TAG.SMALL_ATOM:
      case TAG.ATOM_CACHE_REF:
        this.count();
        return { type: 'atom', name: this.atomText(tag) };
      case TAG.NEW_PID:
      case TAG.PID:
        this.count();
        return this.pidBody(tag);
      case TAG.NEW_PORT:
      case TAG.V4_PORT:
      case TAG.PORT:
        this.count();
        return this.portBody(tag);
      case TAG.NEWER_REFERENCE:
      case TAG.NEW_REFERENCE:
      case TAG.REFERENCE:
        this.count();
        return this.refBody(tag);
      case TAG.NIL:
        this.count();
        return NIL;
      case TAG.SMALL_TUPLE:
      case TAG.LARGE_TUPLE: {
        this.count();
        const arity = tag === TAG.SMALL_TUPLE ? this.u8('tuple arity') : this.u32('tuple arity');
        this.plausible(arity, 'tuple');
        const elements = this.readElements(arity, bounds, depth);
        return { type: 'tuple', arity, elements };
      }
      case TAG.LIST: {
        this.count();
        const length = this.u32('list length');
        this.plausible(length + 1, 'list');
        const elements = this.readElements(length, bounds, depth);
        // The tail is read even when elements were left out: it says whether the list is proper.
        const tail = this.read(bounds, depth + 1);
        return { type: 'list', length, elements, tail };
      }
      case TAG.STRING: {
        this.count();
        const length = this.u16('string length');
        const bytes = this.bytes(length, 'string');
        return { type: 'string', length, bytes: big(length) ? bytes.subarray(0, bounds.bytes) : bytes };
      }
      case TAG.MAP: {
        this.count();
        const size = this.u32('map size');
        this.plausible(size * 2, 'map');
        const entries: [Term, Term][] = [];
        const keep = Math.min(size, bounds.elements);
        for (let i = 0; i < keep; i++) {
          const k = this.read(bounds, depth + 1);
          entries.push([k, this.read(bounds, depth + 1)]);
        }
        for (let i = keep; i < size; i++) {
          this.skip(depth + 1);
          this.skip(depth + 1);
        }
        return { type: 'map', size, entries };
      }
      case TAG.BINARY: {
        this.count();
        const size = this.u32('binary length');
        const bytes = this.bytes(size, 'binary');
        return { type: 'binary', size, bytes: big(size) ? bytes.subarray(0, bounds.bytes) : bytes };
      }
      case TAG.BIT_BINARY: {
        this.count();
        const size = this.u32('bitstring length');
        const bits = this.bitBits();
        const bytes = this.bytes(size, 'bitstring');
        return { type: 'bitstring', size, bits, bytes: big(size) ? bytes.subarray(0, bounds.bytes) : bytes };
      }
      case TAG.EXPORT: {
        this.count();
        const module = this.atom('export module');
        const fn = this.atom('export function');
        if (this.u8('export arity tag') !== TAG.SMALL_INTEGER) fail('bad_tag', 'export arity is not a small integer');
        this.count();
        return { type: 'export', module, function: fn, arity: this.u8('export arity') };
      }
      case TAG.NEW_FUN: {
        this.count();
        const { start, size, f } = this.funHead();
        const free = this.readElements(f.numFree, bounds, depth);
        this.funEnd(start, size);
        return { ...f, free };
      }
      default:
        return fail('bad_tag', `unknown term tag ${tag} at offset ${at}`);
    }
  }

  /** Reads `n` elements, keeping at most `bounds.elements` and validating the rest. */
  private readElements(n: number, bounds: Readonly<Bounds>, depth: number): Term[] {
    if (n > 0 && depth + 1 > this.maxDepth) fail('too_deep', `terms nested more than ${this.maxDepth} deep`);
    const keep = Math.min(n, bounds.elements);
    const out: Term[] = [];
    for (let i = 0; i < keep; i++) out.push(this.read(bounds, depth + 1));
    for (let i = keep; i < n; i++) this.skip(depth + 1);
    return out;
  }

  private elide(depth: number): Elided | Nil {
    const at = this.pos;
    // NIL costs nothing to keep, and a list's NIL tail says it is proper.
    if (this.buf[at] === TAG.NIL && at < this.end) {
      this.pos++;
      this.count();
      return NIL;
    }
    const tag = this.buf[at];
    this.skip(depth);
    return { type: 'elided', tag: tag ?? 0, bytes: this.pos - at };
  }

  private elideFrom(at: number, depth: number): Elided | Nil {
    this.pos = at;
    return this.elide(depth);
  }
}

export type TermResult = { ok: true; term: Term } | { ok: false; error: DecodeError };

/**
 * Decodes a whole `term_to_binary` result (131, then a term, or 131, 80 and a
 * zlib-compressed term inflated up to DIST_MAX_INFLATED_BYTES). Nothing may
 * follow the term. `bounds` as for TermReader.read (FULL keeps everything).
 */
export function decodeExternal(buf: Buffer, bounds: Readonly<Bounds> = FULL): TermResult {
  const r = guard(() => {
    if (buf.length > DIST_MAX_MESSAGE_BYTES) fail('too_large', `${buf.length} bytes exceed ${DIST_MAX_MESSAGE_BYTES}`);
    if (buf.length < 1 || buf[0] !== TAG.VERSION) fail('bad_header', `a term starts with 131, not ${buf[0] ?? 'nothing'}`);
    let body = buf;
    let start = 1;
    if (buf[1] === TAG.COMPRESSED) {
      if (buf.length < 6) fail('truncated', 'compressed term without its size');
      const size = buf.readUInt32BE(2);
      if (size > DIST_MAX_INFLATED_BYTES) fail('too_large', `compressed term inflates to ${size} bytes, over ${DIST_MAX_INFLATED_BYTES}`);
      try {
        body = inflateSync(buf.subarray(6), { maxOutputLength: Math.max(size, 1) });
      } catch (e) {
        fail('bad_value', `compressed term does not inflate: ${(e as Error).message}`);
      }
      if (body.length !== size) fail('bad_value', `compressed term inflated to ${body.length} bytes, not the ${size} it declares`);
      start = 0;
    }
    const reader = new TermReader(body, start);
    const term = reader.read(bounds);
    if (reader.pos !== body.length) fail('trailing_bytes', `${body.length - reader.pos} bytes after the term`);
    return term;
  });
  return r.ok ? { ok: true, term: r.value } : r;
}

/** Validates a whole `term_to_binary` result without keeping it (no compressed terms). */
export function validateExternal(buf: Buffer): { ok: true } | { ok: false; error: DecodeError } {
  const r = guard(() => {
    if (buf.length < 1 || buf[0] !== TAG.VERSION) fail('bad_header', `a term starts with 131, not ${buf[0] ?? 'nothing'}`);
    const reader = new TermReader(buf, 1);
    reader.skip();
    if (reader.pos !== buf.length) fail('trailing_bytes', `${buf.length - reader.pos} bytes after the term`);
  });
  return r.ok ? { ok: true } : r;
}

/** The atom's name when `t` is an atom. */
export function atomName(t: Term | undefined): string | undefined {
  return typeof t === 'object' && t.type === 'atom' ? t.name : undefined;
}

/** The element count of a proper list (LIST with a NIL tail, STRING, or NIL), else undefined. */
export function properLength(t: Term | undefined): number | undefined {
  if (typeof t !== 'object') return undefined;
  if (t.type === 'nil') return 0;
  if (t.type === 'string') return t.length;
  if (t.type === 'list' && typeof t.tail === 'object' && t.tail.type === 'nil') return t.length;
  return undefined;
}
