import { describe, expect, it } from 'vitest';
import type { NodeSpec } from '../../src/config/roster.js';
import { GatewayMetrics } from '../../src/metrics/metrics.js';
import { publishRosterNodes, ROSTER_NODE_METRIC, unregisteredNodes } from '../../src/metrics/roster-nodes.js';

const node = (short: string, port: number): NodeSpec => ({ name: `${short}@alpha.demo`, short, host: 'alpha.demo', gateway: 'alpha', port });
const app = node('app', 5001);
const jobs = node('jobs', 5002);

describe('roster nodes expected and not registered', () => {
  it('lists the roster nodes whose short name is not registered, in roster order', () => {
    expect(unregisteredNodes([app, jobs], (s) => s === 'app')).toEqual(['jobs@alpha.demo']);
    expect(unregisteredNodes([app, jobs], () => false)).toEqual(['app@alpha.demo', 'jobs@alpha.demo']);
    expect(unregisteredNodes([app, jobs], () => true)).toEqual([]);
  });

  it('exports one series per roster node of the host, 1 registered and 0 not, and drops a node a reload removed', async () => {
    const m = new GatewayMetrics('alpha');
    publishRosterNodes(m.rosterNodeRegistered, [app, jobs], (s) => s === 'app');
    let text = await m.text();
    expect(text).toContain(`${ROSTER_NODE_METRIC}{node="app@alpha.demo",gateway="alpha"} 1`);
    expect(text).toContain(`${ROSTER_NODE_METRIC}{node="jobs@alpha.demo",gateway="alpha"} 0`);
    publishRosterNodes(m.rosterNodeRegistered, [app], () => true);
    text = await m.text();
    expect(text).toContain(`${ROSTER_NODE_METRIC}{node="app@alpha.demo",gateway="alpha"} 1`);
    expect(text).not.toContain('jobs@alpha.demo');
  });
});
