// Restarting a gateway by take-over (docs/upgrade.md), on three namespace
// hosts with real nodes, once per OTP release: beta's gateway is replaced ten
// times in a row by `beamgate run --take-over` while every pair of nodes
// exchanges numbered messages (and 1 MiB ones between a1 and b1, both ways),
// erpc calls, and beta's nodes ask its EPMD for names. No node may see a
// nodedown, no message may be lost, duplicated or reordered, and nothing that
// is asked may fail. Then the failures: the new process killed (kill -9) in
// the middle, a format the other side does not know, a socket path held by
// someone else: the running gateway serves on each time.

import { once } from 'node:events';
import { closeSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OtpRuntime } from '../../src/erlang/roots.js';
import { findRuntime } from '../../src/erlang/roots.js';
import { loadBinding, NATIVE_MODULE, type PassFd } from '../../src/fastpath/native.js';
import { decode, encode } from '../../src/takeover/protocol.js';
import type { BenchEnv } from '../../src/bench/paths.js';
import { randomCookie, writeCookieHome } from '../../src/erlang/cookie.js';
import { LAB_PORTS, LabCluster } from '../helpers/lab-cluster.js';
import { sample, samplesOf, waitFor } from '../helpers/mesh.js';
import { NetGateway, netnsUnavailableReason } from '../helpers/netns.js';

const A1 = 'a1@alpha.lab';
const B1 = 'b1@beta.lab';
const B2 = 'b2@beta.lab';
const C1 = 'c1@gamma.lab';
const NODES = [A1, B1, B2, C1];
const TAKEOVERS = 10;
const DIST = fileURLToPath(new URL('../../dist', import.meta.url));
/** Short, so a link that did go down shows as nodedown within the test; not shorter, for a loaded 2-core machine. */
const NET_TICKTIME_S = 10;
/** A take-over is bounded by TAKEOVER_TIMEOUT_MS (30 s); on a loaded machine one takes a second or two. */
const TAKEOVER_WAIT_MS = 40_000;

/**
 * On every node: a sink (bg_sink) that checks, per sender, that numbers come
 * one after the other, and keeps the longest gap between two arrivals; a
 * monitor (bg_mon) of nodedown; then senders, erpc callers and names askers
 * that count what failed. Plain text evaluated on each node: no module to
 * compile, the same on every release.
 */
const SETUP = String.raw`begin
  Now = fun() -> erlang:monotonic_time(millisecond) end,
  Sink = fun Sink(S) -> receive
    {bg_seq, Key, N, Bin} ->
      T = Now(),
      {Last, Gaps, Back, Count, Bytes, At, MaxGap} = maps:get(Key, S, {0, 0, 0, 0, 0, T, 0}),
      Gap = max(MaxGap, T - At),
      S1 = if N =:= Last + 1 -> S#{Key => {N, Gaps, Back, Count + 1, Bytes + byte_size(Bin), T, Gap}};
              N > Last + 1 -> S#{Key => {N, Gaps + 1, Back, Count + 1, Bytes + byte_size(Bin), T, Gap}};
              true -> S#{Key => {Last, Gaps, Back + 1, Count + 1, Bytes + byte_size(Bin), T, Gap}} end,
      Sink(S1);
    {report, Pid} -> Pid ! {report, S}, Sink(S)
  end end,
  register(bg_sink, spawn(fun() -> Sink(#{}) end)),
  Mon = fun Mon(D) -> receive {nodedown, N} -> Mon([N | D]); {downs, Pid} -> Pid ! {downs, D}, Mon(D); _ -> Mon(D) end end,
  register(bg_mon, spawn(fun() -> net_kernel:monitor_nodes(true), Mon([]) end)),
  ok
end`;

/** A sender of numbered messages to `Dest`'s sink every PauseMs, with a payload of Size bytes; answers {stop, Pid} with its last number. */
const sender = (key: string, dest: string, size: number, pauseMs: number) => String.raw`begin
  Bin = binary:copy(<<"x">>, ${size}),
  Loop = fun Loop(N) ->
    {bg_sink, '${dest}'} ! {bg_seq, {"${key}", node()}, N, Bin},
    receive {stop, Pid} -> Pid ! {stopped, N} after ${pauseMs} -> Loop(N + 1) end end,
  register('${key}', spawn(fun() -> Loop(1) end)), ok
end`;

/** Calls `What` every PauseMs; counts calls and failures; answers {stop, Pid} with {Calls, Failures, LastError}. */
const caller = (key: string, what: string, pauseMs: number) => String.raw`begin
  Loop = fun Loop(C, F, E) ->
    {F1, E1} = try ${what} of {error, R} -> {F + 1, R}; _ -> {F, E} catch Class:Reason -> {F + 1, {Class, Reason}} end,
    receive {stop, Pid} -> Pid ! {stopped, {C + 1, F1, E1}} after ${pauseMs} -> Loop(C + 1, F1, E1) end end,
  register('${key}', spawn(fun() -> Loop(0, 0, none) end)), ok
end`;

const stop = (key: string) => `begin '${key}' ! {stop, self()}, receive {stopped, R} -> R after 10000 -> timeout end end`;

const unavailable = netnsUnavailableReason();
if (unavailable) console.warn(`takeover.test.ts: SKIPPED, network namespaces cannot be made here: ${unavailable}`);
let passfd: PassFd | undefined;
try {
  passfd = loadBinding(NATIVE_MODULE).passfd;
} catch (err) {
  console.warn(`takeover.test.ts: SKIPPED, the native module is not built: ${(err as Error).message}`);
}
const releases = ['25', '29'].flatMap((otp) => {
  const r = findRuntime(otp);
  if (typeof r === 'string') {
    console.warn(`takeover.test.ts: OTP ${otp} SKIPPED: ${r}`);
    return [];
  }
  return [r];
});
const runnable = unavailable === null && passfd !== undefined;

/** Each lab's take-over sockets, one per gateway, given to every process of that gateway. */
const socketDirs = new WeakMap<LabCluster, string>();
const socketOf = (c: LabCluster, gw: string) => join(socketDirs.get(c)!, `${gw}.takeover.sock`);

async function startLab(runtime: OtpRuntime | undefined): Promise<LabCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'beamgate-takeover-'));
  const c = await LabCluster.start(
    { alpha: { erlang: ['a1'] }, beta: { erlang: ['b1', 'b2'] }, gamma: { erlang: ['c1'] } },
    { nodeArgs: ['-kernel', 'net_ticktime', String(NET_TICKTIME_S)], ...(runtime ? { runtime } : {}), runArgs: (gw) => ['--takeover-socket', join(dir, `${gw}.takeover.sock`)] },
  );
  socketDirs.set(c, dir);
  return c;
}

/** Starts `beamgate run --take-over` for `gw` in its host and waits for the running one to exit (handed over). */
async function takeOver(c: LabCluster, gw: string, env: NodeJS.ProcessEnv = {}, args: string[] = []): Promise<NetGateway> {
  const old = c.gw(gw);
  const next = await NetGateway.startIn(c.lab, gw, c.mesh.rosterPath, gw, LAB_PORTS.metrics, ['--take-over', '--takeover-socket', socketOf(c, gw), ...args], env);
  const exit = await old.waitExit(TAKEOVER_WAIT_MS);
  expect(exit, `old ${gw} gateway's exit: ${old.stderrText()}`).toEqual({ code: 0, signal: null });
  expect(old.otherOutput).toEqual([]);
  expect(next.logged('took over')).toHaveLength(1);
  c.gateways.set(gw, next);
  // Open for the next one: the new process binds the path once it serves.
  await waitFor(`${gw}'s new process listening for the next take-over`, () => next.logged('take-over socket listening').length > 0, TAKEOVER_WAIT_MS);
  return next;
}

describe.runIf(runnable).each(releases.map((r) => [r.otp, r] as const))('take-over on OTP %s: ten restarts of beta\'s gateway, no node notices', (_otp, runtime: OtpRuntime) => {
  let c: LabCluster;
  const pairs = NODES.flatMap((from) => NODES.filter((to) => to !== from).map((to) => [from, to] as const));
  const key = (from: string, to: string) => `s_${from.split('@')[0]}_${to.split('@')[0]}`;

  beforeAll(async () => {
    c = await startLab(runtime);
    await Promise.all(NODES.map((n) => c.startErlang(n)));
    for (const n of NODES) expect(await c.node(n).eval(SETUP)).toBe('ok');
    for (const [from, to] of pairs) expect(await c.node(from).eval(`net_adm:ping('${to}')`)).toBe('pong');
  }, 180_000);

  afterAll(async () => {
    await c?.stop();
  });

  it(`keeps every link, message, call and registration through ${TAKEOVERS} take-overs in a row`, async () => {
    const namesBefore = await c.node(B1).eval('net_adm:names()');
    expect(namesBefore).toContain('"b1"');
    expect(namesBefore).toContain('"b2"');
    // A message every 5 ms between every pair, 1 MiB every 40 ms between a1 and b1 both ways.
    for (const [from, to] of pairs) expect(await c.node(from).eval(sender(key(from, to), to, 64, 5))).toBe('ok');
    expect(await c.node(A1).eval(sender('bulk_a1_b1', B1, 1024 * 1024, 40))).toBe('ok');
    expect(await c.node(B1).eval(sender('bulk_b1_a1', A1, 1024 * 1024, 40))).toBe('ok');
    for (const n of NODES) {
      const others = NODES.filter((o) => o !== n).map((o) => `'${o}'`);
      expect(await c.node(n).eval(caller('bg_calls', `[erpc:call(O, erlang, node, [], 5000) || O <- [${others.join(', ')}]]`, 20))).toBe('ok');
    }
    expect(await c.node(B2).eval(caller('bg_names', 'net_adm:names()', 10))).toBe('ok');
    expect(await c.node(A1).eval(caller('bg_lookup', `erl_epmd:port_please("b1", "beta.lab", 5000)`, 10))).toBe('ok');

    const takes: { totalS: number; pauseS: number; links: number }[] = [];
    for (let i = 0; i < TAKEOVERS; i++) {
      const linksBefore = samplesOf(await c.gw('beta').metrics(), 'beamgate_links_open', {}).reduce((a, b) => a + b, 0);
      const next = await takeOver(c, 'beta');
      const m = await next.metrics();
      const moved = sample(m, 'beamgate_handover_links_total', { result: 'moved' });
      expect(sample(m, 'beamgate_handover_links_total', { result: 'ended' })).toBe(0);
      expect(sample(m, 'beamgate_handover_runs_total', { role: 'take', result: 'ok' })).toBe(i + 1);
      expect(samplesOf(m, 'beamgate_links_open', {}).reduce((a, b) => a + b, 0)).toBe(linksBefore);
      takes.push({ totalS: sample(m, 'beamgate_handover_seconds', { phase: 'total' }), pauseS: sample(m, 'beamgate_handover_seconds', { phase: 'pause' }), links: moved });
      // Traffic goes on through the new process before the next one comes.
      const before = await sinkCount(B1, key(A1, B1));
      await waitFor('a1 to b1 through the new process', async () => (await sinkCount(B1, key(A1, B1))) > before + 20, 20_000);
    }
    // Counters carried over: links moved every time, each take-over counted once.
    expect(takes.map((t) => t.links)).toEqual(takes.map((_, i) => (i + 1) * takes[0]!.links));
    // One link per pair of nodes across beta: a1 and c1 with b1 and b2.
    expect(takes[0]!.links).toBe(4);

    // Stop everything, then every sink must have everything its senders sent, in order.
    const last = new Map<string, number>();
    for (const [from, to] of pairs) last.set(key(from, to), Number(await c.node(from).eval(stop(key(from, to)))));
    last.set('bulk_a1_b1', Number(await c.node(A1).eval(stop('bulk_a1_b1'))));
    last.set('bulk_b1_a1', Number(await c.node(B1).eval(stop('bulk_b1_a1'))));
    const checks: [string, string, string][] = [...pairs.map(([from, to]) => [to, key(from, to), from] as [string, string, string]), [B1, 'bulk_a1_b1', A1], [A1, 'bulk_b1_a1', B1]];
    let longestGapMs = 0;
    for (const [sinkNode, k, from] of checks) {
      const want = last.get(k)!;
      expect(want).toBeGreaterThan(10);
      const got = await waitFor(`${sinkNode} has all of ${k}`, async () => {
        const r = await sinkEntry(sinkNode, k, from);
        return r && r.last === want ? r : undefined;
      }, 20_000);
      expect(got, `${k} at ${sinkNode}`).toMatchObject({ last: want, gaps: 0, backwards: 0, count: want });
      if (!k.startsWith('bulk')) longestGapMs = Math.max(longestGapMs, got.maxGapMs);
    }
    for (const n of NODES) {
      const r = await c.node(n).eval(stop('bg_calls'));
      expect(r, `erpc calls from ${n}`).toMatch(/^\{\d+,0,none\}$/);
    }
    expect(await c.node(B2).eval(stop('bg_names'))).toMatch(/^\{\d+,0,none\}$/);
    expect(await c.node(A1).eval(stop('bg_lookup'))).toMatch(/^\{\d+,0,none\}$/);
    for (const n of NODES) expect(await c.node(n).eval(`begin bg_mon ! {downs, self()}, receive {downs, D} -> D end end`), `nodedowns at ${n}`).toBe('[]');
    expect(await c.node(B1).eval('net_adm:names()')).toBe(namesBefore);
    const ms = (s: number) => Math.round(s * 1000);
    console.log(
      `takeover.test.ts OTP ${runtime.otp}: ${TAKEOVERS} take-overs of beta (${takes[0]!.links} links): total ${takes.map((t) => ms(t.totalS)).join('/')} ms, pause ${takes.map((t) => ms(t.pauseS)).join('/')} ms; longest gap between two 5 ms messages: ${longestGapMs} ms`,
    );
    // Far below net_ticktime: a pause a node could mistake for a dead link would be a failure even without a nodedown.
    expect(longestGapMs).toBeLessThan((NET_TICKTIME_S * 1000) / 4);
  }, 600_000);

  async function sinkReport(node: string): Promise<string> {
    return c.node(node).eval('begin bg_sink ! {report, self()}, receive {report, S} -> S end end');
  }
  async function sinkEntry(node: string, k: string, from: string) {
    const text = await sinkReport(node);
    const m = new RegExp(`\\{"${k}",'${from.replace('.', '\\.')}'\\} => \\{(\\d+),(\\d+),(\\d+),(\\d+),(\\d+),-?\\d+,(\\d+)\\}`).exec(text);
    if (!m) return undefined;
    return { last: Number(m[1]), gaps: Number(m[2]), backwards: Number(m[3]), count: Number(m[4]), maxGapMs: Number(m[6]) };
  }
  async function sinkCount(node: string, k: string): Promise<number> {
    return (await sinkEntry(node, k, A1))?.count ?? 0;
  }
});

describe.runIf(runnable)('take-over failures: the running gateway serves on', () => {
  let c: LabCluster;

  beforeAll(async () => {
    c = await startLab(undefined);
    await Promise.all([A1, B1].map((n) => c.startErlang(n)));
    for (const n of [A1, B1]) expect(await c.node(n).eval(SETUP)).toBe('ok');
    expect(await c.node(A1).eval(`net_adm:ping('${B1}')`)).toBe('pong');
    expect(await c.node(A1).eval(sender('s_a1_b1', B1, 64, 5))).toBe('ok');
    expect(await c.node(B1).eval(sender('s_b1_a1', A1, 64, 5))).toBe('ok');
  }, 180_000);

  afterAll(async () => {
    await c?.stop();
  });

  const report = (node: string) => c.node(node).eval('begin bg_sink ! {report, self()}, receive {report, S} -> S end end');
  const countOf = async (node: string, k: string) => Number(new RegExp(`\\{"${k}",'[^']+'\\} => \\{\\d+,\\d+,\\d+,(\\d+),`).exec(await report(node))?.[1] ?? 0);
  /** Both directions of the a1-b1 link still carry messages. */
  const flowing = async (what: string) => {
    const [ab, ba] = [await countOf(B1, 's_a1_b1'), await countOf(A1, 's_b1_a1')];
    await waitFor(`a1-b1 both ways ${what}`, async () => (await countOf(B1, 's_a1_b1')) > ab + 20 && (await countOf(A1, 's_b1_a1')) > ba + 20, 20_000);
  };
  const giveCount = async (result: string) => sample(await c.gw('beta').metrics(), 'beamgate_handover_runs_total', { role: 'give', result });

  it('the new process killed (kill -9) after it received everything: beta takes every link back, then a take-over succeeds', async () => {
    const old = c.gw('beta');
    const doomed = NetGateway.spawnIn(c.lab, 'beta', c.mesh.rosterPath, 'beta', LAB_PORTS.metrics, ['--take-over', '--takeover-socket', socketOf(c, 'beta')], { BEAMGATE_FAILPOINT: 'takeover-before-ready' });
    expect(await doomed.waitExit(TAKEOVER_WAIT_MS)).toEqual({ code: null, signal: 'SIGKILL' });
    await waitFor('beta rolled back', async () => (await giveCount('rolled_back')) === 1, TAKEOVER_WAIT_MS);
    expect(old.alive).toBe(true);
    expect(old.logged('take-over did not happen, serving on', { result: 'rolled_back' })).toHaveLength(1);
    await flowing('after the rollback');
    // The socket is open again, and a real take-over goes through.
    await waitFor('take-over socket open again', () => old.logged('take-over socket listening').length >= 2, TAKEOVER_WAIT_MS);
    await takeOver(c, 'beta');
    await flowing('after the take-over that followed');
    for (const n of [A1, B1]) expect(await c.node(n).eval(`begin bg_mon ! {downs, self()}, receive {downs, D} -> D end end`)).toBe('[]');
  }, 120_000);

  it('a new process speaking a newer format is refused; beta serves on', async () => {
    const refusedBefore = await giveCount('refused');
    const fd = await connectWhenListening(socketOf(c, 'beta'));
    try {
      await passfd!.send(fd, encode({ t: 'hello', format: 99, gateway: 'beta', pid: process.pid, version: '99.0.0' }), [], 5_000);
      const reply = decode((await passfd!.recv(fd, 1 << 20, 8, 10_000)).data);
      expect(reply).toMatchObject({ t: 'refuse' });
      expect((reply as { why: string }).why).toContain('format 99');
    } finally {
      closeSync(fd);
    }
    await waitFor('refusal counted', async () => (await giveCount('refused')) === refusedBefore + 1, 10_000);
    expect(c.gw('beta').logged('take-over refused').at(-1)?.detail).toContain('format 99');
    await flowing('after a refused format');
  });

  it('a running "gateway" that speaks a newer format: the new process refuses to take over and exits', async () => {
    const path = join(c.dir, 'newer.sock');
    const fake = net.createServer((sock) => {
      // Reads the hello, answers with a newer format's.
      sock.once('data', () => sock.write(frame(encode({ t: 'hello', format: 99, gateway: 'beta', pid: process.pid, version: '99.0.0' }))));
      sock.on('error', () => undefined);
    });
    await new Promise<void>((r) => fake.listen(path, r));
    try {
      const next = NetGateway.spawnIn(c.lab, 'beta', c.mesh.rosterPath, 'beta', LAB_PORTS.metrics, ['--take-over', '--takeover-socket', path]);
      expect(await next.waitExit(TAKEOVER_WAIT_MS)).toEqual({ code: 1, signal: null });
      expect(next.logged('take-over refused, the running gateway serves on').at(-1)?.detail).toContain('format 99');
    } finally {
      fake.close();
    }
    await flowing('beside a refused take-over');
  });

  it('a socket path held by someone else: a take-over through it is refused, and a gateway told to listen there runs without one', async () => {
    const path = join(c.dir, 'held.sock');
    const squatter = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    await new Promise<void>((r) => squatter.listen(path, r));
    try {
      const next = NetGateway.spawnIn(c.lab, 'beta', c.mesh.rosterPath, 'beta', LAB_PORTS.metrics, ['--take-over', '--takeover-socket', path]);
      expect(await next.waitExit(TAKEOVER_WAIT_MS)).toEqual({ code: 1, signal: null });
      expect(next.logged('take-over refused, the running gateway serves on')).toHaveLength(1);
      // gamma's gateway, restarted with its socket at the held path: it serves, says it cannot be taken over, and leaves the path alone.
      await c.gw('gamma').kill();
      const gamma = await NetGateway.startIn(c.lab, 'gamma', c.mesh.rosterPath, 'gamma', LAB_PORTS.metrics, ['--takeover-socket', path]);
      c.gateways.set('gamma', gamma);
      await waitFor('gamma says its take-over socket is not open', () => gamma.logged('take-over socket not opened: this gateway cannot be taken over').length > 0, 10_000);
      expect(gamma.logged('take-over socket not opened: this gateway cannot be taken over')[0]!.detail).toContain('held by a running process');
      expect(await squatterAnswers(path)).toBe(true);
    } finally {
      squatter.close();
    }
    await flowing('beside a held socket path');
  });

  it('SIGUSR2: beta starts its successor from its own command line, which takes over and writes its PID to the PID file; a successor that cannot start leaves beta serving', async () => {
    const pidFile = join(c.dir, 'beta.pid');
    const runner = await takeOver(c, 'beta', {}, ['--pid-file', pidFile]);
    expect(readFileSync(pidFile, 'utf8')).toBe(`${runner.pid}\n`);
    const successors = async (result: string) => sample(await runner.metrics(), 'beamgate_handover_successors_total', { result });
    expect(await successors('started')).toBe(0);

    // The roster gone while the successor starts (a broken upgrade): it exits 2, beta serves on.
    const roster = c.mesh.rosterPath;
    renameSync(roster, `${roster}.away`);
    try {
      runner.signal('SIGUSR2');
      await waitFor('the successor to give up', () => runner.logged('successor exited before taking over, serving on').length > 0, TAKEOVER_WAIT_MS);
    } finally {
      renameSync(`${roster}.away`, roster);
    }
    expect(runner.logged('successor exited before taking over, serving on')[0]).toMatchObject({ code: 2 });
    expect(await successors('exited')).toBe(1);
    expect(runner.alive).toBe(true);
    expect(readFileSync(pidFile, 'utf8')).toBe(`${runner.pid}\n`);
    await flowing('after a successor that could not start');

    // Then one that takes over: the old process exits 0 and the PID file names the successor, which serves.
    const takes = sample(await runner.metrics(), 'beamgate_handover_runs_total', { role: 'take', result: 'ok' });
    runner.signal('SIGUSR2');
    expect(await runner.waitExit(TAKEOVER_WAIT_MS), runner.stderrText()).toEqual({ code: 0, signal: null });
    const successor = Number(readFileSync(pidFile, 'utf8'));
    expect(successor).not.toBe(runner.pid);
    expect(() => process.kill(successor, 0)).not.toThrow();
    // Its log lines come through the old process's standard error, which it inherited.
    expect(runner.logged('starting a successor')).toHaveLength(2);
    // The runner's own line from when it took over, then the successor's.
    expect(runner.logged('took over')).toHaveLength(2);
    const m = await runner.metrics();
    expect(sample(m, 'beamgate_handover_runs_total', { role: 'take', result: 'ok' })).toBe(takes + 1);
    expect(sample(m, 'beamgate_handover_successors_total', { result: 'started' })).toBe(2);
    expect(sample(m, 'beamgate_handover_links_total', { result: 'ended' })).toBe(0);
    await flowing('through the successor');
    for (const n of [A1, B1]) expect(await c.node(n).eval(`begin bg_mon ! {downs, self()}, receive {downs, D} -> D end end`)).toBe('[]');
  }, 120_000);
});

describe.runIf(passfd !== undefined && releases.length > 0)("take-over with 500 open links (the bench's emulated nodes)", () => {
  it('moves every link, and a message from the target reaches every source through it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'beamgate-takeover-500-'));
    try {
      const cookie = randomCookie();
      const env: BenchEnv = { dir, cookie, home: writeCookieHome(join(dir, 'home'), cookie), beamDir: dir, freshNodes: 1 };
      // The bench's own run, from dist/ (built first): its gateways are `dist/cli/main.js run` processes.
      const { runTakeover } = (await import(pathToFileURL(join(DIST, 'bench', 'takeover.js')).href)) as typeof import('../../src/bench/takeover.js');
      const r = await runTakeover(env, join(dir, 'takeover'), releases.at(-1)!, [500]);
      expect(r.runs).toHaveLength(1);
      expect(r.runs[0]).toMatchObject({ links: 500, moved: 500, openAfter: 500, reachedAfter: 500, targetSaw: 500 });
      console.log(`takeover.test.ts: 500 links on OTP ${r.targetOtp}: hello to serving ${r.runs[0]!.totalMs} ms, links paused ${r.runs[0]!.pauseMs} ms`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});

/** A passfd frame as native/passfd.c writes it: payload length, descriptor count (0), both big-endian, then the payload. */
function frame(payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(payload.length, 0);
  h.writeUInt32BE(0, 4);
  return Buffer.concat([h, payload]);
}

async function connectWhenListening(path: string): Promise<number> {
  return waitFor(`${path} accepting`, () => {
    try {
      return passfd!.connect(path);
    } catch {
      return undefined;
    }
  }, TAKEOVER_WAIT_MS);
}

async function squatterAnswers(path: string): Promise<boolean> {
  const s = net.connect(path);
  const [data] = (await once(s, 'data')) as [Buffer];
  s.destroy();
  return data.toString().startsWith('HTTP/1.1 400');
}
