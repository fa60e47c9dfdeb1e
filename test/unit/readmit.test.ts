// What a reload does to an open link: it stays only if the new roster would
// admit it now, and otherwise the refusal names the reason a new link would get.

import { describe, expect, it } from 'vitest';
import { parseRoster } from '../../src/config/roster.js';
import type { LinkInfo } from '../../src/mesh/link.js';
import { readmit } from '../../src/mesh/readmit.js';

const roster = (extra = '', nodes = ['a1@alpha.example, gateway: alpha, port: 5001', 'b1@beta.example, gateway: beta, port: 5001']) =>
  parseRoster(
    `
gateways:
  alpha: { host: alpha.example, address: "10.0.0.1:4370" }
  beta:  { host: beta.example,  address: "10.0.0.2:4370" }
nodes:
${nodes.map((n) => `  - { name: ${n} }`).join('\n')}
operators:
  - { gateway: beta, pattern: "ops_*" }
tls: { ca: ca.pem, cert: "{gateway}.pem", key: "{gateway}-key.pem"${extra} }
`,
    '/etc/beamgate',
  );

// On alpha: a1 dialled b1 (outbound), and b1 dialled a1 (inbound).
const outbound: LinkInfo = {
  peer: 'beta',
  direction: 'outbound',
  localNode: 'a1@alpha.example',
  remoteNode: 'b1@beta.example',
  sourceName: 'a1@alpha.example',
  sourceHidden: false,
  targetName: 'b1@beta.example',
  peerSerial: '0ABC',
};
const inbound: LinkInfo = {
  peer: 'beta',
  direction: 'inbound',
  localNode: 'a1@alpha.example',
  remoteNode: 'b1@beta.example',
  sourceName: 'b1@beta.example',
  sourceHidden: false,
  targetName: 'a1@alpha.example',
  peerSerial: '0ABC',
};
const operator: LinkInfo = { ...inbound, remoteNode: 'ops_*', sourceName: 'ops_jane@beta.example', sourceHidden: true };
// a1 dialled back a listening operator on beta (RabbitMQ's CLI answering a broker).
const dialBack: LinkInfo = { ...outbound, remoteNode: 'ops_*', targetName: 'ops_jane@beta.example' };

const why = (r: ReturnType<typeof readmit>) => (r ? { reason: r.reason, message: r.message } : undefined);

describe('readmitting open links after a reload', () => {
  it('keeps every link the roster still admits, an operator\'s included', () => {
    for (const info of [outbound, inbound, operator, dialBack]) expect(readmit(roster(), 'alpha', info)).toBeUndefined();
  });

  it('cuts links of a revoked certificate, however its serial is spelled', () => {
    for (const info of [outbound, inbound]) {
      expect(why(readmit(roster(', revoked: ["00:0a:bc"]'), 'alpha', info))).toEqual({ reason: 'cert_revoked', message: 'certificate of beta (serial ABC) is now revoked' });
    }
    expect(readmit(roster(', revoked: ["ABD"]'), 'alpha', outbound)).toBeUndefined();
  });

  it('cuts links whose peer gateway left the roster', () => {
    const r = parseRoster(
      `
gateways:
  alpha: { host: alpha.example, address: "10.0.0.1:4370" }
nodes:
  - { name: a1@alpha.example, gateway: alpha, port: 5001 }
tls: { ca: ca.pem, cert: c.pem, key: k.pem }
`,
      '/etc/beamgate',
    );
    expect(why(readmit(r, 'alpha', inbound))).toEqual({ reason: 'wrong_identity', message: 'gateway beta is no longer in the roster' });
  });

  it('cuts a link whose operator became local-only: such names never leave their host', () => {
    const r = parseRoster(
      `
gateways:
  alpha: { host: alpha.example, address: "10.0.0.1:4370" }
  beta:  { host: beta.example,  address: "10.0.0.2:4370" }
nodes:
  - { name: a1@alpha.example, gateway: alpha, port: 5001 }
  - { name: b1@beta.example, gateway: beta, port: 5001 }
localOnly:
  - { gateway: beta, pattern: "ops_*" }
tls: { ca: ca.pem, cert: c.pem, key: k.pem }
`,
      '/etc/beamgate',
    );
    expect(why(readmit(r, 'alpha', operator))?.reason).toBe('node_not_owned');
    expect(why(readmit(r, 'alpha', dialBack))?.reason).toBe('unknown_target');
  });

  it('cuts links whose source or target node is gone or moved, with the reason a new link would get', () => {
    const noB1 = roster('', ['a1@alpha.example, gateway: alpha, port: 5001']);
    expect(why(readmit(noB1, 'alpha', inbound))).toEqual({ reason: 'node_not_owned', message: 'node b1@beta.example is no longer admitted on gateway beta' });
    expect(why(readmit(noB1, 'alpha', outbound))).toEqual({ reason: 'unknown_target', message: 'b1@beta.example is no longer a node or operator of gateway beta' });
    const noA1 = roster('', ['b1@beta.example, gateway: beta, port: 5001']);
    expect(why(readmit(noA1, 'alpha', outbound))).toEqual({ reason: 'not_in_roster', message: 'node a1@alpha.example is no longer admitted on gateway alpha' });
    expect(why(readmit(noA1, 'alpha', inbound))).toEqual({ reason: 'unknown_target', message: 'a1@alpha.example is no longer a node or operator of gateway alpha' });
    const noOperators = parseRoster(
      `
gateways:
  alpha: { host: alpha.example, address: "10.0.0.1:4370" }
  beta:  { host: beta.example,  address: "10.0.0.2:4370" }
nodes:
  - { name: a1@alpha.example, gateway: alpha, port: 5001 }
tls: { ca: ca.pem, cert: c.pem, key: k.pem }
`,
      '/etc/beamgate',
    );
    expect(why(readmit(noOperators, 'alpha', operator))?.reason).toBe('node_not_owned');
    expect(why(readmit(noOperators, 'alpha', dialBack))?.reason).toBe('unknown_target');
  });
});
