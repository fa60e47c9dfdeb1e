// The deployment files as an operator uses them: docker-compose.yml validated
// by docker-compose itself, the example roster accepted by `beamgate check`
// (with certificates made for a copy of it), the Prometheus configuration by
// promtool, every PromQL expression of the Grafana dashboard and the alerts
// naming only metrics a live gateway exports, and the scripts that give the
// node containers their flags, run for real against gateways and `erl` nodes.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { buildLocalMesh } from '../../src/cli/local-mesh.js';
import { admissionOn, loadRoster, type Roster } from '../../src/config/roster.js';
import { GatewayMetrics } from '../../src/metrics/metrics.js';
import { CLI } from '../helpers/gateway-process.js';
import { startTestMesh, type TestMesh, waitFor } from '../helpers/mesh.js';
import { NetGateway, NetnsLab, netnsUnavailableReason } from '../helpers/netns.js';
import { freePort, randomAlias } from '../helpers/ports.js';
import { descendantsOf, erlangNodes, secretExposures } from '../helpers/proc-view.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const at = (...p: string[]) => join(ROOT, ...p);
/** The variable docker-compose.yml requires; any value validates. */
const COMPOSE_ENV = { ERLANG_COOKIE: 'compose-validation-cookie' };
/** And the one deploy/grafana.yml adds, where Grafana runs. */
const GRAFANA_ENV = { ...COMPOSE_ENV, GRAFANA_ADMIN_PASSWORD: 'compose-validation-password' };
/** The node image docker-compose.yml builds (BEAMGATE_NODE_IMAGE unset). */
const NODE_IMAGE = 'beamgate-node:local';
/** How long a real node started through deploy/erl-node.sh may take to register on a busy machine. */
const NODE_START_TIMEOUT_MS = 30_000;
/** Compiling the sources from scratch, on a busy 2-core machine. */
const TSC_TIMEOUT_MS = 120_000;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd = ROOT) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** As run(), without blocking the event loop: for commands that talk to the gateways of this process. */
function runAsync(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

function compose(files: string[], args: string[], env: NodeJS.ProcessEnv = COMPOSE_ENV) {
  // Only the variables given: a GRAFANA_ADMIN_PASSWORD in the caller's environment must not hide a file that needs it.
  const { GRAFANA_ADMIN_PASSWORD: _, ...rest } = process.env;
  const r = spawnSync('docker-compose', [...files.flatMap((f) => ['-f', f]), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { ...rest, ...env } });
  if (r.error) throw new Error(`docker-compose ${args.join(' ')}: ${r.error.message}`);
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// --- PromQL: which metric names an expression reads --------------------------

const PROMQL_KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan']);

/** Metric names in a PromQL expression: identifiers that are not functions, keywords, labels, strings or numbers. */
function metricNamesIn(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names: string[] = [];
  for (const m of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const before = bare[m.index - 1] ?? ' ';
    if (/[0-9.]/.test(before)) continue; // the exponent of a number such as 1e9
    if (/^\s*\(/.test(bare.slice(m.index + m[0].length))) continue; // a function or aggregation
    if (PROMQL_KEYWORDS.has(m[0].toLowerCase())) continue;
    names.push(m[0]);
  }
  return names;
}

/** Every sample name a gateway exports, from the TYPE lines of a live registry (histograms expanded). */
async function exportedNames(): Promise<Set<string>> {
  const text = await new GatewayMetrics('alpha').text();
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m as unknown as [string, string, string];
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
    else if (type === 'summary') for (const s of ['', '_sum', '_count']) names.add(name + s);
    else names.add(name);
  }
  return names;
}

interface DashboardPanel {
  title?: string;
  type?: string;
  datasource?: { uid?: string };
  targets?: { expr?: string; datasource?: { uid?: string } }[];
  panels?: DashboardPanel[];
}

function dashboardExprs(dash: { panels?: DashboardPanel[]; templating?: { list?: { query?: { query?: string } | string }[] } }) {
  const out: { where: string; expr: string; uid: string | undefined }[] = [];
  const walk = (panels: DashboardPanel[] = []) => {
    for (const p of panels) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ where: `panel "${p.title}"`, expr: t.expr, uid: t.datasource?.uid ?? p.datasource?.uid });
      walk(p.panels);
    }
  };
  walk(dash.panels);
  for (const v of dash.templating?.list ?? []) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    const inner = q && /^label_values\((.+),\s*\w+\)$/.exec(q)?.[1];
    if (inner) out.push({ where: `variable query ${q}`, expr: inner, uid: undefined });
  }
  return out;
}

/** Grafana's variables replaced by values Prometheus accepts, so promtool can parse the expression. */
function withoutGrafanaVariables(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$__interval', '1m').replaceAll('$__range', '1h').replace(/\$\{?(\w+)\}?/g, '.*');
}

// --- the tests ---------------------------------------------------------------

describe('docker-compose.yml', () => {
  let resolved: { services: Record<string, Record<string, unknown>> };
  let roster: Roster;

  beforeAll(() => {
    roster = loadRoster(at('config', 'cluster.yaml'));
    const r = compose(['docker-compose.yml'], ['config']);
    expect(r.code, r.err).toBe(0);
    resolved = parseYaml(r.out) as typeof resolved;
  });

  it('is valid for docker-compose (config -q), alone and with the per-machine override', () => {
    const alone = compose(['docker-compose.yml'], ['config', '-q']);
    expect(alone.code, alone.err).toBe(0);
    expect(alone.err).toBe('');
    const machine = compose(['docker-compose.yml', 'deploy/machine.yml'], ['config', '-q']);
    expect(machine.code, machine.err).toBe(0);
    const grafana = compose(['docker-compose.yml', 'deploy/machine.yml', 'deploy/grafana.yml'], ['config', '-q'], GRAFANA_ENV);
    expect(grafana.code, grafana.err).toBe(0);
  });

  it('needs no Grafana variable on a machine without Grafana; deploy/grafana.yml, where it runs, refuses to start without its password', () => {
    expect(resolved.services.grafana).toBeUndefined();
    const noPassword = compose(['docker-compose.yml', 'deploy/grafana.yml'], ['config', '-q']);
    expect(noPassword.code).not.toBe(0);
    expect(noPassword.err).toContain('GRAFANA_ADMIN_PASSWORD');
  });

  it('names every image by a variable whose default is the upstream image, and builds the node image on a current OTP', () => {
    const text = readFileSync(at('docker-compose.yml'), 'utf8');
    for (const [v, def] of [['NODE_IMAGE', 'node:20-bookworm-slim'], ['ERLANG_IMAGE', 'erlang'], ['OTP_RELEASE', '27'], ['PROMETHEUS_IMAGE', 'prom/prometheus:v2.53.0']]) {
      expect(text, v).toContain(`\${${v}:-${def}}`);
    }
    expect(readFileSync(at('deploy', 'grafana.yml'), 'utf8')).toContain('${GRAFANA_IMAGE:-grafana/grafana:');
    // Every image line of every file is a variable.
    for (const f of ['docker-compose.yml', 'deploy/grafana.yml']) {
      for (const m of readFileSync(at(f), 'utf8').matchAll(/^\s+image: (.+)$/gm)) expect(m[1], `${f}: image ${m[1]}`).toMatch(/^"\$\{[A-Z_]+:-[^}]+\}(:\$\{[A-Z_]+:-[^}]+\})?"$/);
    }
    const nodeDockerfile = readFileSync(at('deploy', 'node.Dockerfile'), 'utf8');
    expect(nodeDockerfile).toMatch(/^ARG OTP_RELEASE=2[78]$/m);
    expect(nodeDockerfile).toMatch(/^FROM \$\{ERLANG_IMAGE\}:\$\{OTP_RELEASE\}$/m);
    const node = resolved.services['node-alpha-app']!.build as { args: Record<string, string> };
    expect(node.args).toEqual({ ERLANG_IMAGE: 'erlang', OTP_RELEASE: '27' });
  });

  it('refuses to start without the Erlang cookie rather than run nodes with a made-up one', () => {
    const r = compose(['docker-compose.yml'], ['config', '-q'], { ERLANG_COOKIE: '' });
    expect(r.code).not.toBe(0);
    expect(r.err).toContain('ERLANG_COOKIE');
  });

  it('runs one gateway per roster gateway in its host holder\'s namespace, each with only its own key and never the CA key', () => {
    for (const name of roster.gateways.keys()) {
      const svc = resolved.services[`gateway-${name}`];
      const holder = resolved.services[`host-${name}`];
      expect(holder, `service host-${name}`).toBeDefined();
      // The namespace belongs to the holder, which the gateway joins: a gateway restart leaves it (and the nodes in it) in place.
      expect(svc!.network_mode).toBe(`service:host-${name}`);
      expect(holder!.restart).toBe('unless-stopped');
      expect(svc!.restart).toBe('unless-stopped');
      expect(svc, `service gateway-${name}`).toBeDefined();
      expect((svc!.environment as Record<string, string>).BEAMGATE_GATEWAY).toBe(name);
      const mounts = (svc!.volumes as (string | { source: string; target: string })[]).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`));
      const keys = mounts.filter((m) => /-key\.pem/.test(m));
      expect(keys).toHaveLength(1);
      expect(keys[0]).toContain(`/certs/${name}-key.pem:/app/certs/${name}-key.pem`);
      expect(mounts.some((m) => m.includes('ca-key.pem'))).toBe(false);
      // Reached by the roster's address host from the other gateways and Prometheus.
      const aliases = (holder!.networks as Record<string, { aliases?: string[] }>).mesh?.aliases ?? [];
      expect(aliases).toContain(roster.gateways.get(name)!.address.host);
      // Nothing of a host is published on the Docker host in the one-engine cluster.
      expect(svc!.ports).toBeUndefined();
      expect(holder!.ports).toBeUndefined();
    }
  });

  it('puts every Erlang node in its own gateway\'s network namespace, with flags for a node that gateway owns', () => {
    const nodeServices = Object.entries(resolved.services).filter(([, s]) => s.image === NODE_IMAGE);
    expect(nodeServices.length).toBe(roster.nodes.size);
    const started = new Set<string>();
    for (const [name, svc] of nodeServices) {
      const gw = /^service:host-(\w+)$/.exec(String(svc.network_mode))?.[1];
      expect(gw, `${name}.network_mode`).toBeDefined();
      const node = (svc.command as string[])[0]!;
      expect(admissionOn(roster, gw!, node).kind, `${name} runs ${node} behind ${gw}`).toBe('node');
      // The node image's entrypoint is erl-node.sh (deploy/node.Dockerfile).
      expect(svc.entrypoint).toBeUndefined();
      expect(svc.depends_on).toMatchObject({ [`gateway-${gw}`]: { condition: 'service_healthy' }, 'node-setup': { condition: 'service_completed_successfully' } });
      started.add(node);
    }
    expect([...started].sort()).toEqual([...roster.nodes.keys()].sort());
    // node-setup writes flags for each of them, and for every operator pattern of the roster (GATEWAY=PATTERN@HOST).
    const pairs = (resolved.services['node-setup']!.command as string[]).map((p) => p.split('='));
    for (const [gw, node] of pairs) expect(admissionOn(roster, gw!, node!.replaceAll('*', 'x')).kind, `${gw}=${node}`).not.toBe('none');
    for (const node of roster.nodes.values()) expect(pairs).toContainEqual([node.gateway, node.name]);
    for (const o of roster.operators) expect(pairs, `operators ${o.pattern} of ${o.gateway}`).toContainEqual([o.gateway, `${o.pattern}@${roster.gateways.get(o.gateway)!.host}`]);
  });

  it('gives the cookie to node-setup alone: no node container has it in its environment, and they run as the user that owns the cookie file', () => {
    const withCookie = Object.entries(resolved.services)
      .filter(([, svc]) => JSON.stringify(svc.environment ?? {}).includes(COMPOSE_ENV.ERLANG_COOKIE))
      .map(([name]) => name);
    expect(withCookie).toEqual(['node-setup']);
    const nodeServices = Object.values(resolved.services).filter((s) => s.image === NODE_IMAGE);
    expect(nodeServices.length).toBeGreaterThan(0);
    // node-setup runs as the beamgate image's user (uid 1000, see the Dockerfile), which then owns home/.erlang.cookie.
    for (const svc of nodeServices) expect(svc.user).toBe('1000:1000');
  });

  it('publishes Prometheus and Grafana on the Docker host\'s loopback only', () => {
    const withGrafana = compose(['docker-compose.yml', 'deploy/grafana.yml'], ['config'], GRAFANA_ENV);
    expect(withGrafana.code, withGrafana.err).toBe(0);
    const all = parseYaml(withGrafana.out) as typeof resolved;
    for (const svc of ['prometheus', 'grafana']) {
      const ports = all.services[svc]!.ports as (string | { host_ip?: string })[];
      expect(ports.length).toBeGreaterThan(0);
      for (const p of ports) expect(typeof p === 'string' ? p : p.host_ip).toMatch(/^127\.0\.0\.1/);
    }
  });
});

// --- the image: what the Dockerfile copies, what .dockerignore lets through ---------

const dockerfile = readFileSync(at('Dockerfile'), 'utf8');
const ignore = readFileSync(at('.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));
/** Docker's rule: the last pattern that matches a path or one of its parents decides. */
const excluded = (path: string) => {
  let out = false;
  for (const raw of ignore) {
    const negate = raw.startsWith('!');
    const pattern = (negate ? raw.slice(1) : raw).replace(/\/$/, '');
    const re = new RegExp('^' + pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*') + '(/.*)?$');
    if (re.test(path)) out = !negate;
  }
  return out;
};

/** Sources the build stage copies from the context (`COPY --from` excluded). */
const copies = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));

describe('Dockerfile and .dockerignore', () => {
  it('builds from sources that exist and that .dockerignore sends to the daemon', () => {
    expect(copies.length).toBeGreaterThan(0);
    for (const src of copies) {
      expect(existsSync(at(src)), `${src} exists`).toBe(true);
      expect(excluded(src), `${src} is sent to the daemon`).toBe(false);
    }
  });

  it('never sends keys, certificates, the roster, git or node_modules into an image', () => {
    for (const p of ['certs/ca-key.pem', 'certs/alpha-key.pem', 'config/cluster.yaml', '.git/config', 'node_modules/yaml/package.json', 'dist/cli/main.js', '.beamgate-demo/roster.yaml']) {
      expect(excluded(p), p).toBe(true);
    }
  });

  it('runs `node dist/cli/main.js run` as a non-root user, from a node:20 image (NODE_IMAGE, upstream\'s by default)', () => {
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:20-bookworm-slim$/m);
    expect(dockerfile).toMatch(/^FROM \$\{NODE_IMAGE\} AS build$/m);
    const stages = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]!);
    expect(stages.at(-1)).toBe('${NODE_IMAGE}');
    const users = [...dockerfile.matchAll(/^USER (\S+)$/gm)].map((m) => m[1]);
    expect(users.at(-1)).toBeDefined();
    expect(users.at(-1)).not.toMatch(/^(root|0)(:|$)/);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "dist\/cli\/main\.js", "run"\]$/m);
    // What the entrypoint names is what `npm run build` produces.
    expect(existsSync(CLI), 'dist/cli/main.js (run npm run build first)').toBe(true);
  });

  it('what the image holds (dist compiled from the context, package.json, production dependencies) runs a gateway', async () => {
    // No Docker engine here: the two stages are replayed with the same files. The
    // build stage compiles what the context holds; the runtime stage keeps only
    // what the Dockerfile copies over, and node_modules (npm ci) is this checkout's.
    const ctx = mkdtempSync(join(tmpdir(), 'beamgate-image-'));
    let gw: ChildProcess | undefined;
    try {
      for (const src of copies) cpSync(at(src), join(ctx, 'build', src), { recursive: true, filter: (p) => !excluded(relative(ROOT, p)) });
      symlinkSync(at('node_modules'), join(ctx, 'build', 'node_modules'));
      const tsc = await runAsync(process.execPath, [at('node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ctx, 'build', 'tsconfig.json')], {}, TSC_TIMEOUT_MS);
      expect(tsc.code, tsc.out + tsc.err).toBe(0);
      // The build stage's native data plane, built by the script the Dockerfile runs.
      expect(dockerfile).toMatch(/^RUN .*bash scripts\/build-native\.sh/m);
      const native = await runAsync('bash', [join(ctx, 'build', 'scripts', 'build-native.sh')], {}, TSC_TIMEOUT_MS);
      expect(native.code, native.out + native.err).toBe(0);
      const image = join(ctx, 'image');
      for (const p of [...dockerfile.matchAll(/^COPY --from=build \/app\/(\S+) /gm)].map((m) => m[1]!)) {
        if (p !== 'node_modules') cpSync(join(ctx, 'build', p), join(image, p), { recursive: true });
      }
      symlinkSync(at('node_modules'), join(image, 'node_modules'));
      // `npm prune --omit=dev` leaves the dependencies only: dist must import nothing else.
      const pkg = JSON.parse(readFileSync(join(image, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
      const imports = new Set<string>();
      for (const f of readdirSync(join(image, 'dist'), { recursive: true, encoding: 'utf8' })) {
        if (!f.endsWith('.js')) continue;
        for (const m of readFileSync(join(image, 'dist', f), 'utf8').matchAll(/(?:from |import\()'([^.'][^']*)'/g)) imports.add(m[1]!);
      }
      const foreign = [...imports].filter((i) => !i.startsWith('node:') && !Object.keys(pkg.dependencies).includes(i.split('/')[0]!));
      expect(foreign).toEqual([]);

      const metricsPort = await freePort();
      const mesh = await buildLocalMesh({
        dir: join(ctx, 'cluster'),
        gateways: [{ name: 'alpha', tlsPort: await freePort(), epmdPort: await freePort(), metricsPort, nodes: { a1: await freePort() }, loopback: randomAlias() }],
      });
      // The Dockerfile's ENTRYPOINT with the command docker-compose.yml gives every
      // gateway (its roster path swapped for this one), from the image's working directory.
      const composed = parseYaml(readFileSync(at('docker-compose.yml'), 'utf8')) as { 'x-gateway': { command: string[] } };
      const command = composed['x-gateway'].command;
      expect(command).toContain('/app/config/cluster.yaml');
      const args = command.map((a) => (a === '/app/config/cluster.yaml' ? mesh.rosterPath : a));
      gw = spawn(process.execPath, ['dist/cli/main.js', 'run', ...args], { cwd: image, env: { ...process.env, BEAMGATE_GATEWAY: 'alpha' }, stdio: 'ignore' });
      const metrics = await waitFor(
        'the gateway built from the image files to serve /metrics',
        () => fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => (r.ok ? r.text() : undefined), () => undefined),
        NODE_START_TIMEOUT_MS,
      );
      expect(metrics).toContain(`beamgate_build_info{version="${pkg.version}"`);
      // The image relays on the native data plane it built.
      expect(metrics).toMatch(/^beamgate_data_plane_info\{plane="native"[^}]*\} 1$/m);
      const exited = once(gw, 'exit');
      gw.kill('SIGTERM');
      expect((await exited)[0]).toBe(0);
    } finally {
      if (gw && gw.exitCode === null) gw.kill('SIGKILL');
      rmSync(ctx, { recursive: true, force: true });
    }
  }, 2 * TSC_TIMEOUT_MS + NODE_START_TIMEOUT_MS);
});

describe('config/cluster.yaml, the example roster', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'beamgate-deploy-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is accepted by `beamgate check` as committed (no TLS files needed without --gateway)', () => {
    const r = run(process.execPath, [CLI, 'check', '--config', 'config/cluster.yaml']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^ok: 3 gateways, \d+ nodes/);
    const roster = loadRoster(at('config', 'cluster.yaml'));
    expect([...roster.gateways.keys()]).toEqual(['alpha', 'beta', 'gamma']);
    for (const gw of roster.gateways.keys()) {
      const n = [...roster.nodes.values()].filter((x) => x.gateway === gw).length;
      expect(n, `nodes of ${gw}`).toBeGreaterThanOrEqual(1);
      expect(n, `nodes of ${gw}`).toBeLessThanOrEqual(2);
    }
    expect(roster.tls.cert).toBe(at('certs', '{gateway}.pem'));
  });

  it('with certificates made by `beamgate certs` for a copy of it, every gateway\'s TLS files check out', () => {
    cpSync(at('config'), join(dir, 'config'), { recursive: true });
    const copy = join(dir, 'config', 'cluster.yaml');
    const certs = run(process.execPath, [CLI, 'certs', '--config', copy]);
    expect(certs.code, certs.err).toBe(0);
    expect(existsSync(join(dir, 'certs', 'ca.pem'))).toBe(true);
    for (const gw of ['alpha', 'beta', 'gamma']) {
      const r = run(process.execPath, [CLI, 'check', '--config', copy, '--gateway', gw]);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toContain(`TLS files of ${gw} are valid`);
    }
    // And a certificate that is not the gateway's is caught by the same check.
    cpSync(join(dir, 'certs', 'beta.pem'), join(dir, 'certs', 'alpha.pem'));
    const wrong = run(process.execPath, [CLI, 'check', '--config', copy, '--gateway', 'alpha']);
    expect(wrong.code).toBe(2);
    expect(wrong.err).toMatch(/alpha-key\.pem does not match|certificate of gateway beta/);
  });

  it('lets Prometheus scrape every gateway at the address deploy/prometheus.yml names', () => {
    const roster = loadRoster(at('config', 'cluster.yaml'));
    const prom = parseYaml(readFileSync(at('deploy', 'prometheus.yml'), 'utf8')) as { scrape_configs: { static_configs: { targets: string[] }[] }[] };
    const targets = prom.scrape_configs.flatMap((s) => s.static_configs.flatMap((c) => c.targets)).sort();
    const expected = [...roster.gateways.values()].map((g) => {
      expect(g.metrics, `${g.name} has metrics`).not.toBeNull();
      // Bound beyond loopback: in compose the scraper is another container.
      expect(g.metrics!.host).not.toMatch(/^127\./);
      return `${g.address.host}:${g.metrics!.port}`;
    });
    expect(targets).toEqual(expected.sort());
  });
});

describe('Prometheus and Grafana configuration', () => {
  let exported: Set<string>;
  let dashboard: Parameters<typeof dashboardExprs>[0] & { uid?: string };
  let dir: string;

  beforeAll(async () => {
    exported = await exportedNames();
    dashboard = JSON.parse(readFileSync(at('deploy', 'grafana', 'dashboards', 'beamgate.json'), 'utf8')) as typeof dashboard;
    dir = mkdtempSync(join(tmpdir(), 'beamgate-promql-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('promtool accepts deploy/prometheus.yml and its alert rules', () => {
    const r = run('promtool', ['check', 'config', 'deploy/prometheus.yml']);
    expect(r.code, r.err + r.out).toBe(0);
    expect(r.out).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('the metric-name check finds what a live gateway exports and catches a name it does not', () => {
    expect(exported.has('beamgate_relayed_bytes_total')).toBe(true);
    expect(exported.has('beamgate_tls_handshake_seconds_bucket')).toBe(true);
    expect(metricNamesIn('sum by (gateway, le) (rate(beamgate_tls_handshake_seconds_bucket{gateway=~"$gateway"}[$__rate_interval])) / 1e9')).toEqual([
      'beamgate_tls_handshake_seconds_bucket',
    ]);
    expect(metricNamesIn('beamgate_links_open and on (peer) beamgate_linkz_open offset 5m').filter((n) => !exported.has(n))).toEqual(['beamgate_linkz_open']);
  });

  it('every PromQL expression in the Grafana dashboard parses and names only exported metrics', () => {
    const exprs = dashboardExprs(dashboard);
    expect(exprs.length).toBeGreaterThanOrEqual(15);
    const unknown: string[] = [];
    for (const { where, expr } of exprs) {
      const names = metricNamesIn(expr);
      expect(names.length, `${where}: ${expr} reads a metric`).toBeGreaterThan(0);
      for (const n of names) if (!exported.has(n)) unknown.push(`${where}: ${n}`);
    }
    expect(unknown).toEqual([]);
    // promtool parses each one (as a recording rule), with Grafana's variables filled in.
    const rules = { groups: [{ name: 'dashboard', rules: exprs.map((e, i) => ({ record: `dashboard:expr_${i}`, expr: withoutGrafanaVariables(e.expr) })) }] };
    writeFileSync(join(dir, 'dashboard-rules.yml'), stringifyYaml(rules));
    const r = run('promtool', ['check', 'rules', join(dir, 'dashboard-rules.yml')]);
    expect(r.code, r.err + r.out).toBe(0);
  });

  it('every alert names only exported metrics (and `up`)', () => {
    const alerts = parseYaml(readFileSync(at('deploy', 'alerts.yml'), 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] };
    const rules = alerts.groups.flatMap((g) => g.rules);
    expect(rules.length).toBeGreaterThan(0);
    for (const rule of rules) {
      for (const n of metricNamesIn(rule.expr)) expect(n === 'up' || exported.has(n), `${rule.alert}: ${n}`).toBe(true);
    }
  });

  it('the dashboard is provisioned, and every panel uses the provisioned data source', () => {
    const ds = parseYaml(readFileSync(at('deploy', 'grafana', 'provisioning', 'datasources', 'prometheus.yml'), 'utf8')) as { datasources: { uid: string; url: string }[] };
    const uid = ds.datasources[0]!.uid;
    expect(ds.datasources[0]!.url).toBe('http://prometheus:9090');
    for (const e of dashboardExprs(dashboard)) if (e.uid !== undefined) expect(e.uid, e.where).toBe(uid);
    const provider = parseYaml(readFileSync(at('deploy', 'grafana', 'provisioning', 'dashboards', 'beamgate.yml'), 'utf8')) as { providers: { options: { path: string } }[] };
    const composeText = readFileSync(at('deploy', 'grafana.yml'), 'utf8');
    expect(composeText).toContain(`./deploy/grafana/dashboards:${provider.providers[0]!.options.path}:ro`);
    expect(dashboard.uid).toBe('beamgate');
  });
});

describe('deploy/node-setup.sh and deploy/erl-node.sh with real gateways and erl nodes', () => {
  let t: TestMesh;
  let runDir: string;
  const procs: ChildProcess[] = [];

  beforeAll(async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'] }, operators: [{ gateway: 'alpha', pattern: 'ops_*' }] });
    runDir = mkdtempSync(join(tmpdir(), 'beamgate-run-'));
  });
  afterAll(async () => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    await t?.stop();
    rmSync(runDir, { recursive: true, force: true });
  });

  const env = () => ({ BEAMGATE_CONFIG: t.mesh.rosterPath, BEAMGATE_RUN_DIR: runDir, BEAMGATE_CLI: `${process.execPath} ${CLI}`, ERLANG_COOKIE: t.cookie });

  it('node-setup writes each host\'s inetrc, each node\'s erl command line and the nodes\' cookie file, and refuses a bad argument', () => {
    // Without the cookie it refuses instead of letting the nodes make up one each.
    const noCookie = run('sh', [at('deploy', 'node-setup.sh'), 'beta=b1@beta.demo'], { ...env(), ERLANG_COOKIE: '' });
    expect(noCookie.code).not.toBe(0);
    expect(noCookie.err).toContain('ERLANG_COOKIE');
    // And erl-node.sh will not start a node before node-setup has written the cookie file.
    writeFileSync(join(runDir, 'b1@beta.demo.cmd'), 'erl');
    const early = run('sh', [at('deploy', 'erl-node.sh'), 'b1@beta.demo'], env());
    expect(early.code).toBe(2);
    expect(early.err).toContain('home/.erlang.cookie is missing');
    const r = run('sh', [at('deploy', 'node-setup.sh'), 'alpha=ops_check@alpha.demo', 'beta=b1@beta.demo'], env());
    expect(r.code, r.err).toBe(0);
    expect(readFileSync(join(runDir, 'home', '.erlang.cookie'), 'utf8').trim()).toBe(t.cookie);
    expect(statSync(join(runDir, 'home', '.erlang.cookie')).mode & 0o777).toBe(0o400);
    expect(statSync(join(runDir, 'home')).mode & 0o777).toBe(0o700);
    // Run again (a restarted deployment), it replaces its own read-only file.
    expect(run('sh', [at('deploy', 'node-setup.sh'), 'beta=b1@beta.demo'], env()).code).toBe(0);
    expect(readFileSync(join(runDir, 'beta.inetrc'), 'utf8')).toMatch(/\{host, \{127,0,0,1\}, \["beta\.demo"\]\}/);
    expect(readFileSync(join(runDir, 'b1@beta.demo.cmd'), 'utf8')).toMatch(/^erl -name b1@beta\.demo .*inet_dist_listen_min \d+/);
    expect(readFileSync(join(runDir, 'ops_check@alpha.demo.cmd'), 'utf8')).toContain('-hidden');
    const bad = run('sh', [at('deploy', 'node-setup.sh'), 'b1@beta.demo'], env());
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('is not GATEWAY=NODE');
    const missing = run('sh', [at('deploy', 'erl-node.sh'), 'nobody@beta.demo'], env());
    expect(missing.code).toBe(2);
    expect(missing.err).toContain('node-setup has not written flags');
  });

  it('a node started by erl-node.sh registers with its gateway, and an operator reaches it across gateways', async () => {
    const b1 = spawn('sh', [at('deploy', 'erl-node.sh'), 'b1@beta.demo', '-noinput'], { env: { ...process.env, ...env() }, stdio: 'ignore' });
    procs.push(b1);
    const beta = t.gateways.get('beta')!;
    await waitFor('b1 to register with gateway beta', () => beta.epmd.registrations.has('b1'), NODE_START_TIMEOUT_MS);
    // The "check that it works" step of docs/deployment.md: an operator node on alpha pings a node behind beta.
    // (Asynchronous: the gateways live in this process and must keep serving meanwhile.)
    const check = await runAsync('sh', [at('deploy', 'erl-node.sh'), 'ops_check@alpha.demo', '-noshell', '-eval', `io:format("ping:~p~n", [net_adm:ping('b1@beta.demo')]), halt().`], env(), NODE_START_TIMEOUT_MS);
    expect(check.code, check.err).toBe(0);
    expect(check.out).toContain('ping:pong');
    // The node has its cookie from the file: neither its command line nor its environment shows it.
    const b1vm = erlangNodes(descendantsOf(process.pid)).get('b1@beta.demo');
    expect(b1vm, 'the VM of b1 under this test').toBeDefined();
    expect(secretExposures([b1vm!], t.cookie)).toEqual([]);
  });

  it('GATEWAY=PATTERN@HOST serves every name of an operator pattern: any ops_* name reaches a node across gateways, a name outside it gets no flags', async () => {
    const r = run('sh', [at('deploy', 'node-setup.sh'), 'alpha=ops_*@alpha.demo', 'beta=b1@beta.demo'], env());
    expect(r.code, r.err).toBe(0);
    expect(readFileSync(join(runDir, 'operators.1.pattern'), 'utf8').trim()).toBe('ops_*@alpha.demo');
    expect(readFileSync(join(runDir, 'operators.1.cmd'), 'utf8')).toMatch(/^erl -name ops_x@alpha\.demo .*-dist_listen false -hidden/);
    const check = await runAsync('sh', [at('deploy', 'erl-node.sh'), 'ops_jane@alpha.demo', '-noshell', '-eval', `io:format("~s ping:~p~n", [node(), net_adm:ping('b1@beta.demo')]), halt().`], env(), NODE_START_TIMEOUT_MS);
    expect(check.code, check.err).toBe(0);
    expect(check.out).toContain('ops_jane@alpha.demo ping:pong');
    for (const name of ['jane@alpha.demo', 'ops_jane@beta.demo', 'ops_j.ne@alpha.demo']) {
      const refused = run('sh', [at('deploy', 'erl-node.sh'), name], env());
      expect(refused.code, name).toBe(2);
      expect(refused.err).toContain('node-setup has not written flags');
    }
    // Run again without the pattern, its flags go: a run replaces what an earlier one wrote.
    expect(run('sh', [at('deploy', 'node-setup.sh'), 'beta=b1@beta.demo'], env()).code).toBe(0);
    expect(existsSync(join(runDir, 'operators.1.pattern'))).toBe(false);
    expect(run('sh', [at('deploy', 'erl-node.sh'), 'ops_jane@alpha.demo'], env()).err).toContain('node-setup has not written flags');
  });
});

// --- the deployment itself, without Docker: one network namespace per container host --

const netnsUnavailable = netnsUnavailableReason();
if (netnsUnavailable) console.warn(`deploy.test.ts: the three-host deployment run is SKIPPED, network namespaces cannot be made here: ${netnsUnavailable}`);

/** What docker-compose.yml's node-setup service is told to write: GATEWAY=NODE pairs. */
const NODE_SETUP_PAIRS = (parseYaml(readFileSync(at('docker-compose.yml'), 'utf8')) as { services: Record<string, { command?: string[] }> }).services['node-setup']!.command!;

/** How long every gateway may take to probe every peer once more (10 s interval) and Prometheus to scrape that. */
const PEERS_REACHABLE_TIMEOUT_MS = 45_000;

describe.runIf(netnsUnavailable === null)('config/cluster.yaml deployed on three hosts as the walk-through says (network namespaces standing in for containers)', () => {
  let lab: NetnsLab;
  let dir: string;
  const gateways = new Map<string, NetGateway>();
  const cookie = randomBytes(16).toString('hex');
  const runDir = () => join(dir, 'run');
  /** The node containers' environment: the run directory only (node-setup has put the cookie file there). */
  const nodeEnv = () => ({ BEAMGATE_RUN_DIR: runDir() });
  /** Prometheus runs in a host of its own, as its container does, and is asked from inside it. */
  const query = async (expr: string) => {
    const body = JSON.parse(await lab.httpGet('monitor', `http://127.0.0.1:9090/api/v1/query?query=${encodeURIComponent(expr)}`)) as { data: { result: { value: [number, string] }[] } };
    return body.data.result.map((r) => Number(r.value[1]));
  };

  beforeAll(async () => {
    lab = NetnsLab.create(['alpha', 'beta', 'gamma', 'monitor']);
    dir = mkdtempSync(join(tmpdir(), 'beamgate-deploy-lab-'));
    // Step 1: the shared roster, each gateway's address set to its machine's address.
    const doc = parseYaml(readFileSync(at('config', 'cluster.yaml'), 'utf8')) as { gateways: Record<string, { address: string }> };
    for (const [name, g] of Object.entries(doc.gateways)) g.address = `${lab.host(name).ip}:${g.address.split(':')[1]}`;
    mkdirSync(join(dir, 'config'));
    writeFileSync(join(dir, 'config', 'cluster.yaml'), stringifyYaml(doc));
    const roster = join(dir, 'config', 'cluster.yaml');
    // Step 2: certificates (what node-setup and the gateway containers then read).
    const certs = run(process.execPath, [CLI, 'certs', '--config', roster]);
    expect(certs.code, certs.err).toBe(0);
    mkdirSync(runDir());
    const setup = run('sh', [at('deploy', 'node-setup.sh'), ...NODE_SETUP_PAIRS], { BEAMGATE_CONFIG: roster, BEAMGATE_RUN_DIR: runDir(), BEAMGATE_CLI: `${process.execPath} ${CLI}`, ERLANG_COOKIE: cookie });
    expect(setup.code, setup.err).toBe(0);
    // Step 5: each host's gateway, then its nodes.
    for (const name of ['alpha', 'beta', 'gamma']) gateways.set(name, await NetGateway.startIn(lab, name, roster, name, 9464));
    for (const node of ['app@alpha.example', 'jobs@alpha.example', 'app@beta.example', 'app@gamma.example']) {
      const host = node.split('@')[1]!.split('.')[0]!;
      const vm = lab.spawn(host, ['sh', at('deploy', 'erl-node.sh'), node, '-noinput'], nodeEnv());
      let output = '';
      vm.stdout!.on('data', (b: Buffer) => (output += b.toString()));
      vm.stderr!.on('data', (b: Buffer) => (output += b.toString()));
      await waitFor(`${node} to register with its gateway`, () => gateways.get(host)!.logged('node registered', { name: node.split('@')[0]! }).length === 1, NODE_START_TIMEOUT_MS).catch((err: Error) => {
        throw new Error(`${err.message}; the node wrote: ${output.slice(-2000)}; gateway ${host}: ${gateways.get(host)!.stderrText().slice(-2000)}`);
      });
    }
  }, 120_000);

  afterAll(async () => {
    await lab?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the check of step 6: an operator on alpha pings the nodes of every host through the gateways', async () => {
    const targets = ['jobs@alpha.example', 'app@beta.example', 'app@gamma.example'];
    const env = Object.entries(nodeEnv()).map(([k, v]) => `${k}=${v}`);
    const out = await lab.run('alpha', ['env', ...env, 'sh', at('deploy', 'erl-node.sh'), 'ops_admin@alpha.example', '-noshell', '-eval', `io:format("pings:~p~n", [[net_adm:ping(N) || N <- ['${targets.join("','")}']]]), halt().`]);
    expect(out).toContain('pings:[pong,pong,pong]');
  });

  it('no node shows the cookie: every VM of the deployment has it from its home\'s .erlang.cookie, not argv or environment', () => {
    const procs = descendantsOf(process.pid);
    const vms = erlangNodes(procs);
    expect([...vms.keys()].sort()).toEqual(['app@alpha.example', 'app@beta.example', 'app@gamma.example', 'jobs@alpha.example']);
    for (const vm of vms.values()) expect(vm.environ).toContain(`HOME=${join(runDir(), 'home')}`);
    expect(secretExposures(procs, cookie)).toEqual([]);
  });

  it('from another host only the TLS port and the metrics port answer; EPMD and node ports stay on loopback', async () => {
    const alpha = lab.host('alpha').ip;
    const r = await lab.probeTcp('beta', [4369, 5001, 5002, 4370, 9464].map((port) => ({ host: alpha, port })));
    expect(r).toEqual(['refused', 'refused', 'refused', 'open', 'open']);
  });

  it('deploy/prometheus.yml with its alerts, in a real Prometheus on a fourth host, scrapes all three gateways and sees every peer reachable', async () => {
    const prom = parseYaml(readFileSync(at('deploy', 'prometheus.yml'), 'utf8')) as {
      global: Record<string, string>;
      scrape_configs: { static_configs: { targets: string[] }[] }[];
    };
    // As the walk-through says: the machines' addresses as targets (and a fast scrape, for the test).
    prom.global.scrape_interval = '1s';
    prom.global.scrape_timeout = '1s';
    prom.scrape_configs[0]!.static_configs = [{ targets: ['alpha', 'beta', 'gamma'].map((h) => `${lab.host(h).ip}:9464`) }];
    const promDir = join(dir, 'prometheus');
    mkdirSync(promDir);
    writeFileSync(join(promDir, 'prometheus.yml'), stringifyYaml(prom));
    cpSync(at('deploy', 'alerts.yml'), join(promDir, 'alerts.yml'));
    lab.spawn('monitor', ['prometheus', `--config.file=${join(promDir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(promDir, 'data')}`, '--web.listen-address=127.0.0.1:9090', '--log.level=warn']);
    await waitFor('Prometheus to be ready', () => lab.httpGet('monitor', 'http://127.0.0.1:9090/-/ready').then(() => true, () => false), NODE_START_TIMEOUT_MS);
    const rules = JSON.parse(await lab.httpGet('monitor', 'http://127.0.0.1:9090/api/v1/rules')) as { data: { groups: { rules: unknown[] }[] } };
    expect(rules.data.groups.flatMap((g) => g.rules).length).toBeGreaterThanOrEqual(5);
    await waitFor('all three gateways up', async () => (await query('count(up{job="beamgate"} == 1)'))[0] === 3, NODE_START_TIMEOUT_MS);
    await waitFor('every gateway to reach both peers', async () => (await query('count(beamgate_peer_reachable == 1)'))[0] === 6, PEERS_REACHABLE_TIMEOUT_MS);
    expect((await query('sum(beamgate_epmd_nodes_registered)'))[0]).toBe(4);
    expect((await query('count(beamgate_build_info)'))[0]).toBe(3);
  }, PEERS_REACHABLE_TIMEOUT_MS + 2 * NODE_START_TIMEOUT_MS);
});
