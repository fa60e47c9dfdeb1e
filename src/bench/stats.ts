// Numbers and text for the benchmark report: percentiles, medians, ratios,
// the table and the ASCII chart. Pure functions, unit-tested.

/** Nearest-rank percentile of an ascending list (p in 0..100). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new RangeError('percentile of an empty list');
  if (p < 0 || p > 100) throw new RangeError(`percentile ${p} is outside 0..100`);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('median of an empty list');
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** A ratio printed for a table cell: 2 significant digits, "×" suffix. */
export function formatRatio(r: number): string {
  if (!Number.isFinite(r)) return '–';
  return `${r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(2)}×`;
}

/** A measured figure, compact: 189123 → "189k", 77.4 → "77", 0.43 → "0.43". */
export function formatNumber(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** A Markdown table; every row must have as many cells as the header. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  for (const r of rows) {
    if (r.length !== header.length) throw new RangeError(`row has ${r.length} cells, header has ${header.length}`);
  }
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export interface Bar {
  label: string;
  value: number;
}

/**
 * Horizontal bars scaled to the largest value, one line each, with the value
 * printed after the bar. Values below zero are not meaningful here.
 */
export function asciiBars(title: string, bars: readonly Bar[], unit: string, width = 40): string {
  const max = Math.max(0, ...bars.map((b) => b.value));
  const labelWidth = Math.max(0, ...bars.map((b) => b.label.length));
  const lines = bars.map((b) => {
    if (b.value < 0) throw new RangeError(`bar ${b.label} has negative value ${b.value}`);
    const n = max > 0 ? Math.round((b.value / max) * width) : 0;
    const bar = '█'.repeat(n) || (b.value > 0 ? '▏' : '');
    return `  ${b.label.padEnd(labelWidth)} ${bar.padEnd(width)} ${formatNumber(b.value)} ${unit}`;
  });
  return [title, ...lines].join('\n');
}
