import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { foldedName } from '../catalog/identifier.ts';
import { createQueryApi, type ApiResponse, type QueryApi } from './http-api.ts';
import { ReadOnlyQueryEngine } from './read-only.ts';
import { openTestLakehouse, type TestLakehouse } from './testing.ts';

/** A JSON response's body, parsed. */
function parse(response: ApiResponse): unknown {
  assert.equal(typeof response.body, 'string');
  return JSON.parse(response.body as string) as unknown;
}

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
    const body = parse(response) as { rows: unknown[]; truncated: boolean; columns: unknown[] };
    assert.equal(body.rows.length, 5);
    assert.equal(body.truncated, true);
    assert.deepEqual(body.columns, [{ name: 'id', type: 'BIGINT' }]);
    assert.equal(response.headers?.['x-tributary-truncated'], 'true');
  });

  it('refuses an answer over the size limit, in every format, and queries past the concurrency limit', async () => {
    const small = createQueryApi({ catalog: lake.catalog, engine, limits: { maxResponseBytes: 10_000 } });
    const sql = `select repeat('x', 1000) s from range(20)`;
    for (const format of ['json', 'csv', 'arrow'] as const) {
      const response = await small.query({ body: { sql, format } });
      assert.equal(response.status, 400, format);
      assert.match(
        (parse(response) as { error: { message: string } }).error.message,
        /the answer would be \d+ KiB, over the 10 KiB limit/,
      );
    }
    assert.equal((await small.query({ body: { sql: `select 1 as x` } })).status, 200);

    const one = await ReadOnlyQueryEngine.open(lake.catalog, { maxConcurrent: 1 });
    try {
      const limited = createQueryApi({ catalog: lake.catalog, engine: one });
      const slow = limited.query({ body: { sql: 'select count(*) from range(300000000)', timeout_ms: 300 } });
      const refused = await limited.query({ body: { sql: 'select 1 as x' } });
      assert.equal(refused.status, 503);
      assert.match((parse(refused) as { error: { message: string } }).error.message, /queries are running/);
      await slow;
      assert.equal((await limited.query({ body: { sql: 'select 1 as x' } })).status, 200);
    } finally {
      one.close();
    }
  });

  it('answers CSV by format or Accept', async () => {
    const csv = await api.query({
      body: { sql: `select user_id, count(*)::int n from shop.orders where id = 100 group by 1` },
      headers: { accept: 'text/csv' },
    });
    assert.equal(csv.status, 200);
    assert.equal(csv.body, 'user_id,n\r\n"u,""9""",1\r\n');
    const viaQuery = await api.query({ body: 'select 1 as x', query: { format: 'csv' } });
    assert.equal(viaQuery.body, 'x\r\n1\r\n');
  });

  it('answers an Arrow IPC stream by Accept or format, and 406 for the Arrow file format', async () => {
    const arrow = await api.query({
      body: { sql: 'select id from shop.orders order by id', max_rows: 100 },
      headers: { accept: 'application/vnd.apache.arrow.stream' },
    });
    assert.equal(arrow.status, 200);
    assert.equal(arrow.contentType, 'application/vnd.apache.arrow.stream');
    assert.ok(arrow.body instanceof Uint8Array);
    const bytes = Buffer.from(arrow.body);
    assert.equal(bytes.readUInt32LE(0), 0xffffffff, 'the stream opens with a continuation marker');
    assert.equal(bytes.readInt32LE(4) % 8, 0, 'metadata padded to 8 bytes');
    assert.deepEqual([...bytes.subarray(-8)], [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], 'end of stream');
    // The first five ids (the server's row limit), as little-endian int64s in the body.
    const ids = Buffer.from(new BigInt64Array([0n, 1n, 2n, 3n, 4n]).buffer);
    assert.ok(bytes.includes(ids), 'the ids are in the record batch');
    assert.equal(arrow.headers?.['x-tributary-row-count'], '5');
    assert.equal(arrow.headers?.['x-tributary-truncated'], 'true');

    const byFormat = await api.query({ body: { sql: 'select 1 as x', format: 'arrow' } });
    assert.equal(byFormat.contentType, 'application/vnd.apache.arrow.stream');
    const file = await api.query({
      body: { sql: 'select 1' },
      headers: { accept: 'application/vnd.apache.arrow.file' },
    });
    assert.equal(file.status, 406);
    assert.match((parse(file) as { error: { hint: string } }).error.hint, /arrow\.stream/);
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
      assert.equal((parse(response) as { error: { code: string } }).error.code, 'INVALID_INPUT');
    }
    assert.equal((await api.query({ body: { nope: 1 } })).status, 400);
    assert.equal(
      (await api.query({ body: { sql: 'select * from shop.orders', snapshot_id: '123' } })).status,
      404,
    );
    assert.equal((await api.getTable({ params: { table: 'shop.missing' } })).status, 404);
    // Names arrive decoded: a % in one is a character, not an escape.
    assert.equal((await api.getTable({ params: { table: 'shop.%' } })).status, 404);
    assert.equal((await api.getTable({ params: { table: 'shop.%6Frders' } })).status, 404);
    const count = await api.query({ body: { sql: 'select count(*)::int as n from shop.orders' } });
    assert.deepEqual((parse(count) as { rows: unknown[] }).rows, [{ n: 21 }]);
  });

  it('lists tables, describes one and lists its snapshots; time travel by snapshot id', async () => {
    const tables = parse(await api.listTables({})) as { tables: Array<Record<string, unknown>> };
    assert.equal(tables.tables.length, 1);
    assert.equal(tables.tables[0]!.table, 'shop.orders');
    assert.equal(tables.tables[0]!.records, 21);
    const table = parse(await api.getTable({ params: { table: 'shop.orders' } })) as {
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
    const snapshots = parse(await api.listSnapshots({ params: { table: 'shop.orders' } })) as {
      snapshots: Array<{ snapshot_id: string; current: boolean }>;
    };
    assert.equal(snapshots.snapshots.length, 2);
    const first = snapshots.snapshots[0]!.snapshot_id;
    const old = await api.query({
      body: { sql: 'select count(*)::int as n from shop.orders', snapshot_id: first },
    });
    const answer = parse(old) as { rows: unknown[]; snapshots: Record<string, string> };
    assert.deepEqual(answer.rows, [{ n: 20 }]);
    assert.equal(answer.snapshots['shop.orders'], first);
  });

  it('shows a key only the tables it is granted, and refuses the others alike whether they exist or not', async () => {
    await lake.createFromSql('hr.salaries', `select 'ann' as name, 100000 as salary`);
    // As a key granted shop.* decides (server/keys.ts keyAllowsTable).
    const canRead = (table: string) => foldedName(table).startsWith('shop.');
    const run = (sql: string, snapshot_id?: string) =>
      api.query({ body: { sql, ...(snapshot_id ? { snapshot_id } : {}) }, canRead });
    const ok = await run('with hr as (select 1 as n) select count(*)::int as n from shop.orders, hr');
    assert.equal(ok.status, 200, 'a WITH name is not a table');
    assert.deepEqual((parse(ok) as { rows: unknown[] }).rows, [{ n: 21 }]);
    for (const sql of [
      'select * from hr.salaries',
      'select * from HR.Salaries',
      'select * from "hr"."salaries"',
      'select o.id from shop.orders o join hr.salaries s on true',
      'select * from shop.orders where id in (select salary from hr.salaries)',
      'with x as (select * from hr.salaries) select * from x',
      'select * from hr.missing',
    ]) {
      const response = await run(sql);
      assert.equal(response.status, 403, sql);
      const error = (parse(response) as { error: { code: string; message: string; hint: string } }).error;
      assert.equal(error.code, 'AUTH_FORBIDDEN', sql);
      assert.match(error.message, /this API key may not read table hr\./i, sql);
      assert.match(error.hint, /--table/);
    }
    const snapshot = (
      parse(await api.listSnapshots({ params: { table: 'hr.salaries' } })) as {
        snapshots: Array<{ snapshot_id: string }>;
      }
    ).snapshots[0]!.snapshot_id;
    assert.equal((await run('select * from hr.salaries', snapshot)).status, 403, 'time travel too');
    assert.equal((await api.getTable({ params: { table: 'hr.salaries' }, canRead })).status, 403);
    assert.equal((await api.listSnapshots({ params: { table: 'hr.salaries' }, canRead })).status, 403);
    assert.equal((await api.getTable({ params: { table: 'hr.missing' }, canRead })).status, 403);
    assert.equal((await api.getTable({ params: { table: 'shop.orders' }, canRead })).status, 200);
    const listed = parse(await api.listTables({ canRead })) as { tables: Array<{ table: string }> };
    assert.deepEqual(
      listed.tables.map((t) => t.table),
      ['shop.orders'],
    );
    const all = parse(await api.listTables({})) as { tables: Array<{ table: string }> };
    assert.deepEqual(all.tables.map((t) => t.table).sort(), ['hr.salaries', 'shop.orders']);
  });

  it('takes a name of three parts as DuckDB does, catalog.schema.table, not as a namespace of two levels', async () => {
    await lake.createFromSql('hr.bonus', `select 'carl' as name, 777777 as bonus`);
    await lake.createFromSql('memory.hr.bonus', `select 'decoy' as name, 0 as bonus`);
    // Someone granted hr.bonus has read it: its view "hr"."bonus" is in the engine.
    assert.equal((await api.query({ body: { sql: 'select count(*) from hr.bonus' } })).status, 200);
    // As a key granted memory.* decides: the namespace memory.hr, whose view is "memory.hr"."bonus".
    const canRead = (table: string) => foldedName(table).startsWith('memory.');
    const granted = await api.query({ body: { sql: 'select name from "memory.hr".bonus' }, canRead });
    assert.equal(granted.status, 200);
    assert.deepEqual((parse(granted) as { rows: unknown[] }).rows, [{ name: 'decoy' }]);
    // memory.hr.bonus is the catalog memory's "hr"."bonus" to DuckDB: hr.bonus, which it answered.
    for (const sql of ['select * from memory.hr.bonus', 'select * from "memory"."hr"."bonus"']) {
      const response = await api.query({ body: { sql }, canRead });
      assert.equal(response.status, 400, sql);
      assert.match(String(response.body), /no table memory\.hr\.bonus in the catalog/, sql);
      assert.doesNotMatch(String(response.body), /carl|777777/, sql);
    }
    const admin = await api.query({ body: { sql: 'select * from memory.hr.bonus' } });
    assert.equal(admin.status, 400, 'not a table name, whoever asks');
  });

  it("refuses the functions that bind SQL or read the engine's catalog, which no table check sees", async () => {
    await lake.createFromSql('hr.pay', `select 'bob' as name, 123456 as salary`);
    const canRead = (table: string) => foldedName(table).startsWith('shop.');
    const files = `${lake.dir}/warehouse/hr/pay/data/*.parquet`;
    for (const sql of [
      // Binds (and plans) any text: the table's schema and files, and, as the optimizer prunes by the files'
      // statistics, their values — this one answered 123456 in one request, never naming hr.pay where it is checked.
      `with recursive b(lo, hi) as (select 0, 1000000000 union all select if(ok, mid, lo), if(ok, hi, mid) from (select lo, hi, (lo + hi) // 2 mid, json_serialize_plan('select 1 from read_parquet(''${files}'') where salary >= ' || ((lo + hi) // 2), optimize := true) not like '%EMPTY_RESULT%' ok from b where hi - lo > 1)) select max(lo) salary from b`,
      `select json_serialize_plan('select * from hr.pay') p`,
      `select main.JSON_SERIALIZE_PLAN('select 1') p`,
      // System macros running table functions: every view's SQL (columns, types, data files), constraints…
      'select pg_get_viewdef(i) d from range(0, 1000000) t(i) where d is not null',
      'select pg_catalog.pg_get_constraintdef(1) d',
      'select format_type(1, 1) d',
      "select get_block_size('memory') d",
      // Not on the allowlist: DuckDB writes to its log, or answers its version.
      "select write_log('x') w",
      'select version() v',
    ]) {
      const response = await api.query({ body: { sql }, canRead });
      assert.equal(response.status, 400, sql);
      const { error } = parse(response) as { error: { code: string; message: string; hint: string } };
      assert.equal(error.code, 'INVALID_INPUT', sql);
      assert.match(error.message, /^the function \S+\(\) is not allowed$/, sql);
      assert.match(error.hint, /functions that compute values: .*docs\/models\.md/, sql);
      assert.doesNotMatch(String(response.body), /123456|salary"|bob/, sql);
    }
  });
});
