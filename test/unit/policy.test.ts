// The roster's policy: parsing, every validation error by key path, the
// decision function (with properties over random policies), the matrix
// `check` prints, the flags `node-flags` gives walled-off nodes, and what a
// reload decides for an open link.

import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { rosterProblems } from '../helpers/roster.js';
import { parseRoster } from '../../src/config/roster.js';
import { erlFlags } from '../../src/erlang/flags.js';
import { X509Certificate } from 'node:crypto';
import type { Roster } from '../../src/config/roster.js';
import type { LinkInfo } from '../../src/mesh/link.js';
import { readmit as readmitWith } from '../../src/mesh/readmit.js';
import { parseCaBundle } from '../../src/pki/ca-bundle.js';
import { createCa, createGatewayCert } from '../../src/pki/generate.js';
import { GatewayMetrics } from '../../src/metrics/metrics.js';
import { globsOverlap, globRegExp } from '../../src/policy/glob.js';
import { allowed, cell, groupsOf, member, NO_GROUP, type Policy, policyMatrix, unreachable } from '../../src/policy/policy.js';

const BASE = `
gateways:
  alpha: { host: alpha.lab, address: "10.0.0.1:4370" }
  beta:  { host: beta.lab,  address: "10.0.0.2:4370" }
  gamma: { host: gamma.lab, address: "10.0.0.3:4370" }
nodes:
  - { name: t1@alpha.lab, gateway: alpha, port: 5001 }
  - { name: t2@beta.lab,  gateway: beta,  port: 5001 }
  - { name: admin@gamma.lab, gateway: gamma, port: 5001 }
operators:
  - { gateway: gamma, pattern: "ops_*" }
tls: { ca: ca.pem, cert: "{gateway}.pem", key: "{gateway}-key.pem" }
`;

const TENANTS = `
policy:
  groups:
    tenants: [t1@alpha.lab, "t*@beta.lab"]
    admin: [admin@gamma.lab]
    ops: ["ops_*@gamma.lab"]
  allow:
    - { between: [tenants, admin] }
    - { between: [ops, tenants], hidden: true }
`;

const parse = (text: string) => parseRoster(text, '/etc/beamgate');
const policyOf = (text: string): Policy => parse(text).policy!;

const problems = (text: string) => rosterProblems(text);

describe('policy: parsing', () => {
  it('no policy section: no policy, every link allowed', () => {
    const r = parse(BASE);
    expect(r.policy).toBeUndefined();
    expect(allowed(r.policy, 't1@alpha.lab', 't2@beta.lab', false)).toEqual({ ok: true });
  });

  it('parses groups (names and patterns, operators included) and rules', () => {
    const p = policyOf(BASE + TENANTS);
    expect([...p.groups.keys()]).toEqual(['tenants', 'admin', 'ops']);
    expect(p.rules).toEqual([
      { between: ['tenants', 'admin'], hidden: false },
      { between: ['ops', 'tenants'], hidden: true },
    ]);
    expect(groupsOf(p, 't2@beta.lab')).toEqual(['tenants']);
    expect(groupsOf(p, 'ops_jane@gamma.lab')).toEqual(['ops']);
    expect(groupsOf(p, 'ops_jane@alpha.lab')).toEqual([]);
  });

  it('a one-group rule allows links within that group', () => {
    const p = policyOf(BASE + `
policy:
  groups: { all: ["*"] }
  allow: [{ between: [all] }]
`);
    expect(p.rules).toEqual([{ between: ['all', 'all'], hidden: false }]);
    expect(allowed(p, 't1@alpha.lab', 't2@beta.lab', false).ok).toBe(true);
  });

  it('names every problem by key path', () => {
    const errs = problems(BASE + `
policy:
  groups:
    tenants: [t1@alpha.lab, t1@alpha.lab, "t2@nowhere.lab", "x9@beta.lab", "bad name!"]
    Admin: [admin@gamma.lab]
    empty: []
  allow:
    - { between: [tenants, admins] }
    - { between: [tenants], hidden: "yes" }
    - { between: [tenants, Admin], when: always }
    - { between: [a, b, c] }
    - "tenants-admin"
  extra: 1
`);
    expect(errs).toEqual(
      expect.arrayContaining([
        'policy.extra: unknown key (expected one of: groups, allow)',
        'policy.groups.tenants[1]: "t1@alpha.lab" is listed twice',
        'policy.groups.tenants[2]: no gateway has host "nowhere.lab" (known: alpha.lab, beta.lab, gamma.lab)',
        'policy.groups.tenants[3]: "x9@beta.lab" matches no roster node and no operator pattern',
        'policy.groups.tenants[4]: "bad name!" is not a node name or pattern: name characters and "*", optionally @host',
        'policy.groups.Admin: group names are a lower-case letter, then lower-case letters, digits, "_" or "-"',
        expect.stringMatching(/^policy\.groups\.empty: must be a non-empty list/),
        'policy.allow[0].between[1]: unknown group "admins" (known: tenants, Admin)',
        'policy.allow[1].hidden: must be true or false',
        'policy.allow[2].when: unknown key (expected one of: between, hidden, filter)',
        'policy.allow[3].between: must list two groups (or one: links within that group)',
        'policy.allow[4]: must be a mapping { between: [GROUP, GROUP], hidden: BOOL }',
      ]),
    );
  });

  it('requires groups and allow, and a mapping', () => {
    expect(problems(BASE + 'policy: [a]\n')).toEqual(['policy: must be a mapping with groups and allow']);
    expect(problems(BASE + 'policy: {}\n')).toEqual(['policy.groups: is required', 'policy.allow: is required (an empty list allows no link across gateways)']);
  });

  it('refuses duplicate rules, and a hidden-only rule next to a visible one for the same pair', () => {
    const errs = problems(BASE + `
policy:
  groups: { tenants: ["t*"], admin: [admin@gamma.lab], ops: ["ops_*"] }
  allow:
    - { between: [tenants, admin] }
    - { between: [admin, tenants] }
    - { between: [ops, admin] }
    - { between: [admin, ops], hidden: true }
`);
    expect(errs).toEqual([
      'policy.allow[1]: groups admin and tenants already have the same rule (policy.allow[0])',
      'policy.allow[3]: groups admin and ops already have a visible rule, which allows hidden links too (policy.allow[2])',
    ]);
  });

  it('a rule that can never apply (a group of one node with itself) is an error', () => {
    const errs = problems(BASE + `
policy:
  groups: { t1: [t1@alpha.lab], rest: [t2@beta.lab, admin@gamma.lab] }
  allow:
    - { between: [t1] }
    - { between: [t1, rest] }
`);
    expect(errs).toEqual(['policy.allow[0]: can never apply: group t1 has a single node, and a node never links with itself']);
  });

  it('a roster node in no group is an error: it could link with nobody', () => {
    expect(problems(BASE + `
policy:
  groups: { tenants: ["t*"], ops: ["ops_*"] }
  allow: [{ between: [tenants, ops], hidden: true }]
`)).toEqual(['policy.groups: node admin@gamma.lab is in no group: under a policy it could link with no node on another host']);
  });

  it('two nodes of one host that the policy would keep apart are an error: their link never crosses a gateway', () => {
    const oneHost = BASE.replace('  - { name: admin@gamma.lab, gateway: gamma, port: 5001 }', '  - { name: admin@gamma.lab, gateway: gamma, port: 5001 }\n  - { name: t3@alpha.lab, gateway: alpha, port: 5002 }');
    expect(problems(oneHost + TENANTS.replace('[t1@alpha.lab, "t*@beta.lab"]', '["t*"]'))).toEqual([
      'policy.allow: t1@alpha.lab and t3@alpha.lab share a host: their link never crosses a gateway, so the policy cannot forbid it (allow it, or move one to another host)',
    ]);
  });

  it('caps the number of groups', () => {
    const groups = Array.from({ length: 65 }, (_, i) => `g${i}: ["*"]`).join(', ');
    expect(problems(BASE + `policy:\n  groups: { ${groups} }\n  allow: [{ between: [g0] }]\n`)).toContain('policy.groups: names 65 groups, more than 64');
  });
});

describe('policy: decisions', () => {
  const p = policyOf(BASE + TENANTS);

  it('tenants reach admin, both ways, and not each other', () => {
    expect(allowed(p, 't1@alpha.lab', 'admin@gamma.lab', false)).toEqual({ ok: true });
    expect(allowed(p, 'admin@gamma.lab', 't2@beta.lab', false)).toEqual({ ok: true });
    expect(allowed(p, 't1@alpha.lab', 't2@beta.lab', false)).toEqual({
      ok: false,
      fromGroup: 'tenants',
      toGroup: 'tenants',
      why: 'no policy rule lets group tenants link with tenants',
    });
  });

  it('a hidden-only pair needs the dialling node hidden', () => {
    expect(allowed(p, 'ops_jane@gamma.lab', 't1@alpha.lab', true)).toEqual({ ok: true });
    expect(allowed(p, 'ops_jane@gamma.lab', 't1@alpha.lab', false)).toEqual({
      ok: false,
      fromGroup: 'ops',
      toGroup: 'tenants',
      why: 'groups ops and tenants may link only as hidden nodes, and ops_jane@gamma.lab connects as a visible node',
    });
  });

  it('a node in no group is refused under the (none) label', () => {
    expect(allowed(p, 'rpc-1@alpha.lab', 'admin@gamma.lab', true)).toEqual({ ok: false, fromGroup: NO_GROUP, toGroup: 'admin', why: 'rpc-1@alpha.lab is in no policy group' });
  });

  it('overlapping groups add links: a bridge node in two groups reaches both', () => {
    const fed = policyOf(`
gateways:
  e1: { host: e1.lab, address: "10.0.0.1:4370" }
  e2: { host: e2.lab, address: "10.0.0.2:4370" }
  w1: { host: w1.lab, address: "10.0.0.3:4370" }
  w2: { host: w2.lab, address: "10.0.0.4:4370" }
  br: { host: br.lab, address: "10.0.0.5:4370" }
nodes:
  - { name: app@e1.lab, gateway: e1, port: 5001 }
  - { name: app@e2.lab, gateway: e2, port: 5001 }
  - { name: app@w1.lab, gateway: w1, port: 5001 }
  - { name: app@w2.lab, gateway: w2, port: 5001 }
  - { name: bridge@br.lab, gateway: br, port: 5001 }
tls: { ca: ca.pem, cert: "{gateway}.pem", key: "{gateway}-key.pem" }
policy:
  groups:
    east: ["*@e1.lab", "*@e2.lab", bridge@br.lab]
    west: ["*@w1.lab", "*@w2.lab", bridge@br.lab]
  allow: [{ between: [east] }, { between: [west] }]
`);
    expect(groupsOf(fed, 'bridge@br.lab')).toEqual(['east', 'west']);
    expect(allowed(fed, 'app@e1.lab', 'app@e2.lab', false).ok).toBe(true);
    expect(allowed(fed, 'app@w2.lab', 'bridge@br.lab', false).ok).toBe(true);
    expect(allowed(fed, 'bridge@br.lab', 'app@e1.lab', false).ok).toBe(true);
    expect(allowed(fed, 'app@e1.lab', 'app@w1.lab', false)).toMatchObject({ ok: false, fromGroup: 'east', toGroup: 'west' });
    expect(unreachable(fed, 'bridge@br.lab', ['app@e1.lab', 'app@w1.lab', 'bridge@br.lab'])).toEqual([]);
    expect(unreachable(fed, 'app@e1.lab', ['app@e1.lab', 'app@e2.lab', 'app@w1.lab', 'app@w2.lab', 'bridge@br.lab'])).toEqual(['app@w1.lab', 'app@w2.lab']);
  });

  it('check prints the policy as a symmetric matrix of groups', () => {
    expect(policyMatrix(p)).toBe(
      [
        '         tenants  admin    ops',
        'tenants  -        yes      hidden',
        'admin    yes      -        -',
        'ops      hidden   -        -',
      ].join('\n'),
    );
  });

  it('node-flags adds -connect_all false only when asked (a node walled off from some roster nodes)', () => {
    const base = { name: 't1@alpha.lab', epmdPort: 4369, port: 5001, inetrcPath: '/x' };
    expect(erlFlags(base)).not.toContain('-connect_all');
    expect(erlFlags({ ...base, connectAll: false }).slice(-2)).toEqual(['-connect_all', 'false']);
    expect(unreachable(p, 't1@alpha.lab', ['t1@alpha.lab', 't2@beta.lab', 'admin@gamma.lab'])).toEqual(['t2@beta.lab']);
    expect(unreachable(p, 'admin@gamma.lab', ['t1@alpha.lab', 't2@beta.lab', 'admin@gamma.lab'])).toEqual([]);
  });
});

describe('policy: properties', () => {
  const shorts = ['t1', 't2', 'a', 'ops_x', 'b-2'];
  const hosts = ['h1.lab', 'h2.lab', 'h3.lab'];
  const names = shorts.flatMap((s) => hosts.map((h) => `${s}@${h}`));
  const memberArb = fc.oneof(fc.constantFrom(...names), fc.constantFrom('*', 't*', '*@h2.lab', 'ops_*@h3.lab', 'a*'));
  const policyArb = fc
    .tuple(fc.array(fc.array(memberArb, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 4 }), fc.array(fc.tuple(fc.nat(), fc.nat(), fc.boolean()), { maxLength: 6 }))
    .map(([groups, rules]): Policy => {
      const gs = new Map(groups.map((ms, i) => [`g${i}`, { name: `g${i}`, members: ms.map(member) }]));
      const keys = [...gs.keys()];
      return { groups: gs, rules: rules.map(([a, b, hidden]) => ({ between: [keys[a % keys.length]!, keys[b % keys.length]!] as const, hidden })) };
    });
  const name = fc.constantFrom(...names);

  it('has no direction: whoever dials, the answer is the same', () => {
    fc.assert(fc.property(policyArb, name, name, fc.boolean(), (p, a, b, h) => allowed(p, a, b, h).ok === allowed(p, b, a, h).ok));
  });

  it('hidden never allows less than visible', () => {
    fc.assert(fc.property(policyArb, name, name, (p, a, b) => !allowed(p, a, b, false).ok || allowed(p, a, b, true).ok));
  });

  it('allowed exactly when some rule joins a group of each end (any pair, any order)', () => {
    fc.assert(
      fc.property(policyArb, name, name, fc.boolean(), (p, a, b, h) => {
        const ga = groupsOf(p, a);
        const gb = groupsOf(p, b);
        const expected = ga.some((x) => gb.some((y) => { const c = cell(p, x, y); return c === 'yes' || (c === 'hidden' && h); }));
        return allowed(p, a, b, h).ok === expected;
      }),
    );
  });

  it('adding a rule or a group member never takes a link away', () => {
    fc.assert(
      fc.property(policyArb, name, name, fc.boolean(), fc.nat(), memberArb, (p, a, b, h, gi, extra) => {
        const before = allowed(p, a, b, h).ok;
        const keys = [...p.groups.keys()];
        const g = keys[gi % keys.length]!;
        const wider: Policy = { groups: new Map([...p.groups].map(([k, v]) => [k, k === g ? { name: k, members: [...v.members, member(extra)] } : v])), rules: [...p.rules, { between: [g, g], hidden: false }] };
        return !before || allowed(wider, a, b, h).ok;
      }),
    );
  });

  it('a refusal is always labelled with groups of the two ends (or (none))', () => {
    fc.assert(
      fc.property(policyArb, name, name, fc.boolean(), (p, a, b, h) => {
        const d = allowed(p, a, b, h);
        if (d.ok) return true;
        const ok = (g: string, n: string) => (groupsOf(p, n).length === 0 ? g === NO_GROUP : groupsOf(p, n).includes(g));
        return ok(d.fromGroup, a) && ok(d.toGroup, b);
      }),
    );
  });

  it('glob overlap agrees with brute force over short names', () => {
    const alphabet = ['a', 'b', '_'];
    const globArb = fc.array(fc.constantFrom(...alphabet, '*'), { minLength: 1, maxLength: 4 }).map((c) => c.join(''));
    const words: string[] = [''];
    for (let len = 1; len <= 6; len++) for (const w of words.filter((x) => x.length === len - 1)) for (const c of alphabet) words.push(w + c);
    fc.assert(
      fc.property(globArb, globArb, (x, y) => {
        const brute = words.some((w) => w.length > 0 && globRegExp(x).test(w) && globRegExp(y).test(w));
        // Two globs of at most 4 characters overlap with a witness of at most 6 (3 literals each, beside a star) when they overlap at all.
        return globsOverlap(x, y) === brute;
      }),
    );
  });
});

describe('policy: the denied-dials metric', () => {
  const series = async (m: GatewayMetrics) =>
    (await m.text())
      .split('\n')
      .filter((l) => l.startsWith('beamgate_policy_denied_total{'))
      .map((l) => l.replace(/,?gateway="[^"]*"/, ''))
      .sort();

  it('has a series for every group pair from the first scrape, keeps counts across a reload and drops pairs of removed groups', async () => {
    const m = new GatewayMetrics('alpha');
    expect(await series(m)).toEqual([]);
    m.setPolicyGroups(['tenants', 'admin', NO_GROUP]);
    expect((await series(m)).length).toBe(9);
    expect(await series(m)).toContain('beamgate_policy_denied_total{from_group="tenants",to_group="tenants"} 0');
    m.policyDeniedDial('tenants', 'tenants');
    m.setPolicyGroups(['tenants', NO_GROUP]);
    expect(await series(m)).toEqual([
      'beamgate_policy_denied_total{from_group="(none)",to_group="(none)"} 0',
      'beamgate_policy_denied_total{from_group="(none)",to_group="tenants"} 0',
      'beamgate_policy_denied_total{from_group="tenants",to_group="(none)"} 0',
      'beamgate_policy_denied_total{from_group="tenants",to_group="tenants"} 1',
    ]);
    // A dial decided under the roster just replaced still counts; its series goes at the next reload.
    m.policyDeniedDial('admin', 'tenants');
    expect(await series(m)).toContain('beamgate_policy_denied_total{from_group="admin",to_group="tenants"} 1');
    m.setPolicyGroups(['tenants', NO_GROUP]);
    expect((await series(m)).some((l) => l.includes('"admin"'))).toBe(false);
  });
});

describe('policy: the documentation', () => {
  const doc = readFileSync(new URL('../../docs/policy.md', import.meta.url), 'utf8');
  const rosters = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((y) => y.includes('gateways:'));

  it('every worked example is a valid roster, and the matrix shown is what check prints', () => {
    expect(rosters.length).toBe(2);
    const [tenants, federated] = rosters.map((y) => policyOf(y));
    expect(allowed(tenants, 't1@alpha.example', 't2@beta.example', false).ok).toBe(false);
    expect(allowed(tenants, 'ops_jane@gamma.example', 't2@beta.example', true).ok).toBe(true);
    expect(doc).toContain(policyMatrix(federated!));
    expect(allowed(federated, 'bridge@br.example', 'app@w2.example', false).ok).toBe(true);
    expect(allowed(federated, 'app@e2.example', 'app@w2.example', false).ok).toBe(false);
  });
});

// Open links carry their peer's certificate: one CA, in the bundle, issued it.
const linkCa = await createCa('CA');
const peerCert = new X509Certificate((await createGatewayCert(linkCa, 'peer')).cert);
const linkBundle = parseCaBundle(linkCa.cert, 'ca.pem');
const readmit = (roster: Roster, self: string, info: LinkInfo) => readmitWith({ roster, cas: Array.isArray(linkBundle) ? [] : linkBundle.cas }, self, info);

describe('policy: what a reload does to an open link', () => {
  const r = parse(BASE + TENANTS);
  const link = (sourceName: string, localNode: string, remoteNode: string, sourceHidden: boolean, direction: 'inbound' | 'outbound', peer: string): LinkInfo => ({
    peer,
    direction,
    localNode,
    remoteNode,
    sourceName,
    sourceHidden,
    targetName: direction === 'inbound' ? localNode : remoteNode,
    peerSerial: '0A',
    peerCert,
  });

  it('keeps what the policy allows, cuts what it forbids, with the group pair', () => {
    // On gamma: t1 dialled admin.
    expect(readmit(r, 'gamma', link('t1@alpha.lab', 'admin@gamma.lab', 't1@alpha.lab', false, 'inbound', 'alpha'))).toBeUndefined();
    // On alpha: t1 dialled t2 (open before the policy came in).
    const cut = readmit(r, 'alpha', link('t1@alpha.lab', 't1@alpha.lab', 't2@beta.lab', false, 'outbound', 'beta'));
    expect(cut).toMatchObject({ reason: 'policy_denied', fields: { from_group: 'tenants', to_group: 'tenants' } });
    expect(cut?.message).toBe('policy does not let t1@alpha.lab link with t2@beta.lab: no policy rule lets group tenants link with tenants');
    // On beta: an operator dialled t2 hidden (allowed), and visible (cut).
    expect(readmit(r, 'beta', link('ops_jane@gamma.lab', 't2@beta.lab', 'ops_*', true, 'inbound', 'gamma'))).toBeUndefined();
    expect(readmit(r, 'beta', link('ops_jane@gamma.lab', 't2@beta.lab', 'ops_*', false, 'inbound', 'gamma'))?.reason).toBe('policy_denied');
    // On alpha: t1 (visible) dialled back a listening operator on gamma: an operator must answer hidden, so the link is hidden.
    expect(readmit(r, 'alpha', { ...link('t1@alpha.lab', 't1@alpha.lab', 'ops_*', false, 'outbound', 'gamma'), targetName: 'ops_jane@gamma.lab' })).toBeUndefined();
  });
});
