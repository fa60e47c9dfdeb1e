// Compatibility across Erlang/OTP and Elixir releases, with real nodes
// through two gateway processes: OTP 25 (this machine's erl), OTP 27 and
// Elixir 1.18 (the Debian trixie root), OTP 29 and Elixir 1.20 (the sid
// root), made by scripts/otp-roots.sh. Every pair of releases clusters
// (ping, rpc both ways, a 4 MiB binary intact, global; pg between releases
// OTP itself lets share a scope), OTP 29's newer
// signals (aliases, alternate action signals) pass the relay, a 25 → 29
// rolling upgrade keeps the cluster whole, Elixir nodes of both versions
// join, and a mix release built with Elixir 1.20 answers `bin/NAME rpc`,
// `bin/NAME remote` and `bin/NAME stop`. See docs/compatibility.md.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cookieEnv } from '../../src/erlang/cookie.js';
import { ErlNode } from '../../src/erlang/node.js';
import { findRuntime, type OtpRuntime } from '../../src/erlang/roots.js';
import { ELIXIR_SCRIPT, ElixirNode, elixirArgs } from '../helpers/elixir-node.js';
import { assertIntact, type ProcessMesh, startProcessMesh } from '../helpers/gateway-process.js';
import { sample, waitFor } from '../helpers/mesh.js';

const run = promisify(execFile);

const RELEASES = ['25', '27', '29'] as const;
type Release = (typeof RELEASES)[number];
const found = Object.fromEntries(RELEASES.map((r) => [r, findRuntime(r)])) as Record<Release, OtpRuntime | string>;
const missing = RELEASES.filter((r) => typeof found[r] === 'string').map((r) => `OTP ${r}: ${found[r] as string}`);
if (missing.length > 0) console.log(`compat.test.ts: SKIPPED, ${missing.join('; ')}`);
const runtime = (r: Release) => found[r] as OtpRuntime;

/** A 2-core machine starting 8+ VMs at once, some in chroots. */
const NODE_START_TIMEOUT_MS = 60_000;
/** One mix release build (compile, assemble) in the sid root. */
const RELEASE_BUILD_TIMEOUT_MS = 120_000;
/** A `bin/NAME rpc`/`remote` command: boot a hidden VM, connect, evaluate. */
const RELEASE_COMMAND_TIMEOUT_MS = 60_000;
/** Size of the binary sent each way between every pair. */
const BINARY_BYTES = 4 * 1024 * 1024;
/** The Elixir each root carries (Debian's packages of that suite). */
const ELIXIR_OF: Partial<Record<Release, string>> = { '27': '1.18', '29': '1.20' };
const LOCALE = { LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' };

describe.runIf(missing.length === 0)('OTP 25, 27, 29 and Elixir 1.18, 1.20 through beamgate', () => {
  let pm: ProcessMesh;
  const nodes = new Map<string, ErlNode>();
  const alphaNodes = RELEASES.map((r) => `a${r}@alpha.demo`);
  const betaNodes = RELEASES.map((r) => `b${r}@beta.demo`);
  const versionOf = (name: string) => /^[ab](\d\d)@/.exec(name)![1] as Release;
  const node = (name: string) => nodes.get(name)!;

  /**
   * Starts an erl node of `release` (in its root), registers it for stop().
   * The default pg scope runs on OTP 27 and 29 nodes only: OTP 28+ announces
   * itself to a peer's pg with `{discover, Pid, Version}`, which OTP 25's pg
   * does not know (it crashes with badarg until kernel gives up and the node
   * halts). OTP supports pg between releases at most two apart, so an OTP 25
   * node in a cluster with OTP 28+ nodes must not run that scope.
   */
  async function startErl(name: string, release: Release): Promise<ErlNode> {
    const n = await ErlNode.start(name, {
      args: [...pm.mesh.nodeArgs(name), ...(release === '25' ? [] : ['-kernel', 'start_pg', 'true'])],
      home: pm.home,
      runtime: runtime(release),
      binds: [pm.dir],
      startTimeoutMs: NODE_START_TIMEOUT_MS,
    });
    pm.nodes.push(n);
    return n;
  }

  beforeAll(async () => {
    pm = await startProcessMesh({
      gateways: { alpha: ['a25', 'a27', 'a29', 'r1', 'r3', 'x18'], beta: ['b25', 'b27', 'b29', 'r2', 'x20', 'bgrel'] },
      operators: [
        { gateway: 'beta', pattern: 'rpc-*' },
        { gateway: 'beta', pattern: 'rem-*' },
      ],
    });
    const started = await Promise.all([...alphaNodes, ...betaNodes].map((n) => startErl(n, versionOf(n))));
    for (const n of started) nodes.set(n.name, n);
  }, 180_000);

  afterAll(async () => {
    await pm?.stop();
  });

  it('runs each node on the release it was started on', async () => {
    for (const [name, n] of nodes) expect(await n.eval('erlang:system_info(otp_release)')).toBe(`"${versionOf(name)}"`);
  });

  it('every pair of releases: ping, rpc both ways and a 4 MiB binary intact each way', async () => {
    // One chain per alpha node, in parallel; each evaluates against the three beta nodes in turn.
    const exchange = (remote: string) =>
      [
        `R = '${remote}'`,
        'pong = net_adm:ping(R)',
        `Bin = crypto:strong_rand_bytes(${BINARY_BYTES})`,
        'H = crypto:hash(sha256, Bin)',
        'H = rpc:call(R, crypto, hash, [sha256, Bin])',
        'Bin = rpc:call(R, erlang, iolist_to_binary, [[Bin]])',
        'rpc:call(R, erlang, system_info, [otp_release])',
      ].join(', ');
    await Promise.all(
      alphaNodes.map(async (a) => {
        for (const b of betaNodes) {
          expect(await node(a).eval(exchange(b), 120_000), `${a} -> ${b}`).toBe(`"${versionOf(b)}"`);
          expect(await node(b).eval(exchange(a), 120_000), `${b} -> ${a}`).toBe(`"${versionOf(a)}"`);
        }
      }),
    );
    // Every one of those links went through both gateways: alpha relayed each pair's binaries.
    const metrics = await pm.gw('alpha').metrics();
    for (const a of alphaNodes) {
      for (const b of betaNodes) {
        const bytes = sample(metrics, 'beamgate_relayed_bytes_total', { local_node: a, remote_node: b });
        expect(bytes, `${a} <-> ${b} relayed bytes`).toBeGreaterThan(4 * BINARY_BYTES);
      }
    }
  }, 300_000);

  it('global: a name registered on each release is seen and answers on every node', async () => {
    const all = [...alphaNodes, ...betaNodes];
    const responder = `spawn(fun() -> L = fun L() -> receive {ping, From} -> From ! {pong, node(), erlang:system_info(otp_release)}, L() end end, L() end)`;
    for (const n of all) {
      const name = `compat_${n.split('@')[0]}`;
      expect(await node(n).eval(`global:register_name(${name}, ${responder})`)).toBe('yes');
    }
    for (const n of all) {
      const answers = await node(n).eval(
        [
          'ok = global:sync()',
          `Names = [${all.map((m) => `compat_${m.split('@')[0]}`).join(', ')}]`,
          'Find = fun F(Name, 0) -> error({not_registered, Name}); F(Name, K) -> case global:whereis_name(Name) of undefined -> timer:sleep(100), F(Name, K - 1); P -> P end end',
          'lists:sort([begin P = Find(Name, 300), P ! {ping, self()}, receive {pong, Node, Rel} -> {Node, Rel} after 15000 -> {timeout, Name} end end || Name <- Names])',
        ].join(', '),
        60_000,
      );
      const expected = all
        .slice()
        .sort()
        .map((m) => `{'${m}',"${versionOf(m)}"}`)
        .join(',');
      expect(answers, `as seen from ${n}`).toBe(`[${expected}]`);
    }
  }, 180_000);

  it('pg: groups across releases within OTP\'s window (25 with 27, 27 with 29) answer a message from each member node', async () => {
    // Releases at most two apart share a scope: the default scope on the OTP 27 and 29 nodes,
    // and a scope started now on the OTP 25 and 27 nodes.
    const scopes = [
      { scope: 'pg', members: [...alphaNodes, ...betaNodes].filter((n) => versionOf(n) !== '25') },
      { scope: 'compat_low', members: [...alphaNodes, ...betaNodes].filter((n) => versionOf(n) !== '29') },
    ];
    for (const { scope, members } of scopes) {
      for (const n of members) {
        if (scope !== 'pg') expect(await node(n).eval(`element(1, pg:start(${scope}))`)).toBe('ok');
        expect(
          await node(n).eval(`P = spawn(fun() -> L = fun L() -> receive {hello, From} -> From ! {member, node()}, L() end end, L() end), pg:join(${scope}, compat_group, P)`),
        ).toBe('ok');
      }
    }
    for (const { scope, members } of scopes) {
      const expected = `[${members.slice().sort().map((m) => `'${m}'`).join(',')}]`;
      for (const n of members) {
        const seen = await node(n).eval(
          [
            `Wait = fun W(0) -> pg:get_members(${scope}, compat_group); W(K) -> case length(pg:get_members(${scope}, compat_group)) of ${members.length} -> ok; _ -> timer:sleep(100), W(K - 1) end end`,
            'ok = Wait(300)',
            `Ms = pg:get_members(${scope}, compat_group)`,
            '[M ! {hello, self()} || M <- Ms]',
            'lists:sort([receive {member, Node} -> Node after 15000 -> timeout end || _ <- Ms])',
          ].join(', '),
          60_000,
        );
        expect(seen, `scope ${scope} as seen from ${n}`).toBe(expected);
      }
    }
  }, 180_000);

  it('OTP 29 to OTP 29: offers DFLAG_ALTACT_SIG and DFLAG_NATIVE_RECORDS, and alias messages pass the relay untouched', async () => {
    const a = node('a29@alpha.demo');
    const b = node('b29@beta.demo');
    // The node's own default flags: these bits go into its send_name/challenge, which the relay passes unchanged.
    for (const n of [a, b]) {
      expect(await n.eval('D = element(2, erts_internal:get_dflags()), {D band (1 bsl 37) =/= 0, D band (1 bsl 38) =/= 0}')).toBe('{true,true}');
    }
    const framesBefore = sample(await pm.gw('alpha').metrics(), 'beamgate_relayed_frames_total', { local_node: a.name, remote_node: b.name });
    // A message to a process alias, sent by the remote node: with DFLAG_ALTACT_SIG on both sides
    // OTP 28+ sends it as an ALTACT_SIG_SEND control message, which no OTP 25 relay code knows.
    const got = await a.eval(
      [
        'Al = alias()',
        `Payload = crypto:strong_rand_bytes(100000)`,
        `rpc:call('${b.name}', erlang, send, [Al, {via_alias, Payload}])`,
        'R = receive {via_alias, Payload} -> intact; {via_alias, _} -> corrupted after 15000 -> timeout end',
        'unalias(Al)',
        'R',
      ].join(', '),
    );
    expect(got).toBe('intact');
    // erpc (spawn_request, its reply through an alias monitor) both ways between the two OTP 29 nodes.
    expect(await a.eval(`erpc:call('${b.name}', fun() -> node() end)`)).toBe(`'${b.name}'`);
    expect(await b.eval(`erpc:call('${a.name}', erlang, node, [])`)).toBe(`'${a.name}'`);
    const framesAfter = sample(await pm.gw('alpha').metrics(), 'beamgate_relayed_frames_total', { local_node: a.name, remote_node: b.name });
    expect(framesAfter).toBeGreaterThan(framesBefore);
    for (const g of ['alpha', 'beta']) assertIntact(pm.gw(g));
  });

  it('rolling upgrade: three OTP 25 nodes restarted one by one on OTP 29 stay one cluster', async () => {
    const names = ['r1@alpha.demo', 'r2@beta.demo', 'r3@alpha.demo'];
    const members = new Map<string, ErlNode>();
    const releases = new Map<string, Release>(names.map((n) => [n, '25']));
    const start = async (n: string) => members.set(n, await startErl(n, releases.get(n)!));
    await Promise.all(names.map(start));

    // Every node reaches the others (r1 <-> r2 and r3 <-> r2 through the gateways), and a global name registered on the first-upgraded node follows it.
    const healthy = async (step: string) => {
      for (const n of names) {
        const others = names.filter((m) => m !== n);
        const view = await members.get(n)!.eval(
          [
            ...others.map((m) => `pong = net_adm:ping('${m}')`),
            'ok = global:sync()',
            `Rel = [rpc:call(M, erlang, system_info, [otp_release]) || M <- [${others.map((m) => `'${m}'`).join(', ')}]]`,
            'G = global:whereis_name(compat_rolling)',
            'G ! {ping, self()}',
            'Pong = receive {pong, GN, GR} -> {GN, GR} after 15000 -> timeout end',
            '{lists:sort(nodes()), Rel, Pong}',
          ].join(', '),
          60_000,
        );
        const rel = others.map((m) => `"${releases.get(m)}"`).join(',');
        const expectedNodes = `[${others.slice().sort().map((m) => `'${m}'`).join(',')}]`;
        expect(view, `${step}: as seen from ${n}`).toBe(`{${expectedNodes},[${rel}],{'r2@beta.demo',"${releases.get('r2@beta.demo')}"}}`);
      }
    };
    const register = async () => {
      const r2 = members.get('r2@beta.demo')!;
      expect(
        await r2.eval(`global:register_name(compat_rolling, spawn(fun() -> L = fun L() -> receive {ping, From} -> From ! {pong, node(), erlang:system_info(otp_release)}, L() end end, L() end))`),
      ).toBe('yes');
    };
    await register();
    await healthy('all on OTP 25');
    for (const n of names) {
      await members.get(n)!.stop();
      releases.set(n, '29');
      await start(n);
      if (n === 'r2@beta.demo') await register();
      await healthy(`${n} restarted on OTP 29`);
    }
    for (const n of names) await members.get(n)!.stop();
  }, 300_000);

  it('Elixir 1.18 (OTP 27) and Elixir 1.20 (OTP 29) nodes join: rpc, messages and pg with Erlang nodes of every release', async () => {
    const scriptCopy = join(pm.dir, 'elixir', 'bg_node.exs');
    mkdirSync(join(pm.dir, 'elixir'), { recursive: true });
    copyFileSync(ELIXIR_SCRIPT, scriptCopy);
    const startElixir = (name: string, release: Release) =>
      ElixirNode.start(name, elixirArgs([...pm.mesh.nodeArgs(name), '-kernel', 'start_pg', 'true']), (argv) => {
        const words = [...runtime(release).prefix([pm.dir]), ...argv.map((w) => (w === ELIXIR_SCRIPT ? scriptCopy : w))];
        return spawn(words[0]!, words.slice(1), { env: { ...process.env, ...LOCALE, ...cookieEnv(pm.home) }, stdio: ['pipe', 'pipe', 'pipe'] });
      });
    const [x18, x20] = await Promise.all([startElixir('x18@alpha.demo', '27'), startElixir('x20@beta.demo', '29')]);
    try {
      expect(x18.version.startsWith(ELIXIR_OF['27']!)).toBe(true);
      expect(x20.version.startsWith(ELIXIR_OF['29']!)).toBe(true);
      for (const e of [x18, x20]) {
        for (const n of [...alphaNodes, ...betaNodes]) {
          const answer = await node(n).eval(
            [
              `E = '${e.name}'`,
              'pong = net_adm:ping(E)',
              `V = rpc:call(E, 'Elixir.System', version, [])`,
              `{bg_elixir, E} ! {echo, self(), ${n.split('@')[0]}}`,
              `receive {elixir_echo, E, ${n.split('@')[0]}} -> {V, echoed} after 15000 -> {V, timeout} end`,
            ].join(', '),
          );
          expect(answer, `${n} -> ${e.name}`).toBe(`{<<"${e.version}">>,echoed}`);
        }
      }
      // The two Elixir nodes, one behind each gateway, talk to each other: x18 calls x20, and x20
      // sends to a process on alpha.
      const a25 = node('a25@alpha.demo');
      expect(await a25.eval(`rpc:call('${x18.name}', rpc, call, ['${x20.name}', 'Elixir.System', version, []])`)).toBe(`<<"${x20.version}">>`);
      expect(
        await a25.eval(
          `register(compat_inbox, self()), {bg_elixir, '${x20.name}'} ! {relay, {compat_inbox, node()}, across, self()}, ` +
            `R = [receive {relayed, N} -> N after 15000 -> timeout end, receive {from_elixir, M, across} -> M after 15000 -> timeout end], unregister(compat_inbox), R`,
        ),
      ).toBe(`['${x20.name}','${x20.name}']`);
      expect(await node('a27@alpha.demo').eval(`lists:sort([node(P) || P <- pg:get_members(bg_pg)])`)).toBe(`['${x18.name}','${x20.name}']`);
    } finally {
      await Promise.all([x18.stop(), x20.stop()]);
    }
  }, 180_000);

  it('a mix release built with Elixir 1.20: bin/bgrel rpc, remote and stop through beamgate', async () => {
    const sid = runtime('29');
    const beta = pm.layout.find((g) => g.name === 'beta')!;
    const relName = 'bgrel@beta.demo';
    const project = join(pm.dir, 'bgrel');
    const env = { ...process.env, ...LOCALE, HOME: join(pm.dir, 'mix-home'), MIX_ENV: 'prod', RELEASE_COOKIE: pm.cookie };
    mkdirSync(env.HOME, { recursive: true });
    const inRoot = (argv: string[], timeout: number) => {
      const words = [...sid.prefix([pm.dir]), ...argv];
      return run(words[0]!, words.slice(1), { env, timeout, encoding: 'utf8' });
    };
    await inRoot(['sh', '-c', `cd ${pm.dir} && mix new bgrel`], RELEASE_BUILD_TIMEOUT_MS);
    // The files the README's "Mix releases" section describes, as a user writes them.
    const common = [
      '-start_epmd false',
      `-epmd_port ${beta.epmdPort}`,
      '-kernel inet_dist_use_interface {127,0,0,1}',
      `-kernel inetrc '"${pm.mesh.inetrcPath('beta')}"'`,
    ];
    mkdirSync(join(project, 'rel'), { recursive: true });
    writeFileSync(join(project, 'rel', 'env.sh.eex'), ['export RELEASE_DISTRIBUTION=name', `export RELEASE_NODE=${relName}`, ''].join('\n'));
    writeFileSync(
      join(project, 'rel', 'vm.args.eex'),
      [...common, `-kernel inet_dist_listen_min ${beta.nodes['bgrel']}`, `-kernel inet_dist_listen_max ${beta.nodes['bgrel']}`, '-kernel start_pg true', ''].join('\n'),
    );
    writeFileSync(join(project, 'rel', 'remote.vm.args.eex'), [...common, '-dist_listen false', ''].join('\n'));
    await inRoot(['sh', '-c', `cd ${project} && mix release --quiet`], RELEASE_BUILD_TIMEOUT_MS);
    const bin = join(project, '_build', 'prod', 'rel', 'bgrel', 'bin', 'bgrel');

    const words = [...sid.prefix([pm.dir]), bin, 'start'];
    const release: ChildProcess = spawn(words[0]!, words.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const releaseLog: string[] = [];
    release.stdout!.on('data', (d: Buffer) => releaseLog.push(d.toString()));
    release.stderr!.on('data', (d: Buffer) => releaseLog.push(d.toString()));
    const exited = new Promise<number | null>((resolve) => release.on('exit', (code) => resolve(code)));
    try {
      // The release clusters with nodes behind the other gateway (an OTP 25 node dials it).
      const a25 = node('a25@alpha.demo');
      await waitFor(`${relName} up (log: ${releaseLog.join('').slice(-500)})`, async () => (await a25.eval(`net_adm:ping('${relName}')`)) === 'pong', NODE_START_TIMEOUT_MS);

      // bin/bgrel rpc: a hidden node rpc-XXXX-bgrel@beta.demo evaluates on the release, which calls OTP 25 and 27 nodes behind alpha.
      const rpcExpr =
        'IO.puts("@@RPC " <> Enum.join([node(), System.version(), :erlang.system_info(:otp_release), ' +
        ':rpc.call(:"a25@alpha.demo", :erlang, :system_info, [:otp_release]), :rpc.call(:"a27@alpha.demo", :erlang, :system_info, [:otp_release]), ' +
        'inspect(Node.list(:hidden))], " "))';
      const rpc = await inRoot([bin, 'rpc', rpcExpr], RELEASE_COMMAND_TIMEOUT_MS);
      expect(rpc.stdout).toMatch(/@@RPC bgrel@beta\.demo 1\.20\.\d+ 29 25 27 \[:"rpc-[0-9a-f]{4}-bgrel@beta\.demo"\]/);

      // bin/bgrel remote: an IEx remote shell (rem-XXXX-bgrel@beta.demo) on the release, fed from stdin.
      const remWords = [...sid.prefix([pm.dir]), bin, 'remote'];
      const remote = spawn(remWords[0]!, remWords.slice(1), { env, stdio: ['pipe', 'pipe', 'pipe'] });
      const remOut: string[] = [];
      remote.stdout!.on('data', (d: Buffer) => remOut.push(d.toString()));
      remote.stderr!.on('data', (d: Buffer) => remOut.push(d.toString()));
      const remoteGone = new Promise<void>((resolve) => remote.on('exit', () => resolve()));
      try {
        remote.stdin!.write('IO.puts("@@REM " <> inspect({node(), :rpc.call(:"b27@beta.demo", :erlang, :system_info, [:otp_release]), :rpc.call(:"a29@alpha.demo", :erlang, :node, []), Node.list(:hidden)}))\n');
        const line = await waitFor('the remote shell to answer', () => remOut.join('').split('\n').find((l) => l.includes('@@REM {')), RELEASE_COMMAND_TIMEOUT_MS);
        expect(line).toMatch(/@@REM \{:"bgrel@beta\.demo", ~c"27", :"a29@alpha\.demo", \[:"rem-[0-9a-f]{4}-bgrel@beta\.demo"\]\}/);
      } finally {
        remote.stdin!.end();
        const t = setTimeout(() => remote.kill('SIGKILL'), 10_000);
        await remoteGone;
        clearTimeout(t);
      }

      // bin/bgrel stop: rpc "System.stop()"; the release exits by itself. The rpc node may see the
      // release go before its answer arrives (":noconnection", exit 1): Elixir's race, on one host too.
      await inRoot([bin, 'stop'], RELEASE_COMMAND_TIMEOUT_MS).catch((err: Error) => {
        if (!/RPC failed with reason :noconnection/.test(err.message)) throw err;
      });
      expect(await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running'), 30_000))])).toBe(0);
    } finally {
      release.kill('SIGKILL');
    }
    for (const g of ['alpha', 'beta']) assertIntact(pm.gw(g));
  }, 300_000);
});
