// What an operator sees of a running mesh, checked with the real tools: a real
// Prometheus server scrapes two gateways while real Erlang nodes exchange
// messages and hostile clients get refused; promtool lints the live /metrics;
// /healthz and /readyz answer JSON (503 while draining); the logs carry one
// structured line per connection event, at the level the roster sets, and
// nothing secret.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildLocalMesh } from '../../src/cli/local-mesh.js';
import { tlsPathsFor } from '../../src/config/roster.js';
import type { ErlNode } from '../../src/erlang/node.js';
import { REFUSAL_REASONS } from '../../src/metrics/metrics.js';
import { createCa, createGatewayCert } from '../../src/pki/generate.js';
import { rogueLink } from '../helpers/fake-peer.js';
import { GatewayProcess } from '../helpers/gateway-process.js';
import { sample, startTestMesh, type TestMesh, waitFor } from '../helpers/mesh.js';
import { freePort, randomAlias } from '../helpers/ports.js';

/** Prometheus scrapes this often, so a test sees a change within a few seconds. */
const SCRAPE_INTERVAL = '1s';
/** How long Prometheus may take to start, or to show a change, on a busy 2-core machine. */
const PROMETHEUS_WAIT_MS = 30_000;
/** Messages a1 sends to b1, and the payload of each: random bytes, so nothing compresses. */
const MESSAGES = 40;
const PAYLOAD_BYTES = 100_000;
/**
 * What the distribution protocol may add per message on top of its payload:
 * the 4-byte frame length, the distribution header with its atom cache
 * references, the REG_SEND control tuple (sender pid, registered name), the
 * {data, Binary} wrapping, and the headers of the fragments a 100 kB message
 * is cut into. Measured: about 86 bytes (OTP 25); the bound leaves room for other OTP versions.
 */
const MAX_OVERHEAD_PER_MESSAGE = 300;
/** Bytes that may cross besides the messages: the `done` message, and ticks (4 bytes each). */
const SLACK_BYTES = 2_048;

/** A real Prometheus server on loopback, with its own temporary storage. */
class Prometheus {
  private constructor(
    readonly port: number,
    private readonly proc: ChildProcess,
    private readonly dir: string,
    private readonly output: string[],
  ) {}

  static async start(targets: string[]): Promise<Prometheus> {
    const dir = mkdtempSync(join(tmpdir(), 'beamgate-prometheus-'));
    const port = await freePort();
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global:',
        `  scrape_interval: ${SCRAPE_INTERVAL}`,
        `  scrape_timeout: ${SCRAPE_INTERVAL}`,
        'scrape_configs:',
        '  - job_name: beamgate',
        '    static_configs:',
        `      - targets: [${targets.map((t) => `"${t}"`).join(', ')}]`,
        '',
      ].join('\n'),
    );
    const output: string[] = [];
    const proc = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc.stdout!.on('data', (d: Buffer) => output.push(d.toString()));
    proc.stderr!.on('data', (d: Buffer) => output.push(d.toString()));
    const p = new Prometheus(port, proc, dir, output);
    await waitFor(
      'Prometheus to be ready',
      async () => {
        if (proc.exitCode !== null) throw new Error(`prometheus exited: ${output.join('').slice(-2000)}`);
        return fetch(`http://127.0.0.1:${port}/-/ready`).then((r) => r.ok, () => false);
      },
      PROMETHEUS_WAIT_MS,
    );
    return p;
  }

  /** Instant query through the HTTP API; one number per series, keyed by its labels. */
  async query(expr: string): Promise<{ labels: Record<string, string>; value: number }[]> {
    const res = await fetch(`http://127.0.0.1:${this.port}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await res.json()) as { status: string; error?: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
    if (body.status !== 'success') throw new Error(`query ${expr} failed: ${body.error}`);
    return body.data.result.map((r) => ({ labels: r.metric, value: Number(r.value[1]) }));
  }

  /** The single value of an expression, or undefined while Prometheus has no such series. */
  async value(expr: string): Promise<number | undefined> {
    const r = await this.query(expr);
    if (r.length > 1) throw new Error(`${expr} matched ${r.length} series`);
    return r[0]?.value;
  }

  /** Waits until the expression's value satisfies `ok`, and returns it. */
  async waitValue(expr: string, ok: (v: number) => boolean, what: string): Promise<number> {
    let last: number | undefined;
    await waitFor(
      `${what} (${expr}) in Prometheus`,
      async () => {
        last = await this.value(expr);
        return last !== undefined && ok(last);
      },
      PROMETHEUS_WAIT_MS,
    );
    return last!;
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode === null) {
      const gone = once(this.proc, 'exit');
      this.proc.kill('SIGTERM');
      await gone;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function getJson(url: string): Promise<{ status: number; type: string | null; body: Record<string, unknown> }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, type: res.headers.get('content-type'), body: (await res.json()) as Record<string, unknown> };
}

/** Sends plaintext to a TLS port, as a misdirected HTTP client would; resolves when the gateway hangs up. */
function plaintextClient(port: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: beta\r\n\r\n'));
    s.on('error', () => undefined);
    s.on('close', () => resolve());
  });
}

describe('observability of a running mesh, through a real Prometheus', () => {
  let t: TestMesh;
  let a1: ErlNode;
  let b1: ErlNode;
  let prom: Prometheus;
  const port = (gw: string) => t.mesh.roster.gateways.get(gw)!.metrics!.port;
  const url = (gw: string, path: string) => `http://127.0.0.1:${port(gw)}${path}`;
  const pair = { peer: 'beta', direction: 'out', local_node: 'a1@alpha.demo', remote_node: 'b1@beta.demo' };
  const outBytes = `beamgate_relayed_bytes_total{gateway="alpha",peer="beta",direction="out",local_node="a1@alpha.demo",remote_node="b1@beta.demo"}`;
  const inBytes = `beamgate_relayed_bytes_total{gateway="beta",peer="alpha",direction="in",local_node="b1@beta.demo",remote_node="a1@alpha.demo"}`;
  let linkOpenedAt = 0;

  beforeAll(async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'] } });
    [a1, b1] = await Promise.all([t.startNode('a1@alpha.demo'), t.startNode('b1@beta.demo')]);
    linkOpenedAt = Date.now();
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
    await b1.eval(`register(sink, spawn(fun Loop() -> receive {data, _} -> Loop(); {done, From} -> From ! done, Loop() end end)), ok`);
    prom = await Prometheus.start([`127.0.0.1:${port('alpha')}`, `127.0.0.1:${port('beta')}`]);
  });
  afterAll(async () => {
    await prom?.stop();
    await t?.stop();
  });

  it('Prometheus scrapes both gateways, each sample labelled with its gateway', async () => {
    await prom.waitValue('count(up{job="beamgate"} == 1)', (v) => v === 2, 'both targets up');
    const info = await prom.query('beamgate_build_info');
    expect(info.map((s) => s.labels.gateway).sort()).toEqual(['alpha', 'beta']);
    expect(await prom.waitValue('beamgate_links_open{gateway="alpha",peer="beta",direction="outbound"}', (v) => v === 1, 'the a1 -> b1 link')).toBe(1);
    expect(await prom.value('beamgate_links_open{gateway="beta",peer="alpha",direction="inbound"}')).toBe(1);
    expect(await prom.value('beamgate_epmd_nodes_registered{gateway="alpha"}')).toBe(1);
    // Every roster node of each host is registered: the series BeamgateNodeNotRegistered watches is 1.
    expect(await prom.value('beamgate_roster_node_registered{gateway="alpha",node="a1@alpha.demo"}')).toBe(1);
    expect(await prom.value('beamgate_roster_node_registered{gateway="beta",node="b1@beta.demo"}')).toBe(1);
    expect(await prom.value('beamgate_epmd_registrations_total{gateway="beta",result="ok"}')).toBe(1);
    expect(await prom.value('sum(beamgate_epmd_lookups_total{gateway="alpha",result="found"})')).toBeGreaterThanOrEqual(1);
    expect(await prom.value('beamgate_tls_handshake_seconds_count{gateway="alpha",role="client"}')).toBeGreaterThanOrEqual(1);
    // alpha probed beta before beta was listening; the next probe (every 10 s) finds it.
    expect(await prom.waitValue('beamgate_peer_reachable{gateway="alpha",peer="beta"}', (v) => v === 1, 'beta reachable from alpha')).toBe(1);
    // Certificates made a moment ago: the gateway's has about 825 days left, the CA's about 10 years.
    const days = (cert: string) => prom.value(`beamgate_cert_expiry_seconds{gateway="alpha",cert="${cert}"} / 86400`);
    expect(await days('gateway')).toBeGreaterThan(800);
    expect(await days('ca')).toBeGreaterThan(3000);
    // prom-client's process metrics are there too.
    expect(await prom.value('process_resident_memory_bytes{gateway="alpha"}')).toBeGreaterThan(0);
  });

  it('shows the byte counters rising while a1 sends to b1, by the payload plus frame overhead, the same on both gateways', async () => {
    // Idle link: Prometheus has caught up when it shows what the gateway shows now.
    const settled = async () => {
      const direct = sample(await t.metricsText('alpha'), 'beamgate_relayed_bytes_total', pair);
      return (await prom.value(outBytes)) === direct ? direct : undefined;
    };
    const before = await waitFor('Prometheus to have the current byte count', settled, PROMETHEUS_WAIT_MS);
    const framesBefore = (await prom.value(outBytes.replace('bytes', 'frames')))!;
    const ack = await a1.eval(
      `[{sink, 'b1@beta.demo'} ! {data, crypto:strong_rand_bytes(${PAYLOAD_BYTES})} || _ <- lists:seq(1, ${MESSAGES})], ` +
        `{sink, 'b1@beta.demo'} ! {done, self()}, receive done -> ok after 30000 -> timeout end`,
    );
    expect(ack).toBe('ok');
    const payload = MESSAGES * PAYLOAD_BYTES;
    const after = await prom.waitValue(outBytes, (v) => v >= before + payload, 'the payload counted');
    const delta = after - before;
    console.log(`observability: ${payload} payload bytes -> Prometheus counted ${delta} (${((delta - payload) / MESSAGES).toFixed(1)} bytes per message besides the payload)`);
    expect(delta).toBeGreaterThanOrEqual(payload);
    expect(delta).toBeLessThanOrEqual(payload + MESSAGES * MAX_OVERHEAD_PER_MESSAGE + SLACK_BYTES);
    // Every message is at least one frame; fragments make more.
    const frames = (await prom.waitValue(outBytes.replace('bytes', 'frames'), (v) => v >= framesBefore + MESSAGES, 'the frames counted')) - framesBefore;
    expect(frames).toBeLessThanOrEqual(MESSAGES * 4 + 2);
    // What left alpha for beta is what beta took in from alpha.
    // (Waited for: the two targets are scraped at different moments, and a tick may fall between.)
    await waitFor(
      'beta to count in what alpha counted out',
      async () => {
        const [o, i] = [await prom.value(outBytes), await prom.value(inBytes)];
        return o !== undefined && o >= after && i === o;
      },
      PROMETHEUS_WAIT_MS,
    );
  });

  it('shows refusals rising by reason: a certificate from another CA and plaintext on the TLS port', async () => {
    const refused = (reason: string) => `beamgate_refusals_total{gateway="beta",reason="${reason}"}`;
    // Every reason exists from the first scrape, at 0, so increase() sees the first refusal.
    const reasons = await prom.query('beamgate_refusals_total{gateway="beta"}');
    expect(reasons.map((r) => r.labels.reason).sort()).toEqual([...REFUSAL_REASONS].sort());
    const before = { unknownCa: (await prom.value(refused('unknown_ca')))!, notTls: (await prom.value(refused('not_tls')))! };

    const otherCa = await createCa('not the cluster CA');
    const forged = await createGatewayCert(otherCa, 'alpha', '127.0.0.1');
    const clusterCa = readFileSync(tlsPathsFor(t.mesh.roster, 'beta').ca, 'utf8');
    const r = await rogueLink(t.mesh.roster.gateways.get('beta')!.address.port, { ...forged, ca: clusterCa }, 'b1@beta.demo', 'a1@alpha.demo');
    expect(r.received).toBe(0);
    expect(await prom.waitValue(refused('unknown_ca'), (v) => v > before.unknownCa, 'the unknown_ca refusal')).toBe(before.unknownCa + 1);
    expect(await prom.value(refused('not_tls'))).toBe(before.notTls);

    await plaintextClient(t.mesh.roster.gateways.get('beta')!.address.port);
    expect(await prom.waitValue(refused('not_tls'), (v) => v > before.notTls, 'the not_tls refusal')).toBe(before.notTls + 1);
    expect(await prom.value(refused('unknown_ca'))).toBe(before.unknownCa + 1);
    expect(await prom.value('beamgate_tls_handshakes_total{gateway="beta",role="server",result="failed"}')).toBeGreaterThanOrEqual(2);
    // Each refusal is one log line with its reason and where it came from.
    const lines = t.logOf('beta').filter((l) => l.msg === 'connection refused');
    expect(lines.filter((l) => l.reason === 'unknown_ca' && typeof l.from === 'string' && l.level === 'warn')).toHaveLength(1);
    expect(lines.filter((l) => l.reason === 'not_tls' && typeof l.from === 'string')).toHaveLength(1);
  });

  it('keeps label values to the roster: names a hostile peer sends never become labels', async () => {
    const alphaPem = tlsPathsFor(t.mesh.roster, 'alpha');
    const genuine = { cert: readFileSync(alphaPem.cert, 'utf8'), key: readFileSync(alphaPem.key, 'utf8'), ca: readFileSync(alphaPem.ca, 'utf8') };
    const betaPort = t.mesh.roster.gateways.get('beta')!.address.port;
    await rogueLink(betaPort, genuine, 'zz_target@nowhere.demo', 'a1@alpha.demo');
    await rogueLink(betaPort, genuine, 'b1@beta.demo', 'zz_source@alpha.demo');
    const text = await (await fetch(url('beta', '/metrics'))).text();
    expect(text).not.toContain('zz_');
    const allowed: Record<string, Set<string>> = {
      gateway: new Set(t.mesh.roster.gateways.keys()),
      peer: new Set(t.mesh.roster.gateways.keys()),
      local_node: new Set(t.mesh.roster.nodes.keys()),
      remote_node: new Set(t.mesh.roster.nodes.keys()),
      reason: new Set(REFUSAL_REASONS),
    };
    for (const m of text.matchAll(/^beamgate_\w+\{([^}]*)\}/gm)) {
      for (const l of m[1]!.matchAll(/(\w+)="([^"]*)"/g)) {
        const [, label, value] = l as unknown as [string, string, string];
        if (allowed[label]) expect(allowed[label]!.has(value), `${label}="${value}"`).toBe(true);
      }
    }
  });

  it('promtool check metrics finds nothing to complain about in the live /metrics of gateways that relayed traffic', async () => {
    for (const gw of ['alpha', 'beta']) {
      const res = await fetch(url(gw, '/metrics'));
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      expect(sample(text, 'beamgate_relayed_bytes_total')).toBeGreaterThan(MESSAGES * PAYLOAD_BYTES);
      const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 });
      expect({ gateway: gw, code: r.status, complaints: (r.stdout + r.stderr).trim() }).toEqual({ gateway: gw, code: 0, complaints: '' });
    }
  });

  it('/healthz says alive and /readyz ready, with the reachable peers, as JSON', async () => {
    const health = await getJson(url('alpha', '/healthz'));
    expect(health).toMatchObject({ status: 200, type: 'application/json', body: { status: 'alive' } });
    await waitFor('alpha to have probed beta', () => t.gateways.get('alpha')!.readiness().peers.reachable.includes('beta'), PROMETHEUS_WAIT_MS);
    const ready = await getJson(url('alpha', '/readyz'));
    expect(ready).toMatchObject({ status: 200, type: 'application/json', body: { ready: true, listening: true, gateway: 'alpha', peers: { total: 1, reachable: ['beta'], unreachable: [] }, links: 1, unregistered_nodes: [] } });
  });

  it('/readyz answers 503 while a gateway drains; the close log lines carry bytes and duration matching the counters', async () => {
    const beta = t.gateways.get('beta')!;
    const draining = beta.drain(3_000);
    try {
      const r = await getJson(url('beta', '/readyz'));
      expect(r).toMatchObject({ status: 503, type: 'application/json', body: { ready: false, listening: false, gateway: 'beta', links: 1 } });
      // Alive all the same: a probe must not restart a gateway that is finishing its links.
      expect((await getJson(url('beta', '/healthz'))).status).toBe(200);
    } finally {
      expect(await draining).toMatchObject({ clean: false, cut: 1 });
      t.gateways.delete('beta');
    }
    const closed = await waitFor('alpha to log the closed link', () => t.logOf('alpha').find((l) => l.msg === 'link closed' && l.remote_node === 'b1@beta.demo'));
    const alphaText = await t.metricsText('alpha');
    expect(closed).toMatchObject({ level: 'info', gateway: 'alpha', peer: 'beta', direction: 'outbound', local_node: 'a1@alpha.demo', reason: 'peer closed' });
    // The link is the only one for the pair, so its totals are the counters'.
    expect(closed!.bytes_out).toBe(sample(alphaText, 'beamgate_relayed_bytes_total', pair));
    expect(closed!.bytes_in).toBe(sample(alphaText, 'beamgate_relayed_bytes_total', { ...pair, direction: 'in' }));
    expect(closed!.frames_out).toBe(sample(alphaText, 'beamgate_relayed_frames_total', pair));
    expect(Number(closed!.duration_ms)).toBeGreaterThan(0);
    expect(Number(closed!.duration_ms)).toBeLessThanOrEqual(Date.now() - linkOpenedAt);
    const cut = t.logOf('beta').find((l) => l.msg === 'link closed');
    expect(cut).toMatchObject({ peer: 'alpha', local_node: 'b1@beta.demo', remote_node: 'a1@alpha.demo', reason: 'gateway shutting down: drain deadline reached' });
    expect(cut!.bytes_in).toBe(closed!.bytes_out);
    expect(sample(alphaText, 'beamgate_links_closed_total', { peer: 'beta', direction: 'outbound' })).toBe(1);
    expect(sample(alphaText, 'beamgate_links_open', { peer: 'beta', direction: 'outbound' })).toBe(0);
  });

  it('logs one JSON object per line, and never the cookie or a key', () => {
    const secrets = [t.cookie, 'PRIVATE KEY', readFileSync(tlsPathsFor(t.mesh.roster, 'alpha').key, 'utf8').split('\n')[1]!];
    for (const gw of ['alpha', 'beta']) {
      const raw = t.logs.get(gw)!;
      const events = new Set(t.logOf(gw).map((l) => l.msg));
      for (const msg of ['gateway listening', 'node registered', 'link open', 'link closed']) expect(events, `${gw} logged "${msg}"`).toContain(msg);
      for (const line of raw) {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        expect(typeof parsed.ts).toBe('string');
        expect(['debug', 'info', 'warn', 'error']).toContain(parsed.level);
        expect(parsed.gateway).toBe(gw);
        for (const s of secrets) expect(line).not.toContain(s);
      }
      // Each refusal line names its reason from the fixed set.
      for (const l of t.logOf(gw).filter((x) => String(x.msg).includes('refused'))) expect(REFUSAL_REASONS).toContain(l.reason);
    }
  });
});

describe('the alert rules of deploy/alerts.yml, by promtool\'s rule tests', () => {
  it('deploy/alerts.test.yml passes: BeamgateNodeNotRegistered fires for a roster node away for a minute, not for one back within it', () => {
    const r = spawnSync('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: new URL('../../deploy/', import.meta.url), encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('SUCCESS');
    // The tests cover every alert this change added (and would catch it renamed).
    expect(readFileSync(new URL('../../deploy/alerts.test.yml', import.meta.url), 'utf8')).toContain('alertname: BeamgateNodeNotRegistered');
  });

  it('promtool\'s rule tests fail when an alert does not fire as the test expects (the check can fail)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'beamgate-alerts-'));
    try {
      // The same rules with the alert's `for` dropped: it fires at once, and the "pending, not firing" case fails.
      writeFileSync(join(dir, 'alerts.yml'), readFileSync(new URL('../../deploy/alerts.yml', import.meta.url), 'utf8').replace(/(alert: BeamgateNodeNotRegistered\n\s+expr: [^\n]+\n)\s+for: 1m\n/, '$1'));
      writeFileSync(join(dir, 'alerts.test.yml'), readFileSync(new URL('../../deploy/alerts.test.yml', import.meta.url), 'utf8'));
      expect(readFileSync(join(dir, 'alerts.yml'), 'utf8')).not.toMatch(/BeamgateNodeNotRegistered\n\s+expr: [^\n]+\n\s+for:/);
      const r = spawnSync('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: dir, encoding: 'utf8', timeout: 30_000 });
      expect(r.status).not.toBe(0);
      expect(r.stdout + r.stderr).toContain('BeamgateNodeNotRegistered');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the log level comes from the roster, and a reload changes it', () => {
  let dir: string;
  let gp: GatewayProcess | undefined;
  afterAll(async () => {
    await gp?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it('at warn, a gateway process logs refusals but not its start; after SIGHUP with info, it logs the reload', async () => {
    dir = mkdtempSync(join(tmpdir(), 'beamgate-loglevel-'));
    const metricsPort = await freePort();
    const tlsPort = await freePort();
    const mesh = await buildLocalMesh({
      dir,
      gateways: [{ name: 'alpha', tlsPort, epmdPort: await freePort(), metricsPort, nodes: { a1: await freePort() }, loopback: randomAlias() }],
      logLevel: 'warn',
    });
    gp = await GatewayProcess.start(mesh.rosterPath, 'alpha', metricsPort);
    await plaintextClient(tlsPort);
    await waitFor('the refusal to be logged', () => gp!.logged('connection refused', { reason: 'not_tls' }).length === 1);
    expect(gp.logs.filter((l) => l.level === 'info' || l.level === 'debug')).toEqual([]);
    expect(gp.logged('gateway listening')).toEqual([]);

    const roster = readFileSync(mesh.rosterPath, 'utf8');
    expect(roster).toMatch(/level: warn/);
    writeFileSync(mesh.rosterPath, roster.replace(/level: warn/, 'level: info'));
    gp.signal('SIGHUP');
    await waitFor('the reload to be logged at info', () => gp!.logged('configuration reloaded').length === 1);
    expect(gp.otherOutput).toEqual([]);
  });
});
