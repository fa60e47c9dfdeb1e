// The running gateway hands itself over (protocol.ts has the conversation):
// it checks who connected and the format they speak, freezes (freeze.ts),
// sends everything in bounded batches, and waits for `ready`. Anything short
// of that (a refusal, the new process gone, the deadline) thaws: it serves on
// as before, counted and logged. After `commit` it never relays again; it
// waits (bounded) for `done` and exits.

import type net from 'node:net';
import { TAKEOVER_BATCH_BYTES, TAKEOVER_FDS_PER_MESSAGE, TAKEOVER_LINKS_PER_MESSAGE, TAKEOVER_TIMEOUT_MS } from '../config/limits.js';
import { Channel } from './channel.js';
import { freeze, type Frozen, type GatewayParts, handOff, thaw } from './freeze.js';
import { KNOWN_FORMATS, TAKEOVER_FORMAT, type Message } from './protocol.js';
import { dupOf, trusted } from './socket.js';

export type GiveResult = { handedOff: true; links: number; ended: number } | { handedOff: false; why: string; result: 'refused' | 'rolled_back' | 'failed' };

/** Runs one take-over on a connection to the take-over socket; the caller exits when it says handedOff. */
export async function give(p: GatewayParts, sock: net.Socket, version: string): Promise<GiveResult> {
  let fd: number;
  try {
    fd = dupOf(p.passfd, sock);
  } finally {
    sock.destroy();
  }
  const started = Date.now();
  const ch = new Channel(p.passfd, fd, started + TAKEOVER_TIMEOUT_MS);
  const log = p.logger.child({ step: 'take-over' });
  const end = (r: GiveResult): GiveResult => {
    ch.close();
    if (r.handedOff) p.metrics.takeovers.labels('give', 'ok').inc();
    else {
      p.metrics.takeovers.labels('give', r.result).inc();
      log.warn(r.result === 'refused' ? 'take-over refused' : 'take-over did not happen, serving on', { detail: r.why, result: r.result });
    }
    return r;
  };
  const who = trusted(p.passfd, fd);
  if (!who.ok) return end({ handedOff: false, result: 'refused', why: `pid ${who.pid} of uid ${who.uid} may not take over (only this user or root)` });
  let hello: Extract<Message, { t: 'hello' }>;
  try {
    hello = (await ch.recv('hello')).msg;
  } catch (err) {
    return end({ handedOff: false, result: 'refused', why: (err as Error).message });
  }
  const refuse = async (why: string): Promise<GiveResult> => {
    await ch.send({ t: 'refuse', why }).catch(() => undefined);
    return end({ handedOff: false, result: 'refused', why });
  };
  if (!KNOWN_FORMATS.includes(hello.format)) return refuse(`take-over format ${hello.format} is unknown to this process (it speaks ${KNOWN_FORMATS.join(', ')})`);
  if (hello.gateway !== p.gateway) return refuse(`this process is gateway ${p.gateway}, not ${hello.gateway}`);
  // SO_PEERCRED's pid is 0 for a process outside this PID namespace (a new container): its own word then.
  log.info('take-over started', { new_pid: who.pid || hello.pid, new_version: hello.version });
  try {
    await ch.send({ t: 'hello', format: TAKEOVER_FORMAT, gateway: p.gateway, pid: process.pid, version });
  } catch (err) {
    return end({ handedOff: false, result: 'failed', why: (err as Error).message });
  }

  let f: Frozen;
  try {
    f = await freeze(p);
  } catch (err) {
    await ch.send({ t: 'refuse', why: `could not freeze: ${(err as Error).message}` }).catch(() => undefined);
    return end({ handedOff: false, result: 'failed', why: `could not freeze: ${(err as Error).message}` });
  }
  try {
    await sendState(ch, f);
    await ch.recv('ready');
  } catch (err) {
    thaw(p, f);
    return end({ handedOff: false, result: 'rolled_back', why: (err as Error).message });
  }
  try {
    await ch.send({ t: 'commit' });
  } catch (err) {
    // Not sent: the new process adopts nothing before it has read commit, so taking everything back is safe.
    thaw(p, f);
    return end({ handedOff: false, result: 'rolled_back', why: `commit not sent: ${(err as Error).message}` });
  }
  // Past this point the links are the new process's: relaying one here again would reuse AEAD nonces.
  let doneLinks: number | undefined;
  try {
    doneLinks = (await ch.recv('done')).msg.links;
  } catch (err) {
    log.error('take-over committed, but the new process did not confirm', { detail: (err as Error).message });
  }
  handOff(p, f);
  log.info('handed over', { links: f.links.length, links_ended: f.ended.length, adopted: doneLinks ?? 'unconfirmed', registrations: f.registrations.length, listeners: f.listeners.length, duration_ms: Date.now() - started });
  return end({ handedOff: true, links: f.links.length, ended: f.ended.length });
}

async function sendState(ch: Channel, f: Frozen): Promise<void> {
  for (let i = 0; i < f.listeners.length; i += TAKEOVER_FDS_PER_MESSAGE) {
    const b = f.listeners.slice(i, i + TAKEOVER_FDS_PER_MESSAGE);
    await ch.send({ t: 'listeners', items: b.map((l) => l.item) }, b.map((l) => l.fd));
  }
  for (let i = 0; i < f.registrations.length; i += TAKEOVER_FDS_PER_MESSAGE) {
    const b = f.registrations.slice(i, i + TAKEOVER_FDS_PER_MESSAGE);
    await ch.send({ t: 'registrations', items: b.map((r) => r.item) }, b.map((r) => r.fd));
  }
  // Links in batches by count (two descriptors each) and by their buffered bytes.
  let batch: Frozen['links'] = [];
  let bytes = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    await ch.send({ t: 'links', items: batch.map((l) => l.item) }, batch.flatMap((l) => l.fds));
    batch = [];
    bytes = 0;
  };
  for (const l of f.links) {
    const d = l.item.parked.detached;
    const size = d.sealedToRemote.length + d.walkedToLocal.length + d.fromRemote.length + d.rxHandshake.length + 4096;
    if (batch.length >= TAKEOVER_LINKS_PER_MESSAGE || (batch.length > 0 && bytes + size > TAKEOVER_BATCH_BYTES)) await flush();
    batch.push(l);
    bytes += size;
  }
  await flush();
  await ch.send({ t: 'end', counters: f.counters, lastCreation: f.lastCreation, ended: f.ended.length, frozenAt: f.frozenAt });
}
