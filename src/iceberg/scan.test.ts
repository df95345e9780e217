/**
 * Scan planning over committed manifests (no data files are read: the files are synthetic entries):
 * which files a filter keeps, and which column metrics the planned files carry.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalStorage } from '../storage/index.ts';
import type { DataFile } from './manifest.ts';
import { planScan, type Predicate } from './scan.ts';
import { toBinary } from './single-value.ts';
import { SnapshotProducer } from './snapshot-producer.ts';
import type { Table } from './table.ts';
import { createTestTable } from './test-support.ts';

const storage = new LocalStorage({ fsync: false });
const DAY_US = 86_400_000_000n;
const START_US = BigInt(Date.UTC(2024, 0, 1)) * 1000n;
const START_DAY = Date.UTC(2024, 0, 1) / 86_400_000;

let root: string;
let table: Table;
/** Every committed file, by path. */
const committed = new Map<string, DataFile>();

/** File g of day g % 4: ids [10g, 10g + 9], ts within its day (all null in file 5), every metric. */
function dataFile(g: number): DataFile {
  const day = g % 4;
  const ids = table.schema.fields[0]!.id;
  const ts = table.schema.fields[1]!.id;
  const tsLow = START_US + BigInt(day) * DAY_US + BigInt(g);
  return {
    content: 'data',
    filePath: `${table.location}/data/${String(g).padStart(3, '0')}.parquet`,
    fileFormat: 'PARQUET',
    partition: [g === 5 ? null : START_DAY + day],
    recordCount: 10,
    fileSizeInBytes: 1000 + g,
    columnSizes: new Map([
      [ids, 80],
      [ts, 90],
    ]),
    valueCounts: new Map([
      [ids, 10],
      [ts, 10],
    ]),
    nullValueCounts: new Map([
      [ids, 0],
      [ts, g === 5 ? 10 : 0],
    ]),
    nanValueCounts: new Map(),
    lowerBounds: new Map([
      [ids, toBinary('long', BigInt(10 * g))],
      ...(g === 5 ? [] : [[ts, toBinary('timestamptz', tsLow)] as const]),
    ]),
    upperBounds: new Map([
      [ids, toBinary('long', BigInt(10 * g + 9))],
      ...(g === 5 ? [] : [[ts, toBinary('timestamptz', tsLow + 1000n)] as const]),
    ]),
    splitOffsets: [4],
  };
}

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'tributary-scan-'));
  ({ table } = await createTestTable({
    storage,
    directory: path.join(root, 't'),
    identifier: { namespace: ['test'], name: 't' },
    fields: [
      { name: 'id', type: 'long', required: true },
      { name: 'ts', type: 'timestamptz' },
    ],
    partition: 'day(ts)',
  }));
  // Three commits of 8 files (3 manifests), then one removing file 0 (a manifest with a deleted entry).
  for (let c = 0; c < 3; c++) {
    const files = Array.from({ length: 8 }, (_, j) => dataFile(c * 8 + j));
    for (const f of files) committed.set(f.filePath, f);
    await new SnapshotProducer(table, { operation: 'append', addedDataFiles: files }).commit();
  }
  const removed = dataFile(0).filePath;
  committed.delete(removed);
  await new SnapshotProducer(table, { operation: 'delete', removedPaths: new Set([removed]) }).commit();
});

after(() => rmSync(root, { recursive: true, force: true }));

const STATS = [
  'columnSizes',
  'valueCounts',
  'nullValueCounts',
  'nanValueCounts',
  'lowerBounds',
  'upperBounds',
] as const;

function withoutStats(file: DataFile): DataFile {
  return Object.fromEntries(
    Object.entries(file).filter(([k]) => !(STATS as readonly string[]).includes(k)),
  ) as unknown as DataFile;
}

async function plan(filter: Predicate[], includeColumnStats?: boolean) {
  return planScan(table.metadata, table.storage, {
    filter,
    ...(includeColumnStats === undefined ? {} : { includeColumnStats }),
  });
}

const paths = (p: Awaited<ReturnType<typeof plan>>) => p.dataFiles.map((f) => f.file.filePath);
const expected = (keep: (g: number) => boolean) =>
  [...committed.keys()].filter((p) => keep(Number(path.basename(p, '.parquet')))).sort();

describe('scan planning', () => {
  it('plans every live file without column metrics unless they are asked for', async () => {
    const bare = await plan([]);
    assert.deepEqual(
      paths(bare),
      expected(() => true),
    );
    assert.deepEqual(
      bare.dataFiles.map((p) => p.file),
      paths(bare).map((p) => withoutStats(committed.get(p)!)),
    );
    const full = await plan([], true);
    assert.deepEqual(
      full.dataFiles.map((p) => p.file),
      paths(full).map((p) => committed.get(p)!),
    );
    assert.ok(full.dataFiles.every((p) => p.sequenceNumber >= 1 && p.sequenceNumber <= 3));
  });

  it('prunes by column bounds read for the filtered column only, and hands no metrics on', async () => {
    const filter: Predicate[] = [
      { column: 'id', op: '>=', value: 75n },
      { column: 'id', op: '<', value: 120n },
    ];
    const pruned = await plan(filter);
    // Every manifest is read (the delete rewrote the first one): the files are pruned by their id bounds.
    assert.deepEqual([pruned.manifestsScanned, pruned.manifestsSkipped], [3, 0]);
    assert.deepEqual(
      paths(pruned),
      expected((g) => 10 * g + 9 >= 75 && 10 * g < 120),
    );
    assert.deepEqual(
      pruned.dataFiles.map((p) => p.file),
      paths(pruned).map((p) => withoutStats(committed.get(p)!)),
    );
    const full = await plan(filter, true);
    assert.deepEqual(paths(full), paths(pruned));
    assert.deepEqual(
      full.dataFiles.map((p) => p.file),
      paths(full).map((p) => committed.get(p)!),
    );
  });

  it('prunes by partition values and by null counts', async () => {
    const day2 = START_US + 2n * DAY_US;
    const ts: Predicate[] = [
      { column: 'ts', op: '>=', value: day2 },
      { column: 'ts', op: '<', value: day2 + DAY_US },
    ];
    assert.deepEqual(
      paths(await plan(ts)),
      expected((g) => g % 4 === 2),
    );
    // File 5's ts is all nulls: it is the only file that may hold nulls, and holds no comparable ts.
    assert.deepEqual(
      paths(await plan([{ column: 'ts', op: 'is_null' }])),
      expected((g) => g === 5),
    );
    assert.deepEqual(
      paths(await plan([{ column: 'ts', op: '>', value: START_US }])),
      expected((g) => g !== 5),
    );
  });
});
