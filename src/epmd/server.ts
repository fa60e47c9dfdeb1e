// The gateway stands in for EPMD, on loopback only. On 127.0.0.1 it takes
// ALIVE2 registrations from the names the roster admits on this host (roster
// nodes only with their roster port; operators and local-only helpers with any
// port) and answers lookups for them. On each remote gateway's loopback alias
// it answers lookups for that gateway's host as its real EPMD would, from what
// the mesh registry knows is registered there, with the ports of our own
// stand-in listeners (the `remote` dependency decides).

import net from 'node:net';
import { randomInt } from 'node:crypto';
import { LOCAL_LOOPBACK } from '../config/address.js';
import { takeInherited } from '../takeover/inherited.js';
import { type Admission, admissionOn, type GatewaySpec, type Roster } from '../config/roster.js';
import type { Logger } from '../log/logger.js';
import type { RefusalLog } from '../log/refusal-log.js';
import type { GatewayMetrics, RefusalReason } from '../metrics/metrics.js';
import {
  type Alive2Request,
  encodeAlive2XResp,
  encodeNamesResp,
  encodePort2Resp,
  MAX_EPMD_REQUEST,
  parseEpmdRequest,
  type PortInfo,
} from './protocol.js';

export interface Registration {
  name: string;
  port: number;
  nodeType: number;
  highestVersion: number;
  lowestVersion: number;
  creation: number;
  socket: net.Socket;
  /** How the roster admits the name here: only roster nodes and operators are announced to peers. */
  kind: Exclude<Admission['kind'], 'none'>;
}

/** EPMD answers for a remote gateway's host. */
export interface RemoteEpmd {
  lookup(gateway: string, shortName: string): PortInfo | null;
  names(gateway: string): { name: string; port: number }[];
}

export interface EpmdDeps {
  roster(): Roster;
  self(): GatewaySpec;
  metrics: GatewayMetrics;
  logger: Logger;
  /** Where refusals are logged, within the refusal log budget. */
  refusals: RefusalLog;
  remote: RemoteEpmd;
  /** A name registered (after the answer went out) or unregistered. */
  registered(reg: Registration): void;
  unregistered(reg: Registration): void;
}

/** The scope a listener answers for: local nodes, or one remote gateway's nodes. */
type Scope = { kind: 'local' } | { kind: 'remote'; gateway: string };

export class EpmdServer {
  readonly registrations = new Map<string, Registration>();
  private readonly lastCreation = new Map<string, number>();
  private readonly servers = new Map<string, net.Server>();
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly deps: EpmdDeps) {}

  /** Listens on 127.0.0.1 and on each remote gateway's alias; adds/removes listeners to match the roster. */
  async sync(): Promise<void> {
    const roster = this.deps.roster();
    const self = this.deps.self();
    const scopes = new Map<string, Scope>([[LOCAL_LOOPBACK, { kind: 'local' }]]);
    for (const gw of roster.gateways.values()) {
      if (gw.name !== self.name) scopes.set(gw.loopback, { kind: 'remote', gateway: gw.name });
    }
    this.scopes = scopes;
    const key = (addr: string) => `${addr}:${self.epmdPort}`;
    for (const [k, server] of this.servers) {
      if (![...scopes.keys()].some((addr) => key(addr) === k)) {
        server.close();
        this.servers.delete(k);
      }
    }
    for (const addr of scopes.keys()) {
      if (this.servers.has(key(addr))) continue;
      const server = net.createServer((sock) => this.accept(sock, addr));
      // A backstop per listener; accept() enforces the limit across all of them.
      server.maxConnections = roster.limits.maxEpmdConnections;
      server.on('drop', (d?: net.DropArgument) =>
        this.refuseConnection(addr, `${d?.remoteAddress}:${d?.remotePort}`),
      );
      await listen(server, self.epmdPort, addr);
      this.servers.set(key(addr), server);
    }
  }

  /** Which nodes each listening address answers for (replaced whole by sync). */
  private scopes = new Map<string, Scope>();

  registeredPort(shortName: string): number | undefined {
    return this.registrations.get(shortName)?.port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all([...this.servers.values()].map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.servers.clear();
  }

  /** Counts and logs a connection shed because maxEpmdConnections are open. */
  private refuseConnection(addr: string, from: string): void {
    this.deps.metrics.refused('limit_reached');
    this.deps.refusals.warn('epmd connection refused', 'limit_reached', undefined, { detail: 'too many EPMD connections', listener: addr, from });
  }

  private accept(sock: net.Socket, addr: string): void {
    const { roster, metrics, logger } = { roster: this.deps.roster(), metrics: this.deps.metrics, logger: this.deps.logger };
    if (this.sockets.size >= roster.limits.maxEpmdConnections) {
      this.refuseConnection(addr, `${sock.remoteAddress}:${sock.remotePort}`);
      sock.destroy();
      return;
    }
    this.sockets.add(sock);
    sock.on('error', () => sock.destroy());
    let buf: Buffer = Buffer.alloc(0);
    let settled = false;
    // Taken now: a closed socket no longer knows its peer.
    const from = `${sock.remoteAddress}:${sock.remotePort}`;
    const refuse = (reason: RefusalReason, message: string, extra: Record<string, string | number> = {}) => {
      metrics.refused(reason);
      this.deps.refusals.warn('epmd request refused', reason, undefined, { detail: message, listener: addr, from, ...extra });
    };
    const timer = setTimeout(() => {
      settled = true;
      refuse('epmd_timeout', `request not received in time (${buf.length} bytes)`);
      sock.destroy();
    }, roster.limits.epmdRequestTimeoutMs);
    sock.on('close', () => {
      this.sockets.delete(sock);
      clearTimeout(timer);
      // A request cut short is malformed; a connection that sent nothing (a port check) is not.
      if (!settled && buf.length > 0) refuse('epmd_bad_request', `connection closed after ${buf.length} bytes of an incomplete request`);
    });
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const parsed = parseEpmdRequest(buf);
      if (parsed.kind === 'incomplete') {
        if (buf.length > MAX_EPMD_REQUEST + 2) {
          settled = true;
          clearTimeout(timer);
          refuse('epmd_bad_request', 'request too long');
          sock.destroy();
        }
        return;
      }
      settled = true;
      clearTimeout(timer);
      sock.off('data', onData);
      if (parsed.kind === 'error') {
        refuse('epmd_bad_request', parsed.reason);
        sock.destroy();
        return;
      }
      const scope = this.scopes.get(addr) ?? { kind: 'local' as const };
      const req = parsed.request;
      if (req.type === 'alive2') return this.alive2(sock, req, scope, refuse);
      if (req.type === 'port_please2') {
        const info = this.lookup(scope, req.name);
        metrics.epmdLookups.labels(scope.kind, info ? 'found' : 'not_found').inc();
        logger.debug('epmd port_please2', { listener: addr, name: req.name, found: info !== null });
        finalAnswer(sock, encodePort2Resp(info), roster.limits.epmdRequestTimeoutMs);
        return;
      }
      metrics.epmdLookups.labels(scope.kind, 'names').inc();
      finalAnswer(sock, encodeNamesResp(this.deps.self().epmdPort, this.names(scope)), roster.limits.epmdRequestTimeoutMs);
    };
    sock.on('data', onData);
  }

  private alive2(
    sock: net.Socket,
    req: Alive2Request,
    scope: Scope,
    refuse: (reason: RefusalReason, message: string, extra?: Record<string, string | number>) => void,
  ): void {
    const { metrics, logger } = this.deps;
    const self = this.deps.self();
    // ALIVE2 carries the short name only (a node's host part may even be
    // another name for this host, as RabbitMQ's `rabbit_prelaunch_N@localhost`):
    // it is logged as it arrived, and matched as a name of this host.
    const deny = (reason: RefusalReason, message: string) => {
      metrics.epmdRegistrations.labels(reason).inc();
      refuse(reason, message, { name: req.name, port: req.port });
      finalAnswer(sock, encodeAlive2XResp(1, 0), this.deps.roster().limits.epmdRequestTimeoutMs);
    };
    if (scope.kind !== 'local') return deny('epmd_not_in_roster', 'registrations are taken on 127.0.0.1 only');
    const admission = admissionOn(this.deps.roster(), self.name, `${req.name}@${self.host}`);
    if (admission.kind === 'none') return deny('epmd_not_in_roster', `"${req.name}" is not a node, operator or local-only name of gateway ${self.name}`);
    if (admission.kind === 'node' && req.port !== admission.node.port) {
      return deny('epmd_wrong_port', `${admission.node.name} must listen on its roster port ${admission.node.port}, not ${req.port}`);
    }
    // An operator may register (a plain `erl -name ops@host -hidden`), but the
    // node type cannot tell whether it is hidden: OTP writes 77 for every node
    // (erl_epmd:do_register_node). Hiddenness is enforced on the relay, where
    // send_name's DFLAG_PUBLISHED says it.
    if (this.registrations.has(req.name)) return deny('epmd_name_taken', `"${req.name}" is already registered`);

    // A new creation each time, as epmd does, so peers can tell incarnations apart.
    const last = this.lastCreation.get(req.name);
    let creation = randomInt(4, 0xffffffff);
    while (creation === last) creation = randomInt(4, 0xffffffff);
    this.lastCreation.set(req.name, creation);
    const reg: Registration = {
      name: req.name,
      port: req.port,
      nodeType: req.nodeType,
      highestVersion: req.highestVersion,
      lowestVersion: req.lowestVersion,
      creation,
      socket: sock,
      kind: admission.kind,
    };
    metrics.epmdRegistrations.labels('ok').inc();
    // No "hidden" field: OTP writes the same node type for every node, hidden or not.
    logger.info('node registered', { name: req.name, port: req.port, kind: admission.kind });
    // Announced before the node hears back: by the time it says it is up, its
    // peers' gateways have the news on the way.
    this.hold(reg);
    sock.write(encodeAlive2XResp(0, creation));
  }

  /** A registration lives as long as its connection; the node sends nothing more on it. */
  private hold(reg: Registration): void {
    const { metrics, logger } = this.deps;
    this.registrations.set(reg.name, reg);
    metrics.epmdNodesRegistered.set(this.registrations.size);
    this.deps.registered(reg);
    reg.socket.on('data', () => undefined);
    reg.socket.on('close', () => {
      if (this.registrations.get(reg.name) === reg) {
        this.registrations.delete(reg.name);
        metrics.epmdNodesRegistered.set(this.registrations.size);
        logger.info('node unregistered', { name: reg.name, kind: reg.kind });
        this.deps.unregistered(reg);
      }
    });
  }

  /**
   * A registration another process of this gateway held (a take-over): its
   * connection, by descriptor, and the creation the node was told. Nothing is
   * sent to the node; it never knows. False if the name is taken meanwhile.
   */
  adoptRegistration(r: Omit<Registration, 'socket'>, fd: number): boolean {
    const socket = new net.Socket({ fd, readable: true, writable: true });
    if (this.registrations.has(r.name)) {
      socket.destroy();
      return false;
    }
    this.sockets.add(socket);
    socket.on('error', () => socket.destroy());
    socket.once('close', () => this.sockets.delete(socket));
    const last = this.lastCreation.get(r.name);
    if (last === undefined) this.lastCreation.set(r.name, r.creation);
    this.hold({ ...r, socket });
    this.deps.logger.info('node registration taken over', { name: r.name, port: r.port, kind: r.kind });
    return true;
  }

  /** Creations last handed out, by name (a take-over carries them: a name registering again still gets a new one). */
  creations(): [string, number][] {
    return [...this.lastCreation];
  }

  setCreations(entries: [string, number][]): void {
    for (const [name, c] of entries) if (!this.lastCreation.has(name)) this.lastCreation.set(name, c);
  }

  /**
   * The take-over happened: the next process holds every registration's
   * connection. Ours are closed without a word (the peer's copy keeps the
   * connection) and without unregistering: the names stay registered there.
   */
  handOffRegistrations(): void {
    for (const reg of this.registrations.values()) {
      reg.socket.removeAllListeners('close');
      reg.socket.removeAllListeners('data');
      reg.socket.on('error', () => undefined);
      reg.socket.destroy();
    }
    this.registrations.clear();
  }

  /** Every listener this server runs (127.0.0.1 and each remote gateway's alias), for a take-over. */
  listeners(): { host: string; port: number; server: net.Server }[] {
    const port = this.deps.self().epmdPort;
    return [...this.servers].map(([k, server]) => ({ host: k.slice(0, k.lastIndexOf(':')), port, server }));
  }

  private lookup(scope: Scope, name: string): PortInfo | null {
    if (scope.kind === 'remote') return this.deps.remote.lookup(scope.gateway, name);
    const r = this.registrations.get(name);
    if (!r) return null;
    return { port: r.port, nodeType: r.nodeType, protocol: 0, highestVersion: r.highestVersion, lowestVersion: r.lowestVersion, name: r.name, extra: Buffer.alloc(0) };
  }

  private names(scope: Scope): { name: string; port: number }[] {
    if (scope.kind === 'remote') return this.deps.remote.names(scope.gateway);
    return [...this.registrations.values()].map((r) => ({ name: r.name, port: r.port }));
  }
}

/**
 * Sends a connection's last answer. Ending only our side would leave the
 * socket open for as long as the client keeps its own side open, holding one
 * of maxEpmdConnections; so a client that has not closed within `lingerMs` is cut.
 */
function finalAnswer(sock: net.Socket, answer: Buffer, lingerMs: number): void {
  sock.end(answer);
  const linger = setTimeout(() => sock.destroy(), lingerMs);
  sock.once('close', () => clearTimeout(linger));
}

/** Listens on host:port, or on the listener a take-over handed this process for that address (src/takeover/inherited.ts). */
export function listen(server: net.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // Both handlers come off whichever way the attempt ends: a caller that tries
    // ports one by one on the same server (src/mesh/stand-ins.ts) must not pile
    // up a 'listening' handler per failed port.
    const onError = (err: Error) => {
      server.off('listening', onListening);
      reject(new Error(`cannot listen on ${host}:${port}: ${err.message}`));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    const fd = takeInherited(host, port);
    server.listen(fd !== undefined ? { fd } : { port, host, exclusive: true });
  });
}
