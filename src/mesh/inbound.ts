// A peer gateway connects over TLS. Before a byte reaches a local node we
// check, in order: the certificate chain, the identity against the roster,
// the certificate's serial against the roster's revocation list, the
// link limits, the preamble's target (one of our nodes, and up), and the
// source node in send_name (owned by that peer). Only then do we dial the node.

import net from 'node:net';
import type tls from 'node:tls';
import { LOCAL_LOOPBACK } from '../config/address.js';
import { MAX_STANDBY_PER_PEER, STANDBY_HOLD_SLACK_MS } from '../config/limits.js';
import { DFLAG_PUBLISHED, type HandshakeMessage } from '../framing/handshake.js';
import { policyRefusal } from './authorize.js';
import { DistStream } from '../framing/stream.js';
import type { MeshContext } from './context.js';
import { Link } from './link.js';
import { linkDepsOf } from './link-deps.js';
import { MAX_PREAMBLE_BYTES, parsePreamble } from './preamble.js';
import { Refusal, toRefusal } from './refusal.js';
import { readmit } from './readmit.js';
import { admitSource, checkOperatorHidden, targetLabel } from './source.js';
import { classifyVerifyError } from './tls.js';
import { checkPeer, checkResumedPeer, peerCertFields } from './sessions.js';
import { tapOf } from '../fastpath/handover.js';

export function handleInbound(ctx: MeshContext, sock: tls.TLSSocket, handshakeStarted: bigint | undefined): void {
  const { roster, self } = ctx.active();
  const limits = roster.limits;
  const tcp = tapOf(sock)?.raw ?? sock;
  const from = `${tcp.remoteAddress}:${tcp.remotePort}`;

  if (!sock.authorized) {
    // OpenSSL reports a missing client certificate as UNABLE_TO_GET_ISSUER_CERT, which would read as another CA.
    const presented = Object.keys(sock.getPeerCertificate()).length > 0;
    const code = presented ? String((sock.authorizationError as unknown as string | Error | undefined) ?? 'NO_CERTIFICATE') : 'NO_CERTIFICATE';
    ctx.metrics.tlsHandshakes.labels('server', 'failed').inc();
    ctx.refuse(classifyVerifyError(code), `peer certificate rejected: ${code}`, { from, direction: 'inbound' });
    sock.destroy();
    return;
  }
  // node:tls's plain object, not an X509Certificate: a connection that goes no further than this frees it with
  // the next scavenge (peerCertFields says why). A link that is set up takes its X509Certificate below.
  const presentedCert = peerCertFields(sock.getPeerCertificate());
  const resumed = sock.isSessionReused();
  // A resumed session also has its dates checked (OpenSSL checked none); a full handshake's chain, dates
  // included, was verified by OpenSSL. Identity and revocation are checked for every connection, once.
  const checked = resumed
    ? checkResumedPeer(presentedCert, roster, { notSelf: self.name })
    : checkPeer(presentedCert, roster, { notSelf: self.name });
  if ('reason' in checked) {
    ctx.metrics.tlsHandshakes.labels('server', 'failed').inc();
    ctx.refuse(checked.reason, checked.message, { peer: checked.peer, from, direction: 'inbound' });
    sock.destroy();
    return;
  }
  const peerSerial = presentedCert!.serialNumber; // both checks refuse a connection without one
  ctx.metrics.tlsHandshakes.labels('server', 'ok').inc();
  if (resumed) ctx.metrics.tlsResumed.labels('server').inc();
  if (handshakeStarted !== undefined) {
    ctx.metrics.tlsHandshakeSeconds.labels('server').observe(Number(process.hrtime.bigint() - handshakeStarted) / 1e9);
  }
  const peer = checked.gateway;
  const fields: Record<string, string | undefined> = { peer, from, direction: 'inbound' };
  if (!ctx.table.reserve(peer)) {
    ctx.refuse('limit_reached', 'link limit reached', fields);
    sock.destroy();
    return;
  }
  sock.setNoDelay(true);

  let deadline = Date.now() + limits.distHandshakeTimeoutMs;
  let settled = false;
  /** Whether this connection holds a link slot of the peer's; a ready one waiting for its link holds none. */
  let reserved = true;
  /** Set while the connection is a ready one the peer holds for a later link (src/mesh/standby.ts). */
  let standbyTimer: NodeJS.Timeout | undefined;
  let head: Buffer | null = Buffer.alloc(0); // preamble bytes, until parsed
  let target: { name: string; port: number; label: string; operator: boolean } | undefined;
  let source: string | undefined;
  let sourceName = '';
  let sourceHidden = false;
  let local: net.Socket | undefined;
  let localConnected = false;
  const pending: Buffer[] = [];
  let pendingBytes = 0;

  const remoteStream = new DistStream('initiator', limits, (msg: HandshakeMessage) => {
    if (msg.tag === 'send_name') {
      source = admitSource(roster, peer, msg.name, msg.flags, 'node_not_owned');
      sourceName = msg.name;
      sourceHidden = (msg.flags & DFLAG_PUBLISHED) === 0n;
      // Whatever the peer gateway decided: it may be compromised. Checked before our node is dialled.
      // Hidden if the dialling node is, or if it dials an operator (which must answer hidden: checkOperatorHidden).
      const denied = target && policyRefusal(roster, msg.name, target.name, sourceHidden || target.operator);
      if (denied) throw denied;
    }
  });
  const localStream = new DistStream('acceptor', limits, (msg: HandshakeMessage) => {
    if (msg.tag === 'challenge' && target && msg.name !== target.name) {
      throw new Refusal('bad_handshake', `local node on port ${target.port} answered as ${msg.name}, expected ${target.name}`);
    }
    if (msg.tag === 'challenge' && target?.operator) checkOperatorHidden(msg.name, msg.flags);
  });

  /** Ends the attempt: a Refusal is counted and logged as one; a string says why the dialling side gave up. */
  const fail = (why: Refusal | string) => {
    if (settled) return;
    settled = true;
    clearTimeout(firstByteTimer);
    clearTimeout(timer);
    endStandby();
    const where = { ...fields, local_node: target?.name, remote_node: source };
    if (typeof why === 'string') ctx.abandoned(peer, 'inbound', { ...where, detail: why });
    else ctx.refuse(why.reason, why.message, { ...where, ...why.fields });
    sock.destroy();
    local?.destroy();
    if (reserved) ctx.table.release(peer);
    reserved = false;
  };
  const firstByteTimer = setTimeout(() => fail(new Refusal('handshake_timeout', 'peer sent nothing after TLS')), limits.firstByteTimeoutMs);
  let timer = setTimeout(() => fail(new Refusal('handshake_timeout', 'link not established in time')), limits.distHandshakeTimeoutMs);

  /**
   * The peer holds this connection ready for a later link: it gives up its
   * link slot and its handshake deadline, and waits (bounded) for the link's
   * preamble. The peer replaces its ready connections after its
   * standbyIdleMs; one held longer than ours plus STANDBY_HOLD_SLACK_MS is one
   * it forgot.
   */
  const beginStandby = (): boolean => {
    if (!ctx.standbyHeld(peer, 1, sock)) return false;
    clearTimeout(timer);
    ctx.table.release(peer);
    reserved = false;
    standbyTimer = setTimeout(() => {
      endStandby();
      settled = true;
      sock.destroy();
    }, limits.standbyIdleMs + STANDBY_HOLD_SLACK_MS);
    return true;
  };
  const endStandby = () => {
    if (standbyTimer === undefined) return;
    clearTimeout(standbyTimer);
    standbyTimer = undefined;
    ctx.standbyHeld(peer, -1, sock);
  };
  /** A link's preamble on a ready connection: from now on it is a link attempt like any other. */
  const takeStandby = (): boolean => {
    endStandby();
    if (!ctx.table.reserve(peer)) return false;
    reserved = true;
    deadline = Date.now() + limits.distHandshakeTimeoutMs;
    timer = setTimeout(() => fail(new Refusal('handshake_timeout', 'link not established in time')), limits.distHandshakeTimeoutMs);
    return true;
  };

  const onData = (chunk: Buffer): void => {
    clearTimeout(firstByteTimer);
    let data = chunk;
    if (head) {
      const buf = Buffer.concat([head, chunk]);
      const p = parsePreamble(buf);
      if (p.kind === 'error') return fail(new Refusal('bad_preamble', p.reason));
      if (p.kind === 'incomplete') {
        if (buf.length > MAX_PREAMBLE_BYTES) return fail(new Refusal('bad_preamble', 'preamble too long'));
        head = buf;
        return;
      }
      if (p.preamble.kind === 'standby') {
        if (standbyTimer !== undefined) return fail(new Refusal('bad_preamble', 'a second standby preamble'));
        if (!beginStandby()) return fail(new Refusal('limit_reached', `peer holds ${MAX_STANDBY_PER_PEER} ready connections already`));
        head = Buffer.alloc(0);
        const rest = buf.subarray(p.consumed);
        return rest.length > 0 ? onData(rest) : undefined;
      }
      if (standbyTimer !== undefined && p.preamble.kind === 'link' && !takeStandby()) {
        return fail(new Refusal('limit_reached', 'link limit reached'));
      }
      head = null;
      if (p.preamble.kind !== 'link') {
        endStandby();
        settled = true;
        clearTimeout(firstByteTimer);
        clearTimeout(timer);
        if (reserved) ctx.table.release(peer);
        reserved = false;
        sock.off('data', onData);
        sock.off('end', onEarlyClose);
        sock.off('error', onEarlyClose);
        sock.off('close', onEarlyClose);
        if (p.preamble.kind === 'probe') sock.end();
        // A registry link is no relayed link: it holds no link slot, and the registry bounds it.
        else ctx.registryLink(peer, sock, buf.subarray(p.consumed));
        return;
      }
      const wanted = p.preamble.target;
      const t = targetLabel(roster, self.name, wanted);
      if (!t) return fail(new Refusal('unknown_target', `${wanted} is not a node or operator of gateway ${self.name}`));
      // A roster node has its static port even when it skips EPMD
      // (-erl_epmd_port); an operator is reachable only while it is registered.
      const short = wanted.slice(0, wanted.indexOf('@'));
      const port = ctx.registeredPort(short) ?? (t.operator ? undefined : roster.nodes.get(wanted)?.port);
      if (port === undefined) return fail(new Refusal('target_down', `${wanted} is not registered with this gateway`));
      target = { name: wanted, port, label: t.label, operator: t.operator };
      data = buf.subarray(p.consumed);
    }
    if (data.length === 0) return;
    try {
      remoteStream.push(data);
    } catch (err) {
      return fail(toRefusal(err));
    }
    pending.push(data);
    pendingBytes += data.length;
    if (pendingBytes > limits.maxPendingBytes) return fail(new Refusal('buffer_limit', `${pendingBytes} bytes pending before the link was up`));
    if (source !== undefined && !local) connectLocal();
  };
  // The dialling node may drop its dial (two crossing dials: Erlang keeps
  // one) and the peer gateway relays that hang-up. A close before any byte or
  // between handshake messages is that, not a refusal. The FIN ('end') is the
  // hang-up: waiting for 'close' could start the link and hand a dead dial's
  // send_name to our node (see Link.start).
  const onEarlyClose = () => {
    // A ready connection the peer closed untaken (replaced, or its gateway stopping): nothing was attempted.
    if (standbyTimer !== undefined && head?.length === 0) {
      endStandby();
      settled = true;
      sock.destroy();
      return;
    }
    if (head ? head.length === 0 : remoteStream.bufferedBytes === 0) return fail('peer closed before the link was up (the dialling node gave up)');
    // A gateway writes its preamble whole: a part of one is never a dial given up.
    if (head) return fail(new Refusal('bad_preamble', `peer closed after ${head.length} bytes of the preamble`));
    fail(new Refusal('bad_handshake', 'peer closed in the middle of a handshake message'));
  };
  sock.on('data', onData);
  sock.on('end', onEarlyClose);
  sock.on('error', onEarlyClose);
  sock.on('close', onEarlyClose);

  function connectLocal(): void {
    if (!target) return;
    const t = target;
    const conn = net.connect({ host: LOCAL_LOOPBACK, port: t.port });
    local = conn;
    conn.once('connect', () => {
      if (settled) return conn.destroy();
      localConnected = true;
      start();
    });
    conn.once('error', (err) => {
      if (!localConnected) fail(new Refusal('target_down', `cannot reach ${t.name} on ${LOCAL_LOOPBACK}:${t.port}: ${err.message}`));
    });
  }

  function start(): void {
    if (!local || !target || source === undefined) return;
    const info = {
      peer,
      direction: 'inbound',
      localNode: target.label,
      remoteNode: source,
      sourceName,
      sourceHidden,
      targetName: target.name,
      peerSerial,
      peerCert: sock.getPeerX509Certificate()!,
    } as const;
    // A reload while this link was being set up must not let it past the new roster and CAs.
    const refusal = readmit(ctx.active(), self.name, info);
    if (refusal) return fail(refusal);
    settled = true;
    clearTimeout(timer);
    sock.off('data', onData);
    sock.off('end', onEarlyClose);
    sock.off('error', onEarlyClose);
    sock.off('close', onEarlyClose);
    local.removeAllListeners('error');
    const link = new Link(
      info,
      local,
      sock,
      localStream,
      remoteStream,
      // We are the TLS server: our session tickets went with the handshake.
      linkDepsOf(ctx, info, limits, { expect: target.name, hidden: target.operator }),
      deadline,
    );
    link.start([], pending);
    ctx.linkLog.info('link open', link.info.peer, link.logFields());
  }
}
