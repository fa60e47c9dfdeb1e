// Every limit sheds what exceeds it, counts it by reason, and leaves the links
// already established alone. The roster sets small limits and short timeouts
// so slow clients (one byte a second) and floods are shed within seconds.

import http from 'node:http';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, type Limits } from '../../src/config/limits.js';
import { encodeHandshakeMessage, sendNameV6 } from '../../src/framing/handshake.js';
import { encodeAlive2Request, encodePortPlease2Request, NODE_TYPE_NORMAL } from '../../src/epmd/protocol.js';
import type { ErlNode } from '../../src/erlang/node.js';
import { encodePreamble } from '../../src/mesh/preamble.js';
import { dribble, expectRefused, gatewayPem, type MeshPorts, meshPorts, rawExchange, refusals, tlsExchange } from '../helpers/hostile-client.js';
import { startTestMesh, type TestMesh, waitFor } from '../helpers/mesh.js';
import { type Sentinel, watchLink } from '../helpers/sentinel.js';

const LIMITS: Partial<Limits> = {
  tlsHandshakeTimeoutMs: 2_000,
  // Long enough for a real node's handshake on a loaded machine, short enough to wait for.
  distHandshakeTimeoutMs: 4_000,
  firstByteTimeoutMs: 1_500,
  epmdRequestTimeoutMs: 1_500,
  // Beta's TLS port holds the watched link, alpha's ready connection (standbyTotal), a
  // registry link and a probe: with one source's share of handshakes on top, there is
  // still room for a genuine peer. With the default ready pool (half the port, here 4)
  // the per-source test below found the port full and its genuine peer shed.
  maxTlsConnections: 8,
  maxTlsHandshakesPerSource: 3,
  standbyTotal: 1,
  maxEpmdConnections: 6,
  maxLinks: 6,
  maxLinksPerPeer: 6,
  maxPendingBytes: 16 * 1024,
  // Each flood connection is checked for its own refusal line: no log budget here (the faults test covers it).
  refusalLogBurst: 10_000,
  // Below the defaults, so these tests show the roster's values are the ones in force.
  metricsMaxConnections: 10,
  metricsHeadersTimeoutMs: 2_500,
  metricsIdleTimeoutMs: 2_500,
};
const FLOOD = 12;
const SLOW_MS = 1_000;
const FLAGS = 0x1ffffffn;

interface Flood {
  /** Each connection's address and port, as the gateway logs it in `from`. */
  froms: string[];
  /** When the flood began: client ports are reused, so only log lines since then are its own. */
  startedAt: number;
  closed(): number;
}

/** Opens `n` connections at once that send nothing, from the loopback addresses in `sources`, in turn. */
async function flood(n: number, port: number, host: string, sources = ['127.0.0.1']): Promise<Flood> {
  let closed = 0;
  const startedAt = Date.now();
  const froms = await Promise.all(
    Array.from(
      { length: n },
      (_, i) =>
        new Promise<string>((resolve, reject) => {
          const localAddress = sources[i % sources.length]!;
          const s = net.connect({ port, host, localAddress });
          s.on('close', () => closed++);
          s.once('connect', () => resolve(`${localAddress}:${s.localPort}`));
          s.on('error', reject);
        }),
    ),
  );
  return { froms, startedAt, closed: () => closed };
}

describe('limits shed what exceeds them and nothing else', () => {
  let t: TestMesh;
  let a2: ErlNode;
  let b1: ErlNode;
  let sentinel: Sentinel;
  let ports: MeshPorts;

  beforeAll(async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1', 'a2'], beta: ['b1', 'b2'] }, limits: LIMITS });
    ports = meshPorts(t);
    let a1: ErlNode;
    [a1, a2, b1] = await Promise.all([t.startNode('a1@alpha.demo'), t.startNode('a2@alpha.demo'), t.startNode('b1@beta.demo')]);
    sentinel = await watchLink(t, a1, 'alpha', 'beta', 'b1@beta.demo');
  });

  afterEach(async () => sentinel.check());
  afterAll(async () => t?.stop());

  describe('slow clients (one byte a second) are shed by their timeout', () => {
    it('TLS port: a ClientHello that never finishes, tls_timeout', async () => {
      // A TLS record header announcing 512 bytes of handshake, then a trickle.
      const hello = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), Buffer.alloc(512, 1)]);
      const { ex } = await expectRefused(t, 'beta', 'tls_timeout', () => rawExchange(ports.betaTls, '127.0.0.1', dribble(hello, SLOW_MS)));
      expect(ex.durationMs).toBeGreaterThanOrEqual(LIMITS.tlsHandshakeTimeoutMs! - 100);
    });

    it('TLS port: a genuine peer that sends nothing after TLS, handshake_timeout (firstByteTimeoutMs)', async () => {
      const { line } = await expectRefused(t, 'beta', 'handshake_timeout', () => tlsExchange(ports.betaTls, gatewayPem(t, 'alpha')));
      expect(line).toMatchObject({ peer: 'alpha', detail: 'peer sent nothing after TLS' });
    });

    it('TLS port: a genuine peer trickling its preamble, handshake_timeout (distHandshakeTimeoutMs)', async () => {
      const link = Buffer.concat([encodePreamble({ kind: 'link', target: 'b1@beta.demo' }), encodeHandshakeMessage(sendNameV6('a2@alpha.demo', FLAGS))]);
      const { ex, line } = await expectRefused(t, 'beta', 'handshake_timeout', () => tlsExchange(ports.betaTls, gatewayPem(t, 'alpha'), dribble(link, SLOW_MS)));
      expect(line.detail).toBe('link not established in time');
      expect(ex.durationMs).toBeGreaterThanOrEqual(LIMITS.distHandshakeTimeoutMs! - 100);
    });

    it('stand-in port: a send_name that never finishes, handshake_timeout', async () => {
      const sendName = encodeHandshakeMessage(sendNameV6('a2@alpha.demo', FLAGS));
      const { ex } = await expectRefused(t, 'alpha', 'handshake_timeout', () => rawExchange(ports.b2StandIn, ports.betaAlias, dribble(sendName, SLOW_MS)));
      expect(ex.durationMs).toBeGreaterThanOrEqual(LIMITS.distHandshakeTimeoutMs! - 100);
    });

    it('EPMD: an ALIVE2 request that never finishes, epmd_timeout', async () => {
      const alive = encodeAlive2Request({ port: 5999, nodeType: NODE_TYPE_NORMAL, protocol: 0, highestVersion: 6, lowestVersion: 5, name: 'slow', extra: Buffer.alloc(0) });
      const { ex } = await expectRefused(t, 'alpha', 'epmd_timeout', () => rawExchange(ports.alphaEpmd, '127.0.0.1', dribble(alive, SLOW_MS)));
      expect(ex.durationMs).toBeGreaterThanOrEqual(LIMITS.epmdRequestTimeoutMs! - 100);
    });

    it('EPMD: a client that keeps its side open after the answer is cut after epmdRequestTimeoutMs', async () => {
      // Never ends its own side and keeps writing: the connection ends only once the gateway has dropped it.
      const stayOpen = (s: net.Socket) => {
        s.write(encodePortPlease2Request('a2'));
        const keepWriting = setInterval(() => s.write(Buffer.from([0])), 250);
        s.once('close', () => clearInterval(keepWriting));
      };
      const ex = await rawExchange(ports.alphaEpmd, '127.0.0.1', stayOpen, 15_000, true);
      expect(ex.received[0]).toBe(0x77); // PORT2_RESP
      expect(ex.received[1]).toBe(0);
      expect(ex.durationMs).toBeGreaterThanOrEqual(LIMITS.epmdRequestTimeoutMs! - 100);
    });

    it('metrics HTTP: request headers that never finish, http_timeout', async () => {
      const get = Buffer.from('GET /metrics HTTP/1.1\r\nHost: alpha\r\nX-Slow: ' + 'a'.repeat(64));
      const { ex } = await expectRefused(t, 'alpha', 'http_timeout', () => rawExchange(ports.alphaMetrics, '127.0.0.1', dribble(get, SLOW_MS), 20_000));
      expect(ex.durationMs).toBeGreaterThanOrEqual(LIMITS.metricsHeadersTimeoutMs! - 100);
      expect(ex.durationMs).toBeLessThan(DEFAULT_LIMITS.metricsHeadersTimeoutMs);
      expect(ex.received.toString('latin1')).toMatch(/^HTTP\/1\.1 408/);
    }, 30_000);
  });

  describe('floods above the connection limits are shed', () => {
    /**
     * Waits until every flood connection is closed, then checks each one got
     * exactly one refusal log line (by its port): limit_reached if it was shed
     * at once, `timeoutReason` if it was held and timed out. Returns how many
     * were shed at once.
     */
    async function expectShed(gw: string, f: Flood, timeoutReason: string, n = FLOOD): Promise<number> {
      await waitFor('every flood connection to be closed', () => f.closed() === n, 20_000);
      const reasons = await waitFor('a refusal logged for every flood connection', () => {
        const lines = t.logOf(gw).filter((l) => Date.parse(String(l.ts)) >= f.startedAt);
        const r = f.froms.map((from) => lines.filter((l) => l.from === from).map((l) => String(l.reason)));
        return r.every((x) => x.length > 0) ? r : undefined;
      });
      for (const r of reasons) {
        expect(r).toHaveLength(1);
        expect(['limit_reached', timeoutReason]).toContain(r[0]);
      }
      return reasons.filter((r) => r[0] === 'limit_reached').length;
    }

    it(`TLS port: ${FLOOD} silent connections above maxTlsConnections, limit_reached then tls_timeout`, async () => {
      const before = await refusals(t, 'beta', 'limit_reached');
      // From four sources, none above maxTlsHandshakesPerSource: the port's own bound is what sheds.
      const sources = ['127.0.0.11', '127.0.0.12', '127.0.0.13', '127.0.0.14'];
      expect(FLOOD / sources.length).toBeLessThanOrEqual(LIMITS.maxTlsHandshakesPerSource!);
      const f = await flood(FLOOD, ports.betaTls, '127.0.0.1', sources);
      await waitFor('beta to shed the excess', async () => (await refusals(t, 'beta', 'limit_reached')) > before);
      await sentinel.check(); // the established link works while the port is full
      const shed = await expectShed('beta', f, 'tls_timeout');
      // One TLS connection is the watched link's; a peer probe may take another for a moment.
      expect(shed).toBeGreaterThanOrEqual(FLOOD - (LIMITS.maxTlsConnections! - 1));
      expect((await refusals(t, 'beta', 'limit_reached')) - before).toBeGreaterThanOrEqual(shed);
      // Once the flood is gone, a new link is accepted.
      expect(await a2.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
      await a2.eval(`erlang:disconnect_node('b1@beta.demo')`);
      await waitFor('the a2 link to close', () => t.gateways.get('alpha')!.table.count === 1);
    });

    it(`TLS port: ${FLOOD} silent connections from one source above maxTlsHandshakesPerSource are shed, and a peer from elsewhere still gets in`, async () => {
      const f = await flood(FLOOD, ports.betaTls, '127.0.0.1', ['127.0.0.2']);
      // While the flood holds its share of the port, a genuine gateway from another address completes TLS.
      const from = net.connect({ host: '127.0.0.1', port: ports.betaTls, localAddress: '127.0.0.3' });
      const genuine = await tlsExchange(ports.betaTls, { ...gatewayPem(t, 'alpha'), socket: from }, encodePreamble({ kind: 'probe' }));
      expect(genuine.secure).toBe(true);
      // The gateway shed them as they came; on a loaded machine this side may see the last closes a moment after the genuine exchange.
      await waitFor('the shed connections closed', () => f.closed() >= FLOOD - LIMITS.maxTlsHandshakesPerSource!);
      expect(f.closed()).toBe(FLOOD - LIMITS.maxTlsHandshakesPerSource!);
      expect(await expectShed('beta', f, 'tls_timeout')).toBe(FLOOD - LIMITS.maxTlsHandshakesPerSource!);
      const flooding = t.logOf('beta').filter((l) => Date.parse(String(l.ts)) >= f.startedAt);
      const shedLines = flooding.filter((l) => f.froms.includes(String(l.from)) && l.reason === 'limit_reached');
      expect(String(shedLines[0]?.detail)).toBe(`too many unauthenticated TLS connections from 127.0.0.2 (${LIMITS.maxTlsHandshakesPerSource})`);
      expect(flooding.filter((l) => l.from === `127.0.0.3:${genuine.localPort}`)).toEqual([]);
    });

    it(`EPMD: ${FLOOD} silent connections above maxEpmdConnections (counted across listeners), limit_reached then epmd_timeout`, async () => {
      // a1 and a2 hold their registrations on 127.0.0.1; the flood goes to beta's alias listener.
      const f = await flood(FLOOD, ports.alphaEpmd, ports.betaAlias);
      await sentinel.check();
      expect(await expectShed('alpha', f, 'epmd_timeout')).toBe(FLOOD - (LIMITS.maxEpmdConnections! - 2));
      // Registrations survived, and EPMD answers again.
      const answer = await rawExchange(ports.alphaEpmd, '127.0.0.1', encodePortPlease2Request('a2'));
      expect(answer.received[1]).toBe(0);
    });

    it('metrics HTTP: silent connections above metricsMaxConnections, limit_reached then http_timeout', async () => {
      const n = LIMITS.metricsMaxConnections! + 6;
      const f = await flood(n, ports.alphaMetrics, '127.0.0.1');
      expect(await expectShed('alpha', f, 'http_timeout', n)).toBe(6);
    }, 40_000);

    it('metrics HTTP: a scraper whose kept-alive connection goes quiet is closed without a refusal', async () => {
      const before = await refusals(t, 'alpha', 'http_timeout');
      const agent = new http.Agent({ keepAlive: true });
      const closed = await new Promise<number>((resolve, reject) => {
        const started = Date.now();
        http
          .get({ host: '127.0.0.1', port: ports.alphaMetrics, path: '/metrics', agent }, (res) => {
            expect(res.statusCode).toBe(200);
            res.resume();
            res.socket.once('close', () => resolve(Date.now() - started));
          })
          .on('error', reject);
      });
      agent.destroy();
      expect(closed).toBeGreaterThanOrEqual(LIMITS.metricsIdleTimeoutMs! - 100);
      expect(closed).toBeLessThan(DEFAULT_LIMITS.metricsIdleTimeoutMs);
      expect(await refusals(t, 'alpha', 'http_timeout')).toBe(before);
    });

    it(`stand-in port: ${FLOOD} silent connections above maxLinks, limit_reached then handshake_timeout`, async () => {
      const f = await flood(FLOOD, ports.b2StandIn, ports.betaAlias);
      await sentinel.check();
      // The watched link holds one of alpha's link slots.
      expect(await expectShed('alpha', f, 'handshake_timeout')).toBe(FLOOD - (LIMITS.maxLinks! - 1));
      expect(t.gateways.get('alpha')!.table.count).toBe(1);
      expect(await a2.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
    });
  });

  it('bytes held before a link is up are bounded by maxPendingBytes: buffer_limit', async () => {
    // Status messages are legal after send_name and cost nothing to send: a cheap way to pile up bytes.
    const status = encodeHandshakeMessage(Buffer.concat([Buffer.from('s'), Buffer.alloc(4000, 0x61)]));
    const pile = Buffer.concat([encodeHandshakeMessage(sendNameV6('a2@alpha.demo', FLAGS)), ...Array.from({ length: 6 }, () => status)]);
    expect(pile.length).toBeGreaterThan(LIMITS.maxPendingBytes!);
    const { line } = await expectRefused(t, 'alpha', 'buffer_limit', () => rawExchange(ports.b2StandIn, ports.betaAlias, pile));
    expect(String(line.detail)).toMatch(/bytes pending before the link was up/);
  });
});
