// The new process's side of a take-over (protocol.ts has the conversation):
// it connects to the running gateway's take-over socket, checks who listens
// there and the format it speaks, receives everything and checks it, and
// says `ready`. Nothing is adopted before `commit`; failing before it, the
// new process closes what it received and exits, and the old one serves on.

import { closeSync } from 'node:fs';
import { TAKEOVER_TIMEOUT_MS } from '../config/limits.js';
import type { PassFd } from '../fastpath/native.js';
import { Channel } from './channel.js';
import { failpoint } from './failpoints.js';
import { type CounterSample, KNOWN_FORMATS, type LinkItem, linkInfoOf, type ListenerItem, type RegistrationItem, TAKEOVER_FORMAT } from './protocol.js';
import { trusted } from './socket.js';

/** Everything the old process handed over, committed: the new process must now serve it. */
export interface Taken {
  startedAt: number;
  frozenAt: number;
  oldPid: number;
  listeners: { item: ListenerItem; fd: number }[];
  registrations: { item: RegistrationItem; fd: number }[];
  links: { item: LinkItem; fds: [number, number] }[];
  counters: CounterSample[];
  lastCreation: [string, number][];
  ended: number;
  /** Tells the old process this one serves (it then exits), and closes the channel. */
  done(links: number): Promise<void>;
}

export class TakeoverRefused extends Error {
  override name = 'TakeoverRefused';
}

/** Nothing listens at the take-over socket (no file, or one left by a process that is gone): there is no gateway to take over from. */
export class NobodyServing extends TakeoverRefused {
  override name = 'NobodyServing';
}

export async function take(passfd: PassFd, file: string, gateway: string, version: string, canAdoptLinks: boolean): Promise<Taken> {
  const startedAt = Date.now();
  let fd: number;
  try {
    fd = passfd.connect(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = `no gateway to take over from at ${file}: ${(err as Error).message}`;
    throw code === 'ENOENT' || code === 'ECONNREFUSED' ? new NobodyServing(why) : new TakeoverRefused(why);
  }
  const ch = new Channel(passfd, fd, startedAt + TAKEOVER_TIMEOUT_MS);
  const got: Omit<Taken, 'done' | 'frozenAt' | 'ended' | 'counters' | 'lastCreation' | 'oldPid'> = { startedAt, listeners: [], registrations: [], links: [] };
  const closeAll = () => {
    for (const l of got.listeners) closeSync(l.fd);
    for (const r of got.registrations) closeSync(r.fd);
    for (const l of got.links) l.fds.forEach((x) => closeSync(x));
  };
  try {
    const who = trusted(passfd, fd);
    if (!who.ok) throw new TakeoverRefused(`${file} is held by pid ${who.pid} of uid ${who.uid}, not by this user or root: not taking over from it`);
    await ch.send({ t: 'hello', format: TAKEOVER_FORMAT, gateway, pid: process.pid, version });
    const { msg: hello } = await ch.recv('hello', 'refuse');
    if (hello.t === 'refuse') throw new TakeoverRefused(`the running gateway refused: ${hello.why}`);
    if (!KNOWN_FORMATS.includes(hello.format)) {
      const why = `the running gateway speaks take-over format ${hello.format}, which this build does not know (it speaks ${KNOWN_FORMATS.join(', ')})`;
      await ch.send({ t: 'refuse', why }).catch(() => undefined);
      throw new TakeoverRefused(why);
    }
    // The kernel names the peer's pid as this PID namespace sees it, 0 when it cannot
    // (the old gateway in another container): then only the name can be checked.
    if (hello.gateway !== gateway || (who.pid !== 0 && hello.pid !== who.pid)) throw new TakeoverRefused(`the process at ${file} says it is gateway ${hello.gateway} (pid ${hello.pid}), not ${gateway}`);
    for (;;) {
      const { msg, fds } = await ch.recv('listeners', 'registrations', 'links', 'end', 'refuse');
      if (msg.t === 'refuse') throw new TakeoverRefused(`the running gateway stopped: ${msg.why}`);
      if (msg.t === 'listeners') msg.items.forEach((item, i) => got.listeners.push({ item, fd: fds[i]! }));
      else if (msg.t === 'registrations') msg.items.forEach((item, i) => got.registrations.push({ item, fd: fds[i]! }));
      else if (msg.t === 'links') {
        msg.items.forEach((item, i) => got.links.push({ item, fds: [fds[2 * i]!, fds[2 * i + 1]!] }));
        // Every certificate must parse before anything is committed.
        for (const item of msg.items) linkInfoOf(item);
      } else {
        if (got.links.length > 0 && !canAdoptLinks) throw new TakeoverRefused(`${got.links.length} links are on the native data plane, and this process has none to adopt them`);
        failpoint('takeover-before-ready');
        await ch.send({ t: 'ready' });
        await ch.recv('commit');
        return {
          ...got,
          oldPid: who.pid || hello.pid,
          frozenAt: msg.frozenAt,
          ended: msg.ended,
          counters: msg.counters,
          lastCreation: msg.lastCreation,
          done: async (links) => {
            try {
              await ch.send({ t: 'done', links });
            } finally {
              ch.close();
            }
          },
        };
      }
    }
  } catch (err) {
    closeAll();
    ch.close();
    throw err instanceof TakeoverRefused ? err : new TakeoverRefused((err as Error).message);
  }
}
