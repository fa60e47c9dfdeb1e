// The distribution decoder for one direction of one link: takes each frame
// (the bytes after its 4-byte length, as src/framing/stream.ts delimits them
// after the handshake) and says what it is: a tick, a whole message (its
// control message typed, its payload's head, the payload validated to its
// end), a fragment of a message still incomplete, or an error. It keeps the
// direction's state (atom cache, fragments in flight). After an error the
// state is no longer the peer VM's, so every later frame gets the same error:
// the link must be closed.

import { DIST_CONTROL_BYTES, DIST_CONTROL_DEPTH, DIST_CONTROL_ELEMENTS, DIST_MAX_MESSAGE_BYTES, DIST_PAYLOAD_HEAD_BYTES, DIST_PAYLOAD_HEAD_DEPTH, DIST_PAYLOAD_HEAD_ELEMENTS } from '../config/limits.js';
import { AtomCache } from './atom-cache.js';
import { carriesPayload, type Control, toControl } from './control.js';
import { type DecodeErrorCode, fail, guard } from './errors.js';
import { FragmentAssembler, type FragmentLimits, DEFAULT_FRAGMENT_LIMITS } from './fragments.js';
import { parseHeader, VERSION_MAGIC } from './header.js';
import { type PayloadHead, payloadHead } from './payload.js';
import { type Bounds, TermReader } from './term.js';

export const CONTROL_BOUNDS: Readonly<Bounds> = Object.freeze({ depth: DIST_CONTROL_DEPTH, elements: DIST_CONTROL_ELEMENTS, bytes: DIST_CONTROL_BYTES });
export const PAYLOAD_HEAD_BOUNDS: Readonly<Bounds> = Object.freeze({ depth: DIST_PAYLOAD_HEAD_DEPTH, elements: DIST_PAYLOAD_HEAD_ELEMENTS, bytes: DIST_PAYLOAD_HEAD_BYTES });

export type FrameResult =
  | { kind: 'tick' }
  | {
      kind: 'message';
      control: Control;
      /** Present when the operation carries a payload (or an unknown one came with one). */
      payloadHead?: PayloadHead;
      /** Bytes of control and payload (after reassembly), and the frames they came in. */
      bytes: number;
      fragments: number;
      /** The header the message came with (a fragmented one came with the normal header's fragment forms). */
      header: 'normal' | 'pass-through';
      /** The sequence id of a fragmented message. */
      sequence?: bigint;
    }
  | { kind: 'fragment-pending'; sequence: bigint }
  | { kind: 'error'; code: DecodeErrorCode; reason: string };

export interface Message {
  control: Control;
  payloadHead?: PayloadHead;
}

/**
 * Decodes one message body: the control term, then the payload if the
 * operation has one, nothing after. `magic`: each term starts with its own
 * 131 (the pass-through header); `atoms`: the header's reference table.
 */
export function decodeMessage(body: Buffer, start: number, atoms: readonly string[] | undefined, magic: boolean): Message {
  const r = new TermReader(body, start, body.length, atoms);
  const version = (what: string) => {
    if (magic && r.u8(`${what} version`) !== VERSION_MAGIC) fail('bad_header', `pass-through ${what} does not start with 131`);
  };
  version('control message');
  const control = toControl(r.read(CONTROL_BOUNDS));
  const more = r.pos < r.end;
  const wants = carriesPayload(control);
  if (wants && !more) fail('missing_payload', `${control.op} without its payload`);
  if (!wants && more && control.op !== 'UNKNOWN') fail('unexpected_payload', `${control.op} followed by ${r.end - r.pos} more bytes`);
  const out: Message = { control };
  if (more) {
    version('payload');
    out.payloadHead = payloadHead(control, r.read(PAYLOAD_HEAD_BOUNDS));
  }
  if (r.pos !== r.end) fail('trailing_bytes', `${r.end - r.pos} bytes after the ${more ? 'payload' : 'control message'} of ${control.op}`);
  return out;
}

export class DirectionDecoder {
  readonly cache = new AtomCache();
  readonly fragments: FragmentAssembler;
  /** Frames seen, and ticks among them. */
  frames = 0;
  ticks = 0;
  private failed: { code: DecodeErrorCode; reason: string } | null = null;

  constructor(fragmentLimits: Readonly<FragmentLimits> = DEFAULT_FRAGMENT_LIMITS) {
    this.fragments = new FragmentAssembler(fragmentLimits);
  }

  /** The error that stopped this direction, if any. */
  get error(): { code: DecodeErrorCode; reason: string } | null {
    return this.failed;
  }

  decode(frame: Buffer): FrameResult {
    this.frames++;
    if (this.failed) return { kind: 'error', ...this.failed };
    if (frame.length === 0) {
      this.ticks++;
      return { kind: 'tick' };
    }
    const r = guard((): FrameResult => {
      if (frame.length > DIST_MAX_MESSAGE_BYTES) fail('too_large', `frame of ${frame.length} bytes over ${DIST_MAX_MESSAGE_BYTES}`);
      const h = parseHeader(frame, this.cache);
      switch (h.kind) {
        case 'pass-through':
          return { kind: 'message', ...decodeMessage(frame, h.body, undefined, true), bytes: frame.length - h.body, fragments: 1, header: 'pass-through' };
        case 'normal':
          return { kind: 'message', ...decodeMessage(frame, h.body, h.atoms, false), bytes: frame.length - h.body, fragments: 1, header: 'normal' };
        case 'first-fragment': {
          const whole = this.fragments.first(h.sequence, h.fragment, h.atoms, frame.subarray(h.body));
          return whole ? this.whole(whole.body, whole.atoms, whole.fragments, h.sequence) : { kind: 'fragment-pending', sequence: h.sequence };
        }
        case 'continuation': {
          const whole = this.fragments.continuation(h.sequence, h.fragment, frame.subarray(h.body));
          return whole ? this.whole(whole.body, whole.atoms, whole.fragments, h.sequence) : { kind: 'fragment-pending', sequence: h.sequence };
        }
      }
    });
    if (r.ok) return r.value;
    this.failed = r.error;
    return { kind: 'error', ...r.error };
  }

  private whole(body: Buffer, atoms: string[], fragments: number, sequence: bigint): FrameResult {
    return { kind: 'message', ...decodeMessage(body, 0, atoms, false), bytes: body.length, fragments, header: 'normal', sequence };
  }
}
