// The roster nodes of this gateway's host that are expected and not
// registered with its EPMD: one series per roster node of the host
// (beamgate_roster_node_registered, 1 or 0) and the names /readyz lists. A node
// the roster puts on this host but that is not registered is down, or cannot
// reach its gateway (a namespace it lost, an EPMD port it does not use): the
// gateway itself is fine, which is why neither /healthz nor `ready` changes,
// and only this shows it (alert BeamgateNodeNotRegistered in deploy/alerts.yml).

import { Gauge, type Registry } from 'prom-client';
import type { NodeSpec } from '../config/roster.js';

export const ROSTER_NODE_METRIC = 'beamgate_roster_node_registered';

/** The gauge, in `registry`; its `node` label only ever holds roster node names, so it is bounded by the roster. */
export function rosterNodeGauge(registry: Registry): Gauge<'node'> {
  return new Gauge({
    name: ROSTER_NODE_METRIC,
    help: "Per roster node of this gateway's host: 1 while it is registered with this gateway's EPMD, else 0 (down, or unable to reach its gateway).",
    labelNames: ['node'],
    registers: [registry],
  });
}

/** The full names of the nodes of `expected` whose short name `registered` does not know, in roster order. */
export function unregisteredNodes(expected: readonly NodeSpec[], registered: (short: string) => boolean): string[] {
  return expected.filter((n) => !registered(n.short)).map((n) => n.name);
}

/**
 * Makes the gauge exactly the nodes of `expected` (a reload may add, move or
 * remove nodes): 1 for those registered now, 0 for the others.
 */
export function publishRosterNodes(gauge: Gauge<'node'>, expected: readonly NodeSpec[], registered: (short: string) => boolean): void {
  gauge.reset();
  for (const n of expected) gauge.labels(n.name).set(registered(n.short) ? 1 : 0);
}
