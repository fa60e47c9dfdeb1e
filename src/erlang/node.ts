// Starts a real `erl` node and drives it through a tiny evaluator on stdin:
// each request is an Erlang expression sequence, each answer one tagged line.
// Used by the demo, the integration tests and the benchmark.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { assertCookieHome, cookieEnv } from './cookie.js';
import type { OtpRuntime } from './roots.js';

export interface ErlNodeOptions {
  args: string[];
  /**
   * The node's home, made by writeCookieHome: the node reads its cookie from
   * HOME/.erlang.cookie, so no cookie is ever on its command line. A
   * `runtime` bind-mounts it into its root; with a `prefix` that changes the
   * root some other way, the same path must exist inside it.
   */
  home: string;
  env?: NodeJS.ProcessEnv;
  /** Extra code paths (-pa) holding helper modules. */
  codePaths?: string[];
  /** How long the node may take to boot and register; default 20 s. */
  startTimeoutMs?: number;
  /** Command words put before `erl`, e.g. `['ip', 'netns', 'exec', NS]` to start it in a network namespace. */
  prefix?: string[];
  /**
   * Run `erl` of another OTP release (a Debian root, see roots.ts), after
   * `prefix`. The code paths, `binds` and `home` (where the `.erlang.cookie`
   * lives) are made readable inside the root.
   */
  runtime?: OtpRuntime;
  /** Directories the node reads (its inetrc's, say), for `runtime`. */
  binds?: string[];
}

const TAG = '@@BG ';
const READY = '@@BG-READY';

// Reads one expression per line, evaluates it, prints the result on one line.
const EVAL_LOOP = [
  'Loop = fun Loop() ->',
  '  case io:get_line("") of',
  '    eof -> erlang:halt(0);',
  '    {error, _} -> erlang:halt(0);',
  '    Line ->',
  '      R = try',
  '        {ok, Toks, _} = erl_scan:string(Line),',
  '        {ok, Exprs} = erl_parse:parse_exprs(Toks),',
  '        {value, V, _} = erl_eval:exprs(Exprs, []),',
  '        {ok, V}',
  '      catch C:E -> {error, {C, E}} end,',
  `      io:put_chars(["${TAG}", io_lib:print(R, 1, 1000000, -1), "\\n"]),`,
  '      Loop()',
  '  end',
  'end,',
  `io:put_chars("${READY}\\n"),`,
  'Loop().',
].join('\n');

export class ErlNodeError extends Error {}

export class ErlNode {
  private buffer = '';
  private readonly waiters: ((line: string) => void)[] = [];
  private exited = false;
  readonly output: string[] = [];

  private constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (s: string) => this.onOutput(s));
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (s: string) => this.output.push(s));
    proc.on('exit', () => {
      this.exited = true;
      for (const w of this.waiters.splice(0)) w('');
    });
  }

  static async start(name: string, opts: ErlNodeOptions): Promise<ErlNode> {
    assert.ok(!opts.args.includes('-setcookie'), 'the cookie goes in HOME/.erlang.cookie, never on the command line');
    assertCookieHome(opts.home);
    const args = [...opts.args, '-noshell'];
    for (const p of opts.codePaths ?? []) args.push('-pa', p);
    args.push('-eval', EVAL_LOOP);
    const binds = [...(opts.binds ?? []), ...(opts.codePaths ?? []), opts.home];
    const [command, ...before] = [...(opts.prefix ?? []), ...(opts.runtime?.prefix(binds) ?? []), 'erl'];
    const proc = spawn(command!, [...before, ...args], {
      env: { ...process.env, ...opts.env, ...cookieEnv(opts.home) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const node = new ErlNode(name, proc);
    const timeout = opts.startTimeoutMs ?? 20_000;
    const ready = await node.nextLine(timeout, (l) => l === READY);
    if (!ready) {
      node.kill();
      throw new ErlNodeError(`node ${name} did not start within ${timeout} ms: ${node.log().slice(-2000)}`);
    }
    return node;
  }

  private onOutput(s: string): void {
    this.buffer += s;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      if (line.startsWith(TAG) || line === READY) {
        const w = this.waiters.shift();
        if (w) w(line);
      } else {
        this.output.push(line + '\n');
      }
    }
  }

  private nextLine(timeoutMs: number, accept: (l: string) => boolean): Promise<string | null> {
    if (this.exited) return Promise.resolve(null);
    return new Promise((resolve) => {
      // The node answers requests in order, so a request that timed out keeps
      // its place in the queue: its late answer is dropped there instead of
      // being taken as the answer to the next request.
      const timer = setTimeout(() => resolve(null), timeoutMs);
      this.waiters.push((line: string) => {
        clearTimeout(timer);
        resolve(line && accept(line) ? line : null);
      });
    });
  }

  /** Evaluates an expression sequence (no trailing dot needed) and returns the printed term. */
  async eval(expr: string, timeoutMs = 30_000): Promise<string> {
    if (this.exited) throw new ErlNodeError(`node ${this.name} has exited: ${this.log().slice(-2000)}`);
    const line = expr.replace(/\s*\.\s*$/, '').replace(/\n/g, ' ') + '.\n';
    const answer = this.nextLine(timeoutMs, (l) => l.startsWith(TAG));
    this.proc.stdin!.write(line);
    const out = await answer;
    if (out === null) throw new ErlNodeError(`node ${this.name}: no answer to ${expr} within ${timeoutMs} ms`);
    const text = out.slice(TAG.length);
    if (text.startsWith('{error,')) throw new ErlNodeError(`node ${this.name}: ${expr} raised ${text}`);
    if (!text.startsWith('{ok,')) throw new ErlNodeError(`node ${this.name}: unexpected answer ${text}`);
    return text.slice(4, -1);
  }

  log(): string {
    return this.output.join('');
  }

  get alive(): boolean {
    return !this.exited;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (!this.exited) this.proc.kill(signal);
  }

  /** Stops the node and waits for the process to be gone. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = once(this.proc, 'exit');
    this.proc.stdin!.end();
    const t = setTimeout(() => this.kill(), 3_000);
    await gone;
    clearTimeout(t);
  }
}
