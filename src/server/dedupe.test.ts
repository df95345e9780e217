import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setImmediate as tick } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { EmbeddedLog } from '../log/embedded-log.ts';
import { partitionForKey } from '../log/log.ts';
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
    assert.equal(reopened.seen('s', ['new-1', 'new-2']).size, 0);
    reopened.close();
  });

  it('forgets ids past their window, in memory and on disk, a journal file at a time', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    const start = 1_800_000_000_000;
    let now = start;
    const windows = new Map([
      ['s', 80_000],
      ['short', 1_000],
    ]);
    const open = () => DedupeStore.open(dir, windows, { now: () => now, autoFlush: false });
    let store = open();
    const write = (stream: string, id: string) => {
      store.record([{ stream, id }], []);
      assert.equal(store.flush(), undefined);
    };
    const files = () => readdirSync(path.join(dir, 'dedupe-ids')).sort();
    write('s', 'a');
    write('short', 'x');
    now = start + 30_000;
    assert.deepEqual([...store.seen('s', ['a'])], ['a']);
    assert.deepEqual([...store.seen('short', ['x'])], [], 'past its shorter window');
    now = start + 60_000; // a journal file covers an eighth of the longest window: a new one
    write('s', 'b');
    assert.equal(files().length, 2);
    now = start + 80_001;
    assert.deepEqual([...store.seen('s', ['a', 'b'])], ['b'], 'a is past the window');
    now = start + 150_000;
    write('s', 'c');
    store.purge();
    assert.equal(files().length, 2, 'the file of a and x is deleted: b is in the next one');
    store.close();
    store = open();
    assert.deepEqual([...store.seen('s', ['a', 'b', 'c'])], ['c'], 'after a restart');
    assert.equal(store.stats.ids, 1, 'b was past its window when read back');
    store.close();
  });

  it('remembers an id accepted again once its window was over, also after a restart', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    const start = 1_800_000_000_000;
    let now = start;
    const windows = new Map([
      ['a', 1_000],
      ['b', 80_000],
    ]);
    let store = DedupeStore.open(dir, windows, { now: () => now, autoFlush: false });
    store.record([{ stream: 'a', id: 'x' }], []);
    now = start + 20_000;
    assert.deepEqual([...store.seen('a', ['x'])], [], 'past its window');
    store.record([{ stream: 'a', id: 'x' }], []); // accepted anew
    now = start + 20_500;
    assert.deepEqual([...store.seen('a', ['x'])], ['x'], 'its retry is a duplicate');
    store.close();
    store = DedupeStore.open(dir, windows, { now: () => now, autoFlush: false });
    assert.deepEqual([...store.seen('a', ['x'])], ['x'], 'after a restart');
    store.close();
  });

  it('keeps the window of a duplicate as it was: only what was appended is kept', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    const start = 1_800_000_000_000;
    let now = start;
    const store = DedupeStore.open(dir, new Map([['s', 80_000]]), { now: () => now, autoFlush: false });
    store.record([{ stream: 's', id: 'old' }], []);
    now = start + 11_000; // a later generation (an eighth of the window each)
    store.beginRound();
    assert.equal(store.admit('s', 'old'), false, 'a duplicate');
    assert.equal(store.admit('s', 'new'), true);
    store.keep(0, store.admitted, []);
    assert.equal(store.stats.ids, 2, 'old is not held a second time');
    now = start + 80_001;
    assert.deepEqual([...store.seen('s', ['old', 'new'])], ['new'], 'old: its window is over');
    store.close();
  });

  it('keeps an id kept just after its filter rotated for its whole window', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    const start = 1_800_000_000_000;
    let now = start;
    const store = DedupeStore.open(dir, new Map([['a', 8_000]]), { now: () => now, autoFlush: false });
    now = start + 7_900;
    store.beginRound();
    assert.equal(store.admit('a', 'x'), true); // a round admits x
    now = start + 8_100; // the filter rotates before its append is durable
    store.keep(0, 1, []);
    now = start + 8_100 + 7_950;
    assert.deepEqual([...store.seen('a', ['x'])], ['x']);
    store.beginRound();
    assert.equal(store.admit('a', 'x'), false, 'a round finds it too');
    store.close();
  });

  it('decides a round: a second copy of an id is a duplicate, and what is not kept is not held', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    const store = DedupeStore.open(
      dir,
      new Map([
        ['s', 60_000],
        ['t', 60_000],
      ]),
      { autoFlush: false },
    );
    store.beginRound();
    assert.equal(store.admit('s', 'x'), true);
    assert.equal(store.admit('s', 'x'), false, 'the same id, later in the round');
    assert.equal(store.admit('t', 'x'), true, 'another stream');
    const first = store.admitted;
    assert.equal(first, 2);
    assert.equal(store.admit('s', 'y'), true);
    // The transaction carrying x (both streams) is durable; the one carrying y is not.
    store.keep(0, first, []);
    assert.deepEqual([...store.seen('s', ['x', 'y'])], ['x']);
    assert.deepEqual([...store.seen('t', ['x'])], ['x']);
    store.beginRound();
    assert.equal(store.admit('s', 'y'), true, 'y failed: its retry is admitted again');
    assert.equal(store.admit('s', 'x'), false);
    // Many ids in one round, and the set of the round emptied after it.
    store.beginRound();
    for (let i = 0; i < 20_000; i++) assert.equal(store.admit('s', `id-${i}`), true);
    assert.equal(store.admit('s', 'id-19999'), false);
    store.beginRound();
    assert.equal(store.admit('s', 'id-19999'), true, 'not kept: not held');
    store.close();
  });

  it('recovers the ids of a journal write a power failure lost: ingest.db holds only synced watermarks', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    const log = await EmbeddedLog.open({ directory: dir, durability: 'os', retentionIntervalMs: 0 });
    await log.ensureTopic('events.s', { partitions: 1 });
    const topics = new Map([['events.s', 's']]);
    const store = DedupeStore.open(dir, new Map([['s', 60_000]]), { autoFlush: false });
    await store.recover(log, topics);
    const encoder = new TextEncoder();
    for (const id of ['x1', 'x2']) {
      const [position] = await log.append('events.s', [
        { value: encoder.encode('{}'), headers: { [HEADER_EVENT_ID]: id, [HEADER_DEDUPE]: '1' } },
      ]);
      store.record([{ stream: 's', id }], [{ topic: 'events.s', ...position! }]);
      assert.equal(store.flush(), undefined);
    }
    // The machine stops here (the store is not closed): x2's journal write and watermark never reached
    // the disk; ingest.db's watermark, written after the journal was last synced, is x1's.
    const [file] = readdirSync(path.join(dir, 'dedupe-ids'));
    const journal = path.join(dir, 'dedupe-ids', file!);
    truncateSync(journal, statSync(journal).size - 3);
    const after = DedupeStore.open(dir, new Map([['s', 60_000]]));
    assert.equal(await after.recover(log, topics), 1, 'x2 read again from the log');
    assert.deepEqual([...after.seen('s', ['x1', 'x2'])].sort(), ['x1', 'x2']);
    after.close();
    store.close();
    await log.close();
  });

  it('moves the watermark of a stream without dedupe to its end, so a restart reads nothing of it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    const log = await EmbeddedLog.open({ directory: dir, durability: 'os', retentionIntervalMs: 0 });
    await log.ensureTopic('events.nd', { partitions: 1 });
    const topics = new Map([['events.nd', 'nd']]);
    const windows = new Map([['nd', 0]]);
    const first = DedupeStore.open(dir, windows);
    await first.recover(log, topics);
    first.close();
    const value = new TextEncoder().encode('{}');
    await log.append(
      'events.nd',
      Array.from({ length: 50 }, () => ({ value })),
    );
    const second = DedupeStore.open(dir, windows);
    await second.recover(log, topics);
    second.close();
    const db = new DatabaseSync(path.join(dir, 'ingest.db'));
    assert.deepEqual(
      { ...(db.prepare('select next_offset from watermarks where topic = ?').get('events.nd') ?? {}) },
      { next_offset: 50 },
    );
    db.close();
    await log.close();
  });

  it('says when the answers of Idempotency-Keys are written, and why they cannot be', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    const store = DedupeStore.open(dir, new Map([['s', 60_000]]), { ids: false });
    const batch = (key: string) => ({ stream: 's', key, bodyHash: null, response: '{}' });
    const stored = (key: string) => {
      const db = new DatabaseSync(path.join(dir, 'ingest.db'));
      const row = db.prepare('select 1 from seen_batches where key = ?').get(key);
      db.close();
      return row !== undefined;
    };
    store.record([], [], batch('a'));
    await store.written();
    assert.ok(stored('a'));
    const db = new DatabaseSync(path.join(dir, 'ingest.db'));
    db.exec('alter table seen_batches rename to away');
    store.record([], [], batch('b'));
    await store.written();
    assert.match(store.writeFailure ?? '', /seen_batches/);
    assert.equal(store.batch('s', 'b')?.response, '{}', 'answered from memory meanwhile');
    await store.written(); // at once while failing
    db.exec('alter table away rename to seen_batches');
    db.close();
    assert.equal(store.flush(), undefined);
    assert.equal(store.writeFailure, undefined);
    assert.ok(stored('b'));
    store.close();
  });

  it('admits no copy of an id repeated in a round when one copy is a duplicate', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    const store = DedupeStore.open(dir, new Map([['s', 60_000]]), { autoFlush: false });
    store.record([{ stream: 's', id: 'x' }], []);
    const before = store.stats.ids;
    store.beginRound();
    assert.deepEqual(
      ['x', 'x', 'y', 'y'].map((id) => store.admit('s', id)),
      [false, false, true, false],
    );
    store.keep(0, store.admitted, []);
    assert.equal(store.stats.ids, before + 1, 'only y');
    store.close();
  });

  it('reads the journal up to a torn write, and goes on writing after it', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    const now = 1_800_000_000_000;
    const windows = new Map([['s', 60_000]]);
    let store = DedupeStore.open(dir, windows, { now: () => now, autoFlush: false });
    store.record([{ stream: 's', id: 'a' }], []);
    store.flush();
    store.record([{ stream: 's', id: 'b' }], []);
    store.flush();
    store.close();
    const [file] = readdirSync(path.join(dir, 'dedupe-ids'));
    const journal = path.join(dir, 'dedupe-ids', file!);
    truncateSync(journal, statSync(journal).size - 3); // the crash cut the last write short
    store = DedupeStore.open(dir, windows, { now: () => now, autoFlush: false });
    assert.deepEqual([...store.seen('s', ['a', 'b'])], ['a']);
    store.record([{ stream: 's', id: 'c' }], []);
    store.flush();
    store.close();
    store = DedupeStore.open(dir, windows, { now: () => now });
    assert.deepEqual([...store.seen('s', ['a', 'b', 'c'])].sort(), ['a', 'c']);
    store.close();
  });

  it('forgets the oldest ids early past its memory limit, and says so', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    let now = 1_800_000_000_000;
    const store = DedupeStore.open(dir, new Map([['s', 3_600_000]]), {
      now: () => now,
      autoFlush: false,
      maxIds: 300_000,
    });
    const ids = Array.from({ length: 400_000 }, (_, i) => ({ stream: 's', id: `e-${i}` }));
    store.record(ids.slice(0, 200_000), []);
    now += 1000;
    store.record(ids.slice(200_000), []);
    assert.ok(store.stats.ids <= 300_000, `${store.stats.ids} ids held`);
    assert.equal(store.stats.forgotEarly, 400_000 - store.stats.ids);
    assert.deepEqual([...store.seen('s', ['e-0', 'e-399999'])], ['e-399999']);
    store.close();
    // A small limit holds too: generations are an eighth of it then.
    const small = DedupeStore.open(mkdtempSync(path.join(tmpdir(), 'dedupe-')), new Map([['s', 3_600_000]]), {
      now: () => now,
      autoFlush: false,
      maxIds: 10_000,
    });
    small.record(ids.slice(0, 50_000), []);
    assert.ok(small.stats.ids <= 10_000 + 1250, `${small.stats.ids} ids held`);
    assert.deepEqual([...small.seen('s', ['e-49999'])], ['e-49999']);
    small.close();
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

  it('remembers recovered ids for their window although partitions are read out of time order', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dedupe-'));
    let now = 1_800_000_000_000;
    const start = now;
    const log = await EmbeddedLog.open({ directory: dir, durability: 'os', retentionIntervalMs: 0 });
    await log.ensureTopic('events.s', { partitions: 2 });
    const windows = new Map([['s', 60 * 60_000]]);
    const empty = DedupeStore.open(dir, windows, { now: () => now });
    await empty.recover(log, new Map([['events.s', 's']]));
    empty.close();
    // Both partitions hold the last 30 minutes: recovery reads partition 0, then goes back in time.
    const encoder = new TextEncoder();
    const keys = ['a', 'b', 'c', 'd'];
    for (const partition of [0, 1])
      await log.append(
        'events.s',
        Array.from({ length: 6000 }, (_, i) => ({
          key: keys.find((key) => partitionForKey(key, 2) === partition)!,
          value: encoder.encode('{}'),
          timestamp: start - 30 * 60_000 + i * 300,
          headers: { [HEADER_EVENT_ID]: `p${partition}-${i}`, [HEADER_DEDUPE]: '1' },
        })),
      );
    // 8,192 ids at most: the filter rotates while partition 1 is read back.
    const store = DedupeStore.open(dir, windows, { now: () => now, maxIds: 8192 });
    assert.equal(await store.recover(log, new Map([['events.s', 's']])), 12_000);
    now = start + 42 * 60_000; // p0-5999 was seen 0.3 s before the start: held until +60 minutes
    assert.deepEqual([...store.seen('s', ['p0-5999'])], ['p0-5999']);
    store.beginRound();
    assert.equal(store.admit('s', 'p0-5999'), false, 'a duplicate');
    store.close();
    await log.close();
  });
});
