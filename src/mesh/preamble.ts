// The first bytes a dialling gateway writes inside TLS: what the connection is
// for. A link names its target node (PORT_PLEASE2 only told the dialling side
// which listener was hit, and send_name names the source, not the target); a
// probe only proves the TLS port works and is then closed; a registry link
// carries the dialling gateway's EPMD registrations (src/registry/); a
// standby connection is held ready for a later link, whose own preamble
// follows when the dialling side takes it (src/mesh/standby.ts).

export const PREAMBLE_MAGIC = Buffer.from('BGW1', 'latin1');
const KIND_LINK = 0x4c; // 'L'
const KIND_PROBE = 0x50; // 'P'
const KIND_REGISTRY = 0x52; // 'R'
const KIND_STANDBY = 0x53; // 'S'
/**
 * Magic, kind, name length, name (at most 255 bytes). A protocol constant,
 * not a limit: the name's length is one byte, so no preamble can be longer,
 * and a smaller bound would refuse node names the format allows.
 */
export const MAX_PREAMBLE_BYTES = PREAMBLE_MAGIC.length + 2 + 255;

export type Preamble = { kind: 'link'; target: string } | { kind: 'probe' } | { kind: 'registry' } | { kind: 'standby' };

const KIND_BYTE = { link: KIND_LINK, probe: KIND_PROBE, registry: KIND_REGISTRY, standby: KIND_STANDBY } as const;

export function encodePreamble(p: Preamble): Buffer {
  const name = Buffer.from(p.kind === 'link' ? p.target : '', 'latin1');
  if (name.length > 255) throw new Error(`node name too long for a preamble: ${name.length} bytes`);
  return Buffer.concat([PREAMBLE_MAGIC, Buffer.from([KIND_BYTE[p.kind], name.length]), name]);
}

export type PreambleParse = { kind: 'incomplete' } | { kind: 'error'; reason: string } | { kind: 'ok'; preamble: Preamble; consumed: number };

export function parsePreamble(buf: Buffer): PreambleParse {
  const m = PREAMBLE_MAGIC.length;
  const head = Math.min(buf.length, m);
  if (!buf.subarray(0, head).equals(PREAMBLE_MAGIC.subarray(0, head))) return { kind: 'error', reason: 'bad preamble magic' };
  if (buf.length < m + 2) return { kind: 'incomplete' };
  const kind = buf[m]!;
  const len = buf[m + 1]!;
  if (buf.length < m + 2 + len) return { kind: 'incomplete' };
  const consumed = m + 2 + len;
  if (kind === KIND_PROBE) return len === 0 ? { kind: 'ok', preamble: { kind: 'probe' }, consumed } : { kind: 'error', reason: 'probe with a name' };
  if (kind === KIND_REGISTRY) return len === 0 ? { kind: 'ok', preamble: { kind: 'registry' }, consumed } : { kind: 'error', reason: 'registry link with a name' };
  if (kind === KIND_STANDBY) return len === 0 ? { kind: 'ok', preamble: { kind: 'standby' }, consumed } : { kind: 'error', reason: 'standby connection with a name' };
  if (kind !== KIND_LINK) return { kind: 'error', reason: `unknown preamble kind ${kind}` };
  if (len === 0) return { kind: 'error', reason: 'link preamble without a target' };
  return { kind: 'ok', preamble: { kind: 'link', target: buf.toString('latin1', m + 2, consumed) }, consumed };
}
