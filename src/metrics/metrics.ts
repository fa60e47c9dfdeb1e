// Every metric the gateway exports. Label values come only from the roster or
// from the fixed sets below, never from what a peer sent, so cardinality is
// bounded by the size of the roster.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { MAX_POLICY_GROUPS } from '../policy/parse.js';
import { rosterNodeGauge } from './roster-nodes.js';

/** Why a connection or request was refused: the only values of the `reason` label. */
export const REFUSAL_REASONS = [
  'unknown_ca', // peer certificate not issued by a CA of the bundle (tls.ca), also an open link whose CA a reload removed
  'bad_certificate', // no client certificate, expired, not yet valid, or otherwise unusable
  'wrong_identity', // valid certificate, but not for the gateway the roster expects
  'cert_revoked', // valid certificate, but its serial is in the roster's tls.revoked
  'not_tls', // plaintext, HTTP or garbage on the TLS port
  'tls_timeout', // TLS handshake did not finish in time
  'tls_aborted', // the client left before finishing the TLS handshake (a port scan, a crash)
  'bad_preamble', // link preamble malformed
  'unknown_target', // preamble names a node this gateway does not own
  'target_down', // target node is not registered with this gateway's EPMD
  'node_not_owned', // peer gateway speaks for a node it does not own
  'not_in_roster', // a local connection from a node the roster does not admit
  'operator_not_hidden', // an operator node that did not connect as hidden
  'policy_denied', // the roster's policy does not let these two nodes link (or not as a visible node)
  'bad_handshake', // distribution handshake malformed or out of order
  'handshake_too_large', // a handshake message over the limit
  'handshake_timeout', // distribution handshake did not finish in time
  'frame_too_large', // a distribution frame over the limit
  'dist_denied', // the distribution firewall denied a message on a link whose filter says on_deny: cut
  'dist_malformed', // on a filtered link: a distribution message that does not decode (src/dist/), or frames before the handshake ended
  'bad_record', // on the native data plane: a TLS record or post-handshake message from the peer gateway that RFC 8446 says ends the connection (bad tag, record_overflow, unexpected_message, ...)
  'buffer_limit', // too many bytes held before the link was established
  'limit_reached', // connection limits (total or per peer) reached
  'peer_unreachable', // the peer gateway could not be reached
  'announce_not_owned', // a peer gateway announced a name the roster does not let it own
  'bad_control', // a malformed or out-of-order message on a registry link
  'epmd_bad_request', // malformed, unknown or oversized EPMD request
  'epmd_not_in_roster', // ALIVE2 for a name this gateway does not own
  'epmd_wrong_port', // ALIVE2 with a port other than the roster's
  'epmd_name_taken', // ALIVE2 for a name already registered
  'epmd_timeout', // EPMD request not received in time
  'http_bad_request', // malformed or oversized request on the metrics listener
  'http_timeout', // metrics listener request not received in time
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

export const LINK_DIRECTIONS = ['outbound', 'inbound'] as const;
export type LinkDirection = (typeof LINK_DIRECTIONS)[number];

/** Outcomes of a TLS handshake with a peer gateway; `unreachable` = no TCP connection to handshake on. */
export const TLS_RESULTS = ['ok', 'failed', 'unreachable'] as const;
export type TlsResult = (typeof TLS_RESULTS)[number];

/**
 * prom-client's default metrics include three gauges named `*_total`, which
 * Prometheus reserves for counters (promtool rejects them). Their per-type
 * siblings without the suffix stay, and sum() over them gives the same number.
 */
const MISNAMED_DEFAULT_GAUGES = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** Buckets for TLS handshakes: about 2 ms on loopback, up to the 10 s default handshake timeout. */
const TLS_HANDSHAKE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Group pairs of two rosters at most (one in force, one just replaced), each MAX_POLICY_GROUPS groups and NO_GROUP. */
const MAX_POLICY_PAIRS = 2 * (MAX_POLICY_GROUPS + 1) ** 2;

export const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export class GatewayMetrics {
  readonly registry = new Registry();

  readonly linksOpen: Gauge<'peer' | 'direction'>;
  readonly linksOpened: Counter<'peer' | 'direction'>;
  readonly linksClosed: Counter<'peer' | 'direction'>;
  readonly linksAbandoned: Counter<'peer' | 'direction'>;
  readonly handovers: Counter<'result'>;
  readonly handoversInHandshake: Counter;
  readonly takeovers: Counter<'role' | 'result'>;
  readonly successors: Counter<'result'>;
  readonly takeoverLinks: Counter<'result'>;
  readonly takeoverSeconds: Gauge<'phase'>;
  readonly dataPlane: Gauge<'plane'>;
  readonly buildInfo: Gauge<'version' | 'nodejs'>;
  readonly tlsHandshakes: Counter<'role' | 'result'>;
  readonly tlsResumed: Counter<'role'>;
  readonly tlsHandshakeSeconds: Histogram<'role'>;
  readonly refusals: Counter<'reason'>;
  readonly bytes: Counter<'peer' | 'direction' | 'local_node' | 'remote_node'>;
  readonly frames: Counter<'peer' | 'direction' | 'local_node' | 'remote_node'>;
  readonly ticks: Counter<'peer' | 'direction'>;
  readonly keyUpdates: Counter<'peer' | 'direction'>;
  readonly nativeBuffered: Gauge;
  /** What beamgate_native_buffered_bytes reports at each scrape: set by a gateway running the native plane. */
  nativeBufferedSource: () => number = () => 0;
  readonly epmdRegistrations: Counter<'result'>;
  readonly epmdLookups: Counter<'scope' | 'result'>;
  readonly epmdNodesRegistered: Gauge;
  readonly certExpirySeconds: Gauge<'cert' | 'ca'>;
  readonly peerReachable: Gauge<'peer'>;
  readonly reloads: Counter<'result'>;
  readonly registryNames: Gauge<'peer'>;
  readonly registrySynced: Gauge<'peer'>;
  readonly standIns: Gauge<'peer'>;
  /** Ready TLS connections to each peer (src/mesh/standby.ts), taken by links, replaced when idle too long. */
  readonly standbyReady: Gauge<'peer'>;
  readonly standbyTaken: Counter<'peer' | 'result'>;
  readonly standbyRejected: Counter<'peer'>;
  readonly standbyExpired: Counter<'peer'>;
  readonly standbyOffered: Counter<'peer'>;
  /** Ready connections each peer holds to this gateway, waiting for a link. */
  readonly standbyHeld: Gauge<'peer'>;
  readonly policyDenied: Counter<'from_group' | 'to_group'>;
  /** Messages the distribution firewall kept from a node (src/filter/), by the groups of sender and receiver and the operation. */
  readonly distDenied: Counter<'from_group' | 'to_group' | 'op'>;
  /** Messages the distribution firewall judged, by verdict. */
  readonly distJudged: Counter<'verdict'>;
  /** Open links whose direction to this host's node is filtered. */
  readonly linksFiltered: Gauge;
  readonly filterHeldBytes: Gauge;
  readonly distQuestions: Counter;
  /** Per roster node of this host: registered with this gateway's EPMD now (src/metrics/roster-nodes.ts). */
  readonly rosterNodeRegistered: Gauge<'node'>;

  /** Called before every scrape so per-link counters are exact when read. */
  private readonly beforeScrape: (() => void)[] = [];

  /**
   * `gateway`, when given, labels every sample (one value per process, so it
   * costs no cardinality) so that a mesh's dashboards can say "alpha → beta"
   * without joining on scrape targets.
   */
  constructor(gateway?: string) {
    if (gateway !== undefined) this.registry.setDefaultLabels({ gateway });
    const registers = [this.registry];
    this.buildInfo = new Gauge({ name: 'beamgate_build_info', help: 'Always 1; the beamgate and Node.js versions of this process.', labelNames: ['version', 'nodejs'], registers });
    this.buildInfo.labels(VERSION, process.version).set(1);
    this.linksOpen = new Gauge({ name: 'beamgate_links_open', help: 'Relayed distribution links open now.', labelNames: ['peer', 'direction'], registers });
    this.linksOpened = new Counter({ name: 'beamgate_links_opened_total', help: 'Relayed distribution links established.', labelNames: ['peer', 'direction'], registers });
    this.linksClosed = new Counter({ name: 'beamgate_links_closed_total', help: 'Relayed distribution links closed.', labelNames: ['peer', 'direction'], registers });
    this.linksAbandoned = new Counter({
      name: 'beamgate_links_abandoned_total',
      help: 'Link attempts the dialling side gave up (closed) before the link was up; not refusals.',
      labelNames: ['peer', 'direction'],
      registers,
    });
    this.handovers = new Counter({
      name: 'beamgate_link_handovers_total',
      help: 'Established links handed to the native data plane (native), kept on node:tls when that could not be done (stayed), or lost when the engine refused one the tap had let go (failed).',
      labelNames: ['result'],
      registers,
    });
    this.handoversInHandshake = new Counter({
      name: 'beamgate_link_handovers_in_handshake_total',
      help: 'Of the links handed to the native data plane, those handed over before their distribution handshake was over (the engine walked the rest of it).',
      registers,
    });
    this.takeovers = new Counter({
      name: 'beamgate_handover_runs_total',
      help: 'Take-overs between two processes of this gateway (docs/upgrade.md): as the process handing over (give) or taking over (take); ok, refused (a format or identity the other did not accept), rolled_back (the old process serves on) or failed.',
      labelNames: ['role', 'result'],
      registers,
    });
    this.successors = new Counter({
      name: 'beamgate_handover_successors_total',
      help: 'Successors this gateway started on SIGUSR2 (docs/upgrade.md): started, and exited (it ended before taking over: this gateway serves on).',
      labelNames: ['result'],
      registers,
    });
    this.takeoverLinks = new Counter({
      name: 'beamgate_handover_links_total',
      help: 'Links at a take-over: moved to the new process with their TLS state, or ended because they were not on the native data plane (filtered, or on node:tls).',
      labelNames: ['result'],
      registers,
    });
    this.takeoverSeconds = new Gauge({
      name: 'beamgate_handover_seconds',
      help: "The last take-over into this process: total (the new process's hello to its done) and pause (links parked by the old process until adopted by this one).",
      labelNames: ['phase'],
      registers,
    });
    this.dataPlane = new Gauge({ name: 'beamgate_data_plane_info', help: 'Always 1; the data plane that relays established links (native or node).', labelNames: ['plane'], registers });
    this.nativeBuffered = new Gauge({
      name: 'beamgate_native_buffered_bytes',
      help: 'Bytes the native data plane holds for its links now: output a socket has not taken, records and post-handshake messages split across reads (0 on the node:tls plane).',
      registers,
    });
    const source = () => this.nativeBufferedSource();
    const buffered = this.nativeBuffered;
    this.beforeScrape.push(() => buffered.set(source()));
    this.tlsHandshakes = new Counter({ name: 'beamgate_tls_handshakes_total', help: 'TLS handshakes with peer gateways, by our role and outcome.', labelNames: ['role', 'result'], registers });
    this.tlsResumed = new Counter({
      name: 'beamgate_tls_resumed_total',
      help: 'Successful TLS handshakes with peer gateways that resumed a session (counted in beamgate_tls_handshakes_total too), by our role.',
      labelNames: ['role'],
      registers,
    });
    this.tlsHandshakeSeconds = new Histogram({
      name: 'beamgate_tls_handshake_seconds',
      help: 'Duration of successful TLS handshakes with peer gateways.',
      labelNames: ['role'],
      buckets: TLS_HANDSHAKE_BUCKETS,
      registers,
    });
    this.refusals = new Counter({ name: 'beamgate_refusals_total', help: 'Connections and requests refused, by reason.', labelNames: ['reason'], registers });
    this.bytes = new Counter({
      name: 'beamgate_relayed_bytes_total',
      help: 'Distribution bytes relayed; direction out = local node to peer gateway.',
      labelNames: ['peer', 'direction', 'local_node', 'remote_node'],
      registers,
    });
    this.frames = new Counter({
      name: 'beamgate_relayed_frames_total',
      help: 'Distribution frames relayed after the handshake, ticks excluded.',
      labelNames: ['peer', 'direction', 'local_node', 'remote_node'],
      registers,
    });
    this.ticks = new Counter({ name: 'beamgate_ticks_total', help: 'Distribution keep-alive ticks relayed.', labelNames: ['peer', 'direction'], registers });
    this.keyUpdates = new Counter({
      name: 'beamgate_tls_key_updates_total',
      help: 'TLS 1.3 KeyUpdates on native links: out, sent when a key has sealed its share of records (RFC 8446 §5.5) or the peer asked; in, taken from the peer.',
      labelNames: ['peer', 'direction'],
      registers,
    });
    this.epmdRegistrations = new Counter({ name: 'beamgate_epmd_registrations_total', help: 'EPMD ALIVE2 registrations, by result.', labelNames: ['result'], registers });
    this.epmdLookups = new Counter({ name: 'beamgate_epmd_lookups_total', help: 'EPMD PORT_PLEASE2 and NAMES requests, by scope and result.', labelNames: ['scope', 'result'], registers });
    this.epmdNodesRegistered = new Gauge({ name: 'beamgate_epmd_nodes_registered', help: 'Local nodes registered with this gateway now.', registers });
    // cert="gateway" is this gateway's certificate; cert="ca" one series per CA of the bundle, `ca` its serial (at most MAX_CA_CERTIFICATES).
    this.certExpirySeconds = new Gauge({
      name: 'beamgate_cert_expiry_seconds',
      help: 'Seconds until a certificate in use expires: cert="gateway", or cert="ca" with ca="SERIAL" for each CA of the bundle.',
      labelNames: ['cert', 'ca'],
      registers,
    });
    this.peerReachable = new Gauge({
      name: 'beamgate_peer_reachable',
      help: 'Per roster peer gateway: 1 if the last dial to it (a link or the periodic probe) completed a TLS handshake, else 0.',
      labelNames: ['peer'],
      registers,
    });
    this.registryNames = new Gauge({
      name: 'beamgate_registry_names',
      help: 'Names (roster nodes and listening operators) a peer gateway says are registered with its EPMD now; 0 while its registry is not known.',
      labelNames: ['peer'],
      registers,
    });
    this.registrySynced = new Gauge({
      name: 'beamgate_registry_synced',
      help: "1 while a peer gateway's registry link is up and its snapshot received, else 0 (EPMD answers for its host then come from the roster).",
      labelNames: ['peer'],
      registers,
    });
    this.standIns = new Gauge({ name: 'beamgate_stand_ins', help: 'Stand-in listeners for a peer gateway\'s nodes open now.', labelNames: ['peer'], registers });
    this.standbyReady = new Gauge({
      name: 'beamgate_standby_ready',
      help: 'TLS connections to a peer gateway dialled, verified and ready for the next links (limits.standbyPerPeer).',
      labelNames: ['peer'],
      registers,
    });
    this.standbyTaken = new Counter({
      name: 'beamgate_standby_taken_total',
      help: 'Outbound links that started on a ready TLS connection (hit) or had to dial one (miss).',
      labelNames: ['peer', 'result'],
      registers,
    });
    this.standbyExpired = new Counter({
      name: 'beamgate_standby_expired_total',
      help: 'Ready TLS connections closed and replaced after waiting limits.standbyIdleMs untaken.',
      labelNames: ['peer'],
      registers,
    });
    this.standbyRejected = new Counter({
      name: 'beamgate_standby_rejected_total',
      help: 'Ready TLS connections the peer gateway closed within STANDBY_CONFIRM_MS of their handshake (most often: it refused this gateway\'s certificate), each followed by a back-off.',
      labelNames: ['peer'],
      registers,
    });
    this.standbyOffered = new Counter({
      name: 'beamgate_standby_offered_total',
      help: 'Verified TLS connections a link dialled and did not use (its node gave up first, as the loser of crossing dials does), kept as ready ones.',
      labelNames: ['peer'],
      registers,
    });
    this.standbyHeld = new Gauge({
      name: 'beamgate_standby_held',
      help: 'Ready TLS connections a peer gateway holds to this one, waiting for a link preamble.',
      labelNames: ['peer'],
      registers,
    });
    this.reloads = new Counter({ name: 'beamgate_reloads_total', help: 'Configuration and certificate reloads, by result.', labelNames: ['result'], registers });
    this.policyDenied = new Counter({
      name: 'beamgate_policy_denied_total',
      help: "Dials refused by the roster's policy, by the groups of the dialling node and of the node it dialled.",
      labelNames: ['from_group', 'to_group'],
      registers,
    });
    this.distDenied = new Counter({
      name: 'beamgate_dist_denied_total',
      help: "Distribution messages the firewall kept from this host's nodes, by the group of the sending node, of the receiving node, and the operation.",
      labelNames: ['from_group', 'to_group', 'op'],
      registers,
    });
    this.distJudged = new Counter({
      name: 'beamgate_dist_judged_total',
      help: 'Distribution messages the firewall judged on filtered links, by verdict (passed, denied).',
      labelNames: ['verdict'],
      registers,
    });
    for (const v of ['passed', 'denied']) this.distJudged.labels(v).inc(0);
    this.distQuestions = new Counter({
      name: 'beamgate_dist_questions_total',
      help: "Messages on filtered links of the native data plane that its judge (native/judge.c) did not let through itself and asked the gateway's judge about (every denial among them); the rest of beamgate_dist_judged_total was passed on the relay thread.",
      registers,
    });
    this.filterHeldBytes = new Gauge({
      name: 'beamgate_filter_held_bytes',
      help: 'Bytes the filtered links hold together for messages not yet judged (fragments waiting for their last one); FILTER_MAX_HELD_BYTES bounds it.',
      registers,
    });
    this.linksFiltered = new Gauge({ name: 'beamgate_links_filtered', help: "Open links whose direction to this host's node the firewall filters.", registers });
    this.rosterNodeRegistered = rosterNodeGauge(this.registry);
    // Series that exist from the first scrape, so rate() and increase() see the first event.
    for (const reason of REFUSAL_REASONS) this.refusals.labels(reason).inc(0);
    for (const result of TLS_RESULTS) this.tlsHandshakes.labels('client', result).inc(0);
    // A server only sees peers that reached it.
    for (const result of ['ok', 'failed'] as const) this.tlsHandshakes.labels('server', result).inc(0);
    for (const role of ['client', 'server'] as const) this.tlsResumed.labels(role).inc(0);
    this.epmdRegistrations.labels('ok').inc(0);
    for (const result of ['native', 'stayed', 'failed'] as const) this.handovers.labels(result).inc(0);
    for (const role of ['give', 'take'] as const) for (const result of ['ok', 'refused', 'rolled_back', 'failed'] as const) this.takeovers.labels(role, result).inc(0);
    for (const result of ['moved', 'ended'] as const) this.takeoverLinks.labels(result).inc(0);
    for (const result of ['started', 'exited'] as const) this.successors.labels(result).inc(0);
    for (const result of ['ok', 'failed'] as const) this.reloads.labels(result).inc(0);
    for (const scope of ['local', 'remote'] as const) for (const result of ['found', 'not_found', 'names'] as const) this.epmdLookups.labels(scope, result).inc(0);
    collectDefaultMetrics({ register: this.registry });
    for (const name of MISNAMED_DEFAULT_GAUGES) this.registry.removeSingleMetric(name);
  }

  /**
   * Creates every per-peer link series at 0 for these roster peers, so that a
   * missing series means a renamed metric and rate() sees the first event.
   * A reload calls it again for peers it adds; series of removed peers stay.
   */
  addPeers(peers: Iterable<string>): void {
    for (const peer of peers) {
      for (const direction of LINK_DIRECTIONS) {
        this.linksOpen.labels(peer, direction).inc(0);
        this.linksOpened.labels(peer, direction).inc(0);
        this.linksClosed.labels(peer, direction).inc(0);
        this.linksAbandoned.labels(peer, direction).inc(0);
      }
      this.standbyReady.labels(peer).inc(0);
      this.standbyHeld.labels(peer).inc(0);
      this.standbyExpired.labels(peer).inc(0);
      this.standbyOffered.labels(peer).inc(0);
      this.standbyRejected.labels(peer).inc(0);
      for (const result of ['hit', 'miss'] as const) this.standbyTaken.labels(peer, result).inc(0);
    }
  }

  /** Publishes the last dial's outcome for exactly the roster's peers (a reload may remove some). */
  setPeerReachability(peers: Iterable<string>, reachable: ReadonlySet<string>): void {
    this.peerReachable.reset();
    for (const peer of peers) this.peerReachable.labels(peer).set(reachable.has(peer) ? 1 : 0);
  }

  /** Per-peer series exist for exactly the roster's peers, from the first scrape (0 until known). */
  setRegistryPeers(peers: readonly string[], names: (peer: string) => number | undefined, standIns: (peer: string) => number): void {
    this.registryNames.reset();
    this.registrySynced.reset();
    this.standIns.reset();
    for (const peer of peers) {
      const n = names(peer);
      this.registryNames.labels(peer).set(n ?? 0);
      this.registrySynced.labels(peer).set(n === undefined ? 0 : 1);
      this.standIns.labels(peer).set(standIns(peer));
    }
  }

  onScrape(fn: () => void): void {
    this.beforeScrape.push(fn);
  }

  async text(): Promise<string> {
    for (const fn of this.beforeScrape) fn();
    return this.registry.metrics();
  }

  /**
   * Makes the policy-denied series exactly the group pairs of `groups` (a
   * reload may add or remove groups), counts kept: every pair exists from the
   * first scrape, and no series outlives its group.
   */
  setPolicyGroups(groups: readonly string[]): void {
    const wanted = new Set(groups);
    for (const [from, to] of this.policyPairs.values()) {
      if (!wanted.has(from) || !wanted.has(to)) this.policyDenied.remove(from, to);
    }
    this.policyPairs.clear();
    for (const from of groups) {
      for (const to of groups) {
        this.policyDenied.labels(from, to).inc(0);
        this.policyPairs.set(`${from}\u0000${to}`, [from, to]);
      }
    }
  }

  /** The group pairs beamgate_policy_denied_total has series for. */
  private readonly policyPairs = new Map<string, [string, string]>();

  /**
   * Counts a dial the policy refused. A dial decided just before a reload
   * may name a group the new roster dropped: it is counted, and its series
   * goes at the next setPolicyGroups. Labels come only from rosters, so the
   * pairs stay bounded by two rosters' groups.
   */
  policyDeniedDial(from: string, to: string): void {
    const key = `${from}\u0000${to}`;
    if (!this.policyPairs.has(key)) this.policyPairs.set(key, [from, to]);
    assert.ok(this.policyPairs.size <= MAX_POLICY_PAIRS, `policy group pairs unbounded (${this.policyPairs.size})`);
    this.policyDenied.labels(from, to).inc();
  }

  refused(reason: RefusalReason): void {
    this.refusals.labels(reason).inc();
  }
}
