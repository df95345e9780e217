import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TokenBuckets } from './rate-limit.ts';

describe('token buckets', () => {
  it('allows the burst, then refills at the rate and says when to retry', () => {
    const buckets = new TokenBuckets();
    const limit = { rate: 2, burst: 3 };
    for (let i = 0; i < 3; i++) assert.deepEqual(buckets.take('a', limit, 0), { ok: true });
    assert.deepEqual(buckets.take('a', limit, 0), { ok: false, retryAfterSeconds: 1 });
    assert.deepEqual(buckets.take('b', limit, 0), { ok: true }, 'buckets are independent');
    assert.deepEqual(buckets.take('a', limit, 500), { ok: true }, 'one token after half a second at 2/s');
    assert.equal(buckets.take('a', limit, 500).ok, false);
  });

  it('never limits with rate 0, and rounds Retry-After up to whole seconds', () => {
    const buckets = new TokenBuckets();
    for (let i = 0; i < 1000; i++) assert.equal(buckets.take('x', { rate: 0, burst: 1 }, 0).ok, true);
    const slow = { rate: 0.1, burst: 1 };
    buckets.take('y', slow, 0);
    assert.deepEqual(buckets.take('y', slow, 0), { ok: false, retryAfterSeconds: 10 });
  });

  it('keeps memory bounded by dropping the least recently used buckets', () => {
    const buckets = new TokenBuckets(100);
    for (let i = 0; i < 1000; i++) buckets.take(`ip${i}`, { rate: 1, burst: 1 }, 0);
    assert.ok(buckets.size <= 100);
  });
});
