// The distribution firewall without a network: the roster vocabulary (every
// error by key path), how the rules that apply to one link combine, the
// verdict on each operation and message shape, the per-link filter over
// frames cut anywhere (fragments held and released whole, a frame that does
// not decode), and the spawn reply a denied request gets, read back by the
// decoder.

import { describe, expect, it } from 'vitest';
import { parseRoster } from '../../src/config/roster.js';
import { DirectionDecoder } from '../../src/dist/decoder.js';
import { HoldBudget } from '../../src/filter/hold-budget.js';
import { InboundFilter } from '../../src/filter/link-filter.js';
import { deniedSpawnReply } from '../../src/filter/spawn-reply.js';
import { judge } from '../../src/filter/verdict.js';
import { filterLines, type LinkFilter, linkFilter } from '../../src/policy/filter.js';
import type { Pid, Ref } from '../../src/dist/term.js';
import { atom, type Bytes, cont, first, list, nil, pid, plain, ref, small, tuple, u32 } from '../helpers/etf-write.js';
import { rosterProblems } from '../helpers/roster.js';

const BASE = `
gateways:
  alpha: { host: alpha.lab, address: "10.0.0.1:4370" }
  beta:  { host: beta.lab,  address: "10.0.0.2:4370" }
  gamma: { host: gamma.lab, address: "10.0.0.3:4370" }
nodes:
  - { name: t1@alpha.lab, gateway: alpha, port: 5001 }
  - { name: t2@beta.lab,  gateway: beta,  port: 5001 }
  - { name: admin@gamma.lab, gateway: gamma, port: 5001 }
tls: { ca: ca.pem, cert: "{gateway}.pem", key: "{gateway}-key.pem" }
`;

const policy = (allow: string) => `${BASE}
policy:
  groups:
    tenants: [t1@alpha.lab, t2@beta.lab]
    admin: [admin@gamma.lab]
  allow:
${allow}`;

const FILTERED = policy(`    - between: [tenants, admin]
      filter:
        tenants: { profile: messages, names: [bg_api], calls: ["erlang:phash2/1"] }
        admin: full
`);

describe('firewall: roster vocabulary', () => {
  it('reads a rule filter per group, profiles by name or mapping', () => {
    const r = parseRoster(FILTERED, '/etc/beamgate');
    const rule = r.policy!.rules[0]!;
    expect(rule.filter!.get('tenants')).toEqual({ profile: 'messages', names: new Set(['bg_api']), calls: new Set(['erlang:phash2/1']), onDeny: 'drop' });
    expect(rule.filter!.get('admin')).toEqual({ profile: 'full', names: new Set(), calls: new Set(), onDeny: 'drop' });
    // What `check` prints under the policy matrix.
    expect(filterLines(r.policy!)).toEqual(['filter tenants -> admin: messages; names bg_api; calls erlang:phash2/1; on_deny drop', 'filter admin -> tenants: full']);
  });

  it('names every problem by key path', () => {
    const errs = rosterProblems(
      policy(`    - between: [tenants, admin]
      filter:
        tenants: { profile: mesages, extra: 1 }
        others: full
    - between: [admin]
      filter: full
    - between: [tenants]
      filter:
        tenants: { profile: full, names: [x] }
`),
    );
    expect(errs).toEqual(
      expect.arrayContaining([
        'policy.allow[0].filter.tenants.extra: unknown key (expected one of: profile, names, calls, on_deny)',
        'policy.allow[0].filter.tenants.profile: is required: one of full, messages',
        'policy.allow[0].filter.others: is not a group of this rule (tenants, admin)',
        'policy.allow[0].filter.admin: is required: once a rule has a filter, say what each of its groups may send (full or messages at least)',
        'policy.allow[1].filter: must be a mapping from each group of the rule (admin) to a profile (full, messages) or { profile, names, calls, on_deny }',
        'policy.allow[2].filter.tenants.names: has no effect: profile full lets everything through',
      ]),
    );
    const more = rosterProblems(
      policy(`    - between: [tenants, admin]
      filter:
        tenants: { profile: messages, names: [rex, "a b", bg, bg], calls: ["os:cmd", "m:f/1"], on_deny: explode }
        admin: nonsense
`),
    );
    expect(more).toEqual(
      expect.arrayContaining([
        'policy.allow[0].filter.tenants.names[0]: rex runs any function it is asked to: list the functions under calls instead',
        'policy.allow[0].filter.tenants.names[1]: "a b" is not a registered name (an atom\'s text, no spaces or quotes)',
        'policy.allow[0].filter.tenants.names[3]: "bg" is listed twice',
        'policy.allow[0].filter.tenants.calls[0]: "os:cmd" is not Module:Function/Arity',
        'policy.allow[0].filter.tenants.on_deny: must be one of drop, cut',
        'policy.allow[0].filter.admin: unknown profile "nonsense" (known: full, messages)',
      ]),
    );
    expect(more.some((e) => e.includes('calls[1]'))).toBe(false);
  });
});

describe('firewall: which filter a link gets', () => {
  it('the receiver enforces what the sender group may send; a rule without filter leaves the link unfiltered', () => {
    const p = parseRoster(FILTERED, '/etc/beamgate').policy!;
    const toAdmin = linkFilter(p, 't1@alpha.lab', 'admin@gamma.lab', false)!;
    expect(toAdmin).toMatchObject({ full: false, cut: false, fromGroup: 'tenants', toGroup: 'admin' });
    expect([...toAdmin.names]).toEqual(['bg_api']);
    expect(linkFilter(p, 'admin@gamma.lab', 't1@alpha.lab', false)).toMatchObject({ full: true, fromGroup: 'admin', toGroup: 'tenants' });
    const open = parseRoster(policy('    - between: [tenants, admin]\n'), '/etc/beamgate').policy!;
    expect(linkFilter(open, 't1@alpha.lab', 'admin@gamma.lab', false)).toBeUndefined();
    expect(linkFilter(undefined, 't1@alpha.lab', 'admin@gamma.lab', false)).toBeUndefined();
  });

  it('rules that apply to one link add up: names and calls joined, full wins, cut if any says cut; an unfiltered rule makes it unfiltered', () => {
    const two = `${BASE}
policy:
  groups:
    tenants: [t1@alpha.lab, t2@beta.lab]
    readers: [t1@alpha.lab]
    admin: [admin@gamma.lab]
  allow:
    - between: [tenants, admin]
      filter: { tenants: { profile: messages, names: [a] }, admin: full }
    - between: [readers, admin]
      filter: { readers: { profile: messages, names: [b], calls: ["m:f/0"], on_deny: cut }, admin: full }
`;
    const p = parseRoster(two, '/etc/beamgate').policy!;
    const f = linkFilter(p, 't1@alpha.lab', 'admin@gamma.lab', false)!;
    expect({ full: f.full, cut: f.cut, names: [...f.names].sort(), calls: [...f.calls] }).toEqual({ full: false, cut: true, names: ['a', 'b'], calls: ['m:f/0'] });
    expect(linkFilter(p, 't2@beta.lab', 'admin@gamma.lab', false)).toMatchObject({ cut: false, names: new Set(['a']) });
    const mixed = parseRoster(two.replace('    - between: [readers, admin]\n      filter: { readers: { profile: messages, names: [b], calls: ["m:f/0"], on_deny: cut }, admin: full }\n', '    - between: [readers, admin]\n'), '/etc/beamgate').policy!;
    expect(linkFilter(mixed, 't1@alpha.lab', 'admin@gamma.lab', false)).toBeUndefined();
  });
});

// --- messages as OTP sends them (control tuple, then payload) ---
const A = pid(1, 't1@alpha.lab');
const B = pid(2, 'admin@gamma.lab');
const R = ref(9, 't1@alpha.lab');
const E = atom('');
const from = tuple(A, R);
const M: LinkFilter = { full: false, names: new Set(['bg_api']), calls: new Set(['erlang:phash2/1']), cut: false, fromGroup: 'tenants', toGroup: 'admin' };

function verdictOf(...terms: Bytes[]) {
  const d = new DirectionDecoder();
  const r = d.decode(plain(...terms));
  if (r.kind !== 'message') throw new Error(`not a message: ${JSON.stringify(r)}`);
  return judge(r, M);
}
const regSend = (name: string, payload: Bytes) => verdictOf(tuple(small(6), A, E, atom(name)), payload);
const pidSend = (payload: Bytes) => verdictOf(tuple(small(22), A, B), payload);
const spawn = (m: string, f: string, arity: number, args: Bytes) => verdictOf(tuple(small(29), R, A, A, tuple(atom(m), atom(f), small(arity)), nil), args);
const erpcCall = (m: string, f: string, args: Bytes) => spawn('erpc', 'execute_call', 4, list(R, atom(m), atom(f), args));

describe('firewall: the messages profile', () => {
  it('lets through the API and the system traffic a link needs', () => {
    expect(regSend('bg_api', tuple(atom('$gen_call'), from, tuple(atom('get'), atom('k'))))).toEqual({ pass: true });
    expect(regSend('bg_api', tuple(atom('$gen_cast'), atom('ping')))).toEqual({ pass: true });
    expect(regSend('net_kernel', tuple(atom('$gen_call'), from, tuple(atom('is_auth'), atom('t1@alpha.lab'))))).toEqual({ pass: true });
    expect(regSend('rex', tuple(A, atom('features_request')))).toEqual({ pass: true });
    expect(regSend('global_name_server', tuple(atom('init_connect'), small(1)))).toEqual({ pass: true });
    expect(pidSend(tuple(R, atom('reply')))).toEqual({ pass: true });
    expect(verdictOf(tuple(small(33), A, R), tuple(R, atom('reply')))).toEqual({ pass: true });
    expect(erpcCall('erlang', 'phash2', list(atom('x')))).toEqual({ pass: true });
    for (const c of [tuple(small(1), A, B), tuple(small(19), A, B, R), tuple(small(35), small(5), A, B), tuple(small(31), R, B, small(0), B)]) expect(verdictOf(c)).toEqual({ pass: true });
  });

  it('denies spawns, exit/2, group_leader, unlisted names, and the dangerous shapes to any process', () => {
    expect(erpcCall('os', 'cmd', list(list(small(105))))).toMatchObject({ pass: false, op: 'SPAWN_REQUEST', target: 'os:cmd/1' });
    expect(erpcCall('erpc', 'call', list(atom('t2@beta.lab'), atom('erlang'), atom('node'), nil))).toMatchObject({ pass: false, target: 'erpc:call/4' });
    expect(spawn('erlang', 'phash2', 1, list(atom('x')))).toEqual({ pass: true });
    expect(spawn('os', 'cmd', 1, list(nil))).toMatchObject({ pass: false, target: 'os:cmd/1' });
    expect(verdictOf(tuple(small(26), A, B), atom('kill'))).toMatchObject({ pass: false, op: 'PAYLOAD_EXIT2' });
    expect(verdictOf(tuple(small(7), A, B))).toMatchObject({ pass: false, op: 'GROUP_LEADER' });
    expect(regSend('code_server', tuple(atom('code_call'), A, atom('x')))).toMatchObject({ pass: false, target: 'code_server', why: 'registered name code_server is not listed' });
    expect(regSend('rex', tuple(atom('$gen_call'), from, tuple(atom('call'), atom('os'), atom('cmd'), list(nil), A)))).toMatchObject({ pass: false, target: 'rex' });
    expect(regSend('net_kernel', tuple(atom('$gen_call'), from, tuple(atom('connect'), atom('x'))))).toMatchObject({ pass: false, target: 'net_kernel' });
    expect(regSend('bg_api', tuple(atom('system'), from, atom('get_state')))).toMatchObject({ pass: false, why: 'a sys message (get_state) to bg_api' });
    expect(pidSend(tuple(atom('io_request'), A, R, tuple(atom('put_chars'), atom('unicode'), nil)))).toMatchObject({ pass: false, target: 'pid' });
    expect(pidSend(tuple(atom('EXIT'), A, atom('kill')))).toMatchObject({ pass: false });
    expect(pidSend(tuple(atom('$gen_call'), from, atom('which_children')))).toMatchObject({ pass: false, why: 'a supervisor call (which_children) to a pid' });
    expect(pidSend(tuple(atom('$gen_call'), from, tuple(atom('call'), atom('os'), atom('cmd'), list(nil), A)))).toMatchObject({ pass: false });
    // OTP 28+: an exit signal sent as ALTACT_SIG_SEND, and a send to a name.
    expect(verdictOf(tuple(small(37), small(16), A, B), atom('kill'))).toMatchObject({ pass: false, op: 'ALTACT_SIG_SEND' });
    expect(verdictOf(tuple(small(37), small(8), A, atom('secret')), atom('x'))).toMatchObject({ pass: false, target: 'secret' });
    expect(verdictOf(tuple(small(99), A))).toMatchObject({ pass: false, op: 'UNKNOWN' });
  });

  it('full lets everything through', () => {
    const d = new DirectionDecoder();
    const r = d.decode(plain(tuple(small(7), A, B)));
    expect(r.kind === 'message' && judge(r, { ...M, full: true })).toEqual({ pass: true });
  });
});

const frame = (body: Buffer) => Buffer.concat([Buffer.from(u32(body.length)), body]);

describe('firewall: one link direction', () => {
  const allowedMsg = frame(plain(tuple(small(6), A, E, atom('bg_api')), tuple(atom('$gen_cast'), atom('ping'))));
  const deniedMsg = frame(plain(tuple(small(7), A, B)));
  const tick = Buffer.from([0, 0, 0, 0]);
  const stream = Buffer.concat([allowedMsg, tick, deniedMsg, allowedMsg]);

  it('passes whole frames in order and drops the denied ones, however the bytes are cut', () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const f = new InboundFilter(M, 1 << 20);
      const a = f.push(stream.subarray(0, cut));
      const b = f.push(stream.subarray(cut));
      expect(Buffer.concat([...a.forward, ...b.forward])).toEqual(Buffer.concat([allowedMsg, tick, allowedMsg]));
      expect([...a.denied, ...b.denied].map((d) => d.op)).toEqual(['GROUP_LEADER']);
      expect(f.heldBytes).toBe(0);
    }
  });

  it('holds the fragments of a message until its last one, then passes or drops them together', () => {
    const body = [...tuple(small(6), A, E, atom('bg_api')), ...tuple(atom('$gen_cast'), atom('ping'))];
    const half = Math.floor(body.length / 2);
    const frags = [frame(first(5n, 2n, [], body.slice(0, half))), frame(cont(5n, 1n, body.slice(half)))];
    const f = new InboundFilter(M, 1 << 20);
    expect(f.push(frags[0]!).forward).toEqual([]);
    expect(f.heldBytes).toBe(frags[0]!.length);
    // Another message between the fragments goes on at once.
    expect(f.push(allowedMsg).forward).toEqual([allowedMsg]);
    expect(f.push(frags[1]!).forward).toEqual(frags);
    const bad = [...tuple(small(7), A, B)];
    const g = new InboundFilter(M, 1 << 20);
    g.push(frame(first(6n, 2n, [], bad.slice(0, 3))));
    const out = g.push(frame(cont(6n, 1n, bad.slice(3))));
    expect(out.forward).toEqual([]);
    expect(out.denied.map((d) => d.op)).toEqual(['GROUP_LEADER']);
    expect(g.heldBytes).toBe(0);
  });

  it("what the filtered links hold together is bounded by the gateway's budget: the link that passes it is stopped, the others go on", () => {
    const bin = (n: number): number[] => [109, ...u32(n), ...new Array<number>(n).fill(7)];
    const body = [...tuple(small(6), A, E, atom('bg_api')), ...tuple(atom('$gen_cast'), bin(3000))];
    const half = Math.floor(body.length / 2);
    const firstHalf = (seq: bigint) => frame(first(seq, 2n, [], body.slice(0, half)));
    const lastHalf = (seq: bigint) => frame(cont(seq, 1n, body.slice(half)));
    const budget = new HoldBudget(4096);
    const a = new InboundFilter(M, 1 << 20, budget);
    const b = new InboundFilter(M, 1 << 20, budget);
    // A held fragment counts twice: the raw frame to forward and the decoder's copy to judge.
    expect(a.push(firstHalf(1n)).error).toBeUndefined();
    const aShare = budget.bytes;
    expect(aShare).toBeGreaterThan(2 * half);
    expect(aShare).toBeLessThan(4096);
    // b's first half would take the sum past 4,096 bytes: b stops with a limit, a goes on.
    const over = b.push(firstHalf(2n));
    expect(over.error).toMatchObject({ code: 'hold_budget', limit: true });
    expect(over.error?.reason).toContain('FILTER_MAX_HELD_BYTES');
    b.release();
    expect(budget.bytes).toBe(aShare);
    // a's message completes and passes whole; what it held goes back.
    expect(a.push(lastHalf(1n)).forward).toEqual([firstHalf(1n), lastHalf(1n)]);
    expect(budget.bytes).toBe(0);
    // With the room back, another link may hold as much.
    const c = new InboundFilter(M, 1 << 20, budget);
    expect(c.push(firstHalf(3n)).error).toBeUndefined();
    expect(budget.bytes).toBe(aShare);
    c.release();
    a.release();
    expect(budget.bytes).toBe(0);
  });

  it('a frame that does not decode stops the direction', () => {
    const f = new InboundFilter(M, 1 << 20);
    const out = f.push(Buffer.concat([frame(Buffer.from([131, 68, 0, 104, 5])), allowedMsg]));
    expect(out.error?.code).toBe('truncated');
    expect(out.forward).toEqual([]);
  });

  it("a denied spawn's reply decodes as the SPAWN_REPLY the requester waits for, in either header form", () => {
    const d = new DirectionDecoder();
    const req = d.decode(plain(tuple(small(29), R, A, A, tuple(atom('os'), atom('cmd'), small(1)), nil), list(nil)));
    if (req.kind !== 'message' || req.control.op !== 'SPAWN_REQUEST') throw new Error('not a spawn request');
    for (const header of ['normal', 'pass-through'] as const) {
      const reply = deniedSpawnReply(req.control.reqId as Ref, req.control.from as Pid, header);
      expect(reply.readUInt32BE(0)).toBe(reply.length - 4);
      const r = new DirectionDecoder().decode(reply.subarray(4));
      expect(r).toMatchObject({ kind: 'message', header, control: { op: 'SPAWN_REPLY', reqId: req.control.reqId, to: req.control.from, flags: 0, result: 'beamgate_denied' } });
    }
  });
});
