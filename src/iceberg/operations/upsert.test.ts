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
import { planScan, scanSql } from '../scan.ts';
import type { Table } from '../table.ts';
import { createTestTable } from '../test-support.ts';
import { updateSchema } from './evolve.ts';
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
    `select ${columns} from ${scanSql(plan, table.storage)} order by all`,
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
