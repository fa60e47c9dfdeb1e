// The live mesh registry with real gateways and real nodes: a remote host's
// EPMD answers what is registered there now (at stand-in ports of the
// gateway's own range), a ping to a down remote node is `pang` without a
// dial, a listening operator is dialled back, local-only names stay on their
// host, the fallback while a peer's registry is not known, and a peer that
// announces what it does not own, or floods, is refused and stays bounded.

import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { loadGatewayConfig } from '../../src/config/load.js';
import { tlsPathsFor } from '../../src/config/roster.js';
import type { ErlNode } from '../../src/erlang/node.js';
import { encodeHandshakeMessage, sendNameV6 } from '../../src/framing/handshake.js';
import { encodePreamble } from '../../src/mesh/preamble.js';
import { encodeRegistryMessage, REGISTRY_PROTOCOL_VERSION, type RegistryMessage } from '../../src/registry/protocol.js';
import { fakeNode } from '../helpers/fake-peer.js';
import { gatewayPem } from '../helpers/hostile-client.js';
import { names, portPlease } from '../helpers/epmd-client.js';
import { sample, startTestMesh, type TestMesh, waitFor } from '../helpers/mesh.js';

/** Alpha's stand-ins take ports of its own from this range. */
const ALPHA_RANGE = { low: 41_000, high: 41_099 };
/** A test bound, so that a peer can reach it with one message. */
const MAX_NAMES = 40;

describe('live mesh registry', () => {
  let t: TestMesh;
  let a1: ErlNode;
  let b1: ErlNode;
  const alphaEpmd = () => t.mesh.roster.gateways.get('alpha')!.epmdPort;
  const betaAlias = () => t.mesh.roster.gateways.get('beta')!.loopback;
  const metric = async (gw: string, name: string, labels: Record<string, string>) => sample(await t.metricsText(gw), name, labels);
  const synced = async (gw: string, peer: string) => (await metric(gw, 'beamgate_registry_synced', { peer })) === 1;

  beforeAll(async () => {
    t = await startTestMesh({
      gateways: { alpha: ['a1'], beta: ['b1', 'b2'] },
      operators: [{ gateway: 'beta', pattern: 'ops_*' }],
      localOnly: [{ gateway: 'alpha', pattern: 'helper-*' }],
      standInPorts: { alpha: `${ALPHA_RANGE.low}-${ALPHA_RANGE.high}` },
      limits: { maxRegistryNamesPerPeer: MAX_NAMES },
    });
    await waitFor('both registries synced', async () => (await synced('alpha', 'beta')) && (await synced('beta', 'alpha')));
    [a1, b1] = await Promise.all([t.startNode('a1@alpha.demo', { extraArgs: ['-kernel', 'net_setuptime', '30'] }), t.startNode('b1@beta.demo')]);
  });
  afterAll(async () => t?.stop());

  it("answers a remote host's EPMD from what is registered there, at a stand-in port of the gateway's own range", async () => {
    const info = await waitFor('b1 known on alpha', () => portPlease(betaAlias(), alphaEpmd(), 'b1'));
    expect(info.port).toBeGreaterThanOrEqual(ALPHA_RANGE.low);
    expect(info.port).toBeLessThanOrEqual(ALPHA_RANGE.high);
    expect(info.port).not.toBe(t.mesh.roster.nodes.get('b1@beta.demo')!.port);
    // b2 is in the roster but not running: beta's real EPMD would not know it.
    expect(await portPlease(betaAlias(), alphaEpmd(), 'b2')).toBeNull();
    expect(await names(betaAlias(), alphaEpmd())).toEqual({ b1: info.port });
    expect(await a1.eval(`{ok, Names} = net_adm:names('beta.demo'), Names`)).toBe(`[{"b1",${info.port}}]`);
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
  });

  it('a ping to a remote node that is down is pang at once, and no dial reaches its gateway', async () => {
    const before = {
      notFound: await metric('alpha', 'beamgate_epmd_lookups_total', { scope: 'remote', result: 'not_found' }),
      targetDown: await metric('beta', 'beamgate_refusals_total', { reason: 'target_down' }),
      inbound: await metric('beta', 'beamgate_links_opened_total', { peer: 'alpha', direction: 'inbound' }),
    };
    const mark = t.logOf('alpha').length;
    // net_setuptime is 30 s on a1: only an answer from EPMD can make this fast.
    const ms = Number(await a1.eval(`{T, pang} = timer:tc(net_adm, ping, ['b2@beta.demo']), T div 1000`));
    console.log(`registry: ping to a down remote node answered pang in ${ms} ms`);
    expect(ms).toBeLessThan(5_000);
    expect(await metric('alpha', 'beamgate_epmd_lookups_total', { scope: 'remote', result: 'not_found' })).toBeGreaterThan(before.notFound);
    expect(await metric('beta', 'beamgate_refusals_total', { reason: 'target_down' })).toBe(before.targetDown);
    expect(await metric('beta', 'beamgate_links_opened_total', { peer: 'alpha', direction: 'inbound' })).toBe(before.inbound);
    // Nothing reached a stand-in: no link was attempted, refused or abandoned.
    expect(t.logOf('alpha').slice(mark).filter((l) => l.remote_node === 'b2@beta.demo')).toEqual([]);
  });

  it('a registration reaches the peer, and an unregistration too; both are timed', async () => {
    const port = t.mesh.roster.nodes.get('b2@beta.demo')!.port;
    const started = process.hrtime.bigint();
    const b2 = await fakeNode(t.mesh.roster.gateways.get('beta')!.epmdPort, 'b2', port);
    await waitFor('b2 known on alpha', () => portPlease(betaAlias(), alphaEpmd(), 'b2'), 10_000);
    const upMs = Number(process.hrtime.bigint() - started) / 1e6;
    const gone = process.hrtime.bigint();
    b2.close();
    await waitFor('b2 gone on alpha', async () => (await portPlease(betaAlias(), alphaEpmd(), 'b2')) === null, 10_000);
    const downMs = Number(process.hrtime.bigint() - gone) / 1e6;
    console.log(`registry: registration seen by the peer in ${upMs.toFixed(1)} ms (incl. the ALIVE2 exchange), unregistration in ${downMs.toFixed(1)} ms`);
    expect(upMs).toBeLessThan(10_000);
  });

  it('dials back a listening operator through a stand-in made when it registers, and removes it when it goes', async () => {
    const standInsBefore = await metric('alpha', 'beamgate_stand_ins', { peer: 'beta' });
    // An operator that listens (a RabbitMQ CLI node; erl -remsh without -dist_listen false): no static port.
    const args = t.mesh.nodeArgs('ops_cli@beta.demo').filter((a, i, all) => a !== '-dist_listen' && all[i - 1] !== '-dist_listen');
    const ops = await t.startNode('ops_cli@beta.demo', { args });
    const info = await waitFor('ops_cli known on alpha', () => portPlease(betaAlias(), alphaEpmd(), 'ops_cli'));
    expect(info.port).toBeGreaterThanOrEqual(ALPHA_RANGE.low);
    expect(await metric('alpha', 'beamgate_stand_ins', { peer: 'beta' })).toBe(standInsBefore + 1);
    // a1 dials the operator: the link is relayed by both gateways, hidden on both ends.
    expect(await a1.eval(`net_adm:ping('ops_cli@beta.demo')`)).toBe('pong');
    expect(await ops.eval(`lists:member('a1@alpha.demo', nodes(hidden))`)).toBe('true');
    expect(await a1.eval(`lists:member('ops_cli@beta.demo', nodes())`)).toBe('false');
    const open = await waitFor('the dial-back link open on beta', () => t.logOf('beta').find((l) => l.msg === 'link open' && l.local_node === 'ops_*'));
    expect(open).toMatchObject({ direction: 'inbound', peer: 'alpha', remote_node: 'a1@alpha.demo' });
    await ops.stop();
    await waitFor('ops_cli gone on alpha', async () => (await portPlease(betaAlias(), alphaEpmd(), 'ops_cli')) === null);
    await waitFor('its stand-in closed', async () => (await metric('alpha', 'beamgate_stand_ins', { peer: 'beta' })) === standInsBefore);
  });

  it('admits local-only names on their EPMD, never announces them, and never lets them dial out', async () => {
    const helper = await fakeNode(alphaEpmd(), 'helper-1', 40_999);
    try {
      expect(t.logOf('alpha').find((l) => l.msg === 'node registered' && l.name === 'helper-1')).toMatchObject({ kind: 'local' });
      expect(Object.keys(await names('127.0.0.1', alphaEpmd()))).toContain('helper-1');
      // beta never hears of it: its answer for alpha's host has a1 only.
      const beta = t.mesh.roster.gateways.get('beta')!;
      const alphaAlias = t.mesh.roster.gateways.get('alpha')!.loopback;
      expect(Object.keys(await names(alphaAlias, beta.epmdPort))).toEqual(['a1']);
      // And it cannot dial out: its send_name on a stand-in is refused.
      const b1Port = (await portPlease(betaAlias(), alphaEpmd(), 'b1'))!.port;
      const before = await metric('alpha', 'beamgate_refusals_total', { reason: 'not_in_roster' });
      const sock = net.connect(b1Port, betaAlias());
      sock.on('error', () => undefined);
      await new Promise<void>((r) => sock.once('connect', () => r()));
      sock.write(encodeHandshakeMessage(sendNameV6('helper-1@alpha.demo', 0x1ffffffn)));
      await new Promise<void>((r) => sock.once('close', () => r()));
      expect(await metric('alpha', 'beamgate_refusals_total', { reason: 'not_in_roster' })).toBe(before + 1);
      expect(t.logOf('alpha').find((l) => l.reason === 'not_in_roster' && String(l.detail).includes('local-only'))).toBeDefined();
    } finally {
      helper.close();
    }
  });

  it("falls back to the roster while a peer's registry is not known, and is exact again once it is back", async () => {
    await t.gateways.get('beta')!.stop();
    await waitFor('alpha to lose beta\'s registry', async () => !(await synced('alpha', 'beta')));
    expect(t.logOf('alpha').find((l) => l.msg === 'registry lost' && l.peer === 'beta')).toMatchObject({ level: 'warn' });
    // Not known: every roster node of beta is answered, as before the registry.
    expect(Object.keys(await names(betaAlias(), alphaEpmd())).sort()).toEqual(['b1', 'b2']);
    expect(await portPlease(betaAlias(), alphaEpmd(), 'b2')).not.toBeNull();
    t.gateways.delete('beta');
    await t.startGateway('beta');
    await waitFor('alpha to know beta again', () => synced('alpha', 'beta'), 20_000);
    // b1 registers again with the new gateway by itself (OTP retries): the view follows.
    await waitFor('b1 back in alpha\'s view, b2 not', async () => JSON.stringify(Object.keys(await names(betaAlias(), alphaEpmd()))) === '["b1"]', 20_000);
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
  });

  it('after a reload that admits more, asks each peer for its names again: what the old roster refused is taken', async () => {
    const doc = parseYaml(readFileSync(t.mesh.rosterPath, 'utf8')) as { operators: { gateway: string; pattern: string }[] };
    doc.operators.push({ gateway: 'beta', pattern: 'tool_*' });
    writeFileSync(t.mesh.rosterPath, stringifyYaml(doc));
    // Beta reloads first: its tool_1 registers and is announced, and alpha, on the old roster, refuses it.
    const refusedBefore = await metric('alpha', 'beamgate_refusals_total', { reason: 'announce_not_owned' });
    expect(await t.gateways.get('beta')!.reload(loadGatewayConfig(t.mesh.rosterPath, 'beta'))).toBe(true);
    const tool = await fakeNode(t.mesh.roster.gateways.get('beta')!.epmdPort, 'tool_1', 40_998);
    try {
      await waitFor('alpha to refuse tool_1', async () => (await metric('alpha', 'beamgate_refusals_total', { reason: 'announce_not_owned' })) === refusedBefore + 1);
      expect(await portPlease(betaAlias(), alphaEpmd(), 'tool_1')).toBeNull();
      // Alpha reloads: it asks beta for a snapshot, and tool_1 is in.
      expect(await t.gateways.get('alpha')!.reload(loadGatewayConfig(t.mesh.rosterPath, 'alpha'))).toBe(true);
      await waitFor('tool_1 known on alpha', () => portPlease(betaAlias(), alphaEpmd(), 'tool_1'));
    } finally {
      tool.close();
    }
  });

  describe('a peer gateway that announces what it does not own, or floods', () => {
    /** Opens a registry link to alpha with beta's genuine certificate, sends `messages`, and resolves when alpha closes it (or after `lingerMs`). */
    const rogueRegistry = (messages: RegistryMessage[], lingerMs = 3_000): Promise<{ closedByAlpha: boolean }> =>
      new Promise((resolve, reject) => {
        const id = gatewayPem(t, 'beta');
        const sock = tls.connect({ host: '127.0.0.1', port: t.mesh.roster.gateways.get('alpha')!.address.port, ...id, minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
        const timer = setTimeout(() => {
          sock.destroy();
          resolve({ closedByAlpha: false });
        }, lingerMs);
        sock.on('error', () => undefined);
        sock.once('secureConnect', () => sock.write(Buffer.concat([encodePreamble({ kind: 'registry' }), ...messages.map(encodeRegistryMessage)])));
        sock.once('close', () => {
          clearTimeout(timer);
          resolve({ closedByAlpha: true });
        });
        sock.once('timeout', () => reject(new Error('timeout')));
      });
    const entry = (name: string, port = 40_000) => ({ name, port, highestVersion: 6, lowestVersion: 5 });

    // The rogue holds beta's genuine certificate (a compromised beta); the
    // real beta is stopped meanwhile, so that its own registry link, which
    // would replace the rogue's, does not race the assertions.
    beforeAll(async () => {
      await t.gateways.get('beta')!.stop();
      t.gateways.delete('beta');
      await waitFor('alpha to lose beta\'s registry', async () => !(await synced('alpha', 'beta')));
    });

    it('refuses names the roster does not let that peer own, and counts each', async () => {
      const before = await metric('alpha', 'beamgate_refusals_total', { reason: 'announce_not_owned' });
      const mark = t.logOf('alpha').length;
      // a1 is alpha's node, b1 is beta's but at the wrong port, mallory is nobody's; ops_x is a genuine beta operator.
      await rogueRegistry([{ t: 'snapshot', v: REGISTRY_PROTOCOL_VERSION, names: [entry('a1'), entry('b1', 1), entry('mallory'), entry('ops_x')] }]);
      expect(await metric('alpha', 'beamgate_refusals_total', { reason: 'announce_not_owned' })).toBe(before + 3);
      const lines = t.logOf('alpha').slice(mark).filter((l) => l.msg === 'registry refused' && l.reason === 'announce_not_owned');
      expect(lines.map((l) => l.name).sort()).toEqual(['a1', 'b1', 'mallory']);
      expect(lines.every((l) => l.peer === 'beta')).toBe(true);
      // Only ops_x was taken, and it went when the link did.
      await waitFor('the rogue link gone', async () => !(await synced('alpha', 'beta')));
    });

    it('stays bounded under a flood: at most maxRegistryNamesPerPeer names, the link cut above the message rate, the log within budget', async () => {
      const rssBefore = process.memoryUsage().rss;
      const mark = t.logOf('alpha').length;
      const limitBefore = await metric('alpha', 'beamgate_refusals_total', { reason: 'limit_reached' });
      // 1: one snapshot with more operator names than the bound.
      const many = Array.from({ length: MAX_NAMES * 3 }, (_, i) => entry(`ops_flood${i}`, 40_000 + i));
      const kept = rogueRegistry([{ t: 'snapshot', v: REGISTRY_PROTOCOL_VERSION, names: many }], 2_000);
      await waitFor('alpha to hold the bound', async () => (await metric('alpha', 'beamgate_registry_names', { peer: 'beta' })) === MAX_NAMES);
      expect(await metric('alpha', 'beamgate_refusals_total', { reason: 'limit_reached' })).toBe(limitBefore + MAX_NAMES * 2);
      await kept;
      // 2: thousands of changes in one burst: the rate bound cuts the link.
      const churn: RegistryMessage[] = [{ t: 'snapshot', v: REGISTRY_PROTOCOL_VERSION, names: [] }];
      for (let i = 0; i < 5_000; i++) churn.push(i % 2 === 0 ? { t: 'add', entry: entry(`ops_c${i % 50}`) } : { t: 'remove', name: `ops_c${(i - 1) % 50}` });
      expect((await rogueRegistry(churn, 20_000)).closedByAlpha).toBe(true);
      const counted = (await metric('alpha', 'beamgate_refusals_total', { reason: 'limit_reached' })) - limitBefore;
      expect(counted).toBe(MAX_NAMES * 2 + 1);
      // Per reason and peer, at most refusalLogBurst (20) lines a window; the
      // rest are counted in a summary when the window closes. Lines plus
      // summaries account for every refusal.
      const accounted = () => {
        const since = t.logOf('alpha').slice(mark);
        const lines = since.filter((l) => l.msg === 'registry refused' && l.reason === 'limit_reached').length;
        const summed = since.filter((l) => l.msg === 'refusals suppressed' && l.refused_msg === 'registry refused' && l.reason === 'limit_reached').reduce((n, l) => n + Number(l.suppressed), 0);
        return { lines, summed };
      };
      const { lines } = await waitFor('every refusal logged or summarised', () => {
        const a = accounted();
        return a.lines + a.summed === counted ? a : undefined;
      }, 20_000);
      expect(lines).toBeLessThanOrEqual(20);
      // Nothing of the flood stays: beta's two roster stand-ins remain.
      await waitFor('the flood gone', async () => !(await synced('alpha', 'beta')) && (await metric('alpha', 'beamgate_stand_ins', { peer: 'beta' })) === 2);
      const grownMiB = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
      console.log(`registry flood: ${MAX_NAMES * 3} names and 5000 changes refused or cut; ${lines} refusal lines logged of ${counted}; test process RSS grew ${grownMiB.toFixed(1)} MiB`);
      expect(grownMiB).toBeLessThan(64);
    });

    it("the genuine peer's registry link takes over again, with the truth", async () => {
      await t.startGateway('beta');
      await waitFor("beta's real registry back on alpha", async () => JSON.stringify(Object.keys(await names(betaAlias(), alphaEpmd()))) === '["b1"]', 20_000);
      expect(await metric('alpha', 'beamgate_registry_names', { peer: 'beta' })).toBe(1);
      expect(await metric('alpha', 'beamgate_stand_ins', { peer: 'beta' })).toBe(2);
    });
  });

  it("a reload that revokes a peer's certificate cuts its registry links both ways, as it cuts relayed links", async () => {
    const serial = new X509Certificate(readFileSync(tlsPathsFor(t.mesh.roster, 'beta').cert, 'utf8')).serialNumber;
    const doc = parseYaml(readFileSync(t.mesh.rosterPath, 'utf8')) as { tls: Record<string, unknown> };
    doc.tls.revoked = [serial];
    writeFileSync(t.mesh.rosterPath, stringifyYaml(doc));
    const before = await metric('alpha', 'beamgate_refusals_total', { reason: 'cert_revoked' });
    await waitFor('both registries synced first', async () => (await synced('alpha', 'beta')) && (await synced('beta', 'alpha')));
    const mark = t.logOf('alpha').length;
    expect(await t.gateways.get('alpha')!.reload(loadGatewayConfig(t.mesh.rosterPath, 'alpha'))).toBe(true);
    // Alpha forgets what beta said, and beta, whose names alpha no longer
    // takes, loses alpha's too: alpha's own link to beta is cut, and its
    // redials meet beta's revoked certificate.
    await waitFor("alpha to drop beta's registry", async () => !(await synced('alpha', 'beta')));
    await waitFor("beta to lose alpha's registry", async () => !(await synced('beta', 'alpha')), 20_000);
    expect(await metric('alpha', 'beamgate_refusals_total', { reason: 'cert_revoked' })).toBeGreaterThanOrEqual(before + 2);
    const cut = t.logOf('alpha').slice(mark).filter((l) => l.msg === 'registry refused' && l.reason === 'cert_revoked');
    expect(cut.length).toBeGreaterThanOrEqual(2);
    expect(cut.every((l) => l.peer === 'beta')).toBe(true);
    // Beta's host is answered from the roster again, and the revoked peer's redials are refused in the TLS handshake.
    expect(Object.keys(await names(betaAlias(), alphaEpmd())).sort()).toEqual(['b1', 'b2']);
    const failed = await metric('alpha', 'beamgate_tls_handshakes_total', { role: 'server', result: 'failed' });
    await waitFor("beta's next redial refused", async () => (await metric('alpha', 'beamgate_tls_handshakes_total', { role: 'server', result: 'failed' })) > failed, 20_000);
    expect(await synced('alpha', 'beta')).toBe(false);
  });
});
