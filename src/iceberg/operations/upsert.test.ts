/**
 * Upsert's key lookup: only files whose key bounds can hold a key of the batch are read, only their key
 * columns, and rows already deleted do not count again. These cases check that what it skips is never a
 * row it had to replace: files pruned by int and (truncated) string bounds, keys of another input type,
 * null keys, a renamed key column, repeated upserts of a key.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalStorage } from '../../storage/index.ts';
import { openEngine, type Engine } from '../duckdb.ts';
import { planFiles, planScan, scanSql } from '../scan.ts';
import type { Table } from '../table.ts';
import { createTestTable, interceptedEngine } from '../test-support.ts';
import { updateSchema } from './evolve.ts';
import { KeyIndex } from './key-index.ts';
import { compact } from './maintenance.ts';
import { append, deleteWhere, upsert } from './write.ts';

const storage = new LocalStorage({ fsync: false });
let root: string;
let engine: Engine;
let counter = 0;

async function createTable(fields: readonly unknown[], identifierFields: string[] = []): Promise<Table> {
  counter++;
  const { table } = await createTestTable({
    storage,
    directory: path.join(root, `t${counter}`),
    identifier: { namespace: ['test'], name: `t${counter}` },
    fields,
    identifierFields,
  });
  return table;
}

async function rows(table: Table, columns: string): Promise<unknown[]> {
  const plan = await planScan(table.metadata, table.storage);
  const reader = await engine.connection.runAndReadAll(
    `select ${columns} from ${scanSql(plan, await table.files.readable(planFiles(plan)))} order by all`,
  );
  return reader.getRowObjectsJson();
}

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'tributary-upsert-'));
  engine = await openEngine({ threads: 2 });
});

after(() => {
  engine.close();
  rmSync(root, { recursive: true, force: true });
});

describe('upsert key lookup', () => {
  it('replaces rows in files with disjoint int key ranges, whatever the input key type', async () => {
    const table = await createTable(
      [
        { name: 'id', type: 'int', required: true },
        { name: 'v', type: 'string' },
      ],
      ['id'],
    );
    // Three files: ids 0–9, 10–19, 20–29.
    for (const start of [0, 10, 20])
      await append(table, engine, `(select (i + ${start})::INT as id, 'a' as v from range(10) r(i))`);
    // Keys 12 and 15 only: the first and last file cannot hold them.
    let result = await upsert(table, engine, `(select * from (values (12, 'b'), (15, 'b')) t(id, v))`);
    assert.equal(result.deletedRecords, 2);
    // BIGINT input for an int key, spanning two files, one key new.
    result = await upsert(
      table,
      engine,
      `(select * from (values (15::BIGINT, 'c'), (25::BIGINT, 'c'), (99::BIGINT, 'c')) t(id, v))`,
    );
    assert.equal(result.deletedRecords, 2, 'the row of 15 written before is replaced once, not twice');
    const all = (await rows(table, 'id, v')) as Array<{ id: number; v: string }>;
    assert.equal(all.length, 31);
    assert.deepEqual(
      all.filter((r) => r.v !== 'a'),
      [
        { id: 12, v: 'b' },
        { id: 15, v: 'c' },
        { id: 25, v: 'c' },
        { id: 99, v: 'c' },
      ],
    );
  });

  it('replaces rows of string keys longer than the truncated bounds, and keys below every file', async () => {
    const table = await createTable(
      [
        { name: 'k', type: 'string', required: true },
        { name: 'n', type: 'int' },
      ],
      ['k'],
    );
    const prefix = 'customer-0000000000000000-'; // longer than the 16 characters bounds keep
    await append(table, engine, `(select '${prefix}' || i as k, 1 as n from range(5) r(i))`);
    await append(table, engine, `(select 'zz-' || i as k, 1 as n from range(5) r(i))`);
    const result = await upsert(
      table,
      engine,
      `(select * from (values ('${prefix}4', 2), ('${prefix}0', 2), ('aa', 2)) t(k, n))`,
    );
    assert.equal(result.deletedRecords, 2);
    assert.deepEqual(await rows(table, 'k, n'), [
      { k: 'aa', n: 2 },
      { k: `${prefix}0`, n: 2 },
      { k: `${prefix}1`, n: 1 },
      { k: `${prefix}2`, n: 1 },
      { k: `${prefix}3`, n: 1 },
      { k: `${prefix}4`, n: 2 },
      ...[0, 1, 2, 3, 4].map((i) => ({ k: `zz-${i}`, n: 1 })),
    ]);
  });

  it('matches null keys with null keys, as the whole table scan did', async () => {
    const table = await createTable([
      { name: 'id', type: 'long' },
      { name: 'v', type: 'string' },
    ]);
    // Neither file's bounds hold 2: only the null key makes them worth reading.
    await append(table, engine, `(select 1::BIGINT as id, 'a' as v)`);
    await append(table, engine, `(select * from (values (null::BIGINT, 'a'), (1000, 'a')) t(id, v))`);
    const result = await upsert(
      table,
      engine,
      `(select * from (values (null::BIGINT, 'b'), (2, 'b')) t(id, v))`,
      {
        keyColumns: ['id'],
      },
    );
    assert.equal(result.deletedRecords, 1);
    assert.deepEqual(await rows(table, 'id, v'), [
      { id: '1', v: 'a' },
      { id: '2', v: 'b' },
      { id: '1000', v: 'a' },
      { id: null, v: 'b' },
    ]);
  });

  it('finds the rows of a renamed key column, and skips rows deleted since', async () => {
    const table = await createTable(
      [
        { name: 'id', type: 'long', required: true },
        { name: 'v', type: 'string' },
      ],
      ['id'],
    );
    await append(table, engine, `(select i as id, 'a' as v from range(4) r(i))`);
    await updateSchema(table, [{ kind: 'rename-column', column: 'id', newName: 'key' }]);
    await deleteWhere(table, engine, 'key = 1', { mode: 'merge-on-read' });
    const result = await upsert(table, engine, `(select * from (values (1, 'b'), (2, 'b')) t(key, v))`);
    assert.equal(result.deletedRecords, 1, 'only the row of 2: the row of 1 was deleted before');
    assert.deepEqual(await rows(table, 'key, v'), [
      { key: '0', v: 'a' },
      { key: '1', v: 'b' },
      { key: '2', v: 'b' },
      { key: '3', v: 'a' },
    ]);
  });
});

describe('upsert with a delete column', () => {
  it('removes keys whose last row is marked deleted, writes the others, and keeps the flag out of the table', async () => {
    const table = await createTable(
      [
        { name: 'id', type: 'long', required: true },
        { name: 'v', type: 'string' },
      ],
      ['id'],
    );
    await append(table, engine, `(select i::BIGINT as id, 'a' as v from range(5) r(i))`);
    // 1: deleted; 2: updated then deleted (last wins); 3: deleted then inserted again; 7: a delete of a key
    // that never existed; 8: new.
    const result = await upsert(
      table,
      engine,
      `(select * from (values (1, 'x', true), (2, 'b', false), (2, 'b', true), (3, 'x', true),
        (3, 'c', false), (7, 'x', true), (8, 'd', null)) t(id, v, _deleted))`,
      { deleteColumn: '_deleted' },
    );
    assert.equal(result.deletedRecords, 3);
    assert.equal(result.addedRecords, 2);
    assert.deepEqual(await rows(table, 'id, v'), [
      { id: '0', v: 'a' },
      { id: '3', v: 'c' },
      { id: '4', v: 'a' },
      { id: '8', v: 'd' },
    ]);
    assert.equal(table.currentSnapshot?.summary.operation, 'overwrite');
    // Only deletes: a delete snapshot.
    await upsert(table, engine, `(select 4::BIGINT as id, null as v, true as _deleted)`, {
      deleteColumn: '_deleted',
    });
    assert.equal(table.currentSnapshot?.summary.operation, 'delete');
    assert.deepEqual(await rows(table, 'id'), [{ id: '0' }, { id: '3' }, { id: '8' }]);
    await assert.rejects(
      upsert(table, engine, `(select 9::BIGINT as id)`, { deleteColumn: '_deleted' }),
      /lacks the delete column _deleted/,
    );
  });
});

describe('upsert with a key index', () => {
  /** The table's rows as id → v, read by the general scan (position deletes applied). */
  async function contents(table: Table): Promise<Map<number, string>> {
    const all = (await rows(table, 'id, v')) as Array<{ id: string; v: string }>;
    const map = new Map(all.map((r) => [Number(r.id), r.v]));
    assert.equal(map.size, all.length, 'a key is in the table once');
    return map;
  }

  it('keeps to what the table holds across upserts, deletes, other writers, compaction and failed commits', async () => {
    const table = await createTable(
      [
        { name: 'id', type: 'long', required: true },
        { name: 'v', type: 'string' },
      ],
      ['id'],
    );
    await append(table, engine, `(select i::BIGINT as id, 'init' as v from range(200) r(i))`);
    const model = new Map<number, string>(Array.from({ length: 200 }, (_, i) => [i, 'init']));
    const index = new KeyIndex();
    // A deterministic generator: the same sequence every run.
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 30; round++) {
      // A batch with repeated keys (the last wins), deletes, and keys new to the table.
      const values: string[] = [];
      const unique = round % 4 === 0; // every key once
      for (let i = 0; i < 40; i++) {
        const id = unique ? round * 1000 + i : random(260);
        const deleted = random(5) === 0;
        values.push(`(${id}::BIGINT, 'r${round}-${i}', ${deleted})`);
        if (deleted) model.delete(id);
        else model.set(id, `r${round}-${i}`);
      }
      const result = await upsert(
        table,
        engine,
        `(select * from (values ${values.join(', ')}) t(id, v, _deleted))`,
        // Not materialized: batches with repeated keys are deduplicated, the others used as they are.
        { deleteColumn: '_deleted', keyIndex: index, materialize: false },
      );
      assert.ok(result.deletedRecords <= 40);
      assert.deepEqual(await contents(table), model, `round ${round}`);
      // Now and then the table moves without the index: the next upsert must not trust it.
      if (round % 7 === 3) {
        await deleteWhere(table, engine, 'id < 20', { mode: 'merge-on-read' });
        for (const id of [...model.keys()]) if (id < 20) model.delete(id);
      } else if (round % 7 === 5) {
        await upsert(table, engine, `(select 5::BIGINT as id, 'other' as v)`); // another writer
        model.set(5, 'other');
      } else if (round % 7 === 6) {
        await compact(table, engine, { targetFileSizeBytes: 1024 * 1024 });
      } else if (round % 7 === 1) {
        // A commit refused by its precondition changes nothing, the index included.
        await assert.rejects(
          upsert(table, engine, `(select 7::BIGINT as id, 'refused' as v)`, {
            keyIndex: index,
            precondition: () => {
              throw new Error('refused');
            },
          }),
          /refused/,
        );
      }
      assert.deepEqual(await contents(table), model, `round ${round}, after the other writer`);
    }
    // Built first, then again after each of the 12 moves of the table by others (rounds 3, 5, 6 of each 7;
    // a refused commit moves nothing): every other upsert used the index as it was.
    assert.equal(index.builds, 1 + 12);
    await index.drop();
  });

  it('takes concurrent upserts one at a time', async () => {
    const table = await createTable(
      [
        { name: 'id', type: 'long', required: true },
        { name: 'v', type: 'string' },
      ],
      ['id'],
    );
    const index = new KeyIndex();
    await upsert(table, engine, `(select i::BIGINT as id, 'init' as v from range(50) r(i))`, {
      keyIndex: index,
    });
    // Overlapping keys from several writers at once, sharing the index (and the table object).
    await Promise.all(
      Array.from({ length: 6 }, (_, w) =>
        upsert(table, engine, `(select (i * 3 + ${w})::BIGINT as id, 'w${w}' as v from range(20) r(i))`, {
          keyIndex: index,
        }),
      ),
    );
    const all = await contents(table);
    assert.deepEqual(
      [...all.keys()].sort((a, b) => a - b),
      Array.from({ length: 63 }, (_, i) => i),
    );
    assert.equal(index.builds, 1);
  });

  it('leaves tables over its size to the file lookup', async () => {
    const table = await createTable(
      [
        { name: 'id', type: 'long', required: true },
        { name: 'v', type: 'string' },
      ],
      ['id'],
    );
    await append(table, engine, `(select i::BIGINT as id, 'a' as v from range(50) r(i))`);
    const index = new KeyIndex({ maxRows: 10 });
    const result = await upsert(
      table,
      engine,
      `(select * from (values (3::BIGINT, 'b'), (60, 'b')) t(id, v))`,
      {
        keyIndex: index,
      },
    );
    assert.equal(result.deletedRecords, 1);
    const all = await rows(table, 'id, v');
    assert.equal(all.length, 51);
  });
});

describe('upsert with a key index, when a statement fails', () => {
  /** `engine` whose connection fails the next statement matching `pattern`, once; `armed` false: not yet. */
  function failingOnce(pattern: RegExp, state = { armed: true }): Engine {
    return interceptedEngine(engine, pattern, state, () => {
      throw new Error('injected failure');
    });
  }

  async function keyedTable(key: string): Promise<Table> {
    const table = await createTable(
      [
        { name: key, type: 'long', required: true },
        { name: 'v', type: 'string' },
      ],
      [key],
    );
    await append(table, engine, `(select i::BIGINT as ${key}, 'init' as v from range(100) r(i))`);
    return table;
  }

  async function repeatedKeys(table: Table, key: string): Promise<number> {
    const [row] = (await rows(table, `count(*) - count(distinct ${key}) as n`)) as Array<{ n: string }>;
    return Number(row!.n);
  }

  it('trusts no index whose build failed half-way', async () => {
    const table = await keyedTable('id');
    const index = new KeyIndex();
    const failing = failingOnce(/^insert into __tributary_key_index_/);
    await assert.rejects(
      upsert(table, failing, `(select 5::BIGINT as id, 'a' as v)`, { keyIndex: index }),
      /injected/,
    );
    await upsert(table, failing, `(select 5::BIGINT as id, 'b' as v)`, { keyIndex: index });
    assert.equal(await repeatedKeys(table, 'id'), 0, 'key 5 is in the table once');
  });

  it('builds the index again after a failure once the commit stood', async () => {
    const table = await keyedTable('id');
    const index = new KeyIndex();
    const trigger = { armed: false };
    const failing = failingOnce(/^insert into __tributary_key_index_/, trigger);
    await upsert(table, failing, `(select 1::BIGINT as id, 'a' as v)`, { keyIndex: index });
    trigger.armed = true; // the next statement indexing rows: those of the file the next upsert added
    await upsert(table, failing, `(select 2::BIGINT as id, 'a' as v)`, { keyIndex: index });
    await upsert(table, failing, `(select 2::BIGINT as id, 'b' as v)`, { keyIndex: index });
    assert.equal(index.builds, 2);
    assert.equal(await repeatedKeys(table, 'id'), 0);
  });

  it("takes key columns named like its own columns, DuckDB's rowid or read_parquet's filename", async () => {
    for (const key of ['__pos', 'rowid', '__k0', 'filename']) {
      for (const indexed of [true, false]) {
        const table = await keyedTable(key);
        const index = new KeyIndex();
        for (const v of ['a', 'b'])
          await upsert(
            table,
            engine,
            `(select * from (values (3::BIGINT, '${v}'), (7, '${v}')) t(${key}, v))`,
            indexed ? { keyIndex: index } : {},
          );
        assert.equal(await repeatedKeys(table, key), 0, key);
        assert.equal(index.builds, indexed ? 1 : 0);
      }
    }
  });
});

describe('upsert of keys in another type than the table key', () => {
  it('copies an input whose keys are of the table types only when asked to (materialize)', async () => {
    for (const [type, value] of [
      ['decimal(10, 2)', 'CAST(1.5 AS DECIMAL(10,2))'],
      ['timestamptz', "TIMESTAMPTZ '2024-01-01 00:00:00+00'"],
      ['long', '1::BIGINT'],
    ] as const) {
      const table = await createTable(
        [
          { name: 'k', type, required: true },
          { name: 'v', type: 'string' },
        ],
        ['k'],
      );
      const copied = { armed: true };
      const watching = interceptedEngine(
        engine,
        /create temp table __tributary_upsert_/,
        copied,
        () => undefined,
      );
      await upsert(table, watching, `(select ${value} as k, 'a' as v)`, { materialize: false });
      assert.equal(copied.armed, true, `${type}: no copy`);
    }
  });

  it('matches and deduplicates keys as the table stores them', async () => {
    for (const indexed of [false, true]) {
      const table = await createTable(
        [
          { name: 'id', type: 'int', required: true },
          { name: 'v', type: 'string' },
        ],
        ['id'],
      );
      const options = indexed ? { keyIndex: new KeyIndex() } : {};
      await upsert(table, engine, `(select 1::INT as id, 'a' as v)`, options);
      // 1.2 and 1.4 are one key once stored as int (1), and the row of 1 written before is replaced.
      await upsert(
        table,
        engine,
        `(select * from (values (1.2::DOUBLE, 'b'), (1.4::DOUBLE, 'c')) t(id, v))`,
        options,
      );
      assert.deepEqual(await rows(table, 'id, v'), [{ id: 1, v: 'c' }], `indexed: ${indexed}`);
      await upsert(table, engine, `(select * from (values (' 1', 'd'), ('2', 'e')) t(id, v))`, options);
      assert.deepEqual(
        await rows(table, 'id, v'),
        [
          { id: 1, v: 'd' },
          { id: 2, v: 'e' },
        ],
        `indexed: ${indexed}`,
      );
      await assert.rejects(
        upsert(table, engine, `(select 'three' as id, 'f' as v)`, options),
        (error: Error & { code?: string }) =>
          error.code === 'INVALID_INPUT' && /does not match/.test(error.message),
      );
    }
  });
});
