// Decoders for distribution handshake messages (the body after the 2-byte
// length). Versions 5 (`n`) and 6 (`N`) of send_name and the challenge are
// understood, plus the `c` complement an OTP 23/24 node sends after a v5 name.
// Flags are read, never judged: bits this code does not know (OTP 28's
// DFLAG_ALTACT_SIG, OTP 29's DFLAG_NATIVE_RECORDS, whatever comes next) pass
// as they are, and so does data after a v6 name, which the protocol says
// "must be accepted and ignored" (OTP 25+).

export const DFLAG_PUBLISHED = 0x01n;
/** Flags the relay never interprets; named for the tests and the bench. */
export const DFLAG_HANDSHAKE_23 = 0x0100_0000n;
export const DFLAG_UNLINK_ID = 0x0200_0000n;
export const DFLAG_V4_NC = 1n << 34n;
/** OTP 28: alternate action signals (ALTACT_SIG_SEND). */
export const DFLAG_ALTACT_SIG = 1n << 37n;
/** OTP 29: native record terms. */
export const DFLAG_NATIVE_RECORDS = 1n << 38n;

export type HandshakeMessage =
  | { tag: 'send_name'; version: 5 | 6; flags: bigint; name: string }
  | { tag: 'status'; status: string }
  | { tag: 'challenge'; version: 5 | 6; flags: bigint; name: string }
  | { tag: 'complement' }
  | { tag: 'challenge_reply' }
  | { tag: 'challenge_ack' };

/** Which way a byte stream flows, named after the node that writes it. */
export type Side = 'initiator' | 'acceptor';

export class ProtocolError extends Error {
  /** A short, bounded reason usable as a metric label. */
  constructor(
    readonly code: 'bad_handshake' | 'frame_too_large' | 'handshake_too_large',
    message: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

function bad(message: string): never {
  throw new ProtocolError('bad_handshake', message);
}

/** Decodes one handshake message written by `side`; throws ProtocolError. */
export function decodeHandshakeMessage(side: Side, body: Buffer): HandshakeMessage {
  if (body.length === 0) bad('empty handshake message');
  const tag = String.fromCharCode(body[0]!);
  if (side === 'initiator') {
    switch (tag) {
      case 'N': {
        if (body.length < 15) bad('send_name (v6) truncated');
        const nlen = body.readUInt16BE(13);
        if (15 + nlen > body.length) bad('send_name (v6) name longer than the message');
        return { tag: 'send_name', version: 6, flags: body.readBigUInt64BE(1), name: body.toString('latin1', 15, 15 + nlen) };
      }
      case 'n':
        if (body.length < 8) bad('send_name (v5) truncated');
        return { tag: 'send_name', version: 5, flags: BigInt(body.readUInt32BE(3)), name: body.toString('latin1', 7) };
      case 'c':
        if (body.length !== 9) bad('complement message of wrong length');
        return { tag: 'complement' };
      case 's':
        return { tag: 'status', status: body.toString('latin1', 1) };
      case 'r':
        if (body.length !== 21) bad('challenge_reply of wrong length');
        return { tag: 'challenge_reply' };
      default:
        bad(`unexpected handshake tag ${body[0]} from the initiating node`);
    }
  }
  switch (tag) {
    case 's':
      return { tag: 'status', status: body.toString('latin1', 1) };
    case 'N': {
      if (body.length < 19) bad('challenge (v6) truncated');
      const nlen = body.readUInt16BE(17);
      if (19 + nlen > body.length) bad('challenge (v6) name longer than the message');
      return { tag: 'challenge', version: 6, flags: body.readBigUInt64BE(1), name: body.toString('latin1', 19, 19 + nlen) };
    }
    case 'n':
      if (body.length < 12) bad('challenge (v5) truncated');
      return { tag: 'challenge', version: 5, flags: BigInt(body.readUInt32BE(3)), name: body.toString('latin1', 11) };
    case 'a':
      if (body.length !== 17) bad('challenge_ack of wrong length');
      return { tag: 'challenge_ack' };
    default:
      bad(`unexpected handshake tag ${body[0]} from the accepting node`);
  }
}

/**
 * Enforces the order of one direction's handshake messages. The initiator
 * writes send_name, then possibly a status answer (`alive` case) and a
 * complement, then challenge_reply; the acceptor writes status, challenge,
 * then challenge_ack. The last message of each switches to 4-byte frames.
 */
export function checkOrder(side: Side, index: number, msg: HandshakeMessage): 'more' | 'done' {
  if (side === 'initiator') {
    if (index === 0) return msg.tag === 'send_name' ? 'more' : bad(`initiator began with ${msg.tag}, not send_name`);
    if (msg.tag === 'complement' || msg.tag === 'status') return 'more';
    if (msg.tag === 'challenge_reply') return 'done';
    return bad(`initiator sent ${msg.tag} out of order`);
  }
  if (index === 0) return msg.tag === 'status' ? 'more' : bad(`acceptor began with ${msg.tag}, not status`);
  if (msg.tag === 'challenge' && index === 1) return 'more';
  if (msg.tag === 'challenge_ack' && index === 2) return 'done';
  return bad(`acceptor sent ${msg.tag} out of order`);
}

export function encodeHandshakeMessage(body: Buffer): Buffer {
  const out = Buffer.alloc(2 + body.length);
  out.writeUInt16BE(body.length, 0);
  body.copy(out, 2);
  return out;
}

/** A v6 send_name body, as OTP 23+ writes it; `trailing` stands for data a later OTP may append. */
export function sendNameV6(name: string, flags: bigint, creation = 1, trailing: Buffer = Buffer.alloc(0)): Buffer {
  const n = Buffer.from(name, 'latin1');
  const b = Buffer.alloc(15 + n.length + trailing.length);
  b[0] = 0x4e; // 'N'
  b.writeBigUInt64BE(flags, 1);
  b.writeUInt32BE(creation, 9);
  b.writeUInt16BE(n.length, 13);
  n.copy(b, 15);
  trailing.copy(b, 15 + n.length);
  return b;
}

/** A v5 send_name body, as OTP 22 and older write it. */
export function sendNameV5(name: string, flags: number): Buffer {
  const n = Buffer.from(name, 'latin1');
  const b = Buffer.alloc(7 + n.length);
  b[0] = 0x6e; // 'n'
  b.writeUInt16BE(5, 1);
  b.writeUInt32BE(flags >>> 0, 3);
  n.copy(b, 7);
  return b;
}

/** A v6 challenge body; `trailing` as for sendNameV6. */
export function challengeV6(name: string, flags: bigint, challenge = 0x12345678, creation = 1, trailing: Buffer = Buffer.alloc(0)): Buffer {
  const n = Buffer.from(name, 'latin1');
  const b = Buffer.alloc(19 + n.length + trailing.length);
  b[0] = 0x4e;
  b.writeBigUInt64BE(flags, 1);
  b.writeUInt32BE(challenge, 9);
  b.writeUInt32BE(creation, 13);
  b.writeUInt16BE(n.length, 17);
  n.copy(b, 19);
  trailing.copy(b, 19 + n.length);
  return b;
}
