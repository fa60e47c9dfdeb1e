// What every filtered link of one gateway holds together: the frames of
// fragmented messages that wait for their last fragment (and the decoder's
// copy of them), and a frame still being gathered. Each direction is bounded
// on its own (DIST_MAX_FRAGMENT_BYTES); this bounds their sum, so a peer that
// opens many filtered links and starts a large message on each cannot make
// the gateway hold per-link bounds times the links. The link whose bytes
// pass the bound is cut (buffer_limit); the others go on.

import assert from 'node:assert/strict';

export class HoldBudget {
  private used = 0;

  constructor(readonly maxBytes: number) {
    assert.ok(Number.isSafeInteger(maxBytes) && maxBytes > 0, 'a hold budget needs a positive bound');
  }

  /** Bytes held by every filtered link now. */
  get bytes(): number {
    return this.used;
  }

  /**
   * One holder's share goes from `was` to `now` bytes. Returns false when the
   * total is then over the bound and the share grew: that holder must stop
   * (its link is cut, and its share released).
   */
  move(was: number, now: number): boolean {
    assert.ok(was >= 0 && now >= 0 && was <= this.used, `a share of ${was} bytes moved out of ${this.used}`);
    this.used += now - was;
    return now <= was || this.used <= this.maxBytes;
  }
}
