// `beamgate demo`: the main job on a built-in default. Two gateways (separate
// processes, as on two hosts) and three real Erlang nodes on this machine;
// shows the nodes finding each other through the gateways, then keeps the mesh
// up, printing live counters, until Ctrl-C.

import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomCookie, readCookieHome, writeCookieHome } from '../erlang/cookie.js';
import { shellQuote } from '../erlang/flags.js';
import { ErlNode } from '../erlang/node.js';
import { buildLocalMesh, type LocalGateway } from './local-mesh.js';

export interface DemoOptions {
  dir: string;
  /** Run the checks, print the result and exit (used by the test suite). */
  once: boolean;
}

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

export const DEMO_LAYOUT: LocalGateway[] = [
  { name: 'alpha', tlsPort: 17100, epmdPort: 17101, metricsPort: 17102, nodes: { a1: 17111, a2: 17112 } },
  { name: 'beta', tlsPort: 17200, epmdPort: 17201, metricsPort: 17202, nodes: { b1: 17211 } },
];

/** Operator names admitted on alpha, so a person can attach a shell to any node of the demo. */
const DEMO_OPERATORS = [{ gateway: 'alpha', pattern: 'ops_*' }];

export async function runDemo(opts: DemoOptions): Promise<number> {
  const dir = resolve(opts.dir);
  const say = (s: string) => console.log(s);
  say(`beamgate demo in ${dir}`);
  const mesh = await buildLocalMesh({ dir, gateways: DEMO_LAYOUT });
  // The nodes' home: a random cookie (kept across runs) in home/.erlang.cookie, mode 0400.
  const home = join(dir, 'home');
  if (readCookieHome(home) === undefined) writeCookieHome(home, randomCookie());

  const gateways: ChildProcess[] = [];
  const nodes: ErlNode[] = [];
  const cleanup = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    for (const g of gateways) g.kill('SIGTERM');
  };

  try {
    for (const g of DEMO_LAYOUT) {
      const logPath = join(dir, `${g.name}.log`);
      const child = spawn(process.execPath, [MAIN, 'run', '--config', mesh.rosterPath, '--gateway', g.name], { stdio: ['ignore', 'ignore', 'pipe'] });
      child.stderr!.pipe(createWriteStream(logPath, { flags: 'a' }));
      gateways.push(child);
      await waitReady(`http://127.0.0.1:${g.metricsPort}/healthz`, child, logPath);
      say(`  gateway ${g.name}: TLS 127.0.0.1:${g.tlsPort}, EPMD ${g.epmdPort}, metrics http://127.0.0.1:${g.metricsPort}/metrics, log ${logPath}`);
    }
    for (const name of mesh.roster.nodes.keys()) {
      nodes.push(await ErlNode.start(name, { args: mesh.nodeArgs(name), home }));
      say(`  node ${name} up`);
    }
    const [a1, a2, b1] = nodes as [ErlNode, ErlNode, ErlNode];
    const checks: [string, () => Promise<string>, string][] = [
      ['a1 pings b1 (alpha -> TLS -> beta)', () => a1.eval(`net_adm:ping('${b1.name}')`), 'pong'],
      ['b1 pings a2 (beta -> TLS -> alpha)', () => b1.eval(`net_adm:ping('${a2.name}')`), 'pong'],
      ['rpc from a2 to b1', () => a2.eval(`rpc:call('${b1.name}', erlang, node, [])`), `'${b1.name}'`],
      [
        'a message round trip a1 -> b1 -> a1',
        () =>
          a1.eval(
            `Self = self(), spawn('${b1.name}', fun() -> Self ! {echo, node()} end), receive {echo, N} -> N after 5000 -> timeout end`,
          ),
        `'${b1.name}'`,
      ],
      ['nodes() on b1 lists a1 and a2', () => b1.eval('lists:sort(nodes())'), `['${a1.name}','${a2.name}']`],
    ];
    let failed = 0;
    for (const [what, run, expected] of checks) {
      const got = await run().catch((e: Error) => `error: ${e.message}`);
      const ok = got === expected;
      if (!ok) failed++;
      say(`  ${ok ? 'ok  ' : 'FAIL'} ${what}: ${got}`);
    }
    say(failed === 0 ? 'the nodes see each other through the gateways.' : `${failed} check(s) failed; see the gateway logs above.`);
    if (opts.once || failed > 0) {
      await cleanup();
      return failed === 0 ? 0 : 1;
    }
    say(`\nattach a remote shell to b1, through both gateways (ops_* is the demo's operator pattern on alpha):`);
    say(`  HOME=${shellQuote([home])} erl ${shellQuote(mesh.nodeArgs('ops_1@alpha.demo'))} -remsh ${b1.name}`);
    say('(a name outside the roster and the operator pattern is refused; the gateway logs why.)');
    say('\nrunning; Ctrl-C stops the mesh.');
    const ticker = setInterval(() => {
      void a1
        .eval(`[ {x, '${b1.name}'} ! x || _ <- lists:seq(1, 100) ], ok`)
        .then(() => summary(DEMO_LAYOUT.map((g) => g.metricsPort as number)))
        .then((s) => say(s))
        .catch(() => undefined);
    }, 10_000);
    await new Promise<void>((r) => {
      process.once('SIGINT', r);
      process.once('SIGTERM', r);
    });
    clearInterval(ticker);
    say('stopping.');
    await cleanup();
    return 0;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

async function waitReady(url: string, child: ChildProcess, logPath: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`gateway exited with code ${child.exitCode}; see ${logPath}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gateway at ${url} not ready in 15 s; see ${logPath}`);
}

async function summary(metricsPorts: number[]): Promise<string> {
  const lines: string[] = [];
  for (const port of metricsPorts) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const sum = (name: string) =>
      text
        .split('\n')
        .filter((l) => l.startsWith(name))
        .reduce((acc, l) => acc + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    lines.push(
      `  :${port} links open ${sum('beamgate_links_open{')}, bytes relayed ${sum('beamgate_relayed_bytes_total{')}, frames ${sum('beamgate_relayed_frames_total{')}, refusals ${sum('beamgate_refusals_total{')}`,
    );
  }
  return lines.join('\n');
}
