/**
 * Our manifests and manifest lists against pyiceberg, the independent implementation: pyiceberg reads what
 * we write, and we read what pyiceberg writes (its own tables, with each Avro codec it offers). Both sides
 * are compared through the same JSON view: numbers as strings, bytes as hex, decimals as unscaled + scale.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, describe, it } from 'node:test';
import { writeContainer } from '../../src/iceberg/avro/container.ts';
import { icebergToAvroSchema, parseDecimal, toAvroValue } from '../../src/iceberg/avro/iceberg-schema.ts';
import {
  decodeManifest,
  decodeManifestListFile,
  encodeManifest,
  encodeManifestList,
  inheritManifestMetadata,
  summarizeEntries,
  UNASSIGNED_SEQUENCE_NUMBER,
  type DataFile,
  type ManifestEntry,
  type ManifestFile,
} from '../../src/iceberg/manifest.ts';
import type { PartitionSpec } from '../../src/iceberg/metadata.ts';
import type { IcebergType, IcebergValue, Schema, StructType } from '../../src/iceberg/types.ts';
import { useService } from '../services/index.ts';
import { runPython } from '../services/pyiceberg.ts';

/** Python helpers that print pyiceberg's view of manifests as the JSON `view*` below builds from ours. */
const PY_VIEW = `
import json, uuid, datetime
from decimal import Decimal
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.manifest import read_manifest_list

def value(v):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return v
    if isinstance(v, Decimal):
        sign, digits, exponent = v.as_tuple()  # exact, unlike arithmetic in the 28-digit default context
        unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        return {"unscaled": str(unscaled), "scale": -exponent}
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, datetime.datetime):
        return "datetime:" + v.isoformat()
    if isinstance(v, datetime.date):
        return "date:" + v.isoformat()
    raise TypeError(repr(v))

def stats(m):
    return None if m is None else {str(k): value(v) for k, v in sorted(dict(m).items())}

def lst(v):
    return None if v is None else [value(x) for x in v]

def entry_view(e):
    f = e.data_file
    return {
        "status": int(e.status),
        "snapshot_id": value(e.snapshot_id),
        "sequence_number": value(e.sequence_number),
        "file_sequence_number": value(e.file_sequence_number),
        "content": int(f.content),
        "file_path": f.file_path,
        "file_format": f.file_format.value,
        "partition": [value(f.partition[i]) for i in range(len(f.partition))],
        "record_count": value(f.record_count),
        "file_size_in_bytes": value(f.file_size_in_bytes),
        "column_sizes": stats(f.column_sizes),
        "value_counts": stats(f.value_counts),
        "null_value_counts": stats(f.null_value_counts),
        "nan_value_counts": stats(f.nan_value_counts),
        "lower_bounds": stats(f.lower_bounds),
        "upper_bounds": stats(f.upper_bounds),
        "key_metadata": value(f.key_metadata),
        "split_offsets": lst(f.split_offsets),
        "equality_ids": lst(f.equality_ids),
        "sort_order_id": value(f.sort_order_id),
    }

def manifest_view(m):
    return {
        "manifest_path": m.manifest_path,
        "manifest_length": value(m.manifest_length),
        "partition_spec_id": value(m.partition_spec_id),
        "content": int(m.content),
        "sequence_number": value(m.sequence_number),
        "min_sequence_number": value(m.min_sequence_number),
        "added_snapshot_id": value(m.added_snapshot_id),
        "counts": [value(m.added_files_count), value(m.existing_files_count), value(m.deleted_files_count),
                   value(m.added_rows_count), value(m.existing_rows_count), value(m.deleted_rows_count)],
        "partitions": None if m.partitions is None else [
            [p.contains_null, p.contains_nan, value(p.lower_bound), value(p.upper_bound)] for p in m.partitions],
        "key_metadata": value(m.key_metadata),
    }

def list_view(manifest_list):
    io = PyArrowFileIO()
    manifests = list(read_manifest_list(io.new_input(manifest_list)))
    return [{"manifest": manifest_view(m),
             "entries": [entry_view(e) for e in m.fetch_manifest_entry(io, discard_deleted=False)]}
            for m in manifests]
`;

const hex = (bytes: Uint8Array | undefined): string | null =>
  bytes === undefined ? null : Buffer.from(bytes).toString('hex');

function valueView(type: IcebergType, value: IcebergValue): unknown {
  if (value === null) return null;
  const decimal = parseDecimal(type);
  if (decimal) return { unscaled: (value as bigint).toString(), scale: decimal.scale };
  if (typeof value === 'bigint' || typeof value === 'number') return String(value);
  if (value instanceof Uint8Array) return hex(value);
  return value;
}

function statsView<V extends number | Uint8Array>(map: ReadonlyMap<number, V> | undefined): unknown {
  if (map === undefined) return null;
  return Object.fromEntries(
    [...map]
      .sort(([a], [b]) => a - b)
      .map(([k, v]) => [String(k), v instanceof Uint8Array ? hex(v) : String(v)]),
  );
}

const str = (v: number | bigint | undefined): string | null => (v === undefined ? null : String(v));

function entryView(entry: ManifestEntry, partitionType: StructType): unknown {
  const f: DataFile = entry.dataFile;
  return {
    status: { existing: 0, added: 1, deleted: 2 }[entry.status],
    snapshot_id: str(entry.snapshotId),
    sequence_number: str(entry.sequenceNumber),
    file_sequence_number: str(entry.fileSequenceNumber),
    content: { data: 0, 'position-deletes': 1, 'equality-deletes': 2 }[f.content],
    file_path: f.filePath,
    file_format: f.fileFormat,
    partition: f.partition.map((v, i) => valueView(partitionType.fields[i]!.type, v)),
    record_count: String(f.recordCount),
    file_size_in_bytes: String(f.fileSizeInBytes),
    column_sizes: statsView(f.columnSizes),
    value_counts: statsView(f.valueCounts),
    null_value_counts: statsView(f.nullValueCounts),
    nan_value_counts: statsView(f.nanValueCounts),
    lower_bounds: statsView(f.lowerBounds),
    upper_bounds: statsView(f.upperBounds),
    key_metadata: hex(f.keyMetadata),
    split_offsets: f.splitOffsets?.map(String) ?? null,
    equality_ids: f.equalityIds?.map(String) ?? null,
    sort_order_id: str(f.sortOrderId),
  };
}

function manifestView(m: ManifestFile): unknown {
  return {
    manifest_path: m.manifestPath,
    manifest_length: String(m.manifestLength),
    partition_spec_id: String(m.partitionSpecId),
    content: m.content === 'deletes' ? 1 : 0,
    sequence_number: String(m.sequenceNumber),
    min_sequence_number: String(m.minSequenceNumber),
    added_snapshot_id: String(m.addedSnapshotId),
    counts: [
      m.addedFilesCount,
      m.existingFilesCount,
      m.deletedFilesCount,
      m.addedRowsCount,
      m.existingRowsCount,
      m.deletedRowsCount,
    ].map(String),
    partitions:
      m.partitions?.map((p) => [
        p.containsNull,
        p.containsNaN ?? null,
        hex(p.lowerBound),
        hex(p.upperBound),
      ]) ?? null,
    key_metadata: hex(m.keyMetadata),
  };
}

/** Our decoding of a manifest list and its manifests, with inheritance, in pyiceberg's view. */
function ourListView(manifestListUri: string): unknown {
  const list = decodeManifestListFile(readFileSync(fileURLToPath(manifestListUri)), {
    file: manifestListUri,
  });
  return list.manifests.map((m) => {
    const manifest = decodeManifest(readFileSync(fileURLToPath(m.manifestPath)), { file: m.manifestPath });
    return {
      manifest: manifestView(m),
      entries: inheritManifestMetadata(manifest.entries, m).map((e) => entryView(e, manifest.partitionType)),
    };
  });
}

const le = (bits: 32 | 64, n: bigint): Uint8Array => {
  const b = new Uint8Array(bits / 8);
  const view = new DataView(b.buffer);
  if (bits === 32) view.setInt32(0, Number(n), true);
  else view.setBigInt64(0, n, true);
  return b;
};
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

const py = await useService('pyiceberg');
const dirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('manifests against pyiceberg', { skip: py.skip }, () => {
  it('pyiceberg reads the manifests and manifest list we write', async () => {
    const dir = tempDir('tributary-manifests-');
    const schema: Schema = {
      type: 'struct',
      'schema-id': 0,
      fields: [
        { id: 1, name: 'id', required: true, type: 'long' },
        { id: 2, name: 'n', required: false, type: 'int' },
        { id: 3, name: 'day', required: false, type: 'date' },
        { id: 4, name: 'region', required: false, type: 'string' },
        { id: 5, name: 'ts', required: false, type: 'timestamp' },
        { id: 6, name: 'amount', required: false, type: 'decimal(10, 2)' },
        { id: 7, name: 'key', required: false, type: 'uuid' },
        { id: 8, name: 'x', required: false, type: 'double' },
      ],
    };
    const spec: PartitionSpec = {
      'spec-id': 0,
      fields: [
        { 'source-id': 2, 'field-id': 1000, name: 'n', transform: 'identity' },
        { 'source-id': 3, 'field-id': 1001, name: 'day', transform: 'identity' },
        { 'source-id': 4, 'field-id': 1002, name: 'region', transform: 'identity' },
        { 'source-id': 5, 'field-id': 1003, name: 'ts', transform: 'identity' },
        { 'source-id': 6, 'field-id': 1004, name: 'amount', transform: 'identity' },
        { 'source-id': 7, 'field-id': 1005, name: 'key', transform: 'identity' },
      ],
    };
    const partitionType: StructType = {
      type: 'struct',
      fields: spec.fields.map((f) => ({
        id: f['field-id'],
        name: f.name,
        required: false,
        type: schema.fields.find((s) => s.id === f['source-id'])!.type,
      })),
    };
    const snapshotId = 8_123_456_789_012_345_678n;
    const dataFiles: DataFile[] = [
      {
        content: 'data',
        filePath: `file://${dir}/data/a.parquet`,
        fileFormat: 'PARQUET',
        partition: [
          7,
          19_723,
          'eu-west',
          1_704_164_645_000_000n,
          -12_345n,
          'c7e3a1f2-0b1d-4e5f-8a9b-0c1d2e3f4a5b',
        ],
        recordCount: 1000,
        fileSizeInBytes: 123_456,
        columnSizes: new Map([
          [1, 8000],
          [4, 2000],
        ]),
        valueCounts: new Map([
          [1, 1000],
          [4, 1000],
          [8, 1000],
        ]),
        nullValueCounts: new Map([
          [1, 0],
          [4, 10],
        ]),
        nanValueCounts: new Map([[8, 3]]),
        lowerBounds: new Map([
          [1, le(64, 1n)],
          [4, utf8('eu-west')],
        ]),
        upperBounds: new Map([
          [1, le(64, 9_000_000_000n)],
          [4, utf8('eu-west')],
        ]),
        splitOffsets: [4, 65_536],
        sortOrderId: 0,
      },
      {
        content: 'data',
        filePath: `file://${dir}/data/b.parquet`,
        fileFormat: 'PARQUET',
        partition: [null, null, null, null, null, null],
        recordCount: 1,
        fileSizeInBytes: 100,
        keyMetadata: Uint8Array.of(0xde, 0xad),
      },
      {
        content: 'data',
        filePath: `file://${dir}/data/c.parquet`,
        fileFormat: 'ORC',
        partition: [
          -2_147_483_648,
          -1,
          'ünïcödé',
          -1n,
          99_999_999_99n,
          'ffffffff-ffff-ffff-ffff-ffffffffffff',
        ],
        recordCount: 3,
        fileSizeInBytes: 300,
      },
    ];
    const entries: ManifestEntry[] = [
      { status: 'added', dataFile: dataFiles[0]! },
      {
        status: 'existing',
        snapshotId: 11n,
        sequenceNumber: 1,
        fileSequenceNumber: 2,
        dataFile: dataFiles[1]!,
      },
      { status: 'deleted', snapshotId, sequenceNumber: 1, fileSequenceNumber: 1, dataFile: dataFiles[2]! },
    ];
    const deleteEntries: ManifestEntry[] = [
      {
        status: 'added',
        snapshotId,
        dataFile: {
          content: 'equality-deletes',
          filePath: `file://${dir}/data/eq.parquet`,
          fileFormat: 'PARQUET',
          partition: [
            7,
            19_723,
            'eu-west',
            1_704_164_645_000_000n,
            -12_345n,
            'c7e3a1f2-0b1d-4e5f-8a9b-0c1d2e3f4a5b',
          ],
          recordCount: 2,
          fileSizeInBytes: 50,
          equalityIds: [1, 4],
        },
      },
    ];

    const manifests: ManifestFile[] = [];
    for (const [name, list, content, codec] of [
      ['m0.avro', entries, 'data', 'deflate'],
      ['m1.avro', deleteEntries, 'deletes', 'null'],
    ] as const) {
      const bytes = encodeManifest(list, { schema, spec, partitionType, content, codec });
      const location = path.join(dir, name);
      writeFileSync(location, bytes);
      manifests.push({
        manifestPath: pathToFileURL(location).href,
        manifestLength: bytes.length,
        partitionSpecId: 0,
        content,
        sequenceNumber: UNASSIGNED_SEQUENCE_NUMBER,
        addedSnapshotId: snapshotId,
        ...summarizeEntries(list),
        partitions: [
          {
            containsNull: content === 'data',
            containsNaN: false,
            lowerBound: le(32, -2_147_483_648n),
            upperBound: le(32, 7n),
          },
          { containsNull: false },
          { containsNull: true, lowerBound: utf8('eu-west'), upperBound: utf8('ünïcödé') },
          { containsNull: false },
          { containsNull: false },
          { containsNull: false },
        ],
        ...(content === 'deletes' ? { keyMetadata: Uint8Array.of(1) } : {}),
      });
    }
    const listLocation = path.join(dir, 'snap.avro');
    writeFileSync(
      listLocation,
      encodeManifestList(manifests, { snapshotId, parentSnapshotId: 11n, sequenceNumber: 3 }),
    );

    const output = await runPython(
      py.info!,
      `${PY_VIEW}
import os
print(json.dumps(list_view("file://" + os.environ["LIST"])))`,
      { LIST: listLocation },
    );
    const theirs = JSON.parse(output) as unknown;
    // pyiceberg read every field as written; ADDED entries inherited the snapshot id and sequence number 3.
    assert.deepEqual(theirs, ourListView(pathToFileURL(listLocation).href));
    const view = theirs as { manifest: { sequence_number: string }; entries: { partition: unknown[] }[] }[];
    assert.equal(view[0]!.manifest.sequence_number, '3');
    assert.deepEqual(view[0]!.entries[0]!.partition, [
      '7',
      '19723',
      'eu-west',
      '1704164645000000',
      { unscaled: '-12345', scale: 2 },
      'c7e3a1f2-0b1d-4e5f-8a9b-0c1d2e3f4a5b',
    ]);
    assert.deepEqual(
      (
        theirs as { entries: { status: number; snapshot_id: string; sequence_number: string }[] }[]
      )[0]!.entries.map((e) => [e.status, e.snapshot_id, e.sequence_number]),
      [
        [1, String(snapshotId), '3'],
        [0, '11', '1'],
        [2, String(snapshotId), '1'],
      ],
    );
  });

  it('pyiceberg reads Avro files of every Iceberg type written with our schema conversion', async () => {
    const dir = tempDir('tributary-avro-types-');
    const struct: StructType = {
      type: 'struct',
      fields: [
        { id: 1, name: 'b', required: true, type: 'boolean' },
        { id: 2, name: 'i', required: false, type: 'int' },
        { id: 3, name: 'l', required: true, type: 'long' },
        { id: 4, name: 'f', required: true, type: 'float' },
        { id: 5, name: 'd', required: true, type: 'double' },
        { id: 6, name: 'dec', required: true, type: 'decimal(38, 6)' },
        { id: 7, name: 'day', required: true, type: 'date' },
        { id: 8, name: 't', required: true, type: 'time' },
        { id: 9, name: 'ts', required: true, type: 'timestamp' },
        { id: 10, name: 'tstz', required: true, type: 'timestamptz' },
        { id: 11, name: 'my col', required: true, type: 'string' },
        { id: 12, name: 'u', required: true, type: 'uuid' },
        { id: 13, name: 'fx', required: true, type: 'fixed[3]' },
        { id: 14, name: 'bin', required: true, type: 'binary' },
        {
          id: 15,
          name: 'nested',
          required: false,
          type: { type: 'struct', fields: [{ id: 16, name: 'x', required: true, type: 'long' }] },
        },
        {
          id: 17,
          name: 'tags',
          required: true,
          type: { type: 'list', 'element-id': 18, element: 'string', 'element-required': false },
        },
        {
          id: 19,
          name: 'props',
          required: true,
          type: {
            type: 'map',
            'key-id': 20,
            key: 'string',
            'value-id': 21,
            value: 'int',
            'value-required': true,
          },
        },
        {
          id: 22,
          name: 'by_id',
          required: true,
          type: {
            type: 'map',
            'key-id': 23,
            key: 'int',
            'value-id': 24,
            value: 'uuid',
            'value-required': false,
          },
        },
        { id: 25, name: 'u2', required: false, type: 'uuid' },
      ],
    };
    const row: Record<string, IcebergValue> = {
      b: true,
      i: null,
      l: -(2n ** 62n),
      f: 1.5,
      d: -0.25,
      dec: -(10n ** 37n) + 1n,
      day: 19_723,
      t: 3_723_000_001n,
      ts: 1_704_164_645_123_456n,
      tstz: -1n,
      'my col': 'héllo',
      u: '0e2b3b8a-96b1-4a3e-8f2a-000000000001',
      fx: Uint8Array.of(1, 2, 3),
      bin: Uint8Array.of(),
      nested: { x: 42n },
      tags: ['a', null],
      props: new Map([['k', 1]]),
      by_id: new Map<IcebergValue, IcebergValue>([
        [5, '0e2b3b8a-96b1-4a3e-8f2a-000000000002'],
        [6, null],
      ]),
      u2: '0e2b3b8a-96b1-4a3e-8f2a-000000000003',
    };
    const file = path.join(dir, 'all-types.avro');
    const avroSchema = JSON.stringify(icebergToAvroSchema(struct, 'row'));
    writeFileSync(file, writeContainer(avroSchema, {}, [toAvroValue(struct, row)]));
    // pyiceberg 0.12 cannot read maps other than int→long and int→binary (its generic MapReader uses an
    // attribute it never sets) nor project them away, so the rows it reads come from a file without them.
    const withoutMaps: StructType = {
      type: 'struct',
      fields: struct.fields.filter((f) => f.id !== 19 && f.id !== 22),
    };
    const rows = path.join(dir, 'rows.avro');
    const { props: _props, by_id: _byId, ...rowWithoutMaps } = row;
    writeFileSync(
      rows,
      writeContainer(JSON.stringify(icebergToAvroSchema(withoutMaps, 'row')), {}, [
        toAvroValue(withoutMaps, rowWithoutMaps),
      ]),
    );
    const output = await runPython(
      py.info!,
      `${PY_VIEW}
import os
from pyiceberg.avro.file import AvroFile
from pyiceberg.schema import Schema
io = PyArrowFileIO()
with AvroFile(io.new_input("file://" + os.environ["FILE"])) as reader:
    schema = reader.schema
with AvroFile(io.new_input("file://" + os.environ["ROWS"])) as reader:
    rows = list(reader)
def render(v):
    if isinstance(v, dict):
        return {str(k): render(x) for k, x in v.items()}
    if isinstance(v, list):
        return [render(x) for x in v]
    if hasattr(v, "_data"):
        return [render(x) for x in v._data]
    return value(v)
print(json.dumps({"schema": schema.model_dump(mode="json"), "row": render(rows[0])}))`,
      { FILE: file, ROWS: rows },
    );
    const theirs = JSON.parse(output) as { schema: { fields: unknown[] }; row: unknown[] };
    // pyiceberg recovers the Iceberg schema from our Avro schema: ids, names (unsanitized), types, optionality.
    assert.deepEqual(
      theirs.schema.fields,
      struct.fields.map((f) => ({
        id: f.id,
        name: f.name === 'my col' ? 'my_x20col' : f.name,
        type: f.type,
        required: f.required,
      })),
    );
    assert.deepEqual(theirs.row, [
      true,
      null,
      String(-(2n ** 62n)),
      1.5,
      -0.25,
      { unscaled: String(-(10n ** 37n) + 1n), scale: 6 },
      '19723', // pyiceberg's Avro reader yields dates and times as their int/long (its internal representation)
      '3723000001',
      '1704164645123456',
      '-1',
      'héllo',
      '0e2b3b8a-96b1-4a3e-8f2a-000000000001',
      '010203',
      '',
      ['42'],
      ['a', null],
      '0e2b3b8a-96b1-4a3e-8f2a-000000000003',
    ]);
  });

  for (const codec of ['gzip', 'zstd', 'null']) {
    it(`reads the manifests pyiceberg writes (write.avro.compression-codec=${codec})`, async () => {
      const dir = tempDir('tributary-pyiceberg-manifests-');
      const output = await runPython(
        py.info!,
        `${PY_VIEW}
import os, datetime, uuid
from decimal import Decimal
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, LongType, IntegerType, DateType, StringType, TimestampType, DecimalType, UUIDType, DoubleType
from pyiceberg.partitioning import PartitionSpec, PartitionField
from pyiceberg.transforms import IdentityTransform
d = os.environ["DIR"]
catalog = SqlCatalog("tributary", uri="sqlite:///" + d + "/catalog.db", warehouse="file://" + d + "/warehouse")
catalog.create_namespace("bronze")
schema = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "n", IntegerType(), required=False),
    NestedField(3, "day", DateType(), required=False),
    NestedField(4, "region", StringType(), required=False),
    NestedField(5, "ts", TimestampType(), required=False),
    NestedField(6, "amount", DecimalType(10, 2), required=False),
    NestedField(7, "key", UUIDType(), required=False),
    NestedField(8, "x", DoubleType(), required=False),
)
spec = PartitionSpec(
    PartitionField(2, 1000, IdentityTransform(), "n"),
    PartitionField(3, 1001, IdentityTransform(), "day"),
    PartitionField(4, 1002, IdentityTransform(), "region"),
    PartitionField(5, 1003, IdentityTransform(), "ts"),
    PartitionField(6, 1004, IdentityTransform(), "amount"),
)
table = catalog.create_table("bronze.events", schema=schema, partition_spec=spec,
                             properties={"write.avro.compression-codec": os.environ["CODEC"]})
arrow = schema.as_arrow()
def rows(*items):
    return pa.Table.from_pylist([dict(zip(["id", "n", "day", "region", "ts", "amount", "key", "x"], i)) for i in items], schema=arrow)
k = uuid.UUID("c7e3a1f2-0b1d-4e5f-8a9b-0c1d2e3f4a5b").bytes
table.append(rows(
    (1, 1, datetime.date(2024, 1, 2), "eu", datetime.datetime(2024, 1, 2, 3, 4, 5), Decimal("12.34"), k, 1.5),
    (2, 1, datetime.date(2024, 1, 2), "eu", datetime.datetime(2024, 1, 2, 3, 4, 5), Decimal("12.34"), None, float("nan")),
))
table.append(rows(
    (3, 2, None, None, None, Decimal("-0.01"), None, None),
    (4, -7, datetime.date(1969, 12, 31), "ünï", datetime.datetime(1969, 12, 31, 23, 59, 59, 999999), Decimal("-99999999.99"), k, -2.0),
))
table.append(rows((5, 3, datetime.date(2030, 6, 1), "us", datetime.datetime(2030, 6, 1), Decimal("0.00"), None, 0.0)))
table.delete("n = 2")
snapshot = table.current_snapshot()
print(json.dumps({
    "manifest_list": snapshot.manifest_list,
    "snapshot_id": str(snapshot.snapshot_id),
    "parent_snapshot_id": str(snapshot.parent_snapshot_id),
    "sequence_number": snapshot.sequence_number,
    "view": list_view(snapshot.manifest_list),
}))`,
        { DIR: dir, CODEC: codec },
      );
      const theirs = JSON.parse(output) as {
        manifest_list: string;
        snapshot_id: string;
        parent_snapshot_id: string;
        sequence_number: number;
        view: { manifest: unknown; entries: { status: number; file_path: string; record_count: string }[] }[];
      };
      const list = decodeManifestListFile(readFileSync(fileURLToPath(theirs.manifest_list)));
      assert.equal(list.formatVersion, 2);
      assert.equal(String(list.snapshotId), theirs.snapshot_id);
      assert.equal(String(list.parentSnapshotId), theirs.parent_snapshot_id);
      assert.equal(list.sequenceNumber, theirs.sequence_number);

      // Everything pyiceberg reads, we read the same: paths, counts, partition values, metrics, bounds.
      assert.deepEqual(ourListView(theirs.manifest_list), theirs.view);

      // And the table's content is what was written: 4 live rows in 4 files, one file deleted (n = 2).
      const entries = theirs.view.flatMap((m) => m.entries);
      const live = entries.filter((e) => e.status !== 2);
      assert.equal(
        live.reduce((sum, e) => sum + Number(e.record_count), 0),
        4,
      );
      assert.equal(entries.filter((e) => e.status === 2).length, 1);

      const first = decodeManifestListFile(readFileSync(fileURLToPath(theirs.manifest_list))).manifests[0]!;
      const manifest = decodeManifest(readFileSync(fileURLToPath(first.manifestPath)));
      assert.equal(manifest.formatVersion, 2);
      assert.deepEqual(
        manifest.partitionType.fields.map((f) => [f.id, f.name, f.type]),
        [
          [1000, 'n', 'int'],
          [1001, 'day', 'date'],
          [1002, 'region', 'string'],
          [1003, 'ts', 'timestamp'],
          [1004, 'amount', 'decimal(10, 2)'],
        ],
      );
      assert.deepEqual(
        manifest.spec.fields.map((f) => f['field-id']),
        [1000, 1001, 1002, 1003, 1004],
      );
      assert.equal(manifest.schema.fields.length, 8);
      const all = theirs.view.flatMap((m) => m.entries.map((e) => e.file_path));
      for (const filePath of all) assert.match(filePath, /^file:\/\/.*\.parquet$/);
    });
  }
});
