// Hostile input on every listener a gateway has: the TLS port, the stand-in
// (relay) ports, EPMD and the metrics HTTP port. Each attempt must be closed,
// logged with where it came from and why, and counted by reason, while a real
// Erlang link between a1 and b1 stays up through the whole file: it never
// sees a nodedown, answers rpc after every case, and its counters keep rising.
// Last, a flood from a genuine peer against a gateway process: its memory
// must return near where it was.

import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tlsPathsFor } from '../../src/config/roster.js';
import { encodeHandshakeMessage, sendNameV6 } from '../../src/framing/handshake.js';
import { encodeAlive2Request, encodePortPlease2Request, NODE_TYPE_NORMAL } from '../../src/epmd/protocol.js';
import type { ErlNode } from '../../src/erlang/node.js';
import { encodePreamble } from '../../src/mesh/preamble.js';
import { caKeyPath, createCa, createGatewayCert, type Pem } from '../../src/pki/generate.js';
import { fakeNode, type FakeNode } from '../helpers/fake-peer.js';
import { assertIntact, type ProcessMesh, RssSampler, startProcessMesh } from '../helpers/gateway-process.js';
import { type Exchange, expectRefused, gatewayPem, type MeshPorts, meshPorts, rawExchange, refusals, tlsExchange } from '../helpers/hostile-client.js';
import { expectNoSeries, hasSeries, sample, startTestMesh, type TestMesh, waitFor } from '../helpers/mesh.js';
import { type Sentinel, watchLink } from '../helpers/sentinel.js';

const DAY = 86_400_000;
/** A small link log budget, so a flood of abandoned links shows it at work. */
const LINK_LOG_BURST = 5;
const LINK_LOG_WINDOW_MS = 3_000;
const TCP_LISTEN = '0A';
const FLAGS = 0x1ffffffn;
/** A challenge_reply body: 'r', challenge, digest. */
const CHALLENGE_REPLY = Buffer.concat([Buffer.from('r'), Buffer.alloc(20, 1)]);

describe('hostile input on every listener leaves other links alone', () => {
  let t: TestMesh;
  let a1: ErlNode;
  let b2: FakeNode;
  let clusterCa: Pem;
  let ports: MeshPorts;
  let sentinel: Sentinel;

  const pemOf = (gw: string) => gatewayPem(t, gw);
  const refused = (gw: string, reason: string, attempt: () => Promise<Exchange>) => expectRefused(t, gw, reason, attempt);

  beforeAll(async () => {
    // gamma is started by nobody: its certificate is a genuine cluster one for a gateway that owns no node.
    // Each hostile connection is checked for its own refusal line: no log budget here (the faults test covers it).
    t = await startTestMesh({ gateways: { alpha: ['a1', 'a2'], beta: ['b1', 'b2'], gamma: [] }, skipStart: ['gamma'], limits: { refusalLogBurst: 10_000, linkLogBurst: LINK_LOG_BURST, linkLogWindowMs: LINK_LOG_WINDOW_MS } });
    const roster = t.mesh.roster;
    const beta = roster.gateways.get('beta')!;
    ports = meshPorts(t);
    const caPath = tlsPathsFor(roster, 'alpha').ca;
    clusterCa = { cert: readFileSync(caPath, 'utf8'), key: readFileSync(caKeyPath(caPath), 'utf8') };
    b2 = await fakeNode(beta.epmdPort, 'b2', ports.b2Port);
    [a1] = await Promise.all([t.startNode('a1@alpha.demo'), t.startNode('b1@beta.demo')]);
    sentinel = await watchLink(t, a1, 'alpha', 'beta', 'b1@beta.demo');
  });

  // The established link still works, over the same connection, and its counters rose.
  afterEach(async () => sentinel.check());

  afterAll(async () => {
    b2?.close();
    await t?.stop();
  });

  describe('TLS port', () => {
    it('random bytes: not_tls', async () => {
      const { ex } = await refused('beta', 'not_tls', () => rawExchange(ports.betaTls, '127.0.0.1', randomBytes(512)));
      expect(ex.received.length).toBeLessThan(64); // at most a TLS alert, never application data
    });

    it('plaintext HTTP: not_tls', async () => {
      await refused('beta', 'not_tls', () => rawExchange(ports.betaTls, '127.0.0.1', Buffer.from('GET /metrics HTTP/1.1\r\nHost: beta\r\n\r\n')));
    });

    it('a client that leaves mid-handshake (nothing sent, or half a ClientHello): tls_aborted', async () => {
      await refused('beta', 'tls_aborted', () => rawExchange(ports.betaTls, '127.0.0.1', (s) => void s.end()));
      await refused('beta', 'tls_aborted', () => rawExchange(ports.betaTls, '127.0.0.1', (s) => void s.end(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]))));
    });

    it('TLS 1.2, even with a genuine certificate: refused before any application byte', async () => {
      const { ex, line } = await refused('beta', 'not_tls', () => tlsExchange(ports.betaTls, { ...pemOf('alpha'), minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' }));
      expect(ex.secure).toBe(false);
      expect(String(line.detail)).toMatch(/protocol/i);
    });

    it('TLS without a client certificate: bad_certificate', async () => {
      const { ex } = await refused('beta', 'bad_certificate', () => tlsExchange(ports.betaTls, { ca: clusterCa.cert }));
      expect(ex.received.length).toBe(0);
    });

    it('a certificate from another CA: unknown_ca', async () => {
      const forged = await createGatewayCert(await createCa('another CA'), 'alpha', '127.0.0.1');
      await refused('beta', 'unknown_ca', () => tlsExchange(ports.betaTls, { ...forged, ca: clusterCa.cert }));
    });

    it('an expired cluster certificate: bad_certificate, and the log says why', async () => {
      const expired = await createGatewayCert(clusterCa, 'alpha', '127.0.0.1', { notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
      const { line } = await refused('beta', 'bad_certificate', () => tlsExchange(ports.betaTls, { ...expired, ca: clusterCa.cert }));
      expect(String(line.detail)).toContain('CERT_HAS_EXPIRED');
    });

    it('a cluster certificate that is not yet valid: bad_certificate', async () => {
      const future = await createGatewayCert(clusterCa, 'alpha', '127.0.0.1', { notBefore: new Date(Date.now() + DAY), days: 30 });
      const { line } = await refused('beta', 'bad_certificate', () => tlsExchange(ports.betaTls, { ...future, ca: clusterCa.cert }));
      expect(String(line.detail)).toContain('CERT_NOT_YET_VALID');
    });

    it('a cluster certificate for no roster gateway, or for the listening gateway itself: wrong_identity', async () => {
      const mallory = await createGatewayCert(clusterCa, 'mallory', '127.0.0.1');
      await refused('beta', 'wrong_identity', () => tlsExchange(ports.betaTls, { ...mallory, ca: clusterCa.cert }));
      await refused('beta', 'wrong_identity', () => tlsExchange(ports.betaTls, pemOf('beta')));
    });

    it('a genuine peer whose preamble is garbage: bad_preamble', async () => {
      const { ex } = await refused('beta', 'bad_preamble', () => tlsExchange(ports.betaTls, pemOf('alpha'), randomBytes(64)));
      expect(ex.secure).toBe(true);
    });

    it('a genuine peer that closes in the middle of its preamble: bad_preamble, node never reached', async () => {
      const before = b2.connections;
      const preamble = encodePreamble({ kind: 'link', target: 'b2@beta.demo' });
      // Within the magic, and within the target name.
      for (const cut of [3, preamble.length - 2]) {
        const { ex } = await refused('beta', 'bad_preamble', () => tlsExchange(ports.betaTls, pemOf('alpha'), (s) => void s.end(preamble.subarray(0, cut))));
        expect(ex.secure).toBe(true);
      }
      expect(b2.connections).toBe(before);
    });

    it('a genuine peer that opens links and drops them before they are up: counted per peer, never a refusal, its lines within the link log budget', async () => {
      // gamma's certificate is genuine, and nothing else in this file speaks as gamma: its budget and counter are this test's own.
      const abandoned = async () => sample(await t.metricsText('beta'), 'beamgate_links_abandoned_total', { peer: 'gamma', direction: 'inbound' });
      // Present at 0 for every roster peer and direction before anything happened.
      const first = await t.metricsText('beta');
      for (const peer of ['alpha', 'gamma']) for (const direction of ['inbound', 'outbound']) expect(hasSeries(first, 'beamgate_links_abandoned_total', { peer, direction }), `${peer} ${direction}`).toBe(true);
      expect(await abandoned()).toBe(0);
      const refusedBefore = sample(first, 'beamgate_refusals_total');
      const nodeBefore = b2.connections;
      const mark = t.logOf('beta').length;
      const N = 40;
      const preamble = encodePreamble({ kind: 'link', target: 'b2@beta.demo' });
      const started = Date.now();
      // Half send a whole preamble and close, half close right after TLS: both are dials given up.
      const runs = await Promise.all(Array.from({ length: N }, (_, i) => tlsExchange(ports.betaTls, pemOf('gamma'), (sock) => void (i % 2 ? sock.end(preamble) : sock.end()), 30_000)));
      const floodMs = Date.now() - started;
      expect(runs.every((r) => r.secure)).toBe(true);
      await waitFor('beta to count every abandoned link', async () => (await abandoned()) === N, 20_000);
      expect(sample(await t.metricsText('beta'), 'beamgate_refusals_total')).toBe(refusedBefore);
      expect(b2.connections).toBe(nodeBefore);
      // Every one accounted for: logged in full, or counted in a summary once its window has closed.
      const ofGamma = () => t.logOf('beta').slice(mark).filter((l) => l.peer === 'gamma');
      const lines = await waitFor('the suppressed link lines to be reported', () => {
        const all = ofGamma();
        const logged = all.filter((l) => l.msg === 'link abandoned');
        const summaries = all.filter((l) => l.msg === 'link lines suppressed' && l.link_msg === 'link abandoned');
        return logged.length + summaries.reduce((n, l) => n + Number(l.suppressed), 0) === N ? { logged, summaries } : undefined;
      }, 4 * LINK_LOG_WINDOW_MS);
      expect(lines.summaries.length).toBeGreaterThan(0);
      for (const s of lines.summaries) expect(s).toMatchObject({ level: 'info', logged: LINK_LOG_BURST });
      // At most one budget per window that the flood spanned.
      expect(lines.logged.length).toBeLessThanOrEqual(LINK_LOG_BURST * (Math.ceil(floodMs / LINK_LOG_WINDOW_MS) + 1));
      expect(lines.logged[0]).toMatchObject({ level: 'info', direction: 'inbound', peer: 'gamma' });
    });

    it('a truncated distribution handshake (peer closes mid-message): bad_handshake, node never reached', async () => {
      const before = b2.connections;
      const half = encodeHandshakeMessage(sendNameV6('a1@alpha.demo', FLAGS)).subarray(0, 9);
      await refused('beta', 'bad_handshake', () =>
        tlsExchange(ports.betaTls, pemOf('alpha'), (s) => {
          s.end(Buffer.concat([encodePreamble({ kind: 'link', target: 'b2@beta.demo' }), half]));
        }),
      );
      expect(b2.connections).toBe(before);
    });

    it('an oversized handshake message: handshake_too_large', async () => {
      const huge = Buffer.alloc(2);
      huge.writeUInt16BE(0xffff, 0);
      await refused('beta', 'handshake_too_large', () =>
        tlsExchange(ports.betaTls, pemOf('alpha'), Buffer.concat([encodePreamble({ kind: 'link', target: 'b2@beta.demo' }), huge, randomBytes(200)])),
      );
    });

    it('a genuine peer naming a node it does not own: node_not_owned, node never reached', async () => {
      const before = b2.connections;
      const link = Buffer.concat([encodePreamble({ kind: 'link', target: 'b2@beta.demo' }), encodeHandshakeMessage(sendNameV6('a1@alpha.demo', FLAGS))]);
      const { line } = await refused('beta', 'node_not_owned', () => tlsExchange(ports.betaTls, pemOf('gamma'), link));
      expect(line).toMatchObject({ peer: 'gamma', direction: 'inbound' });
      expect(b2.connections).toBe(before);
    });

    it('a frame longer than maxFrameBytes on an established link: frame_too_large, that link alone is cut', async () => {
      const before = { conns: b2.connections, refused: await refusals(t, 'beta', 'frame_too_large') };
      const frame = Buffer.alloc(4);
      frame.writeUInt32BE(0xfffffff0, 0);
      const ex = await tlsExchange(ports.betaTls, pemOf('alpha'), async (s) => {
        s.write(Buffer.concat([encodePreamble({ kind: 'link', target: 'b2@beta.demo' }), encodeHandshakeMessage(sendNameV6('a1@alpha.demo', FLAGS))]));
        // The link is up once the node has been dialled; only then the oversized frame.
        await waitFor('the link to reach b2', () => b2.connections > before.conns);
        s.write(Buffer.concat([encodeHandshakeMessage(CHALLENGE_REPLY), frame, randomBytes(100)]));
      });
      expect(ex.secure).toBe(true);
      await waitFor('beta to count frame_too_large', async () => (await refusals(t, 'beta', 'frame_too_large')) === before.refused + 1);
      const line = t.logOf('beta').find((l) => l.msg === 'link refused' && l.reason === 'frame_too_large');
      expect(line).toMatchObject({ peer: 'alpha', local_node: 'b2@beta.demo', remote_node: 'a1@alpha.demo', direction: 'inbound' });
    });
  });

  describe('stand-in (relay) port', () => {
    const standIn = (write: Buffer) => () => rawExchange(ports.b2StandIn, ports.betaAlias, write);
    let betaHandshakes = 0;
    const tlsAccepted = async () => sample(await t.metricsText('beta'), 'beamgate_tls_handshakes_total', { role: 'server' });
    beforeAll(async () => {
      betaHandshakes = await tlsAccepted();
    });
    afterAll(async () => {
      // None of the garbage below cost the peer a TLS handshake: alpha dials only for an admitted send_name.
      // (Peer probes every 10 s may add a few; garbage would add one per case.)
      expect((await tlsAccepted()) - betaHandshakes).toBeLessThanOrEqual(2);
    });

    it('random bytes with an unknown tag: bad_handshake', async () => {
      await refused('alpha', 'bad_handshake', standIn(Buffer.concat([Buffer.from([0, 40, 0x7a]), randomBytes(39)])));
    });

    it('HTTP: handshake_too_large ("GE" reads as a 18245-byte message)', async () => {
      await refused('alpha', 'handshake_too_large', standIn(Buffer.from('GET / HTTP/1.1\r\n\r\n')));
    });

    it('send_name for a node that is not admitted here: not_in_roster', async () => {
      const { line } = await refused('alpha', 'not_in_roster', standIn(encodeHandshakeMessage(sendNameV6('mallory@alpha.demo', FLAGS))));
      expect(String(line.detail)).toContain('mallory@alpha.demo');
      // A node of another gateway cannot dial out through this one either.
      await refused('alpha', 'not_in_roster', standIn(encodeHandshakeMessage(sendNameV6('b1@beta.demo', FLAGS))));
    });

    it('a truncated handshake (closed mid-message): bad_handshake', async () => {
      await refused('alpha', 'bad_handshake', () =>
        rawExchange(ports.b2StandIn, ports.betaAlias, (s) => {
          s.end(encodeHandshakeMessage(sendNameV6('a1@alpha.demo', FLAGS)).subarray(0, 7));
        }),
      );
    });

    it('a frame longer than maxFrameBytes: frame_too_large', async () => {
      const frame = Buffer.alloc(4);
      frame.writeUInt32BE(0xffffffff, 0);
      await refused(
        'alpha',
        'frame_too_large',
        standIn(Buffer.concat([encodeHandshakeMessage(sendNameV6('a1@alpha.demo', FLAGS)), encodeHandshakeMessage(CHALLENGE_REPLY), frame])),
      );
    });
  });

  describe('EPMD', () => {
    const epmd = (write: Buffer | ((s: import('node:net').Socket) => void), host = '127.0.0.1') => () => rawExchange(ports.alphaEpmd, host, write);
    const alive2 = (name: string, port: number) =>
      encodeAlive2Request({ port, nodeType: NODE_TYPE_NORMAL, protocol: 0, highestVersion: 6, lowestVersion: 5, name, extra: Buffer.alloc(0) });

    it('an unknown request: epmd_bad_request', async () => {
      await refused('alpha', 'epmd_bad_request', epmd(Buffer.from([0, 3, 0x73, 1, 2]))); // 's' = STOP_REQ, never honoured
    });

    it('random bytes: epmd_bad_request', async () => {
      const junk = randomBytes(300);
      junk.writeUInt16BE(2000, 0); // over MAX_EPMD_REQUEST whatever follows
      await refused('alpha', 'epmd_bad_request', epmd(junk));
    });

    it('a truncated request, then close: epmd_bad_request', async () => {
      const { line } = await refused('alpha', 'epmd_bad_request', epmd((s) => s.end(alive2('a1', ports.a1Port).subarray(0, 8))));
      expect(String(line.detail)).toContain('incomplete');
    });

    it('ALIVE2 for a name outside the roster: epmd_not_in_roster, answered with an error', async () => {
      const { ex } = await refused('alpha', 'epmd_not_in_roster', epmd(alive2('mallory', 5999)));
      expect([...ex.received.subarray(0, 2)]).toEqual([0x76, 1]);
    });

    it('ALIVE2 for a roster name on the wrong port: epmd_wrong_port', async () => {
      const { ex } = await refused('alpha', 'epmd_wrong_port', epmd(alive2('a1', ports.a1Port + 1)));
      expect(ex.received[1]).toBe(1);
    });

    it('ALIVE2 on a remote gateway alias: epmd_not_in_roster', async () => {
      await refused('alpha', 'epmd_not_in_roster', () => rawExchange(ports.alphaEpmd, ports.betaAlias, alive2('b1', 5999)));
    });

    it('ALIVE2 for a name already registered (a1 is up): epmd_name_taken, a1 keeps its registration', async () => {
      await refused('alpha', 'epmd_name_taken', epmd(alive2('a1', ports.a1Port)));
      const answer = await rawExchange(ports.alphaEpmd, '127.0.0.1', encodePortPlease2Request('a1'));
      expect(answer.received[1]).toBe(0);
      expect(answer.received.readUInt16BE(2)).toBe(ports.a1Port);
    });
  });

  describe('metrics HTTP port', () => {
    it('random bytes: http_bad_request, answered 400 and closed', async () => {
      const { ex } = await refused('alpha', 'http_bad_request', () => rawExchange(ports.alphaMetrics, '127.0.0.1', randomBytes(256)));
      expect(ex.received.toString('latin1')).toMatch(/^HTTP\/1\.1 400/);
    });

    it('an oversized request header: http_bad_request', async () => {
      const big = Buffer.from(`GET /metrics HTTP/1.1\r\nX-Fill: ${'a'.repeat(20_000)}\r\n\r\n`);
      await refused('alpha', 'http_bad_request', () => rawExchange(ports.alphaMetrics, '127.0.0.1', big));
    });
  });

  it('seeded random bytes on every listener: each connection closed, one refusal each, with its address and an expected reason', async () => {
    const N = 16;
    // Seeded, so a failure replays exactly.
    const inputs = fc.sample(fc.uint8Array({ minLength: 1, maxLength: 600 }), { numRuns: N, seed: 20261125 }).map((a) => Buffer.from(a));
    const listeners = [
      { gw: 'beta', port: ports.betaTls, host: '127.0.0.1', reasons: ['not_tls', 'tls_aborted'] },
      { gw: 'alpha', port: ports.b2StandIn, host: ports.betaAlias, reasons: ['bad_handshake', 'handshake_too_large'] },
      { gw: 'alpha', port: ports.alphaEpmd, host: '127.0.0.1', reasons: ['epmd_bad_request'] },
      { gw: 'alpha', port: ports.alphaEpmd, host: ports.betaAlias, reasons: ['epmd_bad_request'] },
      { gw: 'alpha', port: ports.alphaMetrics, host: '127.0.0.1', reasons: ['http_bad_request'] },
    ];
    for (const l of listeners) {
      const before = sample(await t.metricsText(l.gw), 'beamgate_refusals_total');
      // Client ports are reused, so only this listener's round of lines is searched.
      const mark = t.logOf(l.gw).length;
      // The client sends its bytes and closes its side, so nothing is left to wait for.
      const exchanges = await Promise.all(inputs.map((bytes) => rawExchange(l.port, l.host, (s) => void s.end(bytes))));
      await waitFor(`${N} refusals on ${l.gw} for ${l.host}:${l.port}`, async () => sample(await t.metricsText(l.gw), 'beamgate_refusals_total') - before === N);
      for (const ex of exchanges) {
        const lines = t.logOf(l.gw).slice(mark).filter((x) => x.from === `127.0.0.1:${ex.localPort}` && x.reason !== undefined);
        expect(lines, `refusals logged for one connection to ${l.host}:${l.port}`).toHaveLength(1);
        expect(l.reasons).toContain(lines[0]!.reason);
      }
    }
  });

  it('a local impostor under a roster name that is down, without the cookie: admitted by the gateway, refused end to end by the nodes', async () => {
    // The gateway cannot tell a local process from the node it names (see "A local user on a gateway host" in docs/security.md); the cookie can.
    const impostor = await t.startNode('a2@alpha.demo', { cookie: 'not-the-cluster-cookie' });
    try {
      expect(t.gateways.get('alpha')!.epmd.registeredPort('a2')).toBe(t.mesh.roster.nodes.get('a2@alpha.demo')!.port);
      expect(await impostor.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pang');
      expect(await impostor.eval(`rpc:call('b1@beta.demo', os, getpid, [])`)).toMatch(/badrpc/);
      const b1 = t.nodes.find((n) => n.name === 'b1@beta.demo')!;
      expect(await b1.eval(`net_adm:ping('a2@alpha.demo')`)).toBe('pang');
      expect(await b1.eval(`lists:member('a2@alpha.demo', nodes())`)).toBe('false');
    } finally {
      await impostor.stop();
    }
  });

  it('every listener but the TLS port is on loopback: EPMD, stand-ins, metrics and the nodes themselves', () => {
    const roster = t.mesh.roster;
    const running = [...roster.gateways.values()].filter((g) => t.gateways.has(g.name));
    const listenerPorts = running.flatMap((g) => [g.epmdPort, ...(g.metrics ? [g.metrics.port] : [])]);
    for (const g of running) {
      const gw = t.gateways.get(g.name)!;
      // Every stand-in of every running gateway, and every node registered with it.
      for (const n of roster.nodes.values()) if (n.gateway !== g.name) listenerPorts.push(gw.registry.standIns.portOf(n.gateway, n.short)!);
      for (const r of gw.epmd.registrations.values()) listenerPorts.push(r.port);
    }
    for (const port of listenerPorts) {
      const addresses = listenAddresses(port);
      expect(addresses.length, `something listens on ${port}`).toBeGreaterThan(0);
      for (const a of addresses) expect(a, `listener on port ${port}`).toMatch(/^127\./);
    }
  });

  it('nothing secret reaches the logs or the metrics: no key, no cookie, no payload', async () => {
    const marker = `secret-payload-${randomBytes(8).toString('hex')}`;
    expect(await a1.eval(`rpc:call('b1@beta.demo', erlang, length, ["${marker}"])`)).toBe(String(marker.length));
    const keyLines = ['alpha', 'beta', 'gamma']
      .map((g) => readFileSync(tlsPathsFor(t.mesh.roster, g).key, 'utf8'))
      .concat(clusterCa.key)
      .flatMap((pem) => pem.split('\n').filter((l) => l.length >= 16 && !l.startsWith('-----')));
    expect(keyLines.length).toBeGreaterThan(4);
    for (const gw of ['alpha', 'beta']) {
      const text = (t.logs.get(gw) ?? []).join('\n') + (await t.metricsText(gw));
      expect(text.length).toBeGreaterThan(10_000); // the file above left plenty of both
      expect(text).not.toContain('PRIVATE KEY');
      expect(text).not.toContain(t.cookie);
      expect(text).not.toContain(marker);
      for (const l of keyLines) expect(text).not.toContain(l);
    }
  });
});

/**
 * A flood from a peer with a genuine certificate: every kind of cut-short
 * link the fuzzer found cheap to send, many at once. Measured with this test
 * on the 2-core development machine: without the bound on V8's young
 * generation while connections churn (runtime/heap.ts, above
 * floodConnectionsPerSecond) new space grew to 32 MB and RSS went 71 -> 98
 * MB peak, once staying above 87 MB for the whole wait; with it new space
 * stayed at 4 MB, RSS went 68 -> 89-92 MB peak and settled 9-10 MB above its
 * start within a few seconds (glibc keeps freed TLS buffers of the flood).
 */
const FLOOD_CONNECTIONS = 3_000;
const FLOOD_AT_ONCE = 64;
/** New space a bounded gateway may have: measured 4 MB with the bound, 24-32 MB without. */
const MAX_NEW_SPACE_BYTES = 8 * 1024 * 1024;
/** Above the RSS before the flood, once it is over: what glibc keeps of the flood's TLS buffers (measured 5-10 MB), with room. */
const RSS_ALLOWANCE_KB = 16 * 1024;
/** How long RSS may take to settle after the flood (measured: a few seconds with the bound). */
const RSS_SETTLE_MS = 30_000;

describe('a flood from a genuine peer leaves the gateway process\'s memory where it was', () => {
  let pm: ProcessMesh;
  let node: FakeNode;

  beforeAll(async () => {
    pm = await startProcessMesh({ gateways: { alpha: [], beta: ['b1'] }, start: ['beta'] });
    const beta = pm.mesh.roster.gateways.get('beta')!;
    node = await fakeNode(beta.epmdPort, 'b1', pm.mesh.roster.nodes.get('b1@beta.demo')!.port);
  });
  afterAll(async () => {
    node?.close();
    await pm?.stop();
  });

  it(`${FLOOD_CONNECTIONS} cut-short links, ${FLOOD_AT_ONCE} at once: new space stays small and RSS returns near its start`, async () => {
    const gw = pm.gw('beta');
    const port = pm.mesh.roster.gateways.get('beta')!.address.port;
    const paths = tlsPathsFor(pm.mesh.roster, 'alpha');
    const id = { cert: readFileSync(paths.cert, 'utf8'), key: readFileSync(paths.key, 'utf8'), ca: readFileSync(paths.ca, 'utf8') };
    const preamble = encodePreamble({ kind: 'link', target: 'b1@beta.demo' });
    const kinds: ((s: tls.TLSSocket) => void)[] = [
      (s) => s.end(preamble), // abandoned
      (s) => s.end(preamble.subarray(0, 3)), // cut-short preamble
      (s) => s.end(randomBytes(600)), // garbage
      (s) => s.end(Buffer.concat([preamble, encodeHandshakeMessage(sendNameV6('a1@alpha.demo', FLAGS)).subarray(0, 5)])), // cut-short handshake
      (s) => s.end(Buffer.concat([preamble, Buffer.alloc(70_000, 1)])), // too much before the link is up
    ];
    const flood = async (n: number) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: FLOOD_AT_ONCE }, async () => {
          while (next < n) {
            const kind = kinds[next++ % kinds.length]!;
            await new Promise<void>((resolve) => {
              const s = tls.connect({ host: '127.0.0.1', port, ...id, minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
              s.once('secureConnect', () => kind(s));
              s.on('data', () => undefined);
              s.on('error', () => undefined);
              s.once('close', () => resolve());
            });
          }
        }),
      );
    };
    const newSpace = async () => sample(await gw.metrics(), 'nodejs_heap_space_size_total_bytes', { space: 'new' });
    // A first, small round: what any first connections allocate once (code, OpenSSL tables) is in the baseline.
    await flood(200);
    await waitFor('beta to have no link slot held', async () => sample(await gw.metrics(), 'beamgate_links_open') === 0 && gw.logs.length > 0);
    const before = gw.memory().rssKb;
    const rss = new RssSampler([gw]);
    rss.start(250);
    let newSpacePeak = 0;
    const watching = setInterval(() => void newSpace().then((b) => (newSpacePeak = Math.max(newSpacePeak, b)), () => undefined), 1_000);
    const started = Date.now();
    try {
      await flood(FLOOD_CONNECTIONS);
    } finally {
      clearInterval(watching);
    }
    const floodMs = Date.now() - started;
    newSpacePeak = Math.max(newSpacePeak, await newSpace());
    const settled = await waitFor(
      `beta's RSS back within ${RSS_ALLOWANCE_KB} KiB of ${before} KiB`,
      () => {
        const now = gw.memory().rssKb;
        return now <= before + RSS_ALLOWANCE_KB ? now : undefined;
      },
      RSS_SETTLE_MS,
    ).catch(() => undefined);
    rss.stop();
    const s = rss.summary('beta');
    const after = settled === undefined ? `still ${gw.memory().rssKb} KiB ${RSS_SETTLE_MS} ms later` : `${settled} KiB after`;
    console.log(`flood of ${FLOOD_CONNECTIONS} in ${floodMs} ms: RSS ${before} KiB before, ${s.peakKb} KiB peak, ${after}; new space peak ${newSpacePeak} bytes`);
    expect(settled, `RSS back within ${RSS_ALLOWANCE_KB} KiB of ${before} KiB within ${RSS_SETTLE_MS} ms`).toBeDefined();
    expect(newSpacePeak).toBeLessThanOrEqual(MAX_NEW_SPACE_BYTES);
    assertIntact(gw);
    // Nothing of it reached the node: no connection, and no link ever relayed a byte (such a series appears with a link's first bytes).
    expect(node.connections).toBe(0);
    const m = await gw.metrics();
    expectNoSeries(m, 'beamgate_relayed_bytes_total', { peer: 'alpha' });
    expect(sample(m, 'beamgate_links_open')).toBe(0);
  }, 240_000);
});

/** The mixed hostile load: how long, and how many connections at once. */
const MIXED_LOAD_MS = 120_000;
const MIXED_AT_ONCE = 32;
/** RSS after the mixed load may stay this far above its start (the issue's bound). */
const MIXED_RSS_ALLOWANCE_KB = 20 * 1024;
/** floodQuietMs (10 s) until the trim after a flood, with room on a loaded machine. */
const MIXED_SETTLE_MS = 45_000;

describe('a two-minute mixed hostile load on every listener leaves the gateway process\'s memory where it was', () => {
  let pm: ProcessMesh;
  let node: FakeNode;

  beforeAll(async () => {
    pm = await startProcessMesh({ gateways: { alpha: [], beta: ['b1'] }, start: ['beta'] });
    const beta = pm.mesh.roster.gateways.get('beta')!;
    node = await fakeNode(beta.epmdPort, 'b1', pm.mesh.roster.nodes.get('b1@beta.demo')!.port);
  });
  afterAll(async () => {
    node?.close();
    await pm?.stop();
  });

  it(`${MIXED_LOAD_MS / 1000} s of cut-short links, garbage, plain TCP on the TLS port, bad EPMD and metrics requests, ${MIXED_AT_ONCE} at once`, async () => {
    const gw = pm.gw('beta');
    const beta = pm.mesh.roster.gateways.get('beta')!;
    const port = beta.address.port;
    const paths = tlsPathsFor(pm.mesh.roster, 'alpha');
    const id = { cert: readFileSync(paths.cert, 'utf8'), key: readFileSync(paths.key, 'utf8'), ca: readFileSync(paths.ca, 'utf8') };
    const preamble = encodePreamble({ kind: 'link', target: 'b1@beta.demo' });
    const viaTls = (send: (s: tls.TLSSocket) => void) => () =>
      new Promise<void>((resolve) => {
        const s = tls.connect({ host: '127.0.0.1', port, ...id, minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
        s.once('secureConnect', () => send(s));
        s.on('data', () => undefined);
        s.on('error', () => undefined);
        s.once('close', () => resolve());
      });
    const viaTcp = (to: number, bytes: () => Buffer) => () =>
      new Promise<void>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port: to }, () => s.end(bytes()));
        s.on('data', () => undefined);
        s.on('error', () => undefined);
        s.once('close', () => resolve());
      });
    const kinds: (() => Promise<void>)[] = [
      viaTls((s) => s.end(preamble)),
      viaTls((s) => s.end(preamble.subarray(0, 3))),
      viaTls((s) => s.end(randomBytes(600))),
      viaTls((s) => s.end(Buffer.concat([preamble, encodeHandshakeMessage(sendNameV6('a1@alpha.demo', FLAGS)).subarray(0, 5)]))),
      viaTls((s) => s.end(Buffer.concat([preamble, Buffer.alloc(70_000, 1)]))),
      viaTcp(port, () => Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')),
      viaTcp(port, () => randomBytes(2000)),
      viaTcp(port, () => Buffer.from([22, 3, 1, 0xff, 0xff, 1, 0, 0xff, 0xfb])), // a ClientHello that claims more than it holds
      viaTcp(beta.epmdPort, () => randomBytes(40)),
      viaTcp(beta.epmdPort, () => encodeAlive2Request({ name: 'intruder', port: 1, nodeType: NODE_TYPE_NORMAL, protocol: 0, highestVersion: 6, lowestVersion: 5, extra: Buffer.alloc(0) })),
      viaTcp(beta.metrics!.port, () => Buffer.from(`GET /metrics HTTP/1.1\r\n${'X: y\r\n'.repeat(200)}\r\n`)),
    ];
    await Promise.all(kinds.map((k) => k())); // what first connections allocate once belongs to the baseline
    await waitFor('beta to have no link slot held', async () => sample(await gw.metrics(), 'beamgate_links_open') === 0);
    const before = gw.memory().rssKb;
    const rss = new RssSampler([gw]);
    rss.start(500);
    const until = Date.now() + MIXED_LOAD_MS;
    let sent = 0;
    await Promise.all(
      Array.from({ length: MIXED_AT_ONCE }, async () => {
        while (Date.now() < until) await kinds[sent++ % kinds.length]!();
      }),
    );
    const settled = await waitFor(
      `beta's RSS back within ${MIXED_RSS_ALLOWANCE_KB} KiB of ${before} KiB`,
      () => {
        const now = gw.memory().rssKb;
        return now <= before + MIXED_RSS_ALLOWANCE_KB ? now : undefined;
      },
      MIXED_SETTLE_MS,
    ).catch(() => undefined);
    rss.stop();
    const s = rss.summary('beta');
    console.log(`mixed hostile load: ${sent} connections in ${MIXED_LOAD_MS} ms; RSS ${before} KiB before, ${s.peakKb} KiB peak, ${settled ?? `still ${gw.memory().rssKb}`} KiB after`);
    expect(settled, `RSS back within ${MIXED_RSS_ALLOWANCE_KB} KiB of ${before} KiB`).toBeDefined();
    assertIntact(gw);
    expect(node.connections).toBe(0);
  }, MIXED_LOAD_MS + MIXED_SETTLE_MS + 120_000);
});

/** Local addresses of the TCP listeners on `port`, from the kernel's tables (IPv6 ones as `tcp6:HEX`). */
function listenAddresses(port: number): string[] {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const local = f[1];
      if (f[3] !== TCP_LISTEN || !local?.endsWith(`:${hex}`)) continue;
      const addr = local.slice(0, -5);
      // IPv4 addresses are written as one little-endian hex word.
      out.push(file.endsWith('6') ? `tcp6:${addr}` : [3, 2, 1, 0].map((i) => parseInt(addr.slice(i * 2, i * 2 + 2), 16)).join('.'));
    }
  }
  return out;
}
