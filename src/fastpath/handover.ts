// Moves an established link from node:tls to the native data plane. The link
// must first go quiet: its reads paused, every write to the node and every
// record node:tls sealed handed to the kernel. Then the bytes read but not yet
// relayed (plaintext on either side, ciphertext not yet opened) and both
// directions' keys and sequence numbers go to the engine with the two socket
// descriptors; Node's sockets are closed behind it without a byte more.

import type net from 'node:net';
import type tls from 'node:tls';
import { HANDOVER_TIMEOUT_MS } from '../config/limits.js';
import type { AdoptArgs, NativeEngine, OnNativeAsk, ScanState } from './native.js';
import { TlsTap } from './tap.js';

const taps = new WeakMap<object, TlsTap>();

export function bindTap(sock: tls.TLSSocket, tap: TlsTap): void {
  taps.set(sock, tap);
}

/**
 * The tap under a TLSSocket. A server's TLSSocket is made by tls.Server
 * itself, over the JSStreamSocket that wraps the tap; Node keeps that wrapper
 * as the TLS handle's `_parentWrap`, the only way from one to the other.
 */
export function tapOf(sock: tls.TLSSocket): TlsTap | undefined {
  const known = taps.get(sock);
  if (known) return known;
  const stream = (sock as unknown as { _handle?: { _parentWrap?: { stream?: unknown } } })._handle?._parentWrap?.stream;
  if (stream instanceof TlsTap) {
    taps.set(sock, stream);
    return stream;
  }
  return undefined;
}

/** The parties of one hand-over. */
export interface HandoverLink {
  local: net.Socket;
  remote: tls.TLSSocket;
  tap: TlsTap;
  /** Frame-scanner state of each direction, read at the moment of the hand-over. */
  scan(): { out: ScanState; in: ScanState };
  /** Removes the link's own listeners from both sockets: they are about to close, and the link goes on without them. */
  release(): void;
  maxFrameBytes: number;
  closeGraceMs: number;
  /** A filtered link: what its native judge starts from, and who answers its questions. */
  filter?: { args: NonNullable<AdoptArgs['filter']>; onAsk: OnNativeAsk };
}

function fdOf(sock: net.Socket): number | undefined {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

function gone(s: net.Socket): boolean {
  return s.destroyed || s.readableEnded || s.writableEnded;
}

/** A link the engine took: its id, and what another engine would need besides the engine's own state (a take-over). */
export interface Adopted {
  id: number;
  cipher: string;
  hash: string;
  client: boolean;
}

/**
 * Waits (bounded, on the event loop's turns) until the link is quiet, then
 * hands it over. `done` gets the engine's id and suite, or why the link stays on
 * node:tls (nothing was taken from it: the caller resumes it), or an Error
 * when the engine refused it after the tap had let go: then its sockets are
 * destroyed and the link ends through its own close handlers.
 */
export function handOver(engine: NativeEngine, link: HandoverLink, onClose: Parameters<NativeEngine['adopt']>[1], done: (result: Adopted | string | Error) => void): void {
  const { local, remote, tap } = link;
  local.pause();
  remote.pause();
  tap.raw.pause();
  const deadline = Date.now() + HANDOVER_TIMEOUT_MS;
  let turns = 0;
  const attempt = (): void => {
    if (gone(local) || gone(remote) || gone(tap.raw)) return done('a socket closed during the hand-over');
    const quiet = local.writableLength === 0 && remote.writableLength === 0 && tap.flushed;
    if (!quiet) {
      if (Date.now() > deadline) return done(`not quiet within ${HANDOVER_TIMEOUT_MS} ms`);
      // The first turns catch writes that finish on the next turn; then the wait is a timer's.
      if (++turns < 32) setImmediate(attempt);
      else setTimeout(attempt, 2);
      return;
    }
    done(adopt(engine, link, onClose));
  };
  // Never within the turn that asked: node:tls may be in the middle of
  // handing over the plaintext of several records from one read, and what it
  // hands over after a pause lands in the socket's buffer, where drain() finds it.
  setImmediate(attempt);
}

function adopt(engine: NativeEngine, link: HandoverLink, onClose: Parameters<NativeEngine['adopt']>[1]): Adopted | string | Error {
  const { local, remote, tap } = link;
  const localFd = fdOf(local);
  const remoteFd = fdOf(tap.raw);
  if (localFd === undefined || remoteFd === undefined) return 'a socket has no descriptor';
  // Plaintext already read on either side, in order, before the tap lets go.
  const state = tap.detach();
  if (typeof state === 'string') return state;
  const toLocal = drain(remote);
  const toRemote = drain(local);
  const scan = link.scan();
  const args: AdoptArgs = {
    localFd,
    remoteFd,
    cipher: state.suite.aead,
    hash: state.suite.hash,
    txSecret: state.txSecret,
    txSeq: state.txSeq,
    rxSecret: state.rxSecret,
    rxSeq: state.rxSeq,
    client: state.role === 'client',
    toRemote,
    toLocal,
    fromRemote: state.unread,
    outScan: scan.out,
    inScan: scan.in,
    maxFrameBytes: link.maxFrameBytes,
    closeGraceMs: link.closeGraceMs,
    ...(link.filter && { filter: link.filter.args }),
  };
  let id: number;
  try {
    id = engine.adopt(args, onClose, link.filter?.onAsk);
  } catch (err) {
    // The tap has let go: the link cannot go back to node:tls.
    for (const s of [local, remote, tap.raw]) s.destroy();
    return new Error(`the native data plane did not take the link: ${(err as Error).message}`);
  }
  // The engine holds duplicates of both descriptors: Node's sockets close
  // without a word to either side (the tap is detached: node:tls can write nothing).
  link.release();
  for (const s of [remote, local, tap.raw]) {
    s.on('error', () => {});
    s.destroy();
  }
  return { id, cipher: args.cipher, hash: args.hash, client: args.client };
}

/** What a paused stream has buffered, with its listeners gone so nothing else sees it. */
function drain(s: net.Socket): Buffer {
  s.removeAllListeners('data');
  const chunks: Buffer[] = [];
  for (let c = s.read() as Buffer | null; c !== null; c = s.read() as Buffer | null) chunks.push(c);
  return Buffer.concat(chunks);
}
