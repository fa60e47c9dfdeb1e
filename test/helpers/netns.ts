// Several "hosts" on one machine: each a network namespace with its own
// loopback and one veth on a private bridge that lives in a namespace of its
// own, so nothing of a test's network touches the machine's namespaces. The
// addresses (10.213.0.0/24) exist only inside those namespaces, so concurrent
// labs never clash.
//
// Cleanup runs from afterAll (destroy), and again on process exit and on
// SIGINT/SIGTERM, so a failed or interrupted run leaves no namespace or process
// behind; a later run also removes namespaces whose creating process is gone.

import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { CLI, GatewayProcess } from './gateway-process.js';

const execFileAsync = promisify(execFile);

/** Every namespace this harness makes starts so: `bgmh-<creator pid>-<run id>-<host>`. */
export const NETNS_PREFIX = 'bgmh';
const SUBNET = '10.213.0';
/** The interface each host has on the lab's bridge. */
const HOST_IF = 'eth0';
/** How long a gateway process may take to log that it listens. */
const GATEWAY_START_TIMEOUT_MS = 20_000;
/** How long a single TCP probe waits for an answer before calling the port filtered. */
const PROBE_TIMEOUT_MS = 3_000;
/** How long any helper command run inside a host (probe, HTTP GET, ss) may take. */
const RUN_TIMEOUT_MS = 15_000;
/** Output of a helper command kept at most (a /metrics page is ~20 KiB). */
const RUN_MAX_BUFFER = 4 * 1024 * 1024;

let probed: string | null | undefined;

/**
 * Why namespaces cannot be made here (not Linux, not root, no `ip`, a kernel
 * or sandbox that refuses), or null when they can. Tries for real: add a
 * namespace, bring up its lo, make a veth pair in it, delete it.
 */
export function netnsUnavailableReason(): string | null {
  if (probed !== undefined) return probed;
  probed = null;
  if (process.platform !== 'linux') probed = `network namespaces need Linux (this is ${process.platform})`;
  else if (process.getuid?.() !== 0) probed = 'network namespaces need root (ip netns add); run the tests as root to include the multi-host tests';
  else {
    const ns = `${NETNS_PREFIX}-${process.pid}-probe`;
    const add = spawnSync('ip', ['netns', 'add', ns], { encoding: 'utf8' });
    if (add.error) probed = `cannot run ip (iproute2): ${add.error.message}`;
    else if (add.status !== 0) probed = `ip netns add failed: ${add.stderr.trim()}`;
    else {
      const lo = spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up'], { encoding: 'utf8' });
      if (lo.status !== 0) probed = `cannot bring up lo in a new namespace: ${lo.stderr.trim()}`;
      const veth = spawnSync('ip', ['-n', ns, 'link', 'add', 'bgprobe0', 'type', 'veth', 'peer', 'name', 'bgprobe1'], { encoding: 'utf8' });
      if (!probed && veth.status !== 0) probed = `cannot create a veth pair: ${veth.stderr.trim()}`;
      spawnSync('ip', ['netns', 'del', ns]);
    }
  }
  return probed;
}

/** Namespaces of this harness that exist now (any run's). */
export function labNamespaces(): string[] {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  return list
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((ns) => ns.startsWith(`${NETNS_PREFIX}-`));
}

export interface NetHost {
  name: string;
  ns: string;
  /** The host's address on the bridge, reachable from the other hosts. */
  ip: string;
  /** Command words that run a program inside this host. */
  prefix: string[];
}

export type ProbeResult = 'open' | 'refused' | 'timeout' | string;

export class NetnsLab {
  readonly hosts = new Map<string, NetHost>();
  private readonly bridgeNs: string;
  private readonly children = new Set<ChildProcess>();
  private destroyed = false;
  private readonly onExit = () => this.destroySync();
  private readonly onSignal = (signal: NodeJS.Signals) => {
    this.destroySync();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };

  private constructor(readonly id: string) {
    this.bridgeNs = `${NETNS_PREFIX}-${process.pid}-${id}-br`;
  }

  /** Namespaces for `names`, each with lo up and an address on a shared bridge. */
  static create(names: string[]): NetnsLab {
    if (names.length < 1 || names.length > 250) throw new Error(`a lab has 1 to 250 hosts, not ${names.length}`);
    removeOrphans();
    const lab = new NetnsLab(randomBytes(3).toString('hex'));
    process.on('exit', lab.onExit);
    process.once('SIGINT', lab.onSignal);
    process.once('SIGTERM', lab.onSignal);
    try {
      ip('netns', 'add', lab.bridgeNs);
      ip('-n', lab.bridgeNs, 'link', 'add', 'br0', 'type', 'bridge');
      ip('-n', lab.bridgeNs, 'link', 'set', 'br0', 'up');
      names.forEach((name, i) => {
        const ns = `${NETNS_PREFIX}-${process.pid}-${lab.id}-${name}`;
        const addr = `${SUBNET}.${i + 1}`;
        ip('netns', 'add', ns);
        lab.hosts.set(name, { name, ns, ip: addr, prefix: ['ip', 'netns', 'exec', ns] });
        ip('-n', ns, 'link', 'set', 'lo', 'up');
        // Both ends are born inside namespaces: the machine's own never sees them.
        ip('-n', ns, 'link', 'add', HOST_IF, 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', lab.bridgeNs);
        ip('-n', lab.bridgeNs, 'link', 'set', `p${i}`, 'master', 'br0', 'up');
        ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', HOST_IF);
        ip('-n', ns, 'link', 'set', HOST_IF, 'up');
      });
    } catch (err) {
      lab.destroySync();
      throw err;
    }
    return lab;
  }

  host(name: string): NetHost {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name} in this lab`);
    return h;
  }

  /** Starts a program inside a host; destroy() kills whatever is left of it. */
  spawn(host: string, argv: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
    const [command, ...args] = [...this.host(host).prefix, ...argv];
    const child = spawn(command!, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Runs a short command inside a host and returns its stdout (rejects on a non-zero exit or after RUN_TIMEOUT_MS). */
  async run(host: string, argv: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
    const [command, ...args] = [...this.host(host).prefix, ...argv];
    const { stdout } = await execFileAsync(command!, args, {
      encoding: 'utf8',
      timeout: RUN_TIMEOUT_MS,
      maxBuffer: RUN_MAX_BUFFER,
      killSignal: 'SIGKILL',
      env: { ...process.env, ...env },
    });
    return stdout;
  }

  /** Tries a TCP connection from inside `from` to each target; 'open', 'refused', 'timeout' or the error code. */
  async probeTcp(from: string, targets: { host: string; port: number }[]): Promise<ProbeResult[]> {
    const script = `
      const net = require('node:net');
      const targets = ${JSON.stringify(targets)};
      Promise.all(targets.map((t) => new Promise((resolve) => {
        const s = net.connect({ host: t.host, port: t.port });
        s.setTimeout(${PROBE_TIMEOUT_MS}, () => { s.destroy(); resolve('timeout'); });
        s.once('connect', () => { s.destroy(); resolve('open'); });
        s.once('error', (e) => resolve(e.code === 'ECONNREFUSED' ? 'refused' : String(e.code)));
      }))).then((r) => console.log(JSON.stringify(r)));`;
    return JSON.parse(await this.run(from, [process.execPath, '-e', script])) as ProbeResult[];
  }

  /** An HTTP GET made from inside a host (a gateway's /metrics lives on that host's loopback). */
  httpGet(from: string, url: string): Promise<string> {
    const script = `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(${RUN_TIMEOUT_MS - 2_000}) })
      .then((r) => r.text())
      .then((t) => process.stdout.write(t), (e) => { console.error(e.message); process.exit(1); });`;
    return this.run(from, [process.execPath, '-e', script]);
  }

  /** Every listening TCP socket inside a host, as `address:port` (ss notation). */
  async listeners(host: string): Promise<string[]> {
    const out = await this.run(host, ['ss', '-ltnH']);
    return out
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => l.trim().split(/\s+/)[3] ?? '');
  }

  /**
   * Cuts a host off the network the way a pulled cable does, from inside the
   * host: its interface goes down, so its route to the others vanishes and
   * what the others send it is lost. Established connections are not told.
   */
  cut(host: string): void {
    ip('-n', this.host(host).ns, 'link', 'set', HOST_IF, 'down');
  }

  /** Undoes cut(): the interface comes back up with its address and route. */
  reconnect(host: string): void {
    ip('-n', this.host(host).ns, 'link', 'set', HOST_IF, 'up');
  }

  /** Stops every process still running in the lab's hosts, then removes the namespaces. */
  async destroy(): Promise<void> {
    const waits = [...this.children].filter((c) => c.exitCode === null && c.signalCode === null).map((c) => once(c, 'exit'));
    this.destroySync();
    await Promise.all(waits);
  }

  private destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.off('exit', this.onExit);
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    // Our own children by pid too: one spawned a moment ago may not have entered its namespace yet.
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const h of this.hosts.values()) killAllIn(h.ns);
    for (const ns of [...[...this.hosts.values()].map((h) => h.ns), this.bridgeNs]) spawnSync('ip', ['netns', 'del', ns]);
  }
}

/** A gateway as its own process (`beamgate run`) inside a host; its HTTP listener is reached from inside that host. */
export class NetGateway extends GatewayProcess {
  private constructor(
    readonly lab: NetnsLab,
    readonly host: string,
    name: string,
    proc: ChildProcess,
    metricsPort: number,
  ) {
    super(name, proc, metricsPort);
  }

  /** Runs the compiled CLI (build first: `npm run build`) and waits until it logs "gateway listening". */
  static async startIn(lab: NetnsLab, host: string, rosterPath: string, gateway: string, metricsPort: number, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<NetGateway> {
    const gw = NetGateway.spawnIn(lab, host, rosterPath, gateway, metricsPort, args, env);
    const deadline = Date.now() + GATEWAY_START_TIMEOUT_MS;
    while (Date.now() < deadline && gw.alive) {
      if (gw.logged('gateway listening').length > 0) return gw;
      await new Promise((r) => setTimeout(r, 50));
    }
    await gw.kill();
    throw new Error(`gateway ${gateway} in ${host} did not start within ${GATEWAY_START_TIMEOUT_MS} ms: ${gw.stderrText()}`);
  }

  /** Spawns `beamgate run` in a host without waiting for it (a take-over that is meant to fail never listens). */
  static spawnIn(lab: NetnsLab, host: string, rosterPath: string, gateway: string, metricsPort: number, args: string[] = [], env: NodeJS.ProcessEnv = {}): NetGateway {
    const proc = lab.spawn(host, [process.execPath, CLI, 'run', '--config', rosterPath, '--gateway', gateway, ...args], env);
    return new NetGateway(lab, host, gateway, proc, metricsPort);
  }

  override async healthy(): Promise<boolean> {
    return this.lab.httpGet(this.host, `http://127.0.0.1:${this.metricsPort}/healthz`).then(
      () => true,
      () => false,
    );
  }

  override metrics(): Promise<string> {
    return this.lab.httpGet(this.host, `http://127.0.0.1:${this.metricsPort}/metrics`);
  }
}

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')} failed: ${r.error?.message ?? r.stderr.trim()}`);
}

/** Every process in a namespace of ours was started by this harness: none may outlive it. */
function killAllIn(ns: string): void {
  const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
  if (r.status !== 0) return;
  for (const pid of r.stdout.split(/\s+/).filter(Boolean).map(Number)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Namespaces left by a run that died before its cleanup (its pid is gone). */
function removeOrphans(): void {
  for (const ns of labNamespaces()) {
    const m = new RegExp(`^${NETNS_PREFIX}-(\\d+)-`).exec(ns);
    if (!m || isAlive(Number(m[1]))) continue;
    killAllIn(ns);
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
