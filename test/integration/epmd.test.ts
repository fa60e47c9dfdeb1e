// The gateway as EPMD for real, unmodified nodes: registrations only for the
// roster, refusals logged with the name as it arrived, and ticks flowing
// through an idle link. What remote hosts' EPMD answers is in registry.test.ts.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErlNode } from '../../src/erlang/node.js';
import { encodeAlive2Request, NODE_TYPE_NORMAL } from '../../src/epmd/protocol.js';
import { epmdRequest } from '../helpers/epmd-client.js';
import { hasSeries, sample, startTestMesh, type TestMesh, waitFor } from '../helpers/mesh.js';

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
    // ALIVE2 carries the short name only: that is what is logged, not a full name the gateway would have to invent.
    expect(line).toMatchObject({ name: 'intruder', msg: 'epmd request refused', gateway: 'alpha' });
    expect(line).not.toHaveProperty('node');
    expect(sample(await t.metricsText('alpha'), 'beamgate_epmd_registrations_total', { result: 'epmd_not_in_roster' })).toBe(1);
  });

  it('a roster node must register with its roster port', async () => {
    const alpha = t.mesh.roster.gateways.get('alpha')!;
    const resp = await epmdRequest('127.0.0.1', alpha.epmdPort, encodeAlive2Request({ port: 1, nodeType: NODE_TYPE_NORMAL, protocol: 0, highestVersion: 6, lowestVersion: 5, name: 'a1', extra: Buffer.alloc(0) }));
    expect(resp[1]).toBe(1); // result: refused
    expect(t.logOf('alpha').find((l) => l.reason === 'epmd_wrong_port')).toMatchObject({ name: 'a1', port: 1 });
  });

  it('logs a registration with its kind, and no "hidden" field (OTP sends one node type for every node)', async () => {
    await t.startNode('a1@alpha.demo');
    const line = t.logOf('alpha').find((l) => l.msg === 'node registered' && l.name === 'a1');
    expect(line).toMatchObject({ name: 'a1', kind: 'node', port: t.mesh.roster.nodes.get('a1@alpha.demo')!.port });
    expect(line).not.toHaveProperty('hidden');
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
      // The tick series appear with the first tick relayed each way.
      return (['out', 'in'] as const).every((direction) => hasSeries(m, 'beamgate_ticks_total', { peer: 'beta', direction }) && sample(m, 'beamgate_ticks_total', { peer: 'beta', direction }) >= 3);
    });
    expect(await x.eval(`receive {nodedown, N} -> {down, N} after 3000 -> still_up end`)).toBe('still_up');
    expect(await y.eval(`lists:member('a1@alpha.demo', nodes())`)).toBe('true');
  });
});
