// The TLS 1.3 key schedule step of the native data plane (src/fastpath/keys.ts)
// against the traces of RFC 8448 §3, the record nonce of RFC 8446 §5.3, and
// the key log lines node:tls emits.

import { describe, expect, it } from 'vitest';
import { expandLabel, noteKeylogLine, recordNonce, suiteByName, trafficKeys, type AppSecrets } from '../../src/fastpath/keys.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('HKDF-Expand-Label (RFC 8448, simple 1-RTT handshake)', () => {
  it('derives the server handshake write key and IV', () => {
    const secret = hex('b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38');
    expect(expandLabel('sha256', secret, 'key', 16)).toEqual(hex('3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc'));
    expect(expandLabel('sha256', secret, 'iv', 12)).toEqual(hex('5d 31 3e b2 67 12 76 ee 13 00 0b 30'));
  });

  it('derives the server application write key and IV, as trafficKeys does for TLS_AES_128_GCM_SHA256', () => {
    const secret = hex('a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43');
    const keys = trafficKeys(suiteByName('TLS_AES_128_GCM_SHA256')!, secret);
    expect(keys.key).toEqual(hex('9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56'));
    expect(keys.iv).toEqual(hex('cf 78 2b 88 dd 83 54 9a ad f1 e9 84'));
  });

  it('takes key lengths and hashes from the suite', () => {
    const secret48 = Buffer.alloc(48, 7);
    const aes256 = trafficKeys(suiteByName('TLS_AES_256_GCM_SHA384')!, secret48);
    expect(aes256.key.length).toBe(32);
    expect(aes256.iv.length).toBe(12);
    expect(aes256.key).toEqual(expandLabel('sha384', secret48, 'key', 32));
    expect(trafficKeys(suiteByName('TLS_CHACHA20_POLY1305_SHA256')!, Buffer.alloc(32, 1)).key.length).toBe(32);
    expect(suiteByName('TLS_AES_128_CCM_SHA256')).toBeUndefined();
  });
});

describe('record nonce (RFC 8446 §5.3)', () => {
  it('XORs the 64-bit sequence number into the low bytes of the IV', () => {
    const iv = hex('cf 78 2b 88 dd 83 54 9a ad f1 e9 84');
    expect(recordNonce(iv, 0)).toEqual(iv);
    expect(recordNonce(iv, 1)).toEqual(hex('cf 78 2b 88 dd 83 54 9a ad f1 e9 85'));
    expect(recordNonce(iv, 0x01020304)).toEqual(hex('cf 78 2b 88 dd 83 54 9a ac f3 ea 80'));
    // Beyond 32 bits, into the fifth byte from the end.
    expect(recordNonce(iv, 2 ** 32)).toEqual(hex('cf 78 2b 88 dd 83 54 9b ad f1 e9 84'));
    expect(iv).toEqual(hex('cf 78 2b 88 dd 83 54 9a ad f1 e9 84'));
  });
});

describe('key log lines', () => {
  it('keeps the first application traffic secrets and nothing else', () => {
    const s: AppSecrets = {};
    noteKeylogLine(s, Buffer.from('CLIENT_HANDSHAKE_TRAFFIC_SECRET 00aa 1111\n'));
    noteKeylogLine(s, Buffer.from('CLIENT_TRAFFIC_SECRET_0 00aa 2222\n'));
    noteKeylogLine(s, Buffer.from('SERVER_TRAFFIC_SECRET_0 00aa 3333\n'));
    noteKeylogLine(s, Buffer.from('EXPORTER_SECRET 00aa 4444\n'));
    noteKeylogLine(s, Buffer.from('garbage'));
    expect(s).toEqual({ client: hex('2222'), server: hex('3333') });
  });
});
