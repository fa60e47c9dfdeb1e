// Ready TLS connections between gateways (src/mesh/standby.ts), with real
// gateways, real TLS and real `erl` nodes: each gateway keeps
// limits.standbyPerPeer verified connections to each peer (one per node
// pair for a peer with more pairs of nodes), a link starts on
// one without a handshake of its own and is handed to the native data plane
// like any other, the pool is refilled once the burst is over, a ready
// connection waiting too long is replaced, a peer that restarts is dialled
// again, a slow handshake to a peer leaves its pool alone where a refused
// dial closes it, a reload applies a new size, and a peer cannot hold more
// than MAX_STANDBY_PER_PEER of them.

import net from 'node:net';
import tls from 'node:tls';
import { readFileSync, writeFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { loadGatewayConfig } from '../../src/config/load.js';
import { MAX_STANDBY_PER_PEER } from '../../src/config/limits.js';
import { encodePreamble } from '../../src/mesh/preamble.js';
import { nativeEngine } from '../../src/fastpath/native.js';
import { sample, startTestMesh, type TestMesh, waitFor } from '../helpers/mesh.js';

/** Ready connections are dialled one at a time per peer; a loaded machine may take a few seconds for several. */
const FILL_TIMEOUT_MS = 30_000;

describe('ready TLS connections between gateways', () => {
  let t: TestMesh | undefined;
  afterEach(async () => {
    await t?.stop();
    t = undefined;
  });

  const metric = async (gw: string, name: string, labels: Record<string, string> = {}) => sample(await t!.metricsText(gw), name, labels);
  const ready = (gw: string, peer: string) => metric(gw, 'beamgate_standby_ready', { peer });
  const held = (gw: string, peer: string) => metric(gw, 'beamgate_standby_held', { peer });

  it('keeps standbyPerPeer of them both ways; a link takes one, is handed over, and the pool is refilled after the burst', async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'] }, limits: { standbyPerPeer: 3 } });
    await waitFor('alpha to hold 3 ready connections to beta, and beta to count them', async () => (await ready('alpha', 'beta')) === 3 && (await held('beta', 'alpha')) === 3, FILL_TIMEOUT_MS);
    await waitFor('beta to hold 3 to alpha', async () => (await ready('beta', 'alpha')) === 3 && (await held('alpha', 'beta')) === 3, FILL_TIMEOUT_MS);
    const [a1, b1] = await Promise.all([t.startNode('a1@alpha.demo'), t.startNode('b1@beta.demo')]);
    const hits = await metric('alpha', 'beamgate_standby_taken_total', { peer: 'beta', result: 'hit' });
    const handovers = await metric('alpha', 'beamgate_link_handovers_total', { result: 'native' });

    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
    expect(await a1.eval(`rpc:call('b1@beta.demo', erlang, node, [])`)).toBe(`'b1@beta.demo'`);
    expect(await metric('alpha', 'beamgate_standby_taken_total', { peer: 'beta', result: 'hit' })).toBe(hits + 1);
    expect(await metric('alpha', 'beamgate_standby_taken_total', { peer: 'beta', result: 'miss' })).toBe(0);
    // The standby preamble was one more record under the application keys: the hand-over counted it.
    if (nativeEngine('auto').engine) {
      await waitFor('the link on the native data plane', async () => (await metric('alpha', 'beamgate_link_handovers_total', { result: 'native' })) > handovers);
    }
    // 1 MiB both ways through the link that started on a ready connection.
    expect(
      await b1.eval(`B = crypto:strong_rand_bytes(1048576), rpc:call('a1@alpha.demo', erlang, md5, [B]) =:= erlang:md5(B)`),
    ).toBe('true');
    await waitFor('alpha to refill its pool to beta', async () => (await ready('alpha', 'beta')) === 3 && (await held('beta', 'alpha')) === 3, FILL_TIMEOUT_MS);
    expect(await b1.eval('nodes()')).toBe(`['a1@alpha.demo']`);
  });

  it('links dial their own with standbyPerPeer 0', async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'] }, limits: { standbyPerPeer: 0 } });
    const [a1] = await Promise.all([t.startNode('a1@alpha.demo'), t.startNode('b1@beta.demo')]);
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
    expect(await ready('alpha', 'beta')).toBe(0);
    expect(await held('beta', 'alpha')).toBe(0);
    expect(await metric('alpha', 'beamgate_standby_taken_total', { peer: 'beta', result: 'miss' })).toBe(1);
    expect(await metric('alpha', 'beamgate_standby_taken_total', { peer: 'beta', result: 'hit' })).toBe(0);
  });

  it('replaces one that waited standbyIdleMs, and dials a restarted peer again', async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'] }, limits: { standbyPerPeer: 2, standbyIdleMs: 1_000 } });
    await waitFor('two ready', async () => (await ready('alpha', 'beta')) === 2, FILL_TIMEOUT_MS);
    await waitFor('both replaced at least once', async () => (await metric('alpha', 'beamgate_standby_expired_total', { peer: 'beta' })) >= 2, FILL_TIMEOUT_MS);
    await waitFor('two ready again, and beta holding no more than two', async () => (await ready('alpha', 'beta')) === 2 && (await held('beta', 'alpha')) === 2, FILL_TIMEOUT_MS);

    await t.gateways.get('beta')!.stop();
    await waitFor('the ready connections to the stopped beta gone', async () => (await ready('alpha', 'beta')) === 0, FILL_TIMEOUT_MS);
    await t.startGateway('beta');
    // Dials to the stopped peer failed and backed off (STANDBY_RETRY_MIN_MS, doubling); one succeeds once it is back.
    await waitFor('two ready to the new beta', async () => (await ready('alpha', 'beta')) === 2, 60_000);
    const a1 = await t.startNode('a1@alpha.demo');
    await t.startNode('b1@beta.demo');
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
  }, 120_000);

  it('fills at once when a peer that was down is reachable again, without waiting out the back-off of the dials that failed', async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'] }, limits: { standbyPerPeer: 2 } });
    await waitFor('two ready', async () => (await ready('alpha', 'beta')) === 2, FILL_TIMEOUT_MS);
    await t.gateways.get('beta')!.stop();
    // Dials to the stopped peer fail and back off, 1 s, 2 s, 4 s, 8 s, ... (STANDBY_RETRY_MIN_MS, doubling).
    const failed = () => t!.logOf('alpha').filter((l) => l.msg === 'ready connection dial failed' && l.peer === 'beta');
    await waitFor('a back-off of at least 8 s', async () => failed().some((l) => Number(l.retry_in_ms) >= 8_000), 60_000);
    const last = failed().at(-1)!;
    const retryAt = Date.parse(String(last.ts)) + Number(last.retry_in_ms);
    await t.startGateway('beta');
    // Beta's registry link kicks alpha's, whose dial proves beta reachable: the pool dials then, not at retryAt.
    await waitFor('two ready to the new beta', async () => (await ready('alpha', 'beta')) === 2, FILL_TIMEOUT_MS);
    const kicked = t.logOf('alpha').find((l) => l.msg === 'ready connections dialled again: peer reachable' && l.peer === 'beta');
    expect(kicked, 'the back-off cut short by a dial that reached beta').toBeDefined();
    expect(Date.parse(String(kicked!.ts))).toBeLessThan(retryAt);
    expect(failed().at(-1), 'no dial failed after beta was back').toEqual(last);
  }, 120_000);

  it('keeps one for every pair of its nodes and the peer\'s where those are more than standbyPerPeer', async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1', 'b2', 'b3'], gamma: ['c1'] }, limits: { standbyPerPeer: 2 } });
    // alpha and gamma have one node, beta three: 3 pairs between beta and either, 1 between alpha and gamma (2, standbyPerPeer).
    const want = [['alpha', 'beta', 3], ['alpha', 'gamma', 2], ['beta', 'alpha', 3], ['beta', 'gamma', 3], ['gamma', 'alpha', 2], ['gamma', 'beta', 3]] as const;
    const counts = async () => [...(await Promise.all(want.map(([g, p]) => ready(g, p)))), ...(await Promise.all(want.map(([g, p]) => held(p, g))))];
    const expected = [...want.map(([, , n]) => n), ...want.map(([, , n]) => n)];
    await waitFor('each pool at its size, and held by each peer', async () => (await counts()).every((n, i) => n === expected[i]), FILL_TIMEOUT_MS);
    // Each pool dials one at a time and had filled before the last: one that wanted more would hold more by now.
    expect(await counts()).toEqual(expected);
  });

  it('shares standbyTotal among the peers: with a total of 3 and two peers, one each', async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'], gamma: ['c1'] }, limits: { standbyPerPeer: 8, standbyTotal: 3 } });
    const pairs = [['alpha', 'beta'], ['alpha', 'gamma'], ['beta', 'alpha'], ['beta', 'gamma'], ['gamma', 'alpha'], ['gamma', 'beta']] as const;
    // The accepting side counts a ready connection once it has read its hello, a moment after the dialler
    // counts it: wait for both sides of all six.
    const counts = async () => [...(await Promise.all(pairs.map(([g, p]) => ready(g, p)))), ...(await Promise.all(pairs.map(([g, p]) => held(p, g))))];
    await waitFor('one ready in each of the six pools, and held by each peer', async () => (await counts()).every((n) => n === 1), FILL_TIMEOUT_MS);
    // Each pool dials one at a time and had filled before the last: one that wanted more would hold more by now.
    expect(await counts()).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
  });

  it('applies a new standbyPerPeer on reload: the old ones are closed on both sides and dialled again', async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'] }, limits: { standbyPerPeer: 4 } });
    await waitFor('four ready', async () => (await ready('alpha', 'beta')) === 4 && (await held('beta', 'alpha')) === 4, FILL_TIMEOUT_MS);
    const doc = parse(readFileSync(t.mesh.rosterPath, 'utf8')) as { limits: Record<string, number> };
    doc.limits.standbyPerPeer = 1;
    writeFileSync(t.mesh.rosterPath, stringify(doc));
    expect(await t.gateways.get('alpha')!.reload(loadGatewayConfig(t.mesh.rosterPath, 'alpha'))).toBe(true);
    const betaExpired = await metric('beta', 'beamgate_standby_expired_total', { peer: 'alpha' });
    await waitFor('one ready from alpha, the others closed on beta', async () => (await ready('alpha', 'beta')) === 1 && (await held('beta', 'alpha')) === 1, FILL_TIMEOUT_MS);
    // Alpha also closed the four beta held to it (verified under the old roster); beta, on the old roster, dials four anew.
    await waitFor("beta's four dialled again", async () => (await ready('beta', 'alpha')) === 4 && (await held('alpha', 'beta')) === 4, FILL_TIMEOUT_MS);
    expect(await metric('beta', 'beamgate_standby_expired_total', { peer: 'alpha' })).toBe(betaExpired);
    expect(await metric('beta', 'beamgate_tls_handshakes_total', { role: 'client', result: 'ok' })).toBeGreaterThanOrEqual(8);
  });

  it('keeps its ready connections when a dial to that peer only times out in TLS (a slow peer), and closes them when one fails outright', async () => {
    // Alpha dials beta through a TCP relay that can stop answering new connections
    // while it keeps carrying the open ones: a peer too busy to handshake, as in a
    // cluster booting at once. Beta listens where it did; only alpha's roster moves.
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'] }, limits: { standbyPerPeer: 3, tlsHandshakeTimeoutMs: 1_500, peerProbeIntervalMs: 1_000 } });
    const betaTls = t.mesh.roster.gateways.get('beta')!.address.port;
    let stall = false;
    const open = new Set<net.Socket>();
    const relay = net.createServer((c) => {
      open.add(c);
      c.on('close', () => open.delete(c));
      c.on('error', () => c.destroy());
      if (stall) return; // accepted, never answered: the dialler's TLS handshake times out
      const u = net.connect(betaTls, '127.0.0.1');
      open.add(u);
      u.on('close', () => (open.delete(u), c.destroy()));
      u.on('error', () => u.destroy());
      c.on('close', () => u.destroy());
      c.pipe(u);
      u.pipe(c);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    try {
      const doc = parse(readFileSync(t.mesh.rosterPath, 'utf8')) as { gateways: Record<string, Record<string, unknown>> };
      doc.gateways.beta!.listen = doc.gateways.beta!.address;
      doc.gateways.beta!.address = `127.0.0.1:${(relay.address() as net.AddressInfo).port}`;
      writeFileSync(t.mesh.rosterPath, stringify(doc));
      expect(await t.gateways.get('alpha')!.reload(loadGatewayConfig(t.mesh.rosterPath, 'alpha'))).toBe(true);
      await waitFor('alpha to hold 3 ready connections to beta, through the relay', async () => (await ready('alpha', 'beta')) === 3 && (await held('beta', 'alpha')) === 3, FILL_TIMEOUT_MS);

      const failed = () => metric('alpha', 'beamgate_tls_handshakes_total', { role: 'client', result: 'failed' });
      const before = await failed();
      stall = true;
      // The next probe's handshake times out (tlsHandshakeTimeoutMs); the pool, verified and open, stays.
      await waitFor("a probe's TLS handshake to beta to time out", async () => (await failed()) > before, 15_000);
      expect(await ready('alpha', 'beta')).toBe(3);
      expect(t.logOf('alpha').some((l) => l.msg === 'peer unreachable' && String(l.detail).includes('TLS handshake with beta timed out'))).toBe(true);

      // And the pool serves the next link at once.
      stall = false;
      const [a1] = await Promise.all([t.startNode('a1@alpha.demo'), t.startNode('b1@beta.demo')]);
      const hits = await metric('alpha', 'beamgate_standby_taken_total', { peer: 'beta', result: 'hit' });
      expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
      expect(await metric('alpha', 'beamgate_standby_taken_total', { peer: 'beta', result: 'hit' })).toBe(hits + 1);

      // A dial that fails outright closes the pool, as before: the relay stops listening
      // (connection refused) and keeps carrying what it has, the ready connections among them.
      relay.close();
      await waitFor('alpha to close its ready connections to beta once a dial is refused', async () => (await ready('alpha', 'beta')) === 0, 15_000);
    } finally {
      relay.close();
      for (const s of open) s.destroy();
    }
  });

  it(`refuses a peer's ready connection beyond ${MAX_STANDBY_PER_PEER}, with a log line and a metric`, async () => {
    // alpha stays down: the test dials beta with alpha's certificate itself.
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'] }, skipStart: ['alpha'], limits: { standbyPerPeer: 1 } });
    const alpha = loadGatewayConfig(t.mesh.rosterPath, 'alpha');
    const beta = t.mesh.roster.gateways.get('beta')!;
    const limitRefusals = await metric('beta', 'beamgate_refusals_total', { reason: 'limit_reached' });
    const open: tls.TLSSocket[] = [];
    const dialStandby = () =>
      new Promise<tls.TLSSocket>((resolve, reject) => {
        const sock = tls.connect({
          host: beta.address.host,
          port: beta.address.port,
          cert: alpha.material.cert,
          key: alpha.material.key,
          ca: alpha.material.cas.map((c) => c.pem),
          minVersion: 'TLSv1.3',
          checkServerIdentity: () => undefined,
        });
        sock.once('secureConnect', () => {
          sock.write(encodePreamble({ kind: 'standby' }));
          resolve(sock);
        });
        sock.once('error', reject);
      });
    try {
      for (let i = 0; i < MAX_STANDBY_PER_PEER; i++) open.push(await dialStandby());
      await waitFor(`beta to hold ${MAX_STANDBY_PER_PEER}`, async () => (await held('beta', 'alpha')) === MAX_STANDBY_PER_PEER, FILL_TIMEOUT_MS);
      const extra = await dialStandby();
      await new Promise<void>((r) => extra.once('close', () => r()));
      expect(await metric('beta', 'beamgate_refusals_total', { reason: 'limit_reached' })).toBe(limitRefusals + 1);
      expect(await held('beta', 'alpha')).toBe(MAX_STANDBY_PER_PEER);
      expect(t.logOf('beta').some((l) => l.reason === 'limit_reached' && String(l.detail).includes(`holds ${MAX_STANDBY_PER_PEER} ready connections`) && l.peer === 'alpha')).toBe(true);
      // Closing them untaken is no refusal and no abandoned link.
      for (const s of open) s.end();
      await waitFor('beta to hold none', async () => (await held('beta', 'alpha')) === 0, FILL_TIMEOUT_MS);
      expect(await metric('beta', 'beamgate_links_abandoned_total', { peer: 'alpha' })).toBe(0);
      expect(await metric('beta', 'beamgate_refusals_total', { reason: 'limit_reached' })).toBe(limitRefusals + 1);
    } finally {
      for (const s of open) s.destroy();
    }
  });
});
