import assert from 'node:assert/strict';
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
