// The link slots behind maxLinks and maxLinksPerPeer: one peer can take at
// most its share, the total caps all peers together, and a slot comes back
// exactly once.

import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/config/limits.js';
import { LinkTable } from '../../src/mesh/link-table.js';

describe('link slots', () => {
  const table = () => new LinkTable(() => ({ ...DEFAULT_LIMITS, maxLinks: 5, maxLinksPerPeer: 3 }));

  it('refuses a peer above maxLinksPerPeer while other peers still get slots', () => {
    const t = table();
    for (let i = 0; i < 3; i++) expect(t.reserve('beta')).toBe(true);
    expect(t.reserve('beta')).toBe(false);
    expect(t.reserve('gamma')).toBe(true);
    expect(t.count).toBe(4);
  });

  it('refuses every peer above maxLinks, and frees a slot on release', () => {
    const t = table();
    for (const peer of ['beta', 'beta', 'gamma', 'gamma', 'delta']) expect(t.reserve(peer)).toBe(true);
    expect(t.reserve('epsilon')).toBe(false);
    t.release('beta');
    expect(t.reserve('epsilon')).toBe(true);
  });

  it('asserts on a slot released twice', () => {
    const t = table();
    t.reserve('beta');
    t.release('beta');
    expect(() => t.release('beta')).toThrow(/released twice/);
  });

  it('whenEmpty resolves when the last slot is released, or at its timeout while slots are held', async () => {
    const t = table();
    await t.whenEmpty(60_000); // nothing held: at once
    t.reserve('beta');
    t.reserve('gamma');
    let emptied = false;
    const waiting = t.whenEmpty(60_000).then(() => (emptied = true));
    t.release('beta');
    await Promise.resolve();
    expect(emptied).toBe(false);
    t.release('gamma');
    await waiting;
    expect(emptied).toBe(true);
    t.reserve('beta');
    const started = Date.now();
    await t.whenEmpty(50);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(t.count).toBe(1);
  });
});
