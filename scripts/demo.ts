/**
 * `npm run demo`: the whole platform on embedded defaults, on this machine.
 *
 * Creates a demo project in .tributary/demo (anew each run), starts `tributary up` (HTTP ingest, the
 * embedded log, a bronze and a silver pipeline, the SQLite catalog, gold models), feeds it page views and
 * orders through the HTTP API (a few percent invalid, so the DLQ has something to show), shows live
 * progress, and after the first full cycle prints the URLs, queries with their real output, and how to
 * open the catalog from pyiceberg and DuckDB. Ctrl-C stops it cleanly. `--duration <seconds>` stops it by
 * itself (for scripts and the test suite).
 *
 * Change data capture: when the test services' PostgreSQL runs or can be started (`npm run services --
 * start postgres`; its binaries installed), the demo also creates a small `orders` table in a database
 * `tributary_demo`, captures it with a postgres_cdc source inside `tributary up` (silver mirror + bronze
 * history), inserts, updates and deletes rows while running, and prints the table's count and sum next to
 * the mirror's. On exit it drops the demo's replication slot and database (an idle slot would keep WAL on
 * the server forever) and stops PostgreSQL if it started it; an earlier run's leftovers are dropped at the
 * start. Without PostgreSQL, or with `--no-cdc`, one line says how to enable that part.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { ensureService, freePort, readState, REPO_ROOT, run } from '../test/services/harness.ts';
import { postgres, type PostgresInfo } from '../test/services/postgres.ts';

const CLI = path.join(REPO_ROOT, 'bin', 'tributary.js');
const DIR = path.join(REPO_ROOT, '.tributary', 'demo');
const args = process.argv.slice(2);
const durationIndex = args.indexOf('--duration');
const duration = durationIndex >= 0 ? Number(args[durationIndex + 1]) * 1000 : Infinity;
const tty = process.stdout.isTTY === true;
const bold = (text: string) => (tty ? `\u001b[1m${text}\u001b[0m` : text);
const dim = (text: string) => (tty ? `\u001b[2m${text}\u001b[0m` : text);

/** The CDC part's PostgreSQL database, source and slot: the demo's own, dropped and made anew each run. */
const PG_DATABASE = 'tributary_demo';
const SOURCE = 'shop';
const SLOT = 'tributary_demo_shop';
/** The environment of every `tributary` process: the source's password comes from it, as in production. */
const env: Record<string, string> = { NO_COLOR: '1' };
/** Set when the demo ends: by --duration, or by a signal (`interrupted`). */
let stopping = false;
let interrupted = false;

async function tributary(...argv: string[]): Promise<string> {
  const result = await run(process.execPath, [CLI, ...argv], {
    cwd: DIR,
    env: { ...process.env, ...env },
  });
  if (result.code !== 0)
    throw new Error(`tributary ${argv.join(' ')} failed:\n${result.stderr || result.stdout}`);
  return result.stdout;
}

function write(relative: string, content: string): void {
  const file = path.join(DIR, relative);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
}

function scaffold(port: number): void {
  rmSync(DIR, { recursive: true, force: true });
  write(
    'tributary.yaml',
    `project: demo
log:
  backend: embedded
  durability: fsync
server:
  host: 127.0.0.1
  port: ${port}
logging:
  level: warn
streams:
  pageviews:
    enrich:
      client_ip: truncated
      user_agent: true
  orders:
    schema: schemas/order.json
    on_invalid: dlq
`,
  );
  write(
    'schemas/pageview.json',
    JSON.stringify(
      {
        type: 'object',
        required: ['id', 'user_id', 'path', 'ts'],
        properties: {
          id: { type: 'string' },
          user_id: { type: 'string' },
          path: { type: 'string', pattern: '^/' },
          referrer: { type: 'string' },
          ts: { type: 'string', format: 'date-time' },
        },
      },
      null,
      2,
    ),
  );
  write(
    'schemas/order.json',
    JSON.stringify(
      {
        type: 'object',
        required: ['id', 'order_id', 'user_id', 'status', 'amount', 'ts'],
        properties: {
          id: { type: 'string' },
          order_id: { type: 'integer' },
          user_id: { type: 'string' },
          status: { enum: ['placed', 'paid', 'shipped', 'cancelled'] },
          amount: { type: 'number', minimum: 0 },
          ts: { type: 'string', format: 'date-time' },
        },
      },
      null,
      2,
    ),
  );
  write(
    'pipelines/pageviews_bronze.yaml',
    `description: Every page view, raw, as it arrived (bronze).
source:
  type: topic
  topic: events.pageviews
transforms:
  - type: validate
    schema: schemas/pageview.json
sinks:
  - type: iceberg
    table: bronze.pageviews
    partition: day(ts)
batch:
  interval: 1s
`,
  );
  write(
    'pipelines/orders_silver.yaml',
    `description: The latest state of every order (silver), upserted by order_id; personal data masked.
source:
  type: topic
  topic: events.orders
transforms:
  - type: mask
    fields:
      user_id: hash
    salt: demo-salt-change-me-in-production
  - type: drop
    fields: [_received_at]
sinks:
  - type: iceberg
    table: silver.orders
    mode: upsert
    key: [order_id]
batch:
  interval: 1s
`,
  );
  write(
    'models/gold/daily_revenue.sql',
    `/* ---
after: [silver.orders]
tests:
  - not_null: day
  - unique: day
  - expression: revenue >= 0
--- */
select date_trunc('day', ts) as day, count(*) as orders, round(sum(amount), 2) as revenue
from ref('silver.orders')
where status <> 'cancelled'
group by 1
`,
  );
  write(
    'models/gold/top_pages.sql',
    `/* ---
after: [bronze.pageviews]
--- */
select path, count(*) as views, count(distinct user_id) as visitors
from ref('bronze.pageviews')
group by 1
`,
  );
}

const PATHS = ['/', '/pricing', '/docs', '/blog/streaming-lakehouse', '/signup', '/docs/quickstart'];
let sequence = 0;

function pageview(now: Date): Record<string, unknown> {
  sequence++;
  const event: Record<string, unknown> = {
    id: `pv-${sequence}`,
    user_id: `user-${sequence % 97}`,
    path: PATHS[sequence % PATHS.length],
    referrer: sequence % 3 ? 'https://news.example.com' : undefined,
    ts: now.toISOString(),
  };
  if (sequence % 33 === 0) event.path = 'no-leading-slash'; // invalid: ~3%
  return event;
}

function order(now: Date): Record<string, unknown> {
  sequence++;
  const orderId = 1000 + (sequence % 400);
  const event: Record<string, unknown> = {
    id: `o-${sequence}`,
    order_id: orderId,
    user_id: `user-${orderId % 97}`,
    status: ['placed', 'paid', 'shipped', 'cancelled'][sequence % 4],
    amount: Math.round((5 + (orderId % 50) * 3.7) * 100) / 100,
    ts: now.toISOString(),
  };
  if (sequence % 29 === 0) event.amount = -1; // invalid: ~3%
  return event;
}

interface Counters {
  sent: number;
  accepted: number;
  invalid: number;
  failed: number;
}

async function send(
  url: string,
  key: string,
  events: Record<string, unknown>[],
  counters: Counters,
): Promise<void> {
  counters.sent += events.length;
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify(events),
    });
    const body = (await response.json().catch(() => ({}))) as {
      accepted?: number;
      rejected?: number;
      dlq?: number;
    };
    if (response.status === 202) {
      counters.accepted += body.accepted ?? 0;
      counters.invalid += events.length - (body.accepted ?? 0);
    } else counters.failed += events.length;
  } catch {
    counters.failed += events.length;
  }
}

function keyFrom(output: string): string {
  return (JSON.parse(output) as { key: string }).key;
}

async function metric(base: string, name: string): Promise<number> {
  const text = await fetch(`${base}/metrics`).then(
    (r) => r.text(),
    () => '',
  );
  return text
    .split('\n')
    .filter((line) => line.startsWith(name))
    .reduce((sum, line) => sum + (Number(line.split(' ').pop()) || 0), 0);
}

/** Rows as `tributary query` prints them: a header and columns padded to their widest value. */
function table(rows: ReadonlyArray<Record<string, unknown>>): string {
  const names = Object.keys(rows[0] ?? {});
  // PostgreSQL's numbers and text (numeric, bigint, timestamps arrive as strings from pg).
  const text = (v: unknown) => (v === null || v === undefined ? '' : `${v as string | number}`);
  const cells = [names, ...rows.map((row) => names.map((n) => text(row[n])))];
  const widths = names.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)));
  return cells
    .map((line) =>
      line
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

// ---------------------------------------------------------------------------------------------------------
// Change data capture from PostgreSQL

interface Cdc {
  readonly info: PostgresInfo;
  readonly started: boolean;
  /** Connected to the demo database; used by the mutations and the mirror check. */
  readonly client: pg.Client;
  readonly made: { inserts: number; updates: number; deletes: number; failed: number };
  nextId: number;
  paused: boolean;
  inFlight: Promise<void>;
}

function postgresInstalled(): boolean {
  const root = '/usr/lib/postgresql';
  return existsSync(root) && readdirSync(root).some((v) => existsSync(path.join(root, v, 'bin', 'postgres')));
}

/** The running test-services PostgreSQL, or one started now; else one line saying how to get the CDC part. */
async function startPostgres(): Promise<{ info: PostgresInfo; started: boolean } | string> {
  const how = '`npm run services -- start postgres` installs (apt-get, as root) and starts it';
  if (args.includes('--no-cdc'))
    return 'CDC from PostgreSQL is off (--no-cdc): run `npm run demo` without it to mirror an orders table too.';
  const state = readState<PostgresInfo>('postgres');
  if (state && (await postgres.isRunning(state.info))) return { info: state.info, started: false };
  if (!postgresInstalled())
    return `No PostgreSQL here, so no CDC part: ${how}; then run the demo again (docs/cdc.md).`;
  try {
    return { info: await ensureService(postgres, false), started: true };
  } catch (error) {
    const reason = (error as Error).message.split('\n')[0];
    return `PostgreSQL did not start (${reason}), so no CDC part: see \`npm run services -- start postgres\` and docs/cdc.md.`;
  }
}

function connectTo(info: PostgresInfo, database: string): Promise<pg.Client> {
  const client = new pg.Client({
    host: info.host,
    port: info.port,
    user: info.user,
    password: info.password,
    database,
  });
  client.on('error', () => undefined); // a lost connection fails the next query, which says so
  return client.connect().then(() => client);
}

/** Drops the demo's replication slot and database (an idle slot would keep WAL on the server forever). */
async function dropDemoDatabase(info: PostgresInfo): Promise<void> {
  const admin = await connectTo(info, info.database);
  try {
    for (let attempt = 0; attempt < 100; attempt++) {
      const { rows } = await admin.query<{ slot_name: string; active_pid: number | null }>(
        'select slot_name, active_pid from pg_replication_slots where database = $1 or slot_name = $2',
        [PG_DATABASE, SLOT],
      );
      if (rows.length === 0) break;
      for (const row of rows) {
        // Held by a demo that did not stop (killed with -9): end its session first.
        if (row.active_pid) await admin.query('select pg_terminate_backend($1)', [row.active_pid]);
        else await admin.query('select pg_drop_replication_slot($1)', [row.slot_name]).catch(() => undefined);
      }
      await sleep(100);
    }
    await admin.query(`drop database if exists ${PG_DATABASE} with (force)`);
  } finally {
    await admin.end();
  }
}

/** The demo database anew, with a small orders table. */
async function prepareDatabase(info: PostgresInfo): Promise<pg.Client> {
  await dropDemoDatabase(info);
  const admin = await connectTo(info, info.database);
  await admin.query(`create database ${PG_DATABASE}`).finally(() => admin.end());
  const client = await connectTo(info, PG_DATABASE);
  await client.query(`
    create table public.orders (
      id integer primary key,
      customer text not null,
      status text not null,
      amount numeric(10, 2) not null,
      updated_at timestamptz not null default now()
    );
    insert into public.orders (id, customer, status, amount)
    select g, 'customer-' || (g % 37), (array['placed', 'paid', 'shipped'])[1 + g % 3],
           round((5 + (g % 50) * 3.7)::numeric, 2)
    from generate_series(1, 200) g;`);
  return client;
}

/** The source and its two pipelines, once the rest of the project is in place. */
async function scaffoldCdc(
  postgresInfo: { info: PostgresInfo; started: boolean },
  client: pg.Client,
): Promise<Cdc> {
  const { info, started } = postgresInfo;
  write(
    `sources/${SOURCE}.yaml`,
    `# The demo's orders table, in the test services' PostgreSQL, captured by logical replication.
type: postgres_cdc
host: ${info.host}
port: ${info.port}
database: ${PG_DATABASE}
user: ${info.user}
password: \${PG_PASSWORD}
sslmode: disable
tables: [public.orders]
slot_name: ${SLOT}
publication_name: ${SLOT}
heartbeat_interval: 1s
acknowledge: { interval: 500ms }
`,
  );
  write(
    'pipelines/shop_orders_silver.yaml',
    `description: The orders table of PostgreSQL, mirrored (silver); a delete deletes the row.
source:
  type: topic
  topic: cdc.${SOURCE}
transforms:
  - type: cdc
    tables: [public.orders]
sinks:
  - type: iceberg
    table: silver.shop_orders
    mode: upsert
    key: [id]
    delete_column: _deleted
    schema: schemas/public.orders.json
batch:
  interval: 1s
`,
  );
  write(
    'pipelines/shop_changes_bronze.yaml',
    `description: Every change of the PostgreSQL tables, in commit order (bronze).
source:
  type: topic
  topic: cdc.${SOURCE}
transforms:
  - type: cdc
    format: change
sinks:
  - type: iceberg
    table: bronze.shop_changes
batch:
  interval: 1s
`,
  );
  await tributary('cdc', 'schema', SOURCE, '--out', 'schemas');
  return {
    info,
    started,
    client,
    made: { inserts: 0, updates: 0, deletes: 0, failed: 0 },
    nextId: 201,
    paused: false,
    inFlight: Promise.resolve(),
  };
}

/** One transaction of a shop's life: new orders, orders moving on (status, amount), now and then a delete. */
async function mutate(cdc: Cdc): Promise<void> {
  const { client, made } = cdc;
  const pick = () => 1 + Math.floor(Math.random() * (cdc.nextId - 1));
  try {
    await client.query('begin');
    const inserts = 1 + Math.floor(Math.random() * 2);
    for (let i = 0; i < inserts; i++) {
      const id = cdc.nextId++;
      await client.query('insert into orders (id, customer, status, amount) values ($1, $2, $3, $4)', [
        id,
        `customer-${id % 37}`,
        'placed',
        (5 + Math.random() * 200).toFixed(2),
      ]);
    }
    let updates = 0;
    for (let i = 0; i < 2; i++) {
      const result = await client.query(
        `update orders set status = case status when 'placed' then 'paid' when 'paid' then 'shipped'
                                      else 'delivered' end,
                           amount = amount + $2, updated_at = now()
          where id = $1`,
        [pick(), (Math.random() * 10).toFixed(2)],
      );
      updates += result.rowCount ?? 0;
    }
    let deletes = 0;
    if (Math.random() < 0.25)
      deletes = (await client.query('delete from orders where id = $1', [pick()])).rowCount ?? 0;
    await client.query('commit');
    made.inserts += inserts;
    made.updates += updates;
    made.deletes += deletes;
  } catch {
    made.failed++;
    await client.query('rollback').catch(() => undefined);
  }
}

function runMutations(cdc: Cdc, stopped: () => boolean): Promise<void> {
  return (async () => {
    while (!stopped()) {
      if (!cdc.paused) {
        cdc.inFlight = mutate(cdc);
        await cdc.inFlight;
      }
      await sleep(300);
    }
  })();
}

interface Totals {
  orders: number;
  amount: string;
  checksum: string;
}

// The same three numbers on both sides: rows, total amount, and an md5 over every row's id, status, amount.
const PG_TOTALS = `select count(*)::int as orders, coalesce(sum(amount), 0)::text as amount,
  md5(coalesce(string_agg(id || ':' || status || ':' || amount, ',' order by id), '')) as checksum
  from orders`;
const MIRROR_TOTALS = `select count(*)::int as orders, coalesce(sum(amount), 0)::varchar as amount,
  md5(coalesce(string_agg(id || ':' || status || ':' || amount, ',' order by id), '')) as checksum
  from silver.shop_orders`;
const MIRROR_QUERY = 'select count(*) as orders, sum(amount) as amount from silver.shop_orders';

async function mirrorTotals(base: string, queryKey: string): Promise<Totals | undefined> {
  try {
    const response = await fetch(`${base}/v1/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${queryKey}` },
      body: JSON.stringify({ sql: MIRROR_TOTALS }),
    });
    if (response.status !== 200) return undefined; // the table is not there yet
    const body = (await response.json()) as {
      rows: Array<{ orders: number; amount: string; checksum: string }>;
    };
    const row = body.rows[0];
    return row ? { orders: row.orders, amount: String(row.amount), checksum: row.checksum } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Pauses the changes, waits (up to 30 s) until the mirror has caught up, prints both sides, and resumes.
 * The numbers printed are the real answers of PostgreSQL and of `tributary query`.
 */
async function showMirror(cdc: Cdc, base: string, queryKey: string): Promise<void> {
  cdc.paused = true;
  await cdc.inFlight;
  try {
    const source = (await cdc.client.query<Totals>(PG_TOTALS)).rows[0]!;
    const deadline = Date.now() + 30_000;
    let mirror = await mirrorTotals(base, queryKey);
    while (mirror?.checksum !== source.checksum && Date.now() < deadline && !interrupted) {
      await sleep(500);
      mirror = await mirrorTotals(base, queryKey);
    }
    const psql = `select count(*) as orders, sum(amount) as amount from orders`;
    console.log(`${dim('$')} psql -d ${PG_DATABASE} -c "${psql}"   ${dim('# PostgreSQL, the source')}`);
    console.log(table((await cdc.client.query(psql)).rows) + '\n');
    console.log(`${dim('$')} tributary query "${MIRROR_QUERY}"   ${dim('# the Iceberg mirror')}`);
    console.log(await tributary('query', MIRROR_QUERY).catch((error: Error) => `  (${error.message})`));
    const { inserts, updates, deletes } = cdc.made;
    if (mirror?.checksum === source.checksum)
      console.log(
        `${bold('Mirror matches')}: silver.shop_orders equals PostgreSQL's orders row for row (${source.orders} orders, md5 of id, status, amount) after ${inserts} inserts, ${updates} updates and ${deletes} deletes made while running.\n`,
      );
    else
      console.log(
        `The mirror did not catch up within 30 s (PostgreSQL: ${source.orders} orders; the mirror: ${mirror ? `${mirror.orders} orders` : 'not readable yet'}): see \`tributary cdc status ${SOURCE}\`.\n`,
      );
  } finally {
    cdc.paused = false;
  }
}

// ---------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const begun = Date.now();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  console.log(bold('Tributary demo') + dim(`  (project in ${path.relative(process.cwd(), DIR) || DIR})`));
  scaffold(port);
  const postgresOrReason = await startPostgres();
  const key = async (...options: string[]) =>
    keyFrom(await tributary('keys', 'create', ...options, '--json'));
  const [client, [pageviewKey, orderKey, queryKey]] = await Promise.all([
    typeof postgresOrReason === 'string' ? undefined : prepareDatabase(postgresOrReason.info),
    // The first key creates the key store; the other two then wait their turn on its lock, side by side.
    (async () => {
      const web = await key('--stream', 'pageviews', '--name', 'demo-web');
      const [backend, query] = await Promise.all([
        key('--stream', 'orders', '--name', 'demo-backend'),
        key('--table', 'silver.*,gold.*', '--role', 'query', '--name', 'demo-query'),
      ]);
      return [web, backend, query] as const;
    })(),
  ]);
  let cdc: Cdc | undefined;
  if (client && typeof postgresOrReason !== 'string') {
    env.PG_PASSWORD = postgresOrReason.info.password;
    cdc = await scaffoldCdc(postgresOrReason, client);
  }

  // `up` in a process group of its own, so that Ctrl-C reaches the demo only, which stops the traffic and
  // then `up` with one SIGTERM (a second signal while `up` closes its log would kill it half-way).
  const up: ChildProcess = spawn(process.execPath, [CLI, 'up'], {
    cwd: DIR,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  process.on('exit', () => up.exitCode === null && up.signalCode === null && up.kill('SIGTERM'));
  const onSignal = () => {
    if (interrupted) process.exit(130); // a second Ctrl-C: at once (`up` still gets its SIGTERM)
    stopping = interrupted = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let upErrors = '';
  up.stderr?.on('data', (chunk: Buffer) => (upErrors += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => up.once('exit', (code) => resolve(code)));
  for (let i = 0; ; i++) {
    const ready = await fetch(`${base}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready || interrupted) break;
    if (up.exitCode !== null || i > 300) throw new Error(`tributary up did not become ready:\n${upErrors}`);
    await sleep(100);
  }
  console.log(
    cdc
      ? `Running: ${bold('tributary up')} — HTTP ingest, CDC from PostgreSQL (${PG_DATABASE}.public.orders on port ${cdc.info.port}), 4 pipelines, a scheduler with 2 gold models\n`
      : `Running: ${bold('tributary up')} — HTTP ingest, 2 pipelines, a scheduler with 2 gold models\n${dim(postgresOrReason as string)}\n`,
  );

  const counters: Counters = { sent: 0, accepted: 0, invalid: 0, failed: 0 };
  const started = Date.now();
  const traffic = (async () => {
    while (!stopping) {
      const now = new Date();
      await Promise.all([
        send(
          `${base}/v1/streams/pageviews/events`,
          pageviewKey,
          Array.from({ length: 100 }, () => pageview(now)),
          counters,
        ),
        send(
          `${base}/v1/streams/orders/events`,
          orderKey,
          Array.from({ length: 20 }, () => order(now)),
          counters,
        ),
      ]);
      await sleep(100);
    }
  })();
  const mutations = cdc ? runMutations(cdc, () => stopping) : Promise.resolve();

  let printedSummary = false;
  let lastSent = 0;
  let lastTime = Date.now();
  const context: SummaryContext = { base, queryKey, cdc, begun };
  while (!stopping && Date.now() - started < duration) {
    await sleep(2000);
    if (stopping) break;
    const now = Date.now();
    const rate = Math.round(((counters.sent - lastSent) * 1000) / (now - lastTime));
    lastSent = counters.sent;
    lastTime = now;
    const committed = await metric(base, 'tributary_pipeline_records_out_total');
    const lag = await metric(base, 'tributary_pipeline_lag_records');
    const dlq = await metric(base, 'tributary_pipeline_records_dlq_total');
    let line = `${rate} events/s sent · ${counters.accepted} accepted · ${counters.invalid} invalid → DLQ · ${committed} committed to Iceberg · lag ${lag} · ${dlq} pipeline DLQ`;
    if (cdc) {
      const changes = await metric(base, 'tributary_cdc_changes_total');
      line += ` · CDC ${changes} changes captured`;
    }
    if (tty) process.stdout.write(`\r\u001b[2K${line}`);
    else console.log(line);
    if (!printedSummary && now - started > 15_000 && committed > 0) {
      printedSummary = await summary(context);
    }
  }
  stopping = true;
  await Promise.all([traffic, mutations]);
  if (!printedSummary && !interrupted) await summary(context);
  else if (!printedSummary) console.log('\nStopped before the first cycle was done.');
  up.kill('SIGTERM');
  const code = await exited;
  console.log(
    `\n${code === 0 ? 'Stopped cleanly' : `tributary up exited with ${code}`}: every accepted event is in the log, every commit exactly once.`,
  );
  if (cdc) {
    await cdc.client.end().catch(() => undefined);
    await dropDemoDatabase(cdc.info).then(
      () =>
        console.log(
          dim(
            `Dropped the demo's replication slot and database ${PG_DATABASE}.${cdc.started ? ' PostgreSQL keeps running for the next run: `npm run services -- stop postgres` stops it.' : ''}`,
          ),
        ),
      (error: Error) => console.error(`Could not drop the demo database: ${error.message}`),
    );
  }
  if (code !== 0) {
    console.error(upErrors);
    process.exitCode = 1;
  }
}

interface SummaryContext {
  readonly base: string;
  readonly queryKey: string;
  readonly cdc: Cdc | undefined;
  /** When the demo started, for the first cycle's time. */
  readonly begun: number;
}

async function summary({ base, queryKey, cdc, begun }: SummaryContext): Promise<boolean> {
  // The scheduler in `tributary up` builds the gold models after their inputs commit (`after:` triggers).
  const goldBuilt = async () =>
    Promise.all(
      ['gold.top_pages', 'gold.daily_revenue'].map((t) => tributary('query', `select 1 from ${t} limit 1`)),
    ).then(
      () => true,
      () => false,
    );
  const deadline = Date.now() + 30_000;
  while (!(await goldBuilt()) && Date.now() < deadline && !interrupted) await sleep(1000);
  if (!(await goldBuilt())) await tributary('models', 'run').catch(() => '');
  const queries = [
    'select count(*) as page_views, count(distinct user_id) as visitors from bronze.pageviews',
    'select status, count(*) as orders, round(sum(amount), 2) as amount from silver.orders group by status order by status',
    'select * from gold.top_pages order by views desc limit 5',
    'select * from gold.daily_revenue order by day',
    'select stage, count(*) as rejected from bronze._dlq group by stage',
  ];
  console.log(
    `\n\n${bold('First cycle done')} ${dim(`(${Math.round((Date.now() - begun) / 1000)} s)`)}. Ingest: ${base}/v1/streams/<stream>/events · query API: ${base}/v1/query · metrics: ${base}/metrics · ready: ${base}/readyz\n`,
  );
  for (const sql of queries) {
    if (interrupted) return true;
    console.log(`${dim('$')} tributary query "${sql}"`);
    console.log(
      await tributary('query', sql).catch(
        (error: Error) => `  (${error.message.split('\n')[1] ?? error.message})`,
      ),
    );
  }
  if (interrupted) return true;
  if (cdc) {
    console.log(bold('Change data capture') + dim(` — ${PG_DATABASE}.public.orders → silver.shop_orders\n`));
    await showMirror(cdc, base, queryKey);
    const history = 'select op, count(*) as changes from bronze.shop_changes group by op order by op';
    console.log(`${dim('$')} tributary query "${history}"`);
    console.log(await tributary('query', history).catch((error: Error) => `  (${error.message})`));
  }
  const sql = 'select status, count(*) as orders from silver.orders group by status order by status';
  console.log(
    `${dim('$')} curl -s ${base}/v1/query -H "authorization: Bearer $QUERY_KEY" -H 'content-type: application/json' -H 'accept: text/csv' -d '{"sql": "${sql}"}'`,
  );
  console.log(
    await fetch(`${base}/v1/query`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'text/csv',
        authorization: `Bearer ${queryKey}`,
      },
      body: JSON.stringify({ sql }),
    }).then(
      (r) => r.text(),
      (error: Error) => `  (${error.message})`,
    ),
  );
  console.log(
    dim(`(QUERY_KEY=${queryKey}; JSON by default, Arrow with accept: application/vnd.apache.arrow.stream)\n`),
  );
  console.log(`${dim('$')} tributary catalog info`);
  console.log((await tributary('catalog', 'info')).split('\n').slice(0, 13).join('\n'));
  console.log(
    `\n${dim(`Run the commands above yourself: cd ${DIR}; node ${path.relative(DIR, CLI)} <command>. Ctrl-C stops the demo.`)}\n`,
  );
  return true;
}

await main();
