// The take-over's messages (src/takeover/protocol.ts): what one process sends
// the other reads back the same, and anything else (a missing field, a wrong
// type, an unknown message, a bad certificate) is refused with its path; and
// the command line a gateway gives the successor it starts on SIGUSR2.

import { describe, expect, it } from 'vitest';
import { createCa, createGatewayCert } from '../../src/pki/generate.js';
import { decode, encode, linkInfoOf, type LinkItem, type Message, TakeoverProtocolError } from '../../src/takeover/protocol.js';
import { successorArgs } from '../../src/takeover/successor.js';

const link = (peerCert: string): LinkItem => ({
  info: { peer: 'beta', direction: 'inbound', localNode: 'a1@alpha', remoteNode: 'b1@beta', sourceName: 'b1@beta', targetName: 'a1@alpha', sourceHidden: false, peerSerial: '0A', peerCert },
  startedAt: 1_700_000_000_000,
  params: { cipher: 'aes-256-gcm', hash: 'sha384', client: false, maxFrameBytes: 1 << 26, closeGraceMs: 2000 },
  parked: {
    totals: { bytesOut: 10, bytesIn: 20, framesOut: 1, framesIn: 2, ticksOut: 0, ticksIn: 3, keyUpdatesOut: 0, keyUpdatesIn: 1 },
    detached: {
      localFd: -1,
      remoteFd: -1,
      txSecret: Buffer.alloc(48, 1),
      rxSecret: Buffer.alloc(48, 2),
      txSeq: 7,
      rxSeq: 9,
      txUpdates: 0,
      rxUpdates: 1,
      sealedToRemote: Buffer.from('sealed'),
      walkedToLocal: Buffer.from([0, 0, 0, 0]),
      fromRemote: Buffer.alloc(0),
      rxHandshake: Buffer.alloc(0),
      outScan: { remaining: 3, header: 0, headerBytes: 0 },
      inScan: { remaining: 0, header: 0x0102, headerBytes: 2 },
    },
  },
});

const refused = (m: unknown) => {
  try {
    decode(Buffer.from(typeof m === 'string' ? m : JSON.stringify(m)));
  } catch (err) {
    expect(err).toBeInstanceOf(TakeoverProtocolError);
    return (err as Error).message;
  }
  throw new Error('accepted');
};

describe('take-over messages', () => {
  it('reads back what was sent, buffers and certificates included', async () => {
    const ca = await createCa('test CA');
    const cert = await createGatewayCert(ca, "beta");
    const messages: Message[] = [
      { t: 'hello', format: 1, gateway: 'beta', pid: 42, version: '0.1.0' },
      { t: 'listeners', items: [{ kind: 'tls', host: '10.0.0.2', port: 4370 }, { kind: 'stand-in', host: '127.0.1.5', port: 19000, standIn: { peer: 'gamma', short: 'c1' } }] },
      { t: 'registrations', items: [{ name: 'b1', port: 5001, nodeType: 77, highestVersion: 6, lowestVersion: 5, creation: 123456, kind: 'node' }] },
      { t: 'links', items: [link(cert.cert)] },
      { t: 'end', counters: [{ name: 'beamgate_links_opened_total', labels: { peer: 'beta', direction: 'inbound' }, value: 3 }], lastCreation: [['b1', 123456]], ended: 1, frozenAt: 1_700_000_000_500 },
      { t: 'ready' },
      { t: 'commit' },
      { t: 'done', links: 1 },
      { t: 'refuse', why: 'no' },
    ];
    for (const m of messages) expect(decode(encode(m))).toEqual(m);
    const back = decode(encode({ t: 'links', items: [link(cert.cert)] })) as Extract<Message, { t: 'links' }>;
    expect(back.items[0]!.parked.detached.txSecret.equals(Buffer.alloc(48, 1))).toBe(true);
    expect(linkInfoOf(back.items[0]!).peerCert.serialNumber).toBe(linkInfoOf(link(cert.cert)).peerCert.serialNumber);
  });

  it('refuses what the format does not say, with the path of what is wrong', () => {
    expect(refused('{')).toMatch(/^not JSON/);
    expect(refused([])).toBe('message: not an object');
    expect(refused({ t: 'launch' })).toBe('message.t: unknown message "launch"');
    expect(refused({ t: 'hello', format: '1', gateway: 'b', pid: 1, version: 'x' })).toBe('message.format: not a whole number');
    expect(refused({ t: 'hello', format: 1, gateway: 'b', version: 'x' })).toBe('message.pid: missing');
    expect(refused({ t: 'listeners', items: [{ kind: 'udp', host: 'h', port: 1 }] })).toBe('message.items[0].kind: not tls or epmd or stand-in or metrics');
    expect(refused({ t: 'listeners', items: [{ kind: 'tls', host: 'h', port: 70000 }] })).toBe('message.items[0].port: not a port');
    expect(refused({ t: 'listeners', items: [{ kind: 'stand-in', host: 'h', port: 1 }] })).toBe('message.items[0].standIn: missing');
    expect(refused({ t: 'registrations', items: [{ name: 'b1', port: 5001, nodeType: 77, highestVersion: 6, lowestVersion: 5, creation: -1, kind: 'node' }] })).toBe('message.items[0].creation: not a whole number');
    const wire = JSON.parse(encode({ t: 'links', items: [link('x')] }).toString()) as { items: { parked: { detached: Record<string, unknown> } }[] };
    wire.items[0]!.parked.detached.txSecret = 'AAAA';
    expect(refused(wire)).toBe('message.items[0].parked.detached.txSecret: not a buffer');
    expect(refused({ t: 'end', counters: [], lastCreation: [['b1']], ended: 0, frozenAt: 1 })).toBe('message.lastCreation[0].1: missing');
    expect(() => linkInfoOf(link('not a certificate'))).toThrow(TakeoverProtocolError);
  });
});

describe("a successor's command line (src/takeover/successor.ts)", () => {
  it("is this process's own, with --take-over in place of either take-over option, Node's own flags first", () => {
    const argv = ['/usr/bin/node', '/opt/beamgate/dist/cli/main.js', 'run', '--config', 'r.yaml', '--take-over-if-running', '--pid-file', '/run/b.pid'];
    expect(successorArgs(argv, ['--max-old-space-size=512'])).toEqual(['--max-old-space-size=512', '/opt/beamgate/dist/cli/main.js', 'run', '--config', 'r.yaml', '--pid-file', '/run/b.pid', '--take-over']);
    expect(successorArgs(['node', 'main.js', 'run', '--take-over'], [])).toEqual(['main.js', 'run', '--take-over']);
  });
});
