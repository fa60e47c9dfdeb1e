// The native data plane against node:tls, with real gateways, real TLS and
// real `erl` nodes: links leave node:tls once framed and go on in the engine's
// relay thread, and a gateway on the native plane and one on node:tls read
// each other's records. Every case moves data both ways and checks it whole,
// in order, and counted. Without build/fastpath.node (no C compiler at set-up)
// the native cases fail: set-up builds it, and `auto` would hide its absence.

import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ErlNode } from '../../src/erlang/node.js';
import type { DataPlaneMode } from '../../src/fastpath/native.js';
import { NATIVE_MODULE } from '../../src/fastpath/native.js';
import { sample, startTestMesh, type TestMesh, waitFor } from '../helpers/mesh.js';

/**
 * Sends `count` messages of `bytes` random bytes from `from` to a sink on
 * `to`, each numbered; the sink checks the numbers arrive in order and sums
 * a digest of each. Returns what both sides computed.
 */
async function stream(from: ErlNode, to: ErlNode, toName: string, count: number, bytes: number): Promise<{ sent: string; got: string }> {
  const sink = `sink_${Math.random().toString(36).slice(2, 8)}`;
  await to.eval(
    `Loop = fun L(N, Acc) -> receive {msg, N, B} -> L(N + 1, erlang:crc32(Acc, B)); {msg, _, _} -> exit(out_of_order); {done, From} -> From ! {sink_done, N, Acc} end end, ` +
      `register(${sink}, spawn(fun() -> Loop(0, 0) end)), ok`,
  );
  const sent = await from.eval(
    `Send = fun S(N, Acc) when N =:= ${count} -> Acc; S(N, Acc) -> B = crypto:strong_rand_bytes(${bytes}), {${sink}, '${toName}'} ! {msg, N, B}, S(N + 1, erlang:crc32(Acc, B)) end, ` +
      `Sum = Send(0, 0), {${sink}, '${toName}'} ! {done, self()}, ` +
      `receive {sink_done, Got, GotSum} -> {Got, GotSum =:= Sum} after 60000 -> timeout end`,
  );
  return { sent, got: `{${count},true}` };
}

async function handovers(t: TestMesh, gw: string, result: 'native' | 'stayed'): Promise<number> {
  return sample(await t.metricsText(gw), 'beamgate_link_handovers_total', { result });
}

function closedLines(t: TestMesh, gw: string): Record<string, unknown>[] {
  return t.logOf(gw).filter((l) => l.msg === 'link closed');
}

describe.each<[string, Record<string, DataPlaneMode>]>([
  ['both gateways native', { alpha: 'native', beta: 'native' }],
  ['alpha native, beta on node:tls', { alpha: 'native', beta: 'node' }],
  ['alpha on node:tls, beta native', { alpha: 'node', beta: 'native' }],
])('data planes: %s', (_title, planes) => {
  let t: TestMesh;
  let a1: ErlNode;
  let b1: ErlNode;

  beforeAll(async () => {
    expect(existsSync(NATIVE_MODULE), `${NATIVE_MODULE} is built by scripts/setup.sh (scripts/build-native.sh)`).toBe(true);
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'] }, dataPlane: planes });
    [a1, b1] = await Promise.all([t.startNode('a1@alpha.demo'), t.startNode('b1@beta.demo')]);
  });
  afterAll(async () => t?.stop());

  it('each gateway reports the plane it runs', async () => {
    for (const gw of ['alpha', 'beta']) {
      expect(sample(await t.metricsText(gw), 'beamgate_data_plane_info', { plane: planes[gw] === 'native' ? 'native' : 'node' })).toBe(1);
    }
  });

  it('a link comes up, and native gateways hand it over before its distribution handshake is over', async () => {
    // On a ready connection, so that the dialling side hands over early too (a fresh dial waits for its session tickets).
    await waitFor('a ready connection from alpha to beta', async () => sample(await t.metricsText('alpha'), 'beamgate_standby_ready', { peer: 'beta' }) > 0);
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
    for (const gw of ['alpha', 'beta']) {
      const want = planes[gw] === 'native' ? 1 : 0;
      await waitFor(`${gw} to hand over ${want} link(s)`, async () => (await handovers(t, gw, 'native')) === want);
      expect(await handovers(t, gw, 'stayed')).toBe(0);
      // The engine walked the rest of the handshake: the round trips crossed no event loop.
      expect(sample(await t.metricsText(gw), 'beamgate_link_handovers_in_handshake_total')).toBe(want);
    }
  });

  it('2,000 messages of 1 KiB and 64 messages of 1 MiB arrive whole and in order, both ways', async () => {
    for (const [from, to, toName] of [
      [a1, b1, 'b1@beta.demo'],
      [b1, a1, 'a1@alpha.demo'],
    ] as const) {
      const small = await stream(from, to, toName, 2000, 1024);
      expect(small.sent).toBe(small.got);
      const large = await stream(from, to, toName, 64, 1024 * 1024);
      expect(large.sent).toBe(large.got);
    }
  });

  it('rpc answers both ways while bulk data flows', async () => {
    expect(await a1.eval(`rpc:call('b1@beta.demo', lists, sum, [[1,2,3]])`)).toBe('6');
    expect(await b1.eval(`rpc:call('a1@alpha.demo', erlang, list_to_atom, ["from_alpha"])`)).toBe('from_alpha');
  });

  it('counts the same bytes and frames on both gateways, whichever plane relays them', async () => {
    const alpha = await t.metricsText('alpha');
    const beta = await t.metricsText('beta');
    const out = sample(alpha, 'beamgate_relayed_bytes_total', { peer: 'beta', direction: 'out' });
    const inn = sample(beta, 'beamgate_relayed_bytes_total', { peer: 'alpha', direction: 'in' });
    // a1 -> b1: 2,000 KiB and 64 MiB, with their frame headers and the handshake.
    expect(out).toBeGreaterThan(64 * 1024 * 1024 + 2000 * 1024);
    // Both streams are over: the two gateways count the same bytes each way, but for a
    // keep-alive tick (4 bytes) that may cross between the two scrapes.
    expect(Math.abs(inn - out)).toBeLessThanOrEqual(16);
    const back = sample(beta, 'beamgate_relayed_bytes_total', { peer: 'alpha', direction: 'out' });
    expect(Math.abs(back - sample(alpha, 'beamgate_relayed_bytes_total', { peer: 'beta', direction: 'in' }))).toBeLessThanOrEqual(16);
    expect(sample(alpha, 'beamgate_relayed_frames_total', { peer: 'beta', direction: 'out' })).toBeGreaterThan(2000);
    expect(sample(beta, 'beamgate_relayed_frames_total', { peer: 'alpha', direction: 'out' })).toBeGreaterThan(2000);
  });

  it('a node going down closes the link on both gateways, with its counts', async () => {
    await a1.eval(`erlang:disconnect_node('b1@beta.demo')`);
    for (const gw of ['alpha', 'beta']) {
      const line = await waitFor(`${gw} to log the closed link`, () => closedLines(t, gw)[0]);
      expect(line.plane).toBe(planes[gw] === 'native' ? 'native' : 'node');
      expect(line.bytes_out as number).toBeGreaterThan(64 * 1024 * 1024);
      expect(line.bytes_in as number).toBeGreaterThan(64 * 1024 * 1024);
      await waitFor(`${gw} to count it closed`, async () => sample(await t.metricsText(gw), 'beamgate_links_open') === 0);
    }
    // And a new link comes up after it.
    expect(await b1.eval(`net_adm:ping('a1@alpha.demo')`)).toBe('pong');
  });
});
