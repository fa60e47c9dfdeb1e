// Gateways as real child processes (`node dist/cli/main.js run`), for tests
// that kill -9, SIGHUP or SIGTERM them and read their memory from /proc.
// Build first (`npx tsc -p .`): the CLI runs from dist/.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Limits } from '../../src/config/limits.js';
import { buildLocalMesh, type LocalGateway, type LocalMesh } from '../../src/cli/local-mesh.js';
import { sleep, statusKb } from '../../src/bench/proc.js';
import { randomCookie, writeCookieHome } from '../../src/erlang/cookie.js';
import { ErlNode } from '../../src/erlang/node.js';
import { freePort, randomAlias } from './ports.js';
import { compileTraffic } from './traffic.js';

export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** How long a gateway process may take to answer /healthz after spawn. */
const START_TIMEOUT_MS = 15_000;

export type LogLine = Record<string, unknown> & { msg?: string; level?: string };

export interface Memory {
  /** Resident set now, KiB (VmRSS). */
  rssKb: number;
  /** Peak resident set since start, KiB (VmHWM). */
  hwmKb: number;
}

export class GatewayProcess {
  readonly logs: LogLine[] = [];
  /** stderr lines that are not JSON (a crash trace would land here). */
  readonly otherOutput: string[] = [];
  private exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exited = false;
  private partial = '';

  protected constructor(
    readonly name: string,
    readonly proc: ChildProcess,
    readonly metricsPort: number,
  ) {
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (s: string) => this.onStderr(s));
    proc.stdout!.resume();
    this.exit = new Promise((resolve) =>
      proc.on('exit', (code, signal) => {
        this.exited = true;
        resolve({ code, signal });
      }),
    );
  }

  static async start(rosterPath: string, name: string, metricsPort: number, extraArgs: string[] = []): Promise<GatewayProcess> {
    const proc = spawn(process.execPath, [CLI, 'run', '--config', rosterPath, '--gateway', name, ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
    const gp = new GatewayProcess(name, proc, metricsPort);
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (gp.exited) throw new Error(`gateway ${name} exited during start: ${gp.stderrText()}`);
      if (await gp.healthy()) return gp;
      await sleep(100);
    }
    gp.signal('SIGKILL');
    throw new Error(`gateway ${name} did not answer /healthz within ${START_TIMEOUT_MS} ms: ${gp.stderrText()}`);
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get alive(): boolean {
    return !this.exited;
  }

  async healthy(): Promise<boolean> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.metricsPort}/healthz`, { signal: AbortSignal.timeout(2_000) });
      await res.text();
      return res.ok;
    } catch {
      return false;
    }
  }

  async metrics(): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`, { signal: AbortSignal.timeout(10_000) });
    return res.text();
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.exited) this.proc.kill(sig);
  }

  /** Resolves with the exit code (null when killed by a signal); rejects after timeoutMs. */
  async waitExit(timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`gateway ${this.name} still running after ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exit, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  memory(): Memory {
    const kb = statusKb(this.pid);
    return { rssKb: kb.rss, hwmKb: kb.peak };
  }

  logged(msg: string, match: Record<string, unknown> = {}): LogLine[] {
    return this.logs.filter((l) => l.msg === msg && Object.entries(match).every(([k, v]) => l[k] === v));
  }

  stderrText(): string {
    return [...this.logs.map((l) => JSON.stringify(l)), ...this.otherOutput].join('\n').slice(-4000);
  }

  /** Stops the process: SIGKILL, since tests that want a graceful stop signal it themselves. */
  async kill(): Promise<void> {
    if (this.exited) return;
    this.signal('SIGKILL');
    await this.exit;
  }

  private onStderr(s: string): void {
    this.partial += s;
    let nl: number;
    while ((nl = this.partial.indexOf('\n')) >= 0) {
      const line = this.partial.slice(0, nl);
      this.partial = this.partial.slice(nl + 1);
      try {
        this.logs.push(JSON.parse(line) as LogLine);
      } catch {
        this.otherOutput.push(line);
      }
    }
  }
}

export interface ProcessMeshSpec {
  /** Gateway name → short node names it owns. */
  gateways: Record<string, string[]>;
  operators?: { gateway: string; pattern: string }[];
  limits?: Partial<Limits>;
  /** Which gateways to start now (default: all). */
  start?: string[];
  /** More `beamgate run` flags for every gateway. */
  runArgs?: string[];
}

export interface ProcessMesh {
  dir: string;
  mesh: LocalMesh;
  layout: LocalGateway[];
  cookie: string;
  /** The nodes' home, holding `cookie` in .erlang.cookie. */
  home: string;
  gateways: Map<string, GatewayProcess>;
  nodes: ErlNode[];
  /** Starts (or restarts, after a kill) a gateway process. */
  startGateway(name: string): Promise<GatewayProcess>;
  gw(name: string): GatewayProcess;
  startNode(fullName: string, extraArgs?: string[]): Promise<ErlNode>;
  stop(): Promise<void>;
}

export async function startProcessMesh(spec: ProcessMeshSpec): Promise<ProcessMesh> {
  const dir = mkdtempSync(join(tmpdir(), 'beamgate-proc-'));
  const layout: LocalGateway[] = [];
  for (const [name, shorts] of Object.entries(spec.gateways)) {
    const nodes: Record<string, number> = {};
    for (const s of shorts) nodes[s] = await freePort();
    layout.push({ name, tlsPort: await freePort(), epmdPort: await freePort(), metricsPort: await freePort(), nodes, loopback: randomAlias() });
  }
  const mesh = await buildLocalMesh({ dir, gateways: layout, operators: spec.operators, limits: spec.limits, logLevel: 'info' });
  const gateways = new Map<string, GatewayProcess>();
  const nodes: ErlNode[] = [];
  const cookie = randomCookie();
  const pm: ProcessMesh = {
    dir,
    mesh,
    layout,
    cookie,
    home: writeCookieHome(join(dir, 'home'), cookie),
    gateways,
    nodes,
    async startGateway(name) {
      const g = layout.find((l) => l.name === name);
      if (!g || g.metricsPort === false) throw new Error(`no gateway ${name} with metrics in this mesh`);
      const gp = await GatewayProcess.start(mesh.rosterPath, name, g.metricsPort, spec.runArgs);
      gateways.set(name, gp);
      return gp;
    },
    gw(name) {
      const gp = gateways.get(name);
      if (!gp) throw new Error(`gateway ${name} not started`);
      return gp;
    },
    async startNode(fullName, extraArgs = []) {
      const node = await ErlNode.start(fullName, { args: [...mesh.nodeArgs(fullName), ...extraArgs], home: pm.home });
      nodes.push(node);
      return node;
    },
    async stop() {
      for (const n of nodes) n.kill('SIGCONT');
      await Promise.all(nodes.map((n) => n.stop()));
      await Promise.all([...gateways.values()].map((g) => g.kill()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  for (const name of spec.start ?? Object.keys(spec.gateways)) await pm.startGateway(name);
  return pm;
}

/** The usual pair: gateways alpha and beta with one node each, a1 and b1, both with the traffic helpers loaded. */
export interface NodePair {
  pm: ProcessMesh;
  /** The code path flags (-pa) of the traffic helpers, for nodes started later. */
  pa: string[];
  a1: ErlNode;
  b1: ErlNode;
}

export async function startNodePair(spec: Omit<ProcessMeshSpec, 'gateways'> = {}): Promise<NodePair> {
  const pm = await startProcessMesh({ ...spec, gateways: { alpha: ['a1'], beta: ['b1'] } });
  const pa = compileTraffic(pm.dir);
  const [a1, b1] = await Promise.all([pm.startNode('a1@alpha.demo', pa), pm.startNode('b1@beta.demo', pa)]);
  return { pm, pa, a1, b1 };
}

/** Throws unless the gateway process is still running and has written nothing but JSON log lines. */
export function assertIntact(gp: GatewayProcess): void {
  if (!gp.alive) throw new Error(`gateway ${gp.name} is not running: ${gp.stderrText()}`);
  if (gp.otherOutput.length > 0) throw new Error(`gateway ${gp.name} wrote non-JSON output (a crash trace?): ${gp.otherOutput.join('\n').slice(-2000)}`);
}

/**
 * Samples gateway processes' RSS at a fixed interval, for tests that must show
 * memory stays flat over a run. Figures are KiB.
 */
export class RssSampler {
  readonly samples = new Map<string, { at: number; rssKb: number }[]>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly gateways: GatewayProcess[]) {
    for (const g of gateways) this.samples.set(g.name, []);
  }

  start(intervalMs: number): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.sample();
  }

  sample(): void {
    const at = Date.now();
    for (const g of this.gateways) if (g.alive) this.samples.get(g.name)!.push({ at, rssKb: g.memory().rssKb });
  }

  /** First and last sample, the peak, and the highest sample in [from, to) (ms since epoch). */
  summary(name: string, window?: { from: number; to: number }): { firstKb: number; peakKb: number; lastKb: number; windowPeakKb: number } {
    const s = this.samples.get(name) ?? [];
    if (s.length === 0) throw new Error(`no RSS samples for ${name}`);
    const inWindow = window ? s.filter((x) => x.at >= window.from && x.at < window.to) : s;
    return {
      firstKb: s[0]!.rssKb,
      peakKb: Math.max(...s.map((x) => x.rssKb)),
      lastKb: s[s.length - 1]!.rssKb,
      windowPeakKb: Math.max(...(inWindow.length ? inWindow : s).map((x) => x.rssKb)),
    };
  }
}

const TCP_ESTABLISHED = '01';

/**
 * TCP connections in this network namespace that are ESTABLISHED with `port`
 * at either end, from /proc/net/tcp: the kernel's view, which shows a
 * half-open link even when a gateway's own counters say it closed.
 */
export function establishedConnections(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  let n = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4 || f[3] !== TCP_ESTABLISHED) continue;
      if (f[1]!.endsWith(`:${hex}`) || f[2]!.endsWith(`:${hex}`)) n++;
    }
  }
  return n;
}

export { sleep };
