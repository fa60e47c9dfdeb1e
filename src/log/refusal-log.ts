// Every refusal is counted in the metrics, but not every one gets its own log
// line: a peer gateway that is down while nodes keep redialling (about 80
// refusals a second per sending node), or anyone opening connections to a
// listener, would otherwise turn into a flood of lines. Per message, reason
// and peer gateway, the first `refusalLogBurst` refusals of a window are
// logged in full; the rest are counted, and one `refusals suppressed` line
// reports them when the window closes. Lines logged plus the counts reported
// equal the refusals counted, so no refusal goes unaccounted for.

import assert from 'node:assert/strict';
import type { Limits } from '../config/limits.js';
import type { LogFields, Logger } from './logger.js';

type Budget = Pick<Limits, 'refusalLogBurst' | 'refusalLogWindowMs'>;

interface Window {
  msg: string;
  reason: string;
  peer: string | undefined;
  startedAt: number;
  logged: number;
  suppressed: number;
  timer: NodeJS.Timeout | undefined;
}

/** Keys are message × reason × roster peer, all from closed sets; more than this means a key leaked unvalidated input. */
const MAX_WINDOWS = 10_000;

export class RefusalLog {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly logger: Logger,
    private readonly budget: () => Budget,
  ) {}

  /**
   * Logs (or counts) one refusal. `peer` must be a roster gateway name or
   * undefined: it is part of the key, which must stay bounded.
   */
  warn(msg: string, reason: string, peer: string | undefined, fields: LogFields): void {
    const { refusalLogBurst, refusalLogWindowMs } = this.budget();
    const now = Date.now();
    const key = `${msg}\u0000${reason}\u0000${peer ?? ''}`;
    let w = this.windows.get(key);
    if (w && now - w.startedAt >= refusalLogWindowMs) {
      this.close(key, w);
      w = undefined;
    }
    if (!w) {
      w = { msg, reason, peer, startedAt: now, logged: 0, suppressed: 0, timer: undefined };
      this.windows.set(key, w);
      assert.ok(this.windows.size <= MAX_WINDOWS, `refusal log keys unbounded (${this.windows.size})`);
    }
    if (w.logged < refusalLogBurst) {
      w.logged++;
      this.logger.warn(msg, { reason, ...fields });
      return;
    }
    w.suppressed++;
    if (!w.timer) {
      const open = w;
      open.timer = setTimeout(() => this.close(key, open), Math.max(0, open.startedAt + refusalLogWindowMs - now));
      open.timer.unref();
    }
  }

  /** Reports every window that suppressed lines (at shutdown, so no count is lost). */
  flush(): void {
    for (const [key, w] of this.windows) this.close(key, w);
  }

  private close(key: string, w: Window): void {
    if (this.windows.get(key) !== w) return;
    this.windows.delete(key);
    clearTimeout(w.timer);
    if (w.suppressed === 0) return;
    this.logger.warn('refusals suppressed', {
      refused_msg: w.msg,
      reason: w.reason,
      peer: w.peer,
      suppressed: w.suppressed,
      logged: w.logged,
      window_ms: Date.now() - w.startedAt,
    });
  }
}
