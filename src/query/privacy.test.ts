/** Erasure (GDPR): columns named like DuckDB's Parquet reader's, repeated erasures, files left uncommitted. */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, it } from 'node:test';
import { parseTableIdentifier } from '../catalog/identifier.ts';
import { decodeManifest, decodeManifestList } from '../iceberg/manifest.ts';
import { writeFiles } from '../iceberg/operations/write.ts';
import { planFiles, planScan, scanSql } from '../iceberg/scan.ts';
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
  const bounds: string[] = [];
  for (const manifest of decodeManifestList(
    await table.storage.read(table.currentSnapshot!['manifest-list']),
  ))
    for (const entry of decodeManifest(await table.storage.read(manifest.manifestPath)).entries)
      for (const bound of [
        ...(entry.dataFile.lowerBounds?.values() ?? []),
        ...(entry.dataFile.upperBounds?.values() ?? []),
      ])
        bounds.push(Buffer.from(bound).toString('latin1'));
  assert.ok(
    bounds.some((b) => b.startsWith('zzz.other')),
    'the live file keeps its bounds',
  );
  assert.deepEqual(
    bounds.filter((b) => b.startsWith('aaa.subject') || b.startsWith('bbb.second')),
    [],
    'no bound keeps an erased value',
  );
});

it('reports a file a write left uncommitted that holds the rows, and deletes none it cannot own', async () => {
  await lake.createFromSql('shop.events', `select * from (values ('u-1', 1), ('u-2', 2)) t(user_id, n)`);
  const table = await lake.catalog.loadTable(parseTableIdentifier('shop.events'));
  // A sink wrote the files of a batch and crashed before its commit: no snapshot of this table reaches the
  // file (another table might: one renamed away from this location), so erase names it and leaves it.
  const {
    files: [orphan],
  } = await writeFiles(table, lake.engine, `(select * from (values ('u-1', 3)) t(user_id, n))`);
  const result = await eraseRows(lake.catalog, lake.engine, {
    where: "user_id = 'u-1'",
    tables: ['shop.events'],
  });
  assert.deepEqual(result.tables[0]!.remainingFiles, [orphan!.filePath]);
  assert.ok(existsSync(table.storage.localPath(orphan!.filePath)!));
});

it('erases the rows of a table with gc.enabled=false from its current snapshot, and deletes none of its files', async () => {
  // Such a table names files it may not own (a snapshot of another table): its history and files stay,
  // and the files still holding the rows are reported.
  await lake.createFromSql('shop.shared', `select * from (values ('u-1', 1), ('u-2', 2)) t(user_id, n)`, {
    properties: { 'gc.enabled': 'false' },
  });
  const before = await lake.catalog.loadTable(parseTableIdentifier('shop.shared'));
  const [held] = (await planScan(before.metadata, before.storage)).dataFiles.map((f) => f.file.filePath);
  const result = await eraseRows(lake.catalog, lake.engine, {
    where: "user_id = 'u-1'",
    tables: ['shop.shared'],
  });
  const erased = result.tables[0]!;
  assert.equal(erased.rows, 1);
  assert.equal(erased.gcDisabled, true);
  assert.equal(erased.expiredSnapshots, 0);
  assert.deepEqual(erased.remainingFiles, [held]);
  assert.ok(existsSync(before.storage.localPath(held!)!));
  const table = await lake.catalog.loadTable(parseTableIdentifier('shop.shared'));
  assert.equal(table.metadata.snapshots.length, 2, 'the history stays');
  const plan = await planScan(table.metadata, table.storage);
  const rows = await lake.engine.connection.runAndReadAll(
    `select user_id from ${scanSql(plan, await table.files.readable(planFiles(plan)))} t`,
  );
  assert.deepEqual(rows.getRows(), [['u-2']]);
});
