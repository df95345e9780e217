/**
 * The SQL catalog on the harness's real PostgreSQL: the shared catalog suite, each test in a database of its
 * own (created and dropped here, so parallel runs never collide), plus what only a server can do wrong.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import pg from 'pg';
import { isTributaryError } from '../../src/errors.ts';
import { failsWith, sqlCatalogCases, type CatalogDatabase } from '../../src/catalog/sql-catalog.case.ts';
import { openSqlCatalog } from '../../src/catalog/sql-catalog.ts';
import { freePort } from '../services/harness.ts';
import { useService } from '../services/index.ts';

const postgres = await useService('postgres');

/** A fresh database on the server at `serverUrl`; dropped (with its connections) by `dispose`. */
async function createDatabase(serverUrl: string): Promise<CatalogDatabase> {
  const name = `tributary_catalog_${randomUUID().replaceAll('-', '')}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: serverUrl });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return { uri: url.toString(), dispose: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

describe('SQL catalog on PostgreSQL', { skip: postgres.skip }, () => {
  const serverUrl = postgres.info?.url ?? '';

  sqlCatalogCases('PostgreSQL', () => createDatabase(serverUrl));

  it('lets many processes open a new database at once: one creates the tables, none fails', async () => {
    const database = await createDatabase(serverUrl);
    try {
      const catalogs = await Promise.all(
        Array.from({ length: 8 }, () =>
          openSqlCatalog({ name: 'tributary', uri: database.uri, warehouse: '/w' }),
        ),
      );
      const [first, second] = catalogs;
      await first?.createNamespace('bronze');
      assert.equal(await second?.namespaceExists('bronze'), true);
      for (const catalog of catalogs) await catalog.close();
    } finally {
      await database.dispose();
    }
  });

  it('reports a database that does not exist as SERVICE_UNAVAILABLE, not retryable', async () => {
    const url = new URL(serverUrl);
    url.pathname = '/tributary_no_such_database';
    await assert.rejects(
      openSqlCatalog({ name: 'tributary', uri: url.toString(), warehouse: '/w' }),
      (error: unknown) => {
        assert.ok(failsWith('SERVICE_UNAVAILABLE', 'tributary_no_such_database')(error));
        assert.ok(isTributaryError(error) && !error.retryable);
        return true;
      },
    );
  });
});

describe('SQL catalog on an unreachable PostgreSQL', () => {
  it('fails with a retryable SERVICE_UNAVAILABLE that does not show the password', async () => {
    const port = await freePort();
    await assert.rejects(
      openSqlCatalog({
        name: 'tributary',
        uri: `postgresql://tributary:s3cret-password@127.0.0.1:${port}/catalog`,
        warehouse: '/w',
      }),
      (error: unknown) => {
        assert.ok(failsWith('SERVICE_UNAVAILABLE', `127.0.0.1:${port}`)(error));
        assert.ok(isTributaryError(error) && error.retryable, 'a refused connection is retryable');
        assert.ok(!JSON.stringify({ message: error.message, context: error.context }).includes('s3cret'));
        return true;
      },
    );
  });
});
