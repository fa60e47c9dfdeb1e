// Take-over figures (docs/upgrade.md): one gateway pair, a real target node
// behind beta, emulated source nodes on alpha, each with its own link; with
// 10, 100 and 500 links open, beta's gateway is replaced by
// `beamgate run --take-over`. Reported: the new process's time from hello to
// serving, the links' pause (parked by the old process until adopted by the
// new one), and that every link is still open and still seen by the target.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { ErlNode } from '../erlang/node.js';
import type { OtpRuntime } from '../erlang/roots.js';
import { connectEmulatedNode, type EmulatedLink, emulatedFlags, lookupStandIn } from './emulated-node.js';
import { type BenchEnv, startGateways, startNode } from './paths.js';
import { sleep } from './proc.js';

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const OPEN_CONCURRENCY = 50;
const HANDSHAKE_TIMEOUT_MS = 30_000;
/** A take-over is bounded by TAKEOVER_TIMEOUT_MS (30 s); the old process exits right after. */
const TAKEOVER_WAIT_MS = 45_000;
/** After the take-over, a message from the target reaches every source: on a loaded machine, well within this. */
const DELIVERY_WAIT_MS = 20_000;

export interface TakeoverRun {
  links: number;
  /** The new process: hello to serving, ms. */
  totalMs: number;
  /** Links parked by the old process until adopted by the new one, ms. */
  pauseMs: number;
  moved: number;
  /** Emulated links open after the take-over, and those a message from the target reached after it. */
  openAfter: number;
  reachedAfter: number;
  /** Hidden connections the target node counted after the take-over. */
  targetSaw: number;
}

export interface TakeoverResult {
  targetOtp: string;
  runs: TakeoverRun[];
}

export async function runTakeover(env: BenchEnv, dir: string, rt: OtpRuntime, counts: number[], gatewayArgs: string[] = []): Promise<TakeoverResult> {
  const max = Math.max(...counts);
  const sources = Array.from({ length: max }, (_, i) => `s${i}`);
  const socket = (name: string) => join(dir, `${name}.takeover.sock`);
  const gw = await startGateways(dir, [{ name: 'alpha', nodes: sources }, { name: 'beta', nodes: ['gt'] }], { extraArgs: gatewayArgs, runArgsFor: (name) => ['--takeover-socket', socket(name)] });
  const open: EmulatedLink[] = [];
  let target: ErlNode | undefined;
  const replacements: ChildProcess[] = [];
  let betaPid = gw.pids[1]!;
  try {
    const targetName = `gt@${gw.mesh.hostOf('beta')}`;
    target = await startNode(env, rt, targetName, gw.mesh.nodeArgs(targetName));
    const beta = gw.mesh.roster.gateways.get('beta');
    const alpha = gw.mesh.roster.gateways.get('alpha');
    assert.ok(beta && alpha, 'take-over roster lacks its gateways');
    const standInPort = await lookupStandIn(beta.loopback, alpha.epmdPort, 'gt', HANDSHAKE_TIMEOUT_MS);
    const flags = emulatedFlags(Number(rt.otp));
    const runs: TakeoverRun[] = [];
    for (const n of [...counts].sort((a, b) => a - b)) {
      let next = open.length;
      const worker = async () => {
        while (next < n) {
          const i = next++;
          open.push(await connectEmulatedNode({ host: beta.loopback, port: standInPort, name: `${sources[i]}@${gw.mesh.hostOf('alpha')}`, target: targetName, cookie: env.cookie, flags, timeoutMs: HANDSHAKE_TIMEOUT_MS }));
        }
      };
      await Promise.all(Array.from({ length: OPEN_CONCURRENCY }, worker));
      const child = spawn(process.execPath, [...gatewayArgs, CLI, 'run', '--config', gw.mesh.rosterPath, '--gateway', 'beta', '--take-over', '--takeover-socket', socket('beta')], { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
      replacements.push(child);
      const took = await tookOver(child);
      await gone(betaPid);
      betaPid = child.pid!;
      // Through every moved link, the target's way: one message to each source node.
      const framesBefore = open.map((l) => l.frames);
      await target.eval("begin [erlang:send({bench_probe, N}, hello) || N <- nodes(hidden)], ok end");
      await waitUntil(() => open.every((l, i) => !l.open || l.frames > framesBefore[i]!), DELIVERY_WAIT_MS);
      runs.push({
        links: n,
        totalMs: Number(took.duration_ms),
        pauseMs: Number(took.pause_ms),
        moved: Number(took.links),
        openAfter: open.filter((l) => l.open).length,
        reachedAfter: open.filter((l, i) => l.open && l.frames > framesBefore[i]!).length,
        targetSaw: Number(await target.eval('length(nodes(hidden))')),
      });
    }
    return { targetOtp: rt.otp, runs };
  } finally {
    for (const l of open) l.close();
    await target?.stop();
    for (const c of replacements) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await gw.stop();
  }
}

/** The new process's `took over` line, or why it never came. */
function tookOver(child: ChildProcess): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let partial = '';
    const lines: string[] = [];
    const t = setTimeout(() => reject(new Error(`no take-over within ${TAKEOVER_WAIT_MS} ms: ${lines.slice(-5).join('\n')}`)), TAKEOVER_WAIT_MS);
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => {
      partial += s;
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        lines.push(line);
        try {
          const j = JSON.parse(line) as Record<string, unknown>;
          if (j.msg === 'took over') {
            clearTimeout(t);
            resolve(j);
          }
        } catch {
          // not JSON: kept for the error
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`the taking-over process exited with ${code}: ${lines.slice(-5).join('\n')}`));
    });
  });
}

async function gone(pid: number): Promise<void> {
  await waitUntil(() => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }, TAKEOVER_WAIT_MS);
}

async function waitUntil(fn: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await sleep(50);
  }
}
