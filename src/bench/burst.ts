// Link set-up in a burst, as when a cluster boots or heals: `links` emulated
// nodes of gateway alpha dial one real node behind gateway beta all at once,
// each with its own link (its own TLS connection, roster checks, distribution
// handshake with the real node and hand-over). Run twice in one bench run:
// with a ready TLS connection for every link (limits.standbyPerPeer, filled
// before the burst, src/mesh/standby.ts) and with none, so every link
// handshakes when its node dials, as before ready connections existed; that
// again with TLS session resumption off (limits.tlsSessionLifetimeMs 0:
// every one a full handshake, src/mesh/sessions.ts); and with the gateways on
// node:tls, which shows what the native data plane's tap adds to each link's
// set-up (src/fastpath/tap.ts).

import assert from 'node:assert/strict';
import type { ErlNode } from '../erlang/node.js';
import type { OtpRuntime } from '../erlang/roots.js';
import { connectEmulatedNode, type EmulatedLink, emulatedFlags, lookupStandIn } from './emulated-node.js';
import { type BenchEnv, startGatewayPair, startNode } from './paths.js';
import { cpuSeconds, sleep } from './proc.js';
import { metricValue, scrape, sumOf } from './scrape.js';
import { percentile } from './stats.js';

/** One emulated handshake through both gateways while all the others run, on a loaded machine. */
const HANDSHAKE_TIMEOUT_MS = 60_000;
/** How long the ready connections may take to be dialled before the burst. */
const FILL_TIMEOUT_MS = 60_000;
/** Lets the gateways settle (probes, registry sync) before the CPU reading starts. */
const SETTLE_MS = 1_500;

export interface BurstRun {
  /** limits.standbyPerPeer of the run (0: every link handshakes when it is dialled). */
  standby: number;
  plane: 'native' | 'node';
  /** Whether dials offered session tickets (limits.tlsSessionLifetimeMs > 0). */
  resumption: boolean;
  /** From the first dial until every link is up. */
  establishMs: number;
  /** Set-up time of one link (dial until its handshake with the real node is done), median and slowest. */
  p50Ms: number;
  maxMs: number;
  /** CPU both gateways spent per link in the burst (alpha / beta), ms. */
  cpuMsPerLink: number[];
  /** TLS handshakes alpha made as a client in the burst, and how many links started on a ready connection. */
  handshakes: number;
  /** Of those handshakes, how many resumed a session. */
  resumed: number;
  hits: number;
}

export interface BurstResult {
  links: number;
  targetOtp: string;
  runs: BurstRun[];
}

async function burstOnce(env: BenchEnv, dir: string, rt: OtpRuntime, links: number, standby: number, plane: 'native' | 'node', resumption: boolean, gatewayArgs: string[]): Promise<BurstRun> {
  const sources = Array.from({ length: links }, (_, i) => `s${i}`);
  const gw = await startGatewayPair(dir, sources, ['gt'], [], gatewayArgs, ['--data-plane', plane], { standbyPerPeer: standby, ...(resumption ? {} : { tlsSessionLifetimeMs: 0 }) });
  const open: EmulatedLink[] = [];
  let target: ErlNode | undefined;
  try {
    const targetName = `gt@${gw.mesh.hostOf('beta')}`;
    target = await startNode(env, rt, targetName, gw.mesh.nodeArgs(targetName));
    const beta = gw.mesh.roster.gateways.get('beta');
    const alpha = gw.mesh.roster.gateways.get('alpha');
    assert.ok(beta && alpha, 'burst roster lacks its gateways');
    const standInPort = await lookupStandIn(beta.loopback, alpha.epmdPort, 'gt', HANDSHAKE_TIMEOUT_MS);
    const alphaMetrics = gw.metricsPorts[0]!;
    const deadline = Date.now() + FILL_TIMEOUT_MS;
    while ((await metricValue(alphaMetrics, 'beamgate_standby_ready', 'peer="beta"')) < standby) {
      if (Date.now() > deadline) throw new Error(`alpha did not make ${standby} ready connections in ${FILL_TIMEOUT_MS} ms`);
      await sleep(100);
    }
    await sleep(SETTLE_MS);
    const flags = emulatedFlags(Number(rt.otp));
    // Handshakes, resumed ones and pool hits, each time from one scrape so they agree.
    const counts = async () => {
      const text = await scrape(alphaMetrics);
      return {
        hs: sumOf(text, 'beamgate_tls_handshakes_total', 'role="client"'),
        resumed: sumOf(text, 'beamgate_tls_resumed_total', 'role="client"'),
        hits: sumOf(text, 'beamgate_standby_taken_total', 'result="hit"'),
      };
    };
    const before = await counts();
    const cpu0 = gw.pids.map(cpuSeconds);
    const t0 = performance.now();
    const times = await Promise.all(
      sources.map(async (s) => {
        const started = performance.now();
        open.push(
          await connectEmulatedNode({
            host: beta.loopback,
            port: standInPort,
            name: `${s}@${gw.mesh.hostOf('alpha')}`,
            target: targetName,
            cookie: env.cookie,
            flags,
            timeoutMs: HANDSHAKE_TIMEOUT_MS,
          }),
        );
        return performance.now() - started;
      }),
    );
    const establishMs = performance.now() - t0;
    const cpuMsPerLink = gw.pids.map((p, i) => ((cpuSeconds(p) - cpu0[i]!) * 1000) / links);
    // Counted before the pool refills (that waits for the burst to be over).
    const after = await counts();
    const [handshakes, resumed, hits] = [after.hs - before.hs, after.resumed - before.resumed, after.hits - before.hits];
    const saw = Number(await target.eval('length(nodes(hidden))'));
    if (saw !== links) throw new Error(`the target node saw ${saw} of ${links} links`);
    const sorted = [...times].sort((a, b) => a - b);
    return { standby, plane, resumption, establishMs, p50Ms: percentile(sorted, 50), maxMs: sorted.at(-1)!, cpuMsPerLink, handshakes, resumed, hits };
  } finally {
    for (const l of open) l.close();
    await target?.stop();
    await gw.stop();
  }
}

/** The burst with every link on a ready connection, then with none (with and without resumption), then with none on node:tls, each on a fresh gateway pair. */
export async function runBurst(env: BenchEnv, dir: string, rt: OtpRuntime, links: number, gatewayArgs: string[] = []): Promise<BurstResult> {
  const runs: BurstRun[] = [];
  for (const [standby, plane, resumption] of [[links, 'native', true], [0, 'native', true], [0, 'native', false], [0, 'node', true]] as const) {
    runs.push(await burstOnce(env, `${dir}-${plane}-${standby}-${resumption ? 'resume' : 'full'}`, rt, links, standby, plane, resumption, gatewayArgs));
  }
  return { links, targetOtp: rt.otp, runs };
}
