// The header of one distribution frame (ERTS User's Guide, "External Term
// Format", Distribution Header; dist.c): the normal header (131, 68) with its
// atom cache references, the first fragment's header (131, 69, sequence id,
// fragment id, then the same references), a continuation's (131, 70, sequence
// id, fragment id) and the pass-through header (112, no atom cache: each term
// that follows starts with its own 131). A header's new cache entries are
// written into the direction's AtomCache as it is parsed, as the receiving VM
// does; the result is the message's own reference table (reference index to
// atom), which ATOM_CACHE_REF terms in the control message and payload use.

import { DIST_ATOM_CACHE_SLOTS } from '../config/limits.js';
import type { AtomCache } from './atom-cache.js';
import { fail } from './errors.js';
import { atomFromUtf8 } from './term.js';

export const PASS_THROUGH = 112;
export const VERSION_MAGIC = 131;
export const DIST_HEADER = 68;
export const DIST_FRAG_HEADER = 69;
export const DIST_FRAG_CONT = 70;

export type FrameHeader =
  /** Terms start at `body` without their 131. */
  | { kind: 'normal'; atoms: string[]; body: number }
  /** Terms start at `body`, each with its 131. */
  | { kind: 'pass-through'; body: number }
  | { kind: 'first-fragment'; sequence: bigint; fragment: bigint; atoms: string[]; body: number }
  | { kind: 'continuation'; sequence: bigint; fragment: bigint; body: number };

function need(buf: Buffer, at: number, n: number, what: string): void {
  if (buf.length - at < n) fail('bad_header', `${what} truncated: needs ${n} bytes at offset ${at}, ${buf.length - at} left`);
}

/**
 * Parses the atom cache part of a normal or first-fragment header starting at
 * `at` (NumberOfAtomCacheRefs). Updates `cache`; returns the reference table
 * and where the terms begin.
 */
function atomCacheRefs(buf: Buffer, at: number, cache: AtomCache): { atoms: string[]; body: number } {
  need(buf, at, 1, 'NumberOfAtomCacheRefs');
  const n = buf[at++]!;
  if (n === 0) return { atoms: [], body: at }; // Flags and AtomCacheRefs are omitted
  const flagBytes = (n >> 1) + 1;
  need(buf, at, flagBytes, 'atom cache flags');
  const flags = at;
  at += flagBytes;
  // Reference i's half byte: the low half of byte i/2 for even i, the high half for odd i.
  const nibble = (i: number) => (i & 1 ? buf[flags + (i >> 1)]! >> 4 : buf[flags + (i >> 1)]!) & 0x0f;
  // The half byte after the n references' half bytes: bit 0 is LongAtoms (2-byte lengths).
  const longAtoms = (nibble(n) & 0x01) !== 0;
  const atoms: string[] = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const f = nibble(i);
    const isNew = (f & 0x08) !== 0;
    const segment = f & 0x07;
    need(buf, at, 1, 'atom cache reference');
    const slot = segment * 256 + buf[at++]!;
    if (slot >= DIST_ATOM_CACHE_SLOTS) fail('bad_header', `atom cache slot ${slot} out of range`);
    if (isNew) {
      const lenBytes = longAtoms ? 2 : 1;
      need(buf, at, lenBytes, 'atom cache entry length');
      const len = longAtoms ? buf.readUInt16BE(at) : buf[at]!;
      at += lenBytes;
      need(buf, at, len, 'atom cache entry text');
      const text = atomFromUtf8(buf, at, at + len);
      if (text === undefined) fail('bad_header', `atom cache entry ${i} (slot ${slot}) is not valid UTF-8 or has more than 255 characters`);
      at += len;
      cache.set(slot, text);
      atoms[i] = text;
    } else {
      atoms[i] = cache.get(slot);
    }
  }
  return { atoms, body: at };
}

/** Parses the header of a non-empty frame (the bytes after its 4-byte length). */
export function parseHeader(buf: Buffer, cache: AtomCache): FrameHeader {
  if (buf.length === 0) fail('bad_header', 'empty frame has no header (a tick is handled before)');
  if (buf[0] === PASS_THROUGH) return { kind: 'pass-through', body: 1 };
  if (buf[0] !== VERSION_MAGIC) fail('bad_header', `frame starts with ${buf[0]}, neither 131 nor 112 (pass-through)`);
  need(buf, 1, 1, 'header type');
  const type = buf[1]!;
  switch (type) {
    case DIST_HEADER:
      return { kind: 'normal', ...atomCacheRefs(buf, 2, cache) };
    case DIST_FRAG_HEADER:
    case DIST_FRAG_CONT: {
      need(buf, 2, 16, 'fragment header');
      const sequence = buf.readBigUInt64BE(2);
      const fragment = buf.readBigUInt64BE(10);
      if (fragment === 0n) fail('bad_header', `fragment id 0 in sequence ${sequence} (ids count down to 1)`);
      if (type === DIST_FRAG_CONT) return { kind: 'continuation', sequence, fragment, body: 18 };
      return { kind: 'first-fragment', sequence, fragment, ...atomCacheRefs(buf, 18, cache) };
    }
    default:
      return fail('bad_header', `unknown distribution header type ${type} after 131`);
  }
}
