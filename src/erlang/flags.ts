// What an unmodified node needs to use its gateway: the host names of every
// gateway mapped to loopback addresses (an inetrc file or /etc/hosts lines),
// and the `erl` flags that pin EPMD, the listen address and the static port.

import { erlangIpTuple, LOCAL_LOOPBACK } from '../config/address.js';
import { gatewayOrThrow, type Roster } from '../config/roster.js';
import { unreachable } from '../policy/policy.js';

/** Host name → address, as seen by the nodes on `gateway`'s host. */
export function hostMap(roster: Roster, gateway: string): { host: string; ip: string; gateway: string }[] {
  gatewayOrThrow(roster, gateway);
  return [...roster.gateways.values()].map((g) => ({ host: g.host, ip: g.name === gateway ? LOCAL_LOOPBACK : g.loopback, gateway: g.name }));
}

/** An Erlang inetrc file (for `-kernel inetrc '"PATH"'`): no /etc/hosts edit needed. */
export function inetrc(roster: Roster, gateway: string): string {
  const lines = hostMap(roster, gateway).map((h) => `{host, ${erlangIpTuple(h.ip)}, ["${h.host}"]}.  % gateway ${h.gateway}`);
  return [`%% beamgate: host names as seen from gateway ${gateway}'s host`, ...lines, '{lookup, [file, native]}.', ''].join('\n');
}

export function etcHosts(roster: Roster, gateway: string): string {
  const lines = hostMap(roster, gateway).map((h) => `${h.ip.padEnd(15)} ${h.host}  # beamgate gateway ${h.gateway}`);
  return [`# beamgate: host names as seen from gateway ${gateway}'s host`, ...lines, ''].join('\n');
}

export interface NodeFlagOptions {
  /** Full node name, `short@host`. */
  name: string;
  epmdPort: number;
  /** Static distribution port; omitted for operator nodes, which only dial out. */
  port?: number;
  inetrcPath: string;
  hidden?: boolean;
  /**
   * false for a node the policy keeps from some roster nodes: `global` then
   * neither dials every node it hears of nor disconnects nodes to prevent
   * overlapping partitions (docs/policy.md). Default true, Erlang's default.
   */
  connectAll?: boolean;
}

/** The `erl` arguments for a node behind a gateway (cookie not included: it is the node's own secret). */
export function erlFlags(o: NodeFlagOptions): string[] {
  const short = !o.name.slice(o.name.indexOf('@') + 1).includes('.');
  const flags = [
    short ? '-sname' : '-name',
    o.name,
    // The gateway is the EPMD; never let erl start a real one on that port.
    '-start_epmd',
    'false',
    '-epmd_port',
    String(o.epmdPort),
    '-kernel',
    'inet_dist_use_interface',
    erlangIpTuple(LOCAL_LOOPBACK),
    '-kernel',
    'inetrc',
    `"${o.inetrcPath}"`,
  ];
  if (o.port !== undefined) {
    flags.push('-kernel', 'inet_dist_listen_min', String(o.port), '-kernel', 'inet_dist_listen_max', String(o.port));
  }
  // A node without a static port (an operator) only dials out: with
  // -dist_listen false it opens no listener and needs no EPMD registration.
  if (o.port === undefined) flags.push('-dist_listen', 'false');
  if (o.hidden) flags.push('-hidden');
  if (o.connectAll === false) flags.push('-connect_all', 'false');
  return flags;
}

/**
 * The roster nodes the policy keeps `node` from linking with as a visible
 * node. Non-empty means the node needs `-connect_all false`: with Erlang's
 * default, `global` dials every node it hears of (refused by the gateway)
 * and then, to prevent overlapping partitions, has the nodes both can reach
 * drop their links (docs/policy.md).
 */
export function walledOff(roster: Roster, node: string): string[] {
  return roster.policy ? unreachable(roster.policy, node, roster.nodes.keys()) : [];
}

/** The same flags quoted for a shell command line. */
export function shellQuote(args: string[]): string {
  return args.map((a) => (/^[A-Za-z0-9_@.:\/=-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`)).join(' ');
}
