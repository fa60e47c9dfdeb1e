// Real gateways, real TLS, real `erl` nodes: three nodes on two gateways form
// a cluster through the relay, and everything crossing hosts is counted.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ErlNode } from '../../src/erlang/node.js';
import { sample, startTestMesh, type TestMesh, waitFor } from '../helpers/mesh.js';

describe('relay between two gateways with real Erlang nodes', () => {
  let t: TestMesh;
  let a1: ErlNode;
  let a2: ErlNode;
  let b1: ErlNode;

  beforeAll(async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1', 'a2'], beta: ['b1'] } });
    [a1, a2, b1] = await Promise.all([t.startNode('a1@alpha.demo'), t.startNode('a2@alpha.demo'), t.startNode('b1@beta.demo')]);
  });
  afterAll(async () => t?.stop());

  it('net_adm:ping answers pong across gateways', async () => {
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
  });

  it('rpc:call returns a value computed on the remote node', async () => {
    expect(await b1.eval(`rpc:call('a2@alpha.demo', erlang, list_to_atom, ["computed_on_a2"])`)).toBe('computed_on_a2');
    expect(await a2.eval(`rpc:call('b1@beta.demo', lists, sum, [[1,2,3,4]])`)).toBe('10');
  });

  it('a 10 MB binary arrives intact', async () => {
    await b1.eval(`register(sink, spawn(fun() -> receive {Bin, From} -> From ! {got, byte_size(Bin), crypto:hash(sha256, Bin)} end end)), ok`);
    const result = await a1.eval(
      `Bin = crypto:strong_rand_bytes(10 * 1024 * 1024), ` +
        `{sink, 'b1@beta.demo'} ! {Bin, self()}, ` +
        `receive {got, Size, Sum} -> {Size, Sum =:= crypto:hash(sha256, Bin)} after 30000 -> timeout end`,
    );
    expect(result).toBe('{10485760,true}');
  });

  it('nodes() is complete on every node, including links no one dialled by hand', async () => {
    // a1 and a2 are on the same host: they connect directly; b1 reaches both through the mesh.
    await a2.eval(`net_adm:ping('b1@beta.demo')`);
    const expected: Record<string, string> = {
      a1: `['a2@alpha.demo','b1@beta.demo']`,
      a2: `['a1@alpha.demo','b1@beta.demo']`,
      b1: `['a1@alpha.demo','a2@alpha.demo']`,
    };
    for (const [node, name] of [
      [a1, 'a1'],
      [a2, 'a2'],
      [b1, 'b1'],
    ] as const) {
      await waitFor(`nodes() on ${name}`, async () => (await node.eval('lists:sort(nodes())')) === expected[name]);
    }
  });

  it('counts the relayed bytes and frames per peer and node pair, and links open', async () => {
    const alpha = await t.metricsText('alpha');
    const beta = await t.metricsText('beta');
    // The 10 MB went out of alpha and into beta on the a1 -> b1 pair.
    const out = sample(alpha, 'beamgate_relayed_bytes_total', { peer: 'beta', direction: 'out', local_node: 'a1@alpha.demo', remote_node: 'b1@beta.demo' });
    const inn = sample(beta, 'beamgate_relayed_bytes_total', { peer: 'alpha', direction: 'in', local_node: 'b1@beta.demo', remote_node: 'a1@alpha.demo' });
    expect(out).toBeGreaterThan(10 * 1024 * 1024);
    expect(inn).toBe(out);
    expect(sample(alpha, 'beamgate_relayed_frames_total', { peer: 'beta', direction: 'out' })).toBeGreaterThan(0);
    expect(sample(alpha, 'beamgate_links_open', { peer: 'beta' })).toBeGreaterThanOrEqual(2);
    expect(sample(alpha, 'beamgate_epmd_nodes_registered')).toBe(2);
    expect(sample(beta, 'beamgate_tls_handshakes_total', { role: 'server', result: 'ok' })).toBeGreaterThan(0);
  });

  it('a node going down closes its links on both gateways', async () => {
    const before = sample(await t.metricsText('beta'), 'beamgate_links_closed_total');
    await a2.stop();
    await waitFor('b1 sees a2 go', async () => (await b1.eval('lists:member(\'a2@alpha.demo\', nodes())')) === 'false');
    await waitFor('beta counts the closed link', async () => sample(await t.metricsText('beta'), 'beamgate_links_closed_total') > before);
    await waitFor('alpha has no half-open link to a2', async () => {
      const text = await t.metricsText('alpha');
      return sample(text, 'beamgate_links_open', { peer: 'beta' }) === 1;
    });
    const closed = t.logOf('beta').find((l) => l.msg === 'link closed' && l.remote_node === 'a2@alpha.demo');
    expect(closed).toMatchObject({ peer: 'alpha', local_node: 'b1@beta.demo' });
    expect(typeof closed?.bytes_in).toBe('number');
    expect(typeof closed?.duration_ms).toBe('number');
  });
});
