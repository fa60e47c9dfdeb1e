// The cluster roster: one YAML file that every host shares. It names the
// gateways, the nodes each owns with their static ports, the operator name
// patterns, the TLS files and the limits. Parsing collects every error with its
// key path, so an operator fixes a file in one pass.

import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_LIMITS, LIMIT_KEYS, type Limits, MAX_STANDBY_PER_PEER, MAX_TIMEOUT_MS, MAX_TLS_SESSION_LIFETIME_MS, MIN_PEER_PROBE_INTERVAL_MS, standbyShareOf } from './limits.js';
import { type HostPort, isLoopbackV4, isPort, LOCAL_LOOPBACK, parseHostPort } from './address.js';
import { parsePolicy } from '../policy/parse.js';
import type { Policy } from '../policy/policy.js';
import { globRegExp } from '../policy/glob.js';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface GatewaySpec {
  name: string;
  /** Host part of the node names this gateway owns (`-name x@HOST`). */
  host: string;
  /** Where peer gateways dial this one. */
  address: HostPort;
  /** Where this gateway listens for peers (defaults to `address`). */
  listen: HostPort;
  /** The loopback alias that stands for this gateway on every other host. */
  loopback: string;
  /** EPMD port its local nodes use (ERL_EPMD_PORT). */
  epmdPort: number;
  /** Metrics and health HTTP listener, or null when disabled. */
  metrics: HostPort | null;
  /** Which ports this gateway's stand-ins for remote nodes take (see StandInPorts). */
  standInPorts: StandInPorts;
}

/**
 * Where a gateway's stand-ins for remote nodes listen, on each remote
 * gateway's loopback alias. `range`: ports of the gateway's own, chosen from
 * LOW..HIGH, which the roster keeps clear of this host's node ports, so every
 * host may give its nodes the same port and no wildcard port probe on the host
 * (RabbitMQ's) collides with a stand-in. `mirror`: each stand-in takes the
 * remote node's own port, for nodes that skip EPMD and dial that port directly.
 */
export type StandInPorts = { kind: 'range'; low: number; high: number } | { kind: 'mirror' };

/** The stand-in port range a gateway gets when the roster names none. */
export const DEFAULT_STAND_IN_PORTS = { kind: 'range', low: 19_000, high: 19_999 } as const satisfies StandInPorts;

export interface NodeSpec {
  /** Full node name, `short@host`. */
  name: string;
  short: string;
  host: string;
  gateway: string;
  /** Static distribution port the node listens on, on the loopback of its host. */
  port: number;
}

/**
 * Names outside the roster that a gateway admits by pattern: operators
 * (remote shells, rpc tools, RabbitMQ's CLI; hidden nodes that may dial out
 * and, when they listen, be dialled back), or local-only names (helper nodes
 * that only check that EPMD works: registered on that host's EPMD, never
 * announced to peers, never relayed).
 */
export interface OperatorSpec {
  gateway: string;
  /** Glob on the short name: `*` matches any run of name characters. */
  pattern: string;
  match: RegExp;
}

export interface TlsPaths {
  ca: string;
  cert: string;
  key: string;
}

export interface Roster {
  /** Directory the relative paths in the file are resolved against. */
  baseDir: string;
  gateways: Map<string, GatewaySpec>;
  nodes: Map<string, NodeSpec>;
  operators: OperatorSpec[];
  /** Short-name patterns admitted on one gateway's EPMD only (`localOnly`). */
  localOnly: OperatorSpec[];
  /** Path templates; `{gateway}` stands for a gateway's name. */
  tls: TlsPaths;
  /** Serial numbers of revoked gateway certificates (`tls.revoked`), normalised by `normalizeSerial`. */
  revoked: ReadonlySet<string>;
  limits: Limits;
  log: { level: LogLevel };
  /** Which nodes may link with which (`policy`); undefined: every admitted node with every other. */
  policy: Policy | undefined;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

// Erlang atoms used as node names: letters, digits, `_`, `-`, `.` (host part).
const SHORT_NAME = /^[A-Za-z0-9_-]{1,200}$/;
const HOST_NAME = /^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$/;
const GATEWAY_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Whether a string is a short node name (the part before `@`). */
export function isShortName(s: string): boolean {
  return SHORT_NAME.test(s);
}

export function loadRoster(path: string): Roster {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError([`${path}: cannot read: ${(err as Error).message}`]);
  }
  return parseRoster(text, dirname(resolve(path)));
}

export function parseRoster(text: string, baseDir: string): Roster {
  let doc: unknown;
  try {
    doc = parseYaml(text, { uniqueKeys: true });
  } catch (err) {
    throw new ConfigError([`yaml: ${(err as Error).message.split('\n')[0]}`]);
  }
  const p = new Problems();
  const root = p.object(doc, '');
  p.onlyKeys(root, '', ['gateways', 'nodes', 'operators', 'localOnly', 'tls', 'limits', 'log', 'policy']);

  const gateways = parseGateways(p, root.gateways);
  const nodes = parseNodes(p, root.nodes, gateways);
  checkStandInPorts(p, gateways, nodes);
  const operators = parsePatterns(p, 'operators', root.operators, gateways, nodes);
  const localOnly = parsePatterns(p, 'localOnly', root.localOnly, gateways, nodes);
  for (const [i, l] of localOnly.entries()) {
    const clash = operators.find((o) => o.gateway === l.gateway && o.pattern === l.pattern);
    if (clash) p.add(`localOnly[${i}].pattern`, `"${l.pattern}" is also an operator pattern of gateway ${l.gateway}`);
  }
  const { tls, revoked } = parseTls(p, root.tls, baseDir);
  const limits = parseLimits(p, root.limits);
  const log = parseLog(p, root.log);
  // Checked against the rest only once that is sound: a policy naming a broken gateway would repeat its errors.
  p.throwIfAny();
  const policy = parsePolicy(root.policy, { nodes: nodes.values(), operators, gateways: gateways.values() }, (path, msg) => p.add(path, msg));
  p.throwIfAny();
  return { baseDir, gateways, nodes, operators, localOnly, tls, revoked, limits, log, policy };
}

function parseGateways(p: Problems, value: unknown): Map<string, GatewaySpec> {
  const out = new Map<string, GatewaySpec>();
  const obj = p.object(value, 'gateways');
  const entries = Object.entries(obj);
  if (value !== undefined && entries.length === 0) p.add('gateways', 'must name at least one gateway');
  if (value === undefined) p.add('gateways', 'is required');
  const hosts = new Map<string, string>();
  const loopbacks = new Map<string, string>();
  const addresses = new Map<string, string>();
  let shortNames: boolean | undefined;

  entries.forEach(([name, raw], index) => {
    const at = `gateways.${name}`;
    if (!GATEWAY_NAME.test(name)) {
      p.add(at, 'gateway names are lower-case letters, digits and "-" (they are certificate DNS names)');
    }
    const g = p.object(raw, at);
    p.onlyKeys(g, at, ['host', 'address', 'listen', 'loopback', 'epmdPort', 'metrics', 'standInPorts']);

    const host = p.string(g.host, `${at}.host`);
    if (host !== undefined) {
      if (!HOST_NAME.test(host)) p.add(`${at}.host`, `"${host}" is not a host name`);
      const other = hosts.get(host);
      if (other) p.add(`${at}.host`, `"${host}" is already the host of gateway ${other}`);
      hosts.set(host, name);
      const isShort = !host.includes('.');
      if (shortNames !== undefined && shortNames !== isShort) {
        p.add(`${at}.host`, 'mixes -sname hosts (no dot) and -name hosts (with a dot); Erlang nodes of the two kinds do not connect');
      }
      shortNames = isShort;
    }

    const address = p.hostPort(g.address, `${at}.address`, true);
    const listen = g.listen === undefined ? address : p.hostPort(g.listen, `${at}.listen`, true);
    if (address) {
      const key = `${address.host}:${address.port}`;
      const other = addresses.get(key);
      if (other) p.add(`${at}.address`, `${key} is already the address of gateway ${other}`);
      addresses.set(key, name);
    }

    const loopback = g.loopback === undefined ? `127.0.1.${2 + index}` : p.string(g.loopback, `${at}.loopback`);
    if (loopback !== undefined) {
      if (!isLoopbackV4(loopback) || loopback === LOCAL_LOOPBACK) {
        p.add(`${at}.loopback`, `"${loopback}" must be an IPv4 address in 127.0.0.0/8 other than ${LOCAL_LOOPBACK}`);
      }
      const other = loopbacks.get(loopback);
      if (other) p.add(`${at}.loopback`, `${loopback} is already the loopback alias of gateway ${other}`);
      loopbacks.set(loopback, name);
    }

    const epmdPort = g.epmdPort === undefined ? 4369 : p.port(g.epmdPort, `${at}.epmdPort`);
    let metrics: HostPort | null | undefined = { host: LOCAL_LOOPBACK, port: 9464 };
    if (g.metrics === false) metrics = null;
    else if (g.metrics !== undefined) metrics = p.hostPort(g.metrics, `${at}.metrics`, false);

    const standInPorts = parseStandInPorts(p, g.standInPorts, `${at}.standInPorts`);

    if (host && address && listen && loopback && epmdPort !== undefined && metrics !== undefined && standInPorts) {
      out.set(name, { name, host, address, listen, loopback, epmdPort, metrics, standInPorts });
    }
  });
  return out;
}

function parseNodes(p: Problems, value: unknown, gateways: Map<string, GatewaySpec>): Map<string, NodeSpec> {
  const out = new Map<string, NodeSpec>();
  if (value === undefined) return out;
  if (!Array.isArray(value)) {
    p.add('nodes', 'must be a list');
    return out;
  }
  const portsByGateway = new Map<string, Map<number, string>>();
  value.forEach((raw, i) => {
    const at = `nodes[${i}]`;
    const n = p.object(raw, at);
    p.onlyKeys(n, at, ['name', 'gateway', 'port']);
    const name = p.string(n.name, `${at}.name`);
    const gateway = p.string(n.gateway, `${at}.gateway`);
    const port = p.port(n.port, `${at}.port`);
    if (name === undefined || gateway === undefined || port === undefined) return;

    const parts = splitNodeName(name);
    if (typeof parts === 'string') return p.add(`${at}.name`, parts);
    if (out.has(name)) return p.add(`${at}.name`, `duplicate node ${name}`);
    const gw = gateways.get(gateway);
    if (!gw) return p.add(`${at}.gateway`, `unknown gateway "${gateway}" (known: ${[...gateways.keys()].join(', ') || 'none'})`);
    if (parts.host !== gw.host) {
      return p.add(`${at}.name`, `host part "${parts.host}" differs from gateway ${gateway}'s host "${gw.host}"`);
    }
    if (port === gw.epmdPort) return p.add(`${at}.port`, `${port} is gateway ${gateway}'s EPMD port`);
    const ports = portsByGateway.get(gateway) ?? new Map<number, string>();
    portsByGateway.set(gateway, ports);
    const clash = ports.get(port);
    if (clash) return p.add(`${at}.port`, `port ${port} is already used by ${clash} on gateway ${gateway}`);
    ports.set(port, name);
    out.set(name, { name, short: parts.short, host: parts.host, gateway, port });
  });
  return out;
}

function parseStandInPorts(p: Problems, value: unknown, at: string): StandInPorts | undefined {
  if (value === undefined) return DEFAULT_STAND_IN_PORTS;
  if (value === 'mirror') return { kind: 'mirror' };
  const m = typeof value === 'string' ? /^(\d+)-(\d+)$/.exec(value) : null;
  const low = Number(m?.[1]);
  const high = Number(m?.[2]);
  if (!m || !isPort(low) || !isPort(high) || low > high) {
    p.add(at, `must be "mirror" or a port range "LOW-HIGH" within 1..65535 (got ${JSON.stringify(value)})`);
    return undefined;
  }
  return { kind: 'range', low, high };
}

/**
 * A gateway's own stand-in range must stay clear of every port its host uses
 * for itself (its nodes, its EPMD, TLS and metrics ports): a wildcard probe of
 * a node's port must never find a stand-in there. It must also hold a stand-in
 * for every node of the largest peer (dynamic ones come on top, bounded by
 * maxRegistryNamesPerPeer; a full range refuses those with a log line).
 */
function checkStandInPorts(p: Problems, gateways: Map<string, GatewaySpec>, nodes: Map<string, NodeSpec>): void {
  for (const gw of gateways.values()) {
    const sp = gw.standInPorts;
    if (sp.kind !== 'range') continue;
    const at = `gateways.${gw.name}.standInPorts`;
    const inRange = (port: number) => port >= sp.low && port <= sp.high;
    for (const n of nodes.values()) {
      if (n.gateway === gw.name && inRange(n.port)) p.add(at, `${sp.low}-${sp.high} contains port ${n.port} of its node ${n.name}`);
    }
    const own: [string, number | undefined][] = [
      ['epmdPort', gw.epmdPort],
      ['listen', gw.listen.port],
      ['metrics', gw.metrics?.port],
    ];
    for (const [what, port] of own) if (port !== undefined && inRange(port)) p.add(at, `${sp.low}-${sp.high} contains its ${what} port ${port}`);
    const perPeer = new Map<string, number>();
    for (const n of nodes.values()) if (n.gateway !== gw.name) perPeer.set(n.gateway, (perPeer.get(n.gateway) ?? 0) + 1);
    const most = Math.max(0, ...perPeer.values());
    if (most > sp.high - sp.low + 1) p.add(at, `${sp.low}-${sp.high} holds ${sp.high - sp.low + 1} ports, fewer than the ${most} nodes of one peer gateway`);
  }
}

/** `operators` and `localOnly`: short-name globs admitted on one gateway. */
function parsePatterns(
  p: Problems,
  key: 'operators' | 'localOnly',
  value: unknown,
  gateways: Map<string, GatewaySpec>,
  nodes: Map<string, NodeSpec>,
): OperatorSpec[] {
  const out: OperatorSpec[] = [];
  if (value === undefined) return out;
  if (!Array.isArray(value)) {
    p.add(key, 'must be a list');
    return out;
  }
  value.forEach((raw, i) => {
    const at = `${key}[${i}]`;
    const o = p.object(raw, at);
    p.onlyKeys(o, at, ['gateway', 'pattern']);
    const gateway = p.string(o.gateway, `${at}.gateway`);
    const pattern = p.string(o.pattern, `${at}.pattern`);
    if (gateway === undefined || pattern === undefined) return;
    if (!gateways.has(gateway)) return p.add(`${at}.gateway`, `unknown gateway "${gateway}"`);
    if (!/^[A-Za-z0-9_*-]+$/.test(pattern) || !/[A-Za-z0-9_-]/.test(pattern)) {
      return p.add(`${at}.pattern`, `"${pattern}" must be name characters with "*" wildcards and at least one literal`);
    }
    const match = globRegExp(pattern);
    for (const node of nodes.values()) {
      if (node.gateway === gateway && match.test(node.short)) {
        p.add(`${at}.pattern`, `"${pattern}" also matches roster node ${node.name}`);
      }
    }
    out.push({ gateway, pattern, match });
  });
  return out;
}

function parseTls(p: Problems, value: unknown, baseDir: string): { tls: TlsPaths; revoked: Set<string> } {
  const t = p.object(value, 'tls');
  if (value === undefined) p.add('tls', 'is required (ca, cert, key)');
  p.onlyKeys(t, 'tls', ['ca', 'cert', 'key', 'revoked']);
  const path = (v: unknown, at: string): string => {
    const s = p.string(v, at);
    if (s === undefined) return '';
    return isAbsolute(s) ? s : resolve(baseDir, s);
  };
  return { tls: { ca: path(t.ca, 'tls.ca'), cert: path(t.cert, 'tls.cert'), key: path(t.key, 'tls.key') }, revoked: parseRevoked(p, t.revoked) };
}

/** More serials than this belong in a new CA, not a list every handshake consults. */
export const MAX_REVOKED_SERIALS = 10_000;

function parseRevoked(p: Problems, value: unknown): Set<string> {
  const out = new Set<string>();
  if (value === undefined) return out;
  if (!Array.isArray(value)) {
    p.add('tls.revoked', 'must be a list of certificate serial numbers (hex)');
    return out;
  }
  if (value.length > MAX_REVOKED_SERIALS) p.add('tls.revoked', `lists ${value.length} serials, more than ${MAX_REVOKED_SERIALS}`);
  value.forEach((v, i) => {
    const serial = typeof v === 'string' ? normalizeSerial(v) : undefined;
    if (serial === undefined) p.add(`tls.revoked[${i}]`, 'must be a certificate serial number in hex, as `openssl x509 -noout -serial` prints it');
    else if (out.has(serial)) p.add(`tls.revoked[${i}]`, `serial ${serial} is listed twice`);
    else out.add(serial);
  });
  return out;
}

function parseLimits(p: Problems, value: unknown): Limits {
  const limits: Limits = { ...DEFAULT_LIMITS };
  if (value === undefined) return limits;
  const l = p.object(value, 'limits');
  p.onlyKeys(l, 'limits', LIMIT_KEYS);
  for (const key of LIMIT_KEYS) {
    const v = l[key];
    if (v === undefined) continue;
    const least = key === 'standbyPerPeer' || key === 'standbyTotal' || key === 'tlsSessionLifetimeMs' ? 0 : 1;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < least) p.add(`limits.${key}`, least === 0 ? 'must be a whole number, 0 or more' : 'must be a positive integer');
    else if (key.endsWith('Ms') && v > MAX_TIMEOUT_MS) p.add(`limits.${key}`, `must be at most ${MAX_TIMEOUT_MS} (about 24.8 days: the longest wait a timer takes)`);
    else limits[key] = v;
  }
  if (limits.maxLinksPerPeer > limits.maxLinks) p.add('limits.maxLinksPerPeer', 'must not exceed limits.maxLinks');
  if (limits.registryTimeoutMs <= limits.registryHeartbeatMs) p.add('limits.registryTimeoutMs', 'must exceed limits.registryHeartbeatMs (a live link would be taken for dead)');
  if (limits.registryRedialMaxMs < limits.registryRedialMinMs) p.add('limits.registryRedialMaxMs', 'must not be below limits.registryRedialMinMs');
  if (limits.maxControlMessageBytes > 0xffffffff) p.add('limits.maxControlMessageBytes', 'must fit the 4-byte length');
  if (limits.maxHandshakeMessageBytes > 65535) p.add('limits.maxHandshakeMessageBytes', 'must fit the 2-byte length (65535)');
  if (limits.maxFrameBytes > 0xffffffff) p.add('limits.maxFrameBytes', 'must fit the 4-byte length');
  if (limits.metricsHeadersTimeoutMs > limits.metricsRequestTimeoutMs) p.add('limits.metricsHeadersTimeoutMs', 'must not exceed limits.metricsRequestTimeoutMs');
  // Each probe is a TLS handshake with every peer: a tiny interval would be a flood of our own making.
  if (limits.peerProbeIntervalMs < MIN_PEER_PROBE_INTERVAL_MS) p.add('limits.peerProbeIntervalMs', `must be at least ${MIN_PEER_PROBE_INTERVAL_MS}`);
  if (limits.standbyPerPeer > MAX_STANDBY_PER_PEER) p.add('limits.standbyPerPeer', `must be at most ${MAX_STANDBY_PER_PEER}`);
  // Every ready connection is a TLS connection on both gateways. Only a total the roster asks for is checked: the
  // default's share shrinks with a smaller maxTlsConnections (standbyPerPeerFor).
  const standbyShare = standbyShareOf(limits.maxTlsConnections);
  if (l.standbyTotal !== undefined && limits.standbyTotal > standbyShare) {
    p.add('limits.standbyTotal', `must not exceed half of limits.maxTlsConnections (${standbyShare}): the rest is for links that handshake`);
  }
  if (limits.tlsSessionLifetimeMs > MAX_TLS_SESSION_LIFETIME_MS) p.add('limits.tlsSessionLifetimeMs', `must be at most ${MAX_TLS_SESSION_LIFETIME_MS} (a day)`);
  return limits;
}

function parseLog(p: Problems, value: unknown): { level: LogLevel } {
  if (value === undefined) return { level: 'info' };
  const l = p.object(value, 'log');
  p.onlyKeys(l, 'log', ['level']);
  const level = l.level ?? 'info';
  if (!LOG_LEVELS.includes(level as LogLevel)) {
    p.add('log.level', `must be one of ${LOG_LEVELS.join(', ')}`);
    return { level: 'info' };
  }
  return { level: level as LogLevel };
}

/**
 * One spelling per serial number: upper-case hex without colons or leading
 * zeros, as Node reports a certificate's `serialNumber` once its zeros are
 * dropped. Accepts `openssl x509 -serial` output (`serial=` optional) and
 * colon-separated hex. RFC 5280 serials are at most 20 bytes.
 */
export function normalizeSerial(text: string): string | undefined {
  const hex = text.trim().replace(/^serial=/i, '').replaceAll(':', '').toUpperCase();
  if (!/^[0-9A-F]{1,40}$/.test(hex)) return undefined;
  return hex.replace(/^0+(?=.)/, '');
}

/** A certificate's serial (as Node reports it) if the roster revokes it, else undefined. */
export function revokedSerial(roster: Pick<Roster, 'revoked'>, serialNumber: string | undefined): string | undefined {
  const serial = normalizeSerial(serialNumber ?? '');
  return serial !== undefined && roster.revoked.has(serial) ? serial : undefined;
}

export function splitNodeName(name: string): { short: string; host: string } | string {
  const at = name.indexOf('@');
  if (at < 0 || name.indexOf('@', at + 1) >= 0) return `"${name}" is not a node name of the form short@host`;
  const short = name.slice(0, at);
  const host = name.slice(at + 1);
  if (!SHORT_NAME.test(short)) return `"${short}" is not a valid short node name`;
  if (!HOST_NAME.test(host)) return `"${host}" is not a valid host`;
  return { short, host };
}

/** The TLS files of one gateway, with `{gateway}` filled in. */
export function tlsPathsFor(roster: Roster, gateway: string): TlsPaths {
  const fill = (s: string) => s.replaceAll('{gateway}', gateway);
  return { ca: fill(roster.tls.ca), cert: fill(roster.tls.cert), key: fill(roster.tls.key) };
}

export function nodesOf(roster: Roster, gateway: string): NodeSpec[] {
  return [...roster.nodes.values()].filter((n) => n.gateway === gateway);
}

export function gatewayOrThrow(roster: Roster, name: string): GatewaySpec {
  const gw = roster.gateways.get(name);
  if (!gw) throw new ConfigError([`gateway "${name}" is not in the roster (known: ${[...roster.gateways.keys()].join(', ')})`]);
  return gw;
}

/**
 * How a node name is admitted on a gateway: as a roster node, an operator, a
 * local-only helper (that host's EPMD only), or not at all. Roster nodes and
 * operators are checked first: a local-only pattern never shadows them.
 */
export type Admission =
  | { kind: 'node'; node: NodeSpec }
  | { kind: 'operator'; operator: OperatorSpec }
  | { kind: 'local'; pattern: OperatorSpec }
  | { kind: 'none' };

/** Whether an admission lets the name take part in the mesh (be announced, dial out, be dialled). */
export function inMesh(a: Pick<Admission, 'kind'>): boolean {
  return a.kind === 'node' || a.kind === 'operator';
}

export function admissionOn(roster: Roster, gateway: string, nodeName: string): Admission {
  const node = roster.nodes.get(nodeName);
  if (node) return node.gateway === gateway ? { kind: 'node', node } : { kind: 'none' };
  const parts = splitNodeName(nodeName);
  const gw = roster.gateways.get(gateway);
  if (typeof parts === 'string' || !gw || parts.host !== gw.host) return { kind: 'none' };
  const operator = roster.operators.find((o) => o.gateway === gateway && o.match.test(parts.short));
  if (operator) return { kind: 'operator', operator };
  const local = roster.localOnly.find((o) => o.gateway === gateway && o.match.test(parts.short));
  return local ? { kind: 'local', pattern: local } : { kind: 'none' };
}

/** Collects problems with their key paths instead of stopping at the first. */
class Problems {
  private readonly list: string[] = [];

  add(path: string, message: string): void {
    this.list.push(path ? `${path}: ${message}` : message);
  }

  throwIfAny(): void {
    if (this.list.length > 0) throw new ConfigError(this.list);
  }

  object(value: unknown, path: string): Record<string, unknown> {
    if (value === undefined || value === null) return {};
    if (typeof value !== 'object' || Array.isArray(value)) {
      this.add(path || '(top level)', 'must be a mapping');
      return {};
    }
    return value as Record<string, unknown>;
  }

  onlyKeys(obj: Record<string, unknown>, path: string, allowed: readonly string[]): void {
    for (const key of Object.keys(obj)) {
      if (!allowed.includes(key)) {
        this.add(path ? `${path}.${key}` : key, `unknown key (expected one of: ${allowed.join(', ')})`);
      }
    }
  }

  string(value: unknown, path: string): string | undefined {
    if (typeof value === 'string' && value.length > 0) return value;
    this.add(path, value === undefined ? 'is required' : 'must be a non-empty string');
    return undefined;
  }

  port(value: unknown, path: string): number | undefined {
    if (isPort(value)) return value;
    this.add(path, value === undefined ? 'is required' : `${JSON.stringify(value)} is not a port (1..65535)`);
    return undefined;
  }

  hostPort(value: unknown, path: string, required: boolean): HostPort | undefined {
    if (value === undefined) {
      if (required) this.add(path, 'is required (host:port)');
      return undefined;
    }
    if (typeof value !== 'string') {
      this.add(path, 'must be a "host:port" string');
      return undefined;
    }
    const hp = parseHostPort(value);
    if (typeof hp === 'string') {
      this.add(path, hp);
      return undefined;
    }
    return hp;
  }
}
