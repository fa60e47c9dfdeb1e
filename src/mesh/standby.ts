// Ready TLS connections to each peer gateway, so that a link starts without a
// TLS handshake. A cluster that boots or heals at once dials hundreds of links
// in the same seconds, and each node gives its connection only net_setuptime
// (7 s) to come up: a handshake per link, started only when the node dials,
// queues behind all the others on a loaded host. Each peer gets
// `standbyPerPeer` connections, or one for every pair of our roster nodes and
// its where those are more (the links a boot dials to it at once), fewer in a
// mesh so large that all of them together would pass `standbyTotal`
// (limits.ts's standbyPools), dialled in the background one at a time,
// verified like any other (certificate, roster identity, revocation) and
// marked with the standby preamble; a link takes one and writes its own
// preamble on it (src/mesh/outbound.ts), and once the burst of takes is over
// (STANDBY_REFILL_QUIET_MS) the pool is dialled full again. A ready
// connection that waits `standbyIdleMs` is replaced, so none outlives the
// peer's patience (STANDBY_HOLD_SLACK_MS) or a silent path for long. A
// ready connection the peer closes at once was refused by it (TLS 1.3 ends
// the client's handshake before the server judges the client): that is a
// failed dial, and the pool backs off (STANDBY_CONFIRM_MS). A pool backing
// off after failed dials (the peer was not up yet) dials again as soon as any
// other dial reaches the peer (reachable()), so a cluster whose gateways boot
// together does not wait out back-offs of up to STANDBY_RETRY_MAX_MS.

import assert from 'node:assert/strict';
import type tls from 'node:tls';
import { MAX_STANDBY_PER_PEER, STANDBY_CONFIRM_MS, standbyPools, STANDBY_REFILL_MAX_DEFER_MS, STANDBY_REFILL_QUIET_MS, STANDBY_RETRY_MAX_MS, STANDBY_RETRY_MIN_MS } from '../config/limits.js';
import { nodesOf, type Roster } from '../config/roster.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import type { ActiveConfig, MeshContext } from './context.js';
import { dialPeer } from './outbound.js';
import { encodePreamble } from './preamble.js';

interface Ready {
  sock: tls.TLSSocket;
  /** The configuration it was dialled under: after a reload only new ones are handed out. */
  config: ActiveConfig;
  idle: NodeJS.Timeout;
  keptAt: number;
  /** Fires once it has lived STANDBY_CONFIRM_MS: the peer took it, and the back-off starts over. */
  proven: NodeJS.Timeout;
}

interface PeerPool {
  ready: Ready[];
  /** Whether a dial for this peer is in flight: the pool dials one at a time per peer. */
  dialling: boolean;
  /** The wait before the next dial after a failure (0 once a ready connection has proved itself). */
  backoffMs: number;
  retry: NodeJS.Timeout | undefined;
  /** Whether the back-off is for ready connections the peer closed at once (it refuses us), not for failed dials. */
  refused: boolean;
}

export class StandbyPool {
  private readonly peers = new Map<string, PeerPool>();
  private running = false;
  /** The burst of takes in progress: when it started and when the last take was; refills wait for its end. */
  private burst: { first: number; last: number } | undefined;
  private refillTimer: NodeJS.Timeout | undefined;
  /** Each peer's share under a configuration (standbyPools), worked out once per configuration. */
  private readonly shares = new WeakMap<ActiveConfig, Map<string, number>>();

  constructor(private readonly ctx: MeshContext) {}

  /** Fills every peer's pool (the roster in force says which peers and how many). */
  start(): void {
    this.running = true;
    this.sync();
  }

  /**
   * After a reload: connections made under the old configuration are closed
   * (another certificate, CA or roster may be in force), peers gone from the
   * roster are forgotten, and every pool is filled again.
   */
  reloaded(): void {
    for (const [peer, pool] of this.peers) {
      for (const r of pool.ready) this.discard(r);
      pool.ready = [];
      if (!this.ctx.active().roster.gateways.has(peer)) this.forget(peer);
    }
    this.sync();
  }

  /** A ready connection to `peer`, now the caller's; undefined when there is none. Either way the pools are refilled once the burst of takes is over. */
  take(peer: string): tls.TLSSocket | undefined {
    const pool = this.peers.get(peer);
    if (!pool) {
      this.ctx.metrics.standbyTaken.labels(peer, 'miss').inc();
      return undefined;
    }
    const config = this.ctx.active();
    let taken: tls.TLSSocket | undefined;
    while (!taken && pool.ready.length > 0) {
      const r = pool.ready.shift()!;
      clearTimeout(r.idle);
      clearTimeout(r.proven);
      r.sock.removeAllListeners('end');
      r.sock.removeAllListeners('close');
      r.sock.removeAllListeners('error');
      if (r.config === config && !r.sock.destroyed && !r.sock.readableEnded) taken = r.sock;
      else r.sock.destroy();
    }
    if (taken) pool.backoffMs = 0;
    this.ctx.metrics.standbyTaken.labels(peer, taken ? 'hit' : 'miss').inc();
    this.gauge(peer);
    this.deferRefill();
    return taken;
  }

  /** Refills every pool once links have stopped taking connections for a while (see STANDBY_REFILL_QUIET_MS). */
  private deferRefill(): void {
    const now = Date.now();
    this.burst = this.burst ? { first: this.burst.first, last: now } : { first: now, last: now };
    if (this.refillTimer) return;
    const check = () => {
      const b = this.burst!;
      const t = Date.now();
      const due = Math.min(b.last + STANDBY_REFILL_QUIET_MS, b.first + STANDBY_REFILL_MAX_DEFER_MS);
      if (t < due) {
        this.refillTimer = setTimeout(check, due - t);
        this.refillTimer.unref();
        return;
      }
      this.refillTimer = undefined;
      this.burst = undefined;
      this.sync();
    };
    this.refillTimer = setTimeout(check, STANDBY_REFILL_QUIET_MS);
    this.refillTimer.unref();
  }

  /** Whether refills wait for a burst of takes to end. */
  private get deferring(): boolean {
    return this.burst !== undefined;
  }

  /**
   * A verified connection to `peer` that a link dialled and then did not use
   * (its node gave up first): it joins the ready ones if there is room, and
   * the handshake it cost is not wasted. False: the caller closes it.
   */
  offer(peer: string, sock: tls.TLSSocket): boolean {
    const pool = this.peers.get(peer);
    const config = this.ctx.active();
    if (!this.running || !pool || pool.ready.length >= this.wanted(config, peer) || sock.destroyed || sock.readableEnded) return false;
    this.keep(peer, pool, sock, config);
    this.ctx.metrics.standbyOffered.labels(peer).inc();
    return true;
  }

  /** The peer proved unreachable (a dial failed): its ready connections are as suspect as the path, so they go. */
  unreachable(peer: string): void {
    const pool = this.peers.get(peer);
    if (!pool || pool.ready.length === 0) return;
    for (const r of pool.ready) this.discard(r);
    pool.ready = [];
    this.gauge(peer);
  }

  /**
   * Evidence that `peer` is up (a dial to it worked: most often the registry
   * link, which a peer's own dial to us kicks). A pool waiting out the
   * back-off of failed dials fills now: a cluster booting at once, whose
   * first dials found their peers not yet listening, has its ready
   * connections once its peers answer, not after a back-off of up to
   * STANDBY_RETRY_MAX_MS. A pool backing off because the peer closed its
   * ready connections at once (it refuses us) keeps waiting: that peer is up
   * and says no.
   */
  reachable(peer: string): void {
    const pool = this.peers.get(peer);
    if (!this.running || !pool?.retry || pool.refused) return;
    clearTimeout(pool.retry);
    pool.retry = undefined;
    this.ctx.logger.info('ready connections dialled again: peer reachable', { peer, backoff_ms: pool.backoffMs });
    this.fill(peer);
  }

  /** Closes every ready connection and dials no more (stop, drain). */
  stop(): void {
    this.running = false;
    clearTimeout(this.refillTimer);
    this.refillTimer = undefined;
    this.burst = undefined;
    for (const peer of [...this.peers.keys()]) this.forget(peer);
  }

  /** How many are ready for `peer` now. */
  readyCount(peer: string): number {
    return this.peers.get(peer)?.ready.length ?? 0;
  }

  private sync(): void {
    const { roster, self } = this.ctx.active();
    for (const peer of roster.gateways.keys()) if (peer !== self.name) this.fill(peer);
  }

  private forget(peer: string): void {
    const pool = this.peers.get(peer);
    if (!pool) return;
    for (const r of pool.ready) this.discard(r);
    clearTimeout(pool.retry);
    this.peers.delete(peer);
    this.ctx.metrics.standbyReady.labels(peer).set(0);
  }

  private pool(peer: string): PeerPool {
    let pool = this.peers.get(peer);
    if (!pool) {
      pool = { ready: [], dialling: false, backoffMs: 0, retry: undefined, refused: false };
      this.peers.set(peer, pool);
    }
    return pool;
  }

  /** Dials one more for `peer` if it has fewer than it should and none is being dialled. */
  private fill(peer: string): void {
    if (!this.running) return;
    const { roster } = this.ctx.active();
    const spec = roster.gateways.get(peer);
    const want = this.wanted(this.ctx.active(), peer);
    if (!spec || want === 0) return;
    const pool = this.pool(peer);
    if (pool.dialling || pool.retry || pool.ready.length >= want || this.deferring) return;
    pool.dialling = true;
    const config = this.ctx.active();
    dialPeer(this.ctx, spec, true).then(
      (sock) => {
        // The back-off is not reset yet: the peer may still refuse us (see remove()).
        pool.dialling = false;
        if (!this.running || this.peers.get(peer) !== pool || config !== this.ctx.active()) {
          this.close(sock);
          return this.fill(peer);
        }
        this.keep(peer, pool, sock, config);
        this.fill(peer);
      },
      () => {
        // The failure was counted, logged and taken as evidence by dialPeer's outcome.
        pool.dialling = false;
        if (!this.running || this.peers.get(peer) !== pool) return;
        pool.refused = false;
        const waitMs = this.backOff(peer, pool);
        this.ctx.logger.debug('ready connection dial failed', { peer, retry_in_ms: waitMs });
      },
    );
  }

  /** The next dial for `peer` waits, twice as long as the last wait (once per failure: a retry already set stands). */
  private backOff(peer: string, pool: PeerPool): number {
    if (pool.retry) return pool.backoffMs;
    pool.backoffMs = Math.min(STANDBY_RETRY_MAX_MS, pool.backoffMs ? pool.backoffMs * 2 : STANDBY_RETRY_MIN_MS);
    pool.retry = setTimeout(() => {
      pool.retry = undefined;
      this.fill(peer);
    }, pool.backoffMs);
    pool.retry.unref();
    return pool.backoffMs;
  }

  /** Marks a verified connection as a ready one (the standby preamble) and keeps it until taken, closed or expired. */
  private keep(peer: string, pool: PeerPool, sock: tls.TLSSocket, config: ActiveConfig): void {
    sock.write(encodePreamble({ kind: 'standby' }));
    const r: Ready = {
      sock,
      config,
      idle: setTimeout(() => this.expire(peer, r), config.roster.limits.standbyIdleMs),
      keptAt: Date.now(),
      proven: setTimeout(() => (pool.backoffMs = 0), STANDBY_CONFIRM_MS),
    };
    r.idle.unref();
    r.proven.unref();
    // The peer closing it (a restart, its own bound) or a broken path: it is gone, and replaced.
    const gone = () => this.remove(peer, r);
    sock.on('error', gone);
    sock.on('end', gone);
    sock.on('close', gone);
    pool.ready.push(r);
    this.gauge(peer);
  }

  private expire(peer: string, r: Ready): void {
    const pool = this.peers.get(peer);
    if (!pool) return;
    const i = pool.ready.indexOf(r);
    if (i === -1) return;
    pool.ready.splice(i, 1);
    clearTimeout(r.proven);
    this.ctx.metrics.standbyExpired.labels(peer).inc();
    this.discard(r);
    this.gauge(peer);
    this.fill(peer);
  }

  private remove(peer: string, r: Ready): void {
    const pool = this.peers.get(peer);
    const i = pool ? pool.ready.indexOf(r) : -1;
    clearTimeout(r.idle);
    clearTimeout(r.proven);
    r.sock.destroy();
    if (!pool || i === -1) return;
    pool.ready.splice(i, 1);
    this.gauge(peer);
    const livedMs = Date.now() - r.keptAt;
    if (livedMs >= STANDBY_CONFIRM_MS) return this.fill(peer);
    // Closed at once: the peer refused us (its log says why) or is going away; either way not a dial to repeat now.
    this.ctx.metrics.standbyRejected.labels(peer).inc();
    if (pool.retry) return;
    pool.refused = true;
    const waitMs = this.backOff(peer, pool);
    this.ctx.logger.warn('ready connection closed by peer', {
      peer,
      after_ms: livedMs,
      retry_in_ms: waitMs,
      detail: `${peer} closed a ready connection ${livedMs} ms after its handshake: it refused this gateway (a revoked certificate, a roster without it; see ${peer}'s log) or it is restarting`,
    });
  }

  private discard(r: Ready): void {
    clearTimeout(r.idle);
    clearTimeout(r.proven);
    r.sock.removeAllListeners('end');
    r.sock.removeAllListeners('close');
    r.sock.removeAllListeners('error');
    this.close(r.sock);
  }

  /** Ends a ready connection the way the peer expects: a FIN while it waits for a preamble, which it takes quietly. */
  private close(sock: tls.TLSSocket): void {
    sock.on('error', () => sock.destroy());
    sock.end();
    setTimeout(() => sock.destroy(), this.ctx.active().roster.limits.linkCloseGraceMs).unref();
  }

  /** How many `peer`'s pool holds under `config`: standbyPerPeer, or one per pair of our nodes and its where those are more, within the limits (standbyPools). */
  private wanted(config: ActiveConfig, peer: string): number {
    let shares = this.shares.get(config);
    if (!shares) {
      shares = standbyPools(config.roster.limits, nodePairs(config.roster, config.self.name));
      this.shares.set(config, shares);
    }
    return shares.get(peer) ?? 0;
  }

  private gauge(peer: string): void {
    this.ctx.metrics.standbyReady.labels(peer).set(this.readyCount(peer));
  }
}

/** The other side: ready connections that peers hold to this gateway, at most MAX_STANDBY_PER_PEER per peer. */
export class StandbyHolds {
  private readonly held = new Map<string, Set<tls.TLSSocket>>();

  constructor(private readonly metrics: GatewayMetrics) {}

  /** `sock` now waits for a link (false: `peer` holds as many as it may, refuse it), or no longer does. */
  change(peer: string, delta: 1 | -1, sock: tls.TLSSocket): boolean {
    const set = this.held.get(peer) ?? new Set<tls.TLSSocket>();
    if (delta === 1) {
      if (set.size >= MAX_STANDBY_PER_PEER) return false;
      set.add(sock);
    } else {
      assert.ok(set.delete(sock), `a ready connection of ${peer} released twice`);
    }
    if (set.size === 0) this.held.delete(peer);
    else this.held.set(peer, set);
    this.metrics.standbyHeld.labels(peer).set(set.size);
    return true;
  }

  /**
   * After a reload: every held connection is closed. Each was verified under
   * the old CAs, roster and revocation list; its peer dials a new one, which
   * passes the new checks in its handshake or fails there.
   */
  reloaded(): void {
    for (const set of this.held.values()) for (const sock of set) sock.destroy();
  }
}

/** For each peer gateway of `self`: the pairs of self's roster nodes and the peer's, the links that may be dialled to it at once. */
export function nodePairs(roster: Roster, self: string): Map<string, number> {
  const ours = nodesOf(roster, self).length;
  const pairs = new Map<string, number>();
  for (const name of roster.gateways.keys()) if (name !== self) pairs.set(name, ours * nodesOf(roster, name).length);
  return pairs;
}
