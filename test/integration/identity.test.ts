// Who may speak for whom: a certificate from another CA, a valid certificate
// with the wrong identity (on both sides of TLS), and a genuine peer speaking
// for a node it does not own are all refused before a byte reaches a node.

import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tlsPathsFor } from '../../src/config/roster.js';
import { createCa, createGatewayCert, type Pem } from '../../src/pki/generate.js';
import { fakeNode, type FakeNode, rogueLink } from '../helpers/fake-peer.js';
import { sample, startTestMesh, type TestMesh, waitFor } from '../helpers/mesh.js';

describe('peer identity is checked against the roster', () => {
  let t: TestMesh;
  let clusterCa: Pem;
  let b1: FakeNode;
  let betaPort: number;

  const pemOf = (gw: string) => {
    const p = tlsPathsFor(t.mesh.roster, gw);
    return { cert: readFileSync(p.cert, 'utf8'), key: readFileSync(p.key, 'utf8'), ca: readFileSync(p.ca, 'utf8') };
  };
  const refusals = async (reason: string) => sample(await t.metricsText('beta'), 'beamgate_refusals_total', { reason });

  beforeAll(async () => {
    // gamma owns no node: two gateways sharing one loopback cannot both stand in for
    // the same remote node (one gateway per host is the model), and none is needed here.
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'], gamma: [] }, skipStart: ['gamma'] });
    const caPath = tlsPathsFor(t.mesh.roster, 'alpha').ca;
    clusterCa = { cert: readFileSync(caPath, 'utf8'), key: readFileSync(caPath.replace('ca.pem', 'ca-key.pem'), 'utf8') };
    const beta = t.mesh.roster.gateways.get('beta')!;
    betaPort = beta.address.port;
    b1 = await fakeNode(beta.epmdPort, 'b1', t.mesh.roster.nodes.get('b1@beta.demo')!.port);
  });
  afterAll(async () => {
    b1?.close();
    await t?.stop();
  });

  it('control: the genuine owner of a1 reaches b1 (so the refusals below are not an accident)', async () => {
    const before = { conns: b1.connections, bytes: b1.bytes };
    const r = rogueLink(betaPort, pemOf('alpha'), 'b1@beta.demo', 'a1@alpha.demo', 5_000).catch(() => null);
    // The node's accept and its first read are two events: wait for the bytes, not
    // only the connection (CI once sampled between them).
    await waitFor('the link and its bytes to reach the node', () => b1.connections > before.conns && b1.bytes > before.bytes);
    void r;
  });

  it('refuses a gateway whose certificate comes from another CA', async () => {
    const otherCa = await createCa('some other CA');
    const forged = await createGatewayCert(otherCa, 'alpha', '127.0.0.1');
    const before = { conns: b1.connections, refused: await refusals('unknown_ca') };
    const r = await rogueLink(betaPort, { ...forged, ca: clusterCa.cert }, 'b1@beta.demo', 'a1@alpha.demo');
    expect(r.received).toBe(0);
    expect(await refusals('unknown_ca')).toBe(before.refused + 1);
    expect(b1.connections).toBe(before.conns);
    expect(t.logOf('beta').some((l) => l.reason === 'unknown_ca' && typeof l.from === 'string')).toBe(true);
  });

  it('refuses a client with a valid cluster certificate for a name that is no gateway', async () => {
    const mallory = await createGatewayCert(clusterCa, 'mallory', '127.0.0.1');
    const before = { conns: b1.connections, refused: await refusals('wrong_identity') };
    const r = await rogueLink(betaPort, { ...mallory, ca: clusterCa.cert }, 'b1@beta.demo', 'a1@alpha.demo');
    expect(r.received).toBe(0);
    expect(await refusals('wrong_identity')).toBe(before.refused + 1);
    expect(b1.connections).toBe(before.conns);
  });

  it('refuses a genuine peer gateway that speaks for a node it does not own', async () => {
    const before = { conns: b1.connections, refused: await refusals('node_not_owned') };
    // gamma's certificate is valid, but a1 belongs to alpha.
    const r = await rogueLink(betaPort, pemOf('gamma'), 'b1@beta.demo', 'a1@alpha.demo');
    expect(r.secure).toBe(true);
    expect(r.received).toBe(0);
    expect(await refusals('node_not_owned')).toBe(before.refused + 1);
    expect(b1.connections).toBe(before.conns);
    const line = t.logOf('beta').find((l) => l.reason === 'node_not_owned');
    expect(line).toMatchObject({ peer: 'gamma', local_node: 'b1@beta.demo', direction: 'inbound' });
    expect(String(line?.detail)).toContain('a1@alpha.demo');
  });

  it('refuses a link to a node the accepting gateway does not own', async () => {
    const before = await refusals('unknown_target');
    await rogueLink(betaPort, pemOf('alpha'), 'a1@alpha.demo', 'a1@alpha.demo');
    expect(await refusals('unknown_target')).toBe(before + 1);
  });

  it('a dialling gateway refuses a server with a valid certificate for another gateway (gamma posing as beta)', async () => {
    // Stop the real beta and put an impostor with gamma's valid certificate on beta's address.
    await t.gateways.get('beta')!.stop();
    t.gateways.delete('beta');
    let impostorBytes = 0;
    const gamma = pemOf('gamma');
    const impostor = tls.createServer({ cert: gamma.cert, key: gamma.key, ca: gamma.ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, (s) => {
      s.on('data', (d) => (impostorBytes += d.length));
      s.on('error', () => undefined);
    });
    impostor.on('tlsClientError', () => undefined);
    await new Promise<void>((r) => impostor.listen(betaPort, '127.0.0.1', () => r()));
    try {
      const a1 = await t.startNode('a1@alpha.demo');
      expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pang');
      const alpha = await t.metricsText('alpha');
      expect(sample(alpha, 'beamgate_refusals_total', { reason: 'wrong_identity' })).toBeGreaterThanOrEqual(1);
      expect(sample(alpha, 'beamgate_tls_handshakes_total', { role: 'client', result: 'failed' })).toBeGreaterThanOrEqual(1);
      expect(impostorBytes).toBe(0);
      const line = t.logOf('alpha').find((l) => l.reason === 'wrong_identity');
      expect(String(line?.detail)).toContain('gamma');
    } finally {
      impostor.close();
    }
  });
});
