import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createQueryApi, type QueryApi } from './http-api.ts';
import { ReadOnlyQueryEngine } from './read-only.ts';
import { openTestLakehouse, type TestLakehouse } from './testing.ts';

describe('query API handlers', () => {
  let lake: TestLakehouse;
  let engine: ReadOnlyQueryEngine;
  let api: QueryApi;
  before(async () => {
    lake = await openTestLakehouse();
    await lake.createFromSql(
      'shop.orders',
      `select i::bigint as id, 'u' || (i % 3) as user_id, i * 2.5 as amount from range(20) r(i)`,
    );
    await lake.appendSql('shop.orders', `select 100::bigint as id, 'u,"9"' as user_id, 1.0 as amount`);
    engine = await ReadOnlyQueryEngine.open(lake.catalog);
    api = createQueryApi({ catalog: lake.catalog, engine, limits: { maxRows: 5, timeoutMs: 2000 } });
  });
  after(() => {
    engine.close();
    lake.close();
  });

  it('answers POST /v1/query as JSON, within the server limits', async () => {
    const response = await api.query({
      body: { sql: 'select id from shop.orders order by id', max_rows: 100 },
    });
    assert.equal(response.status, 200);
    assert.match(response.contentType, /^application\/json/);
    const body = JSON.parse(response.body) as { rows: unknown[]; truncated: boolean; columns: unknown[] };
    assert.equal(body.rows.length, 5);
    assert.equal(body.truncated, true);
    assert.deepEqual(body.columns, [{ name: 'id', type: 'BIGINT' }]);
    assert.equal(response.headers?.['x-tributary-truncated'], 'true');
  });

  it('answers CSV by format or Accept, and 406 for Arrow', async () => {
    const csv = await api.query({
      body: { sql: `select user_id, count(*)::int n from shop.orders where id = 100 group by 1` },
      headers: { accept: 'text/csv' },
    });
    assert.equal(csv.status, 200);
    assert.equal(csv.body, 'user_id,n\r\n"u,""9""",1\r\n');
    const arrow = await api.query({
      body: { sql: 'select 1' },
      headers: { accept: 'application/vnd.apache.arrow.stream' },
    });
    assert.equal(arrow.status, 406);
    const viaQuery = await api.query({ body: 'select 1 as x', query: { format: 'csv' } });
    assert.equal(viaQuery.body, 'x\r\n1\r\n');
  });

  it('maps refused SQL to 400, unknown tables and snapshots to 404, and keeps data intact', async () => {
    for (const sql of [
      'drop view shop.orders',
      "copy (select 1) to '/tmp/x.csv'",
      'select 1; select 2',
      "select * from read_csv('/etc/passwd')",
    ]) {
      const response = await api.query({ body: { sql } });
      assert.equal(response.status, 400, sql);
      assert.equal((JSON.parse(response.body) as { error: { code: string } }).error.code, 'INVALID_INPUT');
    }
    assert.equal((await api.query({ body: { nope: 1 } })).status, 400);
    assert.equal(
      (await api.query({ body: { sql: 'select * from shop.orders', snapshot_id: '123' } })).status,
      404,
    );
    assert.equal((await api.getTable({ params: { table: 'shop.missing' } })).status, 404);
    const count = await api.query({ body: { sql: 'select count(*)::int as n from shop.orders' } });
    assert.deepEqual((JSON.parse(count.body) as { rows: unknown[] }).rows, [{ n: 21 }]);
  });

  it('lists tables, describes one and lists its snapshots; time travel by snapshot id', async () => {
    const tables = JSON.parse((await api.listTables({})).body) as { tables: Array<Record<string, unknown>> };
    assert.equal(tables.tables.length, 1);
    assert.equal(tables.tables[0]!.table, 'shop.orders');
    assert.equal(tables.tables[0]!.records, 21);
    const table = JSON.parse((await api.getTable({ params: { table: 'shop.orders' } })).body) as {
      schema: { fields: Array<{ name: string; type: string }> };
    };
    assert.deepEqual(
      table.schema.fields.map((f) => [f.name, f.type]),
      [
        ['id', 'long'],
        ['user_id', 'string'],
        ['amount', 'decimal(21, 1)'],
      ],
    );
    const snapshots = JSON.parse((await api.listSnapshots({ params: { table: 'shop.orders' } })).body) as {
      snapshots: Array<{ snapshot_id: string; current: boolean }>;
    };
    assert.equal(snapshots.snapshots.length, 2);
    const first = snapshots.snapshots[0]!.snapshot_id;
    const old = await api.query({
      body: { sql: 'select count(*)::int as n from shop.orders', snapshot_id: first },
    });
    const answer = JSON.parse(old.body) as { rows: unknown[]; snapshots: Record<string, string> };
    assert.deepEqual(answer.rows, [{ n: 20 }]);
    assert.equal(answer.snapshots['shop.orders'], first);
  });
});
