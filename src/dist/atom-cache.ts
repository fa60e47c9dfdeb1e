// One direction's atom cache, kept exactly as the receiving VM keeps it
// (dist.c, erts_decode_dist_hdr): DIST_ATOM_CACHE_SLOTS slots, written only by
// the new-entry references of distribution headers, read by the references
// without the new-entry flag. A slot once written stays until overwritten;
// the cache lives as long as the link (a new connection starts empty).

import { DIST_ATOM_CACHE_SLOTS } from '../config/limits.js';
import { fail } from './errors.js';

export class AtomCache {
  private readonly slots: (string | undefined)[] = new Array<string | undefined>(DIST_ATOM_CACHE_SLOTS);
  /** Slots written so far (overwrites included): how much churn a link has seen. */
  writes = 0;

  /** The atom in `slot`; a reference to a slot never written is `bad_cache_ref`. */
  get(slot: number): string {
    const a = slot >= 0 && slot < DIST_ATOM_CACHE_SLOTS ? this.slots[slot] : undefined;
    if (a === undefined) fail('bad_cache_ref', `atom cache slot ${slot} is empty (never written on this link)`);
    return a;
  }

  set(slot: number, atom: string): void {
    if (slot < 0 || slot >= DIST_ATOM_CACHE_SLOTS) fail('bad_cache_ref', `atom cache slot ${slot} outside 0..${DIST_ATOM_CACHE_SLOTS - 1}`);
    this.slots[slot] = atom;
    this.writes++;
  }

  /** Every slot in use, with its atom: what a hand-over to the native judge seeds its cache with. */
  entries(): [number, string][] {
    const out: [number, string][] = [];
    this.slots.forEach((a, slot) => {
      if (a !== undefined) out.push([slot, a]);
    });
    return out;
  }

  /** Slots in use now. */
  get size(): number {
    let n = 0;
    for (const s of this.slots) if (s !== undefined) n++;
    return n;
  }
}
