// Free ports and loopback aliases: the same helpers the benchmark uses.

import { freePort } from '../../src/bench/proc.js';

export { freePort, randomAlias } from '../../src/bench/proc.js';

export async function freePorts(n: number): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < n) out.add(await freePort());
  return [...out];
}
