// Loads the optional native data plane (native/fastpath.c, built by
// scripts/build-native.sh into build/fastpath.node) and gives the rest of the
// gateway one engine per process: adopt a link, close it, read its counters.
// Without the module every link stays on node:tls, which is the fallback and
// speaks the same records on the wire.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { existsSync } from 'node:fs';
import {
  DIST_MAX_FRAGMENT_BYTES,
  DIST_MAX_FRAGMENT_SEQUENCES,
  DIST_MAX_FRAGMENTS_PER_MESSAGE,
  DIST_MAX_MESSAGE_BYTES,
  FILTER_MAX_HELD_BYTES,
  NATIVE_MAX_HANDSHAKE_MESSAGE_BYTES,
  NATIVE_READ_BYTES,
  NATIVE_REKEY_RECORDS,
} from '../config/limits.js';

/** Where scripts/build-native.sh puts the module. */
export const NATIVE_MODULE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../build/fastpath.node');

/** How a gateway relays established links: `auto` takes the native data plane when it loads. */
export type DataPlaneMode = 'auto' | 'native' | 'node';

export function parseDataPlane(value: string | undefined): DataPlaneMode {
  if (value === undefined || value === '' || value === 'auto') return 'auto';
  if (value === 'native' || value === 'node') return value;
  throw new Error(`data plane must be auto, native or node, not ${JSON.stringify(value)}`);
}

/** Frame-scanner state handed over with a direction, so frames split across the hand-over are walked once. */
export interface ScanState {
  remaining: number;
  header: number;
  headerBytes: number;
  frames: number;
  ticks: number;
  /** A direction still in its distribution handshake (native/handshake.h): the engine walks the rest. */
  handshake?: HandshakeState;
}

/** Where one direction of a distribution handshake stands at its hand-over. */
export interface HandshakeState {
  /** Named after the node that writes it: 1 initiator, 2 acceptor (native/handshake.h's hs_side_t). */
  side: 1 | 2;
  /** Messages of it the gateway walked (the initiator's send_name at least). */
  index: number;
  /** The link's limits.maxHandshakeMessageBytes. */
  maxMessage: number;
  /** The acceptor's expected node name (latin1), which its challenge must carry. */
  expect?: Buffer;
  /** The acceptor is an operator: it must answer hidden. */
  hidden: boolean;
}

/** What a filtered link's native judge lets through itself (src/policy/filter.ts's LinkFilter, as native/judge.h takes it). */
export interface NativeFilter {
  full: boolean;
  names: string[];
  calls: string[];
}

export interface AdoptArgs {
  localFd: number;
  remoteFd: number;
  /** The AEAD and the key schedule's hash, by their node:crypto names (src/fastpath/keys.ts). */
  cipher: string;
  hash: string;
  /** Each direction's application traffic secret and next record number: the engine derives keys and IVs, and KeyUpdate's next ones. */
  txSecret: Buffer;
  txSeq: number;
  rxSecret: Buffer;
  rxSeq: number;
  /** Whether this gateway is the connection's TLS client (only a server may send session tickets). */
  client: boolean;
  /** Plaintext read from the local node, not yet sealed. */
  toRemote: Buffer;
  /** Plaintext node:tls opened, not yet written to the local node. */
  toLocal: Buffer;
  /** Ciphertext read from the peer, not yet opened. */
  fromRemote: Buffer;
  outScan: ScanState;
  inScan: ScanState;
  maxFrameBytes: number;
  closeGraceMs: number;
  /** From another engine's detach (DetachedLink): records it sealed the peer has not taken, numbered before txSeq. */
  sealedToRemote?: Buffer;
  /** From another engine's detach: plaintext its scanner walked that the node has not taken. */
  walkedToLocal?: Buffer;
  /** From another engine's detach: the part it held of a post-handshake message. */
  rxHandshake?: Buffer;
  /** A filtered link (native/gate.h): its filter, and the atom cache the JS judge kept until the hand-over ([slot, text]). */
  filter?: NativeFilter & { atoms: [number, string][] };
}

/**
 * A link the engine let go of (detach): its sockets, now the caller's to
 * close, and everything another engine needs to go on where this one
 * stopped. Frames and ticks are in the closing counters.
 */
export interface DetachedLink {
  localFd: number;
  remoteFd: number;
  txSecret: Buffer;
  rxSecret: Buffer;
  txSeq: number;
  rxSeq: number;
  /** KeyUpdates each direction has taken since the adopt. */
  txUpdates: number;
  rxUpdates: number;
  sealedToRemote: Buffer;
  walkedToLocal: Buffer;
  fromRemote: Buffer;
  rxHandshake: Buffer;
  outScan: Omit<ScanState, 'frames' | 'ticks'>;
  inScan: Omit<ScanState, 'frames' | 'ticks'>;
}

/** native/passfd.c: one message is a payload and up to 250 descriptors (SCM_RIGHTS) over a Unix stream socket. */
export interface PassFd {
  /** A non-blocking Unix stream socket connected to `path`. */
  connect(path: string): number;
  dup(fd: number): number;
  /** Who is at the other end of a Unix socket (SO_PEERCRED). */
  peer(fd: number): { pid: number; uid: number; gid: number };
  send(fd: number, data: Buffer, fds: number[], timeoutMs: number): Promise<void>;
  /** Rejects (closing what came) on a deadline, a short message, or more than maxBytes or maxFds. */
  recv(fd: number, maxBytes: number, maxFds: number, timeoutMs: number): Promise<{ data: Buffer; fds: number[] }>;
}

export interface NativeCounters {
  bytesOut: number;
  bytesIn: number;
  framesOut: number;
  framesIn: number;
  ticksOut: number;
  ticksIn: number;
  /** KeyUpdates sent (a key sealed NATIVE_REKEY_RECORDS records, or the peer asked) and received. */
  keyUpdatesOut: number;
  keyUpdatesIn: number;
}

/** The engine's bounds, fixed for the process (src/config/limits.ts). */
export interface EngineOptions {
  readBytes: number;
  rekeyRecords: number;
  maxHandshakeMessageBytes: number;
  /** What every filtered link may hold together, and the native judge's bounds on fragments (as src/dist/fragments.ts's). */
  maxFilterHeldBytes: number;
  maxFragmentSequences: number;
  maxFragmentBytes: number;
  maxFragments: number;
  maxMessageBytes: number;
}

export const ENGINE_OPTIONS: Readonly<EngineOptions> = Object.freeze({
  readBytes: NATIVE_READ_BYTES,
  rekeyRecords: NATIVE_REKEY_RECORDS,
  maxHandshakeMessageBytes: NATIVE_MAX_HANDSHAKE_MESSAGE_BYTES,
  maxFilterHeldBytes: FILTER_MAX_HELD_BYTES,
  maxFragmentSequences: DIST_MAX_FRAGMENT_SEQUENCES,
  maxFragmentBytes: DIST_MAX_FRAGMENT_BYTES,
  maxFragments: DIST_MAX_FRAGMENTS_PER_MESSAGE,
  maxMessageBytes: DIST_MAX_MESSAGE_BYTES,
});

/**
 * A filtered link's question for the gateway's judge (native/gate.h): a
 * message its native judge did not let through itself, as
 * src/dist/decoder.ts's decodeMessage(body, 0, atoms, magic) takes it. The
 * link relays nothing more to its node until answer() is called with `ticket`.
 */
export interface Question {
  ticket: number;
  body: Buffer;
  magic: boolean;
  atoms: string[];
  fragments: number;
}

export type OnNativeAsk = (q: Question) => void;

/** native/fastpath.c's exports. */
export interface Binding {
  /** onClose(id, reason, ...10 counters, detached link or undefined); onAsk(id, ticket, body, magic, atoms, fragments). */
  init(
    onClose: (id: number, reason: string, ...rest: unknown[]) => void,
    options: EngineOptions,
    onAsk: (id: number, ticket: number, body: Buffer, magic: boolean, atoms: string[], fragments: number) => void,
  ): void;
  adopt(args: AdoptArgs): number;
  close(id: number, abortive: boolean): boolean;
  answer(id: number, ticket: number, pass: boolean, inject?: Buffer): boolean;
  refilter(id: number, filter: NativeFilter): boolean;
  detach(id: number): boolean;
  passfd: PassFd;
  stats(id: number): number[] | undefined;
  handshaking(id: number): boolean | undefined;
  buffered(): number;
  filterHeld(): number;
  trim(): boolean;
}

/** Runs once per adopted link, when the engine has closed it or let go of it (`detached`). */
export type OnNativeClose = (reason: string, counters: NativeCounters, detached?: DetachedLink, judged?: { passed: number; asked: number }) => void;

/** Counters the engine reports per link: NativeCounters' 8, then a filtered link's messages its judge passed and questions asked. */
const ENGINE_COUNTERS = 10;

export class NativeEngine {
  private readonly closed = new Map<number, OnNativeClose>();
  private readonly asks = new Map<number, OnNativeAsk>();

  constructor(
    private readonly binding: Binding,
    options: EngineOptions = ENGINE_OPTIONS,
  ) {
    binding.init(
      (id, reason, ...rest) => {
        const cb = this.closed.get(id);
        this.closed.delete(id);
        this.asks.delete(id);
        const c = rest.slice(0, ENGINE_COUNTERS) as number[];
        cb?.(reason, counters(c), rest[ENGINE_COUNTERS] as DetachedLink | undefined, { passed: c[8]!, asked: c[9]! });
      },
      options,
      (id, ticket, body, magic, atoms, fragments) => {
        // A question of a link whose close is already on its way has no one to answer it.
        this.asks.get(id)?.({ ticket, body, magic, atoms, fragments });
      },
    );
  }

  /**
   * Hands a link over; `onClose` runs once, on this thread, when the relay
   * thread has closed both sockets. A filtered link (args.filter) needs
   * `onAsk`, which gets its questions; answer each with answer().
   */
  adopt(args: AdoptArgs, onClose: OnNativeClose, onAsk?: OnNativeAsk): number {
    if (args.filter && !onAsk) throw new Error('a filtered link needs someone to answer its questions');
    const id = this.binding.adopt(args);
    this.closed.set(id, onClose);
    if (onAsk) this.asks.set(id, onAsk);
    return id;
  }

  close(id: number, abortive: boolean): void {
    this.binding.close(id, abortive);
  }

  /** The gateway's verdict on a filtered link's question: pass or drop the message, and a frame of its own for the peer (a denied spawn's reply). */
  answer(id: number, ticket: number, pass: boolean, inject?: Buffer): void {
    this.binding.answer(id, ticket, pass, inject);
  }

  /** A reload's filter for a filtered link; its judge's state carries over. */
  refilter(id: number, filter: NativeFilter): void {
    this.binding.refilter(id, filter);
  }

  /** A filtered link's messages its native judge passed itself, and questions it asked; undefined once it is gone. */
  judged(id: number): { passed: number; asked: number } | undefined {
    const c = this.binding.stats(id);
    return c && { passed: c[8]!, asked: c[9]! };
  }

  /**
   * Asks the engine to let go of a link relaying both ways: its onClose then
   * gets the DetachedLink. A link already ending is not moved and closes as
   * usual. False if no such link.
   */
  detach(id: number): boolean {
    return this.binding.detach(id);
  }

  /** Descriptor passing over Unix sockets (native/passfd.c). */
  get passfd(): PassFd {
    return this.binding.passfd;
  }

  /** Whether a link handed over in its distribution handshake still walks it; undefined once it is gone. */
  handshaking(id: number): boolean | undefined {
    return this.binding.handshaking(id);
  }

  counters(id: number): NativeCounters | undefined {
    const c = this.binding.stats(id);
    return c && counters(c);
  }

  /** Bytes all native links hold in buffers: output a socket has not taken, records or messages split across reads. */
  buffered(): number {
    return this.binding.buffered();
  }

  /** Of those, what filtered links hold for messages not yet judged (fragments, a message asked about and what came behind it). */
  filterHeld(): number {
    return this.binding.filterHeld();
  }

  /** Gives freed heap memory back to the kernel (glibc's malloc_trim); whether any was. */
  trim(): boolean {
    return this.binding.trim();
  }
}

function counters(c: number[]): NativeCounters {
  return { bytesOut: c[0]!, bytesIn: c[1]!, framesOut: c[2]!, framesIn: c[3]!, ticksOut: c[4]!, ticksIn: c[5]!, keyUpdatesOut: c[6]!, keyUpdatesIn: c[7]! };
}

/** Loads a build of native/fastpath.c from `file` (the shipped one, or a sanitizer build in the engine's tests). */
export function loadBinding(file: string): Binding {
  return createRequire(import.meta.url)(file) as Binding;
}

let engine: NativeEngine | undefined;
let loadError: string | undefined;

/**
 * The process's engine for `mode`: undefined for `node`, and for `auto` when
 * the module is missing or does not load (the reason is in `why`); `native`
 * throws instead.
 */
export function nativeEngine(mode: DataPlaneMode): { engine: NativeEngine | undefined; why?: string } {
  if (mode === 'node') return { engine: undefined, why: 'data plane set to node' };
  if (!engine && loadError === undefined) {
    if (!existsSync(NATIVE_MODULE)) loadError = `${NATIVE_MODULE} is not built (scripts/build-native.sh)`;
    else {
      try {
        engine = new NativeEngine(loadBinding(NATIVE_MODULE));
      } catch (err) {
        loadError = `${NATIVE_MODULE} did not load: ${(err as Error).message}`;
      }
    }
  }
  if (!engine && mode === 'native') throw new Error(`the native data plane was asked for, but ${loadError}`);
  return engine ? { engine } : { engine: undefined, why: loadError };
}
