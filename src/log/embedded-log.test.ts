import assert from 'node:assert/strict';
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
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

  it('keeps the retention another process gave a topic when a stale one ensures it without retention', async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'embedded-log-'));
    const reader = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
    const source = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
    try {
      // The pipeline's process opened the log before its source created the topic with a retention.
      await source.ensureTopic('cdc.shop', {
        partitions: 2,
        retentionMs: 7 * 86_400_000,
        retentionBytes: 1e9,
      });
      const seen = await reader.ensureTopic('cdc.shop', { partitions: 1 });
      assert.deepEqual(seen, {
        name: 'cdc.shop',
        partitions: 2,
        retentionMs: 7 * 86_400_000,
        retentionBytes: 1e9,
      });
      const again = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
      try {
        assert.deepEqual(await again.describeTopic('cdc.shop'), seen);
        // Asked by the process that knows the topic, no retention means none.
        await again.ensureTopic('cdc.shop', { partitions: 2 });
        assert.deepEqual(await again.describeTopic('cdc.shop'), { name: 'cdc.shop', partitions: 2 });
      } finally {
        await again.close();
      }
    } finally {
      await reader.close();
      await source.close();
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

  it('moves the few batches of a quiet partition out of files a busy one emptied, so retention by size frees disk', async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'embedded-log-'));
    const log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0, segmentBytes: 64 * 1024 });
    try {
      await log.ensureTopic('t', { partitions: 2, retentionBytes: 100_000 });
      const keyOf = (partition: number) => {
        for (let i = 0; ; i++) if (partitionForKey(`k${i}`, 2) === partition) return `k${i}`;
      };
      const [busy, quiet] = [keyOf(0), keyOf(1)];
      // The busy partition: 10 kB an append; the quiet one: 20 bytes every tenth (all of it kept).
      for (let i = 0; i < 600; i++) {
        await log.append('t', [{ key: busy, value: encode(`${i}`.padEnd(10_000, 'x')) }]);
        if (i % 10 === 0) await log.append('t', [{ key: quiet, value: encode(`${i}`.padEnd(20, 'y')) }]);
        if (i % 50 === 49) await log.enforceRetention();
      }
      await log.enforceRetention();
      const folder = path.join(directory, 'segments', '1');
      const onDisk = readdirSync(folder).reduce((n, file) => n + statSync(path.join(folder, file)).size, 0);
      // 100 kB kept of the busy partition, 1.2 kB of the quiet one, and up to a few files' slack.
      assert.ok(onDisk < 400_000, `${onDisk} bytes on disk`);
      const [, quietOffsets] = await log.offsets('t');
      assert.deepEqual(quietOffsets, { partition: 1, start: 0, end: 60 });
      assert.deepEqual(
        (await log.read('t', 1, 0, { maxRecords: 100 })).map((r) => decode(r.value)),
        Array.from({ length: 60 }, (_, i) => `${i * 10}`.padEnd(20, 'y')),
      );
      const busyValues = (await log.read('t', 0, 0, { maxRecords: 100 })).map((r) => decode(r.value));
      assert.deepEqual(busyValues.at(-1), '599'.padEnd(10_000, 'x'));
    } finally {
      await log.close();
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it(
    'closes what it holds open of files another process deleted',
    { skip: !existsSync('/proc/self/fd') },
    async () => {
      const directory = mkdtempSync(path.join(tmpdir(), 'embedded-log-'));
      const heldDeleted = () =>
        readdirSync('/proc/self/fd').filter((fd) => {
          try {
            const target = readlinkSync(`/proc/self/fd/${fd}`);
            return target.startsWith(path.join(directory, 'segments')) && target.endsWith('(deleted)');
          } catch {
            return false;
          }
        }).length;
      const writer = await EmbeddedLog.open({ directory, retentionIntervalMs: 0, segmentBytes: 64 * 1024 });
      const reader = await EmbeddedLog.open({ directory, retentionIntervalMs: 0, segmentBytes: 64 * 1024 });
      try {
        await writer.ensureTopic('t', { partitions: 1, retentionBytes: 100_000 });
        await reader.ensureTopic('t', { partitions: 1, retentionBytes: 100_000 });
        let from = 0;
        for (let i = 0; i < 40; i++) {
          await writer.append('t', [{ value: encode('x'.repeat(30_000)) }]);
          from = (await reader.read('t', 0, from, { maxRecords: 1000 })).at(-1)!.offset + 1;
        }
        await writer.enforceRetention();
        assert.ok(heldDeleted() > 0, 'the reader held files retention deleted');
        await reader.enforceRetention();
        assert.equal(heldDeleted(), 0);
      } finally {
        await writer.close();
        await reader.close();
        rmSync(directory, { recursive: true, force: true });
      }
    },
  );

  it('refuses a batch whose bytes changed on disk', async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'embedded-log-'));
    const log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
    try {
      await log.ensureTopic('t', { partitions: 1 });
      await log.append('t', [{ value: encode('kept') }]);
      const file = path.join(directory, 'segments', '1', '000000000001.batches');
      const bytes = readFileSync(file);
      bytes[bytes.length - 1] = bytes.at(-1)! ^ 1;
      writeFileSync(file, bytes);
      await assert.rejects(
        log.read('t', 0, 0),
        /offset 0 of topic t, partition 0, is damaged on disk \(its checksum/,
      );
      writeFileSync(file, bytes.subarray(0, 10));
      await assert.rejects(log.read('t', 0, 0), /is damaged on disk \(its segment file ends before it\)/);
    } finally {
      await log.close();
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('with durability "os", drops what a machine that stopped did not write, from the first lost batch', async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'embedded-log-'));
    const open = () =>
      EmbeddedLog.open({ directory, retentionIntervalMs: 0, durability: 'os', segmentBytes: 1024 });
    const warnings: string[] = [];
    const onWarning = (warning: Error & { code?: string }) => {
      if (warning.code === 'TRIBUTARY_LOG_REPAIRED') warnings.push(warning.message);
    };
    const values = async (log: EmbeddedLog, topic: string, partition: number, from = 0) =>
      (await log.read(topic, partition, from)).map((r) => `${r.offset}:${decode(r.value)}`);
    process.on('warning', onWarning);
    try {
      const first = await open();
      await first.ensureTopic('t', { partitions: 2 });
      const [p0, p1] = [0, 1].map((partition) => {
        for (let i = 0; ; i++) if (partitionForKey(`k${i}`, 2) === partition) return `k${i}`;
      });
      await first.append('t', [{ key: p0, value: encode('a1') }]);
      await first.close(); // a clean close puts everything on disk: nothing to check for a1
      const second = await open();
      await second.append('t', [{ key: p0, value: encode('a2') }]);
      await second.append('t', [{ key: p1, value: encode('b1') }]);
      await second.append('t', [{ key: p0, value: encode('a3') }]);
      await second.commitOffsets('readers', 't', new Map([[0, 3]]));
      // The machine stops: a2's bytes never reached the disk, b1's and a3's did (written back in any order).
      const file = path.join(directory, 'segments', '1', '000000000001.batches');
      const db = new DatabaseSync(path.join(directory, 'log.db'));
      const a2 = db
        .prepare('select position, length from batches where partition = 0 and base_offset = 1')
        .get() as { position: number; length: number };
      db.close();
      const bytes = readFileSync(file);
      bytes.fill(0, a2.position, a2.position + a2.length);
      writeFileSync(file, bytes);
      const third = await open();
      try {
        // a2 and what followed it in its partition are gone; their offsets are not given out again (a
        // group had committed past them).
        assert.deepEqual(await values(third, 't', 0), ['0:a1']);
        assert.deepEqual(await values(third, 't', 1), ['0:b1']);
        await third.append('t', [{ key: p0, value: encode('a4') }]);
        assert.deepEqual(await values(third, 't', 0), ['0:a1', '3:a4']);
        assert.deepEqual(await values(third, 't', 0, 1), ['3:a4']);
        assert.deepEqual(await values(third, 't', 0, (await third.committedOffsets('readers', 't')).get(0)), [
          '3:a4',
        ]);
        await new Promise((resolve) => setImmediate(resolve));
        assert.equal(warnings.length, 1);
        assert.match(warnings[0]!, /partition 0 of topic 1 .* from offset 1/);
        // Files, and a topic's folder, lost altogether (their names had not reached the disk): their
        // batches go, and appends make them again.
        await third.append('t', [{ key: p1, value: encode('b2'.padEnd(2000, 'z')) }]);
        await third.ensureTopic('u', { partitions: 1 });
        await third.append('u', [{ value: encode('u1') }]);
        const secondFile = path.join(directory, 'segments', '1', '000000000002.batches');
        assert.ok(existsSync(secondFile));
        rmSync(secondFile);
        rmSync(path.join(directory, 'segments', '2'), { recursive: true });
        const fourth = await open();
        try {
          assert.deepEqual(await values(fourth, 't', 1), ['0:b1']);
          assert.deepEqual(await values(fourth, 'u', 0), []);
          await fourth.append('t', [{ key: p1, value: encode('b3') }]);
          await fourth.append('u', [{ value: encode('u2') }]);
          assert.deepEqual(await values(fourth, 't', 1), ['0:b1', '2:b3']);
          assert.deepEqual(await values(fourth, 'u', 0), ['1:u2']);
        } finally {
          await fourth.close();
        }
      } finally {
        await third.close();
        await second.close();
      }
    } finally {
      process.off('warning', onWarning);
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('with durability "os", syncs what was written once a second', async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'embedded-log-'));
    const log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0, durability: 'os' });
    const unsynced = () => {
      const db = new DatabaseSync(path.join(directory, 'log.db'));
      try {
        return db.prepare('select end_position - synced_position as bytes from segments').get() as {
          bytes: number;
        };
      } finally {
        db.close();
      }
    };
    try {
      await log.ensureTopic('t', { partitions: 1 });
      await log.append('t', [{ value: encode('soon on disk') }]);
      assert.ok(unsynced().bytes > 0);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.equal(unsynced().bytes, 0);
    } finally {
      await log.close();
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('keeps retention going past a damaged batch, in the other topics and in the rest of its own', async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'embedded-log-'));
    const log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0, segmentBytes: 4096 });
    try {
      await log.ensureTopic('a', { partitions: 2, retentionBytes: 5000 });
      await log.ensureTopic('b', { partitions: 1, retentionBytes: 5000 });
      const [busy, quiet] = [0, 1].map((partition) => {
        for (let i = 0; ; i++) if (partitionForKey(`k${i}`, 2) === partition) return `k${i}`;
      });
      for (let i = 0; i < 40; i++) {
        await log.append('a', [{ key: busy, value: encode('x'.repeat(1000)) }]);
        if (i % 10 === 0) await log.append('a', [{ key: quiet, value: encode(`quiet-${i}`) }]);
        await log.append('b', [{ value: encode('y'.repeat(1000)) }]);
      }
      // The quiet partition's first batch, alone in a file the busy one empties, is damaged.
      const db = new DatabaseSync(path.join(directory, 'log.db'));
      const damaged = db
        .prepare(
          'select segment, position from batches where topic_id = 1 and partition = 1 order by base_offset',
        )
        .get() as { segment: number; position: number };
      db.close();
      const file = path.join(
        directory,
        'segments',
        '1',
        `${String(damaged.segment).padStart(12, '0')}.batches`,
      );
      const bytes = readFileSync(file);
      bytes[damaged.position + 30] = bytes[damaged.position + 30]! ^ 1;
      writeFileSync(file, bytes);
      const before = files(directory, 1).length;
      await log.enforceRetention();
      assert.ok((await log.offsets('b'))[0]!.start > 30, 'the other topic kept to its retention');
      const after = files(directory, 1);
      assert.ok(after.length < before / 2, `${after.length} of ${before} files of the damaged topic left`);
      assert.ok(after.includes(path.basename(file)), 'the file with the damaged batch stays');
      await assert.rejects(log.read('a', 1, 0), /damaged on disk/);
      assert.deepEqual(
        (await log.read('a', 1, 1)).map((r) => decode(r.value)),
        ['quiet-10', 'quiet-20', 'quiet-30'],
      );
    } finally {
      await log.close();
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('upgrades a log whose segments table predates its byte counts', async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'embedded-log-'));
    try {
      const written = await EmbeddedLog.open({ directory, retentionIntervalMs: 0, segmentBytes: 1024 });
      await written.ensureTopic('t', { partitions: 1, retentionBytes: 100_000 });
      for (let i = 0; i < 10; i++) await written.append('t', [{ value: encode('v'.repeat(500)) }]);
      await written.close();
      const db = new DatabaseSync(path.join(directory, 'log.db'));
      const expected = db.prepare('select id, end_position, live_bytes from segments order by id').all();
      db.exec(`alter table segments drop column live_bytes; alter table segments drop column synced_position;
        alter table batches drop column checksum; pragma user_version = 0;`);
      db.close();
      const log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0, segmentBytes: 1024 });
      try {
        const reopened = new DatabaseSync(path.join(directory, 'log.db'));
        const upgraded = reopened
          .prepare(
            'select id, end_position, live_bytes, synced_position = end_position as synced from segments order by id',
          )
          .all();
        reopened.close();
        assert.deepEqual(
          upgraded.map((row) => ({ ...row })),
          expected.map((row) => ({ ...row, synced: 1 })),
        );
        // Nothing is past retention: nothing moves.
        await log.enforceRetention();
        assert.equal(files(directory, 1).length, expected.length);
        assert.equal((await log.read('t', 0, 0)).length, 10);
      } finally {
        await log.close();
      }
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('applies retention to what another process appended', async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'embedded-log-'));
    const writer = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
    const other = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
    try {
      await writer.ensureTopic('t', { partitions: 1, retentionMs: 60_000 });
      await other.ensureTopic('t', { partitions: 1, retentionMs: 60_000 });
      for (let i = 0; i < 5; i++)
        await writer.append('t', [{ value: encode(`old-${i}`), timestamp: Date.now() - 120_000 }]);
      // The other process has appended nothing itself: it must still see the five, and remove them.
      assert.equal(await other.enforceRetention(), 5);
      assert.deepEqual(await other.offsets('t'), [{ partition: 0, start: 5, end: 5 }]);
      assert.deepEqual(await writer.read('t', 0, 0), []);
      assert.deepEqual(files(directory, 1).length, 1, 'the last file stays');
    } finally {
      await writer.close();
      await other.close();
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('refuses a log of a later format', async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'embedded-log-'));
    try {
      await (await EmbeddedLog.open({ directory, retentionIntervalMs: 0 })).close();
      const db = new DatabaseSync(path.join(directory, 'log.db'));
      db.exec('pragma user_version = 99');
      db.close();
      await assert.rejects(
        EmbeddedLog.open({ directory, retentionIntervalMs: 0 }),
        /written by a newer Tributary \(log format 99; this one reads up to 1\)/,
      );
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
