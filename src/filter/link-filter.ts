// The firewall on one link, in the direction that reaches this host's node:
// cuts the relayed bytes into whole frames, decodes each (src/dist/, the
// direction's atom cache and fragments kept as the receiving VM keeps them),
// and says which frames go on to the node and which messages were denied.
// The fragments of one message are held until its last one has come and go
// on together or not at all; the receiving VM delivers a fragmented message
// only at its last fragment too, so order as the node sees it is unchanged.
// A frame that does not decode ends the direction: the link must be cut.
// What a direction holds counts against the gateway's HoldBudget as well.

import assert from 'node:assert/strict';
import type { Control } from '../dist/control.js';
import { decodeMessage, DirectionDecoder } from '../dist/decoder.js';
import { guard } from '../dist/errors.js';
import type { LinkFilter } from '../policy/filter.js';
import type { HoldBudget } from './hold-budget.js';
import { judge } from './verdict.js';

export interface Denial {
  op: string;
  target: string;
  why: string;
  control: Control;
  header: 'normal' | 'pass-through';
}

export interface FilterOutput {
  /** Frames (4-byte length included) to write to the node, in order. */
  forward: Buffer[];
  denied: Denial[];
  /**
   * Set when a frame did not decode (nothing after it may pass), or when
   * `limit` says the gateway's hold budget ran out: either way the link is cut.
   */
  error?: { code: string; reason: string; limit?: true };
}

export class InboundFilter {
  private readonly decoder = new DirectionDecoder();
  /** Bytes of the frame being gathered (its 4-byte length first), and how many it needs (0: length not read yet). */
  private parts: Buffer[] = [];
  private have = 0;
  private need = 0;
  /** Raw frames of fragmented messages still incomplete, by sequence id. */
  private readonly held = new Map<bigint, Buffer[]>();
  private heldRaw = 0;
  /** This direction's share of the budget, as last reported to it. */
  private share = 0;
  /** Messages judged, and denied among them. */
  judged = 0;
  denials = 0;

  constructor(
    private filter: LinkFilter,
    private readonly maxFrameBytes: number,
    private readonly budget?: HoldBudget,
  ) {}

  /** A reload changed what passes; the decoder's state (atom cache, fragments) carries over. */
  setFilter(filter: LinkFilter): void {
    this.filter = filter;
  }

  get current(): LinkFilter {
    return this.filter;
  }

  /** Bytes held: a partial frame and incomplete fragmented messages. */
  get heldBytes(): number {
    return this.have + this.heldRaw;
  }

  /** Gives this direction's share of the budget back (the link is closed or gone to another process). */
  release(): void {
    this.budget?.move(this.share, 0);
    this.share = 0;
  }

  /**
   * Whether the native judge can take this direction over (native/gate.h):
   * between frames, no fragment held, no error. It then starts from
   * atomSlots(), and this filter judges only what it asks (judgeQuestion).
   */
  get quiescent(): boolean {
    return this.have === 0 && this.held.size === 0 && this.decoder.fragments.inFlight === 0 && this.decoder.error === null;
  }

  /** The direction's atom cache, slot by slot, for the native judge's. */
  atomSlots(): [number, string][] {
    return this.decoder.cache.entries();
  }

  /**
   * A message the native judge did not let through itself, as it hands it
   * over (the body decodeMessage takes, the header's atom references):
   * decoded and judged here, by the same code as every frame on node:tls.
   */
  judgeQuestion(q: { body: Buffer; magic: boolean; atoms: string[] }): { pass: true } | { denial: Denial } | { error: { code: string; reason: string } } {
    const r = guard(() => decodeMessage(q.body, 0, q.magic ? undefined : q.atoms, q.magic));
    if (!r.ok) return { error: r.error };
    this.judged++;
    const v = judge(r.value, this.filter);
    if (v.pass) return { pass: true };
    this.denials++;
    return { denial: { op: v.op, target: v.target, why: v.why, control: r.value.control, header: q.magic ? 'pass-through' : 'normal' } };
  }

  /** Takes relayed bytes from `start` on (bytes before it were the handshake). */
  push(chunk: Buffer, start = 0): FilterOutput {
    const out: FilterOutput = { forward: [], denied: [] };
    let i = start;
    while (i < chunk.length && !out.error) {
      // A whole frame inside this chunk is judged where it lies: no copy.
      if (this.have === 0 && i + 4 <= chunk.length) {
        const end = i + 4 + chunk.readUInt32BE(i);
        if (end <= chunk.length) {
          // DistStream refused a longer frame before these bytes came here.
          assert.ok(end - i - 4 <= this.maxFrameBytes, 'frame over maxFrameBytes passed the framing check');
          this.frame(chunk.subarray(i, end), out);
          i = end;
          continue;
        }
      }
      if (this.need === 0) {
        // Gather the 4-byte length, possibly split across chunks.
        const take = Math.min(4 - this.have, chunk.length - i);
        this.parts.push(chunk.subarray(i, i + take));
        this.have += take;
        i += take;
        if (this.have < 4) break;
        const len = (this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts)).readUInt32BE(0);
        // DistStream refused a longer frame before these bytes came here.
        assert.ok(len <= this.maxFrameBytes, `frame of ${len} bytes passed the framing check`);
        this.need = 4 + len;
      }
      const take = Math.min(this.need - this.have, chunk.length - i);
      if (take > 0) {
        this.parts.push(chunk.subarray(i, i + take));
        this.have += take;
        i += take;
      }
      if (this.have < this.need) break;
      const frame = Buffer.concat(this.parts, this.have);
      this.parts = [];
      this.have = 0;
      this.need = 0;
      this.frame(frame, out);
    }
    if (this.budget && !out.error) {
      const now = this.heldBytes + this.decoder.fragments.heldBytes;
      const fits = this.budget.move(this.share, now);
      this.share = now;
      if (!fits) {
        out.error = { code: 'hold_budget', reason: `filtered links hold ${this.budget.bytes} bytes of messages not yet judged, over the gateway's ${this.budget.maxBytes} (FILTER_MAX_HELD_BYTES); this one holds ${now}`, limit: true };
      }
    }
    return out;
  }

  private frame(frame: Buffer, out: FilterOutput): void {
    if (frame.length === 4) {
      out.forward.push(frame);
      return;
    }
    const r = this.decoder.decode(frame.subarray(4));
    switch (r.kind) {
      case 'tick':
        out.forward.push(frame);
        return;
      case 'error':
        out.error = { code: r.code, reason: r.reason };
        return;
      case 'fragment-pending': {
        const frames = this.held.get(r.sequence);
        if (frames) frames.push(frame);
        else this.held.set(r.sequence, [frame]);
        this.heldRaw += frame.length;
        return;
      }
      case 'message': {
        let frames = [frame];
        if (r.sequence !== undefined) {
          const earlier = this.held.get(r.sequence) ?? [];
          for (const f of earlier) this.heldRaw -= f.length;
          frames = [...earlier, frame];
          this.held.delete(r.sequence);
        }
        this.judged++;
        const v = judge(r, this.filter);
        if (v.pass) {
          out.forward.push(...frames);
          return;
        }
        this.denials++;
        out.denied.push({ op: v.op, target: v.target, why: v.why, control: r.control, header: r.header });
        return;
      }
    }
  }
}
