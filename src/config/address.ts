import { isIP } from 'node:net';

/** A TCP endpoint as written in the roster: `host:port` or `[v6]:port`. */
export interface HostPort {
  host: string;
  port: number;
}

/** The loopback address local nodes and the local EPMD listener use. */
export const LOCAL_LOOPBACK = '127.0.0.1';

export function parseHostPort(text: string): HostPort | string {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!m) return `"${text}" is not host:port`;
  const port = Number(m[2]);
  if (!isPort(port)) return `port ${m[2]} is outside 1..65535`;
  return { host: m[1]!, port };
}

export function formatHostPort(hp: HostPort): string {
  return isIP(hp.host) === 6 ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

export function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

export function isLoopbackV4(ip: string): boolean {
  return isIP(ip) === 4 && ip.startsWith('127.');
}

/** Erlang's tuple syntax for an IPv4 address, as inetrc and -kernel flags want it. */
export function erlangIpTuple(ip: string): string {
  if (isIP(ip) !== 4) throw new Error(`not an IPv4 address: ${ip}`);
  return `{${ip.split('.').join(',')}}`;
}
