// A log budget: per key (message, an optional key field, peer gateway), the
// first `burst` lines of a window are logged in full; the rest are counted,
// and one summary line reports them when the window closes. Lines logged plus
// the counts reported equal the lines asked for, so nothing goes unaccounted
// for. The refusal log and the link log are two budgets of this kind.

import assert from 'node:assert/strict';
import type { LogFields, Logger } from './logger.js';

export interface BudgetSpec {
  /** The summary line's message. */
  summary: string;
  /** The summary's field that names the message it counts. */
  msgField: string;
  /** A field that, with the message and the peer, keys a budget (refusals: `reason`); none keys by message and peer. */
  keyField?: string;
  level: 'info' | 'warn';
  /** Read at every line, so a reload's new limits apply at once. */
  budget: () => { burst: number; windowMs: number };
}

interface Window {
  msg: string;
  key: string | undefined;
  peer: string | undefined;
  startedAt: number;
  logged: number;
  suppressed: number;
  timer: NodeJS.Timeout | undefined;
}

/** Keys are message × key field × roster peer, all from closed sets; more than this means a key leaked unvalidated input. */
const MAX_WINDOWS = 10_000;

export class BudgetedLog {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly logger: Logger,
    private readonly spec: BudgetSpec,
  ) {}

  /**
   * Logs (or counts) one line. `key` and `peer` are part of the budget's key,
   * which must stay bounded: `peer` must be a roster gateway name or undefined.
   */
  log(msg: string, key: string | undefined, peer: string | undefined, fields: LogFields): void {
    const { burst, windowMs } = this.spec.budget();
    const now = Date.now();
    const id = `${msg}\u0000${key ?? ''}\u0000${peer ?? ''}`;
    let w = this.windows.get(id);
    if (w && now - w.startedAt >= windowMs) {
      this.close(id, w);
      w = undefined;
    }
    if (!w) {
      w = { msg, key, peer, startedAt: now, logged: 0, suppressed: 0, timer: undefined };
      this.windows.set(id, w);
      assert.ok(this.windows.size <= MAX_WINDOWS, `log budget keys unbounded (${this.windows.size})`);
    }
    if (w.logged < burst) {
      w.logged++;
      const { keyField } = this.spec;
      this.logger[this.spec.level](msg, keyField === undefined ? fields : { [keyField]: key, ...fields });
      return;
    }
    w.suppressed++;
    if (!w.timer) {
      const open = w;
      open.timer = setTimeout(() => this.close(id, open), Math.max(0, open.startedAt + windowMs - now));
      open.timer.unref();
    }
  }

  /** Reports every window that suppressed lines (at shutdown, so no count is lost). */
  flush(): void {
    for (const [id, w] of this.windows) this.close(id, w);
  }

  private close(id: string, w: Window): void {
    if (this.windows.get(id) !== w) return;
    this.windows.delete(id);
    clearTimeout(w.timer);
    if (w.suppressed === 0) return;
    const { keyField, msgField } = this.spec;
    this.logger[this.spec.level](this.spec.summary, {
      [msgField]: w.msg,
      ...(keyField === undefined ? {} : { [keyField]: w.key }),
      peer: w.peer,
      suppressed: w.suppressed,
      logged: w.logged,
      window_ms: Date.now() - w.startedAt,
    });
  }
}
