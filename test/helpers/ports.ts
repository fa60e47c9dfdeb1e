import net from 'node:net';
import { randomInt } from 'node:crypto';

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

export async function freePorts(n: number): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < n) out.add(await freePort());
  return [...out];
}

/**
 * A loopback alias unlikely to be used by another test run at the same time
 * (127.64.0.0/10), so concurrent suites never fight over an address.
 */
export function randomAlias(): string {
  return `127.${64 + randomInt(64)}.${randomInt(256)}.${2 + randomInt(250)}`;
}
