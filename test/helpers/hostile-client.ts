// Clients that misbehave on purpose: they connect (plain TCP or TLS), write
// what the test says, and report what came back and whether, and how fast,
// the other side closed the connection.

import net from 'node:net';
import tls from 'node:tls';

export interface Exchange {
  /** This client's port, as the gateway logs it in `from`. */
  localPort: number;
  /** Everything the listener sent back before closing. */
  received: Buffer;
  /** For TLS: whether the handshake completed from the client's side. */
  secure: boolean;
  error?: string;
  /** From connect to close. */
  durationMs: number;
}

export type Writer = (sock: net.Socket) => void | Promise<void>;

/** Connects, runs `write`, and resolves when the listener closes the connection (rejects after `timeoutMs`). */
export function rawExchange(port: number, host: string, write: Writer | Buffer, timeoutMs = 15_000): Promise<Exchange> {
  return exchange(net.connect({ port, host }), 'connect', write, timeoutMs);
}

/** As rawExchange, over TLS with the given client options; `write` runs once the handshake is done. */
export function tlsExchange(port: number, opts: tls.ConnectionOptions, write: Writer | Buffer = Buffer.alloc(0), timeoutMs = 15_000): Promise<Exchange> {
  const sock = tls.connect({ host: '127.0.0.1', port, minVersion: 'TLSv1.3', checkServerIdentity: () => undefined, ...opts });
  return exchange(sock, 'secureConnect', write, timeoutMs);
}

function exchange(sock: net.Socket, ready: 'connect' | 'secureConnect', write: Writer | Buffer, timeoutMs: number): Promise<Exchange> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let localPort = 0;
    let secure = false;
    let error: string | undefined;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`listener did not close the connection within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('connect', () => (localPort = sock.localPort ?? 0));
    sock.once(ready, () => {
      secure = ready === 'secureConnect';
      if (Buffer.isBuffer(write)) {
        if (write.length > 0) sock.write(write);
        return;
      }
      Promise.resolve(write(sock)).catch((e: Error) => (error = e.message));
    });
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', (e) => (error = e.message));
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ localPort, received: Buffer.concat(chunks), secure, durationMs: Date.now() - started, ...(error ? { error } : {}) });
    });
  });
}

/** Writes `data` one byte every `intervalMs` until the socket closes (a slowloris client). */
export function dribble(data: Buffer, intervalMs: number): Writer {
  return (sock) =>
    new Promise<void>((resolve) => {
      let i = 0;
      const timer = setInterval(() => {
        if (sock.destroyed || i >= data.length) {
          clearInterval(timer);
          resolve();
          return;
        }
        sock.write(data.subarray(i, ++i));
      }, intervalMs);
      sock.once('close', () => {
        clearInterval(timer);
        resolve();
      });
    });
}
