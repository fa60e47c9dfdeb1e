// The measurements of one path, each run inside node A by beamgate_bench.erl
// (so the driver's stdin round trips never touch a timed loop), with the CPU
// time of the relay processes and of the two nodes taken around each one.

import assert from 'node:assert/strict';
import type { BenchPath } from './paths.js';
import { cpuSeconds } from './proc.js';
import { percentile } from './stats.js';

/** Message sizes of the throughput runs, bytes. */
export const SIZES = [64, 1024, 65536, 1048576] as const;
export type Size = (typeof SIZES)[number];

/** Bytes per MB in every MB/s figure (decimal, like iperf3 and the baselines). */
export const MB = 1e6;

/** Slack on top of a workload's own duration before the driver gives up on node A's answer. */
const ANSWER_SLACK_MS = 120_000;

export interface RttResult {
  p50Us: number;
  p99Us: number;
}

export interface RateResult {
  msgsPerSec: number;
  mbPerSec: number;
  /** Bytes the sink received in the run. */
  bytes: number;
}

/** CPU seconds used while the workloads ran: by the relay processes, and by the two nodes. */
export interface CpuUse {
  relay: number;
  nodes: number;
}

export function emptyCpu(): CpuUse {
  return { relay: 0, nodes: 0 };
}

/** Sizes whose runs count as bulk, for CPU seconds per GB moved. */
export const BULK_SIZES: readonly Size[] = [65536, 1048576];

/** Runs `fn` and adds the CPU time the path's processes used meanwhile to every accumulator in `accs`. */
export async function withCpu<T>(path: BenchPath, accs: CpuUse[], fn: () => Promise<T>): Promise<T> {
  const nodePids = [path.a.proc.pid!, path.b.proc.pid!];
  const sum = (pids: number[]) => pids.reduce((s, pid) => s + cpuSeconds(pid), 0);
  const relay0 = sum(path.relayPids);
  const nodes0 = sum(nodePids);
  const out = await fn();
  const relay = sum(path.relayPids) - relay0;
  const nodes = sum(nodePids) - nodes0;
  for (const acc of accs) {
    acc.relay += relay;
    acc.nodes += nodes;
  }
  return out;
}

/** `count` ping/pong round trips from A to B's echo process. */
export async function measureRtt(path: BenchPath, count: number): Promise<RttResult> {
  const text = await path.a.eval(`beamgate_bench:rtt('${path.b.name}', ${count})`, ANSWER_SLACK_MS);
  const ns = parseIntegerList(text);
  assert.equal(ns.length, count, `rtt returned ${ns.length} samples, expected ${count}`);
  return { p50Us: percentile(ns, 50) / 1000, p99Us: percentile(ns, 99) / 1000 };
}

/**
 * A sends `size`-byte messages to B's sink for `millis` ms, then waits for the
 * sink's counts. Every message must have arrived, byte for byte: a relay that
 * loses or duplicates anything fails the run instead of reporting a figure.
 */
export async function measureRate(path: BenchPath, size: Size, millis: number): Promise<RateResult> {
  const text = await path.a.eval(`beamgate_bench:throughput_for('${path.b.name}', ${size}, ${millis})`, millis + ANSWER_SLACK_MS);
  const m = /^\{(\d+),(\d+),(\d+),(\d+)\}$/.exec(text);
  if (!m) throw new Error(`${path.id}: unexpected throughput answer ${text}`);
  const [sent, received, bytes, micros] = m.slice(1).map(Number) as [number, number, number, number];
  if (received !== sent || bytes !== sent * size) {
    throw new Error(`${path.id}: sent ${sent} messages of ${size} B, sink counted ${received} messages and ${bytes} bytes`);
  }
  const seconds = micros / 1e6;
  return { msgsPerSec: received / seconds, mbPerSec: bytes / MB / seconds, bytes };
}

/** Milliseconds for net_adm:ping/1 from a node that has never connected anywhere (its start is not timed). */
export async function measureColdConnect(path: BenchPath, i: number): Promise<number> {
  const fresh = await path.freshNode(i);
  try {
    const micros = Number(await fresh.eval(`beamgate_bench:connect('${path.b.name}')`, ANSWER_SLACK_MS));
    assert.ok(Number.isFinite(micros) && micros > 0, `${path.id}: cold connect answered ${micros}`);
    return micros / 1000;
  } finally {
    await fresh.stop();
  }
}

/**
 * Link set-ups per repetition: fewer than limits.standbyPerPeer (8), so that
 * each of a gateway path's starts on a ready connection (src/mesh/standby.ts),
 * as a running cluster's links do; the burst run measures set-ups without one.
 */
export const SETUPS_PER_REP = 5;
/** How long B may take to see a dropped link go. */
const DROP_SEEN_TIMEOUT_MS = 10_000;

/**
 * Milliseconds for net_adm:ping/1 from A to B once their link was dropped,
 * the median of SETUPS_PER_REP: the link's set-up alone (A's EPMD lookup, the
 * connection, the distribution handshake, one round trip), with every module
 * of both nodes loaded, where a cold connect also loads A's.
 */
export async function measureSetup(path: BenchPath): Promise<number> {
  const ms: number[] = [];
  const seenByB = `lists:member('${path.a.name}', nodes([visible, hidden]))`;
  for (let i = 0; i < SETUPS_PER_REP; i++) {
    await path.a.eval(`beamgate_bench:drop('${path.b.name}')`, ANSWER_SLACK_MS);
    const deadline = Date.now() + DROP_SEEN_TIMEOUT_MS;
    while ((await path.b.eval(seenByB)) !== 'false') {
      if (Date.now() > deadline) throw new Error(`${path.id}: ${path.b.name} still lists ${path.a.name} ${DROP_SEEN_TIMEOUT_MS} ms after the link was dropped`);
    }
    const micros = Number(await path.a.eval(`beamgate_bench:connect('${path.b.name}')`, ANSWER_SLACK_MS));
    assert.ok(Number.isFinite(micros) && micros > 0, `${path.id}: link set-up answered ${micros}`);
    ms.push(micros / 1000);
  }
  return percentile(ms, 50);
}

/** Parses the printed form of an Erlang list of integers, e.g. `[1,2,3]`. */
export function parseIntegerList(text: string): number[] {
  const t = text.trim();
  if (!t.startsWith('[') || !t.endsWith(']')) throw new Error(`not an Erlang list: ${t.slice(0, 80)}`);
  const body = t.slice(1, -1).trim();
  if (body === '') return [];
  return body.split(',').map((s) => {
    const v = Number(s.trim());
    if (!Number.isInteger(v)) throw new Error(`not an integer in list: ${s.slice(0, 40)}`);
    return v;
  });
}
