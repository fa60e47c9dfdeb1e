// Hand-made peers for refusal tests: a TLS client that speaks the link
// preamble and a crafted distribution handshake with whatever certificate the
// test gives it, and a fake local node that registers with a gateway's EPMD
// and records every connection that reaches it.

import net from 'node:net';
import tls from 'node:tls';
import { encodeHandshakeMessage, sendNameV6 } from '../../src/framing/handshake.js';
import { encodeAlive2Request, NODE_TYPE_NORMAL } from '../../src/epmd/protocol.js';
import { encodePreamble } from '../../src/mesh/preamble.js';

export interface ClientIdentity {
  cert: string;
  key: string;
  /** Trust root for the server's certificate. */
  ca: string;
}

export interface RogueResult {
  /** Whether the TLS handshake completed from the client's point of view. */
  secure: boolean;
  error?: string;
  /** Bytes the gateway sent back before closing. */
  received: number;
}

/** Dials a gateway's TLS port, asks for `target` and names itself `source`; resolves when the gateway closes. */
export function rogueLink(port: number, id: ClientIdentity, target: string, source: string, timeoutMs = 10_000): Promise<RogueResult> {
  return new Promise((resolve, reject) => {
    let secure = false;
    let received = 0;
    let error: string | undefined;
    const sock = tls.connect({ host: '127.0.0.1', port, cert: id.cert, key: id.key, ca: id.ca, minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('gateway did not close the connection in time'));
    }, timeoutMs);
    sock.on('secureConnect', () => {
      secure = true;
      sock.write(encodePreamble({ kind: 'link', target }));
      sock.write(encodeHandshakeMessage(sendNameV6(source, 0x1ffffffn)));
    });
    sock.on('data', (d: Buffer) => (received += d.length));
    sock.on('error', (e) => (error = e.message));
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ secure, received, ...(error ? { error } : {}) });
    });
  });
}

export interface FakeNode {
  /** Connections that reached the node's distribution port. */
  connections: number;
  /** Bytes that reached it. */
  bytes: number;
  close(): void;
}

/** Registers `short` with the gateway's EPMD at `port` and listens there like a node would. */
export async function fakeNode(epmdPort: number, short: string, port: number): Promise<FakeNode> {
  const state = { connections: 0, bytes: 0 };
  const server = net.createServer((s) => {
    state.connections++;
    s.on('data', (d) => (state.bytes += d.length));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  const epmd = net.connect(epmdPort, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    epmd.once('error', reject);
    epmd.once('data', (d: Buffer) => (d[1] === 0 ? resolve() : reject(new Error(`ALIVE2 refused: ${d.toString('hex')}`))));
    epmd.write(encodeAlive2Request({ port, nodeType: NODE_TYPE_NORMAL, protocol: 0, highestVersion: 6, lowestVersion: 5, name: short, extra: Buffer.alloc(0) }));
  });
  return {
    get connections() {
      return state.connections;
    },
    get bytes() {
      return state.bytes;
    },
    close() {
      epmd.destroy();
      server.close();
    },
  };
}
