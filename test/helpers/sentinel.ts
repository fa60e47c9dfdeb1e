// A real Erlang link kept up while a test throws abuse at the gateways: the
// dialling node records every nodedown it sees, and check() proves the link
// still answers rpc over the same connection and that its relayed-bytes
// counter on the dialling gateway keeps rising.

import assert from 'node:assert/strict';
import type { ErlNode } from '../../src/erlang/node.js';
import { sample, type TestMesh } from './mesh.js';

export interface Sentinel {
  /** Throws unless the link answers, never went down, and relayed more bytes than at the last check. */
  check(): Promise<void>;
}

export async function watchLink(t: TestMesh, from: ErlNode, gateway: string, peer: string, remote: string): Promise<Sentinel> {
  assert.equal(await from.eval(`net_adm:ping('${remote}')`), 'pong', `${from.name} cannot reach ${remote}`);
  await from.eval(
    `register(sentinel_watch, spawn(fun() -> net_kernel:monitor_nodes(true), ` +
      `W = fun W(D) -> receive {nodedown, N} -> W([N | D]); {get, F} -> F ! {downs, D}, W(D) end end, W([]) end)), ok`,
  );
  const bytes = async () => sample(await t.metricsText(gateway), 'beamgate_relayed_bytes_total', { peer, local_node: from.name, remote_node: remote });
  let last = await bytes();
  return {
    async check() {
      assert.equal(await from.eval(`rpc:call('${remote}', erlang, node, [])`), `'${remote}'`, 'the watched link no longer answers rpc');
      assert.equal(await from.eval(`sentinel_watch ! {get, self()}, receive {downs, D} -> D after 5000 -> timeout end`), '[]', 'the watched link went down');
      const now = await bytes();
      assert.ok(now > last, `relayed bytes of ${from.name} -> ${remote} did not rise (${last} -> ${now})`);
      last = now;
    },
  };
}
