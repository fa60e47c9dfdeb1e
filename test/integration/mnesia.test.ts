// Mnesia across three namespace hosts through beamgate (issue 9, tests): a
// disc_copies table replicated on all three, written from all three at once,
// one node killed with SIGKILL in the middle of its writes and started again
// on its own Mnesia directory. It rejoins by itself, loads the table from
// the others, and afterwards every copy holds exactly the same records, with
// every write that was acknowledged on any node.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LabCluster } from '../helpers/lab-cluster.js';
import { waitFor } from '../helpers/mesh.js';
import { netnsUnavailableReason } from '../helpers/netns.js';

/** Tick time of every node: a kill shows as nodedown within seconds, a loaded machine sees no false ones. */
const NET_TICKTIME_S = 8;
/** Pause between two writes of one writer (ms): enough load to be in the middle of writes, not enough to starve 2 cores. */
const WRITE_PAUSE_MS = 5;
/** Writes each writer must have acknowledged at each stage before the test moves on. */
const WRITES_PER_STAGE = 200;
/** How long a stage of writes may take (each write is a sync_transaction across three hosts). */
const WRITES_TIMEOUT_MS = 45_000;
/** How long the survivors may take to see the killed node leave Mnesia (the kill closes its sockets: nodedown follows at once). */
const NODEDOWN_TIMEOUT_MS = NET_TICKTIME_S * 2_000 + 10_000;
/** How long a restarted node may take to start Mnesia and load the table from the others. */
const REJOIN_TIMEOUT_MS = 60_000;

const A1 = 'a1@alpha.lab';
const B1 = 'b1@beta.lab';
const G1 = 'g1@gamma.lab';
const NODES = [A1, B1, G1];
const NODE_LIST = `[${NODES.map((n) => `'${n}'`).join(',')}]`;
/** The process on a1 (never killed) that keeps the highest acknowledged write of every writer. */
const COLLECTOR = `{bg_acks, '${A1}'}`;

// Writers, the acknowledgement collector and the check, compiled at test time.
const MODULE = `
-module(bg_mnesia).
-export([collector/0, acked/0, start_writer/2, stop_writer/0, verify/1]).

%% Keeps, per writer, the highest write it reported as committed. A writer
%% reports after each commit, in order, so the number here never exceeds what
%% the writer committed (a report lost to a kill only makes it smaller).
collector() ->
    register(bg_acks, spawn(fun() -> collect(#{}) end)),
    ok.

collect(M) ->
    receive
        {acked, W, I} -> collect(M#{W => I});
        {get, From} -> From ! {acks, M}, collect(M)
    end.

acked() ->
    bg_acks ! {get, self()},
    receive {acks, M} -> M after 10000 -> timeout end.

%% Writes {bg_kv, {{Node, Run}, I}, I} for I = 1, 2, ... one sync_transaction
%% at a time (it returns once every active replica has the write), reports
%% each commit to Collector, and retries a write that aborted.
start_writer(Collector, Run) ->
    register(bg_writer, spawn(fun() -> write(Collector, {node(), Run}, 1, 0) end)),
    ok.

write(C, W, I, Aborts) ->
    receive
        {stop, From} -> From ! {stopped, I - 1, Aborts}
    after ${WRITE_PAUSE_MS} ->
        case mnesia:sync_transaction(fun() -> mnesia:write({bg_kv, {W, I}, I}) end) of
            {atomic, ok} -> C ! {acked, W, I}, write(C, W, I + 1, Aborts);
            {aborted, _} -> write(C, W, I, Aborts + 1)
        end
    end.

stop_writer() ->
    bg_writer ! {stop, self()},
    receive {stopped, N, Aborts} -> {N, Aborts} after 30000 -> timeout end.

%% Reads the whole local copy of bg_kv on every node and compares them:
%% {AllEqual, EachWriterContiguous, Lost, Sizes, Writers}. Lost lists the
%% writers whose acknowledged writes are not all there.
verify(Nodes) ->
    Acks = acked(),
    Views = [lists:sort(rpc:call(N, ets, tab2list, [bg_kv], 60000)) || N <- Nodes],
    [First | _] = Views,
    Equal = lists:all(fun(V) -> V =:= First end, Views),
    ByWriter = lists:foldl(fun({bg_kv, {W, I}, I}, M) -> maps:update_with(W, fun(L) -> [I | L] end, [I], M) end, #{}, First),
    Contiguous = maps:fold(fun(_, Is, Acc) -> Acc andalso lists:sort(Is) =:= lists:seq(1, length(Is)) end, true, ByWriter),
    Lost = [{W, Max} || {W, Max} <- maps:to_list(Acks), length(maps:get(W, ByWriter, [])) < Max],
    {Equal, Contiguous, Lost, [length(V) || V <- Views], maps:size(ByWriter)}.
`;

const unavailable = netnsUnavailableReason();
if (unavailable) console.warn(`mnesia.test.ts: SKIPPED, network namespaces cannot be made here: ${unavailable}`);

describe.runIf(unavailable === null)('Mnesia: a disc_copies table on three namespace hosts, through beamgate', () => {
  let c: LabCluster;
  let workDir: string;
  const mnesiaDir = (node: string) => join(workDir, `mnesia-${node.slice(0, node.indexOf('@'))}`);

  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'beamgate-mnesia-'));
    writeFileSync(join(workDir, 'bg_mnesia.erl'), MODULE);
    execFileSync('erlc', ['-o', workDir, join(workDir, 'bg_mnesia.erl')], { stdio: 'pipe' });
    c = await LabCluster.start(
      { alpha: { erlang: ['a1'] }, beta: { erlang: ['b1'] }, gamma: { erlang: ['g1'] } },
      {
        nodeArgs: ['-kernel', 'net_ticktime', String(NET_TICKTIME_S), '-pa', workDir],
        // Each node its own Mnesia directory, kept across its restart.
        nodeArgsFor: (node) => ['-mnesia', 'dir', `"${mnesiaDir(node)}"`],
      },
    );
    await c.startAllNodes();
  }, 120_000);

  afterAll(async () => {
    await c?.stop();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  const acked = async (): Promise<Map<string, number>> => {
    const text = await c.node(A1).eval('bg_mnesia:acked()');
    return new Map([...text.matchAll(/\{'([^']+)',(\w+)\} => (\d+)/g)].map((m) => [`${m[1]}/${m[2]}`, Number(m[3])]));
  };
  const runningDbNodes = async (node: string) =>
    [...(await c.node(node).eval('mnesia:system_info(running_db_nodes)')).matchAll(/'([^']+)'/g)].map((m) => m[1]!).sort();

  it('creates the schema and a disc_copies table on all three hosts', async () => {
    const a1 = c.node(A1);
    expect(await a1.eval(`mnesia:create_schema(${NODE_LIST})`)).toBe('ok');
    expect(await a1.eval(`rpc:multicall(${NODE_LIST}, mnesia, start, [], 30000)`)).toBe('{[ok,ok,ok],[]}');
    expect(await a1.eval(`mnesia:create_table(bg_kv, [{disc_copies, ${NODE_LIST}}, {attributes, [key, val]}])`)).toBe('{atomic,ok}');
    for (const n of NODES) {
      const node = c.node(n);
      expect(await node.eval('mnesia:wait_for_tables([bg_kv], 30000)'), `table loaded on ${n}`).toBe('ok');
      expect(await node.eval('lists:sort(mnesia:table_info(bg_kv, disc_copies))'), `replicas seen from ${n}`).toBe(NODE_LIST);
      expect(await node.eval('mnesia:table_info(schema, storage_type)'), `schema on disc on ${n}`).toBe('disc_copies');
      expect(await runningDbNodes(n), `running_db_nodes on ${n}`).toEqual(NODES);
    }
  });

  it('writes from all three; b1 killed with SIGKILL mid-write rejoins on restart; every copy is equal and holds every acknowledged write', async () => {
    expect(await c.node(A1).eval('bg_mnesia:collector()')).toBe('ok');
    for (const n of NODES) expect(await c.node(n).eval(`bg_mnesia:start_writer(${COLLECTOR}, run1)`)).toBe('ok');
    const reached = (acks: Map<string, number>, writer: string, count: number) => (acks.get(writer) ?? 0) >= count;
    await waitFor(
      'every writer has written',
      async () => {
        const acks = await acked();
        return NODES.every((n) => reached(acks, `${n}/run1`, WRITES_PER_STAGE));
      },
      WRITES_TIMEOUT_MS,
    );

    // SIGKILL while the three writers run: b1 is in the middle of a transaction or between two.
    c.node(B1).kill('SIGKILL');
    const killedAt = Date.now();
    for (const n of [A1, G1]) await waitFor(`${n} sees b1 leave Mnesia`, async () => !(await runningDbNodes(n)).includes(B1), NODEDOWN_TIMEOUT_MS);
    const leftAfterMs = Date.now() - killedAt;
    // The two survivors keep writing (sync_transaction to the replicas still running).
    const atKill = await acked();
    await waitFor(
      'a1 and g1 write while b1 is down',
      async () => {
        const acks = await acked();
        return [A1, G1].every((n) => reached(acks, `${n}/run1`, atKill.get(`${n}/run1`)! + WRITES_PER_STAGE));
      },
      WRITES_TIMEOUT_MS,
    );

    // b1 again, on the same Mnesia directory; nothing tells it where the others are but its schema.
    const restartAt = Date.now();
    const b1 = await c.startErlang(B1);
    expect(await b1.eval('mnesia:start()')).toBe('ok');
    expect(await b1.eval(`mnesia:wait_for_tables([bg_kv], ${REJOIN_TIMEOUT_MS})`, REJOIN_TIMEOUT_MS + 5_000)).toBe('ok');
    const rejoinMs = Date.now() - restartAt;
    expect(await runningDbNodes(B1)).toEqual(NODES);
    for (const n of [A1, G1]) await waitFor(`${n} sees b1 back in Mnesia`, async () => (await runningDbNodes(n)).includes(B1), REJOIN_TIMEOUT_MS);
    // b1's writes before the kill came back with the table, and it writes again.
    expect(await b1.eval(`mnesia:dirty_read(bg_kv, {{'${B1}', run1}, 1})`)).toBe(`[{bg_kv,{{'${B1}',run1},1},1}]`);
    expect(await b1.eval(`bg_mnesia:start_writer(${COLLECTOR}, run2)`)).toBe('ok');
    await waitFor('b1 writes again after its restart', async () => reached(await acked(), `${B1}/run2`, WRITES_PER_STAGE), WRITES_TIMEOUT_MS);

    const stopped = new Map<string, string>();
    for (const n of NODES) stopped.set(n, await c.node(n).eval('bg_mnesia:stop_writer()'));
    const acks = await acked();
    expect([...acks.keys()].sort()).toEqual([`${A1}/run1`, `${B1}/run1`, `${B1}/run2`, `${G1}/run1`]);

    const verdict = await c.node(A1).eval(`bg_mnesia:verify(${NODE_LIST})`, 90_000);
    const m = /^\{(true|false),(true|false),(\[.*\]),\[(\d+),(\d+),(\d+)\],(\d+)\}$/.exec(verdict);
    expect(m, `verify answered ${verdict}`).not.toBeNull();
    const [, equal, contiguous, lost, ...counts] = m!;
    expect(equal, 'the three copies of bg_kv are identical').toBe('true');
    expect(contiguous, 'every writer wrote 1..N with no hole').toBe('true');
    expect(lost, 'acknowledged writes missing').toBe('[]');
    const [s1, s2, s3, writers] = counts.map(Number);
    expect(s1).toBe(s2);
    expect(s2).toBe(s3);
    expect(writers).toBe(4);
    expect(s1).toBeGreaterThanOrEqual([...acks.values()].reduce((a, b) => a + b, 0));
    console.log(
      `mnesia: b1 left running_db_nodes ${leftAfterMs} ms after SIGKILL; restart to table loaded ${rejoinMs} ms; ` +
        `${s1} records on each of 3 copies, acknowledged ${JSON.stringify(Object.fromEntries(acks))}, writers stopped at ${JSON.stringify(Object.fromEntries(stopped))}`,
    );
  }, 240_000);
});
