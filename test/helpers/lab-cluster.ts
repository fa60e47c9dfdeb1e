// A cluster across network-namespace hosts: one host per gateway, the roster,
// certificates and inetrc files from buildLocalMesh (each gateway's address
// is its host's lab IP), gateways as `beamgate run` processes inside their
// hosts, and real Erlang and Elixir nodes started inside their hosts.
//
// Each host has a network stack of its own, so every host uses the same,
// standard ports: EPMD 4369, TLS 4370, metrics 9464, nodes from 5001.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildLocalMesh, type LocalGateway, type LocalMesh } from '../../src/cli/local-mesh.js';
import { cookieEnv, randomCookie, writeCookieHome } from '../../src/erlang/cookie.js';
import { ErlNode } from '../../src/erlang/node.js';
import type { OtpRuntime } from '../../src/erlang/roots.js';
import type { Limits } from '../../src/config/limits.js';
import { ElixirNode, elixirArgs } from './elixir-node.js';
import { NetGateway, NetnsLab } from './netns.js';

export const LAB_PORTS = { epmd: 4369, tls: 4370, metrics: 9464, firstNode: 5001 } as const;
export const LAB_HOST_SUFFIX = '.lab';

export interface LabHostSpec {
  /** Short names of the Erlang nodes on this host. */
  erlang: string[];
  /** Short names of the Elixir nodes on this host. */
  elixir?: string[];
}

export interface LabClusterOptions {
  /** erl flags every node gets after its roster flags (tick time, code paths). */
  nodeArgs?: string[];
  /** Operator patterns (hidden nodes such as a release's `rpc-*` and `rem-*` commands). */
  operators?: { gateway: string; pattern: string }[];
  /** erl flags for one node only, after nodeArgs (e.g. its own `-mnesia dir`). */
  nodeArgsFor?: (fullName: string) => string[];
  /** The roster's `policy` section. */
  policy?: unknown;
  /** Run the Erlang nodes on another OTP release (a Debian root, src/erlang/roots.ts). */
  runtime?: OtpRuntime;
  /** How long one node may take to boot and register (many at once on two cores take longer). */
  nodeStartTimeoutMs?: number;
  /** The roster's `limits` section. */
  limits?: Partial<Limits>;
  /** More `beamgate run` flags for one gateway. */
  runArgs?: (gateway: string) => string[];
}

export class LabCluster {
  readonly gateways = new Map<string, NetGateway>();
  readonly erlang = new Map<string, ErlNode>();
  readonly elixir = new Map<string, ElixirNode>();
  readonly cookie = randomCookie();
  /** Every node's home, holding the cookie in .erlang.cookie (the hosts share this machine's file system). */
  readonly home: string;

  private constructor(
    readonly lab: NetnsLab,
    readonly dir: string,
    readonly mesh: LocalMesh,
    readonly spec: Record<string, LabHostSpec>,
    private readonly opts: LabClusterOptions,
  ) {
    this.home = writeCookieHome(join(dir, 'home'), this.cookie);
  }

  /** Creates the hosts, writes roster, certificates and inetrc files, starts every gateway (no nodes yet). */
  static async start(spec: Record<string, LabHostSpec>, opts: LabClusterOptions = {}): Promise<LabCluster> {
    const lab = NetnsLab.create(Object.keys(spec));
    const dir = mkdtempSync(join(tmpdir(), 'beamgate-lab-'));
    try {
      const layout: LocalGateway[] = Object.entries(spec).map(([name, h]) => ({
        name,
        address: lab.host(name).ip,
        tlsPort: LAB_PORTS.tls,
        epmdPort: LAB_PORTS.epmd,
        metricsPort: LAB_PORTS.metrics,
        nodes: Object.fromEntries([...h.erlang, ...(h.elixir ?? [])].map((short, i) => [short, LAB_PORTS.firstNode + i])),
      }));
      const mesh = await buildLocalMesh({ dir, gateways: layout, hostSuffix: LAB_HOST_SUFFIX, operators: opts.operators, policy: opts.policy, logLevel: 'info', ...(opts.limits ? { limits: opts.limits } : {}) });
      const cluster = new LabCluster(lab, dir, mesh, spec, opts);
      const started = await Promise.all(Object.keys(spec).map((gw) => NetGateway.startIn(lab, gw, mesh.rosterPath, gw, LAB_PORTS.metrics, opts.runArgs?.(gw) ?? [])));
      for (const gw of started) cluster.gateways.set(gw.name, gw);
      return cluster;
    } catch (err) {
      await lab.destroy();
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Every node's full name, Erlang and Elixir, sorted. */
  get allNodes(): string[] {
    return Object.entries(this.spec)
      .flatMap(([gw, h]) => [...h.erlang, ...(h.elixir ?? [])].map((s) => `${s}@${this.mesh.hostOf(gw)}`))
      .sort();
  }

  gatewayOf(fullName: string): string {
    const node = this.mesh.roster.nodes.get(fullName);
    if (!node) throw new Error(`${fullName} is not in the lab's roster`);
    return node.gateway;
  }

  gw(name: string): NetGateway {
    const g = this.gateways.get(name);
    if (!g) throw new Error(`no gateway ${name} in this lab`);
    return g;
  }

  node(fullName: string): ErlNode {
    const n = this.erlang.get(fullName);
    if (!n) throw new Error(`no Erlang node ${fullName} running`);
    return n;
  }

  /** Starts (or, after a kill, starts again) an Erlang node inside its gateway's host. */
  async startErlang(fullName: string): Promise<ErlNode> {
    const node = await ErlNode.start(fullName, {
      args: [...this.mesh.nodeArgs(fullName), ...(this.opts.nodeArgs ?? []), ...(this.opts.nodeArgsFor?.(fullName) ?? [])],
      home: this.home,
      prefix: this.lab.host(this.gatewayOf(fullName)).prefix,
      startTimeoutMs: this.opts.nodeStartTimeoutMs ?? 40_000,
      ...(this.opts.runtime ? { runtime: this.opts.runtime, binds: [this.dir] } : {}),
    });
    this.erlang.set(fullName, node);
    return node;
  }

  /** Starts an Elixir node with `elixir --name N --erl "FLAGS" bg_node.exs` (HOME = the cookie home) inside its gateway's host. */
  async startElixir(fullName: string): Promise<ElixirNode> {
    const host = this.gatewayOf(fullName);
    const args = elixirArgs([...this.mesh.nodeArgs(fullName), ...(this.opts.nodeArgs ?? [])]);
    const node = await ElixirNode.start(fullName, args, (argv) => this.lab.spawn(host, argv, cookieEnv(this.home)));
    this.elixir.set(fullName, node);
    return node;
  }

  /** Starts every node of the spec at once. */
  async startAllNodes(): Promise<void> {
    await Promise.all(
      Object.entries(this.spec).flatMap(([gw, h]) => [
        ...h.erlang.map((s) => this.startErlang(`${s}@${this.mesh.hostOf(gw)}`)),
        ...(h.elixir ?? []).map((s) => this.startElixir(`${s}@${this.mesh.hostOf(gw)}`)),
      ]),
    );
  }

  /** Stops nodes, then gateways; the namespaces and whatever still runs in them go in any case. */
  async stop(): Promise<void> {
    try {
      await Promise.allSettled([...this.erlang.values(), ...this.elixir.values()].map((n) => n.stop()));
      await Promise.allSettled([...this.gateways.values()].map((g) => g.kill()));
    } finally {
      await this.lab.destroy();
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
