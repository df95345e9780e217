import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InflightIds } from './inflight.ts';

const settled = async (promise: Promise<void> | undefined) => {
  if (!promise) return true;
  let done = false;
  void promise.then(() => (done = true));
  await new Promise((resolve) => setImmediate(resolve));
  return done;
};

describe('ids in flight', () => {
  it('lets requests with distinct ids through at once', () => {
    const inflight = new InflightIds();
    const holds = Array.from({ length: 50 }, (_, r) =>
      inflight.claim(
        's',
        Array.from({ length: 100 }, (_, i) => `r${r}-${i}`),
        undefined,
      ),
    );
    assert.equal(holds.filter((h) => h.wait !== undefined).length, 0);
    let falsePositives = 0;
    for (let i = 0; i < 100_000; i++) {
      const other = inflight.claim('s', [`other-${i}`], undefined);
      if (other.wait) falsePositives++;
      other.release();
    }
    assert.ok(falsePositives < 10, `${falsePositives} false positives in 100,000`);
    for (const hold of holds) hold.release();
  });

  it('makes a request sharing an id or an Idempotency-Key wait for the ones before it', async () => {
    const inflight = new InflightIds();
    const first = inflight.claim('s', ['a', 'b'], undefined);
    const other = inflight.claim('s', ['c'], undefined);
    const sameStreamOtherId = inflight.claim('t', ['a'], undefined);
    assert.equal(sameStreamOtherId.wait, undefined, 'ids are per stream');
    const retry = inflight.claim('s', ['b'], undefined);
    assert.ok(retry.wait);
    const again = inflight.claim('s', ['b'], undefined);
    assert.ok(again.wait, 'waits for the retry too');
    first.release();
    other.release();
    sameStreamOtherId.release();
    assert.ok(await settled(retry.wait));
    assert.ok(!(await settled(again.wait)), 'still waits for the retry');
    retry.release();
    assert.ok(await settled(again.wait));
    again.release();

    const keyed = inflight.claim('s', [], 'key-1');
    const keyedRetry = inflight.claim('s', [], 'key-1');
    assert.ok(keyedRetry.wait);
    const idNamedLikeTheKey = inflight.claim('u', ['key-1'], undefined);
    assert.equal(idNamedLikeTheKey.wait, undefined);
    keyed.release();
    keyed.release(); // twice is harmless
    assert.ok(await settled(keyedRetry.wait));
    keyedRetry.release();
    idNamedLikeTheKey.release();
    assert.equal(inflight.claim('s', ['a', 'b', 'c'], 'key-1').wait, undefined, 'all released');
  });
});
