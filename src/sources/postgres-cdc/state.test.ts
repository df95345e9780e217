import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import { EmbeddedLog } from '../../log/embedded-log.ts';
import {
  CHUNK_HEADER,
  emptyState,
  formatPosition,
  lastPositions,
  loadState,
  POSITION_HEADER,
  saveState,
  stateTopicOf,
} from './state.ts';

describe('source state in the log', () => {
  it('finds a chunk written after the last state record (a crash between the two), and the last positions', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tributary-cdc-state-'));
    const log = await EmbeddedLog.open({ directory: dir, durability: 'os', retentionIntervalMs: 0 });
    try {
      const topic = 'cdc.test';
      await log.ensureTopic(topic, { partitions: 2 });
      await log.ensureTopic(stateTopicOf(topic), { partitions: 1 });
      const state = emptyState();
      state.tasks.push({
        id: 't1',
        table: 'public.a',
        kind: 'initial',
        lastKey: ['10'],
        chunks: 1,
        rows: 10,
        startedAt: 0,
      });
      await saveState(log, topic, state);
      const value = new TextEncoder().encode('{}');
      // Chunk 2 reached the log; its state record did not.
      await log.append(topic, [
        { key: 'a', value, headers: { [POSITION_HEADER]: formatPosition(0x100n, 0) } },
        { key: 'b', value, headers: { [POSITION_HEADER]: formatPosition(0x100n, 1) } },
        {
          key: 'c',
          value,
          headers: {
            [POSITION_HEADER]: formatPosition(0x100n, 2),
            [CHUNK_HEADER]: JSON.stringify({ task: 't1', chunk: 2, lastKey: ['20'], rows: 20, done: false }),
          },
        },
      ]);
      const loaded = await loadState(log, topic);
      assert.deepEqual(loaded.tasks[0], { ...state.tasks[0], lastKey: ['20'], chunks: 2, rows: 20 });
      const positions = await lastPositions(log, topic);
      assert.equal(positions.size > 0, true);
      for (const position of positions.values()) assert.equal(position.lsn, 0x100n);
      // Records replayed from a DLQ after them carry no position: the last one that does still counts.
      const replayed = Array.from({ length: 20 }, () => ({
        key: 'a',
        value,
        headers: { 'tributary-replay-for': 'p' },
      }));
      await log.append(topic, replayed);
      await log.append(topic, replayed);
      assert.deepEqual(await lastPositions(log, topic), positions);
    } finally {
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('finds the last state and positions before offsets a machine that stopped left without records', async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'tributary-cdc-state-'));
    const open = () => EmbeddedLog.open({ directory, durability: 'os', retentionIntervalMs: 0 });
    const onWarning = () => undefined;
    process.on('warning', onWarning);
    try {
      const topic = 'cdc.test';
      const first = await open();
      await first.ensureTopic(topic, { partitions: 1 });
      await first.ensureTopic(stateTopicOf(topic), { partitions: 1 });
      const change = (lsn: bigint) => ({
        key: 'a',
        value: new TextEncoder().encode('{}'),
        headers: { [POSITION_HEADER]: formatPosition(lsn, 0) },
      });
      await first.append(topic, [change(0x100n)]);
      await saveState(first, topic, { ...emptyState(), secret: 'S1', snapshotted: ['public.a'] });
      await first.close(); // on disk
      const second = await open();
      await second.append(topic, [change(0x200n)]);
      await saveState(second, topic, {
        ...emptyState(),
        secret: 'S1',
        snapshotted: ['public.a', 'public.b'],
      });
      // The machine stops before the last batch of either topic is on disk.
      const db = new DatabaseSync(path.join(directory, 'log.db'));
      const lost = db
        .prepare('select topic_id, segment, position, length from batches where base_offset = 1')
        .all() as Array<{ topic_id: number; segment: number; position: number; length: number }>;
      db.close();
      assert.equal(lost.length, 2);
      for (const batch of lost) {
        const file = path.join(
          directory,
          'segments',
          String(batch.topic_id),
          `${String(batch.segment).padStart(12, '0')}.batches`,
        );
        const bytes = readFileSync(file);
        bytes.fill(0, batch.position, batch.position + batch.length);
        writeFileSync(file, bytes);
      }
      const third = await open();
      try {
        assert.equal((await third.offsets(topic))[0]!.end, 2, 'the lost offset is not given out again');
        const state = await loadState(third, topic);
        assert.equal(state.secret, 'S1');
        assert.deepEqual(state.snapshotted, ['public.a']);
        assert.deepEqual(
          [...(await lastPositions(third, topic)).values()].map((position) => position.lsn),
          [0x100n],
        );
      } finally {
        await third.close();
        await second.close();
      }
    } finally {
      process.off('warning', onWarning);
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
