import assert from 'node:assert/strict';
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import { EmbeddedLog } from './embedded-log.ts';
import { logCases } from './log.case.ts';
import { murmur2, partitionForKey } from './log.ts';
import { encodeBatch } from './record-batch.ts';

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

describe('segment files', () => {
  const encode = (text: string) => new TextEncoder().encode(text);
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  const files = (directory: string, topic: number) => {
    const folder = path.join(directory, 'segments', String(topic));
    return existsSync(folder) ? readdirSync(folder).sort() : [];
  };
  const values = async (log: EmbeddedLog, topic: string) =>
    (await log.read(topic, 0, 0, { maxRecords: 100_000 })).map((r) => decode(r.value));

  it('rolls to a new file at the segment size, and retention deletes the files no kept batch is in', async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'embedded-log-'));
    const log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0, segmentBytes: 1024 });
    try {
      // Topic 1 is kept forever; topic 2 keeps its newest 2,000 bytes. Their appends alternate, in the
      // same transactions.
      await log.ensureTopic('forever', { partitions: 1 });
      await log.ensureTopic('recent', { partitions: 1, retentionBytes: 2000 });
      for (let i = 0; i < 60; i++) {
        await Promise.all([
          log.append('forever', [{ value: encode(`f${i}-${'x'.repeat(90)}`) }]),
          log.append('recent', [{ value: encode(`r${i}-${'y'.repeat(90)}`) }]),
        ]);
      }
      const before = files(directory, 2);
      assert.ok(before.length >= 5, `${before.length} segment files`);
      assert.ok(await log.enforceRetention());
      const after = files(directory, 2);
      assert.ok(after.length < before.length - 2, `${after.length} of ${before.length} files left`);
      assert.equal(after.at(-1), before.at(-1), 'the file appended to stays');
      assert.deepEqual(files(directory, 1).length, before.length, 'the other topic keeps its files');
      const [recent] = await log.offsets('recent');
      const kept = await values(log, 'recent');
      assert.equal(kept.length, 60 - recent!.start);
      assert.deepEqual(
        kept,
        Array.from({ length: kept.length }, (_, i) => `r${recent!.start + i}-${'y'.repeat(90)}`),
      );
      assert.deepEqual(
        await values(log, 'forever'),
        Array.from({ length: 60 }, (_, i) => `f${i}-${'x'.repeat(90)}`),
      );
    } finally {
      await log.close();
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('overwrites what a transaction wrote and never committed, and reuses a file it created', async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'embedded-log-'));
    try {
      let log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0, segmentBytes: 4096 });
      await log.ensureTopic('t', { partitions: 1 });
      await log.append('t', [{ value: encode('first') }]);
      await log.close();
      // What a process killed after writing and before committing leaves: bytes past the end of the last
      // file, and the next file begun.
      const [name] = files(directory, 1);
      appendFileSync(path.join(directory, 'segments', '1', name!), Buffer.alloc(3000, 0xff));
      writeFileSync(path.join(directory, 'segments', '1', '000000000002.batches'), Buffer.alloc(5000, 0xee));
      log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0, segmentBytes: 4096 });
      try {
        await log.append('t', [{ value: encode('second') }]);
        await log.append('t', [{ value: encode('z'.repeat(3000)) }]);
        await log.append('t', [{ value: encode('fourth') }]);
        assert.deepEqual(await values(log, 't'), ['first', 'second', 'z'.repeat(3000), 'fourth']);
        assert.deepEqual(files(directory, 1), ['000000000001.batches', '000000000002.batches']);
      } finally {
        await log.close();
      }
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('reads the batches of a log written before segment files, and appends after them', async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'embedded-log-'));
    try {
      // The schema and a batch as the log wrote them before (payload in the database, 32 KiB pages).
      const db = new DatabaseSync(path.join(directory, 'log.db'));
      db.exec(`pragma page_size = 32768; pragma journal_mode = wal;
        create table topics (id integer primary key, name text not null unique, partitions integer not null,
          retention_ms integer, retention_bytes integer);
        create table partitions (topic_id integer not null, partition integer not null,
          start_offset integer not null default 0, next_offset integer not null default 0, primary key (topic_id, partition)) without rowid;
        create table batches (topic_id integer not null, partition integer not null, base_offset integer not null,
          end_offset integer not null, max_timestamp integer not null, bytes integer not null, payload blob not null,
          primary key (topic_id, partition, base_offset));
        insert into topics values (1, 't', 1, null, 3);
        insert into partitions values (1, 0, 0, 2);`);
      const { payload, maxTimestamp } = encodeBatch(
        [{ value: encode('old-1') }, { value: encode('old-2') }],
        1,
      );
      db.prepare('insert into batches values (1, 0, 0, 2, ?, 10, ?)').run(maxTimestamp, payload);
      db.close();
      const log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
      try {
        await log.append('t', [{ value: encode('new') }]);
        assert.deepEqual(await values(log, 't'), ['old-1', 'old-2', 'new']);
        // Retention (3 bytes) removes the old batch from the database.
        assert.equal(await log.enforceRetention(), 1);
        assert.deepEqual(await values(log, 't'), ['new']);
      } finally {
        await log.close();
      }
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('says so when a segment file is missing', async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'embedded-log-'));
    try {
      const written = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
      await written.ensureTopic('t', { partitions: 1 });
      await written.append('t', [{ value: encode('gone') }]);
      await written.close();
      rmSync(path.join(directory, 'segments'), { recursive: true });
      const log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
      try {
        await assert.rejects(log.read('t', 0, 0), /a segment file of topic t is missing/);
      } finally {
        await log.close();
      }
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
