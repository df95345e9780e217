/**
 * Shared by the Iceberg tests that compare engines: tables in a temporary SQLite catalog, and rows in one
 * canonical JSON form computed from the Iceberg schema on both sides (DuckDB values here, pyarrow values in
 * `PY_NORMALIZE`), so that a row set read by Tributary and one read by pyiceberg compare as sorted strings.
 *
 * Canonical values: ints and longs, times and timestamps (microseconds) as decimal strings; dates as days
 * since 1970; decimals as fixed-point strings; binary and fixed as hex; uuids in their 8-4-4-4-12 form;
 * floats as numbers (NaN and infinities as strings); structs as objects; lists as arrays; maps as
 * `{"__map__": [[key, value], …]}` with the pairs sorted.
 */
import type {
  DuckDBBlobValue,
  DuckDBDateValue,
  DuckDBDecimalValue,
  DuckDBListValue,
  DuckDBMapValue,
  DuckDBStructValue,
  DuckDBTimestampTZValue,
  DuckDBTimestampValue,
  DuckDBTimeValue,
} from '@duckdb/node-api';
import { type DuckDBValue } from '@duckdb/node-api';
import type { Catalog } from '../src/catalog/catalog.ts';
import { parseTableIdentifier } from '../src/catalog/identifier.ts';
import { openCatalog } from '../src/catalog/open.ts';
import type { Engine } from '../src/iceberg/duckdb.ts';
import { buildSpec, parsePartitionExpression } from '../src/iceberg/partition-spec.ts';
import { planFiles, planScan, scanSql, type ScanOptions } from '../src/iceberg/scan.ts';
import { assignFreshIds, parseSchemaJson } from '../src/iceberg/schema.ts';
import type { Table } from '../src/iceberg/table.ts';
import type { IcebergType } from '../src/iceberg/types.ts';

export function openTestCatalog(dir: string): Promise<Catalog> {
  return openCatalog({
    name: 'tributary',
    uri: `sqlite:${dir}/catalog.db`,
    warehouse: `${dir}/warehouse`,
    baseDir: dir,
    fsync: false,
  });
}

/** Creates `ns.name` from simple schema JSON fields and a partition expression. */
export async function createTable(
  catalog: Catalog,
  name: string,
  fields: readonly unknown[],
  options: { partition?: string; properties?: Record<string, string>; identifier?: string[] } = {},
): Promise<Table> {
  const identifier = parseTableIdentifier(name);
  await catalog.createNamespaceIfAbsent(identifier.namespace);
  const schema = assignFreshIds(
    parseSchemaJson({
      fields,
      ...(options.identifier ? { 'identifier-fields': options.identifier } : {}),
    }),
  );
  const { spec } = buildSpec(parsePartitionExpression(options.partition ?? '', schema), 0, 999);
  return catalog.createTable(identifier, { schema, spec, properties: options.properties });
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

function decimalText(unscaled: bigint, scale: number): string {
  const negative = unscaled < 0n;
  const digits = (negative ? -unscaled : unscaled).toString().padStart(scale + 1, '0');
  const text = scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
  return negative ? `-${text}` : text;
}

function sortPairs(pairs: Json[]): Json {
  return { __map__: pairs.sort((a, b) => compareText(JSON.stringify(a), JSON.stringify(b))) };
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A DuckDB value of an Iceberg type in canonical form. */
export function canonicalValue(type: IcebergType, value: DuckDBValue): Json {
  if (value === null || value === undefined) return null;
  if (typeof type === 'object') {
    if (type.type === 'struct') {
      const entries = (value as DuckDBStructValue).entries;
      return Object.fromEntries(
        type.fields.map((f) => [f.name, canonicalValue(f.type, entries[f.name] ?? null)]),
      );
    }
    if (type.type === 'list')
      return (value as DuckDBListValue).items.map((v) => canonicalValue(type.element, v));
    return sortPairs(
      (value as DuckDBMapValue).entries.map((e) => [
        canonicalValue(type.key, e.key),
        canonicalValue(type.value, e.value),
      ]),
    );
  }
  if (type === 'boolean' || type === 'string') return value as boolean | string;
  if (type === 'int' || type === 'long') return String(value);
  if (type === 'float' || type === 'double') {
    const n = Number(value);
    return Number.isFinite(n) ? n : String(n);
  }
  if (type === 'date') return (value as DuckDBDateValue).days;
  if (type === 'time') return String((value as DuckDBTimeValue).micros);
  if (type === 'timestamp' || type === 'timestamptz')
    return String((value as DuckDBTimestampValue | DuckDBTimestampTZValue).micros);
  if (type === 'uuid') return String(value);
  if (type === 'binary' || type.startsWith('fixed')) return hex((value as DuckDBBlobValue).bytes);
  if (type.startsWith('decimal')) {
    const decimal = value as DuckDBDecimalValue;
    return decimalText(decimal.value, decimal.scale);
  }
  throw new Error(`no canonical form for ${type}`);
}

/** Re-canonicalizes parsed JSON from Python: map pairs sorted as here, so both sides sort alike. */
export function recanonical(value: Json): Json {
  if (Array.isArray(value)) return value.map(recanonical);
  if (value !== null && typeof value === 'object') {
    if (Array.isArray(value.__map__)) return sortPairs(value.__map__.map(recanonical));
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, recanonical(v)]));
  }
  return value;
}

/** Rows (as canonical JSON lines, sorted) of a relation whose columns are the given schema's fields. */
export async function relationRows(
  engine: Engine,
  relation: string,
  fields: ReadonlyArray<{ readonly name: string; readonly type: IcebergType }>,
): Promise<string[]> {
  const reader = await engine.connection.runAndReadAll(`select * from ${relation}`);
  const names = reader.columnNames();
  return sortedLines(
    reader.getRows().map((row) =>
      Object.fromEntries(
        fields.map((f) => {
          const at = names.indexOf(f.name);
          if (at < 0) throw new Error(`relation has no column ${f.name}`);
          return [f.name, canonicalValue(f.type, row[at] ?? null)];
        }),
      ),
    ),
  );
}

/** Our scan of a table (current snapshot unless time travelling), as sorted canonical JSON lines. */
export async function tableRows(table: Table, engine: Engine, options: ScanOptions = {}): Promise<string[]> {
  const plan = await planScan(table.metadata, table.storage, options);
  return relationRows(engine, scanSql(plan, await table.files.readable(planFiles(plan))), plan.schema.fields);
}

export function sortedLines(rows: readonly Json[]): string[] {
  return rows.map((r) => JSON.stringify(recanonical(r))).sort(compareText);
}

/** Python: `norm_rows(schema, arrow_table)` gives the canonical rows of a pyarrow table read by pyiceberg. */
export const PY_NORMALIZE = `
import datetime as _dt, decimal as _dec, math as _math, uuid as _uuid
from pyiceberg import types as _t

_EPOCH = _dt.datetime(1970, 1, 1)
_EPOCH_TZ = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_US = _dt.timedelta(microseconds=1)

def norm(t, v):
    if v is None:
        return None
    if isinstance(t, _t.StructType):
        return {f.name: norm(f.field_type, v.get(f.name)) for f in t.fields}
    if isinstance(t, _t.ListType):
        return [norm(t.element_type, x) for x in v]
    if isinstance(t, _t.MapType):
        items = v.items() if isinstance(v, dict) else v
        return {"__map__": [[norm(t.key_type, k), norm(t.value_type, x)] for k, x in items]}
    if isinstance(t, (_t.BooleanType, _t.StringType)):
        return v
    if isinstance(t, (_t.IntegerType, _t.LongType)):
        return str(v)
    if isinstance(t, (_t.FloatType, _t.DoubleType)):
        return v if _math.isfinite(v) else ("NaN" if _math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))
    if isinstance(t, _t.DecimalType):
        return format(v, "f")
    if isinstance(t, _t.DateType):
        return (v - _dt.date(1970, 1, 1)).days
    if isinstance(t, _t.TimeType):
        return str(((v.hour * 60 + v.minute) * 60 + v.second) * 1000000 + v.microsecond)
    if isinstance(t, _t.TimestamptzType):
        return str((v - _EPOCH_TZ) // _US)
    if isinstance(t, _t.TimestampType):
        return str((v - _EPOCH) // _US)
    if isinstance(t, _t.UUIDType):
        return str(v if isinstance(v, _uuid.UUID) else _uuid.UUID(bytes=bytes(v)))
    if isinstance(t, (_t.BinaryType, _t.FixedType)):
        return bytes(v).hex()
    raise Exception("no canonical form for " + str(t))

def norm_rows(schema, arrow):
    return [{f.name: norm(f.field_type, row.get(f.name)) for f in schema.fields} for row in arrow.to_pylist()]
`;
