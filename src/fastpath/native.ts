// Loads the optional native data plane (native/fastpath.c, built by
// scripts/build-native.sh into build/fastpath.node) and gives the rest of the
// gateway one engine per process: adopt a link, close it, read its counters.
// Without the module every link stays on node:tls, which is the fallback and
// speaks the same records on the wire.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { NATIVE_MAX_HANDSHAKE_MESSAGE_BYTES, NATIVE_READ_BYTES, NATIVE_REKEY_RECORDS } from '../config/limits.js';

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
}

export const ENGINE_OPTIONS: Readonly<EngineOptions> = Object.freeze({
  readBytes: NATIVE_READ_BYTES,
  rekeyRecords: NATIVE_REKEY_RECORDS,
  maxHandshakeMessageBytes: NATIVE_MAX_HANDSHAKE_MESSAGE_BYTES,
});

/** native/fastpath.c's exports. */
export interface Binding {
  /** onClose(id, reason, ...8 counters, detached link or undefined). */
  init(onClose: (id: number, reason: string, ...rest: unknown[]) => void, options: EngineOptions): void;
  adopt(args: AdoptArgs): number;
  close(id: number, abortive: boolean): boolean;
  detach(id: number): boolean;
  passfd: PassFd;
  stats(id: number): number[] | undefined;
  buffered(): number;
  trim(): boolean;
}

/** Runs once per adopted link, when the engine has closed it or let go of it (`detached`). */
export type OnNativeClose = (reason: string, counters: NativeCounters, detached?: DetachedLink) => void;

export class NativeEngine {
  private readonly closed = new Map<number, OnNativeClose>();

  constructor(
    private readonly binding: Binding,
    options: EngineOptions = ENGINE_OPTIONS,
  ) {
    binding.init((id, reason, ...rest) => {
      const cb = this.closed.get(id);
      this.closed.delete(id);
      cb?.(reason, counters(rest.slice(0, 8) as number[]), rest[8] as DetachedLink | undefined);
    }, options);
  }

  /** Hands a link over; `onClose` runs once, on this thread, when the relay thread has closed both sockets. */
  adopt(args: AdoptArgs, onClose: OnNativeClose): number {
    const id = this.binding.adopt(args);
    this.closed.set(id, onClose);
    return id;
  }

  close(id: number, abortive: boolean): void {
    this.binding.close(id, abortive);
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

  counters(id: number): NativeCounters | undefined {
    const c = this.binding.stats(id);
    return c && counters(c);
  }

  /** Bytes all native links hold in buffers: output a socket has not taken, records or messages split across reads. */
  buffered(): number {
    return this.binding.buffered();
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
