// Loads and checks one gateway's TLS material before any socket opens: files
// readable, the key private to its owner (no group or other access), every CA
// of the bundle checked (ca-bundle.ts), the certificate signed by one of them
// that is valid now, matching the key, naming this gateway, currently valid,
// and not revoked by the roster.

import { readFileSync, statSync } from 'node:fs';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { revokedSerial, type Roster, type TlsPaths } from '../config/roster.js';
import { type CaCertificate, issuersOf, parseCaBundle, validAt } from './ca-bundle.js';
import { identityFromSan } from './identity.js';

/** Permission bits that make a private key unusable: anything for group or others. */
export const KEY_FORBIDDEN_MODE_BITS = 0o077;

export interface TlsMaterial {
  /** The bundle file as read. */
  ca: string;
  /** Its CA certificates: the trust roots, in file order. */
  cas: CaCertificate[];
  /** Problems that do not stop the gateway (a CA of the bundle out of its validity period); logged at start and reload. */
  warnings: string[];
  cert: string;
  key: string;
  paths: TlsPaths;
}

export function loadTlsMaterial(paths: TlsPaths, gateway: string, roster: Pick<Roster, 'gateways' | 'revoked'>, now = Date.now()): TlsMaterial | string[] {
  const problems: string[] = [];
  const read = (what: string, path: string): string | undefined => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      problems.push(`tls.${what}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return undefined;
    }
  };
  const ca = read('ca', paths.ca);
  const cert = read('cert', paths.cert);
  const key = read('key', paths.key);
  if (key !== undefined) {
    // As ssh does for its keys: any access beyond the owner's is refused, so a
    // key copied with a careless umask never goes into service.
    const mode = statSync(paths.key).mode & 0o777;
    if (mode & KEY_FORBIDDEN_MODE_BITS) {
      const who = mode & 0o007 ? 'every user' : 'its group';
      problems.push(`tls.key: ${paths.key} has mode ${mode.toString(8).padStart(4, '0')}, open to ${who}; private keys must be 0600 or 0400 (run chmod 600 ${paths.key})`);
    }
  }
  if (ca === undefined || cert === undefined || key === undefined) return problems;

  const bundle = parseCaBundle(ca, paths.ca, now);
  if (Array.isArray(bundle)) return [...problems, ...bundle];
  let certX: X509Certificate;
  try {
    certX = new X509Certificate(cert);
  } catch (err) {
    return [...problems, `tls.cert: ${paths.cert} is not a PEM certificate: ${(err as Error).message}`];
  }
  try {
    if (!certX.checkPrivateKey(createPrivateKey(key))) problems.push(`tls.key: ${paths.key} does not match ${paths.cert}`);
  } catch (err) {
    problems.push(`tls.key: ${paths.key} is not a usable private key: ${(err as Error).message}`);
  }
  const issuers = issuersOf(certX, bundle.cas);
  if (issuers.length === 0) {
    const serials = bundle.cas.map((c) => c.serial).join(', ');
    problems.push(`tls.cert: ${paths.cert} is not signed by ${bundle.cas.length > 1 ? `any of the ${bundle.cas.length} CAs` : 'the CA'} in ${paths.ca} (serial ${serials})`);
  } else if (!issuers.some((c) => validAt(c, now))) {
    problems.push(`tls.cert: ${paths.cert} is signed only by CA serial ${issuers.map((c) => c.serial).join(', ')}, which is not valid now`);
  }
  const identity = identityFromSan(certX.subjectAltName, roster.gateways.keys());
  if (!identity.ok) problems.push(`tls.cert: ${paths.cert}: ${identity.reason}`);
  else if (identity.gateway !== gateway) {
    problems.push(`tls.cert: ${paths.cert} is the certificate of gateway ${identity.gateway}, not ${gateway}`);
  }
  if (Date.parse(certX.validTo) <= now) problems.push(`tls.cert: ${paths.cert} expired on ${certX.validTo}`);
  if (Date.parse(certX.validFrom) > now) problems.push(`tls.cert: ${paths.cert} is not valid before ${certX.validFrom}`);
  const serial = revokedSerial(roster, certX.serialNumber);
  if (serial !== undefined) {
    problems.push(`tls.cert: ${paths.cert} (serial ${serial}) is listed in tls.revoked; issue this gateway a new certificate (beamgate certs --gateway ${gateway} --force)`);
  }
  return problems.length > 0 ? problems : { ca, cas: bundle.cas, warnings: bundle.warnings, cert, key, paths };
}
