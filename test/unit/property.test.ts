// Property-based tests: random and mutated input for every parser that reads
// bytes from a socket (EPMD requests, the link preamble, the distribution
// handshake and frame stream). Whatever arrives, a parser either answers or
// throws its own ProtocolError, and never holds more than its limit.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  challengeV6,
  decodeHandshakeMessage,
  encodeHandshakeMessage,
  ProtocolError,
  sendNameV5,
  sendNameV6,
  type Side,
} from '../../src/framing/handshake.js';
import { DistStream, type StreamLimits } from '../../src/framing/stream.js';
import {
  encodeAlive2Request,
  encodeNamesRequest,
  encodePortPlease2Request,
  MAX_EPMD_REQUEST,
  parseEpmdRequest,
  parsePort2Resp,
} from '../../src/epmd/protocol.js';
import { encodePreamble, MAX_PREAMBLE_BYTES, parsePreamble } from '../../src/mesh/preamble.js';

const RUNS = { numRuns: 400 };

const bytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));

/** A valid input with a few bytes flipped, a piece cut out, or garbage appended. */
function mutated(valid: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc.tuple(valid, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat(), fc.nat(), bytes(64)).map(
    ([buf, flips, cutAt, cutLen, tail]) => {
      const b = Buffer.from(buf);
      for (const [at, value] of flips) if (b.length > 0) b[at % b.length] = value;
      const from = b.length === 0 ? 0 : cutAt % b.length;
      return Buffer.concat([b.subarray(0, from), b.subarray(from + (cutLen % 8)), tail]);
    },
  );
}

/** Splits a buffer into chunks at arbitrary points, as TCP may deliver it. */
function chunked(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (buf.length === 0 ? 0 : c % buf.length)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    out.push(buf.subarray(at, p));
    at = p;
  }
  out.push(buf.subarray(at));
  return out;
}

const shortName = fc.stringMatching(/^[a-z][a-z0-9_]{0,30}$/);
const nodeName = fc.tuple(shortName, shortName).map(([a, b]) => `${a}@${b}.example`);

describe('EPMD request parser under random input', () => {
  const validRequest = fc.oneof(
    fc.record({ port: fc.integer({ min: 1, max: 65535 }), name: shortName, extra: bytes(16) }).map((r) =>
      encodeAlive2Request({ port: r.port, nodeType: 77, protocol: 0, highestVersion: 6, lowestVersion: 5, name: r.name, extra: r.extra }),
    ),
    shortName.map(encodePortPlease2Request),
    fc.constant(encodeNamesRequest()),
  );

  const checkParse = (buf: Buffer) => {
    const r = parseEpmdRequest(buf);
    // Never asks for more bytes than one maximal request: the server's buffer stays bounded.
    if (r.kind === 'incomplete') expect(buf.length).toBeLessThan(2 + MAX_EPMD_REQUEST);
    if (r.kind === 'request') {
      expect(r.consumed).toBeLessThanOrEqual(buf.length);
      expect(r.consumed).toBeLessThanOrEqual(2 + MAX_EPMD_REQUEST);
    }
    if (r.kind === 'error') expect(r.reason.length).toBeGreaterThan(0);
  };

  it('never throws on random bytes, and never waits past one maximal request', () => {
    fc.assert(fc.property(bytes(2 * MAX_EPMD_REQUEST), checkParse), RUNS);
  });

  it('never throws on a random body behind a plausible length', () => {
    fc.assert(
      fc.property(bytes(MAX_EPMD_REQUEST + 8), (body) => {
        const head = Buffer.alloc(2);
        head.writeUInt16BE(body.length, 0);
        checkParse(Buffer.concat([head, body]));
      }),
      RUNS,
    );
  });

  it('never throws on mutated valid requests', () => {
    fc.assert(fc.property(mutated(validRequest), checkParse), RUNS);
  });

  it('parses every valid request whole, and every proper prefix as incomplete', () => {
    fc.assert(
      fc.property(validRequest, fc.nat(), (req, cut) => {
        const r = parseEpmdRequest(req);
        expect(r.kind === 'request' && r.consumed).toBe(req.length);
        expect(parseEpmdRequest(req.subarray(0, cut % req.length)).kind).toBe('incomplete');
      }),
      RUNS,
    );
  });

  it('PORT2_RESP reader never throws on random bytes', () => {
    fc.assert(
      fc.property(bytes(600), (buf) => {
        const r = parsePort2Resp(buf);
        expect(['incomplete', 'error', 'ok']).toContain(r.kind);
      }),
      RUNS,
    );
  });
});

describe('link preamble parser under random input', () => {
  const validPreamble = fc.oneof(
    fc.constant(encodePreamble({ kind: 'probe' })),
    fc.string({ minLength: 1, maxLength: 255, unit: fc.integer({ min: 1, max: 255 }).map((c) => String.fromCharCode(c)) }).map((target) =>
      encodePreamble({ kind: 'link', target }),
    ),
  );
  const checkParse = (buf: Buffer) => {
    const r = parsePreamble(buf);
    if (r.kind === 'incomplete') expect(buf.length).toBeLessThan(MAX_PREAMBLE_BYTES);
    if (r.kind === 'ok') expect(r.consumed).toBeLessThanOrEqual(Math.min(buf.length, MAX_PREAMBLE_BYTES));
  };

  it('never throws on random or mutated bytes, and never waits past MAX_PREAMBLE_BYTES', () => {
    fc.assert(fc.property(bytes(2 * MAX_PREAMBLE_BYTES), checkParse), RUNS);
    fc.assert(fc.property(mutated(validPreamble), checkParse), RUNS);
  });

  it('round-trips every target name, whatever follows it', () => {
    fc.assert(
      fc.property(validPreamble, bytes(32), (p, tail) => {
        const r = parsePreamble(Buffer.concat([p, tail]));
        expect(r.kind === 'ok' && r.consumed).toBe(p.length);
      }),
      RUNS,
    );
  });
});

const LIMITS: StreamLimits = { maxHandshakeMessageBytes: 512, maxFrameBytes: 64 * 1024 };

/** Pushes every chunk; returns the error thrown, if any, after checking the buffer bound after each push. */
function feed(stream: DistStream, chunks: Buffer[], limits: StreamLimits): unknown {
  for (const c of chunks) {
    try {
      stream.push(c);
    } catch (err) {
      return err;
    }
    // At most one partial handshake message (2-byte length + body) or a split 4-byte frame header.
    expect(stream.bufferedBytes).toBeLessThan(2 + limits.maxHandshakeMessageBytes);
  }
  return undefined;
}

/** A whole, valid direction of a connection: handshake, then frames (0 = tick). */
function validDirection(side: Side, name: string, frameSizes: number[]): Buffer {
  const hs =
    side === 'initiator'
      ? [sendNameV6(name, 0x1ffffffn), Buffer.concat([Buffer.from('r'), Buffer.alloc(20, 7)])]
      : [Buffer.from('sok'), challengeV6(name, 0x1ffffffn), Buffer.concat([Buffer.from('a'), Buffer.alloc(16, 9)])];
  const frames = frameSizes.map((n) => {
    const f = Buffer.alloc(4 + n, 0x83);
    f.writeUInt32BE(n, 0);
    return f;
  });
  return Buffer.concat([...hs.map(encodeHandshakeMessage), ...frames]);
}

describe('distribution stream parser under random input', () => {
  const side = fc.constantFrom<Side>('initiator', 'acceptor');
  const limits = fc.record({ maxHandshakeMessageBytes: fc.integer({ min: 24, max: 4096 }), maxFrameBytes: fc.integer({ min: 1, max: 1 << 20 }) });

  it('throws nothing but ProtocolError on random chunks, and holds less than one handshake message', () => {
    fc.assert(
      fc.property(side, limits, fc.array(bytes(700), { maxLength: 8 }), (s, l, chunks) => {
        const err = feed(new DistStream(s, l, () => undefined), chunks, l);
        if (err !== undefined) expect(err).toBeInstanceOf(ProtocolError);
      }),
      RUNS,
    );
  });

  it('counts every frame and tick of a valid stream, however it is split', () => {
    fc.assert(
      fc.property(side, nodeName, fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 10 }), (s, name, sizes, cuts) => {
        const stream = new DistStream(s, LIMITS, () => undefined);
        expect(feed(stream, chunked(validDirection(s, name, sizes), cuts), LIMITS)).toBeUndefined();
        expect(stream.framed).toBe(true);
        expect(stream.ticks).toBe(sizes.filter((n) => n === 0).length);
        expect(stream.frames).toBe(sizes.filter((n) => n > 0).length);
      }),
      RUNS,
    );
  });

  it('throws nothing but ProtocolError on a mutated valid stream', () => {
    fc.assert(
      fc.property(
        side,
        mutated(fc.tuple(side, nodeName, fc.array(fc.integer({ min: 0, max: 600 }), { maxLength: 6 })).map(([s, n, sz]) => validDirection(s, n, sz))),
        fc.array(fc.nat(), { maxLength: 6 }),
        (s, buf, cuts) => {
          const err = feed(new DistStream(s, LIMITS, () => undefined), chunked(buf, cuts), LIMITS);
          if (err !== undefined) expect(err).toBeInstanceOf(ProtocolError);
        },
      ),
      RUNS,
    );
  });

  it('refuses every frame longer than maxFrameBytes, with its header split anywhere', () => {
    fc.assert(
      fc.property(side, fc.integer({ min: LIMITS.maxFrameBytes + 1, max: 0xffffffff }), fc.array(fc.nat(), { maxLength: 6 }), (s, len, cuts) => {
        const head = Buffer.alloc(4);
        head.writeUInt32BE(len, 0);
        const buf = Buffer.concat([validDirection(s, 'x@y.example', [5, 0]), head, Buffer.alloc(16)]);
        const err = feed(new DistStream(s, LIMITS, () => undefined), chunked(buf, cuts), LIMITS);
        expect(err).toBeInstanceOf(ProtocolError);
        expect((err as ProtocolError).code).toBe('frame_too_large');
      }),
      RUNS,
    );
  });

  it('refuses every handshake message longer than maxHandshakeMessageBytes before its body arrives', () => {
    fc.assert(
      fc.property(side, fc.integer({ min: LIMITS.maxHandshakeMessageBytes + 1, max: 0xffff }), (s, len) => {
        const head = Buffer.alloc(2);
        head.writeUInt16BE(len, 0);
        const err = feed(new DistStream(s, LIMITS, () => undefined), [head], LIMITS);
        expect((err as ProtocolError).code).toBe('handshake_too_large');
      }),
      RUNS,
    );
  });

  it('reads any 64-bit flags and ignores any data after the name of a v6 send_name or challenge', () => {
    fc.assert(
      fc.property(side, nodeName, fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), bytes(200), (s, name, flags, trailing) => {
        const body = s === 'initiator' ? sendNameV6(name, flags, 3, trailing) : challengeV6(name, flags, 5, 3, trailing);
        expect(decodeHandshakeMessage(s, body)).toEqual({ tag: s === 'initiator' ? 'send_name' : 'challenge', version: 6, flags, name });
      }),
      RUNS,
    );
  });

  it('handshake decoder throws nothing but ProtocolError on random bodies', () => {
    const tagged = fc.tuple(fc.constantFrom(...'NncsraXz\x00'.split('')), bytes(64)).map(([t, rest]) => Buffer.concat([Buffer.from(t, 'latin1'), rest]));
    fc.assert(
      fc.property(side, fc.oneof(bytes(64), tagged, mutated(fc.constantFrom(sendNameV6('a@b.c', 1n), sendNameV5('a@b.c', 1), challengeV6('a@b.c', 1n)))), (s, body) => {
        try {
          decodeHandshakeMessage(s, body);
        } catch (err) {
          expect(err).toBeInstanceOf(ProtocolError);
        }
      }),
      RUNS,
    );
  });
});
