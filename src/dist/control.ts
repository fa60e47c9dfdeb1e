// Control messages (ERTS User's Guide, "Distribution Protocol", Protocol
// between Connected Nodes; OTP's dist.h and dist.c): the tuple that starts
// every message, whose first element names the operation. This module turns a
// decoded control tuple into a typed union, checking each operation's arity
// and the type of every field a rule may read, and says which operations
// carry a payload (a second term after the control tuple). An operation this
// module does not know is returned as UNKNOWN with its number: the filter
// denies by default, and a relay without a filter passes it untouched.

import { fail } from './errors.js';
import { atomName, type Pid, type Ref, type Term, type Tuple } from './term.js';

export const DOP = {
  LINK: 1,
  SEND: 2,
  EXIT: 3,
  UNLINK: 4,
  NODE_LINK: 5,
  REG_SEND: 6,
  GROUP_LEADER: 7,
  EXIT2: 8,
  SEND_TT: 12,
  EXIT_TT: 13,
  REG_SEND_TT: 16,
  EXIT2_TT: 18,
  MONITOR_P: 19,
  DEMONITOR_P: 20,
  MONITOR_P_EXIT: 21,
  SEND_SENDER: 22,
  SEND_SENDER_TT: 23,
  PAYLOAD_EXIT: 24,
  PAYLOAD_EXIT_TT: 25,
  PAYLOAD_EXIT2: 26,
  PAYLOAD_EXIT2_TT: 27,
  PAYLOAD_MONITOR_P_EXIT: 28,
  SPAWN_REQUEST: 29,
  SPAWN_REQUEST_TT: 30,
  SPAWN_REPLY: 31,
  SPAWN_REPLY_TT: 32,
  ALIAS_SEND: 33,
  ALIAS_SEND_TT: 34,
  UNLINK_ID: 35,
  UNLINK_ID_ACK: 36,
  ALTACT_SIG_SEND: 37,
} as const;

export type OpName = keyof typeof DOP;

const OP_NAMES = new Map<number, OpName>(Object.entries(DOP).map(([k, v]) => [v, k as OpName]));

/**
 * Operations followed by a payload term: the message for the sends, the exit
 * reason for the PAYLOAD_ forms (OTP 22+ with DFLAG_EXIT_PAYLOAD, which moved
 * the reason out of the control tuple), the argument list for spawn requests.
 */
export const PAYLOAD_OPS: ReadonlySet<OpName> = new Set<OpName>([
  'SEND',
  'REG_SEND',
  'SEND_TT',
  'REG_SEND_TT',
  'SEND_SENDER',
  'SEND_SENDER_TT',
  'PAYLOAD_EXIT',
  'PAYLOAD_EXIT_TT',
  'PAYLOAD_EXIT2',
  'PAYLOAD_EXIT2_TT',
  'PAYLOAD_MONITOR_P_EXIT',
  'SPAWN_REQUEST',
  'SPAWN_REQUEST_TT',
  'ALIAS_SEND',
  'ALIAS_SEND_TT',
  'ALTACT_SIG_SEND',
]);

/** ALTACT_SIG_SEND's flags (dist.h, ERTS_DOP_ALTACT_SIG_FLG_*). */
export const ALTACT_FLAG = { PRIO: 1, TOKEN: 2, ALIAS: 4, NAME: 8, EXIT: 16 } as const;
/** SPAWN_REQUEST/SPAWN_REPLY flags (dist.h, ERTS_DIST_SPAWN_FLAG_*). */
export const SPAWN_FLAG = { LINK: 1, MONITOR: 2 } as const;

/** A process a signal names: a pid, or a registered name (an atom). */
export type Proc = Pid | { type: 'name'; name: string };

export interface Mfa {
  module: string;
  function: string;
  arity: number;
}

export type Control =
  | { op: 'LINK' | 'UNLINK' | 'GROUP_LEADER'; from: Pid; to: Pid }
  | { op: 'SEND'; to: Pid }
  | { op: 'SEND_TT'; to: Pid; token: Term }
  | { op: 'EXIT' | 'EXIT2'; from: Pid; to: Pid; reason: Term }
  | { op: 'EXIT_TT' | 'EXIT2_TT'; from: Pid; to: Pid; token: Term; reason: Term }
  | { op: 'NODE_LINK' }
  | { op: 'REG_SEND'; from: Pid; toName: string }
  | { op: 'REG_SEND_TT'; from: Pid; toName: string; token: Term }
  | { op: 'MONITOR_P' | 'DEMONITOR_P'; from: Pid; to: Proc; ref: Ref }
  | { op: 'MONITOR_P_EXIT'; from: Proc; to: Pid; ref: Ref; reason: Term }
  | { op: 'SEND_SENDER' | 'PAYLOAD_EXIT' | 'PAYLOAD_EXIT2'; from: Pid; to: Pid }
  | { op: 'SEND_SENDER_TT' | 'PAYLOAD_EXIT_TT' | 'PAYLOAD_EXIT2_TT'; from: Pid; to: Pid; token: Term }
  | { op: 'PAYLOAD_MONITOR_P_EXIT'; from: Proc; to: Pid; ref: Ref }
  | { op: 'SPAWN_REQUEST'; reqId: Ref; from: Pid; groupLeader: Pid; mfa: Mfa; options: Term }
  | { op: 'SPAWN_REQUEST_TT'; reqId: Ref; from: Pid; groupLeader: Pid; mfa: Mfa; options: Term; token: Term }
  /** `result` is the new process, or the error atom when spawning failed. */
  | { op: 'SPAWN_REPLY'; reqId: Ref; to: Pid; flags: number; result: Pid | string }
  | { op: 'SPAWN_REPLY_TT'; reqId: Ref; to: Pid; flags: number; result: Pid | string; token: Term }
  | { op: 'ALIAS_SEND'; from: Pid; alias: Ref }
  | { op: 'ALIAS_SEND_TT'; from: Pid; alias: Ref; token: Term }
  | { op: 'UNLINK_ID' | 'UNLINK_ID_ACK'; id: number | bigint; from: Pid; to: Pid }
  /**
   * OTP 28+: a send to a pid, a name (`flags & NAME`) or an alias (`flags &
   * ALIAS`), possibly a priority message (`PRIO`), or an exit signal whose
   * reason is the payload (`EXIT`).
   */
  | { op: 'ALTACT_SIG_SEND'; flags: number; from: Pid; to: Pid | Ref | { type: 'name'; name: string }; token?: Term }
  | { op: 'UNKNOWN'; code: number; term: Tuple };

/** Whether this control message is followed by a payload. UNKNOWN: either way is accepted. */
export function carriesPayload(c: Control): boolean {
  return c.op !== 'UNKNOWN' && PAYLOAD_OPS.has(c.op);
}

function bad(op: string, why: string): never {
  return fail('bad_control', `${op}: ${why}`);
}

function pid(t: Term | undefined, op: string, field: string): Pid {
  if (typeof t === 'object' && t.type === 'pid') return t;
  return bad(op, `${field} is not a pid`);
}

function ref(t: Term | undefined, op: string, field: string): Ref {
  if (typeof t === 'object' && t.type === 'ref') return t;
  return bad(op, `${field} is not a reference`);
}

function atom(t: Term | undefined, op: string, field: string): string {
  const a = atomName(t);
  if (a === undefined) bad(op, `${field} is not an atom`);
  return a;
}

function proc(t: Term | undefined, op: string, field: string): Proc {
  if (typeof t === 'object' && t.type === 'pid') return t;
  const a = atomName(t);
  if (a !== undefined) return { type: 'name', name: a };
  return bad(op, `${field} is neither a pid nor a registered name`);
}

function int(t: Term | undefined, op: string, field: string): number | bigint {
  if (typeof t === 'number' || typeof t === 'bigint') return t;
  return bad(op, `${field} is not an integer`);
}

function small(t: Term | undefined, op: string, field: string): number {
  if (typeof t === 'number') return t;
  return bad(op, `${field} is not a small integer`);
}

/** Any term (a reason, a token, options); past the control bounds it is an `elided` marker, validated. */
function present(t: Term | undefined, op: string, field: string): Term {
  if (t === undefined) bad(op, `${field} missing`);
  return t;
}

/** Turns a decoded control term into a Control, or fails with bad_control. */
export function toControl(t: Term): Control {
  if (typeof t !== 'object' || t.type !== 'tuple') return fail('bad_control', 'control message is not a tuple');
  if (t.elements.length < t.arity) return fail('bad_control', `control tuple of ${t.arity} elements is larger than the decoder keeps`);
  const e = t.elements;
  const code = e[0];
  if (typeof code !== 'number') return fail('bad_control', 'control tuple does not start with an operation number');
  const op = OP_NAMES.get(code);
  if (op === undefined) return { op: 'UNKNOWN', code, term: t };
  const arity = (...ok: number[]) => {
    if (!ok.includes(t.arity)) bad(op, `tuple of ${t.arity} elements, expected ${ok.join(' or ')}`);
  };
  switch (op) {
    case 'LINK':
    case 'UNLINK':
    case 'GROUP_LEADER':
    case 'SEND_SENDER':
    case 'PAYLOAD_EXIT':
    case 'PAYLOAD_EXIT2':
      arity(3);
      return { op, from: pid(e[1], op, 'from'), to: pid(e[2], op, 'to') };
    case 'SEND':
      // {2, Unused, ToPid}: Unused is '' (the cookie field of old releases).
      arity(3);
      return { op, to: pid(e[2], op, 'to') };
    case 'SEND_TT':
      arity(4);
      return { op, to: pid(e[2], op, 'to'), token: present(e[3], op, 'token') };
    case 'EXIT':
    case 'EXIT2':
      arity(4);
      return { op, from: pid(e[1], op, 'from'), to: pid(e[2], op, 'to'), reason: present(e[3], op, 'reason') };
    case 'EXIT_TT':
    case 'EXIT2_TT':
      arity(5);
      return { op, from: pid(e[1], op, 'from'), to: pid(e[2], op, 'to'), token: present(e[3], op, 'token'), reason: present(e[4], op, 'reason') };
    case 'NODE_LINK':
      arity(1);
      return { op };
    case 'REG_SEND':
      // {6, FromPid, Unused, ToName}
      arity(4);
      return { op, from: pid(e[1], op, 'from'), toName: atom(e[3], op, 'to name') };
    case 'REG_SEND_TT':
      arity(5);
      return { op, from: pid(e[1], op, 'from'), toName: atom(e[3], op, 'to name'), token: present(e[4], op, 'token') };
    case 'MONITOR_P':
    case 'DEMONITOR_P':
      arity(4);
      return { op, from: pid(e[1], op, 'from'), to: proc(e[2], op, 'to'), ref: ref(e[3], op, 'ref') };
    case 'MONITOR_P_EXIT':
      arity(5);
      return { op, from: proc(e[1], op, 'from'), to: pid(e[2], op, 'to'), ref: ref(e[3], op, 'ref'), reason: present(e[4], op, 'reason') };
    case 'SEND_SENDER_TT':
    case 'PAYLOAD_EXIT_TT':
    case 'PAYLOAD_EXIT2_TT':
      arity(4);
      return { op, from: pid(e[1], op, 'from'), to: pid(e[2], op, 'to'), token: present(e[3], op, 'token') };
    case 'PAYLOAD_MONITOR_P_EXIT':
      arity(4);
      return { op, from: proc(e[1], op, 'from'), to: pid(e[2], op, 'to'), ref: ref(e[3], op, 'ref') };
    case 'SPAWN_REQUEST':
    case 'SPAWN_REQUEST_TT': {
      // {29, ReqId, From, GroupLeader, {Module, Function, Arity}, OptList[, Token]}
      arity(op === 'SPAWN_REQUEST' ? 6 : 7);
      const m = e[4];
      if (typeof m !== 'object' || m.type !== 'tuple' || m.arity !== 3 || m.elements.length !== 3) bad(op, 'the MFA is not a 3-tuple');
      const mfa: Mfa = { module: atom(m.elements[0], op, 'module'), function: atom(m.elements[1], op, 'function'), arity: small(m.elements[2], op, 'arity') };
      const base = { reqId: ref(e[1], op, 'request id'), from: pid(e[2], op, 'from'), groupLeader: pid(e[3], op, 'group leader'), mfa, options: present(e[5], op, 'options') };
      return op === 'SPAWN_REQUEST' ? { op, ...base } : { op, ...base, token: present(e[6], op, 'token') };
    }
    case 'SPAWN_REPLY':
    case 'SPAWN_REPLY_TT': {
      // {31, ReqId, To, Flags, Result[, Token]}
      arity(op === 'SPAWN_REPLY' ? 5 : 6);
      const r = e[4];
      const result = typeof r === 'object' && r.type === 'pid' ? r : atomName(r);
      if (result === undefined) bad(op, 'result is neither a pid nor an error atom');
      const base = { reqId: ref(e[1], op, 'request id'), to: pid(e[2], op, 'to'), flags: small(e[3], op, 'flags'), result };
      return op === 'SPAWN_REPLY' ? { op, ...base } : { op, ...base, token: present(e[5], op, 'token') };
    }
    case 'ALIAS_SEND':
      arity(3);
      return { op, from: pid(e[1], op, 'from'), alias: ref(e[2], op, 'alias') };
    case 'ALIAS_SEND_TT':
      arity(4);
      return { op, from: pid(e[1], op, 'from'), alias: ref(e[2], op, 'alias'), token: present(e[3], op, 'token') };
    case 'UNLINK_ID':
    case 'UNLINK_ID_ACK':
      arity(4);
      return { op, id: int(e[1], op, 'id'), from: pid(e[2], op, 'from'), to: pid(e[3], op, 'to') };
    case 'ALTACT_SIG_SEND': {
      // {37, Flags, SenderPid, To[, Token]} (dist.c, erts_dsig_send_msg / dsig_send_altact)
      arity(4, 5);
      const flags = small(e[1], op, 'flags');
      const to = e[3];
      let target: Pid | Ref | { type: 'name'; name: string };
      if (typeof to === 'object' && (to.type === 'pid' || to.type === 'ref')) target = to;
      else target = { type: 'name', name: atom(to, op, 'to') };
      const c: Control = { op, flags, from: pid(e[2], op, 'from'), to: target };
      if (t.arity === 5) c.token = present(e[4], op, 'token');
      return c;
    }
  }
}
