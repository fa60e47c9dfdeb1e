// The take-over socket: a Unix stream socket in a directory only this user
// can enter, at a path per gateway (docs/upgrade.md). The running gateway
// listens on it; `beamgate run --take-over` connects to it. Each side checks
// who is at the other end (SO_PEERCRED): only this user or root may hand a
// gateway's sockets over, or take them.

import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { PassFd } from '../fastpath/native.js';

/** Where a gateway's take-over socket is unless --takeover-socket says: systemd's RuntimeDirectory, /run/beamgate for root, else the temp dir. */
export function defaultSocketPath(gateway: string, env: NodeJS.ProcessEnv = process.env): string {
  const uid = process.getuid?.() ?? 0;
  const dir = env.RUNTIME_DIRECTORY?.split(':')[0] || (uid === 0 ? '/run/beamgate' : path.join(os.tmpdir(), `beamgate-${uid}`));
  return path.join(dir, `${gateway}.takeover.sock`);
}

/** Whether the process at the other end of a Unix socket may take part in a take-over with this one. */
export function trusted(passfd: PassFd, fd: number): { ok: boolean; uid: number; pid: number } {
  const peer = passfd.peer(fd);
  const self = process.getuid?.() ?? 0;
  return { ok: peer.uid === self || peer.uid === 0, uid: peer.uid, pid: peer.pid };
}

/** A socket path that something still listens on: not ours to remove. */
export class SocketHeld extends Error {
  override name = 'SocketHeld';
}

/**
 * Listens on `file`. A socket file nobody listens on (a gateway killed
 * before) is removed first; anything else at the path (a live listener, a
 * file that is not a socket) is left alone and refused.
 */
export async function listenTakeoverSocket(file: string, onConnection: (sock: net.Socket) => void): Promise<net.Server> {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  let st;
  try {
    st = lstatSync(file);
  } catch {
    st = undefined;
  }
  if (st) {
    if (!st.isSocket()) throw new SocketHeld(`${file} exists and is not a socket`);
    if (await answers(file)) throw new SocketHeld(`${file} is held by a running process`);
    unlinkSync(file);
  }
  const server = net.createServer({ pauseOnConnect: true }, onConnection);
  // One take-over at a time; a second one is refused by the kernel's backlog limit only after this.
  server.maxConnections = 1;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(file, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(file, 0o600);
  return server;
}

function answers(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(file);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** The descriptor of a Node socket, duplicated so Node's own can close: the take-over talks through passfd. */
export function dupOf(passfd: PassFd, sock: net.Socket | net.Server): number {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no descriptor');
  return passfd.dup(fd);
}
