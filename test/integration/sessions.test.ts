// TLS 1.3 session resumption between gateways (src/mesh/sessions.ts), with
// real gateways, real TLS, certificates made for the test and real `erl`
// nodes: a link dialled after the first verified connection to a peer resumes
// that session, is handed to the native data plane and relays byte for byte;
// a reload on the serving gateway ends every ticket it gave (the next dial is
// a full handshake); a reload on the dialling side drops the tickets it
// holds; and a resumed session is checked against the roster in force by
// hand (identity, revocation, validity), since OpenSSL and node:tls check
// none of that on resumption.

import type { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { loadGatewayConfig } from '../../src/config/load.js';
import { normalizeSerial, type Roster } from '../../src/config/roster.js';
import { nativeEngine } from '../../src/fastpath/native.js';
import { checkResumedPeer, SessionCache } from '../../src/mesh/sessions.js';
import { clientOptions, makeSecureContext, serverOptions } from '../../src/mesh/tls.js';
import { sample, startTestMesh, type TestMesh, waitFor } from '../helpers/mesh.js';

/** Probes would dial in the middle of the counts: one an hour is none during a test. */
const QUIET_PROBES = { standbyPerPeer: 0, peerProbeIntervalMs: 3_600_000 };

describe('TLS session resumption between gateways', () => {
  let t: TestMesh | undefined;
  afterEach(async () => {
    await t?.stop();
    t = undefined;
  });

  const metric = async (gw: string, name: string, labels: Record<string, string> = {}) => sample(await t!.metricsText(gw), name, labels);
  const counts = async () => ({
    resumedClient: await metric('alpha', 'beamgate_tls_resumed_total', { role: 'client' }),
    resumedServer: await metric('beta', 'beamgate_tls_resumed_total', { role: 'server' }),
    okClient: await metric('alpha', 'beamgate_tls_handshakes_total', { role: 'client', result: 'ok' }),
    okServer: await metric('beta', 'beamgate_tls_handshakes_total', { role: 'server', result: 'ok' }),
  });
  /** A new link from a1 to b1: the nodes part, then a1 pings again. */
  const redial = async (a1: Awaited<ReturnType<TestMesh['startNode']>>) => {
    expect(await a1.eval(`erlang:disconnect_node('b1@beta.demo')`)).toBe('true');
    await waitFor('a1 and b1 apart', async () => (await a1.eval('nodes()')) === '[]', 20_000);
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
  };

  it('resumes the session of the last verified connection, hands the link to the native plane and relays it whole', async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'] }, limits: QUIET_PROBES });
    const [a1] = await Promise.all([t.startNode('a1@alpha.demo'), t.startNode('b1@beta.demo')]);
    // The registry link (and the first probe) made alpha's first verified connection to beta: a full handshake, and a ticket.
    await waitFor('a first handshake from alpha to beta', async () => (await counts()).okClient >= 1, 20_000);
    const before = await counts();
    const handovers = await metric('alpha', 'beamgate_link_handovers_total', { result: 'native' });

    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
    const after = await counts();
    expect(after.okClient - before.okClient, 'handshakes for the link').toBe(1);
    expect(after.resumedClient - before.resumedClient, 'the link resumed the session (alpha, client)').toBe(1);
    expect(after.resumedServer - before.resumedServer, 'the link resumed the session (beta, server)').toBe(1);
    if (nativeEngine('auto').engine) {
      await waitFor('the resumed link on the native data plane', async () => (await metric('alpha', 'beamgate_link_handovers_total', { result: 'native' })) > handovers);
    }
    expect(await a1.eval(`B = crypto:strong_rand_bytes(4194304), rpc:call('b1@beta.demo', erlang, md5, [B]) =:= erlang:md5(B)`)).toBe('true');

    // Every verified connection brings new tickets: the next link resumes too.
    await redial(a1);
    const again = await counts();
    expect(again.resumedClient - after.resumedClient, 'a second link resumed too').toBe(1);
    expect(await a1.eval(`rpc:call('b1@beta.demo', erlang, node, [])`)).toBe(`'b1@beta.demo'`);
  });

  it('with tlsSessionLifetimeMs 0 no dial offers a ticket: every link is a full handshake', async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'] }, limits: { ...QUIET_PROBES, tlsSessionLifetimeMs: 0 } });
    const [a1] = await Promise.all([t.startNode('a1@alpha.demo'), t.startNode('b1@beta.demo')]);
    await waitFor('a first handshake from alpha to beta', async () => (await counts()).okClient >= 1, 20_000);
    const before = await counts();
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
    await redial(a1);
    const after = await counts();
    expect(after.okClient - before.okClient, 'two links, two handshakes').toBe(2);
    expect(after.resumedClient, 'none resumed (client)').toBe(0);
    expect(after.resumedServer, 'none resumed (server)').toBe(0);
  });

  it("a reload on the serving gateway ends its tickets, one on the dialling gateway drops those it holds: the next dial is a full handshake", async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'] }, limits: QUIET_PROBES });
    const [a1] = await Promise.all([t.startNode('a1@alpha.demo'), t.startNode('b1@beta.demo')]);
    await waitFor('a first handshake from alpha to beta', async () => (await counts()).okClient >= 1, 20_000);
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
    const resumedAtFirst = (await counts()).resumedClient;
    expect(resumedAtFirst, 'the first link resumed').toBeGreaterThanOrEqual(1);

    // beta reloads: its new TLS context has ticket keys of its own; alpha still offers the old ticket.
    expect(await t.gateways.get('beta')!.reload(loadGatewayConfig(t.mesh.rosterPath, 'beta'))).toBe(true);
    const atServerReload = await counts();
    await redial(a1);
    const afterServerReload = await counts();
    expect(afterServerReload.okClient - atServerReload.okClient, 'one handshake for the new link').toBe(1);
    expect(afterServerReload.resumedClient - atServerReload.resumedClient, 'not resumed after the server reloaded').toBe(0);
    // That full handshake gave a new ticket: the link after it resumes.
    await redial(a1);
    expect((await counts()).resumedClient - afterServerReload.resumedClient, 'resumed on the new ticket').toBe(1);

    // alpha reloads: it forgets every ticket, although beta would take them.
    expect(await t.gateways.get('alpha')!.reload(loadGatewayConfig(t.mesh.rosterPath, 'alpha'))).toBe(true);
    const atClientReload = await counts();
    await redial(a1);
    const afterClientReload = await counts();
    expect(afterClientReload.okClient - atClientReload.okClient).toBe(1);
    expect(afterClientReload.resumedClient - atClientReload.resumedClient, 'not resumed after the dialling side reloaded').toBe(0);
    expect(await a1.eval(`rpc:call('b1@beta.demo', erlang, node, [])`)).toBe(`'b1@beta.demo'`);
  });
});

describe('a resumed session is checked against the roster in force', () => {
  /** One real TLS server with beta's certificate, dialled twice with alpha's: the second dial resumes. */
  const resumedPair = async (t: TestMesh) => {
    const alpha = loadGatewayConfig(t.mesh.rosterPath, 'alpha');
    const beta = loadGatewayConfig(t.mesh.rosterPath, 'beta');
    const server = tls.createServer(serverOptions(beta.material, 10_000, 300_000), (s) => s.on('error', () => undefined).end('bye'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const ctx = makeSecureContext(alpha.material);
    const dial = (session?: Buffer) =>
      new Promise<{ sock: tls.TLSSocket; session: Buffer }>((resolve, reject) => {
        const sock = tls.connect({ host: '127.0.0.1', port, ...clientOptions(ctx, 'beta', () => alpha.roster), session });
        sock.on('error', reject);
        // Tickets are read with the data after the handshake.
        sock.resume();
        sock.once('session', (s: Buffer) => resolve({ sock, session: s }));
        sock.once('close', () => reject(new Error('closed before a session ticket came')));
      });
    const first = await dial();
    const cert = first.sock.getPeerX509Certificate()!;
    first.sock.destroy();
    const sock = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ...clientOptions(ctx, 'beta', () => alpha.roster), session: first.session });
      s.on('error', reject);
      s.once('secureConnect', () => resolve(s));
    });
    return { alpha: alpha.roster, server, sock, cert };
  };

  it('passes a resumed session that names the expected peer, and refuses one revoked, another identity, or out of its dates', async () => {
    const t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'] }, skipStart: ['alpha', 'beta'] });
    try {
      const { alpha, server, sock, cert } = await resumedPair(t);
      try {
        expect(sock.isSessionReused(), 'the second dial resumed').toBe(true);
        // Why the dialling side carries the certificate with its ticket: node:tls has none to give on a resumed session.
        expect(sock.getPeerX509Certificate(), 'the peer certificate node:tls gives on a resumed session').toBeUndefined();
        expect(Object.keys(sock.getPeerCertificate())).toEqual([]);
        expect(checkResumedPeer(sock.getPeerX509Certificate(), alpha, { gateway: 'beta' })).toMatchObject({ reason: 'bad_certificate' });
        expect(checkResumedPeer(cert, alpha, { gateway: 'beta' })).toEqual({ gateway: 'beta' });
        const revoked: Roster = { ...alpha, revoked: new Set([...alpha.revoked, normalizeSerial(cert.serialNumber)!]) };
        expect(checkResumedPeer(cert, revoked, { gateway: 'beta' })).toMatchObject({ reason: 'cert_revoked' });
        expect(checkResumedPeer(cert, alpha, { gateway: 'alpha' })).toMatchObject({ reason: 'wrong_identity' });
        expect(checkResumedPeer(cert, alpha, { notSelf: 'beta' })).toMatchObject({ reason: 'wrong_identity' });
        const expiry = Date.parse(cert.validTo);
        expect(checkResumedPeer(cert, alpha, { gateway: 'beta' }, expiry)).toMatchObject({ reason: 'bad_certificate' });
        expect(checkResumedPeer(cert, alpha, { gateway: 'beta' }, expiry - 1)).toEqual({ gateway: 'beta' });
      } finally {
        sock.destroy();
        server.close();
      }
    } finally {
      await t.stop();
    }
  });

  it('offers a ticket only while its verification is young, forgets one on request and all at a reload', () => {
    const cache = new SessionCache();
    const lifetime = 300_000;
    const ticket = { session: Buffer.from('ticket'), cert: {} as X509Certificate, verifiedAt: 1_000 };
    cache.remember('beta', ticket);
    expect(cache.offer('beta', 0, 1_000), 'lifetime 0: none offered').toBeUndefined();
    cache.remember('beta', ticket);
    expect(cache.offer('beta', lifetime, 1_000 + lifetime - 1)).toBe(ticket);
    expect(cache.offer('beta', lifetime, 1_000 + lifetime)).toBeUndefined();
    expect(cache.size, 'an old ticket is dropped when found old').toBe(0);
    const fresh = { ...ticket, verifiedAt: Date.now() };
    cache.remember('beta', fresh);
    cache.remember('gamma', fresh);
    cache.forget('beta');
    expect(cache.offer('beta', lifetime)).toBeUndefined();
    expect(cache.offer('gamma', lifetime)).toBe(fresh);
    cache.clear();
    expect(cache.size).toBe(0);
  });
});
