/**
 * The behaviour every database under the SQL catalog must show, as one suite: `sqlCatalogCases` is called
 * with a factory of fresh, empty databases by `sql-catalog.test.ts` (SQLite) and by
 * `test/integration/sql-catalog-postgres.test.ts` (PostgreSQL).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTributaryError, type ErrorCode } from '../errors.ts';
import { openSqlCatalog, type SqlCatalog } from './sql-catalog.ts';
import { openSqlDriver, type SqlDriver } from './sql-driver.ts';

export interface CatalogDatabase {
  /** The catalog URI of a fresh, empty database. */
  readonly uri: string;
  readonly dispose: () => Promise<void>;
}

interface Context {
  /** Opens a catalog of that name on the test's database; each call is a new connection. */
  readonly open: (name?: string) => Promise<SqlCatalog>;
  /** The test's database, for statements the catalog API does not make. */
  readonly raw: () => Promise<SqlDriver>;
}

const WAREHOUSE = '/srv/warehouse';

/** A predicate for assert.rejects: a TributaryError of that code whose message contains every word. */
export function failsWith(code: ErrorCode, ...words: string[]) {
  return (error: unknown): boolean => {
    assert.ok(isTributaryError(error), `expected a TributaryError ${code}, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    for (const word of words)
      assert.ok(error.message.includes(word), `"${error.message}" should mention ${word}`);
    return true;
  };
}

// Java's JdbcCatalog "V0" tables: no iceberg_type column, nullable property values.
const JAVA_V0_TABLES = [
  `CREATE TABLE iceberg_tables (catalog_name VARCHAR(255) NOT NULL, table_namespace VARCHAR(255) NOT NULL,
   table_name VARCHAR(255) NOT NULL, metadata_location VARCHAR(1000), previous_metadata_location VARCHAR(1000),
   PRIMARY KEY (catalog_name, table_namespace, table_name))`,
  `CREATE TABLE iceberg_namespace_properties (catalog_name VARCHAR(255) NOT NULL, namespace VARCHAR(255) NOT NULL,
   property_key VARCHAR(255), property_value VARCHAR(1000), PRIMARY KEY (catalog_name, namespace, property_key))`,
];

export function sqlCatalogCases(name: string, createDatabase: () => Promise<CatalogDatabase>): void {
  const withDatabase = (work: (context: Context) => Promise<void>) => async () => {
    const database = await createDatabase();
    const opened: SqlCatalog[] = [];
    let driver: SqlDriver | undefined;
    const context: Context = {
      open: async (catalogName = 'tributary') => {
        const catalog = await openSqlCatalog({ name: catalogName, uri: database.uri, warehouse: WAREHOUSE });
        opened.push(catalog);
        return catalog;
      },
      raw: async () => (driver ??= await openSqlDriver(database.uri)),
    };
    try {
      await work(context);
    } finally {
      for (const catalog of opened) await catalog.close();
      await driver?.close();
      await database.dispose();
    }
  };

  describe(`SQL catalog: ${name}`, () => {
    it(
      'creates the catalog tables once, in the shape pyiceberg and Java read',
      withDatabase(async ({ open, raw }) => {
        await open();
        await open(); // a second opener finds the tables
        const db = await raw();
        assert.deepEqual(
          await db.query(
            `SELECT catalog_name, table_namespace, table_name, metadata_location, previous_metadata_location,
                    iceberg_type FROM iceberg_tables`,
          ),
          [],
        );
        assert.deepEqual(
          await db.query(
            'SELECT catalog_name, namespace, property_key, property_value FROM iceberg_namespace_properties',
          ),
          [],
        );
      }),
    );

    it(
      'creates namespaces with properties and tells whether they exist',
      withDatabase(async ({ open, raw }) => {
        const catalog = await open();
        assert.equal(await catalog.namespaceExists('bronze'), false);
        await catalog.createNamespace('bronze', { owner: 'data-eng', comment: 'raw events\nas received' });
        await catalog.createNamespace(['silver']);
        assert.equal(await catalog.namespaceExists(['bronze']), true);
        assert.deepEqual(await catalog.loadNamespaceProperties('bronze'), {
          owner: 'data-eng',
          comment: 'raw events\nas received',
        });
        assert.deepEqual(await catalog.loadNamespaceProperties('silver'), {});
        // The reserved property Java and pyiceberg use to make a namespace exist is written, never shown.
        const rows = await (
          await raw()
        ).query('SELECT namespace, property_value FROM iceberg_namespace_properties WHERE property_key = ?', [
          'exists',
        ]);
        assert.deepEqual(rows.map((row) => [row.namespace, row.property_value]).sort(), [
          ['bronze', 'true'],
          ['silver', 'true'],
        ]);
        await assert.rejects(catalog.createNamespace('bronze'), failsWith('NAMESPACE_EXISTS', 'bronze'));
        await assert.rejects(
          catalog.loadNamespaceProperties('gold'),
          failsWith('NAMESPACE_NOT_FOUND', 'gold'),
        );
        await assert.rejects(
          catalog.createNamespace('gold', { exists: 'false' }),
          failsWith('INVALID_INPUT', 'exists'),
        );
        assert.equal(await catalog.namespaceExists('gold'), false, 'a refused create leaves nothing behind');
      }),
    );

    it(
      'lists namespaces level by level; a namespace below another makes its parents exist',
      withDatabase(async ({ open }) => {
        const catalog = await open();
        await catalog.createNamespace('silver.eu.west');
        await catalog.createNamespace('silver.us');
        await catalog.createNamespace('bronze');
        await catalog.registerTable('silver.eu.west.orders', 'file:///w/orders/metadata/v1.metadata.json');
        assert.equal(await catalog.namespaceExists('silver'), true);
        assert.equal(await catalog.namespaceExists('silver.eu'), true);
        assert.equal(
          await catalog.namespaceExists('silver.e'),
          false,
          'a prefix of a level is not a namespace',
        );
        assert.deepEqual(await catalog.listNamespaces(), [['bronze'], ['silver']]);
        assert.deepEqual(await catalog.listNamespaces('silver'), [
          ['silver', 'eu'],
          ['silver', 'us'],
        ]);
        assert.deepEqual(await catalog.listNamespaces(['silver', 'eu']), [['silver', 'eu', 'west']]);
        assert.deepEqual(await catalog.listNamespaces('silver.eu.west'), []);
        await assert.rejects(catalog.listNamespaces('gold'), failsWith('NAMESPACE_NOT_FOUND', 'gold'));
        await assert.rejects(catalog.createNamespace('silver'), failsWith('NAMESPACE_EXISTS', 'silver'));
      }),
    );

    it(
      'treats LIKE wildcards and letter case in names literally',
      withDatabase(async ({ open }) => {
        const catalog = await open();
        await catalog.createNamespace('a_b.child');
        await catalog.createNamespace('axb.other');
        await catalog.createNamespace('100%.x');
        await catalog.createNamespace('Bronze');
        assert.deepEqual(await catalog.listNamespaces('a_b'), [['a_b', 'child']]);
        assert.equal(await catalog.namespaceExists('a%'), false);
        assert.equal(await catalog.namespaceExists('a_'), false);
        assert.equal(await catalog.namespaceExists('100%'), true);
        assert.equal(await catalog.namespaceExists('bronze'), false);
        assert.equal(await catalog.namespaceExists('Bronze'), true);
      }),
    );

    it(
      'updates namespace properties atomically and reports what changed',
      withDatabase(async ({ open }) => {
        const catalog = await open();
        await catalog.createNamespace('bronze', { owner: 'a', retention: '7d', tier: 'hot' });
        const summary = await catalog.updateNamespaceProperties('bronze', ['retention', 'nope'], {
          owner: 'b',
          team: 'ingest',
        });
        assert.deepEqual(summary, { removed: ['retention'], updated: ['owner', 'team'], missing: ['nope'] });
        assert.deepEqual(await catalog.loadNamespaceProperties('bronze'), {
          owner: 'b',
          team: 'ingest',
          tier: 'hot',
        });
        await catalog.updateNamespaceProperties('bronze', ['owner', 'team', 'tier'], {});
        assert.equal(
          await catalog.namespaceExists('bronze'),
          true,
          'removing every property keeps the namespace',
        );
        assert.deepEqual(await catalog.loadNamespaceProperties('bronze'), {});
        await assert.rejects(
          catalog.updateNamespaceProperties('bronze', ['owner'], { owner: 'c' }),
          failsWith('INVALID_INPUT', 'owner'),
        );
        await assert.rejects(
          catalog.updateNamespaceProperties('bronze', ['exists'], {}),
          failsWith('INVALID_INPUT', 'exists'),
        );
        await assert.rejects(
          catalog.updateNamespaceProperties('gold', [], { a: 'b' }),
          failsWith('NAMESPACE_NOT_FOUND', 'gold'),
        );
        await assert.rejects(
          catalog.updateNamespaceProperties('bronze', [], { big: 'x'.repeat(1001) }),
          failsWith('INVALID_INPUT', 'big'),
        );
      }),
    );

    it(
      'drops only empty namespaces',
      withDatabase(async ({ open }) => {
        const catalog = await open();
        await catalog.createNamespace('bronze', { owner: 'a' });
        await catalog.createNamespace('silver');
        await catalog.createNamespace('silver.eu');
        await catalog.registerTable('bronze.events', 'file:///w/events/metadata/v1.metadata.json');
        await assert.rejects(
          catalog.dropNamespace('bronze'),
          failsWith('NAMESPACE_NOT_EMPTY', 'bronze.events'),
        );
        await assert.rejects(catalog.dropNamespace('silver'), failsWith('NAMESPACE_NOT_EMPTY', 'silver.eu'));
        await assert.rejects(catalog.dropNamespace('gold'), failsWith('NAMESPACE_NOT_FOUND', 'gold'));
        await catalog.dropTable('bronze.events');
        await catalog.dropNamespace('bronze');
        await catalog.dropNamespace('silver.eu');
        await catalog.dropNamespace('silver');
        assert.deepEqual(await catalog.listNamespaces(), []);
      }),
    );

    it(
      'registers tables, lists them by namespace and returns their metadata location',
      withDatabase(async ({ open, raw }) => {
        const catalog = await open();
        const location = 'file:///w/silver/orders/metadata/00000-a.metadata.json';
        await assert.rejects(
          catalog.registerTable('silver.orders', location),
          failsWith('NAMESPACE_NOT_FOUND', 'silver'),
        );
        await catalog.createNamespace('silver');
        await catalog.createNamespace('silver.eu');
        await catalog.registerTable('silver.orders', location);
        await catalog.registerTable(
          { namespace: ['silver'], name: 'customers' },
          'file:///w/c/v1.metadata.json',
        );
        await catalog.registerTable('silver.eu.orders', 'file:///w/eu/v1.metadata.json');
        assert.equal(await catalog.tableExists('silver.orders'), true);
        assert.equal(await catalog.tableExists('silver.nope'), false);
        assert.equal(await catalog.getMetadataLocation('silver.orders'), location);
        assert.deepEqual(await catalog.loadTableEntry('silver.orders'), {
          identifier: { namespace: ['silver'], name: 'orders' },
          metadataLocation: location,
          previousMetadataLocation: undefined,
        });
        assert.deepEqual(await catalog.listTables('silver'), [
          { namespace: ['silver'], name: 'customers' },
          { namespace: ['silver'], name: 'orders' },
        ]);
        assert.deepEqual(await catalog.listTables(['silver', 'eu']), [
          { namespace: ['silver', 'eu'], name: 'orders' },
        ]);
        await assert.rejects(catalog.listTables('gold'), failsWith('NAMESPACE_NOT_FOUND', 'gold'));
        await assert.rejects(
          catalog.registerTable('silver.orders', location),
          failsWith('TABLE_EXISTS', 'silver.orders'),
        );
        await assert.rejects(
          catalog.getMetadataLocation('silver.nope'),
          failsWith('TABLE_NOT_FOUND', 'silver.nope'),
        );
        const rows = await (
          await raw()
        ).query('SELECT iceberg_type, previous_metadata_location FROM iceberg_tables WHERE table_name = ?', [
          'orders',
        ]);
        assert.deepEqual(
          rows.map((row) => ({ ...row })),
          [
            { iceberg_type: 'TABLE', previous_metadata_location: null },
            { iceberg_type: 'TABLE', previous_metadata_location: null },
          ],
        );
      }),
    );

    it(
      'commits by compare-and-swap, recording the previous location',
      withDatabase(async ({ open }) => {
        const catalog = await open();
        await catalog.createNamespace('silver');
        await catalog.registerTable('silver.orders', 'file:///w/m/v1.metadata.json');
        await catalog.swapMetadataLocation(
          'silver.orders',
          'file:///w/m/v1.metadata.json',
          'file:///w/m/v2.metadata.json',
        );
        assert.deepEqual(await catalog.loadTableEntry('silver.orders'), {
          identifier: { namespace: ['silver'], name: 'orders' },
          metadataLocation: 'file:///w/m/v2.metadata.json',
          previousMetadataLocation: 'file:///w/m/v1.metadata.json',
        });
        const stale = await catalog
          .swapMetadataLocation(
            'silver.orders',
            'file:///w/m/v1.metadata.json',
            'file:///w/m/v3.metadata.json',
          )
          .then(
            () => undefined,
            (error: unknown) => error,
          );
        assert.ok(failsWith('ICEBERG_COMMIT_CONFLICT', 'silver.orders')(stale));
        assert.ok(isTributaryError(stale) && stale.retryable, 'a lost race is retryable');
        assert.equal(
          isTributaryError(stale) && stale.context.currentLocation,
          'file:///w/m/v2.metadata.json',
        );
        assert.equal(await catalog.getMetadataLocation('silver.orders'), 'file:///w/m/v2.metadata.json');
        await assert.rejects(
          catalog.swapMetadataLocation('silver.nope', 'file:///a', 'file:///b'),
          failsWith('TABLE_NOT_FOUND', 'silver.nope'),
        );
        await assert.rejects(
          catalog.swapMetadataLocation(
            'silver.orders',
            'file:///w/m/v2.metadata.json',
            'file:///w/m/v2.metadata.json',
          ),
          failsWith('INVALID_INPUT', 'same metadata file'),
        );
      }),
    );

    it(
      'lets exactly one of two writers racing from the same metadata commit',
      withDatabase(async ({ open }) => {
        const [first, second] = [await open(), await open()];
        await first.createNamespace('silver');
        await first.registerTable('silver.orders', 'file:///w/m/v1.metadata.json');
        for (let round = 1; round <= 10; round += 1) {
          const expected = await first.getMetadataLocation('silver.orders');
          const outcomes = await Promise.allSettled([
            first.swapMetadataLocation('silver.orders', expected, `file:///w/m/a-${round}.metadata.json`),
            second.swapMetadataLocation('silver.orders', expected, `file:///w/m/b-${round}.metadata.json`),
          ]);
          const won = outcomes.flatMap((outcome, i) => (outcome.status === 'fulfilled' ? [i] : []));
          assert.equal(won.length, 1, `round ${round}: exactly one writer wins`);
          const lost = outcomes.find((outcome) => outcome.status === 'rejected');
          assert.ok(lost && failsWith('ICEBERG_COMMIT_CONFLICT')(lost.reason));
          const winner = won[0] === 0 ? 'a' : 'b';
          assert.deepEqual(await second.loadTableEntry('silver.orders'), {
            identifier: { namespace: ['silver'], name: 'orders' },
            metadataLocation: `file:///w/m/${winner}-${round}.metadata.json`,
            previousMetadataLocation: expected,
          });
        }
      }),
    );

    it(
      'keeps one unbroken history under many writers that retry on conflict',
      withDatabase(async ({ open }) => {
        const writers = await Promise.all(Array.from({ length: 4 }, () => open()));
        const [setup] = writers;
        assert.ok(setup);
        await setup.createNamespace('silver');
        await setup.registerTable('silver.orders', 'file:///w/m/v0.metadata.json');
        const commits: [string, string][] = [];
        let conflicts = 0;
        await Promise.all(
          writers.map(async (catalog, writer) => {
            for (let done = 0; done < 10;) {
              const expected = await catalog.getMetadataLocation('silver.orders');
              const next = `file:///w/m/w${writer}-${done}.metadata.json`;
              try {
                await catalog.swapMetadataLocation('silver.orders', expected, next);
                commits.push([expected, next]);
                done += 1;
              } catch (error) {
                if (!isTributaryError(error, 'ICEBERG_COMMIT_CONFLICT')) throw error;
                conflicts += 1;
              }
            }
          }),
        );
        assertOneHistory(
          commits,
          'file:///w/m/v0.metadata.json',
          await setup.getMetadataLocation('silver.orders'),
        );
        assert.equal(commits.length, 40);
        assert.ok(conflicts >= 0);
      }),
    );

    it(
      'renames tables within and across namespaces',
      withDatabase(async ({ open }) => {
        const catalog = await open();
        await catalog.createNamespace('bronze');
        await catalog.createNamespace('silver');
        await catalog.registerTable('bronze.orders', 'file:///w/o.metadata.json');
        await catalog.registerTable('silver.orders', 'file:///w/s.metadata.json');
        await assert.rejects(
          catalog.renameTable('bronze.orders', 'silver.orders'),
          failsWith('TABLE_EXISTS', 'silver.orders'),
        );
        await assert.rejects(
          catalog.renameTable('bronze.orders', 'gold.orders'),
          failsWith('NAMESPACE_NOT_FOUND', 'gold'),
        );
        await assert.rejects(
          catalog.renameTable('bronze.nope', 'bronze.other'),
          failsWith('TABLE_NOT_FOUND', 'bronze.nope'),
        );
        await catalog.renameTable('bronze.orders', 'bronze.orders'); // a no-op
        await catalog.renameTable('bronze.orders', 'silver.orders_raw');
        assert.equal(await catalog.tableExists('bronze.orders'), false);
        assert.equal(await catalog.getMetadataLocation('silver.orders_raw'), 'file:///w/o.metadata.json');
        assert.equal(await catalog.getMetadataLocation('silver.orders'), 'file:///w/s.metadata.json');
      }),
    );

    it(
      'drops a table, returning its last metadata location',
      withDatabase(async ({ open }) => {
        const catalog = await open();
        await catalog.createNamespace('silver');
        await catalog.registerTable('silver.orders', 'file:///w/v1.metadata.json');
        await catalog.swapMetadataLocation(
          'silver.orders',
          'file:///w/v1.metadata.json',
          'file:///w/v2.metadata.json',
        );
        assert.equal(await catalog.dropTable('silver.orders'), 'file:///w/v2.metadata.json');
        assert.equal(await catalog.tableExists('silver.orders'), false);
        await assert.rejects(
          catalog.dropTable('silver.orders'),
          failsWith('TABLE_NOT_FOUND', 'silver.orders'),
        );
        assert.deepEqual(await catalog.listTables('silver'), []);
      }),
    );

    it(
      'keeps catalogs of different names apart in one database',
      withDatabase(async ({ open }) => {
        const [tributary, other] = [await open('tributary'), await open('other')];
        await tributary.createNamespace('silver');
        await tributary.registerTable('silver.orders', 'file:///w/v1.metadata.json');
        assert.equal(await other.namespaceExists('silver'), false);
        assert.equal(await other.tableExists('silver.orders'), false);
        await other.createNamespace('silver');
        await other.registerTable('silver.orders', 'file:///other/v1.metadata.json');
        assert.equal(await tributary.getMetadataLocation('silver.orders'), 'file:///w/v1.metadata.json');
        assert.equal(await other.dropTable('silver.orders'), 'file:///other/v1.metadata.json');
        assert.equal(await tributary.tableExists('silver.orders'), true);
      }),
    );

    it(
      'stores hostile names verbatim and refuses malformed ones',
      withDatabase(async ({ open }) => {
        const catalog = await open();
        const namespace = `x'); DROP TABLE iceberg_tables; --`;
        const name = `o"rders; DELETE FROM iceberg_namespace_properties`;
        await catalog.createNamespace([namespace], { "k'ey": "v'alue" });
        await catalog.registerTable({ namespace: [namespace], name }, "file:///w/it's.metadata.json");
        assert.deepEqual(await catalog.listTables([namespace]), [{ namespace: [namespace], name }]);
        assert.deepEqual(await catalog.loadNamespaceProperties([namespace]), { "k'ey": "v'alue" });
        await catalog.createNamespace('ünïcödé.名前');
        assert.deepEqual(await catalog.listNamespaces('ünïcödé'), [['ünïcödé', '名前']]);
        const refused: [() => Promise<unknown>, string][] = [
          [() => catalog.createNamespace(''), 'empty'],
          [() => catalog.createNamespace(['a.b']), 'dot'],
          [() => catalog.createNamespace(['bad\u0000']), 'control'],
          [() => catalog.createNamespace([' padded']), 'blank'],
          [() => catalog.createNamespace(['n'.repeat(256)]), 'longer'],
          [() => catalog.tableExists('orders'), 'no namespace'],
          [() => catalog.tableExists('silver.'), 'empty'],
          [() => catalog.tableExists('silver.bad\nname'), 'control'],
          [() => catalog.registerTable('silver.x', ''), 'empty'],
          [() => catalog.registerTable('silver.x', `file:///${'x'.repeat(1000)}`), 'longer'],
          [() => catalog.createNamespace('ok', { '': 'v' }), 'empty key'],
        ];
        for (const [call, word] of refused) await assert.rejects(call(), failsWith('INVALID_INPUT', word));
        assert.deepEqual(await catalog.listNamespaces(), [[namespace], ['ünïcödé']]);
      }),
    );

    it(
      'places new tables under the warehouse or the namespace location',
      withDatabase(async ({ open }) => {
        const catalog = await open();
        assert.equal(catalog.warehouse, `file://${WAREHOUSE}`);
        await catalog.createNamespace('silver.eu');
        await catalog.createNamespace('gold', { location: 's3://bucket/gold/' });
        assert.equal(
          await catalog.defaultTableLocation('silver.eu.orders'),
          `file://${WAREHOUSE}/silver.eu/orders`,
        );
        assert.equal(await catalog.defaultTableLocation('gold.kpis'), 's3://bucket/gold/kpis');
        await assert.rejects(
          catalog.defaultTableLocation('nope.t'),
          failsWith('NAMESPACE_NOT_FOUND', 'nope'),
        );
      }),
    );

    it(
      "works on Java's V0 tables (no iceberg_type column) without altering them",
      withDatabase(async ({ open, raw }) => {
        const db = await raw();
        for (const statement of JAVA_V0_TABLES) await db.execute(statement);
        // Written by Java: a namespace with properties (and `exists`), a table in a namespace without any.
        await db.execute(
          "INSERT INTO iceberg_namespace_properties VALUES ('tributary', 'bronze', 'exists', 'true'), ('tributary', 'bronze', 'owner', 'java')",
        );
        await db.execute(
          "INSERT INTO iceberg_tables VALUES ('tributary', 'legacy', 'events', 'file:///w/e/v1.metadata.json', NULL)",
        );
        const catalog = await open();
        assert.deepEqual(await catalog.listNamespaces(), [['bronze'], ['legacy']]);
        assert.deepEqual(await catalog.loadNamespaceProperties('bronze'), { owner: 'java' });
        assert.deepEqual(await catalog.loadNamespaceProperties('legacy'), {});
        assert.deepEqual(await catalog.listTables('legacy'), [{ namespace: ['legacy'], name: 'events' }]);
        await catalog.registerTable('bronze.orders', 'file:///w/o/v1.metadata.json');
        await catalog.swapMetadataLocation(
          'bronze.orders',
          'file:///w/o/v1.metadata.json',
          'file:///w/o/v2.metadata.json',
        );
        await catalog.renameTable('legacy.events', 'bronze.events');
        assert.deepEqual(await catalog.listTables('bronze'), [
          { namespace: ['bronze'], name: 'events' },
          { namespace: ['bronze'], name: 'orders' },
        ]);
        assert.equal(
          await catalog.namespaceExists('legacy'),
          false,
          'a namespace that only held a table is gone',
        );
        assert.equal(await catalog.dropTable('bronze.orders'), 'file:///w/o/v2.metadata.json');
        await assert.rejects(db.query('SELECT iceberg_type FROM iceberg_tables'), (error: unknown) =>
          isTributaryError(error, 'SERVICE_UNAVAILABLE'),
        );
      }),
    );

    it(
      'never treats a view (iceberg_type VIEW) as a table',
      withDatabase(async ({ open, raw }) => {
        const catalog = await open();
        await catalog.createNamespace('gold');
        await (
          await raw()
        ).execute(
          "INSERT INTO iceberg_tables VALUES ('tributary', 'gold', 'kpis', 'file:///w/v/kpis.metadata.json', NULL, 'VIEW')",
        );
        assert.deepEqual(await catalog.listTables('gold'), []);
        assert.equal(await catalog.tableExists('gold.kpis'), false);
        await assert.rejects(
          catalog.getMetadataLocation('gold.kpis'),
          failsWith('TABLE_NOT_FOUND', 'gold.kpis'),
        );
        await assert.rejects(
          catalog.swapMetadataLocation('gold.kpis', 'file:///w/v/kpis.metadata.json', 'file:///x'),
          failsWith('TABLE_NOT_FOUND'),
        );
        await assert.rejects(catalog.dropTable('gold.kpis'), failsWith('TABLE_NOT_FOUND'));
        await assert.rejects(
          catalog.registerTable('gold.kpis', 'file:///t'),
          failsWith('TABLE_EXISTS', 'view', 'gold.kpis'),
        );
        await assert.rejects(catalog.dropNamespace('gold'), failsWith('NAMESPACE_NOT_EMPTY', 'gold.kpis'));
        const [view] = await (await raw()).query('SELECT metadata_location FROM iceberg_tables');
        assert.equal(view?.metadata_location, 'file:///w/v/kpis.metadata.json', 'the view is untouched');
      }),
    );

    it(
      'refuses to be used once closed',
      withDatabase(async ({ open }) => {
        const catalog = await open();
        await catalog.close();
        await catalog.close();
        await assert.rejects(catalog.namespaceExists('x'), failsWith('SERVICE_UNAVAILABLE', 'closed'));
      }),
    );
  });
}

/** Asserts that `commits` ([expected, new] pairs) chain from `initial` to `final` with no fork or gap. */
export function assertOneHistory(
  commits: readonly (readonly [string, string])[],
  initial: string,
  final: string,
) {
  const next = new Map<string, string>();
  for (const [from, to] of commits) {
    assert.ok(!next.has(from), `two commits replaced ${from}: a lost update`);
    next.set(from, to);
  }
  let current = initial;
  let steps = 0;
  while (next.has(current)) {
    current = next.get(current) ?? '';
    steps += 1;
  }
  assert.equal(steps, commits.length, 'every commit is on the one history');
  assert.equal(current, final, 'the history ends at the current metadata');
}
