// TLS between gateways: TLS 1.3 only, the CAs of the bundle as the only roots, a
// certificate required on both sides, and on both sides the peer's identity
// and serial number checked against the roster.

import tls from 'node:tls';
import type { TlsMaterial } from '../pki/material.js';
import { revokedSerial, type Roster } from '../config/roster.js';
import { identityFromSan } from '../pki/identity.js';
import type { RefusalReason } from '../metrics/metrics.js';

export function makeSecureContext(material: TlsMaterial): tls.SecureContext {
  return tls.createSecureContext(contextOptions(material));
}

/**
 * The context options both roles share: TLS 1.3 only, every CA of the bundle
 * (and nothing else) as a root. Each CA is handed over on its own, as checked
 * by parseCaBundle, so text between the PEM blocks never reaches OpenSSL.
 */
export function contextOptions(material: TlsMaterial): tls.SecureContextOptions {
  return { ca: material.cas.map((c) => c.pem), cert: material.cert, key: material.key, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' };
}

/**
 * Server options. tls.Server builds its context from these (it ignores a
 * prebuilt `secureContext`); a reload calls server.setSecureContext() with
 * fresh ones. The server verifies the client's chain itself after the
 * handshake (rejectUnauthorized: false, then `authorized` is checked before a
 * single byte is read), so each refusal carries OpenSSL's precise verify error
 * instead of a generic "certificate verify failed".
 */
export function serverOptions(material: TlsMaterial, handshakeTimeoutMs: number, sessionLifetimeMs: number): tls.TlsOptions {
  return {
    ...contextOptions(material),
    requestCert: true,
    rejectUnauthorized: false,
    handshakeTimeout: handshakeTimeoutMs,
    allowHalfOpen: false,
    // Tickets for resumption (src/mesh/sessions.ts); each context has ticket keys of its own, so a reload ends them all.
    // In whole seconds, at least one: with tlsSessionLifetimeMs 0 the dialling sides offer none.
    sessionTimeout: Math.max(1, Math.ceil(sessionLifetimeMs / 1000)),
  };
}

/** Client options that accept only the given gateway as the server, with a certificate the roster has not revoked. */
export function clientOptions(ctx: tls.SecureContext, expectedGateway: string, roster: () => Roster): tls.ConnectionOptions {
  return {
    secureContext: ctx,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    rejectUnauthorized: true,
    servername: expectedGateway,
    checkServerIdentity: (_host, cert) => {
      const current = roster();
      const id = identityFromSan(cert.subjectaltname, current.gateways.keys());
      if (!id.ok) return identityError(id.reason);
      if (id.gateway !== expectedGateway) return identityError(`server is gateway ${id.gateway}, expected ${expectedGateway}`);
      const revoked = revokedSerial(current, cert.serialNumber);
      if (revoked) return Object.assign(new Error(`server certificate of ${id.gateway} (serial ${revoked}) is revoked`), { code: CERT_REVOKED });
      return undefined;
    },
  };
}

const WRONG_IDENTITY = 'BEAMGATE_WRONG_IDENTITY';
const CERT_REVOKED = 'BEAMGATE_CERT_REVOKED';

function identityError(message: string): Error {
  return Object.assign(new Error(message), { code: WRONG_IDENTITY });
}

/** Maps an X.509 verify error (socket.authorizationError or err.code) to a refusal reason. */
export function classifyVerifyError(code: string | undefined): RefusalReason {
  switch (code) {
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'CERT_SIGNATURE_FAILURE':
      return 'unknown_ca';
    case WRONG_IDENTITY:
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return 'wrong_identity';
    case CERT_REVOKED:
      return 'cert_revoked';
    default:
      return 'bad_certificate';
  }
}

/** Maps an error from a failed TLS handshake (either role) to a refusal reason. */
export function classifyTlsError(err: Error & { code?: string }): RefusalReason {
  const code = err.code ?? '';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'tls_timeout';
  if (code === 'ERR_SSL_HTTP_REQUEST' || code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') return 'not_tls';
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') return 'bad_certificate';
  if (code === 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA') return 'unknown_ca';
  if (code.startsWith('ERR_SSL_') && /VERSION|PROTOCOL|RECORD|LENGTH|PACKET|UNEXPECTED/.test(code)) return 'not_tls';
  if (code.startsWith('ERR_SSL_')) return 'bad_certificate';
  if (code === 'ECONNRESET' || code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ETIMEDOUT' || code === 'ENETUNREACH') {
    return 'peer_unreachable';
  }
  return classifyVerifyError(code);
}
