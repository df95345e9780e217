import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { logCases } from '../log/log.case.ts';
import { DedupeStore } from './dedupe.ts';
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
    const positions = await log.appendRecording('events.s', [{ value }, { value }], {
      events: [
        { stream: 's', id: 'a' },
        { stream: 's', id: 'b' },
      ],
      batch: { stream: 's', key: 'k1', bodyHash: null, response: '{"accepted":2}' },
    });
    assert.equal(positions.length, 2);
    store.expect([
      { stream: 's', id: 'a' },
      { stream: 's', id: 'b' },
    ]);
    assert.deepEqual([...store.seen('s', ['a', 'b', 'c'])].sort(), ['a', 'b']);
    assert.equal(store.batch('s', 'k1')?.response, '{"accepted":2}');
    await assert.rejects(log.append('missing-topic', [{ value }]), /does not exist/);
  } finally {
    store.close();
    await log.close();
  }
  await assert.rejects(log.append('events.s', [{ value: new Uint8Array(1) }]), /closed/);
});
