import { describe, expect, it } from 'vitest';
import { checkTargets, figuresTable, medianFigures, type PathFigures, type PathSample, ratioTable, svgChart } from '../../src/bench/report.js';
import { asciiBars, formatNumber, formatRatio, markdownTable, median, percentile } from '../../src/bench/stats.js';
import { parseIntegerList } from '../../src/bench/workloads.js';

function sample(over: Partial<PathSample> = {}, scale = 1): PathSample {
  const rate = (msgsPerSec: number, size: number) => ({ msgsPerSec: msgsPerSec * scale, mbPerSec: (msgsPerSec * scale * size) / 1e6, bytes: msgsPerSec * scale * size });
  return {
    rttP50Us: 100,
    rttP99Us: 200,
    coldMs: 50,
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

  it('checks every target as a ratio against the right path', () => {
    const results = {
      direct: figures({}, 1),
      tls: figures({ rttP50Us: 100, coldMs: 200 }, 0.1),
      stunnel: figures({}, 0.5),
      beamgate: figures({ rttP50Us: 140, coldMs: 60 }, 0.95),
    };
    const scale = { links: 200, establishMs: 1, rssBeforeMb: [60, 60], rssAfterMb: [70, 120], peakMb: [70, 120], perLinkKb: [50, 300], idleSeconds: 1, idleCpuMsPerSec: [1, 1], baseCpuMsPerSec: [1, 1], ticks: 0, targetSaw: 200 };
    const checks = checkTargets(results, scale);
    const byName = Object.fromEntries(checks.map((c) => [c.target, c]));
    expect(byName['64 KiB bulk vs stunnel4 pair']!.value).toBeCloseTo(1.9);
    expect(byName['64 KiB bulk vs stunnel4 pair']!.met).toBe(true);
    expect(byName['1 MiB bulk vs inet_tls_dist']!.value).toBeCloseTo(9.5);
    expect(byName['RTT p50 vs inet_tls_dist']!.value).toBeCloseTo(1.4);
    expect(byName['RTT p50 vs inet_tls_dist']!.met).toBe(true);
    expect(byName['64 B msg/s vs inet_tcp_dist']!.value).toBeCloseTo(0.95);
    expect(byName['cold connect vs inet_tls_dist']!.value).toBeCloseTo(0.3);
    // The larger of the two gateways counts.
    expect(byName['gateway RSS with 200 idle links']!.value).toBe(120);
    expect(byName['gateway RSS with 200 idle links']!.met).toBe(false);
  });

  it('marks targets whose paths did not run as not run, never as met', () => {
    const checks = checkTargets({ beamgate: figures() }, undefined);
    for (const c of checks) {
      expect(c.value).toBeUndefined();
      expect(c.met).toBeUndefined();
    }
  });

  it('renders the tables and an SVG with one bar per path and panel', () => {
    const results = { direct: figures(), beamgate: figures({}, 0.9) };
    expect(figuresTable(results).split('\n')).toHaveLength(4);
    expect(ratioTable(results)).toContain('0.90×');
    const svg = svgChart(results, 'caption <x>');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('caption &lt;x&gt;');
    expect(svg.match(/<rect x=/g)).toHaveLength(2 * 6);
  });
});
