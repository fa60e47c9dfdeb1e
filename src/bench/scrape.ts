// Reads a gateway's /metrics during a bench run: the sum of a metric's series
// whose labels contain a given text. A series that is not there is an error,
// not a zero (the bench would otherwise report a figure nobody measured).

import assert from 'node:assert/strict';

/** The text of the gateway's /metrics on 127.0.0.1:`port`: figures that must agree are read from one scrape. */
export async function scrape(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

/** The sum of `name`'s labelled series in a scrape, over those whose labels contain `labels`. */
export function sumOf(text: string, name: string, labels: string): number {
  let sum = 0;
  let seen = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) || !line.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    seen = true;
  }
  assert.ok(seen, `no series ${name}{${labels}} in the scrape`);
  return sum;
}

/** `sumOf` over a scrape of its own. */
export async function metricValue(port: number, name: string, labels: string): Promise<number> {
  return sumOf(await scrape(port), name, labels);
}
