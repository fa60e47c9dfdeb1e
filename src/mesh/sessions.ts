// TLS 1.3 session resumption between gateways: the last session ticket each
// peer gateway gave us, offered on the next dial to it, so a link set-up in a
// burst costs a PSK handshake instead of two certificate signatures and a
// chain verification. A resumed session skips what OpenSSL and node:tls do
// only in a full handshake (node:tls does not call checkServerIdentity), so
// every check of the roster is made again here by hand, against the roster in
// force now: identity, revocation, validity dates.

import type { X509Certificate } from 'node:crypto';
import type tls from 'node:tls';
import { revokedSerial, type Roster } from '../config/roster.js';
import { identityFromSan } from '../pki/identity.js';

/**
 * A ticket with what was verified when its session was made. On a resumed
 * session node:tls gives the dialling side no peer certificate (it reads the
 * peer's chain, which a session does not keep), so the certificate verified
 * in the full handshake travels with every ticket that session leads to: only
 * the server that held that session can resume it.
 */
export interface Ticket {
  session: Buffer;
  /** The peer certificate verified in the full handshake this ticket goes back to. */
  cert: X509Certificate;
  /** When that full handshake verified it (ms since epoch): no ticket of it is offered after limits.tlsSessionLifetimeMs. */
  verifiedAt: number;
}

/** One ticket per peer gateway (the roster bounds the peers), each dropped at a reload. */
export class SessionCache {
  private readonly tickets = new Map<string, Ticket>();

  /** A ticket to offer on a dial to `peer`, if its verification is younger than `lifetimeMs` (limits.tlsSessionLifetimeMs). */
  offer(peer: string, lifetimeMs: number, now = Date.now()): Ticket | undefined {
    const t = this.tickets.get(peer);
    if (t && now - t.verifiedAt < lifetimeMs) return t;
    if (t) this.tickets.delete(peer);
    return undefined;
  }

  /** Keeps the newest ticket from `peer` (servers send two per handshake; either resumes). */
  remember(peer: string, ticket: Ticket): void {
    this.tickets.set(peer, ticket);
  }

  /** A peer whose resumed session failed a check: its ticket goes, the next dial is a full handshake. */
  forget(peer: string): void {
    this.tickets.delete(peer);
  }

  /** A reload may have removed a CA: no session verified under the old trust is offered again. */
  clear(): void {
    this.tickets.clear();
  }

  get size(): number {
    return this.tickets.size;
  }
}

/** Why a peer certificate does not pass the roster's checks, as a refusal reason; `peer` once its identity is known. */
export interface PeerRefusal {
  reason: 'wrong_identity' | 'cert_revoked' | 'bad_certificate';
  message: string;
  peer?: string;
}

/** The verified peer certificate of each connection dialPeer made: on a resumed one, the one from its ticket. */
const verifiedPeers = new WeakMap<tls.TLSSocket, X509Certificate>();

/** Records the certificate a dialled connection was verified with (dialPeer, once the checks passed). */
export function setVerifiedPeer(sock: tls.TLSSocket, cert: X509Certificate): void {
  verifiedPeers.set(sock, cert);
}

/**
 * The peer certificate a connection was verified with: what dialPeer
 * recorded for one we dialled (node:tls has none on a resumed session), else
 * node:tls's own (an accepted connection; the server keeps it in the session).
 */
export function verifiedPeerCertificate(sock: tls.TLSSocket): X509Certificate | undefined {
  return verifiedPeers.get(sock) ?? sock.getPeerX509Certificate();
}

/**
 * What the roster's checks read of a peer certificate. An X509Certificate has
 * these fields; so has what peerCertFields() takes from node:tls's plain
 * object, which an accepted connection is checked with: an X509Certificate
 * holds native memory that only a major collection returns, and a flood of
 * connections cut short after TLS made one each (3,000 of them left RSS 23 MB
 * up 30 s later, test/integration/hostile.test.ts).
 */
export type PeerCertFields = Pick<X509Certificate, 'subjectAltName' | 'serialNumber' | 'validFrom' | 'validTo'>;

/** The fields of node:tls's plain peer certificate object (getPeerCertificate()), or undefined when the peer sent none. */
export function peerCertFields(cert: tls.PeerCertificate | Record<string, never>): PeerCertFields | undefined {
  if (typeof cert.serialNumber !== 'string') return undefined;
  return { subjectAltName: cert.subjectaltname, serialNumber: cert.serialNumber, validFrom: cert.valid_from, validTo: cert.valid_to };
}

/**
 * Checks a peer certificate against the roster in force: it names
 * `expected` (or, for a server, any peer gateway but us) and its serial is
 * not revoked. OpenSSL has verified its chain and dates in the handshake.
 */
export function checkPeer(cert: PeerCertFields | undefined, roster: Roster, expected: { gateway: string } | { notSelf: string }): PeerRefusal | { gateway: string } {
  if (!cert) return { reason: 'bad_certificate', message: 'no peer certificate' };
  const id = identityFromSan(cert.subjectAltName, roster.gateways.keys());
  if (!id.ok) return { reason: 'wrong_identity', message: id.reason };
  if ('gateway' in expected && id.gateway !== expected.gateway) {
    return { reason: 'wrong_identity', message: `peer is gateway ${id.gateway}, expected ${expected.gateway}` };
  }
  if ('notSelf' in expected && id.gateway === expected.notSelf) return { reason: 'wrong_identity', message: 'certificate is our own identity' };
  const revoked = revokedSerial(roster, cert.serialNumber);
  if (revoked) return { reason: 'cert_revoked', message: `certificate of ${id.gateway} (serial ${revoked}) is revoked`, peer: id.gateway };
  return { gateway: id.gateway };
}

/**
 * Checks the peer certificate of a resumed session (the server's own; the
 * dialling side's from its ticket) as checkPeer does, and that it is within
 * its validity dates now: OpenSSL checks no dates on resumption. The chain
 * was verified when the session was made, under trust no reload has changed
 * since (the cache is cleared and the server's ticket keys change at every
 * reload).
 */
export function checkResumedPeer(cert: PeerCertFields | undefined, roster: Roster, expected: { gateway: string } | { notSelf: string }, now = Date.now()): PeerRefusal | { gateway: string } {
  const checked = checkPeer(cert, roster, expected);
  if ('reason' in checked) return { ...checked, message: `resumed session: ${checked.message}` };
  const from = Date.parse(cert!.validFrom);
  const to = Date.parse(cert!.validTo);
  if (!(from <= now && now < to)) return { reason: 'bad_certificate', message: `certificate of ${checked.gateway} in a resumed session is not valid now (${cert!.validFrom} to ${cert!.validTo})`, peer: checked.gateway };
  return checked;
}
