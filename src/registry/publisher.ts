// Our side of the registry: for each peer gateway, one registry link that we
// dial and on which we announce the names registered with our EPMD (roster
// nodes and operators; local-only names never leave the host). A link starts
// with a snapshot and then carries each change; a lost link is dialled again
// after a back-off (registryRedialMinMs doubling to registryRedialMaxMs), or
// at once when there is evidence the peer is back.

import type tls from 'node:tls';
import { type GatewaySpec, revokedSerial, type Roster } from '../config/roster.js';
import type { Logger } from '../log/logger.js';
import { encodePreamble } from '../mesh/preamble.js';
import type { RefusalReason } from '../metrics/metrics.js';
import { RegistryLink } from './link.js';
import { REGISTRY_PROTOCOL_VERSION, type RegistryEntry, type RegistryMessage } from './protocol.js';

export interface PublisherDeps {
  roster(): Roster;
  logger: Logger;
  /** Dials a peer over mutually authenticated TLS (the same dial links use). */
  dial(peer: GatewaySpec): Promise<tls.TLSSocket>;
  /** What is registered with our EPMD now and may be announced. */
  entries(): RegistryEntry[];
  refuse(reason: RefusalReason, message: string, fields: Record<string, string | number | undefined>): void;
}

export class Publisher {
  private link: RegistryLink | undefined;
  private dialling = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private backoffMs: number;

  constructor(
    private readonly peer: string,
    private readonly deps: PublisherDeps,
  ) {
    this.backoffMs = deps.roster().limits.registryRedialMinMs;
  }

  start(): void {
    this.connect();
  }

  /** Sends one change, if the link is up (a link that opens later starts with a snapshot that has it). */
  announce(m: Extract<RegistryMessage, { t: 'add' | 'remove' }>): void {
    this.link?.send(m);
  }

  /** Sends a fresh snapshot (after a reload changed what may be announced); a link to a peer whose certificate is now revoked is cut instead. */
  resnapshot(): void {
    const revoked = this.link && revokedSerial(this.deps.roster(), this.link.peerSerial);
    if (revoked) this.link?.refuse({ reason: 'cert_revoked', message: `certificate of ${this.peer} (serial ${revoked}) is now revoked` });
    else this.link?.send(this.snapshot());
  }

  /** Evidence that the peer is up (a dial to it worked, or it dialled us): a waiting redial goes now. */
  kick(): void {
    if (this.stopped || this.link || this.dialling) return;
    clearTimeout(this.timer);
    this.connect();
  }

  get connected(): boolean {
    return this.link?.isOpen ?? false;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.link?.close('gateway stopping');
  }

  private snapshot(): RegistryMessage {
    return { t: 'snapshot', v: REGISTRY_PROTOCOL_VERSION, names: this.deps.entries() };
  }

  private connect(): void {
    const gw = this.deps.roster().gateways.get(this.peer);
    if (this.stopped || !gw) return;
    this.dialling = true;
    this.deps.dial(gw).then(
      (sock) => {
        this.dialling = false;
        if (this.stopped) {
          sock.destroy();
          return;
        }
        sock.write(encodePreamble({ kind: 'registry' }));
        const openedAt = Date.now();
        this.link = new RegistryLink(
          sock,
          this.deps.roster().limits,
          (m) => {
            // The peer says it is alive, or asks for a snapshot; it announces its own names on its own link.
            if (m.t === 'resync') this.link?.send(this.snapshot());
            else if (m.t !== 'alive') this.link?.close(`peer sent ${m.t} on our registry link`);
          },
          (end) => {
            this.link = undefined;
            // Only a link that lived a while earns a quick redial: one cut at once would otherwise redial in a tight loop.
            const { registryHeartbeatMs, registryRedialMinMs } = this.deps.roster().limits;
            if (Date.now() - openedAt >= registryHeartbeatMs) this.backoffMs = registryRedialMinMs;
            if ('refusal' in end) this.deps.refuse(end.refusal.reason, `registry link to ${this.peer}: ${end.refusal.message}`, { peer: this.peer });
            else this.deps.logger.debug('registry link to peer closed', { peer: this.peer, detail: end.detail });
            this.retry();
          },
        );
        this.link.send(this.snapshot());
        this.deps.logger.debug('registry link to peer open', { peer: this.peer });
      },
      () => {
        // dialPeer already recorded the outcome (peer reachability); try again later.
        this.dialling = false;
        this.retry();
      },
    );
  }

  private retry(): void {
    if (this.stopped) return;
    const { registryRedialMaxMs } = this.deps.roster().limits;
    const wait = this.backoffMs;
    this.backoffMs = Math.min(registryRedialMaxMs, this.backoffMs * 2);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), wait);
    this.timer.unref();
  }
}
