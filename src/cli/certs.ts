// `beamgate certs`: the cluster CA (created once, never overwritten) and one
// certificate per gateway of the roster, at the paths the roster names; and
// the three steps of a CA rollover (docs/ca-rollover.md):
//   1. `--new-ca DIR`: create a second CA in DIR and add it to the bundle (tls.ca);
//   2. `--new-ca DIR --force`: reissue the gateway certificates from it;
//   3. `--new-ca DIR --retire-old-ca`: leave only it in the bundle, and make it the cluster CA.
// The CA that issues is the one of the bundle whose key is ca-key.pem beside it
// (or, with --new-ca, DIR/ca.pem and DIR/ca-key.pem).

import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import type { Roster } from '../config/roster.js';
import { tlsPathsFor } from '../config/roster.js';
import { type CaCertificate, issuersOf, parseCaBundle } from '../pki/ca-bundle.js';
import { caKeyPath, createCa, createGatewayCert, KEY_FILE_MODE, type Pem, writePem } from '../pki/generate.js';

export interface CertsOptions {
  /** Directory of the new CA of a rollover (its ca.pem and ca-key.pem); created with the CA when absent. */
  newCa?: string;
  /** Step 3: only the new CA stays in the bundle and becomes the cluster CA. */
  retireOldCa?: boolean;
}

export interface CertsResult {
  ca: 'created' | 'reused';
  /** What happened to the bundle file (tls.ca). */
  bundle: 'written' | 'unchanged' | 'ca added' | 'old CAs retired';
  written: string[];
  skipped: string[];
}

export async function issueCerts(roster: Roster, gateways: string[], force: boolean, log: (line: string) => void = () => {}, opts: CertsOptions = {}): Promise<CertsResult> {
  const caPath = tlsPathsFor(roster, '_').ca;
  if (caPath.includes('{gateway}')) throw new Error('tls.ca must not depend on {gateway}: there is one CA bundle per cluster');
  if (opts.retireOldCa && !opts.newCa) throw new Error('--retire-old-ca needs --new-ca DIR: the CA that stays');
  if (opts.retireOldCa && force) throw new Error('--retire-old-ca changes only the bundle; reissue certificates (--force) in the step before');
  const caKey = caKeyPath(caPath);
  let caState: CertsResult['ca'];
  let bundleState: CertsResult['bundle'] = 'unchanged';
  let issuer: Pem;

  if (!opts.newCa) {
    if (existsSync(caPath) || existsSync(caKey)) {
      requireBoth(caPath, caKey, 'create a new CA');
      issuer = issuingCa(readBundle(caPath, log), readFileSync(caKey, 'utf8'), caKey, caPath);
      caState = 'reused';
      log(`CA: reusing ${caPath}`);
    } else {
      issuer = await createCa('beamgate cluster CA');
      writePem(caPath, caKey, issuer, false);
      caState = 'created';
      bundleState = 'written';
      log(`CA: created ${caPath} (its key ${caKey} stays on this machine; do not copy it to gateways)`);
    }
  } else {
    const dir = resolve(opts.newCa);
    const next = { cert: join(dir, 'ca.pem'), key: join(dir, 'ca-key.pem') };
    if (next.cert === resolve(caPath) || dir === resolve(dirname(caPath))) {
      throw new Error(`--new-ca ${opts.newCa} is where the current CA lives (${caPath}); give the new CA a directory of its own`);
    }
    if (!existsSync(caPath) || !existsSync(caKey)) {
      throw new Error(`there is no current CA (${caPath} and ${caKey}) to roll over from; run certs without --new-ca to create the first one`);
    }
    const cas = readBundle(caPath, log);
    if (existsSync(next.cert) || existsSync(next.key)) {
      requireBoth(next.cert, next.key, 'create a new CA');
      issuer = { cert: readFileSync(next.cert, 'utf8'), key: readFileSync(next.key, 'utf8') };
      caState = 'reused';
      log(`new CA: reusing ${next.cert}`);
    } else {
      // A subject of its own: OpenSSL finds a certificate's issuer by name, and `check`, logs and TLS errors tell the CAs apart by it.
      issuer = await createCa(`beamgate cluster CA ${new Date().toISOString().slice(0, 10)} ${randomBytes(3).toString('hex')}`);
      writePem(next.cert, next.key, issuer, false);
      caState = 'created';
      log(`new CA: created ${next.cert} (its key ${next.key} stays on this machine)`);
    }
    const nextX = new X509Certificate(issuer.cert);
    if (opts.retireOldCa) {
      retire(roster, caPath, caKey, cas, issuer, nextX, log);
      return { ca: caState, bundle: 'old CAs retired', written: [], skipped: [...roster.gateways.keys()] };
    }
    if (cas.some((c) => c.x509.fingerprint256 === nextX.fingerprint256)) {
      log(`bundle: ${caPath} already holds the new CA (serial ${nextX.serialNumber})`);
    } else {
      const text = readFileSync(caPath, 'utf8');
      const bundle = `${text.trimEnd()}\n${issuer.cert.trim()}\n`;
      // Checked whole before it replaces anything: the bound, every CA, no serial twice.
      const parsed = parseCaBundle(bundle, caPath);
      if (Array.isArray(parsed)) throw new Error(parsed.join('\n'));
      writeInPlace(caPath, bundle);
      bundleState = 'ca added';
      log(`bundle: added the new CA (serial ${nextX.serialNumber}) to ${caPath}, now ${parsed.cas.length} CAs; copy it to every gateway and reload them all before reissuing (step 1 of docs/ca-rollover.md)`);
    }
  }

  const written: string[] = [];
  const skipped: string[] = [];
  for (const name of gateways) {
    const gw = roster.gateways.get(name);
    if (!gw) throw new Error(`gateway "${name}" is not in the roster`);
    const paths = tlsPathsFor(roster, name);
    if (!force && (existsSync(paths.cert) || existsSync(paths.key))) {
      skipped.push(name);
      log(`${name}: ${paths.cert} exists, kept (use --force to reissue)`);
      continue;
    }
    const pem = await createGatewayCert(issuer, name, gw.address.host);
    writePem(paths.cert, paths.key, pem, force);
    written.push(name);
    log(`${name}: wrote ${paths.cert} and ${paths.key} (mode 0600)`);
  }
  return { ca: caState, bundle: bundleState, written, skipped };
}

/**
 * Step 3: refuses unless every roster gateway's certificate here is the new
 * CA's (a gateway left on the old CA would be cut off), keeps each old CA and
 * the old key as ca-retired-SERIAL(-key).pem beside the bundle, then writes the
 * bundle with the new CA alone and the new key as ca-key.pem.
 */
function retire(roster: Roster, caPath: string, caKey: string, cas: CaCertificate[], next: Pem, nextX: X509Certificate, log: (line: string) => void): void {
  const nextCa = cas.find((c) => c.x509.fingerprint256 === nextX.fingerprint256);
  if (!nextCa) throw new Error(`${caPath} does not hold the new CA (serial ${nextX.serialNumber}): run step 1 (--new-ca without --retire-old-ca) first`);
  const left: string[] = [];
  for (const name of roster.gateways.keys()) {
    const path = tlsPathsFor(roster, name).cert;
    if (!existsSync(path)) {
      left.push(`${name} (no certificate at ${path})`);
      continue;
    }
    if (issuersOf(new X509Certificate(readFileSync(path)), [nextCa]).length === 0) left.push(`${name} (${path})`);
  }
  if (left.length > 0) {
    throw new Error(`not every gateway has a certificate from the new CA: ${left.join(', ')}; reissue them first (step 2: --new-ca DIR --force) and reload them`);
  }
  const oldKey = readFileSync(caKey, 'utf8');
  const oldKeyCa = cas.find((c) => matchesKey(c, oldKey));
  for (const old of cas) {
    if (old === nextCa) continue;
    const keep = join(dirname(caPath), `ca-retired-${old.serial}.pem`);
    if (!existsSync(keep)) writeFileSync(keep, old.pem, { mode: 0o644, flag: 'wx' });
    log(`retired CA ${old.subject} (serial ${old.serial}): kept as ${keep}`);
  }
  if (oldKeyCa && oldKeyCa !== nextCa) {
    const keep = join(dirname(caPath), `ca-retired-${oldKeyCa.serial}-key.pem`);
    if (!existsSync(keep)) writeFileSync(keep, oldKey, { mode: KEY_FILE_MODE, flag: 'wx' });
    log(`retired CA key: kept as ${keep} (mode 0600)`);
  }
  writeInPlace(caPath, next.cert.trim() + '\n');
  writeInPlace(caKey, next.key, KEY_FILE_MODE);
  log(`bundle: ${caPath} now holds only the new CA (serial ${nextCa.serial}), and ${caKey} is its key; copy the bundle to every gateway and reload them all (step 3 of docs/ca-rollover.md)`);
}

function requireBoth(cert: string, key: string, what: string): void {
  if (!existsSync(cert) || !existsSync(key)) throw new Error(`found only one of ${cert} and ${key}; refusing to ${what} over half of an old one`);
}

function readBundle(path: string, log: (line: string) => void): CaCertificate[] {
  const parsed = parseCaBundle(readFileSync(path, 'utf8'), path);
  if (Array.isArray(parsed)) throw new Error(parsed.join('\n'));
  for (const w of parsed.warnings) log(`warning: ${w}`);
  return parsed.cas;
}

function matchesKey(ca: CaCertificate, keyPem: string): boolean {
  try {
    return ca.x509.checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

/** The CA of the bundle whose private key is `keyPem`: the one that issues. */
function issuingCa(cas: CaCertificate[], keyPem: string, keyPath: string, bundlePath: string): Pem {
  const ca = cas.find((c) => matchesKey(c, keyPem));
  if (!ca) throw new Error(`${keyPath} is the key of no CA in ${bundlePath}; in the middle of a rollover, pass --new-ca DIR`);
  return { cert: ca.pem, key: keyPem };
}

/**
 * Rewrites a file in place (same inode and owner: a container bind-mounts
 * ca.pem on its own, and a rename would leave it the old file); a key is
 * chmod-ed first, so it is never open to others with new content inside.
 */
function writeInPlace(path: string, text: string, mode?: number): void {
  if (mode !== undefined && existsSync(path)) chmodSync(path, mode);
  writeFileSync(path, text, mode !== undefined ? { mode } : {});
  if (mode !== undefined) chmodSync(path, mode);
}
