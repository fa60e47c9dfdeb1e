// The link log budget: per message and peer gateway, the first lines of a
// window are logged in full and the rest counted in one `link lines
// suppressed` line; one peer's flood costs no other peer its lines, and the
// lines plus the reported counts always equal the links opened, closed and
// abandoned.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LinkLog, type LinkLine } from '../../src/log/link-log.js';
import { Logger } from '../../src/log/logger.js';

const BURST = 4;
const WINDOW_MS = 1_000;

describe('link log budget', () => {
  let lines: Record<string, unknown>[];
  let log: LinkLog;

  beforeEach(() => {
    vi.useFakeTimers();
    lines = [];
    log = new LinkLog(new Logger('info', (l) => lines.push(JSON.parse(l) as Record<string, unknown>)), () => ({ linkLogBurst: BURST, linkLogWindowMs: WINDOW_MS }));
  });
  afterEach(() => vi.useRealTimers());

  const of = (msg: string, peer: string) => lines.filter((l) => l.msg === msg && l.peer === peer);
  const summaries = () => lines.filter((l) => l.msg === 'link lines suppressed');

  it('logs a flooding peer\'s first lines, counts the rest in one summary per message, and leaves other peers their budget', () => {
    for (let i = 0; i < 30; i++) {
      log.info('link open', 'beta', { direction: 'inbound', remote_node: `n${i}@beta` });
      log.info('link closed', 'beta', { direction: 'inbound', reason: 'peer closed' });
    }
    log.info('link open', 'gamma', { direction: 'outbound' });
    expect(of('link open', 'beta')).toHaveLength(BURST);
    expect(of('link closed', 'beta')).toHaveLength(BURST);
    expect(of('link open', 'gamma')).toEqual([expect.objectContaining({ level: 'info', direction: 'outbound' })]);
    expect(of('link open', 'beta')[0]).toMatchObject({ level: 'info', direction: 'inbound', remote_node: 'n0@beta' });
    vi.advanceTimersByTime(WINDOW_MS);
    expect(summaries()).toEqual([
      expect.objectContaining({ level: 'info', link_msg: 'link open', peer: 'beta', suppressed: 30 - BURST, logged: BURST }),
      expect.objectContaining({ level: 'info', link_msg: 'link closed', peer: 'beta', suppressed: 30 - BURST, logged: BURST }),
    ]);
  });

  it('accounts for every link across windows and at flush', () => {
    const made = new Map<LinkLine, number>();
    const msgs: LinkLine[] = ['link open', 'link closed', 'link abandoned'];
    for (let step = 0; step < 60; step++) {
      const msg = msgs[step % 3]!;
      const n = (step * 5) % 9;
      for (let i = 0; i < n; i++) log.info(msg, 'beta', { direction: 'outbound' });
      made.set(msg, (made.get(msg) ?? 0) + n);
      vi.advanceTimersByTime(WINDOW_MS / 3);
    }
    log.flush();
    for (const msg of msgs) {
      const reported = summaries().filter((l) => l.link_msg === msg).reduce((sum, l) => sum + Number(l.suppressed), 0);
      expect(of(msg, 'beta').length + reported, msg).toBe(made.get(msg));
      expect(reported, msg).toBeGreaterThan(0);
    }
  });
});
