/**
 * The SQL catalog and pyiceberg's SqlCatalog share one SQLite file in both directions: pyiceberg reads,
 * appends to, renames and drops what Tributary registered, and Tributary lists, loads and commits (by
 * compare-and-swap) what pyiceberg created. Metadata files are pyiceberg's own: the registry never reads them.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import pg from 'pg';
import { failsWith } from '../../src/catalog/sql-catalog.case.ts';
import { openSqlCatalog } from '../../src/catalog/sql-catalog.ts';
import { fileLocationOf, LocalStorage } from '../../src/storage/index.ts';
import { tributary } from '../cli.ts';
import { useService } from '../services/index.ts';
import { runPython } from '../services/pyiceberg.ts';

const pyiceberg = await useService('pyiceberg');
const postgres = await useService('postgres');

/** Runs a Python script that prints one JSON value; the catalog helpers are in scope as `catalog(name, file)`. */
async function python<T>(script: string, env: Record<string, string>): Promise<T> {
  const prelude = `
import json, os, pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
def catalog(name, file):
    return SqlCatalog(name, uri="sqlite:///" + file, warehouse="file://" + os.environ["WAREHOUSE"])
def rows(ids):
    return pa.table({"id": pa.array(ids, pa.int64()), "name": pa.array([f"n{i}" for i in ids], pa.string())})
`;
  const info = pyiceberg.info;
  assert.ok(info);
  const stdout = await runPython(info, `${prelude}\n${script}`, env);
  return JSON.parse(stdout.trim().split('\n').pop() ?? 'null') as T;
}

async function withDir(work: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'tributary-pyiceberg-catalog-'));
  try {
    await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('SQL catalog shared with pyiceberg', { skip: pyiceberg.skip }, () => {
  it('pyiceberg reads, appends to, renames and drops tables in a catalog Tributary created', async () => {
    await withDir(async (dir) => {
      const warehouse = path.join(dir, 'warehouse');
      const env = {
        WAREHOUSE: warehouse,
        SCRATCH: path.join(dir, 'scratch.db'),
        OURS: path.join(dir, 'ours.db'),
      };
      // A table (metadata and data files) written by pyiceberg in a scratch catalog of its own.
      const { location } = await python<{ location: string }>(
        `
scratch = catalog("scratch", os.environ["SCRATCH"])
scratch.create_namespace("scratch")
table = scratch.create_table("scratch.people", schema=rows([]).schema)
table.append(rows([1, 2, 3]))
print(json.dumps({"location": table.metadata_location}))
`,
        env,
      );

      const catalog = await openSqlCatalog({
        name: 'tributary',
        uri: `sqlite:${env.OURS}`,
        warehouse: fileLocationOf(warehouse),
      });
      try {
        await catalog.createNamespace('bronze', { owner: 'data-eng' });
        await catalog.createNamespace('silver.eu');
        await catalog.createNamespace('gold');
        await catalog.updateNamespaceProperties('gold', [], { tier: 'gold' });
        await catalog.registerTable('bronze.people', location);

        const seen = await python<Record<string, unknown>>(
          `
ours = catalog("tributary", os.environ["OURS"])
table = ours.load_table("bronze.people")
before = table.scan().to_arrow().num_rows
table.append(rows([4, 5]))
print(json.dumps({
    "namespaces": sorted(ours.list_namespaces()),
    "silver": ours.list_namespaces("silver"),
    "silver_eu_exists": ours.namespace_exists("silver.eu"),
    "bronze": ours.load_namespace_properties("bronze"),
    "gold": ours.load_namespace_properties("gold"),
    "tables": ours.list_tables("bronze"),
    "rows_before": before,
    "location": table.metadata_location,
}))
`,
          env,
        );
        assert.deepEqual(seen.namespaces, [['bronze'], ['gold'], ['silver']]);
        assert.deepEqual(seen.silver, [['silver', 'eu']]);
        assert.equal(seen.silver_eu_exists, true);
        assert.deepEqual(seen.bronze, { exists: 'true', owner: 'data-eng' });
        assert.deepEqual(seen.gold, { exists: 'true', tier: 'gold' });
        assert.deepEqual(seen.tables, [['bronze', 'people']]);
        assert.equal(seen.rows_before, 3);
        // pyiceberg's append committed through our catalog file by compare-and-swap.
        assert.deepEqual(await catalog.loadTableEntry('bronze.people'), {
          identifier: { namespace: ['bronze'], name: 'people' },
          metadataLocation: seen.location,
          previousMetadataLocation: location,
        });

        await catalog.renameTable('bronze.people', 'silver.eu.people');
        await catalog.createNamespace('tmp');
        await catalog.registerTable('tmp.people_v1', location);
        await catalog.dropTable('tmp.people_v1');
        const after = await python<Record<string, unknown>>(
          `
ours = catalog("tributary", os.environ["OURS"])
print(json.dumps({
    "rows": ours.load_table("silver.eu.people").scan().to_arrow().num_rows,
    "bronze": ours.list_tables("bronze"),
    "dropped_exists": ours.table_exists("tmp.people_v1"),
}))
`,
          env,
        );
        assert.deepEqual(after, { rows: 5, bronze: [], dropped_exists: false });
      } finally {
        await catalog.close();
      }
    });
  });

  it('Tributary lists, loads and commits to tables in a catalog pyiceberg created', async () => {
    await withDir(async (dir) => {
      const warehouse = path.join(dir, 'warehouse');
      const env = { WAREHOUSE: warehouse, THEIRS: path.join(dir, 'theirs.db') };
      const created = await python<Record<string, string>>(
        `
theirs = catalog("lake", os.environ["THEIRS"])
theirs.create_namespace("bronze")
theirs.create_namespace("silver", {"owner": "analytics"})
theirs.create_namespace("gold.eu")
events = theirs.create_table("bronze.events", schema=rows([]).schema)
events.append(rows([1, 2, 3]))
orders = theirs.create_table("silver.orders", schema=rows([]).schema)
sales = theirs.create_table("gold.eu.sales", schema=rows([]).schema)
print(json.dumps({"events": events.metadata_location, "orders": orders.metadata_location, "sales": sales.metadata_location}))
`,
        env,
      );

      const catalog = await openSqlCatalog({ name: 'lake', uri: `sqlite:${env.THEIRS}`, warehouse });
      try {
        assert.deepEqual(await catalog.listNamespaces(), [['bronze'], ['gold'], ['silver']]);
        assert.deepEqual(await catalog.listNamespaces('gold'), [['gold', 'eu']]);
        assert.deepEqual(await catalog.loadNamespaceProperties('silver'), { owner: 'analytics' });
        assert.deepEqual(await catalog.loadNamespaceProperties('bronze'), {});
        assert.deepEqual(await catalog.listTables('bronze'), [{ namespace: ['bronze'], name: 'events' }]);
        assert.deepEqual(await catalog.listTables('gold.eu'), [{ namespace: ['gold', 'eu'], name: 'sales' }]);
        assert.equal(await catalog.getMetadataLocation('silver.orders'), created.orders);
        assert.equal(await catalog.getMetadataLocation('gold.eu.sales'), created.sales);

        // Commit a new metadata file (a copy of the current one under the next version's name) by CAS.
        const current = await catalog.getMetadataLocation('bronze.events');
        assert.equal(current, created.events);
        const storage = new LocalStorage();
        const next = current.replace(/\/[^/]+$/, `/00002-${randomUUID()}.metadata.json`);
        await storage.writeExclusive(next, await storage.read(current));
        await catalog.swapMetadataLocation('bronze.events', current, next);
        await assert.rejects(
          catalog.swapMetadataLocation('bronze.events', current, `${next}.stale`),
          failsWith('ICEBERG_COMMIT_CONFLICT', 'bronze.events'),
        );
        await catalog.registerTable('silver.orders_copy', created.orders ?? '');
        // Removing the only property of a namespace pyiceberg created must not make it vanish.
        await catalog.updateNamespaceProperties('silver', ['owner'], {});

        const seen = await python<Record<string, unknown>>(
          `
theirs = catalog("lake", os.environ["THEIRS"])
table = theirs.load_table("bronze.events")
loaded = table.metadata_location
before = table.scan().to_arrow().num_rows
table.append(rows([4]))
print(json.dumps({
    "loaded": loaded,
    "rows_before": before,
    "rows_after": theirs.load_table("bronze.events").scan().to_arrow().num_rows,
    "location": table.metadata_location,
    "silver_exists": theirs.namespace_exists("silver"),
    "silver": theirs.load_namespace_properties("silver"),
    "silver_tables": sorted(theirs.list_tables("silver")),
    "copy_rows": theirs.load_table("silver.orders_copy").scan().to_arrow().num_rows,
}))
`,
          env,
        );
        assert.equal(seen.loaded, next);
        assert.equal(seen.rows_before, 3);
        assert.equal(seen.rows_after, 4);
        assert.equal(seen.silver_exists, true);
        assert.deepEqual(seen.silver, { exists: 'true' });
        assert.deepEqual(seen.silver_tables, [
          ['silver', 'orders'],
          ['silver', 'orders_copy'],
        ]);
        assert.equal(seen.copy_rows, 0);
        assert.deepEqual(await catalog.loadTableEntry('bronze.events'), {
          identifier: { namespace: ['bronze'], name: 'events' },
          metadataLocation: seen.location,
          previousMetadataLocation: next,
        });
      } finally {
        await catalog.close();
      }
      // Both wrote table rows the same way: iceberg_type TABLE.
      const db = new DatabaseSync(env.THEIRS, { readOnly: true });
      const types = db.prepare('SELECT DISTINCT iceberg_type AS type FROM iceberg_tables').all();
      db.close();
      assert.deepEqual(
        types.map((row) => row.type),
        ['TABLE'],
      );
    });
  });
});

describe('SQL catalog on PostgreSQL shared with pyiceberg', { skip: pyiceberg.skip || postgres.skip }, () => {
  it('pyiceberg and Tributary see and commit each other’s tables', async () => {
    const serverUrl = postgres.info?.url ?? '';
    const database = `tributary_pyiceberg_${randomUUID().replaceAll('-', '')}`;
    const admin = async (sql: string) => {
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      try {
        await client.query(sql);
      } finally {
        await client.end();
      }
    };
    await admin(`CREATE DATABASE ${database}`);
    const url = new URL(serverUrl);
    url.pathname = `/${database}`;
    try {
      await withDir(async (dir) => {
        const env = {
          WAREHOUSE: path.join(dir, 'warehouse'),
          PG_URI: url.toString().replace(/^postgresql:/, 'postgresql+psycopg2:'),
        };
        const catalog = await openSqlCatalog({
          name: 'tributary',
          uri: url.toString(),
          warehouse: env.WAREHOUSE,
        });
        try {
          await catalog.createNamespace('bronze', { owner: 'data-eng' });
          const made = await python<{ location: string; namespaces: string[][] }>(
            `
ours = SqlCatalog("tributary", uri=os.environ["PG_URI"], warehouse="file://" + os.environ["WAREHOUSE"])
namespaces = ours.list_namespaces()
ours.create_namespace("silver")
table = ours.create_table("silver.orders", schema=rows([]).schema)
table.append(rows([1, 2]))
print(json.dumps({"location": table.metadata_location, "namespaces": namespaces}))
`,
            env,
          );
          assert.deepEqual(made.namespaces, [['bronze']]);
          assert.deepEqual(await catalog.listNamespaces(), [['bronze'], ['silver']]);
          assert.equal(await catalog.getMetadataLocation('silver.orders'), made.location);
          await catalog.registerTable('bronze.orders_v1', made.location);
          const seen = await python<{ rows: number; tables: string[][] }>(
            `
ours = SqlCatalog("tributary", uri=os.environ["PG_URI"], warehouse="file://" + os.environ["WAREHOUSE"])
print(json.dumps({"rows": ours.load_table("bronze.orders_v1").scan().to_arrow().num_rows, "tables": ours.list_tables("bronze")}))
`,
            env,
          );
          assert.deepEqual(seen, { rows: 2, tables: [['bronze', 'orders_v1']] });
        } finally {
          await catalog.close();
        }
      });
    } finally {
      await admin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    }
  });

  it('`tributary catalog info` gives pyiceberg a URI it opens, also for a catalog written postgres://', async () => {
    const serverUrl = postgres.info?.url ?? '';
    const database = `tributary_catalog_info_${randomUUID().replaceAll('-', '')}`;
    const client = new pg.Client({ connectionString: serverUrl });
    await client.connect();
    await client.query(`CREATE DATABASE ${database}`);
    const url = new URL(serverUrl);
    url.pathname = `/${database}`;
    try {
      await withDir(async (dir) => {
        // The short scheme libpq, Heroku and many platforms hand out; the catalog accepts it.
        const uri = url.toString().replace(/^postgresql:/, 'postgres:');
        await writeFile(
          path.join(dir, 'tributary.yaml'),
          `project: info\ncatalog:\n  type: sql\n  uri: "${uri}"\n`,
        );
        await writeFile(path.join(dir, 'schema.json'), '{"fields": [{"name": "id", "type": "long"}]}');
        await writeFile(path.join(dir, 'rows.ndjson'), '{"id": 1}\n{"id": 2}\n');
        const ok = async (...args: string[]) => {
          const result = await tributary(args, { cwd: dir });
          assert.equal(result.code, 0, `tributary ${args.join(' ')}: ${result.stderr}`);
          return result.stdout;
        };
        await ok('tables', 'create', 'shop.events', '--schema', 'schema.json');
        await ok('tables', 'append', 'shop.events', 'rows.ndjson');
        const info = await ok('catalog', 'info');
        const printed = /SqlCatalog\("tributary", uri="([^"]+)", warehouse="([^"]+)"\)/.exec(info);
        assert.ok(printed, info);
        // The password is redacted in what it prints; the user puts theirs back.
        const [, sqlalchemy = '', warehouse = ''] = printed;
        assert.match(sqlalchemy, /^postgresql\+psycopg2:\/\/.*«redacted»@/);
        const rows = await python<number>(
          `
ours = SqlCatalog("tributary", uri=os.environ["URI"], warehouse=os.environ["PRINTED_WAREHOUSE"])
print(json.dumps(ours.load_table("shop.events").scan().to_arrow().num_rows))
`,
          {
            URI: sqlalchemy.replace('«redacted»', url.password),
            PRINTED_WAREHOUSE: warehouse,
            WAREHOUSE: path.join(dir, 'warehouse'),
          },
        );
        assert.equal(rows, 2);
      });
    } finally {
      await client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await client.end();
    }
  });
});
