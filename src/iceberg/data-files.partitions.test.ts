/**
 * Data files split by partition values of every type DuckDB partitions by directly (dates, times,
 * timestamps, decimals, uuids, booleans and integers; the time transforms of timestamptz included): every
 * row of every file has the file's partition tuple, computed independently by transforms.ts, and nulls in
 * required columns are refused from the files' statistics.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isTributaryError } from '../errors.ts';
import { fileLocationOf, LocalStorage } from '../storage/index.ts';
import { writeDataFiles } from './data-files.ts';
import { fromDuckDBValue, openEngine, quoteIdentifier, quoteLiteral, type Engine } from './duckdb.ts';
import { nativeFiles } from './native-files.ts';
import { buildSpec, parsePartitionExpression } from './partition-spec.ts';
import { assignFreshIds, findFieldById, parseSchemaJson } from './schema.ts';
import { parseTransform } from './transforms.ts';
import type { PrimitiveType } from './types.ts';

let root: string;
let engine: Engine;
let counter = 0;
const storage = new LocalStorage({ fsync: false });

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'tributary-data-files-partitions-'));
  engine = await openEngine();
});
after(() => {
  engine.close();
  rmSync(root, { recursive: true, force: true });
});

const schema = assignFreshIds(
  parseSchemaJson({
    fields: [
      { name: 'id', type: 'long', required: true },
      { name: 'n', type: 'int' },
      { name: 'ts', type: 'timestamptz' },
      { name: 't', type: 'timestamp' },
      { name: 'd', type: 'date' },
      { name: 'tm', type: 'time' },
      { name: 'amount', type: 'decimal(9, 2)' },
      { name: 'key', type: 'uuid' },
      { name: 'flag', type: 'boolean' },
    ],
  }),
);

// 400 rows around 1970 (before and after it), every column null in some rows.
const ROWS = `(select i as id,
    case when i % 11 = 0 then null else (i * 7919) % 200 - 100 end as n,
    case when i % 7 = 0 then null else TIMESTAMPTZ '1969-12-20 00:00:00+00' + to_minutes(i * 97) end as ts,
    case when i % 13 = 0 then null else TIMESTAMP '1969-03-01 12:00:00' + to_days(i * 3) end as t,
    case when i % 17 = 0 then null else DATE '1968-06-15' + (i * 5)::int end as d,
    case when i % 19 = 0 then null else TIME '00:00:00' + to_minutes(i * 37 % 1440) end as tm,
    case when i % 23 = 0 then null else ((i % 9) - 4) * 1.25 end as amount,
    case when i % 29 = 0 then null else ('00000000-0000-0000-0000-00000000000' || (i % 4))::uuid end as key,
    case when i % 31 = 0 then null else i % 2 = 0 end as flag
  from range(400) r(i))`;

async function writeAndCheck(expression: string) {
  const { spec } = buildSpec(parsePartitionExpression(expression, schema), 0, 999);
  const files = await writeDataFiles({
    engine,
    relation: ROWS,
    schema,
    spec,
    files: nativeFiles(storage),
    dataLocation: fileLocationOf(path.join(root, `t${counter++}`, 'data')),
  });
  let rows = 0;
  const partitions = new Set<string>();
  for (const file of files) {
    partitions.add(JSON.stringify(file.partition, (_, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)));
    const local = storage.localPath(file.filePath);
    const sources = spec.fields.map((f) => findFieldById(schema, f['source-id'])!);
    const read = await engine.connection.runAndReadAll(
      `select ${sources.map((s) => quoteIdentifier(s.name)).join(', ')} from read_parquet(${quoteLiteral(local)}, hive_partitioning = false)`,
    );
    const data = read.getRows();
    assert.equal(data.length, file.recordCount, `${expression}: ${file.filePath}`);
    rows += data.length;
    for (const row of data) {
      spec.fields.forEach((field, i) => {
        const type = sources[i]!.type as PrimitiveType;
        const expected = parseTransform(field.transform).apply(type, fromDuckDBValue(type, row[i] ?? null));
        assert.deepEqual(
          file.partition[i],
          expected,
          `${expression}: ${field.name} of a row in ${file.filePath}`,
        );
      });
    }
  }
  assert.equal(rows, 400, expression);
  assert.equal(partitions.size, new Set(files.map((f) => f.filePath.split('/').slice(0, -1).join('/'))).size);
  return partitions.size;
}

describe('writeDataFiles partitions by value', () => {
  it('gives every file the partition tuple of each of its rows, nulls and dates before 1970 included', async () => {
    for (const expression of [
      'day(ts)',
      'hour(ts)',
      'month(ts)',
      'year(ts)',
      'day(t), n',
      'hour(t)',
      'month(d)',
      'year(d), flag',
      'ts, t',
      'd, tm',
      'amount, flag',
      'key',
      'truncate(10, n), bucket(4, id)',
      'truncate(2, amount)',
    ]) {
      assert.ok((await writeAndCheck(expression)) > 1, expression);
    }
  });

  it('refuses a null in a required column, and a value that does not fit', async () => {
    const { spec } = buildSpec(parsePartitionExpression('day(ts)', schema), 0, 999);
    const write = (relation: string) =>
      writeDataFiles({
        engine,
        relation,
        schema,
        spec,
        files: nativeFiles(storage),
        dataLocation: fileLocationOf(path.join(root, `t${counter++}`, 'data')),
      });
    await assert.rejects(
      write(`(select case when i % 2 = 0 then i end as id, TIMESTAMPTZ '2026-11-23 00:00:00+00' + to_days(i) as ts
        from range(5) r(i))`),
      (error) =>
        isTributaryError(error, 'INVALID_INPUT') &&
        /column id is required, but 2 rows have no value/.test(error.message),
    );
    await assert.rejects(
      write(`(select 1 as id, 'not a time' as ts)`),
      (error) =>
        isTributaryError(error, 'INVALID_INPUT') && /does not match the table schema/.test(error.message),
    );
  });
});
