// What a running gateway and the process taking over from it say to each
// other on the take-over socket, and how each message is checked on arrival.
// Every message is one JSON object; the descriptors it carries travel beside
// it (SCM_RIGHTS, native/passfd.c) in the order its items list them.
//
//   new → old  hello {format}         old: refuse {why} if it does not know the format
//   old → new  hello {format}         new: refuse {why} likewise
//   old → new  listeners, registrations, links (batches, with descriptors), end {counters}
//   new → old  ready                  everything parsed and checked; nothing adopted yet
//   old → new  commit                 from here the old process never relays again
//   new → old  done {links}           the new process serves; the old one exits
//
// Up to `ready`, either side may walk away and the old process goes on as if
// nothing had happened (rollback). After `commit` it must not: a link it
// relayed again would seal records under numbers the new process has used,
// reusing an AEAD nonce.

import { X509Certificate } from 'node:crypto';
import type { NativeCounters } from '../fastpath/native.js';
import type { LinkInfo } from '../mesh/link.js';
import type { NativeParams, ParkedLink } from '../mesh/native-relay.js';

/** The format this build speaks. A change to any message below is a new format. */
export const TAKEOVER_FORMAT = 1;
/** Formats this build takes over from, or hands over to. */
export const KNOWN_FORMATS: readonly number[] = [1];

export type ListenerKind = 'tls' | 'epmd' | 'stand-in' | 'metrics';

export interface ListenerItem {
  kind: ListenerKind;
  host: string;
  port: number;
  /** A stand-in's target (peer and short name), so the next process gives it the same port. */
  standIn?: { peer: string; short: string };
}

export interface RegistrationItem {
  name: string;
  port: number;
  nodeType: number;
  highestVersion: number;
  lowestVersion: number;
  creation: number;
  kind: 'node' | 'operator' | 'local';
}

export interface LinkItem {
  info: Omit<LinkInfo, 'peerCert'> & { peerCert: string };
  startedAt: number;
  params: NativeParams;
  parked: ParkedLink;
}

export interface CounterSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export type Message =
  | { t: 'hello'; format: number; gateway: string; pid: number; version: string }
  | { t: 'refuse'; why: string }
  | { t: 'listeners'; items: ListenerItem[] }
  | { t: 'registrations'; items: RegistrationItem[] }
  | { t: 'links'; items: LinkItem[] }
  | { t: 'end'; counters: CounterSample[]; lastCreation: [string, number][]; ended: number; frozenAt: number }
  | { t: 'ready' }
  | { t: 'commit' }
  | { t: 'done'; links: number };

/** How many descriptors each item of a message carries. */
export function fdsPerItem(m: Message): number {
  if (m.t === 'listeners' || m.t === 'registrations') return 1;
  if (m.t === 'links') return 2;
  return 0;
}

export function itemCount(m: Message): number {
  return m.t === 'listeners' || m.t === 'registrations' || m.t === 'links' ? m.items.length : 0;
}

/** A message that is not what the format says: the take-over stops. */
export class TakeoverProtocolError extends Error {
  override name = 'TakeoverProtocolError';
}

const b64 = (b: Buffer): string => b.toString('base64');

/** A message as sent: a link's buffers as {b64} (Buffer's own toJSON would make an array of numbers). */
export function encode(m: Message): Buffer {
  const wire = m.t === 'links' ? { ...m, items: m.items.map(wireLink) } : m;
  return Buffer.from(JSON.stringify(wire));
}

function wireLink(item: LinkItem): unknown {
  const d = item.parked.detached;
  const buf = (x: Buffer) => ({ b64: b64(x) });
  return {
    ...item,
    parked: {
      totals: item.parked.totals,
      detached: {
        ...d,
        txSecret: buf(d.txSecret),
        rxSecret: buf(d.rxSecret),
        sealedToRemote: buf(d.sealedToRemote),
        walkedToLocal: buf(d.walkedToLocal),
        fromRemote: buf(d.fromRemote),
        rxHandshake: buf(d.rxHandshake),
      },
    },
  };
}

/** Parses and checks one message; throws TakeoverProtocolError with the path of what is wrong. */
export function decode(data: Buffer): Message {
  let raw: unknown;
  try {
    raw = JSON.parse(data.toString('utf8'));
  } catch (err) {
    throw new TakeoverProtocolError(`not JSON: ${(err as Error).message}`);
  }
  const r = new Reader(raw, 'message');
  const t = r.str('t');
  switch (t) {
    case 'hello':
      return { t, format: r.int('format'), gateway: r.str('gateway'), pid: r.int('pid'), version: r.str('version') };
    case 'refuse':
      return { t, why: r.str('why') };
    case 'listeners':
      return { t, items: r.list('items', listenerItem) };
    case 'registrations':
      return { t, items: r.list('items', registrationItem) };
    case 'links':
      return { t, items: r.list('items', linkItem) };
    case 'end':
      return {
        t,
        counters: r.list('counters', (c) => ({ name: c.str('name'), labels: c.strings('labels'), value: c.num('value') })),
        lastCreation: r.list('lastCreation', (c) => [c.str('0'), c.int('1')] as [string, number]),
        ended: r.int('ended'),
        frozenAt: r.int('frozenAt'),
      };
    case 'ready':
    case 'commit':
      return { t };
    case 'done':
      return { t, links: r.int('links') };
    default:
      throw new TakeoverProtocolError(`message.t: unknown message "${t}"`);
  }
}

function listenerItem(r: Reader): ListenerItem {
  const kind = r.oneOf('kind', ['tls', 'epmd', 'stand-in', 'metrics'] as const);
  const item: ListenerItem = { kind, host: r.str('host'), port: r.port('port') };
  if (kind === 'stand-in') {
    const s = r.obj('standIn');
    item.standIn = { peer: s.str('peer'), short: s.str('short') };
  }
  return item;
}

function registrationItem(r: Reader): RegistrationItem {
  return {
    name: r.str('name'),
    port: r.port('port'),
    nodeType: r.int('nodeType'),
    highestVersion: r.int('highestVersion'),
    lowestVersion: r.int('lowestVersion'),
    creation: r.int('creation'),
    kind: r.oneOf('kind', ['node', 'operator', 'local'] as const),
  };
}

function counters(r: Reader): NativeCounters {
  return {
    bytesOut: r.int('bytesOut'),
    bytesIn: r.int('bytesIn'),
    framesOut: r.int('framesOut'),
    framesIn: r.int('framesIn'),
    ticksOut: r.int('ticksOut'),
    ticksIn: r.int('ticksIn'),
    keyUpdatesOut: r.int('keyUpdatesOut'),
    keyUpdatesIn: r.int('keyUpdatesIn'),
  };
}

function scan(r: Reader): { remaining: number; header: number; headerBytes: number } {
  return { remaining: r.int('remaining'), header: r.int('header'), headerBytes: r.int('headerBytes') };
}

function linkItem(r: Reader): LinkItem {
  const i = r.obj('info');
  const p = r.obj('params');
  const k = r.obj('parked');
  const d = k.obj('detached');
  return {
    info: {
      peer: i.str('peer'),
      direction: i.oneOf('direction', ['inbound', 'outbound'] as const),
      localNode: i.str('localNode'),
      remoteNode: i.str('remoteNode'),
      sourceName: i.str('sourceName'),
      targetName: i.str('targetName'),
      sourceHidden: i.bool('sourceHidden'),
      peerSerial: i.str('peerSerial'),
      peerCert: i.str('peerCert'),
    },
    startedAt: r.int('startedAt'),
    params: { cipher: p.str('cipher'), hash: p.str('hash'), client: p.bool('client'), maxFrameBytes: p.int('maxFrameBytes'), closeGraceMs: p.int('closeGraceMs') },
    parked: {
      totals: counters(k.obj('totals')),
      detached: {
        // Descriptors travel beside the message; these are filled in by the receiver.
        localFd: -1,
        remoteFd: -1,
        txSecret: d.buf('txSecret'),
        rxSecret: d.buf('rxSecret'),
        txSeq: d.int('txSeq'),
        rxSeq: d.int('rxSeq'),
        txUpdates: d.int('txUpdates'),
        rxUpdates: d.int('rxUpdates'),
        sealedToRemote: d.buf('sealedToRemote'),
        walkedToLocal: d.buf('walkedToLocal'),
        fromRemote: d.buf('fromRemote'),
        rxHandshake: d.buf('rxHandshake'),
        outScan: scan(d.obj('outScan')),
        inScan: scan(d.obj('inScan')),
      },
    },
  };
}

/** The certificate of a link item, parsed. */
export function linkInfoOf(item: LinkItem): LinkInfo {
  let peerCert: X509Certificate;
  try {
    peerCert = new X509Certificate(item.info.peerCert);
  } catch (err) {
    throw new TakeoverProtocolError(`link ${item.info.localNode} ↔ ${item.info.remoteNode}: peerCert: ${(err as Error).message}`);
  }
  return { ...item.info, peerCert };
}

/** Reads one object's fields by name, each checked, each error with its path. */
class Reader {
  private readonly o: Record<string, unknown>;
  constructor(
    value: unknown,
    private readonly path: string,
  ) {
    if (!value || typeof value !== 'object' || Array.isArray(value)) throw new TakeoverProtocolError(`${path}: not an object`);
    this.o = value as Record<string, unknown>;
  }
  private get(k: string): unknown {
    if (!(k in this.o)) throw new TakeoverProtocolError(`${this.path}.${k}: missing`);
    return this.o[k];
  }
  private bad(k: string, what: string): never {
    throw new TakeoverProtocolError(`${this.path}.${k}: not ${what}`);
  }
  str(k: string): string {
    const v = this.get(k);
    return typeof v === 'string' ? v : this.bad(k, 'a string');
  }
  bool(k: string): boolean {
    const v = this.get(k);
    return typeof v === 'boolean' ? v : this.bad(k, 'a boolean');
  }
  num(k: string): number {
    const v = this.get(k);
    return typeof v === 'number' && Number.isFinite(v) ? v : this.bad(k, 'a number');
  }
  int(k: string): number {
    const v = this.get(k);
    return Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : this.bad(k, 'a whole number');
  }
  port(k: string): number {
    const v = this.int(k);
    return v >= 1 && v <= 65535 ? v : this.bad(k, 'a port');
  }
  oneOf<T extends string>(k: string, values: readonly T[]): T {
    const v = this.str(k);
    return (values as readonly string[]).includes(v) ? (v as T) : this.bad(k, values.join(' or '));
  }
  buf(k: string): Buffer {
    const v = this.get(k) as { b64?: unknown } | null;
    if (!v || typeof v !== 'object' || typeof v.b64 !== 'string') return this.bad(k, 'a buffer');
    return Buffer.from(v.b64, 'base64');
  }
  obj(k: string): Reader {
    return new Reader(this.get(k), `${this.path}.${k}`);
  }
  strings(k: string): Record<string, string> {
    const r = this.obj(k);
    const out: Record<string, string> = {};
    for (const key of Object.keys(r.o)) out[key] = r.str(key);
    return out;
  }
  list<T>(k: string, each: (r: Reader) => T): T[] {
    const v = this.get(k);
    if (!Array.isArray(v)) return this.bad(k, 'a list');
    return v.map((x, i) => (Array.isArray(x) ? each(new Reader(Object.fromEntries(x.map((y, j) => [String(j), y])), `${this.path}.${k}[${i}]`)) : each(new Reader(x, `${this.path}.${k}[${i}]`))));
  }
}
