// Reload on file change: polls the files a gateway's configuration is made of
// (the roster, and the CA, certificate and key it names) and reports a change
// once the files have stopped changing. Polling `stat` rather than inotify:
// it sees a file replaced by a rename, a symlink swapped (Kubernetes secrets),
// and files on network or bind mounts alike, and costs four stats a period.

import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';

/** Bounds of --reload-interval, in seconds. */
export const MIN_RELOAD_INTERVAL_S = 1;
export const MAX_RELOAD_INTERVAL_S = 24 * 60 * 60;

/** What one file looks like now: its identity, size and times, or why it cannot be read. */
async function fileState(path: string): Promise<string> {
  try {
    // stat follows symlinks, so a swapped link shows as a new inode.
    const s = await stat(path, { bigint: true });
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch (err) {
    return `unreadable:${(err as NodeJS.ErrnoException).code ?? 'error'}`;
  }
}

type Snapshot = Map<string, string>;

async function snapshot(paths: readonly string[]): Promise<Snapshot> {
  const states = await Promise.all(paths.map(fileState));
  return new Map(paths.map((p, i) => [p, states[i]!]));
}

function changedPaths(from: Snapshot, to: Snapshot): string[] {
  const all = new Set([...from.keys(), ...to.keys()]);
  return [...all].filter((p) => from.get(p) !== to.get(p)).sort();
}

function same(a: Snapshot, b: Snapshot): boolean {
  return changedPaths(a, b).length === 0;
}

export interface ConfigWatcherOptions {
  /** The files to watch; asked again at every poll, since a reload may name other files. */
  paths: () => readonly string[];
  intervalMs: number;
  /** Called once per settled change, with the files that differ from the last change reported. */
  onChange: (changed: string[]) => void;
}

/**
 * Reports a change only once two polls in a row agree: a rotation that writes
 * the certificate and then the key is applied once, whole, rather than first
 * with a certificate that does not match its key. A change that a reload then
 * refuses is not reported again until the files change once more.
 */
export class ConfigWatcher {
  private applied: Snapshot | undefined;
  private pending: Snapshot | undefined;
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(private readonly opts: ConfigWatcherOptions) {
    assert.ok(opts.intervalMs >= MIN_RELOAD_INTERVAL_S * 1000 && opts.intervalMs <= MAX_RELOAD_INTERVAL_S * 1000, 'reload interval out of bounds');
  }

  /** Takes the files as they are now as the configuration in force, then polls. */
  async start(): Promise<void> {
    assert.ok(this.timer === undefined, 'watcher started twice');
    this.applied = await snapshot(this.opts.paths());
    this.timer = setInterval(() => void this.poll(), this.opts.intervalMs);
    // Watching never keeps a gateway alive on its own.
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One poll: what the timer runs each period (public so a test can step it). */
  async poll(): Promise<void> {
    // A stat stuck on a dead network mount must not pile up polls behind it.
    if (this.polling) return;
    this.polling = true;
    try {
      const now = await snapshot(this.opts.paths());
      assert.ok(this.applied, 'poll before start');
      if (same(now, this.applied)) {
        this.pending = undefined;
        return;
      }
      if (!this.pending || !same(now, this.pending)) {
        // Still changing, or changed for the first time: wait one period for it to settle.
        this.pending = now;
        return;
      }
      const changed = changedPaths(this.applied, now);
      this.applied = now;
      this.pending = undefined;
      this.opts.onChange(changed);
    } finally {
      this.polling = false;
    }
  }
}
