// The EPMD wire protocol (ERTS User's Guide, "Distribution Protocol", EPMD
// section): requests are a 2-byte big-endian length and a tagged body;
// responses are unframed. Only what nodes and net_adm use is understood.

export const ALIVE2_REQ = 120; // 'x'
export const ALIVE2_RESP = 121; // 'y', 16-bit creation (pre-OTP 23 nodes)
export const ALIVE2_X_RESP = 118; // 'v', 32-bit creation
export const PORT_PLEASE2_REQ = 122; // 'z'
export const PORT2_RESP = 119; // 'w'
export const NAMES_REQ = 110; // 'n'

export const NODE_TYPE_NORMAL = 77;
export const NODE_TYPE_HIDDEN = 72;

/** Largest request body accepted; OTP's own epmd caps names at 255 bytes. */
export const MAX_EPMD_REQUEST = 1024;

export interface Alive2Request {
  type: 'alive2';
  port: number;
  nodeType: number;
  protocol: number;
  highestVersion: number;
  lowestVersion: number;
  name: string;
  extra: Buffer;
}

export interface PortPlease2Request {
  type: 'port_please2';
  name: string;
}

export interface NamesRequest {
  type: 'names';
}

export type EpmdRequest = Alive2Request | PortPlease2Request | NamesRequest;

export type EpmdParse =
  | { kind: 'incomplete' }
  | { kind: 'request'; request: EpmdRequest; consumed: number }
  | { kind: 'error'; reason: string };

export function parseEpmdRequest(buf: Buffer): EpmdParse {
  if (buf.length < 2) return { kind: 'incomplete' };
  const len = buf.readUInt16BE(0);
  if (len === 0) return { kind: 'error', reason: 'empty request' };
  if (len > MAX_EPMD_REQUEST) return { kind: 'error', reason: `request of ${len} bytes exceeds ${MAX_EPMD_REQUEST}` };
  if (buf.length < 2 + len) return { kind: 'incomplete' };
  const body = buf.subarray(2, 2 + len);
  const consumed = 2 + len;
  const tag = body[0]!;
  switch (tag) {
    case ALIVE2_REQ: {
      if (body.length < 13) return { kind: 'error', reason: 'ALIVE2_REQ truncated' };
      const nlen = body.readUInt16BE(9);
      if (nlen === 0 || 11 + nlen + 2 > body.length) return { kind: 'error', reason: 'ALIVE2_REQ name length out of bounds' };
      const elen = body.readUInt16BE(11 + nlen);
      if (13 + nlen + elen !== body.length) return { kind: 'error', reason: 'ALIVE2_REQ length mismatch' };
      const name = body.toString('latin1', 11, 11 + nlen);
      return {
        kind: 'request',
        consumed,
        request: {
          type: 'alive2',
          port: body.readUInt16BE(1),
          nodeType: body[3]!,
          protocol: body[4]!,
          highestVersion: body.readUInt16BE(5),
          lowestVersion: body.readUInt16BE(7),
          name,
          extra: Buffer.from(body.subarray(13 + nlen)),
        },
      };
    }
    case PORT_PLEASE2_REQ:
      if (body.length < 2) return { kind: 'error', reason: 'PORT_PLEASE2_REQ without a name' };
      return { kind: 'request', consumed, request: { type: 'port_please2', name: body.toString('latin1', 1) } };
    case NAMES_REQ:
      if (body.length !== 1) return { kind: 'error', reason: 'NAMES_REQ with a body' };
      return { kind: 'request', consumed, request: { type: 'names' } };
    default:
      return { kind: 'error', reason: `unsupported request tag ${tag}` };
  }
}

export function encodeAlive2Request(r: Omit<Alive2Request, 'type'>): Buffer {
  const name = Buffer.from(r.name, 'latin1');
  const body = Buffer.alloc(13 + name.length + r.extra.length);
  body[0] = ALIVE2_REQ;
  body.writeUInt16BE(r.port, 1);
  body[3] = r.nodeType;
  body[4] = r.protocol;
  body.writeUInt16BE(r.highestVersion, 5);
  body.writeUInt16BE(r.lowestVersion, 7);
  body.writeUInt16BE(name.length, 9);
  name.copy(body, 11);
  body.writeUInt16BE(r.extra.length, 11 + name.length);
  r.extra.copy(body, 13 + name.length);
  return frame(body);
}

export function encodePortPlease2Request(name: string): Buffer {
  return frame(Buffer.concat([Buffer.from([PORT_PLEASE2_REQ]), Buffer.from(name, 'latin1')]));
}

export function encodeNamesRequest(): Buffer {
  return frame(Buffer.from([NAMES_REQ]));
}

function frame(body: Buffer): Buffer {
  const out = Buffer.alloc(2 + body.length);
  out.writeUInt16BE(body.length, 0);
  body.copy(out, 2);
  return out;
}

export function encodeAlive2XResp(result: number, creation: number): Buffer {
  const out = Buffer.alloc(6);
  out[0] = ALIVE2_X_RESP;
  out[1] = result;
  out.writeUInt32BE(creation >>> 0, 2);
  return out;
}

export interface PortInfo {
  port: number;
  nodeType: number;
  protocol: number;
  highestVersion: number;
  lowestVersion: number;
  name: string;
  extra: Buffer;
}

export function encodePort2Resp(info: PortInfo | null): Buffer {
  if (!info) return Buffer.from([PORT2_RESP, 1]);
  const name = Buffer.from(info.name, 'latin1');
  const out = Buffer.alloc(14 + name.length + info.extra.length);
  out[0] = PORT2_RESP;
  out[1] = 0;
  out.writeUInt16BE(info.port, 2);
  out[4] = info.nodeType;
  out[5] = info.protocol;
  out.writeUInt16BE(info.highestVersion, 6);
  out.writeUInt16BE(info.lowestVersion, 8);
  out.writeUInt16BE(name.length, 10);
  name.copy(out, 12);
  out.writeUInt16BE(info.extra.length, 12 + name.length);
  info.extra.copy(out, 14 + name.length);
  return out;
}

/** PORT2_RESP as a client reads it; `incomplete` until the whole answer is in. */
export function parsePort2Resp(buf: Buffer): { kind: 'incomplete' } | { kind: 'error'; reason: string } | { kind: 'ok'; info: PortInfo | null } {
  if (buf.length < 2) return { kind: 'incomplete' };
  if (buf[0] !== PORT2_RESP) return { kind: 'error', reason: `not a PORT2_RESP (tag ${buf[0]})` };
  if (buf[1] !== 0) return { kind: 'ok', info: null };
  if (buf.length < 12) return { kind: 'incomplete' };
  const nlen = buf.readUInt16BE(10);
  if (buf.length < 14 + nlen) return { kind: 'incomplete' };
  const elen = buf.readUInt16BE(12 + nlen);
  if (buf.length < 14 + nlen + elen) return { kind: 'incomplete' };
  return {
    kind: 'ok',
    info: {
      port: buf.readUInt16BE(2),
      nodeType: buf[4]!,
      protocol: buf[5]!,
      highestVersion: buf.readUInt16BE(6),
      lowestVersion: buf.readUInt16BE(8),
      name: buf.toString('latin1', 12, 12 + nlen),
      extra: Buffer.from(buf.subarray(14 + nlen, 14 + nlen + elen)),
    },
  };
}

/** NAMES_RESP: the EPMD port, then one text line per node, as net_adm:names/1 parses it. */
export function encodeNamesResp(epmdPort: number, entries: { name: string; port: number }[]): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(epmdPort, 0);
  const text = entries.map((e) => `name ${e.name} at port ${e.port}\n`).join('');
  return Buffer.concat([head, Buffer.from(text, 'latin1')]);
}
