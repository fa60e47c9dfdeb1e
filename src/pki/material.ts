// Loads and checks one gateway's TLS material before any socket opens: files
// readable, the key private to its owner (no group or other access), the
// certificate signed by the CA, matching the key, naming this gateway,
// currently valid, and not revoked by the roster.

import { readFileSync, statSync } from 'node:fs';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { revokedSerial, type Roster, type TlsPaths } from '../config/roster.js';
import { identityFromSan } from './identity.js';

/** Permission bits that make a private key unusable: anything for group or others. */
export const KEY_FORBIDDEN_MODE_BITS = 0o077;

export interface TlsMaterial {
  ca: string;
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

  let caX: X509Certificate;
  let certX: X509Certificate;
  try {
    caX = new X509Certificate(ca);
  } catch (err) {
    return [...problems, `tls.ca: ${paths.ca} is not a PEM certificate: ${(err as Error).message}`];
  }
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
  if (!caX.ca) problems.push(`tls.ca: ${paths.ca} is not a CA certificate`);
  if (!certX.verify(caX.publicKey)) problems.push(`tls.cert: ${paths.cert} is not signed by the CA in ${paths.ca}`);
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
  if (Date.parse(caX.validTo) <= now) problems.push(`tls.ca: ${paths.ca} expired on ${caX.validTo}`);
  return problems.length > 0 ? problems : { ca, cert, key, paths };
}
