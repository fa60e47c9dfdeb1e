// A gateway on a bare (systemd) host: the unit in deploy/systemd/ checked by
// systemd-analyze (verify, and the security score) with its paths pointed at
// this checkout, its start, check and stop commands run as systemd would run
// them, its in-place upgrade (SIGUSR2, the PID file systemd follows), and `beamgate check --gateway NAME` warning about a real EPMD on the
// EPMD port and node ports bound beyond loopback, with real sockets.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildLocalMesh } from '../../src/cli/local-mesh.js';
import { DEFAULT_LIMITS } from '../../src/config/limits.js';
import { CLI, type ProcessMesh, startProcessMesh } from '../helpers/gateway-process.js';
import { waitFor } from '../helpers/mesh.js';
import { freePort, randomAlias } from '../helpers/ports.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const UNIT = join(ROOT, 'deploy', 'systemd', 'beamgate.service');
const NODE_DROP_IN = join(ROOT, 'deploy', 'systemd', 'beamgate-node.conf');
const SYSTEMD_ANALYZE = '/usr/bin/systemd-analyze';
/** The worst `systemd-analyze security` exposure the unit may score (0 best, 10 worst; "OK" is below 2). */
const MAX_EXPOSURE = 2.0;
/** How long a gateway started from the unit's command may take to answer /healthz on a busy machine. */
const START_TIMEOUT_MS = 20_000;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** The unit's settings: key → every value it is given, in order (systemd's own syntax: `Key=value`, `#` comments). */
function unitSettings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith('[')) continue;
    const eq = line.indexOf('=');
    out.set(line.slice(0, eq), [...(out.get(line.slice(0, eq)) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

/** The unit as installed on a host whose checkout is this one, node is this node, and /etc/beamgate is `etc`. */
function localUnit(etc: string): string {
  return readFileSync(UNIT, 'utf8').replaceAll('/usr/bin/node', process.execPath).replaceAll('/opt/beamgate', ROOT.replace(/\/$/, '')).replaceAll('/etc/beamgate', etc);
}

/** Whether a process runs (a zombie, which nobody reaped yet, does not). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** An ExecStart-style command line split as systemd splits it (no quoting in our unit), with $MAINPID-style variables left alone. */
const words = (cmd: string) => cmd.split(/\s+/).filter(Boolean);

describe('deploy/systemd/beamgate.service', () => {
  let dir: string;
  let etc: string;
  const settings = unitSettings(readFileSync(UNIT, 'utf8'));
  const one = (key: string) => {
    const v = settings.get(key);
    expect(v, key).toHaveLength(1);
    return v![0]!;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'beamgate-systemd-'));
    etc = join(dir, 'etc-beamgate');
    // /etc/beamgate as bare-host.md lays it out: the roster, this host's TLS files, beamgate.env.
    const mesh = await buildLocalMesh({
      dir: etc,
      gateways: [{ name: 'alpha', tlsPort: await freePort(), epmdPort: await freePort(), metricsPort: await freePort(), nodes: { a1: await freePort() }, loopback: randomAlias() }],
    });
    expect(mesh.rosterPath).toBe(join(etc, 'roster.yaml'));
    writeFileSync(join(etc, 'beamgate.env'), 'BEAMGATE_GATEWAY=alpha\n');
    writeFileSync(join(dir, 'beamgate.service'), localUnit(etc));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('passes systemd-analyze verify, which does refuse a unit whose program is missing and reports an unknown key', () => {
    const r = run(SYSTEMD_ANALYZE, ['verify', join(dir, 'beamgate.service')]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toBe('');
    // What makes the pass worth something: the same check on broken copies.
    writeFileSync(join(dir, 'missing.service'), localUnit(etc).replaceAll(process.execPath, join(dir, 'no-such-node')));
    expect(run(SYSTEMD_ANALYZE, ['verify', join(dir, 'missing.service')]).code).not.toBe(0);
    writeFileSync(join(dir, 'typo.service'), localUnit(etc).replace('NoNewPrivileges=', 'NoNewPrivilege='));
    expect(run(SYSTEMD_ANALYZE, ['verify', join(dir, 'typo.service')]).err).toContain("Unknown key 'NoNewPrivilege'");
  });

  it(`scores an exposure of at most ${MAX_EXPOSURE} in systemd-analyze security`, () => {
    const r = run(SYSTEMD_ANALYZE, ['security', '--offline=true', '--no-pager', join(dir, 'beamgate.service')]);
    const m = /Overall exposure level for beamgate\.service: (\d+\.\d+)/.exec(r.out);
    expect(m, r.out + r.err).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(MAX_EXPOSURE);
  });

  it('is hardened: own user, no new privileges, read-only system, no capabilities, IP and local sockets only', () => {
    expect(one('User')).toBe('beamgate');
    expect(one('NoNewPrivileges')).toBe('yes');
    expect(one('ProtectSystem')).toBe('strict');
    expect(one('ProtectHome')).toBe('yes');
    expect(one('PrivateTmp')).toBe('yes');
    // It writes nothing but its log to stderr (the journal): nothing is writable.
    expect(settings.has('ReadWritePaths')).toBe(false);
    expect(one('CapabilityBoundingSet')).toBe('');
    expect(one('AmbientCapabilities')).toBe('');
    expect(one('RestrictAddressFamilies').split(' ').sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_UNIX']);
    expect(settings.has('MemoryDenyWriteExecute')).toBe(false); // V8's JIT would die
  });

  it('restarts on failure but not on a bad configuration, reloads with SIGHUP, and waits longer than the drain', () => {
    expect(one('Restart')).toBe('on-failure');
    expect(one('RestartPreventExitStatus')).toBe('2');
    expect(one('ExecReload')).toBe('/bin/kill -HUP $MAINPID');
    expect(one('KillSignal')).toBe('SIGTERM');
    expect(Number(one('TimeoutStopSec')) * 1000).toBeGreaterThan(DEFAULT_LIMITS.drainTimeoutMs);
    expect(one('After')).toContain('network-online.target');
    expect(one('Wants')).toContain('network-online.target');
  });

  it('its ExecStartPre and ExecStart, run as the unit runs them, check the files, start the gateway, and a SIGTERM stops it cleanly', async () => {
    const env = Object.fromEntries(
      readFileSync(join(etc, 'beamgate.env'), 'utf8')
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    const local = unitSettings(localUnit(etc));
    const [checkCmd, ...checkArgs] = words(local.get('ExecStartPre')![0]!);
    const pre = run(checkCmd!, checkArgs, env);
    expect(pre.code, pre.err).toBe(0);
    expect(pre.out).toContain('TLS files of alpha are valid');
    const [cmd, ...args] = words(local.get('ExecStart')![0]!);
    const gw: ChildProcess = spawn(cmd!, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    gw.stderr!.on('data', (b: Buffer) => (log += b.toString()));
    const exited = once(gw, 'exit');
    try {
      await waitFor('the gateway to listen', () => log.includes('"gateway listening"'), START_TIMEOUT_MS);
      gw.kill(local.get('KillSignal')![0]! as NodeJS.Signals);
      const [code] = (await exited) as [number | null];
      expect(code, log).toBe(0);
    } finally {
      if (gw.exitCode === null && gw.signalCode === null) gw.kill('SIGKILL');
    }
  });

  it('keeps a PID file in its runtime directory, which systemd reads again when the main process exits', () => {
    expect(one('RuntimeDirectory')).toBe('beamgate');
    expect(one('RuntimeDirectoryMode')).toBe('0700');
    expect(one('PIDFile')).toBe('/run/beamgate/beamgate.pid');
    expect(settings.get('Environment')).toContain(`BEAMGATE_PID_FILE=${one('PIDFile')}`);
  });

  it('upgrades in place as the unit says: SIGUSR2 to the command ExecStart runs starts a successor, which takes over through the runtime directory\'s socket and names itself in the PID file; SIGTERM then stops it and the file goes', async () => {
    if (!existsSync(join(ROOT, 'build', 'fastpath.node'))) throw new Error('bare-host.test: the native data plane is not built (scripts/build-native.sh): take-overs need it');
    // The runtime directory systemd would make (/run/beamgate, mode 0700), here a directory of the test's.
    const runtime = join(dir, 'run-beamgate');
    mkdirSync(runtime, { mode: 0o700 });
    const local = unitSettings(localUnit(etc).replaceAll('/run/beamgate', runtime));
    const env: NodeJS.ProcessEnv = { RUNTIME_DIRECTORY: runtime, BEAMGATE_GATEWAY: 'alpha' };
    for (const e of local.get('Environment') ?? []) env[e.slice(0, e.indexOf('='))] = e.slice(e.indexOf('=') + 1);
    const pidFile = local.get('PIDFile')![0]!;
    expect(env.BEAMGATE_PID_FILE).toBe(pidFile);
    const [cmd, ...args] = words(local.get('ExecStart')![0]!);
    const gw: ChildProcess = spawn(cmd!, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    gw.stderr!.on('data', (b: Buffer) => (log += b.toString()));
    const exited = once(gw, 'exit');
    let successor = 0;
    try {
      await waitFor('the gateway to listen for take-overs', () => log.includes('"take-over socket listening"'), START_TIMEOUT_MS);
      expect(readFileSync(pidFile, 'utf8')).toBe(`${gw.pid}\n`);
      expect(existsSync(join(runtime, 'alpha.takeover.sock'))).toBe(true);
      gw.kill('SIGUSR2');
      const [code] = (await exited) as [number | null];
      expect(code, log).toBe(0);
      successor = Number(readFileSync(pidFile, 'utf8'));
      expect(successor).not.toBe(gw.pid);
      expect(alive(successor)).toBe(true);
      expect(log).toContain('"took over"');
      // It serves, and listens for the next take-over at the same path.
      await waitFor('the successor to listen for take-overs', () => log.split('"take-over socket listening"').length === 3, START_TIMEOUT_MS);
      process.kill(successor, 'SIGTERM');
      await waitFor('the successor to stop', () => !alive(successor), START_TIMEOUT_MS);
      expect(existsSync(pidFile)).toBe(false);
    } finally {
      if (gw.exitCode === null && gw.signalCode === null) gw.kill('SIGKILL');
      if (successor > 0 && alive(successor)) process.kill(successor, 'SIGKILL');
    }
  });

  it('the nodes\' drop-in orders a node unit after the gateway, and verifies with it', () => {
    const drop = unitSettings(readFileSync(NODE_DROP_IN, 'utf8'));
    expect(drop.get('After')).toEqual(['beamgate.service']);
    expect(drop.get('Wants')).toEqual(['beamgate.service']);
    // A node's unit with the drop-in installed beside it, as /etc/systemd/system would hold it.
    writeFileSync(join(dir, 'app-node.service'), `[Unit]\nDescription=an Erlang node\n[Service]\nExecStart=${process.execPath} --version\n`);
    mkdirSync(join(dir, 'app-node.service.d'), { recursive: true });
    cpSync(NODE_DROP_IN, join(dir, 'app-node.service.d', 'beamgate.conf'));
    const r = run(SYSTEMD_ANALYZE, ['verify', join(dir, 'app-node.service'), join(dir, 'beamgate.service')], { SYSTEMD_LOG_LEVEL: 'debug' });
    expect(r.code, r.err).toBe(0);
    // The debug dump lists the drop-ins it loaded for each unit.
    expect(r.out + r.err).toContain(`DropIn Path: ${join(dir, 'app-node.service.d', 'beamgate.conf')}`);
  });
});

describe('beamgate check --gateway NAME on the gateway\'s host', () => {
  let pm: ProcessMesh;
  const servers: net.Server[] = [];
  let epmd: ChildProcess | undefined;

  beforeAll(async () => {
    // alpha runs (a real `beamgate run` process holding its EPMD port); beta does not.
    pm = await startProcessMesh({ gateways: { alpha: ['a1', 'a2'], beta: ['b1'] }, start: ['alpha'] });
  });
  afterAll(async () => {
    for (const s of servers) s.close();
    if (epmd && epmd.exitCode === null && epmd.signalCode === null) {
      const gone = once(epmd, 'exit');
      epmd.kill('SIGKILL');
      await gone;
    }
    await pm?.stop();
  });

  const check = (gateway: string) => run(process.execPath, [CLI, 'check', '--config', pm.mesh.rosterPath, '--gateway', gateway]);
  const warnings = (err: string) => err.split('\n').filter((l) => l.startsWith('warning: '));
  const nodePort = (name: string) => pm.mesh.roster.nodes.get(name)!.port;
  const epmdPort = (gw: string) => pm.mesh.roster.gateways.get(gw)!.epmdPort;
  const listen = async (host: string, port: number) => {
    const s = net.createServer();
    servers.push(s);
    s.listen({ host, port, exclusive: true });
    await once(s, 'listening');
    return s;
  };
  const close = async (s: net.Server) => {
    s.close();
    await once(s, 'close');
  };
  /** How check names this test's own process (vitest may have renamed it). */
  const self = () => `${readFileSync('/proc/self/comm', 'utf8').trim()} (pid ${process.pid})`;
  const accepts = (port: number) =>
    new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });

  it('says nothing while the gateway itself holds its EPMD port and nothing else listens', () => {
    const r = check('alpha');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('TLS files of alpha are valid');
    expect(warnings(r.err)).toEqual([]);
  });

  it('warns (exit 0) about a node port bound on 0.0.0.0, and not about one bound on loopback', async () => {
    const wide = await listen('0.0.0.0', nodePort('a1@alpha.demo'));
    const narrow = await listen('127.0.0.1', nodePort('a2@alpha.demo'));
    try {
      const r = check('alpha');
      expect(r.code, r.err).toBe(0);
      const w = warnings(r.err);
      expect(w).toHaveLength(1);
      expect(w[0]).toContain(`0.0.0.0:${nodePort('a1@alpha.demo')}, the distribution port of a1@alpha.demo, is bound beyond loopback by ${self()}`);
    } finally {
      await close(wide);
      await close(narrow);
    }
    expect(warnings(check('alpha').err)).toEqual([]);
  });

  it('warns about a node port bound on the IPv6 wildcard', async () => {
    const wide = await listen('::', nodePort('a2@alpha.demo'));
    try {
      const w = warnings(check('alpha').err);
      expect(w).toHaveLength(1);
      expect(w[0]).toContain(`[::]:${nodePort('a2@alpha.demo')}, the distribution port of a2@alpha.demo`);
    } finally {
      await close(wide);
    }
  });

  it('warns about a real epmd on the EPMD port, naming it, even on loopback', async () => {
    const port = epmdPort('beta');
    epmd = spawn('epmd', ['-port', String(port), '-address', '127.0.0.1'], { stdio: 'ignore' });
    await waitFor('epmd to listen', () => accepts(port), START_TIMEOUT_MS);
    const r = check('beta');
    expect(r.code, r.err).toBe(0);
    // epmd adds ::1 to the addresses it is given, when the host has IPv6: one warning per listener.
    const w = warnings(r.err);
    expect(w.length).toBeGreaterThanOrEqual(1);
    expect(w[0]).toContain(`127.0.0.1:${port}, gateway beta's EPMD port (epmdPort ${port}), is held by epmd (pid ${epmd.pid}), not by the gateway`);
    for (const line of w) {
      expect(line).toMatch(new RegExp(`^warning: (127\\.0\\.0\\.1|\\[::1\\]):${port}, .* is held by epmd \\(pid ${epmd.pid}\\)`));
      expect(line).toContain('systemctl disable --now epmd.socket epmd.service');
    }
  });

  it('warns about anything else on the EPMD port on every address, the wildcard too', async () => {
    const port = epmdPort('beta');
    // The epmd of the previous test goes first: the wildcard cannot share the port.
    if (epmd && epmd.exitCode === null && epmd.signalCode === null) {
      const gone = once(epmd, 'exit');
      epmd.kill('SIGKILL');
      await gone;
    }
    const wide = await listen('0.0.0.0', port);
    try {
      const w = warnings(check('beta').err);
      expect(w).toHaveLength(1);
      expect(w[0]).toContain(`0.0.0.0:${port}, gateway beta's EPMD port (epmdPort ${port}), is held by ${self()}, not by the gateway: a real EPMD there answers the network`);
    } finally {
      await close(wide);
    }
  });
});

describe('scripts/no-real-epmd.sh (what scripts/setup.sh runs after its apt-get install)', () => {
  const SCRIPT = join(ROOT, 'scripts', 'no-real-epmd.sh');
  let dir: string;
  /** A systemctl on PATH that records its arguments and lists epmd's units as Debian installs them. */
  let calls: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'beamgate-no-epmd-'));
    calls = join(dir, 'systemctl.calls');
    mkdirSync(join(dir, 'bin'));
    writeFileSync(
      join(dir, 'bin', 'systemctl'),
      `#!/bin/sh\necho "$*" >> '${calls}'\n[ "$1" = list-unit-files ] && printf 'epmd.service disabled enabled\\nepmd.socket enabled enabled\\n'\nexit 0\n`,
      { mode: 0o755 },
    );
    env = { PATH: `${join(dir, 'bin')}:${process.env.PATH}` };
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const script = (args: string[], systemdDir: string) => run('bash', [SCRIPT, ...args], { ...env, BEAMGATE_SYSTEMD_DIR: systemdDir });
  const recorded = () => (existsSync(calls) ? readFileSync(calls, 'utf8').trim().split('\n') : []);

  it('does nothing at all on a machine without systemd, as here', () => {
    const r = script(['disable'], join(dir, 'no-systemd-here'));
    expect(r.code, r.err).toBe(0);
    expect(r.out + r.err).toBe('');
    expect(recorded()).toEqual([]);
    expect(script(['bogus'], join(dir, 'no-systemd-here')).code).toBe(2);
  });

  it('with systemd: disables and stops epmd.socket and epmd.service', () => {
    const systemd = join(dir, 'run-systemd-system');
    mkdirSync(systemd);
    const r = script(['disable'], systemd);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("disabling Debian's epmd.socket");
    expect(recorded()).toContain('disable --now epmd.socket epmd.service');
  });

  it('setup.sh forbids every service start during its install and runs the disable step whether or not it installed anything', () => {
    const setup = readFileSync(join(ROOT, 'scripts', 'setup.sh'), 'utf8');
    const at = (s: string) => setup.indexOf(s);
    expect(at('exit 101')).toBeGreaterThan(0);
    expect(at('exit 101')).toBeLessThan(at('apt-get install'));
    // After the install block's `fi`: it runs on every setup, packages already there or not.
    const afterInstall = setup.slice(at('apt-get install'));
    expect(afterInstall.indexOf('\nfi\n')).toBeGreaterThan(0);
    expect(afterInstall.indexOf('\nfi\n')).toBeLessThan(afterInstall.indexOf('bash scripts/no-real-epmd.sh disable'));
    expect(setup).not.toMatch(/^\s*(epmd|erl)\b/m);
  });
});
