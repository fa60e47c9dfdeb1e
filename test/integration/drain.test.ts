// Item 6: SIGTERM drains. The gateway stops accepting at once, lets open
// links run until they close on their own or the drain deadline passes, and
// its exit code says which: 0 clean, 3 links had to be cut.

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ErlNode } from '../../src/erlang/node.js';
import { waitFor } from '../helpers/mesh.js';
import { type ProcessMesh, startNodePair } from '../helpers/gateway-process.js';
import { nodeEvents, sinkReport, startSender, stopSender } from '../helpers/traffic.js';

const DRAIN_TIMEOUT_MS = 4_000;

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

describe('graceful shutdown on SIGTERM', () => {
  let pm: ProcessMesh;
  let a1: ErlNode;
  let b1: ErlNode;
  let betaTls: number;

  beforeAll(async () => {
    ({ pm, a1, b1 } = await startNodePair({ limits: { drainTimeoutMs: DRAIN_TIMEOUT_MS } }));
    await a1.eval('bg_traffic:start_monitor()');
    await b1.eval('bg_traffic:start_sink(sink)');
    betaTls = pm.layout.find((g) => g.name === 'beta')!.tlsPort;
  }, 90_000);
  afterAll(async () => pm?.stop());

  const trickle = async () => (await sinkReport(b1, 'sink')).find((e) => e.sender === 'drain1')?.received ?? 0;

  it('refuses new links at once, keeps the open one running, exits 0 when it closes before the deadline', async () => {
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
    await startSender(a1, 'drain1', 'sink', 'b1@beta.demo', { min: 16, max: 1024, burst: 5, pause: 20 });
    const beta = pm.gw('beta');
    const started = Date.now();
    beta.signal('SIGTERM');
    await waitFor('beta draining', () => beta.logged('draining').length > 0);
    expect(await refused(betaTls)).toBe(true);
    const res = await fetch(`http://127.0.0.1:${beta.metricsPort}/readyz`);
    expect(res.status).toBe(503);
    // The established link still carries traffic while draining.
    const during = await trickle();
    await waitFor('traffic during the drain', async () => (await trickle()) > during + 20);
    // The nodes end their connection themselves, well before the deadline.
    await stopSender(a1, 'drain1');
    expect(await a1.eval(`erlang:disconnect_node('b1@beta.demo')`)).toBe('true');
    expect(await beta.waitExit()).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(DRAIN_TIMEOUT_MS);
    expect(beta.logged('drained')[0]).toMatchObject({ clean: true, links_cut: 0 });
    const entry = (await sinkReport(b1, 'sink')).find((e) => e.sender === 'drain1')!;
    expect(entry).toMatchObject({ corrupted: 0, outOfOrder: 0 });
    expect(entry.received).toBe(entry.last);
  });

  it('cuts links still open at the deadline and exits 3', async () => {
    const beta = await pm.startGateway('beta');
    // b1 re-registers with the new gateway by itself (OTP retries every 2 s).
    await waitFor('b1 registered again', async () => (await a1.eval(`net_adm:ping('b1@beta.demo')`)) === 'pong', 20_000);
    const started = Date.now();
    beta.signal('SIGTERM');
    expect(await beta.waitExit(DRAIN_TIMEOUT_MS + 10_000)).toEqual({ code: 3, signal: null });
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(DRAIN_TIMEOUT_MS - 100);
    expect(beta.logged('drained')[0]).toMatchObject({ clean: false, links_cut: 1 });
    expect(beta.logged('link closed')[0]).toMatchObject({ reason: 'gateway shutting down: drain deadline reached' });
    await waitFor('a1 sees b1 go', async () => (await nodeEvents(a1)).some((e) => e.event === 'nodedown' && e.node === 'b1@beta.demo'));
  });

  it('exits 0 at once when there is no link', async () => {
    const beta = await pm.startGateway('beta');
    const started = Date.now();
    beta.signal('SIGTERM');
    expect(await beta.waitExit()).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(DRAIN_TIMEOUT_MS / 2);
  });
});
