// The lines of a link's life (`link open`, `link closed`, `link abandoned`)
// under a per-peer budget: a peer gateway with a valid certificate that opens
// and drops links in a loop must not flood the log. Per message and peer
// gateway, the first `linkLogBurst` lines of a window are logged in full; the
// rest are counted, and one `link lines suppressed` line reports them when
// the window closes (see budget.ts). Lines logged plus the counts reported
// equal the links opened, closed and abandoned, as the metrics count them.

import type { Limits } from '../config/limits.js';
import { BudgetedLog } from './budget.js';
import type { LogFields, Logger } from './logger.js';

type Budget = Pick<Limits, 'linkLogBurst' | 'linkLogWindowMs'>;

export type LinkLine = 'link open' | 'link closed' | 'link abandoned' | 'link stays on node:tls';

export class LinkLog {
  private readonly log: BudgetedLog;

  constructor(logger: Logger, budget: () => Budget) {
    this.log = new BudgetedLog(logger, {
      summary: 'link lines suppressed',
      msgField: 'link_msg',
      level: 'info',
      budget: () => {
        const b = budget();
        return { burst: b.linkLogBurst, windowMs: b.linkLogWindowMs };
      },
    });
  }

  /** Logs (or counts) one line; `peer` is a roster gateway name (it keys the budget). */
  info(msg: LinkLine, peer: string, fields: LogFields): void {
    this.log.log(msg, undefined, peer, { peer, ...fields });
  }

  /** Reports every window that suppressed lines (at shutdown, so no count is lost). */
  flush(): void {
    this.log.flush();
  }
}
