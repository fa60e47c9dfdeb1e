// A reload puts a new roster in force, and an open link stays up only if the
// new roster would admit it now. Otherwise removing a gateway from the roster,
// revoking its certificate or tightening the policy would still leave it the
// links it already has.

import { admissionOn, inMesh, revokedSerial, type Roster } from '../config/roster.js';
import type { LinkInfo } from './link.js';
import { policyRefusal } from './authorize.js';
import { Refusal } from './refusal.js';

/** Why `roster` would refuse this open link of gateway `self`, or undefined if it admits it. */
export function readmit(roster: Roster, self: string, info: LinkInfo): Refusal | undefined {
  if (!roster.gateways.has(info.peer)) return new Refusal('wrong_identity', `gateway ${info.peer} is no longer in the roster`);
  const serial = revokedSerial(roster, info.peerSerial);
  if (serial) return new Refusal('cert_revoked', `certificate of ${info.peer} (serial ${serial}) is now revoked`);
  const inbound = info.direction === 'inbound';
  const sourceGateway = inbound ? info.peer : self;
  if (!inMesh(admissionOn(roster, sourceGateway, info.sourceName))) {
    return new Refusal(inbound ? 'node_not_owned' : 'not_in_roster', `node ${info.sourceName} is no longer admitted on gateway ${sourceGateway}`);
  }
  const targetGateway = inbound ? self : info.peer;
  const target = admissionOn(roster, targetGateway, info.targetName);
  if (!inMesh(target)) {
    return new Refusal('unknown_target', `${info.targetName} is no longer a node or operator of gateway ${targetGateway}`);
  }
  return policyRefusal(roster, info.sourceName, info.targetName, info.sourceHidden || target.kind === 'operator');
}
