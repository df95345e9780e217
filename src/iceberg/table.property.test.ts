/**
 * Property test: random sequences of row-level writes, maintenance and evolution on a small table, checked
 * after every step against a model (a multiset of rows, and its history by snapshot id):
 *  - the table's rows equal the model's;
 *  - time travel to earlier snapshots still in the table gives the rows (and columns) they had;
 *  - the snapshot summary's totals agree with the files a scan plans.
 * Sequences come from a seeded PRNG, so a failure names the seed and step that reproduce it; run more seeds
 * with SEEDS=6,7,8 in the environment.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalStorage } from '../storage/index.ts';
import { openEngine, type Engine } from './duckdb.ts';
import { ancestorsOf } from './metadata.ts';
import { updatePartitionSpec, updateSchema } from './operations/evolve.ts';
import { compact, expireSnapshots, rewriteManifests, rollbackTo } from './operations/maintenance.ts';
import { append, deleteWhere, overwriteWhere, upsert } from './operations/write.ts';
import { planFiles, planScan, scanSql } from './scan.ts';
import type { Table } from './table.ts';
import { createTestTable } from './test-support.ts';

const storage = new LocalStorage({ fsync: false });
const SEEDS = process.env.SEEDS ? process.env.SEEDS.split(',').map(Number) : [1, 2, 3, 4, 5];
const STEPS = 30;

/** mulberry32: small, fast and good enough to pick operations. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Value = number | string | null;
type Row = Record<string, Value>;

interface Column {
  /** Stable across renames: rows of the model are keyed by it. */
  readonly key: string;
  readonly name: string;
}

interface ModelState {
  /** Columns after `id, k, s`: each added column is an optional int. */
  readonly columns: readonly Column[];
  readonly rows: readonly Row[];
}

/** SQL's three-valued logic: a row is deleted only when the predicate is true, not when it is null. */
interface Filter {
  readonly sql: string;
  readonly test: (row: Row) => boolean | null;
}

const STRINGS = [
  'a',
  'b',
  'é',
  'long string with a shared prefix 1',
  'long string with a shared prefix 2',
  null,
];
const SPECS = ['', 'k', 'bucket(3, id)', 'truncate(2, s)', 'k, bucket(2, id)', 'truncate(5, id)'];

function literal(value: Value): string {
  if (value === null) return 'null';
  return typeof value === 'number' ? String(value) : `'${value.replace(/'/g, "''")}'`;
}

function randomFilter(random: () => number, columns: readonly Column[]): Filter {
  const x = Math.floor(random() * 5);
  const cmp = (a: Value, b: number, f: (a: number, b: number) => boolean) =>
    a === null ? null : f(a as number, b);
  switch (Math.floor(random() * 7)) {
    case 0:
      return { sql: `k = ${x}`, test: (r) => cmp(r.k!, x, (a, b) => a === b) };
    case 1:
      return { sql: `k > ${x}`, test: (r) => cmp(r.k!, x, (a, b) => a > b) };
    case 2:
      return { sql: 's is null', test: (r) => r.s === null };
    case 3: {
      const m = 2 + Math.floor(random() * 3);
      return { sql: `id % ${m} = ${x % m}`, test: (r) => (r.id as number) % m === x % m };
    }
    case 4: {
      const s = STRINGS[Math.floor(random() * (STRINGS.length - 1))]!;
      return { sql: `s = ${literal(s)}`, test: (r) => (r.s === null ? null : r.s === s) };
    }
    case 5:
      return { sql: `not (k = ${x})`, test: (r) => cmp(r.k!, x, (a, b) => a !== b) };
    default: {
      const column = columns.at(-1);
      if (!column) return { sql: `id < ${x * 3}`, test: (r) => (r.id as number) < x * 3 };
      return {
        sql: `"${column.name}" is not null`,
        test: (r) => r[column.key] !== null && r[column.key] !== undefined,
      };
    }
  }
}

/** A row as the values of `id, k, s` and the columns, in order; columns are compared by name separately. */
function sorted(rows: readonly Row[], columns: readonly Column[]): string[] {
  const keys = ['id', 'k', 's', ...columns.map((c) => c.key)];
  return rows.map((row) => JSON.stringify(keys.map((k) => row[k] ?? null))).sort();
}

let root: string;
let engine: Engine;

async function createTable(name: string): Promise<Table> {
  const { table } = await createTestTable({
    storage,
    directory: path.join(root, name),
    identifier: { namespace: ['prop'], name },
    fields: [
      { name: 'id', type: 'long', required: true },
      { name: 'k', type: 'int' },
      { name: 's', type: 'string' },
    ],
    partition: 'k',
  });
  return table;
}

/** The table's rows at a snapshot (current by default), with the columns of that snapshot's schema. */
async function tableRows(table: Table, snapshotId?: bigint): Promise<{ columns: string[]; rows: string[] }> {
  const plan = await planScan(table.metadata, table.storage, snapshotId === undefined ? {} : { snapshotId });
  const names = plan.schema.fields.map((f) => f.name);
  const reader = await engine.connection.runAndReadAll(
    `select ${names.map((n) => `"${n}"`).join(', ')} from ${scanSql(plan, await table.files.readable(planFiles(plan)))}`,
  );
  const rows = reader
    .getRows()
    .map((values) => JSON.stringify(values.map((v) => (typeof v === 'bigint' ? Number(v) : (v ?? null)))));
  return { columns: names.slice(3), rows: rows.sort() };
}

async function checkTotals(table: Table, where: string): Promise<void> {
  const snapshot = table.currentSnapshot;
  if (!snapshot) return;
  const plan = await planScan(table.metadata, table.storage);
  const sum = (files: typeof plan.dataFiles) => files.reduce((n, p) => n + p.file.recordCount, 0);
  const summary = snapshot.summary;
  assert.deepEqual(
    [
      summary['total-records'],
      summary['total-data-files'],
      summary['total-delete-files'],
      summary['total-position-deletes'],
    ],
    [
      String(sum(plan.dataFiles)),
      String(plan.dataFiles.length),
      String(plan.positionDeletes.length),
      String(sum(plan.positionDeletes)),
    ],
    `${where}: summary totals`,
  );
}

async function runSequence(seed: number): Promise<string[]> {
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const table = await createTable(`seed${seed}`);
  let model: ModelState = { columns: [], rows: [] };
  const history = new Map<bigint, ModelState>();
  let nextId = 0;
  let addedColumns = 0;
  const log: string[] = [];

  const newRows = (count: number, reuseIds = false): Row[] =>
    Array.from({ length: count }, () => {
      const row: Row = {
        id: reuseIds && nextId > 0 && random() < 0.6 ? Math.floor(random() * nextId) : nextId++,
        k: random() < 0.2 ? null : Math.floor(random() * 5),
        s: pick(STRINGS),
      };
      for (const c of model.columns) row[c.key] = random() < 0.3 ? null : Math.floor(random() * 100);
      return row;
    });
  const relation = (rows: readonly Row[]) => {
    const columns = [
      { key: 'id', name: 'id', type: 'bigint' },
      { key: 'k', name: 'k', type: 'int' },
      { key: 's', name: 's', type: 'varchar' },
      ...model.columns.map((c) => ({ ...c, type: 'int' })),
    ];
    return `(${rows
      .map(
        (r) =>
          `select ${columns.map((c) => `${literal(r[c.key] ?? null)}::${c.type} as "${c.name}"`).join(', ')}`,
      )
      .join(' union all ')})`;
  };
  const remember = () => {
    const id = table.currentSnapshot?.['snapshot-id'];
    if (id !== undefined && !history.has(id)) history.set(id, model);
  };

  for (let step = 0; step < STEPS; step++) {
    const roll = random();
    let what: string;
    if (roll < 0.22 || model.rows.length === 0) {
      const rows = newRows(1 + Math.floor(random() * 5));
      what = `append ${rows.length}`;
      await append(table, engine, relation(rows));
      model = { ...model, rows: [...model.rows, ...rows] };
    } else if (roll < 0.42) {
      const filter = randomFilter(random, model.columns);
      const mode = random() < 0.5 ? 'copy-on-write' : 'merge-on-read';
      what = `delete (${mode}) where ${filter.sql}`;
      const kept = model.rows.filter((r) => filter.test(r) !== true);
      const result = await deleteWhere(table, engine, filter.sql, { mode });
      assert.equal(result.deletedRecords, model.rows.length - kept.length, what);
      model = { ...model, rows: kept };
    } else if (roll < 0.52) {
      const filter = randomFilter(random, model.columns);
      const rows = newRows(1 + Math.floor(random() * 3));
      what = `overwrite where ${filter.sql} with ${rows.length}`;
      await overwriteWhere(table, engine, filter.sql, relation(rows));
      model = { ...model, rows: [...model.rows.filter((r) => filter.test(r) !== true), ...rows] };
    } else if (roll < 0.64) {
      const incoming = newRows(1 + Math.floor(random() * 4), true);
      what = `upsert ids ${incoming.map((r) => r.id).join(',')}`;
      // The last row of a key wins; every existing row with that key is replaced.
      const byKey = new Map(incoming.map((r) => [r.id, r]));
      await upsert(table, engine, relation(incoming), { keyColumns: ['id'] });
      model = { ...model, rows: [...model.rows.filter((r) => !byKey.has(r.id)), ...byKey.values()] };
    } else if (roll < 0.71) {
      what = 'compact';
      await compact(table, engine, { targetFileSizeBytes: 1 << 20 });
      // Every data file is small: all files with deletes were rewritten, so no delete file is left.
      const plan = await planScan(table.metadata, table.storage);
      assert.equal(plan.positionDeletes.length, 0, `seed ${seed}, step ${step}: delete files folded in`);
    } else if (roll < 0.75) {
      what = 'rewrite manifests';
      await rewriteManifests(table);
    } else if (roll < 0.81) {
      const retainLast = 1 + Math.floor(random() * 3);
      what = `expire, retain ${retainLast}`;
      await expireSnapshots(table, { olderThanMs: Date.now() + 1, retainLast });
    } else if (roll < 0.87) {
      const ancestors = ancestorsOf(table.metadata, table.currentSnapshot?.['snapshot-id']).slice(1);
      const target = ancestors.length ? pick(ancestors)['snapshot-id'] : undefined;
      if (target === undefined || !history.has(target)) continue;
      what = `rollback to ${target}`;
      await rollbackTo(table, target);
      // Rows as they were; columns added since are null in them.
      model = { ...model, rows: history.get(target)!.rows };
    } else if (roll < 0.91 || model.columns.length === 0) {
      const key = `c${addedColumns++}`;
      what = `add column ${key}`;
      await updateSchema(table, [{ kind: 'add-column', name: key, type: 'int' }]);
      model = { ...model, columns: [...model.columns, { key, name: key }] };
    } else if (roll < 0.94) {
      const column = pick(model.columns);
      const renamed = random() < 0.5 ? `${column.name}r` : undefined;
      what = renamed ? `rename column ${column.name} to ${renamed}` : `drop column ${column.name}`;
      await updateSchema(table, [
        renamed
          ? { kind: 'rename-column', column: column.name, newName: renamed }
          : { kind: 'delete-column', column: column.name },
      ]);
      const columns = model.columns.flatMap((c) =>
        c.key !== column.key ? [c] : renamed ? [{ key: c.key, name: renamed }] : [],
      );
      model = { ...model, columns };
    } else {
      const spec = pick(SPECS);
      what = `partition by "${spec}"`;
      await updatePartitionSpec(table, spec);
    }
    log.push(what);
    const where = `seed ${seed}, step ${step} (${what})`;
    remember();

    const current = await tableRows(table);
    assert.deepEqual(
      current.columns,
      model.columns.map((c) => c.name),
      `${where}: columns`,
    );
    assert.deepEqual(current.rows, sorted(model.rows, model.columns), `${where}: rows`);
    await checkTotals(table, where);
    // Time travel to two earlier snapshots still in the table.
    const known = table.metadata.snapshots.filter((s) => history.has(s['snapshot-id']));
    for (let i = 0; i < 2 && known.length; i++) {
      const snapshot = pick(known)['snapshot-id'];
      const then = history.get(snapshot)!;
      const read = await tableRows(table, snapshot);
      assert.deepEqual(
        read.columns,
        then.columns.map((c) => c.name),
        `${where}: columns at snapshot ${snapshot}`,
      );
      assert.deepEqual(read.rows, sorted(then.rows, then.columns), `${where}: rows at snapshot ${snapshot}`);
    }
  }
  return log;
}

describe('tables behave as a multiset of rows under random operations', () => {
  before(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'tributary-table-property-'));
    engine = await openEngine({ threads: 2 });
  });
  after(() => {
    engine.close();
    rmSync(root, { recursive: true, force: true });
  });

  for (const seed of SEEDS) {
    it(`seed ${seed}`, async () => {
      const log = await runSequence(seed);
      assert.ok(log.length > STEPS / 2, 'most steps ran');
    });
  }
});
