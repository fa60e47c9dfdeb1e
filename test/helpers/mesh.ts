// Starts an in-process mesh for a test: certificates in a temp dir, gateways
// with captured logs, and real `erl` nodes on demand. Everything is torn down
// by stop(), which tests call in afterAll/afterEach.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type { Limits } from '../../src/config/limits.js';
import { loadGatewayConfig } from '../../src/config/load.js';
import { buildLocalMesh, type LocalMesh } from '../../src/cli/local-mesh.js';
import { randomCookie, writeCookieHome } from '../../src/erlang/cookie.js';
import { ErlNode } from '../../src/erlang/node.js';
import { Gateway } from '../../src/gateway.js';
import { Logger } from '../../src/log/logger.js';
import type { DataPlaneMode } from '../../src/fastpath/native.js';
import { freePort, randomAlias } from './ports.js';

export interface TestMeshSpec {
  /** Gateway name → short node names it owns. */
  gateways: Record<string, string[]>;
  operators?: { gateway: string; pattern: string }[];
  localOnly?: { gateway: string; pattern: string }[];
  /** Gateway name → its `standInPorts` ("mirror" or "LOW-HIGH"); the roster default otherwise. */
  standInPorts?: Record<string, string>;
  limits?: Partial<Limits>;
  /** Gateways to leave unstarted (the test starts them, or something else, itself). */
  skipStart?: string[];
  /** Gateway name → its data plane (default auto: native when build/fastpath.node is built). */
  dataPlane?: Record<string, DataPlaneMode>;
}

export interface TestMesh {
  dir: string;
  mesh: LocalMesh;
  cookie: string;
  /** The nodes' home, holding `cookie` in .erlang.cookie. */
  home: string;
  gateways: Map<string, Gateway>;
  logs: Map<string, string[]>;
  nodes: ErlNode[];
  startGateway(name: string): Promise<Gateway>;
  /** `args` replaces the roster's flags for the node; `extraArgs` come after them. */
  startNode(fullName: string, opts?: { args?: string[]; extraArgs?: string[]; cookie?: string }): Promise<ErlNode>;
  /** Log lines of a gateway, parsed. */
  logOf(name: string): Record<string, unknown>[];
  metricsText(name: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startTestMesh(spec: TestMeshSpec): Promise<TestMesh> {
  const dir = mkdtempSync(join(tmpdir(), 'beamgate-test-'));
  const layout = [];
  for (const [name, shorts] of Object.entries(spec.gateways)) {
    const nodes: Record<string, number> = {};
    for (const s of shorts) nodes[s] = await freePort();
    const standInPorts = spec.standInPorts?.[name];
    layout.push({ name, tlsPort: await freePort(), epmdPort: await freePort(), metricsPort: await freePort(), nodes, loopback: randomAlias(), ...(standInPorts ? { standInPorts } : {}) });
  }
  const mesh = await buildLocalMesh({ dir, gateways: layout, operators: spec.operators, localOnly: spec.localOnly, limits: spec.limits, logLevel: 'debug' });
  const cookie = randomCookie();
  const home = writeCookieHome(join(dir, 'home'), cookie);
  // A node given another cookie gets a home of its own for it.
  const homeFor = (c: string) => (c === cookie ? home : writeCookieHome(join(dir, `home-${createHash('sha256').update(c).digest('hex').slice(0, 12)}`), c));
  const gateways = new Map<string, Gateway>();
  const logs = new Map<string, string[]>();
  const nodes: ErlNode[] = [];

  const t: TestMesh = {
    dir,
    mesh,
    cookie,
    home,
    gateways,
    logs,
    nodes,
    async startGateway(name) {
      const cfg = loadGatewayConfig(mesh.rosterPath, name);
      const lines = logs.get(name) ?? [];
      logs.set(name, lines);
      const gw = new Gateway({ roster: cfg.roster, gateway: name, material: cfg.material, logger: new Logger('debug', (l) => lines.push(l)), dataPlane: spec.dataPlane?.[name] });
      await gw.start();
      gateways.set(name, gw);
      return gw;
    },
    async startNode(fullName, opts = {}) {
      const node = await ErlNode.start(fullName, { args: [...(opts.args ?? mesh.nodeArgs(fullName)), ...(opts.extraArgs ?? [])], home: homeFor(opts.cookie ?? cookie) });
      nodes.push(node);
      return node;
    },
    logOf(name) {
      return (logs.get(name) ?? []).map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    async metricsText(name) {
      const gw = gateways.get(name);
      if (!gw) throw new Error(`gateway ${name} not started`);
      return gw.metrics.text();
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
      await Promise.all([...gateways.values()].map((g) => g.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  for (const name of Object.keys(spec.gateways)) {
    if (!spec.skipStart?.includes(name)) await t.startGateway(name);
  }
  return t;
}

/** The samples of `name` whose labels include `labels`, in Prometheus text. */
export function samplesOf(text: string, name: string, labels: Record<string, string>): number[] {
  const values: number[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (ok) values.push(Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return values;
}

function seriesName(name: string, labels: Record<string, string>): string {
  const l = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  return l.length ? `${name}{${l.join(',')}}` : name;
}

/**
 * The value of a series in Prometheus text, summed over the series that match
 * `labels`. A missing series throws (naming it): a renamed metric or label
 * must fail a test, never read as 0. Where a series may legitimately be
 * absent, check `hasSeries` first, or assert `expectNoSeries`.
 */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const values = samplesOf(text, name, labels);
  if (values.length === 0) throw new Error(`no series ${seriesName(name, labels)} in the metrics`);
  return values.reduce((a, b) => a + b, 0);
}

/** Whether any series of `name` matches `labels`. */
export function hasSeries(text: string, name: string, labels: Record<string, string> = {}): boolean {
  return samplesOf(text, name, labels).length > 0;
}

/** Throws unless `name` has no series matching `labels`, while the metric itself is exported (its TYPE line). */
export function expectNoSeries(text: string, name: string, labels: Record<string, string> = {}): void {
  if (!text.includes(`# TYPE ${name} `)) throw new Error(`metric ${name} is not exported at all`);
  if (hasSeries(text, name, labels)) throw new Error(`series ${seriesName(name, labels)} exists, expected none`);
}

export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 10_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last as NonNullable<T>;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}
