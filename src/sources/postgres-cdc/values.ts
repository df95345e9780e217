/**
 * PostgreSQL values, as text (what pgoutput and a text-format query send), into JSON values for change
 * records; and PostgreSQL column types into Iceberg types for table schemas.
 *
 * Both connections run with fixed output settings (DateStyle ISO, IntervalStyle iso_8601, TimeZone UTC,
 * bytea_output hex, extra_float_digits 3), so the text of a value is the same from the stream and from a
 * snapshot, and the same on every server.
 *
 * | PostgreSQL                     | JSON                                   | Iceberg                      |
 * | ------------------------------ | -------------------------------------- | ---------------------------- |
 * | int2, int4                     | number                                 | int                          |
 * | int8                           | number (BigInteger beyond ±2^53)       | long                         |
 * | numeric(p, s)                  | string, exact ("12.50")                | decimal(p, s); string if p>38 or unconstrained |
 * | float4, float8                 | number ("NaN", "Infinity" as strings)  | float, double                |
 * | bool                           | true / false                           | boolean                      |
 * | text, varchar, char, name      | string                                 | string                       |
 * | uuid                           | string                                 | uuid                         |
 * | bytea                          | string, hex: "\\xdeadbeef"             | string (hex text)            |
 * | date, time                     | "2026-11-23", "10:11:12.5"             | date, time                   |
 * | timestamp                      | "2026-11-23T10:11:12.5"                | timestamp                    |
 * | timestamptz                    | "2026-11-23T10:11:12.5Z" (UTC)         | timestamptz                  |
 * | interval                       | ISO 8601 duration, "P1DT2H"            | string                       |
 * | json, jsonb                    | string (the JSON text)                 | string                       |
 * | enum, other types              | string                                 | string                       |
 * | arrays of the above            | arrays (nested for more dimensions)    | list                         |
 *
 * An int8 beyond ±2^53 is a BigInteger (core/json.ts), which JSON.stringify writes as its digits: every
 * int8 reaches the record as an exact JSON integer, as PostgreSQL wrote it.
 */
import { exactInteger, type BigInteger } from '../../core/json.ts';
import type { RelationColumn } from './pgoutput.ts';

/** A value of a change record; JSON.stringify writes a BigInteger as its digits. */
export type JsonValue = string | number | BigInteger | boolean | null | JsonValue[];

/** Settings both the replication and the query connection use, so values print the same way. */
export const SESSION_SETTINGS: Readonly<Record<string, string>> = {
  DateStyle: 'ISO, YMD',
  IntervalStyle: 'iso_8601',
  TimeZone: 'UTC',
  bytea_output: 'hex',
  extra_float_digits: '3',
  client_encoding: 'UTF8',
};

export function sessionOptions(): string {
  return Object.entries(SESSION_SETTINGS)
    .map(([k, v]) => `-c ${k}=${v.replace(/ /g, '\\ ')}`)
    .join(' ');
}

type Scalar =
  | 'bool'
  | 'int'
  | 'int8'
  | 'float'
  | 'numeric'
  | 'string'
  | 'timestamp'
  | 'timestamptz'
  | 'date'
  | 'time'
  | 'uuid'
  | 'bytea'
  | 'json'
  | 'interval'
  | 'float4'
  | 'int2';

export type PgType =
  | { readonly kind: 'scalar'; readonly scalar: Scalar; readonly name: string }
  | { readonly kind: 'array'; readonly element: PgType; readonly delimiter: string; readonly name: string };

const BUILTIN_SCALARS: ReadonlyMap<number, [Scalar, string]> = new Map([
  [16, ['bool', 'bool']],
  [17, ['bytea', 'bytea']],
  [18, ['string', 'char']],
  [19, ['string', 'name']],
  [20, ['int8', 'int8']],
  [21, ['int2', 'int2']],
  [23, ['int', 'int4']],
  [25, ['string', 'text']],
  [26, ['int8', 'oid']],
  [114, ['json', 'json']],
  [700, ['float4', 'float4']],
  [701, ['float', 'float8']],
  [1042, ['string', 'bpchar']],
  [1043, ['string', 'varchar']],
  [1082, ['date', 'date']],
  [1083, ['time', 'time']],
  [1114, ['timestamp', 'timestamp']],
  [1184, ['timestamptz', 'timestamptz']],
  [1186, ['interval', 'interval']],
  [1700, ['numeric', 'numeric']],
  [2950, ['uuid', 'uuid']],
  [3802, ['json', 'jsonb']],
]);

/** Array type oid → element type oid, for the built-in arrays. */
const BUILTIN_ARRAYS: ReadonlyMap<number, number> = new Map([
  [1000, 16],
  [1001, 17],
  [1002, 18],
  [1003, 19],
  [1016, 20],
  [1005, 21],
  [1007, 23],
  [1009, 25],
  [1028, 26],
  [199, 114],
  [1021, 700],
  [1022, 701],
  [1014, 1042],
  [1015, 1043],
  [1182, 1082],
  [1183, 1083],
  [1115, 1114],
  [1185, 1184],
  [1187, 1186],
  [1231, 1700],
  [2951, 2950],
  [3807, 3802],
]);

/** What the catalog says about a type that is not built in (see `TYPE_QUERY`). */
export interface TypeRow {
  readonly oid: number;
  readonly name: string;
  /** b base, e enum, d domain, c composite, r range… */
  readonly typtype: string;
  readonly element: number;
  readonly base: number;
  readonly delimiter: string;
}

/** Looks up types by oid: `$1` is an int array of oids. */
export const TYPE_QUERY = `select t.oid::int as oid, format_type(t.oid, null) as name, t.typtype::text as typtype,
  t.typelem::int as element, t.typbasetype::int as base, t.typdelim::text as delimiter
  from pg_type t where t.oid = any($1::oid[])`;

export function builtinType(oid: number): PgType | undefined {
  const scalar = BUILTIN_SCALARS.get(oid);
  if (scalar) return { kind: 'scalar', scalar: scalar[0], name: scalar[1] };
  const element = BUILTIN_ARRAYS.get(oid);
  if (element !== undefined) {
    const inner = builtinType(element)!;
    // box is the only built-in type whose arrays are delimited by ';'; not mapped here.
    return { kind: 'array', element: inner, delimiter: ',', name: `${inner.name}[]` };
  }
  return undefined;
}

/**
 * Resolves type oids to converters: built-ins directly, the rest (enums, domains, arrays of them) from
 * catalog rows fetched by the caller with `TYPE_QUERY`.
 */
export class TypeRegistry {
  readonly #types = new Map<number, PgType>();
  readonly #rows = new Map<number, TypeRow>();

  /** Oids among `oids` that need a catalog lookup (including array elements and domain bases). */
  missing(oids: Iterable<number>): number[] {
    const out = new Set<number>();
    for (const oid of oids) if (!builtinType(oid) && !this.#rows.has(oid)) out.add(oid);
    return [...out];
  }

  addRows(rows: readonly TypeRow[]): void {
    for (const row of rows) this.#rows.set(row.oid, row);
  }

  /** Oids the given rows refer to that are still unknown (domain bases, array elements). */
  unresolvedReferences(): number[] {
    const out = new Set<number>();
    for (const row of this.#rows.values()) {
      for (const ref of [row.element, row.base])
        if (ref && !builtinType(ref) && !this.#rows.has(ref)) out.add(ref);
    }
    return [...out];
  }

  get(oid: number): PgType {
    const cached = this.#types.get(oid);
    if (cached) return cached;
    const type = this.#resolve(oid, 0);
    this.#types.set(oid, type);
    return type;
  }

  #resolve(oid: number, depth: number): PgType {
    const builtin = builtinType(oid);
    if (builtin) return builtin;
    const row = this.#rows.get(oid);
    if (!row || depth > 8) return { kind: 'scalar', scalar: 'string', name: row?.name ?? `oid ${oid}` };
    if (row.typtype === 'd' && row.base) {
      const base = this.#resolve(row.base, depth + 1);
      return { ...base, name: row.name };
    }
    if (row.element && row.typtype === 'b') {
      return {
        kind: 'array',
        element: this.#resolve(row.element, depth + 1),
        delimiter: row.delimiter || ',',
        name: row.name,
      };
    }
    return { kind: 'scalar', scalar: 'string', name: row.name };
  }
}

const SPECIAL_FLOATS = new Set(['NaN', 'Infinity', '-Infinity']);

/** One value's text as JSON, by type. */
export function convertValue(type: PgType, text: string): JsonValue {
  if (type.kind === 'array') return parseArray(text, type.delimiter, (t) => convertValue(type.element, t));
  switch (type.scalar) {
    case 'bool':
      return text === 't';
    case 'int':
    case 'int2':
      return Number(text);
    case 'int8': {
      const n = Number(text);
      return Number.isSafeInteger(n) ? n : exactInteger(BigInt(text));
    }
    case 'float':
    case 'float4':
      return SPECIAL_FLOATS.has(text) ? text : Number(text);
    case 'date':
      return withoutEra(text, (date) => date);
    case 'timestamp':
      return withoutEra(text, (t) =>
        t.length >= 19 && t[10] === ' ' ? `${t.slice(0, 10)}T${t.slice(11)}` : t,
      );
    case 'timestamptz':
      return withoutEra(text, isoTimestamptz);
    default:
      return text;
  }
}

/**
 * A date or timestamp `convert`ed, with PostgreSQL's " BC" as ISO 8601's astronomical year instead
 * ("0044-03-15 BC" → "-0043-03-15": 1 BC is year 0), which DuckDB and Iceberg read; cast as it was written,
 * DuckDB dropped the era and made it 44 AD.
 */
function withoutEra(text: string, convert: (text: string) => string): string {
  if (!text.endsWith(' BC')) return convert(text);
  const iso = convert(text.slice(0, -3));
  const digits = /^\d+/.exec(iso)?.[0] ?? '';
  const year = Number(digits) - 1;
  return `${year === 0 ? '0000' : `-${String(year).padStart(4, '0')}`}${iso.slice(digits.length)}`;
}

/** "2026-11-23 10:11:12.5+00" → "2026-11-23T10:11:12.5Z"; other offsets become ±hh:mm. */
function isoTimestamptz(text: string): string {
  if (text.length < 22 || text[10] !== ' ') return text; // infinity: as PostgreSQL wrote it
  const body = `${text.slice(0, 10)}T${text.slice(11)}`;
  const zone = /([+-])(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?$/.exec(body);
  if (!zone) return body;
  const head = body.slice(0, zone.index);
  if (zone[2] === '00' && (zone[3] ?? '00') === '00' && (zone[4] ?? '00') === '00') return `${head}Z`;
  return `${head}${zone[1]}${zone[2]}:${zone[3] ?? '00'}`;
}

/**
 * PostgreSQL's array text, `{1,2,NULL,"a \"b\""}` or `{{1,2},{3,4}}` (with an optional `[1:2]=` bounds
 * prefix), into nested arrays; each element's text converted by `element`.
 */
export function parseArray(text: string, delimiter: string, element: (text: string) => JsonValue): JsonValue {
  let i = 0;
  if (text[0] === '[') {
    const eq = text.indexOf('=');
    if (eq > 0) i = eq + 1;
  }
  const parse = (): JsonValue[] => {
    if (text[i] !== '{') throw new Error(`not an array: ${text}`);
    i++;
    const out: JsonValue[] = [];
    if (text[i] === '}') {
      i++;
      return out;
    }
    for (;;) {
      if (text[i] === '{') out.push(parse());
      else if (text[i] === '"') {
        i++;
        let value = '';
        while (i < text.length && text[i] !== '"') {
          if (text[i] === '\\') i++;
          value += text[i];
          i++;
        }
        i++;
        out.push(element(value));
      } else {
        let end = i;
        while (end < text.length && text[end] !== delimiter && text[end] !== '}') end++;
        const raw = text.slice(i, end).trim();
        i = end;
        out.push(raw === 'NULL' ? null : element(raw));
      }
      if (text[i] === delimiter) {
        i++;
        continue;
      }
      if (text[i] === '}') {
        i++;
        return out;
      }
      throw new Error(`malformed array: ${text}`);
    }
  };
  return parse();
}

/** The row's values as a JSON object, by column; unchanged TOASTed values (undefined) are left out. */
export function rowObject(
  columns: readonly RelationColumn[],
  types: readonly PgType[],
  values: ReadonlyArray<string | null | undefined>,
): Record<string, JsonValue> {
  const row: Record<string, JsonValue> = {};
  for (let i = 0; i < columns.length; i++) {
    const value = values[i];
    if (value === undefined) continue;
    row[columns[i]!.name] = value === null ? null : convertValue(types[i]!, value);
  }
  return row;
}

/** Precision and scale of numeric(p, s) from its type modifier; undefined when unconstrained. */
export function numericPrecision(typeMod: number): { precision: number; scale: number } | undefined {
  if (typeMod < 4) return undefined;
  const mod = typeMod - 4;
  return { precision: (mod >> 16) & 0xffff, scale: mod & 0xffff };
}

export type IcebergTypeJson = string | { type: 'list'; element: IcebergTypeJson; 'element-required': false };

/** The Iceberg type (docs/tables.md schema-file notation) a column of this PostgreSQL type maps to. */
export function icebergTypeOf(type: PgType, typeMod: number): IcebergTypeJson {
  if (type.kind === 'array')
    return { type: 'list', element: icebergTypeOf(type.element, -1), 'element-required': false };
  switch (type.scalar) {
    case 'bool':
      return 'boolean';
    case 'int':
    case 'int2':
      return 'int';
    case 'int8':
      return 'long';
    case 'float4':
      return 'float';
    case 'float':
      return 'double';
    case 'numeric': {
      const p = numericPrecision(typeMod);
      return p && p.precision <= 38 && p.scale <= p.precision
        ? `decimal(${p.precision}, ${p.scale})`
        : 'string';
    }
    case 'date':
      return 'date';
    case 'time':
      return 'time';
    case 'timestamp':
      return 'timestamp';
    case 'timestamptz':
      return 'timestamptz';
    case 'uuid':
      return 'uuid';
    default:
      return 'string';
  }
}
