/**
 * The harness's real services answer as the later suites need them: PostgreSQL with logical decoding,
 * and pyiceberg writing a catalog whose layout our own SQL catalog shares.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import pg from 'pg';
import { useService } from '../services/index.ts';
import { runPython } from '../services/pyiceberg.ts';

const postgres = await useService('postgres');
describe('PostgreSQL service', { skip: postgres.skip }, () => {
  it('runs with wal_level=logical and can decode changes with pgoutput', async () => {
    const client = new pg.Client({ connectionString: postgres.info!.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ wal_level: string }>('show wal_level');
      assert.equal(rows[0]?.wal_level, 'logical');
      const slot = `harness_${process.pid}`;
      await client.query('create table if not exists harness_probe (id int primary key, note text)');
      await client.query(`select pg_create_logical_replication_slot($1, 'test_decoding')`, [slot]);
      try {
        await client.query('insert into harness_probe values ($1, $2)', [process.pid, 'hello']);
        const changes = await client.query<{ data: string }>(
          'select data from pg_logical_slot_get_changes($1, null, null)',
          [slot],
        );
        assert.ok(changes.rows.some((r) => r.data.includes('INSERT') && r.data.includes("'hello'")));
      } finally {
        await client.query('select pg_drop_replication_slot($1)', [slot]);
        await client.query('delete from harness_probe where id = $1', [process.pid]);
      }
    } finally {
      await client.end();
    }
  });
});

const pyiceberg = await useService('pyiceberg');
describe('pyiceberg service', { skip: pyiceberg.skip }, () => {
  it('writes an Iceberg table into a SQLite SQL catalog that Node can read', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tributary-pyiceberg-'));
    const catalogFile = path.join(dir, 'catalog.db');
    await runPython(
      pyiceberg.info!,
      `
import os, pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
catalog = SqlCatalog("tributary", uri="sqlite:///" + os.environ["CATALOG"], warehouse="file://" + os.environ["WAREHOUSE"])
catalog.create_namespace("bronze")
rows = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": pa.array(["a", "b", None], pa.string())})
table = catalog.create_table("bronze.people", schema=rows.schema)
table.append(rows)
`,
      { CATALOG: catalogFile, WAREHOUSE: path.join(dir, 'warehouse') },
    );
    // The catalog tables are those of Iceberg's JDBC catalog: our embedded catalog will share them.
    const db = new DatabaseSync(catalogFile, { readOnly: true });
    const row = db
      .prepare('select catalog_name, table_namespace, table_name, metadata_location from iceberg_tables')
      .get() as Record<string, string>;
    db.close();
    assert.equal(row.catalog_name, 'tributary');
    assert.equal(row.table_namespace, 'bronze');
    assert.equal(row.table_name, 'people');
    assert.match(row.metadata_location ?? '', /\.metadata\.json$/);

    const instance = await DuckDBInstance.create(':memory:');
    const connection = await instance.connect();
    const pattern = path.join(dir, 'warehouse', 'bronze', 'people', 'data', '*.parquet');
    const result = await connection.runAndReadAll(
      `select id, name from read_parquet('${pattern}') order by id`,
    );
    assert.deepEqual(result.getRowObjectsJson(), [
      { id: '1', name: 'a' },
      { id: '2', name: 'b' },
      { id: '3', name: null },
    ]);
    connection.closeSync();
    instance.closeSync();
  });
});
