// The node side of a distribution link, for the scale run: 200 real `erl`
// VMs would not fit on a 2-core machine, so each source node is a socket that
// speaks the real handshake (version 6, cookie digests both ways) to a real
// `erl` node through the gateways, then answers its ticks. The gateways see
// exactly what a node would send and make every check they make for one.

import { createHash, randomInt } from 'node:crypto';
import net from 'node:net';
import { encodePortPlease2Request, parsePort2Resp } from '../epmd/protocol.js';
import { DFLAG_HANDSHAKE_23, DFLAG_UNLINK_ID, DFLAG_V4_NC, decodeHandshakeMessage, encodeHandshakeMessage, sendNameV6 } from '../framing/handshake.js';

// Flags an OTP 25 node requires: MANDATORY_DFLAGS_25 and its digest bit (from
// kernel/include/dist.hrl), plus UNLINK_ID. DFLAG_PUBLISHED is left out: the
// emulated nodes connect hidden, so the real node starts no `global` sync
// with nodes that could not answer it.
const DFLAGS_25 =
  0x04n | 0x10n | 0x80n | 0x100n | 0x200n | 0x400n | 0x800n | 0x10000n | 0x20000n | 0x40000n | DFLAG_HANDSHAKE_23 | DFLAG_UNLINK_ID | 0x4000000n;

/**
 * The flags a node of OTP release `otp` requires of its peer: OTP 26 made
 * DFLAG_V4_NC and DFLAG_UNLINK_ID mandatory (MANDATORY_DFLAGS_26), and a node
 * of 26 or later answers `snot_allowed` to a peer without them.
 */
export function emulatedFlags(otp: number): bigint {
  return otp >= 26 ? DFLAGS_25 | DFLAG_V4_NC : DFLAGS_25;
}

/**
 * Where a node on the local gateway's host reaches `short`: the port its
 * gateway's EPMD gives on `host` (the remote gateway's loopback alias), as
 * PORT_PLEASE2 tells a real node. The gateway picks its stand-in ports, so
 * they are not the remote node's roster port.
 */
export function lookupStandIn(host: string, epmdPort: number, short: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port: epmdPort });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => done(new Error(`EPMD ${host}:${epmdPort} did not answer PORT_PLEASE2 ${short} in ${timeoutMs} ms`)), timeoutMs);
    const done = (result: Error | number) => {
      clearTimeout(timer);
      sock.destroy();
      if (typeof result === 'number') resolve(result);
      else reject(result);
    };
    sock.on('connect', () => sock.write(encodePortPlease2Request(short)));
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const r = parsePort2Resp(buf);
      if (r.kind === 'incomplete') return;
      if (r.kind === 'error') done(new Error(`EPMD ${host}:${epmdPort}: ${r.reason}`));
      else if (r.info === null) done(new Error(`EPMD ${host}:${epmdPort} does not know ${short}`));
      else done(r.info.port);
    });
    sock.on('error', (err) => done(err));
    sock.on('close', () => done(new Error(`EPMD ${host}:${epmdPort} closed before answering ${short}`)));
  });
}

/** Largest message an emulated node accepts; a handshake message or a frame from an idle link is far smaller. */
const MAX_MESSAGE_BYTES = 64 * 1024;

const TICK = Buffer.alloc(4);

export interface EmulatedNodeOptions {
  /** Where the node dials: the local gateway's stand-in for the target. */
  host: string;
  port: number;
  /** This node's full name (a roster node of the local gateway). */
  name: string;
  /** The node it dials; its challenge must carry this name. */
  target: string;
  cookie: string;
  /** Distribution flags to offer (emulatedFlags of the target's release). */
  flags: bigint;
  timeoutMs: number;
}

export interface EmulatedLink {
  /** Ticks received from the target since the handshake. */
  readonly ticks: number;
  /** Non-tick frames received (an idle hidden link gets none). */
  readonly frames: number;
  readonly open: boolean;
  /** Writes bytes as they are after the handshake (frames with their 4-byte length): tests send crafted messages. */
  write(bytes: Buffer): void;
  close(): void;
}

function digest(cookie: string, challenge: number): Buffer {
  return createHash('md5').update(cookie).update(String(challenge)).digest();
}

/** Dials, completes the handshake, and resolves once the target has acknowledged our cookie digest. */
export function connectEmulatedNode(o: EmulatedNodeOptions): Promise<EmulatedLink> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: o.host, port: o.port });
    sock.setNoDelay(true);
    const ours = randomInt(2 ** 32);
    let buf: Buffer = Buffer.alloc(0);
    let step: 'status' | 'challenge' | 'ack' | 'framed' = 'status';
    const state = { ticks: 0, frames: 0, open: true };
    const link: EmulatedLink = {
      get ticks() {
        return state.ticks;
      },
      get frames() {
        return state.frames;
      },
      get open() {
        return state.open;
      },
      write: (bytes) => void sock.write(bytes),
      close: () => sock.destroy(),
    };
    const timer = setTimeout(() => fail(new Error(`${o.name}: handshake with ${o.target} not done in ${o.timeoutMs} ms (at ${step})`)), o.timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };

    const onHandshakeMessage = (body: Buffer): void => {
      const tag = String.fromCharCode(body[0] ?? 0);
      if (step === 'status') {
        const status = body.toString('latin1', 1);
        if (tag !== 's' || status !== 'ok') throw new Error(`${o.name}: status ${tag}${status}, expected sok`);
        step = 'challenge';
      } else if (step === 'challenge') {
        if (tag !== 'N' || body.length < 19) throw new Error(`${o.name}: expected a v6 challenge, got tag ${tag}`);
        const challenge = decodeHandshakeMessage('acceptor', body);
        const name = challenge.tag === 'challenge' ? challenge.name : '';
        if (name !== o.target) throw new Error(`${o.name}: challenge from ${name}, expected ${o.target}`);
        const reply = Buffer.alloc(21);
        reply[0] = 0x72; // 'r'
        reply.writeUInt32BE(ours, 1);
        digest(o.cookie, body.readUInt32BE(9)).copy(reply, 5);
        sock.write(encodeHandshakeMessage(reply));
        step = 'ack';
      } else {
        if (tag !== 'a' || !body.subarray(1).equals(digest(o.cookie, ours))) throw new Error(`${o.name}: bad challenge_ack from ${o.target}`);
        step = 'framed';
        clearTimeout(timer);
        resolve(link);
      }
    };

    sock.on('connect', () => sock.write(encodeHandshakeMessage(sendNameV6(o.name, o.flags, 1 + randomInt(2 ** 31)))));
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      try {
        for (;;) {
          const head = step === 'framed' ? 4 : 2;
          if (buf.length < head) return;
          const len = head === 4 ? buf.readUInt32BE(0) : buf.readUInt16BE(0);
          if (len > MAX_MESSAGE_BYTES) throw new Error(`${o.name}: message of ${len} bytes`);
          if (buf.length < head + len) return;
          const body = buf.subarray(head, head + len);
          buf = buf.subarray(head + len);
          if (head === 2) onHandshakeMessage(body);
          else if (len === 0) {
            state.ticks++;
            sock.write(TICK);
          } else state.frames++;
        }
      } catch (err) {
        fail(err as Error);
      }
    });
    sock.on('error', (err) => fail(err));
    sock.on('close', () => {
      state.open = false;
      fail(new Error(`${o.name}: connection closed at ${step}`));
    });
  });
}
