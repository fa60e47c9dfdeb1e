// The one way the distribution decoder reports bad input: a DecodeError with
// a bounded code (usable as a metric label or a refusal reason) and a sentence
// saying what was wrong and where. Decoding code throws DecodeFailure
// internally (unwinding a deep walk is simplest that way) and every exported
// entry point catches it and returns the error as a value, so a caller never
// sees an exception for hostile bytes.

export type DecodeErrorCode =
  | 'truncated' // the bytes end inside a term, header or field
  | 'bad_tag' // a term tag that no OTP release emits here
  | 'bad_value' // a field out of its range (bit count, sign, float, atom text...)
  | 'too_deep' // nesting over DIST_MAX_TERM_DEPTH
  | 'too_many_terms' // over DIST_MAX_TERMS
  | 'too_large' // over DIST_MAX_MESSAGE_BYTES (or the inflate bound)
  | 'trailing_bytes' // bytes after the last term of a message
  | 'bad_header' // a distribution header that does not parse
  | 'bad_cache_ref' // an atom cache reference to an empty slot or past the header's table
  | 'fragment_unknown_sequence' // a continuation of no sequence in flight
  | 'fragment_duplicate_sequence' // a first fragment for a sequence already in flight
  | 'fragment_out_of_order' // a fragment id other than the next expected
  | 'fragment_too_many_sequences' // over DIST_MAX_FRAGMENT_SEQUENCES
  | 'fragment_too_large' // over DIST_MAX_FRAGMENT_BYTES, or too many fragments declared
  | 'bad_control' // the control message is not a tuple of a known operation's shape
  | 'missing_payload' // an operation that carries a payload came without one
  | 'unexpected_payload'; // an operation without a payload came with one

export interface DecodeError {
  code: DecodeErrorCode;
  reason: string;
}

/** Thrown inside the decoder only; exported entry points turn it into a DecodeError. */
export class DecodeFailure extends Error {
  constructor(
    readonly code: DecodeErrorCode,
    readonly reason: string,
  ) {
    super(reason);
    this.name = 'DecodeFailure';
  }
}

export function fail(code: DecodeErrorCode, reason: string): never {
  throw new DecodeFailure(code, reason);
}

/**
 * Runs `f`, turning a DecodeFailure into a DecodeError value. Anything else
 * thrown (a RangeError from a stack overflow would be one, which the explicit
 * stacks are there to prevent) is reported as a decode error too, so hostile
 * input can never throw through the decoder's API.
 */
export function guard<T>(f: () => T): { ok: true; value: T } | { ok: false; error: DecodeError } {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    if (e instanceof DecodeFailure) return { ok: false, error: { code: e.code, reason: e.reason } };
    return { ok: false, error: { code: 'bad_value', reason: `decoder failed: ${e instanceof Error ? e.message : String(e)}` } };
  }
}
