/**
 * Table metadata (format v2), in the shape of its JSON file: `<location>/metadata/<n>-<uuid>.metadata.json`.
 * Snapshot ids are 64-bit (other engines use the full range), so they are bigint here and in the JSON.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { TributaryError } from '../errors.ts';
import { parseJson, stringifyJson } from './json.ts';
import { findFieldById } from './schema.ts';
import type { IcebergType, NestedField, Schema } from './types.ts';

export interface PartitionField {
  readonly 'source-id': number;
  readonly 'field-id': number;
  readonly name: string;
  /** "identity", "bucket[N]", "truncate[W]", "year", "month", "day", "hour" or "void". */
  readonly transform: string;
}

export interface PartitionSpec {
  readonly 'spec-id': number;
  readonly fields: readonly PartitionField[];
}

export interface SortField {
  readonly 'source-id': number;
  readonly transform: string;
  readonly direction: 'asc' | 'desc';
  readonly 'null-order': 'nulls-first' | 'nulls-last';
}

export interface SortOrder {
  readonly 'order-id': number;
  readonly fields: readonly SortField[];
}

/** Snapshot summary: the spec's totals as strings, plus custom properties (sinks keep source positions here). */
export type SnapshotSummary = Readonly<Record<string, string>> & { readonly operation: SnapshotOperation };
export type SnapshotOperation = 'append' | 'replace' | 'overwrite' | 'delete';

export interface Snapshot {
  readonly 'snapshot-id': bigint;
  readonly 'parent-snapshot-id'?: bigint;
  readonly 'sequence-number': number;
  readonly 'timestamp-ms': number;
  readonly 'manifest-list': string;
  readonly summary: SnapshotSummary;
  readonly 'schema-id'?: number;
}

export interface SnapshotRef {
  readonly 'snapshot-id': bigint;
  readonly type: 'branch' | 'tag';
  readonly 'max-ref-age-ms'?: number;
  readonly 'max-snapshot-age-ms'?: number;
  readonly 'min-snapshots-to-keep'?: number;
}

export interface TableMetadata {
  readonly 'format-version': 2;
  readonly 'table-uuid': string;
  readonly location: string;
  readonly 'last-sequence-number': number;
  readonly 'last-updated-ms': number;
  readonly 'last-column-id': number;
  readonly schemas: readonly Schema[];
  readonly 'current-schema-id': number;
  readonly 'partition-specs': readonly PartitionSpec[];
  readonly 'default-spec-id': number;
  readonly 'last-partition-id': number;
  readonly properties: Readonly<Record<string, string>>;
  readonly 'current-snapshot-id'?: bigint;
  readonly snapshots: readonly Snapshot[];
  readonly 'snapshot-log': ReadonlyArray<{ readonly 'snapshot-id': bigint; readonly 'timestamp-ms': number }>;
  readonly 'metadata-log': ReadonlyArray<{
    readonly 'metadata-file': string;
    readonly 'timestamp-ms': number;
  }>;
  readonly 'sort-orders': readonly SortOrder[];
  readonly 'default-sort-order-id': number;
  readonly refs: Readonly<Record<string, SnapshotRef>>;
}

export const FORMAT_VERSION = 2;
/** The reserved ref that is the table's current state. */
export const MAIN_BRANCH = 'main';

export interface NewTableOptions {
  readonly location: string;
  /** Field ids must already be assigned; the schema id is set to 0. */
  readonly schema: Schema;
  readonly spec: PartitionSpec;
  readonly sortOrder: SortOrder;
  readonly properties?: Readonly<Record<string, string>>;
  readonly tableUuid?: string;
  readonly nowMs?: number;
}

export function newTableMetadata(options: NewTableOptions): TableMetadata {
  const lastPartitionId = Math.max(999, ...options.spec.fields.map((f) => f['field-id']));
  return {
    'format-version': FORMAT_VERSION,
    'table-uuid': options.tableUuid ?? randomUUID(),
    location: options.location.replace(/\/+$/, ''),
    'last-sequence-number': 0,
    'last-updated-ms': options.nowMs ?? Date.now(),
    'last-column-id': highestId(options.schema),
    schemas: [{ ...options.schema, 'schema-id': 0 }],
    'current-schema-id': 0,
    'partition-specs': [{ ...options.spec, 'spec-id': 0 }],
    'default-spec-id': 0,
    'last-partition-id': lastPartitionId,
    properties: { ...options.properties },
    snapshots: [],
    'snapshot-log': [],
    'metadata-log': [],
    'sort-orders': [options.sortOrder],
    'default-sort-order-id': options.sortOrder['order-id'],
    refs: {},
  };
}

function highestId(type: IcebergType): number {
  if (typeof type === 'string') return 0;
  if (type.type === 'struct')
    return Math.max(0, ...type.fields.map((f) => Math.max(f.id, highestId(f.type))));
  if (type.type === 'list') return Math.max(type['element-id'], highestId(type.element));
  return Math.max(type['key-id'], type['value-id'], highestId(type.key), highestId(type.value));
}

/** Parses a metadata file; `source` names it in errors. Only format v2 is read. */
export function parseTableMetadata(text: string, source: string): TableMetadata {
  let parsed: unknown;
  try {
    parsed = parseJson(text);
  } catch (cause) {
    throw new TributaryError('ICEBERG_INVALID_FILE', `${source} is not valid JSON`, {
      cause,
      context: { source },
    });
  }
  const metadata = parsed as Partial<TableMetadata> & { 'format-version'?: number };
  if (metadata['format-version'] !== FORMAT_VERSION) {
    throw new TributaryError(
      'ICEBERG_UNSUPPORTED',
      `${source} is Iceberg format version ${String(metadata['format-version'])}; Tributary reads and writes version 2`,
      {
        context: { source },
        hint: "upgrade the table to format version 2 (ALTER TABLE … SET TBLPROPERTIES ('format-version'='2') in Spark)",
      },
    );
  }
  for (const key of ['table-uuid', 'location', 'schemas', 'partition-specs'] as const) {
    if (metadata[key] === undefined) {
      throw new TributaryError('ICEBERG_INVALID_FILE', `${source} has no "${key}"`, { context: { source } });
    }
  }
  // No current snapshot: -1 (Java, pyiceberg), null (some REST catalogs) or absent.
  const current = metadata['current-snapshot-id'] as bigint | null | undefined;
  const currentId = current === -1n || current === null ? undefined : current;
  return {
    ...metadata,
    properties: metadata.properties ?? {},
    snapshots: metadata.snapshots ?? [],
    'snapshot-log': metadata['snapshot-log'] ?? [],
    'metadata-log': metadata['metadata-log'] ?? [],
    'sort-orders': metadata['sort-orders'] ?? [{ 'order-id': 0, fields: [] }],
    'default-sort-order-id': metadata['default-sort-order-id'] ?? 0,
    refs:
      metadata.refs ??
      (currentId !== undefined ? { [MAIN_BRANCH]: { 'snapshot-id': currentId, type: 'branch' } } : {}),
    'current-snapshot-id': currentId,
  } as TableMetadata;
}

export function serializeTableMetadata(metadata: TableMetadata): string {
  // current-snapshot-id is written as -1 when there is none, as Java does, for older readers.
  return stringifyJson({ ...metadata, 'current-snapshot-id': metadata['current-snapshot-id'] ?? -1n }, 2);
}

/** `<table>/metadata/00003-<uuid>.metadata.json`, the naming Java and pyiceberg use. */
export function metadataFileLocation(tableLocation: string, version: number): string {
  return `${tableLocation}/metadata/${String(version).padStart(5, '0')}-${randomUUID()}.metadata.json`;
}

/** The version number in a metadata file name, or -1 when it does not follow the convention. */
export function metadataFileVersion(location: string): number {
  const match = /\/(\d+)-[^/]*\.metadata\.json$/.exec(location);
  return match?.[1] ? Number(match[1]) : -1;
}

export function currentSchema(metadata: TableMetadata): Schema {
  return schemaById(metadata, metadata['current-schema-id']);
}

export function schemaById(metadata: TableMetadata, schemaId: number): Schema {
  const schema = metadata.schemas.find((s) => s['schema-id'] === schemaId);
  if (!schema) throw new TributaryError('ICEBERG_INVALID_FILE', `table metadata has no schema ${schemaId}`);
  return schema;
}

/**
 * The current schema, plus the source fields that partition specs still name but the schema has dropped
 * (from older schemas, under reserved names): what types the partition tuples of every spec, old ones too.
 */
export function schemaForPartitionSpecs(metadata: TableMetadata): Schema {
  const current = currentSchema(metadata);
  const dropped: NestedField[] = [];
  for (const spec of metadata['partition-specs']) {
    for (const { 'source-id': id } of spec.fields) {
      if (findFieldById(current, id) || dropped.some((f) => f.id === id)) continue;
      const old = [...metadata.schemas].reverse().find((s) => findFieldById(s, id));
      const field = old && findFieldById(old, id);
      if (field) dropped.push({ ...field, name: `__dropped_${id}`, required: false });
    }
  }
  return dropped.length ? { ...current, fields: [...current.fields, ...dropped] } : current;
}

export function specById(metadata: TableMetadata, specId: number): PartitionSpec {
  const spec = metadata['partition-specs'].find((s) => s['spec-id'] === specId);
  if (!spec)
    throw new TributaryError('ICEBERG_INVALID_FILE', `table metadata has no partition spec ${specId}`);
  return spec;
}

export function defaultSpec(metadata: TableMetadata): PartitionSpec {
  return specById(metadata, metadata['default-spec-id']);
}

export function defaultSortOrder(metadata: TableMetadata): SortOrder {
  return (
    metadata['sort-orders'].find((o) => o['order-id'] === metadata['default-sort-order-id']) ?? {
      'order-id': 0,
      fields: [],
    }
  );
}

export function currentSnapshot(metadata: TableMetadata): Snapshot | undefined {
  const id = metadata['current-snapshot-id'];
  return id === undefined ? undefined : snapshotById(metadata, id);
}

export function snapshotById(metadata: TableMetadata, snapshotId: bigint): Snapshot {
  const snapshot = metadata.snapshots.find((s) => s['snapshot-id'] === snapshotId);
  if (!snapshot) {
    throw new TributaryError('SNAPSHOT_NOT_FOUND', `the table has no snapshot ${snapshotId}`, {
      context: { snapshotId: snapshotId.toString() },
      hint: 'list the snapshots with `tributary tables snapshots <table>`',
    });
  }
  return snapshot;
}

/** The snapshot that was current at `timestampMs`, from the snapshot log. */
export function snapshotAsOf(metadata: TableMetadata, timestampMs: number): Snapshot {
  let found: bigint | undefined;
  for (const entry of metadata['snapshot-log']) {
    if (entry['timestamp-ms'] <= timestampMs) found = entry['snapshot-id'];
  }
  if (found === undefined) {
    throw new TributaryError(
      'SNAPSHOT_NOT_FOUND',
      `the table had no snapshot at ${new Date(timestampMs).toISOString()}`,
      {
        hint: 'choose a later time; `tributary tables snapshots <table>` lists when each snapshot was made',
      },
    );
  }
  return snapshotById(metadata, found);
}

/** The snapshot and its ancestors, newest first, as far as they are still in the metadata. */
export function ancestorsOf(metadata: TableMetadata, snapshotId: bigint | undefined): Snapshot[] {
  const byId = new Map(metadata.snapshots.map((s) => [s['snapshot-id'], s]));
  const chain: Snapshot[] = [];
  let id = snapshotId;
  while (id !== undefined) {
    const snapshot = byId.get(id);
    if (!snapshot) break;
    chain.push(snapshot);
    id = snapshot['parent-snapshot-id'];
  }
  return chain;
}

/** A new snapshot id: random, positive and below 2^53 so that every JSON reader keeps it exact. */
export function newSnapshotId(): bigint {
  const bytes = randomBytes(8);
  return bytes.readBigUInt64BE() & ((1n << 53n) - 1n) || 1n;
}
