// The refusal log budget: the first refusals of a window are logged in full,
// the rest are counted and reported in one line when the window closes, each
// key (message, reason, peer) has its own budget, and lines plus reported
// counts always add up to the refusals made.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Logger } from '../../src/log/logger.js';
import { RefusalLog } from '../../src/log/refusal-log.js';

const BURST = 3;
const WINDOW_MS = 1_000;

describe('refusal log budget', () => {
  let lines: Record<string, unknown>[];
  let log: RefusalLog;

  beforeEach(() => {
    vi.useFakeTimers();
    lines = [];
    log = new RefusalLog(new Logger('info', (l) => lines.push(JSON.parse(l) as Record<string, unknown>)), () => ({
      refusalLogBurst: BURST,
      refusalLogWindowMs: WINDOW_MS,
    }));
  });
  afterEach(() => vi.useRealTimers());

  const refused = () => lines.filter((l) => l.msg === 'connection refused');
  const summaries = () => lines.filter((l) => l.msg === 'refusals suppressed');

  it('logs the first refusals in full, then one summary with the count when the window closes', () => {
    for (let i = 0; i < 10; i++) log.warn('connection refused', 'peer_unreachable', 'beta', { detail: `dial ${i}`, peer: 'beta' });
    expect(refused()).toHaveLength(BURST);
    expect(refused()[0]).toMatchObject({ level: 'warn', reason: 'peer_unreachable', peer: 'beta', detail: 'dial 0' });
    expect(summaries()).toHaveLength(0);

    vi.advanceTimersByTime(WINDOW_MS);
    expect(summaries()).toEqual([
      expect.objectContaining({ level: 'warn', refused_msg: 'connection refused', reason: 'peer_unreachable', peer: 'beta', suppressed: 7, logged: BURST }),
    ]);
    // A new window gets a full budget again.
    log.warn('connection refused', 'peer_unreachable', 'beta', { detail: 'dial 10' });
    expect(refused()).toHaveLength(BURST + 1);
  });

  it('gives each message, reason and peer a budget of its own', () => {
    for (const [msg, reason, peer] of [
      ['connection refused', 'peer_unreachable', 'beta'],
      ['connection refused', 'peer_unreachable', 'gamma'],
      ['connection refused', 'not_tls', undefined],
      ['epmd request refused', 'not_tls', undefined],
    ] as const) {
      for (let i = 0; i < BURST; i++) log.warn(msg, reason, peer, {});
    }
    expect(lines).toHaveLength(4 * BURST);
    vi.advanceTimersByTime(WINDOW_MS);
    expect(summaries()).toHaveLength(0);
  });

  it('writes no summary for a window that suppressed nothing, and flush() reports open windows at once', () => {
    for (let i = 0; i < BURST; i++) log.warn('connection refused', 'not_tls', undefined, {});
    vi.advanceTimersByTime(WINDOW_MS * 3);
    expect(summaries()).toHaveLength(0);

    for (let i = 0; i < BURST + 2; i++) log.warn('connection refused', 'not_tls', undefined, {});
    log.flush();
    expect(summaries()).toEqual([expect.objectContaining({ reason: 'not_tls', suppressed: 2 })]);
    vi.advanceTimersByTime(WINDOW_MS);
    expect(summaries()).toHaveLength(1); // the window's timer did not report it twice
  });

  it('accounts for every refusal across windows: lines plus reported counts equal the refusals made', () => {
    let made = 0;
    for (let step = 0; step < 50; step++) {
      const n = (step * 7) % 11;
      for (let i = 0; i < n; i++, made++) log.warn('connection refused', step % 2 ? 'peer_unreachable' : 'target_down', 'beta', {});
      vi.advanceTimersByTime(WINDOW_MS / 4);
    }
    log.flush();
    const reported = summaries().reduce((sum, l) => sum + Number(l.suppressed), 0);
    expect(refused().length + reported).toBe(made);
    expect(reported).toBeGreaterThan(0);
  });
});
