/**
 * The `postgres` sink on the harness's real PostgreSQL: append, upsert, table creation, positions committed
 * atomically with the rows (a failure or a killed connection just before COMMIT leaves nothing), redelivery
 * and racing workers without duplicates, records the table refuses, retryable and permanent failures, and
 * hostile names. Every run works in a schema of its own, dropped at the end.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { after, before, describe, it, mock } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { createResources, type SinkDefinition } from '../../src/core/pipeline/components.ts';
import type { PipelineRecord, Positions, SinkBatch } from '../../src/core/pipeline/model.ts';
import { isTributaryError } from '../../src/errors.ts';
import type { Log } from '../../src/log/log.ts';
import {
  PostgresSink,
  postgresSinkDefinition,
  postgresSinkSchema,
  type PostgresSinkOptions,
} from '../../src/sinks/postgres/index.ts';
import { freePort } from '../services/harness.ts';
import { useService } from '../services/index.ts';

const postgres = await useService('postgres');
const logger = pino({ level: 'silent' });

function record(partition: number, offset: number, value: Record<string, unknown>): PipelineRecord {
  return { value, key: null, partition, offset, timestamp: 1_700_000_000_000, headers: {} };
}

/** Records `from`..`to - 1` of one partition, with values from `make`. */
function range(
  partition: number,
  from: number,
  to: number,
  make: (offset: number) => Record<string, unknown> = (offset) => ({ id: partition * 1_000_000 + offset }),
): PipelineRecord[] {
  return Array.from({ length: to - from }, (_, i) => record(partition, from + i, make(from + i)));
}

/** A batch whose positions are one past the last record of each partition (plus `extra` positions). */
function batchOf(records: PipelineRecord[], extra: Record<number, number> = {}): SinkBatch {
  const positions = new Map<number, number>(Object.entries(extra).map(([p, o]) => [Number(p), o]));
  for (const r of records)
    positions.set(r.partition, Math.max(positions.get(r.partition) ?? 0, r.offset + 1));
  return { records, positions };
}

const asObject = (positions: Positions) => Object.fromEntries([...positions].sort(([a], [b]) => a - b));

describe('postgres sink', { skip: postgres.skip }, () => {
  const url = postgres.info?.url ?? '';
  const schema = `sink_test_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
  let admin: pg.Client;
  const open: PostgresSink[] = [];
  let tables = 0;

  const query = async <Row extends pg.QueryResultRow>(sql: string, params: unknown[] = []) =>
    (await admin.query<Row>(sql, params)).rows;

  /** A new table name in the test schema. */
  const newTable = () => `${schema}.t${++tables}`;

  function sink(
    config: Record<string, unknown>,
    options: Partial<Omit<PostgresSinkOptions, 'config'>> = {},
  ): PostgresSink {
    const parsed = postgresSinkSchema.parse({ type: 'postgres', url, ...config });
    const created = new PostgresSink({
      config: parsed,
      pipeline: 'orders',
      projectRoot: '.',
      logger,
      ...options,
    });
    open.push(created);
    return created;
  }

  before(async () => {
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
  });

  after(async () => {
    for (const s of open) await s.close().catch(() => undefined);
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  });

  it('is created by its definition from a pipeline context', async () => {
    const definition: SinkDefinition = postgresSinkDefinition;
    const config = definition.schema.parse({ type: 'postgres', url, table: newTable() });
    const created = await definition.create(config, {
      pipeline: 'orders',
      sourceTopic: 'orders',
      projectRoot: '.',
      log: {} as Log,
      logger,
      resources: createResources(),
    });
    try {
      assert.equal(created.name, `postgres:${schema}.t${tables}`);
      assert.deepEqual(asObject(await created.open()), {});
    } finally {
      await created.close();
    }
  });

  it('appends, creating the table from the first batch (types from the JSON) and committing positions', async () => {
    const table = newTable();
    const s = sink({ table });
    assert.deepEqual(asObject(await s.open()), {});
    const first = [
      record(0, 0, { id: 1, amount: 2.5, name: 'a', paid: true, tags: ['x'], meta: { k: 1 }, note: null }),
      record(1, 0, { id: 2, amount: 3, name: 'b', paid: false, tags: [], meta: { k: 2 }, note: null }),
    ];
    assert.deepEqual(await s.write(batchOf(first, { 2: 7 })), {});
    const columns = await query<{ column_name: string; data_type: string }>(
      `SELECT column_name, data_type FROM information_schema.columns
        WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`,
      [schema, table.split('.')[1]],
    );
    assert.deepEqual(Object.fromEntries(columns.map((c) => [c.column_name, c.data_type])), {
      id: 'bigint',
      amount: 'double precision',
      name: 'text',
      paid: 'boolean',
      tags: 'jsonb',
      meta: 'jsonb',
      note: 'text',
    });
    await s.write(batchOf([record(0, 1, { id: 3, amount: 1, name: 'c' })], { 1: 1, 2: 9 }));
    const rows = await query(`SELECT * FROM ${table} ORDER BY id`);
    assert.deepEqual(rows, [
      { id: '1', amount: 2.5, name: 'a', paid: true, tags: ['x'], meta: { k: 1 }, note: null },
      { id: '2', amount: 3, name: 'b', paid: false, tags: [], meta: { k: 2 }, note: null },
      { id: '3', amount: 1, name: 'c', paid: null, tags: null, meta: null, note: null },
    ]);
    await s.close();
    // A new instance (a restart) reads the committed positions back.
    const again = sink({ table });
    assert.deepEqual(asObject(await again.open()), { 0: 2, 1: 1, 2: 9 });
  });

  it('creates a declared table at open, with the declared types, and leaves out other fields', async () => {
    const table = newTable();
    const s = sink({ table, columns: { id: 'bigint', price: 'numeric(10,2)', at: 'timestamptz' } });
    await s.open();
    const types = await query<{ column_name: string; t: string }>(
      `SELECT a.attname AS column_name, format_type(a.atttypid, a.atttypmod) AS t FROM pg_attribute a
        WHERE a.attrelid = $1::regclass AND a.attnum > 0 ORDER BY a.attnum`,
      [table],
    );
    assert.deepEqual(
      types.map((c) => `${c.column_name} ${c.t}`),
      ['id bigint', 'price numeric(10,2)', 'at timestamp with time zone'],
    );
    await s.write(batchOf([record(0, 0, { id: 1, price: 9.999, at: '2026-01-02T03:04:05Z', other: 'x' })]));
    const [row] = await query<{ price: string; at: Date }>(`SELECT price, at FROM ${table}`);
    assert.equal(row?.price, '10.00');
    assert.equal(row?.at.toISOString(), '2026-01-02T03:04:05.000Z');
  });

  it('writes into an existing table, leaving absent columns to their defaults', async () => {
    const table = newTable();
    await admin.query(
      `CREATE TABLE ${table} (seq bigserial PRIMARY KEY, id bigint NOT NULL, label text DEFAULT 'none',
        inserted_at timestamptz NOT NULL DEFAULT now(), doubled bigint GENERATED ALWAYS AS (id * 2) STORED)`,
    );
    const s = sink({ table });
    await s.open();
    await s.write(batchOf([record(0, 0, { id: 5 }), record(0, 1, { id: 6, label: 'six' })]));
    const rows = await query(`SELECT id, label, doubled FROM ${table} ORDER BY seq`);
    // A field a record lacks gets the column's default, whatever the other records of the batch have.
    assert.deepEqual(rows, [
      { id: '5', label: 'none', doubled: '10' },
      { id: '6', label: 'six', doubled: '12' },
    ]);
    const [first] = await query<{ inserted_at: Date | null }>(`SELECT inserted_at FROM ${table} LIMIT 1`);
    assert.ok(first?.inserted_at instanceof Date);
  });

  it('upserts by key: records of a key apply in order, within a batch and across batches', async () => {
    const table = newTable();
    const s = sink({ table, mode: 'upsert', key: ['tenant', 'id'] });
    await s.open();
    await s.write(
      batchOf([
        record(0, 0, { tenant: 't', id: 1, status: 'new', note: null }),
        record(0, 1, { tenant: 't', id: 2, status: 'new' }),
        record(0, 2, { tenant: 't', id: 1, status: 'paid' }),
        record(0, 3, { tenant: 'u', id: 1, status: 'new' }),
      ]),
    );
    await s.write(
      batchOf([
        record(0, 4, { tenant: 't', id: 2, status: 'shipped' }),
        record(0, 5, { tenant: 'u', id: 1 }),
      ]),
    );
    const rows = await query(`SELECT tenant, id, status FROM ${table} ORDER BY tenant, id`);
    assert.deepEqual(rows, [
      { tenant: 't', id: '1', status: 'paid' },
      { tenant: 't', id: '2', status: 'shipped' },
      // A record without a field leaves that column as it was.
      { tenant: 'u', id: '1', status: 'new' },
    ]);
    // Partial records of one key in one batch merge as if applied one after the other; a record the table
    // refuses is rejected alone.
    const result = await s.write(
      batchOf([
        record(0, 6, { tenant: 'v', id: 1, status: 'new', note: 'first' }),
        record(0, 7, { tenant: 'v', id: 1, status: 'paid' }),
        record(0, 8, { tenant: 'v', id: 1, id_bad: 1 }),
        record(0, 9, { tenant: 'v', id: 'not a number' }),
        record(0, 10, { tenant: null, id: 3 }),
      ]),
    );
    assert.deepEqual(
      result.rejected?.map((r) => r.record.offset),
      [8, 9, 10],
    );
    assert.deepEqual(await query(`SELECT tenant, id, status, note FROM ${table} WHERE tenant = 'v'`), [
      { tenant: 'v', id: '1', status: 'paid', note: 'first' },
    ]);
    const [pk] = await query<{ def: string }>(
      `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'`,
      [table],
    );
    assert.equal(pk?.def, 'PRIMARY KEY (tenant, id)');
  });

  it('upserts one key spelled two ways (1 and "1", one instant at two offsets) in order, not failing the batch', async () => {
    const table = newTable();
    const s = sink({
      table,
      mode: 'upsert',
      key: ['id', 'at'],
      columns: { id: 'bigint', at: 'timestamptz', v: 'text' },
    });
    await s.open();
    const result = await s.write(
      batchOf([
        record(0, 0, { id: 1, at: '2024-01-01T00:00:00Z', v: 'a' }),
        record(0, 1, { id: 2, at: '2024-01-01T00:00:00Z', v: 'good' }),
        record(0, 2, { id: '1', at: '2024-01-01T00:00:00Z', v: 'b' }),
        record(0, 3, { id: 1, at: '2024-01-01T01:00:00+01:00', v: 'c' }),
        record(0, 4, { id: ' 1', at: '2024-01-01T00:00:00Z', v: 'd' }),
        // Interleaved spellings: the last record of the key wins.
        record(0, 5, { id: 3, at: '2024-01-01T00:00:00Z', v: 'e' }),
        record(0, 6, { id: 3, at: '2024-01-01T01:00:00+01:00', v: 'f' }),
        record(0, 7, { id: 3, at: '2024-01-01T00:00:00Z', v: 'g' }),
      ]),
    );
    assert.equal(result.rejected?.length ?? 0, 0);
    assert.deepEqual(await query(`SELECT id, v FROM ${table} ORDER BY id`), [
      { id: '1', v: 'd' },
      { id: '2', v: 'good' },
      { id: '3', v: 'g' },
    ]);
    // A row changed twice for another reason (a trigger's subquery) is the table's fault: the batch fails.
    await admin.query(`CREATE TABLE ${table}_twice (n int)`);
    await admin.query(`INSERT INTO ${table}_twice VALUES (1), (2)`);
    await admin.query(
      `CREATE FUNCTION ${table}_f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.v := (SELECT n FROM ${table}_twice)::text; RETURN NEW; END $$`,
    );
    await admin.query(
      `CREATE TRIGGER t BEFORE INSERT ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_f()`,
    );
    await assert.rejects(
      s.write(batchOf([record(0, 8, { id: 9, at: '2024-01-01T00:00:00Z', v: 'x' })])),
      /more than one row returned by a subquery/,
    );
  });

  it('writes only the rows of a key spelled two ways one by one, the rest of the batch together', async () => {
    const table = newTable();
    const s = sink({ table, mode: 'upsert', key: ['id'], columns: { id: 'numeric', v: 'text' } });
    await s.open();
    // Counts the INSERT statements that commit (a refused one rolls back its count with it).
    await admin.query(`CREATE TABLE ${table}_statements (n int)`);
    await admin.query(
      `CREATE FUNCTION ${table}_count() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO ${table}_statements VALUES (1); RETURN NULL; END $$`,
    );
    await admin.query(
      `CREATE TRIGGER counted AFTER INSERT ON ${table} FOR EACH STATEMENT EXECUTE FUNCTION ${table}_count()`,
    );
    const records = range(0, 0, 2_000, (offset) => ({ id: offset, v: `v${offset}` }));
    records.push(record(0, 2_000, { id: '7', v: 'seven, spelled as text' }));
    records.push(record(0, 2_001, { id: 7, v: 'seven, last' }));
    records.push(record(0, 2_002, { id: '8', v: 'eight, last' }));
    const result = await s.write(batchOf(records));
    assert.equal(result.rejected?.length ?? 0, 0);
    const [rows] = await query<{ n: string; seven: string; eight: string }>(
      `SELECT count(*) AS n, max(v) FILTER (WHERE id = 7) AS seven, max(v) FILTER (WHERE id = 8) AS eight FROM ${table}`,
    );
    assert.deepEqual(rows, { n: '2000', seven: 'seven, last', eight: 'eight, last' });
    const [statements] = await query<{ n: string }>(`SELECT count(*) AS n FROM ${table}_statements`);
    // Keys 7 and 8 (numeric: 7 and "7" are not merged before PostgreSQL): their records one by one (2 + 2 merged rows, as 5 records), the other 1,998 rows in one.
    assert.ok(Number(statements!.n) <= 6, `${statements!.n} INSERT statements`);
  });

  it('writes every record of a batch with a key clash one by one when a trigger may change keys', async () => {
    const table = newTable();
    await admin.query(`CREATE TABLE ${table} (k text PRIMARY KEY, v text)`);
    // The conflict check sees ' 7' as '7'; grouping the rows as read cannot.
    await admin.query(
      `CREATE FUNCTION ${table}_trim() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.k := btrim(NEW.k); RETURN NEW; END $$`,
    );
    await admin.query(
      `CREATE TRIGGER trimmed BEFORE INSERT ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_trim()`,
    );
    const s = sink({ table, mode: 'upsert', key: ['k'] });
    await s.open();
    const result = await s.write(
      batchOf([
        record(0, 0, { k: ' 7', v: 'first' }),
        record(0, 1, { k: 7, v: 'second' }),
        record(0, 2, { k: '7', v: 'last' }),
      ]),
    );
    assert.equal(result.rejected?.length ?? 0, 0);
    assert.deepEqual(await query(`SELECT k, v FROM ${table}`), [{ k: '7', v: 'last' }]);
  });
  it('upserts one key spelled two ways in two statements (other columns) in order: the last record wins', async () => {
    const table = newTable();
    const s = sink({
      table,
      mode: 'upsert',
      key: ['at'],
      columns: { at: 'timestamptz', v: 'text', note: 'text', n: 'integer' },
    });
    await s.open();
    // The later record has a field the earlier lacks, and its statement runs first (record 0 opened it).
    let result = await s.write(
      batchOf([
        record(0, 0, { at: '2026-01-09T00:00:00Z', v: 'other', note: 'opens the statement with note' }),
        record(0, 1, { at: '2026-01-01T00:00:00Z', v: 'first' }),
        record(0, 2, { at: '2026-01-01T01:00:00+01:00', v: 'last', note: 'x' }),
      ]),
    );
    assert.equal(result.rejected?.length ?? 0, 0);
    // The other way round, with a last record the table refuses: it alone goes to the dead-letter queue.
    result = await s.write(
      batchOf([
        record(0, 3, { at: '2026-02-09T00:00:00Z', v: 'other' }),
        record(0, 4, { at: '2026-02-01T00:00:00Z', v: 'first', note: 'y' }),
        record(0, 5, { at: '2026-02-01T01:00:00+01:00', v: 'last' }),
        record(0, 6, { at: '2026-02-01T00:00:00Z', n: 'not a number' }),
      ]),
    );
    assert.deepEqual(
      result.rejected?.map((r) => r.record.offset),
      [6],
    );
    assert.deepEqual(await query(`SELECT v, note, n FROM ${table} ORDER BY at`), [
      { v: 'last', note: 'x', n: null },
      { v: 'other', note: 'opens the statement with note', n: null },
      { v: 'last', note: 'y', n: null },
      { v: 'other', note: null, n: null },
    ]);
  });

  it('upserts one key spelled two ways in two chunks of one statement in order: the last record wins', async () => {
    const table = newTable();
    const s = sink({
      table,
      mode: 'upsert',
      key: ['at'],
      columns: { at: 'timestamptz', v: 'text', pad: 'text' },
    });
    await s.open();
    // Two rows of 8.5 MB cannot share a chunk (16 MB at most): records 0 and 2, merged, in the first, record
    // 1 in the second, which in chunk order would win.
    const pad = 'x'.repeat(8_500_000);
    const result = await s.write(
      batchOf([
        record(0, 0, { at: '2026-01-01T00:00:00Z', v: 'first', pad }),
        record(0, 1, { at: '2026-01-01T01:00:00+01:00', v: 'second', pad }),
        record(0, 2, { at: '2026-01-01T00:00:00Z', v: 'last' }),
      ]),
    );
    assert.equal(result.rejected?.length ?? 0, 0);
    assert.deepEqual(await query(`SELECT v, length(pad) AS pad FROM ${table}`), [
      { v: 'last', pad: pad.length },
    ]);
  });

  it('asks PostgreSQL for keys spelled two ways once for a batch of several statements, never for one', async () => {
    /** The SQL the sinks send while `work` runs. */
    const sentBy = async (work: () => Promise<unknown>): Promise<string[]> => {
      const spy = mock.method(pg.Client.prototype, 'query');
      try {
        await work();
      } finally {
        spy.mock.restore();
      }
      // The SQL is the first argument, as text or in a query config.
      return spy.mock.calls
        .filter((call) => call.this !== admin)
        .map((call) => call.arguments[0] as string | pg.QueryConfig)
        .map((query) => (typeof query === 'string' ? query : query.text));
    };
    const grouping = (sent: string[]) => sent.filter((sql) => sql.includes('json_array_elements')).length;
    const inserts = (sent: string[]) => sent.filter((sql) => sql.includes('json_populate_recordset')).length;
    const table = newTable();
    await admin.query(
      `CREATE TABLE ${table} (id bigint PRIMARY KEY, v text, note text, updated_at timestamptz)`,
    );
    const s = sink({ table, mode: 'upsert', key: ['id'] });
    await s.open();
    const one = await sentBy(() => s.write(batchOf(range(0, 0, 100, (offset) => ({ id: offset, v: 'a' })))));
    assert.deepEqual([grouping(one), inserts(one)], [0, 1]);
    // Every other record has a note: two column sets, two INSERT statements.
    const twoStatements = (from: number, v: string) =>
      batchOf(
        range(0, from, from + 100, (offset) => ({
          id: offset % 150,
          v,
          ...(offset % 2 ? { note: 'n' } : {}),
        })),
      );
    const two = await sentBy(() => s.write(twoStatements(100, 'b')));
    assert.deepEqual([grouping(two), inserts(two)], [1, 2]);
    // PostgreSQL cannot tell with a BEFORE INSERT trigger: statement order, not every record alone.
    await admin.query(
      `CREATE FUNCTION ${table}_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$`,
    );
    await admin.query(
      `CREATE TRIGGER touched BEFORE INSERT OR UPDATE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_touch()`,
    );
    const touched = await sentBy(() => s.write(twoStatements(200, 'c')));
    assert.deepEqual([grouping(touched), inserts(touched)], [0, 2]);
    const [rows] = await query<{ n: string; touched: string }>(
      `SELECT count(*) AS n, count(updated_at) AS touched FROM ${table}`,
    );
    assert.deepEqual(rows, { n: '150', touched: '100' });
  });

  it('sends a record past a limit of the table (an index entry too large) to the dead-letter queue', async () => {
    const table = newTable();
    await admin.query(`CREATE TABLE ${table} (id bigint, name text)`);
    await admin.query(`CREATE INDEX ON ${table} (name)`);
    const s = sink({ table });
    await s.open();
    const big = randomBytes(12_000).toString('base64'); // incompressible, over a btree entry's limit
    const result = await s.write(
      batchOf([
        record(0, 0, { id: 1, name: 'ok' }),
        record(0, 1, { id: 2, name: big }),
        record(0, 2, { id: 3, name: 'ok' }),
      ]),
    );
    assert.deepEqual(
      result.rejected?.map((r) => r.record.offset),
      [1],
    );
    assert.match(result.rejected?.[0]?.error ?? '', /index row/);
    assert.deepEqual(await query(`SELECT id FROM ${table} ORDER BY id`), [{ id: '1' }, { id: '3' }]);
  });

  it('refuses to upsert into a table without a unique index on the key, at open, permanently', async () => {
    const table = newTable();
    await admin.query(`CREATE TABLE ${table} (id bigint, status text)`);
    const s = sink({ table, mode: 'upsert', key: ['id'] });
    await assert.rejects(s.open(), (error: unknown) => {
      assert.ok(isTributaryError(error, 'INVALID_INPUT'), String(error));
      assert.equal(error.retryable, false);
      assert.match(error.message, /no primary key or unique index on \(id\)/);
      assert.match(error.hint ?? '', /CREATE UNIQUE INDEX/);
      return true;
    });
    await admin.query(`CREATE UNIQUE INDEX ON ${table} (id)`);
    await sink({ table, mode: 'upsert', key: ['id'] }).open();
  });

  it('refuses a declared column the existing table lacks, and a missing table without create_table', async () => {
    const table = newTable();
    await admin.query(`CREATE TABLE ${table} (id bigint)`);
    await assert.rejects(
      sink({ table, columns: { id: 'bigint', name: 'text' } }).open(),
      (error: unknown) => {
        assert.ok(isTributaryError(error, 'INVALID_INPUT') && !error.retryable);
        assert.match(error.message, /has no column "name"/);
        return true;
      },
    );
    await assert.rejects(sink({ table: newTable(), create_table: false }).open(), (error: unknown) => {
      assert.ok(isTributaryError(error, 'INVALID_INPUT') && !error.retryable);
      assert.match(error.message, /does not exist/);
      return true;
    });
  });

  it('commits rows and positions atomically: a failure just before COMMIT leaves neither', async () => {
    const table = newTable();
    let fail = true;
    const s = sink(
      { table },
      {
        beforeCommit: async () => {
          if (fail) throw new Error('simulated crash before commit');
        },
      },
    );
    await s.open();
    const batch = batchOf(range(0, 0, 100));
    await assert.rejects(s.write(batch), /simulated crash/);
    // Not even the table the write created is there: DDL is in the same transaction.
    const [exists] = await query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [table]);
    assert.equal(exists?.t, null);
    const positions = await query(`SELECT * FROM ${schema}.tributary_sink_positions WHERE sink = $1`, [
      s.name,
    ]);
    assert.deepEqual(positions, []);
    fail = false;
    await s.write(batch);
    const [count] = await query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
    assert.equal(count?.n, 100);
  });

  it('commits rows and positions atomically: a connection killed just before COMMIT leaves neither, retryably', async () => {
    const table = newTable();
    const setup = sink({ table });
    await setup.open();
    await setup.write(batchOf(range(0, 0, 10)));
    let kill = true;
    const s = sink(
      { table },
      {
        beforeCommit: async ({ backendPid }) => {
          if (!kill) return;
          kill = false;
          await admin.query('SELECT pg_terminate_backend($1)', [backendPid]);
        },
      },
    );
    assert.deepEqual(asObject(await s.open()), { 0: 10 });
    const batch = batchOf(range(0, 10, 60));
    await assert.rejects(s.write(batch), (error: unknown) => {
      assert.ok(isTributaryError(error, 'SERVICE_UNAVAILABLE'), String(error));
      assert.equal(error.retryable, true);
      assert.ok(!error.message.includes(`:${postgres.info?.password}@`), 'no password in the message');
      return true;
    });
    const [count] = await query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
    assert.equal(count?.n, 10);
    const [position] = await query<{ next_offset: string }>(
      `SELECT next_offset FROM ${schema}.tributary_sink_positions WHERE sink = $1`,
      [s.name],
    );
    assert.equal(position?.next_offset, '10');
    // The runtime's retry: the pool replaces the dead connection.
    await s.write(batch);
    const [after] = await query<{ n: number; d: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM ${table}`,
    );
    assert.deepEqual(after, { n: 60, d: 60 });
  });

  it('does not duplicate a batch offered again after a crash, nor the overlap of a larger one', async () => {
    const table = newTable();
    const first = sink({ table });
    await first.open();
    await first.write(batchOf([...range(0, 0, 10), ...range(1, 0, 5)]));
    await first.write(batchOf([...range(0, 10, 20), ...range(1, 5, 8)]));
    // "Crash": the runtime did not learn that the second batch committed, and a new process offers it again.
    const restarted = sink({ table });
    assert.deepEqual(asObject(await restarted.open()), { 0: 20, 1: 8 });
    await restarted.write(batchOf([...range(0, 10, 20), ...range(1, 5, 8)]));
    // A batch that overlaps what is committed: only the new part is written.
    await restarted.write(batchOf([...range(0, 15, 25), ...range(1, 0, 10)]));
    const [count] = await query<{ n: number; d: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM ${table}`,
    );
    assert.deepEqual(count, { n: 35, d: 35 });
    assert.deepEqual(asObject(await sink({ table }).open()), { 0: 25, 1: 10 });
  });

  it('writes a batch once when two workers race on the same sink, and never moves positions back', async () => {
    const table = newTable();
    const a = sink({ table });
    const b = sink({ table });
    await Promise.all([a.open(), b.open()]);
    const batch = batchOf(range(0, 0, 2000));
    await Promise.all([a.write(batch), b.write(batch), a.write(batch)]);
    const [count] = await query<{ n: number; d: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM ${table}`,
    );
    assert.deepEqual(count, { n: 2000, d: 2000 });
    // A stale worker committing an older batch does not move the positions back.
    await b.write(batchOf(range(0, 0, 10)));
    assert.deepEqual(asObject(await sink({ table }).open()), { 0: 2000 });
  });

  it('sends records the table refuses to the dead-letter queue and commits the rest, remembering them for screen', async () => {
    const table = newTable();
    const s = sink({ table });
    await s.open();
    await s.write(batchOf([record(0, 0, { id: 1, amount: 1.5 })]));
    const batch = batchOf(
      Array.from({ length: 1000 }, (_, i) =>
        record(0, 1 + i, {
          id: 2 + i,
          // Every 97th amount is not a number; one record has a field the table lacks.
          amount: i % 97 === 3 ? 'lots' : i / 4,
          ...(i === 500 ? { surprise: true } : {}),
        }),
      ),
    );
    const result = await s.write(batch);
    const rejected = (result.rejected ?? []).map((r) => r.record.offset).sort((x, y) => x - y);
    const expected = [
      ...Array.from({ length: 1000 }, (_, i) => i)
        .filter((i) => i % 97 === 3 || i === 500)
        .map((i) => 1 + i),
    ];
    assert.deepEqual(rejected, expected);
    const messages = (result.rejected ?? []).map((r) => r.error);
    assert.ok(
      messages.some((m) => m.includes('invalid input syntax for type double precision')),
      messages[0],
    );
    assert.ok(
      messages.some((m) => m.includes('"surprise"')),
      'the unknown field is named',
    );
    assert.ok((result.rejected ?? []).every((r) => r.stage === s.name));
    const [count] = await query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
    assert.equal(count?.n, 1 + 1000 - expected.length);
    // After a crash between this commit and the DLQ's, the runtime asks again: same answer, nothing written.
    const restarted = sink({ table });
    await restarted.open();
    const screened = await restarted.screen(batch.records);
    assert.deepEqual(
      screened.map((r) => [r.record.offset, r.error]),
      (result.rejected ?? [])
        .map((r) => [r.record.offset, r.error])
        .sort(([x], [y]) => Number(x) - Number(y)),
    );
    // The next batch with records replaces what is remembered.
    await restarted.write(batchOf([record(0, 1001, { id: 5000, amount: 1 })]));
    assert.deepEqual(await restarted.screen(batch.records), []);
  });

  it("remembers each partition's last rejections, whatever other partitions (other lanes) commit after", async () => {
    const table = newTable();
    const s = sink({ table });
    await s.open();
    await s.write(batchOf([record(2, 0, { id: 0, amount: 1.5 })])); // the table, amount a number
    const lane0 = batchOf([record(0, 0, { id: 1, amount: 'lots' }), record(0, 1, { id: 2, amount: 1 })]);
    assert.equal((await s.write(lane0)).rejected?.length, 1);
    // Another lane's batch commits before lane 0's DLQ does; then the process dies.
    assert.equal((await s.write(batchOf([record(1, 0, { id: 3, amount: 2 })]))).rejected, undefined);
    const restarted = sink({ table });
    await restarted.open();
    assert.deepEqual(
      (await restarted.screen(lane0.records)).map((r) => r.record.offset),
      [0],
    );
    // Lane 0's next batch replaces its partition's rejections.
    await restarted.write(batchOf([record(0, 2, { id: 4, amount: 3 })]));
    assert.deepEqual(await restarted.screen(lane0.records), []);
  });

  it('ignores fields without a column when told to', async () => {
    const table = newTable();
    await admin.query(`CREATE TABLE ${table} (id bigint)`);
    const s = sink({ table, extra_fields: 'ignore' });
    await s.open();
    assert.deepEqual(await s.write(batchOf([record(0, 0, { id: 1, surprise: 'x' })])), {});
    assert.deepEqual(await query(`SELECT * FROM ${table}`), [{ id: '1' }]);
  });

  it('picks up a column added while it runs instead of rejecting records that use it', async () => {
    const table = newTable();
    const s = sink({ table });
    await s.open();
    await s.write(batchOf([record(0, 0, { id: 1 })]));
    await admin.query(`ALTER TABLE ${table} ADD COLUMN color text`);
    assert.deepEqual(await s.write(batchOf([record(0, 1, { id: 2, color: 'red' })])), {});
    assert.deepEqual(await query(`SELECT id, color FROM ${table} ORDER BY id`), [
      { id: '1', color: null },
      { id: '2', color: 'red' },
    ]);
  });

  it('recreates a table dropped while it runs, after a retryable failure', async () => {
    const table = newTable();
    const s = sink({ table });
    await s.open();
    await s.write(batchOf([record(0, 0, { id: 1 })]));
    await admin.query(`DROP TABLE ${table}`);
    const batch = batchOf([record(0, 1, { id: 2 })]);
    await assert.rejects(s.write(batch), (error: unknown) => isTributaryError(error) && error.retryable);
    await s.write(batch);
    assert.deepEqual(await query(`SELECT id FROM ${table}`), [{ id: '2' }]);
  });

  it('reports a statement that times out waiting for a lock as retryable', async () => {
    const table = newTable();
    const s = sink({ table, statement_timeout: '300ms' });
    await s.open();
    await s.write(batchOf([record(0, 0, { id: 1 })]));
    await admin.query('BEGIN');
    await admin.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
    try {
      await assert.rejects(s.write(batchOf([record(0, 1, { id: 2 })])), (error: unknown) => {
        assert.ok(isTributaryError(error, 'SERVICE_UNAVAILABLE'), String(error));
        assert.equal(error.retryable, true);
        assert.equal(error.context.sqlstate, '57014');
        return true;
      });
    } finally {
      await admin.query('ROLLBACK');
    }
    await s.write(batchOf([record(0, 1, { id: 2 })]));
  });

  it('reports an unreachable server as retryable, without the password', async () => {
    const port = await freePort();
    const s = sink({
      table: newTable(),
      url: `postgresql://app:s3cret-pw@127.0.0.1:${port}/db`,
      connect_timeout: '2s',
    });
    await assert.rejects(s.open(), (error: unknown) => {
      assert.ok(isTributaryError(error, 'SERVICE_UNAVAILABLE'), String(error));
      assert.equal(error.retryable, true);
      assert.ok(!JSON.stringify({ m: error.message, c: error.context, h: error.hint }).includes('s3cret'));
      assert.match(error.message, new RegExp(`postgresql://app@127\\.0\\.0\\.1:${port}/db`));
      return true;
    });
  });

  it('reports an unknown user or database as permanent, with a hint, without the password', async () => {
    const server = new URL(url);
    const badUser = new URL(url);
    badUser.username = 'no_such_user';
    badUser.password = 's3cret-pw';
    const badDatabase = new URL(url);
    badDatabase.pathname = '/no_such_database';
    for (const [target, hint] of [
      [badUser, /user and password/],
      [badDatabase, /Create the database/],
    ] as const) {
      await assert.rejects(sink({ table: newTable(), url: target.toString() }).open(), (error: unknown) => {
        assert.ok(isTributaryError(error, 'SERVICE_UNAVAILABLE'), String(error));
        assert.equal(error.retryable, false);
        assert.match(error.hint ?? '', hint);
        assert.ok(!JSON.stringify({ m: error.message, c: error.context }).includes('s3cret'));
        assert.ok(!error.message.includes(`:${server.password}@`));
        return true;
      });
    }
  });

  it(
    'holds exactly the committed records after a writer is killed with -9, again and again',
    { timeout: 120_000 },
    async () => {
      const table = newTable();
      const writer = `
      import { pino } from 'pino';
      import { PostgresSink, postgresSinkSchema } from ${JSON.stringify(new URL('../../src/sinks/postgres/index.ts', import.meta.url).href)};
      const sink = new PostgresSink({
        config: postgresSinkSchema.parse({ type: 'postgres', url: ${JSON.stringify(url)}, table: ${JSON.stringify(table)} }),
        pipeline: 'orders', projectRoot: '.', logger: pino({ level: 'silent' }),
      });
      const next = await sink.open();
      for (;;) {
        const records = [];
        for (let p = 0; p < 3; p++) {
          const from = next.get(p) ?? 0;
          const count = Math.floor(Math.random() * 300);
          for (let o = from; o < from + count; o++) {
            records.push({ value: { p, o }, key: null, partition: p, offset: o, timestamp: 0, headers: {} });
          }
          next.set(p, from + count);
        }
        await sink.write({ records, positions: new Map(next) });
        process.stdout.write(JSON.stringify([...next]) + '\\n');
      }`;
      for (let round = 0; round < 6; round++) {
        const child = spawn(process.execPath, ['--input-type=module', '-e', writer], {
          cwd: import.meta.dirname,
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        const exited = new Promise((resolve) => child.once('exit', resolve));
        let acknowledged = new Map<number, number>();
        const target = 3 + Math.floor(Math.random() * 20);
        let lines = 0;
        await new Promise<void>((resolve) => {
          createInterface({ input: child.stdout }).on('line', (line) => {
            acknowledged = new Map(JSON.parse(line) as Array<[number, number]>);
            if (++lines === target) {
              setTimeout(() => child.kill('SIGKILL'), Math.random() * 10);
              resolve();
            }
          });
          child.once('exit', () => resolve());
        });
        await exited;
        assert.equal(child.signalCode, 'SIGKILL', `round ${round}: the writer was killed, not crashed`);

        const positions = await sink({ table }).open();
        const rows = await query<{ p: number; n: number; d: number; max: number }>(
          `SELECT (p)::int AS p, count(*)::int AS n, count(DISTINCT o)::int AS d, max(o)::int AS max
           FROM ${table} GROUP BY p ORDER BY p`,
        );
        const committed = [...positions.values()].reduce((a, b) => a + b, 0);
        assert.equal(
          rows.reduce((sum, r) => sum + r.n, 0),
          committed,
          `round ${round}: the table holds exactly the committed records`,
        );
        for (const { p, n, d, max } of rows) {
          assert.ok(
            (positions.get(p) ?? 0) >= (acknowledged.get(p) ?? 0),
            `round ${round}: a commit was lost`,
          );
          assert.deepEqual(
            { n, d, max },
            { n: positions.get(p), d: positions.get(p), max: positions.get(p)! - 1 },
          );
        }
      }
    },
  );

  it('checks for doctor without changing anything: reachable, permitted, compatible', async () => {
    const definition: SinkDefinition = postgresSinkDefinition;
    const context = {
      pipeline: 'orders',
      sourceTopic: 'orders',
      projectRoot: '.',
      log: {} as Log,
      logger,
      resources: createResources(),
    };
    const check = (config: Record<string, unknown>) =>
      definition.check!(definition.schema.parse({ type: 'postgres', url, ...config }), context);
    const fresh = `${schema}.checked_${randomUUID().slice(0, 8)}`;
    const results = await check({ table: fresh, positions_table: `${schema}.pos_${tables}` });
    assert.deepEqual(
      results.map((r) => r.status),
      ['pass', 'pass', 'pass', 'pass'],
      JSON.stringify(results),
    );
    assert.match(results[1]!.detail, /does not exist yet/);
    const [created] = await query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [fresh]);
    assert.equal(created?.t, null, 'nothing was created');

    // A user that may read but not write, nor create tables.
    const role = `sink_ro_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
    const table = newTable();
    await admin.query(`CREATE TABLE ${table} (id bigint)`);
    await admin.query(`CREATE ROLE ${role} LOGIN`);
    try {
      await admin.query(`GRANT USAGE ON SCHEMA ${schema} TO ${role}; GRANT SELECT ON ${table} TO ${role}`);
      const limited = new URL(url);
      limited.username = role;
      limited.password = '';
      const denied = await check({ table, url: limited.toString(), positions_table: 'no_pos' });
      assert.deepEqual(
        denied.map((r) => r.status),
        ['pass', 'fail', 'fail', 'fail'],
        JSON.stringify(denied),
      );
      assert.match(denied[1]!.detail, /lacks INSERT/);
      assert.match(denied[2]!.fix ?? '', /GRANT CREATE ON SCHEMA/);
      const upsert = await check({ table, mode: 'upsert', key: ['id'] });
      assert.equal(upsert[1]?.status, 'fail');
      assert.match(upsert[1]?.detail ?? '', /no primary key or unique index/);
    } finally {
      await admin.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }

    const port = await freePort();
    const unreachable = await check({
      table,
      url: `postgresql://app:s3cret@127.0.0.1:${port}/db`,
      connect_timeout: '2s',
    });
    assert.deepEqual(
      unreachable.map((r) => r.status),
      ['fail'],
    );
    assert.ok(!JSON.stringify(unreachable).includes('s3cret'));
  });

  it('quotes names, keeps their case, and refuses names that are not plain identifiers', async () => {
    // Reserved words and mixed case are fine: every name is quoted.
    const table = `${schema}.Order`;
    const s = sink({ table, columns: { select: 'text', User: 'bigint' } });
    await s.open();
    await s.write(batchOf([record(0, 0, { select: 'x', User: 7 })]));
    assert.deepEqual(await query(`SELECT "select", "User" FROM ${schema}."Order"`), [
      { select: 'x', User: '7' },
    ]);

    for (const hostile of [
      `${schema}.t"; DROP TABLE x; --`,
      'a.b.c',
      'x y',
      '',
      `${schema}.${'t'.repeat(64)}`,
    ]) {
      const result = postgresSinkSchema.safeParse({ type: 'postgres', url, table: hostile });
      assert.equal(result.success, false, hostile);
    }
    const columns = postgresSinkSchema.safeParse({
      type: 'postgres',
      url,
      table: 'x',
      columns: { 'a"b': 'text', ok: 'text); DROP TABLE x; --' },
    });
    assert.deepEqual(
      columns.error?.issues.map((i) => i.path.join('.')),
      ['columns.a"b', 'columns.ok'],
    );
    assert.equal(
      postgresSinkSchema.safeParse({ type: 'postgres', url, table: 'x', mode: 'upsert', key: ['a;b'] })
        .success,
      false,
    );

    // Field names from the data that are not identifiers never become columns; such records are rejected.
    const inferred = newTable();
    const t = sink({ table: inferred });
    await t.open();
    const result = await t.write(
      batchOf([
        record(0, 0, { id: 1, 'bad"; DROP TABLE x; --': 1 }),
        record(0, 1, { id: 2, 'with space': null }),
      ]),
    );
    assert.deepEqual(
      result.rejected?.map((r) => r.record.offset),
      [0],
    );
    assert.deepEqual(await query(`SELECT * FROM ${inferred}`), [{ id: '2' }]);
  });
});
