// The live mesh registry, as one gateway runs it: it announces what is
// registered with our EPMD to every peer (publisher.ts), keeps what each peer
// announces (view.ts), keeps the stand-ins in line with both
// (mesh/stand-ins.ts), and answers EPMD for every remote host from that.
//
// What a remote host's EPMD answers here:
// - peer known (its registry link is up and its snapshot arrived): exactly
//   the names registered there now, each at its stand-in's port; a name that
//   is not registered is not found, so a ping to a down node is `pang` at
//   once, without a TLS dial;
// - peer not known (link down: unreachable, restarting, or just starting):
//   its roster nodes, from the roster, as before the registry existed; a dial
//   then finds out (a TLS dial that fails, or `target_down` from the peer).

import type net from 'node:net';
import type tls from 'node:tls';
import { type GatewaySpec, nodesOf, type Roster } from '../config/roster.js';
import { NODE_TYPE_NORMAL, type PortInfo } from '../epmd/protocol.js';
import type { RemoteEpmd } from '../epmd/server.js';
import type { Logger } from '../log/logger.js';
import type { RefusalReason } from '../metrics/metrics.js';
import { StandIns, type StandInTarget } from '../mesh/stand-ins.js';
import type { RegistryEntry } from './protocol.js';
import { Publisher } from './publisher.js';
import { PeerViews } from './view.js';

/** The versions a roster node is answered with while its gateway's registry is not known. */
const ROSTER_ANSWER_VERSIONS = { highestVersion: 6, lowestVersion: 5 } as const;

export interface MeshRegistryDeps {
  roster(): Roster;
  self(): GatewaySpec;
  logger: Logger;
  dial(peer: GatewaySpec): Promise<tls.TLSSocket>;
  /** What is registered with our EPMD now and may be announced (roster nodes and operators). */
  localEntries(): RegistryEntry[];
  refuse(reason: RefusalReason, message: string, fields: Record<string, string | number | undefined>): void;
  /** A local node connected to a stand-in. */
  connection(target: StandInTarget, sock: net.Socket): void;
  shed(listener: string, d: net.DropArgument | undefined): void;
}

export class MeshRegistry implements RemoteEpmd {
  readonly views: PeerViews;
  readonly standIns: StandIns;
  private readonly publishers = new Map<string, Publisher>();

  constructor(private readonly deps: MeshRegistryDeps) {
    this.views = new PeerViews({
      roster: deps.roster,
      logger: deps.logger,
      refuse: deps.refuse,
      changed: (peer, added, removed) => {
        this.standIns.announced(peer, added, removed).catch((err: Error) => deps.logger.error('stand-ins not updated', { peer, detail: err.message }));
      },
    });
    this.standIns = new StandIns({
      roster: deps.roster,
      self: deps.self,
      connection: deps.connection,
      shed: deps.shed,
      failed: (target, detail) => deps.logger.error('stand-in not opened', { peer: target.peer, node: target.node, detail }),
    });
  }

  /** Opens the stand-ins and starts announcing to every peer. */
  async start(): Promise<void> {
    await this.sync();
  }

  /** Puts publishers, peer views and stand-ins in line with the roster in force (start and reload). */
  async sync(): Promise<void> {
    const roster = this.deps.roster();
    const self = this.deps.self();
    this.views.resync();
    await this.standIns.sync((peer) => this.views.names(peer));
    for (const [peer, p] of [...this.publishers]) {
      if (roster.gateways.has(peer) && peer !== self.name) continue;
      p.stop();
      this.publishers.delete(peer);
    }
    for (const gw of roster.gateways.values()) {
      if (gw.name === self.name) continue;
      const existing = this.publishers.get(gw.name);
      // What may be announced can change with the roster: every peer gets a fresh snapshot.
      if (existing) existing.resnapshot();
      else {
        const p = new Publisher(gw.name, { roster: this.deps.roster, logger: this.deps.logger, dial: this.deps.dial, entries: this.deps.localEntries, refuse: this.deps.refuse });
        this.publishers.set(gw.name, p);
        p.start();
      }
    }
  }

  localRegistered(entry: RegistryEntry): void {
    for (const p of this.publishers.values()) p.announce({ t: 'add', entry });
  }

  localUnregistered(name: string): void {
    for (const p of this.publishers.values()) p.announce({ t: 'remove', name });
  }

  /** A peer dialled us its registry link. */
  attach(peer: string, sock: tls.TLSSocket, head: Buffer): void {
    this.views.attach(peer, sock, head);
    // It is up: our own link to it need not wait out a back-off.
    this.publishers.get(peer)?.kick();
  }

  /** Evidence that a peer is reachable (a dial to it succeeded). */
  kick(peer: string): void {
    this.publishers.get(peer)?.kick();
  }

  lookup(peer: string, short: string): PortInfo | null {
    const port = this.standIns.portOf(peer, short);
    if (port === undefined) return null;
    if (this.views.known(peer)) {
      const e = this.views.lookup(peer, short);
      return e ? answer(short, port, e) : null;
    }
    const gw = this.deps.roster().gateways.get(peer);
    const node = gw && this.deps.roster().nodes.get(`${short}@${gw.host}`);
    return node?.gateway === peer ? answer(short, port, ROSTER_ANSWER_VERSIONS) : null;
  }

  names(peer: string): { name: string; port: number }[] {
    const live = this.views.names(peer);
    const shorts = live ? live.map((e) => e.name) : nodesOf(this.deps.roster(), peer).map((n) => n.short);
    const out: { name: string; port: number }[] = [];
    for (const name of shorts) {
      const port = this.standIns.portOf(peer, name);
      if (port !== undefined) out.push({ name, port });
    }
    return out;
  }

  /** For /readyz: which peers' registries are known, with how many names each. */
  readiness(): { synced: Record<string, number>; announcing_to: string[] } {
    return { synced: this.views.summary(), announcing_to: [...this.publishers].filter(([, p]) => p.connected).map(([peer]) => peer) };
  }

  /** Stops announcing and forgets the peers (stand-ins are closed separately: a drain closes them first). */
  stop(): void {
    for (const p of this.publishers.values()) p.stop();
    this.publishers.clear();
    this.views.close();
  }
}

function answer(name: string, port: number, v: { highestVersion: number; lowestVersion: number }): PortInfo {
  return { port, nodeType: NODE_TYPE_NORMAL, protocol: 0, highestVersion: v.highestVersion, lowestVersion: v.lowestVersion, name, extra: Buffer.alloc(0) };
}
