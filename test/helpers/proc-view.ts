// What other local users can learn about a process from /proc: its command
// line (/proc/PID/cmdline, readable by everyone) and its environment
// (/proc/PID/environ, readable by its owner and root). Tests use it to show
// that no node started by the project carries its cookie in either.

import { readdirSync, readFileSync } from 'node:fs';

export interface ProcView {
  pid: number;
  /** The program's name as the kernel has it (`beam.smp` for an Erlang VM). */
  comm: string;
  argv: string[];
  environ: string[];
}

/** The parent pid from /proc/PID/stat (the name in parentheses may hold blanks and parentheses). */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined; // gone meanwhile
  }
}

function view(pid: number): ProcView | undefined {
  try {
    const nul = (f: string) => readFileSync(`/proc/${pid}/${f}`, 'utf8').split('\0').filter(Boolean);
    return { pid, comm: readFileSync(`/proc/${pid}/comm`, 'utf8').trim(), argv: nul('cmdline'), environ: nul('environ') };
  } catch {
    return undefined;
  }
}

/** Every live process descended from `root` (not `root` itself), children before grandchildren. */
export function descendantsOf(root: number): ProcView[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const ppid = parentOf(Number(entry));
    if (ppid === undefined) continue;
    children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  const out: ProcView[] = [];
  const queue = [...(children.get(root) ?? [])];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    const v = view(pid);
    if (v) out.push(v);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** The Erlang VMs among `procs`, by the node name after -name/-sname (undefined for a VM without one). */
export function erlangNodes(procs: ProcView[]): Map<string, ProcView> {
  const out = new Map<string, ProcView>();
  for (const p of procs) {
    if (p.comm !== 'beam.smp') continue;
    const at = p.argv.findIndex((a) => a === '-name' || a === '-sname');
    if (at >= 0 && p.argv[at + 1]) out.set(p.argv[at + 1]!, p);
  }
  return out;
}

/** Where `secret` shows in the argv or environment of `procs`: one line per distinct finding, empty when nowhere. */
export function secretExposures(procs: ProcView[], secret: string): string[] {
  const found = new Set<string>();
  for (const p of procs) {
    if (p.argv.some((a) => a.includes(secret))) found.add(`pid ${p.pid} (${p.comm}) argv: ${p.argv.join(' ').slice(0, 400)}`);
    if (p.environ.some((e) => e.includes(secret))) found.add(`pid ${p.pid} (${p.comm}) environ`);
  }
  return [...found];
}
