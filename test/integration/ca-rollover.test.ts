// A CA rollover as docs/ca-rollover.md tells it, with the commands it gives,
// on real gateway processes and real nodes: alpha and beta go through the
// three steps with traffic flowing both ways and never see a nodedown or a
// link closed; gamma's host is forgotten (it keeps its old-CA certificate and
// bundle), so the step that removes the old CA cuts exactly the links to
// gamma, and gamma is refused (unknown_ca) from then on.
//
// Three gateways share this machine's loopback, so only two may stand in for
// each other's nodes: gamma's node is an operator (hidden, it only dials out,
// so no gateway stands in for it), and gamma's own roster copy puts its stand-ins
// for alpha and beta on aliases of its own, as a separate host would.

import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { loadRoster, tlsPathsFor } from '../../src/config/roster.js';
import { erlFlags, inetrc } from '../../src/erlang/flags.js';
import { ErlNode } from '../../src/erlang/node.js';
import { parseCaBundle } from '../../src/pki/ca-bundle.js';
import { createCa } from '../../src/pki/generate.js';
import { loadGatewayConfig } from '../../src/config/load.js';
import { sample, startTestMesh, type TestMesh, waitFor } from '../helpers/mesh.js';
import { assertIntact, CLI, GatewayProcess, type LogLine, type ProcessMesh, startProcessMesh } from '../helpers/gateway-process.js';
import { rogueLink } from '../helpers/fake-peer.js';
import { randomAlias } from '../helpers/ports.js';
import { compileTraffic, nodeEvents, sinkReport, startSender } from '../helpers/traffic.js';

const A1 = 'a1@alpha.demo';
const B1 = 'b1@beta.demo';
const C1 = 'ops_c1@gamma.demo';

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('CA rollover in three steps, with real gateways and nodes', () => {
  let pm: ProcessMesh;
  let a1: ErlNode;
  let b1: ErlNode;
  let c1: ErlNode;
  let roster: string;
  let newCaDir: string;
  const since = Date.now();

  beforeAll(async () => {
    pm = await startProcessMesh({ gateways: { alpha: ['a1'], beta: ['b1'], gamma: [] }, start: [] });
    roster = pm.mesh.rosterPath;
    newCaDir = join(pm.dir, 'certs-next');
    type Doc = { gateways: Record<string, { loopback?: string }>; operators?: { gateway: string; pattern: string }[] };
    const doc = parse(readFileSync(roster, 'utf8')) as Doc;
    doc.operators = [{ gateway: 'gamma', pattern: 'ops_*' }];
    writeFileSync(roster, stringify(doc));
    await pm.startGateway('alpha');
    await pm.startGateway('beta');

    // gamma's host: its own copy of the roster and of what `certs` first gave it, never updated.
    const host = join(pm.dir, 'gamma-host');
    mkdirSync(join(host, 'certs'), { recursive: true });
    for (const gw of ['alpha', 'beta']) doc.gateways[gw]!.loopback = randomAlias();
    writeFileSync(join(host, 'roster.yaml'), stringify(doc));
    const paths = tlsPathsFor(loadRoster(roster), 'gamma');
    for (const [from, name] of [[paths.ca, 'ca.pem'], [paths.cert, 'gamma.pem'], [paths.key, 'gamma-key.pem']] as const) copyFileSync(from, join(host, 'certs', name));
    chmodSync(join(host, 'certs', 'gamma-key.pem'), 0o600);
    const gammaMetrics = pm.layout.find((g) => g.name === 'gamma')!.metricsPort as number;
    pm.gateways.set('gamma', await GatewayProcess.start(join(host, 'roster.yaml'), 'gamma', gammaMetrics));
    const gammaRoster = loadRoster(join(host, 'roster.yaml'));
    writeFileSync(join(host, 'gamma.inetrc'), inetrc(gammaRoster, 'gamma'));

    const pa = compileTraffic(pm.dir);
    // No global full mesh and no partition prevention: only the links the test makes, and a
    // link cut to gamma must not make Erlang itself disconnect a1 from b1.
    const flags = [...pa, '-connect_all', 'false', '-kernel', 'prevent_overlapping_partitions', 'false'];
    [a1, b1] = await Promise.all([pm.startNode(A1, flags), pm.startNode(B1, flags)]);
    const c1Args = erlFlags({ name: C1, epmdPort: gammaRoster.gateways.get('gamma')!.epmdPort, inetrcPath: join(host, 'gamma.inetrc'), hidden: true });
    c1 = await ErlNode.start(C1, { args: [...c1Args, ...flags], home: pm.home });
    pm.nodes.push(c1);
    for (const n of [a1, b1]) await n.eval('bg_traffic:start_monitor()');
    // c1 is hidden: all of its links are hidden connections.
    await c1.eval('bg_traffic:start_monitor(all)');
    await a1.eval('bg_traffic:start_sink(sink_a)');
    await b1.eval('bg_traffic:start_sink(sink_b)');
    expect(await a1.eval(`net_adm:ping('${B1}')`)).toBe('pong');
    expect(await c1.eval(`net_adm:ping('${A1}')`)).toBe('pong');
    expect(await c1.eval(`net_adm:ping('${B1}')`)).toBe('pong');
    // Traffic both ways over the one a1-b1 link, through every step.
    await startSender(a1, 'a2b', 'sink_b', B1, { min: 16, max: 4096, burst: 5, pause: 20 });
    await startSender(b1, 'b2a', 'sink_a', A1, { min: 16, max: 4096, burst: 5, pause: 20 });
  }, 120_000);
  afterAll(async () => pm?.stop());

  const metrics = async (gw: string) => pm.gw(gw).metrics();
  const metric = async (gw: string, name: string, labels: Record<string, string> = {}) => sample(await metrics(gw), name, labels);
  /** SIGHUPs one gateway, waits for a successful reload, returns its log lines since. */
  const reload = async (gw: string): Promise<LogLine[]> => {
    const before = await metric(gw, 'beamgate_reloads_total', { result: 'ok' });
    const failed = await metric(gw, 'beamgate_reloads_total', { result: 'failed' });
    const mark = pm.gw(gw).logs.length;
    pm.gw(gw).signal('SIGHUP');
    await waitFor(`${gw} reload`, async () => (await metric(gw, 'beamgate_reloads_total', { result: 'ok' })) === before + 1 || (await metric(gw, 'beamgate_reloads_total', { result: 'failed' })) > failed, 30_000);
    const lines = pm.gw(gw).logs.slice(mark);
    expect(lines.filter((l) => l.msg === 'reload refused, configuration unchanged')).toEqual([]);
    return lines;
  };
  const received = async () => ({
    a2b: (await sinkReport(b1, 'sink_b')).find((e) => e.sender === 'a2b')?.received ?? 0,
    b2a: (await sinkReport(a1, 'sink_a')).find((e) => e.sender === 'b2a')?.received ?? 0,
  });
  /** Traffic still flows both ways: each sink receives more than it had. */
  const flowing = async (what: string) => {
    const before = await received();
    await waitFor(`traffic both ways ${what}`, async () => {
      const now = await received();
      return now.a2b > before.a2b + 20 && now.b2a > before.b2a + 20;
    }, 20_000);
  };
  /** The a1-b1 link is the one opened before the rollover: never closed, never reopened. */
  const sameLink = async () => {
    for (const [gw, peer] of [['alpha', 'beta'], ['beta', 'alpha']] as const) {
      expect(await metric(gw, 'beamgate_links_closed_total', { peer })).toBe(0);
      expect(await metric(gw, 'beamgate_links_opened_total', { peer })).toBe(1);
      expect(await metric(gw, 'beamgate_links_open', { peer })).toBe(1);
    }
  };
  const caSeries = (text: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith('beamgate_cert_expiry_seconds{') && l.includes('cert="ca"'))
      .map((l) => /ca="([0-9A-F]+)"/.exec(l)?.[1])
      .sort();
  const bundleSerials = () => {
    const b = parseCaBundle(readFileSync(tlsPathsFor(loadRoster(roster), 'alpha').ca, 'utf8'), 'ca.pem');
    if (Array.isArray(b)) throw new Error(b.join('\n'));
    return b.cas.map((c) => c.serial);
  };
  let oldSerial: string;
  let newSerial: string;

  it('before: one CA; check lists it with subject, serial and expiry, and the metric has one CA series', async () => {
    [oldSerial] = bundleSerials() as [string];
    const r = cli(['check', '--config', roster, '--gateway', 'alpha']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(new RegExp(`tls\\.ca .*ca\\.pem: 1 CA\\n  1\\. CN=beamgate cluster CA, serial ${oldSerial}, expires \\d{4}-.*Z \\(\\d+ days left\\); issued the certificate of alpha\\n`));
    expect(caSeries(await metrics('alpha'))).toEqual([oldSerial]);
    await flowing('before the rollover');
  });

  it('step 1: the new CA goes into every bundle (certs --new-ca DIR, reload); nothing is cut', async () => {
    const r = cli(['certs', '--config', roster, '--new-ca', newCaDir]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/bundle: added the new CA \(serial [0-9A-F]+\) to .*ca\.pem, now 2 CAs/);
    expect(r.out).toMatch(/alpha: .* exists, kept/);
    [, newSerial] = bundleSerials() as [string, string];
    expect(bundleSerials()[0]).toBe(oldSerial);
    for (const gw of ['alpha', 'beta']) {
      const lines = await reload(gw);
      expect(lines.find((l) => l.msg === 'configuration reloaded')).toMatchObject({ links_cut: 0, ca_serials: `${oldSerial},${newSerial}` });
      expect(caSeries(await metrics(gw))).toEqual([oldSerial, newSerial].sort());
    }
    const check = cli(['check', '--config', roster, '--gateway', 'beta']);
    expect(check.code, check.err).toBe(0);
    expect(check.out).toMatch(new RegExp(`: 2 CAs\\n  1\\. CN=beamgate cluster CA, serial ${oldSerial}, .*; issued the certificate of beta\\n  2\\. CN=beamgate cluster CA \\d{4}-\\d\\d-\\d\\d [0-9a-f]{6}, serial ${newSerial}, expires .*\\(\\d+ days left\\)\\n`));
    await flowing('after step 1');
    await sameLink();
  });

  it('step 2: every gateway certificate reissued from the new CA (certs --new-ca DIR --force, reload); nothing is cut', async () => {
    const r = cli(['certs', '--config', roster, '--new-ca', newCaDir, '--force']);
    expect(r.code, r.err).toBe(0);
    const newCa = new X509Certificate(readFileSync(join(newCaDir, 'ca.pem')));
    for (const gw of ['alpha', 'beta', 'gamma']) expect(new X509Certificate(readFileSync(tlsPathsFor(loadRoster(roster), gw).cert)).checkIssued(newCa)).toBe(true);
    for (const gw of ['alpha', 'beta']) {
      const lines = await reload(gw);
      expect(lines.find((l) => l.msg === 'configuration reloaded')).toMatchObject({ links_cut: 0 });
    }
    const check = cli(['check', '--config', roster, '--gateway', 'alpha']);
    expect(check.out).toMatch(new RegExp(`serial ${newSerial}, .*; issued the certificate of alpha\\n`));
    await flowing('after step 2');
    await sameLink();
  });

  it('step 3: the old CA leaves every bundle (certs --new-ca DIR --retire-old-ca, reload); exactly the links to gamma, still on the old CA, are cut', async () => {
    const r = cli(['certs', '--config', roster, '--new-ca', newCaDir, '--retire-old-ca']);
    expect(r.code, r.err).toBe(0);
    expect(bundleSerials()).toEqual([newSerial]);
    const stepStart = Date.now();
    for (const [gw, mine] of [['alpha', A1], ['beta', B1]] as const) {
      const toGamma = await metric(gw, 'beamgate_links_open', { peer: 'gamma' });
      const toOthers = (await metric(gw, 'beamgate_links_open')) - toGamma;
      expect(toGamma).toBeGreaterThanOrEqual(1);
      const unknownCa = await metric(gw, 'beamgate_refusals_total', { reason: 'unknown_ca' });
      const lines = await reload(gw);
      expect(lines.find((l) => l.msg === 'configuration reloaded')).toMatchObject({ links_cut: toGamma, links_kept: toOthers, ca_serials: newSerial });
      const refused = lines.filter((l) => l.msg === 'link refused');
      expect(refused).toHaveLength(toGamma);
      for (const l of refused) {
        expect(l).toMatchObject({ peer: 'gamma', reason: 'unknown_ca' });
        expect(String(l.detail)).toMatch(/^certificate of gamma \(serial [0-9A-F]+\) was issued by CN=beamgate cluster CA, no longer a CA in tls\.ca/);
      }
      // gamma was dialled with the new CA alone and could not prove itself; beta could.
      expect(lines.filter((l) => l.msg === 'peer not proven under the CAs in force').map((l) => l.peer)).toEqual(['gamma']);
      expect(await metric(gw, 'beamgate_refusals_total', { reason: 'unknown_ca' })).toBeGreaterThanOrEqual(unknownCa + toGamma);
      expect(caSeries(await metrics(gw))).toEqual([newSerial]);
      await waitFor(`${gw} counts its gamma links closed`, async () => (await metric(gw, 'beamgate_links_open', { peer: 'gamma' })) === 0);
      // gamma's node lost its link to this host's node.
      await waitFor(`${C1} sees ${mine} go down`, async () => (await nodeEvents(c1)).some((e) => e.event === 'nodedown' && e.node === mine && e.at >= stepStart - 1000));
    }
    const check = cli(['check', '--config', roster, '--gateway', 'alpha']);
    expect(check.out).toMatch(new RegExp(`: 1 CA\\n  1\\. CN=beamgate cluster CA \\d{4}-\\d\\d-\\d\\d [0-9a-f]{6}, serial ${newSerial}, .*; issued the certificate of alpha\\n`));
    await flowing('after step 3');
    await sameLink();
  });

  it('after step 3, gamma with its old-CA certificate is refused (unknown_ca), as client and as server', async () => {
    // gamma's node dials a1: gamma cannot verify alpha any more (it never got the new CA), and alpha's step-3 dial could not verify gamma.
    const mark = pm.gw('gamma').logs.length;
    expect(await c1.eval(`net_adm:ping('${A1}')`)).toBe('pang');
    expect(pm.gw('gamma').logs.slice(mark).find((l) => l.msg === 'connection refused' && l.peer === 'alpha')).toMatchObject({ reason: 'unknown_ca', direction: 'outbound' });
    const proof = pm.gw('alpha').logged('peer not proven under the CAs in force', { peer: 'gamma' });
    expect(String(proof[0]?.detail)).toMatch(/self-signed certificate in certificate chain|unable to verify/);
    // gamma's certificate presented to alpha's TLS port by a client that does trust alpha: alpha refuses it as the server.
    const host = join(pm.dir, 'gamma-host', 'certs');
    const before = await metric('alpha', 'beamgate_refusals_total', { reason: 'unknown_ca' });
    const since = pm.gw('alpha').logs.length;
    const r = await rogueLink(pm.layout.find((g) => g.name === 'alpha')!.tlsPort, {
      cert: readFileSync(join(host, 'gamma.pem'), 'utf8'),
      key: readFileSync(join(host, 'gamma-key.pem'), 'utf8'),
      ca: readFileSync(join(newCaDir, 'ca.pem'), 'utf8'),
    }, A1, C1);
    expect(r.received).toBe(0);
    const line = await waitFor('alpha refuses the old-CA certificate', () => pm.gw('alpha').logs.slice(since).find((l) => l.msg === 'connection refused' && l.reason === 'unknown_ca'));
    expect(line).toMatchObject({ direction: 'inbound' });
    expect(await metric('alpha', 'beamgate_refusals_total', { reason: 'unknown_ca' })).toBe(before + 1);
  });

  it('across all three steps: no nodedown between a1 and b1, nothing lost, corrupted or reordered, no gateway crashed', async () => {
    for (const [node, other] of [[a1, B1], [b1, A1]] as const) {
      expect((await nodeEvents(node)).filter((e) => e.event === 'nodedown' && e.node === other && e.at >= since)).toEqual([]);
    }
    for (const [node, sink, sender] of [[b1, 'sink_b', 'a2b'], [a1, 'sink_a', 'b2a']] as const) {
      const e = (await sinkReport(node, sink)).find((x) => x.sender === sender)!;
      expect(e).toMatchObject({ corrupted: 0, outOfOrder: 0, backwards: 0 });
      expect(e.received).toBeGreaterThan(200);
    }
    await sameLink();
    for (const gw of ['alpha', 'beta', 'gamma']) assertIntact(pm.gw(gw));
    // c1 lost a1 and b1 once each, at step 3.
    expect((await nodeEvents(c1)).filter((e) => e.event === 'nodedown').map((e) => e.node).sort()).toEqual([A1, B1]);
  });
});

describe('a CA of the bundle out of its validity period', () => {
  let t: TestMesh;
  afterAll(async () => t?.stop());

  it('is a warning at start and at every reload, and still has its own expiry series (negative)', async () => {
    t = await startTestMesh({ gateways: { alpha: [], beta: [] }, skipStart: ['alpha', 'beta'] });
    const caPath = tlsPathsFor(t.mesh.roster, 'alpha').ca;
    const expired = await createCa('expired CA', { notBefore: new Date(Date.now() - 20 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    writeFileSync(caPath, readFileSync(caPath, 'utf8') + expired.cert);
    const gw = await t.startGateway('alpha');
    const warnings = () => t.logOf('alpha').filter((l) => l.msg === 'TLS warning').map((l) => String(l.detail));
    expect(warnings()).toEqual([expect.stringMatching(/^tls\.ca: CA CN=expired CA \(serial ([0-9A-F]+)\) in .*ca\.pem expired on .*; it verifies nothing, remove it from the bundle$/)]);
    const serial = /serial ([0-9A-F]+)/.exec(warnings()[0]!)![1]!;
    expect(await gw.reload(loadGatewayConfig(t.mesh.rosterPath, 'alpha'))).toBe(true);
    expect(warnings()).toHaveLength(2);
    const text = await t.metricsText('alpha');
    const expiredSeries = sample(text, 'beamgate_cert_expiry_seconds', { cert: 'ca', ca: serial });
    expect(expiredSeries).toBeLessThan(-86_000);
    expect(text.split('\n').filter((l) => l.startsWith('beamgate_cert_expiry_seconds{') && l.includes('cert="ca"'))).toHaveLength(2);
  });
});
