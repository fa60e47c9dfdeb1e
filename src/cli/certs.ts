// `beamgate certs`: the cluster CA (created once, never overwritten) and one
// certificate per gateway of the roster, at the paths the roster names.

import { existsSync, readFileSync } from 'node:fs';
import type { Roster } from '../config/roster.js';
import { tlsPathsFor } from '../config/roster.js';
import { caKeyPath, createCa, createGatewayCert, type Pem, writePem } from '../pki/generate.js';

export interface CertsResult {
  ca: 'created' | 'reused';
  written: string[];
  skipped: string[];
}

export async function issueCerts(roster: Roster, gateways: string[], force: boolean, log: (line: string) => void = () => {}): Promise<CertsResult> {
  const caPath = tlsPathsFor(roster, '_').ca;
  if (caPath.includes('{gateway}')) throw new Error('tls.ca must not depend on {gateway}: there is one CA per cluster');
  const caKey = caKeyPath(caPath);
  let ca: Pem;
  let caState: CertsResult['ca'];
  if (existsSync(caPath) || existsSync(caKey)) {
    if (!existsSync(caPath) || !existsSync(caKey)) {
      throw new Error(`found only one of ${caPath} and ${caKey}; refusing to create a new CA over half of an old one`);
    }
    ca = { cert: readFileSync(caPath, 'utf8'), key: readFileSync(caKey, 'utf8') };
    caState = 'reused';
    log(`CA: reusing ${caPath}`);
  } else {
    ca = await createCa('beamgate cluster CA');
    writePem(caPath, caKey, ca, false);
    caState = 'created';
    log(`CA: created ${caPath} (its key ${caKey} stays on this machine; do not copy it to gateways)`);
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
    const pem = await createGatewayCert(ca, name, gw.address.host);
    writePem(paths.cert, paths.key, pem, force);
    written.push(name);
    log(`${name}: wrote ${paths.cert} and ${paths.key} (mode 0600)`);
  }
  return { ca: caState, written, skipped };
}
