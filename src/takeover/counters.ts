// Prometheus counters across a take-over: the old process sends every
// beamgate counter's samples, the new one adds them to its own before it
// serves, so rate() and increase() see one gateway whose counters kept
// rising. Gauges are not carried: the new process measures them itself (open
// links, registrations). Histograms (the TLS handshake times) and Node's
// process metrics restart from zero, which Prometheus reads as a counter
// reset, as after any restart.

import { Counter, type Registry } from 'prom-client';
import type { CounterSample } from './protocol.js';

const OURS = /^beamgate_[a-z_]+_total$/;

export async function counterSamples(registry: Registry, defaultLabels: readonly string[]): Promise<CounterSample[]> {
  const out: CounterSample[] = [];
  for (const m of await registry.getMetricsAsJSON()) {
    if (String(m.type) !== 'counter' || !OURS.test(m.name)) continue;
    for (const v of m.values) {
      if (v.value === 0) continue;
      const labels: Record<string, string> = {};
      for (const [k, x] of Object.entries(v.labels)) if (!defaultLabels.includes(k)) labels[k] = String(x);
      out.push({ name: m.name, labels, value: v.value });
    }
  }
  return out;
}

/** Adds the samples to this registry's counters; returns the samples it had no counter or label for (a metric renamed across versions). */
export function addCounterSamples(registry: Registry, samples: CounterSample[]): number {
  let skipped = 0;
  for (const s of samples) {
    const metric = registry.getSingleMetric(s.name);
    if (!(metric instanceof Counter) || !OURS.test(s.name) || !(s.value > 0)) {
      skipped++;
      continue;
    }
    try {
      metric.inc(s.labels, s.value);
    } catch {
      // A label this build's counter does not have.
      skipped++;
    }
  }
  return skipped;
}
