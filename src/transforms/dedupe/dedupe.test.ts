import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PipelineRecord } from '../../core/pipeline/model.ts';
import { configIssues, create, record } from '../shared/test-support.ts';
import { DedupeTransform, dedupeTransform } from './dedupe.ts';

const MINUTE = 60_000;
const T0 = 1_700_000_000_000;

let offset = 0;
function event(value: Record<string, unknown>, minutes: number, partition = 0): PipelineRecord {
  return record(value, { partition, offset: offset++, timestamp: T0 + minutes * MINUTE });
}
const offsets = (list: readonly PipelineRecord[]) => list.map((r) => r.offset);

describe('dedupe', () => {
  it('drops repeats of a key within the window, in and across batches, keeping order', async () => {
    const transform = await create(dedupeTransform, { key: ['id', 'user.id'], window: '10m' });
    const first = [
      event({ id: 1, user: { id: 'a' } }, 0),
      event({ id: 1, user: { id: 'b' } }, 1),
      event({ id: 1, user: { id: 'a' } }, 2),
      event({ id: 2, user: { id: 'a' } }, 3, 1),
    ];
    const result = await transform.process(first);
    assert.deepEqual(offsets(result.records), [first[0]!.offset, first[1]!.offset, first[3]!.offset]);
    assert.deepEqual(result.rejected, [], 'repeats are dropped, not rejected');

    const second = [event({ id: 1, user: { id: 'a' } }, 9, 1), event({ id: 1, user: { id: 'a' } }, 10)];
    const later = await transform.process(second);
    assert.deepEqual(offsets(later.records), [second[1]!.offset], 'the window counts from the first record');
  });

  it('never drops records missing a key field', async () => {
    const transform = await create(dedupeTransform, { key: ['id'], window: '1h' });
    const batch = [
      event({ other: 1 }, 0),
      event({ other: 1 }, 0),
      event({ id: null }, 0),
      event({ id: null }, 0),
    ];
    assert.deepEqual(offsets((await transform.process(batch)).records), offsets(batch.slice(0, 3)));
  });

  it('lets a retried batch through again, but not the repeats inside it', async () => {
    const transform = await create(dedupeTransform, { key: ['id'], window: '1h' });
    const batch = [event({ id: 'x' }, 0), event({ id: 'x' }, 1)];
    const once = await transform.process(batch);
    const again = await transform.process(batch);
    assert.deepEqual(offsets(again.records), offsets(once.records));
    assert.deepEqual(offsets(again.records), [batch[0]!.offset]);
  });

  it('tells apart records a map fanned out from one position', async () => {
    const transform = await create(dedupeTransform, { key: ['sku'], window: '1h' });
    const source = event({}, 0);
    const batch = [
      { ...source, value: { sku: 1 } },
      { ...source, value: { sku: 1 } },
    ];
    assert.equal((await transform.process(batch)).records.length, 1);
  });

  it('forgets expired keys and the oldest keys beyond max_keys', async () => {
    const transform = new DedupeTransform([['id']], 10 * MINUTE, 2);
    await transform.process([event({ id: 1 }, 0), event({ id: 2 }, 1), event({ id: 3 }, 2)]);
    assert.equal(transform.size, 2);
    const result = await transform.process([event({ id: 1 }, 3), event({ id: 3 }, 3)]);
    assert.equal(result.records.length, 1, 'key 1 was evicted, key 3 is still known');
    await transform.process([event({ id: 9 }, 60)]);
    assert.equal(transform.size, 1, 'keys older than the window are freed');
    assert.deepEqual(await transform.process([]), { records: [], rejected: [] });
  });

  it('needs a key and a duration', () => {
    assert.equal(configIssues(dedupeTransform, { key: [], window: '1h' }).length, 1);
    assert.match(
      configIssues(dedupeTransform, { key: ['id'], window: 'an hour' })[0] ?? '',
      /not a duration/,
    );
    assert.equal(configIssues(dedupeTransform, { key: ['id'], window: '1h', max_keys: 0 }).length, 1);
  });
});
