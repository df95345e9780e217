/**
 * DuckDB as the table format's engine: it encodes Parquet (with Iceberg field ids) and executes scans.
 * This module maps Iceberg types to DuckDB's, converts DuckDB values to the value representation of
 * types.ts, and holds the connection setup every caller needs (UTC session, the bucket-transform UDFs).
 */
import {
  BIGINT,
  BLOB,
  DuckDBBlobValue,
  DuckDBDateValue,
  DuckDBDecimalValue,
  DuckDBInstance,
  DuckDBScalarFunction,
  DuckDBTimestampTZValue,
  DuckDBTimestampValue,
  DuckDBTimeValue,
  DuckDBUUIDValue,
  INTEGER,
  VARCHAR,
  type DuckDBConnection,
  type DuckDBType,
  type DuckDBValue,
} from '@duckdb/node-api';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TributaryError } from '../errors.ts';
import { parseTransform } from './transforms.ts';
import type { IcebergType, IcebergValue, PrimitiveType } from './types.ts';

export type { DuckDBConnection, DuckDBValue };

/** A DuckDB connection set up for Iceberg work. Close it with `closeSync()` on both. */
export interface Engine {
  readonly instance: DuckDBInstance;
  readonly connection: DuckDBConnection;
  close(): void;
}

/**
 * Where a DuckDB instance spills what does not fit its memory: a directory of its own under the system's
 * temporary directory. DuckDB's default is `.tmp` in the working directory, which a container's read-only
 * root (the Kubernetes manifests) cannot take, and its spill files have fixed names, so two instances must
 * not share one. DuckDB creates it on the first spill and removes it when the instance closes.
 */
export function duckdbTempDirectory(): string {
  return path.join(tmpdir(), `tributary-duckdb-${randomUUID()}`);
}

export async function openEngine(options: { threads?: number; memoryLimit?: string } = {}): Promise<Engine> {
  const instance = await DuckDBInstance.create(':memory:', {
    temp_directory: duckdbTempDirectory(),
    ...(options.threads ? { threads: String(options.threads) } : {}),
    ...(options.memoryLimit ? { memory_limit: options.memoryLimit } : {}),
  });
  const connection = await instance.connect();
  // Iceberg's day/hour transforms and timestamptz values are defined in UTC.
  await connection.run(`set TimeZone = 'UTC'`);
  registerBucketFunctions(connection);
  return {
    instance,
    connection,
    close() {
      connection.closeSync();
      instance.closeSync();
    },
  };
}

export function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

const DECIMAL = /^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$/;
const FIXED = /^fixed\[(\d+)\]$/;

export function decimalParts(type: string): { precision: number; scale: number } | undefined {
  const match = DECIMAL.exec(type);
  return match ? { precision: Number(match[1]), scale: Number(match[2]) } : undefined;
}

/** The DuckDB SQL type that holds values of an Iceberg type. */
export function duckdbType(type: IcebergType): string {
  if (typeof type === 'string') return duckdbPrimitive(type);
  if (type.type === 'struct') {
    return `STRUCT(${type.fields.map((f) => `${quoteIdentifier(f.name)} ${duckdbType(f.type)}`).join(', ')})`;
  }
  if (type.type === 'list') return `${duckdbType(type.element)}[]`;
  return `MAP(${duckdbType(type.key)}, ${duckdbType(type.value)})`;
}

function duckdbPrimitive(type: PrimitiveType): string {
  switch (type) {
    case 'boolean':
      return 'BOOLEAN';
    case 'int':
      return 'INTEGER';
    case 'long':
      return 'BIGINT';
    case 'float':
      return 'FLOAT';
    case 'double':
      return 'DOUBLE';
    case 'date':
      return 'DATE';
    case 'time':
      return 'TIME';
    case 'timestamp':
      return 'TIMESTAMP';
    case 'timestamptz':
      return 'TIMESTAMPTZ';
    case 'string':
      return 'VARCHAR';
    case 'uuid':
      return 'UUID';
    case 'binary':
      return 'BLOB';
    default: {
      const decimal = decimalParts(type);
      if (decimal) return `DECIMAL(${decimal.precision}, ${decimal.scale})`;
      if (FIXED.test(type)) return 'BLOB';
      throw new TributaryError('ICEBERG_UNSUPPORTED', `unsupported Iceberg type ${type}`);
    }
  }
}

/** A value DuckDB returned, in the representation of types.ts for the given Iceberg primitive type. */
export function fromDuckDBValue(type: PrimitiveType, value: DuckDBValue): IcebergValue {
  if (value === null) return null;
  switch (type) {
    case 'boolean':
      return Boolean(value);
    case 'int':
    case 'float':
    case 'double':
      return Number(value);
    case 'long':
      return typeof value === 'bigint' ? value : BigInt(value as number);
    case 'date':
      return value instanceof DuckDBDateValue ? value.days : Number(value);
    case 'time':
      return value instanceof DuckDBTimeValue ? value.micros : BigInt(value as number);
    case 'timestamp':
    case 'timestamptz':
      return value instanceof DuckDBTimestampValue || value instanceof DuckDBTimestampTZValue
        ? value.micros
        : BigInt(value as number);
    case 'string':
      return String(value);
    case 'uuid':
      return value instanceof DuckDBUUIDValue ? value.toString() : String(value);
    case 'binary':
      return value instanceof DuckDBBlobValue ? value.bytes : (value as unknown as Uint8Array);
    default:
      if (value instanceof DuckDBDecimalValue) return value.value;
      if (value instanceof DuckDBBlobValue) return value.bytes;
      throw new TributaryError('ICEBERG_UNSUPPORTED', `cannot convert a DuckDB value to Iceberg ${type}`);
  }
}

/**
 * `iceberg_bucket(n, x)` for every source type, computed by the spec's murmur3 hashing. Callers pass the
 * value as DuckDB gives it for the Iceberg source type (see `bucketArgument`).
 */
function registerBucketFunctions(connection: DuckDBConnection): void {
  const kinds: Array<{
    name: string;
    parameter: DuckDBType;
    source: PrimitiveType;
    convert: (v: unknown) => IcebergValue;
  }> = [
    { name: 'iceberg_bucket_long', parameter: BIGINT, source: 'long', convert: (v) => v as bigint },
    { name: 'iceberg_bucket_int', parameter: INTEGER, source: 'int', convert: (v) => v as number },
    { name: 'iceberg_bucket_string', parameter: VARCHAR, source: 'string', convert: (v) => v as string },
    {
      name: 'iceberg_bucket_binary',
      parameter: BLOB,
      source: 'binary',
      convert: (v) => (v as DuckDBBlobValue).bytes,
    },
  ];
  for (const kind of kinds) {
    connection.registerScalarFunction(
      DuckDBScalarFunction.create({
        name: kind.name,
        returnType: INTEGER,
        parameterTypes: [INTEGER, kind.parameter],
        mainFunction: (_info, input, output) => {
          const counts = input.getColumnVector(0);
          const values = input.getColumnVector(1);
          let transform: ReturnType<typeof parseTransform> | undefined;
          let lastCount = -1;
          for (let row = 0; row < input.rowCount; row++) {
            const value = values.getItem(row);
            const count = counts.getItem(row) as number;
            if (count !== lastCount) {
              transform = parseTransform(`bucket[${count}]`);
              lastCount = count;
            }
            output.setItem(
              row,
              value === null ? null : (transform?.apply(kind.source, kind.convert(value)) as number),
            );
          }
          output.flush();
        },
      }),
    );
  }
}

/**
 * SQL for a bucket transform of `column` (an expression of Iceberg type `source`). Dates, times and
 * timestamps hash as their long value, uuid and decimal through their canonical forms.
 */
export function bucketExpression(source: PrimitiveType, column: string, buckets: number): string {
  switch (source) {
    case 'int':
      return `iceberg_bucket_int(${buckets}, ${column})`;
    case 'long':
      return `iceberg_bucket_long(${buckets}, ${column})`;
    case 'date':
      return `iceberg_bucket_long(${buckets}, date_diff('day', DATE '1970-01-01', ${column})::BIGINT)`;
    case 'time':
      return `iceberg_bucket_long(${buckets}, (epoch_us(DATE '1970-01-01' + ${column}))::BIGINT)`;
    case 'timestamp':
    case 'timestamptz':
      return `iceberg_bucket_long(${buckets}, epoch_us(${column}))`;
    case 'string':
      return `iceberg_bucket_string(${buckets}, ${column})`;
    case 'binary':
      return `iceberg_bucket_binary(${buckets}, ${column})`;
    default:
      if (source === 'uuid' || FIXED.test(source)) {
        return `iceberg_bucket_binary(${buckets}, ${source === 'uuid' ? `unhex(replace(${column}::VARCHAR, '-', ''))` : column})`;
      }
      throw new TributaryError(
        'ICEBERG_UNSUPPORTED',
        `bucket partitioning of ${source} columns is not supported yet`,
        {
          hint: 'partition by another column, or by truncate/identity of this one',
        },
      );
  }
}

/**
 * SQL computing a partition transform of `column` (Iceberg type `source`), giving the partition value in
 * the transform's result type: ints for year/month/hour (since 1970, floored), the date for day, the
 * source type for identity and truncate.
 */
export function partitionExpression(transform: string, source: PrimitiveType, column: string): string {
  const epoch = source === 'date' ? `DATE '1970-01-01'` : `TIMESTAMP '1970-01-01'`;
  // A timestamptz is taken as the UTC timestamp it holds: DuckDB computes dates and date_diff of a
  // timestamptz through ICU's calendar, dozens of times slower than the same on a plain timestamp.
  const time = source === 'timestamptz' ? `make_timestamp(epoch_us(${column}))` : column;
  const bucket = /^bucket\[(\d+)\]$/.exec(transform);
  if (bucket) return bucketExpression(source, column, Number(bucket[1]));
  const truncate = /^truncate\[(\d+)\]$/.exec(transform);
  if (truncate) {
    const width = Number(truncate[1]);
    if (source === 'int' || source === 'long')
      return `(${column} - (((${column} % ${width}) + ${width}) % ${width}))`;
    if (source === 'string') return `substring(${column}, 1, ${width})`;
    const decimal = decimalParts(source);
    if (decimal) {
      // Exact on the unscaled value (multiplying and dividing by 10^scale overflows or goes through a
      // double): its digits with the point removed, as DuckDB prints every digit of the scale.
      const unscaled = `CAST(replace(CAST(${column} AS VARCHAR), '.', '') AS HUGEINT)`;
      let value = `CAST((${unscaled} - (((${unscaled} % ${width}) + ${width}) % ${width})) AS DECIMAL(38, 0))`;
      for (let left = decimal.scale; left > 0; left -= 18) {
        value = `(${value} * 0.${'0'.repeat(Math.min(left, 18) - 1)}1)`;
      }
      return `CAST(${value} AS ${duckdbPrimitive(source)})`;
    }
    if (source === 'binary') return `${column}[1:${width}]`;
  }
  switch (transform) {
    case 'identity':
      return column;
    case 'void':
      return `CAST(NULL AS ${duckdbPrimitive(source)})`;
    case 'year':
    case 'month':
    case 'hour':
      return `CAST(date_diff('${transform}', ${epoch}, ${time}) AS INTEGER)`;
    case 'day':
      return `CAST(${time} AS DATE)`;
  }
  throw new TributaryError(
    'ICEBERG_UNSUPPORTED',
    `partition transform ${transform} of a ${source} column is not supported`,
  );
}
