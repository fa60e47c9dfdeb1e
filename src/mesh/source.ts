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
  if (admission.kind === 'node') return admission.node.name;
  if ((flags & DFLAG_PUBLISHED) !== 0n) throw new Refusal('operator_not_hidden', `operator node ${name} must connect as a hidden node`);
  return admission.operator.pattern;
}
