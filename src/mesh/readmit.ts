// A reload puts a new roster and CA bundle in force, and an open link stays up
// only if they would admit it now. Otherwise removing a gateway from the
// roster, revoking its certificate, tightening the policy or removing its CA
// would still leave it the links it already has.

import { admissionOn, inMesh, revokedSerial } from '../config/roster.js';
import { READMIT_CHAIN_CACHE_ENTRIES } from '../config/limits.js';
import { type CaCertificate, issuersOf, oneLine } from '../pki/ca-bundle.js';
import type { ActiveConfig } from './context.js';
import type { LinkInfo } from './link.js';
import { policyRefusal } from './authorize.js';
import { Refusal } from './refusal.js';

/**
 * Why the configuration `active` would refuse this open link of gateway
 * `self`, or undefined if it admits it.
 *
 * `provenPeers` are peer gateways that, since this configuration came in
 * force, completed a TLS handshake in which they presented a certificate
 * its CAs accept (Gateway.applyReload dials them to find out). A link whose
 * peer certificate chains to no CA in force any more is kept for those: the
 * peer moved to a remaining CA (step 2 of a rollover, docs/ca-rollover.md),
 * and a link of a distribution connection cannot be re-authenticated without
 * being cut. Every other such link is cut as `unknown_ca`, the reason its
 * certificate would get in a new handshake.
 */
export function readmit(active: Pick<ActiveConfig, 'roster' | 'cas'>, self: string, info: LinkInfo, provenPeers: ReadonlySet<string> = new Set()): Refusal | undefined {
  const { roster } = active;
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
  if (!chainsToBundle(active, info) && !provenPeers.has(info.peer)) {
    return new Refusal(
      'unknown_ca',
      `certificate of ${info.peer} (serial ${info.peerSerial}) was issued by ${oneLine(info.peerCert.issuer)}, no longer a CA in tls.ca, and ${info.peer} did not present a certificate of a remaining CA`,
    );
  }
  return policyRefusal(roster, info.sourceName, info.targetName, info.sourceHidden || target.kind === 'operator');
}

/**
 * Per CA bundle in force (a reload brings a new one), whether each peer
 * certificate, by its SHA-256 fingerprint, was issued by one of its CAs.
 * Every link's set-up asks this of its peer's certificate, on both sides,
 * and the answer costs a signature verification per CA: a peer presents the
 * same certificate on every connection, so it is verified once per bundle.
 * Only certificates that passed a TLS handshake come here, so the entries
 * are the peers' own, bounded by READMIT_CHAIN_CACHE_ENTRIES all the same.
 */
const chained = new WeakMap<readonly CaCertificate[], Map<string, boolean>>();

/** Whether the link's peer certificate was issued by a CA of the bundle in force. */
export function chainsToBundle(active: Pick<ActiveConfig, 'cas'>, info: Pick<LinkInfo, 'peerCert'>): boolean {
  let known = chained.get(active.cas);
  if (!known) {
    known = new Map();
    chained.set(active.cas, known);
  }
  const key = info.peerCert.fingerprint256;
  let issued = known.get(key);
  if (issued === undefined) {
    issued = issuersOf(info.peerCert, active.cas).length > 0;
    if (known.size < READMIT_CHAIN_CACHE_ENTRIES) known.set(key, issued);
  }
  return issued;
}
