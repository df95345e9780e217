/**
 * Shared pieces of the Iceberg writer benchmarks: the 10-column event table (ours and pyiceberg's, the same
 * schema and `day(ts)` spec), the NDJSON generator, a pyiceberg runner, per-stage timing of our write path
 * (by wrapping the DuckDB connection, the storage and the catalog registry — no change to src/), and
 * percentiles.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Catalog } from '../../src/catalog/catalog.ts';
import { parseTableIdentifier } from '../../src/catalog/identifier.ts';
import { openCatalog } from '../../src/catalog/open.ts';
import type { Engine } from '../../src/iceberg/duckdb.ts';
import { buildSpec, parsePartitionExpression } from '../../src/iceberg/partition-spec.ts';
import { assignFreshIds, parseSchemaJson } from '../../src/iceberg/schema.ts';
import type { Table } from '../../src/iceberg/table.ts';
import { CACHE_ROOT, ensureService, runChecked } from '../../test/services/harness.ts';
import {
  pyiceberg,
  PYICEBERG_VERSION,
  runPython,
  type PyicebergInfo,
} from '../../test/services/pyiceberg.ts';

export const TABLE = 'bench.events';

/** The 10 columns: name, Iceberg type, pyiceberg type, pyarrow type. All optional, as pyarrow's fields are. */
export const COLUMNS = [
  { name: 'id', type: 'long', py: 'LongType()', arrow: 'pa.int64()' },
  { name: 'user_id', type: 'string', py: 'StringType()', arrow: 'pa.string()' },
  { name: 'ts', type: 'timestamptz', py: 'TimestamptzType()', arrow: "pa.timestamp('us', tz='UTC')" },
  { name: 'amount', type: 'double', py: 'DoubleType()', arrow: 'pa.float64()' },
  { name: 'quantity', type: 'int', py: 'IntegerType()', arrow: 'pa.int32()' },
  { name: 'is_member', type: 'boolean', py: 'BooleanType()', arrow: 'pa.bool_()' },
  { name: 'payload', type: 'string', py: 'StringType()', arrow: 'pa.string()' },
  { name: 'signup_date', type: 'date', py: 'DateType()', arrow: 'pa.date32()' },
  { name: 'price', type: 'decimal(12, 2)', py: 'DecimalType(12, 2)', arrow: 'pa.decimal128(12, 2)' },
  { name: 'country', type: 'string', py: 'StringType()', arrow: 'pa.string()' },
] as const;

export function benchSchema() {
  const schema = assignFreshIds(
    parseSchemaJson({ fields: COLUMNS.map((c) => ({ name: c.name, type: c.type })) }),
  );
  const { spec } = buildSpec(parsePartitionExpression('day(ts)', schema), 0, 999);
  return { schema, spec };
}

/** Opens (creating) a SQLite catalog in `dir` and creates bench.events, partitioned by day(ts). */
export async function createBenchTable(
  dir: string,
  options: { fsync: boolean },
): Promise<{ catalog: Catalog; table: Table }> {
  mkdirSync(dir, { recursive: true });
  const catalog = await openCatalog({
    name: 'bench',
    uri: `sqlite:${path.join(dir, 'catalog.db')}`,
    warehouse: path.join(dir, 'warehouse'),
    baseDir: dir,
    fsync: options.fsync,
  });
  const id = parseTableIdentifier(TABLE);
  await catalog.createNamespaceIfAbsent(id.namespace);
  const table = await catalog.createTable(id, benchSchema());
  return { catalog, table };
}

/**
 * The SQL of `rows` event rows starting at row `offset`, deterministic (hashes of the row number, no
 * randomness): ts spread over 30 days from 2025-06-01 (or `secondsApart` seconds apart from it, in order),
 * timestamps, dates and decimals as text as JSON carries them.
 */
export function eventRowsSql(rows: number, offset = 0, options: { secondsApart?: number } = {}): string {
  const ts =
    options.secondsApart === undefined
      ? `to_microseconds((hash(i * 7 + 1) % (30 * 86400000000))::bigint)`
      : `to_seconds(i * ${options.secondsApart})`;
  return `select
    i::bigint as id,
    'user-' || lpad((hash(i) % 100000)::varchar, 6, '0') as user_id,
    strftime(TIMESTAMP '2025-06-01' + ${ts}, '%Y-%m-%dT%H:%M:%S.%fZ') as ts,
    round((hash(i * 3) % 1000000) / 100.0, 2)::double as amount,
    (hash(i * 5) % 100)::int as quantity,
    hash(i * 11) % 2 = 0 as is_member,
    'payload-' || md5(i::varchar) as payload,
    strftime(DATE '2025-01-01' + (hash(i * 13) % 365)::int, '%Y-%m-%d') as signup_date,
    ((hash(i * 17) % 10000000) / 100)::decimal(12,2)::varchar as price,
    ['US','DE','FR','JP','BR','IN','GB','CA'][(hash(i * 19) % 8)::int + 1] as country
  from range(${offset}, ${offset + rows}) r(i)`;
}

export async function generateNdjson(engine: Engine, file: string, rows: number): Promise<void> {
  await engine.connection.run(`copy (${eventRowsSql(rows)}) to '${file}' (format json)`);
}

// ---------------------------------------------------------------------------------------------------
// pyiceberg

/** Python that opens a SqlCatalog on $DB / $WAREHOUSE and defines the same table (`create_events()`). */
export const PY_PRELUDE = `
import json, os, sys, time
import pyarrow as pa, pyarrow.json as pj, pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import *
from pyiceberg.partitioning import PartitionSpec, PartitionField
from pyiceberg.transforms import DayTransform
os.makedirs(os.path.dirname(os.environ["DB"]), exist_ok=True)
os.makedirs(os.environ["WAREHOUSE"], exist_ok=True)
catalog = SqlCatalog("bench", uri="sqlite:///" + os.environ["DB"], warehouse="file://" + os.environ["WAREHOUSE"])
ARROW = pa.schema([${COLUMNS.map((c) => `pa.field(${JSON.stringify(c.name)}, ${c.arrow})`).join(', ')}])
def create_events():
    catalog.create_namespace_if_not_exists("bench")
    schema = Schema(${COLUMNS.map((c, i) => `NestedField(${i + 1}, ${JSON.stringify(c.name)}, ${c.py}, required=False)`).join(', ')})
    spec = PartitionSpec(PartitionField(source_id=3, field_id=1000, transform=DayTransform(), name="ts_day"))
    return catalog.create_table("${TABLE}", schema=schema, partition_spec=spec)
`;

/**
 * pyiceberg writes to tables partitioned by a time transform only with its Rust extension, pyiceberg-core
 * (its `pyiceberg-core` extra), which the test service does not install. It goes in a directory of its own
 * (cached beside the service's venv, which stays untouched) put on PYTHONPATH for the benchmarks.
 */
async function ensurePyicebergCore(info: PyicebergInfo): Promise<string> {
  const target = path.join(CACHE_ROOT, `pyiceberg-core-for-${PYICEBERG_VERSION}`);
  const marker = path.join(target, '.installed');
  if (existsSync(marker)) return target;
  rmSync(target, { recursive: true, force: true });
  await runChecked(info.python, [
    '-m',
    'pip',
    'install',
    '-q',
    '--disable-pip-version-check',
    '--no-deps',
    '--target',
    target,
    'pyiceberg-core>=0.10.1,<0.11.0', // the range pyiceberg 0.12's extra asks for
  ]);
  writeFileSync(marker, '');
  return target;
}

/** Runs a script in pyiceberg 0.12's environment (installed on first use); returns its last line as JSON. */
export async function runPyiceberg<T>(script: string, env: Record<string, string>): Promise<T> {
  const info = await ensureService(pyiceberg, false);
  const core = await ensurePyicebergCore(info);
  const stdout = await runPython(info, `${PY_PRELUDE}\n${script}`, { ...env, PYTHONPATH: core });
  return JSON.parse(stdout.trim().split('\n').pop() ?? 'null') as T;
}

// ---------------------------------------------------------------------------------------------------
// Per-stage timing of our write path

/** Accumulated milliseconds by stage. */
export class Stages {
  readonly ms = new Map<string, number>();

  add(stage: string, ms: number): void {
    this.ms.set(stage, (this.ms.get(stage) ?? 0) + ms);
  }

  async time<T>(stage: string, work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await work();
    } finally {
      this.add(stage, performance.now() - started);
    }
  }

  total(): number {
    let sum = 0;
    for (const ms of this.ms.values()) sum += ms;
    return sum;
  }

  reset(): void {
    this.ms.clear();
  }

  /** Lines "stage  ms  share of `totalMs`", largest first, with the untimed rest as "JS (other)". */
  report(totalMs: number, divisor = 1): string[] {
    const rows = [
      ...this.ms.entries(),
      ['JS (other: encode, summaries, glue)', totalMs - this.total()] as const,
    ];
    return rows
      .sort((a, b) => b[1] - a[1])
      .map(
        ([stage, ms]) =>
          `  ${stage.padEnd(44)} ${(ms / divisor).toFixed(divisor === 1 ? 0 : 2).padStart(8)} ms  ${((100 * ms) / totalMs).toFixed(1).padStart(5)}%`,
      );
  }
}

/** A COPY from a staged temp table writes Parquet only; a COPY from the input also reads, casts and partitions it. */
export const COPY_STAGED = 'parquet write (COPY per partition)';
export const COPY_ONE_PASS = 'read + cast + partition + parquet write (one COPY)';

function sqlStage(sql: string): string {
  const text = sql.trimStart().toLowerCase();
  if (text.startsWith('describe') || text.includes('json_keys(')) return 'describe input (schema inference)';
  if (text.startsWith('create temp table __tributary_stage')) return 'stage: read input + cast + partition';
  if (text.startsWith('select count(*) filter')) return 'required-column check';
  if (text.startsWith('select distinct') || text.includes('group by __g'))
    return 'partition split: distinct groups';
  if (text.startsWith('copy')) return text.includes('__tributary_stage') ? COPY_STAGED : COPY_ONE_PASS;
  if (text.includes('parquet_file_metadata') || text.includes('parquet_metadata('))
    return 'metrics (parquet_metadata per file)';
  if (text.startsWith('drop')) return 'drop stage';
  return 'other SQL';
}

/** An engine whose connection times each statement into `stages`, classified by what it does. */
export function instrumentEngine(engine: Engine, stages: Stages): Engine {
  const connection = engine.connection;
  const timed =
    (method: 'run' | 'runAndReadAll') =>
    async (sql: string, ...rest: unknown[]): Promise<unknown> => {
      const started = performance.now();
      try {
        return await (connection[method] as (sql: string, ...rest: unknown[]) => Promise<unknown>).call(
          connection,
          sql,
          ...rest,
        );
      } finally {
        stages.add(sqlStage(sql), performance.now() - started);
      }
    };
  const wrapped = { run: timed('run'), runAndReadAll: timed('runAndReadAll') };
  const proxy = new Proxy(connection, {
    get(target, property) {
      if (property === 'run' || property === 'runAndReadAll') return wrapped[property];
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { instance: engine.instance, connection: proxy, close: () => engine.close() };
}

function storageStage(operation: string, location: string): string {
  const kind = location.endsWith('.metadata.json')
    ? 'metadata.json'
    : /\/snap-[^/]*\.avro$/.test(location)
      ? 'manifest list'
      : location.endsWith('.avro')
        ? 'manifest'
        : 'file';
  return `${operation} ${kind}`;
}

/** Times the catalog's storage reads and writes and its compare-and-swap into `stages`. */
export function instrumentCatalog(catalog: Catalog, stages: Stages): void {
  const storage = catalog.storage as unknown as Record<string, unknown>;
  for (const [method, verb] of [
    ['read', 'read'],
    ['write', 'write+fsync'],
    ['writeExclusive', 'write+fsync'],
  ] as const) {
    const original = (storage[method] as (location: string, ...rest: unknown[]) => Promise<unknown>).bind(
      catalog.storage,
    );
    storage[method] = (location: string, ...rest: unknown[]) =>
      stages.time(storageStage(verb, location), () => original(location, ...rest));
  }
  const registry = catalog.registry as unknown as Record<string, unknown>;
  const swap = (registry.swapMetadataLocation as (...a: unknown[]) => Promise<void>).bind(catalog.registry);
  registry.swapMetadataLocation = (...args: unknown[]) =>
    stages.time('catalog swap (SQLite UPDATE, synchronous=FULL)', () => swap(...args));
}

// ---------------------------------------------------------------------------------------------------
// Statistics

export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const rank = (p / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (rank - low);
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

export function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

export function mean(values: readonly number[]): number {
  return sum(values) / values.length;
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
