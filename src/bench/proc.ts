// CPU time and memory of a running process, from /proc (Linux), and free
// loopback ports and aliases for the processes a benchmark or a test starts.

import { randomInt } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';

/** Clock ticks per second for /proc/PID/stat times; 100 on every Linux we run on. */
const CLK_TCK = 100;

/** The fields of /proc/PID/stat after the command name (field 2, which may hold spaces): field 3 onwards. */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** User + system CPU seconds in stat fields (statFields). */
function cpuOfFields(pid: number, fields: string[]): number {
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`unreadable /proc/${pid}/stat`);
  return (utime + stime) / CLK_TCK;
}

/** User + system CPU seconds the process has used so far. */
export function cpuSeconds(pid: number): number {
  return cpuOfFields(pid, statFields(pid));
}

/**
 * CPU seconds every core of this machine has spent busy so far (the first
 * line of /proc/stat: user, nice, system, irq, softirq and steal; idle and
 * iowait are not busy), whatever process spent them.
 */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const [label, ...ticks] = line.trim().split(/\s+/);
  const n = ticks.map(Number);
  if (label !== 'cpu' || n.length < 8 || n.some((x) => !Number.isFinite(x))) throw new Error(`unreadable /proc/stat: ${line}`);
  const [user, nice, system, , , irq, softirq, steal] = n as [number, number, number, number, number, number, number, number];
  return (user + nice + system + irq + softirq + steal) / CLK_TCK;
}

/**
 * User + system CPU seconds of the processes `roots` and every live process
 * under them (a VM started through a wrapper that forks, and its port
 * programs), each counted once. A process that has already exited is not
 * counted: read it before and after a window, and the difference is what the
 * live ones spent in it.
 */
export function treeCpuSeconds(roots: number[]): number {
  const children = new Map<number, number[]>();
  const cpu = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    let fields: string[];
    try {
      fields = statFields(pid);
    } catch {
      continue; // exited between the listing and the read: its time is gone from /proc either way
    }
    const ppid = Number(fields[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), pid]);
    cpu.set(pid, cpuOfFields(pid, fields));
  }
  let total = 0;
  const seen = new Set<number>();
  const todo = [...roots];
  while (todo.length > 0) {
    const pid = todo.pop()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    total += cpu.get(pid) ?? 0;
    todo.push(...(children.get(pid) ?? []));
  }
  return total;
}

export interface Memory {
  /** Resident set now, MB. */
  rssMb: number;
  /** Peak resident set since start, MB. */
  peakMb: number;
}

export function memory(pid: number): Memory {
  const kb = statusKb(pid);
  return { rssMb: kb.rss / 1024, peakMb: kb.peak / 1024 };
}

/** Resident set now (VmRSS) and its peak since start (VmHWM), KiB, from /proc/PID/status. */
export function statusKb(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!m) throw new Error(`no ${key} in /proc/${pid}/status`);
    return Number(m[1]);
  };
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/**
 * Where freePort looks: below Linux's default ephemeral range (32768–60999),
 * which outgoing connections draw from. A port the kernel handed out as
 * ephemeral (listen on port 0) can be taken by any connect() before the node
 * or gateway it was meant for binds it; one below that range cannot. The
 * demo's fixed ports (17100–17299) are below FREE_PORT_MIN.
 */
const FREE_PORT_MIN = 20_000;
const FREE_PORT_MAX = 32_000;
/** Random picks tried before giving up (each one is a bind attempt). */
const FREE_PORT_ATTEMPTS = 200;
/** Ports handed out by this process: never handed out twice, bound or not yet. */
const handedOut = new Set<number>();

/** A TCP port that was free on 127.0.0.1 a moment ago and that no outgoing connection will take. The tests use it too. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < FREE_PORT_ATTEMPTS; i++) {
    const port = FREE_PORT_MIN + randomInt(FREE_PORT_MAX - FREE_PORT_MIN);
    if (handedOut.has(port)) continue;
    // Taken before the check, not after: calls made at once (Promise.all)
    // would otherwise both pick a port while each awaits its own check.
    handedOut.add(port);
    if (await canListen(port)) return port;
    handedOut.delete(port);
  }
  throw new Error(`no free port in ${FREE_PORT_MIN}–${FREE_PORT_MAX} after ${FREE_PORT_ATTEMPTS} tries`);
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * A loopback alias unlikely to be used by another run at the same time
 * (127.64.0.0/10, away from 127.0.0.1 and the roster's default 127.0.1.x
 * aliases), so concurrent benchmarks and test suites never fight over an address.
 */
export function randomAlias(): string {
  return `127.${64 + randomInt(64)}.${randomInt(256)}.${2 + randomInt(250)}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
