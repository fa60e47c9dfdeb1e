// The gateway's HTTP listener: /metrics for Prometheus, /healthz and /readyz
// as small JSON documents a person can read.

import http from 'node:http';
import type { HostPort } from '../config/address.js';
import type { GatewayMetrics } from './metrics.js';

export interface Readiness {
  ready: boolean;
  [key: string]: unknown;
}

export function startHttp(at: HostPort, metrics: GatewayMetrics, readiness: () => Readiness): Promise<http.Server> {
  const server = http.createServer((req, res) => {
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
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  server.maxHeadersCount = 50;
  server.maxConnections = 64;
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen for metrics on ${at.host}:${at.port}: ${err.message}`)));
    server.listen(at.port, at.host, () => resolve(server));
  });
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body, null, 2) + '\n');
}
