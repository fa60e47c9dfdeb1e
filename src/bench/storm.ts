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
// with none on node:tls (the A/B of issue 17); then once with no gateway, over
// plain inet_tcp_dist, as the machine's own limit for that many VMs.
// Each run also says where the machine's CPU went until every answer (the
// nodes', the gateways'): every set-up must be over within net_setuptime, so
// cores x 7 s is all the CPU the storm's set-ups have (report.ts's stormBudget).
// test/integration/storm.test.ts is the same storm as a pass/fail check on
// network-namespace hosts.

import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_LIMITS, standbyPools } from '../config/limits.js';
import type { ErlNode } from '../erlang/node.js';
import type { OtpRuntime } from '../erlang/roots.js';
import { type BenchEnv, Epmd, type GatewayPair, startGateways, startNode } from './paths.js';
import { cpuSeconds, machineBusySeconds, memory, sleep, treeCpuSeconds } from './proc.js';
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
/** After a restart of every gateway: how long the mesh has to re-form, and the nodes' healers' pause between two rounds of pings. */
const REFORM_TIMEOUT_MS = 120_000;
const REPING_MS = 500;
/** Until every node has seen its links go down (the killed gateways' sockets closing). */
const NODEDOWN_TIMEOUT_MS = 30_000;

/** What every storm run reports, with gateways or without (the plain run). */
export interface StormOutcome {
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
  /** Disconnects `global` made on the nodes to prevent overlapping partitions (their log lines). */
  globalDisconnects: number;
  /** Where the machine's CPU went until every node had its answers. Undefined in results written before it was measured. */
  cpu?: StormCpu;
}

/**
 * The machine's CPU from the first ping until every node had its answers.
 * Every set-up starts with the pings and must be over within the node's
 * net_setuptime (7 s): whatever the storm's work, cores x 7 s is all the CPU
 * there is for it, so a storm that keeps every core busy until its answers
 * come later than that has no room left for a gateway's work.
 */
export interface StormCpu {
  /** The window, s, and the cores that served it. */
  windowS: number;
  cores: number;
  /** CPU-seconds every core spent busy in it, whatever process spent them (at most cores x windowS). */
  busyS: number;
  /** Of those: the nodes' VMs (and their port programs) and the gateways (0 with no gateway). */
  nodesS: number;
  gatewaysS: number;
}

/** A run through gateways. */
export interface StormRun extends StormOutcome {
  /** Ready connections per peer in the run: limits.standbyPerPeer or one per node pair of the two hosts where those are more, fewer in a mesh that limits.standbyTotal does not cover at that many. */
  standby: number;
  plane: 'native' | 'node';
  /** Client TLS handshakes per gateway from the first ping until the full mesh or the end of the wait (the ready connections refilled after the pings included; mean), how many resumed (mean), and per second of that window (mean). */
  handshakes: number;
  resumed: number;
  handshakesPerSec: number;
  /** CPU of all gateways during the storm, per pair of nodes (each pair's set-up, both directions' attempts), ms. */
  cpuMsPerPair: number;
  /** Largest gateway RSS at the end of the run, MB. */
  maxRssMb: number;
  /** Every gateway killed at once and started again, once the mesh had formed (the default configuration's run only). */
  restart?: StormRestart;
}

export interface StormRestart {
  /** From the kill until every new gateway was healthy. */
  gatewaysUpMs: number;
  /** From the kill until every node saw every other again; undefined when it did not within REFORM_TIMEOUT_MS. */
  reformMs: number | undefined;
  pairsLinked: number;
  /** Pings of the nodes' healers that answered pang (and were tried again REPING_MS later), all nodes together. */
  retries: number;
  /** `global`'s disconnects logged by the nodes from the kill until the end of the run. */
  globalDisconnects: number;
}

export interface StormResult {
  hosts: number;
  nodesPerHost: number;
  otp: string;
  runs: StormRun[];
  /** The same storm with no gateway (plain inet_tcp_dist on loopback, one epmd), run last: the machine's own limit. Undefined in results written before it existed. */
  plain?: StormOutcome;
}

async function stormOnce(env: BenchEnv, dir: string, rt: OtpRuntime, hosts: number, nodesPerHost: number, standbyPerPeer: number, plane: 'native' | 'node', gatewayArgs: string[], restart: boolean): Promise<StormRun> {
  const names = Array.from({ length: hosts }, (_, i) => `h${i}`);
  const shorts = Array.from({ length: nodesPerHost }, (_, j) => `n${j}`);
  const gw = await startGateways(dir, names.map((name) => ({ name, nodes: shorts })), { extraArgs: gatewayArgs, runArgs: ['--data-plane', plane], limits: { standbyPerPeer } });
  // What each pool holds in a mesh of this size: standbyPerPeer or one per node pair, within the limits (standbyTotal bounds them all together).
  const standby = standbyPools({ ...DEFAULT_LIMITS, standbyPerPeer }, new Map(names.slice(1).map((h) => [h, nodesPerHost * nodesPerHost]))).get(names[1]!) ?? 0;
  let nodes: ErlNode[] = [];
  try {
    const all = names.flatMap((h) => shorts.map((s) => `${s}@${gw.mesh.hostOf(h)}`));
    // Booted all at once, as the hosts of a cluster do; the ready connections are made meanwhile.
    nodes = await bootAll(env, rt, all, (n) => gw.mesh.nodeArgs(n));
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
    const { pangs, answeredMs, pairsLinked, pairs, fullMeshMs, windowS, list, linked, cpu } = await pingStorm(nodes, all, gw.pids);
    const after = await counters();
    const cpuMs = gw.pids.reduce((sum, p, i) => sum + (cpuSeconds(p) - cpu0[i]!) * 1000, 0);
    const maxRssMb = Math.max(...gw.pids.map((p) => memory(p).rssMb));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const hs = after.map((a, i) => a.hs - before[i]!.hs);
    const globalDisconnects = disconnects(nodes);
    const restarted = restart && fullMeshMs !== undefined ? { ...(await restartAll(gw, nodes, nodesPerHost, list, pairs, linked)), globalDisconnects: 0 } : undefined;
    if (restarted) restarted.globalDisconnects = disconnects(nodes) - globalDisconnects;
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
      globalDisconnects,
      cpuMsPerPair: cpuMs / pairs,
      cpu,
      maxRssMb,
      ...(restarted ? { restart: restarted } : {}),
    };
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await gw.stop();
  }
}

/**
 * Boots every node at once, as the hosts of a cluster do. A node that does not
 * boot fails the run (after the others are stopped): a storm of fewer nodes
 * would be another storm.
 */
async function bootAll(env: BenchEnv, rt: OtpRuntime, all: string[], argsOf: (node: string) => string[]): Promise<ErlNode[]> {
  const started = await Promise.allSettled(all.map((n) => startNode(env, rt, n, argsOf(n), NODE_START_TIMEOUT_MS)));
  const nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw new Error(`storm: ${all.length - nodes.length} of ${all.length} nodes did not boot: ${String(failed.reason)}`);
  }
  return nodes;
}

interface PingStorm {
  pangs: number;
  answeredMs: number;
  pairsLinked: number;
  pairs: number;
  fullMeshMs: number | undefined;
  /** From the first ping until the full mesh or the end of the wait, s. */
  windowS: number;
  /** Every node's name, as an Erlang list. */
  list: string;
  /** Pairs linked now, as the nodes see them. */
  linked: () => Promise<number>;
  cpu: StormCpu;
}

/** Every node pings every other at once; then, if no ping failed, waits for the mesh to settle. `gateways` are the gateways' pids (none for the plain run). */
async function pingStorm(nodes: ErlNode[], all: string[], gateways: number[]): Promise<PingStorm> {
  const list = `[${all.map((n) => `'${n}'`).join(',')}]`;
  const storm =
    `Self = node(), Others = [N || N <- ${list}, N =/= Self], P = self(), ` +
    `[spawn(fun() -> P ! {ping, N, net_adm:ping(N)} end) || N <- Others], ` +
    `[R || N <- Others, R <- [receive {ping, N, X} -> X end]]`;
  const vms = nodes.map((n) => n.proc.pid!);
  const gatewaysCpu = () => gateways.reduce((sum, p) => sum + cpuSeconds(p), 0);
  // The machine's busy time is read next to the clock (a walk of /proc takes a while); the processes' just outside it.
  const nodes0 = treeCpuSeconds(vms);
  const gateways0 = gatewaysCpu();
  const busy0 = machineBusySeconds();
  const t0 = performance.now();
  const answers = await Promise.all(nodes.map((n) => n.eval(storm, PINGS_TIMEOUT_MS)));
  const answeredMs = performance.now() - t0;
  const busyS = machineBusySeconds() - busy0;
  const cpu: StormCpu = { windowS: answeredMs / 1000, cores: availableParallelism(), busyS, nodesS: treeCpuSeconds(vms) - nodes0, gatewaysS: gatewaysCpu() - gateways0 };
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
  return { pangs, answeredMs, pairsLinked, pairs, fullMeshMs, windowS, list, linked, cpu };
}

/** Disconnects `global` made on the nodes to prevent overlapping partitions, from their logs. */
function disconnects(nodes: ErlNode[]): number {
  return nodes.reduce((k, n) => k + (n.log().match(/in order to prevent overlapping partitions/g)?.length ?? 0), 0);
}

/**
 * Kills every gateway at once and starts them again, as after a host-wide
 * upgrade done the hard way or a power cut of the gateways only: every link
 * between two hosts goes down (the nodes see nodedown), and each node pings
 * every node it lost until it answers (REPING_MS apart, as a cluster's healer, libcluster's
 * polling or a supervisor's health check does: nothing in OTP reconnects by
 * itself). Measured from the kill until every node sees every other.
 */
async function restartAll(gw: GatewayPair, nodes: ErlNode[], nodesPerHost: number, list: string, pairs: number, linked: () => Promise<number>): Promise<Omit<StormRestart, 'globalDisconnects'>> {
  // A ping over a link its node has not yet seen close would answer pong from the old link, so
  // the re-pings start once every node has seen every node of the other hosts go down (links
  // between two nodes of one host do not cross the gateway and stay up). Counted by a watcher on
  // each node, as nodedown events: nodes() never gets empty.
  const watch =
    `P = spawn(fun() -> net_kernel:monitor_nodes(true), ` +
    `W = fun L(D) -> receive {nodedown, N} -> L(D#{N => true}); {downs, F} -> F ! {downs, map_size(D)}, L(D); _ -> L(D) end end, W(#{}) end), ` +
    `register(beamgate_storm_downs, P), ok`;
  for (const n of nodes) await n.eval(watch);
  const downs = async () =>
    (await Promise.all(nodes.map(async (n) => Number(await n.eval(`beamgate_storm_downs ! {downs, self()}, receive {downs, K} -> K end`))))).reduce((a, b) => a + b, 0);
  const t0 = performance.now();
  await gw.restartAll();
  const gatewaysUpMs = performance.now() - t0;
  const downBy = Date.now() + NODEDOWN_TIMEOUT_MS;
  while ((await downs()) < nodes.length * (nodes.length - nodesPerHost)) {
    if (Date.now() > downBy) {
      const seen = await Promise.all(nodes.map(async (n) => `${n.name}: ${await n.eval(`beamgate_storm_downs ! {downs, self()}, receive {downs, K} -> {K, length(nodes())} end`)}`));
      throw new Error(`storm restart: the nodes had not all seen every link go down ${NODEDOWN_TIMEOUT_MS} ms after every gateway was killed ({downs seen, nodes()}: ${seen.join(', ')})`);
    }
    await sleep(POLL_MS);
  }
  // Each node runs a healer as a cluster does (libcluster's polling, a supervisor's health check):
  // every REPING_MS it pings, in parallel, every node it does not see; nothing in OTP re-dials by itself.
  const healer =
    `Self = node(), Others = [N || N <- ${list}, N =/= Self], ` +
    `H = spawn(fun() -> Heal = fun L(K) -> Missing = Others -- nodes(), Me = self(), ` +
    `[spawn(fun() -> Me ! {pinged, net_adm:ping(N)} end) || N <- Missing], ` +
    `Pangs = length([x || _ <- Missing, pang <- [receive {pinged, R} -> R end]]), ` +
    `receive {stop, F} -> F ! {retries, K + Pangs} after ${REPING_MS} -> L(K + Pangs) end end, Heal(0) end), ` +
    `register(beamgate_storm_healer, H), ok`;
  await Promise.all(nodes.map((n) => n.eval(healer)));
  let pairsLinked = await linked();
  const meshDeadline = Date.now() + REFORM_TIMEOUT_MS;
  while (pairsLinked < pairs && Date.now() < meshDeadline) {
    await sleep(POLL_MS);
    pairsLinked = await linked();
  }
  const reformMs = pairsLinked === pairs ? performance.now() - t0 : undefined;
  // A healer may be waiting on a ping (at most net_setuptime, 7 s) when told to stop.
  const retried = await Promise.all(nodes.map(async (n) => Number(await n.eval(`beamgate_storm_healer ! {stop, self()}, receive {retries, K} -> K end`))));
  return { gatewaysUpMs, reformMs, pairsLinked, retries: retried.reduce((x, y) => x + y, 0) };
}

/**
 * The storm with no gateway: the same nodes, names and pings over plain
 * inet_tcp_dist on loopback, with one real epmd. Clear text, no TLS, no
 * roster: not a path anyone should run between hosts, but the figure that
 * says what 2 cores and this many VMs allow at all.
 */
async function plainStorm(env: BenchEnv, dir: string, rt: OtpRuntime, hosts: number, nodesPerHost: number): Promise<StormOutcome> {
  const hostNames = Array.from({ length: hosts }, (_, i) => `h${i}.plain`);
  // One epmd registers names without their host, so each name carries its host too.
  const all = hostNames.flatMap((h, i) => Array.from({ length: nodesPerHost }, (_, j) => `h${i}n${j}@${h}`));
  const inetrc = join(env.dir, `${dir.split('/').at(-1)}.inetrc`);
  writeFileSync(inetrc, `{host, {127,0,0,1}, [${hostNames.map((h) => `"${h}"`).join(', ')}]}.\n{lookup, [file, native]}.\n`);
  const epmd = await Epmd.start(['127.0.0.1']);
  let nodes: ErlNode[] = [];
  try {
    const args = (n: string) => ['-name', n, '-start_epmd', 'false', '-epmd_port', String(epmd.port), '-kernel', 'inet_dist_use_interface', '{127,0,0,1}', '-kernel', 'inetrc', `"${inetrc}"`];
    nodes = await bootAll(env, rt, all, args);
    const { pangs, answeredMs, pairsLinked, pairs, fullMeshMs, cpu } = await pingStorm(nodes, all, []);
    return { pings: all.length * (all.length - 1), pangs, answeredMs, pairsLinked, pairs, fullMeshMs, globalDisconnects: disconnects(nodes), cpu };
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await epmd.stop();
  }
}

/** The storm with the default ready connections, with none, and with none on node:tls, each on fresh gateways and nodes; then with no gateway at all. */
export async function runStorm(env: BenchEnv, dir: string, rt: OtpRuntime, hosts: number, nodesPerHost: number, gatewayArgs: string[] = [], defaultOnly = false): Promise<StormResult> {
  const runs: StormRun[] = [];
  const configs = [[DEFAULT_LIMITS.standbyPerPeer, 'native'], [0, 'native'], [0, 'node']] as const;
  for (const [standby, plane] of defaultOnly ? configs.slice(0, 1) : configs) {
    // The restart of every gateway runs once, in the default configuration.
    runs.push(await stormOnce(env, `${dir}-${plane}-${standby}`, rt, hosts, nodesPerHost, standby, plane, gatewayArgs, runs.length === 0));
  }
  const plain = await plainStorm(env, `${dir}-plain`, rt, hosts, nodesPerHost);
  return { hosts, nodesPerHost, otp: rt.otp, runs, plain };
}
