// The running gateway's side of a take-over, as state: freeze stops every
// listener from accepting (each socket duplicated first, so connections wait
// in its backlog), parks every native link (the engine lets go of it, its TLS
// state in hand), and gathers the nodes' EPMD registrations and the counters.
// Then either thaw (the take-over did not happen: everything is as before,
// the links relayed again from where they stopped) or handOff (it did: this
// process forgets what the next one holds, without a byte on any wire).

import { closeSync } from 'node:fs';
import type net from 'node:net';
import type { PassFd } from '../fastpath/native.js';
import type { EpmdServer } from '../epmd/server.js';
import type { Logger } from '../log/logger.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import type { LinkTable, RelayedLink } from '../mesh/link-table.js';
import type { StandIns } from '../mesh/stand-ins.js';
import { TAKEOVER_SETTLE_MS, TAKEOVER_TIMEOUT_MS } from '../config/limits.js';
import { counterSamples } from './counters.js';
import type { CounterSample, LinkItem, ListenerItem, RegistrationItem } from './protocol.js';
import { dupOf } from './socket.js';

/** What of a gateway a take-over touches (Gateway.takeoverParts). */
export interface GatewayParts {
  gateway: string;
  passfd: PassFd;
  metrics: GatewayMetrics;
  logger: Logger;
  epmd: EpmdServer;
  standIns: StandIns;
  table: LinkTable;
  listeners(): { kind: 'tls' | 'metrics'; server: net.Server; host: string; port: number }[];
}

export interface Frozen {
  frozenAt: number;
  listeners: { item: ListenerItem; fd: number }[];
  registrations: { item: RegistrationItem; fd: number }[];
  links: { link: RelayedLink; item: LinkItem; fds: [number, number] }[];
  /** Links that cannot move (on node:tls: filtered, or not handed to the engine) or were ending: closed when this process exits. */
  ended: RelayedLink[];
  counters: CounterSample[];
  lastCreation: [string, number][];
  thaw: (() => void)[];
  releaseStandIns: () => void;
}

const withTimeout = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} not done within ${ms} ms`)), ms);
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      (e: unknown) => (clearTimeout(t), reject(e as Error)),
    );
  });

export async function freeze(p: GatewayParts): Promise<Frozen> {
  const f: Frozen = { frozenAt: Date.now(), listeners: [], registrations: [], links: [], ended: [], counters: [], lastCreation: [], thaw: [], releaseStandIns: () => undefined };
  try {
    // Links in the middle of their own move to the engine finish it first (bounded: HANDOVER_TIMEOUT_MS each).
    const settleBy = Date.now() + TAKEOVER_SETTLE_MS;
    while ([...p.table.established].some((l) => l.settling) && Date.now() < settleBy) await new Promise((r) => setTimeout(r, 10));
    for (const l of p.listeners()) {
      const fd = detach(p.passfd, l.server);
      f.listeners.push({ item: { kind: l.kind, host: l.host, port: l.port }, fd });
      f.thaw.push(() => l.server.listen({ fd }));
    }
    for (const l of p.epmd.listeners()) {
      const fd = detach(p.passfd, l.server);
      f.listeners.push({ item: { kind: 'epmd', host: l.host, port: l.port }, fd });
      f.thaw.push(() => l.server.listen({ fd }));
    }
    const standIns = await p.standIns.freeze((s) => detach(p.passfd, s));
    for (const s of standIns) {
      f.listeners.push({ item: { kind: 'stand-in', host: s.alias, port: s.port, standIn: { peer: s.peer, short: s.short } }, fd: s.fd });
      f.thaw.push(s.thaw);
    }
    f.releaseStandIns = () => standIns.forEach((s) => s.release());
    const links = [...p.table.established];
    const parked = await withTimeout(Promise.all(links.map((l) => l.park())), TAKEOVER_TIMEOUT_MS, 'parking the links');
    links.forEach((link, i) => {
      const state = parked[i];
      const at = link.parked;
      if (!state || !at) return void f.ended.push(link);
      const { peerCert, ...info } = link.info;
      f.links.push({
        link,
        item: { info: { ...info, peerCert: peerCert.toString() }, startedAt: link.startedAt, params: at.params, parked: state },
        fds: [state.detached.localFd, state.detached.remoteFd],
      });
    });
    // Every byte up to the park is in the counters handed over.
    for (const l of p.table.established) l.flush();
    f.counters = await counterSamples(p.metrics.registry, ['gateway']);
    for (const r of p.epmd.registrations.values()) {
      f.registrations.push({
        item: { name: r.name, port: r.port, nodeType: r.nodeType, highestVersion: r.highestVersion, lowestVersion: r.lowestVersion, creation: r.creation, kind: r.kind },
        fd: dupOf(p.passfd, r.socket),
      });
    }
    f.lastCreation = p.epmd.creations();
    return f;
  } catch (err) {
    thaw(p, f);
    throw err;
  }
}

function detach(passfd: PassFd, server: net.Server): number {
  const fd = dupOf(passfd, server);
  server.close();
  return fd;
}

/** The take-over did not happen: listeners accept again, links are relayed again, from where they stopped. */
export function thaw(p: GatewayParts, f: Frozen): void {
  for (const t of f.thaw) {
    try {
      t();
    } catch (err) {
      p.logger.error('listener not restored after a take-over that did not happen', { detail: (err as Error).message });
    }
  }
  f.thaw = [];
  for (const r of f.registrations) closeSync(r.fd);
  f.registrations = [];
  for (const l of f.links) l.link.unpark();
  f.links = [];
}

/** The take-over happened: the next process holds every listener, registration and moved link; here they are closed without a word. */
export function handOff(p: GatewayParts, f: Frozen): void {
  for (const l of f.listeners) closeSync(l.fd);
  f.releaseStandIns();
  for (const r of f.registrations) closeSync(r.fd);
  p.epmd.handOffRegistrations();
  for (const l of f.links) l.link.handedOff();
}
