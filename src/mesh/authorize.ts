// The policy's word on one link, as both gateways ask it: the dialling side
// before it opens TLS, the accepting side before it connects to its node, and
// a reload for every open link. It depends only on the two full node names
// and on whether the connection is hidden (the dialling node's send_name
// lacks DFLAG_PUBLISHED, or the dialled node is an operator, which must
// answer hidden), not on how either end was admitted.

import type { Roster } from '../config/roster.js';
import { allowed } from '../policy/policy.js';
import { Refusal } from './refusal.js';

/** A `policy_denied` refusal (its fields name the group pair) if the roster's policy forbids the link, else undefined. */
export function policyRefusal(roster: Pick<Roster, 'policy'>, source: string, target: string, hidden: boolean): Refusal | undefined {
  const d = allowed(roster.policy, source, target, hidden);
  if (d.ok) return undefined;
  return new Refusal('policy_denied', `policy does not let ${source} link with ${target}: ${d.why}`, { from_group: d.fromGroup, to_group: d.toGroup });
}
