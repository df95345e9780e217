/**
 * PostgreSQL CDC into Iceberg, exactly once, the hard way (issue 6; docs/cdc.md). A randomized workload of
 * inserts, updates and deletes over three tables — TOAST-sized values, NULLs, every mapped type, a column
 * added mid-stream, a large transaction, primary keys that change — runs while:
 *  - the source (`tributary cdc run`) is killed with -9 at random moments and restarted;
 *  - the pipelines (`tributary run <p> --once`: three silver mirrors in upsert mode, one bronze history)
 *    are killed with -9 at random moments;
 *  - PostgreSQL is restarted once (stop/start through the harness's definition; a private instance) and
 *    every connection is cut once.
 * Afterwards each silver table equals `SELECT *` of its source table, and bronze holds every change exactly
 * once, in commit order. The slot's confirmed LSN stays behind what the pipelines have not committed, and
 * reaches the end once they have.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import {
  Background,
  cdcStatus,
  cli,
  lsn,
  makeProject,
  postgresSkipReason,
  PrivatePostgres,
  query,
  removeProjects,
  sourceYaml,
  waitFor,
} from './cdc-support.ts';

const skip = await postgresSkipReason();
const CHANGES = Number(process.env.TRIBUTARY_CDC_CHANGES ?? 2500);
const PIPELINE_KILLS = Number(process.env.TRIBUTARY_CDC_KILLS ?? 6);
const SOURCE_KILLS = 3;

/** mulberry32: a seeded generator, so a failure can be replayed with TRIBUTARY_CDC_SEED. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const SEED = Number(process.env.TRIBUTARY_CDC_SEED ?? Date.now() % 1_000_000);
const rng = generator(SEED);
const pick = <T>(items: readonly T[]): T => items[Math.floor(rng() * items.length)]!;
const maybe = <T>(value: T, nullChance = 0.15): T | null => (rng() < nullChance ? null : value);
const int = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** Incompressible text, so that large values are stored out of line (TOAST) rather than compressed inline. */
const toastText = () => randomBytes(int(6_000, 24_000)).toString('base64');
const micros = () => pad(int(0, 999_999), 6);
const timestamp = () =>
  `20${pad(int(10, 40))}-${pad(int(1, 12))}-${pad(int(1, 28))} ${pad(int(0, 23))}:${pad(int(0, 59))}:${pad(int(0, 59))}.${micros()}`;

const SCHEMA = `
  create type mood as enum ('happy', 'sad', 'so-so');
  create table public.orders (
    id bigint primary key, customer text not null, amount numeric(12, 2), qty smallint, score double precision,
    ratio real, active boolean, note text, created timestamptz, day date, at time, local timestamp, uid uuid,
    payload jsonb, doc json, tags text[], nums int[], feeling mood, dur interval, blob bytea, big bigint,
    price numeric);
  create table public.items (order_id bigint, line int, sku uuid, qty int, descr text, primary key (order_id, line));
  alter table public.items replica identity full;
  create table public.accounts (code text primary key, balance numeric(20, 4), doc jsonb, history text);
  alter table public.accounts replica identity full;`;

const ORDER_COLUMNS = [
  'customer',
  'amount',
  'qty',
  'score',
  'ratio',
  'active',
  'note',
  'created',
  'day',
  'at',
  'local',
  'uid',
  'payload',
  'doc',
  'tags',
  'nums',
  'feeling',
  'dur',
  'blob',
  'big',
  'price',
] as const;

/** A random value for an orders column, as text for a parameter (with the cast in SQL). */
function orderValue(column: (typeof ORDER_COLUMNS)[number], id: number): unknown {
  switch (column) {
    case 'customer':
      return `customer ${id} ${pick(['ü', 'ß', '日本', "O'Brien", 'a\tb'])}`;
    case 'amount':
      return maybe((rng() * 2_000_000 - 1_000_000).toFixed(2));
    case 'qty':
      return maybe(int(-32768, 32767));
    case 'score':
      return maybe(pick([0.1, -2.5, 1e300, rng() * 1e6, -rng()]));
    case 'ratio':
      return maybe(pick(['0.1', '-3.25', '1e30', String(Math.fround(rng()))]));
    case 'active':
      return maybe(rng() < 0.5);
    case 'note':
      return maybe(rng() < 0.35 ? toastText() : `short note ${id}`);
    case 'created':
      return maybe(`${timestamp()}${pick(['+00', '+05:30', '-08'])}`);
    case 'day':
      return maybe(`${int(1990, 2040)}-${pad(int(1, 12))}-${pad(int(1, 28))}`);
    case 'at':
      return maybe(`${pad(int(0, 23))}:${pad(int(0, 59))}:${pad(int(0, 59))}.${micros()}`);
    case 'local':
      return maybe(timestamp());
    case 'uid':
      return maybe([8, 4, 4, 4, 12].map((n) => randomBytes(n / 2).toString('hex')).join('-'));
    case 'payload':
      return maybe(
        JSON.stringify({ id, tags: ['x', 'y'], nested: { n: rng(), s: 'quote " and \\ backslash' } }),
      );
    case 'doc':
      return maybe(`{ "kept" :  "as written", "n" : ${id} }`);
    case 'tags':
      return maybe(
        `{${Array.from({ length: int(0, 4) }, () => pick(['plain', '"with space"', '"quote\\""', '"NULL"', 'NULL', '"comma,x"', '"{brace}"'])).join(',')}}`,
      );
    case 'nums':
      return maybe(
        `{${Array.from({ length: int(0, 5) }, () => pick([String(int(-1000, 1000)), 'NULL'])).join(',')}}`,
      );
    case 'feeling':
      return maybe(pick(['happy', 'sad', 'so-so']));
    case 'dur':
      return maybe(pick(['1 day 02:03:04.5', '-3 months', '00:00:00.000001', '2 years 1 mon 3 days']));
    case 'blob':
      return maybe(`\\x${randomBytes(int(0, 64)).toString('hex')}`);
    case 'big':
      return maybe(
        pick(['9223372036854775807', '-9223372036854775808', '9007199254740993', String(int(-1e9, 1e9))]),
      );
    case 'price':
      return maybe(pick(['123.456789012345678901234567890', '0', '-1e-20', '99999999999999999999999']));
  }
}

const CASTS: Record<string, string> = {
  amount: 'numeric',
  qty: 'smallint',
  score: 'float8',
  ratio: 'real',
  active: 'boolean',
  created: 'timestamptz',
  day: 'date',
  at: 'time',
  local: 'timestamp',
  uid: 'uuid',
  payload: 'jsonb',
  doc: 'json',
  tags: 'text[]',
  nums: 'int[]',
  feeling: 'mood',
  dur: 'interval',
  blob: 'bytea',
  big: 'bigint',
  price: 'numeric',
};
const cast = (column: string, i: number) => `$${i}${CASTS[column] ? `::${CASTS[column]}` : ''}`;

interface Expected {
  readonly table: string;
  readonly op: 'insert' | 'update' | 'delete';
  readonly key: string;
}

/** The workload: random changes, each recorded in commit order as the change records it must produce. */
class Workload {
  readonly expected: Expected[] = [];
  readonly orders = new Set<number>();
  readonly items = new Map<string, [number, number]>();
  readonly accounts = new Set<string>();
  nextOrder = 1;
  hasRegion = false;
  #pending: Expected[] = [];
  client: pg.Client;

  constructor(client: pg.Client) {
    this.client = client;
  }

  /** Forgets what was recorded so far (changes from before the source existed). */
  reset(): void {
    this.expected.length = 0;
    this.#pending = [];
  }

  async #run(sql: string, params: unknown[], changes: Expected[]): Promise<void> {
    await this.client.query(sql, params);
    this.#pending.push(...changes);
  }

  /** Statements outside an explicit transaction commit one by one. */
  commit(): void {
    this.expected.push(...this.#pending);
    this.#pending = [];
  }

  async insertOrder(): Promise<void> {
    const id = this.nextOrder++;
    const columns = ORDER_COLUMNS.filter((c) => c === 'customer' || rng() < 0.9);
    const values = columns.map((c) => orderValue(c, id));
    await this.#run(
      `insert into orders (id, ${columns.join(', ')}${this.hasRegion ? ', region' : ''}) values ($1, ${columns.map((c, i) => cast(c, i + 2)).join(', ')}${this.hasRegion ? `, '${pick(['eu', 'us'])}'` : ''})`,
      [id, ...values],
      [{ table: 'public.orders', op: 'insert', key: JSON.stringify({ id }) }],
    );
    this.orders.add(id);
  }

  async updateOrder(): Promise<void> {
    const id = pick([...this.orders]);
    if (id === undefined) return this.insertOrder();
    // Often just one small column: the TOASTed note is then unchanged (REPLICA IDENTITY DEFAULT: read back).
    const columns: Array<(typeof ORDER_COLUMNS)[number]> =
      rng() < 0.5 ? ['amount'] : ORDER_COLUMNS.filter((c) => c !== 'customer' && rng() < 0.3);
    if (columns.length === 0) columns.push('qty');
    const sets = columns.map((c, i) => `${c} = ${cast(c, i + 2)}`);
    if (this.hasRegion && rng() < 0.3) sets.push(`region = '${pick(['eu', 'us', 'apac'])}'`);
    await this.#run(
      `update orders set ${sets.join(', ')} where id = $1`,
      [id, ...columns.map((c) => orderValue(c, id))],
      [{ table: 'public.orders', op: 'update', key: JSON.stringify({ id }) }],
    );
  }

  async deleteOrder(): Promise<void> {
    const id = pick([...this.orders]);
    if (id === undefined) return;
    await this.#run(
      'delete from orders where id = $1',
      [id],
      [{ table: 'public.orders', op: 'delete', key: JSON.stringify({ id }) }],
    );
    this.orders.delete(id);
  }

  async itemChange(): Promise<void> {
    const r = rng();
    const existing = [...this.items.values()];
    if (r < 0.5 || existing.length === 0) {
      const key: [number, number] = [int(1, 400), int(1, 50)];
      if (this.items.has(key.join(':'))) return;
      await this.#run(
        'insert into items values ($1, $2, gen_random_uuid(), $3, $4)',
        [key[0], key[1], maybe(int(0, 100)), maybe(rng() < 0.2 ? toastText() : 'item')],
        [{ table: 'public.items', op: 'insert', key: JSON.stringify({ order_id: key[0], line: key[1] }) }],
      );
      this.items.set(key.join(':'), key);
    } else if (r < 0.8) {
      const [order, line] = pick(existing);
      await this.#run(
        'update items set qty = $3 where order_id = $1 and line = $2',
        [order, line, maybe(int(0, 100))],
        [{ table: 'public.items', op: 'update', key: JSON.stringify({ order_id: order, line }) }],
      );
    } else if (r < 0.9) {
      const [order, line] = pick(existing);
      const moved: [number, number] = [order, line + 1000];
      if (this.items.has(moved.join(':'))) return;
      // The primary key changes: a delete of the old key and an insert of the new one.
      await this.#run(
        'update items set line = $3 where order_id = $1 and line = $2',
        [order, line, moved[1]],
        [
          { table: 'public.items', op: 'delete', key: JSON.stringify({ order_id: order, line }) },
          { table: 'public.items', op: 'insert', key: JSON.stringify({ order_id: order, line: moved[1] }) },
        ],
      );
      this.items.delete(`${order}:${line}`);
      this.items.set(moved.join(':'), moved);
    } else {
      const [order, line] = pick(existing);
      await this.#run(
        'delete from items where order_id = $1 and line = $2',
        [order, line],
        [{ table: 'public.items', op: 'delete', key: JSON.stringify({ order_id: order, line }) }],
      );
      this.items.delete(`${order}:${line}`);
    }
  }

  async accountChange(): Promise<void> {
    const existing = [...this.accounts];
    const r = rng();
    if (r < 0.35 || existing.length === 0) {
      const code = `acct-${int(1, 100_000)}-${pick(['α', 'b', 'ç'])}`;
      if (this.accounts.has(code)) return;
      await this.#run(
        'insert into accounts values ($1, $2, $3, $4)',
        [code, maybe('12345.6789'), maybe('{"a": [1, null]}'), maybe(toastText())],
        [{ table: 'public.accounts', op: 'insert', key: JSON.stringify({ code }) }],
      );
      this.accounts.add(code);
    } else if (r < 0.9) {
      // Only the balance: the TOASTed history is unchanged (REPLICA IDENTITY FULL: taken from the old row).
      const code = pick(existing);
      await this.#run(
        'update accounts set balance = $2 where code = $1',
        [code, maybe((rng() * 1e6).toFixed(4))],
        [{ table: 'public.accounts', op: 'update', key: JSON.stringify({ code }) }],
      );
    } else {
      const code = pick(existing);
      await this.#run(
        'delete from accounts where code = $1',
        [code],
        [{ table: 'public.accounts', op: 'delete', key: JSON.stringify({ code }) }],
      );
      this.accounts.delete(code);
    }
  }

  async step(): Promise<void> {
    const r = rng();
    if (r < 0.3) await this.insertOrder();
    else if (r < 0.5) await this.updateOrder();
    else if (r < 0.56) await this.deleteOrder();
    else if (r < 0.85) await this.itemChange();
    else await this.accountChange();
  }

  /** Several changes in one transaction. */
  async transaction(steps: number): Promise<void> {
    await this.client.query('begin');
    for (let i = 0; i < steps; i++) await this.step();
    await this.client.query('commit');
    this.commit();
  }

  /** One transaction of `n` inserts (a large one: it spans several appends to the log). */
  async bulk(n: number): Promise<void> {
    const base = 100_000 + this.nextOrder * 10;
    await this.client.query('begin');
    await this.client.query(
      `insert into items select $1::bigint + g, 1, gen_random_uuid(), g, 'bulk' from generate_series(1, $2::int) g`,
      [base, n],
    );
    await this.client.query('commit');
    for (let g = 1; g <= n; g++) {
      this.expected.push({
        table: 'public.items',
        op: 'insert',
        key: JSON.stringify({ order_id: base + g, line: 1 }),
      });
      this.items.set(`${base + g}:1`, [base + g, 1]);
    }
  }

  async addColumn(): Promise<void> {
    await this.client.query('alter table orders add column region text');
    this.hasRegion = true;
  }
}

/** PostgreSQL rows of a table, each as canonical JSON (comparable with `icebergRows`). */
const PG_ROWS: Record<string, string> = {
  orders: `select json_build_object('id', id, 'customer', customer, 'amount', amount::text, 'qty', qty, 'score', score,
      'ratio', ratio::float8, 'active', active, 'note', md5(note), 'created', (extract(epoch from created) * 1000000)::bigint::text,
      'day', day::text, 'at', at::text, 'local', (extract(epoch from local) * 1000000)::bigint::text, 'uid', uid::text,
      'payload', payload::text, 'doc', doc::text, 'tags', to_json(tags), 'nums', to_json(nums), 'feeling', feeling::text,
      'dur', dur::text, 'blob', blob::text, 'big', big::text, 'price', price::text, 'region', region)::text as r from orders`,
  items: `select json_build_object('order_id', order_id, 'line', line, 'sku', sku::text, 'qty', qty, 'descr', md5(descr))::text as r from items`,
  accounts: `select json_build_object('code', code, 'balance', balance::text, 'doc', doc::text, 'history', md5(history))::text as r from accounts`,
};

const ICEBERG_ROWS: Record<string, string> = {
  orders: `select to_json(struct_pack(id := id, customer := customer, amount := amount::varchar, qty := qty, score := score,
      ratio := ratio::double, active := active, note := md5(note), created := epoch_us(created)::varchar, day := day::varchar,
      at := "at"::varchar, local := epoch_us("local")::varchar, uid := uid::varchar, payload := payload, doc := doc, tags := tags,
      nums := nums, feeling := feeling, dur := dur, blob := blob, big := big::varchar, price := price, region := region))::varchar as r
      from silver.orders`,
  items: `select to_json(struct_pack(order_id := order_id, line := line, sku := sku::varchar, qty := qty, descr := md5(descr)))::varchar as r
      from silver.items`,
  accounts: `select to_json(struct_pack(code := code, balance := balance::varchar, doc := doc, history := md5(history)))::varchar as r
      from silver.accounts`,
};

function canonical(rows: Array<Record<string, unknown>>): string[] {
  return rows
    .map((row) =>
      JSON.stringify(Object.fromEntries(Object.entries(JSON.parse(String(row.r)) as object).sort())),
    )
    .sort();
}

describe('postgres CDC into Iceberg, exactly once', { skip }, () => {
  let server: PrivatePostgres;
  let project: ReturnType<typeof makeProject>;

  before(async () => {
    server = await PrivatePostgres.start();
    project = makeProject('tributary-cdc-eo-');
  });

  after(async () => {
    Background.killAll();
    await server?.stop();
    removeProjects();
  });

  it(
    'mirrors three tables and keeps every change once, in order, through kills and a restart',
    { timeout: 15 * 60_000 },
    async () => {
      console.log(`cdc exactly-once: seed ${SEED} (TRIBUTARY_CDC_SEED to replay)`);
      const connect = async () => {
        const c = await server.client();
        await c.query(`set intervalstyle = 'iso_8601'`);
        return c;
      };
      let client = await connect();
      await client.query(SCHEMA);
      const workload = new Workload(client);
      // Rows from before the source exists reach the topic through the initial snapshot.
      for (let i = 0; i < 150; i++) await workload.insertOrder();
      for (let i = 0; i < 150; i++) await workload.itemChange();
      for (let i = 0; i < 40; i++) await workload.accountChange();
      const initialRows = workload.orders.size + workload.items.size + workload.accounts.size;
      workload.reset();

      const tables = ['public.orders', 'public.items', 'public.accounts'];
      project.write(
        'sources/shop.yaml',
        sourceYaml(server.proxy.port, tables, 'snapshot: {chunk_size: 100}\nmax_batch_records: 1000\n'),
      );
      const pipelines = ['orders', 'items', 'accounts'];
      const keys: Record<string, string> = { orders: '[id]', items: '[order_id, line]', accounts: '[code]' };
      for (const name of pipelines) {
        project.write(
          `pipelines/${name}.yaml`,
          [
            'source: {type: topic, topic: cdc.shop}',
            'transforms:',
            `  - {type: cdc, tables: [public.${name}]}`,
            'sinks:',
            `  - {type: iceberg, table: silver.${name}, mode: upsert, key: ${keys[name]}, delete_column: _deleted, schema: schemas/public.${name}.json}`,
            'dlq: {max: 1}',
            'batch: {max_records: 2000, interval: 100ms}',
            '',
          ].join('\n'),
        );
      }
      project.write(
        'pipelines/bronze.yaml',
        [
          'source: {type: topic, topic: cdc.shop}',
          'transforms:',
          '  - {type: cdc, format: change}',
          'sinks:',
          '  - {type: iceberg, table: bronze.changes}',
          'dlq: {max: 1}',
          'batch: {max_records: 5000, interval: 100ms}',
          '',
        ].join('\n'),
      );
      const schema = await cli(project.root, ['cdc', 'schema', 'shop', '--out', 'schemas']);
      assert.equal(schema.code, 0, schema.stderr);

      let source = new Background(project.root, ['cdc', 'run', 'shop']);
      await waitFor(
        () => `the initial snapshot; the source said:\n${source.output.slice(-4000)}`,
        async () => {
          const status = await cdcStatus(project.root, 'shop').catch(() => undefined);
          return status && status.snapshotted.length === 3 && status.snapshots.length === 0
            ? status
            : undefined;
        },
      );
      // Nothing is committed by the pipelines yet: the slot must not be confirmed past the first change.
      await sleep(1000);
      const firstRecord = await cli(project.root, ['topics', 'read', 'cdc.shop', '--limit', '1']);
      const firstLsn = firstRecord.stdout
        .trim()
        .split('\n')
        .map((line) =>
          lsn(
            (JSON.parse((JSON.parse(line) as { value: string }).value) as { commit_lsn: string }).commit_lsn,
          ),
        )
        .reduce((a, b) => (a < b ? a : b));
      const held = (
        await client.query<{ c: string }>(`select confirmed_flush_lsn::text as c from pg_replication_slots`)
      ).rows[0]!.c;
      assert.ok(lsn(held) <= firstLsn, `confirmed ${held} must not pass the first uncommitted change`);

      // The workload, with chaos alongside.
      let done = false;
      let pipelineKills = 0;
      let sourceKills = 0;
      let rounds = 0;
      const failures: string[] = [];
      const chaos = (async () => {
        while (!done) {
          rounds++;
          const runs = [];
          for (const p of [...pipelines, 'bronze']) {
            runs.push({ p, bg: new Background(project.root, ['run', p, '--once']) });
          }
          let victim: string | undefined;
          if (pipelineKills < PIPELINE_KILLS && rng() < 0.6) {
            await sleep(400 + rng() * 2500);
            const run = pick(runs);
            victim = run.p;
            await run.bg.kill('SIGKILL');
            pipelineKills++;
          }
          for (const { p, bg } of runs) {
            const code = await bg.exited;
            if (p !== victim && code !== 0)
              failures.push(`run ${p} exited ${code}:\n${bg.output.slice(-3000)}`);
          }
          if (sourceKills < SOURCE_KILLS && rng() < 0.35) {
            await source.kill('SIGKILL');
            sourceKills++;
            source = new Background(project.root, ['cdc', 'run', 'shop']);
          }
        }
      })();

      const events: Array<[number, () => Promise<void>]> = [
        [0.3, () => workload.bulk(3000)],
        [0.4, () => workload.addColumn()],
        [
          0.5,
          async () => {
            await client.end();
            await server.restart();
            client = await connect();
            workload.client = client;
            console.log('cdc exactly-once: PostgreSQL restarted');
          },
        ],
        [0.7, async () => server.proxy.cut()],
      ];
      for (let i = 0; i < CHANGES;) {
        while (events[0] && i >= events[0][0] * CHANGES) await events.shift()![1]();
        if (rng() < 0.1) {
          const n = int(2, 10);
          await workload.transaction(n);
          i += n;
        } else {
          await workload.step();
          workload.commit();
          i++;
        }
        if (i % 20 === 0) await sleep(50);
      }
      while (sourceKills < SOURCE_KILLS || pipelineKills < PIPELINE_KILLS) {
        await sleep(200);
        if (rounds > 60) break;
      }
      // A last change, to know when everything before it has arrived.
      await client.query(`insert into accounts values ('~sentinel', 1, null, null)`);
      workload.expected.push({
        table: 'public.accounts',
        op: 'insert',
        key: JSON.stringify({ code: '~sentinel' }),
      });
      const sentinelLsn = (await client.query<{ l: string }>('select pg_current_wal_lsn()::text as l'))
        .rows[0]!.l;
      done = true;
      await chaos;
      assert.deepEqual(failures, [], 'pipeline runs that were not killed succeed');

      await waitFor(
        () => `the sentinel in silver and bronze; the source said:\n${source.output.slice(-4000)}`,
        async () => {
          for (const p of [...pipelines, 'bronze']) {
            const bg = new Background(project.root, ['run', p, '--once']);
            const code = await bg.exited;
            assert.equal(code, 0, bg.output.slice(-3000));
          }
          const [silver] = await query(
            project.root,
            `select count(*)::int as n from silver.accounts where code = '~sentinel'`,
          );
          const [bronze] = await query(
            project.root,
            `select count(*)::int as n from bronze.changes where key like '%~sentinel%'`,
          );
          return Number(silver?.n) === 1 && Number(bronze?.n) === 1;
        },
        180_000,
        0,
      );

      // Silver equals the source tables.
      for (const table of pipelines) {
        const expected = canonical((await client.query<{ r: string }>(PG_ROWS[table]!)).rows);
        const actual = canonical(await query(project.root, ICEBERG_ROWS[table]!));
        const inIceberg = new Set(actual);
        const inPostgres = new Set(expected);
        const keyOf = (row: string) => {
          const { id, order_id, line, code } = JSON.parse(row) as Record<string, unknown>;
          return JSON.stringify(id ?? code ?? [order_id, line]);
        };
        const missing = expected.filter((row) => !inIceberg.has(row)).map(keyOf);
        const extra = actual.filter((row) => !inPostgres.has(row)).map(keyOf);
        assert.equal(
          actual.length,
          expected.length,
          `silver.${table}: row count; keys missing or different: ${missing.slice(0, 20).join(' ')}; extra or different: ${extra.slice(0, 20).join(' ')}`,
        );
        const diff = actual.findIndex((row, i) => row !== expected[i]);
        assert.equal(
          diff,
          -1,
          `silver.${table}: first difference\n  iceberg:    ${actual[diff]}\n  postgresql: ${expected[diff]}`,
        );
      }

      // Bronze: every change once, in commit order; the snapshot exactly once per row.
      const history = await query(
        project.root,
        `select "table", op, "key" from bronze.changes where op <> 'snapshot' order by commit_position, seq`,
      );
      const actualOps = history.map((r) => `${String(r.table)} ${String(r.op)} ${String(r.key)}`);
      const expectedOps = workload.expected.map((e) => `${e.table} ${e.op} ${e.key}`);
      assert.equal(actualOps.length, expectedOps.length, 'changes in bronze');
      const firstDiff = actualOps.findIndex((op, i) => op !== expectedOps[i]);
      assert.equal(
        firstDiff,
        -1,
        `bronze order differs at ${firstDiff}: ${actualOps[firstDiff]} vs ${expectedOps[firstDiff]}`,
      );
      const [counts] = await query(
        project.root,
        `select count(*) filter (where op = 'snapshot')::int as snapshots, count(*)::int as n,
              count(distinct (commit_position, seq))::int as positions from bronze.changes`,
      );
      assert.equal(Number(counts!.snapshots), initialRows, 'snapshot rows');
      assert.equal(Number(counts!.positions), Number(counts!.n), 'no change twice');
      for (const namespace of ['silver', 'bronze']) {
        const rejected = await query(project.root, `select count(*)::int as n from ${namespace}._dlq`).catch(
          () => [{ n: 0 }],
        );
        assert.equal(Number(rejected[0]?.n), 0, `${namespace}._dlq is empty`);
      }

      // Acknowledgement: with every pipeline committed, the slot is confirmed past the sentinel.
      await waitFor(
        'the slot confirmed past the last change',
        async () => {
          const row = (
            await client.query<{ c: string }>(
              'select confirmed_flush_lsn::text as c from pg_replication_slots',
            )
          ).rows[0];
          return row && lsn(row.c) >= lsn(sentinelLsn);
        },
        30_000,
      );
      assert.equal(await source.kill('SIGTERM'), 0, source.output.slice(-3000));
      await client.end();
      console.log(
        `cdc exactly-once: ${workload.expected.length} changes + ${initialRows} snapshot rows; ${pipelineKills} pipeline kills, ${sourceKills} source kills, 1 PostgreSQL restart, 1 cut; ${rounds} rounds`,
      );
    },
  );
});
