import { describe, expect, it } from 'vitest';
import {
  ALIVE2_X_RESP,
  encodeAlive2Request,
  encodeAlive2XResp,
  encodeNamesRequest,
  encodeNamesResp,
  encodePort2Resp,
  encodePortPlease2Request,
  MAX_EPMD_REQUEST,
  parseEpmdRequest,
  parsePort2Resp,
} from '../../src/epmd/protocol.js';

const alive = { port: 5001, nodeType: 77, protocol: 0, highestVersion: 6, lowestVersion: 5, name: 'a1', extra: Buffer.alloc(0) };

describe('EPMD requests', () => {
  it('parses ALIVE2_REQ as a node sends it', () => {
    const r = parseEpmdRequest(encodeAlive2Request(alive));
    expect(r).toMatchObject({ kind: 'request', request: { type: 'alive2', port: 5001, nodeType: 77, name: 'a1', highestVersion: 6, lowestVersion: 5 } });
  });

  it('parses PORT_PLEASE2_REQ and NAMES_REQ', () => {
    expect(parseEpmdRequest(encodePortPlease2Request('b1'))).toMatchObject({ kind: 'request', request: { type: 'port_please2', name: 'b1' } });
    expect(parseEpmdRequest(encodeNamesRequest())).toMatchObject({ kind: 'request', request: { type: 'names' } });
  });

  it('waits for more bytes on every proper prefix', () => {
    const whole = encodeAlive2Request(alive);
    for (let i = 0; i < whole.length; i++) expect(parseEpmdRequest(whole.subarray(0, i)).kind).toBe('incomplete');
  });

  it('reports how much it consumed, leaving what follows', () => {
    const two = Buffer.concat([encodePortPlease2Request('b1'), Buffer.from('xyz')]);
    const r = parseEpmdRequest(two);
    expect(r.kind === 'request' && r.consumed).toBe(two.length - 3);
  });

  it('refuses oversized, empty, unknown and inconsistent requests', () => {
    const big = Buffer.alloc(2);
    big.writeUInt16BE(MAX_EPMD_REQUEST + 1, 0);
    expect(parseEpmdRequest(big)).toMatchObject({ kind: 'error', reason: expect.stringMatching(/exceeds/) });
    expect(parseEpmdRequest(Buffer.from([0, 0]))).toMatchObject({ kind: 'error' });
    expect(parseEpmdRequest(Buffer.from([0, 1, 100]))).toMatchObject({ kind: 'error', reason: expect.stringMatching(/unsupported/) }); // DUMP_REQ
    const bad = encodeAlive2Request(alive);
    bad.writeUInt16BE(200, 2 + 9); // name length beyond the body
    expect(parseEpmdRequest(bad)).toMatchObject({ kind: 'error', reason: expect.stringMatching(/name length/) });
    expect(parseEpmdRequest(Buffer.from([0, 1, 122]))).toMatchObject({ kind: 'error' }); // PORT_PLEASE2 without a name
  });
});

describe('EPMD responses', () => {
  it('encodes ALIVE2_X_RESP with a 32-bit creation', () => {
    const r = encodeAlive2XResp(0, 0xdeadbeef);
    expect(r[0]).toBe(ALIVE2_X_RESP);
    expect(r.readUInt32BE(2)).toBe(0xdeadbeef);
  });

  it('round-trips PORT2_RESP, found and not found', () => {
    const info = { port: 6001, nodeType: 77, protocol: 0, highestVersion: 6, lowestVersion: 5, name: 'b1', extra: Buffer.alloc(0) };
    expect(parsePort2Resp(encodePort2Resp(info))).toEqual({ kind: 'ok', info });
    expect(parsePort2Resp(encodePort2Resp(null))).toEqual({ kind: 'ok', info: null });
    const whole = encodePort2Resp(info);
    expect(parsePort2Resp(whole.subarray(0, whole.length - 1)).kind).toBe('incomplete');
  });

  it('encodes NAMES_RESP as net_adm:names/1 reads it', () => {
    const r = encodeNamesResp(4369, [{ name: 'a1', port: 5001 }]);
    expect(r.readUInt32BE(0)).toBe(4369);
    expect(r.subarray(4).toString()).toBe('name a1 at port 5001\n');
  });
});
