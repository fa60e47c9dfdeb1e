// The firewall's decision on one decoded distribution message: does the
// receiving host's filter let it through? It reads only the typed control
// message and the bounded head of the payload (src/dist/). What the
// `messages` profile lets through, and why each item is there, is listed in
// docs/filter.md; this file is the same list as code.

import { ALTACT_FLAG, type Control } from '../dist/control.js';
import type { Message } from '../dist/decoder.js';
import type { PayloadHead } from '../dist/payload.js';
import { atomName } from '../dist/term.js';
import type { LinkFilter } from '../policy/filter.js';

export type Verdict =
  | { pass: true }
  | {
      pass: false;
      /** The operation's name (DOP_ without the prefix), or UNKNOWN. */
      op: string;
      /** What the message addresses: a registered name, `pid`, `alias`, or the function a spawn runs. */
      target: string;
      why: string;
    };

const PASS: Verdict = Object.freeze({ pass: true });

/**
 * Registered names every healthy link addresses, each only with the messages
 * it needs there: `net_kernel` the `is_auth` call net_adm:ping makes; `rex`
 * its features exchange (`{Pid, features_request}`, OTP 23+'s first message
 * on a link), never a call; `global_name_server` global's own protocol, which
 * every visible node runs when it connects; `pg`, the default scope of pg
 * (OTP 23+, started with `-kernel start_pg true`, Elixir's :pg), whose scope
 * processes discover each other and exchange group membership.
 */
function systemNameAllows(name: string, head: PayloadHead | undefined): boolean | undefined {
  switch (name) {
    case 'net_kernel':
      return head?.tag === '$gen_call' && head.request === 'is_auth';
    case 'rex':
      return isFeaturesRequest(head);
    case 'global_name_server':
    case 'pg':
      return true;
    default:
      return undefined;
  }
}

function isFeaturesRequest(head: PayloadHead | undefined): boolean {
  const t = head?.term;
  return typeof t === 'object' && t.type === 'tuple' && t.arity === 2 && typeof t.elements[0] === 'object' && t.elements[0].type === 'pid' && atomName(t.elements[1]) === 'features_request';
}

/** Supervisor's calls (supervisor.erl): what lets a node stop, restart, add or list another's children. */
const SUPERVISOR_REQUESTS = new Set(['which_children', 'count_children', 'start_child', 'restart_child', 'terminate_child', 'delete_child', 'get_childspec', 'get_callback_module']);

/**
 * Message shapes no send may carry, whatever it addresses (a pid learnt from
 * a reply can be any process): the sys protocol (`{system, From, Req}`:
 * get_state, replace_state, suspend, terminate), io requests (a group
 * leader's console), a forged `{'EXIT', Pid, Reason}` (a gen_server that
 * traps exits stops when it seems to come from its parent), code_server's
 * and init's protocols, supervisor calls, and rex calls to a function the
 * filter does not list.
 */
function forbiddenShape(head: PayloadHead | undefined, f: LinkFilter): string | undefined {
  if (!head?.tag) return undefined;
  switch (head.tag) {
    case 'system':
      return `a sys message (${head.request ?? 'system'}) `;
    case 'io_request':
      return 'an io request ';
    case 'EXIT':
      return "a forged {'EXIT', _, _} message ";
    case 'code_call':
      return "a code server request ";
    case 'stop':
      return 'an init stop request ';
    case '$gen_call':
    case '$gen_cast':
      if (head.request !== undefined && SUPERVISOR_REQUESTS.has(head.request)) return `a supervisor call (${head.request}) `;
      if (head.call && !f.calls.has(mfa(head.call))) return `an rpc call of ${describeCall(head.call)}, which the filter does not list, `;
      return undefined;
    default:
      return undefined;
  }
}

function mfa(call: { module: string; function: string; arity: number | undefined }): string {
  return `${call.module}:${call.function}/${call.arity ?? '?'}`;
}

function describeCall(call: { module: string; function: string; arity: number | undefined }): string {
  return call.arity === undefined ? `${call.module}:${call.function} (argument list not proper)` : mfa(call);
}

/** A send to a pid, an alias or a name: its target and payload decide. */
function send(op: string, target: { kind: 'pid' | 'alias' } | { kind: 'name'; name: string }, head: PayloadHead | undefined, f: LinkFilter): Verdict {
  const label = target.kind === 'name' ? target.name : target.kind;
  if (target.kind === 'name') {
    const system = systemNameAllows(target.name, head);
    if (system === false) return { pass: false, op, target: label, why: `${target.name} takes only the messages a link needs, not this one` };
    if (system === undefined && !f.names.has(target.name)) return { pass: false, op, target: label, why: `registered name ${target.name} is not listed` };
    if (system === true) return PASS;
  }
  const shape = forbiddenShape(head, f);
  if (shape) return { pass: false, op, target: label, why: `${shape}to ${target.kind === 'name' ? target.name : `a ${target.kind}`}` };
  return PASS;
}

/** The function a spawn request would run, as the filter's calls name it. */
function spawned(c: Extract<Control, { op: 'SPAWN_REQUEST' | 'SPAWN_REQUEST_TT' }>, head: PayloadHead | undefined): { name: string; known: boolean } {
  const wrapper = `${c.mfa.module}:${c.mfa.function}/${c.mfa.arity}`;
  const wraps = wrapper === 'erpc:execute_call/4' || wrapper === 'erpc:execute_cast/3' || wrapper === 'erlang:apply/2';
  if (!wraps) return { name: wrapper, known: true };
  if (head?.call) return { name: mfa(head.call), known: head.call.arity !== undefined };
  if (head?.fun) return { name: `a fun of ${head.fun.module}`, known: false };
  return { name: wrapper, known: false };
}

/** Whether `f` lets `msg` (received from the other node) reach this host's node. */
export function judge(msg: Message, f: LinkFilter): Verdict {
  if (f.full) return PASS;
  const c = msg.control;
  const head = msg.payloadHead;
  switch (c.op) {
    // Links, monitors, their exits and spawn replies: what a caller's own processes need back.
    case 'LINK':
    case 'UNLINK':
    case 'UNLINK_ID':
    case 'UNLINK_ID_ACK':
    case 'EXIT':
    case 'EXIT_TT':
    case 'PAYLOAD_EXIT':
    case 'PAYLOAD_EXIT_TT':
    case 'MONITOR_P':
    case 'DEMONITOR_P':
    case 'MONITOR_P_EXIT':
    case 'PAYLOAD_MONITOR_P_EXIT':
    case 'SPAWN_REPLY':
    case 'SPAWN_REPLY_TT':
      return PASS;
    case 'SEND':
    case 'SEND_TT':
    case 'SEND_SENDER':
    case 'SEND_SENDER_TT':
      return send(c.op, { kind: 'pid' }, head, f);
    case 'REG_SEND':
    case 'REG_SEND_TT':
      return send(c.op, { kind: 'name', name: c.toName }, head, f);
    case 'ALIAS_SEND':
    case 'ALIAS_SEND_TT':
      return send(c.op, { kind: 'alias' }, head, f);
    case 'ALTACT_SIG_SEND': {
      if (c.flags & ALTACT_FLAG.EXIT) return { pass: false, op: c.op, target: 'exit', why: 'an exit signal sent as a signal, not through a link' };
      const to = c.to;
      if (to.type === 'name') return send(c.op, { kind: 'name', name: to.name }, head, f);
      return send(c.op, { kind: to.type === 'ref' ? 'alias' : 'pid' }, head, f);
    }
    case 'SPAWN_REQUEST':
    case 'SPAWN_REQUEST_TT': {
      const s = spawned(c, head);
      if (s.known && f.calls.has(s.name)) return PASS;
      return { pass: false, op: c.op, target: s.name, why: s.known ? `a spawn of ${s.name}, which the filter does not list` : `a spawn of ${s.name}, which no call of the filter can name` };
    }
    case 'EXIT2':
    case 'EXIT2_TT':
    case 'PAYLOAD_EXIT2':
    case 'PAYLOAD_EXIT2_TT':
      return { pass: false, op: c.op, target: 'pid', why: 'exit/2 from another node' };
    case 'GROUP_LEADER':
      return { pass: false, op: c.op, target: 'pid', why: "a group leader change (it takes over a process's io)" };
    case 'NODE_LINK':
      return { pass: false, op: c.op, target: 'node', why: 'an obsolete operation' };
    case 'UNKNOWN':
      return { pass: false, op: c.op, target: String(c.code), why: `operation ${c.code}, which the decoder does not know` };
  }
}
