// Certificate tooling: a cluster CA and one certificate per gateway. The CA is
// the only trust root of the mesh; a gateway's identity is its roster name,
// carried as a DNS subject alternative name (see identity.ts).

import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { isIP } from 'node:net';
import { generate } from 'selfsigned';

export interface Pem {
  cert: string;
  key: string;
}

export interface CertOptions {
  /** Validity start; defaults to one minute ago to absorb clock skew. */
  notBefore?: Date;
  /** Validity end; defaults to `days` after notBefore. */
  notAfter?: Date;
  days?: number;
}

const CA_DAYS = 3650;
const GATEWAY_DAYS = 825;

function validity(opts: CertOptions, defaultDays: number): { notBeforeDate: Date; notAfterDate: Date } {
  const notBeforeDate = opts.notBefore ?? new Date(Date.now() - 60_000);
  const notAfterDate = opts.notAfter ?? new Date(notBeforeDate.getTime() + (opts.days ?? defaultDays) * 86_400_000);
  return { notBeforeDate, notAfterDate };
}

export async function createCa(commonName: string, opts: CertOptions = {}): Promise<Pem> {
  const r = await generate([{ name: 'commonName', value: commonName }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    ...validity(opts, CA_DAYS),
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  return { cert: r.cert, key: r.private };
}

/**
 * A gateway certificate, valid for both TLS server and client authentication,
 * with the gateway name as DNS SAN and, when it is an IP, the dial address.
 */
export async function createGatewayCert(ca: Pem, gateway: string, addressHost?: string, opts: CertOptions = {}): Promise<Pem> {
  const altNames: { type: 2 | 7; value?: string; ip?: string }[] = [{ type: 2, value: gateway }];
  if (addressHost && isIP(addressHost)) altNames.push({ type: 7, ip: addressHost });
  const r = await generate([{ name: 'commonName', value: gateway }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    ...validity(opts, GATEWAY_DAYS),
    ca: { cert: ca.cert, key: ca.key },
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'subjectAltName', altNames },
    ],
  });
  return { cert: r.cert, key: r.private };
}

/** Mode of every private key file written. */
export const KEY_FILE_MODE = 0o600;

/**
 * Writes a PEM pair; the key ends with mode 0600 whether it is created or
 * overwritten, and nothing is overwritten unless asked. writeFileSync's mode
 * applies only to a file it creates, so an existing key is chmod-ed before
 * the new key goes in (never readable by others with the new key inside) and
 * after. It is rewritten in place, not replaced by a rename, so it keeps its
 * owner (a gateway that runs as another user reads it) and its inode (a
 * container that bind-mounts the file sees the new key).
 */
export function writePem(certPath: string, keyPath: string, pem: Pem, overwrite: boolean): void {
  for (const path of [certPath, keyPath]) {
    if (!overwrite && existsSync(path)) throw new Error(`${path} exists; refusing to overwrite it (use --force)`);
    mkdirSync(dirname(path), { recursive: true });
  }
  if (overwrite && existsSync(keyPath)) chmodSync(keyPath, KEY_FILE_MODE);
  writeFileSync(keyPath, pem.key, { mode: KEY_FILE_MODE, flag: overwrite ? 'w' : 'wx' });
  chmodSync(keyPath, KEY_FILE_MODE);
  writeFileSync(certPath, pem.cert, { mode: 0o644, flag: overwrite ? 'w' : 'wx' });
}

/** Where the CA's private key lives: beside ca.pem, never shipped to gateways. */
export function caKeyPath(caCertPath: string): string {
  return join(dirname(caCertPath), 'ca-key.pem');
}
