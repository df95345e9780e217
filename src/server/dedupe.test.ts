import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
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

  it('writes many ids of many requests, some seen before, in one flush', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    let now = 1_800_000_000_000;
    const windows = new Map([
      ['s', 60_000],
      ['t', 60_000],
    ]);
    const store = DedupeStore.open(dir, windows, { now: () => now, autoFlush: false });
    const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
    store.record(
      ids('a', 50).map((id) => ({ stream: 's', id })),
      [{ topic: 't', partition: 0, offset: 49 }],
    );
    store.record([{ stream: 't', id: 'a1' }], [{ topic: 't', partition: 0, offset: 50 }]);
    now += 1;
    store.record(
      [...ids('a', 3), ...ids('b', 10)].map((id) => ({ stream: 's', id })),
      [{ topic: 't', partition: 1, offset: 12 }],
    );
    store.flush();
    store.close();
    const reopened = DedupeStore.open(dir, windows, { now: () => now });
    assert.deepEqual(reopened.seen('s', [...ids('a', 50), ...ids('b', 10), 'c0']).size, 60);
    assert.deepEqual([...reopened.seen('t', ['a1', 'a2'])], ['a1']);
    // Expected ids are not seen ones: they are only looked up in the database from now on.
    assert.equal(reopened.seen('s', ['new-1', 'new-2'], true).size, 0);
    assert.equal(reopened.seen('s', ['new-1', 'new-2']).size, 0);
    reopened.close();
  });

  it('forgets ids a generation at a time, keeping every id within its window', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    const start = 1_800_000_000_000;
    let now = start;
    const windows = new Map([
      ['s', 60_000],
      ['short', 1_000],
    ]);
    const store = DedupeStore.open(dir, windows, { now: () => now, autoFlush: false });
    const write = (stream: string, id: string) => {
      store.record([{ stream, id }], []);
      store.flush();
    };
    const rows = () => {
      const db = new DatabaseSync(path.join(dir, 'ingest.db'));
      const ids = (slot: number) =>
        (db.prepare(`select id from seen_ids_${slot} order by id`).all() as Array<{ id: string }>)
          .map((r) => r.id)
          .join(',');
      const both = [ids(0), ids(1)].sort();
      db.close();
      return both;
    };
    write('s', 'a');
    write('short', 'x');
    now = start + 30_000;
    assert.deepEqual([...store.seen('s', ['a'])], ['a']);
    assert.deepEqual([...store.seen('short', ['x'])], [], 'past its shorter window');
    now = start + 60_001; // a generation (the longest window) later: the next write starts a new one
    write('s', 'b');
    assert.deepEqual(rows(), ['a,x', 'b']);
    assert.deepEqual([...store.seen('s', ['a', 'b'])], ['b']);
    now = start + 90_000;
    write('s', 'c');
    assert.deepEqual(rows(), ['a,x', 'b,c']);
    now = start + 120_002; // the generation of a and x is emptied
    write('s', 'd');
    assert.deepEqual(rows(), ['b,c', 'd']);
    assert.deepEqual([...store.seen('s', ['a', 'b', 'c', 'd'])].sort(), ['c', 'd']);
    store.close();
  });

  it('takes over the ids of the single table earlier versions kept', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    const now = 1_800_000_000_000;
    const old = new DatabaseSync(path.join(dir, 'ingest.db'));
    old.exec(`
      create table seen_ids (stream text not null, id text not null, seen_at integer not null,
        primary key (stream, id)) without rowid;
      create index seen_ids_by_time on seen_ids (seen_at);`);
    old
      .prepare('insert into seen_ids values (?, ?, ?), (?, ?, ?)')
      .run('s', 'a', now - 1000, 's', 'old', now - 90_000);
    old.close();
    const store = DedupeStore.open(dir, new Map([['s', 60_000]]), { now: () => now });
    assert.deepEqual([...store.seen('s', ['a', 'old', 'b'])], ['a']);
    store.close();
    const db = new DatabaseSync(path.join(dir, 'ingest.db'));
    assert.equal(db.prepare("select 1 from sqlite_master where name = 'seen_ids'").get(), undefined);
    db.close();
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
