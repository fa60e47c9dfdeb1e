// The trust roots of the mesh: every CA certificate in the PEM bundle that
// `tls.ca` names. More than one is how a CA is rolled over without a flag day
// (docs/ca-rollover.md): for a while the bundle holds the old CA and the new
// one, and a gateway certificate issued by either is accepted.

import { X509Certificate } from 'node:crypto';
import { normalizeSerial } from '../config/roster.js';

/**
 * CA certificates one bundle may hold. A rollover needs two; every extra CA is
 * one more key that can mint gateway identities, and every open link is
 * checked against each of them at a reload, so a long list is a mistake.
 */
export const MAX_CA_CERTIFICATES = 8;

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

export interface CaCertificate {
  /** This certificate alone, in PEM. */
  pem: string;
  x509: X509Certificate;
  /** Serial number, spelled as tls.revoked and the `ca` metric label spell it (upper-case hex, no leading zeros). */
  serial: string;
  /** Subject, one line (`CN=beamgate cluster CA`). */
  subject: string;
  /** Expiry, ms since epoch. */
  notAfter: number;
  notBefore: number;
}

export interface CaBundle {
  cas: CaCertificate[];
  /** Problems that leave the bundle usable (a CA expired or not yet valid while another is valid). */
  warnings: string[];
}

/**
 * Parses and checks a bundle: 1 to MAX_CA_CERTIFICATES certificates, each a
 * CA, no two with one serial (the metric label and `check` name CAs by
 * serial). A CA outside its validity period verifies nothing (OpenSSL
 * refuses a chain through it), so it is a warning while another CA of the
 * bundle is valid, and an error when none is. Returns the problems instead
 * when there are any; `where` names the file in messages.
 */
export function parseCaBundle(text: string, where: string, now = Date.now()): CaBundle | string[] {
  const blocks = text.match(PEM_CERT) ?? [];
  if (blocks.length === 0) return [`tls.ca: ${where} holds no PEM certificate`];
  if (blocks.length > MAX_CA_CERTIFICATES) {
    return [`tls.ca: ${where} holds ${blocks.length} certificates, more than ${MAX_CA_CERTIFICATES}; a rollover needs two (docs/ca-rollover.md)`];
  }
  const problems: string[] = [];
  const cas: CaCertificate[] = [];
  blocks.forEach((pem, i) => {
    const at = blocks.length > 1 ? `${where} (certificate ${i + 1} of ${blocks.length})` : where;
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(pem);
    } catch (err) {
      problems.push(`tls.ca: ${at} is not a PEM certificate: ${(err as Error).message}`);
      return;
    }
    const serial = normalizeSerial(x509.serialNumber) ?? x509.serialNumber;
    if (!x509.ca) problems.push(`tls.ca: ${at} (serial ${serial}) is not a CA certificate`);
    const twin = cas.find((c) => c.serial === serial);
    if (twin) problems.push(`tls.ca: ${at} has serial ${serial}, as an earlier certificate of the bundle does (listed twice?)`);
    cas.push({ pem: pem + '\n', x509, serial, subject: oneLine(x509.subject), notAfter: Date.parse(x509.validTo), notBefore: Date.parse(x509.validFrom) });
  });
  if (problems.length > 0) return problems;
  const unusable = cas.filter((c) => !validAt(c, now));
  const why = (c: CaCertificate) => `CA ${c.subject} (serial ${c.serial}) in ${where} ${c.notAfter <= now ? `expired on ${c.x509.validTo}` : `is not valid before ${c.x509.validFrom}`}`;
  if (unusable.length === cas.length) return unusable.map((c) => `tls.ca: ${why(c)}, and no CA of the bundle is valid now`);
  return { cas, warnings: unusable.map((c) => `tls.ca: ${why(c)}; it verifies nothing, remove it from the bundle`) };
}

export function validAt(ca: CaCertificate, now: number): boolean {
  return ca.notBefore <= now && now < ca.notAfter;
}

/** The CAs of `cas` that issued `cert` (its issuer name matches and their key verifies its signature). */
export function issuersOf(cert: X509Certificate, cas: readonly CaCertificate[]): CaCertificate[] {
  return cas.filter((ca) => cert.checkIssued(ca.x509) && cert.verify(ca.x509.publicKey));
}

/** A distinguished name on one line: Node prints one attribute per line. */
export function oneLine(dn: string): string {
  return dn.split('\n').filter(Boolean).join(', ');
}

/** What `check` and the docs print for one CA. */
export function describeCa(ca: CaCertificate, now = Date.now()): string {
  const days = Math.floor((ca.notAfter - now) / 86_400_000);
  const left = ca.notAfter <= now ? 'EXPIRED' : ca.notBefore > now ? 'NOT YET VALID' : `${days} days left`;
  return `${ca.subject}, serial ${ca.serial}, expires ${new Date(ca.notAfter).toISOString()} (${left})`;
}
