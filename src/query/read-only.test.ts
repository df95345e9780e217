import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isTributaryError } from '../errors.ts';
import { deleteWhere } from '../iceberg/operations/write.ts';
import { parseTableIdentifier } from '../catalog/identifier.ts';
import { ReadOnlyQueryEngine, runReadOnlyQuery } from './read-only.ts';
import { openTestLakehouse, type TestLakehouse } from './testing.ts';

describe('runReadOnlyQuery', () => {
  let lake: TestLakehouse;
  let engine: ReadOnlyQueryEngine;
  before(async () => {
    lake = await openTestLakehouse();
    await lake.createFromSql(
      'shop.orders',
      `select i::bigint as id, 'u' || (i % 5) as user_id, (i * 1.5)::double as amount from range(100) r(i)`,
    );
    engine = await ReadOnlyQueryEngine.open(lake.catalog);
  });
  after(() => {
    engine.close();
    lake.close();
  });

  it('answers a SELECT over catalog tables, with the snapshot it read', async () => {
    const result = await engine.run(
      'select user_id, count(*)::int as n from shop.orders group by 1 order by 1',
    );
    assert.equal(result.rows.length, 5);
    assert.deepEqual(result.rows[0], { user_id: 'u0', n: 20 });
    assert.equal(result.truncated, false);
    assert.match(String(result.snapshots['shop.orders']), /^\d+$/);
    const withCte = await engine.run('with t as (select * from shop.orders) select count(*)::int n from t');
    assert.deepEqual(withCte.rows, [{ n: 100 }]);
  });

  it('cuts the result at maxRows and says so', async () => {
    const result = await engine.run('select * from shop.orders', { maxRows: 7 });
    assert.equal(result.rows.length, 7);
    assert.equal(result.truncated, true);
    const exact = await engine.run('select * from shop.orders limit 7', { maxRows: 7 });
    assert.equal(exact.truncated, false);
  });

  it('sees commits made after it opened, and reads earlier snapshots', async () => {
    const before = await engine.run('select count(*)::int n from shop.orders');
    const first = before.snapshots['shop.orders']!;
    await lake.appendSql('shop.orders', `select 1000::bigint as id, 'u9' as user_id, 1.0::double as amount`);
    const afterAppend = await engine.run('select count(*)::int n from shop.orders');
    assert.deepEqual(afterAppend.rows, [{ n: 101 }]);
    const old = await engine.run('select count(*)::int n from shop.orders o where o.amount >= 0', {
      snapshotId: BigInt(first),
    });
    assert.deepEqual(old.rows, [{ n: 100 }]);
    assert.equal(old.snapshots['shop.orders'], first);
  });

  it('refuses anything but one read-only SELECT, and it has no effect', async () => {
    const outside = path.join(lake.dir, 'outside.csv');
    const inside = path.join(lake.dir, 'warehouse', 'inside.csv');
    const attempts = [
      `copy (select 1) to '${outside}'`,
      `copy (select 1) to '${inside}'`,
      `attach '${path.join(lake.dir, 'x.db')}' as x`,
      'install httpfs',
      'load httpfs',
      'set enable_external_access = true',
      'set threads = 1',
      'create table t as select 1',
      'create view shop.v as select 1',
      'drop view shop.orders',
      'insert into shop.orders values (1, 2, 3)',
      'select 1; select 2',
      'select 1; drop view shop.orders',
      "select * from read_csv('/etc/passwd')",
      "select * from read_text('/etc/passwd')",
      `select * from read_parquet('${path.join(lake.dir, 'warehouse', '**', '*.parquet')}')`,
      "select * from query('select 1')",
      "select * from glob('/*')",
      'select * from duckdb_settings()',
      'pragma version',
      'describe shop.orders',
      'checkpoint',
      'select * from nowhere.missing',
      '',
    ];
    for (const sql of attempts) {
      await assert.rejects(
        engine.run(sql),
        (error) => isTributaryError(error, 'INVALID_INPUT'),
        `should refuse: ${sql}`,
      );
    }
    assert.equal(existsSync(outside), false);
    assert.equal(existsSync(inside), false);
    assert.equal(existsSync(path.join(lake.dir, 'x.db')), false);
    assert.equal(readdirSync(lake.dir).includes('x.db'), false);
    const still = await engine.run('select count(*)::int n from shop.orders');
    assert.deepEqual(still.rows, [{ n: 101 }]);
  });

  it('stops a query that runs past its timeout', async () => {
    await assert.rejects(
      engine.run('select count(*) from range(100000000000) a(i) where i % 7 = 3', { timeoutMs: 200 }),
      (error) => isTributaryError(error, 'QUERY_TIMEOUT'),
    );
    const next = await engine.run('select 1 as one');
    assert.deepEqual(next.rows, [{ one: 1 }]);
  });

  it('reads tables with deletes applied', async () => {
    const table = await lake.catalog.loadTable(parseTableIdentifier('shop.orders'));
    await deleteWhere(table, lake.engine, "user_id = 'u1'", { mode: 'merge-on-read' });
    const result = await runReadOnlyQuery(`select count(*)::int n from shop.orders where user_id = 'u1'`, {
      catalog: lake.catalog,
    });
    assert.deepEqual(result.rows, [{ n: 0 }]);
  });
});
