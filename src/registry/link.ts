// One registry link as either end sees it: a TLS socket carrying registry
// messages. It frames and checks what arrives, sends heartbeats, and closes
// the link when the peer goes quiet for registryTimeoutMs, sends faster than
// maxRegistryMessagesPerSecond, or lets maxControlQueueBytes pile up unread.
// The two ends (publisher.ts, view.ts) give it meaning.

import assert from 'node:assert/strict';
import type tls from 'node:tls';
import type { Limits } from '../config/limits.js';
import { verifiedPeerCertificate } from '../mesh/sessions.js';
import { encodeRegistryMessage, type RegistryMessage, RegistryProtocolError, RegistryReader } from './protocol.js';

/** Why a link ended: a refusal (counted and logged by the owner) or a plain close. */
export type LinkEnd = { refusal: { reason: RegistryProtocolError['reason'] | 'cert_revoked'; message: string } } | { detail: string };

export class RegistryLink {
  /** The serial of the peer's certificate: a reload may revoke it. */
  readonly peerSerial: string;
  private readonly reader: RegistryReader;
  private heartbeat: NodeJS.Timeout | undefined;
  private idle: NodeJS.Timeout | undefined;
  private ended = false;
  /** Token bucket of messages the peer may still send now. */
  private tokens: number;
  private refilledAt = Date.now();

  constructor(
    private readonly sock: tls.TLSSocket,
    private readonly limits: Limits,
    private readonly onMessage: (m: RegistryMessage) => void,
    private readonly onEnd: (end: LinkEnd) => void,
  ) {
    // On a connection we dialled and resumed, node:tls has no certificate to give: the one it was verified with.
    this.peerSerial = verifiedPeerCertificate(sock)?.serialNumber ?? '';
    this.reader = new RegistryReader(limits.maxControlMessageBytes);
    this.tokens = limits.maxRegistryMessagesPerSecond;
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => this.receive(chunk));
    sock.on('end', () => this.end({ detail: 'peer closed the registry link' }));
    sock.on('error', (err) => this.end({ detail: `registry link error: ${err.message}` }));
    sock.on('close', () => this.end({ detail: 'registry link closed' }));
    this.heartbeat = setInterval(() => this.send({ t: 'alive' }), limits.registryHeartbeatMs);
    this.heartbeat.unref();
    this.touch();
  }

  /** Bytes already read (after the preamble) are handed in here. */
  receive(chunk: Buffer): void {
    if (this.ended) return;
    this.touch();
    let messages: RegistryMessage[];
    try {
      messages = this.reader.push(chunk);
    } catch (err) {
      if (err instanceof RegistryProtocolError) return this.end({ refusal: err });
      throw err;
    }
    for (const m of messages) {
      if (this.ended) return;
      if (!this.take()) {
        return this.end({ refusal: new RegistryProtocolError('limit_reached', `more than ${this.limits.maxRegistryMessagesPerSecond} registry messages per second`) });
      }
      this.onMessage(m);
    }
  }

  send(m: RegistryMessage): void {
    if (this.ended) return;
    this.sock.write(encodeRegistryMessage(m));
    // A peer that stops reading must not make us hold its changes without bound:
    // cut, and the next link starts again from a snapshot.
    if (this.sock.writableLength > this.limits.maxControlQueueBytes) {
      this.end({ detail: `peer is not reading its registry link (${this.sock.writableLength} bytes queued)` });
    }
  }

  /** Closes the link from our side (replaced, reload, shutdown); the owner is told like any other end. */
  close(detail: string): void {
    this.end({ detail });
  }

  /** Closes the link as a refusal (a reload revoked the peer's certificate): the owner counts and logs it. */
  refuse(refusal: RegistryProtocolError | { reason: 'cert_revoked'; message: string }): void {
    this.end({ refusal });
  }

  get isOpen(): boolean {
    return !this.ended;
  }

  private take(): boolean {
    const now = Date.now();
    const rate = this.limits.maxRegistryMessagesPerSecond;
    this.tokens = Math.min(rate, this.tokens + ((now - this.refilledAt) * rate) / 1000);
    this.refilledAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private touch(): void {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => this.end({ detail: `nothing on the registry link for ${this.limits.registryTimeoutMs} ms` }), this.limits.registryTimeoutMs);
    this.idle.unref();
  }

  private end(end: LinkEnd): void {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.idle);
    this.sock.destroy();
    assert.ok(this.reader.bufferedBytes <= this.limits.maxControlMessageBytes + 4, 'registry reader held more than one message');
    this.onEnd(end);
  }
}
