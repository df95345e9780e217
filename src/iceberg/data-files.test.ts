/**
 * Data files: the Parquet compression chosen from table properties, and the same files whether the input
 * is staged first or scanned in place (`materialize: false`), partition values (nulls included) alike.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isTributaryError } from '../errors.ts';
import { fileLocationOf, LocalStorage } from '../storage/index.ts';
import { parquetCompression, writeDataFiles, type WriteDataFilesOptions } from './data-files.ts';
import { openEngine, quoteLiteral, type Engine } from './duckdb.ts';
import { nativeFiles } from './native-files.ts';
import { buildSpec, parsePartitionExpression } from './partition-spec.ts';
import { assignFreshIds, parseSchemaJson } from './schema.ts';

let root: string;
let engine: Engine;
let counter = 0;
const storage = new LocalStorage({ fsync: false });

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'tributary-data-files-'));
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
      { name: 'kind', type: 'string' },
      { name: 'ts', type: 'timestamptz' },
    ],
  }),
);
const { spec } = buildSpec(parsePartitionExpression('day(ts), kind', schema), 0, 999);
const ROWS = `(select i as id, case when i % 3 = 0 then null else 'k' || (i % 2) end as kind,
  case when i % 7 = 0 then null else TIMESTAMPTZ '2026-11-20 00:00:00+00' + to_hours(i) end as ts
  from range(500) r(i))`;

function write(options: Partial<WriteDataFilesOptions> = {}) {
  return writeDataFiles({
    engine,
    relation: ROWS,
    schema,
    spec,
    files: nativeFiles(storage),
    dataLocation: fileLocationOf(path.join(root, `t${counter++}`, 'data')),
    ...options,
  });
}

/** Partition tuple → record count, and each file's codec, per file. */
async function describeFiles(files: Awaited<ReturnType<typeof write>>) {
  const partitions = new Map<string, number>();
  const codecs = new Set<string>();
  for (const file of files) {
    const key = JSON.stringify(file.partition, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
    partitions.set(key, (partitions.get(key) ?? 0) + file.recordCount);
    const local = storage.localPath(file.filePath);
    const rows = (
      await engine.connection.runAndReadAll(
        `select distinct compression from parquet_metadata(${quoteLiteral(local)})`,
      )
    ).getRows();
    for (const [codec] of rows) codecs.add(String(codec));
  }
  return { partitions: [...partitions].sort(), codecs: [...codecs].sort() };
}

describe('writeDataFiles', () => {
  it('writes the same partitions staged or scanned in place', async () => {
    const staged = await describeFiles(await write());
    const inPlace = await describeFiles(await write({ materialize: false }));
    assert.deepEqual(inPlace, staged);
    assert.equal(
      staged.partitions.reduce((n, [, count]) => n + count, 0),
      500,
    );
    // 21 days (and null) × three kinds (and null): every combination present is its own partition.
    assert.ok(staged.partitions.some(([key]) => key === '[null,null]'));
    assert.deepEqual(staged.codecs, ['ZSTD']);
  });

  it('compresses as the table properties say', async () => {
    const property = (properties: Record<string, string>) => (name: string, fallback: string) =>
      properties[name] ?? fallback;
    assert.deepEqual(parquetCompression(property({})), { codec: 'zstd', level: 1 });
    assert.deepEqual(parquetCompression(property({ 'write.parquet.compression-level': '9' })), {
      codec: 'zstd',
      level: 9,
    });
    assert.deepEqual(parquetCompression(property({ 'write.parquet.compression-codec': 'SNAPPY' })), {
      codec: 'snappy',
    });
    const bad: Array<Record<string, string>> = [
      { 'write.parquet.compression-codec': 'lzo' },
      { 'write.parquet.compression-level': 'fast' },
    ];
    for (const properties of bad) {
      assert.throws(
        () => parquetCompression(property(properties)),
        (error) => isTributaryError(error, 'ICEBERG_UNSUPPORTED'),
      );
    }
    const snappy = await describeFiles(await write({ compression: { codec: 'snappy' } }));
    assert.deepEqual(snappy.codecs, ['SNAPPY']);
  });

  it('removes the files it wrote when it fails after moving them into place', async () => {
    // Fails each file after storing it: the files already in place must go.
    class FailingStorage extends LocalStorage {
      override async writeFile(location: string, localPath: string): Promise<void> {
        await super.writeFile(location, localPath);
        throw new Error('disk full');
      }
    }
    const directory = path.join(root, `t${counter++}`);
    for (const partitioned of [true, false]) {
      await assert.rejects(
        write({
          files: nativeFiles(new FailingStorage({ fsync: false })),
          dataLocation: fileLocationOf(path.join(directory, 'data')),
          ...(partitioned ? {} : { spec: { 'spec-id': 0, fields: [] } }),
        }),
        /disk full/,
      );
      const left = readdirSync(directory, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
      assert.deepEqual(
        left.map((e) => path.join(e.parentPath, e.name)),
        [],
      );
    }
  });

  it('refuses values that do not fit, staged or not', async () => {
    for (const materialize of [true, false]) {
      await assert.rejects(
        write({ relation: `(select 'x' as id)`, materialize }),
        (error) =>
          isTributaryError(error, 'INVALID_INPUT') && /does not match the table schema/.test(error.message),
      );
    }
  });
});
