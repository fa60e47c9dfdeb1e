// Item 3: a receiving node stops reading (SIGSTOP) while a sender floods it.
// The gateways must not buffer the flood: their memory stays bounded, and the
// sender's distribution channel blocks, exactly as it would on direct TCP.
// On SIGCONT every message arrives, in order, intact.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ErlNode } from '../../src/erlang/node.js';
import { sample, waitFor } from '../helpers/mesh.js';
import { type ProcessMesh, sleep, startNodePair } from '../helpers/gateway-process.js';
import { progress, sinkReport, startSender } from '../helpers/traffic.js';

const MIB = 1024 * 1024;
/** Messages of 1 MiB: 256 MiB in all, far more than any buffer on the path. */
const MESSAGES = 256;
/**
 * How much a gateway's RSS may grow while the flood is held back. What the
 * relay itself may queue is writeHighWaterMark (1 MiB) per direction plus one
 * read chunk; the rest of the allowance is V8 and allocator noise (TLS
 * records, buffers not yet collected). Without backpressure the flood (256
 * MiB) would land in the gateway's memory, far above this.
 */
const RSS_GROWTH_BOUND_KB = 48 * 1024;
/**
 * How far the sender may get while the receiver is stopped: kernel socket
 * buffers on three hops (node → alpha, alpha → beta, beta → node; autotuned,
 * a few MiB each), the gateways' high-water marks and the node's own
 * distribution buffer (dist_buf_busy_limit, 1 MiB). Far below MESSAGES.
 */
const MAX_SENT_WHILE_STOPPED = 64;

describe('backpressure through the gateways', () => {
  let pm: ProcessMesh;
  let a1: ErlNode;
  let b1: ErlNode;

  beforeAll(async () => {
    ({ pm, a1, b1 } = await startNodePair());
    await b1.eval('bg_traffic:start_sink(sink)');
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
  }, 90_000);
  afterAll(async () => pm?.stop());

  it('holds a stopped receiver\'s flood in the sender, not in the gateways, and loses nothing', async () => {
    // Warm up the path so the baseline includes TLS buffers and JIT-compiled code.
    await startSender(a1, 'warmup', 'sink', 'b1@beta.demo', { count: 32, min: MIB, max: MIB, random: false });
    await waitFor('warm-up delivered', async () => (await sinkReport(b1, 'sink')).find((e) => e.sender === 'warmup')?.received === 32, 30_000);
    const base = { alpha: pm.gw('alpha').memory().rssKb, beta: pm.gw('beta').memory().rssKb };

    process.kill(b1.proc.pid!, 'SIGSTOP');
    let resumed = false;
    try {
      await startSender(a1, 'flood', 'sink', 'b1@beta.demo', { count: MESSAGES, min: MIB, max: MIB, random: false });
      // Let the sender run into the wall, sampling the gateways' memory meanwhile.
      const peak = { alpha: 0, beta: 0 };
      const sampleRss = () => {
        peak.alpha = Math.max(peak.alpha, pm.gw('alpha').memory().rssKb);
        peak.beta = Math.max(peak.beta, pm.gw('beta').memory().rssKb);
      };
      for (let i = 0; i < 20; i++) {
        sampleRss();
        await sleep(250);
      }
      const first = await progress(a1, 'flood');
      for (let i = 0; i < 12; i++) {
        sampleRss();
        await sleep(250);
      }
      const second = await progress(a1, 'flood');
      console.log(
        `backpressure: sender blocked after ${second.sent} of ${MESSAGES} MiB; ` +
          `gateway RSS growth alpha ${Math.round((peak.alpha - base.alpha) / 1024)} MiB, beta ${Math.round((peak.beta - base.beta) / 1024)} MiB`,
      );
      expect(second.done).toBe(false);
      expect(second.sent).toBe(first.sent); // blocked: no progress in 3 s
      expect(second.sent).toBeLessThan(MAX_SENT_WHILE_STOPPED);
      expect(peak.alpha - base.alpha).toBeLessThan(RSS_GROWTH_BOUND_KB);
      expect(peak.beta - base.beta).toBeLessThan(RSS_GROWTH_BOUND_KB);
      // The link is still there, nothing was refused.
      const alpha = await pm.gw('alpha').metrics();
      expect(sample(alpha, 'beamgate_links_open', { peer: 'beta' })).toBe(1);

      process.kill(b1.proc.pid!, 'SIGCONT');
      resumed = true;
      await waitFor('every message delivered', async () => (await progress(a1, 'flood')).done, 120_000);
      const entry = await waitFor(
        'the sink has all of them',
        async () => (await sinkReport(b1, 'sink')).find((e) => e.sender === 'flood' && e.received === MESSAGES),
        120_000,
      );
      expect(entry).toMatchObject({ last: MESSAGES, received: MESSAGES, corrupted: 0, outOfOrder: 0, bytes: MESSAGES * MIB });
      for (const gw of ['alpha', 'beta']) expect(sample(await pm.gw(gw).metrics(), 'beamgate_links_closed_total')).toBe(0);
    } finally {
      if (!resumed) process.kill(b1.proc.pid!, 'SIGCONT');
    }
  }, 240_000);
});
