// A tiny ETF writer for tests: terms as OTP writes them after a distribution
// header (no 131), atom cache reference tables, and the normal, fragment and
// continuation headers, as byte arrays.

export type Bytes = number[];
export const u16 = (n: number): Bytes => [(n >> 8) & 255, n & 255];
export const u32 = (n: number): Bytes => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
export const u64 = (n: bigint): Bytes => [...Buffer.from(n.toString(16).padStart(16, '0'), 'hex')];
export const atom = (s: string): Bytes => {
  const b = [...Buffer.from(s, 'utf8')];
  return [119, b.length, ...b];
};
export const small = (n: number): Bytes => [97, n];
export const nil: Bytes = [106];
export const tuple = (...es: Bytes[]): Bytes => [104, es.length, ...es.flat()];
export const list = (...es: Bytes[]): Bytes => [108, ...u32(es.length), ...es.flat(), ...nil];
export const pid = (id: number, node = 'a@host'): Bytes => [88, ...atom(node), ...u32(id), ...u32(0), ...u32(7)];
export const ref = (w: number, node = 'a@host'): Bytes => [90, ...u16(3), ...atom(node), ...u32(7), ...u32(w), ...u32(1), ...u32(2)];
export const cacheRef = (i: number): Bytes => [82, i];

export interface Entry {
  slot: number;
  /** Present: a new entry writing this atom; absent: a reference to the slot. */
  atom?: string;
}
/** The atom cache part of a header: NumberOfAtomCacheRefs, Flags, AtomCacheRefs. */
export function cacheRefs(entries: Entry[], longAtoms = false): Bytes {
  const n = entries.length;
  if (n === 0) return [0];
  const flags = new Array<number>((n >> 1) + 1).fill(0);
  const nib = (i: number, v: number) => (flags[i >> 1]! |= i & 1 ? v << 4 : v);
  entries.forEach((e, i) => nib(i, (e.atom !== undefined ? 8 : 0) | (e.slot >> 8)));
  nib(n, longAtoms ? 1 : 0);
  const refs = entries.flatMap((e) => {
    if (e.atom === undefined) return [e.slot & 255];
    const t = [...Buffer.from(e.atom, 'utf8')];
    return [e.slot & 255, ...(longAtoms ? u16(t.length) : [t.length]), ...t];
  });
  return [n, ...flags, ...refs];
}
export const normal = (entries: Entry[], ...terms: Bytes[]): Buffer => Buffer.from([131, 68, ...cacheRefs(entries), ...terms.flat()]);
export const plain = (...terms: Bytes[]): Buffer => normal([], ...terms);
export const first = (seq: bigint, frag: bigint, entries: Entry[], data: Bytes): Buffer => Buffer.from([131, 69, ...u64(seq), ...u64(frag), ...cacheRefs(entries), ...data]);
export const cont = (seq: bigint, frag: bigint, data: Bytes): Buffer => Buffer.from([131, 70, ...u64(seq), ...u64(frag), ...data]);

