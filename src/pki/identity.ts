// A gateway's identity is the roster gateway name found among its
// certificate's DNS subject alternative names. Exactly one roster name must be
// there: a certificate naming two gateways could pose as either.

import { X509Certificate } from 'node:crypto';

export function dnsNames(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  return subjectAltName
    .split(/,\s*/)
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4));
}

export type IdentityResult = { ok: true; gateway: string } | { ok: false; reason: string };

export function identityFromSan(subjectAltName: string | undefined, gateways: Iterable<string>): IdentityResult {
  const names = new Set(dnsNames(subjectAltName));
  const matches = [...gateways].filter((g) => names.has(g));
  if (matches.length === 1) return { ok: true, gateway: matches[0]! };
  if (matches.length === 0) return { ok: false, reason: `certificate names no roster gateway (DNS: ${[...names].join(', ') || 'none'})` };
  return { ok: false, reason: `certificate names several gateways (${matches.join(', ')})` };
}

/** Seconds until a PEM certificate expires (negative once it has). */
export function secondsUntilExpiry(certPem: string, now = Date.now()): number {
  const cert = new X509Certificate(certPem);
  return Math.floor((Date.parse(cert.validTo) - now) / 1000);
}
