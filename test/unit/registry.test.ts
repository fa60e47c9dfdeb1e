// The registry link's codec and the roster keys the registry reads
// (standInPorts, localOnly): what is accepted, and every way it is refused.

import { describe, expect, it } from 'vitest';
import { rosterProblems } from '../helpers/roster.js';
import { admissionOn, DEFAULT_STAND_IN_PORTS, parseRoster } from '../../src/config/roster.js';
import { encodePreamble, parsePreamble } from '../../src/mesh/preamble.js';
import { decodeRegistryMessage, encodeRegistryMessage, REGISTRY_PROTOCOL_VERSION, type RegistryMessage, RegistryProtocolError, RegistryReader } from '../../src/registry/protocol.js';

const entry = { name: 'rabbit', port: 25672, highestVersion: 6, lowestVersion: 5 };
const MESSAGES: RegistryMessage[] = [
  { t: 'snapshot', v: REGISTRY_PROTOCOL_VERSION, names: [entry, { ...entry, name: 'rabbitmqcli-12-rabbit', port: 35672 }] },
  { t: 'snapshot', v: REGISTRY_PROTOCOL_VERSION, names: [] },
  { t: 'add', entry },
  { t: 'remove', name: 'rabbit' },
  { t: 'alive' },
  { t: 'resync' },
];

const body = (json: unknown) => Buffer.from(JSON.stringify(json));
const refusal = (json: unknown) => {
  try {
    decodeRegistryMessage(body(json));
  } catch (err) {
    if (err instanceof RegistryProtocolError) return err.reason;
    throw err;
  }
  return 'accepted';
};

describe('registry link codec', () => {
  it('round-trips every message, split at every byte', () => {
    const wire = Buffer.concat(MESSAGES.map(encodeRegistryMessage));
    for (let cut = 0; cut <= wire.length; cut++) {
      const r = new RegistryReader(1024);
      const got = [...r.push(wire.subarray(0, cut)), ...r.push(wire.subarray(cut))];
      expect(got).toEqual(MESSAGES);
      expect(r.bufferedBytes).toBe(0);
    }
  });

  it('refuses a message over maxControlMessageBytes as soon as its length is read', () => {
    const r = new RegistryReader(64);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(65);
    expect(() => r.push(head)).toThrow(expect.objectContaining({ reason: 'limit_reached' }));
  });

  it('accepts nothing but the five message types, with exactly their fields', () => {
    const wire = { name: 'a1', port: 5001, hi: 6, lo: 5 };
    expect(refusal({ t: 'add', ...wire })).toBe('accepted');
    for (const bad of [
      'not an object',
      [1, 2],
      null,
      { t: 'hello' },
      { t: 'snapshot', v: 2, names: [] },
      { t: 'snapshot', v: 1 },
      { t: 'snapshot', v: 1, names: [{ ...wire, t: 'add' }] },
      { t: 'add', ...wire, extra: 1 },
      { t: 'add', ...wire, name: 'a1@host' },
      { t: 'add', ...wire, name: '' },
      { t: 'add', ...wire, name: 'x'.repeat(201) },
      { t: 'add', ...wire, port: 0 },
      { t: 'add', ...wire, port: 65536 },
      { t: 'add', ...wire, port: 1.5 },
      { t: 'add', ...wire, hi: 5, lo: 6 },
      { t: 'remove' },
      { t: 'alive', x: 1 },
      { t: 'resync', names: [] },
    ]) {
      expect(refusal(bad), JSON.stringify(bad)).toBe('bad_control');
    }
    expect(() => decodeRegistryMessage(Buffer.from('{'))).toThrow(RegistryProtocolError);
  });

  it('has its own preamble kind, with no name', () => {
    const p = encodePreamble({ kind: 'registry' });
    expect(parsePreamble(p)).toEqual({ kind: 'ok', preamble: { kind: 'registry' }, consumed: p.length });
    const named = Buffer.concat([p.subarray(0, p.length - 1), Buffer.from([1, 0x41])]);
    expect(parsePreamble(named)).toEqual({ kind: 'error', reason: 'registry link with a name' });
  });
});

const roster = (extra: string, gatewayExtra = '') => `
gateways:
  alpha: { host: alpha, address: "10.0.0.1:4370"${gatewayExtra} }
  beta:  { host: beta,  address: "10.0.0.2:4370" }
nodes:
  - { name: rabbit@alpha, gateway: alpha, port: 25672 }
  - { name: rabbit@beta,  gateway: beta,  port: 25672 }
tls: { ca: ca.pem, cert: c.pem, key: k.pem }
${extra}
`;

const problems = (text: string) => rosterProblems(text);

describe('roster keys of the registry', () => {
  it('gives every gateway its own stand-in range by default, and the same node port may repeat on every host', () => {
    const r = parseRoster(roster(''), '/etc/beamgate');
    expect(r.gateways.get('alpha')!.standInPorts).toEqual(DEFAULT_STAND_IN_PORTS);
    expect(parseRoster(roster('', ', standInPorts: mirror'), '/').gateways.get('alpha')!.standInPorts).toEqual({ kind: 'mirror' });
    expect(parseRoster(roster('', ', standInPorts: "30000-30009"'), '/').gateways.get('alpha')!.standInPorts).toEqual({ kind: 'range', low: 30000, high: 30009 });
  });

  it('refuses a stand-in range that holds a port of its own host, or too few ports', () => {
    expect(problems(roster('', ', standInPorts: "25000-26000"'))).toEqual(['gateways.alpha.standInPorts: 25000-26000 contains port 25672 of its node rabbit@alpha']);
    expect(problems(roster('', ', standInPorts: "4300-4400"'))).toEqual(['gateways.alpha.standInPorts: 4300-4400 contains its epmdPort port 4369', 'gateways.alpha.standInPorts: 4300-4400 contains its listen port 4370']);
    expect(problems(roster('', ', standInPorts: "9464-9464"'))).toEqual(['gateways.alpha.standInPorts: 9464-9464 contains its metrics port 9464']);
    for (const bad of ['"10-5"', '"0-10"', '"1-70000"', 'mirrored', '5000']) {
      expect(problems(roster('', `, standInPorts: ${bad}`))[0]).toMatch(/^gateways\.alpha\.standInPorts: must be "mirror" or a port range/);
    }
    // The range must hold a stand-in for every node of the largest peer.
    const big = `
gateways:
  alpha: { host: alpha, address: "10.0.0.1:4370", standInPorts: "30000-30000" }
  beta:  { host: beta,  address: "10.0.0.2:4370" }
nodes:
  - { name: b1@beta, gateway: beta, port: 5001 }
  - { name: b2@beta, gateway: beta, port: 5002 }
tls: { ca: ca.pem, cert: c.pem, key: k.pem }
`;
    expect(problems(big)).toEqual(['gateways.alpha.standInPorts: 30000-30000 holds 1 ports, fewer than the 2 nodes of one peer gateway']);
  });

  it('admits localOnly names on their gateway only, after roster nodes and operators', () => {
    const r = parseRoster(
      roster(`operators:
  - { gateway: alpha, pattern: "rabbitmqcli-*" }
localOnly:
  - { gateway: alpha, pattern: "epmd-starter-*" }
  - { gateway: alpha, pattern: "rabbit_prelaunch_*" }`),
      '/etc/beamgate',
    );
    expect(admissionOn(r, 'alpha', 'epmd-starter-123@alpha').kind).toBe('local');
    expect(admissionOn(r, 'alpha', 'rabbit_prelaunch_4711@alpha').kind).toBe('local');
    expect(admissionOn(r, 'beta', 'epmd-starter-123@beta').kind).toBe('none');
    expect(admissionOn(r, 'alpha', 'rabbitmqcli-7-rabbit@alpha').kind).toBe('operator');
    expect(admissionOn(r, 'alpha', 'rabbit@alpha').kind).toBe('node');
  });

  it('refuses a localOnly pattern that is an operator pattern too, or matches a roster node', () => {
    expect(
      problems(
        roster(`operators:
  - { gateway: alpha, pattern: "tool-*" }
localOnly:
  - { gateway: alpha, pattern: "tool-*" }
  - { gateway: alpha, pattern: "rab*" }
  - { gateway: nowhere, pattern: "x*" }`),
      ),
    ).toEqual([
      'localOnly[1].pattern: "rab*" also matches roster node rabbit@alpha',
      'localOnly[2].gateway: unknown gateway "nowhere"',
      'localOnly[0].pattern: "tool-*" is also an operator pattern of gateway alpha',
    ]);
  });
});
