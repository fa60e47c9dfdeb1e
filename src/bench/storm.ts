// A cluster that boots all at once, as a benchmark: `hosts` gateways on this
// machine, each with `nodesPerHost` real nodes, and every node pinging every
// other at the same moment, as `global` or libcluster's first round does
// when a cluster boots or heals. Each pair's link is set up through two
// gateways (TLS, roster checks, the distribution handshake, the hand-over)
// inside the node's own `net_setuptime`, with all of them dialling at once.
// A failed ping is not retried (nothing in OTP does), so a pair it leaves
// unlinked stays so: the run reports how many pairs were linked. On OTP 25
// and later one lost connection costs more: `global` disconnects nodes that
// report losing another (prevent_overlapping_partitions), so links that were
// up go down too; the run counts those disconnects from the nodes' logs.
//
// Run three times, each on fresh gateways and nodes: with the ready TLS
// connections of the roster's default (limits.standbyPerPeer), with none, and
// with none on node:tls (the A/B of issue 17). test/integration/storm.test.ts
// is the same storm as a pass/fail check on network-namespace hosts.

import { DEFAULT_LIMITS } from '../config/limits.js';
import type { ErlNode } from '../erlang/node.js';
import type { OtpRuntime } from '../erlang/roots.js';
import { type BenchEnv, startGateways, startNode } from './paths.js';
import { cpuSeconds, memory, sleep } from './proc.js';
import { metricValue, scrape, sumOf } from './scrape.js';

/** Every VM of the storm booting at once on a loaded machine. */
const NODE_START_TIMEOUT_MS = 120_000;
/** How long the gateways' ready connections may take to be dialled before the storm. */
const FILL_TIMEOUT_MS = 60_000;
/** One node's pings, all at once: each waits at most net_setuptime (7 s) per attempt. */
const PINGS_TIMEOUT_MS = 120_000;
/** After the pings, until every node sees every other (the links of answered pings only need to settle). */
const FULL_MESH_TIMEOUT_MS = 60_000;
/** Between two looks at every node's nodes(). */
const POLL_MS = 200;

export interface StormRun {
  /** limits.standbyPerPeer of the run. */
  standby: number;
  plane: 'native' | 'node';
  /** Pings sent (every node to every other) and those answered pang. */
  pings: number;
  pangs: number;
  /** From the first ping until every node had its answers. */
  answeredMs: number;
  /** Pairs linked once the pings were answered and the mesh had time to settle, of all pairs. */
  pairsLinked: number;
  pairs: number;
  /** From the first ping until every node saw every other; undefined when the mesh never formed (a pang is not retried). */
  fullMeshMs: number | undefined;
  /** Client TLS handshakes per gateway from the first ping until the full mesh or the end of the wait (the ready connections refilled after the pings included; mean), how many resumed (mean), and per second of that window (mean). */
  handshakes: number;
  resumed: number;
  handshakesPerSec: number;
  /** Disconnects `global` made on the nodes to prevent overlapping partitions (their log lines). */
  globalDisconnects: number;
  /** CPU of all gateways during the storm, per pair of nodes (each pair's set-up, both directions' attempts), ms. */
  cpuMsPerPair: number;
  /** Largest gateway RSS at the end of the run, MB. */
  maxRssMb: number;
}

export interface StormResult {
  hosts: number;
  nodesPerHost: number;
  otp: string;
  runs: StormRun[];
}

async function stormOnce(env: BenchEnv, dir: string, rt: OtpRuntime, hosts: number, nodesPerHost: number, standby: number, plane: 'native' | 'node', gatewayArgs: string[]): Promise<StormRun> {
  const names = Array.from({ length: hosts }, (_, i) => `h${i}`);
  const shorts = Array.from({ length: nodesPerHost }, (_, j) => `n${j}`);
  const gw = await startGateways(dir, names.map((name) => ({ name, nodes: shorts })), { extraArgs: gatewayArgs, runArgs: ['--data-plane', plane], limits: { standbyPerPeer: standby } });
  let nodes: ErlNode[] = [];
  try {
    const all = names.flatMap((h) => shorts.map((s) => `${s}@${gw.mesh.hostOf(h)}`));
    // Booted all at once, as the hosts of a cluster do; the ready connections are made meanwhile.
    const started = await Promise.allSettled(all.map((n) => startNode(env, rt, n, gw.mesh.nodeArgs(n), NODE_START_TIMEOUT_MS)));
    nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw new Error(`storm: ${all.length - nodes.length} of ${all.length} nodes did not boot: ${String(failed.reason)}`);
    const deadline = Date.now() + FILL_TIMEOUT_MS;
    for (const port of gw.metricsPorts) {
      while ((await metricValue(port, 'beamgate_standby_ready', 'peer="')) < standby * (hosts - 1)) {
        if (Date.now() > deadline) throw new Error(`storm: a gateway did not make its ${standby * (hosts - 1)} ready connections in ${FILL_TIMEOUT_MS} ms`);
        await sleep(100);
      }
    }
    const counters = () =>
      Promise.all(
        gw.metricsPorts.map(async (p) => {
          // One scrape for both: the pools refill right after the storm, between two scrapes.
          const text = await scrape(p);
          return { hs: sumOf(text, 'beamgate_tls_handshakes_total', 'role="client"'), resumed: sumOf(text, 'beamgate_tls_resumed_total', 'role="client"') };
        }),
      );
    const before = await counters();
    const cpu0 = gw.pids.map(cpuSeconds);
    const list = `[${all.map((n) => `'${n}'`).join(',')}]`;
    const storm =
      `Self = node(), Others = [N || N <- ${list}, N =/= Self], P = self(), ` +
      `[spawn(fun() -> P ! {ping, N, net_adm:ping(N)} end) || N <- Others], ` +
      `[R || N <- Others, R <- [receive {ping, N, X} -> X end]]`;
    const t0 = performance.now();
    const answers = await Promise.all(nodes.map((n) => n.eval(storm, PINGS_TIMEOUT_MS)));
    const answeredMs = performance.now() - t0;
    const pangs = answers.reduce((k, text) => k + [...text.matchAll(/pang/g)].length, 0);
    // Every answered ping made a link; a pair of two pangs has none. Count what formed.
    const linked = async () => (await Promise.all(nodes.map(async (n) => Number(await n.eval('length(nodes())'))))).reduce((a, b) => a + b, 0) / 2;
    const pairs = (all.length * (all.length - 1)) / 2;
    let fullMeshMs: number | undefined;
    let pairsLinked = await linked();
    const meshDeadline = Date.now() + FULL_MESH_TIMEOUT_MS;
    while (pairsLinked < pairs && pangs === 0 && Date.now() < meshDeadline) {
      await sleep(POLL_MS);
      pairsLinked = await linked();
    }
    if (pairsLinked === pairs) fullMeshMs = performance.now() - t0;
    const windowS = (performance.now() - t0) / 1000;
    const after = await counters();
    const cpuMs = gw.pids.reduce((sum, p, i) => sum + (cpuSeconds(p) - cpu0[i]!) * 1000, 0);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const hs = after.map((a, i) => a.hs - before[i]!.hs);
    return {
      standby,
      plane,
      pings: all.length * (all.length - 1),
      pangs,
      answeredMs,
      pairsLinked,
      pairs,
      fullMeshMs,
      handshakes: mean(hs),
      resumed: mean(after.map((a, i) => a.resumed - before[i]!.resumed)),
      handshakesPerSec: mean(hs) / windowS,
      globalDisconnects: nodes.reduce((k, n) => k + (n.log().match(/in order to prevent overlapping partitions/g)?.length ?? 0), 0),
      cpuMsPerPair: cpuMs / pairs,
      maxRssMb: Math.max(...gw.pids.map((p) => memory(p).rssMb)),
    };
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await gw.stop();
  }
}

/** The storm with the default ready connections, with none, and with none on node:tls, each on fresh gateways and nodes. */
export async function runStorm(env: BenchEnv, dir: string, rt: OtpRuntime, hosts: number, nodesPerHost: number, gatewayArgs: string[] = []): Promise<StormResult> {
  const runs: StormRun[] = [];
  for (const [standby, plane] of [[DEFAULT_LIMITS.standbyPerPeer, 'native'], [0, 'native'], [0, 'node']] as const) {
    runs.push(await stormOnce(env, `${dir}-${plane}-${standby}`, rt, hosts, nodesPerHost, standby, plane, gatewayArgs));
  }
  return { hosts, nodesPerHost, otp: rt.otp, runs };
}
