// TLS 1.3 traffic keys for the native data plane: the traffic secrets node:tls
// reports through its 'keylog' event, and the key schedule step that turns a
// secret into a record key and IV (RFC 8446 §7.1, §7.3).

import crypto from 'node:crypto';

/** A TLS 1.3 cipher suite the native data plane can seal and open records for. */
export interface Suite {
  /** The IANA name, as TLSSocket.getCipher().standardName reports it. */
  name: string;
  /** The AEAD, by its node:crypto name (and the native module's). */
  aead: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';
  hash: 'sha256' | 'sha384';
  keyLength: number;
}

const SUITES: readonly Suite[] = [
  { name: 'TLS_AES_128_GCM_SHA256', aead: 'aes-128-gcm', hash: 'sha256', keyLength: 16 },
  { name: 'TLS_AES_256_GCM_SHA384', aead: 'aes-256-gcm', hash: 'sha384', keyLength: 32 },
  { name: 'TLS_CHACHA20_POLY1305_SHA256', aead: 'chacha20-poly1305', hash: 'sha256', keyLength: 32 },
];

export function suiteByName(name: string | undefined): Suite | undefined {
  return SUITES.find((s) => s.name === name);
}

export const IV_LENGTH = 12;

/** One direction's record protection: the AEAD key and the per-record nonce base. */
export interface TrafficKeys {
  key: Buffer;
  iv: Buffer;
}

/** HKDF-Expand (RFC 5869 §2.3): no extract step, the secret is already a PRK. */
function hkdfExpand(hash: Suite['hash'], prk: Buffer, info: Buffer, length: number): Buffer {
  const blocks: Buffer[] = [];
  let prev = Buffer.alloc(0);
  for (let i = 1, have = 0; have < length; i++) {
    prev = crypto.createHmac(hash, prk).update(prev).update(info).update(Buffer.from([i])).digest();
    blocks.push(prev);
    have += prev.length;
  }
  return Buffer.concat(blocks).subarray(0, length);
}

/** HKDF-Expand-Label(secret, label, "", length) of RFC 8446 §7.1. */
export function expandLabel(hash: Suite['hash'], secret: Buffer, label: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${label}`, 'ascii');
  const info = Buffer.concat([Buffer.from([length >> 8, length & 0xff, full.length]), full, Buffer.from([0])]);
  return hkdfExpand(hash, secret, info, length);
}

export function trafficKeys(suite: Suite, secret: Buffer): TrafficKeys {
  return { key: expandLabel(suite.hash, secret, 'key', suite.keyLength), iv: expandLabel(suite.hash, secret, 'iv', IV_LENGTH) };
}

/** The application traffic secrets of one connection, as logged by node:tls (NSS key log format). */
export interface AppSecrets {
  client?: Buffer;
  server?: Buffer;
}

/** Takes the first application traffic secrets from one key log line; other lines are ignored. */
export function noteKeylogLine(secrets: AppSecrets, line: Buffer): void {
  const [label, , hex] = line.toString('latin1').trim().split(' ');
  if (hex === undefined) return;
  if (label === 'CLIENT_TRAFFIC_SECRET_0') secrets.client = Buffer.from(hex, 'hex');
  else if (label === 'SERVER_TRAFFIC_SECRET_0') secrets.server = Buffer.from(hex, 'hex');
}

/** The nonce of record number `seq` (RFC 8446 §5.3). */
export function recordNonce(iv: Buffer, seq: number): Buffer {
  const n = Buffer.from(iv);
  let s = BigInt(seq);
  for (let i = 11; i >= 4; i--) {
    n[i]! ^= Number(s & 0xffn);
    s >>= 8n;
  }
  return n;
}

/**
 * Whether `record` (header included) opens under `keys` as record number
 * `seq`: the only way to tell a record sealed with the handshake keys from the
 * first one sealed with the application keys, as both look alike on the wire.
 */
export function opensAs(suite: Suite, keys: TrafficKeys, seq: number, record: Buffer): boolean {
  if (record.length < 5 + 17) return false;
  const body = record.subarray(5);
  const decipher = crypto.createDecipheriv(suite.aead as crypto.CipherGCMTypes, keys.key, recordNonce(keys.iv, seq), { authTagLength: 16 });
  decipher.setAAD(record.subarray(0, 5));
  decipher.setAuthTag(body.subarray(body.length - 16));
  decipher.update(body.subarray(0, body.length - 16));
  try {
    decipher.final();
    return true;
  } catch {
    return false;
  }
}
