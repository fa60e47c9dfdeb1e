// Item 5: SIGHUP (or, with --reload-interval, a settled change to the files)
// re-reads the roster, certificates and CA. New TLS handshakes
// use the new material, the established link keeps running (no nodedown, no
// message lost), a bad configuration is refused with a clear error and the old
// one stays in force, and a node added to the roster becomes reachable.

import { readFileSync, writeFileSync } from 'node:fs';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { issueCerts } from '../../src/cli/certs.js';
import { loadRoster, tlsPathsFor } from '../../src/config/roster.js';
import { erlFlags } from '../../src/erlang/flags.js';
import { ErlNode } from '../../src/erlang/node.js';
import { sample, waitFor } from '../helpers/mesh.js';
import { type GatewayProcess, type ProcessMesh, sleep, startNodePair } from '../helpers/gateway-process.js';
import { freePort } from '../helpers/ports.js';
import { nodeEvents, sinkReport, startSender } from '../helpers/traffic.js';

/** The certificate a brand-new TLS client sees on `gateway`'s mesh port, dialling as `as`. */
async function servedCert(pm: ProcessMesh, gateway: string, as: string): Promise<string> {
  const paths = tlsPathsFor(loadRoster(pm.mesh.rosterPath), as);
  const port = pm.layout.find((g) => g.name === gateway)!.tlsPort;
  const sock = tls.connect({
    host: '127.0.0.1',
    port,
    ca: readFileSync(paths.ca),
    cert: readFileSync(paths.cert),
    key: readFileSync(paths.key),
    servername: gateway,
    minVersion: 'TLSv1.3',
    checkServerIdentity: () => undefined,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('secureConnect', () => resolve());
      sock.once('error', reject);
    });
    return sock.getPeerCertificate().fingerprint256;
  } finally {
    sock.destroy();
  }
}

function fileFingerprint(path: string): string {
  return new X509Certificate(readFileSync(path)).fingerprint256;
}

async function reloaded(gp: GatewayProcess, result: 'ok' | 'failed', before: number): Promise<void> {
  gp.signal('SIGHUP');
  await waitFor(`${gp.name} reload ${result}`, async () => sample(await gp.metrics(), 'beamgate_reloads_total', { result }) > before);
}

describe('hot reload on SIGHUP', () => {
  let pm: ProcessMesh;
  let a1: ErlNode;
  let b1: ErlNode;
  let pa: string[];

  beforeAll(async () => {
    ({ pm, pa, a1, b1 } = await startNodePair());
    await a1.eval('bg_traffic:start_monitor()');
    await b1.eval('bg_traffic:start_sink(sink)');
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
    // A steady trickle over the one link, kept running through every reload.
    await startSender(a1, 'trickle', 'sink', 'b1@beta.demo', { min: 16, max: 4096, burst: 5, pause: 20 });
  }, 90_000);
  afterAll(async () => pm?.stop());

  async function received(): Promise<number> {
    return (await sinkReport(b1, 'sink')).find((e) => e.sender === 'trickle')?.received ?? 0;
  }

  it('rotates certificates: new handshakes see the new certificate, the open link stays up', async () => {
    const roster = loadRoster(pm.mesh.rosterPath);
    const oldServed = await servedCert(pm, 'beta', 'alpha');
    expect(oldServed).toBe(fileFingerprint(tlsPathsFor(roster, 'beta').cert));

    // Reissue both gateways' certificates from the cluster CA (what `beamgate certs --force` does).
    await issueCerts(roster, ['alpha', 'beta'], true);
    const newBeta = fileFingerprint(tlsPathsFor(roster, 'beta').cert);
    expect(newBeta).not.toBe(oldServed);
    const before = await received();
    await reloaded(pm.gw('beta'), 'ok', 0);
    await reloaded(pm.gw('alpha'), 'ok', 0);

    expect(await servedCert(pm, 'beta', 'alpha')).toBe(newBeta);
    expect(pm.gw('beta').logged('configuration reloaded')[0]).toMatchObject({ links_kept: 1, cert_serial: new X509Certificate(readFileSync(tlsPathsFor(roster, 'beta').cert)).serialNumber });
    // The link opened with the old certificates still carries traffic, in order.
    await waitFor('traffic after the reload', async () => (await received()) > before + 50);
    const entry = (await sinkReport(b1, 'sink')).find((e) => e.sender === 'trickle')!;
    expect(entry).toMatchObject({ corrupted: 0, outOfOrder: 0 });
    expect((await nodeEvents(a1)).filter((e) => e.event === 'nodedown')).toEqual([]);
    for (const gw of ['alpha', 'beta']) expect(sample(await pm.gw(gw).metrics(), 'beamgate_links_closed_total')).toBe(0);
  });

  it('refuses a bad configuration with a clear error and keeps the old one in force', async () => {
    const roster = loadRoster(pm.mesh.rosterPath);
    const served = await servedCert(pm, 'beta', 'alpha');
    const certPath = tlsPathsFor(roster, 'beta').cert;
    const goodCert = readFileSync(certPath, 'utf8');
    const goodRoster = readFileSync(pm.mesh.rosterPath, 'utf8');
    try {
      // 1. beta's certificate replaced by alpha's: the identity check must refuse it.
      writeFileSync(certPath, readFileSync(tlsPathsFor(roster, 'alpha').cert));
      await reloaded(pm.gw('beta'), 'failed', 0);
      expect(pm.gw('beta').logged('reload refused, configuration unchanged').map((l) => l.detail)).toContainEqual(
        expect.stringMatching(/certificate of gateway alpha, not beta/),
      );
      writeFileSync(certPath, goodCert);

      // 2. A roster that does not parse.
      writeFileSync(pm.mesh.rosterPath, goodRoster.replace('nodes:', 'nodes: [oops'));
      await reloaded(pm.gw('beta'), 'failed', 1);

      // 3. A valid roster that moves beta's listener: only a restart can do that.
      const doc = parse(goodRoster) as { gateways: Record<string, { address: string }> };
      doc.gateways.beta!.address = `127.0.0.1:${await freePort()}`;
      writeFileSync(pm.mesh.rosterPath, stringify(doc));
      await reloaded(pm.gw('beta'), 'failed', 2);
      expect(pm.gw('beta').logged('reload refused, configuration unchanged').map((l) => l.detail)).toContainEqual(
        expect.stringMatching(/gateways\.beta\.listen changed .* needs a restart/),
      );
    } finally {
      writeFileSync(certPath, goodCert);
      writeFileSync(pm.mesh.rosterPath, goodRoster);
    }
    // Still the same material in force, still serving, the link still up.
    expect(pm.gw('beta').alive).toBe(true);
    expect(await servedCert(pm, 'beta', 'alpha')).toBe(served);
    const before = await received();
    await waitFor('traffic after the refused reloads', async () => (await received()) > before + 20);
    expect((await nodeEvents(a1)).filter((e) => e.event === 'nodedown')).toEqual([]);
  });

  it('applies a roster change: a node added to beta becomes reachable from alpha', async () => {
    const doc = parse(readFileSync(pm.mesh.rosterPath, 'utf8')) as { nodes: { name: string; gateway: string; port: number }[] };
    const port = await freePort();
    doc.nodes.push({ name: 'b2@beta.demo', gateway: 'beta', port });
    writeFileSync(pm.mesh.rosterPath, stringify(doc));
    const oks = async (gw: string) => sample(await pm.gw(gw).metrics(), 'beamgate_reloads_total', { result: 'ok' });
    await reloaded(pm.gw('beta'), 'ok', await oks('beta'));
    await reloaded(pm.gw('alpha'), 'ok', await oks('alpha'));
    // The nodes' own config (inetrc) is unchanged: the new node just uses the roster port.
    const beta = pm.layout.find((g) => g.name === 'beta')!;
    const args = erlFlags({ name: 'b2@beta.demo', epmdPort: beta.epmdPort, inetrcPath: pm.mesh.inetrcPath('beta'), port });
    const b2 = await ErlNode.start('b2@beta.demo', { args: [...args, ...pa], home: pm.home });
    pm.nodes.push(b2);
    await sleep(100);
    expect(await a1.eval(`net_adm:ping('b2@beta.demo')`)).toBe('pong');
    expect(await b2.eval('nodes()')).toContain('a1@alpha.demo');
    expect((await nodeEvents(a1)).filter((e) => e.event === 'nodedown')).toEqual([]);
  });
});

describe('hot reload on a file change (--reload-interval)', () => {
  const INTERVAL_S = 1;
  let pm: ProcessMesh;
  let a1: ErlNode;

  beforeAll(async () => {
    ({ pm, a1 } = await startNodePair({ runArgs: ['--reload-interval', String(INTERVAL_S)] }));
    await a1.eval('bg_traffic:start_monitor()');
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
    for (const gw of ['alpha', 'beta']) await waitFor(`${gw} watching its files`, () => pm.gw(gw).logged('watching configuration files', { interval_s: INTERVAL_S }).length > 0);
  }, 90_000);
  afterAll(async () => pm?.stop());

  const reloads = async (gw: string, result: 'ok' | 'failed') => sample(await pm.gw(gw).metrics(), 'beamgate_reloads_total', { result });

  it('a rotated certificate is picked up without a signal; the link stays up, and a gateway whose files did not change does not reload', async () => {
    const roster = loadRoster(pm.mesh.rosterPath);
    const paths = tlsPathsFor(roster, 'beta');
    const old = await servedCert(pm, 'beta', 'alpha');
    const logsBefore = pm.gw('beta').logs.length;
    await issueCerts(roster, ['beta'], true);
    const fresh = fileFingerprint(paths.cert);
    expect(fresh).not.toBe(old);
    await waitFor('beta reloads by itself', async () => (await reloads('beta', 'ok')) === 1, 10_000);
    const trigger = pm.gw('beta').logs.slice(logsBefore).find((l) => l.msg === 'reloading');
    expect(trigger).toMatchObject({ trigger: 'file change' });
    expect(trigger!.files).toEqual(expect.arrayContaining([paths.cert, paths.key]));
    expect(await servedCert(pm, 'beta', 'alpha')).toBe(fresh);
    // alpha watches its own certificate and key, the CA and the roster: none changed.
    await sleep(3 * INTERVAL_S * 1000);
    expect(await reloads('alpha', 'ok')).toBe(0);
    expect(await reloads('beta', 'ok')).toBe(1);
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
    for (const gw of ['alpha', 'beta']) expect(sample(await pm.gw(gw).metrics(), 'beamgate_links_closed_total')).toBe(0);
  });

  it('a bad change is refused once, not at every poll, and the old material stays in force until the files are fixed', async () => {
    const roster = loadRoster(pm.mesh.rosterPath);
    const certPath = tlsPathsFor(roster, 'beta').cert;
    const goodCert = readFileSync(certPath, 'utf8');
    const served = await servedCert(pm, 'beta', 'alpha');
    const oks = await reloads('beta', 'ok');
    try {
      writeFileSync(certPath, readFileSync(tlsPathsFor(roster, 'alpha').cert));
      await waitFor('beta refuses the reload', async () => (await reloads('beta', 'failed')) === 1, 10_000);
      expect(pm.gw('beta').logged('reload refused, configuration unchanged').map((l) => l.detail)).toContainEqual(
        expect.stringMatching(/certificate of gateway alpha, not beta/),
      );
      await sleep(3 * INTERVAL_S * 1000);
      expect(await reloads('beta', 'failed')).toBe(1);
      expect(await servedCert(pm, 'beta', 'alpha')).toBe(served);
    } finally {
      writeFileSync(certPath, goodCert);
    }
    await waitFor('beta reloads the fixed files', async () => (await reloads('beta', 'ok')) === oks + 1, 10_000);
    expect(await servedCert(pm, 'beta', 'alpha')).toBe(served);
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
    expect(sample(await pm.gw('beta').metrics(), 'beamgate_links_closed_total')).toBe(0);
    expect((await nodeEvents(a1)).filter((e) => e.event === 'nodedown')).toEqual([]);
  });
});
