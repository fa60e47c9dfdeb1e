// Every CA certificate in tls.ca is a trust root: the bundle is parsed whole
// and bounded, each CA checked, the gateway's certificate accepted from any
// valid one of them, and both TLS roles trust every CA of the bundle.

import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRoster } from '../../src/config/roster.js';
import { classifyVerifyError, clientOptions, makeSecureContext, serverOptions } from '../../src/mesh/tls.js';
import { describeCa, issuersOf, MAX_CA_CERTIFICATES, parseCaBundle } from '../../src/pki/ca-bundle.js';
import { createCa, createGatewayCert, type Pem } from '../../src/pki/generate.js';
import { loadTlsMaterial, type TlsMaterial } from '../../src/pki/material.js';

const DAY = 86_400_000;
const [ca1, ca2, stranger] = await Promise.all([createCa('CA one'), createCa('CA two'), createCa('CA stranger')]);
const expired = await createCa('CA expired', { notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
const future = await createCa('CA future', { notBefore: new Date(Date.now() + DAY), days: 10 });

const roster = parseRoster(
  `
gateways:
  alpha: { host: alpha.example, address: "127.0.0.1:4370" }
  beta:  { host: beta.example,  address: "127.0.0.1:4371" }
nodes: []
tls: { ca: ca.pem, cert: "{gateway}.pem", key: "{gateway}-key.pem" }
`,
  '/etc/beamgate',
);

const dir = mkdtempSync(join(tmpdir(), 'beamgate-ca-bundle-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
/** Writes a bundle and a gateway's pair to fresh files and loads them as `run` does. */
function material(bundle: string[], gateway: string, pem: Pem): TlsMaterial | string[] {
  const at = join(dir, String(n++));
  const paths = { ca: `${at}-ca.pem`, cert: `${at}-cert.pem`, key: `${at}-key.pem` };
  writeFileSync(paths.ca, bundle.join(''));
  writeFileSync(paths.cert, pem.cert);
  writeFileSync(paths.key, pem.key, { mode: 0o600 });
  return loadTlsMaterial(paths, gateway, roster);
}

describe('parsing a CA bundle', () => {
  it('takes every certificate of the bundle, in order, each with subject, serial and expiry', () => {
    const b = parseCaBundle(`# the cluster CAs\n${ca1.cert}\n\n${ca2.cert}`, 'ca.pem');
    if (Array.isArray(b)) throw new Error(b.join('\n'));
    expect(b.cas.map((c) => c.subject)).toEqual(['CN=CA one', 'CN=CA two']);
    expect(b.cas[0]!.serial).toMatch(/^[1-9A-F][0-9A-F]*$/);
    expect(b.cas[0]!.serial).not.toBe(b.cas[1]!.serial);
    expect(b.warnings).toEqual([]);
    expect(describeCa(b.cas[1]!)).toMatch(/^CN=CA two, serial [0-9A-F]+, expires \d{4}-\d\d-\d\dT.*Z \((3649|3650) days left\)$/);
  });

  it(`refuses more than MAX_CA_CERTIFICATES (${MAX_CA_CERTIFICATES}) CAs, an empty file, a non-CA and a CA listed twice`, async () => {
    const many = await Promise.all(Array.from({ length: MAX_CA_CERTIFICATES + 1 }, (_, i) => createCa(`CA ${i}`)));
    expect(parseCaBundle(many.map((c) => c.cert).join(''), 'ca.pem')).toEqual([
      `tls.ca: ca.pem holds ${MAX_CA_CERTIFICATES + 1} certificates, more than ${MAX_CA_CERTIFICATES}; a rollover needs two (docs/ca-rollover.md)`,
    ]);
    const exactly = parseCaBundle(many.slice(0, MAX_CA_CERTIFICATES).map((c) => c.cert).join(''), 'ca.pem');
    expect(Array.isArray(exactly) ? exactly : exactly.cas.length).toBe(MAX_CA_CERTIFICATES);
    expect(parseCaBundle('not a certificate', 'ca.pem')).toEqual(['tls.ca: ca.pem holds no PEM certificate']);
    const leaf = (await createGatewayCert(ca1, 'alpha')).cert;
    expect(parseCaBundle(ca1.cert + leaf, 'ca.pem')).toEqual([expect.stringMatching(/^tls\.ca: ca\.pem \(certificate 2 of 2\) \(serial [0-9A-F]+\) is not a CA certificate$/)]);
    expect(parseCaBundle(ca1.cert + ca2.cert + ca1.cert, 'ca.pem')).toEqual([expect.stringMatching(/^tls\.ca: ca\.pem \(certificate 3 of 3\) has serial [0-9A-F]+, as an earlier certificate of the bundle does/)]);
    const mangled = ca1.cert.replace(/\n[A-Za-z0-9+/]{20}/, '\n!!!!');
    expect(parseCaBundle(mangled, 'ca.pem')).toEqual([expect.stringMatching(/^tls\.ca: ca\.pem is not a PEM certificate/)]);
  });

  it('an expired or not yet valid CA is a warning while another CA is valid, an error when none is', () => {
    const b = parseCaBundle(ca1.cert + expired.cert + future.cert, 'ca.pem');
    if (Array.isArray(b)) throw new Error(b.join('\n'));
    expect(b.cas).toHaveLength(3);
    expect(b.warnings).toEqual([
      expect.stringMatching(/^tls\.ca: CA CN=CA expired \(serial [0-9A-F]+\) in ca\.pem expired on .*; it verifies nothing, remove it from the bundle$/),
      expect.stringMatching(/^tls\.ca: CA CN=CA future \(serial [0-9A-F]+\) in ca\.pem is not valid before /),
    ]);
    expect(parseCaBundle(expired.cert + future.cert, 'ca.pem')).toEqual([
      expect.stringMatching(/CN=CA expired .* expired on .*, and no CA of the bundle is valid now$/),
      expect.stringMatching(/CN=CA future .* is not valid before .*, and no CA of the bundle is valid now$/),
    ]);
  });

  it('finds the CA that issued a certificate, by name and signature', async () => {
    const b = parseCaBundle(ca1.cert + ca2.cert, 'ca.pem');
    if (Array.isArray(b)) throw new Error(b.join('\n'));
    const from2 = new X509Certificate((await createGatewayCert(ca2, 'beta')).cert);
    expect(issuersOf(from2, b.cas).map((c) => c.subject)).toEqual(['CN=CA two']);
    expect(issuersOf(new X509Certificate((await createGatewayCert(stranger, 'beta')).cert), b.cas)).toEqual([]);
  });
});

describe("a gateway's TLS material with a bundle", () => {
  it('accepts a certificate from any CA of the bundle', async () => {
    for (const issuer of [ca1, ca2]) {
      const m = material([ca1.cert, ca2.cert], 'beta', await createGatewayCert(issuer, 'beta'));
      if (Array.isArray(m)) throw new Error(m.join('\n'));
      expect(m.cas).toHaveLength(2);
    }
  });

  it('refuses a certificate from no CA of the bundle, or only from one that is not valid now', async () => {
    const m = material([ca1.cert, ca2.cert], 'beta', await createGatewayCert(stranger, 'beta'));
    expect(m).toEqual([expect.stringMatching(/-cert\.pem is not signed by any of the 2 CAs in .*-ca\.pem \(serial [0-9A-F]+, [0-9A-F]+\)$/)]);
    const byExpired = await createGatewayCert(expired, 'beta', undefined, { notBefore: new Date(Date.now() - 5 * DAY), days: 30 });
    expect(material([ca1.cert, expired.cert], 'beta', byExpired)).toEqual([expect.stringMatching(/-cert\.pem is signed only by CA serial [0-9A-F]+, which is not valid now$/)]);
  });

  it('carries the warning of an expired CA next to a valid one', async () => {
    const m = material([ca1.cert, expired.cert], 'beta', await createGatewayCert(ca1, 'beta'));
    if (Array.isArray(m)) throw new Error(m.join('\n'));
    expect(m.warnings).toEqual([expect.stringMatching(/CN=CA expired .* expired on/)]);
  });
});

describe('both TLS roles trust every CA of the bundle', () => {
  /** A TLS handshake on loopback between gateway contexts built as the gateway builds them. */
  async function handshake(server: TlsMaterial, client: TlsMaterial): Promise<{ serverAuthorized: boolean; clientIssuer: string; serverIssuer: string } | string> {
    const srv = tls.createServer(serverOptions(server, 5_000, 300_000));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    try {
      const accepted = new Promise<tls.TLSSocket>((r) => srv.once('secureConnection', r));
      const sock = tls.connect({ host: '127.0.0.1', port, ...clientOptions(makeSecureContext(client), 'alpha', () => roster) });
      const outcome = await new Promise<string | undefined>((resolve) => {
        sock.once('secureConnect', () => resolve(undefined));
        sock.once('error', (e: Error & { code?: string }) => resolve(e.code ?? e.message));
      });
      if (outcome) return outcome;
      const s = await accepted;
      const result = { serverAuthorized: s.authorized, clientIssuer: s.getPeerX509Certificate()!.issuer, serverIssuer: sock.getPeerX509Certificate()!.issuer };
      sock.destroy();
      return result;
    } finally {
      srv.close();
    }
  }

  it('a server whose certificate comes from one CA and a client whose certificate comes from the other verify each other', async () => {
    const alpha = material([ca1.cert, ca2.cert], 'alpha', await createGatewayCert(ca1, 'alpha'));
    const beta = material([ca1.cert, ca2.cert], 'beta', await createGatewayCert(ca2, 'beta'));
    if (Array.isArray(alpha) || Array.isArray(beta)) throw new Error('material refused');
    expect(await handshake(alpha, beta)).toEqual({ serverAuthorized: true, clientIssuer: 'CN=CA two', serverIssuer: 'CN=CA one' });
  });

  it('a client without the server CA in its bundle refuses it (unknown CA)', async () => {
    const alpha = material([ca1.cert], 'alpha', await createGatewayCert(ca1, 'alpha'));
    const beta = material([ca2.cert], 'beta', await createGatewayCert(ca2, 'beta'));
    if (Array.isArray(alpha) || Array.isArray(beta)) throw new Error('material refused');
    const code = await handshake(alpha, beta);
    expect(typeof code === 'string' && classifyVerifyError(code)).toBe('unknown_ca');
  });
});
