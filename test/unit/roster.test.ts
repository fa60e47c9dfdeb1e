import { describe, expect, it } from 'vitest';
import { rosterProblems } from '../helpers/roster.js';
import { admissionOn, MAX_REVOKED_SERIALS, normalizeSerial, parseRoster, tlsPathsFor } from '../../src/config/roster.js';
import { DEFAULT_LIMITS, MAX_STANDBY_PER_PEER, MAX_TLS_SESSION_LIFETIME_MS, standbyPools } from '../../src/config/limits.js';
import { encodePreamble, parsePreamble } from '../../src/mesh/preamble.js';
import { etcHosts, erlFlags, inetrc } from '../../src/erlang/flags.js';

const GOOD = `
gateways:
  alpha: { host: alpha.example, address: "10.0.0.1:4370" }
  beta:  { host: beta.example,  address: "10.0.0.2:4370", loopback: 127.0.9.9, epmdPort: 4400, metrics: "0.0.0.0:9100" }
nodes:
  - { name: a1@alpha.example, gateway: alpha, port: 5001 }
  - { name: a2@alpha.example, gateway: alpha, port: 5002 }
  - { name: b1@beta.example,  gateway: beta,  port: 5001 }
operators:
  - { gateway: alpha, pattern: "ops_*" }
tls: { ca: certs/ca.pem, cert: "certs/{gateway}.pem", key: "certs/{gateway}-key.pem" }
limits: { maxLinks: 10, maxLinksPerPeer: 5 }
log: { level: debug }
`;

const problems = (text: string) => rosterProblems(text);

describe('roster', () => {
  it('parses a full roster with defaults filled in', () => {
    const r = parseRoster(GOOD, '/etc/beamgate');
    const alpha = r.gateways.get('alpha')!;
    expect(alpha).toMatchObject({ host: 'alpha.example', address: { host: '10.0.0.1', port: 4370 }, listen: { host: '10.0.0.1', port: 4370 }, loopback: '127.0.1.2', epmdPort: 4369, metrics: { host: '127.0.0.1', port: 9464 } });
    expect(r.gateways.get('beta')).toMatchObject({ loopback: '127.0.9.9', epmdPort: 4400, metrics: { host: '0.0.0.0', port: 9100 } });
    expect(r.nodes.get('b1@beta.example')).toEqual({ name: 'b1@beta.example', short: 'b1', host: 'beta.example', gateway: 'beta', port: 5001 });
    expect(r.limits).toEqual({ ...DEFAULT_LIMITS, maxLinks: 10, maxLinksPerPeer: 5 });
    expect(tlsPathsFor(r, 'beta')).toEqual({ ca: '/etc/beamgate/certs/ca.pem', cert: '/etc/beamgate/certs/beta.pem', key: '/etc/beamgate/certs/beta-key.pem' });
    expect(r.log.level).toBe('debug');
  });

  it('names the key path of every problem, all at once', () => {
    const p = problems(`
gateways:
  alpha: { host: alpha.example, address: "10.0.0.1:4370", loopback: 10.1.1.1 }
  Beta:  { host: alpha.example, address: "10.0.0.1:4370", colour: blue }
nodes:
  - { name: a1@alpha.example, gateway: alpha, port: 5001 }
  - { name: a1@alpha.example, gateway: alpha, port: 5002 }
  - { name: a3@alpha.example, gateway: alpha, port: 5001 }
  - { name: g1@gamma.example, gateway: gamma, port: 5003 }
  - { name: x1@other.example, gateway: alpha, port: 5004 }
  - { name: a5@alpha.example, gateway: alpha, port: 4369 }
  - { name: nohost, gateway: alpha, port: 70000 }
tls: { ca: certs/ca.pem, cert: c, key: k }
limits: { maxLinks: 0, bogus: 1 }
`);
    const expected = [
      /gateways\.alpha\.loopback: "10\.1\.1\.1" must be an IPv4 address in 127/,
      /gateways\.Beta: gateway names are lower-case/,
      /gateways\.Beta\.colour: unknown key/,
      /gateways\.Beta\.host: "alpha\.example" is already the host of gateway alpha/,
      /gateways\.Beta\.address: 10\.0\.0\.1:4370 is already the address of gateway alpha/,
      /nodes\[1\]\.name: duplicate node a1@alpha\.example/,
      /nodes\[2\]\.port: port 5001 is already used by a1@alpha\.example on gateway alpha/,
      /nodes\[3\]\.gateway: unknown gateway "gamma"/,
      /nodes\[4\]\.name: host part "other\.example" differs from gateway alpha's host/,
      /nodes\[5\]\.port: 4369 is gateway alpha's EPMD port/,
      /nodes\[6\]\.port: 70000 is not a port/,
      /limits\.maxLinks: must be a positive integer/,
      /limits\.bogus: unknown key/,
    ];
    for (const re of expected) expect(p.some((line) => re.test(line)), `${re} in\n${p.join('\n')}`).toBe(true);
  });

  it('reads the link log, close grace, probe and metrics listener limits, and checks how they relate', () => {
    const base = GOOD.replace(/^limits: .*$/m, '');
    const limits = (l: string) => parseRoster(`${base}limits: { ${l} }\n`, '/etc/beamgate').limits;
    expect(
      limits(
        'linkLogBurst: 5, linkLogWindowMs: 2000, linkCloseGraceMs: 500, peerProbeIntervalMs: 3000, metricsMaxConnections: 8, metricsMaxHeaders: 20, metricsHeadersTimeoutMs: 1000, metricsRequestTimeoutMs: 2000, metricsIdleTimeoutMs: 1500',
      ),
    ).toEqual({
      ...DEFAULT_LIMITS,
      linkLogBurst: 5,
      linkLogWindowMs: 2000,
      linkCloseGraceMs: 500,
      peerProbeIntervalMs: 3000,
      metricsMaxConnections: 8,
      metricsMaxHeaders: 20,
      metricsHeadersTimeoutMs: 1000,
      metricsRequestTimeoutMs: 2000,
      metricsIdleTimeoutMs: 1500,
    });
    expect(problems(`${base}limits: { metricsHeadersTimeoutMs: 20000, peerProbeIntervalMs: 10, metricsMaxConnections: 0 }\n`)).toEqual([
      'limits.metricsMaxConnections: must be a positive integer',
      'limits.metricsHeadersTimeoutMs: must not exceed limits.metricsRequestTimeoutMs',
      'limits.peerProbeIntervalMs: must be at least 1000',
    ]);
    // Node's timers fire at once past 2^31 - 1 ms, and the native engine's grace was once read into an int.
    expect(limits('linkCloseGraceMs: 2147483647').linkCloseGraceMs).toBe(2 ** 31 - 1);
    expect(problems(`${base}limits: { linkCloseGraceMs: 2147483648, drainTimeoutMs: 4294967296 }\n`)).toEqual([
      'limits.drainTimeoutMs: must be at most 2147483647 (about 24.8 days: the longest wait a timer takes)',
      'limits.linkCloseGraceMs: must be at most 2147483647 (about 24.8 days: the longest wait a timer takes)',
    ]);
  });

  it('takes standbyPerPeer from 0 (off) to MAX_STANDBY_PER_PEER, and nothing else', () => {
    const base = GOOD.replace(/^limits: .*$/m, '');
    const limits = (l: string) => parseRoster(`${base}limits: { ${l} }\n`, '/etc/beamgate').limits;
    expect(limits('standbyPerPeer: 0').standbyPerPeer).toBe(0);
    expect(limits(`standbyPerPeer: ${MAX_STANDBY_PER_PEER}, standbyIdleMs: 5000`)).toMatchObject({ standbyPerPeer: MAX_STANDBY_PER_PEER, standbyIdleMs: 5000 });
    expect(problems(`${base}limits: { standbyPerPeer: ${MAX_STANDBY_PER_PEER + 1} }\n`)).toEqual([`limits.standbyPerPeer: must be at most ${MAX_STANDBY_PER_PEER}`]);
    expect(problems(`${base}limits: { standbyPerPeer: -1, standbyIdleMs: 0 }\n`)).toEqual([
      'limits.standbyPerPeer: must be a whole number, 0 or more',
      'limits.standbyIdleMs: must be a positive integer',
    ]);
  });

  it('takes standbyTotal from 0 to half of maxTlsConnections, and shares it out among the peers', () => {
    const base = GOOD.replace(/^limits: .*$/m, '');
    const limits = (l: string) => parseRoster(`${base}limits: { ${l} }\n`, '/etc/beamgate').limits;
    expect(limits('standbyTotal: 0').standbyTotal).toBe(0);
    expect(limits('standbyTotal: 2048, maxTlsConnections: 4096').standbyTotal).toBe(2048);
    expect(problems(`${base}limits: { standbyTotal: 51, maxTlsConnections: 100 }\n`)).toEqual([
      'limits.standbyTotal: must not exceed half of limits.maxTlsConnections (50): the rest is for links that handshake',
    ]);
    expect(problems(`${base}limits: { standbyTotal: -1 }\n`)).toEqual(['limits.standbyTotal: must be a whole number, 0 or more']);
    // Each of `peers` peers wanting `want` (the node pairs of two hosts): what one of them gets.
    const each = (l: Parameters<typeof standbyPools>[0], peers: number, want: number) => {
      const pools = standbyPools(l, new Map(Array.from({ length: peers }, (_, i) => [`g${i}`, want])));
      expect(new Set(pools.values()).size).toBeLessThanOrEqual(1);
      return pools.get('g0') ?? 0;
    };
    // A roster that lowers maxTlsConnections alone is valid: the default total shrinks to half of it.
    const small = limits('maxTlsConnections: 6');
    expect(each(small, 1, 9)).toBe(3);
    expect(each(small, 2, 9)).toBe(1);
    // standbyPerPeer, or one per node pair where those are more (at most MAX_STANDBY_PER_PEER), while the total
    // covers them all; then an equal share, rounded down.
    const d = DEFAULT_LIMITS;
    expect([1, 9, 16, 17, 19, 39, 256, 257].map((peers) => each(d, peers, 16))).toEqual([16, 16, 16, 15, 13, 6, 1, 0]);
    expect([0, 1, 4, 8, 9, 25, 36].map((pairs) => each(d, 1, pairs))).toEqual([8, 8, 8, 8, 9, 25, MAX_STANDBY_PER_PEER]);
    expect([1, 9, 16, 17, 32, 33].map((peers) => each(d, peers, 1))).toEqual([8, 8, 8, 8, 8, 7]);
    expect(standbyPools(d, new Map()).size).toBe(0);
    expect(each({ ...d, standbyPerPeer: 0 }, 3, 9)).toBe(0);
    expect(each({ ...d, standbyTotal: 0 }, 3, 9)).toBe(0);
    expect(each({ ...d, maxTlsConnections: 1 }, 3, 9)).toBe(0);
  });

  it('shares standbyTotal max-min fair: peers that want less than an even share get it, the rest split what is left', () => {
    const pools = standbyPools({ ...DEFAULT_LIMITS, standbyPerPeer: 1, standbyTotal: 20 }, new Map([['one', 1], ['four', 4], ['big', 25], ['bigger', 30]]));
    // 1 and 4 are below an even share (5); 15 is left for the two that want more: 7 each, the odd one unused.
    expect(Object.fromEntries(pools)).toEqual({ one: 1, four: 4, big: 7, bigger: 7 });
    expect([...pools.values()].reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(20);
    // With the default standbyPerPeer (8) the small ones want 8 too: 20 over four is 5 each.
    expect(Object.fromEntries(standbyPools({ ...DEFAULT_LIMITS, standbyTotal: 20 }, new Map([['one', 1], ['four', 4], ['big', 25], ['bigger', 30]])))).toEqual({ one: 5, four: 5, big: 5, bigger: 5 });
  });

  it('takes tlsSessionLifetimeMs from 0 (no ticket offered) to a day', () => {
    const base = GOOD.replace(/^limits: .*$/m, '');
    const limits = (l: string) => parseRoster(`${base}limits: { ${l} }\n`, '/etc/beamgate').limits;
    expect(DEFAULT_LIMITS.tlsSessionLifetimeMs).toBe(300_000);
    expect(limits('tlsSessionLifetimeMs: 0').tlsSessionLifetimeMs).toBe(0);
    expect(limits(`tlsSessionLifetimeMs: ${MAX_TLS_SESSION_LIFETIME_MS}`).tlsSessionLifetimeMs).toBe(MAX_TLS_SESSION_LIFETIME_MS);
    expect(problems(`${base}limits: { tlsSessionLifetimeMs: ${MAX_TLS_SESSION_LIFETIME_MS + 1} }\n`)).toEqual([`limits.tlsSessionLifetimeMs: must be at most ${MAX_TLS_SESSION_LIFETIME_MS} (a day)`]);
    expect(problems(`${base}limits: { tlsSessionLifetimeMs: -1 }\n`)).toEqual(['limits.tlsSessionLifetimeMs: must be a whole number, 0 or more']);
  });

  it('refuses mixing -name and -sname hosts, and missing sections', () => {
    expect(problems(`gateways: { a: { host: a.x, address: "1.1.1.1:1" }, b: { host: b, address: "1.1.1.2:1" } }\ntls: { ca: a, cert: b, key: c }`)).toEqual([
      expect.stringMatching(/gateways\.b\.host: mixes -sname hosts/),
    ]);
    expect(problems('{}')).toEqual(expect.arrayContaining([expect.stringMatching(/^gateways: is required/), expect.stringMatching(/^tls: is required/)]));
    expect(problems('gateways: [1, 2')[0]).toMatch(/^yaml:/);
  });

  it('refuses an operator pattern that would capture a roster node', () => {
    expect(problems(GOOD.replace('"ops_*"', '"a*"'))).toEqual([
      expect.stringMatching(/operators\[0\]\.pattern: "a\*" also matches roster node a1@alpha\.example/),
      expect.stringMatching(/operators\[0\]\.pattern: "a\*" also matches roster node a2@alpha\.example/),
    ]);
  });

  it('reads tls.revoked as serial numbers in one spelling, and names every bad entry', () => {
    const roster = (revoked: string) => GOOD.replace('key: "certs/{gateway}-key.pem" }', `key: "certs/{gateway}-key.pem", revoked: ${revoked} }`);
    expect(parseRoster(GOOD, '/etc/beamgate').revoked.size).toBe(0);
    const r = parseRoster(roster('["serial=0A1B2C", "de:ad:be:ef", "00FF"]'), '/etc/beamgate');
    expect([...r.revoked]).toEqual(['A1B2C', 'DEADBEEF', 'FF']);
    expect(normalizeSerial('0')).toBe('0');
    expect(normalizeSerial('a'.repeat(41))).toBeUndefined();
    expect(problems(roster('["A1B2C", "xyz", 12, "0a:1b:2c"]'))).toEqual([
      'tls.revoked[1]: must be a certificate serial number in hex, as `openssl x509 -noout -serial` prints it',
      'tls.revoked[2]: must be a certificate serial number in hex, as `openssl x509 -noout -serial` prints it',
      'tls.revoked[3]: serial A1B2C is listed twice',
    ]);
    expect(problems(roster('"A1B2C"'))).toEqual(['tls.revoked: must be a list of certificate serial numbers (hex)']);
    const many = JSON.stringify(Array.from({ length: MAX_REVOKED_SERIALS + 1 }, (_, i) => (i + 1).toString(16)));
    expect(problems(roster(many))).toEqual([`tls.revoked: lists ${MAX_REVOKED_SERIALS + 1} serials, more than ${MAX_REVOKED_SERIALS}`]);
  });

  it('admits roster nodes on their own gateway only, and operators by pattern', () => {
    const r = parseRoster(GOOD, '/');
    expect(admissionOn(r, 'alpha', 'a1@alpha.example').kind).toBe('node');
    expect(admissionOn(r, 'beta', 'a1@alpha.example').kind).toBe('none');
    expect(admissionOn(r, 'alpha', 'ops_jane@alpha.example').kind).toBe('operator');
    expect(admissionOn(r, 'alpha', 'ops_jane@beta.example').kind).toBe('none');
    expect(admissionOn(r, 'beta', 'ops_jane@beta.example').kind).toBe('none');
    expect(admissionOn(r, 'alpha', 'mallory@alpha.example').kind).toBe('none');
  });
});

describe('node set-up output', () => {
  const r = parseRoster(GOOD, '/');
  it('maps the own host to 127.0.0.1 and every other gateway to its alias', () => {
    expect(inetrc(r, 'beta')).toContain('{host, {127,0,1,2}, ["alpha.example"]}.');
    expect(inetrc(r, 'beta')).toContain('{host, {127,0,0,1}, ["beta.example"]}.');
    expect(inetrc(r, 'beta')).toContain('{lookup, [file, native]}.');
    expect(etcHosts(r, 'alpha')).toMatch(/^127\.0\.9\.9\s+beta\.example/m);
  });

  it('pins EPMD, loopback and the static port in the erl flags', () => {
    const f = erlFlags({ name: 'a1@alpha.example', epmdPort: 4369, port: 5001, inetrcPath: '/etc/beamgate/alpha.inetrc' }).join(' ');
    expect(f).toBe(
      '-name a1@alpha.example -start_epmd false -epmd_port 4369 -kernel inet_dist_use_interface {127,0,0,1} -kernel inetrc "/etc/beamgate/alpha.inetrc" -kernel inet_dist_listen_min 5001 -kernel inet_dist_listen_max 5001',
    );
    expect(erlFlags({ name: 'ops@alpha', epmdPort: 4369, inetrcPath: 'x', hidden: true })).toEqual(expect.arrayContaining(['-sname', '-hidden']));
  });
});

describe('link preamble', () => {
  it('round-trips links, probes and standby connections', () => {
    for (const p of [{ kind: 'link' as const, target: 'b1@beta.example' }, { kind: 'probe' as const }, { kind: 'standby' as const }]) {
      const enc = encodePreamble(p);
      expect(parsePreamble(Buffer.concat([enc, Buffer.from('rest')]))).toEqual({ kind: 'ok', preamble: p, consumed: enc.length });
      for (let i = 0; i < enc.length; i++) expect(parsePreamble(enc.subarray(0, i)).kind).toBe('incomplete');
    }
  });

  it('refuses anything that is not a preamble from the first byte', () => {
    expect(parsePreamble(Buffer.from('GET / HTTP/1.1')).kind).toBe('error');
    expect(parsePreamble(Buffer.from('B')).kind).toBe('incomplete');
    expect(parsePreamble(Buffer.from('BGW1X\x00')).kind).toBe('error');
    expect(parsePreamble(Buffer.from('BGW1L\x00')).kind).toBe('error');
    expect(parsePreamble(Buffer.from('BGW1S\x01x'))).toEqual({ kind: 'error', reason: 'standby connection with a name' });
  });
});
