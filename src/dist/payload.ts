// What a rule needs from a payload, read from its bounded head (the rest of
// the payload is validated, not kept): the tag of a tuple message
// ('$gen_call', '$gen_cast', system, io_request, 'EXIT', ...), the head of
// the request those carry, an rpc call's module/function/arity, and for a
// spawn request the function erpc or spawn/2 will really run.

import type { Control, Mfa } from './control.js';
import { atomName, properLength, type Term } from './term.js';

export interface PayloadHead {
  /** The payload, materialised within DIST_PAYLOAD_HEAD_* (deeper parts elided). */
  term: Term;
  /** The atom a tuple message starts with, or the message itself when it is an atom. */
  tag?: string;
  /**
   * For `{'$gen_call', From, Req}`, `{'$gen_cast', Req}`, `{system, From, Req}`
   * and `{io_request, From, ReplyAs, Req}`: Req when an atom, else the atom Req
   * (a tuple) starts with.
   */
  request?: string;
  /**
   * The function a message or spawn asks to run: rex's `{call | block_call |
   * cast, M, F, Args, _}` inside a gen_call/gen_cast; for SPAWN_REQUEST,
   * erpc:execute_call(Ref, M, F, Args) or execute_cast(M, F, Args)'s M:F/length(Args),
   * or erlang:apply(Fun, Args)'s export fun. `arity` is undefined when Args is
   * not a proper list or was elided.
   */
  call?: { module: string; function: string; arity: number | undefined };
  /** For erlang:apply(Fun, Args) with a local fun (spawn(Node, fun() -> ... end)): the module that defined it. */
  fun?: { module: string; arity: number };
}

function tupleElements(t: Term): Term[] | undefined {
  return typeof t === 'object' && t.type === 'tuple' ? t.elements : undefined;
}

/** Req's atom, or its first element's when Req is a tuple. */
function head(t: Term | undefined): string | undefined {
  if (t === undefined) return undefined;
  return atomName(t) ?? atomName(tupleElements(t)?.[0]);
}

/** The elements of a list term that were kept (a STRING's bytes are integers). */
function listElements(t: Term | undefined): Term[] | undefined {
  if (typeof t !== 'object') return undefined;
  if (t.type === 'nil') return [];
  if (t.type === 'list') return t.elements;
  if (t.type === 'string') return [...t.bytes];
  return undefined;
}

const REX_CALLS = new Set(['call', 'block_call', 'cast']);

/** Reads a message payload (sends, registered sends, alias sends). */
export function messageHead(term: Term): PayloadHead {
  const out: PayloadHead = { term };
  const el = tupleElements(term);
  const tag = el ? atomName(el[0]) : atomName(term);
  if (tag !== undefined) out.tag = tag;
  if (!el) return out;
  let req: Term | undefined;
  if (tag === '$gen_call' && el.length === 3) req = el[2];
  else if (tag === '$gen_cast' && el.length === 2) req = el[1];
  else if (tag === 'system' && el.length === 3) req = el[2];
  else if (tag === 'io_request' && el.length === 4) req = el[3];
  const r = head(req);
  if (r !== undefined) out.request = r;
  const re = req === undefined ? undefined : tupleElements(req);
  if ((tag === '$gen_call' || tag === '$gen_cast') && r !== undefined && REX_CALLS.has(r) && re && re.length >= 4) {
    const m = atomName(re[1]);
    const f = atomName(re[2]);
    if (m !== undefined && f !== undefined) out.call = { module: m, function: f, arity: properLength(re[3]) };
  }
  return out;
}

/** Reads a spawn request's argument list against the MFA it spawns. */
export function spawnHead(mfa: Mfa, term: Term): PayloadHead {
  const out: PayloadHead = { term };
  const args = listElements(term);
  if (!args) return out;
  const mf = `${mfa.module}:${mfa.function}/${mfa.arity}`;
  // kernel's erpc.erl: call/4,5 spawns execute_call(Ref, M, F, A); cast/4 spawns execute_cast(M, F, A).
  const at = mf === 'erpc:execute_call/4' ? 1 : mf === 'erpc:execute_cast/3' ? 0 : -1;
  if (at >= 0 && args.length >= at + 3) {
    const m = atomName(args[at]);
    const f = atomName(args[at + 1]);
    if (m !== undefined && f !== undefined) out.call = { module: m, function: f, arity: properLength(args[at + 2]) };
  } else if (mf === 'erlang:apply/2' && args.length === 2) {
    const fn = args[0];
    if (typeof fn === 'object' && fn.type === 'export') out.call = { module: fn.module, function: fn.function, arity: fn.arity };
    else if (typeof fn === 'object' && fn.type === 'fun') out.fun = { module: fn.module, arity: fn.arity };
  }
  return out;
}

/** The payload head for a control message that carries one. */
export function payloadHead(control: Control, term: Term): PayloadHead {
  if (control.op === 'SPAWN_REQUEST' || control.op === 'SPAWN_REQUEST_TT') return spawnHead(control.mfa, term);
  return messageHead(term);
}
