// Item 7: integrity soak. Three node pairs send random binaries both ways
// through two gateway processes for BEAMGATE_SOAK_SECONDS (60 by default),
// each message with a sequence number and its sha256, every one acknowledged.
// Meanwhile both gateways are reloaded (SIGHUP) periodically, every other time
// with freshly issued certificates, and after each reload a new link is
// opened between two nodes that had none. At the end: nothing lost, changed,
// duplicated or reordered, every message acknowledged, no link of a pair ever
// dropped, and the gateways' RSS at the end of the run no higher than early in
// the run plus a fixed allowance.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueCerts } from '../../src/cli/certs.js';
import { loadRoster } from '../../src/config/roster.js';
import type { ErlNode } from '../../src/erlang/node.js';
import { sample, waitFor } from '../helpers/mesh.js';
import { assertIntact, type ProcessMesh, RssSampler, sleep, startProcessMesh } from '../helpers/gateway-process.js';
import { compileTraffic, nodeEvents, progress, type SenderOptions, type SinkEntry, sinkReport, startSender, stopSender } from '../helpers/traffic.js';

const SOAK_SECONDS = Number(process.env.BEAMGATE_SOAK_SECONDS ?? 60);
if (!Number.isFinite(SOAK_SECONDS) || SOAK_SECONDS < 20) throw new Error(`BEAMGATE_SOAK_SECONDS must be a number >= 20, got ${process.env.BEAMGATE_SOAK_SECONDS}`);
const SOAK_MS = SOAK_SECONDS * 1000;
/** A reload of both gateways this often; odd-numbered ones (the first included) rotate the certificates first. */
const RELOAD_EVERY_MS = 15_000;
const RSS_SAMPLE_MS = 1_000;
/** "Early run" for the RSS baseline: after warm-up (links up, buffers grown, code optimised), before the run has aged. */
const EARLY_WINDOW = { from: 0.1, to: 0.3 };
/** "End of run": the last part of the traffic phase. */
const LATE_WINDOW_FROM = 0.8;
/**
 * How far the late-run RSS peak may rise above the early-run peak. The relay
 * holds at most writeHighWaterMark (1 MiB) per direction per link, so what
 * remains is V8 and allocator noise (heap growth steps, TLS and socket
 * buffers not yet reclaimed; about 3 MiB in a 60 s run here). Each gateway
 * relays roughly 8,000 frames a second in this run (messages and their acks),
 * so between the two windows (half the run) a leak of about 130 bytes per
 * frame would exceed this in 60 s; a longer soak catches smaller leaks.
 */
const RSS_GROWTH_BOUND_KB = 32 * 1024;
/** After the senders are told to stop: their last messages and acks in flight (large ones on a busy machine). */
const FINISH_MS = 120_000;

interface Pair {
  name: string;
  a: string;
  b: string;
  traffic: SenderOptions;
}

// Small messages stress per-frame work, medium ones mixed sizes, large ones
// OTP's fragmentation (64 KiB fragments interleaved with the acks).
const PAIRS: Pair[] = [
  { name: 'p1-small', a: 'a1', b: 'b1', traffic: { min: 1, max: 512, burst: 20, pause: 10, window: 200 } },
  { name: 'p2-medium', a: 'a2', b: 'b2', traffic: { min: 1, max: 16 * 1024, burst: 5, pause: 10, window: 50 } },
  { name: 'p3-large', a: 'a3', b: 'b3', traffic: { min: 64 * 1024, max: 1024 * 1024, burst: 1, pause: 100, window: 4 } },
];

const full = (short: string) => `${short}@${short.startsWith('a') ? 'alpha' : 'beta'}.demo`;
const mib = (kb: number) => `${(kb / 1024).toFixed(1)} MiB`;

describe(`integrity soak (${SOAK_SECONDS} s; BEAMGATE_SOAK_SECONDS sets it)`, () => {
  let pm: ProcessMesh;
  const nodes = new Map<string, ErlNode>();
  const node = (short: string) => nodes.get(short)!;

  beforeAll(async () => {
    pm = await startProcessMesh({ gateways: { alpha: PAIRS.map((p) => p.a), beta: PAIRS.map((p) => p.b) } });
    const pa = compileTraffic(pm.dir);
    const shorts = PAIRS.flatMap((p) => [p.a, p.b]);
    const started = await Promise.all(shorts.map((s) => pm.startNode(full(s), pa)));
    shorts.forEach((s, i) => nodes.set(s, started[i]!));
    for (const n of started) {
      await n.eval('bg_traffic:start_monitor()');
      await n.eval('bg_traffic:start_sink(sink)');
    }
    for (const p of PAIRS) expect(await node(p.a).eval(`net_adm:ping('${full(p.b)}')`)).toBe('pong');
  }, 120_000);
  afterAll(async () => pm?.stop());

  it('loses, corrupts, duplicates and reorders nothing across reloads and certificate rotations; gateway RSS stays flat', async () => {
    const alpha = pm.gw('alpha');
    const beta = pm.gw('beta');
    const rss = new RssSampler([alpha, beta]);
    const senders = PAIRS.flatMap((p) => [
      { key: `${p.name}-ab`, pair: p, from: p.a, to: p.b },
      { key: `${p.name}-ba`, pair: p, from: p.b, to: p.a },
    ]);
    for (const s of senders) await startSender(node(s.from), s.key, 'sink', full(s.to), s.pair.traffic);
    const t0 = Date.now();
    rss.start(RSS_SAMPLE_MS);

    // Reloads while the traffic runs; after each, a fresh link between two nodes of different pairs.
    const crossPairs = PAIRS.flatMap((p) => PAIRS.filter((q) => q !== p).map((q) => [p.a, q.b] as const));
    let reloads = 0;
    let rotations = 0;
    try {
      while (Date.now() - t0 + RELOAD_EVERY_MS < SOAK_MS) {
        await sleep(t0 + (reloads + 1) * RELOAD_EVERY_MS - Date.now());
        const rotate = reloads % 2 === 0;
        if (rotate) {
          await issueCerts(loadRoster(pm.mesh.rosterPath), ['alpha', 'beta'], true);
          rotations++;
        }
        for (const gw of [alpha, beta]) {
          const before = sample(await gw.metrics(), 'beamgate_reloads_total', { result: 'ok' });
          gw.signal('SIGHUP');
          await waitFor(`${gw.name} reloaded`, async () => sample(await gw.metrics(), 'beamgate_reloads_total', { result: 'ok' }) > before, 30_000);
        }
        reloads++;
        const [x, y] = crossPairs[(reloads - 1) % crossPairs.length]!;
        const [dialer, target] = reloads % 2 === 0 ? [x, y] : [y, x];
        expect(await node(dialer).eval(`net_adm:ping('${full(target)}')`)).toBe('pong');
        expect(await node(dialer).eval(`erlang:disconnect_node('${full(target)}')`)).toBe('true');
      }
      await sleep(t0 + SOAK_MS - Date.now());
    } finally {
      for (const s of senders) await stopSender(node(s.from), s.key);
    }
    const trafficEnd = Date.now();
    rss.stop();

    // Every sender stops, then waits for its last acks.
    const sent = new Map<string, { sent: number; acked: number }>();
    for (const s of senders) {
      const p = await waitFor(`${s.key} finished`, async () => {
        const pr = await progress(node(s.from), s.key);
        return pr.done ? pr : undefined;
      }, FINISH_MS);
      sent.set(s.key, p);
    }
    const received = new Map<string, SinkEntry>();
    for (const short of nodes.keys()) for (const e of await sinkReport(node(short), 'sink')) received.set(e.sender, e);

    // Figures first, so a failing run still says what it saw.
    const durationS = (trafficEnd - t0) / 1000;
    const lines = senders.map((s) => {
      const r = received.get(s.key);
      return `  ${s.key.padEnd(14)} ${full(s.from)} -> ${full(s.to)}: sent ${sent.get(s.key)!.sent}, acked ${sent.get(s.key)!.acked}, received ${r?.received ?? 0}, ${mib((r?.bytes ?? 0) / 1024)}`;
    });
    const totalMsgs = [...received.values()].reduce((n, e) => n + e.received, 0);
    const totalBytes = [...received.values()].reduce((n, e) => n + e.bytes, 0);
    const early = { from: t0 + EARLY_WINDOW.from * SOAK_MS, to: t0 + EARLY_WINDOW.to * SOAK_MS };
    const late = { from: t0 + LATE_WINDOW_FROM * SOAK_MS, to: trafficEnd + 1 };
    const metricsText = new Map([alpha, beta].map((g) => [g, '']));
    for (const g of [alpha, beta]) metricsText.set(g, await g.metrics());
    const mem = [alpha, beta].map((g) => ({
      name: g.name,
      all: rss.summary(g.name),
      early: rss.summary(g.name, early),
      late: rss.summary(g.name, late),
      frames: sample(metricsText.get(g)!, 'beamgate_relayed_frames_total'),
    }));
    console.log(
      [
        `soak: ${durationS.toFixed(0)} s, ${reloads} reloads (${rotations} with new certificates), ${totalMsgs} messages, ${mib(totalBytes / 1024)} payload, ` +
          `${(totalBytes / 1024 / 1024 / durationS).toFixed(1)} MiB/s`,
        ...lines,
        ...mem.map(
          (m) =>
            `  RSS ${m.name}: first ${mib(m.all.firstKb)}, peak ${mib(m.all.peakKb)}, last ${mib(m.all.lastKb)}; ` +
            `early-run peak ${mib(m.early.windowPeakKb)}, late-run peak ${mib(m.late.windowPeakKb)}; ${m.frames} frames relayed`,
        ),
      ].join('\n'),
    );

    expect(reloads).toBeGreaterThanOrEqual(1);
    expect(rotations).toBeGreaterThanOrEqual(1);
    for (const s of senders) {
      const { sent: n, acked } = sent.get(s.key)!;
      expect(n, `${s.key} sent something`).toBeGreaterThan(0);
      expect(acked, `${s.key}: every message acknowledged`).toBe(n);
      expect(received.get(s.key), `${s.key}: all received, in order, intact`).toMatchObject({ last: n, received: n, corrupted: 0, outOfOrder: 0, backwards: 0 });
    }
    // The pairs' links never dropped: no nodedown between partners, and the only links closed are the cross-pair ones.
    for (const p of PAIRS) {
      for (const [me, other] of [
        [p.a, p.b],
        [p.b, p.a],
      ] as const) {
        expect((await nodeEvents(node(me))).filter((e) => e.event === 'nodedown' && e.node === full(other))).toEqual([]);
      }
    }
    const pairLinks = new Set(PAIRS.flatMap((p) => [`${full(p.a)}|${full(p.b)}`, `${full(p.b)}|${full(p.a)}`]));
    for (const gw of [alpha, beta]) {
      expect(gw.logged('link closed').filter((l) => pairLinks.has(`${String(l.local_node)}|${String(l.remote_node)}`))).toEqual([]);
      // ...and no close went uncounted in a line of its own (the link log budget summarises the excess).
      expect(gw.logged('link lines suppressed', { link_msg: 'link closed' })).toEqual([]);
      const m = metricsText.get(gw)!;
      expect(sample(m, 'beamgate_reloads_total', { result: 'ok' })).toBe(reloads);
      expect(sample(m, 'beamgate_reloads_total', { result: 'failed' })).toBe(0);
      expect(gw.logged('configuration reloaded').every((l) => Number(l.links_kept) >= PAIRS.length)).toBe(true);
      // The gateways counted at least the payload they carried (framing, acks and ticks come on top).
      for (const p of PAIRS) {
        const [local, remote] = gw === alpha ? [p.a, p.b] : [p.b, p.a];
        const payload = received.get(`${p.name}-${gw === alpha ? 'ab' : 'ba'}`)!.bytes;
        expect(sample(m, 'beamgate_relayed_bytes_total', { direction: 'out', local_node: full(local), remote_node: full(remote) })).toBeGreaterThan(payload);
      }
      assertIntact(gw);
    }
    for (const m of mem) {
      expect(m.late.windowPeakKb, `${m.name}: late-run RSS peak within ${mib(RSS_GROWTH_BOUND_KB)} of the early-run peak`).toBeLessThanOrEqual(
        m.early.windowPeakKb + RSS_GROWTH_BOUND_KB,
      );
    }
  }, SOAK_MS + 300_000);
});
