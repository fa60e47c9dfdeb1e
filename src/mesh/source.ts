import { admissionOn, type Roster } from '../config/roster.js';
import { DFLAG_PUBLISHED } from '../framing/handshake.js';
import type { RefusalReason } from '../metrics/metrics.js';
import { Refusal } from './refusal.js';

/**
 * Checks the node that named itself in send_name against the roster: a roster
 * node of `gateway`, or an operator admitted there that connects hidden.
 * Returns the bounded label for metrics (the node name, or the operator pattern).
 */
export function admitSource(roster: Roster, gateway: string, name: string, flags: bigint, refusal: RefusalReason): string {
  const admission = admissionOn(roster, gateway, name);
  if (admission.kind === 'none') throw new Refusal(refusal, `node ${name} is not admitted on gateway ${gateway}`);
  if (admission.kind === 'local') throw new Refusal(refusal, `node ${name} is local-only on gateway ${gateway} (pattern ${admission.pattern.pattern}): it may not link beyond its host`);
  if (admission.kind === 'node') return admission.node.name;
  if ((flags & DFLAG_PUBLISHED) !== 0n) throw new Refusal('operator_not_hidden', `operator node ${name} must connect as a hidden node`);
  return admission.operator.pattern;
}

/**
 * The bounded metrics label of a link's target, and whether it is an
 * operator (which must then answer as a hidden node); undefined when the
 * roster does not let the target take part in the mesh.
 */
export function targetLabel(roster: Roster, gateway: string, name: string): { label: string; operator: boolean } | undefined {
  const a = admissionOn(roster, gateway, name);
  if (a.kind === 'node') return { label: a.node.name, operator: false };
  if (a.kind === 'operator') return { label: a.operator.pattern, operator: true };
  return undefined;
}

/** Refuses an operator that answered a dial as a visible node (its challenge carries DFLAG_PUBLISHED). */
export function checkOperatorHidden(name: string, flags: bigint): void {
  if ((flags & DFLAG_PUBLISHED) !== 0n) throw new Refusal('operator_not_hidden', `operator node ${name} must run as a hidden node`);
}
