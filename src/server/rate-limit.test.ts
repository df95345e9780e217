import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { TokenBuckets } from './rate-limit.ts';

/**
 * The lock words, by the layout rate-limit.ts documents: 8 header words (the second says how many groups),
 * then 98 words a group, its lock word first.
 */
function lockWords(buckets: TokenBuckets): number[] {
  const words = new Int32Array(buckets.shared);
  return Array.from({ length: words[1]! }, (_, group) => 8 + group * 98);
}

/**
 * Runs `threads` workers that, once all have started (and compiled `take`), each take `takes` tokens from
 * `ids` in turn, at the same time; resolves to how many each got.
 */
async function hammer(
  shared: SharedArrayBuffer,
  threads: number,
  takes: number,
  ids: readonly string[],
  limit: { rate: number; burst: number },
): Promise<number[]> {
  const gate = new SharedArrayBuffer(4);
  const body = `
    const { workerData, parentPort, threadId } = require('node:worker_threads');
    import(workerData.module).then(({ TokenBuckets }) => {
      const { shared, gate, threads, takes, ids, limit } = workerData;
      const buckets = new TokenBuckets(undefined, shared);
      // Compiled before the start, so that the threads overlap.
      const warm = 'warm' + threadId;
      for (let i = 0; i < 50000; i++) buckets.take(warm, { rate: 1, burst: 1e9 }, 0);
      const started = new Int32Array(gate);
      Atomics.add(started, 0, 1);
      while (Atomics.load(started, 0) < threads);
      let ok = 0;
      for (let i = 0; i < takes; i++) if (buckets.take(ids[i % ids.length], limit, 0).ok) ok++;
      parentPort.postMessage(ok);
    });`;
  const module = new URL('./rate-limit.ts', import.meta.url).href;
  return Promise.all(
    Array.from(
      { length: threads },
      () =>
        new Promise<number>((resolve, reject) => {
          const worker = new Worker(body, {
            eval: true,
            workerData: { module, shared, gate, threads, takes, ids, limit },
          });
          worker.once('message', (ok: number) => {
            resolve(ok);
            void worker.terminate();
          });
          worker.once('error', reject);
        }),
    ),
  );
}

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
    assert.equal(buckets.size, 0, 'rate 0 keeps no bucket');
    const slow = { rate: 0.1, burst: 1 };
    buckets.take('y', slow, 0);
    assert.deepEqual(buckets.take('y', slow, 0), { ok: false, retryAfterSeconds: 10 });
  });

  // Threads read the clock before they take the lock, so their times may come out of order.
  it('takes a time earlier than the last as the last: no negative refill', () => {
    const buckets = new TokenBuckets();
    const limit = { rate: 2, burst: 2 };
    assert.equal(buckets.take('a', limit, 1000).ok, true);
    assert.equal(buckets.take('a', limit, 500).ok, true, 'the second token is still there');
    assert.deepEqual(buckets.take('a', limit, 900), { ok: false, retryAfterSeconds: 1 });
    assert.equal(buckets.take('a', limit, 1500).ok, true, 'refilled from 1000, the latest time seen');
  });

  it('keeps memory bounded by replacing the least recently used; a replaced bucket comes back full', () => {
    const buckets = new TokenBuckets(100);
    const bytes = buckets.shared.byteLength;
    assert.ok(buckets.capacity >= 200 && buckets.capacity <= 216, `capacity ${buckets.capacity}`);
    const limit = { rate: 1e-9, burst: 3 };
    for (let i = 0; i < 3; i++) assert.equal(buckets.take('victim', limit, 0).ok, true);
    assert.equal(buckets.take('victim', limit, 0).ok, false);
    for (let i = 0; i < 10_000; i++) buckets.take(`ip${i}`, limit, 1 + i);
    assert.equal(buckets.size, buckets.capacity, 'every slot in use, none more');
    assert.equal(buckets.shared.byteLength, bytes);
    for (let i = 9_950; i < 10_000; i++) {
      for (let t = 0; t < 2; t++) buckets.take(`ip${i}`, limit, 20_000);
      assert.equal(buckets.take(`ip${i}`, limit, 20_000).ok, false, `ip${i}, recently used, is kept`);
    }
    for (let i = 0; i < 3; i++) assert.equal(buckets.take('victim', limit, 20_000).ok, true, 'back full');
    assert.equal(buckets.take('victim', limit, 20_000).ok, false);
  });

  it('shares its buckets with a TokenBuckets made on its memory', () => {
    const one = new TokenBuckets(1000);
    const other = new TokenBuckets(undefined, one.shared);
    assert.equal(other.capacity, one.capacity);
    const limit = { rate: 1, burst: 2 };
    assert.equal(one.take('key\0orders\0k1', limit, 0).ok, true);
    assert.equal(other.take('key\0orders\0k1', limit, 0).ok, true);
    assert.deepEqual(one.take('key\0orders\0k1', limit, 0), { ok: false, retryAfterSeconds: 1 });
    assert.equal(other.take('key\0orders\0k2', limit, 0).ok, true);
    assert.equal(one.size, 2);
    assert.equal(other.size, 2);
    assert.throws(() => new TokenBuckets(undefined, new SharedArrayBuffer(1024)), /another TokenBuckets/);
  });

  it('admits exactly the burst across threads taking from one bucket at once', async () => {
    const buckets = new TokenBuckets();
    const limit = { rate: 1e-9, burst: 20_000 };
    const got = await hammer(buckets.shared, 2, 15_000, ['key\0orders\0k1'], limit);
    assert.equal(got[0]! + got[1]!, 20_000, `threads got ${got.join(' + ')}`);
    assert.equal(buckets.take('key\0orders\0k1', limit, 0).ok, false);
  });

  it('keeps working while threads replace buckets of a small table at once', async () => {
    const buckets = new TokenBuckets(16);
    const limit = { rate: 1e-9, burst: 1_000_000 };
    const ids = Array.from({ length: 500 }, (_, i) => `ip\0orders\x00198.51.100.${i}`);
    const got = await hammer(buckets.shared, 2, 20_000, ids, limit);
    assert.deepEqual(got, [20_000, 20_000], 'every take admitted (buckets come back full)');
    assert.equal(buckets.size, buckets.capacity);
    assert.equal(buckets.take('hot', { rate: 1e-9, burst: 1 }, 0).ok, true, 'no lock left held');
  });

  it('takes over a lock left held (a thread ended inside take) after 100 ms', () => {
    const buckets = new TokenBuckets(100);
    const words = new Int32Array(buckets.shared);
    for (const lock of lockWords(buckets)) words[lock] = 7; // odd: held
    const start = performance.now();
    assert.equal(buckets.take('a', { rate: 1, burst: 1 }, 0).ok, true);
    const waited = performance.now() - start;
    assert.ok(waited >= 100 && waited < 2000, `waited ${waited} ms`);
    assert.equal(buckets.take('a', { rate: 1, burst: 1 }, 0).ok, false);
    assert.ok(performance.now() - start - waited < 50, 'then free again');
  });
});
