// Issue 18 with real parts: the distribution firewall. Three namespace
// hosts; tenants t1 (alpha) and t2 (beta) may link with admin (gamma), and
// the rule's filter lets tenants send admin only the `messages` profile with
// one listed server (bg_api) and one listed call (erlang:phash2/1), while
// admin may send tenants everything. The attack set a tenant tried before
// (docs/filter.md) is blocked and counted at gamma's gateway, and the API
// keeps working: calls and casts to the named server, replies, monitors,
// links, an allowed erpc call, nodedown when admin stops. Run on every OTP
// release this machine has a runtime for (25, 27, 29).

import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { OtpRuntime } from '../../src/erlang/roots.js';
import { findRuntime } from '../../src/erlang/roots.js';
import { LAB_PORTS, LabCluster } from '../helpers/lab-cluster.js';
import { atom, cacheRefs, cont, first, nil, pid, small, tuple, u32 } from '../helpers/etf-write.js';
import { sample, samplesOf, waitFor } from '../helpers/mesh.js';
import { netnsUnavailableReason } from '../helpers/netns.js';

const T1 = 't1@alpha.lab';
const T2 = 't2@beta.lab';
const ADMIN = 'admin@gamma.lab';
/** An Elixir node beside admin (Debian's Elixir, on the host's OTP), protected the same way. */
const EX = 'ex@gamma.lab';
/** A roster node of alpha no VM runs: the hostile-input test's crafted node (test/helpers/evil-node.mjs) takes its name. */
const EVIL = 'evil@alpha.lab';
const EVIL_NODE = fileURLToPath(new URL('../helpers/evil-node.mjs', import.meta.url));
/** How long a crafted node waits for its link to be cut. */
const CUT_WAIT_MS = 10_000;
/** Short, so a stopped node shows as nodedown quickly; not shorter, for a loaded 2-core machine. */
const NET_TICKTIME_S = 8;
/** How long an attack that is dropped (no answer) waits before the test calls it unanswered. */
const DROPPED_WAIT_MS = 1_500;
/** An answered denial (a spawn's error reply) must come well before any timeout a caller would set. */
const DENIAL_ANSWER_MS = 1_000;

const POLICY = {
  groups: { tenants: [T1, T2], strict: [T2], admin: [ADMIN, EX], rogue: [EVIL] },
  allow: [
    {
      between: ['tenants', 'admin'],
      filter: { tenants: { profile: 'messages', names: ['bg_api', 'bg_elixir'], calls: ['erlang:phash2/1'] }, admin: 'full' } as Record<string, unknown>,
    },
    // admin and ex share gamma, evil shares alpha with t1: those links never cross a gateway.
    { between: ['admin'] },
    { between: ['rogue', 'tenants'] },
    { between: ['rogue', 'admin'], filter: { rogue: 'messages', admin: 'full' } },
    // t2 is also in strict, whose rule cuts the link on a denied message: rules add up, and cut holds if any says so.
    { between: ['strict', 'admin'], filter: { strict: { profile: 'messages', on_deny: 'cut' }, admin: 'full' } },
  ],
};

/**
 * admin's API server, as a plain process answering gen_server's protocol (no
 * compiled module: the same text runs on every release). It records every
 * message it does not expect in `seen`, so a message the filter should have
 * stopped shows up there.
 */
const API_SERVER = String.raw`begin
  Loop = fun Loop(S) -> receive
    {'$gen_call', From, {put, K, V}} -> gen_server:reply(From, ok), Loop(S#{K => V});
    {'$gen_call', From, {get, K}} -> gen_server:reply(From, maps:get(K, S, undefined)), Loop(S);
    {'$gen_call', From, whoami} -> gen_server:reply(From, self()), Loop(S);
    {'$gen_call', From, {whereis, N}} -> gen_server:reply(From, whereis(N)), Loop(S);
    {'$gen_call', From, group_leader} -> gen_server:reply(From, element(2, process_info(self(), group_leader))), Loop(S);
    {'$gen_call', From, temp} -> P = spawn(fun() -> receive {die, R} -> exit(R) end end), gen_server:reply(From, P), Loop(S);
    {'$gen_call', From, seen} -> gen_server:reply(From, lists:reverse(maps:get(seen, S, []))), Loop(S);
    {'$gen_cast', {note, X}} -> Loop(S#{notes => [X | maps:get(notes, S, [])]});
    {'$gen_call', From, notes} -> gen_server:reply(From, maps:get(notes, S, [])), Loop(S);
    Other -> Loop(S#{seen => [Other | maps:get(seen, S, [])]})
  end end,
  P = spawn(fun() -> Loop(#{}) end), register(bg_api, P), P
end`;

const unavailable = netnsUnavailableReason();
if (unavailable) console.warn(`firewall.test.ts: SKIPPED, network namespaces cannot be made here: ${unavailable}`);
const releases = ['25', '27', '29'].flatMap((otp) => {
  const r = findRuntime(otp);
  if (typeof r === 'string') {
    console.warn(`firewall.test.ts: OTP ${otp} SKIPPED: ${r}`);
    return [];
  }
  return [r];
});

describe.runIf(unavailable === null).each(releases.map((r) => [r.otp, r] as const))('firewall on OTP %s: tenants may use admin\'s API, not own admin', (_otp, runtime: OtpRuntime) => {
  let c: LabCluster;

  beforeAll(async () => {
    c = await LabCluster.start({ alpha: { erlang: ['t1', 'evil'] }, beta: { erlang: ['t2'] }, gamma: { erlang: ['admin'], elixir: ['ex'] } }, { nodeArgs: ['-kernel', 'net_ticktime', String(NET_TICKTIME_S), '-kernel', 'start_pg', 'true'], policy: POLICY, runtime });
    await Promise.all([c.startErlang(T1), c.startErlang(T2), c.startErlang(ADMIN), c.startElixir(EX)]);
    await c.node(ADMIN).eval(API_SERVER);
    expect(await ping(T1, ADMIN)).toBe('pong');
    expect(await ping(T2, ADMIN)).toBe('pong');
  }, 180_000);

  afterAll(async () => {
    await c?.stop();
  });

  const ping = (from: string, to: string) => c.node(from).eval(`net_adm:ping('${to}')`);
  const t1 = (expr: string, timeoutMs?: number) => c.node(T1).eval(expr, timeoutMs);
  const metrics = () => c.gw('gamma').metrics();
  /** Denials of one operation counted at gamma so far; a series that does not exist yet has counted none. */
  const deniedNow = async (op: string) => samplesOf(await metrics(), 'beamgate_dist_denied_total', { from_group: 'tenants', to_group: 'admin', op }).reduce((a, b) => a + b, 0);
  /** Waits until gamma counted one more denial of `op` than `before`, and its log line names both nodes. */
  async function expectDenied(op: string, before: number, target: string): Promise<void> {
    await waitFor(`gamma counts a denied ${op}`, async () => sample(await metrics(), 'beamgate_dist_denied_total', { from_group: 'tenants', to_group: 'admin', op }) > before, 10_000);
    const line = c.gw('gamma').logs.find((l) => l.msg === 'dist message denied' && l.op === op && l.target === target && l.to_node === ADMIN);
    expect(line, `a 'dist message denied' line for ${op} to ${target}`).toMatchObject({ from_node: T1, to_node: ADMIN, from_group: 'tenants', to_group: 'admin', action: 'drop', peer: 'alpha' });
  }
  const seenByApi = () => t1(`gen_server:call({bg_api, '${ADMIN}'}, seen, 5000)`);

  it("the API works: calls, casts, replies; an allowed erpc call runs", async () => {
    expect(await t1(`gen_server:call({bg_api, '${ADMIN}'}, {put, k, v1}, 5000)`)).toBe('ok');
    expect(await t1(`gen_server:call({bg_api, '${ADMIN}'}, {get, k}, 5000)`)).toBe('v1');
    expect(await t1(`gen_server:cast({bg_api, '${ADMIN}'}, {note, hello}), gen_server:call({bg_api, '${ADMIN}'}, notes, 5000)`)).toBe('[hello]');
    expect(await t1(`erpc:call('${ADMIN}', erlang, phash2, [x], 5000) =:= erlang:phash2(x)`)).toBe('true');
  });

  it('an Elixir node: its named process answers, an erpc call of os:cmd is denied at once', async () => {
    expect(await t1(`{bg_elixir, '${EX}'} ! {echo, self(), hi}, receive {elixir_echo, N, hi} -> N after 10000 -> none end`)).toBe(`'${EX}'`);
    expect(await t1(`try erpc:call('${EX}', os, cmd, ["id -u"], 20000) catch error:E -> E end`)).toBe('{erpc,beamgate_denied}');
    expect(c.gw('gamma').logs.some((l) => l.msg === 'dist message denied' && l.to_node === EX && l.target === 'os:cmd/1')).toBe(true);
  });

  it('a 100 MB message in fragments and 3,000 new atoms (the 2,048-slot atom cache churning) pass the filtered link whole', async () => {
    const big = await t1(
      `Bin = binary:copy(<<"beamgate">>, 13107200), ok = gen_server:call({bg_api, '${ADMIN}'}, {put, big, Bin}, 60000), erlang:phash2(gen_server:call({bg_api, '${ADMIN}'}, {get, big}, 60000)) =:= erlang:phash2(Bin)`,
      120_000,
    );
    expect(big).toBe('true');
    const atoms = await t1(
      `As = [list_to_atom("fw_atom_" ++ integer_to_list(I)) || I <- lists:seq(1, 3000)], ok = gen_server:call({bg_api, '${ADMIN}'}, {put, atoms, As}, 20000), gen_server:call({bg_api, '${ADMIN}'}, {get, atoms}, 20000) =:= As`,
      60_000,
    );
    expect(atoms).toBe('true');
    await c.node(ADMIN).eval(`gen_server:call(bg_api, {put, big, undefined}), erlang:garbage_collect(whereis(bg_api)), ok`);
    expect(c.gw('gamma').logs.filter((l) => l.reason === 'dist_malformed')).toEqual([]);
  });

  it('the attack set is blocked and counted: os:cmd, rpc, spawn of a fun, a relay to t2, exit/2, group_leader', async () => {
    const spawns = await deniedNow('SPAWN_REQUEST');
    // erpc:call of os:cmd: answered at once with the denial, not after a timeout.
    const started = Date.now();
    expect(await t1(`try erpc:call('${ADMIN}', os, cmd, ["id -u"], 20000) catch error:E -> E end`)).toBe('{erpc,beamgate_denied}');
    expect(Date.now() - started).toBeLessThan(DENIAL_ANSWER_MS + 2_000);
    await expectDenied('SPAWN_REQUEST', spawns, 'os:cmd/1');
    expect(await t1(`case rpc:call('${ADMIN}', erlang, system_info, [otp_release], 20000) of {badrpc, _} -> refused; R -> R end`)).toBe('refused');
    expect(await t1(`try erpc:call('${ADMIN}', erpc, call, ['${T2}', erlang, node, []], 20000) catch error:E -> E end`)).toBe('{erpc,beamgate_denied}');
    // A spawned fun would register a name on admin; spawn/2 raises the denial at once.
    expect(await t1(`try spawn('${ADMIN}', fun() -> register(pwned_spawn, self()), receive after 60000 -> ok end end) catch error:E -> E end`)).toBe('beamgate_denied');
    expect(await c.node(ADMIN).eval('whereis(pwned_spawn)')).toBe('undefined');
    expect(await deniedNow('SPAWN_REQUEST')).toBeGreaterThanOrEqual(spawns + 4);

    // exit(Pid, kill) with the pid from a reply of the server.
    const exits = await deniedNow('PAYLOAD_EXIT2');
    await t1(`exit(gen_server:call({bg_api, '${ADMIN}'}, whoami, 5000), kill)`);
    await expectDenied('PAYLOAD_EXIT2', exits, 'pid');
    expect(await c.node(ADMIN).eval(`is_process_alive(whereis(bg_api))`)).toBe('true');

    // group_leader(self(), Pid): admin's server would send its io to t1.
    const gls = await deniedNow('GROUP_LEADER');
    const glBefore = await c.node(ADMIN).eval(`element(2, process_info(whereis(bg_api), group_leader))`);
    await t1(`group_leader(self(), gen_server:call({bg_api, '${ADMIN}'}, whoami, 5000)), ok`);
    await expectDenied('GROUP_LEADER', gls, 'pid');
    expect(await c.node(ADMIN).eval(`element(2, process_info(whereis(bg_api), group_leader))`)).toBe(glBefore);
  });

  it("the system protocol, io requests and supervisor calls do not reach admin's processes", async () => {
    const denied = async () => sample(await metrics(), 'beamgate_dist_judged_total', { verdict: 'denied' });
    const before = await denied();
    const unanswered = (call: string) => t1(`try ${call} catch exit:{timeout, _} -> unanswered end`, 20_000);
    // sys:get_state of the listed server: {system, From, get_state} to a listed name.
    expect(await unanswered(`sys:get_state({bg_api, '${ADMIN}'}, ${DROPPED_WAIT_MS})`)).toBe('unanswered');
    // The sys protocol to a supervisor by name (not listed): {system, From, get_state} to kernel_sup.
    expect(await unanswered(`sys:get_state({kernel_sup, '${ADMIN}'}, ${DROPPED_WAIT_MS})`)).toBe('unanswered');
    // A supervisor by name (not listed), and by a pid learnt from a reply.
    expect(await unanswered(`gen_server:call({kernel_sup, '${ADMIN}'}, which_children, ${DROPPED_WAIT_MS})`)).toBe('unanswered');
    expect(await unanswered(`gen_server:call(gen_server:call({bg_api, '${ADMIN}'}, {whereis, kernel_sup}, 5000), which_children, ${DROPPED_WAIT_MS})`)).toBe('unanswered');
    // An io request to the group leader of admin's server (admin's console): the request never gets its reply.
    expect(await t1(`GL = gen_server:call({bg_api, '${ADMIN}'}, group_leader, 5000), P = spawn(fun() -> io:format(GL, "pwned~n", []) end), timer:sleep(${DROPPED_WAIT_MS}), R = is_process_alive(P), exit(P, kill), R`, 20_000)).toBe('true');
    await waitFor('gamma counts five more denials', async () => (await denied()) >= before + 5);
    for (const target of ['bg_api', 'kernel_sup', 'pid']) expect(c.gw('gamma').logs.some((l) => l.msg === 'dist message denied' && l.target === target && l.from_node === T1)).toBe(true);
    expect(c.node(ADMIN).log()).not.toContain('pwned');
    // None of it reached the server.
    expect(await seenByApi()).toBe('[]');
  });

  it('monitors, links and their exits cross both ways', async () => {
    const result = await t1(
      `process_flag(trap_exit, true),
       P = gen_server:call({bg_api, '${ADMIN}'}, temp, 5000),
       M = erlang:monitor(process, P), link(P), P ! {die, boom},
       Down = receive {'DOWN', M, process, P, R1} -> R1 after 10000 -> no_down end,
       Exit = receive {'EXIT', P, R2} -> R2 after 10000 -> no_exit end,
       process_flag(trap_exit, false), {Down, Exit}`,
    );
    expect(result).toBe('{boom,boom}');
  });

  it("denied only the attacks: nothing a healthy link needs (ticks, net_kernel, rex's features, global, pg), nothing admin sent", async () => {
    const lines = c.gw('gamma').logs.filter((l) => l.msg === 'dist message denied');
    const targets = new Set(lines.map((l) => String(l.target)));
    console.log(`gamma denied: ${[...new Set(lines.map((l) => `${String(l.op)} ${String(l.target)}`))].join(', ')}`);
    expect([...targets].sort()).toEqual(['bg_api', 'erpc:call/4', 'erlang:system_info/1', 'kernel_sup', 'os:cmd/1', 'pid', expect.stringMatching(/^a fun of /)].sort());
    for (const gw of ['alpha', 'beta']) expect(c.gw(gw).logs.filter((l) => l.msg === 'dist message denied')).toEqual([]);
    // Every link gamma has is a tenant's, and every one is filtered.
    const gm = await c.gw('gamma').metrics();
    expect(sample(gm, 'beamgate_links_filtered')).toBeGreaterThanOrEqual(2);
    expect(sample(gm, 'beamgate_links_filtered')).toBe(sample(gm, 'beamgate_links_open'));
    expect(c.gw('gamma').logs.filter((l) => l.reason === 'dist_malformed')).toEqual([]);
    // Filtered links are on the native data plane: its judge passed most messages on the relay thread and asked about the rest, every denial among them.
    expect(sample(gm, 'beamgate_link_handovers_total', { result: 'native' })).toBeGreaterThanOrEqual(sample(gm, 'beamgate_links_filtered'));
    const questions = sample(gm, 'beamgate_dist_questions_total');
    expect(questions).toBeGreaterThanOrEqual(sample(gm, 'beamgate_dist_judged_total', { verdict: 'denied' }));
    expect(sample(gm, 'beamgate_dist_judged_total', { verdict: 'passed' })).toBeGreaterThan(questions);
  });

  it('hostile input from a node with a genuine link: each malformed message cuts that link with its reason, every other link goes on', async () => {
    const frame = (bytes: number[]) => Buffer.from([...u32(bytes.length), ...bytes]).toString('hex');
    const P = pid(1, EVIL);
    const cases: [string, string, string][] = [
      ['a header cut short', frame([131, 68, 1]), 'bad_header'],
      ['a reference to an empty atom cache slot', frame([131, 68, ...cacheRefs([{ slot: 5 }]), ...tuple(small(6), P, atom(''), [82, 0]), ...atom('x')]), 'bad_cache_ref'],
      ['a continuation of no fragmented message', frame([131, 70, ...cont(9n, 1n, [1, 2, 3]).subarray(2)]), 'fragment_unknown_sequence'],
      ['fragments out of order', frame([...first(4n, 3n, [], [104]).subarray(0)]) + frame([...cont(4n, 1n, [1])]), 'fragment_out_of_order'],
      ['a term nested 20,000 deep', frame([131, 68, 0, ...tuple(small(6), P, atom(''), atom('bg_api')), ...Array.from({ length: 20_000 }, () => [108, 0, 0, 0, 1]).flat(), ...nil]), 'too_deep'],
    ];
    const gamma = c.gw('gamma');
    const rss = async () => sample(await metrics(), 'process_resident_memory_bytes');
    const rssBefore = await rss();
    const alias = c.mesh.roster.gateways.get('gamma')!.loopback;
    for (const [what, hex, code] of cases) {
      const mark = gamma.logs.length;
      const proc = c.lab.spawn('alpha', [process.execPath, EVIL_NODE, alias, String(LAB_PORTS.epmd), EVIL, ADMIN, runtime.otp, String(CUT_WAIT_MS), ...hex.match(/.{1,100000}/g)!], { BG_COOKIE: c.cookie });
      let out = '';
      proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await once(proc, 'exit');
      const r = JSON.parse(out.trim() || '{}') as { handshake?: boolean; closedAfterMs?: number | null; error?: string };
      expect(r, what).toMatchObject({ handshake: true });
      expect(r.closedAfterMs, `${what}: the link was cut`).not.toBeNull();
      await waitFor(`gamma logs ${what}`, () => gamma.logs.slice(mark).find((l) => l.msg === 'link refused' && l.reason === 'dist_malformed'));
      const line = gamma.logs.slice(mark).find((l) => l.msg === 'link refused' && l.reason === 'dist_malformed')!;
      expect(String(line.detail), what).toMatch(new RegExp(`^${code}: `));
      expect(line, what).toMatchObject({ remote_node: EVIL, local_node: ADMIN, peer: 'alpha' });
    }
    // Nothing of it reached admin, t1's link never went down, and the API answers.
    expect(await seenByApi()).toBe('[]');
    expect(await c.node(ADMIN).eval(`lists:member('${T1}', nodes())`)).toBe('true');
    expect(await t1(`gen_server:call({bg_api, '${ADMIN}'}, {get, k}, 5000)`)).toBe('v1');
    expect(await rss()).toBeLessThan(rssBefore + 64 * 1024 * 1024);
  });

  it('a reload turns admin -> tenants from full to messages on the open link: not cut, the atom cache carried over', async () => {
    const admin = (expr: string) => c.node(ADMIN).eval(expr);
    expect(await admin(`erpc:call('${T1}', erlang, node, [], 5000)`)).toBe(`'${T1}'`);
    const opened = sample(await c.gw('alpha').metrics(), 'beamgate_links_opened_total');
    const doc = parse(readFileSync(c.mesh.rosterPath, 'utf8')) as { policy: { allow: { filter?: Record<string, unknown> }[] } };
    // Both rules that filter the tenants' links: admin may now send them only messages.
    for (const rule of doc.policy.allow) if (rule.filter) rule.filter.admin = 'messages';
    writeFileSync(c.mesh.rosterPath, stringify(doc));
    const reloads = sample(await c.gw('alpha').metrics(), 'beamgate_reloads_total', { result: 'ok' });
    c.gw('alpha').signal('SIGHUP');
    await waitFor('alpha reloaded', async () => sample(await c.gw('alpha').metrics(), 'beamgate_reloads_total', { result: 'ok' }) === reloads + 1, 20_000);
    expect(await admin(`try erpc:call('${T1}', erlang, node, [], 20000) catch error:E -> E end`)).toBe('{erpc,beamgate_denied}');
    expect(sample(await c.gw('alpha').metrics(), 'beamgate_dist_denied_total', { from_group: 'admin', to_group: 'tenants', op: 'SPAWN_REQUEST' })).toBeGreaterThanOrEqual(1);
    // The same link still carries admin's replies to t1, which learnt new atoms before the reload and after.
    expect(await t1(`gen_server:call({bg_api, '${ADMIN}'}, {put, after_reload_key, after_reload_value}, 5000)`)).toBe('ok');
    expect(await t1(`gen_server:call({bg_api, '${ADMIN}'}, {get, after_reload_key}, 5000)`)).toBe('after_reload_value');
    expect(sample(await c.gw('alpha').metrics(), 'beamgate_links_opened_total')).toBe(opened);
    expect(c.gw('alpha').logs.some((l) => l.msg === 'link closed' && String(l.reason).includes('filter'))).toBe(false);
  });

  it('on_deny: cut: a denied message from t2 cuts its link, counted as dist_denied; t1 is not touched', async () => {
    const metric = async (labels: Record<string, string>) => sample(await metrics(), 'beamgate_refusals_total', labels);
    const cutBefore = await metric({ reason: 'dist_denied' });
    expect(await c.node(T2).eval(`gen_server:call({bg_api, '${ADMIN}'}, {get, k}, 5000)`)).toBe('v1');
    expect(await c.node(T2).eval(`try erpc:call('${ADMIN}', os, cmd, ["id -u"], 20000) catch error:E -> E end`)).toBe('{erpc,noconnection}');
    await waitFor('gamma counts the cut', async () => (await metric({ reason: 'dist_denied' })) === cutBefore + 1);
    const line = c.gw('gamma').logs.find((l) => l.msg === 'link refused' && l.reason === 'dist_denied');
    expect(String(line?.detail)).toBe('SPAWN_REQUEST to os:cmd/1 denied: a spawn of os:cmd/1, which the filter does not list');
    expect(await c.node(ADMIN).eval(`lists:member('${T1}', nodes())`)).toBe('true');
  });

  it('nodedown reaches t1 when admin stops', async () => {
    // The eval process is the same for every expression: the node monitor set here gets the message read below.
    expect(await t1(`erlang:monitor_node('${ADMIN}', true)`)).toBe('true');
    await c.node(ADMIN).stop();
    expect(await t1(`receive {nodedown, N} -> N after 30000 -> none end`, 40_000)).toBe(`'${ADMIN}'`);
  });
});
