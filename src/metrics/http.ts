// The gateway's HTTP listener: /metrics for Prometheus, /healthz and /readyz
// as small JSON documents a person can read.

import { takeInherited } from '../takeover/inherited.js';
import http from 'node:http';
import type { HostPort } from '../config/address.js';
import type { Limits } from '../config/limits.js';
import type net from 'node:net';
import type { GatewayMetrics, RefusalReason } from './metrics.js';

/**
 * How often Node checks the request timeouts: not a bound itself, but Node's
 * default (30 s) would let a slow client linger far past the limits.
 */
const HTTP_TIMEOUT_CHECK_MS = 1_000;

/** The limits this listener enforces (limits.ts). */
export type HttpLimits = Pick<Limits, 'metricsMaxConnections' | 'metricsMaxHeaders' | 'metricsHeadersTimeoutMs' | 'metricsRequestTimeoutMs' | 'metricsIdleTimeoutMs'>;

export type HttpRefuse = (reason: RefusalReason, message: string, fields: Record<string, string>) => void;

export interface Readiness {
  ready: boolean;
  [key: string]: unknown;
}

/** Puts the listener's limits in force: at start, and again on a reload (they apply to connections accepted after it). */
export function applyHttpLimits(server: http.Server, limits: HttpLimits): void {
  server.headersTimeout = limits.metricsHeadersTimeoutMs;
  server.requestTimeout = limits.metricsRequestTimeoutMs;
  server.maxHeadersCount = limits.metricsMaxHeaders;
  server.maxConnections = limits.metricsMaxConnections;
  // Idle before the first request, and idle between kept-alive requests.
  server.timeout = limits.metricsIdleTimeoutMs;
  server.keepAliveTimeout = limits.metricsIdleTimeoutMs;
}

export function startHttp(at: HostPort, metrics: GatewayMetrics, readiness: () => Readiness, limits: () => HttpLimits, refuse?: HttpRefuse): Promise<http.Server> {
  const server = http.createServer({ connectionsCheckingInterval: HTTP_TIMEOUT_CHECK_MS }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      metrics.text().then(
        (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
      );
      return;
    }
    if (path === '/healthz') {
      json(res, 200, { status: 'alive', pid: process.pid, uptime_seconds: Math.round(process.uptime()) });
      return;
    }
    if (path === '/readyz') {
      const r = readiness();
      json(res, r.ready ? 200 : 503, r);
      return;
    }
    json(res, 404, { error: 'not found', paths: ['/metrics', '/healthz', '/readyz'] });
  });
  // Small, bounded requests only: this listener is for scrapers and probes.
  applyHttpLimits(server, limits());
  server.on('clientError', (err: Error & { code?: string }, sock: net.Socket) => {
    const from = `${sock.remoteAddress}:${sock.remotePort}`;
    // A reset is the client leaving, not a bad request.
    if (err.code !== 'ECONNRESET') {
      const timedOut = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
      refuse?.(timedOut ? 'http_timeout' : 'http_bad_request', `metrics listener: ${err.code ?? err.message}`, { from });
      // As Node's own handler: answer if still possible, then close at once.
      if (sock.writable && !sock.writableEnded) {
        sock.write(timedOut ? 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n' : 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      }
    }
    sock.destroy();
  });
  // A kept-alive connection that goes quiet after its requests is normal; one that never asked anything is not.
  const served = new WeakSet<net.Socket>();
  server.on('request', (req: http.IncomingMessage) => served.add(req.socket));
  server.on('timeout', (sock: net.Socket) => {
    if (!served.has(sock)) refuse?.('http_timeout', `metrics listener: no request in ${sock.timeout ?? server.timeout} ms`, { from: `${sock.remoteAddress}:${sock.remotePort}` });
    sock.destroy();
  });
  server.on('drop', (d?: net.DropArgument) => refuse?.('limit_reached', 'too many connections on the metrics listener', { from: `${d?.remoteAddress}:${d?.remotePort}` }));
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen for metrics on ${at.host}:${at.port}: ${err.message}`)));
    // A take-over hands the previous process's listener over (src/takeover/inherited.ts).
    const fd = takeInherited(at.host, at.port);
    server.listen(fd !== undefined ? { fd } : { port: at.port, host: at.host }, () => resolve(server));
  });
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body, null, 2) + '\n');
}
