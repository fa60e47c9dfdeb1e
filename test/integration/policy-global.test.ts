// Erlang's own reactions to a policy-partitioned cluster (issue 11, item 3):
// tenants t1 (alpha) and t2 (beta) may reach admin (gamma), not each other.
// With `global` running, every new link to admin tells a tenant about the
// other, and `global` dials it: the gateway refuses that dial. Measured over
// a fixed window in which each tenant keeps itself linked with admin (a ping
// a second, as an application that needs admin would): first with Erlang's
// defaults (connect_all, prevent_overlapping_partitions), then with the
// flags node-flags prints (-connect_all false for the tenants). Prints what
// the nodes see (nodes(), global names, pg members) and the refused-dial rate.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErlNode } from '../../src/erlang/node.js';
import { LabCluster } from '../helpers/lab-cluster.js';
import { sample, waitFor } from '../helpers/mesh.js';
import { netnsUnavailableReason } from '../helpers/netns.js';
import { compileTraffic, nodeEvents } from '../helpers/traffic.js';

const T1 = 't1@alpha.lab';
const T2 = 't2@beta.lab';
const ADMIN = 'admin@gamma.lab';
const NODES = [T1, T2, ADMIN];
/** The measuring window (the issue asks for 60 s); BEAMGATE_POLICY_WINDOW_S overrides it for a longer run. */
const WINDOW_S = Number(process.env.BEAMGATE_POLICY_WINDOW_S ?? 60);
/** How often each tenant makes sure it is linked with admin during the window. */
const RECONNECT_EVERY_MS = 1_000;
/**
 * What "no flood" means: a refused dial is `global` reacting to a new link,
 * so there can be at most a few per link a tenant opens to admin (one per
 * node it hears of, plus a crossing one). Far above what is measured, far
 * below a redial loop (about 80 a second per node, see the faults tests).
 */
const MAX_REFUSED_PER_NEW_LINK = 4;
/** A test: restarting three nodes, the window, and reading every node's view on a loaded machine. */
const TEST_TIMEOUT_MS = WINDOW_S * 1000 + 120_000;

const POLICY = { groups: { tenants: [T1, T2], admin: [ADMIN] }, allow: [{ between: ['tenants', 'admin'] }] };

const unavailable = netnsUnavailableReason();
if (unavailable) console.warn(`policy-global.test.ts: SKIPPED, network namespaces cannot be made here: ${unavailable}`);

interface Window {
  refused: number;
  ratePerS: number;
  /** Links the tenants opened to admin during the window (admin's nodeup events). */
  newLinks: number;
  adminNodedowns: number;
  views: Record<string, { nodes: string; global: string; pg: string }>;
}

describe.runIf(unavailable === null)('policy: what global does in a policy-partitioned cluster, and the refused-dial rate', () => {
  let c: LabCluster;
  let workDir: string;
  let extra: string[];

  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'beamgate-policy-global-'));
    extra = ['-kernel', 'start_pg', 'true', ...compileTraffic(workDir)];
    c = await LabCluster.start({ alpha: { erlang: ['t1'] }, beta: { erlang: ['t2'] }, gamma: { erlang: ['admin'] } }, { policy: POLICY });
  }, 150_000);

  afterAll(async () => {
    await c?.stop();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  const denied = async () => {
    let n = 0;
    for (const gw of ['alpha', 'beta', 'gamma']) n += sample(await c.gw(gw).metrics(), 'beamgate_refusals_total', { reason: 'policy_denied' });
    return n;
  };

  /** Starts t1, t2 and admin: with the node-flags flags, or with those minus -connect_all false (Erlang's defaults). */
  async function startNodes(defaults: boolean): Promise<void> {
    await Promise.all(NODES.map((n) => c.erlang.get(n)?.stop()));
    await Promise.all(
      NODES.map(async (name) => {
        let args = [...c.mesh.nodeArgs(name), ...extra];
        if (defaults) {
          const i = args.indexOf('-connect_all');
          if (i >= 0) args.splice(i, 2);
        }
        const node = await ErlNode.start(name, { args, home: c.home, prefix: c.lab.host(c.gatewayOf(name)).prefix, startTimeoutMs: 40_000 });
        c.erlang.set(name, node);
        await node.eval('bg_traffic:start_monitor()');
        // A global name and a pg group member on every node, held by a process that lives as long as the node.
        const short = name.slice(0, name.indexOf('@'));
        await node.eval(`P = spawn(fun() -> pg:join(demo, self()), receive stop -> ok end end), yes = global:register_name(svc_${short}, P), ok`);
      }),
    );
    expect(c.mesh.nodeArgs(T1)).toContain('-connect_all');
    expect(c.mesh.nodeArgs(ADMIN)).not.toContain('-connect_all');
  }

  /** Keeps both tenants linked with admin for WINDOW_S; counts refused dials and what admin saw. */
  async function measure(): Promise<Window> {
    const admin = c.node(ADMIN);
    const startedAt = Date.now();
    const before = await denied();
    const deadline = startedAt + WINDOW_S * 1000;
    let next = startedAt;
    while (Date.now() < deadline) {
      await Promise.all([T1, T2].map((t) => c.node(t).eval(`net_adm:ping('${ADMIN}')`)));
      next += RECONNECT_EVERY_MS;
      await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
    }
    const seconds = (Date.now() - startedAt) / 1000;
    const refused = (await denied()) - before;
    const events = (await nodeEvents(admin)).filter((e) => e.at >= startedAt);
    const views: Window['views'] = {};
    for (const n of NODES) {
      const node = c.node(n);
      views[n] = { nodes: await node.eval('lists:sort(nodes())'), global: await node.eval('lists:sort(global:registered_names())'), pg: await node.eval('lists:sort([node(P) || P <- pg:get_members(demo)])') };
    }
    return {
      refused,
      ratePerS: Math.round((refused / seconds) * 100) / 100,
      newLinks: events.filter((e) => e.event === 'nodeup').length,
      adminNodedowns: events.filter((e) => e.event === 'nodedown').length,
      views,
    };
  }

  const report = (label: string, w: Window) =>
    console.log(
      `${label}: ${w.refused} dials refused by policy in ${WINDOW_S} s (${w.ratePerS}/s), ${w.newLinks} links opened to admin, admin saw ${w.adminNodedowns} nodedowns\n` +
        Object.entries(w.views)
          .map(([n, v]) => `  ${n}: nodes() ${v.nodes}; global names ${v.global}; pg demo members on ${v.pg}`)
          .join('\n'),
    );

  it(`Erlang defaults (connect_all, prevent_overlapping_partitions): global dials the other tenant and is refused, a bounded number of times per link, and makes admin drop tenants`, async () => {
    await startNodes(true);
    const w = await measure();
    report('defaults', w);
    // global on each tenant hears of the other through admin and dials it: refused.
    expect(w.refused).toBeGreaterThan(0);
    // Bounded: a few per link opened, never a redial loop.
    expect(w.refused).toBeLessThanOrEqual(MAX_REFUSED_PER_NEW_LINK * Math.max(1, w.newLinks));
    // prevent_overlapping_partitions: the refused tenant reports a lost connection, and admin disconnects the other one.
    expect(w.adminNodedowns).toBeGreaterThan(0);
  }, TEST_TIMEOUT_MS);

  it('with the flags node-flags prints (-connect_all false on the tenants): no dial refused, admin keeps both links all the window', async () => {
    await startNodes(false);
    await waitFor('admin linked with both', async () => {
      await Promise.all([T1, T2].map((t) => c.node(t).eval(`net_adm:ping('${ADMIN}')`)));
      return (await c.node(ADMIN).eval('lists:sort(nodes())')) === `['${T1}','${T2}']`;
    });
    const w = await measure();
    report('connect_all false', w);
    expect(w.refused).toBe(0);
    expect(w.adminNodedowns).toBe(0);
    expect(w.views[ADMIN]!.nodes).toBe(`['${T1}','${T2}']`);
    expect(w.views[T1]!.nodes).toBe(`['${ADMIN}']`);
    expect(w.views[T2]!.nodes).toBe(`['${ADMIN}']`);
    // pg follows the links: admin sees members on all three nodes, each tenant on itself and admin.
    expect(w.views[ADMIN]!.pg).toBe(`['${ADMIN}','${T1}','${T2}']`);
    expect(w.views[T1]!.pg).toBe(`['${ADMIN}','${T1}']`);
    // global does not sync names with a -connect_all false node: each node keeps its own.
    for (const n of NODES) expect(w.views[n]!.global).toBe(`[svc_${n.slice(0, n.indexOf('@'))}]`);
  }, TEST_TIMEOUT_MS);
});
