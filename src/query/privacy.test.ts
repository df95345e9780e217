/** Erasure (GDPR) over a table whose own columns are named like the ones DuckDB's Parquet reader adds. */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
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
