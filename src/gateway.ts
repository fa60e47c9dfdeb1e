// One gateway process: EPMD on loopback, the mesh registry (what is
// registered on every host, and the stand-in listeners for remote nodes on
// their gateways' loopback aliases), the TLS listener for peer gateways, and
// the metrics/health HTTP listener. Everything reads the configuration in
// force through `active()`, which a reload replaces whole.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import type http from 'node:http';
import { formatHostPort, type HostPort } from './config/address.js';
import type { GatewayConfig } from './config/load.js';
import { gatewayOrThrow, type GatewaySpec, inMesh, nodesOf, type Roster } from './config/roster.js';
import { FILTER_MAX_HELD_BYTES } from './config/limits.js';
import { EpmdServer, listen, type Registration } from './epmd/server.js';
import { Logger } from './log/logger.js';
import { LinkLog } from './log/link-log.js';
import { RefusalLog } from './log/refusal-log.js';
import { applyHttpLimits, startHttp } from './metrics/http.js';
import { GatewayMetrics, type RefusalReason } from './metrics/metrics.js';
import { publishRosterNodes, unregisteredNodes } from './metrics/roster-nodes.js';
import type { ActiveConfig, DialOutcome, MeshContext } from './mesh/context.js';
import { handleInbound } from './mesh/inbound.js';
import { LinkTable } from './mesh/link-table.js';
import { dialPeer, handleOutbound } from './mesh/outbound.js';
import { SessionCache } from './mesh/sessions.js';
import { HoldBudget } from './filter/hold-budget.js';
import { StandbyHolds, StandbyPool } from './mesh/standby.js';
import { encodePreamble } from './mesh/preamble.js';
import { chainsToBundle, readmit } from './mesh/readmit.js';
import { filterFor } from './mesh/filtering.js';
import { targetLabel } from './mesh/source.js';
import { classifyTlsError, makeSecureContext, serverOptions } from './mesh/tls.js';
import { type DataPlaneMode, type NativeEngine, nativeEngine } from './fastpath/native.js';
import { tapOf } from './fastpath/handover.js';
import { TlsTap } from './fastpath/tap.js';
import type { Duplex } from 'node:stream';
import { MeshRegistry } from './registry/mesh-registry.js';
import { YoungGenerationGuard } from './runtime/heap.js';
import type { RegistryEntry } from './registry/protocol.js';
import type { TlsMaterial } from './pki/material.js';
import { NO_GROUP } from './policy/policy.js';
import { secondsUntilExpiry } from './pki/identity.js';
import { type AdoptParts, adoptLinks, adoptRegistrations } from './takeover/adopt.js';
import type { GatewayParts } from './takeover/freeze.js';
import { closeUnclaimed } from './takeover/inherited.js';
import type { Taken } from './takeover/take.js';

/** How a drain ended: clean when every link closed on its own before the deadline. */
export interface DrainResult {
  clean: boolean;
  /** Links still open at the deadline, which were then closed by the gateway. */
  cut: number;
  durationMs: number;
}

export interface GatewayOptions {
  roster: Roster;
  gateway: string;
  material: TlsMaterial;
  logger?: Logger;
  metrics?: GatewayMetrics;
  /**
   * Bound V8's young generation while connections churn (src/runtime/heap.ts).
   * Process-wide, so only for a gateway that owns its process (`beamgate run`).
   */
  guardHeap?: boolean;
  /** Which data plane relays established links (default auto: the native one when it is built). */
  dataPlane?: DataPlaneMode;
}

export class Gateway {
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  readonly table: LinkTable;
  readonly epmd: EpmdServer;
  private current: ActiveConfig;
  private material: TlsMaterial;
  private tlsServer: tls.Server | undefined;
  private http: http.Server | undefined;
  readonly registry: MeshRegistry;
  /** TLS connections not yet authenticated (by their TCP socket): when each started, and its source address. */
  private readonly handshaking = new WeakMap<net.Socket, { started: bigint; source: string }>();
  /** How many of those each source address holds (entries at zero are removed). */
  private readonly handshakingPerSource = new Map<string, number>();
  /** Every TCP connection on the TLS port, whatever it became: stop() ends the ones no link owns (probes, registry links, handshakes). */
  private readonly tlsSockets = new Set<net.Socket>();
  private readonly heapGuard: YoungGenerationGuard | undefined;
  /** TCP sockets shed by maxTlsHandshakesPerSource, so their TLS error is not counted a second time. */
  private readonly shedSources = new WeakSet<net.Socket>();
  private readonly refusals: RefusalLog;
  private readonly linkLog: LinkLog;
  private readonly reachable = new Set<string>();
  /** Per peer: the number of the last dial started, and of the newest dial whose outcome is in force. */
  private readonly dialSeq = new Map<string, { sent: number; applied: number }>();
  private probeTimer: NodeJS.Timeout | undefined;
  /** The interval probeTimer runs at. */
  private probeInterval = 0;
  private listening = false;
  readonly ctx: MeshContext;
  /** The native data plane, when this gateway runs it; else links stay on node:tls. */
  private readonly engine: NativeEngine | undefined;
  private readonly sessions = new SessionCache();
  private readonly filterHolds = new HoldBudget(FILTER_MAX_HELD_BYTES);
  private readonly enginePlane: string;
  /** Ready TLS connections to each peer for the next links, and those peers hold to us (src/mesh/standby.ts). */
  private readonly standby: StandbyPool;
  private readonly standbyHolds: StandbyHolds;

  constructor(opts: GatewayOptions) {
    this.logger = (opts.logger ?? new Logger(opts.roster.log.level)).child({ gateway: opts.gateway });
    this.metrics = opts.metrics ?? new GatewayMetrics(opts.gateway);
    this.material = opts.material;
    const plane = nativeEngine(opts.dataPlane ?? 'auto');
    this.engine = plane.engine;
    this.enginePlane = plane.engine ? 'native' : `node (${plane.why})`;
    this.heapGuard = opts.guardHeap
      ? new YoungGenerationGuard(() => this.current.roster.limits, undefined, () => this.engine?.trim())
      : undefined;
    this.current = { roster: opts.roster, self: gatewayOrThrow(opts.roster, opts.gateway), secureContext: makeSecureContext(opts.material), cas: opts.material.cas };
    this.table = new LinkTable(() => this.current.roster.limits);
    this.refusals = new RefusalLog(this.logger, () => this.current.roster.limits);
    this.linkLog = new LinkLog(this.logger, () => this.current.roster.limits);
    this.metrics.addPeers(this.peerNames());
    this.registry = new MeshRegistry({
      roster: () => this.current.roster,
      self: () => this.current.self,
      logger: this.logger,
      dial: (peer) => dialPeer(this.ctx, peer),
      localEntries: () => [...this.epmd.registrations.values()].filter(inMesh).map(registryEntry),
      refuse: (reason, message, fields) => {
        this.metrics.refused(reason);
        this.refusals.warn('registry refused', reason, this.rosterPeer(fields.peer), { detail: message, ...fields });
      },
      connection: (target, sock) => {
        const { roster: r } = this.current;
        const peer = r.gateways.get(target.peer);
        const t = peer && targetLabel(r, peer.name, target.node);
        if (!peer || !t) return sock.destroy();
        handleOutbound(this.ctx, peer, { name: target.node, ...t }, sock);
      },
      shed: (listener, d) => this.shed(listener, d),
    });
    this.epmd = new EpmdServer({
      roster: () => this.current.roster,
      self: () => this.current.self,
      metrics: this.metrics,
      logger: this.logger,
      refusals: this.refusals,
      remote: this.registry,
      // Local-only names never leave the host.
      registered: (reg) => {
        if (inMesh(reg)) this.registry.localRegistered(registryEntry(reg));
      },
      unregistered: (reg) => {
        if (inMesh(reg)) this.registry.localUnregistered(reg.name);
      },
    });
    this.metrics.dataPlane.labels(this.engine ? 'native' : 'node').set(1);
    const engine = this.engine;
    if (engine) this.metrics.nativeBufferedSource = () => engine.buffered();
    this.ctx = {
      engine: this.engine,
      active: () => this.current,
      metrics: this.metrics,
      sessions: this.sessions,
      filterHolds: this.filterHolds,
      logger: this.logger,
      table: this.table,
      linkLog: this.linkLog,
      refusalLog: this.refusals,
      abandoned: (peer, direction, fields) => {
        this.metrics.linksAbandoned.labels(peer, direction).inc();
        this.linkLog.info('link abandoned', peer, { direction, ...fields });
      },
      registeredPort: (short) => this.epmd.registeredPort(short),
      dialStarted: (peer) => this.dialStarted(peer),
      registryLink: (peer, sock, head) => this.registry.attach(peer, sock, head),
      takeStandby: (peer) => this.standby.take(peer),
      offerStandby: (peer, sock) => this.standby.offer(peer, sock),
      standbyHeld: (peer, delta, sock) => this.standbyHolds.change(peer, delta, sock),
      refuse: (reason: RefusalReason, message: string, fields) => {
        this.metrics.refused(reason);
        if (reason === 'policy_denied' && typeof fields.from_group === 'string' && typeof fields.to_group === 'string') {
          this.metrics.policyDeniedDial(fields.from_group, fields.to_group);
        }
        this.refusals.warn('connection refused', reason, this.rosterPeer(fields.peer), { detail: message, ...fields });
      },
    };
    this.standby = new StandbyPool(this.ctx);
    this.standbyHolds = new StandbyHolds(this.metrics);
    this.metrics.setPolicyGroups(policyLabels(opts.roster));
    this.metrics.onScrape(() => {
      for (const link of this.table.established) link.flush();
      this.updateCertExpiry();
      // Filtered links on node:tls hold theirs in JS, those on the native data plane in the engine; each side has FILTER_MAX_HELD_BYTES.
      this.metrics.filterHeldBytes.set(this.filterHolds.bytes + (this.engine?.filterHeld() ?? 0));
      const peers = this.peerNames();
      this.metrics.setRegistryPeers(peers, (p) => this.registry.views.names(p)?.length, (p) => this.registry.standIns.count(p));
      publishRosterNodes(this.metrics.rosterNodeRegistered, nodesOf(this.current.roster, this.current.self.name), (short) => this.epmd.registrations.has(short));
    });
  }

  /** Only a roster name may key the log budget: a refused connection's fields can come from anyone. */
  private rosterPeer(peer: unknown): string | undefined {
    return typeof peer === 'string' && this.current.roster.gateways.has(peer) ? peer : undefined;
  }

  private peerNames(): string[] {
    return [...this.current.roster.gateways.keys()].filter((g) => g !== this.current.self.name);
  }

  get self(): GatewaySpec {
    return this.current.self;
  }

  get roster(): Roster {
    return this.current.roster;
  }

  /**
   * Starts listening and serving; `taken` is what a committed take-over
   * handed this process (src/takeover/): its links are relayed at once, its
   * listeners and registrations become this gateway's.
   */
  async start(taken?: Taken): Promise<void> {
    const { self, roster } = this.current;
    const adopt = taken && this.adoptParts();
    const links = adopt ? adoptLinks(adopt, taken!) : 0;
    await this.epmd.sync();
    const registrations = adopt ? adoptRegistrations(adopt, taken!) : 0;
    await this.registry.start();
    const server = tls.createServer(serverOptions(this.material, roster.limits.tlsHandshakeTimeoutMs, roster.limits.tlsSessionLifetimeMs));
    server.maxConnections = roster.limits.maxTlsConnections;
    server.on('drop', (d?: net.DropArgument) => this.shed('TLS port', d));
    // With the native data plane, node:tls runs every connection over a tap
    // that counts its records (src/fastpath/tap.ts): tls.Server's own
    // connection listener is called with the tap instead of the TCP socket.
    const tlsListener = server.listeners('connection')[0] as (this: tls.Server, sock: Duplex) => void;
    assert.ok(typeof tlsListener === 'function', 'tls.Server has no connection listener of its own');
    if (this.engine) {
      server.removeListener('connection', tlsListener);
      server.on('keylog', (line: Buffer, sock: tls.TLSSocket) => tapOf(sock)?.keylog(line));
    }
    server.on('connection', (raw: net.Socket) => {
      this.heapGuard?.connection();
      this.tlsSockets.add(raw);
      raw.once('close', () => this.tlsSockets.delete(raw));
      const source = raw.remoteAddress;
      if (source === undefined) return raw.destroy(); // already gone: nothing to serve or count
      // One source may not hold the whole port with handshakes it never finishes.
      const held = this.handshakingPerSource.get(source) ?? 0;
      if (held >= this.current.roster.limits.maxTlsHandshakesPerSource) {
        this.shedSources.add(raw);
        const from = `${source}:${raw.remotePort}`;
        this.ctx.refuse('limit_reached', `too many unauthenticated TLS connections from ${source} (${held})`, { from, direction: 'inbound' });
        raw.destroy();
        return;
      }
      this.handshakingPerSource.set(source, held + 1);
      this.handshaking.set(raw, { started: process.hrtime.bigint(), source });
      raw.once('close', () => this.handshakeEnded(raw));
      if (this.engine) {
        raw.setNoDelay(true);
        tlsListener.call(server, new TlsTap(raw, 'server'));
      }
    });
    server.on('secureConnection', (sock: tls.TLSSocket) => {
      const started = this.handshakeEnded(tcpOf(sock));
      // The tap learns the suite now; a link over a suite it cannot take simply stays on node:tls.
      tapOf(sock)?.setSuite(sock.getCipher()?.standardName);
      handleInbound(this.ctx, sock, started);
    });
    server.on('tlsClientError', (err: Error & { code?: string }, sock: tls.TLSSocket) => {
      // A connection shed for its source was counted and logged once already.
      if (this.shedSources.has(tcpOf(sock))) return sock.destroy();
      this.metrics.tlsHandshakes.labels('server', 'failed').inc();
      // A client leaving mid-handshake surfaces as a reset, which on the dialling side means an unreachable peer.
      const classified = classifyTlsError(err);
      const reason = classified === 'peer_unreachable' ? 'tls_aborted' : classified;
      this.ctx.refuse(reason, `TLS handshake failed: ${err.message}`, { from: peerOf(sock), direction: 'inbound' });
      // Node leaves the socket open after a handshake timeout once this event has a listener:
      // without this, a silent or slow client would hold its connection slot forever.
      sock.destroy();
    });
    await listen(server, self.listen.port, self.listen.host);
    this.tlsServer = server;
    this.warnTls(this.material);
    if (self.metrics) {
      this.http = await startHttp(self.metrics, this.metrics, () => this.readiness(), () => this.current.roster.limits, this.ctx.refuse);
    }
    this.listening = true;
    if (taken) {
      const unclaimed = closeUnclaimed();
      const now = Date.now();
      this.metrics.takeoverSeconds.labels('total').set((now - taken.startedAt) / 1000);
      this.metrics.takeoverSeconds.labels('pause').set((now - taken.frozenAt) / 1000);
      this.metrics.takeovers.labels('take', 'ok').inc();
      this.logger.info('took over', { old_pid: taken.oldPid, links: links, links_ended: taken.ended + taken.links.length - links, registrations, listeners: taken.listeners.length - unclaimed, listeners_unclaimed: unclaimed, pause_ms: now - taken.frozenAt, duration_ms: now - taken.startedAt });
    }
    this.updateCertExpiry();
    this.probePeers();
    this.scheduleProbes();
    this.standby.start();
    this.logger.info('gateway listening', {
      tls: formatHostPort(self.listen),
      epmd_port: self.epmdPort,
      metrics: self.metrics ? formatHostPort(self.metrics) : 'off',
      stand_ins: this.registry.standIns.size,
      stand_in_ports: self.standInPorts.kind === 'mirror' ? 'mirror' : `${self.standInPorts.low}-${self.standInPorts.high}`,
      local_nodes: nodesOf(roster, self.name).length,
      data_plane: this.enginePlane,
    });
  }

  private adoptParts(): AdoptParts {
    return {
      metrics: this.metrics,
      logger: this.logger,
      engine: this.engine,
      epmd: this.epmd,
      active: () => this.current,
      linkDeps: { metrics: this.metrics, linkLog: this.linkLog, refusalLog: this.refusals, table: this.table },
    };
  }

  /** Whether this process can adopt native links (a take-over into it needs its engine and passfd). */
  get native(): NativeEngine | undefined {
    return this.engine;
  }

  /** What a take-over from this process touches (src/takeover/freeze.ts). Reloads are refused while one runs. */
  takeoverParts(): GatewayParts {
    assert.ok(this.engine, 'a take-over needs the native data plane (descriptor passing is in its module)');
    const self = this.current.self;
    return {
      gateway: self.name,
      passfd: this.engine.passfd,
      metrics: this.metrics,
      logger: this.logger,
      epmd: this.epmd,
      standIns: this.registry.standIns,
      table: this.table,
      listeners: () => [
        ...(this.tlsServer ? [{ kind: 'tls' as const, server: this.tlsServer as net.Server, host: self.listen.host, port: self.listen.port }] : []),
        ...(this.http && self.metrics ? [{ kind: 'metrics' as const, server: this.http as net.Server, host: self.metrics.host, port: self.metrics.port }] : []),
      ],
    };
  }

  /** A take-over is under way: reloads wait for its end (one refused meanwhile says so). */
  takingOver = false;

  /** Ends the unauthenticated phase of a TLS connection (authenticated or closed); returns when it started. */
  private handshakeEnded(raw: net.Socket): bigint | undefined {
    const h = this.handshaking.get(raw);
    if (!h) return undefined;
    this.handshaking.delete(raw);
    const held = this.handshakingPerSource.get(h.source) ?? 0;
    assert.ok(held > 0, `handshake count for ${h.source} would go below zero`);
    if (held === 1) this.handshakingPerSource.delete(h.source);
    else this.handshakingPerSource.set(h.source, held - 1);
    return h.started;
  }

  /** A connection the kernel accepted but a listener's maxConnections turned away. */
  private shed(listener: string, d: net.DropArgument | undefined): void {
    this.ctx.refuse('limit_reached', `too many connections on the ${listener}`, { from: `${d?.remoteAddress}:${d?.remotePort}` });
  }

  /** Probes every peer each peerProbeIntervalMs; called again when a reload changes the interval. */
  private scheduleProbes(): void {
    clearInterval(this.probeTimer);
    this.probeInterval = this.current.roster.limits.peerProbeIntervalMs;
    this.probeTimer = setInterval(() => this.probePeers(), this.probeInterval);
    this.probeTimer.unref();
  }

  private probePeers(): void {
    const { roster, self } = this.current;
    for (const peer of roster.gateways.values()) {
      if (peer.name === self.name) continue;
      dialPeer(this.ctx, peer).then(
        (sock) => {
          sock.on('error', () => undefined);
          sock.end(encodePreamble({ kind: 'probe' }));
        },
        () => undefined, // the outcome was recorded by dialStarted's callback
      );
    }
  }

  /** See MeshContext.dialStarted. */
  private dialStarted(peer: string): (outcome: DialOutcome) => void {
    const seq = this.dialSeq.get(peer) ?? { sent: 0, applied: 0 };
    this.dialSeq.set(peer, seq);
    const n = ++seq.sent;
    return (outcome) => {
      // A dial can take as long as the TLS timeout: one started during an
      // outage may fail after a newer one succeeded. Outcomes older than the
      // one in force are stale and must not flip the state back.
      if (n < seq.applied) return;
      seq.applied = n;
      const was = this.reachable.has(peer);
      // Logged on every change, both ways: a partition's heal shows in the log too.
      if (outcome.ok && !was) this.logger.info('peer reachable', { peer });
      if (outcome.ok) {
        this.registry.kick(peer);
        this.standby.reachable(peer);
      }
      if (!outcome.ok && was) this.logger.warn('peer unreachable', { peer, detail: outcome.detail });
      // A handshake that timed out over a TCP connection (slow) is no
      // evidence against the ready connections, verified and open: on a
      // loaded host, as when a cluster boots at once, it means a slow peer,
      // and closing the pool would turn one slow handshake into a pool's
      // worth more. (Should the peer hang instead, a link on one of them
      // fails as a fresh dial would, and standbyIdleMs replaces them.)
      if (!outcome.ok && !outcome.slow) this.standby.unreachable(peer);
      this.setReachable(peer, outcome.ok);
    };
  }

  private setReachable(peer: string, up: boolean): void {
    if (up) this.reachable.add(peer);
    else this.reachable.delete(peer);
    const { roster, self } = this.current;
    this.metrics.setPeerReachability([...roster.gateways.keys()].filter((g) => g !== self.name), this.reachable);
  }

  readiness(): {
    ready: boolean;
    gateway: string;
    listening: boolean;
    peers: { total: number; reachable: string[]; unreachable: string[] };
    links: number;
    registered_nodes: string[];
    /** Roster nodes of this host not registered now: the gateway is ready all the same (src/metrics/roster-nodes.ts). */
    unregistered_nodes: string[];
    registry: ReturnType<MeshRegistry['readiness']>;
  } {
    const { roster, self } = this.current;
    const peers = [...roster.gateways.keys()].filter((g) => g !== self.name);
    return {
      ready: this.listening,
      gateway: self.name,
      listening: this.listening,
      peers: { total: peers.length, reachable: peers.filter((p) => this.reachable.has(p)), unreachable: peers.filter((p) => !this.reachable.has(p)) },
      links: this.table.count,
      registered_nodes: [...this.epmd.registrations.keys()],
      unregistered_nodes: unregisteredNodes(nodesOf(roster, self.name), (short) => this.epmd.registrations.has(short)),
      registry: this.registry.readiness(),
    };
  }

  /** One series for the gateway's certificate and one per CA of the bundle, by serial: a reload may change the set. */
  private updateCertExpiry(): void {
    const now = Date.now();
    this.metrics.certExpirySeconds.reset();
    this.metrics.certExpirySeconds.labels({ cert: 'gateway' }).set(secondsUntilExpiry(this.material.cert, now));
    for (const ca of this.material.cas) this.metrics.certExpirySeconds.labels({ cert: 'ca', ca: ca.serial }).set(Math.floor((ca.notAfter - now) / 1000));
  }

  /** Logs what loadTlsMaterial let through with a warning (a CA of the bundle out of its validity period). */
  private warnTls(material: TlsMaterial): void {
    for (const detail of material.warnings) this.logger.warn('TLS warning', { detail });
  }

  /**
   * Dials each of `peers` with the configuration now in force and returns
   * those whose certificate its CAs accepted (identity and revocation
   * checked as for any dial): after a CA was removed, they are the peers that
   * have moved to a remaining CA. Dials run at once, each bounded by the TLS
   * handshake timeout.
   */
  private async provenPeers(peers: Iterable<string>): Promise<Set<string>> {
    const proven = new Set<string>();
    const { roster } = this.current;
    await Promise.all(
      [...peers].map(async (name) => {
        const peer = roster.gateways.get(name);
        if (!peer) return;
        try {
          const sock = await dialPeer(this.ctx, peer);
          sock.on('error', () => undefined);
          sock.end(encodePreamble({ kind: 'probe' }));
          proven.add(name);
        } catch (err) {
          this.logger.warn('peer not proven under the CAs in force', { peer: name, detail: (err as Error).message });
        }
      }),
    );
    return proven;
  }

  /**
   * Puts a new roster and TLS material in force. Established links keep the
   * limits and certificates they were opened with, and stay up unless the new
   * roster would refuse them (their peer gateway gone or its certificate
   * revoked, a node moved or removed, a policy that now forbids them): those are cut, counted and logged as
   * refusals. Everything that can be checked is checked before anything
   * changes; if binding a new listener still fails, the old configuration is
   * put back. Returns whether the new configuration is in force.
   */
  reload(cfg: GatewayConfig): Promise<boolean> {
    // One reload at a time: two SIGHUPs in a row apply in order.
    const run = this.reloading.then(() => this.applyReload(cfg));
    this.reloading = run.catch(() => false);
    return run;
  }

  private reloading: Promise<boolean> = Promise.resolve(true);

  private async applyReload(cfg: GatewayConfig): Promise<boolean> {
    const problems = this.reloadProblems(cfg);
    let next: ActiveConfig | undefined;
    let accepting: tls.TlsOptions | undefined;
    if (problems.length === 0) {
      try {
        next = { roster: cfg.roster, self: gatewayOrThrow(cfg.roster, cfg.gateway), secureContext: makeSecureContext(cfg.material), cas: cfg.material.cas };
        accepting = serverOptions(cfg.material, cfg.roster.limits.tlsHandshakeTimeoutMs, cfg.roster.limits.tlsSessionLifetimeMs);
      } catch (err) {
        problems.push(`TLS material unusable: ${(err as Error).message}`);
      }
    }
    if (!next || !accepting) return this.refuseReload(problems);

    const previous = this.current;
    this.current = next;
    // Sessions made under the old trust are not resumed: every dial from here on verifies the chain in full.
    this.sessions.clear();
    try {
      await this.epmd.sync();
      await this.registry.sync();
    } catch (err) {
      this.current = previous;
      await this.epmd.sync().catch(() => undefined);
      await this.registry.sync().catch(() => undefined);
      return this.refuseReload([(err as Error).message]);
    }
    this.material = cfg.material;
    this.metrics.addPeers(this.peerNames());
    this.tlsServer?.setSecureContext(accepting);
    const limits = cfg.roster.limits;
    if (this.tlsServer) this.tlsServer.maxConnections = limits.maxTlsConnections;
    this.registry.standIns.setMaxConnections(limits.maxLinks);
    if (this.http) applyHttpLimits(this.http, limits);
    if (limits.peerProbeIntervalMs !== this.probeInterval) this.scheduleProbes();
    this.standby.reloaded();
    this.standbyHolds.reloaded();
    this.logger.setLevel(cfg.roster.log.level);
    this.metrics.setPolicyGroups(policyLabels(cfg.roster));
    this.updateCertExpiry();
    this.warnTls(cfg.material);
    // Links whose peer certificate no CA in force issued any more: their peers must prove they moved.
    const unchained = new Set([...this.table.established].filter((l) => !chainsToBundle(next, l.info)).map((l) => l.info.peer));
    const proven = unchained.size > 0 ? await this.provenPeers(unchained) : new Set<string>();
    let cut = 0;
    for (const link of [...this.table.established]) {
      const refusal = readmit(next, next.self.name, link.info, proven) ?? link.refilter(filterFor(next.roster, next.self.name, link.info));
      if (!refusal) continue;
      link.refuse(refusal);
      cut++;
    }
    this.metrics.reloads.labels('ok').inc();
    this.logger.info('configuration reloaded', {
      gateways: cfg.roster.gateways.size,
      nodes: cfg.roster.nodes.size,
      stand_ins: this.registry.standIns.size,
      cert_serial: new X509Certificate(cfg.material.cert).serialNumber,
      ca_serials: cfg.material.cas.map((c) => c.serial).join(','),
      revoked_serials: cfg.roster.revoked.size,
      links_kept: this.table.established.size - cut,
      links_cut: cut,
    });
    return true;
  }

  /** What a reload cannot apply to a running process; each one is a reason to refuse it. */
  private reloadProblems(cfg: GatewayConfig): string[] {
    const problems: string[] = [];
    const self = this.current.self;
    if (!this.listening) problems.push('the gateway is not running (stopped or draining)');
    if (this.takingOver) problems.push('a take-over is under way');
    if (cfg.gateway !== self.name) problems.push(`the configuration is for gateway ${cfg.gateway}, this process is ${self.name}`);
    const next = cfg.roster.gateways.get(self.name);
    if (!next) return [...problems, `gateway ${self.name} is no longer in the roster`];
    const same = (a: HostPort | null, b: HostPort | null) => (a && b ? formatHostPort(a) === formatHostPort(b) : a === b);
    const restart = (what: string, before: string, after: string) =>
      problems.push(`gateways.${self.name}.${what} changed from ${before} to ${after}: that needs a restart`);
    if (!same(next.listen, self.listen)) restart('listen', formatHostPort(self.listen), formatHostPort(next.listen));
    if (next.epmdPort !== self.epmdPort) restart('epmdPort', String(self.epmdPort), String(next.epmdPort));
    if (!same(next.metrics, self.metrics)) {
      const show = (m: HostPort | null) => (m ? formatHostPort(m) : 'off');
      restart('metrics', show(self.metrics), show(next.metrics));
    }
    if (next.host !== self.host) restart('host', self.host, next.host);
    return problems;
  }

  /** Counts and logs a reload that cannot be applied (also for a configuration that did not load). */
  refuseReload(problems: string[]): false {
    this.metrics.reloads.labels('failed').inc();
    for (const problem of problems) this.logger.error('reload refused, configuration unchanged', { detail: problem });
    return false;
  }

  /**
   * Graceful shutdown. New links are refused at once (TLS listener and
   * stand-ins closed, /readyz says 503); established links run on until they
   * close on their own or `deadlineMs` passes, then the rest are ended (queued
   * bytes flushed, then FIN) and everything is stopped. EPMD stays up until
   * the end: nodes on this host find each other through it, and those links
   * never cross the gateway, so a drain must not break them.
   */
  async drain(deadlineMs: number): Promise<DrainResult> {
    const started = Date.now();
    this.listening = false;
    clearInterval(this.probeTimer);
    this.standby.stop();
    const closing: Promise<void>[] = [];
    if (this.tlsServer) closing.push(closeServer(this.tlsServer));
    this.tlsServer = undefined;
    this.registry.stop();
    closing.push(this.registry.standIns.close());
    this.logger.info('draining', { links: this.table.count, deadline_ms: deadlineMs });
    await this.table.whenEmpty(deadlineMs);
    const cut = this.table.count;
    for (const link of this.table.established) link.end('gateway shutting down: drain deadline reached');
    // Give the ended links the same grace a link gets after one side closed.
    if (cut > 0) await this.table.whenEmpty(this.current.roster.limits.linkCloseGraceMs);
    // stop() ends what still holds the TLS listener open (a registry link or
    // probe that arrived while draining); only then can its close complete.
    await this.stop();
    await Promise.all(closing);
    const result = { clean: cut === 0, cut, durationMs: Date.now() - started };
    this.logger.info('drained', { clean: result.clean, links_cut: cut, duration_ms: result.durationMs });
    return result;
  }

  /** Stops listening and cuts every link at once. */
  async stop(): Promise<void> {
    this.listening = false;
    clearInterval(this.probeTimer);
    this.standby.stop();
    const closing: Promise<void>[] = [];
    const close = (s: net.Server | undefined) => {
      if (s) closing.push(new Promise((r) => s.close(() => r())));
    };
    close(this.tlsServer);
    this.tlsServer = undefined;
    this.registry.stop();
    closing.push(this.registry.standIns.close());
    if (this.http) {
      this.http.closeAllConnections();
      close(this.http);
    }
    for (const link of this.table.established) link.destroyBoth();
    for (const sock of this.tlsSockets) sock.destroy();
    this.heapGuard?.stop();
    closing.push(this.epmd.close());
    await Promise.all(closing);
    this.refusals.flush();
    this.linkLog.flush();
    this.logger.info('gateway stopped');
  }
}

/**
 * Where a TLS connection came from, also once it has closed: a closed
 * TLSSocket forgets its peer, but the TCP socket it wraps (`_parent`, which
 * Node does not type) remembers the address read on 'connection'.
 */
function peerOf(sock: tls.TLSSocket): string {
  const tcp = sock.remoteAddress ? sock : tcpOf(sock);
  return `${tcp.remoteAddress}:${tcp.remotePort}`;
}

/** The TCP socket a server-side TLSSocket wraps (`_parent`, which Node does not type), or the one under its tap. */
function tcpOf(sock: tls.TLSSocket): net.Socket {
  return tapOf(sock)?.raw ?? (sock as unknown as { _parent?: net.Socket })._parent ?? sock;
}

/** The group labels of beamgate_policy_denied_total: the policy's groups, and the label of a node in none. */
function policyLabels(roster: Roster): string[] {
  return roster.policy ? [...roster.policy.groups.keys(), NO_GROUP] : [];
}

/** What a peer is told of one of our registrations. */
function registryEntry(r: Registration): RegistryEntry {
  return { name: r.name, port: r.port, highestVersion: r.highestVersion, lowestVersion: r.lowestVersion };
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
