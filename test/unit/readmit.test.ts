// What a reload does to an open link: it stays only if the new roster and CA
// bundle would admit it now, and otherwise the refusal names the reason a new
// link would get.

import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseRoster, type Roster } from '../../src/config/roster.js';
import type { LinkInfo } from '../../src/mesh/link.js';
import { readmit as readmitWith } from '../../src/mesh/readmit.js';
import { type CaCertificate, parseCaBundle } from '../../src/pki/ca-bundle.js';
import { createCa, createGatewayCert } from '../../src/pki/generate.js';

// Two CAs; beta's certificate is issued by the first.
const [oldCa, newCa] = await Promise.all([createCa('old CA'), createCa('new CA')]);
const betaOld = new X509Certificate((await createGatewayCert(oldCa, 'beta')).cert);
const betaNew = new X509Certificate((await createGatewayCert(newCa, 'beta')).cert);
const bundle = (...pems: string[]): CaCertificate[] => {
  const b = parseCaBundle(pems.join(''), 'ca.pem');
  if (Array.isArray(b)) throw new Error(b.join('; '));
  return b.cas;
};
const both = bundle(oldCa.cert, newCa.cert);
/** readmit under `roster` with the old CA still in the bundle, as every test before the CA ones needs. */
const readmit = (r: Roster, self: string, info: LinkInfo) => readmitWith({ roster: r, cas: both }, self, info);

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
  peerCert: betaOld,
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
  peerCert: betaOld,
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

  it('keeps a link whose peer certificate one CA of the bundle issued, whichever it is', () => {
    for (const cas of [both, bundle(newCa.cert, oldCa.cert), bundle(oldCa.cert)]) expect(readmitWith({ roster: roster(), cas }, 'alpha', outbound)).toBeUndefined();
    expect(readmitWith({ roster: roster(), cas: bundle(newCa.cert) }, 'alpha', { ...inbound, peerCert: betaNew })).toBeUndefined();
  });

  it('cuts a link whose peer certificate only a removed CA issued (unknown_ca), unless that peer has since proven a certificate of a remaining CA', () => {
    const onlyNew = { roster: roster(), cas: bundle(newCa.cert) };
    for (const info of [outbound, inbound]) {
      const r = readmitWith(onlyNew, 'alpha', info);
      expect(r?.reason).toBe('unknown_ca');
      expect(r?.message).toMatch(/^certificate of beta \(serial 0ABC\) was issued by CN=old CA, no longer a CA in tls\.ca/);
      expect(readmitWith(onlyNew, 'alpha', info, new Set(['beta']))).toBeUndefined();
      // Proof from another peer does not count for beta.
      expect(readmitWith(onlyNew, 'alpha', info, new Set(['gamma']))?.reason).toBe('unknown_ca');
    }
  });

  it('remembers per bundle which CA issued a certificate: asked again, each bundle gives its own answer', () => {
    const onlyNew = { roster: roster(), cas: bundle(newCa.cert) };
    const onlyOld = { roster: roster(), cas: bundle(oldCa.cert) };
    // The same certificate, interleaved between two bundles in force one after the other (a reload and back).
    for (let i = 0; i < 3; i++) {
      expect(readmitWith(onlyNew, 'alpha', outbound)?.reason).toBe('unknown_ca');
      expect(readmitWith(onlyOld, 'alpha', outbound)).toBeUndefined();
      expect(readmitWith(onlyNew, 'alpha', { ...inbound, peerCert: betaNew })).toBeUndefined();
      expect(readmitWith(onlyOld, 'alpha', { ...inbound, peerCert: betaNew })?.reason).toBe('unknown_ca');
    }
  });

  it('a proven peer does not escape the roster: revocation and removal still cut', () => {
    const onlyNew = { roster: roster(', revoked: ["0ABC"]'), cas: bundle(newCa.cert) };
    expect(readmitWith(onlyNew, 'alpha', outbound, new Set(['beta']))?.reason).toBe('cert_revoked');
  });
});
