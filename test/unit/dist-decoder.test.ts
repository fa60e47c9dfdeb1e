// The per-direction decoder on frames built byte by byte: every control
// operation OTP 23-29 sends, the normal, fragment and pass-through headers,
// the atom cache (new entries, later references, long atoms, empty slots),
// fragment reassembly (interleaved, out of order, unknown, duplicate, too
// many, too large) and hostile input (malformed headers, truncation at every
// byte, nesting over the bound): each bad frame is a typed error with its
// reason, and the direction stays failed afterwards.

import { describe, expect, it } from 'vitest';
import { DIST_MAX_FRAGMENT_SEQUENCES, DIST_MAX_TERM_DEPTH } from '../../src/config/limits.js';
import { ALTACT_FLAG, type Control, DOP, PAYLOAD_OPS } from '../../src/dist/control.js';
import { DirectionDecoder, type FrameResult } from '../../src/dist/decoder.js';
import { DEFAULT_FRAGMENT_LIMITS } from '../../src/dist/fragments.js';

import { type Bytes, u16, u32, u64, atom, small, nil, tuple, list, pid, ref, cacheRef, type Entry, cacheRefs, normal, plain, first, cont } from '../helpers/etf-write.js';

function message(r: FrameResult): Extract<FrameResult, { kind: 'message' }> {
  if (r.kind !== 'message') throw new Error(`expected a message, got ${JSON.stringify(r)}`);
  return r;
}
function errorOf(r: FrameResult): { code: string; reason: string } {
  if (r.kind !== 'error') throw new Error(`expected an error, got ${r.kind}`);
  expect(r.reason.length).toBeGreaterThan(10);
  return { code: r.code, reason: r.reason };
}

const P = pid(1);
const Q = pid(2, 'b@host');
const R = ref(9);
const EMPTY = atom('');
const MSG = tuple(atom('hello'), small(1));

// One valid control tuple (and payload when the operation has one) per operation.
const OPS: Record<keyof typeof DOP, { control: Bytes; payload?: Bytes }> = {
  LINK: { control: tuple(small(1), P, Q) },
  SEND: { control: tuple(small(2), EMPTY, Q), payload: MSG },
  EXIT: { control: tuple(small(3), P, Q, atom('normal')) },
  UNLINK: { control: tuple(small(4), P, Q) },
  NODE_LINK: { control: tuple(small(5)) },
  REG_SEND: { control: tuple(small(6), P, EMPTY, atom('echo')), payload: MSG },
  GROUP_LEADER: { control: tuple(small(7), P, Q) },
  EXIT2: { control: tuple(small(8), P, Q, atom('kill')) },
  SEND_TT: { control: tuple(small(12), EMPTY, Q, atom('token')), payload: MSG },
  EXIT_TT: { control: tuple(small(13), P, Q, atom('token'), atom('normal')) },
  REG_SEND_TT: { control: tuple(small(16), P, EMPTY, atom('echo'), atom('token')), payload: MSG },
  EXIT2_TT: { control: tuple(small(18), P, Q, atom('token'), atom('kill')) },
  MONITOR_P: { control: tuple(small(19), P, atom('echo'), R) },
  DEMONITOR_P: { control: tuple(small(20), P, Q, R) },
  MONITOR_P_EXIT: { control: tuple(small(21), atom('echo'), P, R, atom('noproc')) },
  SEND_SENDER: { control: tuple(small(22), P, Q), payload: MSG },
  SEND_SENDER_TT: { control: tuple(small(23), P, Q, atom('token')), payload: MSG },
  PAYLOAD_EXIT: { control: tuple(small(24), P, Q), payload: atom('normal') },
  PAYLOAD_EXIT_TT: { control: tuple(small(25), P, Q, atom('token')), payload: atom('normal') },
  PAYLOAD_EXIT2: { control: tuple(small(26), P, Q), payload: atom('kill') },
  PAYLOAD_EXIT2_TT: { control: tuple(small(27), P, Q, atom('token')), payload: atom('kill') },
  PAYLOAD_MONITOR_P_EXIT: { control: tuple(small(28), Q, P, R), payload: atom('normal') },
  SPAWN_REQUEST: { control: tuple(small(29), R, P, P, tuple(atom('erpc'), atom('execute_call'), small(4)), list(atom('monitor'))), payload: list(R, atom('os'), atom('cmd'), list(list(small(105), small(100)))) },
  SPAWN_REQUEST_TT: { control: tuple(small(30), R, P, P, tuple(atom('erlang'), atom('apply'), small(2)), nil, atom('token')), payload: list([113, ...atom('os'), ...atom('cmd'), ...small(1)], list(nil)) },
  SPAWN_REPLY: { control: tuple(small(31), R, P, small(2), Q) },
  SPAWN_REPLY_TT: { control: tuple(small(32), R, P, small(0), atom('badarg'), atom('token')) },
  ALIAS_SEND: { control: tuple(small(33), P, R), payload: MSG },
  ALIAS_SEND_TT: { control: tuple(small(34), P, R, atom('token')), payload: MSG },
  UNLINK_ID: { control: tuple(small(35), small(17), P, Q) },
  UNLINK_ID_ACK: { control: tuple(small(36), [110, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8], P, Q) },
  ALTACT_SIG_SEND: { control: tuple(small(37), small(ALTACT_FLAG.NAME | ALTACT_FLAG.PRIO), P, atom('echo')), payload: MSG },
};

describe('control messages', () => {
  it('decodes every operation OTP 23-29 sends, with or without its payload as the operation says', () => {
    for (const [op, { control, payload }] of Object.entries(OPS)) {
      expect(PAYLOAD_OPS.has(op as keyof typeof DOP), op).toBe(payload !== undefined);
      const d = new DirectionDecoder();
      const m = message(d.decode(plain(control, ...(payload ? [payload] : []))));
      expect(m.control.op).toBe(op);
      expect(m.payloadHead !== undefined, op).toBe(payload !== undefined);
      // Dropping the payload of an operation that has one, or adding one to an operation that has none.
      const e = errorOf(new DirectionDecoder().decode(plain(control, ...(payload ? [] : [MSG]))));
      expect(e.code, op).toBe(payload ? 'missing_payload' : 'unexpected_payload');
    }
  });

  it('reads what the firewall needs: names, the spawn MFA and requester, the call inside', () => {
    const dec = (op: keyof typeof OPS) => message(new DirectionDecoder().decode(plain(OPS[op].control, ...(OPS[op].payload ? [OPS[op].payload!] : []))));
    const reg = dec('REG_SEND');
    expect(reg.control).toMatchObject({ op: 'REG_SEND', toName: 'echo', from: { type: 'pid', node: 'a@host', id: 1 } });
    expect(reg.payloadHead?.tag).toBe('hello');
    const spawn = dec('SPAWN_REQUEST');
    expect(spawn.control).toMatchObject({ op: 'SPAWN_REQUEST', mfa: { module: 'erpc', function: 'execute_call', arity: 4 }, from: { id: 1 }, reqId: { type: 'ref', ids: [9, 1, 2] } });
    expect(spawn.payloadHead?.call).toEqual({ module: 'os', function: 'cmd', arity: 1 });
    expect(dec('SPAWN_REQUEST_TT').payloadHead?.call).toEqual({ module: 'os', function: 'cmd', arity: 1 });
    // More arguments than a head keeps: the arity is still known (the list's length and its NIL tail).
    const many = list(R, atom('m'), atom('f'), list(...Array.from({ length: 12 }, (_, i) => small(i))));
    const wide = message(new DirectionDecoder().decode(plain(OPS.SPAWN_REQUEST.control, many)));
    expect(wide.payloadHead?.call).toEqual({ module: 'm', function: 'f', arity: 12 });
    const improper = [108, ...u32(2), ...small(1), ...small(2), ...atom('tail')];
    const bad = message(new DirectionDecoder().decode(plain(OPS.SPAWN_REQUEST.control, list(R, atom('m'), atom('f'), improper))));
    expect(bad.payloadHead?.call).toEqual({ module: 'm', function: 'f', arity: undefined });
    expect(dec('MONITOR_P').control).toMatchObject({ to: { type: 'name', name: 'echo' } });
    expect(dec('SPAWN_REPLY').control).toMatchObject({ flags: 2, result: { type: 'pid', id: 2 } });
    expect(dec('SPAWN_REPLY_TT').control).toMatchObject({ result: 'badarg' });
    expect(dec('UNLINK_ID_ACK').control).toMatchObject({ id: 0x0807060504030201n });
    expect(dec('ALTACT_SIG_SEND').control).toMatchObject({ flags: 9, to: { type: 'name', name: 'echo' } });

    // rex's gen_call {call, M, F, Args, GL}, a system message, an io request.
    const head = (payload: Bytes) => message(new DirectionDecoder().decode(plain(OPS.REG_SEND.control, payload))).payloadHead;
    const from = tuple(P, R);
    expect(head(tuple(atom('$gen_call'), from, tuple(atom('call'), atom('os'), atom('cmd'), list(list(small(105))), P)))).toMatchObject({
      tag: '$gen_call',
      request: 'call',
      call: { module: 'os', function: 'cmd', arity: 1 },
    });
    expect(head(tuple(atom('system'), from, atom('get_state')))).toMatchObject({ tag: 'system', request: 'get_state' });
    expect(head(tuple(atom('io_request'), P, R, tuple(atom('put_chars'), atom('unicode'), [109, ...u32(2), 104, 105])))).toMatchObject({ tag: 'io_request', request: 'put_chars' });
    expect(head(tuple(atom('$gen_cast'), tuple(atom('cast'), atom('m'), atom('f'), nil, P)))).toMatchObject({ request: 'cast', call: { module: 'm', function: 'f', arity: 0 } });
  });

  it('rejects control messages of the wrong shape, and passes unknown operations as UNKNOWN', () => {
    const bad = (frame: Buffer) => errorOf(new DirectionDecoder().decode(frame));
    expect(bad(plain(tuple(small(6), atom('x'), EMPTY, atom('echo')), MSG)).code).toBe('bad_control'); // from is not a pid
    expect(bad(plain(tuple(small(1), P)))).toMatchObject({ code: 'bad_control', reason: expect.stringMatching(/LINK: tuple of 2/) });
    expect(bad(plain(atom('link'))).code).toBe('bad_control');
    expect(bad(plain(tuple(atom('x'), P))).code).toBe('bad_control');
    expect(bad(plain(tuple(small(29), R, P, P, tuple(atom('m'), atom('f')), nil), nil)).code).toBe('bad_control');
    expect(bad(plain(OPS.SEND.control, MSG, nil))).toMatchObject({ code: 'trailing_bytes' });
    const u = message(new DirectionDecoder().decode(plain(tuple(small(99), P), MSG)));
    expect(u.control).toMatchObject({ op: 'UNKNOWN', code: 99 });
    expect((u.control as Extract<Control, { op: 'UNKNOWN' }>).term.arity).toBe(2);
  });
});

describe('headers and the atom cache', () => {
  it('a tick is an empty frame', () => {
    const d = new DirectionDecoder();
    expect(d.decode(Buffer.alloc(0))).toEqual({ kind: 'tick' });
    expect(d.ticks).toBe(1);
  });

  it('new entries fill slots that later messages refer to without the text; long atoms use 2-byte lengths', () => {
    const d = new DirectionDecoder();
    // {6, From, '', echo} with '' and echo as new entries in slots 5 and 1800 (segment 7).
    const m1 = message(d.decode(normal([{ slot: 5, atom: '' }, { slot: 1800, atom: 'echo' }], tuple(small(6), P, cacheRef(0), cacheRef(1)), MSG)));
    expect(m1.control).toMatchObject({ toName: 'echo' });
    // The same slots by reference only, in the other order.
    const m2 = message(d.decode(normal([{ slot: 1800 }, { slot: 5 }], tuple(small(6), P, cacheRef(1), cacheRef(0)), MSG)));
    expect(m2.control).toMatchObject({ toName: 'echo' });
    // Three references (odd: the long-atoms half byte shares the last byte) with a 300-byte atom.
    const long = 'ü'.repeat(150);
    const frame = Buffer.from([131, 68, ...cacheRefs([{ slot: 5 }, { slot: 6, atom: long }, { slot: 1800 }], true), ...tuple(small(6), P, cacheRef(0), cacheRef(1)), ...MSG]);
    expect(message(d.decode(frame)).control).toMatchObject({ toName: long });
    // A slot overwritten: the new atom wins.
    message(d.decode(normal([{ slot: 1800, atom: 'other' }], tuple(small(6), P, EMPTY, cacheRef(0)), MSG)));
    expect(message(d.decode(normal([{ slot: 1800 }], tuple(small(6), P, EMPTY, cacheRef(0)), MSG))).control).toMatchObject({ toName: 'other' });
    expect(d.cache.size).toBe(3);
  });

  it('a reference to an empty slot, or past the header, is bad_cache_ref', () => {
    expect(errorOf(new DirectionDecoder().decode(normal([{ slot: 42 }], tuple(small(6), P, EMPTY, cacheRef(0)), MSG)))).toMatchObject({
      code: 'bad_cache_ref',
      reason: expect.stringMatching(/slot 42 is empty/),
    });
    expect(errorOf(new DirectionDecoder().decode(normal([{ slot: 1, atom: 'x' }], tuple(small(6), P, EMPTY, cacheRef(1)), MSG))).code).toBe('bad_cache_ref');
    // Each direction has its own cache: a slot written one way is empty the other way.
    const ab = new DirectionDecoder();
    const ba = new DirectionDecoder();
    message(ab.decode(normal([{ slot: 3, atom: 'echo' }], tuple(small(6), P, EMPTY, cacheRef(0)), MSG)));
    expect(errorOf(ba.decode(normal([{ slot: 3 }], tuple(small(6), P, EMPTY, cacheRef(0)), MSG))).code).toBe('bad_cache_ref');
  });

  it('malformed headers are bad_header', () => {
    for (const [frame, why] of [
      [[131], /header type truncated/],
      [[7, 1, 2], /neither 131 nor 112/],
      [[131, 99, 0], /unknown distribution header type 99/],
      [[131, 68], /NumberOfAtomCacheRefs truncated/],
      [[131, 68, 3, 0x88], /flags truncated/],
      [[131, 68, 1, 0x08, 0], /atom cache reference truncated|entry length truncated/],
      [[131, 68, 1, 0x08, 0, 10, 97, 98], /entry text truncated/],
      [[131, 68, 1, 0x08, 0, 2, 0xc3, 0x28], /not valid UTF-8/],
      [[131, 69, 0, 0, 0, 1], /fragment header truncated/],
      [[131, 69, ...u64(1n), ...u64(0n), 0], /fragment id 0/],
      [[112, 97, 1], /does not start with 131/],
    ] as const) {
      expect(errorOf(new DirectionDecoder().decode(Buffer.from(frame))), String(frame)).toMatchObject({ code: 'bad_header', reason: expect.stringMatching(why) });
    }
  });

  it('the pass-through header: every term with its own 131, no cache', () => {
    const m = message(new DirectionDecoder().decode(Buffer.from([112, 131, ...OPS.REG_SEND.control, 131, ...MSG])));
    expect(m.control).toMatchObject({ op: 'REG_SEND', toName: 'echo' });
    expect(errorOf(new DirectionDecoder().decode(Buffer.from([112, 131, ...tuple(small(6), P, EMPTY, cacheRef(0)), 131, ...MSG]))).code).toBe('bad_cache_ref');
  });

  it('a compressed term (tag 80), which OTP never sends on a link, is refused', () => {
    expect(errorOf(new DirectionDecoder().decode(plain(OPS.SEND.control, [80, 0, 0, 0, 3, 0x78, 0x9c]))).code).toBe('bad_tag');
  });
});

describe('fragments', () => {
  // One REG_SEND with a cache entry in its first fragment, cut into `parts`.
  const body = [...tuple(small(6), P, EMPTY, cacheRef(0)), ...tuple(atom('big'), [109, ...u32(300), ...new Array<number>(300).fill(7)], atom('end'))];
  const cuts = (parts: number) => Array.from({ length: parts }, (_, i) => body.slice(Math.floor((i * body.length) / parts), Math.floor(((i + 1) * body.length) / parts)));
  const frames = (seq: bigint, parts: number, name = 'echo') =>
    cuts(parts).map((data, i) => (i === 0 ? first(seq, BigInt(parts), [{ slot: 9, atom: name }], data) : cont(seq, BigInt(parts - i), data)));

  it('reassembles a message from its fragments, cut anywhere, the cache updated at the first', () => {
    for (const parts of [1, 2, 3, 7, 50]) {
      const d = new DirectionDecoder();
      const fs = frames(77n, parts);
      fs.slice(0, -1).forEach((f) => expect(d.decode(f)).toEqual({ kind: 'fragment-pending', sequence: 77n }));
      const m = message(d.decode(fs[fs.length - 1]!));
      expect(m).toMatchObject({ fragments: parts, bytes: body.length, header: 'normal', sequence: 77n, control: { op: 'REG_SEND', toName: 'echo' }, payloadHead: { tag: 'big' } });
      expect(d.fragments.inFlight).toBe(0);
      expect(d.fragments.heldBytes).toBe(0);
    }
  });

  it('interleaved sequences, with other messages between them using the cache slots the first fragments wrote', () => {
    const d = new DirectionDecoder();
    const a = frames(1n, 3, 'alpha');
    const b = frames(2n, 2, 'beta');
    expect(d.decode(a[0]!).kind).toBe('fragment-pending');
    expect(d.decode(b[0]!).kind).toBe('fragment-pending');
    // Slot 9 now holds beta (b's first fragment wrote it last), as in the receiving VM.
    expect(message(d.decode(normal([{ slot: 9 }], tuple(small(6), P, EMPTY, cacheRef(0)), MSG))).control).toMatchObject({ toName: 'beta' });
    expect(d.decode(a[1]!).kind).toBe('fragment-pending');
    expect(d.fragments.inFlight).toBe(2);
    expect(message(d.decode(b[1]!)).control).toMatchObject({ toName: 'beta' });
    // Each message keeps the reference table of its own first fragment.
    expect(message(d.decode(a[2]!)).control).toMatchObject({ toName: 'alpha' });
  });

  it('out of order, unknown, duplicate: typed errors', () => {
    const fs = frames(5n, 3);
    let d = new DirectionDecoder();
    d.decode(fs[0]!);
    expect(errorOf(d.decode(fs[2]!))).toMatchObject({ code: 'fragment_out_of_order', reason: expect.stringMatching(/fragment 1 where 2 was due/) });
    d = new DirectionDecoder();
    expect(errorOf(d.decode(fs[1]!)).code).toBe('fragment_unknown_sequence');
    d = new DirectionDecoder();
    d.decode(fs[0]!);
    expect(errorOf(d.decode(fs[0]!)).code).toBe('fragment_duplicate_sequence');
    // A finished sequence is gone: its id continued again is unknown.
    d = new DirectionDecoder();
    for (const f of fs) d.decode(f);
    expect(errorOf(d.decode(fs[2]!)).code).toBe('fragment_unknown_sequence');
    // A message whose fragments end inside a term is truncated, not a hang.
    d = new DirectionDecoder();
    d.decode(first(6n, 2n, [{ slot: 9, atom: 'echo' }], body.slice(0, 10)));
    expect(errorOf(d.decode(cont(6n, 1n, body.slice(10, 20)))).code).toBe('truncated');
  });

  it('never-finished sequences are bounded: too many in flight, too many bytes, too many fragments declared', () => {
    const d = new DirectionDecoder();
    for (let i = 0; i < DIST_MAX_FRAGMENT_SEQUENCES; i++) expect(d.decode(first(BigInt(i), 2n, [], [104])).kind).toBe('fragment-pending');
    expect(errorOf(d.decode(first(99_999n, 2n, [], [104])))).toMatchObject({ code: 'fragment_too_many_sequences' });
    const small2 = new DirectionDecoder({ ...DEFAULT_FRAGMENT_LIMITS, maxBytes: 1000 });
    small2.decode(first(1n, 100n, [], new Array<number>(400).fill(104)));
    small2.decode(first(2n, 100n, [], new Array<number>(400).fill(104)));
    expect(errorOf(small2.decode(cont(1n, 99n, new Array<number>(400).fill(104))))).toMatchObject({ code: 'fragment_too_large' });
    expect(errorOf(new DirectionDecoder().decode(first(1n, 1n << 40n, [], [104]))).code).toBe('fragment_too_large');
  });
});

describe('hostile terms', () => {
  it('a payload nested over DIST_MAX_TERM_DEPTH is too_deep', () => {
    const deep = Buffer.concat([plain(OPS.SEND.control), Buffer.alloc((DIST_MAX_TERM_DEPTH + 1) * 2, Buffer.from([104, 1])), Buffer.from(nil)]);
    expect(errorOf(new DirectionDecoder().decode(deep)).code).toBe('too_deep');
    const ok = Buffer.concat([plain(OPS.SEND.control), Buffer.alloc((DIST_MAX_TERM_DEPTH - 1) * 2, Buffer.from([104, 1])), Buffer.from(nil)]);
    expect(message(new DirectionDecoder().decode(ok)).payloadHead?.term).toMatchObject({ type: 'tuple', arity: 1 });
  });

  it('every cut of a valid frame is a typed error, never a throw', () => {
    for (const [op, { control, payload }] of Object.entries(OPS)) {
      const frame = plain(control, ...(payload ? [payload] : []));
      for (let cut = 1; cut < frame.length; cut++) {
        const r = new DirectionDecoder().decode(frame.subarray(0, cut));
        if (r.kind === 'message') {
          // Only a cut right after the control tuple of an operation without a payload can be whole.
          throw new Error(`${op} cut at ${cut} of ${frame.length} decoded`);
        }
        expect(r.kind, `${op} cut at ${cut}`).toBe('error');
      }
    }
  });

  it('random bytes after a valid header never throw', () => {
    let state = 12345;
    const rnd = () => (state = (state * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let i = 0; i < 3000; i++) {
      const junk = Array.from({ length: 1 + Math.floor(rnd() * 40) }, () => Math.floor(rnd() * 256));
      const r = new DirectionDecoder().decode(Buffer.from([131, 68, 0, ...junk]));
      expect(['message', 'error']).toContain(r.kind);
    }
  });

  it('after an error the direction stays failed: its state is no longer the peer VM\'s', () => {
    const d = new DirectionDecoder();
    const e = errorOf(d.decode(Buffer.from([131, 99])));
    expect(d.decode(plain(OPS.LINK.control))).toEqual({ kind: 'error', ...e });
    expect(d.decode(Buffer.alloc(0))).toEqual({ kind: 'error', ...e });
    expect(d.error).toEqual(e);
  });
});
