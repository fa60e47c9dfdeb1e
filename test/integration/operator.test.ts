// Operator access with real nodes: a person on alpha's host attaches a remote
// shell (`erl -remsh`, under a pty: OTP 25 ignores -remsh when TERM is dumb) and runs rpc on a node behind beta, through
// both gateways. The roster admits such nodes by a name pattern on one gateway,
// hidden only; everything else is refused, and the mesh cannot dial them back.

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cookieEnv } from '../../src/erlang/cookie.js';
import { ErlNode } from '../../src/erlang/node.js';
import { sample, startTestMesh, type TestMesh, waitFor } from '../helpers/mesh.js';

/** How long a remote shell may take to connect and print its prompt on a busy machine. */
const REMSH_TIMEOUT_MS = 30_000;

describe('operator nodes through the gateways', () => {
  let t: TestMesh;
  let a1: ErlNode;
  let b1: ErlNode;

  beforeAll(async () => {
    t = await startTestMesh({ gateways: { alpha: ['a1'], beta: ['b1'] }, operators: [{ gateway: 'alpha', pattern: 'ops_*' }] });
    [a1, b1] = await Promise.all([t.startNode('a1@alpha.demo'), t.startNode('b1@beta.demo')]);
    expect(await a1.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pong');
  });
  afterAll(async () => t?.stop());

  it('the flags for an operator make it hidden and listen nowhere', () => {
    const args = t.mesh.nodeArgs('ops_jane@alpha.demo');
    expect(args).toEqual(expect.arrayContaining(['-hidden', '-dist_listen', 'false']));
    expect(args).not.toContain('inet_dist_listen_min');
  });

  it('erl -remsh attaches a shell on a node behind the other gateway, and its IO comes back', async () => {
    const cmd = ['erl', ...t.mesh.nodeArgs('ops_jane@alpha.demo'), '-remsh', 'b1@beta.demo'];
    const shell = new PtyProcess(cmd, cookieEnv(t.home));
    try {
      // The prompt names the node the shell runs on: the remote one.
      await shell.waitFor(/\(b1@beta\.demo\)\d+>/, REMSH_TIMEOUT_MS);
      shell.write('io:format("evaluated-on-~s~n", [node()]).\n');
      await shell.waitFor(/evaluated-on-b1@beta\.demo/, REMSH_TIMEOUT_MS);
      // A value that only b1 has: a process registered there by the test.
      await b1.eval(`register(only_on_b1, spawn(fun() -> receive stop -> ok end end)), ok`);
      shell.write('is_pid(whereis(only_on_b1)).\n');
      await shell.waitFor(/\btrue\b/, REMSH_TIMEOUT_MS);
      // The shell went through both gateways as an operator link, not around them.
      const beta = t.logOf('beta').find((l) => l.msg === 'link open' && l.remote_node === 'ops_*');
      expect(beta).toMatchObject({ peer: 'alpha', local_node: 'b1@beta.demo', direction: 'inbound' });
      // Hidden: b1 sees the operator only among hidden connections.
      expect(await b1.eval(`lists:member('ops_jane@alpha.demo', nodes())`)).toBe('false');
      expect(await b1.eval(`lists:member('ops_jane@alpha.demo', nodes(hidden))`)).toBe('true');
    } finally {
      await shell.kill();
    }
    // Leaving the shell leaves the node running.
    await waitFor('the operator link to close', async () => (await b1.eval(`nodes(hidden)`)) === '[]');
    expect(await b1.eval('node()')).toBe(`'b1@beta.demo'`);
  });

  it('rpc from a hidden operator node reaches a node behind the other gateway', async () => {
    const ops = await t.startNode('ops_rpc@alpha.demo');
    expect(await ops.eval(`rpc:call('b1@beta.demo', erlang, node, [])`)).toBe(`'b1@beta.demo'`);
    expect(await ops.eval(`erpc:call('b1@beta.demo', lists, sum, [[1,2,3]])`)).toBe('6');
    // The operator does not join the cluster: no node lists it as a member.
    expect(await b1.eval(`nodes()`)).toBe(`['a1@alpha.demo']`);
    expect(await a1.eval(`lists:member('ops_rpc@alpha.demo', nodes())`)).toBe('false');
  });

  it('no node can dial an operator node', async () => {
    // It listens nowhere and no EPMD knows it, so it exists only on the links it opens itself.
    await t.startNode('ops_idle@alpha.demo');
    expect(await b1.eval(`net_adm:ping('ops_idle@alpha.demo')`)).toBe('pang');
    expect(await a1.eval(`net_adm:ping('ops_idle@alpha.demo')`)).toBe('pang');
  });

  it('refuses an operator that is not hidden, with a log line and a metric', async () => {
    const before = sample(await t.metricsText('alpha'), 'beamgate_refusals_total', { reason: 'operator_not_hidden' });
    // Plain `erl -name ops_loud@alpha.demo`: registers with EPMD, dials as a visible node.
    const args = t.mesh.nodeArgs('ops_loud@alpha.demo').filter((a) => a !== '-hidden');
    const i = args.indexOf('-dist_listen');
    args.splice(i, 2);
    const loud = await ErlNode.start('ops_loud@alpha.demo', { args, home: t.home });
    t.nodes.push(loud);
    expect(await loud.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pang');
    await waitFor('the refusal metric', async () => sample(await t.metricsText('alpha'), 'beamgate_refusals_total', { reason: 'operator_not_hidden' }) > before);
    const line = t.logOf('alpha').find((l) => l.reason === 'operator_not_hidden');
    expect(line).toMatchObject({ msg: 'connection refused', peer: 'beta', remote_node: 'b1@beta.demo' });
    expect(String(line?.detail)).toMatch(/ops_loud@alpha\.demo must connect as a hidden node/);
    expect(await b1.eval(`lists:member('ops_loud@alpha.demo', nodes(connected))`)).toBe('false');
  });

  it('refuses a hidden node whose name is outside the operator pattern', async () => {
    const before = sample(await t.metricsText('alpha'), 'beamgate_refusals_total', { reason: 'not_in_roster' });
    const stranger = await t.startNode('intruder@alpha.demo');
    expect(await stranger.eval(`net_adm:ping('b1@beta.demo')`)).toBe('pang');
    await waitFor('the refusal metric', async () => sample(await t.metricsText('alpha'), 'beamgate_refusals_total', { reason: 'not_in_roster' }) > before);
    const line = t.logOf('alpha').find((l) => l.reason === 'not_in_roster');
    expect(String(line?.detail)).toMatch(/intruder@alpha\.demo is not admitted on gateway alpha/);
  });

  it('refuses an operator name on a gateway whose pattern list does not have it', async () => {
    // ops_* is admitted on alpha only: the same name on beta's host is a stranger there.
    const before = sample(await t.metricsText('beta'), 'beamgate_refusals_total', { reason: 'not_in_roster' });
    const elsewhere = await t.startNode('ops_jane@beta.demo');
    expect(await elsewhere.eval(`net_adm:ping('a1@alpha.demo')`)).toBe('pang');
    await waitFor('the refusal metric', async () => sample(await t.metricsText('beta'), 'beamgate_refusals_total', { reason: 'not_in_roster' }) > before);
  });
});

/** A command under a pseudo-terminal (`script`), as a person would run it in a terminal. */
class PtyProcess {
  private readonly proc: ChildProcess;
  private text = '';
  /** Where the answer to the last input starts: earlier output never satisfies a wait. */
  private mark = 0;

  constructor(argv: string[], env: NodeJS.ProcessEnv = {}) {
    const command = argv.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
    // Its own process group, so kill() ends script, the shell it runs and erl together.
    this.proc = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: { ...process.env, ...env, TERM: 'xterm' } });
    this.proc.stdout!.setEncoding('utf8');
    this.proc.stdout!.on('data', (s: string) => (this.text += s));
    this.proc.stderr!.setEncoding('utf8');
    this.proc.stderr!.on('data', (s: string) => (this.text += s));
  }

  write(s: string): void {
    this.mark = this.text.length;
    this.proc.stdin!.write(s);
  }

  async waitFor(pattern: RegExp, timeoutMs: number): Promise<void> {
    await waitFor(`${pattern} in the remote shell's output`, () => pattern.test(this.text.slice(this.mark)), timeoutMs).catch((err: Error) => {
      throw new Error(`${err.message}\n--- terminal so far ---\n${this.text.slice(-3000)}`);
    });
  }

  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const gone = once(this.proc, 'exit');
    process.kill(-this.proc.pid!, 'SIGKILL');
    await gone;
  }
}
