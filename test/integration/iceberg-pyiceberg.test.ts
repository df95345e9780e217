/**
 * Tables stay readable by every engine: pyiceberg reads every table Tributary writes (same rows, same types,
 * after appends into every partition transform, overwrites, both kinds of deletes, upserts, schema and
 * partition evolution, compaction, snapshot expiry and rollback; time travel to each snapshot; its filtered
 * scans prune by our partition values and column bounds; `inspect.files()` agrees with the data files), and
 * Tributary reads every table pyiceberg writes. Then each engine writes to the other's tables and the other
 * reads the result.
 *
 * Rows compare as sorted canonical JSON (test/iceberg-rows.ts). Python runs twice: once to write its own
 * tables, once to read ours (and write to them); each start costs about a second.
 *
 * Around pyiceberg 0.12's own limits: its inspect.files() fails on tables with a uuid column or with a spec
 * whose source column was dropped (those tables are only scanned); it reads a null list or map of structs
 * as empty (the test writes none); it cannot write partition transforms other than identity without
 * pyiceberg-core (it writes only to unpartitioned or identity-partitioned tables).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Catalog } from '../../src/catalog/catalog.ts';
import { parseTableIdentifier } from '../../src/catalog/identifier.ts';
import { openEngine, type Engine } from '../../src/iceberg/duckdb.ts';
import { updatePartitionSpec, updateSchema } from '../../src/iceberg/operations/evolve.ts';
import { compact, expireSnapshots, rollbackTo } from '../../src/iceberg/operations/maintenance.ts';
import { append, deleteWhere, overwriteWhere, upsert } from '../../src/iceberg/operations/write.ts';
import { schemaForPartitionSpecs, specById } from '../../src/iceberg/metadata.ts';
import { partitionPath } from '../../src/iceberg/partition-spec.ts';
import { planFiles, planScan, scanSql } from '../../src/iceberg/scan.ts';
import type { Table } from '../../src/iceberg/table.ts';
import { QueryEngine } from '../../src/query/query-engine.ts';
import {
  createTable,
  openTestCatalog,
  PY_NORMALIZE,
  relationRows,
  sortedLines,
  tableRows,
} from '../iceberg-rows.ts';
import { useService } from '../services/index.ts';
import { runPython } from '../services/pyiceberg.ts';

const py = await useService('pyiceberg');

const PRELUDE = `
import json, os, sys, warnings, datetime as dt, decimal, uuid
import pyarrow as pa, pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import *
from pyiceberg.partitioning import PartitionSpec, PartitionField
from pyiceberg.transforms import IdentityTransform
from pyiceberg.conversions import from_bytes
from pyiceberg.typedef import Record
warnings.simplefilter("ignore")
${PY_NORMALIZE}
cat = SqlCatalog("tributary", uri="sqlite:///" + os.environ["CATALOG"], warehouse="file://" + os.environ["WAREHOUSE"])
out = {}
def record(name, label):
    t = cat.load_table(name)
    snap = t.current_snapshot()
    scan = t.scan()
    out.setdefault("steps", []).append({"table": name, "label": label,
        "snapshot": str(snap.snapshot_id) if snap else None,
        "rows": norm_rows(scan.projection(), scan.to_arrow())})
`;

/** pyiceberg writes tables of its own: every type, deletes and overwrites, schema and partition evolution. */
const PY_WRITE = `
cat.create_namespace("py")
types = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "b", BooleanType()),
    NestedField(3, "i", IntegerType()),
    NestedField(4, "f", FloatType()),
    NestedField(5, "d", DoubleType()),
    NestedField(6, "dec", DecimalType(10, 2)),
    NestedField(7, "day", DateType()),
    NestedField(8, "t", TimeType()),
    NestedField(9, "ts", TimestampType()),
    NestedField(10, "tz", TimestamptzType()),
    NestedField(11, "s", StringType()),
    NestedField(12, "u", UUIDType()),
    NestedField(13, "bin", BinaryType()),
    NestedField(14, "st", StructType(NestedField(20, "x", IntegerType()), NestedField(21, "y", StringType()))),
    NestedField(15, "l", ListType(22, LongType(), element_required=False)),
    NestedField(16, "m", MapType(23, StringType(), 24, DoubleType(), value_required=False)),
)
t = cat.create_table("py.types", schema=types)
def types_rows(ids):
    return pa.Table.from_pylist([{
        "id": i, "b": i % 2 == 0, "i": i * 7 - 20, "f": i / 4, "d": i / 3, "dec": decimal.Decimal(i * 101) / 100 - 3,
        "day": dt.date(1969, 12, 25) + dt.timedelta(days=i * 3), "t": dt.time(i % 24, 30, 15, 123),
        "ts": dt.datetime(1969, 12, 31, 22) + dt.timedelta(hours=i, microseconds=i),
        "tz": dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=i * 37),
        "s": "s%d\u00e9\\U0001F600" % i, "u": uuid.UUID(int=i * 12345678901234567).bytes, "bin": bytes([i, 0, 255]),
        "st": {"x": i, "y": None if i % 3 == 0 else "y%d" % i}, "l": [i, None, -i], "m": {"a": float(i), "b": None},
    } if i % 5 else {"id": i} for i in ids], schema=t.schema().as_arrow())
t.append(types_rows(range(1, 11)))
record("py.types", "append")
t.append(types_rows(range(11, 16)))
record("py.types", "append 2")
t.delete("i < 0")
record("py.types", "delete")
t.overwrite(types_rows([100, 101]), overwrite_filter="id >= 14")
record("py.types", "overwrite")

t = cat.create_table("py.evolve", schema=Schema(NestedField(1, "id", LongType(), required=True),
    NestedField(2, "name", StringType()), NestedField(3, "score", IntegerType()), NestedField(4, "old", StringType())))
t.append(pa.Table.from_pylist([{"id": i, "name": "n%d" % i, "score": i * 10, "old": "o"} for i in range(5)], schema=t.schema().as_arrow()))
record("py.evolve", "v1")
with t.update_schema() as u:
    u.add_column("extra", DoubleType())
    u.rename_column("name", "full_name")
    u.delete_column("old")
    u.update_column("score", LongType())
    u.move_first("extra")
t = cat.load_table("py.evolve")
t.append(pa.Table.from_pylist([{"extra": 0.5, "id": 9, "full_name": "nine", "score": 2**40}], schema=t.schema().as_arrow()))
record("py.evolve", "v2")

spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="region"))
t = cat.create_table("py.part", schema=Schema(NestedField(1, "id", LongType(), required=True),
    NestedField(2, "region", StringType()), NestedField(3, "kind", StringType())), partition_spec=spec)
t.append(pa.Table.from_pylist([{"id": i, "region": ["eu", "us", None][i % 3], "kind": "k%d" % (i % 2)} for i in range(9)], schema=t.schema().as_arrow()))
record("py.part", "spec 0")
with t.update_spec() as u:
    u.add_identity("kind")
t = cat.load_table("py.part")
t.append(pa.Table.from_pylist([{"id": i, "region": "eu", "kind": "k%d" % (i % 2)} for i in range(10, 14)], schema=t.schema().as_arrow()))
record("py.part", "spec 1")
with t.update_spec() as u:
    u.remove_field("region")
t = cat.load_table("py.part")
t.append(pa.Table.from_pylist([{"id": 20, "region": "ap", "kind": "k0"}], schema=t.schema().as_arrow()))
record("py.part", "spec 2")
t.delete("id = 3 or id = 11")
record("py.part", "delete")

t = cat.create_table("py.upsert", schema=Schema(NestedField(1, "id", LongType(), required=True),
    NestedField(2, "v", StringType()), identifier_field_ids=[1]))
t.append(pa.Table.from_pylist([{"id": i, "v": "a"} for i in range(5)], schema=t.schema().as_arrow()))
t.upsert(pa.Table.from_pylist([{"id": i, "v": "b"} for i in range(3, 8)], schema=t.schema().as_arrow()))
record("py.upsert", "upsert")

t = cat.create_table("py.nested", schema=Schema(NestedField(1, "id", LongType(), required=True),
    NestedField(2, "s", StructType(NestedField(3, "x", IntegerType()), NestedField(4, "w", StringType())))))
t.append(pa.Table.from_pylist([{"id": 1, "s": {"x": 5, "w": "q"}}, {"id": 2, "s": None}], schema=t.schema().as_arrow()))
with t.update_schema() as u:
    u.rename_column("s.x", "y")
    u.add_column(("s", "z"), StringType())
    u.delete_column("s.w")
t = cat.load_table("py.nested")
t.append(pa.Table.from_pylist([{"id": 3, "s": {"y": 6, "z": "new"}}], schema=t.schema().as_arrow()))
record("py.nested", "nested fields renamed, added and dropped")

t = cat.create_table("py.fixed", schema=Schema(NestedField(1, "id", LongType()), NestedField(2, "x", FixedType(3))))
t.append(pa.Table.from_pylist([{"id": 1, "x": b"abc"}, {"id": 2, "x": None}], schema=t.schema().as_arrow()))
record("py.fixed", "append")

cat.create_namespace("placed", {"location": "file://" + os.environ["WAREHOUSE"] + "/elsewhere/"})
cat.create_table("placed.theirs", schema=Schema(NestedField(1, "id", LongType())))

cat.create_table("py.empty", schema=Schema(NestedField(1, "id", LongType())))
record("py.empty", "created")
print(json.dumps(out))
`;

/**
 * pyiceberg reads what the checks name (time travel, filters) and lists data files with inspect.files(),
 * checking each file's counts, bounds and partition values against the rows in it; then it writes to some
 * of our tables.
 */
const PY_READ = `
spec = json.loads(os.environ["SPEC"])
loaded = {}
def table(name):
    if name not in loaded:
        loaded[name] = cat.load_table(name)
    return loaded[name]
reads, errors = {}, {}
for check in spec["reads"]:
    try:
        kwargs = {}
        if check.get("snapshot") is not None:
            kwargs["snapshot_id"] = int(check["snapshot"])
        if check.get("filter") is not None:
            kwargs["row_filter"] = check["filter"]
        scan = table(check["table"]).scan(**kwargs)
        reads[check["id"]] = norm_rows(scan.projection(), scan.to_arrow())
    except Exception as e:
        errors[check["id"]] = repr(e)

def internal(t, v):
    """A pyarrow value as pyiceberg's internal representation (what from_bytes gives)."""
    if v is None:
        return None
    if isinstance(t, DateType):
        return (v - dt.date(1970, 1, 1)).days if isinstance(v, dt.date) else v
    if isinstance(t, TimestamptzType):
        return (v - _EPOCH_TZ) // _US if isinstance(v, dt.datetime) else v
    if isinstance(t, TimestampType):
        return (v - _EPOCH) // _US if isinstance(v, dt.datetime) else v
    if isinstance(t, TimeType):
        return ((v.hour * 60 + v.minute) * 60 + v.second) * 1000000 + v.microsecond if isinstance(v, dt.time) else v
    if isinstance(t, UUIDType):
        return v if isinstance(v, uuid.UUID) else uuid.UUID(bytes=bytes(v))
    return v

def local(location):
    return location[len("file://"):] if location.startswith("file://") else location

files, problems = {}, []
for name in spec["files"]:
    t = table(name)
    schema = t.schema()
    listed = []
    for f in t.inspect.files().to_pylist():
        pspec = t.specs()[f["spec_id"]]
        ptype = pspec.partition_type(schema)
        values = [internal(pf.field_type, f["partition"][pf.name]) for pf in ptype.fields]
        listed.append({"path": f["file_path"], "content": f["content"], "spec": f["spec_id"],
                       "records": f["record_count"], "partition": pspec.partition_to_path(Record(*values), schema)})
        if f["content"] != 0:
            continue
        where = name + " " + f["file_path"].rsplit("/", 1)[-1]
        data = pq.read_table(local(f["file_path"]))
        if data.num_rows != f["record_count"]:
            problems.append(where + ": record_count %d, file has %d" % (f["record_count"], data.num_rows))
        by_id = {}
        for i, column in enumerate(data.schema):
            fid = (column.metadata or {}).get(b"PARQUET:field_id")
            if fid is not None:
                by_id[int(fid)] = data.column(i)
        for field in schema.fields:
            column = by_id.get(field.field_id)
            if column is None or not field.field_type.is_primitive:
                continue
            fid = field.field_id
            nulls = column.null_count
            if dict(f["null_value_counts"] or []).get(fid) != nulls:
                problems.append(where + ": %s null count %s, file has %d" % (field.name, dict(f["null_value_counts"] or []).get(fid), nulls))
            if dict(f["value_counts"] or []).get(fid) != data.num_rows:
                problems.append(where + ": %s value count %s, file has %d" % (field.name, dict(f["value_counts"] or []).get(fid), data.num_rows))
            present = [internal(field.field_type, v) for v in column.to_pylist() if v is not None and v == v]
            lower, upper = dict(f["lower_bounds"] or []).get(fid), dict(f["upper_bounds"] or []).get(fid)
            if not present:
                if lower is not None or upper is not None:
                    problems.append(where + ": %s has bounds but no values" % field.name)
                continue
            if lower is None or upper is None:
                if not isinstance(field.field_type, BinaryType):
                    problems.append(where + ": %s has no bounds" % field.name)
                continue
            lo, hi = from_bytes(field.field_type, lower), from_bytes(field.field_type, upper)
            if isinstance(field.field_type, UUIDType):
                lo, hi = uuid.UUID(bytes=lo) if isinstance(lo, bytes) else lo, uuid.UUID(bytes=hi) if isinstance(hi, bytes) else hi
                least, most = min(present, key=lambda u: u.bytes), max(present, key=lambda u: u.bytes)
                exact = lo == least and hi == most
            else:
                least, most = min(present), max(present)
                truncated = isinstance(field.field_type, StringType) and max(len(v) for v in present) > 16
                exact = (lo <= least and hi >= most) if truncated else (lo == least and hi == most)
            if not exact:
                problems.append(where + ": %s bounds [%r, %r], values [%r, %r]" % (field.name, lo, hi, least, most))
        for i, pf in enumerate(pspec.fields):
            source = schema.find_field(pf.source_id)
            column = by_id.get(pf.source_id)
            if column is None:
                continue
            apply = pf.transform.transform(source.field_type)
            seen = {repr(apply(internal(source.field_type, v)) if v is not None else None) for v in column.to_pylist()}
            if seen != {repr(values[i])}:
                problems.append(where + ": partition %s is %r, rows give %s" % (pf.name, values[i], sorted(seen)))
    files[name] = listed

for name, script in spec.get("writes", {}).items():
    t = cat.load_table(name)
    exec(script)
    record(name, "pyiceberg wrote")

print(json.dumps({"reads": reads, "errors": errors, "files": files, "problems": problems, "steps": out.get("steps", [])}))
`;

interface Step {
  readonly table: string;
  readonly label: string;
  readonly snapshot: string | null;
  readonly rows: unknown[];
}

interface ReadCheck {
  readonly id: string;
  readonly table: string;
  readonly snapshot?: string;
  readonly filter?: string;
  readonly expected: string[];
}

interface ListedFile {
  readonly path: string;
  readonly content: number;
  readonly spec: number;
  readonly records: number;
  readonly partition: string;
}

describe('Iceberg tables shared with pyiceberg', { skip: py.skip }, () => {
  let dir: string;
  let catalog: Catalog;
  let engine: Engine;
  const env = () => ({ CATALOG: path.join(dir, 'catalog.db'), WAREHOUSE: path.join(dir, 'warehouse') });
  const checks: ReadCheck[] = [];
  const inspected: string[] = [];
  const tables = new Set<string>();

  async function python<T>(script: string, extra: Record<string, string> = {}): Promise<T> {
    assert.ok(py.info);
    const stdout = await runPython(py.info, `${PRELUDE}\n${script}`, { ...env(), ...extra });
    return JSON.parse(stdout.trim().split('\n').pop() ?? 'null') as T;
  }

  const load = (name: string) => catalog.loadTable(parseTableIdentifier(name));

  /**
   * pyiceberg must read this snapshot of the table as we do, by time travel (with the snapshot's schema);
   * the table's final state is compared once more without time travel. Returns the current rows.
   */
  async function expectSame(table: Table, label: string): Promise<string[]> {
    const snapshot = table.currentSnapshot?.['snapshot-id'];
    assert.ok(snapshot !== undefined);
    tables.add(table.name);
    const expected = await tableRows(table, engine, { snapshotId: snapshot });
    checks.push({ id: `${table.name} @ ${label}`, table: table.name, snapshot: String(snapshot), expected });
    return tableRows(table, engine);
  }

  /** pyiceberg's filtered scan of this snapshot (it prunes by our metadata) gives the rows our SQL filter gives. */
  async function expectFiltered(table: Table, filter: string, sql: string): Promise<void> {
    const snapshot = table.currentSnapshot?.['snapshot-id'];
    assert.ok(snapshot !== undefined);
    const plan = await planScan(table.metadata, table.storage, { snapshotId: snapshot });
    const expected = await relationRows(
      engine,
      `(select * from ${scanSql(plan, await table.files.readable(planFiles(plan)))} where ${sql})`,
      plan.schema.fields,
    );
    assert.ok(expected.length > 0, `${table.name}: filter ${sql} selects rows`);
    tables.add(table.name);
    checks.push({
      id: `${table.name} where ${filter}`,
      table: table.name,
      snapshot: String(snapshot),
      filter,
      expected,
    });
  }

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'tributary-iceberg-pyiceberg-'));
    catalog = await openTestCatalog(dir);
    engine = await openEngine({ threads: 2 });
  });

  after(() => {
    engine.close();
    catalog.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads the tables pyiceberg writes, at every snapshot', async () => {
    const { steps } = await python<{ steps: Step[] }>(PY_WRITE);
    assert.equal(steps.length, 14);
    const query = new QueryEngine(catalog, engine);
    for (const step of steps) {
      const table = await load(step.table);
      if (step.snapshot === null) {
        assert.deepEqual(await tableRows(table, engine), [], `${step.table} has no rows`);
        continue;
      }
      assert.deepEqual(
        await tableRows(table, engine, { snapshotId: BigInt(step.snapshot) }),
        sortedLines(step.rows as never[]),
        `${step.table} after ${step.label}`,
      );
    }
    // The query engine reads the current snapshots the same way.
    const last = new Map(steps.map((s) => [s.table, s]));
    for (const [name, step] of last) {
      await query.attach(`select * from ${name}`);
      const table = await load(name);
      assert.deepEqual(
        await relationRows(engine, name, table.schema.fields),
        sortedLines(step.rows as never[]),
        `query ${name}`,
      );
    }
  });

  it('writes to tables pyiceberg created', async () => {
    const types = await load('py.types');
    await append(
      types,
      engine,
      `(select 200 as id, true as b, -5 as i, 1.25::float as f, 1e300 as d, -0.01 as dec, date '1900-01-01' as day,
               time '23:59:59.999999' as t, timestamp '1900-01-01 00:00:00.000001' as ts,
               timestamptz '2100-12-31 23:59:59+00' as tz, '' as s, uuid '00000000-0000-0000-0000-000000000001' as u,
               '\\x00'::blob as bin, {'x': null, 'y': 'z'} as st, []::bigint[] as l, map {'k': -1.5} as m)`,
    );
    await deleteWhere(types, engine, 'id in (1, 101)', { mode: 'merge-on-read' });
    await expectSame(types, 'our append and merge-on-read delete');

    const evolve = await load('py.evolve');
    await append(evolve, engine, `(select 10 as id, 'ten' as full_name, 7 as score)`);
    await deleteWhere(evolve, engine, 'score = 20', { mode: 'copy-on-write' });
    await expectSame(evolve, 'our append and copy-on-write delete');

    const part = await load('py.part');
    await append(
      part,
      engine,
      `(select 30 as id, 'eu' as region, 'k1' as kind union all select 31, null, null)`,
    );
    await deleteWhere(part, engine, 'id = 12', { mode: 'merge-on-read' });
    await compact(part, engine);
    assert.equal((await planScan(part.metadata, part.storage)).positionDeletes.length, 0);
    await expectSame(part, 'our append, delete and compaction');
    inspected.push('py.part');

    // A new table goes where pyiceberg puts its tables: under the namespace's location property.
    const theirs = await load('placed.theirs');
    const ours = await createTable(catalog, 'placed.ours', [{ name: 'id', type: 'long' }]);
    assert.equal(ours.location, theirs.location.replace(/theirs$/, 'ours'));
    assert.equal(ours.location, `file://${env().WAREHOUSE}/elsewhere/ours`);

    // DuckDB cannot write Parquet fixed_len_byte_array, which other engines require for fixed[L].
    const fixed = await load('py.fixed');
    await assert.rejects(append(fixed, engine, `(select 3 as id, 'xyz'::blob as x)`), {
      code: 'ICEBERG_UNSUPPORTED',
    });

    const upserted = await load('py.upsert');
    await upsert(upserted, engine, `(select 1 as id, 'c' as v union all select 50, 'c')`);
    await expectSame(upserted, 'our upsert');
  });

  it('writes tables pyiceberg reads: every type, every partition transform', async () => {
    const types = await createTable(catalog, 'w.types', [
      { name: 'id', type: 'long', required: true },
      { name: 'b', type: 'boolean' },
      { name: 'i', type: 'int' },
      { name: 'f', type: 'float' },
      { name: 'd', type: 'double' },
      { name: 'dec', type: 'decimal(10, 2)' },
      { name: 'big', type: 'decimal(38, 6)' },
      { name: 'day', type: 'date' },
      { name: 't', type: 'time' },
      { name: 'ts', type: 'timestamp' },
      { name: 'tz', type: 'timestamptz' },
      { name: 's', type: 'string' },
      { name: 'u', type: 'uuid' },
      { name: 'bin', type: 'binary' },
      {
        name: 'st',
        type: {
          type: 'struct',
          fields: [
            { name: 'x', type: 'int' },
            { name: 'inner', type: { type: 'struct', fields: [{ name: 'z', type: 'string' }] } },
          ],
        },
      },
      { name: 'l', type: { type: 'list', element: 'long' } },
      {
        name: 'ls',
        type: {
          type: 'list',
          element: {
            type: 'struct',
            fields: [
              { name: 'k', type: 'string' },
              { name: 'v', type: 'double' },
            ],
          },
        },
      },
      { name: 'm', type: { type: 'map', key: 'string', value: 'long' } },
      {
        name: 'mm',
        type: { type: 'map', key: 'int', value: { type: 'list', element: 'string' } },
      },
    ]);
    const typeRows = (from: number, to: number) => `(
      select i::bigint as id, i % 2 = 0 as b, (i * 7 - 20)::int as i, (i / 4)::float as f, i / 3 as d,
        ((i * 101) / 100.0 - 3)::decimal(10, 2) as dec, (i * 1234567890123.456789)::decimal(38, 6) as big,
        date '1969-12-25' + (i * 3)::int as day, time '00:30:15.000123' + interval (i) hour as t,
        timestamp '1969-12-31 22:00:00' + interval (i) hour + interval (i) microsecond as ts,
        timestamptz '2024-03-01 00:00:00+00' + interval (i * 37) minute as tz,
        's' || i || 'é😀 and a long tail to truncate' as s, uuid '00000000-0000-0000-0000-000000000000' as u,
        from_hex(printf('%02x00ff', i)) as bin,
        {'x': i, 'inner': {'z': case when i % 3 = 0 then null else 'z' || i end}} as st,
        [i, null, -i] as l, [{'k': 'a', 'v': i / 2}, null] as ls, map {'a': i, 'b': null} as m,
        map {i: ['x', null]} as mm
      from range(${from}, ${to}) r(i)
      union all select ${to}, null, null, null, null, null, null, null, null, null, null, null, null, null, null,
        null, [], map {}, null)`;
    await append(types, engine, typeRows(1, 8));
    await expectSame(types, 'append');
    await append(types, engine, typeRows(10, 14));
    await expectSame(types, 'append 2');
    await expectFiltered(types, 'id >= 12', 'id >= 12');

    const identity = await createTable(
      catalog,
      'w.identity',
      [
        { name: 'id', type: 'long', required: true },
        { name: 'region', type: 'string' },
        { name: 'flag', type: 'boolean' },
        { name: 'day', type: 'date' },
        { name: 'amount', type: 'decimal(9, 2)' },
      ],
      { partition: 'region, flag, day, amount' },
    );
    await append(
      identity,
      engine,
      `(select i as id, case i % 4 when 0 then 'eu' when 1 then 'us/west' when 2 then 'a b=c' else null end as region,
              i % 3 = 0 as flag, date '1969-12-30' + (i % 3)::int as day, (i % 2) * 1.5 as amount from range(12) r(i))`,
    );
    await expectSame(identity, 'append');
    await expectFiltered(identity, "region = 'us/west'", "region = 'us/west'");
    await expectFiltered(identity, 'region is null', 'region is null');
    await expectFiltered(identity, "day < '1970-01-01'", "day < date '1970-01-01'");
    inspected.push('w.identity');

    const bucket = await createTable(
      catalog,
      'w.bucket',
      [
        { name: 'id', type: 'long', required: true },
        { name: 'n', type: 'int' },
        { name: 'name', type: 'string' },
        { name: 'day', type: 'date' },
        { name: 'ts', type: 'timestamptz' },
      ],
      { partition: 'bucket(4, id), bucket(3, n), bucket(5, name), bucket(2, day), bucket(3, ts)' },
    );
    await append(
      bucket,
      engine,
      `(select i as id, (i * 1000003 - 50)::int as n, 'name-' || i as name, date '2024-01-01' + i::int as day,
              timestamptz '2024-01-01 00:00:00+00' + interval (i * 7) hour as ts from range(30) r(i))`,
    );
    await expectSame(bucket, 'append');
    await expectFiltered(bucket, 'id = 17', 'id = 17');
    await expectFiltered(bucket, "name = 'name-5'", "name = 'name-5'");
    await expectFiltered(bucket, "day = '2024-01-09'", "day = date '2024-01-09'");
    inspected.push('w.bucket');

    const uuidBucket = await createTable(
      catalog,
      'w.uuid_bucket',
      [
        { name: 'id', type: 'long', required: true },
        { name: 'u', type: 'uuid' },
      ],
      { partition: 'bucket(4, u)' },
    );
    await append(
      uuidBucket,
      engine,
      `(select i as id, ('00000000-0000-0000-0000-' || printf('%012x', i * 7919))::uuid as u from range(20) r(i))`,
    );
    await expectSame(uuidBucket, 'append');
    await expectFiltered(
      uuidBucket,
      `u = '00000000-0000-0000-0000-${(5 * 7919).toString(16).padStart(12, '0')}'`,
      'id = 5',
    );

    const truncate = await createTable(
      catalog,
      'w.truncate',
      [
        { name: 'id', type: 'long', required: true },
        { name: 'name', type: 'string' },
        { name: 'n', type: 'int' },
        { name: 'big', type: 'long' },
        { name: 'amount', type: 'decimal(10, 2)' },
      ],
      { partition: 'truncate(3, name), truncate(10, n), truncate(1000, big), truncate(50, amount)' },
    );
    await append(
      truncate,
      engine,
      `(select i as id, case when i % 5 = 0 then null else 'né' || (i % 4) || 'xyz' end as name, (i * 7 - 60)::int as n,
              i * 997 - 10000 as big, (i * 0.37 - 3)::decimal(10, 2) as amount from range(25) r(i))`,
    );
    await expectSame(truncate, 'append');
    await expectFiltered(truncate, 'n < -20', 'n < -20');
    await expectFiltered(truncate, "name = 'né1xyz'", "name = 'né1xyz'");
    await expectFiltered(truncate, "amount >= '4.00'", 'amount >= 4.0');
    inspected.push('w.truncate');

    // Wide decimals truncate exactly (not through a double); times bucket by their microseconds.
    const wide = await createTable(
      catalog,
      'w.wide',
      [
        { name: 'id', type: 'long', required: true },
        { name: 'big', type: 'decimal(38, 6)' },
        { name: 'mid', type: 'decimal(18, 2)' },
        { name: 't', type: 'time' },
      ],
      { partition: 'truncate(10, big), truncate(7, mid), bucket(7, t)' },
    );
    await append(
      wide,
      engine,
      `(select i as id, ('12345678901234567890123.45678' || i)::decimal(38, 6) * (i % 2 * 2 - 1) as big,
              ('-1234567890123456.7' || i)::decimal(18, 2) as mid, time '12:34:56.789' + interval (i * 7) minute as t
       from range(8) r(i))`,
    );
    await expectSame(wide, 'append');
    inspected.push('w.wide');

    const time = await createTable(
      catalog,
      'w.time',
      [
        { name: 'id', type: 'long', required: true },
        { name: 'ts', type: 'timestamp' },
        { name: 'tz', type: 'timestamptz' },
        { name: 'd', type: 'date' },
        { name: 'y', type: 'timestamptz' },
      ],
      { partition: 'hour(ts), day(tz), month(d), year(y)' },
    );
    await append(
      time,
      engine,
      `(select i as id, timestamp '1969-12-31 20:30:00' + interval (i * 47) minute as ts,
              timestamptz '1969-12-30 23:59:59.999999+00' + interval (i * 5) hour as tz,
              date '1969-11-15' + (i * 9)::int as d, timestamptz '1968-12-31 23:00:00+00' + interval (i * 40) day as y
       from range(30) r(i) union all select 100, null, null, null, null)`,
    );
    await expectSame(time, 'append');
    await expectFiltered(time, "ts < '1970-01-01T00:00:00'", "ts < timestamp '1970-01-01'");
    await expectFiltered(
      time,
      "tz >= '1970-01-01T12:00:00+00:00'",
      "tz >= timestamptz '1970-01-01 12:00:00+00'",
    );
    await expectFiltered(time, "d = '1969-12-12'", "d = date '1969-12-12'");
    await expectFiltered(time, "y < '1970-01-01T00:00:00+00:00'", "y < timestamptz '1970-01-01 00:00:00+00'");
    inspected.push('w.time');
  });

  it('writes tables pyiceberg reads: row-level changes, maintenance and time travel', async () => {
    const ops = await createTable(
      catalog,
      'w.ops',
      [
        { name: 'id', type: 'long', required: true },
        { name: 'v', type: 'int' },
        { name: 'note', type: 'string' },
      ],
      { partition: 'bucket(2, id)' },
    );
    await append(
      ops,
      engine,
      `(select i as id, case when i % 4 = 0 then null else i end as v, 'n' || i as note from range(1, 21) r(i))`,
    );
    await expectSame(ops, 'append');
    await overwriteWhere(ops, engine, 'id <= 3', `(select 2 as id, 200 as v, 'over' as note)`);
    await expectSame(ops, 'overwrite');
    // Rows where the predicate is null (v is null) are kept.
    const cow = await deleteWhere(ops, engine, 'v > 15', { mode: 'copy-on-write' });
    assert.equal(cow.deletedRecords, 4);
    const afterCow = await expectSame(ops, 'copy-on-write delete');
    assert.equal(afterCow.filter((r) => r.includes('"v":null')).length, 5);
    await deleteWhere(ops, engine, 'id between 5 and 7 or v is null', { mode: 'merge-on-read' });
    await expectSame(ops, 'merge-on-read delete');
    await upsert(ops, engine, `(select 9 as id, 90 as v, 'up' as note union all select 99, 99, 'new')`, {
      keyColumns: ['id'],
    });
    const beforeCompaction = await expectSame(ops, 'upsert');
    const compacted = await compact(ops, engine);
    assert.ok(compacted.removedDeleteFiles > 0);
    const plan = await planScan(ops.metadata, ops.storage);
    assert.equal(plan.positionDeletes.length, 0, 'delete files are folded in');
    assert.equal(ops.currentSnapshot?.summary['total-delete-files'], '0');
    assert.deepEqual(await expectSame(ops, 'compaction'), beforeCompaction);
    await expectFiltered(ops, 'id = 9', 'id = 9');
    inspected.push('w.ops');

    const maint = await createTable(catalog, 'w.maint', [
      { name: 'id', type: 'long', required: true },
      { name: 's', type: 'string' },
    ]);
    for (let i = 0; i < 3; i++)
      await append(maint, engine, `(select ${i} * 10 + x as id, 'v' || x as s from range(10) r(x))`);
    await deleteWhere(maint, engine, 'id % 7 = 0', { mode: 'merge-on-read' });
    const reachable = (await planScan(maint.metadata, maint.storage)).dataFiles.map((p) => p.file.filePath);
    await compact(maint, engine);
    const expired = await expireSnapshots(maint, { olderThanMs: Date.now() + 1, retainLast: 1 });
    assert.equal(expired.expiredSnapshots, 4);
    assert.equal(maint.metadata.snapshots.length, 1);
    for (const location of reachable) assert.equal(existsSync(maint.storage.localPath(location)!), false);
    await expectSame(maint, 'compaction and expiry');

    const rollback = await createTable(catalog, 'w.rollback', [{ name: 'id', type: 'long' }]);
    const first = await append(rollback, engine, '(select 1 as id)');
    await append(rollback, engine, '(select 2 as id)');
    await deleteWhere(rollback, engine, 'id = 1');
    await rollbackTo(rollback, first.snapshotId);
    assert.deepEqual(await expectSame(rollback, 'rollback'), ['{"id":"1"}']);
    await append(rollback, engine, '(select 3 as id)');
    assert.deepEqual(await expectSame(rollback, 'append after rollback'), ['{"id":"1"}', '{"id":"3"}']);
  });

  it('writes tables pyiceberg reads: schema and partition evolution', async () => {
    const evolve = await createTable(
      catalog,
      'w.evolve',
      [
        { name: 'id', type: 'int', required: true },
        { name: 'name', type: 'string' },
        { name: 'score', type: 'int' },
        { name: 'old', type: 'string' },
      ],
      { partition: 'bucket(2, id)' },
    );
    await append(
      evolve,
      engine,
      `(select i as id, 'n' || i as name, i * 10 as score, 'o' as old from range(6) r(i))`,
    );
    await expectSame(evolve, 'v1');
    await updateSchema(evolve, [
      { kind: 'add-column', name: 'extra', type: 'double' },
      { kind: 'rename-column', column: 'name', newName: 'full_name' },
      { kind: 'delete-column', column: 'old' },
      { kind: 'update-column-type', column: 'score', type: 'long' },
      { kind: 'update-column-type', column: 'id', type: 'long' },
      { kind: 'move-column', column: 'extra', position: 'first' },
      {
        kind: 'add-column',
        name: 'tags',
        type: { type: 'struct', fields: [{ id: 0, name: 'a', required: false, type: 'string' }] },
      },
    ]);
    await expectSame(evolve, 'v2 before writing');
    await append(
      evolve,
      engine,
      `(select 0.5 as extra, 100 as id, 'hundred' as full_name, 4000000000 as score, {'a': 'x'} as tags)`,
    );
    await expectSame(evolve, 'v2');
    await expectFiltered(evolve, 'score >= 40', 'score >= 40');
    await expectFiltered(evolve, 'id = 3', 'id = 3');
    await deleteWhere(evolve, engine, 'id = 2', { mode: 'merge-on-read' });
    await expectSame(evolve, 'delete after evolution');
    inspected.push('w.evolve');

    // Nested fields renamed, added, dropped, widened and moved: old files name them otherwise.
    const nested = await createTable(catalog, 'w.nested', [
      { name: 'id', type: 'long', required: true },
      {
        name: 's',
        type: {
          type: 'struct',
          fields: [
            { name: 'x', type: 'int' },
            { name: 'w', type: 'string' },
          ],
        },
      },
      {
        name: 'l',
        type: { type: 'list', element: { type: 'struct', fields: [{ name: 'a', type: 'int' }] } },
      },
      {
        name: 'm',
        type: { type: 'map', key: 'string', value: { type: 'struct', fields: [{ name: 'b', type: 'int' }] } },
      },
    ]);
    await append(
      nested,
      engine,
      `(select 1 as id, {'x': 5, 'w': 'q'} as s, [{'a': 7}, null] as l, map {'k': {'b': 9}} as m
        union all select 2, null, [], map {})`, // (pyiceberg 0.12 reads a null list or map of structs as empty)
    );
    await expectSame(nested, 'nested v1');
    await updateSchema(nested, [
      { kind: 'rename-column', column: 's.x', newName: 'y' },
      { kind: 'add-column', parent: 's', name: 'z', type: 'string' },
      { kind: 'update-column-type', column: 's.y', type: 'long' },
      { kind: 'delete-column', column: 's.w' },
      { kind: 'rename-column', column: 'l.element.a', newName: 'a2' },
      { kind: 'add-column', parent: 'm.value', name: 'c', type: 'int' },
      { kind: 'move-column', column: 's.z', position: 'first' },
    ]);
    await append(
      nested,
      engine,
      `(select 3 as id, {'z': 'new', 'y': 6000000000} as s, [{'a2': 8}] as l, map {'n': {'b': 1, 'c': 2}} as m)`,
    );
    assert.deepEqual(await expectSame(nested, 'nested v2'), [
      '{"id":"1","s":{"z":null,"y":"5"},"l":[{"a2":"7"},null],"m":{"__map__":[["k",{"b":"9","c":null}]]}}',
      '{"id":"2","s":null,"l":[],"m":{"__map__":[]}}',
      '{"id":"3","s":{"z":"new","y":"6000000000"},"l":[{"a2":"8"}],"m":{"__map__":[["n",{"b":"1","c":"2"}]]}}',
    ]);
    await deleteWhere(nested, engine, 'id = 1', { mode: 'copy-on-write' });
    await expectSame(nested, 'nested delete');

    // Partitioned by a column later widened: old manifests hold int partition values, new ones long.
    const widen = await createTable(
      catalog,
      'w.widen',
      [
        { name: 'id', type: 'int' },
        { name: 'f', type: 'float' },
        { name: 'v', type: 'string' },
      ],
      { partition: 'id' },
    );
    await append(widen, engine, `(select i % 4 as id, i / 2 as f, 'v' || i as v from range(12) r(i))`);
    await updateSchema(widen, [
      { kind: 'update-column-type', column: 'id', type: 'long' },
      { kind: 'update-column-type', column: 'f', type: 'double' },
    ]);
    await append(widen, engine, `(select 5000000000 as id, 1e100 as f, 'big' as v)`);
    await deleteWhere(widen, engine, "v = 'v1'", { mode: 'copy-on-write' });
    await deleteWhere(widen, engine, "v = 'v2'", { mode: 'merge-on-read' });
    await expectSame(widen, 'deletes after widening');
    await expectFiltered(widen, 'id = 2', 'id = 2');
    await expectFiltered(widen, 'f > 4.0', 'f > 4.0');
    const pruned = await planScan(widen.metadata, widen.storage, {
      filter: [{ column: 'id', op: '=', value: 2n }],
    });
    assert.equal(pruned.dataFiles.length, 1, 'partition values written as int match a long filter');
    inspected.push('w.widen');

    const pevolve = await createTable(
      catalog,
      'w.pevolve',
      [
        { name: 'id', type: 'long', required: true },
        { name: 'region', type: 'string' },
        { name: 'ts', type: 'timestamptz' },
      ],
      { partition: 'region' },
    );
    const rows = (from: number) =>
      `(select i as id, case i % 3 when 0 then 'eu' when 1 then 'us' else null end as region,
               timestamptz '2024-05-01 00:00:00+00' + interval (i * 5) hour as ts from range(${from}, ${from + 9}) r(i))`;
    await append(pevolve, engine, rows(0));
    await updatePartitionSpec(pevolve, 'day(ts), bucket(4, id)');
    await append(pevolve, engine, rows(10));
    await expectSame(pevolve, 'spec 1');
    await updatePartitionSpec(pevolve, '');
    await append(pevolve, engine, rows(20));
    await deleteWhere(pevolve, engine, 'id in (1, 11, 21)', { mode: 'merge-on-read' });
    await deleteWhere(pevolve, engine, 'id in (2, 12, 22)', { mode: 'copy-on-write' });
    await expectSame(pevolve, 'spec 2 and deletes');
    const specs = new Set((await planScan(pevolve.metadata, pevolve.storage)).dataFiles.map((p) => p.specId));
    assert.deepEqual([...specs].sort(), [0, 1, 2], 'old files keep their spec');
    await expectFiltered(pevolve, "region = 'eu'", "region = 'eu'");
    await expectFiltered(pevolve, 'id = 13', 'id = 13');
    await expectFiltered(
      pevolve,
      "ts >= '2024-05-02T12:00:00+00:00'",
      "ts >= timestamptz '2024-05-02 12:00:00+00'",
    );
    inspected.push('w.pevolve');

    // The first spec's source column is dropped: its files still take deletes, and scans still prune.
    // (pyiceberg's inspect.files() cannot list such a table.)
    const dropped = await createTable(
      catalog,
      'w.dropped',
      [
        { name: 'id', type: 'long', required: true },
        { name: 'region', type: 'string' },
        { name: 'ts', type: 'timestamptz' },
      ],
      { partition: 'region, month(ts)' },
    );
    await append(dropped, engine, rows(0));
    await updatePartitionSpec(dropped, 'bucket(2, id)');
    await append(dropped, engine, rows(10));
    await updateSchema(dropped, [
      { kind: 'delete-column', column: 'region' },
      { kind: 'delete-column', column: 'ts' },
    ]);
    await deleteWhere(dropped, engine, 'id = 3', { mode: 'merge-on-read' });
    await deleteWhere(dropped, engine, 'id = 4', { mode: 'copy-on-write' });
    await expectSame(dropped, 'source columns of the first spec dropped');
    await expectFiltered(dropped, 'id = 6', 'id = 6');
    await compact(dropped, engine);
    await expectSame(dropped, 'compaction');
  });

  it('pyiceberg reads every table and snapshot as Tributary does, and Tributary reads its writes back', async () => {
    const writes: Record<string, string> = {
      'w.maint': `
t.append(pa.Table.from_pylist([{"id": 1000 + i, "s": "py"} for i in range(3)], schema=t.schema().as_arrow()))
t.delete("id < 5")
with t.update_schema() as u:
    u.add_column("added_by_py", StringType())
    u.rename_column("s", "text")
t = cat.load_table("w.maint")
t.append(pa.Table.from_pylist([{"id": 2000, "text": None, "added_by_py": "yes"}], schema=t.schema().as_arrow()))
`,
      'w.identity': `
t.append(pa.Table.from_pylist([{"id": 900, "region": "eu", "flag": True, "day": dt.date(2000, 1, 1), "amount": decimal.Decimal("2.50")}], schema=t.schema().as_arrow()))
t.delete("id = 1 or id = 2")
with t.update_spec() as u:
    u.remove_field("amount")
t = cat.load_table("w.identity")
t.append(pa.Table.from_pylist([{"id": 901, "region": None, "flag": False, "day": dt.date(1969, 1, 1), "amount": decimal.Decimal("-7.25")}], schema=t.schema().as_arrow()))
`,
      'w.rollback': `
t.append(pa.Table.from_pylist([{"id": 4}], schema=t.schema().as_arrow()))
`,
    };
    // Every snapshot by time travel, filtered scans, and every table's current state.
    for (const name of tables) {
      const table = await load(name);
      checks.push({ id: `${name} current`, table: name, expected: await tableRows(table, engine) });
    }
    const spec = {
      reads: checks.map(({ expected: _expected, ...check }) => check),
      files: inspected,
      writes,
    };
    const byPath = (a: ListedFile, b: ListedFile) => (a.path < b.path ? -1 : 1);
    const ourFiles = new Map<string, ListedFile[]>();
    for (const name of inspected) {
      const table = await load(name);
      const plan = await planScan(table.metadata, table.storage);
      const files = [...plan.dataFiles, ...plan.positionDeletes].map((p) => ({
        path: p.file.filePath,
        content: p.file.content === 'data' ? 0 : 1,
        spec: p.specId,
        records: p.file.recordCount,
        partition: partitionPath(
          specById(table.metadata, p.specId),
          schemaForPartitionSpecs(table.metadata),
          p.file.partition,
        ),
      }));
      ourFiles.set(name, files.sort(byPath));
    }
    const result = await python<{
      reads: Record<string, unknown[]>;
      errors: Record<string, string>;
      files: Record<string, ListedFile[]>;
      problems: string[];
      steps: Step[];
    }>(PY_READ, { SPEC: JSON.stringify(spec) });

    assert.deepEqual(result.errors, {});
    for (const check of checks) {
      assert.deepEqual(sortedLines(result.reads[check.id] as never[]), check.expected, check.id);
    }

    // inspect.files(): each file's counts, bounds and partition agree with its rows, and with our plan.
    assert.deepEqual(result.problems, []);
    for (const name of inspected) {
      assert.deepEqual([...(result.files[name] ?? [])].sort(byPath), ourFiles.get(name), `${name} files`);
    }

    // pyiceberg appended, deleted and evolved the schema of our tables: we read what it reads.
    assert.equal(result.steps.length, Object.keys(writes).length);
    for (const step of result.steps) {
      const table = await load(step.table);
      assert.deepEqual(await tableRows(table, engine), sortedLines(step.rows as never[]), step.table);
    }
  });
});

describe('commits through the SQL catalog', () => {
  it('re-applies a concurrent append on the new head, and fails an overtaken upsert changing nothing', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tributary-iceberg-commits-'));
    const catalog = await openTestCatalog(dir);
    const engine = await openEngine({ threads: 2 });
    try {
      const id = parseTableIdentifier('c.t');
      await createTable(catalog, 'c.t', [{ name: 'id', type: 'long', required: true }], {
        properties: { 'commit.retry.min-wait-ms': '1' },
      });
      const [first, second] = [await catalog.loadTable(id), await catalog.loadTable(id)];
      await append(first, engine, '(select 1 as id)');
      await append(second, engine, '(select 2 as id)');
      const reloaded = await catalog.loadTable(id);
      assert.deepEqual(await tableRows(reloaded, engine), ['{"id":"1"}', '{"id":"2"}']);
      assert.equal(reloaded.metadata.snapshots.length, 2);

      const stale = await catalog.loadTable(id);
      await append(first, engine, '(select 3 as id)');
      const before = await catalog.registry.getMetadataLocation(id);
      await assert.rejects(upsert(stale, engine, '(select 3 as id)', { keyColumns: ['id'] }), {
        code: 'ICEBERG_COMMIT_CONFLICT',
        retryable: false,
      });
      assert.equal(await catalog.registry.getMetadataLocation(id), before);
      assert.deepEqual(await tableRows(await catalog.loadTable(id), engine), [
        '{"id":"1"}',
        '{"id":"2"}',
        '{"id":"3"}',
      ]);
    } finally {
      engine.close();
      catalog.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
