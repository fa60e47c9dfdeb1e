// Which firewall filter a link gets at this gateway: the one for what the
// remote node sends the local one (the receiving host enforces: it protects
// its own nodes, and a peer gateway may be compromised). Asked when a link
// starts and, for every open link, at a reload.

import { admissionOn, type Roster } from '../config/roster.js';
import type { HoldBudget } from '../filter/hold-budget.js';
import { InboundFilter } from '../filter/link-filter.js';
import { type LinkFilter, linkFilter } from '../policy/filter.js';
import type { LinkInfo } from './link.js';

/** The filter on what `info`'s remote node sends its local node, or undefined when the link is not filtered. */
export function filterFor(roster: Pick<Roster, 'policy' | 'gateways' | 'nodes' | 'operators'>, self: string, info: Pick<LinkInfo, 'direction' | 'peer' | 'sourceName' | 'targetName' | 'sourceHidden'>): LinkFilter | undefined {
  if (!roster.policy) return undefined;
  const inbound = info.direction === 'inbound';
  const target = admissionOn(roster as Roster, inbound ? self : info.peer, info.targetName);
  const hidden = info.sourceHidden || target.kind === 'operator';
  const [remote, local] = inbound ? [info.sourceName, info.targetName] : [info.targetName, info.sourceName];
  return linkFilter(roster.policy, remote, local, hidden);
}

/**
 * The per-link filter state for a link that starts filtered, else undefined.
 * `maxFrameBytes` is the bound the link's DistStreams enforce (the limits of
 * when its connection began, which a reload since may have changed); what
 * it holds counts against the gateway's `holds`.
 */
export function inboundFilterFor(roster: Roster, self: string, info: LinkInfo, maxFrameBytes: number, holds: HoldBudget): InboundFilter | undefined {
  const f = filterFor(roster, self, info);
  return f ? new InboundFilter(f, maxFrameBytes, holds) : undefined;
}
