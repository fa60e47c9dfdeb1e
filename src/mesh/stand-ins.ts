// Stand-ins: the listeners a local node dials when it means a remote node.
// Each listens on the remote gateway's loopback alias. There is one for every
// remote roster node (so a node can dial one even while that peer's registry
// is not known), and one for every operator a peer announces as listening,
// made when the announcement arrives and closed when the name goes away.
// Ports follow the gateway's `standInPorts`: its own range (chosen here, the
// next free port of the range on that alias), or the remote node's own port.

import assert from 'node:assert/strict';
import net from 'node:net';
import { type GatewaySpec, nodesOf, type Roster } from '../config/roster.js';
import { listen } from '../epmd/server.js';
import { inheritedStandInPort } from '../takeover/inherited.js';
import type { RegistryEntry } from '../registry/protocol.js';

/** A stand-in a take-over stopped: its listening socket duplicated; thaw listens on it again, release lets it go (the next process has it). */
export interface FrozenStandIn {
  alias: string;
  port: number;
  peer: string;
  short: string;
  fd: number;
  thaw(): void;
  release(): void;
}

/** Who a stand-in stands for. */
export interface StandInTarget {
  /** The remote gateway. */
  peer: string;
  /** The remote node's full name. */
  node: string;
  /** A roster node's stand-in lives as long as the roster has it; an operator's while it is announced. */
  kind: 'roster' | 'announced';
  /** The remote node's own port (a mirrored stand-in takes it). */
  port: number;
}

interface StandIn extends StandInTarget {
  alias: string;
  listenPort: number;
  server: net.Server;
}

export interface StandInDeps {
  roster(): Roster;
  self(): GatewaySpec;
  /** A local node connected to a stand-in. */
  connection(target: StandInTarget, sock: net.Socket): void;
  /** A connection the listener's maxConnections turned away. */
  shed(listener: string, d: net.DropArgument | undefined): void;
  /** A stand-in that could not be opened (no free port in the range, a mirrored port in use). */
  failed(target: StandInTarget, detail: string): void;
}

export class StandIns {
  /** Keyed `peer\0shortName`. */
  private readonly open = new Map<string, StandIn>();
  /** Stand-in changes run one after another: listening is asynchronous, and a port must not be handed out twice. */
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly deps: StandInDeps) {}

  /** The port a local node should dial for `short` on `peer`'s host, if its stand-in is listening. */
  portOf(peer: string, short: string): number | undefined {
    return this.open.get(key(peer, short))?.listenPort;
  }

  count(peer: string): number {
    let n = 0;
    for (const s of this.open.values()) if (s.peer === peer) n++;
    return n;
  }

  get size(): number {
    return this.open.size;
  }

  /** Puts roster stand-ins in line with the roster in force and drops announced ones whose peer or rule is gone. */
  sync(announced: (peer: string) => RegistryEntry[] | undefined): Promise<void> {
    return this.enqueue(async () => {
      const roster = this.deps.roster();
      const self = this.deps.self();
      const wanted = new Map<string, StandInTarget>();
      for (const gw of roster.gateways.values()) {
        if (gw.name === self.name) continue;
        for (const n of nodesOf(roster, gw.name)) wanted.set(key(gw.name, n.short), { peer: gw.name, node: n.name, kind: 'roster', port: n.port });
        for (const e of announced(gw.name) ?? []) {
          const k = key(gw.name, e.name);
          if (!wanted.has(k)) wanted.set(k, { peer: gw.name, node: `${e.name}@${gw.host}`, kind: 'announced', port: e.port });
        }
      }
      for (const [k, s] of [...this.open]) {
        const w = wanted.get(k);
        if (!w || !this.fits(s, w)) this.closeOne(k, s);
      }
      for (const [k, w] of wanted) if (!this.open.has(k)) await this.openOne(k, w);
    });
  }

  /** A peer's announced names changed: stand-ins for announced (non-roster) names follow. */
  announced(peer: string, added: RegistryEntry[], removed: RegistryEntry[]): Promise<void> {
    return this.enqueue(async () => {
      const roster = this.deps.roster();
      const gw = roster.gateways.get(peer);
      if (!gw) return;
      const isRoster = (short: string) => roster.nodes.get(`${short}@${gw.host}`)?.gateway === peer;
      for (const e of removed) {
        const k = key(peer, e.name);
        const s = this.open.get(k);
        if (s && s.kind === 'announced') this.closeOne(k, s);
      }
      for (const e of added) {
        if (isRoster(e.name)) continue;
        const k = key(peer, e.name);
        const w: StandInTarget = { peer, node: `${e.name}@${gw.host}`, kind: 'announced', port: e.port };
        const s = this.open.get(k);
        if (s && this.fits(s, w)) continue;
        if (s) this.closeOne(k, s);
        await this.openOne(k, w);
      }
    });
  }

  /** Stops accepting on every stand-in (connections already relayed are not touched). */
  close(): Promise<void> {
    return this.enqueue(async () => {
      const closing = [...this.open.values()].map((s) => new Promise<void>((r) => s.server.close(() => r())));
      this.open.clear();
      await Promise.all(closing);
    });
  }

  /**
   * A take-over: every stand-in stops accepting (its socket duplicated by
   * `detach`, so connections wait in its backlog) and no change runs until
   * `thaw` (the take-over did not happen) or ever (it did: this process exits).
   */
  freeze(detach: (server: net.Server) => number): Promise<FrozenStandIn[]> {
    return new Promise((resolveFrozen, rejectFrozen) => {
      void this.enqueue(
        () =>
          new Promise<void>((release) => {
            const out: FrozenStandIn[] = [];
            let done = 0;
            const settle = () => {
              if (++done === out.length) release();
            };
            try {
              for (const s of this.open.values()) {
                const fd = detach(s.server);
                out.push({
                  alias: s.alias,
                  port: s.listenPort,
                  peer: s.peer,
                  short: s.node.slice(0, s.node.indexOf('@')),
                  fd,
                  thaw: () => {
                    s.server.listen({ fd });
                    settle();
                  },
                  release: settle,
                });
              }
            } catch (err) {
              release();
              rejectFrozen(err as Error);
              return;
            }
            if (out.length === 0) release();
            resolveFrozen(out);
          }),
      );
    });
  }

  /** The maxConnections of every listener, after a reload changed maxLinks. */
  setMaxConnections(n: number): void {
    for (const s of this.open.values()) s.server.maxConnections = n;
  }

  private enqueue(job: () => Promise<void>): Promise<void> {
    const run = this.queue.then(job);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Whether an open stand-in still serves `w` under the rule in force (same node, a port the rule allows). */
  private fits(s: StandIn, w: StandInTarget): boolean {
    const gw = this.deps.roster().gateways.get(w.peer);
    if (!gw || s.node !== w.node || s.alias !== gw.loopback || s.kind !== w.kind) return false;
    const rule = this.deps.self().standInPorts;
    return rule.kind === 'mirror' ? s.listenPort === w.port : s.listenPort >= rule.low && s.listenPort <= rule.high;
  }

  private async openOne(k: string, w: StandInTarget): Promise<void> {
    const roster = this.deps.roster();
    const gw = roster.gateways.get(w.peer);
    assert.ok(gw, `stand-in for unknown gateway ${w.peer}`);
    const rule = this.deps.self().standInPorts;
    const server = net.createServer((sock) => this.deps.connection(w, sock));
    server.maxConnections = roster.limits.maxLinks;
    server.on('drop', (d?: net.DropArgument) => this.deps.shed(`stand-in for ${w.node}`, d));
    if (rule.kind === 'mirror') {
      try {
        await listen(server, w.port, gw.loopback);
      } catch (err) {
        return this.deps.failed(w, (err as Error).message);
      }
      this.open.set(k, { ...w, alias: gw.loopback, listenPort: w.port, server });
      return;
    }
    const taken = new Set<number>();
    for (const s of this.open.values()) if (s.alias === gw.loopback) taken.add(s.listenPort);
    // After a take-over, the port the previous process gave this stand-in first.
    const before = inheritedStandInPort(gw.loopback, w.peer, w.node.slice(0, w.node.indexOf('@')));
    const ports = before !== undefined && before >= rule.low && before <= rule.high ? [before] : [];
    // Each port of the range once, from the lowest: something else on the
    // host may hold one (a wildcard listener), and then the next one serves.
    for (let port = rule.low; port <= rule.high; port++) if (port !== before) ports.push(port);
    for (const port of ports) {
      if (taken.has(port)) continue;
      try {
        await listen(server, port, gw.loopback);
      } catch {
        continue;
      }
      this.open.set(k, { ...w, alias: gw.loopback, listenPort: port, server });
      return;
    }
    this.deps.failed(w, `no free port in the stand-in range ${rule.low}-${rule.high} on ${gw.loopback}`);
  }

  private closeOne(k: string, s: StandIn): void {
    s.server.close();
    this.open.delete(k);
  }
}

function key(peer: string, short: string): string {
  return `${peer}\u0000${short}`;
}
