import { describe, expect, it } from 'vitest';
import {
  challengeV6,
  DFLAG_ALTACT_SIG,
  DFLAG_NATIVE_RECORDS,
  decodeHandshakeMessage,
  encodeHandshakeMessage,
  ProtocolError,
  sendNameV5,
  sendNameV6,
} from '../../src/framing/handshake.js';
import { DistStream } from '../../src/framing/stream.js';

const LIMITS = { maxHandshakeMessageBytes: 512, maxFrameBytes: 1024 };

function frame(len: number, fill = 0xab): Buffer {
  const b = Buffer.alloc(4 + len, fill);
  b.writeUInt32BE(len, 0);
  return b;
}

/** A whole initiator-side stream: send_name, challenge_reply, then frames. */
function initiatorStream(frames: Buffer[]): Buffer {
  return Buffer.concat([
    encodeHandshakeMessage(sendNameV6('a1@alpha.demo', 0x1ffn)),
    encodeHandshakeMessage(Buffer.concat([Buffer.from('r'), Buffer.alloc(20, 7)])),
    ...frames,
  ]);
}

function acceptorStream(frames: Buffer[]): Buffer {
  return Buffer.concat([
    encodeHandshakeMessage(Buffer.from('sok')),
    encodeHandshakeMessage(challengeV6('b1@beta.demo', 0x1ffn)),
    encodeHandshakeMessage(Buffer.concat([Buffer.from('a'), Buffer.alloc(16, 9)])),
    ...frames,
  ]);
}

describe('handshake messages', () => {
  it('decodes a v6 send_name (OTP 23+)', () => {
    const m = decodeHandshakeMessage('initiator', sendNameV6('a1@alpha.demo', 0x1234_0000_0005n, 42));
    expect(m).toEqual({ tag: 'send_name', version: 6, flags: 0x1234_0000_0005n, name: 'a1@alpha.demo' });
  });

  it('decodes a v5 send_name (OTP 22 and older)', () => {
    const m = decodeHandshakeMessage('initiator', sendNameV5('old@alpha.demo', 0x7fff));
    expect(m).toEqual({ tag: 'send_name', version: 5, flags: 0x7fffn, name: 'old@alpha.demo' });
  });

  it('decodes a v6 challenge naming the accepting node', () => {
    const m = decodeHandshakeMessage('acceptor', challengeV6('b1@beta.demo', 1n));
    expect(m).toMatchObject({ tag: 'challenge', version: 6, name: 'b1@beta.demo' });
  });

  it('rejects truncated and inconsistent messages with a ProtocolError', () => {
    const full = sendNameV6('a1@alpha.demo', 1n);
    expect(() => decodeHandshakeMessage('initiator', full.subarray(0, 10))).toThrow(ProtocolError);
    expect(() => decodeHandshakeMessage('initiator', full.subarray(0, full.length - 1))).toThrow(/name longer than the message/);
    const challenge = challengeV6('b1@beta.demo', 1n);
    expect(() => decodeHandshakeMessage('acceptor', challenge.subarray(0, challenge.length - 1))).toThrow(/name longer than the message/);
    expect(() => decodeHandshakeMessage('acceptor', challenge.subarray(0, 18))).toThrow(/truncated/);
    expect(() => decodeHandshakeMessage('initiator', Buffer.from('r123'))).toThrow(/challenge_reply/);
    expect(() => decodeHandshakeMessage('acceptor', Buffer.from('x'))).toThrow(/unexpected handshake tag/);
    expect(() => decodeHandshakeMessage('initiator', Buffer.alloc(0))).toThrow(/empty/);
  });
});

describe('handshake messages from newer OTP', () => {
  // OTP 29 sends these bits (and OTP 28 the first); nothing in the relay
  // interprets them, so they must come out as they went in.
  const NEWER = DFLAG_ALTACT_SIG | DFLAG_NATIVE_RECORDS | (1n << 63n) | 0x1ffffffn;
  const TRAILING = Buffer.from([0, 1, 2, 0xff, 0x4e, 0x00, 0x05]);

  it('knows where OTP puts the new flags (kernel/include/dist.hrl)', () => {
    expect(DFLAG_ALTACT_SIG).toBe(0x20n << 32n);
    expect(DFLAG_NATIVE_RECORDS).toBe(0x40n << 32n);
  });

  it('keeps unknown high flag bits of a v6 send_name and challenge as they are', () => {
    expect(decodeHandshakeMessage('initiator', sendNameV6('a1@alpha.demo', NEWER))).toEqual({ tag: 'send_name', version: 6, flags: NEWER, name: 'a1@alpha.demo' });
    expect(decodeHandshakeMessage('acceptor', challengeV6('b1@beta.demo', NEWER))).toEqual({ tag: 'challenge', version: 6, flags: NEWER, name: 'b1@beta.demo' });
  });

  it('accepts and ignores data after the name (OTP 25+: "must be accepted and ignored")', () => {
    const s = decodeHandshakeMessage('initiator', sendNameV6('a1@alpha.demo', NEWER, 7, TRAILING));
    expect(s).toEqual({ tag: 'send_name', version: 6, flags: NEWER, name: 'a1@alpha.demo' });
    const c = decodeHandshakeMessage('acceptor', challengeV6('b1@beta.demo', NEWER, 1, 1, TRAILING));
    expect(c).toEqual({ tag: 'challenge', version: 6, flags: NEWER, name: 'b1@beta.demo' });
    // A name of zero bytes followed by data is still a message whose name is empty, not the data.
    expect(decodeHandshakeMessage('initiator', sendNameV6('', 1n, 1, Buffer.from('x@y')))).toMatchObject({ name: '' });
  });

  it('relays such a handshake through DistStream byte for byte, then frames', () => {
    const data = Buffer.concat([
      encodeHandshakeMessage(Buffer.from('sok')),
      encodeHandshakeMessage(challengeV6('b1@beta.demo', NEWER, 9, 9, TRAILING)),
      encodeHandshakeMessage(Buffer.concat([Buffer.from('a'), Buffer.alloc(16, 9)])),
      frame(12),
      frame(0),
    ]);
    const seen: unknown[] = [];
    const s = new DistStream('acceptor', LIMITS, (m) => seen.push(m));
    for (let i = 0; i < data.length; i += 3) s.push(data.subarray(i, i + 3));
    expect(seen[1]).toEqual({ tag: 'challenge', version: 6, flags: NEWER, name: 'b1@beta.demo' });
    expect([s.framed, s.frames, s.ticks, s.bufferedBytes]).toEqual([true, 1, 1, 0]);
  });
});

describe('DistStream', () => {
  it('gives its handshake state for a hand-over only between two whole messages, and the initiator only after its send_name', () => {
    const init = new DistStream('initiator', LIMITS, () => undefined);
    expect(init.betweenMessages).toBe(false); // the gateway walks the send_name itself
    const stream = initiatorStream([]);
    const sendNameEnd = 2 + stream.readUInt16BE(0);
    init.push(stream.subarray(0, sendNameEnd - 1));
    expect(init.betweenMessages).toBe(false);
    expect(() => init.scanState()).toThrow(/middle of a handshake message/);
    init.push(stream.subarray(sendNameEnd - 1, sendNameEnd));
    expect(init.betweenMessages).toBe(true);
    expect(init.scanState()).toEqual({ remaining: 0, header: 0, headerBytes: 0, frames: 0, ticks: 0, handshake: { side: 'initiator', index: 1 } });
    const acc = new DistStream('acceptor', LIMITS, () => undefined);
    expect(acc.scanState().handshake).toEqual({ side: 'acceptor', index: 0 });
    acc.push(acceptorStream([frame(3)]));
    expect(acc.betweenMessages).toBe(false);
    expect(acc.scanState()).toEqual({ remaining: 0, header: 0, headerBytes: 0, frames: 1, ticks: 0 });
  });

  it('reports the handshake in order, then counts frames and ticks', () => {
    const seen: string[] = [];
    const s = new DistStream('initiator', LIMITS, (m) => seen.push(m.tag));
    s.push(initiatorStream([frame(0), frame(10), frame(0), frame(300)]));
    expect(seen).toEqual(['send_name', 'challenge_reply']);
    expect(s.framed).toBe(true);
    expect(s.frames).toBe(2);
    expect(s.ticks).toBe(2);
    expect(s.bufferedBytes).toBe(0);
  });

  it('gives the same counts whatever the chunk boundaries, byte by byte included', () => {
    const data = acceptorStream([frame(5), frame(0), frame(1000), frame(1), frame(0)]);
    const whole = new DistStream('acceptor', LIMITS, () => undefined);
    whole.push(data);
    for (const step of [1, 2, 3, 5, 7, 64]) {
      const s = new DistStream('acceptor', LIMITS, () => undefined);
      for (let i = 0; i < data.length; i += step) s.push(data.subarray(i, i + step));
      expect([s.frames, s.ticks, s.framed]).toEqual([whole.frames, whole.ticks, true]);
      expect(s.bufferedBytes).toBe(0);
    }
    expect([whole.frames, whole.ticks]).toEqual([3, 2]);
  });

  it('refuses a frame longer than the limit as soon as its header is read', () => {
    const s = new DistStream('initiator', LIMITS, () => undefined);
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(LIMITS.maxFrameBytes + 1, 0);
    expect(() => s.push(initiatorStream([frame(3), huge]))).toThrow(/exceeds 1024/);
  });

  it('refuses an oversized handshake message without buffering it', () => {
    const s = new DistStream('initiator', LIMITS, () => undefined);
    const head = Buffer.alloc(2);
    head.writeUInt16BE(LIMITS.maxHandshakeMessageBytes + 1, 0);
    expect(() => s.push(head)).toThrow(expect.objectContaining({ code: 'handshake_too_large' }));
  });

  it('holds at most one partial handshake message', () => {
    const s = new DistStream('initiator', LIMITS, () => undefined);
    const msg = encodeHandshakeMessage(sendNameV6('a1@alpha.demo', 1n));
    s.push(msg.subarray(0, msg.length - 1));
    expect(s.bufferedBytes).toBe(msg.length - 1);
    expect(s.framed).toBe(false);
  });

  it('refuses messages out of order: the acceptor must start with a status', () => {
    const s = new DistStream('acceptor', LIMITS, () => undefined);
    expect(() => s.push(encodeHandshakeMessage(challengeV6('b1@beta.demo', 1n)))).toThrow(/not status/);
    const t = new DistStream('initiator', LIMITS, () => undefined);
    expect(() => t.push(encodeHandshakeMessage(Buffer.from('sok')))).toThrow(/not send_name/);
  });

  it('lets the caller refuse a message by throwing from the callback', () => {
    const s = new DistStream('initiator', LIMITS, (m) => {
      if (m.tag === 'send_name' && m.name !== 'a1@alpha.demo') throw new Error('not owned');
    });
    expect(() => s.push(encodeHandshakeMessage(sendNameV6('evil@alpha.demo', 1n)))).toThrow('not owned');
  });

  it('accepts the "alive" status answer and the v5 complement from the initiator', () => {
    const seen: string[] = [];
    const s = new DistStream('initiator', LIMITS, (m) => seen.push(m.tag));
    s.push(
      Buffer.concat([
        encodeHandshakeMessage(sendNameV5('old@alpha.demo', 1)),
        encodeHandshakeMessage(Buffer.from('strue')),
        encodeHandshakeMessage(Buffer.concat([Buffer.from('c'), Buffer.alloc(8)])),
        encodeHandshakeMessage(Buffer.concat([Buffer.from('r'), Buffer.alloc(20)])),
      ]),
    );
    expect(seen).toEqual(['send_name', 'status', 'complement', 'challenge_reply']);
    expect(s.framed).toBe(true);
  });
});
