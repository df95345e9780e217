import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { EmbeddedLog } from '../log/embedded-log.ts';
import { DedupeStore, HEADER_DEDUPE, HEADER_EVENT_ID, HEADER_IDEMPOTENCY_KEY } from './dedupe.ts';

describe('dedupe store', () => {
  it('remembers ids within the window, in memory at once and on disk after a flush', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    let now = 1_800_000_000_000;
    const store = DedupeStore.open(
      dir,
      new Map([
        ['s', 60_000],
        ['off', 0],
      ]),
      { now: () => now },
    );
    store.record([{ stream: 's', id: 'a' }], [{ topic: 't', partition: 0, offset: 0 }]);
    assert.deepEqual([...store.seen('s', ['a', 'b'])], ['a'], 'before the flush');
    await tick();
    assert.deepEqual([...store.seen('s', ['a', 'b'])], ['a'], 'after the flush');
    store.close();
    const reopened = DedupeStore.open(dir, new Map([['s', 60_000]]), { now: () => now });
    assert.deepEqual([...reopened.seen('s', ['a'])], ['a'], 'after a restart');
    now += 60_001;
    assert.deepEqual([...reopened.seen('s', ['a'])], [], 'past the window');
    reopened.purge();
    reopened.close();
  });

  it('recovers ids appended after its watermark (the crash window)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    const log = await EmbeddedLog.open({ directory: dir, durability: 'os', retentionIntervalMs: 0 });
    await log.ensureTopic('events.s', { partitions: 2 });
    const before = DedupeStore.open(dir, new Map([['s', 60_000]]));
    assert.equal(await before.recover(log, new Map([['events.s', 's']])), 0);
    before.close();
    // Appended and acknowledged, but the server died before recording the ids.
    const encoder = new TextEncoder();
    await log.append('events.s', [
      { value: encoder.encode('{}'), headers: { [HEADER_EVENT_ID]: 'x1', [HEADER_DEDUPE]: '1' } },
      { value: encoder.encode('{}'), headers: { [HEADER_EVENT_ID]: 'generated' } },
      {
        value: encoder.encode('{}'),
        headers: { [HEADER_EVENT_ID]: 'x2', [HEADER_DEDUPE]: '1', [HEADER_IDEMPOTENCY_KEY]: 'req-1' },
      },
    ]);
    const after = DedupeStore.open(dir, new Map([['s', 60_000]]));
    assert.equal(await after.recover(log, new Map([['events.s', 's']])), 2);
    assert.deepEqual([...after.seen('s', ['x1', 'x2', 'generated'])].sort(), ['x1', 'x2']);
    const batch = after.batch('s', 'req-1');
    assert.deepEqual(JSON.parse(batch!.response), { accepted: 1, ids: ['x2'], recovered: true });
    assert.equal(await after.recover(log, new Map([['events.s', 's']])), 0, 'the watermark moved');
    after.close();
    await log.close();
  });
});
