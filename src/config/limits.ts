// Every bound the gateway enforces, with its default. A roster may override any
// of them under `limits:`; nothing else in the code invents a bound of its own.

export interface Limits {
  /** Relayed links open at once, both directions together. */
  maxLinks: number;
  /** Relayed links open at once with one peer gateway. */
  maxLinksPerPeer: number;
  /** TLS connections (handshaking or established) accepted at once on the mesh port. */
  maxTlsConnections: number;
  /** TLS connections from one source address still handshaking (not yet authenticated) at once. */
  maxTlsHandshakesPerSource: number;
  /** A TLS handshake, from TCP accept or connect until both certificates are verified. */
  tlsHandshakeTimeoutMs: number;
  /** The distribution handshake, from the first byte until both sides are in frame mode. */
  distHandshakeTimeoutMs: number;
  /** A link that has sent nothing at all since accept (slowloris guard before the handshake). */
  firstByteTimeoutMs: number;
  /** Largest handshake message (2-byte length prefix) accepted. */
  maxHandshakeMessageBytes: number;
  /** Largest distribution frame (4-byte length prefix) accepted. */
  maxFrameBytes: number;
  /** Bytes held for one link while it is still deciding where to go (preamble + handshake). */
  maxPendingBytes: number;
  /** Bytes queued towards a slow reader before the other side stops reading. */
  writeHighWaterMark: number;
  /** Concurrent connections to the EPMD listeners. */
  maxEpmdConnections: number;
  /** An EPMD request must arrive whole within this time. */
  epmdRequestTimeoutMs: number;
  /** On SIGTERM, how long links may live on before they are closed. */
  drainTimeoutMs: number;
  /** Refusal log lines per message, reason and peer in one window; the rest are counted in one summary line. */
  refusalLogBurst: number;
  /** The window of refusalLogBurst. */
  refusalLogWindowMs: number;
  /** `link open`/`link closed`/`link abandoned` lines per peer gateway in one window; the rest are counted in one summary line. */
  linkLogBurst: number;
  /** The window of linkLogBurst. */
  linkLogWindowMs: number;
  /** After one side of a link has closed, how long the other may take to flush before it is destroyed. */
  linkCloseGraceMs: number;
  /** How often each peer gateway's TLS port is probed (for /readyz and beamgate_peer_reachable). */
  peerProbeIntervalMs: number;
  /** Connections open at once on the metrics listener. */
  metricsMaxConnections: number;
  /** Headers (and lines of them) one metrics request may send. */
  metricsMaxHeaders: number;
  /** A metrics request's headers must arrive within this time. */
  metricsHeadersTimeoutMs: number;
  /** A whole metrics request must arrive within this time. */
  metricsRequestTimeoutMs: number;
  /** A metrics connection that sends nothing for this long is closed (Node's request timeouts only start with a request). */
  metricsIdleTimeoutMs: number;
  /** TLS connections accepted in one second above which V8's young generation stops growing until the churn ends (src/runtime/heap.ts). */
  floodConnectionsPerSecond: number;
  /** How long connections must stay under floodConnectionsPerSecond before the young generation may grow again. */
  floodQuietMs: number;
  /** Names one peer gateway may have registered in our view of it (roster nodes and listening operators). */
  maxRegistryNamesPerPeer: number;
  /** Largest message on a registry link (a snapshot of every name is one message). */
  maxControlMessageBytes: number;
  /** Registry messages one peer may send per second (a burst of as many is allowed); above it the link is cut and resynchronised. */
  maxRegistryMessagesPerSecond: number;
  /** Bytes queued towards a peer on its registry link before the link is cut (it resynchronises on the next). */
  maxControlQueueBytes: number;
  /** How often each side of a registry link says it is alive. */
  registryHeartbeatMs: number;
  /** A registry link that brings nothing for this long is dead: it is closed, and the peer's names are no longer known. */
  registryTimeoutMs: number;
  /** First wait before a lost registry link is dialled again; it doubles up to registryRedialMaxMs. */
  registryRedialMinMs: number;
  registryRedialMaxMs: number;
  /**
   * TLS connections kept ready for the next links to each peer gateway
   * (src/mesh/standby.ts): a link that takes one starts without a TLS
   * handshake. A peer with more pairs of this gateway's roster nodes and its
   * own gets one per pair (each pair's link may be dialled at once when a
   * cluster boots), up to MAX_STANDBY_PER_PEER: standbyPools(). 0 turns them
   * off; at most MAX_STANDBY_PER_PEER.
   */
  standbyPerPeer: number;
  /**
   * Ready connections a gateway keeps to all its peers together: when the
   * peers' shares (standbyPools()) would pass it, the peers that want few get
   * theirs and the others share the rest evenly. Each one costs a TLS
   * handshake when it is made and again every
   * standbyIdleMs while it waits, on both gateways: this bounds that cost,
   * and the handshakes of a cluster's gateways filling their pools at once,
   * whatever the number of hosts. 0 turns them off. Ready connections take
   * at most half of maxTlsConnections, whatever this says (the other half is
   * for links that handshake): a roster that sets this above that half is
   * refused, one that lowers maxTlsConnections alone gets the smaller share.
   */
  standbyTotal: number;
  /** How long a ready connection waits to be taken before it is replaced by a fresh one. */
  standbyIdleMs: number;
  /**
   * How long a TLS session between gateways may be resumed (src/mesh/sessions.ts):
   * the server's ticket lifetime, and how old the full handshake behind a
   * ticket may be for a dial to offer it. 0: dials offer no ticket.
   */
  tlsSessionLifetimeMs: number;
}

/** The most ready connections a roster may ask for per peer, and the most a gateway holds for one peer that dialled them. */
export const MAX_STANDBY_PER_PEER = 32;

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxLinks: 2048,
  maxLinksPerPeer: 1024,
  maxTlsConnections: 4096,
  // A peer gateway opens one TLS connection per link, so a cluster starting
  // at once handshakes many in a row; one source still cannot take the port.
  maxTlsHandshakesPerSource: 512,
  tlsHandshakeTimeoutMs: 10_000,
  distHandshakeTimeoutMs: 15_000,
  firstByteTimeoutMs: 5_000,
  maxHandshakeMessageBytes: 4096,
  // OTP 22+ fragments large messages, but an old peer or a huge term can still
  // send one big frame; the relay streams frames, so this bound costs no memory.
  maxFrameBytes: 256 * 1024 * 1024,
  maxPendingBytes: 64 * 1024,
  writeHighWaterMark: 1024 * 1024,
  maxEpmdConnections: 512,
  epmdRequestTimeoutMs: 5_000,
  drainTimeoutMs: 30_000,
  refusalLogBurst: 20,
  refusalLogWindowMs: 10_000,
  // A node pair opens one link per direction and redials after a cut: 20 lines
  // of a window cover every ordinary start-up and reconnect in full.
  linkLogBurst: 20,
  linkLogWindowMs: 10_000,
  linkCloseGraceMs: 2_000,
  peerProbeIntervalMs: 10_000,
  // The listener is for a few scrapers and probes, never for many clients.
  metricsMaxConnections: 64,
  metricsMaxHeaders: 50,
  metricsHeadersTimeoutMs: 5_000,
  metricsRequestTimeoutMs: 10_000,
  metricsIdleTimeoutMs: 5_000,
  // A cluster starting at once opens its links at a few hundred a second: it
  // is bounded for that second too, which costs it nothing.
  floodConnectionsPerSecond: 20,
  floodQuietMs: 10_000,
  maxRegistryNamesPerPeer: 1024,
  // 1024 entries of at most ~300 bytes of JSON each, with room to spare.
  maxControlMessageBytes: 512 * 1024,
  // A RabbitMQ CLI command is two messages (registered, unregistered); helper
  // nodes are local-only and never announced.
  maxRegistryMessagesPerSecond: 200,
  maxControlQueueBytes: 1024 * 1024,
  registryHeartbeatMs: 5_000,
  registryTimeoutMs: 15_000,
  registryRedialMinMs: 250,
  registryRedialMaxMs: 5_000,
  // A few links set up one after another (a node that reconnects, a remote
  // shell) start on one each before the pool is refilled, 2 s after the
  // last. A cluster booting at once dials a link per node pair in the same
  // seconds, so a peer with more node pairs gets one per pair: twelve hosts
  // of four nodes, 16 per host pair, formed the storm's mesh in 4.9 s with
  // no failed ping; with 8 per peer, 55 pings failed (docs/scale.md).
  standbyPerPeer: 8,
  // 16 for each of up to 16 peers (hosts of four nodes), 13 each for 19 (20
  // hosts of five nodes), 6 for 39. Each costs a TLS connection on both gateways while it
  // waits, and idle, 256 are about four handshakes a second (standbyIdleMs).
  // At 40 hosts with 8 for every peer, the bench's storm could not start its
  // 40th gateway within 15 s while the others dialled their 312 each.
  standbyTotal: 256,
  standbyIdleMs: 60_000,
  // Node's own default. A resumed session is checked against the roster by
  // hand, but its chain was verified when the session was made: this bounds
  // how old that verification may be (a reload makes it moot at once).
  tlsSessionLifetimeMs: 300_000,
});

/**
 * The ready connections a gateway keeps to each peer gateway, from what each
 * wants: standbyPerPeer, or `pairs` when that is more (the pairs of this
 * gateway's roster nodes and the peer's: the links a cluster booting at once
 * dials to that peer in the same seconds), at most MAX_STANDBY_PER_PEER; none
 * at all with standbyPerPeer 0. When they would pass standbyTotal (or
 * half of maxTlsConnections, if that is less) together, the total is shared
 * out max-min fair: a peer that wants less than an even share gets what it
 * wants, and the others split the rest evenly, rounded down. A peer a
 * gateway holds ready connections for is bounded on its side too
 * (MAX_STANDBY_PER_PEER).
 */
export function standbyPools(limits: Pick<Limits, 'standbyPerPeer' | 'standbyTotal' | 'maxTlsConnections'>, pairs: ReadonlyMap<string, number>): Map<string, number> {
  let left = Math.min(limits.standbyTotal, standbyShareOf(limits.maxTlsConnections));
  const want = (n: number) => (limits.standbyPerPeer === 0 ? 0 : Math.min(MAX_STANDBY_PER_PEER, Math.max(limits.standbyPerPeer, n)));
  const wants = [...pairs].map(([peer, n]) => [peer, want(n)] as const).sort((a, b) => a[1] - b[1]);
  const pools = new Map<string, number>();
  // Ascending: once an even share of what is left is below a peer's want, it is below every later one's too.
  let level: number | undefined;
  wants.forEach(([peer, want], i) => {
    level ??= want * (wants.length - i) <= left ? undefined : Math.floor(left / (wants.length - i));
    const share = level ?? want;
    pools.set(peer, share);
    left -= share;
  });
  return pools;
}

/** The most of `maxTlsConnections` that ready connections may take: half, so links that handshake always have the rest. */
export function standbyShareOf(maxTlsConnections: number): number {
  return Math.floor(maxTlsConnections / 2);
}

/**
 * How much longer than its own standbyIdleMs a gateway holds a ready
 * connection a peer dialled before closing it: the dialling side replaces
 * its connections after standbyIdleMs, so a held one outliving this is one
 * the peer forgot.
 */
export const STANDBY_HOLD_SLACK_MS = 15_000;
/**
 * A taken ready connection is replaced only once links have stopped taking
 * them for this long (or STANDBY_REFILL_MAX_DEFER_MS after the first take of
 * a burst): the handshakes of the refill would otherwise compete for the CPU
 * with the very burst of link set-ups they are meant to spare.
 */
export const STANDBY_REFILL_QUIET_MS = 2_000;
export const STANDBY_REFILL_MAX_DEFER_MS = 10_000;
/** After a failed dial for a ready connection, the wait before the next; it doubles up to STANDBY_RETRY_MAX_MS. */
export const STANDBY_RETRY_MIN_MS = 1_000;
export const STANDBY_RETRY_MAX_MS = 30_000;
/**
 * A ready connection the peer closes within this long of its handshake
 * counts as a failed dial (and backs off as one). In TLS 1.3 the client's
 * handshake is over before the server has judged the client's certificate,
 * so a peer that refuses us (a revoked certificate, a roster without us)
 * does so by closing a connection we already took for good; redialling at
 * once would be a handshake loop against it. One that lives longer has
 * proved itself, and the back-off starts over.
 */
export const STANDBY_CONFIRM_MS = 2_000;

/**
 * The longest any `...Ms` limit may be: Node's timers fire at once for
 * anything longer (2^31 - 1 ms), and the native engine's close grace is
 * bounded by the same rule.
 */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** The shortest peerProbeIntervalMs a roster may set. */
export const MIN_PEER_PROBE_INTERVAL_MS = 1_000;

export const LIMIT_KEYS = Object.keys(DEFAULT_LIMITS) as (keyof Limits)[];

/**
 * The native data plane (src/fastpath/): the most one read takes from a
 * socket (the relay thread's two scratch buffers are this large, once per
 * process; a link holds buffers only while a write is short or a record is
 * split across reads).
 */
export const NATIVE_READ_BYTES = 256 * 1024;
/**
 * The native data plane sends a KeyUpdate (RFC 8446 §4.6.3) once a key has
 * sealed this many records: §5.5 allows AES-GCM about 2^24.5 full records
 * under one key. The peer follows it (node:tls does too); nothing is cut.
 */
export const NATIVE_REKEY_RECORDS = 2 ** 24;
/**
 * The largest post-handshake message (a NewSessionTicket) the native data
 * plane takes from a peer: node:tls sends tickets of a few hundred bytes, and
 * a message split across records is held until whole, so this bounds what a
 * peer can make a link hold.
 */
export const NATIVE_MAX_HANDSHAKE_MESSAGE_BYTES = 16 * 1024;
/**
 * Peer certificates whose issuer a gateway remembers per CA bundle in force
 * (src/mesh/readmit.ts): a peer's own, two during a certificate or CA
 * rollover, so a roster of 256 gateways fits with room; past it, a
 * certificate is verified on each link set-up instead.
 */
export const READMIT_CHAIN_CACHE_ENTRIES = 1024;
/** The longest tlsSessionLifetimeMs a roster may set: a day (TLS 1.3 allows tickets up to seven). */
export const MAX_TLS_SESSION_LIFETIME_MS = 86_400_000;
/** How long a link may take to go quiet (every write of node:tls and to the node done) for its hand-over; it stays on node:tls otherwise. */
export const HANDOVER_TIMEOUT_MS = 2_000;

// The distribution decoder (src/dist/): bounds on what one direction of one
// link may make it hold or walk. They are constants, not roster limits: the
// firewall's rules (issue 18) will decide which of them a roster may tighten.

/**
 * Nesting of one term (tuples, lists, maps, funs' free variables). The
 * validator keeps one number per open level on an explicit stack, so depth
 * costs no call stack; the bound is generous because real messages nest deeply
 * (an iolist built by appending in a loop is one level per step).
 */
export const DIST_MAX_TERM_DEPTH = 10_000;
/**
 * Materialising a term recurses (validating does not): past this depth,
 * whatever a caller's bounds say, sub-terms are validated and elided, so the
 * call stack stays far from V8's limit (about 2,000 of the decoder's frames
 * under vitest). The decoder's own bounds (control, payload heads) are far
 * below it.
 */
export const DIST_MAX_MATERIALISED_DEPTH = 256;
/**
 * Terms (every integer, atom, element...) walked in one message, control and
 * payload together. Every term takes at least one byte, so DIST_MAX_MESSAGE_BYTES
 * already bounds the work; this caps it below that for messages of tiny terms.
 */
export const DIST_MAX_TERMS = 128 * 1024 * 1024;
/**
 * The largest message (control and payload, after reassembly of its
 * fragments): as large as the largest frame the relay takes (maxFrameBytes),
 * so a message does not stop being acceptable because OTP fragmented it.
 * Issue 18 asks for 100 MB messages through a filtered link.
 */
export const DIST_MAX_MESSAGE_BYTES = 256 * 1024 * 1024;
/**
 * Fragmented messages in flight at once in one direction. OTP sends one
 * message's fragments back to back unless other processes' signals interleave;
 * each sending process has at most one message in flight, so more than this
 * many at once means a peer that starts sequences and never ends them.
 */
export const DIST_MAX_FRAGMENT_SEQUENCES = 256;
/** Bytes held for unfinished fragmented messages in one direction, all sequences together. */
export const DIST_MAX_FRAGMENT_BYTES = 256 * 1024 * 1024;
/**
 * Bytes every filtered link of a gateway may hold together for messages not
 * yet judged (src/filter/hold-budget.ts): raw fragments kept to be forwarded,
 * the decoder's copy of them, and frames being gathered. One direction at
 * its own bound holds about twice DIST_MAX_FRAGMENT_BYTES, so this lets one
 * link reach its bound with room for the others; a peer starting huge
 * messages on many links is cut here instead of taking the host's memory.
 * Links judged in TypeScript (on node:tls) and those on the native data
 * plane (native/gate.c, held in the engine) each have this bound.
 */
export const FILTER_MAX_HELD_BYTES = 1024 * 1024 * 1024;
/**
 * Fragments one message may declare. OTP cuts at 64 KB (ERTS_DIST_FRAGMENT_SIZE
 * in dist.h), so DIST_MAX_MESSAGE_BYTES needs 4,096; the slack is for senders
 * that cut smaller.
 */
export const DIST_MAX_FRAGMENTS_PER_MESSAGE = 1024 * 1024;
/**
 * A compressed term (tag 80) is inflated only up to this size. OTP never
 * compresses on a distribution link (only term_to_binary/2 with `compressed`
 * does), so the dist decoder refuses tag 80 and only the stand-alone decoder
 * inflates, bounded by this.
 */
export const DIST_MAX_INFLATED_BYTES = 64 * 1024 * 1024;
/**
 * How much of a control message is materialised: nesting, elements of one
 * tuple/list/map, bytes of one binary, string or big integer. The fields a
 * rule reads (operation, pids, names, references, the spawn MFA) are at depth
 * 1 or 2; anything past these bounds (a deep exit reason) is validated and
 * replaced by an `elided` marker.
 */
export const DIST_CONTROL_DEPTH = 16;
export const DIST_CONTROL_ELEMENTS = 64;
export const DIST_CONTROL_BYTES = 4096;
/**
 * How much of a payload is materialised for the rules (the rest is validated,
 * not kept): `{'$gen_call', From, {call, M, F, A, GL}}`, `{system, From, Msg}`,
 * `{io_request, From, ReplyAs, Request}` and erpc's `[Ref, M, F, Args]` all
 * show what a rule needs within depth 4 and 8 elements.
 */
export const DIST_PAYLOAD_HEAD_DEPTH = 4;
export const DIST_PAYLOAD_HEAD_ELEMENTS = 8;
export const DIST_PAYLOAD_HEAD_BYTES = 256;
/** Slots in one direction's atom cache: 8 segments of 256 (ERTS_ATOM_CACHE_SIZE, the protocol's 11-bit index). */
export const DIST_ATOM_CACHE_SLOTS = 2048;

// A take-over (src/takeover/): the running gateway hands its listeners, its
// nodes' EPMD registrations and its native links to the process replacing it.

/** From the new process's hello to its done: past this, the old process takes everything back (before commit) or the new one gives up. */
export const TAKEOVER_TIMEOUT_MS = 30_000;
/** One message on the take-over socket (a batch of links with their buffered bytes, base64). */
export const TAKEOVER_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** Every message of one take-over together: what the new process may be made to hold. */
export const TAKEOVER_MAX_BYTES = 1024 * 1024 * 1024;
/** Links in one message (two descriptors each: passfd's PASSFD_MAX_FDS is 250), and their JSON bytes before the batch is cut. */
export const TAKEOVER_LINKS_PER_MESSAGE = 100;
export const TAKEOVER_BATCH_BYTES = 16 * 1024 * 1024;
/** Listeners or registrations in one message (one descriptor each). */
export const TAKEOVER_FDS_PER_MESSAGE = 200;
/** How long the old process waits for its links' hand-overs to node:tls→native already under way before it parks what it has. */
export const TAKEOVER_SETTLE_MS = 2_000;
