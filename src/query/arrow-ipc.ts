/**
 * Query results as an Apache Arrow IPC stream (`application/vnd.apache.arrow.stream`): a Schema message, one
 * RecordBatch, and the end-of-stream marker (Arrow columnar format 1.0, metadata version V5, little endian,
 * no compression, no dictionaries). Written straight from DuckDB's values, so nothing goes through text.
 *
 * DuckDB type → Arrow type (as DuckDB's own Arrow export maps them, by default):
 *   BOOLEAN → bool; TINYINT…BIGINT → int8…int64; UTINYINT…UBIGINT → uint8…uint64; FLOAT, DOUBLE → float32,
 *   float64; DECIMAL(p, s) → decimal128(p, s); HUGEINT, UHUGEINT → decimal128(38, 0); DATE → date32;
 *   TIME → time64[us]; TIME_NS → time64[ns]; TIMESTAMP → timestamp[us]; TIMESTAMP_S/_MS/_NS → timestamp[s/ms/ns];
 *   TIMESTAMPTZ → timestamp[us, UTC]; INTERVAL → month_day_nano_interval; VARCHAR (and JSON), ENUM, UUID →
 *   utf8; BLOB → binary; LIST → list; ARRAY → fixed_size_list; STRUCT → struct; MAP → map; a NULL literal →
 *   null. Anything else (BIT, TIMETZ, UNION, BIGNUM, VARIANT, GEOMETRY) → utf8 of DuckDB's text for it.
 */
import {
  DuckDBArrayValue,
  DuckDBBlobValue,
  DuckDBDateValue,
  DuckDBDecimalValue,
  DuckDBIntervalValue,
  DuckDBListValue,
  DuckDBMapValue,
  DuckDBStructValue,
  DuckDBTimeNSValue,
  DuckDBTimestampMillisecondsValue,
  DuckDBTimestampNanosecondsValue,
  DuckDBTimestampSecondsValue,
  DuckDBTimestampTZValue,
  DuckDBTimestampValue,
  DuckDBTimeValue,
  DuckDBTypeId,
  type DuckDBType,
  type DuckDBValue,
} from '@duckdb/node-api';
import { TributaryError } from '../errors.ts';
import { fb, finish, type FbNode } from './flatbuffers.ts';

export const ARROW_STREAM_TYPE = 'application/vnd.apache.arrow.stream';

type TimeUnit = 0 | 1 | 2 | 3; // SECOND, MILLISECOND, MICROSECOND, NANOSECOND

type ArrowType =
  | { readonly id: 'null' | 'bool' | 'utf8' | 'binary' | 'date' | 'interval' | 'list' | 'struct' | 'map' }
  | { readonly id: 'int'; readonly bits: 8 | 16 | 32 | 64; readonly signed: boolean }
  | { readonly id: 'float'; readonly bits: 32 | 64 }
  | { readonly id: 'decimal'; readonly precision: number; readonly scale: number }
  | { readonly id: 'time'; readonly unit: TimeUnit }
  | { readonly id: 'timestamp'; readonly unit: TimeUnit; readonly timezone?: string }
  | { readonly id: 'fixed_list'; readonly size: number };

interface ArrowField {
  readonly name: string;
  readonly nullable: boolean;
  readonly type: ArrowType;
  readonly children: readonly ArrowField[];
  /** The DuckDB type, to read values by. */
  readonly duckdb: DuckDBType;
}

function field(name: string, duckdb: DuckDBType, nullable = true): ArrowField {
  const leaf = (type: ArrowType): ArrowField => ({ name, nullable, type, children: [], duckdb });
  switch (duckdb.typeId) {
    case DuckDBTypeId.SQLNULL:
      return leaf({ id: 'null' });
    case DuckDBTypeId.BOOLEAN:
      return leaf({ id: 'bool' });
    case DuckDBTypeId.TINYINT:
      return leaf({ id: 'int', bits: 8, signed: true });
    case DuckDBTypeId.SMALLINT:
      return leaf({ id: 'int', bits: 16, signed: true });
    case DuckDBTypeId.INTEGER:
      return leaf({ id: 'int', bits: 32, signed: true });
    case DuckDBTypeId.BIGINT:
      return leaf({ id: 'int', bits: 64, signed: true });
    case DuckDBTypeId.UTINYINT:
      return leaf({ id: 'int', bits: 8, signed: false });
    case DuckDBTypeId.USMALLINT:
      return leaf({ id: 'int', bits: 16, signed: false });
    case DuckDBTypeId.UINTEGER:
      return leaf({ id: 'int', bits: 32, signed: false });
    case DuckDBTypeId.UBIGINT:
      return leaf({ id: 'int', bits: 64, signed: false });
    case DuckDBTypeId.FLOAT:
      return leaf({ id: 'float', bits: 32 });
    case DuckDBTypeId.DOUBLE:
      return leaf({ id: 'float', bits: 64 });
    case DuckDBTypeId.DECIMAL: {
      return leaf({ id: 'decimal', precision: duckdb.width, scale: duckdb.scale });
    }
    case DuckDBTypeId.HUGEINT:
    case DuckDBTypeId.UHUGEINT:
      return leaf({ id: 'decimal', precision: 38, scale: 0 });
    case DuckDBTypeId.DATE:
      return leaf({ id: 'date' });
    case DuckDBTypeId.TIME:
      return leaf({ id: 'time', unit: 2 });
    case DuckDBTypeId.TIME_NS:
      return leaf({ id: 'time', unit: 3 });
    case DuckDBTypeId.TIMESTAMP:
      return leaf({ id: 'timestamp', unit: 2 });
    case DuckDBTypeId.TIMESTAMP_S:
      return leaf({ id: 'timestamp', unit: 0 });
    case DuckDBTypeId.TIMESTAMP_MS:
      return leaf({ id: 'timestamp', unit: 1 });
    case DuckDBTypeId.TIMESTAMP_NS:
      return leaf({ id: 'timestamp', unit: 3 });
    case DuckDBTypeId.TIMESTAMP_TZ:
      // The engine's TimeZone is UTC, and DuckDB keeps instants: the values are UTC microseconds.
      return leaf({ id: 'timestamp', unit: 2, timezone: 'UTC' });
    case DuckDBTypeId.INTERVAL:
      return leaf({ id: 'interval' });
    case DuckDBTypeId.BLOB:
      return leaf({ id: 'binary' });
    case DuckDBTypeId.LIST:
      return {
        name,
        nullable,
        type: { id: 'list' },
        children: [field('item', duckdb.valueType)],
        duckdb,
      };
    case DuckDBTypeId.ARRAY: {
      const array = duckdb;
      return {
        name,
        nullable,
        type: { id: 'fixed_list', size: array.length },
        children: [field('item', array.valueType)],
        duckdb,
      };
    }
    case DuckDBTypeId.STRUCT: {
      const struct = duckdb;
      return {
        name,
        nullable,
        type: { id: 'struct' },
        children: struct.entryNames.map((entry, i) => field(entry, struct.entryTypes[i]!)),
        duckdb,
      };
    }
    case DuckDBTypeId.MAP: {
      const map = duckdb;
      const entries: ArrowField = {
        name: 'entries',
        nullable: false,
        type: { id: 'struct' },
        children: [field('key', map.keyType, false), field('value', map.valueType)],
        duckdb,
      };
      return { name, nullable, type: { id: 'map' }, children: [entries], duckdb };
    }
    default:
      return leaf({ id: 'utf8' }); // VARCHAR, ENUM, UUID, and DuckDB's text for the rest
  }
}

// Arrow's Type union (Schema.fbs).
const TYPE_ID = {
  null: 1,
  int: 2,
  float: 3,
  binary: 4,
  utf8: 5,
  bool: 6,
  decimal: 7,
  date: 8,
  time: 9,
  timestamp: 10,
  interval: 11,
  list: 12,
  struct: 13,
  fixed_list: 16,
  map: 17,
} as const;

function typeTable(type: ArrowType): FbNode {
  switch (type.id) {
    case 'int':
      return fb.table(fb.i32(type.bits), fb.bool(type.signed));
    case 'float':
      return fb.table(fb.i16(type.bits === 32 ? 1 : 2));
    case 'decimal':
      return fb.table(fb.i32(type.precision), fb.i32(type.scale), fb.i32(128));
    case 'date':
      return fb.table(fb.i16(0)); // DAY
    case 'time':
      return fb.table(fb.i16(type.unit), fb.i32(64));
    case 'timestamp':
      return fb.table(fb.i16(type.unit), type.timezone === undefined ? undefined : fb.string(type.timezone));
    case 'interval':
      return fb.table(fb.i16(2)); // MONTH_DAY_NANO
    case 'fixed_list':
      return fb.table(fb.i32(type.size));
    case 'map':
      return fb.table(fb.bool(false)); // keysSorted
    default:
      return fb.table();
  }
}

function fieldTable(f: ArrowField): FbNode {
  return fb.table(
    fb.string(f.name),
    fb.bool(f.nullable),
    fb.u8(TYPE_ID[f.type.id]),
    typeTable(f.type),
    undefined, // dictionary
    fb.vector(f.children.map(fieldTable)), // readers insist on the vector, even empty
  );
}

const METADATA_V5 = 4;
const HEADER_SCHEMA = 1;
const HEADER_RECORD_BATCH = 3;

function message(headerType: number, header: FbNode, bodyLength: number): Uint8Array {
  return finish(fb.table(fb.i16(METADATA_V5), fb.u8(headerType), header, fb.i64(bodyLength)));
}

/** A body under construction: buffers padded to 8 bytes, and the field nodes. */
class Body {
  readonly nodes: Array<[number, number]> = [];
  readonly buffers: Uint8Array[] = [];

  node(length: number, nullCount: number): void {
    this.nodes.push([length, nullCount]);
  }

  buffer(bytes: Uint8Array): void {
    this.buffers.push(bytes);
  }
}

const padded = (n: number) => Math.ceil(n / 8) * 8;

function bitmap(flags: readonly boolean[]): Uint8Array {
  const bytes = new Uint8Array(Math.ceil(flags.length / 8));
  flags.forEach((on, i) => {
    if (on) bytes[i >> 3]! |= 1 << (i & 7);
  });
  return bytes;
}

/** The validity bitmap (empty when nothing is null, as the format allows) and the node. */
function validity(body: Body, values: readonly DuckDBValue[]): void {
  const valid = values.map((v) => v !== null && v !== undefined);
  const nulls = valid.filter((v) => !v).length;
  body.node(values.length, nulls);
  body.buffer(nulls ? bitmap(valid) : new Uint8Array(0));
}

function bytesOf(array: ArrayBufferView): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

function tooLarge(what: string): TributaryError {
  return new TributaryError(
    'INVALID_INPUT',
    `the result's ${what} are too large for one Arrow record batch`,
    {
      hint: 'ask for fewer rows (max_rows) or narrower columns, or use JSON or CSV',
    },
  );
}

function offsets(lengths: readonly number[]): Int32Array {
  const out = new Int32Array(lengths.length + 1);
  let total = 0;
  lengths.forEach((length, i) => {
    total += length;
    if (total > 0x7fffffff) throw tooLarge('values');
    out[i + 1] = total;
  });
  return out;
}

const UTF8 = new TextEncoder();

function bigintOf(value: DuckDBValue): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number') return BigInt(value);
  if (value instanceof DuckDBDecimalValue) return value.value;
  if (value instanceof DuckDBTimestampValue || value instanceof DuckDBTimestampTZValue) return value.micros;
  if (value instanceof DuckDBTimestampSecondsValue) return value.seconds;
  if (value instanceof DuckDBTimestampMillisecondsValue) return value.millis;
  if (value instanceof DuckDBTimestampNanosecondsValue) return value.nanos;
  if (value instanceof DuckDBTimeValue) return value.micros;
  if (value instanceof DuckDBTimeNSValue) return value.nanos;
  throw new TributaryError('INTERNAL', `cannot write ${String(value)} as an Arrow integer`);
}

const DECIMAL_LIMIT = 10n ** 38n;

function encode(body: Body, f: ArrowField, values: readonly DuckDBValue[]): void {
  const n = values.length;
  const type = f.type;
  switch (type.id) {
    case 'null':
      body.node(n, n); // the null type has no buffers
      return;
    case 'bool':
      validity(body, values);
      body.buffer(bitmap(values.map((v) => v === true)));
      return;
    case 'int':
    case 'float': {
      validity(body, values);
      let data: ArrayBufferView;
      if (type.id === 'float') {
        const floats = type.bits === 32 ? new Float32Array(n) : new Float64Array(n);
        values.forEach((v, i) => (floats[i] = v === null ? 0 : Number(v)));
        data = floats;
      } else if (type.bits === 64) {
        const ints = type.signed ? new BigInt64Array(n) : new BigUint64Array(n);
        values.forEach((v, i) => (ints[i] = v === null ? 0n : bigintOf(v)));
        data = ints;
      } else {
        const Array_ = {
          8: type.signed ? Int8Array : Uint8Array,
          16: type.signed ? Int16Array : Uint16Array,
          32: type.signed ? Int32Array : Uint32Array,
        }[type.bits];
        const ints = new Array_(n);
        values.forEach((v, i) => (ints[i] = v === null ? 0 : Number(v)));
        data = ints;
      }
      body.buffer(bytesOf(data));
      return;
    }
    case 'decimal': {
      validity(body, values);
      const words = new BigUint64Array(2 * n); // 128-bit two's complement, little endian
      values.forEach((v, i) => {
        if (v === null) return;
        const unscaled = bigintOf(v);
        if (unscaled >= DECIMAL_LIMIT || unscaled <= -DECIMAL_LIMIT)
          throw new TributaryError('INVALID_INPUT', `${unscaled} does not fit Arrow's decimal128(38, 0)`, {
            hint: 'cast the column to DOUBLE or VARCHAR in the query',
          });
        words[2 * i] = BigInt.asUintN(64, unscaled);
        words[2 * i + 1] = BigInt.asUintN(64, unscaled >> 64n);
      });
      body.buffer(bytesOf(words));
      return;
    }
    case 'date': {
      validity(body, values);
      const days = new Int32Array(n);
      values.forEach((v, i) => (days[i] = v instanceof DuckDBDateValue ? v.days : 0));
      body.buffer(bytesOf(days));
      return;
    }
    case 'time':
    case 'timestamp': {
      validity(body, values);
      const ticks = new BigInt64Array(n);
      values.forEach((v, i) => (ticks[i] = v === null ? 0n : bigintOf(v)));
      body.buffer(bytesOf(ticks));
      return;
    }
    case 'interval': {
      validity(body, values);
      const data = new DataView(new ArrayBuffer(16 * n));
      values.forEach((v, i) => {
        if (!(v instanceof DuckDBIntervalValue)) return;
        data.setInt32(16 * i, v.months, true);
        data.setInt32(16 * i + 4, v.days, true);
        data.setBigInt64(16 * i + 8, v.micros * 1000n, true);
      });
      body.buffer(bytesOf(data));
      return;
    }
    case 'utf8':
    case 'binary': {
      validity(body, values);
      const parts = values.map((v) => {
        if (v === null) return new Uint8Array(0);
        if (v instanceof DuckDBBlobValue) return v.bytes;
        return UTF8.encode(typeof v === 'string' ? v : String(v));
      });
      const ends = offsets(parts.map((p) => p.length));
      const data = new Uint8Array(ends[n]!);
      let at = 0;
      for (const part of parts) {
        data.set(part, at);
        at += part.length;
      }
      body.buffer(bytesOf(ends));
      body.buffer(data);
      return;
    }
    case 'list':
    case 'map': {
      validity(body, values);
      const items = values.map((v): readonly DuckDBValue[] => {
        if (v instanceof DuckDBListValue) return v.items;
        if (v instanceof DuckDBMapValue)
          return v.entries.map((e) => new DuckDBStructValue({ key: e.key, value: e.value }));
        return [];
      });
      body.buffer(bytesOf(offsets(items.map((i) => i.length))));
      const child = f.children[0]!;
      encode(body, child, items.flat());
      return;
    }
    case 'fixed_list': {
      validity(body, values);
      const child: DuckDBValue[] = [];
      for (const v of values) {
        // A null array still takes its slots in the child, as nulls.
        const items = v instanceof DuckDBArrayValue ? v.items : [];
        for (let i = 0; i < type.size; i++) child.push(items[i] ?? null);
      }
      encode(body, f.children[0]!, child);
      return;
    }
    case 'struct': {
      if (f.nullable) validity(body, values);
      else {
        body.node(n, 0);
        body.buffer(new Uint8Array(0));
      }
      for (const c of f.children) {
        encode(
          body,
          c,
          values.map((v) => (v instanceof DuckDBStructValue ? (v.entries[c.name] ?? null) : null)),
        );
      }
      return;
    }
  }
}

function frame(metadata: Uint8Array): Uint8Array[] {
  const prefix = new DataView(new ArrayBuffer(8));
  prefix.setUint32(0, 0xffffffff, true); // continuation marker
  prefix.setInt32(4, metadata.length, true); // metadata is already padded to 8
  return [new Uint8Array(prefix.buffer), metadata];
}

export interface ArrowColumns {
  readonly names: readonly string[];
  readonly types: readonly DuckDBType[];
  /** Values column by column, as DuckDB returns them (`reader.getColumns()`). */
  readonly columns: ReadonlyArray<readonly DuckDBValue[]>;
  readonly rowCount: number;
}

/** An Arrow IPC stream of the result: schema, one record batch, end of stream. */
export function toArrowStream(result: ArrowColumns): Uint8Array {
  const fields = result.names.map((name, i) => field(name, result.types[i]!));
  const schema = fb.table(fb.i16(0), fb.vector(fields.map(fieldTable))); // little endian
  const body = new Body();
  fields.forEach((f, i) => encode(body, f, result.columns[i] ?? []));

  const nodes = new DataView(new ArrayBuffer(16 * body.nodes.length));
  body.nodes.forEach(([length, nulls], i) => {
    nodes.setBigInt64(16 * i, BigInt(length), true);
    nodes.setBigInt64(16 * i + 8, BigInt(nulls), true);
  });
  const buffers = new DataView(new ArrayBuffer(16 * body.buffers.length));
  let offset = 0;
  body.buffers.forEach((buffer, i) => {
    buffers.setBigInt64(16 * i, BigInt(offset), true);
    buffers.setBigInt64(16 * i + 8, BigInt(buffer.length), true);
    offset += padded(buffer.length);
  });
  const batch = fb.table(
    fb.i64(result.rowCount),
    fb.structs(bytesOf(nodes), body.nodes.length),
    fb.structs(bytesOf(buffers), body.buffers.length),
  );

  const parts = [
    ...frame(message(HEADER_SCHEMA, schema, 0)),
    ...frame(message(HEADER_RECORD_BATCH, batch, offset)),
  ];
  for (const buffer of body.buffers) {
    parts.push(buffer);
    if (padded(buffer.length) > buffer.length)
      parts.push(new Uint8Array(padded(buffer.length) - buffer.length));
  }
  parts.push(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])); // end of stream
  const total = parts.reduce((sum, p) => sum + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
