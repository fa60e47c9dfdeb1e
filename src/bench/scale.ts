// Scale figures: many idle links through one gateway pair. The target is a
// real `erl` node behind gateway beta; the sources are emulated nodes (see
// emulated-node.ts), each a roster node of gateway alpha, each with its own
// link: its own stand-in connection, TLS connection, roster checks and
// connection from beta to the real node, exactly as for real nodes.

import assert from 'node:assert/strict';
import type { ErlNode } from '../erlang/node.js';
import type { OtpRuntime } from '../erlang/roots.js';
import { connectEmulatedNode, type EmulatedLink, emulatedFlags, lookupStandIn } from './emulated-node.js';
import { type BenchEnv, startGatewayPair, startNode } from './paths.js';
import { cpuSeconds, memory, sleep } from './proc.js';

/** Handshakes in flight at once while the links are opened (a burst, like a cluster coming up). */
const OPEN_CONCURRENCY = 50;
/** One emulated handshake, through both gateways, on a loaded machine. */
const HANDSHAKE_TIMEOUT_MS = 30_000;
/** Lets the gateways settle (timers, GC) before and after the burst, so RSS readings are steady. */
const SETTLE_MS = 1_500;
/** Longest window for the gateways' idle CPU before the links open. */
const BASELINE_MAX_SECONDS = 10;

export interface ScaleResult {
  links: number;
  /** OTP release of the real target node (the emulated nodes send the flags it requires). */
  targetOtp: string;
  /** Wall time to open every link, handshake included. */
  establishMs: number;
  /** RSS of alpha and beta before the links, after them, and their peaks, MB. */
  rssBeforeMb: number[];
  rssAfterMb: number[];
  peakMb: number[];
  /** (RSS after − RSS before) / links, per gateway, KB. */
  perLinkKb: number[];
  /** The idle window: its length, CPU ms per second per gateway, ticks answered. */
  idleSeconds: number;
  idleCpuMsPerSec: number[];
  /** The same gateways before any link was open (timers, metrics), for comparison. */
  baseCpuMsPerSec: number[];
  ticks: number;
  /** Connections the real target node counted (nodes(hidden)), which must equal `links`. */
  targetSaw: number;
}

/** CPU milliseconds per second each process uses over the next `seconds`. */
async function cpuMsPerSec(pids: number[], seconds: number): Promise<number[]> {
  const cpu0 = pids.map(cpuSeconds);
  await sleep(seconds * 1000);
  return pids.map((p, i) => ((cpuSeconds(p) - cpu0[i]!) * 1000) / seconds);
}

export async function runScale(env: BenchEnv, dir: string, rt: OtpRuntime, links: number, idleSeconds: number, gatewayArgs: string[] = []): Promise<ScaleResult> {
  const sources = Array.from({ length: links }, (_, i) => `s${i}`);
  const gw = await startGatewayPair(dir, sources, ['gt'], [], gatewayArgs);
  const open: EmulatedLink[] = [];
  let target: ErlNode | undefined;
  try {
    const targetName = `gt@${gw.mesh.hostOf('beta')}`;
    target = await startNode(env, rt, targetName, gw.mesh.nodeArgs(targetName));
    const flags = emulatedFlags(Number(rt.otp));
    const beta = gw.mesh.roster.gateways.get('beta');
    const alpha = gw.mesh.roster.gateways.get('alpha');
    assert.ok(beta && alpha, 'scale roster lacks its gateways');
    // Alpha learns the target from beta's registry announcement; until then its EPMD answers from the roster.
    const standInPort = await lookupStandIn(beta.loopback, alpha.epmdPort, 'gt', HANDSHAKE_TIMEOUT_MS);
    await sleep(SETTLE_MS);
    const rssBeforeMb = gw.pids.map((p) => memory(p).rssMb);
    const baseSeconds = Math.min(idleSeconds, BASELINE_MAX_SECONDS);
    const baseCpuMsPerSec = await cpuMsPerSec(gw.pids, baseSeconds);

    const t0 = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < links) {
        const i = next++;
        open.push(
          await connectEmulatedNode({
            host: beta.loopback,
            port: standInPort,
            name: `${sources[i]}@${gw.mesh.hostOf('alpha')}`,
            target: targetName,
            cookie: env.cookie,
            flags,
            timeoutMs: HANDSHAKE_TIMEOUT_MS,
          }),
        );
      }
    };
    await Promise.all(Array.from({ length: Math.min(OPEN_CONCURRENCY, links) }, worker));
    const establishMs = performance.now() - t0;
    const targetSaw = Number(await target.eval('length(nodes(hidden))'));

    await sleep(SETTLE_MS);
    const rssAfterMb = gw.pids.map((p) => memory(p).rssMb);
    const idleCpuMsPerSec = await cpuMsPerSec(gw.pids, idleSeconds);
    const down = open.filter((l) => !l.open).length;
    if (down > 0) throw new Error(`${down} of ${links} idle links closed during the idle window`);
    return {
      links,
      targetOtp: rt.otp,
      establishMs,
      rssBeforeMb,
      rssAfterMb,
      peakMb: gw.pids.map((p) => memory(p).peakMb),
      perLinkKb: rssAfterMb.map((after, i) => ((after - rssBeforeMb[i]!) * 1024) / links),
      idleSeconds,
      idleCpuMsPerSec,
      baseCpuMsPerSec,
      ticks: open.reduce((s, l) => s + l.ticks, 0),
      targetSaw,
    };
  } finally {
    for (const l of open) l.close();
    await target?.stop();
    await gw.stop();
  }
}
