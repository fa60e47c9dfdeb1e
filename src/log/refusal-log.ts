// Every refusal is counted in the metrics, but not every one gets its own log
// line: a peer gateway that is down while nodes keep redialling (about 80
// refusals a second per sending node), or anyone opening connections to a
// listener, would otherwise turn into a flood of lines. Per message, reason
// and peer gateway, the first `refusalLogBurst` refusals of a window are
// logged in full; the rest are counted, and one `refusals suppressed` line
// reports them when the window closes (see budget.ts).

import type { Limits } from '../config/limits.js';
import { BudgetedLog } from './budget.js';
import type { LogFields, Logger } from './logger.js';

type Budget = Pick<Limits, 'refusalLogBurst' | 'refusalLogWindowMs'>;

export class RefusalLog {
  private readonly log: BudgetedLog;

  constructor(logger: Logger, budget: () => Budget) {
    this.log = new BudgetedLog(logger, {
      summary: 'refusals suppressed',
      msgField: 'refused_msg',
      keyField: 'reason',
      level: 'warn',
      budget: () => {
        const b = budget();
        return { burst: b.refusalLogBurst, windowMs: b.refusalLogWindowMs };
      },
    });
  }

  /**
   * Logs (or counts) one refusal. `peer` must be a roster gateway name or
   * undefined: it is part of the key, which must stay bounded.
   */
  warn(msg: string, reason: string, peer: string | undefined, fields: LogFields): void {
    this.log.log(msg, reason, peer, fields);
  }

  /** Reports every window that suppressed lines (at shutdown, so no count is lost). */
  flush(): void {
    this.log.flush();
  }
}
