import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
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
    } finally {
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
