// Everything one gateway needs before it opens a socket: the roster, its own
// entry in it, and its TLS material, all checked. Start-up and reload share it.

import { loadTlsMaterial, type TlsMaterial } from '../pki/material.js';
import { ConfigError, gatewayOrThrow, loadRoster, type Roster, tlsPathsFor } from './roster.js';

export interface GatewayConfig {
  roster: Roster;
  gateway: string;
  material: TlsMaterial;
}

/** Which gateway this process is: the --gateway flag, else BEAMGATE_GATEWAY. */
export function resolveGatewayName(flag: string | undefined): string {
  const name = flag ?? process.env.BEAMGATE_GATEWAY;
  if (!name) throw new ConfigError(['which gateway is this? pass --gateway NAME or set BEAMGATE_GATEWAY']);
  return name;
}

export function loadGatewayConfig(path: string, gateway: string): GatewayConfig {
  const roster = loadRoster(path);
  gatewayOrThrow(roster, gateway);
  const material = loadTlsMaterial(tlsPathsFor(roster, gateway), gateway, roster);
  if (Array.isArray(material)) throw new ConfigError(material);
  return { roster, gateway, material };
}
