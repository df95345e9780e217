import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { EmbeddedLog } from './embedded-log.ts';
import { logCases } from './log.case.ts';
import { murmur2, partitionForKey } from './log.ts';

logCases('embedded', (directory) => EmbeddedLog.open({ directory, retentionIntervalMs: 0 }));

it('partitions keys as Kafka does (murmur2)', () => {
  // Kafka's UtilsTest vectors for Utils.murmur2; its partitioner is toPositive(murmur2(key)) % partitions.
  const vectors: Array<[string, number]> = [
    ['21', -973932308],
    ['foobar', -790332482],
    ['a-little-bit-long-string', -985981536],
    ['a-little-bit-longer-string', -1486304829],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
    ['abc', 479470107],
    ['1', -1993445489],
  ];
  for (const [key, hash] of vectors) {
    assert.equal(murmur2(new TextEncoder().encode(key)), hash, key);
    assert.equal(partitionForKey(key, 12), (hash & 0x7fffffff) % 12);
  }
});

it('partitions ASCII and other keys by the murmur2 of their UTF-8', () => {
  for (const key of [
    '',
    'a',
    'ab',
    'abc',
    'public.pgbench_accounts:["42"]',
    'ключ',
    'é1',
    '🦫🦫',
    'lone \ud800',
  ]) {
    const hash = murmur2(new TextEncoder().encode(key));
    assert.equal(partitionForKey(key, 7), (hash & 0x7fffffff) % 7, key);
  }
});

it('checkpoints the WAL at a few megabytes, so that no commit waits for a large checkpoint', async () => {
  const directory = mkdtempSync(path.join(tmpdir(), 'embedded-log-'));
  const log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
  try {
    await log.ensureTopic('t', { partitions: 1 });
    const value = new Uint8Array(1024).fill(120);
    let largest = 0;
    // 24 MB in 1 MB commits: under SQLite's default the WAL would grow to 32 MiB before its first checkpoint.
    for (let i = 0; i < 24; i++) {
      await log.append(
        't',
        Array.from({ length: 1024 }, () => ({ value })),
      );
      largest = Math.max(largest, statSync(path.join(directory, 'log.db-wal')).size);
    }
    assert.ok(largest < 6 * 1024 * 1024, `the WAL reached ${largest} bytes`);
  } finally {
    await log.close();
    rmSync(directory, { recursive: true, force: true });
  }
});
