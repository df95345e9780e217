/**
 * Column metrics of a Parquet file for its manifest entry: value counts, null counts, sizes and
 * lower/upper bounds by Iceberg field id, read from the file's own statistics through DuckDB's
 * `parquet_metadata()` — no second pass over the data.
 *
 * Bounds are recorded only for primitive columns outside lists and maps, and only when the statistic
 * can be read exactly; strings and binary bounds are truncated to 16 characters or bytes as Iceberg's
 * default metrics mode does (the upper bound is then rounded up, so it is still an upper bound).
 */
import { TributaryError } from '../errors.ts';
import type { Storage } from '../storage/storage.ts';
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
  const file = quoteLiteral(localPath);
  const count = await connection.runAndReadAll(`select num_rows from parquet_file_metadata(${file})`);
  const recordCount = Number(count.getRows()[0]?.[0] ?? 0);
  const reader = await connection.runAndReadAll(
    `select path_in_schema, num_values, stats_null_count, stats_min_value, stats_max_value, total_compressed_size
       from parquet_metadata(${file}) order by row_group_id`,
  );
  const leaves = leafColumns(schema);
  const chunks: ColumnChunk[] = [];
  for (const row of reader.getRowObjects() as unknown as ColumnChunkRow[]) {
    const leaf = leaves.get(row.path_in_schema);
    if (!leaf) continue;
    chunks.push({
      leaf,
      size: Number(row.total_compressed_size ?? 0),
      values: Number(row.num_values ?? 0),
      nulls: row.stats_null_count === null ? undefined : Number(row.stats_null_count),
      min: row.stats_min_value,
      max: row.stats_max_value,
    });
  }
  return collectMetrics(recordCount, chunks);
}

/** One row group's statistics of one column (or a whole file's, from COPY … RETURN_STATS). */
interface ColumnChunk {
  readonly leaf: Leaf;
  readonly size: number;
  readonly values: number;
  readonly nulls: number | undefined;
  readonly min: string | null;
  readonly max: string | null;
}

function collectMetrics(recordCount: number, chunks: readonly ColumnChunk[]): FileMetrics {
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
  const byId = new Map<number, Leaf>();
  for (const chunk of chunks) {
    const { leaf } = chunk;
    byId.set(leaf.id, leaf);
    add(metrics.columnSizes, leaf.id, chunk.size);
    add(metrics.valueCounts, leaf.id, chunk.values);
    if (chunk.nulls !== undefined) add(metrics.nullValueCounts, leaf.id, chunk.nulls);
    // An all-null chunk has no statistics and needs none: it does not widen the bounds.
    if (leaf.repeated || (chunk.nulls !== undefined && chunk.nulls === chunk.values)) continue;
    mergeBound(minima, leaf, chunk.min, -1);
    mergeBound(maxima, leaf, chunk.max, 1);
  }
  for (const [id, value] of minima) {
    const leaf = byId.get(id);
    if (!leaf || value === undefined || value === null) continue;
    const bound = truncateLowerBound(leaf.type, value);
    if (bound !== undefined) metrics.lowerBounds.set(id, toBinary(leaf.type, bound));
  }
  for (const [id, value] of maxima) {
    const leaf = byId.get(id);
    if (!leaf || value === undefined || value === null) continue;
    const bound = truncateUpperBound(leaf.type, value);
    if (bound !== undefined) metrics.upperBounds.set(id, toBinary(leaf.type, bound));
  }
  return metrics;
}

/** A file written by `COPY … (RETURN_STATS true)`: DuckDB's own account of what it wrote. */
export interface CopiedFile {
  readonly filename: string;
  readonly count: number;
  readonly fileSizeBytes: number;
  /** Column key (`"a"."b"`, `"list"."element"`) → statistic name → value as text. */
  readonly columnStatistics: ReadonlyMap<string, ReadonlyMap<string, string>>;
  readonly partitionKeys: ReadonlyMap<string, string>;
}

/** The metrics of a file from the statistics COPY returned, without reading the file again. */
export function metricsFromCopy(file: CopiedFile, schema: StructType): FileMetrics {
  const chunks: ColumnChunk[] = [];
  for (const [path, leaf] of leafColumns(schema)) {
    // parquet_metadata's "l, list, element" is COPY's "l"."element"; "m, key_value, key" is "m"."key".
    const key = path
      .split(', ')
      .filter(
        (part, i, parts) =>
          !(part === 'list' && parts[i + 1] === 'element') &&
          !(part === 'key_value' && (parts[i + 1] === 'key' || parts[i + 1] === 'value')),
      )
      .map((part) => `"${part.replace(/"/g, '""')}"`)
      .join('.');
    const stats = file.columnStatistics.get(key);
    if (!stats) continue;
    chunks.push({
      leaf,
      size: Number(stats.get('column_size_bytes') ?? 0),
      values: Number(stats.get('num_values') ?? 0),
      nulls: stats.has('null_count') ? Number(stats.get('null_count')) : undefined,
      min: stats.get('min') ?? null,
      max: stats.get('max') ?? null,
    });
  }
  return collectMetrics(file.count, chunks);
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
      // parquet_metadata says true/false, COPY … RETURN_STATS says 1/0.
      return text === 'true' || text === '1' ? true : text === 'false' || text === '0' ? false : undefined;
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

/** A column of a Parquet file's schema: its name, Iceberg field id (none on list and map wrappers), children. */
export interface ParquetColumn {
  readonly name: string;
  readonly fieldId?: number;
  readonly children: readonly ParquetColumn[];
}

/**
 * The columns of a Parquet file, from the schema in its footer (Thrift compact protocol). Reads two ranges
 * of the file, not its data: what a scan needs to match nested fields by id in files that name them otherwise.
 */
export async function readParquetSchema(storage: Storage, location: string): Promise<ParquetColumn[]> {
  const invalid = (why: string) =>
    new TributaryError('ICEBERG_INVALID_FILE', `${location} is not a Parquet file: ${why}`, {
      context: { file: location },
    });
  const { size } = await storage.stat(location);
  if (size < 12) throw invalid('too short');
  const tail = await storage.readRange(location, size - 8, 8);
  if (new TextDecoder().decode(tail.subarray(4)) !== 'PAR1') throw invalid('no PAR1 magic at the end');
  const length = new DataView(tail.buffer, tail.byteOffset, 8).getUint32(0, true);
  if (length > size - 12) throw invalid('footer length out of range');
  const reader = new CompactReader(await storage.readRange(location, size - 8 - length, length), invalid);
  const elements: Array<{ name: string; fieldId?: number; numChildren: number }> = [];
  // FileMetaData field 2: the schema, a list of SchemaElement (4: name, 5: num_children, 9: field_id).
  reader.struct((id, type) => {
    if (id !== 2 || type !== LIST) return 'skip';
    const { size: count, type: elementType } = reader.listHeader();
    if (elementType !== STRUCT) throw invalid('schema elements are not structs');
    for (let i = 0; i < count; i++) {
      const element: { name: string; fieldId?: number; numChildren: number } = { name: '', numChildren: 0 };
      reader.struct((field, fieldType) => {
        if (field === 4 && fieldType === BINARY) element.name = reader.string();
        else if (field === 5 && fieldType === I32) element.numChildren = reader.zigzag();
        else if (field === 9 && fieldType === I32) element.fieldId = reader.zigzag();
        else return 'skip';
        return 'read';
      });
      elements.push(element);
    }
    return 'stop';
  });
  let next = 1;
  const children = (count: number): ParquetColumn[] =>
    Array.from({ length: count }, () => {
      const element = elements[next++];
      if (!element) throw invalid('the schema ends early');
      return {
        name: element.name,
        ...(element.fieldId === undefined ? {} : { fieldId: element.fieldId }),
        children: children(element.numChildren),
      };
    });
  return children(elements[0]?.numChildren ?? 0);
}

const BOOLEAN_TRUE = 1;
const BOOLEAN_FALSE = 2;
const I32 = 5;
const BINARY = 8;
const LIST = 9;
const STRUCT = 12;

/** Just enough of Thrift's compact protocol to walk a Parquet footer. */
class CompactReader {
  readonly #bytes: Uint8Array;
  readonly #invalid: (why: string) => Error;
  #at = 0;

  constructor(bytes: Uint8Array, invalid: (why: string) => Error) {
    this.#bytes = bytes;
    this.#invalid = invalid;
  }

  byte(): number {
    const value = this.#bytes[this.#at++];
    if (value === undefined) throw this.#invalid('the footer ends early');
    return value;
  }

  varint(): number {
    let result = 0;
    for (let shift = 0; ; shift += 7) {
      const b = this.byte();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
    }
  }

  zigzag(): number {
    const n = this.varint();
    return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
  }

  string(): string {
    const length = this.varint();
    const start = this.#at;
    this.#at += length;
    if (this.#at > this.#bytes.length) throw this.#invalid('the footer ends early');
    return new TextDecoder().decode(this.#bytes.subarray(start, this.#at));
  }

  listHeader(): { size: number; type: number } {
    const header = this.byte();
    const size = header >> 4;
    return { size: size === 15 ? this.varint() : size, type: header & 0x0f };
  }

  /** Walks a struct's fields; `field` reads the value itself ('read'), or has it skipped, or stops the walk. */
  struct(field: (id: number, type: number) => 'read' | 'skip' | 'stop'): void {
    let last = 0;
    for (;;) {
      const header = this.byte();
      if (header === 0) return;
      const type = header & 0x0f;
      const delta = header >> 4;
      last = delta === 0 ? this.zigzag() : last + delta;
      const action = field(last, type);
      if (action === 'stop') return;
      if (action === 'skip') this.#skip(type, false);
    }
  }

  #skip(type: number, inCollection: boolean): void {
    switch (type) {
      case BOOLEAN_TRUE:
      case BOOLEAN_FALSE:
        // A field's boolean is in its header; an element's takes a byte.
        if (inCollection) this.byte();
        return;
      case 3:
        this.byte();
        return;
      case 4:
      case I32:
      case 6:
        this.varint();
        return;
      case 7:
        this.#at += 8;
        return;
      case BINARY:
        this.#at += this.varint();
        return;
      case LIST:
      case 10: {
        const { size, type: element } = this.listHeader();
        for (let i = 0; i < size; i++) this.#skip(element, true);
        return;
      }
      case 11: {
        const size = this.varint();
        const types = size > 0 ? this.byte() : 0;
        for (let i = 0; i < size; i++) {
          this.#skip(types >> 4, true);
          this.#skip(types & 0x0f, true);
        }
        return;
      }
      case STRUCT:
        this.struct(() => 'skip');
        return;
      default:
        throw this.#invalid(`unknown Thrift type ${type}`);
    }
  }
}
