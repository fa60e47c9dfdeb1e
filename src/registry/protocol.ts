// The registry link's wire format. Inside TLS, after the `R` preamble, each
// message is a 4-byte big-endian length and a JSON object. The gateway that
// dialled announces the names registered with its EPMD: a snapshot first (and
// again whenever it wants to resynchronise, or is asked to with `resync`),
// then one message per change. Both sides send `alive` heartbeats. JSON keeps the protocol legible in a
// capture; every field is checked here, and nothing else is accepted.

import { isShortName } from '../config/roster.js';

export const REGISTRY_PROTOCOL_VERSION = 1;

/** One name registered with a gateway's EPMD, as that gateway's nodes asked for it. */
export interface RegistryEntry {
  /** Short name, as in ALIVE2. */
  name: string;
  /** The port the node listens on, on its host's loopback. */
  port: number;
  highestVersion: number;
  lowestVersion: number;
}

export type RegistryMessage =
  | { t: 'snapshot'; v: number; names: RegistryEntry[] }
  | { t: 'add'; entry: RegistryEntry }
  | { t: 'remove'; name: string }
  | { t: 'alive' }
  /** From the listening side: send a snapshot again (its roster changed, so names it refused may be admitted now). */
  | { t: 'resync' };

/** A registry link that must be closed: malformed (`bad_control`) or over a bound (`limit_reached`). */
export class RegistryProtocolError extends Error {
  constructor(
    readonly reason: 'bad_control' | 'limit_reached',
    message: string,
  ) {
    super(message);
    this.name = 'RegistryProtocolError';
  }
}

function bad(message: string): never {
  throw new RegistryProtocolError('bad_control', message);
}

export function encodeRegistryMessage(m: RegistryMessage): Buffer {
  const wire =
    m.t === 'snapshot'
      ? { t: 'snapshot', v: m.v, names: m.names.map(entryToWire) }
      : m.t === 'add'
        ? { t: 'add', ...entryToWire(m.entry) }
        : m;
  const body = Buffer.from(JSON.stringify(wire), 'utf8');
  const out = Buffer.alloc(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

function entryToWire(e: RegistryEntry): Record<string, string | number> {
  return { name: e.name, port: e.port, hi: e.highestVersion, lo: e.lowestVersion };
}

/** Splits a registry link's bytes into messages; holds at most one message's bytes. */
export class RegistryReader {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly maxMessageBytes: number) {}

  /** Every message completed by `chunk`, in order. Throws RegistryProtocolError. */
  push(chunk: Buffer): RegistryMessage[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: RegistryMessage[] = [];
    let i = 0;
    while (i + 4 <= this.buf.length) {
      const len = this.buf.readUInt32BE(i);
      if (len > this.maxMessageBytes) throw new RegistryProtocolError('limit_reached', `registry message of ${len} bytes exceeds ${this.maxMessageBytes}`);
      if (i + 4 + len > this.buf.length) break;
      out.push(decodeRegistryMessage(this.buf.subarray(i + 4, i + 4 + len)));
      i += 4 + len;
    }
    this.buf = i === this.buf.length ? Buffer.alloc(0) : Buffer.from(this.buf.subarray(i));
    return out;
  }

  /** Bytes held of a message not yet complete. */
  get bufferedBytes(): number {
    return this.buf.length;
  }
}

export function decodeRegistryMessage(body: Buffer): RegistryMessage {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    bad('registry message is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad('registry message is not an object');
  const o = v as Record<string, unknown>;
  switch (o.t) {
    case 'snapshot': {
      onlyKeys(o, ['t', 'v', 'names']);
      if (o.v !== REGISTRY_PROTOCOL_VERSION) bad(`registry protocol version ${JSON.stringify(o.v)}, expected ${REGISTRY_PROTOCOL_VERSION}`);
      if (!Array.isArray(o.names)) bad('snapshot without a names list');
      return { t: 'snapshot', v: REGISTRY_PROTOCOL_VERSION, names: o.names.map((e) => entryFromWire(e, ENTRY_KEYS)) };
    }
    case 'add':
      return { t: 'add', entry: entryFromWire(o, ['t', ...ENTRY_KEYS]) };
    case 'remove':
      onlyKeys(o, ['t', 'name']);
      return { t: 'remove', name: shortName(o.name) };
    case 'alive':
    case 'resync':
      onlyKeys(o, ['t']);
      return { t: o.t };
    default:
      bad(`unknown registry message type ${JSON.stringify(o.t)?.slice(0, 40)}`);
  }
}

const ENTRY_KEYS = ['name', 'port', 'hi', 'lo'] as const;

function entryFromWire(v: unknown, keys: readonly string[]): RegistryEntry {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad('registry entry is not an object');
  const o = v as Record<string, unknown>;
  onlyKeys(o, keys);
  const port = u16(o.port, 'port');
  const highestVersion = u16(o.hi, 'hi');
  const lowestVersion = u16(o.lo, 'lo');
  if (port === 0) bad('registry entry with port 0');
  if (lowestVersion > highestVersion) bad('registry entry with lo above hi');
  return { name: shortName(o.name), port, highestVersion, lowestVersion };
}

function shortName(v: unknown): string {
  if (typeof v !== 'string' || !isShortName(v)) bad(`registry name ${JSON.stringify(v)?.slice(0, 80)} is not a short node name`);
  return v;
}

function u16(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff) bad(`registry entry ${what} ${JSON.stringify(v)?.slice(0, 40)} is not a 16-bit integer`);
  return v;
}

function onlyKeys(o: Record<string, unknown>, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) bad(`unexpected key ${JSON.stringify(k).slice(0, 40)} in a registry message`);
}
