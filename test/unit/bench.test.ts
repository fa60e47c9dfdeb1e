import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { emulatedFlags } from '../../src/bench/emulated-node.js';
import { parsePathKey, pathKey, pathLabel } from '../../src/bench/paths.js';
import { checkTargets, figuresTable, medianFigures, type PathFigures, type PathSample, ratioTable, releasesIn, stormBudget, stormRestartTable, stormTable, svgChart, targetsTable } from '../../src/bench/report.js';
import { machineBusySeconds, treeCpuSeconds } from '../../src/bench/proc.js';
import type { StormRun } from '../../src/bench/storm.js';
import { DFLAG_UNLINK_ID, DFLAG_V4_NC } from '../../src/framing/handshake.js';
import { asciiBars, formatNumber, formatRatio, markdownTable, median, percentile } from '../../src/bench/stats.js';
import { parseIntegerList } from '../../src/bench/workloads.js';

function sample(over: Partial<PathSample> = {}, scale = 1): PathSample {
  const rate = (msgsPerSec: number, size: number) => ({ msgsPerSec: msgsPerSec * scale, mbPerSec: (msgsPerSec * scale * size) / 1e6, bytes: msgsPerSec * scale * size });
  return {
    rttP50Us: 100,
    rttP99Us: 200,
    coldMs: 50,
    setupMs: 6,
    rate: { 64: rate(200_000, 64), 1024: rate(100_000, 1024), 65536: rate(10_000, 65536), 1048576: rate(500, 1048576) },
    ...over,
  };
}

const CPU = { all: { relay: 1, nodes: 2 }, bulk: { relay: 0.5, nodes: 1 }, bulkBytes: 2e9 };

function figures(over: Partial<PathSample> = {}, scale = 1): PathFigures {
  return medianFigures([sample(over, scale)], CPU, 50);
}

describe('bench statistics', () => {
  it('takes nearest-rank percentiles and medians', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(xs, 50)).toBe(50);
    expect(percentile(xs, 99)).toBe(99);
    expect(percentile(xs, 100)).toBe(100);
    expect(percentile([7], 1)).toBe(7);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => percentile([], 50)).toThrow(RangeError);
    expect(() => percentile([1], 101)).toThrow(RangeError);
    expect(() => median([])).toThrow(RangeError);
  });

  it('formats figures and ratios compactly', () => {
    expect(formatNumber(189_123)).toBe('189k');
    expect(formatNumber(2_500_000)).toBe('2.5M');
    expect(formatNumber(77.4)).toBe('77.4');
    expect(formatNumber(0.43)).toBe('0.43');
    expect(formatNumber(undefined)).toBe('–');
    expect(formatRatio(12.4)).toBe('12×');
    expect(formatRatio(1.26)).toBe('1.3×');
    expect(formatRatio(0.456)).toBe('0.46×');
    expect(formatRatio(Number.NaN)).toBe('–');
  });

  it('builds Markdown tables and refuses ragged rows', () => {
    expect(markdownTable(['a', 'b'], [['1', '2']])).toBe('| a | b |\n| --- | --- |\n| 1 | 2 |');
    expect(() => markdownTable(['a', 'b'], [['1']])).toThrow(RangeError);
  });

  it('scales ASCII bars to the largest value', () => {
    const text = asciiBars('t', [{ label: 'x', value: 10 }, { label: 'yy', value: 5 }], 'u', 10);
    const lines = text.split('\n');
    expect(lines[0]).toBe('t');
    expect(lines[1]).toContain('█'.repeat(10));
    expect(lines[2]).toContain('█'.repeat(5) + ' '.repeat(5));
    expect(() => asciiBars('t', [{ label: 'x', value: -1 }], 'u')).toThrow(RangeError);
  });

  it('parses the printed form of an Erlang integer list', () => {
    expect(parseIntegerList('[1,22,333]')).toEqual([1, 22, 333]);
    expect(parseIntegerList('[]')).toEqual([]);
    expect(() => parseIntegerList('{1,2}')).toThrow(/not an Erlang list/);
    expect(() => parseIntegerList('[1,a]')).toThrow(/not an integer/);
  });
});

describe('bench report', () => {
  it('takes the median of each figure over repetitions', () => {
    const f = medianFigures([sample({ rttP50Us: 90 }), sample({ rttP50Us: 300 }), sample({ rttP50Us: 100 })], CPU, 12);
    expect(f.rttP50Us).toBe(100);
    expect(f.relayCpuS).toBe(1);
    expect(f.relayCpuPerGb).toBeCloseTo(0.25);
    expect(f.nodeCpuPerGb).toBeCloseTo(0.5);
    expect(f.relayPeakMb).toBe(12);
    // Without relay processes there is no relay CPU to report.
    const direct = medianFigures([sample()], CPU, undefined);
    expect(direct.relayCpuS).toBeUndefined();
    expect(direct.relayCpuPerGb).toBeUndefined();
  });

  const SCALE = { links: 500, targetOtp: '29', establishMs: 1, rssBeforeMb: [60, 60], rssAfterMb: [70, 120], peakMb: [70, 120], perLinkKb: [50, 300], idleSeconds: 1, idleCpuMsPerSec: [1, 1], baseCpuMsPerSec: [1, 1], ticks: 0, targetSaw: 500 };

  it('checks every target as a ratio against the newest OTP release in the run', () => {
    const cpu = (nodes: number) => ({ all: { relay: 1, nodes }, bulk: { relay: 0.5, nodes }, bulkBytes: 1e9 });
    const results = {
      'direct@25': medianFigures([sample({}, 1)], cpu(0.6), undefined),
      'tls@25': medianFigures([sample({ rttP50Us: 100 }, 0.02)], cpu(12), undefined),
      'beamgate@25': medianFigures([sample({ rttP50Us: 300 }, 0.2)], cpu(0.6), 50),
      'stunnel@25': medianFigures([sample({}, 0.2)], cpu(0.9), 10),
      'direct@29': medianFigures([sample({}, 1)], cpu(0.5), undefined),
      'tls@29': medianFigures([sample({ rttP50Us: 100, rttP99Us: 200 }, 0.25)], cpu(2), undefined),
      'beamgate@29': medianFigures([sample({ rttP50Us: 125, rttP99Us: 320 }, 0.3)], cpu(0.6), 50),
    };
    expect(releasesIn(results)).toEqual(['25', '29']);
    const byName = Object.fromEntries(checkTargets(results, SCALE).map((c) => [c.target, c]));
    expect(Object.keys(byName)).toEqual([
      '64 KiB bulk vs OTP 29 inet_tls_dist',
      '1 MiB bulk vs OTP 29 inet_tls_dist',
      'RTT p50 vs OTP 29 inet_tls_dist',
      'RTT p99 vs OTP 29 inet_tls_dist',
      'BEAM CPU per GB vs OTP 29 inet_tcp_dist',
      'cold connect vs OTP 29 inet_tcp_dist',
      'gateway RSS with 500 open links',
    ]);
    // beamgate@29 moves 0.3 of direct, OTP 29 TLS 0.25: 1.2×, exactly the bound.
    expect(byName['64 KiB bulk vs OTP 29 inet_tls_dist']!.value).toBeCloseTo(1.2);
    expect(byName['64 KiB bulk vs OTP 29 inet_tls_dist']!.met).toBe(true);
    expect(byName['RTT p50 vs OTP 29 inet_tls_dist']!.value).toBeCloseTo(1.25);
    expect(byName['RTT p50 vs OTP 29 inet_tls_dist']!.met).toBe(true);
    expect(byName['RTT p99 vs OTP 29 inet_tls_dist']!.value).toBeCloseTo(1.6);
    expect(byName['RTT p99 vs OTP 29 inet_tls_dist']!.met).toBe(false);
    // BEAM CPU per GB: 0.6 against plain TCP's 0.5 on OTP 29 (OTP 25's 0.6 would have met it).
    expect(byName['BEAM CPU per GB vs OTP 29 inet_tcp_dist']!.value).toBeCloseTo(1.2);
    expect(byName['BEAM CPU per GB vs OTP 29 inet_tcp_dist']!.met).toBe(false);
    // The larger of the two gateways counts.
    expect(byName['gateway RSS with 500 open links']!.value).toBe(120);
    expect(byName['gateway RSS with 500 open links']!.met).toBe(false);
    // Asked for OTP 25 explicitly, the same checks use the OTP 25 paths.
    const old = Object.fromEntries(checkTargets(results, SCALE, '25').map((c) => [c.target, c]));
    expect(old['64 KiB bulk vs OTP 25 inet_tls_dist']!.value).toBeCloseTo(10);
  });

  it("checks the filtered path against the unfiltered one when it ran: bulk at least 0.9x, round trip p50 at most 10 µs more", () => {
    const results = {
      'beamgate@29': medianFigures([sample({ rttP50Us: 100 }, 0.5)], CPU, 50),
      'beamgate-filtered@29': medianFigures([sample({ rttP50Us: 112 }, 0.46)], CPU, 50),
    };
    const byName = Object.fromEntries(checkTargets(results, undefined).map((c) => [c.target, c]));
    expect(byName['filtered 64 KiB bulk vs beamgate']!.value).toBeCloseTo(0.92);
    expect(byName['filtered 64 KiB bulk vs beamgate']!.met).toBe(true);
    expect(byName['filtered RTT p50 over beamgate']!.value).toBeCloseTo(12);
    expect(byName['filtered RTT p50 over beamgate']!.met).toBe(false);
    expect(targetsTable(Object.values(byName))).toContain('| filtered RTT p50 over beamgate | at most 10 µs | 12.0 µs | NO |');
    // Without the filtered path there is nothing to check.
    expect(checkTargets({ 'beamgate@29': results['beamgate@29'] }, undefined).some((c) => c.target.startsWith('filtered'))).toBe(false);
  });

  it('marks targets whose paths did not run as not run, never as met', () => {
    const checks = checkTargets({ 'beamgate@29': figures() }, undefined);
    for (const c of checks) {
      expect(c.value).toBeUndefined();
      expect(c.met).toBeUndefined();
    }
    expect(checkTargets({}, undefined).every((c) => c.met === undefined)).toBe(true);
  });

  it('compares beamgate on each release with the paths of that release and with stunnel', () => {
    const results = { 'direct@25': figures(), 'stunnel@25': figures({}, 0.5), 'beamgate@25': figures({}, 0.9), 'tls@29': figures({}, 0.3), 'beamgate@29': figures({}, 0.6) };
    const rows = ratioTable(results).split('\n').slice(2).map((r) => r.split(' | ')[0]!.replace('| ', ''));
    expect(rows).toEqual([
      'beamgate, OTP 25 ÷ inet_tcp_dist (direct, no security), OTP 25',
      'beamgate, OTP 25 ÷ stunnel4 pair (mutual TLS), OTP 25',
      'beamgate, OTP 29 ÷ stunnel4 pair (mutual TLS), OTP 25',
      'beamgate, OTP 29 ÷ inet_tls_dist (OTP mutual TLS), OTP 29',
    ]);
    expect(ratioTable(results)).toContain('| 2.0× |');
    expect(ratioTable({ 'direct@25': figures() })).toBe('(beamgate did not run)');
  });

  it('names paths by id and OTP release', () => {
    expect(pathKey('tls', '29')).toBe('tls@29');
    expect(parsePathKey('beamgate@27')).toEqual({ id: 'beamgate', otp: '27' });
    expect(pathLabel('direct@25')).toBe('inet_tcp_dist (direct, no security), OTP 25');
    expect(() => parsePathKey('quic@29')).toThrow(/not a path key/);
    expect(() => parsePathKey('tls')).toThrow(/not a path key/);
  });

  it('sends the flags each target release requires from the emulated nodes', () => {
    expect(emulatedFlags(25) & DFLAG_V4_NC).toBe(0n);
    expect(emulatedFlags(25) & DFLAG_UNLINK_ID).toBe(DFLAG_UNLINK_ID);
    for (const otp of [26, 27, 29]) expect(emulatedFlags(otp) & (DFLAG_V4_NC | DFLAG_UNLINK_ID)).toBe(DFLAG_V4_NC | DFLAG_UNLINK_ID);
    // Never DFLAG_PUBLISHED: the emulated nodes are hidden.
    expect(emulatedFlags(29) & 1n).toBe(0n);
  });

  it('renders the tables and an SVG with one bar per path and panel', () => {
    const results = { 'direct@25': figures(), 'beamgate@25': figures({}, 0.9) };
    expect(figuresTable(results).split('\n')).toHaveLength(4);
    expect(figuresTable(results)).toContain('| beamgate gateway pair, OTP 25 |');
    expect(ratioTable(results)).toContain('0.90×');
    const svg = svgChart(results, 'caption <x>');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('caption &lt;x&gt;');
    expect(svg.match(/<rect x=/g)).toHaveLength(2 * 6);
    expect(svg).toContain('>beamgate 25</text>');
  });

  it('reports a storm whose mesh did not form as not formed, with the pairs it linked', () => {
    const run = (over: Partial<StormRun>): StormRun => ({
      standby: 8, plane: 'native', pings: 870, pangs: 0, answeredMs: 6_800, pairsLinked: 435, pairs: 435, fullMeshMs: 11_500,
      handshakes: 170, resumed: 150, handshakesPerSec: 14.24, cpuMsPerPair: 45.06, globalDisconnects: 0, maxRssMb: 80.4, ...over,
    });
    const rows = stormTable({ hosts: 10, nodesPerHost: 3, otp: '29', runs: [run({}), run({ standby: 0, pangs: 9, pairsLinked: 430, fullMeshMs: undefined, globalDisconnects: 12 })] }).split('\n');
    expect(rows).toHaveLength(4);
    expect(rows[2]).toContain('| 0 of 870 | 6.8 s | 435 of 435 | 11.5 s | 170 (150) | 14.2 | 45.1 ms | 0 | 80 MB |');
    expect(rows[3]).toContain('| 9 of 870 | 6.8 s | 430 of 435 | not formed |');
    expect(rows[3]).toContain('| 12 | 80 MB |');
    // The run with no gateway is one more row, with '–' where a gateway's figure would be.
    const plain = { pings: 870, pangs: 0, answeredMs: 2_300, pairsLinked: 435, pairs: 435, fullMeshMs: 2_900, globalDisconnects: 0 };
    const withPlain = stormTable({ hosts: 10, nodesPerHost: 3, otp: '29', runs: [run({})], plain }).split('\n');
    expect(withPlain).toHaveLength(4);
    expect(withPlain[3]).toBe('| none (plain inet_tcp_dist, no gateway) | – | 0 of 870 | 2.3 s | 435 of 435 | 2.9 s | – | – | – | 0 | – | – | – |');
  });

  it("reports the machine's CPU until every ping was answered: busy of all it had, and the nodes' and gateways' shares", () => {
    const run: StormRun = {
      standby: 6, plane: 'native', pings: 9900, pangs: 7000, answeredMs: 20_600, pairsLinked: 736, pairs: 4950, fullMeshMs: undefined,
      handshakes: 161, resumed: 156, handshakesPerSec: 7.7, cpuMsPerPair: 5.7, globalDisconnects: 2492, maxRssMb: 110,
      cpu: { windowS: 20.6, cores: 2, busyS: 40.93, nodesS: 11.04, gatewaysS: 27.96 },
    };
    const plain = { pings: 9900, pangs: 0, answeredMs: 7_600, pairsLinked: 4950, pairs: 4950, fullMeshMs: 7_700, globalDisconnects: 0, cpu: { windowS: 7.6, cores: 2, busyS: 14.96, nodesS: 14.41, gatewaysS: 0 } };
    const rows = stormTable({ hosts: 20, nodesPerHost: 5, otp: '25', runs: [run], plain }).split('\n');
    expect(rows[0]).toContain('| machine CPU busy until answered | of it: nodes / gateways |');
    expect(rows[2]).toMatch(/\| 110 MB \| 40\.9 of 41\.2 CPU-s \| 11\.0 \/ 28\.0 CPU-s \|$/);
    // With no gateway there is no gateway share, not a zero one.
    expect(rows[3]).toMatch(/\| – \| 15\.0 of 15\.2 CPU-s \| 14\.4 \/ – CPU-s \|$/);
    // Against what net_setuptime leaves: 2 cores x 7 s.
    const budget = stormBudget({ hosts: 20, nodesPerHost: 5, otp: '25', runs: [run], plain })!.split('\n');
    expect(budget[0]).toBe('CPU for the set-ups: 2 cores x net_setuptime (7 s) = 14.0 CPU-s.');
    expect(budget[1]).toBe('With no gateway the nodes alone used 14.4 CPU-s until every answer (more than that, with no gateway at all; the machine was busy 98 % of 7.6 s).');
    expect(budget[2]).toBe('native, 6 ready per peer: nodes 11.0 + gateways 28.0 CPU-s (the machine busy 99 % of 20.6 s).');
    const small = { ...plain, cpu: { ...plain.cpu, nodesS: 3.1 } };
    expect(stormBudget({ hosts: 10, nodesPerHost: 3, otp: '29', runs: [], plain: small })!.split('\n')[1]).toContain('used 3.1 CPU-s until every answer (within it;');
    // Results written before the CPU was measured have no such lines.
    expect(stormBudget({ hosts: 10, nodesPerHost: 3, otp: '29', runs: [{ ...run, cpu: undefined }] })).toBeUndefined();
  });

  it('checks the storm targets: a mesh that did not form or a failed ping is not met, whatever the time', () => {
    const run = (over: Partial<StormRun>): StormRun => ({
      standby: 8, plane: 'native', pings: 9900, pangs: 0, answeredMs: 20_000, pairsLinked: 4950, pairs: 4950, fullMeshMs: 42_000,
      handshakes: 1900, resumed: 1800, handshakesPerSec: 10, cpuMsPerPair: 30, globalDisconnects: 0, maxRssMb: 90, ...over,
    });
    const storm = (first: StormRun) => ({ hosts: 20, nodesPerHost: 5, otp: '29', runs: [first] });
    const byName = (st: ReturnType<typeof storm>) => Object.fromEntries(checkTargets({}, undefined, '29', st).map((c) => [c.target, c]));
    const MESH = 'storm of 100 nodes on 20 hosts: whole mesh, no failed ping';
    const REFORM = 'every gateway of the storm restarted at once: mesh re-formed';
    const formed = byName(storm(run({ restart: { gatewaysUpMs: 2_000, reformMs: 12_500, pairsLinked: 4950, retries: 300, globalDisconnects: 4 } })));
    expect(formed[MESH]).toMatchObject({ value: 42, bound: 60, unit: 's', met: true });
    expect(formed[REFORM]).toMatchObject({ value: 12.5, bound: 30, met: true });
    expect(targetsTable(Object.values(formed))).toContain(`| ${MESH} | at most 60 s | 42.0 s | yes |`);
    // In time, but one ping failed: the target asks for none.
    expect(byName(storm(run({ pangs: 1 })))[MESH]!.met).toBe(false);
    const failed = byName(storm(run({ pangs: 40, pairsLinked: 4900, fullMeshMs: undefined, restart: { gatewaysUpMs: 2_000, reformMs: undefined, pairsLinked: 4000, retries: 9000, globalDisconnects: 80 } })));
    expect(failed[MESH]!.met).toBe(false);
    expect(targetsTable([failed[MESH]!, failed[REFORM]!])).toContain('| not formed (40 failed pings, 4900 of 4950 pairs) | NO |');
    expect(failed[REFORM]!.shown).toBe('not re-formed (4000 of 4950 pairs)');
    expect(stormRestartTable(storm(run({ restart: { gatewaysUpMs: 2_000, reformMs: 12_500, pairsLinked: 4950, retries: 300, globalDisconnects: 4 } })))).toContain('| 2.0 s | 12.5 s | 4950 of 4950 | 300 | 4 |');
    expect(stormRestartTable(storm(run({})))).toMatch(/not run/);
    // Without a storm run, the storm targets are not listed at all.
    expect(checkTargets({}, undefined, '29').some((c) => c.target.startsWith('storm'))).toBe(false);
  });

  it('holds gateway RSS to 100 MB up to 500 links and 150 MB up to 1,000, and sets no bound beyond', () => {
    const at = (links: number, mb: number) => checkTargets({}, { ...SCALE, links, rssAfterMb: [mb, 60] }).find((c) => c.target.startsWith('gateway RSS'))!;
    expect(at(500, 110)).toMatchObject({ bound: 100, met: false });
    expect(at(1000, 110)).toMatchObject({ bound: 150, met: true, value: 110 });
    expect(at(2000, 110).met).toBeUndefined();
  });

  it("counts a process tree's CPU, a forked grandchild's included, and the machine's busy time around it", async () => {
    // sh forks node (a second command follows it, so sh cannot exec it): the CPU is the grandchild's.
    const burn = `const t = process.cpuUsage(); while (process.cpuUsage(t).user < 300000); console.log('burnt'); process.stdin.resume()`;
    const sh = spawn('sh', ['-c', `"${process.execPath}" -e "${burn}"; true`], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const busy0 = machineBusySeconds();
      const tree0 = treeCpuSeconds([sh.pid!]);
      let out = '';
      sh.stdout!.setEncoding('utf8');
      sh.stdout!.on('data', (d: string) => (out += d));
      while (!out.includes('burnt')) await once(sh.stdout!, 'data');
      const spent = treeCpuSeconds([sh.pid!]) - tree0;
      expect(spent).toBeGreaterThanOrEqual(0.29);
      expect(machineBusySeconds() - busy0).toBeGreaterThanOrEqual(0.29);
      // The bench's own process is not under sh.
      expect(treeCpuSeconds([sh.pid!])).toBeLessThan(treeCpuSeconds([sh.pid!, process.pid]));
    } finally {
      sh.stdin!.end();
      await once(sh, 'exit');
    }
  });
});
