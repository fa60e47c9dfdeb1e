// What `beamgate check --gateway NAME` warns about on the gateway's own host:
// another program on the gateway's EPMD port (on any address: a real EPMD,
// such as Debian's epmd.socket, answers the network and takes the port the
// gateway needs), and a port of one of its nodes bound beyond loopback
// (reachable around the gateway). Warnings only: the roster is still valid.

import { gatewayOrThrow, nodesOf, type Roster } from '../config/roster.js';
import { isLoopback, type Listener, readListeners, type SocketOwner, socketOwners } from './listeners.js';

/** The gateway process: `beamgate run` (…/cli/main.js run), for this gateway when it names one. */
function isGatewayProcess(o: SocketOwner, gateway: string): boolean {
  const at = o.argv.findIndex((a, i) => /(^|\/)main\.js$/.test(a) && o.argv[i + 1] === 'run');
  if (at < 0) return false;
  const named = o.argv.findIndex((a, i) => i > at && (a === '--gateway' || a === '-g'));
  return named < 0 || o.argv[named + 1] === gateway;
}

function ownersText(owners: SocketOwner[] | undefined): string {
  if (!owners || owners.length === 0) return 'a process this user cannot see (run check as root to name it)';
  return owners.map((o) => `${o.comm} (pid ${o.pid})`).join(', ');
}

const where = (l: Listener) => (l.family === 6 ? `[${l.address}]:${l.port}` : `${l.address}:${l.port}`);

/** The warnings for `gateway` given this host's listeners and their owners (pure: the tests feed it). */
export function exposureWarnings(roster: Roster, gateway: string, listeners: Listener[], owners: Map<number, SocketOwner[]>): string[] {
  const gw = gatewayOrThrow(roster, gateway);
  const warnings: string[] = [];
  for (const l of listeners.filter((x) => x.port === gw.epmdPort)) {
    const held = owners.get(l.inode);
    if (held && held.length > 0 && held.every((o) => isGatewayProcess(o, gateway))) continue;
    warnings.push(
      `${where(l)}, gateway ${gateway}'s EPMD port (epmdPort ${gw.epmdPort}), is held by ${ownersText(held)}, not by the gateway: ` +
        `a real EPMD there ${isLoopback(l.address) ? 'takes the port the gateway needs' : 'answers the network and takes the port the gateway needs'}` +
        ` (Debian's erlang-base: systemctl disable --now epmd.socket epmd.service)`,
    );
  }
  for (const node of nodesOf(roster, gateway)) {
    for (const l of listeners.filter((x) => x.port === node.port && !isLoopback(x.address))) {
      warnings.push(
        `${where(l)}, the distribution port of ${node.name}, is bound beyond loopback by ${ownersText(owners.get(l.inode))}: ` +
          `other hosts can reach it around the gateway (start the node with the flags of node-flags: -kernel inet_dist_use_interface '{127,0,0,1}')`,
      );
    }
  }
  return warnings;
}

/** The warnings for `gateway` on this host, read from /proc now. */
export function hostExposureWarnings(roster: Roster, gateway: string): string[] {
  let listeners: Listener[];
  try {
    listeners = readListeners();
  } catch (err) {
    return [`cannot read /proc/net/tcp (${(err as Error).message}): the EPMD and node ports of this host were not checked`];
  }
  const gw = gatewayOrThrow(roster, gateway);
  const ports = new Set([gw.epmdPort, ...nodesOf(roster, gateway).map((n) => n.port)]);
  const relevant = listeners.filter((l) => ports.has(l.port));
  return exposureWarnings(roster, gateway, relevant, socketOwners(new Set(relevant.map((l) => l.inode))));
}
