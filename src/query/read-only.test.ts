import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync } from 'node:fs';
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

  it('refuses WITH names used out of their scope, and takes them in scope whatever their case', async () => {
    const files = path.join(lake.dir, 'warehouse', '**', '*.parquet');
    for (const sql of [
      // A name a WITH defines elsewhere in the statement is, here, a file or a system view.
      `select * from '${files}', (with "${files}" as (select 1) select 1) x`,
      'select * from duckdb_views, (with duckdb_views as (select 1) select 1) x',
      // A WITH entry's own name inside its body (not recursive) is not the entry.
      'with duckdb_views as (select * from duckdb_views) select * from duckdb_views',
      // Nor a later entry's name in an earlier entry.
      'with a as (select * from duckdb_tables), duckdb_tables as (select 1) select * from a',
      // Nor a recursive entry's name in its first branch (only in the recursive one).
      'with recursive duckdb_views as (select * from duckdb_views union select * from duckdb_views) select 1',
      `with recursive "${files}" as (select * from "${files}" union select 1) select 1`,
      // A name DuckDB does not take as the WITH's: only ASCII letters fold (U+212A KELVIN SIGN is not k).
      'with \u212Aey as (select 1) select * from key',
      `with "${files.replace('*.parquet', '[!\u212A]*.parquet')}" as (select 1) select * from "${files.replace('*.parquet', '[!k]*.parquet')}"`,
      // No WITH name that is not a plain identifier binds (a path-like one could be read as a file).
      `with "${files}" as (select 1) select * from "${files}"`,
    ]) {
      await assert.rejects(
        engine.run(sql),
        (error) => isTributaryError(error, 'INVALID_INPUT') && /no table/.test((error as Error).message),
        `should refuse: ${sql}`,
      );
    }
    await assert.rejects(
      engine.run("select current_setting('allowed_directories') d"),
      (error) =>
        isTributaryError(error, 'INVALID_INPUT') &&
        /current_setting\(\) is not allowed/.test((error as Error).message),
    );
    const cased = await engine.run('with T as (select 1 as a) select * from t');
    assert.deepEqual(cased.rows, [{ a: 1 }]);
    const chained = await engine.run(
      'with a as (select count(*)::int n from shop.orders), b as (select n + 1 as m from a) select m from b',
    );
    assert.deepEqual(chained.rows, [{ m: 102 }]);
    const recursive = await engine.run(
      'with recursive r(n) as (select 1 union all select n + 1 from r where n < 3) select sum(n)::int s from r',
    );
    assert.deepEqual(recursive.rows, [{ s: 6 }]);
  });

  it('answers everyday queries: the functions and operators that compute values are allowed', async () => {
    const result = await engine.run(
      `select user_id,
         count(*)::int n, count(distinct id)::int ids, approx_count_distinct(id) between 18 and 22 approx_close,
         sum(amount)::double total, round(avg(amount), 2)::double mean, max(amount) - min(amount) spread,
         quantile_cont(amount, 0.5) median, string_agg(id::varchar, ',' order by id) filter (where id < 10) ids_text,
         list(id order by id)[1]::int first_id, list_sum(list(id))::int id_sum,
         date_trunc('day', timestamp '2024-05-06 07:08:09') d, strftime(date '2024-05-06', '%Y/%m') ym,
         extract(year from date '2024-05-06')::int y, current_timestamp is not null now_known,
         date '2024-05-06' + interval 1 day next_day,
         regexp_matches(user_id, '^u[0-9]$') is_match, regexp_replace(user_id, 'u', 'user-') renamed,
         upper(user_id) || '!' shout, user_id like 'u%' liked, user_id ilike 'U%' iliked, user_id glob 'u?' globbed,
         user_id similar to 'u[0-9]' is_similar, starts_with(user_id, 'u') starts,
         case when user_id = 'u0' then 'zero' else 'other' end kind, coalesce(null, user_id) c, nullif(1, 1) nulled,
         json_extract_string('{"a": {"b": "x"}}', '$.a.b') jb, '{"a": 2}'::json->>'a' ja,
         list_transform([1, 2, 3], x -> x * 2) doubled, [x + 1 for x in [1, 2] if x > 1] comprehended,
         list_filter([1, 2, 3], x -> x > 1)[1] firstbig, {'k': 1}.k struct_k, map {'a': 1}['a'] map_a,
         (5 // 2 + 5 % 2 + 2 ** 3)::int arithmetic, ((4)!)::int fact, (7 & 3 | 8) << 1 bits, md5(user_id) is not null hashed,
         typeof(sum(amount)) t
       from shop.orders where id < 100 group by user_id order by user_id limit 1`,
    );
    assert.deepEqual(result.rows, [
      {
        user_id: 'u0',
        n: 20,
        ids: 20,
        approx_close: true,
        total: 1425,
        mean: 71.25,
        spread: 142.5,
        median: 71.25,
        ids_text: '0,5',
        first_id: 0,
        id_sum: 950,
        d: '2024-05-06 00:00:00',
        ym: '2024/05',
        y: 2024,
        now_known: true,
        next_day: '2024-05-07 00:00:00',
        is_match: true,
        renamed: 'user-0',
        shout: 'U0!',
        liked: true,
        iliked: true,
        globbed: true,
        is_similar: true,
        starts: true,
        kind: 'zero',
        c: 'u0',
        nulled: null,
        jb: 'x',
        ja: '2',
        doubled: [2, 4, 6],
        comprehended: [3],
        firstbig: 2,
        struct_k: 1,
        map_a: 1,
        arithmetic: 11,
        fact: 24,
        bits: 22,
        hashed: true,
        t: 'DOUBLE',
      },
    ]);
    const windowed = await engine.run(
      `select id, row_number() over (order by id)::int rn, rank() over (partition by user_id order by id)::int r,
         lag(id) over (order by id) previous, sum(amount) over (order by id rows between 1 preceding and current row) running
       from shop.orders where id < 3 order by id`,
    );
    assert.deepEqual(windowed.rows, [
      { id: '0', rn: 1, r: 1, previous: null, running: 0 },
      { id: '1', rn: 2, r: 1, previous: '0', running: 1.5 },
      { id: '2', rn: 3, r: 1, previous: '1', running: 4.5 },
    ]);
    const unnested = await engine.run('select unnest([1, 2]) x, current_user u');
    assert.deepEqual(unnested.rows, [
      { x: 1, u: 'duckdb' },
      { x: 2, u: 'duckdb' },
    ]);
  });

  it('refuses every function not on the allowlist, wherever it is called', async () => {
    for (const [sql, name] of [
      // Read settings, variables, secrets or the catalog; plan SQL text.
      ["select current_setting('allowed_directories') d", 'current_setting'],
      ["select getvariable('x') v", 'getvariable'],
      ["select which_secret('s3://bucket/x', 's3') s", 'which_secret'],
      ["select json_serialize_plan('select 1') p", 'json_serialize_plan'],
      ["select json_serialize_sql('select 1') p", 'json_serialize_sql'],
      ['select pg_get_viewdef(1) d', 'pg_get_viewdef'],
      ['select version() v', 'version'],
      ['select stats(amount) s from shop.orders', 'stats'],
      // Effects beyond the answer.
      ["select write_log('hello') w", 'write_log'],
      ["select nextval('s') n", 'nextval'],
      ["select currval('s') n", 'currval'],
      ['select setseed(0.5) s', 'setseed'],
      ['select sleep_ms(1) s', 'sleep_ms'],
      // Denied by family: the functions behind COLLATE.
      ["select icu_collate_de('a') c", 'icu_collate_de'],
      // A name DuckDB does not have is refused alike, before DuckDB binds it.
      ['select no_such_function(1) x', 'no_such_function'],
      // Nested: in a lambda, a table function's argument, a window, another case, a schema-qualified call.
      ["select list_transform([1], x -> write_log('x')) l", 'write_log'],
      ["select * from range(length(current_setting('threads')))", 'current_setting'],
      ["select write_log('x') over () w", 'write_log'],
      ["select main.WRITE_LOG('x') w", 'write_log'],
    ] as const) {
      await assert.rejects(
        engine.run(sql),
        (error) =>
          isTributaryError(error, 'INVALID_INPUT') &&
          (error as Error).message === `the function ${name}() is not allowed` &&
          /docs\/models\.md/.test(String(error.hint)),
        `should refuse: ${sql}`,
      );
    }
  });

  it('runs a time-travel query only as the statement it checked', async () => {
    const snapshotId = BigInt(
      (await engine.run('select 1 from shop.orders limit 1')).snapshots['shop.orders']!,
    );
    const dataFile = path.join(lake.dir, 'warehouse', 'inside.csv');
    // DuckDB prints the quoted name before .* unquoted: its text of the statement would be three. The
    // query's own text, with only the table's name replaced, keeps it a name (of no table).
    const payload = `1 as a; copy (select 1) to '${dataFile}'; create or replace view shop.orders as select 1 as id; select 1 as x --`;
    await assert.rejects(
      engine.run(`select "${payload.replace(/"/g, '""')}".* from shop.orders`, { snapshotId }),
      (error) => isTributaryError(error) && /Referenced table .* not found/.test((error as Error).message),
    );
    assert.equal(existsSync(dataFile), false);
    assert.deepEqual((await engine.run('select count(*)::int n from shop.orders')).rows, [{ n: 101 }]);
    // Queries whose statement holds numbers JavaScript would change, or columns qualified by table name.
    for (const sql of [
      'select count(*)::int n, max(interval 1 day) d from shop.orders',
      'select count(*)::int n from shop.orders where orders.amount >= 0',
      'select count(*)::int n from shop.orders using sample 100%',
      'select count(*)::int n from shop.orders where amount < 10.0 or amount > 18446744073709551615',
      // Exponents (DuckDB prints 1e3 back as 1000.0, a DECIMAL), text before the name that is not ASCII,
      // a name quoted and spaced, an alias, a comment.
      "select 'é' as e, count(*)::int n, sum(amount * 1e3)::bigint s from shop.orders where amount < 1e3",
      'select count(*)::int n from "shop" . "orders" as o /* é */ where o.amount >= 0',
      // Columns qualified by schema and table.
      'select count(*)::int n, max(shop.orders.amount) m from shop.orders where "shop" . "orders".amount >= 0',
    ]) {
      const result = await engine.run(sql, { snapshotId });
      assert.deepEqual(result.rows, (await engine.run(sql)).rows, sql);
    }
  });

  it('stops a query that runs past its timeout', async () => {
    await assert.rejects(
      engine.run('select count(*) from range(100000000000) a(i) where i % 7 = 3', { timeoutMs: 200 }),
      (error) => isTributaryError(error, 'QUERY_TIMEOUT'),
    );
    const next = await engine.run('select 1 as one');
    assert.deepEqual(next.rows, [{ one: 1 }]);
  });

  it("names a table's files in errors without the server's directories", async () => {
    await lake.createFromSql('shop.broken', `select 1 as id`);
    const table = await lake.catalog.loadTable(parseTableIdentifier('shop.broken'));
    const dataDir = path.join(new URL(table.location).pathname, 'data');
    for (const file of readdirSync(dataDir)) rmSync(path.join(dataDir, file));
    const error = await engine.run('select * from shop.broken').then(
      () => assert.fail('the data file is gone'),
      (e: Error) => e,
    );
    assert.ok(isTributaryError(error, 'STORAGE_IO'));
    assert.match(error.message, /table shop\.broken cannot be read: .*…\/shop\/broken\/data\//);
    assert.doesNotMatch(error.message, new RegExp(lake.dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
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
