// Listening sockets a take-over handed this process, by address, until the
// gateway's listeners claim them: `listen()` (src/epmd/server.ts) and the
// metrics listener take one where they would bind, so connections waiting in
// its backlog during the take-over are served, not refused. A stand-in keeps
// its port: a local node that looked it up just before dials that port.
// Process-wide, as systemd's LISTEN_FDS are: one gateway per process.

import { closeSync } from 'node:fs';
import type { ListenerItem } from './protocol.js';

const waiting: { item: ListenerItem; fd: number }[] = [];

export function inherit(listeners: { item: ListenerItem; fd: number }[]): void {
  waiting.push(...listeners);
}

/** The inherited listener for host:port, now the caller's; undefined when there is none. */
export function takeInherited(host: string, port: number): number | undefined {
  const i = waiting.findIndex((l) => l.item.host === host && l.item.port === port);
  if (i < 0) return undefined;
  return waiting.splice(i, 1)[0]!.fd;
}

/** The port the previous process gave the stand-in for `short` on `peer`'s alias, if it handed that listener over. */
export function inheritedStandInPort(alias: string, peer: string, short: string): number | undefined {
  return waiting.find((l) => l.item.kind === 'stand-in' && l.item.host === alias && l.item.standIn?.peer === peer && l.item.standIn.short === short)?.item.port;
}

/** Closes what no listener claimed (the roster changed across the take-over); returns how many. */
export function closeUnclaimed(): number {
  const n = waiting.length;
  for (const l of waiting.splice(0)) closeSync(l.fd);
  return n;
}
