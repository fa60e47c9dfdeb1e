// Builds a mesh whose gateways all run on this machine: a roster, its
// certificates and each gateway's inetrc, in one directory. The demo, the
// tests and the benchmark all start from here.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { Limits } from '../config/limits.js';
import { loadRoster, type LogLevel, type Roster } from '../config/roster.js';
import { erlFlags, inetrc, walledOff } from '../erlang/flags.js';
import { issueCerts } from './certs.js';

export interface LocalGateway {
  name: string;
  tlsPort: number;
  epmdPort: number;
  /** Metrics port on 127.0.0.1, or false for none. */
  metricsPort: number | false;
  /** Short name → static port. */
  nodes: Record<string, number>;
  /** Address to dial/listen on; 127.0.0.1 by default. */
  address?: string;
  loopback?: string;
  /** `standInPorts` in the roster: "mirror" or "LOW-HIGH"; the roster's default when absent. */
  standInPorts?: string;
}

export interface LocalMeshSpec {
  dir: string;
  gateways: LocalGateway[];
  /** Appended to a gateway's name to form its node host ("alpha" + ".demo"). */
  hostSuffix?: string;
  operators?: { gateway: string; pattern: string }[];
  localOnly?: { gateway: string; pattern: string }[];
  limits?: Partial<Limits>;
  logLevel?: LogLevel;
  /** The roster's `policy` section, as written in YAML. */
  policy?: unknown;
}

export interface LocalMesh {
  dir: string;
  rosterPath: string;
  roster: Roster;
  inetrcPath(gateway: string): string;
  /** `erl` flags for a roster node (static port) or an operator node (no port, hidden), as `node-flags` prints them. */
  nodeArgs(fullName: string): string[];
  hostOf(gateway: string): string;
}

export async function buildLocalMesh(spec: LocalMeshSpec): Promise<LocalMesh> {
  const suffix = spec.hostSuffix ?? '.demo';
  const hostOf = (gw: string) => `${gw}${suffix}`;
  mkdirSync(spec.dir, { recursive: true });
  const doc: Record<string, unknown> = {
    gateways: Object.fromEntries(
      spec.gateways.map((g) => [
        g.name,
        {
          host: hostOf(g.name),
          address: `${g.address ?? '127.0.0.1'}:${g.tlsPort}`,
          ...(g.loopback ? { loopback: g.loopback } : {}),
          epmdPort: g.epmdPort,
          metrics: g.metricsPort === false ? false : `127.0.0.1:${g.metricsPort}`,
          ...(g.standInPorts ? { standInPorts: g.standInPorts } : {}),
        },
      ]),
    ),
    nodes: spec.gateways.flatMap((g) => Object.entries(g.nodes).map(([short, port]) => ({ name: `${short}@${hostOf(g.name)}`, gateway: g.name, port }))),
    ...(spec.operators ? { operators: spec.operators } : {}),
    ...(spec.localOnly ? { localOnly: spec.localOnly } : {}),
    tls: { ca: 'certs/ca.pem', cert: 'certs/{gateway}.pem', key: 'certs/{gateway}-key.pem' },
    ...(spec.limits ? { limits: spec.limits } : {}),
    log: { level: spec.logLevel ?? 'info' },
    ...(spec.policy !== undefined ? { policy: spec.policy } : {}),
  };
  const rosterPath = join(spec.dir, 'roster.yaml');
  writeFileSync(rosterPath, stringify(doc));
  const roster = loadRoster(rosterPath);
  await issueCerts(roster, [...roster.gateways.keys()], false);
  for (const g of roster.gateways.keys()) writeFileSync(join(spec.dir, `${g}.inetrc`), inetrc(roster, g));

  return {
    dir: spec.dir,
    rosterPath,
    roster,
    hostOf,
    inetrcPath: (g) => join(spec.dir, `${g}.inetrc`),
    nodeArgs(fullName) {
      const host = fullName.slice(fullName.indexOf('@') + 1);
      const gw = [...roster.gateways.values()].find((g) => g.host === host);
      if (!gw) throw new Error(`no gateway has host ${host}`);
      const node = roster.nodes.get(fullName);
      return erlFlags({
        name: fullName,
        epmdPort: gw.epmdPort,
        inetrcPath: join(spec.dir, `${gw.name}.inetrc`),
        ...(node ? { port: node.port } : { hidden: true }),
        connectAll: walledOff(roster, fullName).length === 0,
      });
    },
  };
}
