/**
 * Writes rows into Parquet data files for an Iceberg table: cast to the table's types, split by partition,
 * encoded by DuckDB with the Iceberg field id on every column, rolled over at the target file size, and
 * described by `DataFile` entries (partition tuple and column metrics) ready for a manifest.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { TributaryError } from '../errors.ts';
import {
  duckdbType,
  fromDuckDBValue,
  partitionExpression,
  quoteIdentifier,
  quoteLiteral,
  type DuckDBValue,
  type Engine,
} from './duckdb.ts';
import type { DataFile } from './manifest.ts';
import type { PartitionSpec } from './metadata.ts';
import type { NativeFiles } from './native-files.ts';
import { partitionPath, partitionType } from './partition-spec.ts';
import { metricsFromCopy } from './parquet-metrics.ts';
import { findFieldById } from './schema.ts';
import type { IcebergType, IcebergValue, NestedField, PrimitiveType, Schema, StructType } from './types.ts';

export const DEFAULT_TARGET_FILE_SIZE = 128 * 1024 * 1024;

export interface WriteDataFilesOptions {
  readonly engine: Engine;
  /** A DuckDB relation — a table or view name, or `(SELECT …)` — with a column per top-level field, by name. */
  readonly relation: string;
  readonly schema: Schema;
  readonly spec: PartitionSpec;
  /** The table's files (`Table.files`): where DuckDB writes them before they are stored. */
  readonly files: NativeFiles;
  /** Where data files go: `<table location>/data`. */
  readonly dataLocation: string;
  readonly targetFileSizeBytes?: number;
  /** Parquet compression; default zstd at level 1 (see `parquetCompression`). */
  readonly compression?: ParquetCompression;
  /**
   * When the partition values are strings, binary or floating point (which take two passes over the
   * input: one for the partitions, one to write), copy the input into a temp table first (default). Turn
   * it off when `relation` is cheap to scan more than once — a table, or a filter over one: each pass then
   * casts and partitions the rows itself, which saves copying the whole batch. Other inputs are read once,
   * straight into the Parquet writer, either way.
   */
  readonly materialize?: boolean;
}

/** A Parquet codec (as DuckDB names it) and, for zstd, its level. */
export interface ParquetCompression {
  readonly codec: string;
  readonly level?: number;
}

const CODECS = new Set(['zstd', 'snappy', 'gzip', 'lz4', 'brotli', 'uncompressed']);

/**
 * The compression of a table's data files, from its properties `write.parquet.compression-codec` and
 * `write.parquet.compression-level`. zstd defaults to level 1, as pyarrow (and so pyiceberg) writes it:
 * a third less CPU than DuckDB's default level 3 for files a few percent larger.
 */
export function parquetCompression(property: (name: string, fallback: string) => string): ParquetCompression {
  const codec = property('write.parquet.compression-codec', 'zstd').toLowerCase();
  if (!CODECS.has(codec)) {
    throw new TributaryError('ICEBERG_UNSUPPORTED', `Parquet compression codec "${codec}" is not supported`, {
      hint: `set the table property write.parquet.compression-codec to one of ${[...CODECS].join(', ')}`,
    });
  }
  if (codec !== 'zstd') return { codec };
  const text = property('write.parquet.compression-level', '1');
  const level = Number(text);
  if (!Number.isInteger(level) || level < 1 || level > 22) {
    throw new TributaryError('ICEBERG_UNSUPPORTED', `zstd compression level "${text}" is not supported`, {
      hint: 'set the table property write.parquet.compression-level to a whole number from 1 to 22',
    });
  }
  return { codec, level };
}

/** The FIELD_IDS option of DuckDB's COPY: the Iceberg id of every column, nested ones included. */
export function fieldIdsOption(struct: StructType): string {
  const nested = (type: IcebergType, id: number): string => {
    if (typeof type === 'string') return String(id);
    if (type.type === 'struct') {
      return `{__duckdb_field_id: ${id}, ${type.fields.map((f) => `${quoteIdentifier(f.name)}: ${nested(f.type, f.id)}`).join(', ')}}`;
    }
    if (type.type === 'list')
      return `{__duckdb_field_id: ${id}, element: ${nested(type.element, type['element-id'])}}`;
    return `{__duckdb_field_id: ${id}, key: ${nested(type.key, type['key-id'])}, value: ${nested(type.value, type['value-id'])}}`;
  };
  return `{${struct.fields.map((f) => `${quoteIdentifier(f.name)}: ${nested(f.type, f.id)}`).join(', ')}}`;
}

/** Describes the columns of a relation: name → DuckDB type. */
export async function describeRelation(engine: Engine, relation: string): Promise<Map<string, string>> {
  let reader;
  try {
    reader = await engine.connection.runAndReadAll(`describe select * from ${relation}`);
  } catch (cause) {
    throw new TributaryError('INVALID_INPUT', `the input cannot be read: ${firstLine(cause)}`, {
      cause,
      hint: 'give a table or view name, or a query in parentheses: (select …)',
    });
  }
  return new Map(reader.getRows().map((row) => [String(row[0]), String(row[1])]));
}

export async function writeDataFiles(options: WriteDataFilesOptions): Promise<DataFile[]> {
  const { engine, schema, spec } = options;
  const connection = engine.connection;
  const columns = await describeRelation(engine, options.relation);
  const known = new Set(schema.fields.map((f) => f.name));
  const unknown = [...columns.keys()].filter((name) => !known.has(name));
  if (unknown.length > 0) {
    throw new TributaryError(
      'INVALID_INPUT',
      `the input has columns the table does not: ${unknown.join(', ')}`,
      {
        hint: 'add the columns to the table schema (schema evolution), or leave them out of the input',
      },
    );
  }
  const missingRequired = schema.fields.filter((f) => f.required && !columns.has(f.name)).map((f) => f.name);
  if (missingRequired.length > 0) {
    throw new TributaryError(
      'INVALID_INPUT',
      `the input lacks required column${missingRequired.length > 1 ? 's' : ''} ${missingRequired.join(', ')}`,
      {
        hint: 'provide a value for every required column',
      },
    );
  }

  // DuckDB writes BLOB as Parquet BYTE_ARRAY; Iceberg requires fixed_len_byte_array for fixed[L], and other
  // engines refuse to read anything else (pyiceberg: "Cannot promote an binary to fixed[L]").
  const fixed = schema.fields.find((f) => containsFixed(f.type));
  if (fixed) {
    throw new TributaryError(
      'ICEBERG_UNSUPPORTED',
      `column ${fixed.name} has a fixed[L] type, which Tributary cannot write yet`,
      {
        hint: 'use a binary column instead (schema evolution cannot change the type: add a new column)',
      },
    );
  }

  const select = schema.fields.map((f) =>
    columns.has(f.name)
      ? `CAST(${quoteIdentifier(f.name)} AS ${duckdbType(f.type)}) AS ${quoteIdentifier(f.name)}`
      : `CAST(NULL AS ${duckdbType(f.type)}) AS ${quoteIdentifier(f.name)}`,
  );
  const types = partitionType(spec, schema);
  const partitionColumns = spec.fields.map((field, i) => {
    const source = findFieldById(schema, field['source-id']);
    if (!source || typeof source.type !== 'string') {
      throw new TributaryError(
        'ICEBERG_INVALID_PARTITION',
        `partition field ${field.name} has no primitive source column ${field['source-id']}`,
      );
    }
    return {
      name: `__p${i}`,
      type: types.fields[i]!.type as PrimitiveType,
      sql: partitionExpression(field.transform, source.type, sourceExpression(schema, field['source-id'])),
    };
  });
  // Partition values are computed from the values cast to the table's types, not the input's.
  const rows = (group: string) =>
    `select *${group ? `, ${group} as __g` : ''}
       from (select *${partitionColumns.map((p) => `, ${p.sql} as ${p.name}`).join('')}
       from (select ${select.join(', ')} from (select * from ${options.relation})))`;
  const names = partitionColumns.map((p) => p.name).join(', ');
  // Required columns that are not primitive are checked by a count before writing; primitive ones in the
  // statistics of the written files, which costs nothing.
  const nestedRequired = schema.fields.filter((f) => f.required && typeof f.type !== 'string');

  if (partitionColumns.every((p) => KEY_TYPES.test(p.type))) {
    // One pass straight from the input: DuckDB splits the rows by the partition values themselves, and
    // each file's values come back as text (the short, exact rendering of these types).
    const source = `(${rows('')})`;
    try {
      await checkRequired(engine, source, nestedRequired);
      return await copyStage({
        ...options,
        stage: source,
        partitionBy: partitionColumns.map((p) => p.name),
        partitionsOf: (keys) => castPartitionKeys(engine, partitionColumns, keys),
      });
    } catch (cause) {
      throw asInputError(cause);
    }
  }

  // Strings, binary and floating-point values do not make safe directory names (length, rendering): the
  // rows are split by a group number instead (__g), a hash of the partition values, which needs no sort
  // (a collision is detected below and falls back to a rank).
  const hashed = rows(`hash(${names})`);
  const materialize = options.materialize ?? true;
  const stage = `__tributary_stage_${randomUUID().replace(/-/g, '')}`;
  const ranked = `${stage}_ranked`;
  let source = materialize ? stage : `(${hashed})`;
  try {
    if (materialize) {
      try {
        await connection.run(`create temp table ${stage} as ${hashed}`);
      } catch (cause) {
        throw toInputError(cause);
      }
    }
    await checkRequired(engine, source, nestedRequired);
    let groups = await readGroups(engine, source, partitionColumns.length);
    if (!groups) {
      // Two partitions hashed alike: number them by rank instead (a sort, once in a blue moon).
      await connection.run(
        `create temp table ${ranked} as select * exclude (__g), dense_rank() over (order by ${names}) as __g from ${source}`,
      );
      source = ranked;
      groups = (await readGroups(engine, source, partitionColumns.length))!;
    }
    const partitions = new Map<string, readonly IcebergValue[]>();
    for (const group of groups) {
      const values = partitionColumns.map((p, i) => fromDuckDBValue(p.type, group[i] ?? null));
      partitions.set(String(group[partitionColumns.length] ?? ''), values);
    }
    return await copyStage({
      ...options,
      stage: source,
      partitionBy: ['__g'],
      partitionsOf: (keys) => Promise.resolve(keys.map(([group]) => partitions.get(String(group)))),
    });
  } catch (cause) {
    // Unstaged, the casts run in every pass: a value that does not fit its column fails whichever reads it first.
    throw materialize ? cause : asInputError(cause);
  } finally {
    await connection.run(`drop table if exists ${stage}`);
    await connection.run(`drop table if exists ${ranked}`);
  }
}

/**
 * Partition value types DuckDB can split files by directly: rendered short (a directory name) and read
 * back exactly by a cast.
 */
const KEY_TYPES = /^(boolean|int|long|date|time|timestamp|timestamptz|uuid|decimal\(.*\))$/;

/** Partition tuples from their text as COPY reports them (null for a null value). */
async function castPartitionKeys(
  engine: Engine,
  columns: ReadonlyArray<{ readonly type: PrimitiveType }>,
  keys: ReadonlyArray<ReadonlyArray<string | null>>,
): Promise<Array<readonly IcebergValue[]>> {
  if (keys.length === 0) return [];
  const text = (value: string | null) => (value === null ? 'NULL' : quoteLiteral(value));
  const values = keys.map((key, i) => `(${i}, ${key.map(text).join(', ')})`).join(', ');
  const names = columns.map((_, i) => `k${i}`).join(', ');
  const casts = columns.map((c, i) => `CAST(k${i} AS ${duckdbType(c.type)})`).join(', ');
  const reader = await engine.connection.runAndReadAll(
    `select ${casts} from (values ${values}) v(i, ${names}) order by i`,
  );
  return reader.getRows().map((row) => columns.map((c, i) => fromDuckDBValue(c.type, row[i] ?? null)));
}

const CAST_ERROR = /^(Conversion|Invalid Input|Out of Range) Error/;

/** The distinct partitions of the rows and their group numbers; undefined when two share a number. */
async function readGroups(
  engine: Engine,
  source: string,
  count: number,
): Promise<DuckDBValue[][] | undefined> {
  const names = Array.from({ length: count }, (_, i) => `__p${i}`).join(', ');
  const groups = (
    await engine.connection.runAndReadAll(`select ${names}, __g from ${source} group by all`)
  ).getRows();
  const numbers = new Set(groups.map((g) => String(g[count])));
  return numbers.size === groups.length ? groups : undefined;
}

interface CopyStage extends WriteDataFilesOptions {
  readonly stage: string;
  /** The columns files are split by (not written to them): the partition values, or their group number. */
  readonly partitionBy: readonly string[];
  /** The partition tuple of each file, from its `partitionBy` values as COPY reports them (text, or null). */
  readonly partitionsOf: (
    keys: ReadonlyArray<ReadonlyArray<string | null>>,
  ) => Promise<ReadonlyArray<readonly IcebergValue[] | undefined>>;
}

interface CopyStatsRow {
  filename: string;
  count: bigint;
  file_size_bytes: bigint;
  column_statistics: {
    entries: Array<{ key: string; value: { entries: Array<{ key: string; value: string }> } }>;
  };
  partition_keys: { entries: Array<{ key: string; value: string | null }> } | null;
}

/**
 * Writes the rows in one pass: DuckDB splits them by partition (or rolls files over at the target size
 * when unpartitioned) into a staging directory and returns each file's statistics, so nothing is read
 * back. Each file is then stored under its partition's Iceberg path (`ts_day=2026-11-23/…`); when that
 * fails, the files already stored are removed (best effort): no commit will name them.
 */
async function copyStage(copy: CopyStage): Promise<DataFile[]> {
  const prefix = randomUUID();
  const staging = await copy.files.stage(copy.dataLocation);
  const partitioned = copy.partitionBy.length > 0;
  const projection = [
    ...copy.schema.fields.map((f) => quoteIdentifier(f.name)),
    ...copy.partitionBy.map(quoteIdentifier),
  ].join(', ');
  const target = copy.targetFileSizeBytes ?? DEFAULT_TARGET_FILE_SIZE;
  try {
    // DuckDB refuses FILE_SIZE_BYTES with PARTITION_BY: a partition's rows go to one file (a second one
    // only past partitioned_write_max_open_files partitions).
    const layout = partitioned
      ? `partition_by (${copy.partitionBy.map(quoteIdentifier).join(', ')})${await partitionedRowGroups(copy.engine)}`
      : `file_size_bytes ${target}`;
    const reader = await copy.engine.connection.runAndReadAll(
      `copy (select ${projection} from ${copy.stage}) to ${quoteLiteral(staging.path)}
         (format parquet, ${compressionOption(copy.compression)}, field_ids ${fieldIdsOption(copy.schema)}, ${layout},
          filename_pattern ${quoteLiteral(`${prefix}-{i}`)}, return_stats true)`,
    );
    const written = (reader.getRowObjects() as unknown as CopyStatsRow[]).filter(
      (row) => Number(row.count) > 0,
    );
    const statistics = written.map(
      (row) =>
        new Map(
          row.column_statistics.entries.map((c) => [
            c.key,
            new Map(c.value.entries.map((e) => [e.key, e.value])),
          ]),
        ),
    );
    await checkRequiredWritten(copy, statistics);
    const partitions = partitioned
      ? await copy.partitionsOf(
          written.map((row) => {
            const keys = new Map(row.partition_keys?.entries.map((e) => [e.key, e.value]));
            return copy.partitionBy.map((name) => keys.get(name) ?? null);
          }),
        )
      : [];
    const files: DataFile[] = [];
    const staged = written.map((row, i) => {
      const partition = partitioned ? partitions[i] : [];
      if (!partition) {
        throw new TributaryError(
          'INTERNAL',
          `COPY wrote a file for an unknown partition ${JSON.stringify(row.partition_keys?.entries ?? [])}`,
        );
      }
      const relative = partitioned ? partitionPath(copy.spec, copy.schema, partition) : '';
      const directory = relative ? `${copy.dataLocation}/${relative}` : copy.dataLocation;
      const location = `${directory}/${path.basename(row.filename)}`;
      const metrics = metricsFromCopy(
        {
          filename: row.filename,
          count: Number(row.count),
          fileSizeBytes: Number(row.file_size_bytes),
          columnStatistics: statistics[i]!,
          partitionKeys: new Map(),
        },
        copy.schema,
      );
      files.push({
        content: 'data',
        filePath: location,
        fileFormat: 'PARQUET',
        partition,
        fileSizeInBytes: Number(row.file_size_bytes),
        ...metrics,
      });
      return { localPath: row.filename, location };
    });
    // Stored durably (DuckDB flushes nothing) before a commit names them.
    await staging.publish(staged);
    return files;
  } finally {
    await staging.dispose();
  }
}

/** Rows per row group of a partitioned write on more than one thread (DuckDB's default is 122,880). */
const PARTITIONED_ROW_GROUP_ROWS = 16384;

/**
 * The row group option of a partitioned COPY. Each thread hands its rows of a partition to the file's
 * writer, which encodes them at once only when they fill half a row group; smaller shares wait in a buffer
 * that is encoded when the file is closed, and DuckDB closes the files one after the other, on one thread.
 * A bulk append spread over many partitions (a day per partition, a month of data) then encodes all its
 * Parquet on one core. Smaller row groups let each thread encode its own share. A single thread has no one
 * to share with: the default stays.
 */
async function partitionedRowGroups(engine: Engine): Promise<string> {
  const threads = Number(
    (await engine.connection.runAndReadAll(`select current_setting('threads')`)).getRows()[0]?.[0] ?? 1,
  );
  return threads > 1 ? `, row_group_size ${PARTITIONED_ROW_GROUP_ROWS}` : '';
}

/**
 * Refuses nulls in the required primitive columns, counted from the written files' statistics; a file
 * without a null count for one of them has the column counted in the rows instead.
 */
async function checkRequiredWritten(
  copy: CopyStage,
  statistics: ReadonlyArray<ReadonlyMap<string, ReadonlyMap<string, string>>>,
): Promise<void> {
  const required = copy.schema.fields.filter((f) => f.required && typeof f.type === 'string');
  const uncounted: NestedField[] = [];
  for (const field of required) {
    let nulls = 0;
    for (const file of statistics) {
      const count = file.get(quoteIdentifier(field.name))?.get('null_count');
      if (count === undefined) {
        uncounted.push(field);
        break;
      }
      nulls += Number(count);
    }
    if (nulls > 0) throw requiredError(field.name, nulls);
  }
  await checkRequired(copy.engine, copy.stage, uncounted);
}

function compressionOption(compression: ParquetCompression = { codec: 'zstd', level: 1 }): string {
  return `compression ${compression.codec}${compression.level === undefined ? '' : `, compression_level ${compression.level}`}`;
}

/** Refuses nulls in the given (required) columns of `relation`, counting them in one scan. */
async function checkRequired(
  engine: Engine,
  relation: string,
  required: readonly NestedField[],
): Promise<void> {
  if (required.length === 0) return;
  const counts = await engine.connection.runAndReadAll(
    `select ${required.map((f) => `count(*) filter (where ${quoteIdentifier(f.name)} is null)`).join(', ')} from ${relation}`,
  );
  const row = counts.getRows()[0] ?? [];
  required.forEach((field, i) => {
    const nulls = Number(row[i] ?? 0);
    if (nulls > 0) throw requiredError(field.name, nulls);
  });
}

function requiredError(name: string, nulls: number): TributaryError {
  return new TributaryError(
    'INVALID_INPUT',
    `column ${name} is required, but ${nulls} row${nulls > 1 ? 's have' : ' has'} no value`,
    {
      hint: `provide ${name} in every row, or make the column optional`,
    },
  );
}

/** SQL reaching the (possibly nested) column with the given field id, e.g. "address"."city". */
function sourceExpression(schema: Schema, fieldId: number): string {
  const walk = (struct: StructType, trail: string[]): string[] | undefined => {
    for (const field of struct.fields) {
      if (field.id === fieldId) return [...trail, field.name];
      if (typeof field.type === 'object' && field.type.type === 'struct') {
        const found = walk(field.type, [...trail, field.name]);
        if (found) return found;
      }
    }
    return undefined;
  };
  const names = walk(schema, []) ?? [];
  return names.map(quoteIdentifier).join('.');
}

function containsFixed(type: IcebergType): boolean {
  if (typeof type === 'string') return type.startsWith('fixed[');
  if (type.type === 'struct') return type.fields.some((f) => containsFixed(f.type));
  if (type.type === 'list') return containsFixed(type.element);
  return containsFixed(type.key) || containsFixed(type.value);
}

/**
 * The error to throw for `cause`: an input value that does not fit its column's type (DuckDB's cast
 * errors) as INVALID_INPUT saying so, anything else as it is.
 */
export function asInputError(cause: unknown): unknown {
  if (cause instanceof TributaryError || !CAST_ERROR.test(firstLine(cause))) return cause;
  return toInputError(cause);
}

function toInputError(cause: unknown): TributaryError {
  return new TributaryError(
    'INVALID_INPUT',
    `the input does not match the table schema: ${firstLine(cause)}`,
    {
      cause,
      hint: 'fix the values, or change the column type in the table schema',
    },
  );
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '';
}
