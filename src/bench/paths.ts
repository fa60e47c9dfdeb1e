// The four ways two Erlang nodes on this machine can talk, each set up the way
// a user would: plain inet_tcp_dist, OTP's inet_tls_dist with mutual TLS, a
// stunnel4 pair with mutual TLS, and a beamgate gateway pair. Every path ends
// with node A connected to node B, where beamgate_bench:serve/0 runs. Both
// nodes of a path run one OTP release: the machine's own, or a newer one from
// a Debian root (src/erlang/roots.ts); a path is named by both, `tls@29`.

import type { Limits } from '../config/limits.js';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLocalMesh, type LocalMesh } from '../cli/local-mesh.js';
import { ErlNode } from '../erlang/node.js';
import type { OtpRuntime } from '../erlang/roots.js';
import { createCa, createGatewayCert, type Pem, writePem } from '../pki/generate.js';
import { freePort, randomAlias, sleep } from './proc.js';

export type PathId = 'direct' | 'tls' | 'stunnel' | 'beamgate' | 'beamgate-node' | 'beamgate-filtered';

export const PATH_LABELS: Record<PathId, string> = {
  direct: 'inet_tcp_dist (direct, no security)',
  tls: 'inet_tls_dist (OTP mutual TLS)',
  stunnel: 'stunnel4 pair (mutual TLS)',
  beamgate: 'beamgate gateway pair',
  'beamgate-node': 'beamgate pair on node:tls (no native data plane)',
  'beamgate-filtered': 'beamgate pair, links filtered (messages profile both ways)',
};

/** A path with the OTP release of its nodes: `beamgate@29`. */
export type PathKey = `${PathId}@${string}`;

export function pathKey(id: PathId, otp: string): PathKey {
  return `${id}@${otp}`;
}

export function parsePathKey(key: string): { id: PathId; otp: string } {
  const at = key.indexOf('@');
  const id = key.slice(0, at) as PathId;
  if (at < 0 || !(id in PATH_LABELS)) throw new Error(`not a path key: ${key}`);
  return { id, otp: key.slice(at + 1) };
}

/** `inet_tls_dist (OTP mutual TLS), OTP 29`. */
export function pathLabel(key: string): string {
  const { id, otp } = parsePathKey(key);
  return `${PATH_LABELS[id]}, OTP ${otp}`;
}

export interface BenchPath {
  id: PathId;
  /** The OTP release of both nodes. */
  otp: string;
  key: PathKey;
  a: ErlNode;
  b: ErlNode;
  /** Starts a node that has never connected anywhere, on node A's side, for a cold connect. */
  freshNode(i: number): Promise<ErlNode>;
  /** The processes that relay (gateways, stunnels); empty when the nodes talk directly. */
  relayPids: number[];
  stop(): Promise<void>;
}

export interface BenchEnv {
  dir: string;
  /** The cookie itself: the emulated nodes of the scale run compute their digests with it. */
  cookie: string;
  /** The real nodes' home, holding the same cookie in .erlang.cookie (see erlang/cookie.ts). */
  home: string;
  /** Directory holding beamgate_bench.beam. */
  beamDir: string;
  /** How many fresh nodes each path may start (one per repetition). */
  freshNodes: number;
}

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
/** How long a relay process (stunnel, gateway) may take to accept connections. */
const RELAY_START_TIMEOUT_MS = 15_000;

/**
 * One real epmd (Debian's, on loopback only) serves the three non-beamgate
 * paths. It also listens on the stunnel alias: node A asks there for node B's
 * port and then connects to (alias, port), where the stunnel client listens.
 */
export class Epmd {
  private constructor(
    readonly port: number,
    private readonly proc: ChildProcess,
  ) {}

  static async start(addresses: string[]): Promise<Epmd> {
    const port = await freePort();
    const proc = spawn('epmd', ['-port', String(port), '-address', addresses.join(',')], { stdio: 'ignore' });
    await waitListening('127.0.0.1', port, proc, 'epmd');
    return new Epmd(port, proc);
  }

  async stop(): Promise<void> {
    await stopChild(this.proc);
  }
}

interface PlainSetup {
  env: BenchEnv;
  epmd: Epmd;
  inetrcPath: string;
  ca: Pem;
  /** inet_tls_dist flags per host name, made once and shared by the nodes of every OTP release. */
  tlsArgs: Map<string, string[]>;
}

/** Host names of the non-beamgate paths; all on 127.0.0.1 except stunnel's B, which A reaches via the alias. */
function plainInetrc(stunnelAlias: string): string {
  return [
    '{host, {127,0,0,1}, ["direct-a.bench", "direct-b.bench", "tls-a.bench", "tls-b.bench", "stunnel-a.bench"]}.',
    `{host, {${stunnelAlias.replaceAll('.', ',')}}, ["stunnel-b.bench"]}.`,
    '{lookup, [file, native]}.',
    '',
  ].join('\n');
}

export async function plainSetup(env: BenchEnv, stunnelAlias: string): Promise<PlainSetup & { stop(): Promise<void> }> {
  const epmd = await Epmd.start(['127.0.0.1', stunnelAlias]);
  const inetrcPath = join(env.dir, 'plain.inetrc');
  writeFileSync(inetrcPath, plainInetrc(stunnelAlias));
  const ca = await createCa('beamgate bench CA');
  writeFileSync(join(env.dir, 'ca.pem'), ca.cert);
  return { env, epmd, inetrcPath, ca, tlsArgs: new Map(), stop: () => epmd.stop() };
}

function plainArgs(s: PlainSetup, name: string, extra: string[] = []): string[] {
  return [
    '-name', name,
    '-start_epmd', 'false',
    '-epmd_port', String(s.epmd.port),
    '-kernel', 'inet_dist_use_interface', '{127,0,0,1}',
    '-kernel', 'inetrc', `"${s.inetrcPath}"`,
    ...extra,
  ];
}

/** A node of runtime `rt`; in a root it reads the run directory (inetrc, certificates, the bench module, its home) at its own path. */
export async function startNode(env: BenchEnv, rt: OtpRuntime, name: string, args: string[], startTimeoutMs?: number): Promise<ErlNode> {
  return ErlNode.start(name, { args, home: env.home, codePaths: [env.beamDir], runtime: rt, binds: [env.dir], ...(startTimeoutMs ? { startTimeoutMs } : {}) });
}

/** Starts B (serving), then A, and connects A to B. */
async function pair(env: BenchEnv, rt: OtpRuntime, aName: string, aArgs: string[], bName: string, bArgs: string[]): Promise<{ a: ErlNode; b: ErlNode }> {
  const b = await startNode(env, rt, bName, bArgs);
  await b.eval('beamgate_bench:serve()');
  const a = await startNode(env, rt, aName, aArgs);
  const pong = await a.eval(`net_adm:ping('${bName}')`);
  if (pong !== 'pong') {
    await Promise.all([a.stop(), b.stop()]);
    throw new Error(`${aName} could not reach ${bName}: ${pong}\n${a.log().slice(-2000)}`);
  }
  return { a, b };
}

export async function directPath(s: PlainSetup, rt: OtpRuntime): Promise<BenchPath> {
  const n = (short: string) => `${short}${rt.otp}@direct-${short[1]}.bench`;
  const { a, b } = await pair(s.env, rt, n('da'), plainArgs(s, n('da')), n('db'), plainArgs(s, n('db')));
  return {
    id: 'direct',
    otp: rt.otp,
    key: pathKey('direct', rt.otp),
    a,
    b,
    freshNode: (i) => startNode(s.env, rt, `dc${i}x${rt.otp}@direct-a.bench`, plainArgs(s, `dc${i}x${rt.otp}@direct-a.bench`)),
    relayPids: [],
    stop: async () => void (await Promise.all([a.stop(), b.stop()])),
  };
}

/** OTP's TLS distribution, both sides verify_peer against the bench CA (host names in the SANs). */
export async function tlsPath(s: PlainSetup, rt: OtpRuntime): Promise<BenchPath> {
  const optFile = async (host: string) => {
    const made = s.tlsArgs.get(host);
    if (made) return made;
    const pem = await createGatewayCert(s.ca, host);
    const cert = join(s.env.dir, `${host}.pem`);
    const key = join(s.env.dir, `${host}-key.pem`);
    writePem(cert, key, pem, true);
    const ca = join(s.env.dir, 'ca.pem');
    const common = `{certfile, "${cert}"}, {keyfile, "${key}"}, {cacertfile, "${ca}"}, {verify, verify_peer}`;
    const path = join(s.env.dir, `${host}.ssl_dist.conf`);
    writeFileSync(path, `[{server, [${common}, {fail_if_no_peer_cert, true}]},\n {client, [${common}]}].\n`);
    const args = ['-proto_dist', 'inet_tls', '-ssl_dist_optfile', path];
    s.tlsArgs.set(host, args);
    return args;
  };
  const aTls = await optFile('tls-a.bench');
  const bTls = await optFile('tls-b.bench');
  const n = (short: string) => `${short}${rt.otp}@tls-${short[1]}.bench`;
  const { a, b } = await pair(s.env, rt, n('ta'), plainArgs(s, n('ta'), aTls), n('tb'), plainArgs(s, n('tb'), bTls));
  return {
    id: 'tls',
    otp: rt.otp,
    key: pathKey('tls', rt.otp),
    a,
    b,
    freshNode: (i) => startNode(s.env, rt, `tc${i}x${rt.otp}@tls-a.bench`, plainArgs(s, `tc${i}x${rt.otp}@tls-a.bench`, aTls)),
    relayPids: [],
    stop: async () => void (await Promise.all([a.stop(), b.stop()])),
  };
}

export function stunnelAvailable(): string | undefined {
  for (const cmd of ['stunnel4', 'stunnel']) {
    const r = spawnSync(cmd, ['-version'], { encoding: 'utf8' });
    if (r.error === undefined) {
      const m = /stunnel (\d+\.\d+)/.exec(`${r.stdout}${r.stderr}`);
      return m ? `${cmd} ${m[1]}` : cmd;
    }
  }
  return undefined;
}

/**
 * A stunnel client listening at (alias, B's port) and a stunnel server in
 * front of B, mutual TLS between them. Node A learns B's real port from epmd
 * on the alias and so dials the stunnel client without knowing it.
 */
export async function stunnelPath(s: PlainSetup, alias: string, rt: OtpRuntime): Promise<BenchPath> {
  const command = stunnelAvailable()?.split(' ')[0];
  if (!command) throw new Error('stunnel4 is not installed');
  const bPort = await freePort();
  const serverPort = await freePort();
  const ca = join(s.env.dir, 'ca.pem');
  const conf = async (role: 'client' | 'server', body: string[]) => {
    const pem = await createGatewayCert(s.ca, `stunnel-${role}.bench`);
    const cert = join(s.env.dir, `stunnel-${role}.pem`);
    const key = join(s.env.dir, `stunnel-${role}-key.pem`);
    writePem(cert, key, pem, true);
    const path = join(s.env.dir, `stunnel-${role}.conf`);
    writeFileSync(
      path,
      [
        'foreground = yes',
        'pid =',
        'debug = warning',
        `output = ${join(s.env.dir, `stunnel-${role}.log`)}`,
        '[dist]',
        `cert = ${cert}`,
        `key = ${key}`,
        `CAfile = ${ca}`,
        'verifyChain = yes',
        'sslVersionMin = TLSv1.3',
        ...body,
        '',
      ].join('\n'),
    );
    return path;
  };
  const serverConf = await conf('server', [`accept = 127.0.0.1:${serverPort}`, `connect = 127.0.0.1:${bPort}`, 'requireCert = yes']);
  const clientConf = await conf('client', ['client = yes', `accept = ${alias}:${bPort}`, `connect = 127.0.0.1:${serverPort}`, 'checkHost = stunnel-server.bench']);
  const server = spawn(command, [serverConf], { stdio: 'ignore' });
  const client = spawn(command, [clientConf], { stdio: 'ignore' });
  await waitListening('127.0.0.1', serverPort, server, 'stunnel server');
  await waitListening(alias, bPort, client, 'stunnel client');
  const bArgs = plainArgs(s, 'sb@stunnel-b.bench', ['-kernel', 'inet_dist_listen_min', String(bPort), '-kernel', 'inet_dist_listen_max', String(bPort)]);
  let nodes: { a: ErlNode; b: ErlNode };
  try {
    nodes = await pair(s.env, rt, 'sa@stunnel-a.bench', plainArgs(s, 'sa@stunnel-a.bench'), 'sb@stunnel-b.bench', bArgs);
  } catch (err) {
    await Promise.all([stopChild(server), stopChild(client)]);
    throw err;
  }
  const { a, b } = nodes;
  return {
    id: 'stunnel',
    otp: rt.otp,
    key: pathKey('stunnel', rt.otp),
    a,
    b,
    freshNode: (i) => startNode(s.env, rt, `sc${i}@stunnel-a.bench`, plainArgs(s, `sc${i}@stunnel-a.bench`)),
    relayPids: [server.pid!, client.pid!],
    stop: async () => {
      await Promise.all([a.stop(), b.stop()]);
      await Promise.all([stopChild(server), stopChild(client)]);
    },
  };
}

export interface GatewayPair {
  mesh: LocalMesh;
  /** The gateways' processes now (a restart changes them). */
  readonly pids: number[];
  /** Metrics ports of the gateways, in the order they were given (alpha, beta for a pair). */
  metricsPorts: number[];
  /**
   * Kills every gateway at once (SIGKILL, as a host losing its gateway or an
   * operator restarting them all does: no drain) and starts them all again
   * at once with the same roster, ports and addresses; resolves when all are
   * healthy again.
   */
  restartAll(): Promise<void>;
  stop(): Promise<void>;
}

/** Options every gateway of a bench mesh runs with. */
export interface GatewayRunOptions {
  operators?: { gateway: string; pattern: string }[];
  /** Node's arguments, before the CLI. */
  extraArgs?: string[];
  /** Arguments of `beamgate run` (after the command). */
  runArgs?: string[];
  /** More arguments of `beamgate run` for one gateway (its own take-over socket). */
  runArgsFor?: (gateway: string) => string[];
  /** The roster's `limits` section. */
  limits?: Partial<Limits>;
  /** The roster's `policy` section. */
  policy?: unknown;
}

/**
 * The policy of the filtered path: the bench's nodes on alpha and on beta in
 * a group each, every link between them filtered with the `messages`
 * profile both ways, naming the two servers the workloads address
 * (docs/filter.md). What a filtered link costs is decoding every message.
 */
export const FILTERED_POLICY = {
  groups: { a: ['ga', 'gc*'], b: ['gb'] },
  allow: [
    {
      between: ['a', 'b'],
      filter: {
        a: { profile: 'messages', names: ['bench_sink', 'bench_echo'] },
        b: { profile: 'messages', names: ['bench_sink', 'bench_echo'] },
      },
    },
    // alpha's nodes share a host: their links never cross a gateway (check refuses a policy that would part them).
    { between: ['a'] },
  ],
};

/**
 * Gateway processes, as on as many hosts: each owns its `nodes` (short
 * names), each node with a static port, each gateway on a loopback alias of
 * its own. Started one after another, each healthy before the next.
 */
export async function startGateways(dir: string, gateways: { name: string; nodes: string[] }[], opts: GatewayRunOptions = {}): Promise<GatewayPair> {
  const ports = async (names: string[]) => Object.fromEntries(await Promise.all(names.map(async (n) => [n, await freePort()] as const)));
  const layout: { name: string; tlsPort: number; epmdPort: number; metricsPort: number; nodes: Record<string, number>; loopback: string }[] = [];
  for (const g of gateways) {
    layout.push({ name: g.name, tlsPort: await freePort(), epmdPort: await freePort(), metricsPort: await freePort(), nodes: await ports(g.nodes), loopback: randomAlias() });
  }
  const mesh = await buildLocalMesh({ dir, gateways: layout, operators: opts.operators ?? [], ...(opts.limits ? { limits: opts.limits } : {}), ...(opts.policy !== undefined ? { policy: opts.policy } : {}) });
  let children: ChildProcess[] = [];
  const stop = async () => void (await Promise.all(children.map((c) => stopChild(c))));
  const launch = (g: { name: string }): ChildProcess => {
    // The log file is the gateway's stderr itself, not a pipe this process
    // drains: a bench busy with a storm would drain it late, and a gateway
    // writing to a full pipe waits (Node writes stderr synchronously), which
    // would be the bench's cost counted as the gateway's. Appended: a
    // restarted gateway's log follows its predecessor's.
    const log = openSync(join(dir, `${g.name}.log`), 'a');
    try {
      return spawn(process.execPath, [...(opts.extraArgs ?? []), CLI, 'run', '--config', mesh.rosterPath, '--gateway', g.name, ...(opts.runArgs ?? []), ...(opts.runArgsFor?.(g.name) ?? [])], {
        stdio: ['ignore', 'ignore', log],
        cwd: dir,
      });
    } finally {
      closeSync(log);
    }
  };
  try {
    for (const g of layout) {
      const child = launch(g);
      children.push(child);
      await waitHealthy(g.metricsPort, child, join(dir, `${g.name}.log`));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const restartAll = async () => {
    await Promise.all(
      children.map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const gone = once(c, 'exit');
        c.kill('SIGKILL');
        await gone;
      }),
    );
    children = layout.map(launch);
    try {
      await Promise.all(layout.map((g, i) => waitHealthy(g.metricsPort, children[i]!, join(dir, `${g.name}.log`))));
    } catch (err) {
      await stop();
      throw err;
    }
  };
  return {
    mesh,
    get pids() {
      return children.map((c) => c.pid!);
    },
    metricsPorts: layout.map((g) => g.metricsPort),
    restartAll,
    stop,
  };
}

/**
 * Two gateway processes, as on two hosts: alpha owns `alphaNodes`, beta owns
 * `betaNodes` (short names), each node with a static port.
 */
export async function startGatewayPair(
  dir: string,
  alphaNodes: string[],
  betaNodes: string[],
  operators: { gateway: string; pattern: string }[] = [],
  extraArgs: string[] = [],
  /** Arguments of `beamgate run` (after the command; extraArgs are Node's, before it). */
  runArgs: string[] = [],
  /** The roster's `limits` section. */
  limits?: Partial<Limits>,
): Promise<GatewayPair> {
  return startGateways(dir, [{ name: 'alpha', nodes: alphaNodes }, { name: 'beta', nodes: betaNodes }], { operators, extraArgs, runArgs, ...(limits ? { limits } : {}) });
}

/**
 * A gateway pair; `beamgate-node` runs its gateways with `--data-plane node`,
 * `beamgate` with the native data plane, `beamgate-filtered` with the native
 * data plane and FILTERED_POLICY (its links are judged on the relay thread: docs/filter.md).
 */
export async function beamgatePath(env: BenchEnv, dir: string, rt: OtpRuntime, gatewayArgs: string[] = [], id: 'beamgate' | 'beamgate-node' | 'beamgate-filtered' = 'beamgate'): Promise<BenchPath> {
  const fresh = Array.from({ length: env.freshNodes }, (_, i) => `gc${i}`);
  const gw = await startGateways(dir, [{ name: 'alpha', nodes: ['ga', ...fresh] }, { name: 'beta', nodes: ['gb'] }], {
    extraArgs: gatewayArgs,
    runArgs: ['--data-plane', id === 'beamgate-node' ? 'node' : 'native'],
    ...(id === 'beamgate-filtered' ? { policy: FILTERED_POLICY } : {}),
  });
  const name = (short: string, gateway: string) => `${short}@${gw.mesh.hostOf(gateway)}`;
  let nodes: { a: ErlNode; b: ErlNode };
  try {
    nodes = await pair(env, rt, name('ga', 'alpha'), gw.mesh.nodeArgs(name('ga', 'alpha')), name('gb', 'beta'), gw.mesh.nodeArgs(name('gb', 'beta')));
  } catch (err) {
    await gw.stop();
    throw err;
  }
  const { a, b } = nodes;
  return {
    id,
    otp: rt.otp,
    key: pathKey(id, rt.otp),
    a,
    b,
    freshNode: (i) => {
      if (i >= env.freshNodes) throw new RangeError(`fresh node ${i} is not in the roster (${env.freshNodes} made)`);
      return startNode(env, rt, name(`gc${i}`, 'alpha'), gw.mesh.nodeArgs(name(`gc${i}`, 'alpha')));
    },
    relayPids: gw.pids,
    stop: async () => {
      await Promise.all([a.stop(), b.stop()]);
      await gw.stop();
    },
  };
}

async function waitListening(host: string, port: number, proc: ChildProcess, what: string): Promise<void> {
  const net = await import('node:net');
  const deadline = Date.now() + RELAY_START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with code ${proc.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`${what} not listening on ${host}:${port} within ${RELAY_START_TIMEOUT_MS} ms`);
}

async function waitHealthy(metricsPort: number, proc: ChildProcess, logPath: string): Promise<void> {
  const deadline = Date.now() + RELAY_START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`gateway exited with code ${proc.exitCode}; see ${logPath}`);
    try {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/healthz`, { signal: AbortSignal.timeout(2_000) });
      await res.text();
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`gateway not healthy within ${RELAY_START_TIMEOUT_MS} ms; see ${logPath}`);
}

/** SIGTERM, then SIGKILL if the process lingers. */
async function stopChild(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const gone = once(proc, 'exit');
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), 3_000);
  await gone;
  clearTimeout(t);
}
