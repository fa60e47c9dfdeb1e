// A cluster that boots all at once: ten namespace hosts with three OTP 29
// nodes each, and every node pinging every other node at the same moment, as
// a cluster does when it boots or heals (`global`, libcluster's first round).
// Each of the 435 pairs needs its link set up through two gateways (a TLS
// handshake, the distribution handshake, the hand-over to the native data
// plane) inside the node's own `net_setuptime` (7 s), with a few hundred
// dialling at once on two cores. Every ping must answer pong, and every node
// must see every other. The gateways were up before the nodes, as in a
// cluster whose hosts boot: their ready connections (src/mesh/standby.ts)
// are made while the VMs start.
//
// For A/B runs by hand: STORM_NODES=4 (nodes per host), STORM_STANDBY=0
// (limits.standbyPerPeer; 0 is the link set-up of before), and
// BEAMGATE_DATA_PLANE=node.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, standbyPools } from '../../src/config/limits.js';
import { findRuntime, type OtpRuntime } from '../../src/erlang/roots.js';
import { LabCluster } from '../helpers/lab-cluster.js';
import { sample, waitFor } from '../helpers/mesh.js';
import { netnsUnavailableReason } from '../helpers/netns.js';

const HOSTS = 10;
const NODES_PER_HOST = Number(process.env.STORM_NODES ?? 3);
/** Thirty VMs booting at once in chroots on two cores. */
const NODE_START_TIMEOUT_MS = 120_000;
/** Every node's pings, all at once: each ping waits at most net_setuptime (7 s) per attempt. */
const STORM_TIMEOUT_MS = 120_000;
/** From the first ping until every node sees every other. */
const FULL_MESH_TIMEOUT_MS = 90_000;

const unavailable = netnsUnavailableReason();
const sid = findRuntime('29');
if (unavailable) console.warn(`storm.test.ts: SKIPPED, network namespaces cannot be made here: ${unavailable}`);
if (typeof sid === 'string') console.warn(`storm.test.ts: SKIPPED, OTP 29: ${sid}`);

describe.runIf(unavailable === null && typeof sid !== 'string')(`a storm: ${HOSTS} hosts x ${NODES_PER_HOST} OTP 29 nodes, every node pinging every other at once`, () => {
  let c: LabCluster;
  const hosts = Array.from({ length: HOSTS }, (_, i) => `h${i}`);

  beforeAll(async () => {
    c = await LabCluster.start(Object.fromEntries(hosts.map((h) => [h, { erlang: Array.from({ length: NODES_PER_HOST }, (_, j) => `n${j}`) }])), {
      runtime: sid as OtpRuntime,
      nodeStartTimeoutMs: NODE_START_TIMEOUT_MS,
      ...(process.env.STORM_STANDBY !== undefined ? { limits: { standbyPerPeer: Number(process.env.STORM_STANDBY) } } : {}),
    });
    await c.startAllNodes();
    const standbyPerPeer = process.env.STORM_STANDBY !== undefined ? Number(process.env.STORM_STANDBY) : DEFAULT_LIMITS.standbyPerPeer;
    // standbyPerPeer, or one per node pair of two hosts where those are more, within the limits.
    const pools = standbyPools({ ...DEFAULT_LIMITS, standbyPerPeer }, new Map(hosts.slice(1).map((h) => [h, NODES_PER_HOST * NODES_PER_HOST])));
    const perGateway = [...pools.values()].reduce((a, b) => a + b, 0);
    await waitFor(
      `every gateway's ${perGateway} ready connections`,
      async () => {
        const counts = await Promise.all(hosts.map(async (h) => sample(await c.gw(h).metrics(), 'beamgate_standby_ready')));
        return counts.every((n) => n === perGateway) || (console.log(counts.join(' ')), false);
      },
      60_000,
    );
  }, NODE_START_TIMEOUT_MS + 60_000);

  afterAll(async () => {
    await c?.stop();
  }, 60_000);

  it('every ping answers pong and the full mesh forms', async () => {
    const all = c.allNodes;
    expect(all).toHaveLength(HOSTS * NODES_PER_HOST);
    const list = `[${all.map((n) => `'${n}'`).join(',')}]`;
    // Each node starts its pings in parallel processes and waits for their answers.
    const storm = `Self = node(), Others = [N || N <- ${list}, N =/= Self], P = self(), ` +
      `[spawn(fun() -> P ! {ping, N, net_adm:ping(N)} end) || N <- Others], ` +
      `[receive {ping, N, R} -> {N, R} end || N <- Others]`;
    const started = Date.now();
    const answers = await Promise.all(all.map((n) => c.node(n).eval(storm, STORM_TIMEOUT_MS).then((text) => ({ n, text }))));
    const pingsMs = Date.now() - started;
    const pangs = answers.flatMap(({ n, text }) => [...text.matchAll(/\{'([^']+)',pang\}/g)].map((m) => `${n} -> ${m[1]}`));
    const pongs = answers.reduce((k, { text }) => k + [...text.matchAll(/,pong\}/g)].length, 0);
    // Per gateway: TLS handshakes as client (count, resumed, mean), links on ready connections, the event loop's p99 lag, CPU seconds, RSS.
    const perGateway = await Promise.all(
      hosts.map(async (h) => {
        const gw = c.gw(h);
        // A gateway that cannot answer is the finding: whether it is alive, and what it last said.
        const m = await gw.metrics().catch((err: Error) => {
          throw new Error(`${h}'s metrics: ${err.message.split('\n')[0]} (gateway ${gw.alive ? 'alive' : 'exited'})\n${gw.stderrText()}`);
        });
        const count = sample(m, 'beamgate_tls_handshake_seconds_count', { role: 'client' });
        const mean = count ? sample(m, 'beamgate_tls_handshake_seconds_sum', { role: 'client' }) / count : 0;
        const hits = sample(m, 'beamgate_standby_taken_total', { result: 'hit' });
        const misses = sample(m, 'beamgate_standby_taken_total', { result: 'miss' });
        const resumed = sample(m, 'beamgate_tls_resumed_total', { role: 'client' });
        return `${h}: ${count} hs (${resumed} resumed) ${Math.round(mean * 1000)} ms, ${hits} links on a ready connection, ${misses} dialled, lag p99 ${Math.round(sample(m, 'nodejs_eventloop_lag_p99_seconds') * 1000)} ms, cpu ${sample(m, 'process_cpu_seconds_total').toFixed(1)} s, rss ${Math.round(sample(m, 'process_resident_memory_bytes') / 2 ** 20)} MB`;
      }),
    );
    console.log(
      `storm ${HOSTS}x${NODES_PER_HOST} (${(all.length * (all.length - 1)) / 2} pairs, plane ${process.env.BEAMGATE_DATA_PLANE ?? 'auto'}): ` +
        `pings answered in ${pingsMs} ms (${pongs} pong, ${pangs.length} pang)\n${perGateway.join('\n')}`,
    );
    if (pangs.length > 0) {
      // What the gateways saw: how links ended, what was refused, what stayed on node:tls.
      const seen = new Map<string, number>();
      for (const h of hosts)
        for (const l of c.gw(h).logs)
          if (l.level !== 'info' || /link (closed|stays|abandoned)/.test(String(l.msg))) {
            const key = `${l.msg}: ${String(l.reason ?? l.detail ?? '').replace(/[0-9]+/g, 'N').slice(0, 120)}`;
            seen.set(key, (seen.get(key) ?? 0) + 1);
          }
      console.log([...seen].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v} x ${k}`).join('\n'));
    }
    const meshMs = await waitFor(
      'every node to see every other',
      async () => {
        for (const n of all) {
          const seen = await c.node(n).eval('length(nodes())');
          if (Number(seen) !== all.length - 1) return undefined;
        }
        return Date.now() - started;
      },
      FULL_MESH_TIMEOUT_MS,
    );
    console.log(`storm: full mesh after ${meshMs} ms`);
    expect(pangs).toEqual([]);
    expect(pongs).toBe(all.length * (all.length - 1));
  }, STORM_TIMEOUT_MS + FULL_MESH_TIMEOUT_MS + 30_000);
});
