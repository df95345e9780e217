import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { logCases } from '../log/log.case.ts';
import { DedupeStore, HEADER_DEDUPE, HEADER_EVENT_ID } from './dedupe.ts';
import { ThreadedLog } from './threaded-log.ts';

// The log on a worker thread keeps every promise of the Log contract.
logCases('embedded on a worker thread', (directory) =>
  ThreadedLog.open({ directory, retentionIntervalMs: 0 }),
);

it('records dedupe ids in the worker after the commit, before the append resolves', async () => {
  const directory = mkdtempSync(path.join(tmpdir(), 'threaded-log-'));
  const log = await ThreadedLog.open({ directory, retentionIntervalMs: 0 }, { dedupeDirectory: directory });
  const store = DedupeStore.open(directory, new Map([['s', 60_000]]));
  try {
    await log.ensureTopic('events.s', { partitions: 2 });
    const value = new TextEncoder().encode('{}');
    const marked = (id: string) => ({ value, headers: { [HEADER_EVENT_ID]: id, [HEADER_DEDUPE]: '1' } });
    const positions = await log.appendRecording(
      'events.s',
      [marked('a'), marked('b'), { value, headers: { [HEADER_EVENT_ID]: 'generated' } }],
      { stream: 's', batch: { key: 'k1', bodyHash: null, response: '{"accepted":3}' } },
    );
    assert.equal(positions.length, 3);
    store.expect([
      { stream: 's', id: 'a' },
      { stream: 's', id: 'b' },
      { stream: 's', id: 'generated' },
    ]);
    assert.deepEqual([...store.seen('s', ['a', 'b', 'c', 'generated'])].sort(), ['a', 'b']);
    assert.equal(store.batch('s', 'k1')?.response, '{"accepted":3}');
    await assert.rejects(log.append('missing-topic', [{ value }]), /does not exist/);
  } finally {
    store.close();
    await log.close();
  }
  await assert.rejects(log.append('events.s', [{ value: new Uint8Array(1) }]), /closed/);
});
