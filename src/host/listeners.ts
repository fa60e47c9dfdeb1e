// The TCP listeners of this host, read from /proc/net/tcp and /proc/net/tcp6
// (no `ss` needed), and the processes holding them, found through
// /proc/PID/fd where this user may look. Linux only.

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { endianness } from 'node:os';

export interface Listener {
  /** Dotted IPv4, or IPv6 as `::1`, `::`, `::ffff:127.0.0.1`. */
  address: string;
  port: number;
  family: 4 | 6;
  /** The socket's inode, to find the processes that hold it. */
  inode: number;
}

export interface SocketOwner {
  pid: number;
  /** The program name (/proc/PID/comm). */
  comm: string;
  argv: string[];
}

/** The state column's value for a listening socket (include/net/tcp_states.h: TCP_LISTEN). */
const TCP_LISTEN = '0A';

/**
 * The kernel prints each 32-bit word of an address as a number in host byte
 * order (`%08X` of a big-endian word), so on a little-endian machine the
 * bytes of every word come out reversed.
 */
function wordBytes(hex: string, endian: 'LE' | 'BE'): number[] {
  const bytes = [0, 2, 4, 6].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return endian === 'LE' ? bytes.reverse() : bytes;
}

function ipv6Text(bytes: number[]): string {
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return `::ffff:${bytes.slice(12).join('.')}`;
  const groups = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16));
  // The longest run of zero groups (two or more) becomes `::`.
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  if (best.at < 0) return groups.join(':');
  return `${groups.slice(0, best.at).join(':')}::${groups.slice(best.at + best.len).join(':')}`;
}

/** The listening sockets in the text of /proc/net/tcp (family 4) or /proc/net/tcp6 (family 6), as printed by a kernel of this byte order. */
export function parseProcNetTcp(text: string, family: 4 | 6, endian: 'LE' | 'BE' = endianness()): Listener[] {
  const out: Listener[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode ...
    if (f.length < 10 || f[3] !== TCP_LISTEN) continue;
    const [addrHex, portHex] = f[1]!.split(':') as [string, string];
    const bytes = family === 4 ? wordBytes(addrHex, endian) : [0, 8, 16, 24].flatMap((i) => wordBytes(addrHex.slice(i, i + 8), endian));
    out.push({
      address: family === 4 ? bytes.join('.') : ipv6Text(bytes),
      port: parseInt(portHex, 16),
      family,
      inode: Number(f[9]),
    });
  }
  return out;
}

/** Every TCP listener of this host's network namespace; throws when /proc/net/tcp cannot be read (not Linux). */
export function readListeners(): Listener[] {
  const v4 = parseProcNetTcp(readFileSync('/proc/net/tcp', 'utf8'), 4);
  let v6: Listener[] = [];
  try {
    v6 = parseProcNetTcp(readFileSync('/proc/net/tcp6', 'utf8'), 6);
  } catch {
    // a kernel without IPv6 has no tcp6 table
  }
  return [...v4, ...v6];
}

/** Whether a listener on this address is reachable only from this host. */
export function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.');
}

/**
 * The processes holding each of `inodes`, from the /proc/PID/fd links this
 * user may read (its own processes; every process for root). A socket held
 * by a process this user cannot look into has no entry.
 */
export function socketOwners(inodes: Set<number>): Map<number, SocketOwner[]> {
  const owners = new Map<number, SocketOwner[]>();
  if (inodes.size === 0) return owners;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue; // not ours to see, or gone
    }
    const held = new Set<number>();
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${entry}/fd/${fd}`));
        if (m && inodes.has(Number(m[1]))) held.add(Number(m[1]));
      } catch {
        // closed meanwhile
      }
    }
    if (held.size === 0) continue;
    let owner: SocketOwner;
    try {
      owner = {
        pid: Number(entry),
        comm: readFileSync(`/proc/${entry}/comm`, 'utf8').trim(),
        argv: readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean),
      };
    } catch {
      continue;
    }
    for (const inode of held) owners.set(inode, [...(owners.get(inode) ?? []), owner]);
  }
  return owners;
}
