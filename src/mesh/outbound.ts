// A local node dials a remote node: it resolved the remote host to that
// gateway's loopback alias, got the remote node's static port from our EPMD,
// and connected to our listener at (alias, port). We learn the source from its
// send_name, open TLS to the owning gateway, and hand both sockets to a Link.

import net from 'node:net';
import tls from 'node:tls';
import type { GatewaySpec } from '../config/roster.js';
import { DFLAG_PUBLISHED, type HandshakeMessage } from '../framing/handshake.js';
import { policyRefusal } from './authorize.js';
import { DistStream } from '../framing/stream.js';
import type { MeshContext } from './context.js';
import { Link } from './link.js';
import { linkDepsOf } from './link-deps.js';
import { encodePreamble } from './preamble.js';
import { Refusal, toRefusal } from './refusal.js';
import { readmit } from './readmit.js';
import { admitSource, checkOperatorHidden } from './source.js';
import { classifyTlsError, clientOptions } from './tls.js';
import { checkResumedPeer, setVerifiedPeer, type Ticket, verifiedPeerCertificate } from './sessions.js';
import { TlsTap } from '../fastpath/tap.js';
import { bindTap } from '../fastpath/handover.js';

/**
 * Dials a peer gateway over mutually authenticated TLS; resolves once the
 * peer is verified. A link's connection (`forLink`) runs over a tap when the
 * native data plane is on, so it can be handed over once framed.
 */
export function dialPeer(ctx: MeshContext, peer: GatewaySpec, forLink = false): Promise<tls.TLSSocket> {
  const { roster, secureContext } = ctx.active();
  const started = process.hrtime.bigint();
  const timeoutMs = roster.limits.tlsHandshakeTimeoutMs;
  const outcome = ctx.dialStarted(peer.name);
  return new Promise((resolve, reject) => {
    // A ticket from this peer, if one is young: a PSK handshake, checked by hand once up (sessions.ts).
    const offered = ctx.sessions.offer(peer.name, roster.limits.tlsSessionLifetimeMs);
    const options = { ...clientOptions(secureContext, peer.name, () => ctx.active().roster), session: offered?.session };
    let tap: TlsTap | undefined;
    let sock: tls.TLSSocket;
    if (ctx.engine && forLink) {
      const raw = net.connect({ host: peer.address.host, port: peer.address.port });
      raw.setNoDelay(true);
      tap = new TlsTap(raw, 'client');
      sock = tls.connect({ socket: tap, ...options });
      bindTap(sock, tap);
      sock.on('keylog', (line: Buffer) => tap!.keylog(line));
    } else {
      sock = tls.connect({ host: peer.address.host, port: peer.address.port, ...options });
    }
    // From the first byte: the preamble and the node's first handshake
    // message follow each other, and Nagle would hold the second back.
    sock.setNoDelay(true);
    // A TCP connect still pending at the deadline (a partition, a host gone
    // silent) means the peer is unreachable, not that TLS failed with it.
    const timeout = () =>
      (tap ? tap.raw.connecting : sock.connecting)
        ? Object.assign(new Error(`TCP connect to ${peer.name} timed out`), { code: 'ETIMEDOUT' })
        : Object.assign(new Error(`TLS handshake with ${peer.name} timed out`), { code: 'ERR_TLS_HANDSHAKE_TIMEOUT' });
    const timer = setTimeout(() => sock.destroy(timeout()), timeoutMs);
    const onError = (err: Error & { code?: string }) => {
      clearTimeout(timer);
      const reason = classifyTlsError(err);
      ctx.metrics.tlsHandshakes.labels('client', reason === 'peer_unreachable' ? 'unreachable' : 'failed').inc();
      outcome({ ok: false, detail: err.message, slow: reason === 'tls_timeout' });
      reject(new Refusal(reason, `TLS to ${peer.name} (${peer.address.host}:${peer.address.port}) failed: ${err.message}`));
    };
    sock.once('error', onError);
    // Tickets come after the handshake; only a verified connection's are kept, with what was verified.
    let verified: Omit<Ticket, 'session'> | undefined;
    sock.on('session', (session: Buffer) => {
      if (verified) ctx.sessions.remember(peer.name, { session, ...verified });
    });
    sock.once('secureConnect', () => {
      clearTimeout(timer);
      sock.off('error', onError);
      const resumed = sock.isSessionReused();
      if (resumed) {
        const checked = checkResumedPeer(offered?.cert, ctx.active().roster, { gateway: peer.name });
        if ('reason' in checked) {
          ctx.sessions.forget(peer.name);
          ctx.metrics.tlsHandshakes.labels('client', 'failed').inc();
          outcome({ ok: false, detail: checked.message });
          sock.destroy();
          reject(new Refusal(checked.reason, `TLS to ${peer.name} (${peer.address.host}:${peer.address.port}) failed: ${checked.message}`));
          return;
        }
        ctx.metrics.tlsResumed.labels('client').inc();
      }
      verified = resumed && offered ? { cert: offered.cert, verifiedAt: offered.verifiedAt } : { cert: sock.getPeerX509Certificate()!, verifiedAt: Date.now() };
      setVerifiedPeer(sock, verified.cert);
      tap?.setSuite(sock.getCipher()?.standardName);
      ctx.metrics.tlsHandshakes.labels('client', 'ok').inc();
      ctx.metrics.tlsHandshakeSeconds.labels('client').observe(Number(process.hrtime.bigint() - started) / 1e9);
      outcome({ ok: true });
      resolve(sock);
    });
  });
}

/** The remote node a stand-in stands for: its full name, and its bounded metrics label (a node name or operator pattern). */
export interface OutboundTarget {
  name: string;
  label: string;
  /** An operator dialled back: it must answer as a hidden node. */
  operator: boolean;
}

/** Handles one connection from a local node to the stand-in listener of `target`. */
export function handleOutbound(ctx: MeshContext, peer: GatewaySpec, target: OutboundTarget, local: net.Socket): void {
  const { roster, self } = ctx.active();
  const limits = roster.limits;
  const fields = { peer: peer.name, remote_node: target.name, direction: 'outbound', from: `${local.remoteAddress}:${local.remotePort}` };
  if (!ctx.table.reserve(peer.name)) {
    ctx.refuse('limit_reached', 'link limit reached', fields);
    local.destroy();
    return;
  }
  local.setNoDelay(true);
  const deadline = Date.now() + limits.distHandshakeTimeoutMs;
  let source: string | undefined;
  let sourceName = '';
  let sourceHidden = false;
  let tlsSock: tls.TLSSocket | undefined;
  let settled = false;
  let dialling = false;
  /** Whether the link's TLS connection is a ready one (its session tickets came long ago). */
  let onReady = false;
  const pending: Buffer[] = [];
  let pendingBytes = 0;

  const localStream = new DistStream('initiator', limits, (msg: HandshakeMessage) => {
    if (msg.tag === 'send_name') {
      source = admitSource(roster, self.name, msg.name, msg.flags, 'not_in_roster');
      sourceName = msg.name;
      sourceHidden = (msg.flags & DFLAG_PUBLISHED) === 0n;
      // Before the peer is dialled: a forbidden link never costs a TLS handshake.
      // Hidden if the dialling node is, or if it dials an operator (which must answer hidden: checkOperatorHidden).
      const denied = policyRefusal(roster, msg.name, target.name, sourceHidden || target.operator);
      if (denied) throw denied;
    }
  });
  const remoteStream = new DistStream('acceptor', limits, (msg: HandshakeMessage) => {
    if (msg.tag === 'challenge' && msg.name !== target.name) {
      throw new Refusal('bad_handshake', `challenge names ${msg.name}, expected ${target.name}`);
    }
    if (msg.tag === 'challenge' && target.operator) checkOperatorHidden(msg.name, msg.flags);
  });

  /** Ends the attempt: a Refusal is counted and logged as one; a string says why the node gave up. */
  const fail = (why: Refusal | string) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    const where = { ...fields, local_node: source };
    if (typeof why === 'string') ctx.abandoned(peer.name, 'outbound', { ...where, detail: why });
    else ctx.refuse(why.reason, why.message, { ...where, ...why.fields });
    local.destroy();
    tlsSock?.destroy();
    ctx.table.release(peer.name);
  };
  const timer = setTimeout(() => fail(new Refusal('handshake_timeout', 'no send_name or no TLS link in time')), limits.distHandshakeTimeoutMs);

  const onData = (chunk: Buffer) => {
    try {
      localStream.push(chunk);
    } catch (err) {
      return fail(toRefusal(err));
    }
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (pendingBytes > limits.maxPendingBytes) return fail(new Refusal('buffer_limit', `${pendingBytes} bytes pending before the link was up`));
    if (source !== undefined && !dialling) dial();
    maybeStart();
  };
  // A node drops a dial on its own: one of two crossing dials (Erlang keeps
  // one), or its net_setuptime ran out while the peer was being dialled. A
  // close between handshake messages is that, not a refusal; a close in the
  // middle of one is a bad handshake. Its FIN ('end') is the moment it gave
  // up: 'close' can come a few turns later, and a link started in between
  // would hand its stale send_name to the remote node (see Link.start).
  const onEarlyClose = () =>
    fail(
      localStream.bufferedBytes === 0
        ? `local node gave up before the link was up${dialling && !tlsSock ? ` (${peer.name} was still being dialled)` : ''}`
        : new Refusal('bad_handshake', 'local node closed in the middle of a handshake message'),
    );
  local.on('data', onData);
  local.on('end', onEarlyClose);
  local.on('error', onEarlyClose);
  local.on('close', onEarlyClose);

  // The peer is dialled only once send_name names an admitted node: a local
  // connection that sends garbage never costs the peer a TLS handshake.
  function dial(): void {
    dialling = true;
    // A ready connection, when there is one, saves the handshake (src/mesh/standby.ts).
    const ready = ctx.takeStandby(peer.name);
    const dialledUnder = ctx.active();
    (ready ? Promise.resolve(ready) : dialPeer(ctx, peer, true)).then(
      (sock) => {
        if (settled) {
          // Given up meanwhile (most often the loser of two crossing dials):
          // the connection is as good as a ready one, and the next link may take it.
          // (A ready one taken in the same turn has said its standby preamble already.)
          // (And one dialled before a reload must not outlive it.)
          if (!ready && dialledUnder === ctx.active() && ctx.offerStandby(peer.name, sock)) return;
          // Else close as a probe does, so the peer sees no handshake cut short.
          sock.on('error', () => sock.destroy());
          sock.end(encodePreamble({ kind: 'probe' }));
          return;
        }
        tlsSock = sock;
        onReady = ready !== undefined;
        const closed = () => fail(new Refusal('peer_unreachable', `peer ${peer.name} closed before the link was up`));
        sock.on('error', () => fail(new Refusal('peer_unreachable', `TLS link to ${peer.name} failed before use`)));
        sock.on('end', closed);
        sock.on('close', closed);
        maybeStart();
      },
      (err: unknown) => fail(toRefusal(err)),
    );
  }

  function maybeStart(): void {
    if (settled || !tlsSock || source === undefined) return;
    const peerCert = verifiedPeerCertificate(tlsSock)!;
    const info = {
      peer: peer.name,
      direction: 'outbound',
      localNode: source,
      remoteNode: target.label,
      sourceName,
      sourceHidden,
      targetName: target.name,
      peerSerial: peerCert.serialNumber,
      peerCert,
    } as const;
    // A reload while this link was being set up must not let it past the new roster and CAs.
    const refusal = readmit(ctx.active(), self.name, info);
    if (refusal) return fail(refusal);
    settled = true;
    clearTimeout(timer);
    local.off('data', onData);
    local.off('end', onEarlyClose);
    local.off('error', onEarlyClose);
    local.off('close', onEarlyClose);
    tlsSock.removeAllListeners('error');
    tlsSock.removeAllListeners('end');
    tlsSock.removeAllListeners('close');
    // The preamble and the node's bytes so far (its send_name) leave as one TLS record: one write and one
    // record to open on each side instead of two, per link (node:tls seals a corked writev as one record).
    tlsSock.cork();
    tlsSock.write(encodePreamble({ kind: 'link', target: target.name }));
    const link = new Link(
      info,
      local,
      tlsSock,
      localStream,
      remoteStream,
      // A fresh dial's session tickets may still be on their way: node:tls takes them before its hand-over.
      linkDepsOf(ctx, info, limits, onReady ? { expect: target.name, hidden: target.operator } : undefined),
      deadline,
    );
    link.start(pending, []);
    tlsSock.uncork();
    ctx.linkLog.info('link open', link.info.peer, link.logFields());
  }
}
