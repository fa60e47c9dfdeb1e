// Clients that misbehave on purpose: they connect (plain TCP or TLS), write
// what the test says, and report what came back and whether, and how fast,
// the other side closed the connection.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { tlsPathsFor } from '../../src/config/roster.js';
import { sample, type TestMesh, waitFor } from './mesh.js';

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

/**
 * Connects, runs `write`, and resolves when the listener closes the connection
 * (rejects after `timeoutMs`). With `halfOpen`, the client never closes its own
 * side when the listener ends its side, as a hostile client would.
 */
export function rawExchange(port: number, host: string, write: Writer | Buffer, timeoutMs = 15_000, halfOpen = false): Promise<Exchange> {
  return exchange(net.connect({ port, host, allowHalfOpen: halfOpen }), 'connect', write, timeoutMs);
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

/** beamgate_refusals_total{reason} on one gateway of a test mesh. */
export async function refusals(t: TestMesh, gw: string, reason: string): Promise<number> {
  return sample(await t.metricsText(gw), 'beamgate_refusals_total', { reason });
}

/**
 * Runs one hostile exchange against gateway `gw` and checks that it was
 * refused for `reason`: the connection closed, the counter rose by exactly
 * one, and a warning names the reason and the client's address.
 */
export async function expectRefused(t: TestMesh, gw: string, reason: string, attempt: () => Promise<Exchange>): Promise<{ ex: Exchange; line: Record<string, unknown> }> {
  const before = await refusals(t, gw, reason);
  // Client ports are reused, so an older line may carry the same address.
  const mark = t.logOf(gw).length;
  const ex = await attempt();
  await waitFor(`${gw} to count a ${reason} refusal`, async () => (await refusals(t, gw, reason)) === before + 1);
  const from = `127.0.0.1:${ex.localPort}`;
  const line = await waitFor(`a ${reason} log line from ${from}`, () => t.logOf(gw).slice(mark).find((l) => l.reason === reason && l.from === from));
  assert.equal(line.level, 'warn');
  assert.equal(typeof line.detail, 'string');
  return { ex, line };
}

/** A gateway's own certificate, key and CA from a test mesh: what a genuine (or compromised) peer presents. */
export function gatewayPem(t: TestMesh, gw: string): { cert: string; key: string; ca: string } {
  const p = tlsPathsFor(t.mesh.roster, gw);
  return { cert: readFileSync(p.cert, 'utf8'), key: readFileSync(p.key, 'utf8'), ca: readFileSync(p.ca, 'utf8') };
}

/** The listeners the hostile and limits suites aim at, in a mesh of alpha (a1, …) and beta (b2, …). */
export interface MeshPorts {
  betaTls: number;
  alphaEpmd: number;
  alphaMetrics: number;
  betaAlias: string;
  b2Port: number;
  /** Alpha's stand-in for b2: a port of alpha's own range, not b2's. */
  b2StandIn: number;
  a1Port: number;
}

export function meshPorts(t: TestMesh): MeshPorts {
  const roster = t.mesh.roster;
  const alpha = roster.gateways.get('alpha')!;
  const beta = roster.gateways.get('beta')!;
  return {
    betaTls: beta.address.port,
    alphaEpmd: alpha.epmdPort,
    alphaMetrics: alpha.metrics!.port,
    betaAlias: beta.loopback,
    b2Port: roster.nodes.get('b2@beta.demo')!.port,
    b2StandIn: t.gateways.get('alpha')!.registry.standIns.portOf('beta', 'b2')!,
    a1Port: roster.nodes.get('a1@alpha.demo')!.port,
  };
}
