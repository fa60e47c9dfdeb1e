// Issue 3 (items 1-3) and the partition fault of issue 6: three hosts, each a
// network namespace with its own loopback, a gateway and real nodes (one of
// them Elixir). Between hosts only the gateways' TLS ports answer; the
// cluster still forms a full mesh, shares global names and pg groups, takes a
// restarted node back, and survives a partition and its heal.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cookieEnv } from '../../src/erlang/cookie.js';
import type { ErlNode } from '../../src/erlang/node.js';
import { elixirArgs } from '../helpers/elixir-node.js';
import { LAB_HOST_SUFFIX, LAB_PORTS, LabCluster } from '../helpers/lab-cluster.js';
import { hasSeries, sample, waitFor } from '../helpers/mesh.js';
import { labNamespaces, NETNS_PREFIX, NetnsLab, netnsUnavailableReason } from '../helpers/netns.js';
import { compileTraffic, nodeEvents } from '../helpers/traffic.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Every node's tick time, in seconds. Short, so a partition shows as nodedown
 * within about 10 s instead of Erlang's default 60 to 75 s; not shorter, so a
 * loaded 2-core machine does not see false nodedowns.
 */
const NET_TICKTIME_S = 8;
/** How long nodes may take to notice a partition (net_ticktime plus scheduling slack). */
const NODEDOWN_TIMEOUT_MS = NET_TICKTIME_S * 1_000 * 2 + 10_000;
/** How long the mesh may take to become complete again (global's sync after a connection). */
const MESH_TIMEOUT_MS = 45_000;
/**
 * How long a gateway's peer probe may take to notice a change: one probe
 * interval (10 s, src/gateway.ts) plus the TLS handshake timeout (10 s) plus slack.
 */
const PROBE_CHANGE_TIMEOUT_MS = 35_000;

const ALPHA = 'alpha.lab';
const A1 = `a1@${ALPHA}`;
const A2 = `a2@${ALPHA}`;
const B1 = 'b1@beta.lab';
const G1 = 'g1@gamma.lab';
const EX1 = 'ex1@gamma.lab';

const unavailable = netnsUnavailableReason();
if (unavailable) console.warn(`multihost.test.ts: SKIPPED, network namespaces cannot be made here: ${unavailable}`);

/** The atoms in a printed Erlang term, sorted (node names print as quoted atoms). */
function atoms(text: string): string[] {
  return [...text.matchAll(/'([^']+)'/g)].map((m) => m[1]!).sort();
}

describe.runIf(unavailable === null)('multi-host: three hosts in network namespaces, gateways between them', () => {
  let c: LabCluster;
  let workDir: string;

  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'beamgate-mh-'));
    c = await LabCluster.start(
      { alpha: { erlang: ['a1', 'a2'] }, beta: { erlang: ['b1'] }, gamma: { erlang: ['g1'], elixir: ['ex1'] } },
      {
        nodeArgs: ['-kernel', 'net_ticktime', String(NET_TICKTIME_S), '-kernel', 'start_pg', 'true', ...compileTraffic(workDir)],
        operators: [{ gateway: 'gamma', pattern: 'rpc-*' }],
      },
    );
    await c.startAllNodes();
    await Promise.all([c.node(A1), c.node(B1)].map((n) => n.eval('bg_traffic:start_monitor()')));
  }, 150_000);

  afterAll(async () => {
    await c?.stop();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  const erlangNodes = () => [...c.erlang.keys()].sort();

  /** Each node's nodes() (but `except`'s), the Elixir node's read over rpc from an Erlang node of its host. */
  async function views(except?: string): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    const asked = erlangNodes().filter((n) => n !== except);
    await Promise.all(asked.map(async (n) => out.set(n, atoms(await c.node(n).eval('nodes()')))));
    out.set(EX1, atoms(await c.node(G1).eval(`rpc:call('${EX1}', erlang, nodes, [], 5000)`)));
    return out;
  }

  async function meshComplete(): Promise<boolean> {
    const v = await views();
    return c.allNodes.every((n) => JSON.stringify(v.get(n)) === JSON.stringify(c.allNodes.filter((m) => m !== n)));
  }

  /** Connects a1 to everyone and waits until every node sees every other: each test starts from a whole mesh. */
  async function ensureMesh(): Promise<void> {
    for (const n of c.allNodes.filter((m) => m !== A1)) {
      await waitFor(`a1 reaches ${n}`, async () => (await c.node(A1).eval(`net_adm:ping('${n}')`)) === 'pong', MESH_TIMEOUT_MS);
    }
    await waitFor('a complete mesh', meshComplete, MESH_TIMEOUT_MS);
  }

  const metric = async (gw: string, name: string, labels: Record<string, string> = {}) => sample(await c.gw(gw).metrics(), name, labels);

  it('between hosts only the gateways TLS ports answer; nodes and EPMD are loopback-only', async () => {
    for (const host of c.lab.hosts.values()) {
      const listening = await c.lab.listeners(host.name);
      // Everything but the gateway's TLS listener is on loopback, and nothing listens on a wildcard address.
      expect(listening.filter((a) => !a.startsWith('127.')).sort(), `listeners in ${host.name}: ${listening.join(' ')}`).toEqual([`${host.ip}:${LAB_PORTS.tls}`]);
    }
    const alpha = c.lab.host('alpha');
    const [a1Port, a2Port] = [A1, A2].map((n) => c.mesh.roster.nodes.get(n)!.port);
    const targets = [
      { host: alpha.ip, port: a1Port! }, // a1's distribution port
      { host: alpha.ip, port: a2Port! },
      { host: alpha.ip, port: LAB_PORTS.epmd }, // the gateway's EPMD
      { host: alpha.ip, port: LAB_PORTS.metrics },
      { host: alpha.ip, port: LAB_PORTS.tls },
    ];
    expect(await c.lab.probeTcp('beta', targets)).toEqual(['refused', 'refused', 'refused', 'refused', 'open']);
    // Inside alpha the same services are up, on its loopback: the refusals above are the isolation, not absence.
    expect(await c.lab.probeTcp('alpha', targets.slice(0, 4).map((t) => ({ ...t, host: '127.0.0.1' })))).toEqual(['open', 'open', 'open', 'open']);
    // ...and the cluster works across hosts through the gateways.
    expect(await c.node(B1).eval(`rpc:call('${A1}', erlang, node, [], 10000)`)).toBe(`'${A1}'`);
    expect(await c.node(G1).eval(`rpc:call('${A2}', erlang, node, [], 10000)`)).toBe(`'${A2}'`);
  });

  it('forms a full mesh from a chain of pings: transitive connections cross the gateways by themselves', async () => {
    // Start from nothing connected, whatever ran before.
    await waitFor(
      'every node disconnected',
      async () => {
        await Promise.all(erlangNodes().map((n) => c.node(n).eval('[erlang:disconnect_node(N) || N <- nodes()]')));
        const v = await Promise.all(erlangNodes().map((n) => c.node(n).eval('nodes()')));
        return v.every((t) => t === '[]');
      },
      MESH_TIMEOUT_MS,
    );
    // a2 and ex1 may never have been linked before (run alone, or global did not connect them): then the pair has no series yet.
    const alphaBefore = await c.gw('alpha').metrics();
    const a2ToEx1 = { local_node: A2, remote_node: EX1 };
    const bytesA2Ex1 = hasSeries(alphaBefore, 'beamgate_relayed_bytes_total', a2ToEx1) ? sample(alphaBefore, 'beamgate_relayed_bytes_total', a2ToEx1) : 0;
    // A chain: a2-a1 (same host), a1-b1 (alpha-beta), b1-g1 (beta-gamma), g1-ex1 (same host).
    for (const [from, to] of [
      [A2, A1],
      [A1, B1],
      [B1, G1],
      [G1, EX1],
    ] as const) {
      expect(await c.node(from).eval(`net_adm:ping('${to}')`), `${from} pings ${to}`).toBe('pong');
    }
    await waitFor('a complete mesh', meshComplete, MESH_TIMEOUT_MS);
    const v = await views();
    for (const n of c.allNodes) expect(v.get(n), `nodes() on ${n}`).toEqual(c.allNodes.filter((m) => m !== n));
    // a2 and ex1 were never introduced, and sit on hosts no ping crossed between: their link went through alpha and gamma.
    expect(await metric('alpha', 'beamgate_relayed_bytes_total', { local_node: A2, remote_node: EX1 })).toBeGreaterThan(bytesA2Ex1);
    expect(await metric('gamma', 'beamgate_relayed_bytes_total', { local_node: EX1, remote_node: A2 })).toBeGreaterThan(0);
  });

  it('a global name and a pg group span the hosts', async () => {
    await ensureMesh();
    const svc = `bg_svc_${Date.now()}`;
    expect(await c.node(G1).eval(`Pid = spawn(fun L() -> receive {ping, From} -> From ! {pong, node()}, L() end end), global:register_name(${svc}, Pid)`)).toBe('yes');
    const whereIs = `case global:whereis_name(${svc}) of undefined -> undefined; P -> node(P) end`;
    for (const n of erlangNodes()) expect(await c.node(n).eval(whereIs), `global name seen on ${n}`).toBe(`'${G1}'`);
    expect(await c.node(A1).eval(`case rpc:call('${EX1}', global, whereis_name, [${svc}], 5000) of P when is_pid(P) -> node(P); Other -> Other end`)).toBe(`'${G1}'`);
    expect(await c.node(B1).eval(`global:send(${svc}, {ping, self()}), receive {pong, N} -> N after 10000 -> timeout end`)).toBe(`'${G1}'`);

    // One member per Erlang node (joined on its own node); the Elixir node joined at start.
    const group = `bg_pg`;
    await Promise.all(
      erlangNodes().map(async (n) =>
        expect(await c.node(n).eval(`pg:join(${group}, spawn(fun L() -> receive {hello, From} -> From ! {member, node()}, L() end end))`)).toBe('ok'),
      ),
    );
    const memberNodes = `lists:usort([node(P) || P <- pg:get_members(${group})])`;
    for (const n of erlangNodes()) {
      await waitFor(`pg group complete on ${n}`, async () => JSON.stringify(atoms(await c.node(n).eval(memberNodes))) === JSON.stringify(c.allNodes));
    }
    // Every member, on every host, answers a message sent from alpha.
    const replies = await c.node(A1).eval(
      `Ms = pg:get_members(${group}), [M ! {hello, self()} || M <- Ms], lists:usort([receive {member, N} -> N after 10000 -> timeout end || _ <- Ms])`,
    );
    expect(atoms(replies)).toEqual(c.allNodes);
    expect(replies).not.toContain('timeout');
  });

  it('an Elixir node on gamma exchanges messages with Erlang nodes on alpha and beta', async () => {
    await ensureMesh();
    const ex = c.elixir.get(EX1)!;
    expect(ex.version).toMatch(/^1\.\d+\.\d+/);
    // rpc into Elixir's own modules: this is an Elixir node, not erl.
    expect(await c.node(A1).eval(`rpc:call('${EX1}', 'Elixir.System', version, [], 10000)`)).toBe(`<<"${ex.version}">>`);
    // Erlang (alpha) -> Elixir (gamma) -> Erlang (alpha).
    expect(await c.node(A1).eval(`{bg_elixir, '${EX1}'} ! {echo, self(), {hello, <<"from a1">>}}, receive {elixir_echo, N, T} -> {N, T} after 10000 -> timeout end`)).toBe(
      `{'${EX1}',{hello,<<"from a1">>}}`,
    );
    // Elixir (gamma) sends to a named process on beta, on a1's request.
    await c.node(B1).eval(`catch unregister(bg_inbox), register(bg_inbox, self())`);
    expect(await c.node(A1).eval(`{bg_elixir, '${EX1}'} ! {relay, {bg_inbox, '${B1}'}, {token, 42}, self()}, receive {relayed, N} -> N after 10000 -> timeout end`)).toBe(`'${EX1}'`);
    expect(await c.node(B1).eval(`receive {from_elixir, N, T} -> {N, T} after 10000 -> timeout end`)).toBe(`{'${EX1}',{token,42}}`);
    // The Elixir node sees the whole cluster with Elixir's Node.list/0.
    expect(atoms(await c.node(G1).eval(`rpc:call('${EX1}', 'Elixir.Node', list, [], 5000)`))).toEqual(c.allNodes.filter((n) => n !== EX1));

    // What a mix release's `bin/ex1 rpc EXPR` does: a hidden node rpc-XXXX-<node> started with the
    // remote.vm.args flags (no static port, -dist_listen false), admitted by the operator pattern rpc-*.
    const operator = `rpc-${randomBytes(2).toString('hex')}-${EX1}`;
    const expr = 'IO.puts("rpc on #{Node.self()}, #{length(Node.list())} peers")';
    const out = await c.lab.run('gamma', ['elixir', '--hidden', ...elixirArgs(c.mesh.nodeArgs(operator)), '--rpc-eval', EX1, expr], cookieEnv(c.home));
    expect(out.trim()).toBe(`rpc on ${EX1}, ${c.allNodes.length - 1} peers`);
  });

  it('a node killed and restarted rejoins the mesh and sees the global names', async () => {
    await ensureMesh();
    const name = `bg_restart_${Date.now()}`;
    expect(await c.node(G1).eval(`global:register_name(${name}, spawn(fun() -> receive stop -> ok end end))`)).toBe('yes');
    const registrations = await metric('beta', 'beamgate_epmd_registrations_total', { result: 'ok' });
    c.node(B1).kill();
    await waitFor('b1 gone from every node', async () => {
      const v = await views(B1);
      return [...v.values()].every((seen) => !seen.includes(B1));
    }, NODEDOWN_TIMEOUT_MS);

    const b1 = await c.startErlang(B1);
    expect(await metric('beta', 'beamgate_epmd_registrations_total', { result: 'ok' })).toBe(registrations + 1);
    expect(await b1.eval(`net_adm:ping('${A1}')`)).toBe('pong');
    await waitFor('a complete mesh with the new b1', meshComplete, MESH_TIMEOUT_MS);
    await waitFor('global names synced to the new b1', async () => (await b1.eval(`case global:whereis_name(${name}) of undefined -> undefined; P -> node(P) end`)) === `'${G1}'`);
    await b1.eval('bg_traffic:start_monitor()');
  });

  it('a partition cuts beta off: nodedown both sides, then after the heal a ping reconnects; gateways survive and report it', async () => {
    await ensureMesh();
    const reachable = (gw: string, peer: string) => metric(gw, 'beamgate_peer_reachable', { peer });
    await waitFor('alpha and beta see each other reachable', async () => (await reachable('alpha', 'beta')) === 1 && (await reachable('beta', 'alpha')) === 1, PROBE_CHANGE_TIMEOUT_MS);
    const closedBefore = await metric('alpha', 'beamgate_links_closed_total', { peer: 'beta' });
    const unreachableBefore = await metric('alpha', 'beamgate_tls_handshakes_total', { role: 'client', result: 'unreachable' });
    const cutAt = Date.now();

    c.lab.cut('beta');
    const downSince = (events: Awaited<ReturnType<typeof nodeEvents>>, node: string) => events.find((e) => e.event === 'nodedown' && e.node === node && e.at >= cutAt);
    const a1Down = await waitFor('a1 sees nodedown for b1', async () => downSince(await nodeEvents(c.node(A1)), B1), NODEDOWN_TIMEOUT_MS);
    await waitFor('b1 sees nodedown for alpha and gamma', async () => {
      const events = await nodeEvents(c.node(B1));
      return [A1, A2, G1, EX1].every((n) => downSince(events, n));
    }, NODEDOWN_TIMEOUT_MS);
    // While cut, a new connection attempt ends in pang, not a hang; alpha's dial into the cut is counted below.
    expect(await c.node(A1).eval(`net_adm:ping('${B1}')`)).toBe('pang');
    await waitFor('alpha and beta report each other unreachable', async () => (await reachable('alpha', 'beta')) === 0 && (await reachable('beta', 'alpha')) === 0, PROBE_CHANGE_TIMEOUT_MS);
    const unreachableAfterMs = Date.now() - cutAt;
    expect(await reachable('alpha', 'gamma')).toBe(1);
    expect(await metric('alpha', 'beamgate_links_closed_total', { peer: 'beta' })).toBeGreaterThan(closedBefore);
    // The registry link is silent too: alpha forgets what beta had and answers beta's host from the roster.
    await waitFor("alpha to lose beta's registry", async () => (await metric('alpha', 'beamgate_registry_synced', { peer: 'beta' })) === 0, PROBE_CHANGE_TIMEOUT_MS);
    const registryLostMs = Date.now() - cutAt;

    c.lab.reconnect('beta');
    const healedMs = Date.now();
    const healedAt = new Date(healedMs).toISOString();
    await waitFor('a1 reaches b1 again', async () => (await c.node(A1).eval(`net_adm:ping('${B1}')`)) === 'pong', MESH_TIMEOUT_MS);
    const pongAfterMs = Date.now() - healedMs;
    await waitFor('a complete mesh after the heal', meshComplete, MESH_TIMEOUT_MS);
    const meshAfterMs = Date.now() - healedMs;
    await waitFor('alpha and beta report each other reachable again', async () => (await reachable('alpha', 'beta')) === 1 && (await reachable('beta', 'alpha')) === 1, PROBE_CHANGE_TIMEOUT_MS);
    const reachableAfterMs = Date.now() - healedMs;
    // After the heal every registry is exact again: each gateway knows each peer, with exactly the names registered there.
    const live: Record<string, string[]> = { alpha: ['a1', 'a2'], beta: ['b1'], gamma: ['ex1', 'g1'] };
    await waitFor('every registry exact after the heal', async () => {
      for (const gw of Object.keys(live)) {
        for (const peer of Object.keys(live).filter((p) => p !== gw)) {
          if ((await metric(gw, 'beamgate_registry_synced', { peer })) !== 1) return false;
          if ((await metric(gw, 'beamgate_registry_names', { peer })) !== live[peer]!.length) return false;
        }
      }
      return true;
    }, PROBE_CHANGE_TIMEOUT_MS);
    const registryAfterMs = Date.now() - healedMs;
    expect(await c.node(A1).eval(`{ok, Names} = net_adm:names('beta${LAB_HOST_SUFFIX}'), [N || {N, _} <- Names]`)).toBe('["b1"]');
    console.log(
      `partition: nodedown on a1 ${a1Down.at - cutAt} ms after the cut (net_ticktime ${NET_TICKTIME_S} s), both gateways report unreachable after ${unreachableAfterMs} ms, ` +
        `alpha's registry of beta lost after ${registryLostMs} ms; after the heal: pong in ${pongAfterMs} ms, full mesh in ${meshAfterMs} ms, ` +
        `reachable again after ${reachableAfterMs} ms, every registry exact after ${registryAfterMs} ms`,
    );

    for (const gw of c.gateways.values()) {
      expect(gw.alive, `gateway ${gw.name} still running`).toBe(true);
      expect(gw.otherOutput, `gateway ${gw.name} wrote only JSON log lines`).toEqual([]);
    }
    const alpha = c.gw('alpha');
    expect(alpha.logged('peer unreachable', { peer: 'beta' }).length).toBeGreaterThan(0);
    expect(alpha.logged('peer reachable', { peer: 'beta' }).filter((l) => String(l.ts) >= healedAt).length).toBeGreaterThan(0);
    expect(alpha.logs.filter((l) => l.msg === 'link closed' && l.peer === 'beta').length).toBeGreaterThan(0);
    expect(await metric('alpha', 'beamgate_tls_handshakes_total', { role: 'client', result: 'unreachable' })).toBeGreaterThan(unreachableBefore);
  });
});

describe.runIf(unavailable === null)('netns harness cleanup', () => {
  it('destroy() kills what runs in a lab and removes its namespaces; a new lab removes what a dead run left', async () => {
    const lab = NetnsLab.create(['solo']);
    const sleeper = lab.spawn('solo', ['sleep', '600']);
    expect(labNamespaces()).toContain(lab.host('solo').ns);
    await lab.destroy();
    expect(sleeper.signalCode).toBe('SIGKILL');
    expect(labNamespaces().filter((ns) => ns.includes(`-${lab.id}-`))).toEqual([]);

    // A run that died without cleaning up: its namespace (named after its dead pid) and a process in it.
    const deadPid = spawnSync('true').pid!;
    const orphan = `${NETNS_PREFIX}-${deadPid}-dead00-x`;
    expect(spawnSync('ip', ['netns', 'add', orphan]).status).toBe(0);
    const left = spawn('ip', ['netns', 'exec', orphan, 'sleep', '600'], { stdio: 'ignore' });
    const leftGone = once(left, 'exit');
    await waitFor('orphan process running', () => spawnSync('ip', ['netns', 'pids', orphan], { encoding: 'utf8' }).stdout.trim() !== '');
    const next = NetnsLab.create(['solo']);
    await next.destroy();
    await leftGone;
    expect(left.signalCode).toBe('SIGKILL');
    expect(labNamespaces()).not.toContain(orphan);
  });
});
