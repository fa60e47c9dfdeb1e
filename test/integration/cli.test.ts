// The command line as an operator uses it: the compiled CLI in a child process.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/ports.js';
import { descendantsOf, erlangNodes, type ProcView, secretExposures } from '../helpers/proc-view.js';

const CLI = join(__dirname, '../../dist/cli/main.js');
/** The demo with --once on a busy 2-core machine: two gateways, three nodes, five checks. */
const DEMO_TIMEOUT_MS = 120_000;

function cli(args: string[], timeoutMs = 30_000, input?: string) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: timeoutMs, input });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('beamgate CLI', () => {
  let dir: string;
  let roster: string;
  let epmdPort: number;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'beamgate-cli-'));
    roster = join(dir, 'roster.yaml');
    epmdPort = await freePort();
    writeFileSync(
      roster,
      `gateways:
  alpha: { host: alpha.example, address: "127.0.0.1:${await freePort()}", epmdPort: ${epmdPort}, metrics: false }
  beta:  { host: beta.example,  address: "127.0.0.1:${await freePort()}", metrics: false }
nodes:
  - { name: a1@alpha.example, gateway: alpha, port: 5001 }
  - { name: b1@beta.example, gateway: beta, port: 5001 }
operators:
  - { gateway: alpha, pattern: "ops_*" }
tls: { ca: certs/ca.pem, cert: "certs/{gateway}.pem", key: "certs/{gateway}-key.pem" }
`,
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('certs: creates the CA and one certificate per gateway, keys with mode 0600', () => {
    const r = cli(['certs', '--config', roster]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/CA: created/);
    for (const f of ['ca-key.pem', 'alpha-key.pem', 'beta-key.pem']) expect(statSync(join(dir, 'certs', f)).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, 'certs', 'alpha.pem'), 'utf8')).toMatch(/BEGIN CERTIFICATE/);
  });

  it('certs: running again never replaces the CA, and keeps certificates unless --force', () => {
    const ca = readFileSync(join(dir, 'certs', 'ca.pem'), 'utf8');
    const alpha = readFileSync(join(dir, 'certs', 'alpha.pem'), 'utf8');
    const again = cli(['certs', '--config', roster]);
    expect(again.code).toBe(0);
    expect(again.out).toMatch(/CA: reusing/);
    expect(readFileSync(join(dir, 'certs', 'alpha.pem'), 'utf8')).toBe(alpha);
    const forced = cli(['certs', '--config', roster, '--gateway', 'alpha', '--force']);
    expect(forced.code).toBe(0);
    expect(readFileSync(join(dir, 'certs', 'alpha.pem'), 'utf8')).not.toBe(alpha);
    expect(readFileSync(join(dir, 'certs', 'ca.pem'), 'utf8')).toBe(ca);
  });

  it('certs: refuses to mint a new CA over half of an old one', () => {
    const d = mkdtempSync(join(tmpdir(), 'beamgate-cli-half-'));
    writeFileSync(join(d, 'roster.yaml'), readFileSync(roster, 'utf8'));
    expect(cli(['certs', '--config', join(d, 'roster.yaml')]).code).toBe(0);
    unlinkSync(join(d, 'certs', 'ca-key.pem'));
    const r = cli(['certs', '--config', join(d, 'roster.yaml')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/refusing to create a new CA/);
    rmSync(d, { recursive: true, force: true });
  });

  it('check: accepts a valid roster and a gateway whose TLS files are sound', () => {
    expect(cli(['check', '--config', roster]).out).toMatch(/ok: 2 gateways, 2 nodes, 1 operator patterns/);
    const r = cli(['check', '--config', roster, '--gateway', 'beta']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/TLS files of beta are valid/);
  });

  it('check: lists every CA of the bundle with subject, serial and expiry; an expired one is a warning, a non-CA an error', async () => {
    const ca = readFileSync(join(dir, 'certs', 'ca.pem'), 'utf8');
    const one = cli(['check', '--config', roster]);
    expect(one.code, one.err).toBe(0);
    expect(one.out).toMatch(/tls\.ca .*ca\.pem: 1 CA\n  1\. CN=beamgate cluster CA, serial [0-9A-F]+, expires \d{4}-\d\d-\d\dT[\d:.]+Z \((3649|3650) days left\)\n/);
    const { createCa, createGatewayCert } = await import('../../src/pki/generate.js');
    const expired = await createCa('old CA', { notBefore: new Date(Date.now() - 20 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    try {
      writeFileSync(join(dir, 'certs', 'ca.pem'), ca + expired.cert);
      const two = cli(['check', '--config', roster, '--gateway', 'alpha']);
      expect(two.code, two.err).toBe(0);
      expect(two.out).toMatch(/: 2 CAs\n  1\. CN=beamgate cluster CA, .*; issued the certificate of alpha\n  2\. CN=old CA, serial [0-9A-F]+, expires .* \(EXPIRED\)\n/);
      expect(two.err).toMatch(/^warning: tls\.ca: CA CN=old CA \(serial [0-9A-F]+\) in .*ca\.pem expired on .*; it verifies nothing, remove it from the bundle$/m);
      writeFileSync(join(dir, 'certs', 'ca.pem'), ca + (await createGatewayCert(expired, 'alpha')).cert);
      const bad = cli(['check', '--config', roster]);
      expect(bad.code).toBe(2);
      expect(bad.err).toMatch(/tls\.ca: .*ca\.pem \(certificate 2 of 2\) \(serial [0-9A-F]+\) is not a CA certificate/);
    } finally {
      writeFileSync(join(dir, 'certs', 'ca.pem'), ca);
    }
  });

  it('check: exits 2 and names every problem by key path', () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, readFileSync(roster, 'utf8').replace('gateway: beta, port: 5001', 'gateway: gamma, port: 5001').replace('pattern: "ops_*"', 'pattern: "a*"'));
    const r = cli(['check', '--config', bad]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/nodes\[1\]\.gateway: unknown gateway "gamma"/);
    expect(r.err).toMatch(/operators\[0\]\.pattern: "a\*" also matches roster node a1@alpha\.example/);
  });

  it('run: an unreadable certificate stops start-up with exit 2 before any socket opens', async () => {
    const broken = join(dir, 'broken.yaml');
    writeFileSync(broken, readFileSync(roster, 'utf8').replace('cert: "certs/{gateway}.pem"', 'cert: "certs/{gateway}-missing.pem"'));
    const r = cli(['run', '--config', broken, '--gateway', 'alpha']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/tls\.cert: cannot read .*alpha-missing\.pem: ENOENT/);
    // Nothing listens on alpha's EPMD port: the process never got that far.
    const connected = await new Promise<boolean>((resolve) => {
      const s = net.connect(epmdPort, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    expect(connected).toBe(false);
  });

  it('run: a gateway missing from the roster, or none named, is a usage error', () => {
    expect(cli(['run', '--config', roster, '--gateway', 'gamma']).err).toMatch(/gateway "gamma" is not in the roster/);
    const r = spawnSync(process.execPath, [CLI, 'run', '--config', roster], { encoding: 'utf8', env: { ...process.env, BEAMGATE_GATEWAY: '' } });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/pass --gateway NAME or set BEAMGATE_GATEWAY/);
  });

  it('run: a --reload-interval that is not a whole number of seconds in bounds is a usage error', () => {
    for (const bad of ['0', '1.5', 'soon', '86401']) {
      const r = cli(['run', '--config', roster, '--gateway', 'alpha', '--reload-interval', bad]);
      expect(r.code).toBe(2);
      expect(r.err).toContain(`--reload-interval: "${bad}" is not a whole number of seconds from 1 to 86400`);
    }
    const r = spawnSync(process.execPath, [CLI, 'run', '--config', roster, '--gateway', 'alpha'], { encoding: 'utf8', env: { ...process.env, BEAMGATE_RELOAD_INTERVAL: '-3' } });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--reload-interval: "-3"');
  });

  it('run: a --data-plane other than auto, native or node is a usage error', () => {
    const r = cli(['run', '--config', roster, '--gateway', 'alpha', '--data-plane', 'fast']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('--data-plane: data plane must be auto, native or node, not "fast"');
    const e = spawnSync(process.execPath, [CLI, 'run', '--config', roster, '--gateway', 'alpha'], { encoding: 'utf8', env: { ...process.env, BEAMGATE_DATA_PLANE: 'kernel' } });
    expect(e.status).toBe(2);
    expect(e.stderr).toContain('not "kernel"');
  });

  it('hosts and node-flags: print what a node on that host needs', () => {
    const hosts = cli(['hosts', '--config', roster, '--gateway', 'alpha', '--format', 'hosts']);
    expect(hosts.out).toMatch(/^127\.0\.0\.1\s+alpha\.example/m);
    expect(hosts.out).toMatch(/^127\.0\.1\.3\s+beta\.example/m);
    const flags = cli(['node-flags', '--config', roster, '--node', 'a1@alpha.example', '--inetrc', '/etc/beamgate/alpha.inetrc']);
    expect(flags.out.trim()).toBe(
      `erl -name a1@alpha.example -start_epmd false -epmd_port ${epmdPort} -kernel inet_dist_use_interface '{127,0,0,1}' -kernel inetrc '"/etc/beamgate/alpha.inetrc"' -kernel inet_dist_listen_min 5001 -kernel inet_dist_listen_max 5001`,
    );
    expect(cli(['node-flags', '--config', roster, '--node', 'ops_jane@alpha.example', '--inetrc', 'x']).out).toMatch(/-hidden$/m);
  });

  it('node-flags --rabbitmq: export lines for RabbitMQ\'s scripts, the CLI quoted per version; unknown versions and non-roster nodes refused', () => {
    const env = (version: string) => cli(['node-flags', '--config', roster, '--node', 'a1@alpha.example', '--inetrc', '/etc/beamgate/alpha.inetrc', '--rabbitmq', version]);
    const four = env('4.0');
    expect(four.code, four.err).toBe(0);
    expect(four.out.trim().split('\n')).toEqual([
      "export RABBITMQ_NODENAME='a1@alpha.example'",
      "export RABBITMQ_DIST_PORT='5001'",
      `export ERL_EPMD_PORT='${epmdPort}'`,
      `export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-start_epmd false -kernel inet_dist_use_interface {127,0,0,1} -kernel inetrc "/etc/beamgate/alpha.inetrc"'`,
      `export RABBITMQ_CTL_ERL_ARGS='-start_epmd false -kernel inet_dist_use_interface {127,0,0,1} -kernel inetrc '\\''"/etc/beamgate/alpha.inetrc"'\\'''`,
    ]);
    expect(env('3.10').out).toContain(`export RABBITMQ_CTL_ERL_ARGS='-start_epmd false -kernel inet_dist_use_interface {127,0,0,1} -kernel inetrc "/etc/beamgate/alpha.inetrc"'`);
    const bad = env('5.1');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--rabbitmq: "5.1" is not a RabbitMQ version');
    const stranger = cli(['node-flags', '--config', roster, '--node', 'ops_jane@alpha.example', '--inetrc', '/x', '--rabbitmq', '4']);
    expect(stranger.code).toBe(2);
    expect(stranger.err).toContain('is not a node of the roster');
  });

  it('unknown commands and flags are usage errors', () => {
    expect(cli(['frobnicate']).code).toBe(2);
    expect(cli(['check', '--bogus']).code).toBe(2);
  });

  it('cookie-home: writes the cookie from stdin to DIR/.erlang.cookie (0400, DIR 0700), replaces it, and refuses an empty one', () => {
    const home = join(dir, 'node-home');
    const r = cli(['cookie-home', '--out', home], 30_000, 'first-cookie\n');
    expect(r.code, r.err).toBe(0);
    expect(readFileSync(join(home, '.erlang.cookie'), 'utf8')).toBe('first-cookie');
    expect(statSync(join(home, '.erlang.cookie')).mode & 0o777).toBe(0o400);
    expect(statSync(home).mode & 0o777).toBe(0o700);
    expect(cli(['cookie-home', '--out', home], 30_000, 'second-cookie').code).toBe(0);
    expect(readFileSync(join(home, '.erlang.cookie'), 'utf8')).toBe('second-cookie');
    const empty = cli(['cookie-home', '--out', home], 30_000, '\n');
    expect(empty.code).toBe(2);
    expect(empty.err).toContain('stdin must hold the cookie');
    expect(readFileSync(join(home, '.erlang.cookie'), 'utf8')).toBe('second-cookie');
    expect(cli(['cookie-home'], 30_000, 'x').code).toBe(2);
  });

  it('COMMAND --help: prints that command\'s usage and exits 0, needing no roster or gateway name', () => {
    const d = mkdtempSync(join(tmpdir(), 'beamgate-help-'));
    for (const command of ['run', 'check', 'certs', 'hosts', 'node-flags', 'cookie-home', 'demo']) {
      for (const flag of ['--help', '-h']) {
        // Run where nothing exists: a command that went past --help would fail or write files here.
        const r = spawnSync(process.execPath, [CLI, command, flag], { encoding: 'utf8', timeout: 30_000, cwd: d, env: { ...process.env, BEAMGATE_GATEWAY: '' } });
        expect(r.status, `${command} ${flag}: ${r.stderr}`).toBe(0);
        expect(r.stderr).toBe('');
        expect(r.stdout).toMatch(new RegExp(`^usage:\\n  beamgate ${command} `));
        // Only that command's lines, not the whole list.
        expect(r.stdout.match(/^ {2}beamgate /gm)).toHaveLength(1);
      }
    }
    expect(readdirSync(d)).toEqual([]);
    rmSync(d, { recursive: true, force: true });
  });

  it('demo --once: two gateway processes and three real nodes see each other, and no node shows the cookie in /proc', async () => {
    const d = mkdtempSync(join(tmpdir(), 'beamgate-demo-'));
    try {
      // Asynchronous, so /proc can be read while the demo's nodes run: every
      // process under the demo, as often as the loop turns, until it exits.
      const demo = spawn(process.execPath, [CLI, 'demo', '--dir', d, '--once'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      demo.stdout.on('data', (b: Buffer) => (out += b.toString()));
      demo.stderr.on('data', (b: Buffer) => (out += b.toString()));
      const exited = new Promise<number | null>((r) => demo.once('exit', (code) => r(code)));
      let code: number | null | undefined;
      void exited.then((c) => (code = c));
      const seen: ProcView[] = [];
      const deadline = Date.now() + DEMO_TIMEOUT_MS;
      while (code === undefined && Date.now() < deadline) {
        seen.push(...descendantsOf(demo.pid!));
        await new Promise((r) => setTimeout(r, 20));
      }
      if (code === undefined) demo.kill('SIGKILL');
      expect(await exited, out).toBe(0);
      expect(out).toMatch(/ok {3}a1 pings b1 \(alpha -> TLS -> beta\): pong/);
      expect(out).toMatch(/the nodes see each other through the gateways/);
      // Every node was seen running, and none of the demo's processes had the cookie in argv or environment.
      expect([...erlangNodes(seen).keys()].sort()).toEqual(['a1@alpha.demo', 'a2@alpha.demo', 'b1@beta.demo']);
      const cookie = readFileSync(join(d, 'home', '.erlang.cookie'), 'utf8').trim();
      expect(statSync(join(d, 'home', '.erlang.cookie')).mode & 0o777).toBe(0o400);
      expect(secretExposures(seen, cookie)).toEqual([]);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  }, DEMO_TIMEOUT_MS + 30_000);
});
