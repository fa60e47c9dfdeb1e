import type { RefusalReason } from '../metrics/metrics.js';
import { ProtocolError } from '../framing/handshake.js';

/** Thrown (or returned) where a connection must be closed for a known reason. */
export class Refusal extends Error {
  constructor(
    readonly reason: RefusalReason,
    message: string,
    /** Extra log fields (bounded values only: they may key metrics). */
    readonly fields: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'Refusal';
  }
}

/** The refusal an error stands for; anything unforeseen is a bad handshake, never a crash. */
export function toRefusal(err: unknown): Refusal {
  if (err instanceof Refusal) return err;
  if (err instanceof ProtocolError) return new Refusal(err.code, err.message);
  return new Refusal('bad_handshake', err instanceof Error ? err.message : String(err));
}
