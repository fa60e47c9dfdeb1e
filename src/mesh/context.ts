import type tls from 'node:tls';
import type { GatewaySpec, Roster } from '../config/roster.js';
import type { LinkLog } from '../log/link-log.js';
import type { CaCertificate } from '../pki/ca-bundle.js';
import type { Logger } from '../log/logger.js';
import type { RefusalLog } from '../log/refusal-log.js';
import type { GatewayMetrics, LinkDirection, RefusalReason } from '../metrics/metrics.js';
import type { LinkTable } from './link-table.js';
import type { NativeEngine } from '../fastpath/native.js';
import type { SessionCache } from './sessions.js';
import type { HoldBudget } from '../filter/hold-budget.js';

/** What is in force now; a reload swaps it whole, links already open keep theirs. */
export interface ActiveConfig {
  roster: Roster;
  self: GatewaySpec;
  secureContext: tls.SecureContext;
  /** The CAs of the bundle in force: what an open link's peer certificate must still chain to. */
  cas: readonly CaCertificate[];
}

/** What the mesh side of a gateway needs; one object shared by inbound and outbound. */
/** How a dial to a peer gateway ended (MeshContext.dialStarted). */
export type DialOutcome = { ok: true } | { ok: false; detail: string; slow?: boolean };

export interface MeshContext {
  active(): ActiveConfig;
  /** The native data plane, when this gateway runs it (src/fastpath/). */
  engine: NativeEngine | undefined;
  metrics: GatewayMetrics;
  /** The session ticket of each peer gateway, offered on the next dial (sessions.ts). */
  sessions: SessionCache;
  /** What every filtered link holds together (src/filter/hold-budget.ts). */
  filterHolds: HoldBudget;
  logger: Logger;
  table: LinkTable;
  /** `link open` and `link closed` lines, under the per-peer link log budget. */
  linkLog: LinkLog;
  /** Refusal lines of established links, under the refusal log budget. */
  refusalLog: RefusalLog;
  /** The port a local node registered with EPMD, or undefined when it is not up. */
  registeredPort(shortName: string): number | undefined;
  /**
   * Called when a dial to a peer gateway starts; the returned function takes
   * its outcome. Every dial, probe or link, is evidence of the peer's
   * reachability, so /readyz and beamgate_peer_reachable follow real traffic
   * and not only the periodic probe. `slow`: the TLS handshake ran out of
   * time over a connected TCP socket (the peer is slow or hung, not gone),
   * which does not close the peer's ready connections.
   */
  dialStarted(peer: string): (outcome: DialOutcome) => void;
  /** Counts and logs (within the link log budget) a link attempt its dialling side gave up before it was up. */
  abandoned(peer: string, direction: LinkDirection, fields: Record<string, string | number | undefined>): void;
  /** A peer dialled a registry link (preamble `R`); `head` is what followed the preamble. */
  registryLink(peer: string, sock: tls.TLSSocket, head: Buffer): void;
  /** A ready TLS connection to `peer` for a link (src/mesh/standby.ts), or undefined: then the link dials its own. */
  takeStandby(peer: string): tls.TLSSocket | undefined;
  /** A verified connection to `peer` whose link was given up before it started: kept ready if the pool has room (true). */
  offerStandby(peer: string, sock: tls.TLSSocket): boolean;
  /** A peer's ready connection held here now waits for a link (+1; false: over the bound) or no longer does (-1). */
  standbyHeld(peer: string, delta: 1 | -1, sock: tls.TLSSocket): boolean;
  /** Counts and logs a refusal that happened before a Link existed. */
  refuse(reason: RefusalReason, message: string, fields: Record<string, string | number | undefined>): void;
}
