// The new process takes what a committed take-over handed it (take.ts):
// counters first (so nothing it counts is lost under them), then every link
// into its engine, each checked against this process's roster as a reload
// would (a link it would refuse is cut), then the listeners (by address,
// src/takeover/inherited.ts) and the nodes' registrations as the gateway starts.

import { closeSync } from 'node:fs';
import type { NativeEngine } from '../fastpath/native.js';
import type { EpmdServer } from '../epmd/server.js';
import type { Logger } from '../log/logger.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import type { ActiveConfig } from '../mesh/context.js';
import type { LinkDeps } from '../mesh/link.js';
import { filterFor } from '../mesh/filtering.js';
import { chainsToBundle, readmit } from '../mesh/readmit.js';
import { Refusal } from '../mesh/refusal.js';
import { AdoptedLink } from './adopted-link.js';
import { addCounterSamples } from './counters.js';
import { inherit } from './inherited.js';
import { linkInfoOf } from './protocol.js';
import type { Taken } from './take.js';

export interface AdoptParts {
  metrics: GatewayMetrics;
  logger: Logger;
  engine: NativeEngine | undefined;
  epmd: EpmdServer;
  active(): ActiveConfig;
  linkDeps: Pick<LinkDeps, 'metrics' | 'linkLog' | 'refusalLog' | 'table'>;
}

/** Counters, links and listeners: before the gateway's listeners start. Returns the links adopted. */
export function adoptLinks(p: AdoptParts, taken: Taken): number {
  const skipped = addCounterSamples(p.metrics.registry, taken.counters);
  if (skipped > 0) p.logger.warn('take-over: counter samples this build has no series for', { samples: skipped });
  p.epmd.setCreations(taken.lastCreation);
  inherit(taken.listeners);
  const { table, refusalLog } = p.linkDeps;
  let adopted = 0;
  for (const { item, fds } of taken.links) {
    const info = linkInfoOf(item);
    const [localFd, remoteFd] = fds;
    let link: AdoptedLink | undefined;
    try {
      if (!p.engine) throw new Error('no native data plane in this process');
      if (!table.reserve(info.peer)) throw new Refusal('limit_reached', 'link limits of this process reached');
      try {
        link = new AdoptedLink(info, item.startedAt, item.params, item.parked, { localFd, remoteFd }, { ...p.linkDeps, engine: p.engine });
      } catch (err) {
        table.release(info.peer);
        throw err;
      }
      adopted++;
    } catch (err) {
      if (err instanceof Refusal) {
        p.metrics.refused(err.reason);
        refusalLog.warn('link refused', err.reason, info.peer, { peer: info.peer, local_node: info.localNode, remote_node: info.remoteNode, detail: err.message });
      } else p.logger.error('take-over: link not adopted', { peer: info.peer, local_node: info.localNode, remote_node: info.remoteNode, detail: (err as Error).message });
    } finally {
      // The engine holds duplicates of both (or never took them): these were ours.
      closeSync(localFd);
      closeSync(remoteFd);
    }
    // Checked as a reload would: the roster in force here may refuse what the old process admitted.
    if (link) {
      const active = p.active();
      const refusal = chainsToBundle(active, info)
        ? (readmit(active, active.self.name, info) ?? link.refilter(filterFor(active.roster, active.self.name, info)))
        : new Refusal('wrong_identity', `certificate of ${info.peer} is not issued by a CA of this process's bundle`);
      if (refusal) link.refuse(refusal);
    }
  }
  p.metrics.takeoverLinks.labels('moved').inc(adopted);
  p.metrics.takeoverLinks.labels('ended').inc(taken.ended + taken.links.length - adopted);
  return adopted;
}

/** The nodes' registrations: after EPMD listens, before the registry announces them. */
export function adoptRegistrations(p: AdoptParts, taken: Taken): number {
  let n = 0;
  for (const { item, fd } of taken.registrations) {
    if (p.epmd.adoptRegistration(item, fd)) n++;
    else p.logger.warn('take-over: registration not taken over (name registered meanwhile)', { name: item.name });
  }
  return n;
}
