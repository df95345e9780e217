/**
 * Erasure for real: after `eraseRows`, no snapshot of the table returns the person's rows, and no Parquet
 * file under the table's location holds them — read directly with DuckDB's read_parquet over every file,
 * including rows that were already hidden by merge-on-read deletes and rows of older snapshots.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseTableIdentifier } from '../../src/catalog/identifier.ts';
import { resolveCatalogUri } from '../../src/catalog/open.ts';
import { openSqlDriver } from '../../src/catalog/sql-driver.ts';
import { quoteLiteral } from '../../src/iceberg/duckdb.ts';
import { deleteWhere, upsert } from '../../src/iceberg/operations/write.ts';
import { localPathOf } from '../../src/storage/location.ts';
import { eraseRows, exportRows, listAudit } from '../../src/query/privacy.ts';
import { QueryEngine } from '../../src/query/query-engine.ts';
import { openTestLakehouse, type TestLakehouse } from '../../src/query/testing.ts';

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const full = path.join(dir, entry);
    return statSync(full).isDirectory() ? filesUnder(full) : [full];
  });
}

describe('erase and export', () => {
  let lake: TestLakehouse;
  before(async () => {
    lake = await openTestLakehouse('tributary-privacy-');
    const users = (from: number, n: number) =>
      `select (${from} + i)::bigint as id, 'u' || ((${from} + i) % 10) as user_id, 'mail' || ((${from} + i) % 10) || '@example.com' as email from range(${n}) r(i)`;
    await lake.createFromSql('bronze.events', users(0, 100));
    for (let i = 1; i <= 4; i++) await lake.appendSql('bronze.events', users(i * 100, 100));
    await lake.createFromSql(
      'silver.profiles',
      `select 'u' || i as user_id, 'Name ' || i as name from range(10) r(i)`,
    );
    const profiles = await lake.catalog.loadTable(parseTableIdentifier('silver.profiles'));
    // An upsert hides the old row of u4 with a position delete: its bytes are still in the first file.
    await upsert(profiles, lake.engine, `(select 'u4' as user_id, 'Renamed' as name)`, {
      keyColumns: ['user_id'],
    });
    // A copy-on-write delete leaves u4's other rows in files only older snapshots reach.
    const events = await lake.catalog.loadTable(parseTableIdentifier('bronze.events'));
    await deleteWhere(events, lake.engine, 'id < 50', { mode: 'copy-on-write' });
    await lake.createFromSql('ops.metrics', `select 1 as n`);
  });
  after(() => lake.close());

  it('exports a float’s NaN and infinities as JSON strings, which JSON readers take', async () => {
    await lake.createFromSql(
      'ops.readings',
      `select 'p-nan' as user_id, 'NaN or Infinity' as note, 'nan'::double as a, 'inf'::double as b,
         {'c': '-inf'::double, 'd': 1.5} as s, ['nan'::double, 2.0] as l`,
    );
    const to = path.join(lake.dir, 'p-nan.ndjson');
    await exportRows(lake.catalog, lake.engine, { where: "user_id = 'p-nan'", to, tables: ['ops.readings'] });
    const [line] = readFileSync(to, 'utf8').trim().split('\n');
    assert.deepEqual(JSON.parse(line!), {
      table: 'ops.readings',
      row: {
        user_id: 'p-nan',
        note: 'NaN or Infinity',
        a: 'NaN',
        b: 'Infinity',
        s: { c: '-Infinity', d: 1.5 },
        l: ['NaN', 2],
      },
    });
    await lake.catalog.dropTable(parseTableIdentifier('ops.readings'));
  });

  it('exports a person’s rows from every table as NDJSON and Parquet', async () => {
    const to = path.join(lake.dir, 'u4.ndjson');
    const result = await exportRows(lake.catalog, lake.engine, { where: "user_id = 'u4'", to });
    assert.deepEqual(result.tables, [
      { table: 'bronze.events', rows: 45 },
      { table: 'silver.profiles', rows: 1 },
    ]);
    assert.deepEqual(
      result.skipped.map((s) => s.table),
      ['ops.metrics'],
    );
    const lines = readFileSync(to, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { table: string; row: Record<string, unknown> });
    assert.equal(lines.length, 46);
    assert.deepEqual(
      lines.find((l) => l.table === 'silver.profiles'),
      { table: 'silver.profiles', row: { user_id: 'u4', name: 'Renamed' } },
    );
    const parquet = path.join(lake.dir, 'u4.parquet');
    await exportRows(lake.catalog, lake.engine, { where: "user_id = 'u4'", to: parquet });
    // A person's data, readable by this user alone, whatever the umask.
    for (const file of [to, parquet]) assert.equal(statSync(file).mode & 0o777, 0o600, file);
    const reader = await lake.engine.connection.runAndReadAll(
      `select _table, count(*)::int from read_parquet(${quoteLiteral(parquet)}) group by 1 order by 1`,
    );
    assert.deepEqual(reader.getRows(), [
      ['bronze.events', 45],
      ['silver.profiles', 1],
    ]);
  });

  it('fails, dry run and export too, when the condition applies to no table, and records no audit entry', async () => {
    const audit = await openSqlDriver(resolveCatalogUri(`sqlite:${lake.dir}/catalog.db`, lake.dir));
    try {
      const before = (await listAudit(audit)).length;
      for (const dryRun of [true, false]) {
        await assert.rejects(
          eraseRows(lake.catalog, lake.engine, { where: "usr_id = 'u4'", dryRun }, audit),
          (error: Error & { code?: string; hint?: string }) =>
            error.code === 'INVALID_INPUT' &&
            /applies to no table: .*"usr_id" not found/.test(error.message) &&
            /did you mean "user_id"/.test(error.hint ?? ''),
        );
      }
      await assert.rejects(
        exportRows(
          lake.catalog,
          lake.engine,
          { where: 'user_id = u4', to: path.join(lake.dir, 'none.ndjson') },
          audit,
        ),
        /applies to no table: .*"u4" not found/,
      );
      assert.equal((await listAudit(audit)).length, before, 'no audit record of an erasure that did nothing');
    } finally {
      await audit.close();
    }
  });

  it('says which tables keep the person’s values as JSON text (change and dead-letter tables), with the condition that reaches them', async () => {
    await lake.createFromSql(
      'bronze.changes',
      `select * from (values
         ('insert', '{"id":1}', NULL, '{"id":1,"user_id":"u4","email":"mail4@example.com"}'),
         ('update', '{"id":1}', '{"id":1,"user_id":"u4"}', '{"id":1,"user_id":"u4","email":"new@example.com"}'),
         ('insert', '{"id":2}', NULL, '{"id":2,"user_id":"u5"}')) v(op, key, before, after)`,
    );
    await lake.createFromSql(
      'bronze._dlq',
      `select 'p' as pipeline, 'validate' as stage, '/amount: must be number' as error,
         '{"user_id":"u4","amount":"lots"}' as payload`,
    );
    const audit = await openSqlDriver(resolveCatalogUri(`sqlite:${lake.dir}/catalog.db`, lake.dir));
    try {
      const to = path.join(lake.dir, 'u4-json.ndjson');
      const exported = await exportRows(lake.catalog, lake.engine, { where: "user_id = 'u4'", to }, audit);
      const dry = await eraseRows(lake.catalog, lake.engine, { where: "user_id = 'u4'", dryRun: true });
      for (const skipped of [exported.skipped, dry.skipped]) {
        const byTable = new Map(skipped.map((s) => [s.table, s]));
        assert.deepEqual(byTable.get('bronze.changes')?.jsonColumns, ['key', 'before', 'after']);
        assert.equal(byTable.get('bronze.changes')?.jsonRows, 2);
        assert.equal(byTable.get('bronze._dlq')?.jsonRows, 1);
        assert.equal(byTable.get('ops.metrics')?.jsonColumns, undefined);
      }
      // The condition given reaches them with --tables.
      const where = dry.skipped.find((s) => s.table === 'bronze.changes')!.jsonWhere!;
      const reached = await eraseRows(lake.catalog, lake.engine, {
        where,
        tables: ['bronze.changes'],
        dryRun: true,
      });
      assert.equal(reached.tables[0]!.rows, 2);
      // The audit record says which tables the export left out, and names no value.
      const [record] = await listAudit(audit);
      assert.equal(record?.id, exported.id);
      const detail = record?.detail as { skipped: Array<{ table: string; jsonRows?: number }> };
      assert.deepEqual(
        detail.skipped.find((s) => s.table === 'bronze.changes'),
        { table: 'bronze.changes', jsonColumns: ['key', 'before', 'after'], jsonRows: 2 },
      );
      assert.doesNotMatch(JSON.stringify(record), /u4/);
    } finally {
      await audit.close();
      await lake.catalog.dropTable(parseTableIdentifier('bronze.changes'));
      await lake.catalog.dropTable(parseTableIdentifier('bronze._dlq'));
    }
  });

  it('records who ran an export and why', async () => {
    const audit = await openSqlDriver(resolveCatalogUri(`sqlite:${lake.dir}/catalog.db`, lake.dir));
    try {
      const exported = await exportRows(
        lake.catalog,
        lake.engine,
        {
          where: "user_id = 'u3'",
          to: path.join(lake.dir, 'u3.ndjson'),
          actor: 'dpo@example.com',
          reason: 'access request 12',
        },
        audit,
      );
      const [record] = await listAudit(audit);
      assert.equal(record?.id, exported.id);
      assert.equal(record?.actor, 'dpo@example.com');
      assert.equal((record?.detail as { reason?: string }).reason, 'access request 12');
    } finally {
      await audit.close();
    }
  });

  it('erases from a table another writer commits to meanwhile: the erasure is made again on the new state', async () => {
    await lake.createFromSql('ops.live', `select 'p-live' as user_id, i::bigint as n from range(3) r(i)`);
    await lake.appendSql('ops.live', `select 'other' as user_id, 9::bigint as n`);
    // While the erasure writes its files, a pipeline commits a row of the same person.
    let raced = 0;
    const connection = lake.engine.connection;
    const racing = {
      ...lake.engine,
      connection: new Proxy(connection, {
        get(target, property) {
          const value = Reflect.get(target, property) as unknown;
          if (property !== 'runAndReadAll')
            return typeof value === 'function' ? (value.bind(target) as unknown) : value;
          return async (sql: string) => {
            if (/^copy /.test(sql) && raced++ === 0)
              await lake.appendSql('ops.live', `select 'p-live' as user_id, 100::bigint as n`);
            return target.runAndReadAll(sql);
          };
        },
      }),
    };
    const result = await eraseRows(lake.catalog, racing, {
      where: "user_id = 'p-live'",
      tables: ['ops.live'],
    });
    assert.equal(raced, 2, 'written twice: the first commit lost to the append');
    assert.equal(result.tables[0]!.rows, 4, 'the row appended meanwhile is erased too');
    const query = new QueryEngine(lake.catalog, lake.engine);
    assert.deepEqual((await query.query('select user_id, n from ops.live')).rows, [
      { user_id: 'other', n: '9' },
    ]);
    await lake.catalog.dropTable(parseTableIdentifier('ops.live'));
  });

  it('erases the rows from every snapshot and every file, with an audit record', async () => {
    const audit = await openSqlDriver(resolveCatalogUri(`sqlite:${lake.dir}/catalog.db`, lake.dir));
    try {
      const dry = await eraseRows(lake.catalog, lake.engine, { where: "user_id = 'u4'", dryRun: true });
      // silver.profiles: the replaced row of u4 is hidden by a delete file, in a file still live (rewritten).
      assert.deepEqual(
        dry.tables.map((t) => [t.table, t.rows, t.inHistory, t.rewrittenFiles]),
        [
          ['bronze.events', 45, true, 5],
          ['silver.profiles', 1, false, 2],
        ],
      );
      const result = await eraseRows(
        lake.catalog,
        lake.engine,
        { where: "user_id = 'u4'", reason: 'ticket 123' },
        audit,
      );
      assert.deepEqual(
        result.tables.map((t) => [t.table, t.rows, t.remainingFiles.length]),
        [
          ['bronze.events', 45, 0],
          ['silver.profiles', 1, 0],
        ],
      );
      assert.ok(result.tables.every((t) => t.expiredSnapshots > 0));
      const [record] = await listAudit(audit);
      assert.equal(record?.id, result.id);
      assert.equal(record?.kind, 'erase');
      assert.match(record?.predicateSha256 ?? '', /^[0-9a-f]{64}$/);
      assert.doesNotMatch(JSON.stringify(record), /u4/);
    } finally {
      await audit.close();
    }
    const query = new QueryEngine(lake.catalog, lake.engine);
    for (const table of ['bronze.events', 'silver.profiles']) {
      const loaded = await lake.catalog.loadTable(parseTableIdentifier(table));
      // No snapshot left returns the rows…
      for (const snapshot of loaded.metadata.snapshots) {
        const rows = await query.query(`select count(*)::int as n from ${table} where user_id = 'u4'`, {
          snapshotId: snapshot['snapshot-id'],
        });
        assert.deepEqual(rows.rows, [{ n: 0 }], `${table} at ${snapshot['snapshot-id']}`);
      }
      // …and no data file under the table holds them.
      const parquet = filesUnder(localPathOf(loaded.location)).filter((f) => f.endsWith('.parquet'));
      assert.ok(parquet.length > 0);
      const dataFiles = [];
      for (const file of parquet) {
        const columns = (
          await lake.engine.connection.runAndReadAll(
            `describe select * from read_parquet(${quoteLiteral(file)})`,
          )
        )
          .getRows()
          .map((r) => String(r[0]));
        if (columns.includes('user_id')) dataFiles.push(file);
      }
      const reader = await lake.engine.connection.runAndReadAll(
        `select count(*)::int from read_parquet([${dataFiles.map(quoteLiteral).join(', ')}], union_by_name = true) where user_id = 'u4'`,
      );
      assert.deepEqual(reader.getRows(), [[0]], table);
      // Everyone else is still there.
      const others = await query.query(`select count(*)::int as n from ${table} where user_id <> 'u4'`);
      assert.deepEqual(others.rows, [{ n: table === 'bronze.events' ? 405 : 9 }]);
    }
  });
});
