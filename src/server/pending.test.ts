import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PendingWrites } from './pending.ts';

describe('PendingWrites', () => {
  it("adds up every thread's counts, each thread changing its own", () => {
    const first = new PendingWrites(3);
    const third = new PendingWrites(3, first.shared, 2);
    first.add(2, 1000);
    third.add(1, 500);
    assert.equal(first.requests, 3);
    assert.equal(third.bytes, 1500);
    assert.deepEqual(first.own, { requests: 2, bytes: 1000 });
    assert.deepEqual(third.own, { requests: 1, bytes: 500 });
    first.add(-2, -1000);
    assert.equal(third.requests, 1);
    assert.equal(third.bytes, 500);
  });

  it('refuses a thread beyond the count', () => {
    assert.throws(() => new PendingWrites(2, undefined, 2), /slot 2 is not one of 2 threads/);
  });
});

describe('PendingWrites beyond 32 bits', () => {
  it('counts more than 2 GiB waiting on one thread, and forgets a thread that ended', () => {
    const first = new PendingWrites(2);
    const second = new PendingWrites(2, first.shared, 1);
    for (let i = 0; i < 5; i++) second.add(1, 512 * 2 ** 20);
    assert.equal(first.bytes, 5 * 512 * 2 ** 20);
    first.clear(1);
    assert.equal(first.requests, 0);
    assert.equal(first.bytes, 0);
  });
});
