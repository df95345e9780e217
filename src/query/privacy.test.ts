/** Erasure (GDPR): columns named like DuckDB's Parquet reader's, repeated erasures, files left uncommitted. */
import assert from 'node:assert/strict';
import { existsSync, utimesSync } from 'node:fs';
import { after, before, it } from 'node:test';
import { parseTableIdentifier } from '../catalog/identifier.ts';
import { decodeManifestList } from '../iceberg/manifest.ts';
import { writeFiles } from '../iceberg/operations/write.ts';
import { eraseRows } from './privacy.ts';
import { openTestLakehouse, type TestLakehouse } from './testing.ts';

let lake: TestLakehouse;

before(async () => {
  lake = await openTestLakehouse('tributary-privacy-test-');
  await lake.createFromSql(
    'bronze.uploads',
    `select 'u' || (i % 3) as user_id, 'file' || i || '.txt' as filename from range(9) r(i)`,
  );
});

after(() => lake.close());

it('erases the rows of a table with a column named filename', async () => {
  const result = await eraseRows(lake.catalog, lake.engine, {
    where: "user_id = 'u1'",
    tables: ['bronze.uploads'],
  });
  assert.equal(result.tables[0]!.rows, 3);
  assert.deepEqual(result.tables[0]!.remainingFiles, []);
});

it('erases again after an earlier erase, and leaves no erased value in the current manifests', async () => {
  await lake.createFromSql(
    'shop.customers',
    `select * from (values ('aaa.subject@example.com', 1), ('zzz.other@example.com', 2), ('bbb.second@example.com', 3)) t(email, n)`,
  );
  const erase = (email: string) =>
    eraseRows(lake.catalog, lake.engine, { where: `email = '${email}'`, tables: ['shop.customers'] });
  assert.deepEqual((await erase('aaa.subject@example.com')).tables[0]!.remainingFiles, []);
  // The first erase left the removed file as a deleted entry, and expired the file itself.
  assert.deepEqual((await erase('bbb.second@example.com')).tables[0]!.remainingFiles, []);
  const table = await lake.catalog.loadTable(parseTableIdentifier('shop.customers'));
  for (const manifest of decodeManifestList(
    await table.storage.read(table.currentSnapshot!['manifest-list']),
  )) {
    const bytes = Buffer.from(await table.storage.read(manifest.manifestPath));
    assert.ok(
      !bytes.includes('aaa.subject') && !bytes.includes('bbb.second'),
      'no bound keeps an erased value',
    );
  }
});

it('deletes a file a write left uncommitted that holds the rows, once it is a day old', async () => {
  await lake.createFromSql('shop.events', `select * from (values ('u-1', 1), ('u-2', 2)) t(user_id, n)`);
  const table = await lake.catalog.loadTable(parseTableIdentifier('shop.events'));
  // A sink wrote the files of a batch and crashed before its commit.
  const {
    files: [orphan],
  } = await writeFiles(table, lake.engine, `(select * from (values ('u-1', 3)) t(user_id, n))`);
  const erase = () =>
    eraseRows(lake.catalog, lake.engine, { where: "user_id = 'u-1'", tables: ['shop.events'] });
  const young = await erase();
  assert.deepEqual(
    young.tables[0]!.remainingFiles,
    [orphan!.filePath],
    'a young one may be a commit in flight',
  );
  const local = table.storage.localPath(orphan!.filePath)!;
  const dayAgo = (Date.now() - 86_400_000 - 60_000) / 1000;
  utimesSync(local, dayAgo, dayAgo);
  assert.deepEqual((await erase()).tables[0]!.remainingFiles, []);
  assert.equal(existsSync(local), false);
});
