#!/usr/bin/env node
// `npm run bench`: every way two real Erlang nodes on this machine can talk,
// measured side by side in one run, interleaved and repeated (only ratios
// taken in one run mean anything on a shared machine), then the scale run.
// inet_tcp_dist, inet_tls_dist and beamgate run with nodes on each OTP
// release asked for (--otp; the machine's own and OTP 29 from its Debian root
// by default), the stunnel pair with nodes on the first.
// Prints the tables and a chart; writes JSON and SVG under bench/results/.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  type BenchEnv,
  type BenchPath,
  beamgatePath,
  directPath,
  PATH_LABELS,
  type PathId,
  plainSetup,
  stunnelAvailable,
  stunnelPath,
  tlsPath,
} from './paths.js';
import { NATIVE_MODULE } from '../fastpath/native.js';
import { randomCookie, writeCookieHome } from '../erlang/cookie.js';
import { findRuntime, hostOtp, type OtpRuntime, ROOTS_DIR } from '../erlang/roots.js';
import { memory, randomAlias } from './proc.js';
import {
  asciiChart,
  checkTargets,
  type CpuTotals,
  figuresTable,
  medianFigures,
  type PathSample,
  ratioTable,
  type Results,
  scaleTable,
  burstTable,
  stormBudget,
  stormRestartTable,
  stormTable,
  takeoverTable,
  svgChart,
  targetsTable,
} from './report.js';
import { runScale, type ScaleResult } from './scale.js';
import { type BurstResult, runBurst } from './burst.js';
import { runStorm, type StormResult } from './storm.js';
import { runTakeover, type TakeoverResult } from './takeover.js';
import { MAX_STANDBY_PER_PEER } from '../config/limits.js';
import { BULK_SIZES, emptyCpu, measureColdConnect, measureRate, measureSetup, measureRtt, type RateResult, SIZES, type Size, withCpu } from './workloads.js';

const ERL_SOURCE = fileURLToPath(new URL('../../src/bench/erl/beamgate_bench.erl', import.meta.url));
const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url));

const USAGE = `npm run bench -- [options]

  --quick             one repetition, short runs (under a minute)
  --reps N            repetitions of every workload on every path (default 3)
  --seconds S         duration of each throughput run (default 1; --quick 0.5)
  --pings N           round trips per RTT measurement (default 5000)
  --paths LIST        comma-separated subset of direct,tls,stunnel,beamgate,beamgate-node,beamgate-filtered
                      (beamgate: the native data plane; beamgate-node: the same gateways on node:tls)
  --otp LIST          OTP releases of the nodes, e.g. 25,29 (default: this machine's erl, and 29
                      when its Debian root exists; see docs/compatibility.md); stunnel runs on the first
  --scale-links N     idle links in the scale run (default 500; 0 skips it); the target node runs the last release
  --idle-seconds S    idle window of the scale run (default 30; --quick 5)
  --burst-links N     links opened all at once in the burst run, with a ready TLS connection for each
                      and with none (default 32, at most 32; 0 skips it)
  --storm-hosts N     gateways of the storm run, each with --storm-nodes real nodes, every node pinging
                      every other at once (default 10; 0 skips it); the nodes run the last release
  --storm-nodes N     nodes per gateway in the storm run (default 3)
  --storm-default-only  run the storm once, in the default configuration (with its restart of every
                      gateway), without the A/B runs (no ready connections; node:tls): for large sizes
  --takeover-links L  links open at each take-over of one gateway (default 10,100,500; 0 skips it);
                      the target node runs the last release (docs/upgrade.md)
  --cpu-prof          run the gateways under node --cpu-prof (profiles in the run directory, kept)
  --out DIR           where JSON and SVG go (default bench/results/)
  --keep              keep the run directory (logs, configs, certificates)`;

interface Options {
  reps: number;
  seconds: number;
  pings: number;
  paths: PathId[];
  otp: OtpRuntime[];
  scaleLinks: number;
  idleSeconds: number;
  burstLinks: number;
  stormHosts: number;
  stormNodes: number;
  stormDefaultOnly: boolean;
  takeoverLinks: number[];
  cpuProf: boolean;
  out: string;
  keep: boolean;
  quick: boolean;
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      reps: { type: 'string' },
      seconds: { type: 'string' },
      pings: { type: 'string' },
      paths: { type: 'string' },
      otp: { type: 'string' },
      'scale-links': { type: 'string' },
      'burst-links': { type: 'string' },
      'storm-hosts': { type: 'string' },
      'storm-nodes': { type: 'string' },
      'takeover-links': { type: 'string' },
      'idle-seconds': { type: 'string' },
      'cpu-prof': { type: 'boolean' },
      out: { type: 'string' },
      keep: { type: 'boolean' },
      'storm-default-only': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const quick = values.quick ?? false;
  const num = (v: string | undefined, dflt: number, name: string, min: number) => {
    const n = v === undefined ? dflt : Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number ≥ ${min}, got ${v}`);
    return n;
  };
  const all: PathId[] = ['direct', 'tls', 'stunnel', 'beamgate', 'beamgate-node', 'beamgate-filtered'];
  const paths = values.paths ? (values.paths.split(',') as PathId[]) : all;
  for (const p of paths) if (!all.includes(p)) throw new Error(`unknown path ${p}; known: ${all.join(', ')}`);
  const stormHosts = Math.round(num(values['storm-hosts'], 10, 'storm-hosts', 0));
  if (stormHosts === 1) throw new Error('--storm-hosts must be 0 (no storm run) or at least 2, got 1');
  return {
    otp: runtimes(values.otp),
    quick,
    reps: Math.round(num(values.reps, quick ? 1 : 3, 'reps', 1)),
    seconds: num(values.seconds, quick ? 0.5 : 1, 'seconds', 0.05),
    pings: Math.round(num(values.pings, 5000, 'pings', 100)),
    paths,
    scaleLinks: Math.round(num(values['scale-links'], 500, 'scale-links', 0)),
    burstLinks: Math.min(MAX_STANDBY_PER_PEER, Math.round(num(values['burst-links'], MAX_STANDBY_PER_PEER, 'burst-links', 0))),
    stormHosts,
    stormNodes: Math.round(num(values['storm-nodes'], 3, 'storm-nodes', 1)),
    stormDefaultOnly: values['storm-default-only'] ?? false,
    takeoverLinks: (values['takeover-links'] ?? '10,100,500')
      .split(',')
      .map((v) => Math.round(num(v, 0, 'takeover-links', 0)))
      .filter((n) => n > 0),
    idleSeconds: num(values['idle-seconds'], quick ? 5 : 30, 'idle-seconds', 1),
    cpuProf: values['cpu-prof'] ?? false,
    out: values.out ? resolve(values.out) : RESULTS_DIR,
    keep: values.keep ?? false,
  };
}

/** The newest OTP the benchmark measures against when its root is there. */
const NEWEST_OTP = '29';

/** The runtimes of --otp, or the default: this machine's erl, plus OTP 29 from its root if made. */
function runtimes(list: string | undefined): OtpRuntime[] {
  const host = hostOtp();
  if (list === undefined) {
    const newest = host === NEWEST_OTP ? undefined : findRuntime(NEWEST_OTP);
    if (typeof newest === 'string') log(`only OTP ${host}: ${newest}`);
    return [findRuntime(host) as OtpRuntime, ...(newest && typeof newest !== 'string' ? [newest] : [])];
  }
  const out: OtpRuntime[] = [];
  for (const otp of list.split(',').map((s) => s.trim())) {
    if (!/^\d+$/.test(otp)) throw new Error(`--otp takes release numbers such as 25,29, got ${otp}`);
    const rt = findRuntime(otp);
    if (typeof rt === 'string') throw new Error(`--otp ${otp}: ${rt}`);
    if (!out.some((r) => r.otp === otp)) out.push(rt);
  }
  return out;
}

function compileBenchModule(dir: string): string {
  const ebin = join(dir, 'ebin');
  mkdirSync(ebin, { recursive: true });
  const r = spawnSync('erlc', ['-o', ebin, ERL_SOURCE], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    // erlc ships with erlang-base, but fall back to the compiler inside erl.
    const e = spawnSync('erl', ['-noshell', '-eval', `{ok, _} = compile:file("${ERL_SOURCE}", [{outdir, "${ebin}"}]), halt().`], { encoding: 'utf8' });
    if (e.status !== 0) throw new Error(`cannot compile ${ERL_SOURCE}: ${r.error?.message ?? r.stderr}${e.stderr}${e.stdout}`);
  }
  return ebin;
}

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

/** The path order of repetition `rep`: rotated, so no path always runs first or last. */
function rotated<T>(xs: readonly T[], rep: number): T[] {
  const k = rep % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

function machine(opts: Options): Record<string, string | number> {
  const otp = opts.otp.map((r) => (r.root ? `${r.otp} (${r.root})` : `${r.otp} (this machine's erl)`)).join(', ');
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGb: Math.round(os.totalmem() / 1e9),
    kernel: os.release(),
    node: process.version,
    otp,
    stunnel: stunnelAvailable() ?? 'not installed',
    loadAverage: os.loadavg().map((l) => l.toFixed(2)).join(' '),
  };
}

async function startPaths(env: BenchEnv, opts: Options, gatewayArgs: string[]): Promise<{ paths: BenchPath[]; stop(): Promise<void> }> {
  const stunnelAlias = randomAlias();
  const plain = await plainSetup(env, stunnelAlias);
  const paths: BenchPath[] = [];
  const stop = async () => {
    for (const p of paths) await p.stop();
    await plain.stop();
  };
  try {
    for (const [k, rt] of opts.otp.entries()) {
      for (const id of opts.paths) {
        if (id === 'stunnel' && k > 0) continue;
        if (id === 'stunnel' && !stunnelAvailable()) {
          log('stunnel4 is not installed: the stunnel4 pair is left out (apt-get install stunnel4 to include it)');
          continue;
        }
        log(`starting ${PATH_LABELS[id]}, nodes on OTP ${rt.otp}`);
        if (id === 'direct') paths.push(await directPath(plain, rt));
        else if (id === 'tls') paths.push(await tlsPath(plain, rt));
        else if (id === 'stunnel') paths.push(await stunnelPath(plain, stunnelAlias, rt));
        else if (id === 'beamgate-node') paths.push(await beamgatePath(env, join(env.dir, `beamgate-node-${rt.otp}`), rt, gatewayArgs, id));
        else if (id === 'beamgate-filtered') paths.push(await beamgatePath(env, join(env.dir, `beamgate-filtered-${rt.otp}`), rt, gatewayArgs, id));
        else {
          // Never a silent fallback: the beamgate path measures the native data plane or says it cannot.
          if (!existsSync(NATIVE_MODULE)) throw new Error(`the beamgate path needs the native data plane: ${NATIVE_MODULE} is not built (bash scripts/build-native.sh)`);
          paths.push(await beamgatePath(env, join(env.dir, `beamgate-${rt.otp}`), rt, gatewayArgs));
        }
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { paths, stop };
}

interface Measured {
  samples: Record<string, PathSample[]>;
  cpu: Record<string, CpuTotals>;
  peakMb: Record<string, number | undefined>;
}

type PartialSample = Omit<Partial<PathSample>, 'rate'> & { rate: Partial<Record<Size, RateResult>> };

/** Checks that a repetition measured everything before it counts. */
function complete(id: string, s: PartialSample): PathSample {
  const { rttP50Us, rttP99Us, coldMs, setupMs, rate } = s;
  assert.ok(rttP50Us !== undefined && rttP99Us !== undefined && coldMs !== undefined && setupMs !== undefined, `${id}: repetition incomplete`);
  for (const size of SIZES) assert.ok(rate[size], `${id}: no ${size} B rate`);
  return { rttP50Us, rttP99Us, coldMs, setupMs, rate: rate as Record<Size, RateResult> };
}

async function measure(paths: BenchPath[], opts: Options): Promise<Measured> {
  const millis = Math.round(opts.seconds * 1000);
  const samples: Record<string, PathSample[]> = {};
  const cpu: Record<string, CpuTotals> = {};
  for (const p of paths) {
    samples[p.key] = [];
    cpu[p.key] = { all: emptyCpu(), bulk: emptyCpu(), bulkBytes: 0 };
  }
  log('warming up every path');
  for (const p of paths) {
    await measureRate(p, 65536, 200);
    await measureRtt(p, 500);
  }
  for (let rep = 0; rep < opts.reps; rep++) {
    const order = rotated(paths, rep);
    const partial: Record<string, PartialSample> = {};
    for (const p of order) partial[p.key] = { rate: {} };
    log(`repetition ${rep + 1}/${opts.reps}: round trips`);
    for (const p of order) {
      const rtt = await withCpu(p, [cpu[p.key]!.all], () => measureRtt(p, opts.pings));
      partial[p.key]!.rttP50Us = rtt.p50Us;
      partial[p.key]!.rttP99Us = rtt.p99Us;
    }
    for (const size of SIZES) {
      log(`repetition ${rep + 1}/${opts.reps}: ${size} B messages`);
      for (const p of order) {
        const c = cpu[p.key]!;
        const bulk = BULK_SIZES.includes(size);
        const rate = await withCpu(p, bulk ? [c.all, c.bulk] : [c.all], () => measureRate(p, size, millis));
        if (bulk) c.bulkBytes += rate.bytes;
        partial[p.key]!.rate[size] = rate;
      }
    }
    log(`repetition ${rep + 1}/${opts.reps}: cold connects`);
    for (const p of order) partial[p.key]!.coldMs = await measureColdConnect(p, rep);
    log(`repetition ${rep + 1}/${opts.reps}: link set-ups`);
    for (const p of order) partial[p.key]!.setupMs = await measureSetup(p);
    for (const p of order) samples[p.key]!.push(complete(p.key, partial[p.key]!));
  }
  const peakMb: Record<string, number | undefined> = {};
  for (const p of paths) peakMb[p.key] = p.relayPids.length > 0 ? Math.max(...p.relayPids.map((pid) => memory(pid).peakMb)) : undefined;
  return { samples, cpu, peakMb };
}

async function main(): Promise<void> {
  const opts = options(process.argv.slice(2));
  const started = new Date();
  const dir = mkdtempSync(join(os.tmpdir(), 'beamgate-bench-'));
  const cookie = randomCookie();
  const env: BenchEnv = { dir, cookie, home: writeCookieHome(join(dir, 'home'), cookie), beamDir: compileBenchModule(dir), freshNodes: opts.reps };
  const gatewayArgs = opts.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${join(dir, 'profiles')}`] : [];
  const host = machine(opts);
  log(`run directory ${dir}; ${host.cores} cores, load ${host.loadAverage}`);

  const results: Results = {};
  let scale: ScaleResult | undefined;
  let burst: BurstResult | undefined;
  let storm: StormResult | undefined;
  let takeover: TakeoverResult | undefined;
  let samples: Record<string, PathSample[]> = {};
  try {
    const running = await startPaths(env, opts, gatewayArgs);
    try {
      const m = await measure(running.paths, opts);
      samples = m.samples;
      for (const p of running.paths) results[p.key] = medianFigures(m.samples[p.key]!, m.cpu[p.key]!, m.peakMb[p.key]);
    } finally {
      await running.stop();
    }
    if (opts.scaleLinks > 0) {
      log(`scale: ${opts.scaleLinks} idle links through one gateway pair, then ${opts.idleSeconds} s idle`);
      scale = await runScale(env, join(dir, 'scale'), opts.otp.at(-1)!, opts.scaleLinks, opts.idleSeconds, gatewayArgs);
    }
    if (opts.burstLinks > 0) {
      log(`burst: ${opts.burstLinks} links at once, on ready TLS connections and without`);
      burst = await runBurst(env, join(dir, 'burst'), opts.otp.at(-1)!, opts.burstLinks, gatewayArgs);
    }
    if (opts.stormHosts > 0) {
      log(`storm: ${opts.stormHosts} gateways x ${opts.stormNodes} nodes, every node pinging every other at once`);
      storm = await runStorm(env, join(dir, 'storm'), opts.otp.at(-1)!, opts.stormHosts, opts.stormNodes, gatewayArgs, opts.stormDefaultOnly);
    }
    if (opts.takeoverLinks.length > 0) {
      log(`take-over: beta's gateway replaced by beamgate run --take-over with ${opts.takeoverLinks.join(', ')} links open`);
      takeover = await runTakeover(env, join(dir, 'takeover'), opts.otp.at(-1)!, opts.takeoverLinks, gatewayArgs);
    }
  } catch (err) {
    log(`failed; logs and configs kept in ${dir}`);
    throw err;
  }

  const targets = checkTargets(results, scale, undefined, storm);
  const caption = `beamgate bench, ${started.toISOString().slice(0, 16)}Z, ${host.cores} cores, ${opts.reps} rep(s)${opts.quick ? ', quick' : ''}`;
  const text = [
    `## ${caption}`,
    '',
    `Medians over ${opts.reps} repetition(s); throughput runs of ${opts.seconds} s, ${opts.pings} round trips; CPU per GB over the 64 KiB and 1 MiB runs.`,
    `Machine: ${host.cpu}, ${host.cores} cores, Node ${host.node}, OTP ${host.otp}, ${host.stunnel}; load average at start ${host.loadAverage}.`,
    `Nodes of the stunnel pair run OTP ${opts.otp[0]!.otp}; targets are ratios against OTP ${opts.otp.at(-1)!.otp}'s paths.`,
    ...(opts.quick ? ['', '--quick: one short repetition, a smoke check. On a shared machine its ratios swing by tens of percent; take figures from the default run.'] : []),
    '',
    figuresTable(results),
    '',
    'Ratios against beamgate (↑: beamgate wins above 1×; ↓: beamgate wins below 1×):',
    '',
    ratioTable(results),
    '',
    ...(scale ? [`Scale: idle links through one gateway pair (emulated source nodes, real target node on OTP ${scale.targetOtp}):`, '', scaleTable(scale), ''] : []),
    ...(burst ? [`Burst: ${burst.links} links dialled at once through one gateway pair (emulated source nodes, real target node on OTP ${burst.targetOtp}):`, '', burstTable(burst), ''] : []),
    ...(storm
      ? [
          `Storm: ${storm.hosts} gateways x ${storm.nodesPerHost} real nodes on OTP ${storm.otp} on this machine, every node pinging every other at once (a pang is not retried):`,
          '',
          stormTable(storm),
          '',
          ...(stormBudget(storm) ? [stormBudget(storm)!, ''] : []),
          'Then every gateway of the first run killed at once and started again; each node re-pings the nodes it lost, 500 ms apart, until they answer:',
          '',
          stormRestartTable(storm),
          '',
        ]
      : []),
    ...(takeover ? [`Take-over: beta's gateway replaced by \`beamgate run --take-over\` (emulated source nodes, real target node on OTP ${takeover.targetOtp}):`, '', takeoverTable(takeover), ''] : []),
    'Targets:',
    '',
    targetsTable(targets),
    '',
    asciiChart(results),
    '',
  ].join('\n');
  console.log(text);

  mkdirSync(opts.out, { recursive: true });
  const stamp = started.toISOString().replaceAll(':', '-').slice(0, 19);
  const jsonPath = join(opts.out, `bench-${stamp}.json`);
  const svgPath = join(opts.out, `bench-${stamp}.svg`);
  const written = { ...opts, out: undefined, otp: opts.otp.map((r) => ({ otp: r.otp, root: r.root ?? null })) };
  writeFileSync(jsonPath, JSON.stringify({ started: started.toISOString(), machine: host, options: written, rootsDir: ROOTS_DIR, results, samples, scale, burst, storm, takeover, targets }, null, 2));
  writeFileSync(svgPath, svgChart(results, caption));
  console.log(`wrote ${jsonPath}\nwrote ${svgPath}`);
  if (opts.cpuProf) console.log(`gateway CPU profiles in ${join(dir, 'profiles')} (open in Chrome DevTools or speedscope)`);
  if (opts.keep || opts.cpuProf) console.log(`run directory kept: ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exit(1);
});
