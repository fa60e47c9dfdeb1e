// The young-generation guard: bounded while connections churn above the
// threshold, V8's default growth again once floodQuietMs has been quiet.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CHURN_WINDOW_MS, YoungGenerationGuard } from '../../src/runtime/heap.js';

describe('young-generation guard', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('stays unbounded at or under the threshold, bounds above it, and frees it once floodQuietMs was quiet', () => {
    const applied: boolean[] = [];
    const guard = new YoungGenerationGuard(() => ({ floodConnectionsPerSecond: 10, floodQuietMs: 3 * CHURN_WINDOW_MS }), (b) => applied.push(b));
    // It starts bounded, and frees the growth once floodQuietMs was quiet.
    expect(guard.isBounded).toBe(true);
    vi.advanceTimersByTime(3 * CHURN_WINDOW_MS);
    expect(guard.isBounded).toBe(false);
    expect(applied).toEqual([true, false]);
    applied.length = 0;
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
    // It stops: still bounded for floodQuietMs (a pause between two bursts), then the growth is free, once.
    vi.advanceTimersByTime(2 * CHURN_WINDOW_MS);
    expect(guard.isBounded).toBe(true);
    vi.advanceTimersByTime(CHURN_WINDOW_MS);
    expect(guard.isBounded).toBe(false);
    expect(applied).toEqual([true, false]);
    vi.advanceTimersByTime(10 * CHURN_WINDOW_MS);
    expect(applied).toEqual([true, false]);
  });

  it('gives freed memory back once each flood is over, and only then', () => {
    let trims = 0;
    const guard = new YoungGenerationGuard(
      () => ({ floodConnectionsPerSecond: 10, floodQuietMs: 2 * CHURN_WINDOW_MS }),
      () => {},
      () => trims++,
    );
    vi.advanceTimersByTime(2 * CHURN_WINDOW_MS);
    expect(trims).toBe(1); // the start counts as a flood
    for (let i = 0; i < 11; i++) guard.connection();
    vi.advanceTimersByTime(CHURN_WINDOW_MS);
    expect(trims).toBe(1);
    vi.advanceTimersByTime(2 * CHURN_WINDOW_MS);
    expect(trims).toBe(2);
    vi.advanceTimersByTime(10 * CHURN_WINDOW_MS);
    expect(trims).toBe(2);
    guard.stop();
  });

  it('counts per window: the same connections spread over time never bound', () => {
    const applied: boolean[] = [];
    const guard = new YoungGenerationGuard(() => ({ floodConnectionsPerSecond: 10, floodQuietMs: 3 * CHURN_WINDOW_MS }), (b) => applied.push(b));
    vi.advanceTimersByTime(3 * CHURN_WINDOW_MS);
    applied.length = 0;
    for (let i = 0; i < 100; i++) {
      guard.connection();
      vi.advanceTimersByTime(CHURN_WINDOW_MS / 5);
    }
    expect(applied).toEqual([]);
    guard.stop();
  });
});
