/**
 * Scan planning: which data files (and which delete files against them) make up a snapshot of a table,
 * pruned by a filter on partition values and column bounds; and the DuckDB SQL that reads the plan.
 *
 * Reads are by field id: each file's columns are matched to the read schema by Iceberg field id, so
 * renamed, added, dropped and widened columns read right in files written before the change.
 * Deletes: position deletes remove (file, row) pairs; equality deletes remove rows whose key columns
 * equal a delete row's, in data files of a lower sequence number than the delete file's.
 */
import { TributaryError } from '../errors.ts';
import type { Storage } from '../storage/storage.ts';
import { duckdbType, quoteIdentifier, quoteLiteral } from './duckdb.ts';
import { decodeManifest, decodeManifestList, type DataFile, type ManifestFile } from './manifest.ts';
import {
  currentSchema,
  schemaById,
  snapshotAsOf,
  snapshotById,
  specById,
  type PartitionSpec,
  type Snapshot,
  type TableMetadata,
} from './metadata.ts';
import type { FileToRead, ReadableFiles } from './native-files.ts';
import { type ParquetColumn, readParquetSchema } from './parquet-metrics.ts';
import { findFieldById, findFieldByName, indexParents } from './schema.ts';
import { compareValues, fromBinary } from './single-value.ts';
import { parseTransform } from './transforms.ts';
import type { IcebergType, IcebergValue, PrimitiveType, Schema } from './types.ts';

/** A comparison of a column (by name, dotted for nested) with a literal in the column's value representation. */
export interface Predicate {
  readonly column: string;
  readonly op: '=' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | 'is_null' | 'not_null';
  readonly value?: IcebergValue;
  readonly values?: readonly IcebergValue[];
}

export interface ScanOptions {
  readonly snapshotId?: bigint;
  /** Time travel: the snapshot current at this time (ms since epoch). */
  readonly asOfMs?: number;
  /** Conjunction of predicates; files that cannot contain matching rows are skipped. */
  readonly filter?: readonly Predicate[];
  /**
   * Keep every column metric (sizes, counts, bounds) on the planned files. Off by default, as in Java's
   * `TableScan` (`includeColumnStats`): planning then skips the metrics unread, or reads only those of
   * the filtered columns to prune by, and the planned files carry none.
   */
  readonly includeColumnStats?: boolean;
}

export interface PlannedFile {
  readonly file: DataFile;
  readonly sequenceNumber: number;
  readonly specId: number;
  /** The data file's columns, read from its footer when nested fields must be matched by id (see scanSql). */
  readonly columns?: readonly ParquetColumn[];
}

export interface ScanPlan {
  readonly snapshot: Snapshot | undefined;
  /** The schema rows are read with: the snapshot's schema when time travelling, else the current one. */
  readonly schema: Schema;
  readonly dataFiles: readonly PlannedFile[];
  readonly positionDeletes: readonly PlannedFile[];
  readonly equalityDeletes: readonly PlannedFile[];
  readonly manifestsScanned: number;
  readonly manifestsSkipped: number;
}

/**
 * Manifests a plan reads at once. Local reads go through libuv's 4 threads; 8 to 32 measured alike, all
 * 200 at once slower (see planScan). A remote store with higher latency would want more.
 */
const MANIFEST_READS_IN_FLIGHT = 16;

export function snapshotFor(
  metadata: TableMetadata,
  options: Pick<ScanOptions, 'snapshotId' | 'asOfMs'>,
): Snapshot | undefined {
  if (options.snapshotId !== undefined) return snapshotById(metadata, options.snapshotId);
  if (options.asOfMs !== undefined) return snapshotAsOf(metadata, options.asOfMs);
  const id = metadata['current-snapshot-id'];
  return id === undefined ? undefined : snapshotById(metadata, id);
}

export async function planScan(
  metadata: TableMetadata,
  storage: Storage,
  options: ScanOptions = {},
): Promise<ScanPlan> {
  const snapshot = snapshotFor(metadata, options);
  const timeTravel = options.snapshotId !== undefined || options.asOfMs !== undefined;
  const schema =
    timeTravel && snapshot?.['schema-id'] !== undefined
      ? schemaById(metadata, snapshot['schema-id'])
      : currentSchema(metadata);
  const plan = {
    snapshot,
    schema,
    dataFiles: [] as PlannedFile[],
    positionDeletes: [] as PlannedFile[],
    equalityDeletes: [] as PlannedFile[],
    manifestsScanned: 0,
    manifestsSkipped: 0,
  };
  if (!snapshot) return plan;
  const manifests = decodeManifestList(await storage.read(snapshot['manifest-list']));
  const filter = options.filter ?? [];
  const includeStats = options.includeColumnStats ?? false;
  // Metrics are the bulk of a manifest: decode those of the filtered columns only, unless all are wanted.
  const filterIds = new Set(filter.flatMap((p) => findFieldByName(schema, p.column)?.id ?? []));
  const columnStats = includeStats ? 'all' : filterIds.size ? filterIds : 'none';
  const fileFilters = new Map<number, (file: DataFile) => boolean>();
  const readManifest = async (manifest: ManifestFile): Promise<void> => {
    const spec = specById(metadata, manifest.partitionSpecId);
    if (filter.length && !manifestMayMatch(manifest, spec, schema, filter)) {
      plan.manifestsSkipped++;
      return;
    }
    plan.manifestsScanned++;
    const bytes = await storage.read(manifest.manifestPath);
    const decoded = decodeManifest(bytes, { file: manifest.manifestPath, columnStats });
    let mayMatch = fileFilters.get(spec['spec-id']);
    if (filter.length && !mayMatch) {
      mayMatch = fileFilter(spec, schema, filter);
      fileFilters.set(spec['spec-id'], mayMatch);
    }
    for (const entry of decoded.entries) {
      if (entry.status === 'deleted') continue;
      const file = entry.dataFile;
      if (file.content === 'data' && mayMatch && !mayMatch(file)) continue;
      const planned = {
        // The metrics read only to prune by are not handed on (see includeColumnStats).
        file: columnStats instanceof Set ? withoutStats(file) : file,
        // Inheritance (inheritManifestMetadata), of the one number planning needs.
        sequenceNumber: entry.sequenceNumber ?? manifest.sequenceNumber,
        specId: manifest.partitionSpecId,
      };
      if (file.content === 'data') {
        plan.dataFiles.push(planned);
      } else if (file.content === 'position-deletes') {
        plan.positionDeletes.push(planned);
      } else {
        plan.equalityDeletes.push(planned);
      }
    }
  };
  // A few reads in flight at a time: each manifest is decoded while the next ones are read, where
  // starting every read at once would leave the decoding until nearly all of them had been read.
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < manifests.length) await readManifest(manifests[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(MANIFEST_READS_IN_FLIGHT, manifests.length) }, worker));
  plan.dataFiles.sort((a, b) => (a.file.filePath < b.file.filePath ? -1 : 1));
  if (nestedFieldsChanged(metadata, schema)) {
    plan.dataFiles = await Promise.all(
      plan.dataFiles.map(async (p) => ({ ...p, columns: await readParquetSchema(storage, p.file.filePath) })),
    );
  }
  return plan;
}

/**
 * Whether some schema of the table names a nested field otherwise than `schema` does, or has one `schema`
 * dropped. DuckDB matches the children of a struct by name, so files written under such a schema need
 * their nested fields matched by id, from their own footers.
 */
function nestedFieldsChanged(metadata: TableMetadata, schema: Schema): boolean {
  return metadata.schemas.some((other) => {
    for (const [id, parent] of indexParents(other)) {
      if (!findFieldById(schema, parent)) continue; // the whole column is gone
      if (findFieldById(schema, id)?.name !== findFieldById(other, id)?.name) return true;
    }
    return false;
  });
}

function manifestMayMatch(
  manifest: ManifestFile,
  spec: PartitionSpec,
  schema: Schema,
  filter: readonly Predicate[],
): boolean {
  if (!manifest.partitions || spec.fields.length === 0) return true;
  return filter.every((predicate) => {
    const source = findFieldByName(schema, predicate.column);
    if (!source) return true;
    return spec.fields.every((field, i) => {
      if (field['source-id'] !== source.id) return true;
      // Typed from the source column alone: other fields of an old spec may name dropped columns.
      const transform = parseTransform(field.transform);
      const projected = transform.project(source.type, predicate);
      const summary = manifest.partitions?.[i];
      const resultType = transform.resultType(source.type) as PrimitiveType;
      if (!projected || !summary) return true;
      const lower = summary.lowerBound ? fromBinary(resultType, summary.lowerBound) : undefined;
      const upper = summary.upperBound ? fromBinary(resultType, summary.upperBound) : undefined;
      return rangeMayMatch(resultType, projected, lower, upper, summary.containsNull);
    });
  });
}

/** The data file without the column metrics that were read only to prune by. */
function withoutStats(file: DataFile): DataFile {
  const {
    columnSizes: _sizes,
    valueCounts: _values,
    nullValueCounts: _nulls,
    nanValueCounts: _nans,
    lowerBounds: _lower,
    upperBounds: _upper,
    ...rest
  } = file;
  return rest;
}

/**
 * Whether a data file of the spec may hold rows matching the filter, by its partition values and column
 * metrics. Columns, transforms and projected predicates are resolved once here, not once per file.
 */
function fileFilter(
  spec: PartitionSpec,
  schema: Schema,
  filter: readonly Predicate[],
): (file: DataFile) => boolean {
  const checks = filter.flatMap((predicate) => {
    const source = findFieldByName(schema, predicate.column);
    if (!source || typeof source.type !== 'string') return [];
    const type = source.type;
    const partitions = spec.fields.flatMap((field, i) => {
      if (field['source-id'] !== source.id) return [];
      const transform = parseTransform(field.transform);
      const projected = transform.project(type, predicate);
      if (!projected) return [];
      return [{ i, projected, resultType: transform.resultType(type) as PrimitiveType }];
    });
    // Decode only the bounds the comparison looks at (rangeMayMatch): `<` needs the lower, `>` the upper.
    const lowerNeeded = ['=', 'in', '<', '<='].includes(predicate.op);
    const upperNeeded = ['=', 'in', '>', '>='].includes(predicate.op);
    return [{ predicate, id: source.id, type, partitions, lowerNeeded, upperNeeded }];
  });
  return (file) =>
    checks.every(({ predicate, id, type, partitions, lowerNeeded, upperNeeded }) => {
      // Partition values.
      for (const { i, projected, resultType } of partitions) {
        const value = promotePartitionValue(resultType, file.partition[i] ?? null);
        if (!rangeMayMatch(resultType, projected, value ?? undefined, value ?? undefined, value === null))
          return false;
      }
      // Column bounds.
      const nulls = file.nullValueCounts?.get(id);
      const values = file.valueCounts?.get(id);
      if (predicate.op === 'is_null') return nulls === undefined || nulls > 0;
      if (predicate.op === 'not_null') return nulls === undefined || values === undefined || nulls < values;
      // A column of nulls only (no bounds then) satisfies no comparison.
      if (nulls !== undefined && nulls === values) return false;
      const lowerBytes = lowerNeeded ? file.lowerBounds?.get(id) : undefined;
      const upperBytes = upperNeeded ? file.upperBounds?.get(id) : undefined;
      const lower = lowerBytes ? fromBinary(type, lowerBytes) : undefined;
      const upper = upperBytes ? fromBinary(type, upperBytes) : undefined;
      return rangeMayMatch(type, predicate, lower, upper, true);
    });
}

/**
 * A partition value as the current schema types it: manifests written before an int → long promotion of
 * the source column hold ints (numbers), which would not compare with longs (bigints).
 */
export function promotePartitionValue(type: IcebergType, value: IcebergValue): IcebergValue {
  return type === 'long' && typeof value === 'number' ? BigInt(value) : value;
}

/** Whether some value in [lower, upper] (either may be unknown) can satisfy the predicate. */
function rangeMayMatch(
  type: PrimitiveType,
  predicate: Pick<Predicate, 'op' | 'value' | 'values'>,
  lower: IcebergValue | undefined,
  upper: IcebergValue | undefined,
  mayBeNull: boolean,
): boolean {
  const cmp = (a: IcebergValue, b: IcebergValue) => compareValues(type, a, b);
  const v = predicate.value ?? null;
  switch (predicate.op) {
    case 'is_null':
      return mayBeNull;
    case 'not_null':
      return true;
    case '=':
      return (
        v === null ||
        ((lower === undefined || cmp(v, lower) >= 0) && (upper === undefined || cmp(v, upper) <= 0))
      );
    case 'in':
      return (predicate.values ?? []).some((x) =>
        rangeMayMatch(type, { op: '=', value: x }, lower, upper, mayBeNull),
      );
    case '<':
      return v === null || lower === undefined || cmp(lower, v) < 0;
    case '<=':
      return v === null || lower === undefined || cmp(lower, v) <= 0;
    case '>':
      return v === null || upper === undefined || cmp(upper, v) > 0;
    case '>=':
      return v === null || upper === undefined || cmp(upper, v) >= 0;
    default:
      return true;
  }
}

export interface ScanSqlOptions {
  /** Also return `_file` (the data file's location) and `_pos` (the row's position in it). */
  readonly withRowPositions?: boolean;
}

/**
 * The column read_parquet adds with each row's local file path, named so that no table column (a
 * `filename` column is common) collides with it.
 */
export const FILE_COLUMN = '__tributary_file';

/** Every file the plan reads, data and delete files, as `NativeFiles.readable` takes them. */
export function planFiles(plan: ScanPlan): FileToRead[] {
  return [...plan.dataFiles, ...plan.positionDeletes, ...plan.equalityDeletes].map((p) => ({
    location: p.file.filePath,
    size: p.file.fileSizeInBytes,
  }));
}

/**
 * DuckDB SQL reading the plan: the rows of the snapshot, with deletes applied, one column per schema field.
 * `files` are the plan's files made readable (`NativeFiles.readable(planFiles(plan))`).
 */
export function scanSql(plan: ScanPlan, files: ReadableFiles, options: ScanSqlOptions = {}): string {
  const schema = plan.schema;
  const columns = schema.fields.map((f) => quoteIdentifier(f.name));
  const extra = options.withRowPositions ? ['_file', '_pos'] : [];
  if (plan.dataFiles.length === 0) {
    const empty = schema.fields.map(
      (f) => `CAST(NULL AS ${duckdbType(f.type)}) AS ${quoteIdentifier(f.name)}`,
    );
    const positions = options.withRowPositions
      ? [`CAST(NULL AS VARCHAR) AS _file`, `CAST(NULL AS BIGINT) AS _pos`]
      : [];
    return `(select ${[...empty, ...positions].join(', ')} where false)`;
  }
  const localPath = (location: string) => files.path(location);
  const schemaMap = `map {${schema.fields
    .map(
      (f) =>
        `${f.id}: {name: ${quoteLiteral(f.name)}, type: ${quoteLiteral(duckdbType(f.type))}, default_value: NULL}`,
    )
    .join(', ')}}`;
  const dataFiles = `[${plan.dataFiles.map((p) => quoteLiteral(localPath(p.file.filePath))).join(', ')}]`;
  // Row positions only when something needs them: DuckDB cannot give them for a file with a column named
  // file_row_number, and such a table can then still be read while it has no position deletes.
  const positions = options.withRowPositions === true || plan.positionDeletes.length > 0;
  const source = plan.dataFiles.some((p) => p.columns)
    ? readByFileColumns(plan, localPath, positions)
    : `read_parquet(${dataFiles}, schema = ${schemaMap}, filename = ${quoteLiteral(FILE_COLUMN)}, file_row_number = ${positions})`;
  // The location each local path stands for, to match position deletes (which name files by location).
  const locations = plan.dataFiles.map(
    (p) =>
      `(${quoteLiteral(localPath(p.file.filePath))}, ${quoteLiteral(p.file.filePath)}, ${p.sequenceNumber})`,
  );
  let sql = `select ${columns.map((c) => `d.${c}`).join(', ')}${extra.length ? ', f.location as _file, d.file_row_number as _pos' : ''}
    from ${source} d
    join (values ${locations.join(', ')}) f(path, location, seq) on d.${FILE_COLUMN} = f.path`;
  if (plan.positionDeletes.length) {
    const deleteFiles = `[${plan.positionDeletes.map((p) => quoteLiteral(localPath(p.file.filePath))).join(', ')}]`;
    sql += `
    anti join (select file_path, pos from read_parquet(${deleteFiles})) pd on pd.file_path = f.location and pd.pos = d.file_row_number`;
  }
  const conditions: string[] = [];
  for (const planned of plan.equalityDeletes) {
    const ids = planned.file.equalityIds ?? [];
    const fields = ids.map((id) => findFieldById(schema, id));
    if (fields.some((f) => !f) || ids.length === 0) {
      throw new TributaryError(
        'ICEBERG_UNSUPPORTED',
        `equality delete file ${planned.file.filePath} names columns not in the schema`,
      );
    }
    const deleteSchema = `map {${ids.map((id, i) => `${id}: {name: 'k${i}', type: ${quoteLiteral(duckdbType(fields[i]!.type))}, default_value: NULL}`).join(', ')}}`;
    const match = ids
      .map((_, i) => `e.k${i} is not distinct from d.${quoteIdentifier(fields[i]!.name)}`)
      .join(' and ');
    conditions.push(
      `not (f.seq < ${planned.sequenceNumber} and exists (select 1 from read_parquet([${quoteLiteral(localPath(planned.file.filePath))}], schema = ${deleteSchema}) e where ${match}))`,
    );
  }
  if (conditions.length) sql += `\n    where ${conditions.join(' and ')}`;
  return `(${sql})`;
}

/**
 * The data files read with nested fields matched by id: per group of files whose columns are named alike,
 * read_parquet with struct types in the files' own names, then rebuilt into the read schema's names.
 */
function readByFileColumns(
  plan: ScanPlan,
  localPath: (location: string) => string,
  positions: boolean,
): string {
  const groups = new Map<string, { map: string; projection: string; files: string[] }>();
  for (const planned of plan.dataFiles) {
    const { map, projection } = fileProjection(plan.schema, planned.columns ?? []);
    const group = groups.get(`${map}\n${projection}`) ?? { map, projection, files: [] };
    group.files.push(quoteLiteral(localPath(planned.file.filePath)));
    groups.set(`${map}\n${projection}`, group);
  }
  const reads = [...groups.values()].map(
    ({ map, projection, files }) =>
      `select ${projection}, ${FILE_COLUMN}${positions ? ', file_row_number' : ''} from read_parquet([${files.join(', ')}], schema = ${map}, filename = ${quoteLiteral(FILE_COLUMN)}, file_row_number = ${positions})`,
  );
  return `(${reads.join('\n    union all ')})`;
}

function fileProjection(
  schema: Schema,
  columns: readonly ParquetColumn[],
): { map: string; projection: string } {
  const entries: string[] = [];
  const select: string[] = [];
  for (const field of schema.fields) {
    const name = quoteIdentifier(field.name);
    const type = duckdbType(field.type);
    const column = columns.find((c) => c.fieldId === field.id);
    const shaped = column && typeof field.type !== 'string' ? fileShapedType(field.type, column) : type;
    if (!column || shaped === undefined) {
      // Not in the file (or none of its nested fields are): null, as for a column added later.
      select.push(`CAST(NULL AS ${type}) AS ${name}`);
      continue;
    }
    entries.push(
      `${field.id}: {name: ${quoteLiteral(field.name)}, type: ${quoteLiteral(shaped)}, default_value: NULL}`,
    );
    select.push(`CAST(${rebuild(field.type, column, name, 0)} AS ${type}) AS ${name}`);
  }
  return { map: `map {${entries.join(', ')}}`, projection: select.join(', ') };
}

function listElement(column: ParquetColumn): ParquetColumn | undefined {
  const repeated = column.children[0];
  // Three levels (list → repeated group → element) as the spec writes them; two in some old files.
  return repeated && repeated.fieldId === undefined && repeated.children.length === 1
    ? repeated.children[0]
    : repeated;
}

function mapEntries(column: ParquetColumn): { key?: ParquetColumn; value?: ParquetColumn } {
  const entries = column.children[0];
  return { key: entries?.children[0], value: entries?.children[1] };
}

/** The DuckDB type of a column as the file names its nested fields, with the read schema's types. */
function fileShapedType(type: IcebergType, column: ParquetColumn): string | undefined {
  if (typeof type === 'string') return duckdbType(type);
  if (type.type === 'struct') {
    const members = type.fields.flatMap((f) => {
      const child = column.children.find((c) => c.fieldId === f.id);
      const shaped = child && fileShapedType(f.type, child);
      return child && shaped ? [`${quoteIdentifier(child.name)} ${shaped}`] : [];
    });
    // DuckDB cannot read a struct none of whose fields it is asked for.
    return members.length ? `STRUCT(${members.join(', ')})` : undefined;
  }
  if (type.type === 'list') {
    const element = listElement(column);
    const shaped = element && fileShapedType(type.element, element);
    return shaped && `${shaped}[]`;
  }
  const { key, value } = mapEntries(column);
  const keyType = key && fileShapedType(type.key, key);
  const valueType = value && fileShapedType(type.value, value);
  return keyType && valueType ? `MAP(${keyType}, ${valueType})` : undefined;
}

/** SQL turning `expr` (of the file-shaped type) into the read schema's names: struct fields by id. */
function rebuild(type: IcebergType, column: ParquetColumn, expr: string, depth: number): string {
  if (typeof type === 'string') return expr;
  const variable = `__e${depth}`;
  if (type.type === 'struct') {
    const members = type.fields.map((f) => {
      const child = column.children.find((c) => c.fieldId === f.id);
      const value =
        child && fileShapedType(f.type, child) !== undefined
          ? rebuild(f.type, child, `${expr}.${quoteIdentifier(child.name)}`, depth)
          : `CAST(NULL AS ${duckdbType(f.type)})`;
      return `${quoteIdentifier(f.name)} := ${value}`;
    });
    return `CASE WHEN ${expr} IS NULL THEN NULL ELSE struct_pack(${members.join(', ')}) END`;
  }
  if (type.type === 'list') {
    const element = listElement(column)!;
    return `list_transform(${expr}, ${variable} -> ${rebuild(type.element, element, variable, depth + 1)})`;
  }
  const { key, value } = mapEntries(column);
  const pair = `struct_pack(key := ${rebuild(type.key, key!, `${variable}.key`, depth + 1)}, value := ${rebuild(type.value, value!, `${variable}.value`, depth + 1)})`;
  return `CASE WHEN ${expr} IS NULL THEN NULL ELSE map_from_entries(list_transform(map_entries(${expr}), ${variable} -> ${pair})) END`;
}
