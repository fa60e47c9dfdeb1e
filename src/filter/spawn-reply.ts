// The answer a filtering gateway gives a spawn request it denied: a
// SPAWN_REPLY with an error atom, framed as the requester's own node framed
// its request (normal header without atom cache references, or
// pass-through), so erpc:call raises {erpc, beamgate_denied} at once
// instead of waiting for its timeout. The request id and the requesting pid
// are written back exactly as decoded.

import { DOP } from '../dist/control.js';
import { DIST_HEADER, PASS_THROUGH, VERSION_MAGIC } from '../dist/header.js';
import { type Pid, type Ref, TAG } from '../dist/term.js';

/** The error a denied spawn request gets: erpc raises {erpc, beamgate_denied}. */
export const DENIED_SPAWN_ERROR = 'beamgate_denied';

function atom(name: string): Buffer {
  const text = Buffer.from(name, 'utf8');
  // Node names and the error atom are at most 255 bytes (the decoder refused longer ones).
  return Buffer.concat([Buffer.from([TAG.SMALL_ATOM_UTF8, text.length]), text]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function pid(p: Pid): Buffer {
  return Buffer.concat([Buffer.from([TAG.NEW_PID]), atom(p.node), u32(p.id), u32(p.serial), u32(p.creation)]);
}

function ref(r: Ref): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(r.ids.length);
  return Buffer.concat([Buffer.from([TAG.NEWER_REFERENCE]), len, atom(r.node), u32(r.creation), ...r.ids.map(u32)]);
}

/** The whole frame (4-byte length first) of {SPAWN_REPLY, ReqId, To, 0, beamgate_denied}. */
export function deniedSpawnReply(reqId: Ref, to: Pid, header: 'normal' | 'pass-through'): Buffer {
  const control = Buffer.concat([Buffer.from([TAG.SMALL_TUPLE, 5, TAG.SMALL_INTEGER, DOP.SPAWN_REPLY]), ref(reqId), pid(to), Buffer.from([TAG.SMALL_INTEGER, 0]), atom(DENIED_SPAWN_ERROR)]);
  const head = header === 'normal' ? Buffer.from([VERSION_MAGIC, DIST_HEADER, 0]) : Buffer.from([PASS_THROUGH, VERSION_MAGIC]);
  const length = u32(head.length + control.length);
  return Buffer.concat([length, head, control]);
}
