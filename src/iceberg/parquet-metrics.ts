/**
 * Column metrics of a Parquet file for its manifest entry: value counts, null counts, sizes and
 * lower/upper bounds by Iceberg field id, read from the file's own statistics through DuckDB's
 * `parquet_metadata()` — no second pass over the data.
 *
 * Bounds are recorded only for primitive columns outside lists and maps, and only when the statistic
 * can be read exactly; strings and binary bounds are truncated to 16 characters or bytes as Iceberg's
 * default metrics mode does (the upper bound is then rounded up, so it is still an upper bound).
 */
import { decimalParts, quoteLiteral, type DuckDBConnection } from './duckdb.ts';
import { toBinary, truncateLowerBound, truncateUpperBound } from './single-value.ts';
import type { IcebergType, IcebergValue, PrimitiveType, StructType } from './types.ts';

export interface FileMetrics {
  readonly recordCount: number;
  readonly columnSizes: Map<number, number>;
  readonly valueCounts: Map<number, number>;
  readonly nullValueCounts: Map<number, number>;
  readonly lowerBounds: Map<number, Uint8Array>;
  readonly upperBounds: Map<number, Uint8Array>;
}

interface Leaf {
  readonly id: number;
  readonly type: PrimitiveType;
  /** Inside a list or map: counts are recorded, bounds are not. */
  readonly repeated: boolean;
}

/** Leaf columns by Parquet path ("a, b" for struct a's field b; "l, list, element"; "m, key_value, key"). */
export function leafColumns(struct: StructType): Map<string, Leaf> {
  const leaves = new Map<string, Leaf>();
  const visit = (type: IcebergType, id: number, path: string[], repeated: boolean) => {
    if (typeof type === 'string') {
      leaves.set(path.join(', '), { id, type, repeated });
    } else if (type.type === 'struct') {
      for (const field of type.fields) visit(field.type, field.id, [...path, field.name], repeated);
    } else if (type.type === 'list') {
      visit(type.element, type['element-id'], [...path, 'list', 'element'], true);
    } else {
      visit(type.key, type['key-id'], [...path, 'key_value', 'key'], true);
      visit(type.value, type['value-id'], [...path, 'key_value', 'value'], true);
    }
  };
  for (const field of struct.fields) visit(field.type, field.id, [field.name], false);
  return leaves;
}

interface ColumnChunkRow {
  path_in_schema: string;
  num_values: bigint | null;
  stats_null_count: bigint | null;
  stats_min_value: string | null;
  stats_max_value: string | null;
  total_compressed_size: bigint | null;
}

export async function readFileMetrics(
  connection: DuckDBConnection,
  localPath: string,
  schema: StructType,
): Promise<FileMetrics> {
  const leaves = leafColumns(schema);
  const file = quoteLiteral(localPath);
  const count = await connection.runAndReadAll(`select num_rows from parquet_file_metadata(${file})`);
  const recordCount = Number(count.getRows()[0]?.[0] ?? 0);
  const reader = await connection.runAndReadAll(
    `select path_in_schema, num_values, stats_null_count, stats_min_value, stats_max_value, total_compressed_size
       from parquet_metadata(${file}) order by row_group_id`,
  );
  const metrics: FileMetrics = {
    recordCount,
    columnSizes: new Map(),
    valueCounts: new Map(),
    nullValueCounts: new Map(),
    lowerBounds: new Map(),
    upperBounds: new Map(),
  };
  const minima = new Map<number, IcebergValue | undefined>();
  const maxima = new Map<number, IcebergValue | undefined>();
  for (const row of reader.getRowObjects() as unknown as ColumnChunkRow[]) {
    const leaf = leaves.get(row.path_in_schema);
    if (!leaf) continue;
    add(metrics.columnSizes, leaf.id, Number(row.total_compressed_size ?? 0));
    add(metrics.valueCounts, leaf.id, Number(row.num_values ?? 0));
    if (row.stats_null_count !== null) add(metrics.nullValueCounts, leaf.id, Number(row.stats_null_count));
    if (leaf.repeated) continue;
    mergeBound(minima, leaf, row.stats_min_value, -1);
    mergeBound(maxima, leaf, row.stats_max_value, 1);
  }
  for (const [id, leafValue] of minima) {
    const leaf = [...leaves.values()].find((l) => l.id === id);
    if (!leaf || leafValue === undefined || leafValue === null) continue;
    const bound = truncateLowerBound(leaf.type, leafValue);
    if (bound !== undefined) metrics.lowerBounds.set(id, toBinary(leaf.type, bound));
  }
  for (const [id, leafValue] of maxima) {
    const leaf = [...leaves.values()].find((l) => l.id === id);
    if (!leaf || leafValue === undefined || leafValue === null) continue;
    const bound = truncateUpperBound(leaf.type, leafValue);
    if (bound !== undefined) metrics.upperBounds.set(id, toBinary(leaf.type, bound));
  }
  return metrics;
}

function add(map: Map<number, number>, id: number, value: number): void {
  map.set(id, (map.get(id) ?? 0) + value);
}

/**
 * Folds one row group's statistic into the running bound. A row group without a readable statistic
 * (while it has values) makes the bound unknown for the whole file: `undefined` is sticky.
 */
function mergeBound(
  bounds: Map<number, IcebergValue | undefined>,
  leaf: Leaf,
  text: string | null,
  direction: -1 | 1,
): void {
  if (bounds.has(leaf.id) && bounds.get(leaf.id) === undefined) return;
  const value = text === null ? undefined : parseStatistic(leaf.type, text);
  if (value === undefined) {
    bounds.set(leaf.id, undefined);
    return;
  }
  const current = bounds.get(leaf.id);
  if (current === undefined || compareStatistic(value, current) * direction > 0) bounds.set(leaf.id, value);
}

function compareStatistic(a: IcebergValue, b: IcebergValue): number {
  if (typeof a === 'string' && typeof b === 'string') return compareUtf8(a, b);
  if (a instanceof Uint8Array && b instanceof Uint8Array) return Buffer.compare(a, b);
  return a! < b! ? -1 : a! > b! ? 1 : 0;
}

/** Iceberg orders strings by their UTF-8 bytes (code points), not by UTF-16 units as JavaScript does. */
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

const TIMESTAMP =
  /^(-?\d{4,})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([+-])(\d{2})(?::?(\d{2}))?)?$/;

/** DuckDB renders Parquet statistics as text; this reads them back as Iceberg values, or undefined. */
export function parseStatistic(type: PrimitiveType, text: string): IcebergValue | undefined {
  switch (type) {
    case 'boolean':
      return text === 'true' ? true : text === 'false' ? false : undefined;
    case 'int':
      return /^-?\d+$/.test(text) ? Number(text) : undefined;
    case 'long':
      return /^-?\d+$/.test(text) ? BigInt(text) : undefined;
    case 'float':
    case 'double': {
      const value = Number(text);
      return Number.isFinite(value) || text === 'inf' || text === '-inf'
        ? Number.isNaN(value)
          ? undefined
          : value
        : undefined;
    }
    case 'date': {
      const match = /^(-?\d{4,})-(\d{2})-(\d{2})$/.exec(text);
      return match
        ? Math.round(Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3])) / 86_400_000)
        : undefined;
    }
    case 'time': {
      const match = /^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$/.exec(text);
      if (!match) return undefined;
      const seconds = Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3]);
      return BigInt(seconds) * 1_000_000n + BigInt((match[4] ?? '').padEnd(6, '0'));
    }
    case 'timestamp':
    case 'timestamptz': {
      const match = TIMESTAMP.exec(text);
      if (!match) return undefined;
      const [, y, mo, d, h, mi, s, fraction, sign, offsetHours, offsetMinutes] = match;
      const date = new Date(0);
      date.setUTCFullYear(Number(y), Number(mo) - 1, Number(d));
      date.setUTCHours(Number(h), Number(mi), Number(s), 0);
      let micros = BigInt(date.getTime()) * 1000n + BigInt((fraction ?? '').slice(0, 6).padEnd(6, '0'));
      if ((fraction ?? '').length > 6) return undefined; // nanoseconds: not an Iceberg v2 type
      if (sign) {
        const offset = (Number(offsetHours) * 60 + Number(offsetMinutes ?? 0)) * 60_000_000;
        micros += BigInt(sign === '+' ? -offset : offset);
      }
      return micros;
    }
    case 'string':
      return text;
    case 'uuid':
      return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(text)
        ? text.toLowerCase()
        : undefined;
    case 'binary':
      return undefined; // DuckDB renders binary statistics lossily
    default: {
      const decimal = decimalParts(type);
      if (!decimal) return undefined;
      const match = /^(-?)(\d*)(?:\.(\d*))?$/.exec(text);
      if (!match) return undefined;
      const fraction = (match[3] ?? '').padEnd(decimal.scale, '0');
      if (fraction.length > decimal.scale) return undefined;
      const unscaled = BigInt(`${match[2] || '0'}${fraction}`);
      return match[1] === '-' ? -unscaled : unscaled;
    }
  }
}
