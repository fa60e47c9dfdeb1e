// Loads the optional native data plane (native/fastpath.c, built by
// scripts/build-native.sh into build/fastpath.node) and gives the rest of the
// gateway one engine per process: adopt a link, close it, read its counters.
// Without the module every link stays on node:tls, which is the fallback and
// speaks the same records on the wire.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { NATIVE_READ_BYTES } from '../config/limits.js';

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
  cipher: string;
  txKey: Buffer;
  txIv: Buffer;
  txSeq: number;
  rxKey: Buffer;
  rxIv: Buffer;
  rxSeq: number;
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
}

export interface NativeCounters {
  bytesOut: number;
  bytesIn: number;
  framesOut: number;
  framesIn: number;
  ticksOut: number;
  ticksIn: number;
}

interface Binding {
  init(onClose: (id: number, reason: string, ...counters: number[]) => void, readBytes: number): void;
  adopt(args: AdoptArgs): number;
  close(id: number, abortive: boolean): boolean;
  stats(id: number): number[] | undefined;
}

export class NativeEngine {
  private readonly closed = new Map<number, (reason: string, counters: NativeCounters) => void>();

  constructor(private readonly binding: Binding) {
    binding.init((id, reason, ...c) => {
      const cb = this.closed.get(id);
      this.closed.delete(id);
      cb?.(reason, counters(c));
    }, NATIVE_READ_BYTES);
  }

  /** Hands a link over; `onClose` runs once, on this thread, when the relay thread has closed both sockets. */
  adopt(args: AdoptArgs, onClose: (reason: string, counters: NativeCounters) => void): number {
    const id = this.binding.adopt(args);
    this.closed.set(id, onClose);
    return id;
  }

  close(id: number, abortive: boolean): void {
    this.binding.close(id, abortive);
  }

  counters(id: number): NativeCounters | undefined {
    const c = this.binding.stats(id);
    return c && counters(c);
  }
}

function counters(c: number[]): NativeCounters {
  return { bytesOut: c[0]!, bytesIn: c[1]!, framesOut: c[2]!, framesIn: c[3]!, ticksOut: c[4]!, ticksIn: c[5]! };
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
        engine = new NativeEngine(createRequire(import.meta.url)(NATIVE_MODULE) as Binding);
      } catch (err) {
        loadError = `${NATIVE_MODULE} did not load: ${(err as Error).message}`;
      }
    }
  }
  if (!engine && mode === 'native') throw new Error(`the native data plane was asked for, but ${loadError}`);
  return engine ? { engine } : { engine: undefined, why: loadError };
}
