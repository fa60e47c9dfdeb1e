// A bare EPMD client for tests: one request, the whole answer.

import net from 'node:net';
import { encodeNamesRequest, encodePortPlease2Request, parsePort2Resp, type PortInfo } from '../../src/epmd/protocol.js';

/** Sends one EPMD request and resolves with everything answered until the server closes (ALIVE2: until the first answer). */
export function epmdRequest(host: string, port: number, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect(port, host, () => s.write(body));
    s.on('data', (d) => {
      chunks.push(d);
      if (body[2] === 120) s.end(); // ALIVE2: the answer comes, then we hang up
    });
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

/** PORT_PLEASE2 for `name` on the EPMD at host:port: its answer, or null for not found. */
export async function portPlease(host: string, port: number, name: string): Promise<PortInfo | null> {
  const r = parsePort2Resp(await epmdRequest(host, port, encodePortPlease2Request(name)));
  if (r.kind !== 'ok') throw new Error(`bad PORT2_RESP: ${JSON.stringify(r)}`);
  return r.info;
}

/** NAMES on the EPMD at host:port, as net_adm:names/1 reads it: name → port. */
export async function names(host: string, port: number): Promise<Record<string, number>> {
  const text = (await epmdRequest(host, port, encodeNamesRequest())).subarray(4).toString('latin1');
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^name (\S+) at port (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}
