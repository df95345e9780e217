/**
 * Writes rows into Parquet data files for an Iceberg table: cast to the table's types, split by partition,
 * encoded by DuckDB with the Iceberg field id on every column, rolled over at the target file size, and
 * described by `DataFile` entries (partition tuple and column metrics) ready for a manifest.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { TributaryError } from '../errors.ts';
import type { Storage } from '../storage/storage.ts';
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
import { partitionPath, partitionType } from './partition-spec.ts';
import { metricsFromCopy } from './parquet-metrics.ts';
import { findFieldById } from './schema.ts';
import type { IcebergType, IcebergValue, PrimitiveType, Schema, StructType } from './types.ts';

export const DEFAULT_TARGET_FILE_SIZE = 128 * 1024 * 1024;

export interface WriteDataFilesOptions {
  readonly engine: Engine;
  /** A DuckDB relation — a table or view name, or `(SELECT …)` — with a column per top-level field, by name. */
  readonly relation: string;
  readonly schema: Schema;
  readonly spec: PartitionSpec;
  readonly storage: Storage;
  /** Where data files go: `<table location>/data`. */
  readonly dataLocation: string;
  readonly targetFileSizeBytes?: number;
  /** Parquet compression; default zstd at level 1 (see `parquetCompression`). */
  readonly compression?: ParquetCompression;
  /**
   * Copy the input into a temp table first (default). Turn it off when `relation` is cheap to scan more
   * than once — a table, or a filter over one: each pass then casts and partitions the rows itself,
   * which saves copying the whole batch.
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
      sql: partitionExpression(field.transform, source.type, sourceExpression(schema, field['source-id'])),
    };
  });
  // Partition values are computed from the values cast to the table's types, not the input's. Each row
  // also gets its partition's group number (__g), so groups are selected without literals: a hash of the
  // partition values, which needs no sort (a collision is detected below and falls back to a rank).
  const rows = (group: string) =>
    `select *${partitionColumns.length ? `, ${group} as __g` : ''}
       from (select *${partitionColumns.map((p) => `, ${p.sql} as ${p.name}`).join('')}
       from (select ${select.join(', ')} from (select * from ${options.relation})))`;
  const names = partitionColumns.map((p) => p.name).join(', ');
  const hashed = rows(partitionColumns.length ? `hash(${names})` : '');
  const materialize = options.materialize ?? true;
  const stage = `__tributary_stage_${randomUUID().replace(/-/g, '')}`;
  const ranked = `${stage}_ranked`;
  let source = materialize ? stage : `(${hashed})`;
  const toInputError = (cause: unknown) =>
    new TributaryError('INVALID_INPUT', `the input does not match the table schema: ${firstLine(cause)}`, {
      cause,
      hint: 'fix the values, or change the column type in the table schema',
    });
  try {
    if (materialize) {
      try {
        await connection.run(`create temp table ${stage} as ${hashed}`);
      } catch (cause) {
        throw toInputError(cause);
      }
    }
    await checkRequired(engine, source, schema);
    const types = partitionType(spec, schema);
    const partitions = new Map<string, readonly IcebergValue[]>();
    if (partitionColumns.length) {
      let groups = await readGroups(engine, source, partitionColumns.length);
      if (!groups) {
        // Two partitions hashed alike: number them by rank instead (a sort, once in a blue moon).
        await connection.run(
          `create temp table ${ranked} as select * exclude (__g), dense_rank() over (order by ${names}) as __g from ${source}`,
        );
        source = ranked;
        groups = (await readGroups(engine, source, partitionColumns.length))!;
      }
      for (const group of groups) {
        const values = partitionColumns.map((_, i) =>
          fromDuckDBValue(types.fields[i]!.type as PrimitiveType, group[i] ?? null),
        );
        partitions.set(String(group[partitionColumns.length] ?? ''), values);
      }
    }
    return await copyStage({
      ...options,
      stage: source,
      partitioned: partitionColumns.length > 0,
      partitions,
    });
  } catch (cause) {
    // Unstaged, the casts run in every pass: a value that does not fit its column fails whichever reads it first.
    if (!materialize && !(cause instanceof TributaryError) && CAST_ERROR.test(firstLine(cause)))
      throw toInputError(cause);
    throw cause;
  } finally {
    await connection.run(`drop table if exists ${stage}`);
    await connection.run(`drop table if exists ${ranked}`);
  }
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
  readonly partitioned: boolean;
  /** Partition values by group number (`__g`). */
  readonly partitions: ReadonlyMap<string, readonly IcebergValue[]>;
}

interface CopyStatsRow {
  filename: string;
  count: bigint;
  file_size_bytes: bigint;
  column_statistics: {
    entries: Array<{ key: string; value: { entries: Array<{ key: string; value: string }> } }>;
  };
  partition_keys: { entries: Array<{ key: string; value: string }> } | null;
}

/**
 * Writes the staged rows in one pass: DuckDB splits them by partition group (or rolls files over at the
 * target size when unpartitioned) and returns each file's statistics, so nothing is read back. Files of a
 * partition are then moved under its Iceberg path (`ts_day=2026-11-23/…`).
 */
async function copyStage(copy: CopyStage): Promise<DataFile[]> {
  const dataDirectory = copy.storage.localPath(copy.dataLocation);
  if (!dataDirectory) {
    throw new TributaryError(
      'ICEBERG_UNSUPPORTED',
      `writing data files to ${copy.dataLocation} is not supported yet`,
      {
        hint: 'use a local warehouse',
      },
    );
  }
  const prefix = randomUUID();
  const scratch = path.join(dataDirectory, `.tributary-${prefix}`);
  mkdirSync(scratch, { recursive: true });
  const projection = copy.schema.fields.map((f) => quoteIdentifier(f.name)).join(', ');
  const target = copy.targetFileSizeBytes ?? DEFAULT_TARGET_FILE_SIZE;
  try {
    // DuckDB refuses FILE_SIZE_BYTES with PARTITION_BY: a partition's rows go to one file per thread.
    const layout = copy.partitioned ? `partition_by (__g)` : `file_size_bytes ${target}`;
    const reader = await copy.engine.connection.runAndReadAll(
      `copy (select ${projection}${copy.partitioned ? ', __g' : ''} from ${copy.stage}) to ${quoteLiteral(scratch)}
         (format parquet, ${compressionOption(copy.compression)}, field_ids ${fieldIdsOption(copy.schema)}, ${layout},
          filename_pattern ${quoteLiteral(`${prefix}-{i}`)}, return_stats true)`,
    );
    const files: DataFile[] = [];
    for (const row of reader.getRowObjects() as unknown as CopyStatsRow[]) {
      const count = Number(row.count);
      if (count === 0) continue;
      const group = row.partition_keys?.entries.find((e) => e.key === '__g')?.value ?? '';
      const partition = copy.partitioned ? copy.partitions.get(group) : [];
      if (!partition)
        throw new TributaryError('INTERNAL', `COPY wrote a file for an unknown partition group ${group}`);
      const relative = copy.partitioned ? partitionPath(copy.spec, copy.schema, partition) : '';
      const directory = relative ? `${copy.dataLocation}/${relative}` : copy.dataLocation;
      const name = path.basename(row.filename);
      const finalPath = path.join(dataDirectory, relative, name);
      mkdirSync(path.dirname(finalPath), { recursive: true });
      renameSync(row.filename, finalPath);
      const columnStatistics = new Map(
        row.column_statistics.entries.map((c) => [
          c.key,
          new Map(c.value.entries.map((e) => [e.key, e.value])),
        ]),
      );
      const metrics = metricsFromCopy(
        {
          filename: finalPath,
          count,
          fileSizeBytes: Number(row.file_size_bytes),
          columnStatistics,
          partitionKeys: new Map(),
        },
        copy.schema,
      );
      files.push({
        content: 'data',
        filePath: `${directory}/${name}`,
        fileFormat: 'PARQUET',
        partition,
        fileSizeInBytes: Number(row.file_size_bytes),
        ...metrics,
      });
    }
    return files;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function compressionOption(compression: ParquetCompression = { codec: 'zstd', level: 1 }): string {
  return `compression ${compression.codec}${compression.level === undefined ? '' : `, compression_level ${compression.level}`}`;
}

async function checkRequired(engine: Engine, stage: string, schema: Schema): Promise<void> {
  const required = schema.fields.filter((f) => f.required);
  if (required.length === 0) return;
  const counts = await engine.connection.runAndReadAll(
    `select ${required.map((f) => `count(*) filter (where ${quoteIdentifier(f.name)} is null)`).join(', ')} from ${stage}`,
  );
  const row = counts.getRows()[0] ?? [];
  required.forEach((field, i) => {
    const nulls = Number(row[i] ?? 0);
    if (nulls > 0) {
      throw new TributaryError(
        'INVALID_INPUT',
        `column ${field.name} is required, but ${nulls} row${nulls > 1 ? 's have' : ' has'} no value`,
        {
          hint: `provide ${field.name} in every row, or make the column optional`,
        },
      );
    }
  });
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

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '';
}
