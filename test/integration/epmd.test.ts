// The gateway as EPMD for real, unmodified nodes: registrations only for the
// roster, lookups on the loopback aliases answered from the roster, and ticks
// flowing through an idle link.

import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErlNode } from '../../src/erlang/node.js';
import { encodeAlive2Request, encodePortPlease2Request, NODE_TYPE_NORMAL, parsePort2Resp } from '../../src/epmd/protocol.js';
import { sample, startTestMesh, type TestMesh, waitFor } from '../helpers/mesh.js';

function request(host: string, port: number, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect(port, host, () => s.write(body));
    s.on('data', (d) => {
      chunks.push(d);
      if (body[2] === 120) s.end(); // ALIVE2: the answer comes, then we hang up
    });
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

describe('EPMD on loopback', () => {
  let t: TestMesh;

  beforeAll(async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1', 'b2'] } });
  });
  afterAll(async () => t?.stop());

  it('a node that is not in the roster cannot register, and the gateway says why', async () => {
    const args = t.mesh.nodeArgs('a1@alpha.demo').map((a) => (a === 'a1@alpha.demo' ? 'intruder@alpha.demo' : a));
    await expect(ErlNode.start('intruder@alpha.demo', { args, home: t.home, startTimeoutMs: 15_000 })).rejects.toThrow();
    const line = t.logOf('alpha').find((l) => l.reason === 'epmd_not_in_roster');
    expect(line).toMatchObject({ node: 'intruder@alpha.demo', msg: 'epmd request refused' });
    expect(sample(await t.metricsText('alpha'), 'beamgate_epmd_registrations_total', { result: 'epmd_not_in_roster' })).toBe(1);
  });

  it('a roster node must register with its roster port', async () => {
    const alpha = t.mesh.roster.gateways.get('alpha')!;
    const resp = await request('127.0.0.1', alpha.epmdPort, encodeAlive2Request({ port: 1, nodeType: NODE_TYPE_NORMAL, protocol: 0, highestVersion: 6, lowestVersion: 5, name: 'a1', extra: Buffer.alloc(0) }));
    expect(resp[1]).toBe(1); // result: refused
    expect(t.logOf('alpha').find((l) => l.reason === 'epmd_wrong_port')).toMatchObject({ node: 'a1@alpha.demo', port: 1 });
  });

  it('answers PORT_PLEASE2 for remote nodes on their gateway alias, from the roster', async () => {
    const alpha = t.mesh.roster.gateways.get('alpha')!;
    const beta = t.mesh.roster.gateways.get('beta')!;
    const found = parsePort2Resp(await request(beta.loopback, alpha.epmdPort, encodePortPlease2Request('b2')));
    expect(found).toMatchObject({ kind: 'ok', info: { port: t.mesh.roster.nodes.get('b2@beta.demo')!.port, name: 'b2' } });
    // A name beta does not own, asked on beta's alias, is not found: aliases do not leak other hosts' nodes.
    expect(parsePort2Resp(await request(beta.loopback, alpha.epmdPort, encodePortPlease2Request('a1')))).toEqual({ kind: 'ok', info: null });
  });

  it('net_adm:names on a remote host lists that gateway\'s roster nodes', async () => {
    const a1 = await t.startNode('a1@alpha.demo');
    expect(await a1.eval(`{ok, Names} = net_adm:names('beta.demo'), lists:sort(Names)`)).toBe(
      `[{"b1",${t.mesh.roster.nodes.get('b1@beta.demo')!.port}},{"b2",${t.mesh.roster.nodes.get('b2@beta.demo')!.port}}]`,
    );
    expect(await a1.eval(`{ok, Names} = net_adm:names('alpha.demo'), Names`)).toBe(`[{"a1",${t.mesh.roster.nodes.get('a1@alpha.demo')!.port}}]`);
  });

  it('passes ticks through an idle link and keeps it up', async () => {
    const ticktime = ['-kernel', 'net_ticktime', '2'];
    const a1 = t.nodes.find((n) => n.name === 'a1@alpha.demo')!;
    await a1.stop();
    const [x, y] = await Promise.all([t.startNode('a1@alpha.demo', { extraArgs: ticktime }), t.startNode('b1@beta.demo', { extraArgs: ticktime })]);
    expect(await x.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
    await x.eval('net_kernel:monitor_nodes(true), ok');
    // With net_ticktime 2 a tick goes each way every 0.5 s; 3 s idle is several ticks.
    await waitFor('ticks both ways', async () => {
      const m = await t.metricsText('alpha');
      return sample(m, 'beamgate_ticks_total', { peer: 'beta', direction: 'out' }) >= 3 && sample(m, 'beamgate_ticks_total', { peer: 'beta', direction: 'in' }) >= 3;
    });
    expect(await x.eval(`receive {nodedown, N} -> {down, N} after 3000 -> still_up end`)).toBe('still_up');
    expect(await y.eval(`lists:member('a1@alpha.demo', nodes())`)).toBe('true');
  });
});
