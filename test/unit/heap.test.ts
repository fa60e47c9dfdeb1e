// The young-generation guard: bounded while connections churn above the
// threshold, V8's default growth again one quiet window later.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CHURN_WINDOW_MS, YoungGenerationGuard } from '../../src/runtime/heap.js';

describe('young-generation guard', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('stays unbounded at or under the threshold, bounds above it, and frees one quiet window later', () => {
    const applied: boolean[] = [];
    const guard = new YoungGenerationGuard(() => 10, (b) => applied.push(b));
    for (let i = 0; i < 10; i++) guard.connection();
    expect(guard.isBounded).toBe(false);
    expect(applied).toEqual([]);
    guard.connection();
    expect(guard.isBounded).toBe(true);
    expect(applied).toEqual([true]);
    // The flood goes on: still bounded after each busy window.
    for (let w = 0; w < 3; w++) {
      for (let i = 0; i < 50; i++) guard.connection();
      vi.advanceTimersByTime(CHURN_WINDOW_MS);
      expect(guard.isBounded).toBe(true);
    }
    // It stops: the next check frees the growth, once.
    vi.advanceTimersByTime(CHURN_WINDOW_MS);
    expect(guard.isBounded).toBe(false);
    expect(applied).toEqual([true, false]);
    vi.advanceTimersByTime(10 * CHURN_WINDOW_MS);
    expect(applied).toEqual([true, false]);
  });

  it('counts per window: the same connections spread over time never bound', () => {
    const applied: boolean[] = [];
    const guard = new YoungGenerationGuard(() => 10, (b) => applied.push(b));
    for (let i = 0; i < 100; i++) {
      guard.connection();
      vi.advanceTimersByTime(CHURN_WINDOW_MS / 5);
    }
    expect(applied).toEqual([]);
    guard.stop();
  });
});
