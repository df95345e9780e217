import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTributaryError } from '../errors.ts';
import type { AvroField, AvroRecordSchema } from './avro/codec.ts';
import { readContainer, writeContainer } from './avro/container.ts';
import {
  decodeManifest,
  decodeManifestList,
  decodeManifestListFile,
  encodeManifest,
  encodeManifestList,
  inheritManifestMetadata,
  manifestEntryAvroSchema,
  summarizeEntries,
  UNASSIGNED_SEQUENCE_NUMBER,
  type DataFile,
  type ManifestEntry,
  type ManifestFile,
} from './manifest.ts';
import type { PartitionSpec } from './metadata.ts';
import type { Schema, StructType } from './types.ts';

const schema: Schema = {
  type: 'struct',
  'schema-id': 3,
  fields: [
    { id: 1, name: 'id', required: true, type: 'long' },
    { id: 2, name: 'region', required: false, type: 'string' },
    { id: 3, name: 'ts', required: true, type: 'timestamp' },
    { id: 4, name: 'amount', required: false, type: 'decimal(10, 2)' },
    { id: 5, name: 'key', required: false, type: 'uuid' },
    { id: 6, name: 'n', required: false, type: 'int' },
  ],
};

const spec: PartitionSpec = {
  'spec-id': 2,
  fields: [
    { 'source-id': 6, 'field-id': 1000, name: 'n', transform: 'identity' },
    { 'source-id': 3, 'field-id': 1001, name: 'ts_day', transform: 'day' },
    { 'source-id': 2, 'field-id': 1002, name: 'region', transform: 'identity' },
    { 'source-id': 3, 'field-id': 1003, name: 'ts', transform: 'identity' },
    { 'source-id': 4, 'field-id': 1004, name: 'amount', transform: 'identity' },
    { 'source-id': 5, 'field-id': 1005, name: 'key', transform: 'identity' },
    { 'source-id': 1, 'field-id': 1006, name: 'id_bucket', transform: 'bucket[16]' },
  ],
};

const partitionType: StructType = {
  type: 'struct',
  fields: [
    { id: 1000, name: 'n', required: false, type: 'int' },
    { id: 1001, name: 'ts_day', required: false, type: 'date' },
    { id: 1002, name: 'region', required: false, type: 'string' },
    { id: 1003, name: 'ts', required: false, type: 'timestamp' },
    { id: 1004, name: 'amount', required: false, type: 'decimal(10, 2)' },
    { id: 1005, name: 'key', required: false, type: 'uuid' },
    { id: 1006, name: 'id_bucket', required: false, type: 'int' },
  ],
};

const le64 = (n: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigInt64(0, n, true);
  return b;
};

const file1: DataFile = {
  content: 'data',
  filePath: 'file:///warehouse/t/data/a.parquet',
  fileFormat: 'PARQUET',
  partition: [7, 19_700, 'eu', 1_702_000_000_000_000n, -12_345n, 'c7e3a1f2-0b1d-4e5f-8a9b-0c1d2e3f4a5b', 3],
  recordCount: 1000,
  fileSizeInBytes: 123_456,
  columnSizes: new Map([
    [1, 800],
    [2, 300],
  ]),
  valueCounts: new Map([
    [1, 1000],
    [2, 1000],
  ]),
  nullValueCounts: new Map([
    [1, 0],
    [2, 12],
  ]),
  nanValueCounts: new Map(),
  lowerBounds: new Map([
    [1, le64(1n)],
    [2, new TextEncoder().encode('a')],
  ]),
  upperBounds: new Map([
    [1, le64(1000n)],
    [2, new TextEncoder().encode('z')],
  ]),
  splitOffsets: [4, 70_000],
  sortOrderId: 0,
};

const file2: DataFile = {
  content: 'data',
  filePath: 'file:///warehouse/t/data/b.parquet',
  fileFormat: 'PARQUET',
  partition: [null, null, null, null, null, null, null],
  recordCount: 5,
  fileSizeInBytes: 999,
};

const entries: ManifestEntry[] = [
  { status: 'added', snapshotId: 55n, dataFile: file1 },
  { status: 'existing', snapshotId: 44n, sequenceNumber: 3, fileSequenceNumber: 4, dataFile: file2 },
  {
    status: 'deleted',
    snapshotId: 55n,
    sequenceNumber: 1,
    fileSequenceNumber: 1,
    dataFile: { ...file2, filePath: 'file:///warehouse/t/data/c.parquet', recordCount: 7 },
  },
  { status: 'added', dataFile: { ...file2, filePath: 'file:///warehouse/t/data/d.parquet' } },
];

const options = { schema, spec, partitionType, content: 'data' as const };

const fieldIds = (record: AvroRecordSchema): [string, unknown][] =>
  record.fields.map((f) => [f.name, f['field-id']]);
const recordOf = (f: AvroField): AvroRecordSchema =>
  (Array.isArray(f.type) ? f.type[1] : f.type) as AvroRecordSchema;

describe('manifests', () => {
  it('round-trips entries, partition tuples of every type, metrics and bounds', () => {
    const decoded = decodeManifest(encodeManifest(entries, options));
    assert.deepEqual(decoded.entries, entries);
    assert.equal(decoded.formatVersion, 2);
    assert.equal(decoded.content, 'data');
    assert.deepEqual(decoded.schema, schema);
    assert.deepEqual(decoded.spec, spec);
    assert.deepEqual(decoded.partitionType, partitionType);
  });

  it('writes the header metadata of Java and pyiceberg', () => {
    const file = readContainer(encodeManifest(entries, options));
    assert.deepEqual(file.metadata, {
      schema: JSON.stringify(schema),
      'schema-id': '3',
      'partition-spec':
        '[{"name":"n","transform":"identity","source-id":6,"field-id":1000},' +
        '{"name":"ts_day","transform":"day","source-id":3,"field-id":1001},' +
        '{"name":"region","transform":"identity","source-id":2,"field-id":1002},' +
        '{"name":"ts","transform":"identity","source-id":3,"field-id":1003},' +
        '{"name":"amount","transform":"identity","source-id":4,"field-id":1004},' +
        '{"name":"key","transform":"identity","source-id":5,"field-id":1005},' +
        '{"name":"id_bucket","transform":"bucket[16]","source-id":1,"field-id":1006}]',
      'partition-spec-id': '2',
      'format-version': '2',
      content: 'data',
      'avro.codec': 'deflate',
    });
  });

  it('writes the v2 manifest_entry Avro schema with the spec’s field ids', () => {
    const avro = manifestEntryAvroSchema(partitionType);
    assert.equal(avro.name, 'manifest_entry');
    assert.deepEqual(fieldIds(avro), [
      ['status', 0],
      ['snapshot_id', 1],
      ['sequence_number', 3],
      ['file_sequence_number', 4],
      ['data_file', 2],
    ]);
    const dataFile = recordOf(avro.fields[4]!);
    assert.equal(dataFile.name, 'r2');
    assert.deepEqual(fieldIds(dataFile), [
      ['content', 134],
      ['file_path', 100],
      ['file_format', 101],
      ['partition', 102],
      ['record_count', 103],
      ['file_size_in_bytes', 104],
      ['column_sizes', 108],
      ['value_counts', 109],
      ['null_value_counts', 110],
      ['nan_value_counts', 137],
      ['lower_bounds', 125],
      ['upper_bounds', 128],
      ['key_metadata', 131],
      ['split_offsets', 132],
      ['equality_ids', 135],
      ['sort_order_id', 140],
      ['referenced_data_file', 143],
    ]);
    const partition = recordOf(dataFile.fields[3]!);
    assert.equal(partition.name, 'r102');
    assert.deepEqual(
      partition.fields.map((f) => f['field-id']),
      partitionType.fields.map((f) => f.id),
    );
    assert.deepEqual(dataFile.fields[6]!.type, [
      'null',
      {
        type: 'array',
        items: {
          type: 'record',
          name: 'k117_v118',
          fields: [
            { name: 'key', type: 'int', 'field-id': 117 },
            { name: 'value', type: 'long', 'field-id': 118 },
          ],
        },
        logicalType: 'map',
      },
    ]);
    assert.deepEqual(dataFile.fields[13]!.type, [
      'null',
      { type: 'array', items: 'long', 'element-id': 133 },
    ]);
  });

  it('writes unpartitioned manifests and delete manifests', () => {
    const unpartitioned = {
      ...options,
      spec: { 'spec-id': 0, fields: [] },
      partitionType: { type: 'struct' as const, fields: [] },
    };
    const deletes: ManifestEntry[] = [
      {
        status: 'added',
        dataFile: {
          content: 'equality-deletes',
          filePath: 's3://b/t/data/eq.parquet',
          fileFormat: 'PARQUET',
          partition: [],
          recordCount: 2,
          fileSizeInBytes: 10,
          equalityIds: [1, 2],
        },
      },
      {
        status: 'added',
        dataFile: {
          content: 'position-deletes',
          filePath: 's3://b/t/data/pos.parquet',
          fileFormat: 'PARQUET',
          partition: [],
          recordCount: 1,
          fileSizeInBytes: 10,
          referencedDataFile: 's3://b/t/data/x.parquet',
          keyMetadata: Uint8Array.of(9),
        },
      },
    ] satisfies ManifestEntry[];
    const decoded = decodeManifest(
      encodeManifest(deletes, { ...unpartitioned, content: 'deletes' as const }),
    );
    assert.equal(decoded.content, 'deletes');
    assert.deepEqual(decoded.entries, deletes);
    assert.throws(
      () => encodeManifest(deletes, { ...unpartitioned, content: 'data' as const }),
      (e) => isTributaryError(e, 'INVALID_INPUT') && /equality-deletes/.test((e as Error).message),
    );
  });

  it('rejects entries that break the spec', () => {
    const bad = (entry: ManifestEntry, pattern: RegExp): void =>
      assert.throws(
        () => encodeManifest([entry], options),
        (e) => isTributaryError(e, 'INVALID_INPUT') && pattern.test((e as Error).message),
      );
    bad({ status: 'existing', dataFile: file1 }, /sequence numbers/);
    bad({ status: 'added', dataFile: { ...file1, partition: [1] } }, /1 partition values/);
    bad(
      { status: 'added', dataFile: { ...file1, partition: ['x', ...file1.partition.slice(1)] } },
      /partition field n/,
    );
    bad({ status: 'added', dataFile: { ...file1, recordCount: 1.5 } }, /record_count/);
    assert.throws(
      () => encodeManifest([], { ...options, partitionType: { type: 'struct', fields: [] } }),
      (e) => isTributaryError(e, 'INVALID_INPUT'),
    );
  });

  it('finds fields by id, whatever their order, names or extra fields', () => {
    // A v3-style writer: reordered data_file fields, another name, an extra first_row_id.
    const avro = manifestEntryAvroSchema(partitionType);
    const dataFile = recordOf(avro.fields[4]!);
    const extra: AvroField = { name: 'first_row_id', type: ['null', 'long'], default: null, 'field-id': 142 };
    const renamed = dataFile.fields.map((f) => (f['field-id'] === 100 ? { ...f, name: 'path' } : f));
    const reordered: AvroRecordSchema = { ...dataFile, fields: [extra, ...renamed.reverse()] };
    const schemaJson = JSON.stringify({
      ...avro,
      fields: [...avro.fields.slice(0, 4), { ...avro.fields[4], type: reordered }],
    });
    const original = readContainer(encodeManifest(entries.slice(0, 1), options));
    const record = original.records[0] as { data_file: Record<string, unknown> } & Record<string, unknown>;
    const { file_path: path, ...rest } = record.data_file;
    const { 'avro.codec': _codec, ...metadata } = original.metadata;
    const bytes = writeContainer(schemaJson, metadata, [
      { ...record, data_file: { ...rest, path, first_row_id: 12n } },
    ]);
    assert.deepEqual(decodeManifest(bytes).entries, entries.slice(0, 1));
  });

  it('decodes no column metrics, or only those of the columns asked for', () => {
    const bytes = encodeManifest(entries, options);
    const keepOnly = (map: ReadonlyMap<number, unknown> | undefined, ids: number[]) =>
      map && new Map([...map].filter(([id]) => ids.includes(id)));
    const project = (ids: number[] | undefined) =>
      entries.map((entry) => {
        const {
          columnSizes,
          valueCounts,
          nullValueCounts,
          nanValueCounts,
          lowerBounds,
          upperBounds,
          ...rest
        } = entry.dataFile;
        const stats = { columnSizes, valueCounts, nullValueCounts, nanValueCounts, lowerBounds, upperBounds };
        const kept = Object.entries(stats).flatMap(([k, v]): [string, unknown][] =>
          ids && v !== undefined ? [[k, keepOnly(v, ids)]] : [],
        );
        return { ...entry, dataFile: { ...rest, ...Object.fromEntries(kept) } };
      });
    assert.deepEqual(decodeManifest(bytes, { columnStats: 'none' }).entries, project(undefined));
    assert.deepEqual(decodeManifest(bytes, { columnStats: new Set([2]) }).entries, project([2]));
    assert.deepEqual(decodeManifest(bytes, { columnStats: new Set([1, 2]) }).entries, entries);
    assert.deepEqual(decodeManifest(bytes, { columnStats: 'all' }).entries, entries);
    // The first entry's lower bound of column 2 is 'a'.
    const kept = decodeManifest(bytes, { columnStats: new Set([2]) }).entries[0]!.dataFile;
    assert.deepEqual(kept.lowerBounds, new Map([[2, new TextEncoder().encode('a')]]));
  });

  it('reads fields of shapes other writers may use through the generic decoder', () => {
    // A writer with a 3-branch union for snapshot_id, an enum file format, an Avro map (string keys) for
    // column_sizes and a long sort order id: none of these has a fast path.
    const avro = manifestEntryAvroSchema(partitionType);
    const dataFile = recordOf(avro.fields[4]!);
    const fields = dataFile.fields.map((f): AvroField => {
      switch (f['field-id']) {
        case 101:
          return { ...f, type: { type: 'enum', name: 'format', symbols: ['PARQUET', 'AVRO', 'ORC'] } };
        case 108:
          return { ...f, type: ['null', { type: 'map', values: 'long' }] };
        case 140:
          return { ...f, type: ['null', 'long'] };
        default:
          return f;
      }
    });
    const entryFields = avro.fields.map((f, i): AvroField => {
      if (i === 1) return { ...f, type: ['null', 'long', 'int'] };
      if (i === 4) return { ...f, type: { ...dataFile, fields } };
      return f;
    });
    const original = readContainer(encodeManifest(entries.slice(0, 2), options));
    const { 'avro.codec': _codec, ...metadata } = original.metadata;
    const records = (original.records as Record<string, Record<string, unknown>>[]).map((record) => {
      const sizes = record.data_file!.column_sizes as { key: number; value: bigint }[] | null;
      return {
        ...record,
        snapshot_id: record.snapshot_id === null ? null : Number(record.snapshot_id),
        data_file: {
          ...record.data_file,
          column_sizes: sizes && new Map(sizes.map(({ key, value }) => [String(key), value])),
          sort_order_id:
            record.data_file!.sort_order_id === null
              ? null
              : BigInt(record.data_file!.sort_order_id as number),
        },
      };
    });
    const bytes = writeContainer(JSON.stringify({ ...avro, fields: entryFields }), metadata, records);
    assert.deepEqual(decodeManifest(bytes).entries, entries.slice(0, 2));
    const kept = decodeManifest(bytes, { columnStats: new Set([2]) }).entries[0]!.dataFile;
    assert.deepEqual(kept.columnSizes, new Map([[2, 300]]));
  });

  it('names the entry a decoding error is in', () => {
    const original = readContainer(encodeManifest(entries.slice(0, 2), options));
    const { 'avro.codec': _codec, ...metadata } = original.metadata;
    const records = original.records as Record<string, Record<string, unknown>>[];
    const broken = [records[0], { ...records[1], data_file: { ...records[1]!.data_file, content: 7 } }];
    assert.throws(
      () => decodeManifest(writeContainer(original.schemaJson, metadata, broken), { file: 'm.avro' }),
      (e) =>
        isTributaryError(e, 'ICEBERG_INVALID_FILE') &&
        /m\.avro: manifest entry 1 has an unknown content 7/.test((e as Error).message),
    );
    // A field whose value does not fit the schema's expectations.
    const badLong = [{ ...records[0], data_file: { ...records[0]!.data_file, record_count: 1n << 60n } }];
    assert.throws(
      () => decodeManifest(writeContainer(original.schemaJson, metadata, badLong), { file: 'm.avro' }),
      (e) =>
        isTributaryError(e, 'ICEBERG_INVALID_FILE') &&
        /manifest entry 0: .*out of range/.test((e as Error).message),
    );
  });

  it('reads v1 manifests onto the v2 model', () => {
    const v1: AvroRecordSchema = {
      type: 'record',
      name: 'manifest_entry',
      fields: [
        { name: 'status', type: 'int', 'field-id': 0 },
        { name: 'snapshot_id', type: 'long', 'field-id': 1 },
        {
          name: 'data_file',
          'field-id': 2,
          type: {
            type: 'record',
            name: 'r2',
            fields: [
              { name: 'file_path', type: 'string', 'field-id': 100 },
              { name: 'file_format', type: 'string', 'field-id': 101 },
              {
                name: 'partition',
                'field-id': 102,
                type: {
                  type: 'record',
                  name: 'r102',
                  fields: [
                    { name: 'day', type: ['null', { type: 'int', logicalType: 'date' }], default: null },
                  ],
                },
              },
              { name: 'record_count', type: 'long', 'field-id': 103 },
              { name: 'file_size_in_bytes', type: 'long', 'field-id': 104 },
              { name: 'block_size_in_bytes', type: 'long', 'field-id': 105 },
            ],
          },
        },
      ],
    };
    const bytes = writeContainer(
      JSON.stringify(v1),
      {
        schema: JSON.stringify({ type: 'struct', fields: schema.fields }),
        'partition-spec': '[{"name":"day","transform":"day","source-id":3,"field-id":1000}]',
      },
      [
        {
          status: 1,
          snapshot_id: 9n,
          data_file: {
            file_path: 'hdfs://x/a.avro',
            file_format: 'avro',
            partition: { day: 18_000 },
            record_count: 3n,
            file_size_in_bytes: 30n,
            block_size_in_bytes: 67_108_864n,
          },
        },
      ],
    );
    const decoded = decodeManifest(bytes);
    assert.equal(decoded.formatVersion, 1);
    assert.equal(decoded.schema['schema-id'], 0);
    assert.deepEqual(decoded.spec, {
      'spec-id': 0,
      fields: [{ name: 'day', transform: 'day', 'source-id': 3, 'field-id': 1000 }],
    });
    assert.deepEqual(decoded.partitionType, {
      type: 'struct',
      fields: [{ id: 1000, name: 'day', required: false, type: 'date' }],
    });
    assert.deepEqual(decoded.entries, [
      {
        status: 'added',
        snapshotId: 9n,
        dataFile: {
          content: 'data',
          filePath: 'hdfs://x/a.avro',
          fileFormat: 'AVRO',
          partition: [18_000],
          recordCount: 3,
          fileSizeInBytes: 30,
        },
      },
    ]);
  });

  it('reports files that are not manifests', () => {
    const notManifest = writeContainer('"long"', {}, [1n]);
    assert.throws(
      () => decodeManifest(notManifest, { file: 'm.avro' }),
      (e) => isTributaryError(e, 'ICEBERG_INVALID_FILE') && /m\.avro/.test((e as Error).message),
    );
    const v2 = readContainer(encodeManifest(entries, options));
    const { 'avro.codec': _codec, ...metadata } = v2.metadata;
    const bytes = writeContainer(v2.schemaJson, { ...metadata, 'format-version': '3' }, []);
    assert.throws(() => decodeManifest(bytes), /version 3/);
  });
});

describe('sequence number and snapshot id inheritance', () => {
  const manifest: ManifestFile = {
    manifestPath: 'm.avro',
    manifestLength: 1,
    partitionSpecId: 2,
    content: 'data',
    sequenceNumber: 12,
    minSequenceNumber: 1,
    addedSnapshotId: 55n,
    addedFilesCount: 2,
    existingFilesCount: 1,
    deletedFilesCount: 1,
    addedRowsCount: 1005,
    existingRowsCount: 5,
    deletedRowsCount: 7,
  };

  it('fills null values of ADDED entries from the manifest list entry', () => {
    const inherited = inheritManifestMetadata(entries, manifest);
    assert.deepEqual(
      inherited.map((e) => [e.status, e.snapshotId, e.sequenceNumber, e.fileSequenceNumber]),
      [
        ['added', 55n, 12, 12],
        ['existing', 44n, 3, 4],
        ['deleted', 55n, 1, 1],
        ['added', 55n, 12, 12],
      ],
    );
    // Explicit sequence numbers of ADDED entries are kept.
    const explicit = inheritManifestMetadata(
      [{ ...entries[0]!, sequenceNumber: 2, fileSequenceNumber: 12 }],
      manifest,
    );
    assert.equal(explicit[0]!.sequenceNumber, 2);
  });

  it('gives every entry of a v1 manifest sequence number 0', () => {
    const inherited = inheritManifestMetadata([{ status: 'existing', snapshotId: 1n, dataFile: file2 }], {
      ...manifest,
      sequenceNumber: 0,
      minSequenceNumber: 0,
    });
    assert.equal(inherited[0]!.sequenceNumber, 0);
    assert.equal(inherited[0]!.fileSequenceNumber, 0);
  });

  it('leaves missing numbers of existing entries in v2 undefined', () => {
    const inherited = inheritManifestMetadata([{ status: 'existing', dataFile: file2 }], manifest);
    assert.equal(inherited[0]!.sequenceNumber, undefined);
    assert.equal(inherited[0]!.snapshotId, 55n);
  });

  it('summarizes entries for the manifest list', () => {
    assert.deepEqual(summarizeEntries(entries), {
      addedFilesCount: 2,
      existingFilesCount: 1,
      deletedFilesCount: 1,
      addedRowsCount: 1005,
      existingRowsCount: 5,
      deletedRowsCount: 7,
      minSequenceNumber: 3,
    });
    assert.equal(summarizeEntries(entries.slice(0, 1)).minSequenceNumber, UNASSIGNED_SEQUENCE_NUMBER);
  });
});

describe('manifest lists', () => {
  const old: ManifestFile = {
    manifestPath: 'file:///w/t/metadata/old-m0.avro',
    manifestLength: 7001,
    partitionSpecId: 2,
    content: 'data',
    sequenceNumber: 4,
    minSequenceNumber: 2,
    addedSnapshotId: 44n,
    addedFilesCount: 0,
    existingFilesCount: 3,
    deletedFilesCount: 0,
    addedRowsCount: 0,
    existingRowsCount: 30,
    deletedRowsCount: 0,
    partitions: [
      {
        containsNull: false,
        containsNaN: false,
        lowerBound: Uint8Array.of(1, 0, 0, 0),
        upperBound: Uint8Array.of(9, 0, 0, 0),
      },
      { containsNull: true },
    ],
  };
  const added: ManifestFile = {
    ...old,
    manifestPath: 'file:///w/t/metadata/new-m1.avro',
    content: 'deletes',
    sequenceNumber: UNASSIGNED_SEQUENCE_NUMBER,
    minSequenceNumber: UNASSIGNED_SEQUENCE_NUMBER,
    addedSnapshotId: -9_000_000_000_000_000_001n,
    keyMetadata: Uint8Array.of(1, 2),
    partitions: [],
  };

  it('round-trips manifests, assigning the snapshot’s sequence number to new ones', () => {
    const bytes = encodeManifestList([old, added], {
      snapshotId: -9_000_000_000_000_000_001n,
      parentSnapshotId: 44n,
      sequenceNumber: 5,
    });
    const list = decodeManifestListFile(bytes);
    assert.deepEqual(list, {
      manifests: [old, { ...added, sequenceNumber: 5, minSequenceNumber: 5 }],
      snapshotId: -9_000_000_000_000_000_001n,
      parentSnapshotId: 44n,
      sequenceNumber: 5,
      formatVersion: 2,
    });
    assert.deepEqual(decodeManifestList(bytes), list.manifests);
    assert.deepEqual(readContainer(bytes).metadata, {
      'snapshot-id': '-9000000000000000001',
      'parent-snapshot-id': '44',
      'sequence-number': '5',
      'format-version': '2',
      'avro.codec': 'deflate',
    });
  });

  it('writes "null" for a missing parent, as Java does', () => {
    const bytes = encodeManifestList([], { snapshotId: 1n, sequenceNumber: 1 });
    assert.equal(readContainer(bytes).metadata['parent-snapshot-id'], 'null');
    assert.equal(decodeManifestListFile(bytes).parentSnapshotId, undefined);
  });

  it('refuses an unassigned sequence number in a manifest of another snapshot', () => {
    assert.throws(
      () => encodeManifestList([added], { snapshotId: 1n, sequenceNumber: 5 }),
      (e) => isTributaryError(e, 'INVALID_INPUT') && /unassigned/.test((e as Error).message),
    );
  });

  it('writes the v2 manifest_file schema with field ids 500-519', () => {
    const avro = readContainer(encodeManifestList([old], { snapshotId: 44n, sequenceNumber: 4 }))
      .schema as AvroRecordSchema;
    assert.equal(avro.name, 'manifest_file');
    assert.deepEqual(fieldIds(avro), [
      ['manifest_path', 500],
      ['manifest_length', 501],
      ['partition_spec_id', 502],
      ['content', 517],
      ['sequence_number', 515],
      ['min_sequence_number', 516],
      ['added_snapshot_id', 503],
      ['added_files_count', 504],
      ['existing_files_count', 505],
      ['deleted_files_count', 506],
      ['added_rows_count', 512],
      ['existing_rows_count', 513],
      ['deleted_rows_count', 514],
      ['partitions', 507],
      ['key_metadata', 519],
    ]);
    const partitions = avro.fields[13]!.type as [string, { items: AvroRecordSchema; 'element-id': number }];
    assert.equal(partitions[1]['element-id'], 508);
    assert.equal(partitions[1].items.name, 'r508');
    assert.deepEqual(fieldIds(partitions[1].items), [
      ['contains_null', 509],
      ['contains_nan', 518],
      ['lower_bound', 510],
      ['upper_bound', 511],
    ]);
  });

  it('reads v1 manifest lists with sequence numbers 0', () => {
    const v1: AvroRecordSchema = {
      type: 'record',
      name: 'manifest_file',
      fields: [
        { name: 'manifest_path', type: 'string', 'field-id': 500 },
        { name: 'manifest_length', type: 'long', 'field-id': 501 },
        { name: 'partition_spec_id', type: 'int', 'field-id': 502 },
        { name: 'added_snapshot_id', type: ['null', 'long'], default: null, 'field-id': 503 },
        { name: 'added_data_files_count', type: ['null', 'int'], default: null, 'field-id': 504 },
        { name: 'existing_data_files_count', type: ['null', 'int'], default: null, 'field-id': 505 },
        { name: 'deleted_data_files_count', type: ['null', 'int'], default: null, 'field-id': 506 },
        { name: 'added_rows_count', type: ['null', 'long'], default: null, 'field-id': 512 },
        { name: 'existing_rows_count', type: ['null', 'long'], default: null, 'field-id': 513 },
        { name: 'deleted_rows_count', type: ['null', 'long'], default: null, 'field-id': 514 },
      ],
    };
    const bytes = writeContainer(JSON.stringify(v1), { 'snapshot-id': '9', 'format-version': '1' }, [
      {
        manifest_path: 'a.avro',
        manifest_length: 10n,
        partition_spec_id: 0,
        added_snapshot_id: 9n,
        added_data_files_count: 1,
        existing_data_files_count: 0,
        deleted_data_files_count: 0,
        added_rows_count: 3n,
        existing_rows_count: 0n,
        deleted_rows_count: 0n,
      },
    ]);
    const list = decodeManifestListFile(bytes);
    assert.equal(list.formatVersion, 1);
    assert.deepEqual(list.manifests[0], {
      manifestPath: 'a.avro',
      manifestLength: 10,
      partitionSpecId: 0,
      content: 'data',
      sequenceNumber: 0,
      minSequenceNumber: 0,
      addedSnapshotId: 9n,
      addedFilesCount: 1,
      existingFilesCount: 0,
      deletedFilesCount: 0,
      addedRowsCount: 3,
      existingRowsCount: 0,
      deletedRowsCount: 0,
    });
  });
});
