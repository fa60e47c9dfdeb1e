// A real Elixir node (Debian's `elixir` command) running bg_node.exs. Tests
// drive it from Erlang nodes (messages, rpc), so this only starts it, waits
// for its ready line and stops it.

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ELIXIR_SCRIPT = fileURLToPath(new URL('./elixir/bg_node.exs', import.meta.url));
const READY = '@@BG-ELIXIR-READY ';
/** How long an Elixir node may take to boot, compile the script and print its ready line. */
const ELIXIR_START_TIMEOUT_MS = 30_000;
/** How long stop() waits after closing stdin before it kills the node. */
const ELIXIR_STOP_GRACE_MS = 3_000;

/**
 * The `elixir` command line for a node behind a gateway, from the flags
 * `erlFlags` makes for erl: the node name goes to `--name`/`--sname`, every
 * other flag into one `--erl` string. No `--cookie`: elixir would pass it to
 * erl as `-setcookie`, on the command line; the node reads it from
 * HOME/.erlang.cookie instead (start it with cookieEnv(home)). The elixir
 * script splits that string on blanks and passes the words on unquoted, so
 * `-kernel inetrc "PATH"` reaches erl with its double quotes (an Erlang
 * string), and no word may contain a blank.
 */
export function elixirArgs(erlFlags: string[]): string[] {
  const at = erlFlags.findIndex((f) => f === '-name' || f === '-sname');
  assert.ok(at >= 0 && at + 1 < erlFlags.length, 'erl flags without -name/-sname');
  const rest = [...erlFlags.slice(0, at), ...erlFlags.slice(at + 2)];
  for (const word of rest) assert.ok(!/\s/.test(word), `erl flag "${word}" has a blank: --erl cannot carry it`);
  return [`-${erlFlags[at]}`, erlFlags[at + 1]!, '--erl', rest.join(' ')];
}

export class ElixirNode {
  readonly output: string[] = [];
  /** The Elixir version the node reported. */
  version = '';
  private exited = false;

  private constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (s: string) => this.output.push(s));
    proc.on('exit', () => (this.exited = true));
  }

  /** `spawn` starts the given argv (e.g. inside a lab host); the script path is appended. */
  static async start(name: string, args: string[], spawn: (argv: string[]) => ChildProcess): Promise<ElixirNode> {
    const node = new ElixirNode(name, spawn(['elixir', ...args, ELIXIR_SCRIPT]));
    const lines = createInterface({ input: node.proc.stdout! });
    const ready = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), ELIXIR_START_TIMEOUT_MS);
      lines.on('line', (line) => {
        if (line.startsWith(READY)) {
          const [reported, version] = line.slice(READY.length).split(' ');
          node.version = version ?? '';
          clearTimeout(timer);
          resolve(reported === name);
        } else node.output.push(line + '\n');
      });
      node.proc.once('exit', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!(await ready)) {
      node.kill();
      throw new Error(`elixir node ${name} did not start within ${ELIXIR_START_TIMEOUT_MS} ms: ${node.output.join('').slice(-2000)}`);
    }
    return node;
  }

  get alive(): boolean {
    return !this.exited;
  }

  kill(): void {
    if (!this.exited) this.proc.kill('SIGKILL');
  }

  /** Closes stdin (the script halts on EOF), then kills the node if it lingers. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = once(this.proc, 'exit');
    this.proc.stdin!.end();
    const t = setTimeout(() => this.kill(), ELIXIR_STOP_GRACE_MS);
    await gone;
    clearTimeout(t);
  }
}
