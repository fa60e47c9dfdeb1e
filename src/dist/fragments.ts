// Reassembly of fragmented messages (DFLAG_FRAGMENTS, OTP 22+) for one
// direction. A message of N fragments arrives as a first fragment with
// fragment id N and then continuations N-1 ... 1, all with the message's
// sequence id; sequences of one link may interleave. The first fragment's
// header has already updated the atom cache (the receiving VM does that on
// arrival too, so later messages may refer to those slots), and its
// reference table is kept here until the last fragment. Bounded by
// DIST_MAX_FRAGMENT_SEQUENCES in flight, DIST_MAX_FRAGMENT_BYTES held and
// DIST_MAX_FRAGMENTS_PER_MESSAGE declared.

import {
  DIST_MAX_FRAGMENT_BYTES,
  DIST_MAX_FRAGMENT_SEQUENCES,
  DIST_MAX_FRAGMENTS_PER_MESSAGE,
  DIST_MAX_MESSAGE_BYTES,
} from '../config/limits.js';
import { fail } from './errors.js';

interface Sequence {
  atoms: string[];
  /** The fragment id expected next. */
  next: bigint;
  chunks: Buffer[];
  bytes: number;
}

export interface Reassembled {
  atoms: string[];
  /** The control message and payload, as one buffer (terms without their 131). */
  body: Buffer;
  fragments: number;
}

export interface FragmentLimits {
  maxSequences: number;
  maxBytes: number;
  maxFragments: number;
  maxMessageBytes: number;
}

export const DEFAULT_FRAGMENT_LIMITS: Readonly<FragmentLimits> = Object.freeze({
  maxSequences: DIST_MAX_FRAGMENT_SEQUENCES,
  maxBytes: DIST_MAX_FRAGMENT_BYTES,
  maxFragments: DIST_MAX_FRAGMENTS_PER_MESSAGE,
  maxMessageBytes: DIST_MAX_MESSAGE_BYTES,
});

export class FragmentAssembler {
  private readonly sequences = new Map<bigint, Sequence>();
  private held = 0;

  constructor(private readonly limits: Readonly<FragmentLimits> = DEFAULT_FRAGMENT_LIMITS) {}

  /** Sequences started and not finished. */
  get inFlight(): number {
    return this.sequences.size;
  }

  /** Bytes held for them. */
  get heldBytes(): number {
    return this.held;
  }

  /** A first fragment. Returns the whole message when it is the only fragment. */
  first(sequence: bigint, fragment: bigint, atoms: string[], data: Buffer): Reassembled | null {
    if (this.sequences.has(sequence)) fail('fragment_duplicate_sequence', `first fragment of sequence ${sequence}, which is already in flight`);
    if (fragment > BigInt(this.limits.maxFragments)) {
      fail('fragment_too_large', `sequence ${sequence} declares ${fragment} fragments (at most ${this.limits.maxFragments})`);
    }
    if (fragment === 1n) return { atoms, body: data, fragments: 1 };
    if (this.sequences.size >= this.limits.maxSequences) {
      fail('fragment_too_many_sequences', `more than ${this.limits.maxSequences} fragmented messages in flight`);
    }
    this.account(sequence, data.length, 0);
    this.held += data.length;
    // The frame's buffer may be reused by the caller: keep a copy.
    this.sequences.set(sequence, { atoms, next: fragment - 1n, chunks: [Buffer.from(data)], bytes: data.length });
    return null;
  }

  /** A continuation. Returns the whole message on its last fragment. */
  continuation(sequence: bigint, fragment: bigint, data: Buffer): Reassembled | null {
    const s = this.sequences.get(sequence);
    if (!s) fail('fragment_unknown_sequence', `continuation (fragment ${fragment}) of sequence ${sequence}, which was never started or is finished`);
    if (fragment !== s.next) fail('fragment_out_of_order', `sequence ${sequence}: fragment ${fragment} where ${s.next} was due`);
    this.account(sequence, data.length, s.bytes);
    s.chunks.push(Buffer.from(data));
    s.bytes += data.length;
    this.held += data.length;
    if (fragment > 1n) {
      s.next = fragment - 1n;
      return null;
    }
    this.sequences.delete(sequence);
    this.held -= s.bytes;
    return { atoms: s.atoms, body: Buffer.concat(s.chunks, s.bytes), fragments: s.chunks.length };
  }

  private account(sequence: bigint, add: number, has: number): void {
    if (has + add > this.limits.maxMessageBytes) fail('too_large', `sequence ${sequence} grows past ${this.limits.maxMessageBytes} bytes`);
    if (this.held + add > this.limits.maxBytes) {
      fail('fragment_too_large', `${this.held + add} bytes of unfinished fragmented messages (at most ${this.limits.maxBytes})`);
    }
  }
}
