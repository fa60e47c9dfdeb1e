// docker-compose.yml for real: a real Docker engine (started here when none
// runs, and stopped again only then), images built by `docker-compose build`
// from the project's own files, the three-host deployment brought up as
// docs/deployment.md says, and checked as a user would: pong between every
// pair of nodes on different hosts, rpc, a remote shell through two gateways,
// Prometheus with every target up, only the TLS and metrics ports reachable
// from another host's namespace, a node that stops showing as not registered,
// a gateway restart (`docker-compose restart`) and a gateway crash (kill -9)
// that the nodes survive in place, an upgrade to a new image by take-over
// (deploy/compose-upgrade.sh) that no node notices, one whose image cannot
// start that leaves the old gateway serving, and `down -v` leaving nothing behind.
//
// No image registry is needed: the base images are stand-ins imported from the
// cached Debian roots set-up makes (bookworm with Node 20 and a C compiler,
// scripts/image-roots.sh; trixie with OTP 27, scripts/otp-roots.sh; Debian's
// Prometheus on the first), under local names the compose file's image
// variables point at, so no upstream name is shadowed on the engine. Images
// the test made are removed at the end (BEAMGATE_DOCKER_KEEP_IMAGES=1 keeps
// them, for a quicker next run). Needs root (dockerd, nsenter, kill).

import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, closeSync, cpSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { CLI } from '../helpers/gateway-process.js';
import { sample, waitFor } from '../helpers/mesh.js';
import { freePort } from '../helpers/ports.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ROOTS_DIR = process.env.BEAMGATE_ROOTS_DIR ?? '/var/cache/beamgate/roots';
/** The roots the stand-in base images are imported from. */
const NODE_ROOT = join(ROOTS_DIR, 'bookworm-node');
const ERLANG_ROOT = join(ROOTS_DIR, 'trixie');
/** Stand-ins for node:20-bookworm-slim, erlang:27 and prom/prometheus, under names of their own. */
const STANDIN = {
  node: 'beamgate-standin/node:20-bookworm-slim',
  erlangRepo: 'beamgate-standin/erlang',
  otp: '27',
  prometheus: 'beamgate-standin/prometheus:debian',
};
/** What the compose deployment runs (docker-compose.yml). */
const GATEWAYS = ['alpha', 'beta', 'gamma'] as const;
const NODES = ['app@alpha.example', 'jobs@alpha.example', 'app@beta.example', 'app@gamma.example'];
const NODE_SERVICES = ['node-alpha-app', 'node-alpha-jobs', 'node-beta-app', 'node-gamma-app'];
const hostOf = (node: string) => node.split('@')[1]!.split('.')[0]!;
/** The files a fresh clone has that the deployment uses: copied into a directory of the test's own. */
const PROJECT_FILES = ['docker-compose.yml', 'Dockerfile', '.dockerignore', 'package.json', 'package-lock.json', 'tsconfig.json', 'src', 'native', 'scripts/build-native.sh', 'deploy', 'config'];

/** dockerd answering on its socket after it was started, on a busy machine. */
const ENGINE_START_TIMEOUT_MS = 60_000;
/** dockerd stopping its containers and itself on SIGTERM. */
const ENGINE_STOP_TIMEOUT_MS = 30_000;
/** `docker import` of one root (several hundred MB). */
const IMPORT_TIMEOUT_MS = 180_000;
/** `docker-compose build`: npm ci, tsc and the native plane on 2 loaded cores. */
const BUILD_TIMEOUT_MS = 600_000;
/** `docker-compose up -d`: gateways healthy (10 s health interval), then the nodes. */
const UP_TIMEOUT_MS = 180_000;
/** Nodes registering, gateways probing their peers, the first pong. */
const FIRST_PONG_TIMEOUT_MS = 120_000;
/** One docker/docker-compose command that is not a build, up or restart. */
const COMMAND_TIMEOUT_MS = 60_000;
/** One operator node's life: start, rpc calls bounded by RPC_TIMEOUT_MS each, halt. */
const OPERATOR_TIMEOUT_MS = 60_000;
const RPC_TIMEOUT_MS = 10_000;
/** `docker-compose restart gateway-beta`: the drain (limits.drainTimeoutMs, 30 s) inside compose's 40 s grace, then the start. */
const RESTART_TIMEOUT_MS = 120_000;
/** From a restarted gateway's start to the nodes answering: OTP registers again every 2 s, plus the peers' probes. */
const RECOVERY_TIMEOUT_MS = 90_000;
/** Prometheus scrapes every 15 s (deploy/prometheus.yml): a change shows within two scrapes and a query. */
const PROMETHEUS_TIMEOUT_MS = 90_000;
/** deploy/compose-upgrade.sh: its own bound (UPGRADE_TIMEOUT_S, 120 s) and docker-compose's start of the new container. */
const UPGRADE_TIMEOUT_MS = 180_000;
/** The whole file's set-up: engine, imports, build, up and the first pong. */
const SETUP_TIMEOUT_MS = ENGINE_START_TIMEOUT_MS + 2 * IMPORT_TIMEOUT_MS + BUILD_TIMEOUT_MS + UP_TIMEOUT_MS + FIRST_PONG_TIMEOUT_MS;
/** Polls of a condition that needs a command run: not faster than this. */
const POLL_MS = 1_000;
/** Connection attempts at once when scanning a host's ports. */
const SCAN_CONCURRENCY = 200;

interface Result {
  code: number | null;
  out: string;
  err: string;
}

/** Runs a command without blocking the event loop, bounded by timeoutMs (then SIGKILL). */
function sh(cmd: string, args: string[], opts: { timeoutMs: number; cwd?: string; input?: string; env?: NodeJS.ProcessEnv }): Promise<Result> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
    // A command that exits without reading its input closes the pipe first: EPIPE here is not an error of the test.
    p.stdin.on('error', () => {});
    p.stdin.end(opts.input ?? '');
  });
}

/** As sh(), and throws with the command's output unless it exits 0. */
async function must(cmd: string, args: string[], opts: Parameters<typeof sh>[2]): Promise<string> {
  const r = await sh(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${(r.err + r.out).slice(-3000)}`);
  return r.out;
}

const docker = (args: string[], timeoutMs = COMMAND_TIMEOUT_MS) => must('docker', args, { timeoutMs });
const engineAnswers = async () => (await sh('docker', ['version', '--format', '{{.Server.Version}}'], { timeoutMs: COMMAND_TIMEOUT_MS })).code === 0;
/**
 * What dockerd changes on the machine and leaves behind when it stops: its
 * iptables chains (and FORWARD policy DROP), IPv4 forwarding on, the docker0
 * bridge. Read before an engine this test starts, and put back after it stops.
 */
interface HostNetState {
  /** iptables-save's dump, to restore from. */
  iptables: string;
  /** The rules of the tables dockerd writes (filter, nat), to compare. */
  rules: string;
  ipForward: string;
  docker0: boolean;
}
const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';
const IPTABLES_TABLES = ['filter', 'nat'];
async function hostNetState(): Promise<HostNetState> {
  return {
    iptables: await must('iptables-save', [], { timeoutMs: COMMAND_TIMEOUT_MS }),
    rules: (await Promise.all(IPTABLES_TABLES.map((t) => must('iptables', ['-t', t, '-S'], { timeoutMs: COMMAND_TIMEOUT_MS })))).join(''),
    ipForward: readFileSync(IP_FORWARD, 'utf8').trim(),
    docker0: existsSync('/sys/class/net/docker0'),
  };
}
async function restoreHostNet(was: HostNetState): Promise<void> {
  // Docker's chains go first: a table the dump does not name (nat, on a machine that had none) is not flushed by iptables-restore.
  for (const t of IPTABLES_TABLES) {
    await must('iptables', ['-t', t, '-F'], { timeoutMs: COMMAND_TIMEOUT_MS });
    await must('iptables', ['-t', t, '-X'], { timeoutMs: COMMAND_TIMEOUT_MS });
  }
  await must('iptables', ['-P', 'FORWARD', 'ACCEPT'], { timeoutMs: COMMAND_TIMEOUT_MS });
  await must('iptables-restore', [], { timeoutMs: COMMAND_TIMEOUT_MS, input: was.iptables });
  writeFileSync(IP_FORWARD, `${was.ipForward}\n`);
  if (!was.docker0 && existsSync('/sys/class/net/docker0')) await must('ip', ['link', 'delete', 'docker0'], { timeoutMs: COMMAND_TIMEOUT_MS });
}

const imageExists = async (name: string) => (await sh('docker', ['image', 'inspect', name], { timeoutMs: COMMAND_TIMEOUT_MS })).code === 0;
const allImageIds = async () => new Set((await docker(['images', '-a', '-q', '--no-trunc'])).split('\n').filter(Boolean));
const seconds = (ms: number) => (ms / 1000).toFixed(1);

/** This machine's CA bundle: what the build's `npm ci` must trust to reach the registry from here (a proxy's CA included). */
const CA_BUNDLE = 'etc/ssl/certs/ca-certificates.crt';

/**
 * `docker import` of a root directory (tar -C ROOT -c . | docker import - NAME),
 * with `hostFiles` (paths relative to /) taken from this machine instead of the root.
 */
async function importRoot(root: string, name: string, changes: string[], hostFiles: string[] = []): Promise<void> {
  const tar = ['tar', '-c', ...hostFiles.map((f) => `--exclude=./${f}`), '-C', root, '.', ...(hostFiles.length > 0 ? ['-C', '/', ...hostFiles] : [])];
  const cmd = `${tar.map((a) => `'${a}'`).join(' ')} | docker import ${changes.map((c) => `--change '${c}'`).join(' ')} - '${name}' >/dev/null`;
  await must('sh', ['-c', cmd], { timeoutMs: IMPORT_TIMEOUT_MS });
}

describe('docker-compose.yml in a real Docker engine: three hosts, a gateway restart, a gateway crash and an upgrade by take-over', () => {
  let dir: string;
  let project: string;
  let dockerd: ChildProcess | undefined;
  let hostNetBefore: HostNetState | undefined;
  let imagesBefore: Set<string> | undefined;
  let up = false;
  let downDone = false;
  const figures: string[] = [];
  const figure = (what: string, ms: number) => {
    figures.push(`${what} ${seconds(ms)} s`);
    console.log(`docker.test: ${what} ${seconds(ms)} s`);
  };

  const compose = (args: string[], timeoutMs = COMMAND_TIMEOUT_MS) => must('docker-compose', ['-p', project, ...args], { timeoutMs, cwd: dir });
  const containerOf = async (service: string) => {
    const id = (await compose(['ps', '-q', service])).trim();
    if (!id) throw new Error(`no container for ${service}`);
    return id;
  };
  const inspect = async (id: string) =>
    (JSON.parse(await docker(['inspect', id])) as { Id: string; RestartCount: number; State: { Status: string; Pid: number; StartedAt: string; Health?: { Status: string } }; NetworkSettings: { Networks: Record<string, { IPAddress: string }> } }[])[0]!;
  /** An operator node on `host` (a name of the roster's ops_* pattern, run in that host's first node container) evaluating `expr`. */
  const operator = async (host: string, name: string, expr: string, timeoutMs = OPERATOR_TIMEOUT_MS) =>
    sh('docker-compose', ['-p', project, 'exec', '-T', `node-${host}-app`, 'beamgate-erl-node', `${name}@${host}.example`, '-noshell', '-eval', `${expr}, halt().`], { timeoutMs, cwd: dir });
  /** For each ordered pair: what rpc:call(From, net_adm, ping, [To]) answered, as seen by an operator on `host`. */
  const pings = async (host: string, pairs: [string, string][]): Promise<Map<string, string>> => {
    const list = pairs.map(([a, b]) => `{'${a}','${b}'}`).join(',');
    const r = await operator(host, 'ops_ci', `[io:format("ping ~s ~s ~w~n", [A, B, rpc:call(A, net_adm, ping, [B], ${RPC_TIMEOUT_MS})]) || {A, B} <- [${list}]]`);
    const out = new Map<string, string>();
    for (const m of r.out.matchAll(/^ping (\S+) (\S+) (\S+)$/gm)) out.set(`${m[1]} ${m[2]}`, m[3]!);
    return out;
  };
  /** The pings if every one answered pong; else undefined, after POLL_MS (each try starts an Erlang VM). */
  const allPong = async (host: string, pairs: [string, string][]) => {
    const r = await pings(host, pairs);
    if (pairs.every(([a, b]) => r.get(`${a} ${b}`) === 'pong')) return r;
    await new Promise((res) => setTimeout(res, POLL_MS));
    return undefined;
  };
  const crossHostPairs = (): [string, string][] => NODES.flatMap((a) => NODES.filter((b) => hostOf(a) !== hostOf(b)).map((b) => [a, b] as [string, string]));
  const readyz = async (gw: string) => {
    // docker exec of the service's one container: after an upgrade it is no longer number 1, which `docker-compose exec` assumes.
    const r = await sh('docker', ['exec', await containerOf(`gateway-${gw}`), 'node', '-e', "fetch('http://127.0.0.1:9464/readyz').then((r) => r.text()).then((t) => process.stdout.write(t))"], {
      timeoutMs: COMMAND_TIMEOUT_MS,
    });
    return r.code === 0 ? (JSON.parse(r.out) as { ready: boolean; registered_nodes: string[]; unregistered_nodes: string[] }) : undefined;
  };
  let promPort = 0;
  const query = async (expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> => {
    const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return ((await res.json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } }).data.result;
  };
  const scalar = async (expr: string) => Number((await query(expr))[0]?.value[1] ?? NaN);
  /** The node containers as they are: id, start time and restart count, which a gateway restart must not change. */
  const nodeContainers = async () => Promise.all(NODE_SERVICES.map(async (s) => inspect(await containerOf(s)).then((c) => `${s} ${c.Id} ${c.State.StartedAt} ${c.RestartCount} ${c.State.Status}`)));

  beforeAll(async () => {
    // The engine: the one that runs, or one started here (and stopped in afterAll).
    if (typeof process.getuid === 'function' && process.getuid() !== 0) throw new Error('docker.test needs root: it may start dockerd, and enters the containers\' namespaces with nsenter');
    const t0 = Date.now();
    if (!(await engineAnswers())) {
      if (!existsSync('/usr/sbin/dockerd')) throw new Error('docker.test: no Docker engine answers and /usr/sbin/dockerd is not installed (scripts/setup.sh installs Debian\'s docker.io)');
      hostNetBefore = await hostNetState();
      const log = join(tmpdir(), `beamgate-dockerd-${process.pid}.log`);
      const fd = openSync(log, 'w');
      dockerd = spawn('/usr/sbin/dockerd', [], { stdio: ['ignore', fd, fd] });
      closeSync(fd);
      await waitFor('dockerd to answer', async () => (dockerd!.exitCode === null ? engineAnswers() : Promise.reject(new Error(`dockerd exited ${dockerd!.exitCode}`))), ENGINE_START_TIMEOUT_MS).catch((err: Error) => {
        throw new Error(`docker.test: the Docker engine cannot start on this machine (${err.message}); dockerd's log ${log}:\n${readFileSync(log, 'utf8').slice(-3000)}`);
      });
      figure('engine start', Date.now() - t0);
    }
    imagesBefore = await allImageIds();

    // The stand-in base images, from the cached roots.
    for (const root of [NODE_ROOT, ERLANG_ROOT]) {
      if (!existsSync(root)) throw new Error(`docker.test: ${root} is missing: scripts/setup.sh makes it (scripts/image-roots.sh, scripts/otp-roots.sh)`);
    }
    const t1 = Date.now();
    // Node's own CA list does not have what this machine may add to the system's (a proxy's CA): the stand-in trusts the system's, for npm ci.
    if (!(await imageExists(STANDIN.node))) await importRoot(NODE_ROOT, STANDIN.node, ['CMD ["node"]', `ENV NODE_EXTRA_CA_CERTS=/${CA_BUNDLE}`], [CA_BUNDLE]);
    const erlangImage = `${STANDIN.erlangRepo}:${STANDIN.otp}`;
    if (!(await imageExists(erlangImage))) await importRoot(ERLANG_ROOT, erlangImage, ['CMD ["erl"]']);
    if (!(await imageExists(STANDIN.prometheus))) {
      // As upstream's image: /bin/prometheus as entrypoint, user nobody, data in /prometheus.
      const ctx = mkdtempSync(join(tmpdir(), 'beamgate-prom-image-'));
      try {
        cpSync('/usr/bin/prometheus', join(ctx, 'prometheus'));
        writeFileSync(
          join(ctx, 'Dockerfile'),
          [`FROM ${STANDIN.node}`, 'COPY prometheus /bin/prometheus', 'RUN mkdir -p /prometheus /etc/prometheus && chown nobody:nogroup /prometheus', 'USER nobody', 'WORKDIR /prometheus', 'ENTRYPOINT ["/bin/prometheus"]', ''].join('\n'),
        );
        await must('docker', ['build', '-q', '-t', STANDIN.prometheus, ctx], { timeoutMs: IMPORT_TIMEOUT_MS });
      } finally {
        rmSync(ctx, { recursive: true, force: true });
      }
    }
    figure('base images (stand-ins)', Date.now() - t1);

    // A fresh clone's files, certificates made by the CLI, the key of each gateway handed to uid 1000 (never the CA key), and .env.
    dir = mkdtempSync(join(tmpdir(), 'beamgate-docker-'));
    project = `bgtest${randomBytes(4).toString('hex')}`;
    for (const f of PROJECT_FILES) cpSync(join(ROOT, f), join(dir, f), { recursive: true });
    await must(process.execPath, [CLI, 'certs', '--config', join(dir, 'config', 'cluster.yaml')], { timeoutMs: COMMAND_TIMEOUT_MS });
    for (const gw of GATEWAYS) chownSync(join(dir, 'certs', `${gw}-key.pem`), 1000, 1000);
    promPort = await freePort();
    const env = {
      ERLANG_COOKIE: randomBytes(24).toString('hex'),
      NODE_IMAGE: STANDIN.node,
      ERLANG_IMAGE: STANDIN.erlangRepo,
      OTP_RELEASE: STANDIN.otp,
      PROMETHEUS_IMAGE: STANDIN.prometheus,
      PROMETHEUS_PORT: String(promPort),
      BEAMGATE_IMAGE: `${project}/gateway:local`,
      BEAMGATE_NODE_IMAGE: `${project}/node:local`,
    };
    writeFileSync(join(dir, '.env'), Object.entries(env).map(([k, v]) => `${k}=${v}\n`).join(''));
    chmodSync(join(dir, '.env'), 0o600);

    const t2 = Date.now();
    await compose(['build'], BUILD_TIMEOUT_MS);
    figure('build', Date.now() - t2);
    const t3 = Date.now();
    up = true;
    await compose(['up', '-d'], UP_TIMEOUT_MS);
    figure('up -d', Date.now() - t3);
    await waitFor('a pong between every pair of nodes on different hosts', () => allPong('alpha', crossHostPairs()), FIRST_PONG_TIMEOUT_MS);
    figure('first pong on every host pair, after up', Date.now() - t3);
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    const problems: string[] = [];
    if (up && !downDone && dir) {
      const r = await sh('docker-compose', ['-p', project, 'down', '-v', '--remove-orphans'], { timeoutMs: RESTART_TIMEOUT_MS, cwd: dir });
      if (r.code !== 0) problems.push(`down -v: ${r.err}`);
    }
    // Every image this run made: the builds, their intermediate stages, and the stand-ins it imported.
    if (imagesBefore && process.env.BEAMGATE_DOCKER_KEEP_IMAGES !== '1') {
      const made = [...(await allImageIds())].filter((id) => !imagesBefore!.has(id));
      if (made.length > 0) {
        const r = await sh('docker', ['rmi', '-f', ...made], { timeoutMs: COMMAND_TIMEOUT_MS });
        if (r.code !== 0 && !/No such image/.test(r.err)) problems.push(`rmi: ${r.err}`);
      }
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (dockerd && dockerd.exitCode === null) {
      const exited = new Promise((r) => dockerd!.once('exit', r));
      dockerd.kill('SIGTERM');
      const stopped = await Promise.race([exited.then(() => true), new Promise((r) => setTimeout(() => r(false), ENGINE_STOP_TIMEOUT_MS))]);
      if (!stopped) {
        dockerd.kill('SIGKILL');
        problems.push('dockerd did not stop on SIGTERM');
      }
    }
    // The machine's network as it was before the engine this test started.
    if (hostNetBefore && dockerd) {
      await restoreHostNet(hostNetBefore);
      const now = await hostNetState();
      if (now.rules !== hostNetBefore.rules) problems.push(`iptables not as before:\n${now.rules}\nwas:\n${hostNetBefore.rules}`);
      if (now.ipForward !== hostNetBefore.ipForward || now.docker0 !== hostNetBefore.docker0) problems.push(`ip_forward ${now.ipForward}, docker0 ${now.docker0}: not as before`);
    }
    console.log(`docker.test figures: ${figures.join('; ')}`);
    expect(problems).toEqual([]);
  }, RESTART_TIMEOUT_MS + 2 * COMMAND_TIMEOUT_MS + ENGINE_STOP_TIMEOUT_MS);

  it('is up: three healthy gateways in their holders\' namespaces, four nodes, Prometheus, every gateway on the native data plane', async () => {
    for (const gw of GATEWAYS) {
      const holder = await inspect(await containerOf(`host-${gw}`));
      const gateway = await inspect(await containerOf(`gateway-${gw}`));
      expect(holder.State.Status).toBe('running');
      expect(gateway.State.Health?.Status).toBe('healthy');
      // The gateway has no network of its own: it is in its holder's namespace.
      expect(Object.keys(gateway.NetworkSettings.Networks)).toEqual([]);
    }
    for (const s of NODE_SERVICES) expect((await inspect(await containerOf(s))).State.Status, s).toBe('running');
    for (const gw of GATEWAYS) {
      const r = await readyz(gw);
      expect(r, `/readyz of ${gw}`).toMatchObject({ ready: true, unregistered_nodes: [] });
      expect([...r!.registered_nodes].sort()).toEqual(NODES.filter((n) => hostOf(n) === gw).map((n) => n.split('@')[0]).sort());
    }
  }, 2 * COMMAND_TIMEOUT_MS * GATEWAYS.length);

  it('every node pings every node on another host, and rpc runs on each, from an operator named by the roster\'s ops_* pattern', async () => {
    const r = await pings('gamma', crossHostPairs());
    expect([...r.values()].every((v) => v === 'pong'), JSON.stringify([...r])).toBe(true);
    expect(r.size).toBe(crossHostPairs().length);
    const nodes = await operator('beta', 'ops_rpc', `[io:format("node ~s~n", [rpc:call(N, erlang, node, [], ${RPC_TIMEOUT_MS})]) || N <- ['${NODES.join("','")}']]`);
    expect([...nodes.out.matchAll(/^node (\S+)$/gm)].map((m) => m[1])).toEqual(NODES);
  }, 2 * OPERATOR_TIMEOUT_MS);

  it('a remote shell from beta to app@gamma.example runs through both gateways, and ending its input leaves the node running', async () => {
    const r = await must('docker', ['exec', '-i', await containerOf('node-beta-app'), 'beamgate-erl-node', 'ops_shell@beta.example', '-remsh', 'app@gamma.example'], {
      timeoutMs: OPERATOR_TIMEOUT_MS,
      input: 'io:format("remsh-on:~s~n", [node()]).\n',
    });
    expect(r).toContain('remsh-on:app@gamma.example');
    expect((await pings('alpha', [['app@alpha.example', 'app@gamma.example']])).get('app@alpha.example app@gamma.example')).toBe('pong');
  }, 2 * OPERATOR_TIMEOUT_MS);

  it('from another host\'s namespace only the TLS port 4370 and the metrics port 9464 answer, of all 65535', async () => {
    const alpha = await inspect(await containerOf('host-alpha'));
    const ip = Object.values(alpha.NetworkSettings.Networks)[0]!.IPAddress;
    const beta = await inspect(await containerOf('host-beta'));
    const scan = [
      "import net from 'node:net';",
      'const [host, n] = [process.argv[1], Number(process.argv[2])];',
      'const open = []; let next = 1;',
      "const one = (port) => new Promise((res) => { const s = net.connect({ host, port }); s.setTimeout(5000); s.once('connect', () => { open.push(port); s.destroy(); res(); }); s.once('error', res); s.once('timeout', () => { s.destroy(); open.push(-port); res(); }); });",
      'await Promise.all(Array.from({ length: n }, async () => { while (next <= 65535) await one(next++); }));',
      'console.log(JSON.stringify(open.sort((a, b) => a - b)));',
    ].join('\n');
    const out = await must('nsenter', ['-t', String(beta.State.Pid), '-n', process.execPath, '--input-type=module', '-e', scan, ip, String(SCAN_CONCURRENCY)], { timeoutMs: OPERATOR_TIMEOUT_MS });
    expect(JSON.parse(out)).toEqual([4370, 9464]);
  }, 2 * OPERATOR_TIMEOUT_MS);

  it('Prometheus scrapes every gateway, has every alert rule of deploy/alerts.yml, and its queries over beamgate\'s series add up', async () => {
    await waitFor('every target up', async () => (await scalar('count(up{job="beamgate"} == 1)')) === GATEWAYS.length, PROMETHEUS_TIMEOUT_MS);
    const rules = (await (await fetch(`http://127.0.0.1:${promPort}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string }[] }[] } };
    const alerts = parseYaml(readFileSync(join(ROOT, 'deploy', 'alerts.yml'), 'utf8')) as { groups: { rules: { alert: string }[] }[] };
    const loaded = rules.data.groups.flatMap((g) => g.rules);
    expect(loaded.map((r) => r.name).sort()).toEqual(alerts.groups.flatMap((g) => g.rules.map((r) => r.alert)).sort());
    expect(loaded.every((r) => r.health === 'ok'), JSON.stringify(loaded)).toBe(true);
    await waitFor('every gateway to reach both peers', async () => (await scalar('count(beamgate_peer_reachable == 1)')) === 6, PROMETHEUS_TIMEOUT_MS);
    await waitFor('every roster node registered', async () => (await scalar('sum(beamgate_roster_node_registered)')) === NODES.length, PROMETHEUS_TIMEOUT_MS);
    expect(await scalar('count(beamgate_data_plane_info{plane="native"} == 1)')).toBe(GATEWAYS.length);
    expect(await scalar('sum(beamgate_links_opened_total)')).toBeGreaterThan(0);
  }, 3 * PROMETHEUS_TIMEOUT_MS);

  it('a stopped node is named by /readyz and has its series at 0 in Prometheus; started again, it is back', async () => {
    await compose(['stop', 'node-alpha-jobs'], RESTART_TIMEOUT_MS);
    await waitFor('alpha to list jobs@alpha.example as not registered', async () => (await readyz('alpha'))?.unregistered_nodes.join() === 'jobs@alpha.example', COMMAND_TIMEOUT_MS);
    expect((await readyz('alpha'))!.ready).toBe(true);
    await waitFor('Prometheus to see jobs@alpha.example not registered', async () => (await scalar('beamgate_roster_node_registered{node="jobs@alpha.example"}')) === 0, PROMETHEUS_TIMEOUT_MS);
    await compose(['start', 'node-alpha-jobs'], COMMAND_TIMEOUT_MS);
    await waitFor('jobs@alpha.example registered again', async () => (await readyz('alpha'))?.unregistered_nodes.length === 0, COMMAND_TIMEOUT_MS);
  }, RESTART_TIMEOUT_MS + PROMETHEUS_TIMEOUT_MS + 3 * COMMAND_TIMEOUT_MS);

  it('`docker-compose restart gateway-beta`: the nodes stay as they are (same containers, never restarted) and answer again in bounded time', async () => {
    const before = await nodeContainers();
    const holder = (await inspect(await containerOf('host-beta'))).State.StartedAt;
    const t0 = Date.now();
    await compose(['restart', 'gateway-beta'], RESTART_TIMEOUT_MS);
    const restarted = Date.now();
    figure('docker-compose restart gateway-beta (the drain included)', restarted - t0);
    const pairs: [string, string][] = [
      ['app@alpha.example', 'app@beta.example'],
      ['app@beta.example', 'app@gamma.example'],
    ];
    await waitFor('app@beta.example to answer again', () => allPong('alpha', pairs), RECOVERY_TIMEOUT_MS);
    figure('pong again after the restart command returned', Date.now() - restarted);
    expect((await readyz('beta'))?.registered_nodes).toEqual(['app']);
    expect(await nodeContainers()).toEqual(before);
    expect((await inspect(await containerOf('host-beta'))).State.StartedAt).toBe(holder);
  }, RESTART_TIMEOUT_MS + RECOVERY_TIMEOUT_MS + 2 * COMMAND_TIMEOUT_MS);

  it('kill -9 of gateway-gamma\'s process: Docker starts it again in the same namespace, and the nodes answer again in bounded time', async () => {
    const before = await nodeContainers();
    const id = await containerOf('gateway-gamma');
    const was = await inspect(id);
    const t0 = Date.now();
    process.kill(was.State.Pid, 'SIGKILL');
    await waitFor('Docker to start gateway-gamma again', async () => {
      const c = await inspect(id);
      return c.RestartCount === was.RestartCount + 1 && c.State.Status === 'running';
    }, RECOVERY_TIMEOUT_MS);
    const pairs: [string, string][] = [
      ['app@alpha.example', 'app@gamma.example'],
      ['app@gamma.example', 'app@beta.example'],
      ['jobs@alpha.example', 'app@gamma.example'],
    ];
    await waitFor('app@gamma.example to answer again', () => allPong('beta', pairs), RECOVERY_TIMEOUT_MS);
    figure('pong again after kill -9 of the gateway', Date.now() - t0);
    expect(await nodeContainers()).toEqual(before);
    // Same container (Docker's restart, not a recreation), registered again, and healthy again.
    expect((await containerOf('gateway-gamma'))).toBe(id);
    expect((await readyz('gamma'))?.registered_nodes).toEqual(['app']);
    await waitFor('gateway-gamma healthy again', async () => (await inspect(id)).State.Health?.Status === 'healthy', PROMETHEUS_TIMEOUT_MS);
  }, 2 * RECOVERY_TIMEOUT_MS + PROMETHEUS_TIMEOUT_MS + 2 * COMMAND_TIMEOUT_MS);

  /** Starts, on each node, a process (bg_downs) that records every nodedown but an operator's (ops_* nodes come and go with each check). */
  const recordNodedowns = async () => {
    const rec = `fun() -> register(bg_downs, self()), ok = net_kernel:monitor_nodes(true), (fun L(D) -> receive {nodedown, X} -> L([X | D]); {downs, P} -> P ! {downs, [Y || Y <- D, not lists:prefix("ops_", atom_to_list(Y))]}, L(D); _ -> L(D) end end)([]) end`;
    const r = await operator('alpha', 'ops_rec', `[io:format("rec ~s ~w~n", [N, is_pid(rpc:call(N, erlang, spawn, [${rec}], ${RPC_TIMEOUT_MS}))]) || N <- ['${NODES.join("','")}']]`);
    expect([...r.out.matchAll(/^rec (\S+) true$/gm)].map((m) => m[1]), r.out + r.err).toEqual(NODES);
  };
  /** Each node's recorded nodedowns (node names), as `node [names]` lines. */
  const nodedowns = async () => {
    const ask = `fun() -> bg_downs ! {downs, self()}, receive {downs, D} -> D after 5000 -> timeout end end`;
    const r = await operator('alpha', 'ops_downs', `[io:format("downs ~s ~w~n", [N, rpc:call(N, erlang, apply, [${ask}, []], ${RPC_TIMEOUT_MS})]) || N <- ['${NODES.join("','")}']]`);
    return [...r.out.matchAll(/^downs (\S+) (.+)$/gm)].map((m) => `${m[1]} ${m[2]}`);
  };
  const metricsOf = async (service: string) =>
    must('docker', ['exec', await containerOf(service), 'node', '-e', "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))"], { timeoutMs: COMMAND_TIMEOUT_MS });
  const upgrade = (service: string) => sh('sh', [join(dir, 'deploy', 'compose-upgrade.sh'), service], { timeoutMs: UPGRADE_TIMEOUT_MS, cwd: dir, env: { COMPOSE_PROJECT_NAME: project } });
  /** The image `docker-compose build` made, which each "new release" below is built from. */
  let built: string | undefined;
  /** A new gateway image under the service's image name: the built one plus `lines`; its id. */
  const newGatewayImage = async (lines: string[]) => {
    const tag = `${project}/gateway:local`;
    built ??= (await docker(['image', 'inspect', '-f', '{{.Id}}', tag])).trim();
    await must('docker', ['build', '-q', '-t', tag, '-'], { timeoutMs: IMPORT_TIMEOUT_MS, input: [`FROM ${built}`, ...lines, ''].join('\n') });
    return (await docker(['image', 'inspect', '-f', '{{.Id}}', tag])).trim();
  };
  const policyOf = async (id: string) => (await docker(['inspect', '-f', '{{.HostConfig.RestartPolicy.Name}}', id])).trim();
  const beta: [string, string][] = [
    ['app@alpha.example', 'app@beta.example'],
    ['app@beta.example', 'app@gamma.example'],
  ];

  it('SIGUSR2 to a gateway container (the gateway is its PID 1, which would take a successor down with it): no successor, a line that says why, and it serves on', async () => {
    const id = await containerOf('gateway-alpha');
    const was = await inspect(id);
    await docker(['kill', '--signal', 'USR2', id]);
    await waitFor('gateway-alpha to refuse the successor', async () => (await sh('docker', ['logs', id], { timeoutMs: COMMAND_TIMEOUT_MS })).err.includes('its successor would end with it'), COMMAND_TIMEOUT_MS);
    const now = await inspect(id);
    expect([now.State.Status, now.State.StartedAt, now.RestartCount]).toEqual(['running', was.State.StartedAt, was.RestartCount]);
    expect(sample(await metricsOf('gateway-alpha'), 'beamgate_handover_successors_total', { result: 'started' })).toBe(0);
    expect(await allPong('beta', [['app@beta.example', 'app@alpha.example']])).toBeDefined();
  }, 4 * COMMAND_TIMEOUT_MS + OPERATOR_TIMEOUT_MS);

  it('deploy/compose-upgrade.sh with a new image that cannot start: it says so and exits 1, and the old gateway serves on as it was', async () => {
    await waitFor('links through beta', () => allPong('alpha', beta), RECOVERY_TIMEOUT_MS);
    await recordNodedowns();
    const old = await containerOf('gateway-beta');
    const was = await inspect(old);
    await newGatewayImage(['ENTRYPOINT ["node", "-e", "process.exit(3)"]']);
    const r = await upgrade('gateway-beta');
    expect(r.code, r.err).toBe(1);
    expect(r.err).toContain('the new gateway stopped before it took over');
    expect(await containerOf('gateway-beta')).toBe(old);
    const now = await inspect(old);
    expect([now.State.Status, now.State.StartedAt, now.RestartCount]).toEqual(['running', was.State.StartedAt, was.RestartCount]);
    expect(await policyOf(old)).toBe('unless-stopped');
    expect(await allPong('alpha', beta)).toBeDefined();
    expect(await nodedowns()).toEqual(NODES.map((n) => `${n} []`));
  }, UPGRADE_TIMEOUT_MS + IMPORT_TIMEOUT_MS + RECOVERY_TIMEOUT_MS + 6 * OPERATOR_TIMEOUT_MS);

  it('deploy/compose-upgrade.sh gateway-beta with a new image: a take-over, no node sees a nodedown, and the new container is the service\'s from then on', async () => {
    const before = await nodeContainers();
    const holder = (await inspect(await containerOf('host-beta'))).State.StartedAt;
    const old = await containerOf('gateway-beta');
    const image = await newGatewayImage(['LABEL org.beamgate.test="the next release"']);
    const t0 = Date.now();
    const r = await upgrade('gateway-beta');
    figure('deploy/compose-upgrade.sh gateway-beta', Date.now() - t0);
    expect(r.code, r.err).toBe(0);
    const next = await containerOf('gateway-beta');
    expect(next).not.toBe(old);
    expect((await sh('docker', ['inspect', old], { timeoutMs: COMMAND_TIMEOUT_MS })).code).not.toBe(0);
    expect((await docker(['inspect', '-f', '{{.Image}}', next])).trim()).toBe(image);
    expect(await policyOf(next)).toBe('unless-stopped');
    // In beta's holder's namespace, as the old one was.
    expect(Object.keys((await inspect(next)).NetworkSettings.Networks)).toEqual([]);
    const m = await metricsOf('gateway-beta');
    expect(sample(m, 'beamgate_handover_runs_total', { role: 'take', result: 'ok' })).toBe(1);
    expect(sample(m, 'beamgate_handover_links_total', { result: 'moved' })).toBeGreaterThanOrEqual(2);
    expect(sample(m, 'beamgate_handover_links_total', { result: 'ended' })).toBe(0);
    expect(await allPong('alpha', beta)).toBeDefined();
    expect(await nodedowns()).toEqual(NODES.map((n) => `${n} []`));
    expect((await readyz('beta'))?.registered_nodes).toEqual(['app']);
    // The service's container is number 2 now: docker-compose (v1) exec needs --index (docs/upgrade.md).
    expect((await sh('docker-compose', ['-p', project, 'exec', '-T', '--index=2', 'gateway-beta', 'node', '-e', '1'], { timeoutMs: COMMAND_TIMEOUT_MS, cwd: dir })).code).toBe(0);
    expect(await nodeContainers()).toEqual(before);
    expect((await inspect(await containerOf('host-beta'))).State.StartedAt).toBe(holder);
    await waitFor('the new gateway-beta healthy', async () => (await inspect(next)).State.Health?.Status === 'healthy', PROMETHEUS_TIMEOUT_MS);
  }, UPGRADE_TIMEOUT_MS + IMPORT_TIMEOUT_MS + PROMETHEUS_TIMEOUT_MS + 8 * OPERATOR_TIMEOUT_MS);

  it('`docker-compose down -v` leaves no container, network or volume of the project', async () => {
    const t0 = Date.now();
    await compose(['down', '-v'], RESTART_TIMEOUT_MS);
    downDone = true;
    figure('down -v', Date.now() - t0);
    const label = `label=com.docker.compose.project=${project}`;
    expect((await docker(['ps', '-a', '-q', '--filter', label])).trim()).toBe('');
    expect((await docker(['network', 'ls', '-q', '--filter', label])).trim()).toBe('');
    expect((await docker(['volume', 'ls', '-q', '--filter', label])).trim()).toBe('');
  }, RESTART_TIMEOUT_MS + COMMAND_TIMEOUT_MS);
});

// Keeps the helpers honest: the project copy has every file the compose file and the Dockerfile name.
describe('the files docker.test.ts copies for its project', () => {
  it('exist in this checkout, and hold what docker-compose.yml mounts and builds from', () => {
    for (const f of PROJECT_FILES) expect(existsSync(join(ROOT, f)), f).toBe(true);
    const compose = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');
    for (const m of compose.matchAll(/- \.\/([^:\s]+):/g)) {
      const path = m[1]!;
      if (path.startsWith('certs/')) continue; // made by `certs` in the copy
      expect(PROJECT_FILES.some((f) => path === f || path.startsWith(`${f}/`)), path).toBe(true);
    }
  });
});
