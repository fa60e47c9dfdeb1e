// A running gateway starting its own successor (SIGUSR2, as nginx's binary
// upgrade): the same command line, read anew from disk (an upgraded install),
// with --take-over. Started by the running gateway, the successor is in its
// service's cgroup and inherits its standard output and error (the journal),
// which a process started beside it by an operator would not be: this is how
// a systemd unit upgrades without a stop (deploy/systemd/beamgate.service).
// The successor takes over through the take-over socket like any other; if
// it fails, it exits and this gateway serves on.

import { type ChildProcess, spawn } from 'node:child_process';
import type { Logger } from '../log/logger.js';
import type { GatewayMetrics } from '../metrics/metrics.js';

/** The successor's arguments: this process's own, `--take-over` in place of any take-over option. */
export function successorArgs(argv: readonly string[] = process.argv, execArgv: readonly string[] = process.execArgv): string[] {
  const own = argv.slice(1).filter((a) => a !== '--take-over' && a !== '--take-over-if-running');
  return [...execArgv, ...own, '--take-over'];
}

export class Successors {
  private child: ChildProcess | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly metrics: GatewayMetrics,
  ) {}

  /** Starts a successor unless one is already starting. */
  start(): void {
    if (this.child) {
      this.logger.warn('a successor is already starting, SIGUSR2 ignored', { pid: this.child.pid });
      return;
    }
    const args = successorArgs();
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    this.child = child;
    this.metrics.successors.labels('started').inc();
    this.logger.info('starting a successor', { pid: child.pid, command: [process.execPath, ...args].join(' ') });
    // 'error' (it could not be started) and 'exit' may both come: the first ends it.
    child.once('error', (err) => {
      if (this.child !== child) return;
      this.logger.error('successor not started, serving on', { detail: err.message });
      this.ended();
    });
    child.once('exit', (code, signal) => {
      if (this.child !== child) return;
      this.logger.warn('successor exited before taking over, serving on', { pid: child.pid, code, signal });
      this.ended();
    });
  }

  /** The successor took over: this process exits and must not wait for it, nor count its end. */
  release(): void {
    const child = this.child;
    this.child = undefined;
    child?.unref();
  }

  private ended(): void {
    this.metrics.successors.labels('exited').inc();
    this.child = undefined;
  }
}
