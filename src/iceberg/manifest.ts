/**
 * Iceberg manifests and manifest lists (format v2; v1 files are read too), as Avro container files laid
 * out exactly as Java Iceberg and pyiceberg write them, so that every engine reads ours and we read theirs.
 *
 * Reading never trusts field names or positions: fields are found by their Iceberg field id in the
 * writer's Avro schema (the one stored in the file), so files written with older or newer schemas (v1,
 * v3 additions, reordered or renamed fields) map onto the model below.
 *
 * Longs: snapshot ids are bigints; counts, sizes, offsets and sequence numbers are numbers, and a file
 * holding one beyond 2^53 (no real table does) fails to decode with ICEBERG_INVALID_FILE rather than
 * losing precision.
 *
 * Sequence numbers and snapshot ids left undefined on entries are inherited from the manifest list on
 * read (`inheritManifestMetadata`). Manifests written in the snapshot being committed carry the
 * placeholder `UNASSIGNED_SEQUENCE_NUMBER` in `ManifestFile.sequenceNumber` (and `minSequenceNumber` when
 * no entry has one); `encodeManifestList` replaces it with the new snapshot's sequence number, as Java and
 * pyiceberg do.
 */
import { TributaryError } from '../errors.ts';
import {
  compile,
  expandSchema,
  type AvroArraySchema,
  type AvroReader,
  type AvroField,
  type AvroRecordSchema,
  type AvroSchema,
} from './avro/codec.ts';
import {
  openContainer,
  parseContainerSchema,
  readContainer,
  writeContainer,
  type WriteCodec,
} from './avro/container.ts';
import {
  avroToIcebergType,
  FIELD_ID_PROP,
  fromAvroValue,
  icebergToAvroSchema,
  ICEBERG_FIELD_NAME_PROP,
  toAvroValue,
  unwrapOptional,
} from './avro/iceberg-schema.ts';
import type { PartitionField, PartitionSpec } from './metadata.ts';
import type { IcebergValue, NestedField, Schema, StructType } from './types.ts';

// ---------------------------------------------------------------------------------------------------
// Model

export type DataFileContent = 'data' | 'position-deletes' | 'equality-deletes';

export interface DataFile {
  readonly content: DataFileContent;
  /** Full URI, e.g. file:///…/data/x.parquet. */
  readonly filePath: string;
  readonly fileFormat: 'PARQUET' | 'AVRO' | 'ORC';
  /** In the order of the spec's fields, values per types.ts. */
  readonly partition: readonly IcebergValue[];
  readonly recordCount: number;
  readonly fileSizeInBytes: number;
  readonly columnSizes?: ReadonlyMap<number, number>;
  readonly valueCounts?: ReadonlyMap<number, number>;
  readonly nullValueCounts?: ReadonlyMap<number, number>;
  readonly nanValueCounts?: ReadonlyMap<number, number>;
  /**
   * Single-value serialized, keyed by field id. Decoded bounds are views of the manifest's decompressed
   * bytes, not copies: treat them as read-only.
   */
  readonly lowerBounds?: ReadonlyMap<number, Uint8Array>;
  /** As lowerBounds. */
  readonly upperBounds?: ReadonlyMap<number, Uint8Array>;
  readonly keyMetadata?: Uint8Array;
  readonly splitOffsets?: readonly number[];
  readonly equalityIds?: readonly number[];
  readonly sortOrderId?: number;
  /** Position deletes only: the one data file all of its deletes reference (field 143). */
  readonly referencedDataFile?: string;
}

export type ManifestEntryStatus = 'existing' | 'added' | 'deleted';

export interface ManifestEntry {
  readonly status: ManifestEntryStatus;
  /** Undefined = inherit from the manifest list entry. */
  readonly snapshotId?: bigint;
  /** Data sequence number; undefined = inherit (ADDED entries only). */
  readonly sequenceNumber?: number;
  readonly fileSequenceNumber?: number;
  readonly dataFile: DataFile;
}

export interface FieldSummary {
  readonly containsNull: boolean;
  readonly containsNaN?: boolean;
  readonly lowerBound?: Uint8Array;
  readonly upperBound?: Uint8Array;
}

export type ManifestContent = 'data' | 'deletes';

export interface ManifestFile {
  readonly manifestPath: string;
  readonly manifestLength: number;
  readonly partitionSpecId: number;
  readonly content: ManifestContent;
  /** `UNASSIGNED_SEQUENCE_NUMBER` for a manifest added by the snapshot being written. */
  readonly sequenceNumber: number;
  readonly minSequenceNumber: number;
  readonly addedSnapshotId: bigint;
  readonly addedFilesCount: number;
  readonly existingFilesCount: number;
  readonly deletedFilesCount: number;
  readonly addedRowsCount: number;
  readonly existingRowsCount: number;
  readonly deletedRowsCount: number;
  readonly partitions?: readonly FieldSummary[];
  readonly keyMetadata?: Uint8Array;
}

/** Stand-in for the sequence number of the commit being written (Java's and pyiceberg's UNASSIGNED_SEQ). */
export const UNASSIGNED_SEQUENCE_NUMBER = -1;

// ---------------------------------------------------------------------------------------------------
// File schemas (Iceberg spec "Manifests" and "Manifest Lists", v2), as Iceberg structs

const field = (id: number, name: string, type: NestedField['type'], required: boolean): NestedField => ({
  id,
  name,
  type,
  required,
});

const intLongMap = (keyId: number, valueId: number): NestedField['type'] => ({
  type: 'map',
  'key-id': keyId,
  key: 'int',
  'value-id': valueId,
  value: 'long',
  'value-required': true,
});

const intBinaryMap = (keyId: number, valueId: number): NestedField['type'] => ({
  type: 'map',
  'key-id': keyId,
  key: 'int',
  'value-id': valueId,
  value: 'binary',
  'value-required': true,
});

function dataFileTypeV2(partitionType: StructType): StructType {
  return {
    type: 'struct',
    fields: [
      field(134, 'content', 'int', true),
      field(100, 'file_path', 'string', true),
      field(101, 'file_format', 'string', true),
      field(102, 'partition', partitionType, true),
      field(103, 'record_count', 'long', true),
      field(104, 'file_size_in_bytes', 'long', true),
      field(108, 'column_sizes', intLongMap(117, 118), false),
      field(109, 'value_counts', intLongMap(119, 120), false),
      field(110, 'null_value_counts', intLongMap(121, 122), false),
      field(137, 'nan_value_counts', intLongMap(138, 139), false),
      field(125, 'lower_bounds', intBinaryMap(126, 127), false),
      field(128, 'upper_bounds', intBinaryMap(129, 130), false),
      field(131, 'key_metadata', 'binary', false),
      field(
        132,
        'split_offsets',
        { type: 'list', 'element-id': 133, element: 'long', 'element-required': true },
        false,
      ),
      field(
        135,
        'equality_ids',
        { type: 'list', 'element-id': 136, element: 'int', 'element-required': true },
        false,
      ),
      field(140, 'sort_order_id', 'int', false),
      field(143, 'referenced_data_file', 'string', false),
    ],
  };
}

function manifestEntryTypeV2(partitionType: StructType): StructType {
  return {
    type: 'struct',
    fields: [
      field(0, 'status', 'int', true),
      field(1, 'snapshot_id', 'long', false),
      field(3, 'sequence_number', 'long', false),
      field(4, 'file_sequence_number', 'long', false),
      field(2, 'data_file', dataFileTypeV2(partitionType), true),
    ],
  };
}

const FIELD_SUMMARY_TYPE: StructType = {
  type: 'struct',
  fields: [
    field(509, 'contains_null', 'boolean', true),
    field(518, 'contains_nan', 'boolean', false),
    field(510, 'lower_bound', 'binary', false),
    field(511, 'upper_bound', 'binary', false),
  ],
};

const MANIFEST_FILE_TYPE_V2: StructType = {
  type: 'struct',
  fields: [
    field(500, 'manifest_path', 'string', true),
    field(501, 'manifest_length', 'long', true),
    field(502, 'partition_spec_id', 'int', true),
    field(517, 'content', 'int', true),
    field(515, 'sequence_number', 'long', true),
    field(516, 'min_sequence_number', 'long', true),
    field(503, 'added_snapshot_id', 'long', true),
    field(504, 'added_files_count', 'int', true),
    field(505, 'existing_files_count', 'int', true),
    field(506, 'deleted_files_count', 'int', true),
    field(512, 'added_rows_count', 'long', true),
    field(513, 'existing_rows_count', 'long', true),
    field(514, 'deleted_rows_count', 'long', true),
    field(
      507,
      'partitions',
      { type: 'list', 'element-id': 508, element: FIELD_SUMMARY_TYPE, 'element-required': true },
      false,
    ),
    field(519, 'key_metadata', 'binary', false),
  ],
};

/** The Avro schema JSON of v2 manifest entries for a partition type (as written in the file header). */
export function manifestEntryAvroSchema(partitionType: StructType): AvroRecordSchema {
  return icebergToAvroSchema(manifestEntryTypeV2(partitionType), 'manifest_entry');
}

/** The Avro schema of v2 manifest lists. */
export function manifestListAvroSchema(): AvroRecordSchema {
  return icebergToAvroSchema(MANIFEST_FILE_TYPE_V2, 'manifest_file');
}

// ---------------------------------------------------------------------------------------------------
// Encoding

const STATUS_CODES: Readonly<Record<ManifestEntryStatus, number>> = { existing: 0, added: 1, deleted: 2 };
const STATUSES: readonly ManifestEntryStatus[] = ['existing', 'added', 'deleted'];
const CONTENT_CODES: Readonly<Record<DataFileContent, number>> = {
  data: 0,
  'position-deletes': 1,
  'equality-deletes': 2,
};
const CONTENTS: readonly DataFileContent[] = ['data', 'position-deletes', 'equality-deletes'];
const FORMATS: ReadonlySet<string> = new Set(['PARQUET', 'AVRO', 'ORC']);

function inputError(message: string): TributaryError {
  return new TributaryError('INVALID_INPUT', message);
}

function kvArray<V>(map: ReadonlyMap<number, V> | undefined): { key: number; value: V }[] | null {
  if (map === undefined) return null;
  return [...map].map(([key, value]) => ({ key, value }));
}

export interface EncodeManifestOptions {
  readonly schema: Schema;
  readonly spec: PartitionSpec;
  /** The spec's partition struct: one field per spec field, with the partition field ids and result types. */
  readonly partitionType: StructType;
  readonly content: ManifestContent;
  /** Block compression; `deflate` (Iceberg's default, "gzip") unless given. */
  readonly codec?: WriteCodec;
}

/** The JSON of a partition spec's fields, as Java's PartitionSpecParser.toJsonFields writes it. */
function specFieldsJson(spec: PartitionSpec): string {
  return JSON.stringify(
    spec.fields.map((f) => ({
      name: f.name,
      transform: f.transform,
      'source-id': f['source-id'],
      'field-id': f['field-id'],
    })),
  );
}

/** Writes a v2 manifest file (an Avro container) holding the entries. */
export function encodeManifest(entries: Iterable<ManifestEntry>, options: EncodeManifestOptions): Uint8Array {
  const { schema, spec, partitionType, content } = options;
  if (partitionType.fields.length !== spec.fields.length) {
    throw inputError(
      `The partition type has ${partitionType.fields.length} fields but spec ${spec['spec-id']} has ${spec.fields.length}`,
    );
  }
  partitionType.fields.forEach((f, i) => {
    if (f.id !== spec.fields[i]!['field-id']) {
      throw inputError(
        `Partition type field ${f.name} has id ${f.id}, spec field ${i} has ${spec.fields[i]!['field-id']}`,
      );
    }
  });
  const avroSchema = manifestEntryAvroSchema(partitionType);
  const partitionRecord = findField(findRecord(avroSchema, 2, 'data_file'), 102);
  const partitionNames = (unwrapOptional(partitionRecord.type).type as AvroRecordSchema).fields.map(
    (f) => f.name,
  );

  const records = [...entries].map((entry, index) => {
    const file = entry.dataFile;
    const where = `manifest entry ${index} (${file.filePath})`;
    if (!(entry.status in STATUS_CODES))
      throw inputError(`${where} has an unknown status ${String(entry.status)}`);
    if (
      entry.status !== 'added' &&
      (entry.sequenceNumber === undefined || entry.fileSequenceNumber === undefined)
    ) {
      throw inputError(`${where} is ${entry.status}: it must carry its data and file sequence numbers`);
    }
    if ((content === 'data') !== (file.content === 'data')) {
      throw inputError(`${where} holds a ${file.content} file, which cannot be in a ${content} manifest`);
    }
    if (!FORMATS.has(file.fileFormat))
      throw inputError(`${where} has an unknown file format ${file.fileFormat}`);
    if (file.partition.length !== partitionType.fields.length) {
      throw inputError(
        `${where} has ${file.partition.length} partition values, the spec has ${partitionType.fields.length} fields`,
      );
    }
    const partition: Record<string, unknown> = {};
    partitionType.fields.forEach((f, i) => {
      const value = file.partition[i] ?? null;
      if (value === null && f.required) throw inputError(`${where}: partition field ${f.name} is required`);
      try {
        partition[partitionNames[i]!] = toAvroValue(f.type, value);
      } catch (cause) {
        throw new TributaryError(
          'INVALID_INPUT',
          `${where}: partition field ${f.name}: ${(cause as Error).message}`,
          {
            cause,
          },
        );
      }
    });
    return {
      status: STATUS_CODES[entry.status],
      snapshot_id: entry.snapshotId ?? null,
      sequence_number: entry.sequenceNumber ?? null,
      file_sequence_number: entry.fileSequenceNumber ?? null,
      data_file: {
        content: CONTENT_CODES[file.content],
        file_path: file.filePath,
        file_format: file.fileFormat,
        partition,
        record_count: file.recordCount,
        file_size_in_bytes: file.fileSizeInBytes,
        column_sizes: kvArray(file.columnSizes),
        value_counts: kvArray(file.valueCounts),
        null_value_counts: kvArray(file.nullValueCounts),
        nan_value_counts: kvArray(file.nanValueCounts),
        lower_bounds: kvArray(file.lowerBounds),
        upper_bounds: kvArray(file.upperBounds),
        key_metadata: file.keyMetadata ?? null,
        split_offsets: file.splitOffsets ?? null,
        equality_ids: file.equalityIds ?? null,
        sort_order_id: file.sortOrderId ?? null,
        referenced_data_file: file.referencedDataFile ?? null,
      },
    };
  });

  const metadata: Record<string, string> = {
    schema: JSON.stringify(schema),
    'schema-id': String(schema['schema-id']),
    'partition-spec': specFieldsJson(spec),
    'partition-spec-id': String(spec['spec-id']),
    'format-version': '2',
    content,
  };
  return writeContainer(JSON.stringify(avroSchema), metadata, records, { codec: options.codec ?? 'deflate' });
}

export interface EncodeManifestListOptions {
  readonly snapshotId: bigint;
  readonly parentSnapshotId?: bigint;
  /** The sequence number of the snapshot; replaces `UNASSIGNED_SEQUENCE_NUMBER` in manifests it added. */
  readonly sequenceNumber: number;
  readonly codec?: WriteCodec;
}

/** Writes a v2 manifest list (an Avro container) for a snapshot. */
export function encodeManifestList(
  files: Iterable<ManifestFile>,
  options: EncodeManifestListOptions,
): Uint8Array {
  const { snapshotId, sequenceNumber } = options;
  const records = [...files].map((file) => {
    const assign = (value: number, what: string): number => {
      if (value !== UNASSIGNED_SEQUENCE_NUMBER) return value;
      if (file.addedSnapshotId !== snapshotId) {
        throw inputError(
          `Manifest ${file.manifestPath} has an unassigned ${what} but was added by snapshot ${file.addedSnapshotId}, not ${snapshotId}`,
        );
      }
      return sequenceNumber;
    };
    return {
      manifest_path: file.manifestPath,
      manifest_length: file.manifestLength,
      partition_spec_id: file.partitionSpecId,
      content: file.content === 'deletes' ? 1 : 0,
      sequence_number: assign(file.sequenceNumber, 'sequence number'),
      min_sequence_number: assign(file.minSequenceNumber, 'min sequence number'),
      added_snapshot_id: file.addedSnapshotId,
      added_files_count: file.addedFilesCount,
      existing_files_count: file.existingFilesCount,
      deleted_files_count: file.deletedFilesCount,
      added_rows_count: file.addedRowsCount,
      existing_rows_count: file.existingRowsCount,
      deleted_rows_count: file.deletedRowsCount,
      partitions:
        file.partitions?.map((s) => ({
          contains_null: s.containsNull,
          contains_nan: s.containsNaN ?? null,
          lower_bound: s.lowerBound ?? null,
          upper_bound: s.upperBound ?? null,
        })) ?? null,
      key_metadata: file.keyMetadata ?? null,
    };
  });
  const metadata: Record<string, string> = {
    'snapshot-id': String(snapshotId),
    'parent-snapshot-id': options.parentSnapshotId === undefined ? 'null' : String(options.parentSnapshotId),
    'sequence-number': String(sequenceNumber),
    'format-version': '2',
  };
  return writeContainer(JSON.stringify(manifestListAvroSchema()), metadata, records, {
    codec: options.codec ?? 'deflate',
  });
}

/** Counts of a manifest's entries for its manifest list entry; `minSequenceNumber` is
 * `UNASSIGNED_SEQUENCE_NUMBER` when no live entry has a sequence number yet. */
export function summarizeEntries(entries: Iterable<ManifestEntry>): {
  addedFilesCount: number;
  existingFilesCount: number;
  deletedFilesCount: number;
  addedRowsCount: number;
  existingRowsCount: number;
  deletedRowsCount: number;
  minSequenceNumber: number;
} {
  const counts = {
    addedFilesCount: 0,
    existingFilesCount: 0,
    deletedFilesCount: 0,
    addedRowsCount: 0,
    existingRowsCount: 0,
    deletedRowsCount: 0,
  };
  let min: number | undefined;
  for (const entry of entries) {
    const rows = entry.dataFile.recordCount;
    if (entry.status === 'added') {
      counts.addedFilesCount++;
      counts.addedRowsCount += rows;
    } else if (entry.status === 'existing') {
      counts.existingFilesCount++;
      counts.existingRowsCount += rows;
    } else {
      counts.deletedFilesCount++;
      counts.deletedRowsCount += rows;
    }
    if (entry.status !== 'deleted' && entry.sequenceNumber !== undefined) {
      min = min === undefined ? entry.sequenceNumber : Math.min(min, entry.sequenceNumber);
    }
  }
  return { ...counts, minSequenceNumber: min ?? UNASSIGNED_SEQUENCE_NUMBER };
}

// ---------------------------------------------------------------------------------------------------
// Decoding

export interface DecodeOptions {
  /** Named in error messages: the path or URI the bytes came from. */
  readonly file?: string;
}

function fileError(file: string | undefined, message: string, cause?: unknown): TributaryError {
  return new TributaryError('ICEBERG_INVALID_FILE', `${file ? `${file}: ` : ''}${message}`, {
    context: file ? { file } : {},
    ...(cause === undefined ? {} : { cause }),
  });
}

function asRecord(schema: AvroSchema): AvroRecordSchema | undefined {
  const type = unwrapOptional(schema).type;
  if (typeof type === 'object' && !Array.isArray(type)) {
    const object = type as { type?: unknown };
    if (object.type === 'record' || object.type === 'error') return type as AvroRecordSchema;
  }
  return undefined;
}

function fieldIdOf(f: AvroField): number | undefined {
  const id = f[FIELD_ID_PROP];
  return typeof id === 'number' ? id : typeof id === 'string' && /^\d+$/.test(id) ? Number(id) : undefined;
}

function findField(record: AvroRecordSchema, id: number): AvroField {
  const found = record.fields.find((f) => fieldIdOf(f) === id);
  if (!found)
    throw new TributaryError('ICEBERG_INVALID_FILE', `Avro record ${record.name} has no field with id ${id}`);
  return found;
}

function findRecord(record: AvroRecordSchema, id: number, what: string): AvroRecordSchema {
  const nested = asRecord(findField(record, id).type);
  if (!nested)
    throw new TributaryError('ICEBERG_INVALID_FILE', `The ${what} field of ${record.name} is not a record`);
  return nested;
}

/** Reads decoded Avro records by Iceberg field id, through the writer schema's names. */
class ById {
  private readonly names = new Map<number, string>();
  private readonly file: string | undefined;
  readonly what: string;

  constructor(record: AvroRecordSchema, what: string, file: string | undefined) {
    this.what = what;
    this.file = file;
    for (const f of record.fields) {
      const id = fieldIdOf(f);
      if (id !== undefined) this.names.set(id, f.name);
    }
  }

  has(id: number): boolean {
    return this.names.has(id);
  }

  /** The raw value of the field, or null when the field is absent from the file. */
  get(value: Record<string, unknown>, id: number): unknown {
    const name = this.names.get(id);
    return name === undefined ? null : (value[name] ?? null);
  }

  required(value: Record<string, unknown>, id: number, name: string): unknown {
    const v = this.get(value, id);
    if (v === null) throw fileError(this.file, `${this.what} has no ${name} (field ${id})`);
    return v;
  }

  number(value: unknown, name: string): number {
    if (typeof value === 'number') return value;
    if (
      typeof value === 'bigint' &&
      value <= BigInt(Number.MAX_SAFE_INTEGER) &&
      value >= -BigInt(Number.MAX_SAFE_INTEGER)
    ) {
      return Number(value);
    }
    throw fileError(this.file, `${this.what} has an invalid ${name}: ${String(value)}`);
  }

  optionalNumber(record: Record<string, unknown>, id: number, name: string): number | undefined {
    const v = this.get(record, id);
    return v === null ? undefined : this.number(v, name);
  }

  requiredNumber(record: Record<string, unknown>, id: number, name: string): number {
    return this.number(this.required(record, id, name), name);
  }

  bigint(record: Record<string, unknown>, id: number, name: string): bigint | undefined {
    const v = this.get(record, id);
    if (v === null) return undefined;
    if (typeof v === 'bigint') return v;
    if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
    throw fileError(this.file, `${this.what} has an invalid ${name}`);
  }

  bytes(record: Record<string, unknown>, id: number, name: string): Uint8Array | undefined {
    const v = this.get(record, id);
    if (v === null) return undefined;
    if (v instanceof Uint8Array) return v;
    throw fileError(this.file, `${this.what} has an invalid ${name}`);
  }

  /** A map<int, V> stored as an array of key/value records (or, from some writers, an Avro map). */
  intMap<V>(
    record: Record<string, unknown>,
    id: number,
    name: string,
    convert: (v: unknown) => V,
  ): Map<number, V> | undefined {
    const v = this.get(record, id);
    if (v === null) return undefined;
    const out = new Map<number, V>();
    if (Array.isArray(v)) {
      for (const kv of v as Record<string, unknown>[])
        out.set(this.number(kv.key, `${name} key`), convert(kv.value));
    } else if (v instanceof Map) {
      for (const [k, value] of v as Map<string, unknown>) out.set(Number(k), convert(value));
    } else {
      throw fileError(this.file, `${this.what} has an invalid ${name}`);
    }
    return out;
  }

  numberList(record: Record<string, unknown>, id: number, name: string): number[] | undefined {
    const v = this.get(record, id);
    if (v === null) return undefined;
    if (!Array.isArray(v)) throw fileError(this.file, `${this.what} has an invalid ${name}`);
    return v.map((item) => this.number(item, name));
  }
}

function parseJsonMetadata(
  metadata: Readonly<Record<string, string>>,
  key: string,
  file: string | undefined,
): unknown {
  const text = metadata[key];
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw fileError(file, `the ${key} metadata is not valid JSON`, cause);
  }
}

function parseIntMetadata(
  metadata: Readonly<Record<string, string>>,
  key: string,
  file: string | undefined,
): number | undefined {
  const text = metadata[key];
  if (text === undefined || text === 'null') return undefined;
  if (!/^-?\d+$/.test(text)) throw fileError(file, `the ${key} metadata is not an integer: ${text}`);
  return Number(text);
}

export interface DecodedManifest {
  readonly entries: ManifestEntry[];
  /** The table schema the manifest was written with (its `schema` metadata). */
  readonly schema: Schema;
  readonly spec: PartitionSpec;
  /** The partition struct of the file's own Avro schema: field ids and result types, in spec order. */
  readonly partitionType: StructType;
  readonly content: ManifestContent;
  readonly formatVersion: number;
}

export interface DecodeManifestOptions extends DecodeOptions {
  /**
   * Which column metrics (column sizes, value/null/NaN counts, lower/upper bounds) to decode: `'all'`
   * (the default); `'none'`, which skips them unread, as scan planning without a filter can; or the
   * field ids of the columns to keep them for (the other columns' are skipped). A data file's map is
   * present whenever the file has it, holding only the kept columns.
   */
  readonly columnStats?: 'all' | 'none' | ReadonlySet<number>;
}

// Manifests are decoded straight from the Avro bytes into the model, by a decoder compiled once per
// writer schema (every manifest of a table shares one): fields are found by field id, read by closures
// specialised for the types Iceberg writes (longs read as numbers where the model has numbers), and
// fields the model or the caller does not need are skipped without being built. A field of an
// unexpected shape falls back to the generic codec and the checks below.

/** The fields of one manifest entry as read, before validation; reused from entry to entry. */
class EntrySlots {
  readonly file: string | undefined;
  readonly keep: ReadonlySet<number> | undefined;
  status: number | null = null;
  snapshotId: bigint | null = null;
  sequenceNumber: number | null = null;
  fileSequenceNumber: number | null = null;
  hasDataFile = false;
  content: number | null = null;
  filePath: string | null = null;
  fileFormat: string | null = null;
  /** Raw Avro values, in the writer's field order. */
  partition: unknown[] | null = null;
  recordCount: number | null = null;
  fileSizeInBytes: number | null = null;
  columnSizes: Map<number, number> | null = null;
  valueCounts: Map<number, number> | null = null;
  nullValueCounts: Map<number, number> | null = null;
  nanValueCounts: Map<number, number> | null = null;
  lowerBounds: Map<number, Uint8Array> | null = null;
  upperBounds: Map<number, Uint8Array> | null = null;
  keyMetadata: Uint8Array | null = null;
  splitOffsets: number[] | null = null;
  equalityIds: number[] | null = null;
  sortOrderId: number | null = null;
  referencedDataFile: string | null = null;

  constructor(file: string | undefined, keep: ReadonlySet<number> | undefined) {
    this.file = file;
    this.keep = keep;
  }

  reset(): void {
    this.status = this.snapshotId = this.sequenceNumber = this.fileSequenceNumber = null;
    this.hasDataFile = false;
    this.content = this.filePath = this.fileFormat = this.partition = null;
    this.recordCount = this.fileSizeInBytes = null;
    this.columnSizes = this.valueCounts = this.nullValueCounts = this.nanValueCounts = null;
    this.lowerBounds = this.upperBounds = null;
    this.keyMetadata = this.splitOffsets = this.equalityIds = null;
    this.sortOrderId = this.referencedDataFile = null;
  }
}

type Read = (r: AvroReader, slots: EntrySlots) => unknown;
type Step = (r: AvroReader, slots: EntrySlots) => void;
type StatsMode = 'all' | 'none' | 'some';

/** The physical Avro type name of a schema (a primitive, or record, array, …), undefined for a union. */
function physicalType(schema: AvroSchema): string | undefined {
  if (typeof schema === 'string') return schema;
  if (Array.isArray(schema)) return undefined;
  const type = (schema as { type?: unknown }).type;
  return typeof type === 'string' ? type : undefined;
}

/** A fast reader of T or of ["null", T] (null read as null), when `make` has one for T. */
function nullable(schema: AvroSchema, make: (inner: AvroSchema) => Read | undefined): Read | undefined {
  if (!Array.isArray(schema)) return make(schema);
  const branches = schema as readonly AvroSchema[];
  if (branches.length !== 2) return undefined;
  const nullIndex = branches.findIndex((b) => physicalType(b) === 'null');
  if (nullIndex < 0) return undefined;
  const read = make(branches[1 - nullIndex]!);
  if (!read) return undefined;
  const valueIndex = 1 - nullIndex;
  return (r, slots) => {
    const index = r.readSafeLong('union index');
    if (index === nullIndex) return null;
    if (index !== valueIndex)
      throw fileError(slots.file, `union index ${index} is out of range (2 branches)`);
    return read(r, slots);
  };
}

const readInt: Read = (r) => r.readInt();
const readLongNumber: Read = (r) => r.readSafeLong('long');

/** int or long → number. */
function numberRead(schema: AvroSchema): Read | undefined {
  const type = physicalType(schema);
  return type === 'int' ? readInt : type === 'long' ? readLongNumber : undefined;
}

function bigintRead(schema: AvroSchema): Read | undefined {
  const type = physicalType(schema);
  if (type === 'long') return (r) => r.readLong();
  return type === 'int' ? (r) => BigInt(r.readInt()) : undefined;
}

function stringRead(schema: AvroSchema): Read | undefined {
  return physicalType(schema) === 'string' ? (r) => r.readString() : undefined;
}

function bytesRead(schema: AvroSchema): Read | undefined {
  return physicalType(schema) === 'bytes' ? (r) => r.readBytes() : undefined;
}

function numberListRead(schema: AvroSchema): Read | undefined {
  if (physicalType(schema) !== 'array') return undefined;
  const item = numberRead((schema as AvroArraySchema).items);
  if (!item) return undefined;
  return (r, slots) => {
    const out: number[] = [];
    for (let count = r.readBlockCount(); count !== 0; count = r.readBlockCount()) {
      for (let i = 0; i < count; i++) out.push(item(r, slots) as number);
    }
    return out;
  };
}

/** A map<int, long|binary> as Iceberg writes it: an array of {key: int, value} records. */
function intMapRead(schema: AvroSchema, value: 'long' | 'bytes', mode: StatsMode): Read | undefined {
  if (physicalType(schema) !== 'array') return undefined;
  const record = asRecord((schema as AvroArraySchema).items);
  const [key, val] = record?.fields ?? [];
  if (
    record?.fields.length !== 2 ||
    key?.name !== 'key' ||
    val?.name !== 'value' ||
    physicalType(key.type) !== 'int' ||
    physicalType(val.type) !== value
  ) {
    return undefined;
  }
  // One loop per value type and mode, with direct calls: a loop shared through closures would be
  // polymorphic at its call sites, and several times slower.
  if (value === 'long') return mode === 'all' ? readLongMap : readKeptLongMap;
  return mode === 'all' ? readBytesMap : readKeptBytesMap;
}

const readLongMap: Read = (r) => {
  const map = new Map<number, number>();
  for (let count = r.readBlockCount(); count !== 0; count = r.readBlockCount()) {
    for (let i = 0; i < count; i++) map.set(r.readInt(), r.readSafeLong('metric'));
  }
  return map;
};

const readKeptLongMap: Read = (r, slots) => {
  const keep = slots.keep!;
  const map = new Map<number, number>();
  for (let count = r.readBlockCount(); count !== 0; count = r.readBlockCount()) {
    for (let i = 0; i < count; i++) {
      const key = r.readInt();
      if (keep.has(key)) map.set(key, r.readSafeLong('metric'));
      else r.skipVarint();
    }
  }
  return map;
};

// Bounds are views of the decompressed block (see DataFile.lowerBounds): a copy each costs as much again.
const readBytesMap: Read = (r) => {
  const map = new Map<number, Uint8Array>();
  for (let count = r.readBlockCount(); count !== 0; count = r.readBlockCount()) {
    for (let i = 0; i < count; i++) map.set(r.readInt(), r.readBytesView());
  }
  return map;
};

const readKeptBytesMap: Read = (r, slots) => {
  const keep = slots.keep!;
  const map = new Map<number, Uint8Array>();
  for (let count = r.readBlockCount(); count !== 0; count = r.readBlockCount()) {
    for (let i = 0; i < count; i++) {
      const key = r.readInt();
      if (keep.has(key)) map.set(key, r.readBytesView());
      else r.skipBytes();
    }
  }
  return map;
};

function invalidField(slots: EntrySlots, what: string, name: string, value?: unknown): TributaryError {
  const shown =
    typeof value === 'number' || typeof value === 'bigint' || typeof value === 'string'
      ? `: ${value}`
      : value === undefined
        ? ''
        : `: ${typeof value}`;
  return fileError(slots.file, `${what} has an invalid ${name}${shown}`);
}

/** A raw long (bigint) or int of the generic codec as a number. */
function toNumber(v: unknown, slots: EntrySlots, what: string, name: string): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER))
    return Number(v);
  throw invalidField(slots, what, name, v);
}

/** A map<int, V> of the generic codec: an array of key/value records or, from some writers, an Avro map. */
function toIntMap(
  v: unknown,
  slots: EntrySlots,
  name: string,
  convert: (value: unknown) => unknown,
): Map<number, unknown> {
  const out = new Map<number, unknown>();
  const put = (key: number, value: unknown): void => {
    if (!slots.keep || slots.keep.has(key)) out.set(key, convert(value));
  };
  if (Array.isArray(v)) {
    for (const kv of v as Record<string, unknown>[])
      put(toNumber(kv.key, slots, 'data file', `${name} key`), kv.value);
  } else if (v instanceof Map) {
    for (const [k, value] of v as Map<string, unknown>) put(Number(k), value);
  } else {
    throw invalidField(slots, 'data file', name);
  }
  return out;
}

/** How one field (by id) of manifest_entry or data_file is read and where it goes. */
interface FieldRule {
  readonly name: string;
  /** A fast reader for the writer's schema of the field, if it has the expected shape. */
  readonly fast: (schema: AvroSchema, mode: StatsMode) => Read | undefined;
  /** Converts a non-null value of the generic codec (the fallback). */
  readonly convert: (value: unknown, slots: EntrySlots) => unknown;
  readonly set: (slots: EntrySlots, value: never) => void;
  /** A column metric: skipped when the caller wants none. */
  readonly stat?: boolean;
}

function numberRule(what: string, name: string, set: FieldRule['set']): FieldRule {
  return {
    name,
    fast: (s) => nullable(s, numberRead),
    convert: (v, slots) => toNumber(v, slots, what, name),
    set,
  };
}

function statRule(name: string, value: 'long' | 'bytes', set: FieldRule['set']): FieldRule {
  return {
    name,
    fast: (s, mode) => nullable(s, (inner) => intMapRead(inner, value, mode)),
    convert: (v, slots) =>
      toIntMap(v, slots, name, (x) => {
        if (value === 'long') return toNumber(x, slots, 'data file', 'count');
        if (x instanceof Uint8Array) return x;
        throw fileError(slots.file, 'a bound is not binary');
      }),
    set,
    stat: true,
  };
}

const ENTRY_RULES: ReadonlyMap<number, FieldRule> = new Map<number, FieldRule>([
  [0, numberRule('manifest entry', 'status', (s, v: number | null) => (s.status = v))],
  [
    1,
    {
      name: 'snapshot_id',
      fast: (s) => nullable(s, bigintRead),
      convert: (v, slots) => {
        if (typeof v === 'bigint') return v;
        if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
        throw invalidField(slots, 'manifest entry', 'snapshot_id');
      },
      set: (s, v: bigint | null) => (s.snapshotId = v),
    },
  ],
  [3, numberRule('manifest entry', 'sequence_number', (s, v: number | null) => (s.sequenceNumber = v))],
  [
    4,
    numberRule('manifest entry', 'file_sequence_number', (s, v: number | null) => (s.fileSequenceNumber = v)),
  ],
]);

const DATA_FILE_RULES: ReadonlyMap<number, FieldRule> = new Map<number, FieldRule>([
  [134, numberRule('data file', 'content', (s, v: number | null) => (s.content = v))],
  [
    100,
    {
      name: 'file_path',
      fast: (s) => nullable(s, stringRead),
      convert: (v) => String(v),
      set: (s, v: string | null) => (s.filePath = v),
    },
  ],
  [
    101,
    {
      name: 'file_format',
      fast: (s) => nullable(s, stringRead),
      convert: (v) => String(v),
      set: (s, v: string | null) => (s.fileFormat = v),
    },
  ],
  [103, numberRule('data file', 'record_count', (s, v: number | null) => (s.recordCount = v))],
  [104, numberRule('data file', 'file_size_in_bytes', (s, v: number | null) => (s.fileSizeInBytes = v))],
  [108, statRule('column_sizes', 'long', (s, v: Map<number, number> | null) => (s.columnSizes = v))],
  [109, statRule('value_counts', 'long', (s, v: Map<number, number> | null) => (s.valueCounts = v))],
  [110, statRule('null_value_counts', 'long', (s, v: Map<number, number> | null) => (s.nullValueCounts = v))],
  [137, statRule('nan_value_counts', 'long', (s, v: Map<number, number> | null) => (s.nanValueCounts = v))],
  [125, statRule('lower_bounds', 'bytes', (s, v: Map<number, Uint8Array> | null) => (s.lowerBounds = v))],
  [128, statRule('upper_bounds', 'bytes', (s, v: Map<number, Uint8Array> | null) => (s.upperBounds = v))],
  [
    131,
    {
      name: 'key_metadata',
      fast: (s) => nullable(s, bytesRead),
      convert: (v, slots) => {
        if (v instanceof Uint8Array) return v;
        throw invalidField(slots, 'data file', 'key_metadata');
      },
      set: (s, v: Uint8Array | null) => (s.keyMetadata = v),
    },
  ],
  [
    132,
    {
      name: 'split_offsets',
      fast: (s) => nullable(s, numberListRead),
      convert: (v, slots) => {
        if (!Array.isArray(v)) throw invalidField(slots, 'data file', 'split_offsets');
        return v.map((item) => toNumber(item, slots, 'data file', 'split_offsets'));
      },
      set: (s, v: number[] | null) => (s.splitOffsets = v),
    },
  ],
  [
    135,
    {
      name: 'equality_ids',
      fast: (s) => nullable(s, numberListRead),
      convert: (v, slots) => {
        if (!Array.isArray(v)) throw invalidField(slots, 'data file', 'equality_ids');
        return v.map((item) => toNumber(item, slots, 'data file', 'equality_ids'));
      },
      set: (s, v: number[] | null) => (s.equalityIds = v),
    },
  ],
  [140, numberRule('data file', 'sort_order_id', (s, v: number | null) => (s.sortOrderId = v))],
  [
    143,
    {
      name: 'referenced_data_file',
      fast: (s) => nullable(s, stringRead),
      convert: (v, slots) => {
        if (typeof v === 'string') return v;
        throw invalidField(slots, 'data file', 'referenced_data_file');
      },
      set: (s, v: string | null) => (s.referencedDataFile = v),
    },
  ],
]);

/** The step reading one field of the writer's record: by its rule, or skipped unread. */
function fieldStep(field: AvroField, rule: FieldRule | undefined, mode: StatsMode): Step {
  if (!rule || (rule.stat && mode === 'none')) {
    const codec = compile(field.type);
    return (r) => codec.skip(r);
  }
  const set = rule.set as (slots: EntrySlots, value: unknown) => void;
  const fast = rule.fast(field.type, mode);
  if (fast) return (r, slots) => set(slots, fast(r, slots));
  const codec = compile(field.type);
  return (r, slots) => {
    const raw = codec.read(r);
    set(slots, raw === null || raw === undefined ? null : rule.convert(raw, slots));
  };
}

/** Steps reading a record's fields in the writer's order, by field id. */
function recordSteps(
  record: AvroRecordSchema,
  rules: ReadonlyMap<number, FieldRule>,
  mode: StatsMode,
  special: ReadonlyMap<number, Step>,
): Step[] {
  return record.fields.map((f) => {
    const id = fieldIdOf(f);
    const step = id === undefined ? undefined : special.get(id);
    return step ?? fieldStep(f, id === undefined ? undefined : rules.get(id), mode);
  });
}

function runSteps(steps: readonly Step[]): Step {
  const n = steps.length;
  return (r, slots) => {
    for (let i = 0; i < n; i++) steps[i]!(r, slots);
  };
}

/** A record field, or an optional one (a null leaves the slots as they are). */
function recordStep(field: AvroField, read: Step): Step {
  if (!Array.isArray(field.type)) return read;
  const branches = field.type as readonly AvroSchema[];
  return (r, slots) => {
    const index = r.readSafeLong('union index');
    const branch = branches[index];
    if (branch === undefined) throw fileError(slots.file, `union index ${index} is out of range`);
    if (physicalType(branch) === 'null') return;
    read(r, slots);
  };
}

/** A manifest's writer schema, checked and analysed once. */
class ManifestSchema {
  readonly entryRecord: AvroRecordSchema;
  readonly fileRecord: AvroRecordSchema;
  readonly partitionRecord: AvroRecordSchema;
  readonly #decoders = new Map<StatsMode, Step>();

  constructor(schema: AvroSchema) {
    const expanded = asRecord(expandSchema(schema));
    if (!expanded) throw new TributaryError('ICEBERG_INVALID_FILE', 'the Avro schema is not a record');
    this.entryRecord = expanded;
    this.fileRecord = findRecord(expanded, 2, 'data_file');
    this.partitionRecord = findRecord(this.fileRecord, 102, 'partition');
  }

  /** Reads one manifest entry into the slots (reset first). */
  decoder(mode: StatsMode): Step {
    let decoder = this.#decoders.get(mode);
    if (decoder) return decoder;
    const partitionReaders = this.partitionRecord.fields.map((f) => compile(f.type));
    const readPartition: Step = (r, slots) => {
      const values = new Array<unknown>(partitionReaders.length);
      for (let i = 0; i < partitionReaders.length; i++) values[i] = partitionReaders[i]!.read(r);
      slots.partition = values;
    };
    const partitionField = findField(this.fileRecord, 102);
    const fileSteps = recordSteps(
      this.fileRecord,
      DATA_FILE_RULES,
      mode,
      new Map([[102, recordStep(partitionField, readPartition)]]),
    );
    const readFile = runSteps(fileSteps);
    const dataFileField = findField(this.entryRecord, 2);
    const entrySteps = recordSteps(
      this.entryRecord,
      ENTRY_RULES,
      mode,
      new Map([
        [
          2,
          recordStep(dataFileField, (r, slots) => {
            slots.hasDataFile = true;
            readFile(r, slots);
          }),
        ],
      ]),
    );
    const readEntry = runSteps(entrySteps);
    decoder = (r, slots) => {
      slots.reset();
      readEntry(r, slots);
    };
    this.#decoders.set(mode, decoder);
    return decoder;
  }
}

// Writer schemas recently seen, by their JSON: the manifests of a table share a handful.
const manifestSchemas = new Map<string, ManifestSchema>();
const MANIFEST_SCHEMA_CACHE_SIZE = 32;

function manifestSchema(schemaJson: string, file: string | undefined): ManifestSchema {
  let cached = manifestSchemas.get(schemaJson);
  if (!cached) {
    try {
      cached = new ManifestSchema(parseContainerSchema(schemaJson, file));
    } catch (error) {
      if (error instanceof TributaryError) throw fileError(file, `not a manifest: ${error.message}`, error);
      throw error;
    }
    if (manifestSchemas.size >= MANIFEST_SCHEMA_CACHE_SIZE) {
      manifestSchemas.delete(manifestSchemas.keys().next().value!);
    }
    manifestSchemas.set(schemaJson, cached);
  }
  return cached;
}

interface PartitionLayout {
  readonly partitionType: StructType;
  /** For each partition value in spec order: its index in the writer's record, and its Iceberg type. */
  readonly order: readonly { readonly index: number; readonly field: NestedField }[];
}

/** The partition tuple: its type comes from the file's own schema; values are returned in spec order. */
function partitionLayout(record: AvroRecordSchema, spec: PartitionSpec): PartitionLayout {
  const partitionFields = record.fields.map((f, index) => {
    const { type, optional } = unwrapOptional(f.type);
    const original = f[ICEBERG_FIELD_NAME_PROP];
    const id = fieldIdOf(f) ?? spec.fields[index]?.['field-id'] ?? 1000 + index;
    const field: NestedField = {
      id,
      name: typeof original === 'string' ? original : f.name,
      required: !optional,
      type: avroToIcebergType(type),
    };
    return { index, field };
  });
  const bySpec = spec.fields.map((sf) => partitionFields.find((pf) => pf.field.id === sf['field-id']));
  const order =
    bySpec.length === partitionFields.length && bySpec.every((pf) => pf !== undefined)
      ? bySpec
      : partitionFields;
  return { partitionType: { type: 'struct', fields: order.map((pf) => pf.field) }, order };
}

function missingField(slots: EntrySlots, what: string, name: string, id: number): never {
  throw fileError(slots.file, `${what} has no ${name} (field ${id})`);
}

/** The entry read into the slots, checked and in the model. */
function entryFromSlots(slots: EntrySlots, index: number, layout: PartitionLayout): ManifestEntry {
  const { file } = slots;
  const status = STATUSES[slots.status ?? missingField(slots, 'manifest entry', 'status', 0)];
  if (!status) throw fileError(file, `manifest entry ${index} has an unknown status ${slots.status}`);
  if (!slots.hasDataFile) missingField(slots, 'manifest entry', 'data_file', 2);
  const contentCode = slots.content ?? 0;
  const fileContent = CONTENTS[contentCode];
  if (!fileContent) throw fileError(file, `manifest entry ${index} has an unknown content ${contentCode}`);
  const written = slots.fileFormat ?? missingField(slots, 'data file', 'file_format', 101);
  const format = FORMATS.has(written) ? written : written.toUpperCase();
  if (!FORMATS.has(format))
    throw fileError(file, `manifest entry ${index} has an unknown file format ${format}`);
  const raw = slots.partition ?? missingField(slots, 'data file', 'partition', 102);
  const { order } = layout;
  const partition = new Array<IcebergValue>(order.length);
  for (let i = 0; i < order.length; i++) {
    const { index: at, field } = order[i]!;
    try {
      partition[i] = fromAvroValue(field.type, raw[at] ?? null);
    } catch (cause) {
      throw fileError(
        file,
        `manifest entry ${index}: partition field ${field.name}: ${(cause as Error).message}`,
        cause,
      );
    }
  }
  const dataFile: Mutable<DataFile> = {
    content: fileContent,
    filePath: slots.filePath ?? missingField(slots, 'data file', 'file_path', 100),
    fileFormat: format as DataFile['fileFormat'],
    partition,
    recordCount: slots.recordCount ?? missingField(slots, 'data file', 'record_count', 103),
    fileSizeInBytes: slots.fileSizeInBytes ?? missingField(slots, 'data file', 'file_size_in_bytes', 104),
  };
  if (slots.columnSizes) dataFile.columnSizes = slots.columnSizes;
  if (slots.valueCounts) dataFile.valueCounts = slots.valueCounts;
  if (slots.nullValueCounts) dataFile.nullValueCounts = slots.nullValueCounts;
  if (slots.nanValueCounts) dataFile.nanValueCounts = slots.nanValueCounts;
  if (slots.lowerBounds) dataFile.lowerBounds = slots.lowerBounds;
  if (slots.upperBounds) dataFile.upperBounds = slots.upperBounds;
  if (slots.keyMetadata) dataFile.keyMetadata = slots.keyMetadata;
  if (slots.splitOffsets) dataFile.splitOffsets = slots.splitOffsets;
  if (slots.equalityIds) dataFile.equalityIds = slots.equalityIds;
  if (slots.sortOrderId !== null) dataFile.sortOrderId = slots.sortOrderId;
  if (slots.referencedDataFile !== null) dataFile.referencedDataFile = slots.referencedDataFile;
  const entry: Mutable<ManifestEntry> = { status, dataFile };
  if (slots.snapshotId !== null) entry.snapshotId = slots.snapshotId;
  if (slots.sequenceNumber !== null) entry.sequenceNumber = slots.sequenceNumber;
  if (slots.fileSequenceNumber !== null) entry.fileSequenceNumber = slots.fileSequenceNumber;
  return entry;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Reads a manifest file (v2, or v1 mapped onto the v2 model). */
export function decodeManifest(bytes: Uint8Array, options: DecodeManifestOptions = {}): DecodedManifest {
  const { file } = options;
  const container = openContainer(bytes, options);
  const { metadata } = container;
  const formatVersion = parseIntMetadata(metadata, 'format-version', file) ?? 1;
  if (formatVersion > 2) {
    throw fileError(
      file,
      `manifest format version ${formatVersion} is not supported (Tributary reads v1 and v2)`,
    );
  }
  const content = (metadata.content ?? 'data') as ManifestContent;
  if (content !== 'data' && content !== 'deletes')
    throw fileError(file, `unknown manifest content ${String(content)}`);

  const rawSchema = parseJsonMetadata(metadata, 'schema', file) as Record<string, unknown> | undefined;
  if (!rawSchema || rawSchema.type !== 'struct' || !Array.isArray(rawSchema.fields)) {
    throw fileError(file, 'the manifest has no table schema in its metadata');
  }
  const schemaId =
    parseIntMetadata(metadata, 'schema-id', file) ?? (rawSchema['schema-id'] as number | undefined) ?? 0;
  const schema = { ...rawSchema, 'schema-id': schemaId } as unknown as Schema;

  const rawSpec = parseJsonMetadata(metadata, 'partition-spec', file);
  const specFields = (
    Array.isArray(rawSpec) ? rawSpec : (rawSpec as { fields?: unknown } | undefined)?.fields
  ) as PartitionField[] | undefined;
  if (!Array.isArray(specFields)) throw fileError(file, 'the manifest has no partition spec in its metadata');
  const specId =
    parseIntMetadata(metadata, 'partition-spec-id', file) ??
    (rawSpec as { 'spec-id'?: number })['spec-id'] ??
    0;
  // v1 specs may lack field ids: they were assigned from 1000 in order.
  const spec: PartitionSpec = {
    'spec-id': specId,
    fields: specFields.map((f, i) => ({ ...f, 'field-id': f['field-id'] ?? 1000 + i })),
  };

  const writer = manifestSchema(container.schemaJson, file);
  const layout = partitionLayout(writer.partitionRecord, spec);
  const stats = options.columnStats ?? 'all';
  const mode: StatsMode = typeof stats === 'string' ? stats : 'some';
  const decodeEntry = writer.decoder(mode);
  const slots = new EntrySlots(file, typeof stats === 'string' ? undefined : stats);
  const entries: ManifestEntry[] = [];
  container.readBlocks((reader, count) => {
    for (let i = 0; i < count; i++) {
      try {
        decodeEntry(reader, slots);
      } catch (error) {
        if (error instanceof TributaryError && error.code === 'ICEBERG_INVALID_FILE')
          throw fileError(file, `manifest entry ${entries.length}: ${error.message}`, error);
        throw error;
      }
      entries.push(entryFromSlots(slots, entries.length, layout));
    }
  });
  return { entries, schema, spec, partitionType: layout.partitionType, content, formatVersion };
}

/**
 * Applies the spec's inheritance: an entry without a snapshot id takes the manifest's added snapshot id;
 * an ADDED entry without data/file sequence numbers takes the manifest's sequence number, and so does
 * every entry of a manifest whose sequence number is 0 (v1 metadata, where they are all 0).
 */
export function inheritManifestMetadata(
  entries: readonly ManifestEntry[],
  manifest: ManifestFile,
): ManifestEntry[] {
  return entries.map((entry) => {
    const inherits = entry.status === 'added' || manifest.sequenceNumber === 0;
    const snapshotId = entry.snapshotId ?? manifest.addedSnapshotId;
    const sequenceNumber = entry.sequenceNumber ?? (inherits ? manifest.sequenceNumber : undefined);
    const fileSequenceNumber = entry.fileSequenceNumber ?? (inherits ? manifest.sequenceNumber : undefined);
    return {
      ...entry,
      snapshotId,
      ...(sequenceNumber === undefined ? {} : { sequenceNumber }),
      ...(fileSequenceNumber === undefined ? {} : { fileSequenceNumber }),
    };
  });
}

export interface DecodedManifestList {
  readonly manifests: ManifestFile[];
  /** From the header metadata (absent in some v1 files). */
  readonly snapshotId?: bigint;
  readonly parentSnapshotId?: bigint;
  readonly sequenceNumber?: number;
  readonly formatVersion: number;
}

function parseBigintMetadata(
  metadata: Readonly<Record<string, string>>,
  key: string,
  file: string | undefined,
): bigint | undefined {
  const text = metadata[key];
  if (text === undefined || text === 'null') return undefined;
  if (!/^-?\d+$/.test(text)) throw fileError(file, `the ${key} metadata is not an integer: ${text}`);
  return BigInt(text);
}

/** Reads the manifests of a manifest list (v2, or v1 with its sequence numbers read as 0). */
export function decodeManifestList(bytes: Uint8Array, options: DecodeOptions = {}): ManifestFile[] {
  return decodeManifestListFile(bytes, options).manifests;
}

/** Reads a manifest list with its header: snapshot id, parent, sequence number and format version. */
export function decodeManifestListFile(bytes: Uint8Array, options: DecodeOptions = {}): DecodedManifestList {
  const { file } = options;
  const container = readContainer(bytes, options);
  const { metadata } = container;
  const formatVersion = parseIntMetadata(metadata, 'format-version', file) ?? 1;
  if (formatVersion > 2) {
    throw fileError(
      file,
      `manifest list format version ${formatVersion} is not supported (Tributary reads v1 and v2)`,
    );
  }
  let record: AvroRecordSchema;
  let summaryRecord: AvroRecordSchema | undefined;
  try {
    const expanded = asRecord(expandSchema(container.schema));
    if (!expanded) throw new TributaryError('ICEBERG_INVALID_FILE', 'the Avro schema is not a record');
    record = expanded;
    const partitions = record.fields.find((f) => fieldIdOf(f) === 507);
    if (partitions) {
      const array = unwrapOptional(partitions.type).type as AvroArraySchema;
      summaryRecord = asRecord(array.items);
    }
  } catch (error) {
    if (error instanceof TributaryError)
      throw fileError(file, `not a manifest list: ${error.message}`, error);
    throw error;
  }
  const view = new ById(record, 'manifest list entry', file);
  const summaryView = summaryRecord ? new ById(summaryRecord, 'partition field summary', file) : undefined;

  const manifests = container.records.map((value, index): ManifestFile => {
    const r = value as Record<string, unknown>;
    const count = (id: number, name: string): number => {
      const n = view.optionalNumber(r, id, name);
      if (n === undefined) {
        throw fileError(
          file,
          `manifest list entry ${index} has no ${name}; files from such old writers are not supported`,
        );
      }
      return n;
    };
    const contentCode = view.optionalNumber(r, 517, 'content') ?? 0;
    if (contentCode !== 0 && contentCode !== 1)
      throw fileError(file, `manifest list entry ${index} has content ${contentCode}`);
    const addedSnapshotId = view.bigint(r, 503, 'added_snapshot_id');
    if (addedSnapshotId === undefined)
      throw fileError(file, `manifest list entry ${index} has no added_snapshot_id`);
    const rawPartitions = view.get(r, 507);
    const partitions =
      rawPartitions === null || !summaryView
        ? undefined
        : (rawPartitions as Record<string, unknown>[]).map((s): FieldSummary => {
            const containsNull = summaryView.get(s, 509);
            const containsNaN = summaryView.get(s, 518);
            const lowerBound = summaryView.bytes(s, 510, 'lower_bound');
            const upperBound = summaryView.bytes(s, 511, 'upper_bound');
            return {
              containsNull: containsNull === true,
              ...(typeof containsNaN === 'boolean' ? { containsNaN } : {}),
              ...(lowerBound === undefined ? {} : { lowerBound }),
              ...(upperBound === undefined ? {} : { upperBound }),
            };
          });
    const keyMetadata = view.bytes(r, 519, 'key_metadata');
    return {
      manifestPath: String(view.required(r, 500, 'manifest_path')),
      manifestLength: view.requiredNumber(r, 501, 'manifest_length'),
      partitionSpecId: view.requiredNumber(r, 502, 'partition_spec_id'),
      content: contentCode === 1 ? 'deletes' : 'data',
      sequenceNumber: view.optionalNumber(r, 515, 'sequence_number') ?? 0,
      minSequenceNumber: view.optionalNumber(r, 516, 'min_sequence_number') ?? 0,
      addedSnapshotId,
      addedFilesCount: count(504, 'added_files_count'),
      existingFilesCount: count(505, 'existing_files_count'),
      deletedFilesCount: count(506, 'deleted_files_count'),
      addedRowsCount: count(512, 'added_rows_count'),
      existingRowsCount: count(513, 'existing_rows_count'),
      deletedRowsCount: count(514, 'deleted_rows_count'),
      ...(partitions === undefined ? {} : { partitions }),
      ...(keyMetadata === undefined ? {} : { keyMetadata }),
    };
  });
  const snapshotId = parseBigintMetadata(metadata, 'snapshot-id', file);
  const parentSnapshotId = parseBigintMetadata(metadata, 'parent-snapshot-id', file);
  const sequenceNumber = parseIntMetadata(metadata, 'sequence-number', file);
  return {
    manifests,
    ...(snapshotId === undefined ? {} : { snapshotId }),
    ...(parentSnapshotId === undefined ? {} : { parentSnapshotId }),
    ...(sequenceNumber === undefined ? {} : { sequenceNumber }),
    formatVersion,
  };
}
