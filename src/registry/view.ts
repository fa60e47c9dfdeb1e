// What each peer gateway says is registered with its EPMD right now, as we
// were told over the registry link that peer dialled to us. An announcement
// is taken only for names the roster lets that peer own (its roster nodes at
// their roster ports, its operator patterns), and only up to
// maxRegistryNamesPerPeer; anything else is refused, counted and logged. A
// peer whose link is down is "unknown": its names are forgotten, and the
// EPMD answers for its host fall back to the roster (see directory.ts).

import type tls from 'node:tls';
import { admissionOn, revokedSerial, type Roster } from '../config/roster.js';
import type { Logger } from '../log/logger.js';
import type { RefusalReason } from '../metrics/metrics.js';
import { type LinkEnd, RegistryLink } from './link.js';
import type { RegistryEntry, RegistryMessage } from './protocol.js';

export interface ViewDeps {
  roster(): Roster;
  logger: Logger;
  /** Counts and logs a refusal, within the refusal log budget. */
  refuse(reason: RefusalReason, message: string, fields: Record<string, string | number | undefined>): void;
  /** Called after a peer's names changed, with the names that came and went. */
  changed(peer: string, added: RegistryEntry[], removed: RegistryEntry[]): void;
}

interface PeerState {
  /** Set right after the state is made: the link's callbacks need the state. */
  link?: RegistryLink;
  from: string;
  /** Undefined until the link's first snapshot: the peer is not yet known. */
  names: Map<string, RegistryEntry> | undefined;
  syncedAt: number | undefined;
}

export class PeerViews {
  private readonly peers = new Map<string, PeerState>();
  /** After close(): a stopping gateway takes no new registry link (its TLS server waits for every connection to end). */
  private closed = false;

  constructor(private readonly deps: ViewDeps) {}

  /** A peer dialled us a registry link (its certificate already checked); `head` is what came after the preamble. */
  attach(peer: string, sock: tls.TLSSocket, head: Buffer): void {
    if (this.closed) {
      sock.destroy();
      return;
    }
    const { roster } = this.deps;
    const from = `${sock.remoteAddress}:${sock.remotePort}`;
    const old = this.peers.get(peer);
    // The newer link wins (the peer restarted, or redialled after a cut). Its
    // snapshot follows at once; until then the old names stay the best we know.
    const state: PeerState = { from, names: old?.names, syncedAt: old?.syncedAt };
    this.peers.set(peer, state);
    old?.link?.close('replaced by a newer registry link from the same peer');
    const link = new RegistryLink(sock, roster().limits, (m) => this.onMessage(peer, state, m), (end) => this.onEnd(peer, state, end));
    state.link = link;
    if (head.length > 0) link.receive(head);
  }

  /** Whether we hold a snapshot of `peer`'s names (its registry link is up). */
  known(peer: string): boolean {
    return this.peers.get(peer)?.names !== undefined;
  }

  lookup(peer: string, name: string): RegistryEntry | undefined {
    return this.peers.get(peer)?.names?.get(name);
  }

  /** The names of a known peer, or undefined when it is not known. */
  names(peer: string): RegistryEntry[] | undefined {
    const names = this.peers.get(peer)?.names;
    return names && [...names.values()];
  }

  /** Peers we hold a snapshot of, and how many names each has. */
  summary(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [peer, s] of this.peers) if (s.names) out[peer] = s.names.size;
    return out;
  }

  /**
   * After a reload: forget peers the roster no longer has and names it no
   * longer admits, and ask every peer for a snapshot again: names refused
   * under the old roster may be admitted under the new one.
   */
  resync(): void {
    const roster = this.deps.roster();
    for (const [peer, s] of [...this.peers]) {
      if (!roster.gateways.has(peer)) {
        s.link?.close(`gateway ${peer} is no longer in the roster`);
        continue;
      }
      // As relayed links are: a peer whose certificate the new roster revokes is cut, and its names go.
      const revoked = s.link && revokedSerial(roster, s.link.peerSerial);
      if (revoked) {
        s.link?.refuse({ reason: 'cert_revoked', message: `certificate of ${peer} (serial ${revoked}) is now revoked` });
        continue;
      }
      if (s.names) {
        const kept = new Map<string, RegistryEntry>();
        for (const e of s.names.values()) if (this.admits(peer, e) === undefined) kept.set(e.name, e);
        this.replace(peer, s, kept);
      }
      s.link?.send({ t: 'resync' });
    }
  }

  close(): void {
    this.closed = true;
    for (const s of this.peers.values()) s.link?.close('gateway stopping');
  }

  private onMessage(peer: string, s: PeerState, m: RegistryMessage): void {
    if (this.peers.get(peer) !== s) return;
    switch (m.t) {
      case 'alive':
        return;
      case 'resync':
        return this.protocolViolation(peer, s, 'resync from the announcing side');
      case 'snapshot': {
        const next = new Map<string, RegistryEntry>();
        for (const e of m.names) if (this.take(peer, s, next, e)) next.set(e.name, e);
        this.replace(peer, s, next);
        s.syncedAt = Date.now();
        // Snapshots come when a link opens and after the peer reloads: rare enough to log each.
        this.deps.logger.info('registry synced', { peer, names: next.size, from: s.from });
        return;
      }
      case 'add': {
        if (!s.names) return this.protocolViolation(peer, s, 'a change before the first snapshot');
        if (!this.take(peer, s, s.names, m.entry)) return;
        const before = s.names.get(m.entry.name);
        if (sameEntry(before, m.entry)) return;
        s.names.set(m.entry.name, m.entry);
        this.deps.logger.debug('remote name registered', { peer, name: m.entry.name, port: m.entry.port });
            this.deps.changed(peer, [m.entry], before ? [before] : []);
        return;
      }
      case 'remove': {
        if (!s.names) return this.protocolViolation(peer, s, 'a change before the first snapshot');
        const before = s.names.get(m.name);
        if (!before) return;
        s.names.delete(m.name);
        this.deps.logger.debug('remote name unregistered', { peer, name: m.name });
            this.deps.changed(peer, [], [before]);
        return;
      }
    }
  }

  /** Whether an announced entry may go into `into` (checked against the roster and the bound); refuses it otherwise. */
  private take(peer: string, s: PeerState, into: Map<string, RegistryEntry>, e: RegistryEntry): boolean {
    const why = this.admits(peer, e);
    if (why) {
      this.deps.refuse('announce_not_owned', why, { peer, name: e.name, from: s.from });
      return false;
    }
    const max = this.deps.roster().limits.maxRegistryNamesPerPeer;
    if (!into.has(e.name) && into.size >= max) {
      this.deps.refuse('limit_reached', `gateway ${peer} announced more than ${max} names (maxRegistryNamesPerPeer)`, { peer, name: e.name, from: s.from });
      return false;
    }
    return true;
  }

  /** Why the roster does not let `peer` announce this entry, or undefined if it does. */
  private admits(peer: string, e: RegistryEntry): string | undefined {
    const roster = this.deps.roster();
    const gw = roster.gateways.get(peer);
    if (!gw) return `gateway ${peer} is not in the roster`;
    const a = admissionOn(roster, peer, `${e.name}@${gw.host}`);
    if (a.kind === 'node') return a.node.port === e.port ? undefined : `${a.node.name} announced on port ${e.port}, its roster port is ${a.node.port}`;
    if (a.kind === 'operator') return undefined;
    return `${e.name}@${gw.host} is not a node or operator of gateway ${peer}${a.kind === 'local' ? ' (it is local-only there)' : ''}`;
  }

  private replace(peer: string, s: PeerState, next: Map<string, RegistryEntry>): void {
    const before = s.names ?? new Map<string, RegistryEntry>();
    const added = [...next.values()].filter((e) => !sameEntry(before.get(e.name), e));
    const removed = [...before.values()].filter((e) => !sameEntry(next.get(e.name), e));
    s.names = next;
    if (added.length > 0 || removed.length > 0) this.deps.changed(peer, added, removed);
  }

  private protocolViolation(peer: string, s: PeerState, what: string): void {
    this.deps.refuse('bad_control', `registry link from ${peer}: ${what}`, { peer, from: s.from });
    s.link?.close(what);
  }

  private onEnd(peer: string, s: PeerState, end: LinkEnd): void {
    if ('refusal' in end) this.deps.refuse(end.refusal.reason, `registry link from ${peer}: ${end.refusal.message}`, { peer, from: s.from });
    // A replaced link ends quietly: its successor carries the peer's names now.
    if (this.peers.get(peer) !== s) return;
    this.peers.delete(peer);
    const removed = s.names ? [...s.names.values()] : [];
    if (s.names) {
      this.deps.logger.warn('registry lost', { peer, names: removed.length, detail: 'refusal' in end ? end.refusal.message : end.detail });
    }
    if (removed.length > 0) this.deps.changed(peer, [], removed);
  }
}

function sameEntry(a: RegistryEntry | undefined, b: RegistryEntry): boolean {
  return a !== undefined && a.port === b.port && a.highestVersion === b.highestVersion && a.lowestVersion === b.lowestVersion;
}
