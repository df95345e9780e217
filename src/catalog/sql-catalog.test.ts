import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { isTributaryError } from '../errors.ts';
import { assertOneHistory, failsWith, sqlCatalogCases } from './sql-catalog.case.ts';
import { openSqlCatalog, parseTableIdentifier } from './sql-catalog.ts';
import { openSqliteDriver } from './sqlite-driver.ts';

const run = promisify(execFile);

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'tributary-catalog-'));
}

sqlCatalogCases('SQLite', async () => {
  const dir = await tempDir();
  return {
    uri: `sqlite:${path.join(dir, 'catalog.db')}`,
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('SQL catalog on SQLite', () => {
  it('creates the database file and its directory, in WAL mode', async () => {
    const dir = await tempDir();
    try {
      const file = path.join(dir, 'nested', '.tributary', 'catalog.db');
      const catalog = await openSqlCatalog({ name: 'tributary', uri: `sqlite:${file}`, warehouse: '/w' });
      await catalog.createNamespace('bronze');
      await catalog.close();
      assert.ok(existsSync(file));
      const db = new DatabaseSync(file);
      const mode = db.prepare('PRAGMA journal_mode').get() as { journal_mode: string };
      db.close();
      assert.equal(mode.journal_mode, 'wal');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('runs in memory for tests with sqlite::memory:', async () => {
    const catalog = await openSqlCatalog({ name: 'mem', uri: 'sqlite::memory:', warehouse: 'file:///w/' });
    try {
      assert.equal(catalog.warehouse, 'file:///w');
      await catalog.createNamespace('bronze');
      await catalog.registerTable('bronze.events', 'file:///w/bronze/events/metadata/v1.metadata.json');
      assert.deepEqual(await catalog.listTables('bronze'), [{ namespace: ['bronze'], name: 'events' }]);
    } finally {
      await catalog.close();
    }
  });

  it('refuses bad URIs, catalog names and warehouses with CONFIG_INVALID', async () => {
    const cases: [Partial<{ name: string; uri: string; warehouse: string }>, string][] = [
      [{ uri: 'mysql://localhost/catalog' }, 'mysql://'],
      [{ uri: 'sqlite:' }, 'no file'],
      [{ uri: 'sqlite:///tmp/catalog.db' }, 'ambiguous'],
      [{ uri: '' }, 'empty'],
      [{ name: '' }, 'catalog name'],
      [{ name: 'bad\nname' }, 'catalog name'],
      [{ warehouse: 'relative/warehouse' }, 'warehouse'],
      [{ warehouse: '' }, 'warehouse'],
    ];
    for (const [override, word] of cases) {
      await assert.rejects(
        openSqlCatalog({ name: 'tributary', uri: 'sqlite::memory:', warehouse: '/w', ...override }),
        failsWith('CONFIG_INVALID', word),
      );
    }
  });

  it('reports a database file that cannot be opened as SERVICE_UNAVAILABLE', async () => {
    const dir = await tempDir();
    try {
      mkdirSync(path.join(dir, 'catalog.db'));
      await assert.rejects(
        openSqlCatalog({ name: 'tributary', uri: `sqlite:${path.join(dir, 'catalog.db')}`, warehouse: '/w' }),
        (error: unknown) => failsWith('SERVICE_UNAVAILABLE', 'catalog.db')(error) && isTributaryError(error),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('waits for another writer’s lock, then fails retryably', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'catalog.db');
    const holder = new DatabaseSync(file);
    try {
      holder.exec('PRAGMA journal_mode = WAL');
      holder.exec('CREATE TABLE t (x INTEGER)');
      holder.exec('BEGIN IMMEDIATE');
      const driver = openSqliteDriver(file, { busyTimeoutMs: 200 });
      const started = Date.now();
      await assert.rejects(driver.execute('INSERT INTO t VALUES (1)'), (error: unknown) => {
        assert.ok(failsWith('SERVICE_UNAVAILABLE', 'locked')(error));
        assert.ok(isTributaryError(error) && error.retryable && error.context.failure === 'busy');
        return true;
      });
      assert.ok(Date.now() - started >= 150, 'it waited for the busy timeout');
      holder.exec('COMMIT');
      assert.equal(await driver.execute('INSERT INTO t VALUES (1)'), 1);
      await driver.close();
    } finally {
      holder.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps one unbroken history when processes race to commit one table', async () => {
    const dir = await tempDir();
    try {
      const uri = `sqlite:${path.join(dir, 'catalog.db')}`;
      const catalog = await openSqlCatalog({ name: 'tributary', uri, warehouse: '/w' });
      await catalog.createNamespace('silver');
      await catalog.registerTable('silver.orders', 'file:///w/m/v0.metadata.json');
      const worker = `
        const { openSqlCatalog } = await import(process.env.CATALOG_MODULE);
        const catalog = await openSqlCatalog({ name: 'tributary', uri: process.env.CATALOG_URI, warehouse: '/w' });
        const commits = [];
        let conflicts = 0;
        for (let done = 0; done < 25; ) {
          const expected = await catalog.getMetadataLocation('silver.orders');
          const next = 'file:///w/m/' + process.env.WRITER + '-' + done + '.metadata.json';
          try {
            await catalog.swapMetadataLocation('silver.orders', expected, next);
            commits.push([expected, next]);
            done += 1;
          } catch (error) {
            if (error.code !== 'ICEBERG_COMMIT_CONFLICT') throw error;
            conflicts += 1;
          }
        }
        await catalog.close();
        process.stdout.write(JSON.stringify({ commits, conflicts }));
      `;
      const module = pathToFileURL(path.join(import.meta.dirname, 'sql-catalog.ts')).href;
      const results = await Promise.all(
        ['p0', 'p1', 'p2', 'p3'].map(async (writer) => {
          const { stdout } = await run(process.execPath, ['--input-type=module', '-e', worker], {
            env: { ...process.env, CATALOG_MODULE: module, CATALOG_URI: uri, WRITER: writer },
          });
          return JSON.parse(stdout) as { commits: [string, string][]; conflicts: number };
        }),
      );
      const commits = results.flatMap((result) => result.commits);
      assert.equal(commits.length, 100);
      assertOneHistory(
        commits,
        'file:///w/m/v0.metadata.json',
        await catalog.getMetadataLocation('silver.orders'),
      );
      await catalog.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('parseTableIdentifier', () => {
  it('splits off the last part as the name', () => {
    assert.deepEqual(parseTableIdentifier('silver.orders'), { namespace: ['silver'], name: 'orders' });
    assert.deepEqual(parseTableIdentifier('a.b.c'), { namespace: ['a', 'b'], name: 'c' });
    assert.ok(Object.isFrozen(parseTableIdentifier('a.b')));
  });

  it('refuses hostile or malformed names with INVALID_INPUT naming them', () => {
    for (const text of [
      'orders',
      '.orders',
      'silver.',
      'a..b',
      'silver.or\u0007ders',
      'silver.\u202Eorders\u2028',
      ` silver.orders`,
    ]) {
      assert.throws(
        () => parseTableIdentifier(text),
        (error: unknown) =>
          isTributaryError(error, 'INVALID_INPUT') && error.message.includes(JSON.stringify(text)),
        text,
      );
    }
    assert.throws(() => parseTableIdentifier(`silver.${'x'.repeat(256)}`), failsWith('INVALID_INPUT', '255'));
    assert.throws(
      () => parseTableIdentifier(`${'x'.repeat(250)}.abcdef.t`),
      failsWith('INVALID_INPUT', '255'),
    );
    assert.deepEqual(parseTableIdentifier(`${'é'.repeat(255)}.t`).namespace, ['é'.repeat(255)]);
  });
});
