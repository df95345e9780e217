/**
 * An Iceberg struct type that holds a batch of JSON objects, for tables created from their first batch.
 * Integers are longs; an integer beyond int64 (a BigInteger, see core/json.ts) makes its column
 * decimal(38, 0), which holds 38 digits exactly (a larger one is refused by the sink, with its reason).
 *
 * Types the records declare (`DeclaredTypes`: the header of core/pipeline/column-types.ts, which the cdc
 * transform sets from PostgreSQL's types) win over those inferred from the values.
 */
import { fitsInt64, isBigInteger } from '../../core/json.ts';
import { COLUMN_TYPES_HEADER } from '../../core/pipeline/column-types.ts';
import type { PipelineRecord } from '../../core/pipeline/model.ts';
import { parseSchemaJson } from '../../iceberg/schema.ts';
import type { IcebergType, NestedField, StructType } from '../../iceberg/types.ts';

const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;

const WHOLE_DECIMAL = 'decimal(38, 0)';

type Shape =
  | 'long'
  | typeof WHOLE_DECIMAL
  | 'double'
  | 'boolean'
  | 'string'
  | 'timestamptz'
  | 'date'
  | { struct: Map<string, Shape | undefined> }
  | { list: Shape | undefined };

function shapeOf(value: unknown): Shape | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'boolean') return 'boolean';
  if (typeof value === 'number') return Number.isInteger(value) ? 'long' : 'double';
  if (isBigInteger(value)) return fitsInt64(value) ? 'long' : WHOLE_DECIMAL;
  if (typeof value === 'string') {
    // Event timestamps arrive as ISO 8601 text: a column whose every value is one becomes a real timestamp.
    if (ISO_TIMESTAMP.test(value)) return 'timestamptz';
    if (ISO_DATE.test(value)) return 'date';
    return 'string';
  }
  if (Array.isArray(value))
    return { list: value.reduce<Shape | undefined>((s, v) => merge(s, shapeOf(v)), undefined) };
  if (typeof value === 'object') {
    return {
      struct: new Map(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, shapeOf(v)])),
    };
  }
  return 'string';
}

/** Rank of the numeric shapes: two of them merge into the higher one. */
const NUMERIC: ReadonlyMap<Shape, number> = new Map<Shape, number>([
  ['long', 0],
  [WHOLE_DECIMAL, 1],
  ['double', 2],
]);

/**
 * The narrowest shape holding both: long and decimal(38, 0) make decimal (exact), either with double
 * makes double; anything else that conflicts, string.
 */
function merge(a: Shape | undefined, b: Shape | undefined): Shape | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  if (typeof a === 'string' && typeof b === 'string') {
    if (a === b) return a;
    const [rankA, rankB] = [NUMERIC.get(a), NUMERIC.get(b)];
    if (rankA === undefined || rankB === undefined) return 'string';
    return rankA > rankB ? a : b;
  }
  if (typeof a === 'object' && typeof b === 'object' && 'struct' in a && 'struct' in b) {
    const fields = new Map(a.struct);
    for (const [key, shape] of b.struct) fields.set(key, merge(fields.get(key), shape));
    return { struct: fields };
  }
  if (typeof a === 'object' && typeof b === 'object' && 'list' in a && 'list' in b)
    return { list: merge(a.list, b.list) };
  return 'string';
}

/** Field ids are placeholders (0): assign fresh ones (assignFreshIds) before using the type. */
function toType(shape: Shape | undefined): IcebergType {
  if (shape === undefined) return 'string';
  if (typeof shape === 'string') return shape;
  if ('list' in shape)
    return { type: 'list', 'element-id': 0, element: toType(shape.list), 'element-required': false };
  return {
    type: 'struct',
    fields: [...shape.struct].map(([name, s]): NestedField => ({
      id: 0,
      name,
      required: false,
      type: toType(s),
    })),
  };
}

export function inferStruct(values: Iterable<Record<string, unknown>>): StructType {
  let shape: Shape | undefined;
  for (const value of values) shape = merge(shape, shapeOf(value));
  const type = toType(shape);
  return typeof type === 'object' && type.type === 'struct' ? type : { type: 'struct', fields: [] };
}

/** The declared column types of records, each header text read once (a sink keeps one). */
export class DeclaredTypes {
  readonly #parsed = new Map<string, ReadonlyMap<string, IcebergType>>();

  /** The types the records declare, by field name; where two records differ, the later one's. */
  of(records: Iterable<PipelineRecord>): Map<string, IcebergType> {
    const out = new Map<string, IcebergType>();
    let last: string | undefined;
    for (const record of records) {
      const text = record.headers[COLUMN_TYPES_HEADER];
      if (text === undefined || text === last) continue;
      last = text;
      let parsed = this.#parsed.get(text);
      if (!parsed) this.#parsed.set(text, (parsed = parseDeclared(text)));
      for (const [name, type] of parsed) out.set(name, type);
    }
    return out;
  }
}

/** A header's types; one that is not JSON, or a type that is not an Iceberg type Tributary writes, is left out. */
function parseDeclared(text: string): ReadonlyMap<string, IcebergType> {
  const out = new Map<string, IcebergType>();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return out;
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return out;
  for (const [name, type] of Object.entries(json as Record<string, unknown>)) {
    try {
      const field = parseSchemaJson({ fields: [{ name, type, required: false }] }).fields[0]!;
      out.set(name, field.type);
    } catch {
      // inferred instead
    }
  }
  return out;
}

/** The struct with the declared types in place of the inferred ones of the fields it names. */
export function withDeclaredTypes(
  struct: StructType,
  declared: ReadonlyMap<string, IcebergType>,
): StructType {
  if (declared.size === 0) return struct;
  return {
    ...struct,
    fields: struct.fields.map((f) => {
      const type = declared.get(f.name);
      return type === undefined ? f : { ...f, type };
    }),
  };
}
