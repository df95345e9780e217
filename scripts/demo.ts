/**
 * `npm run demo`: the whole platform on embedded defaults, on this machine, with no services.
 *
 * Creates a demo project in .tributary/demo (anew each run), starts `tributary up` (HTTP ingest, the
 * embedded log, a bronze and a silver pipeline, the SQLite catalog, the scheduler with gold models), feeds it
 * page views and orders through the HTTP API (a few percent invalid, so the DLQ has something to show), shows
 * live progress, and after the first full cycle prints the URLs, queries with their real output, and how to
 * open the catalog from pyiceberg and DuckDB. Ctrl-C stops it cleanly. `--duration <seconds>` stops it by
 * itself (for scripts and the test suite).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, REPO_ROOT, run } from '../test/services/harness.ts';

const CLI = path.join(REPO_ROOT, 'bin', 'tributary.js');
const DIR = path.join(REPO_ROOT, '.tributary', 'demo');
const args = process.argv.slice(2);
const durationIndex = args.indexOf('--duration');
const duration = durationIndex >= 0 ? Number(args[durationIndex + 1]) * 1000 : Infinity;
const tty = process.stdout.isTTY === true;
const bold = (text: string) => (tty ? `\u001b[1m${text}\u001b[0m` : text);
const dim = (text: string) => (tty ? `\u001b[2m${text}\u001b[0m` : text);

async function tributary(...argv: string[]): Promise<string> {
  const result = await run(process.execPath, [CLI, ...argv], {
    cwd: DIR,
    env: { ...process.env, NO_COLOR: '1' },
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

async function main(): Promise<void> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  console.log(bold('Tributary demo') + dim(`  (project in ${path.relative(process.cwd(), DIR) || DIR})`));
  scaffold(port);
  const pageviewKey = keyFrom(
    await tributary('keys', 'create', '--stream', 'pageviews', '--name', 'demo-web', '--json'),
  );
  const orderKey = keyFrom(
    await tributary('keys', 'create', '--stream', 'orders', '--name', 'demo-backend', '--json'),
  );

  const up: ChildProcess = spawn(process.execPath, [CLI, 'up'], {
    cwd: DIR,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let upErrors = '';
  up.stderr?.on('data', (chunk: Buffer) => (upErrors += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => up.once('exit', (code) => resolve(code)));
  for (let i = 0; ; i++) {
    const ready = await fetch(`${base}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) break;
    if (up.exitCode !== null || i > 300) throw new Error(`tributary up did not become ready:\n${upErrors}`);
    await sleep(100);
  }
  console.log(`Running: ${bold('tributary up')} — HTTP ingest, 2 pipelines, scheduler with 2 gold models\n`);

  const counters: Counters = { sent: 0, accepted: 0, invalid: 0, failed: 0 };
  let stopping = false;
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
  process.once('SIGINT', () => (stopping = true));
  process.once('SIGTERM', () => (stopping = true));

  let printedSummary = false;
  let lastSent = 0;
  let lastTime = Date.now();
  while (!stopping && Date.now() - started < duration) {
    await sleep(2000);
    const now = Date.now();
    const rate = Math.round(((counters.sent - lastSent) * 1000) / (now - lastTime));
    lastSent = counters.sent;
    lastTime = now;
    const committed = await metric(base, 'tributary_pipeline_records_out_total');
    const lag = await metric(base, 'tributary_pipeline_lag_records');
    const dlq = await metric(base, 'tributary_pipeline_records_dlq_total');
    const line = `${rate} events/s sent · ${counters.accepted} accepted · ${counters.invalid} invalid → DLQ · ${committed} committed to Iceberg · lag ${lag} · ${dlq} pipeline DLQ`;
    if (tty) process.stdout.write(`\r\u001b[2K${line}`);
    else console.log(line);
    if (!printedSummary && now - started > 15_000 && committed > 0) {
      printedSummary = await summary(base);
    }
  }
  stopping = true;
  await traffic;
  if (!printedSummary) await summary(base);
  up.kill('SIGTERM');
  const code = await exited;
  console.log(
    `\n${code === 0 ? 'Stopped cleanly' : `tributary up exited with ${code}`}: every accepted event is in the log, every commit exactly once.`,
  );
  if (code !== 0) {
    console.error(upErrors);
    process.exitCode = 1;
  }
}

async function summary(base: string): Promise<boolean> {
  await tributary('models', 'run').catch(() => '');
  const queries = [
    'select count(*) as page_views, count(distinct user_id) as visitors from bronze.pageviews',
    'select status, count(*) as orders, round(sum(amount), 2) as amount from silver.orders group by status order by status',
    'select * from gold.top_pages order by views desc limit 5',
    'select * from gold.daily_revenue order by day',
    'select stage, count(*) as rejected from bronze._dlq group by stage',
  ];
  console.log(
    `\n\n${bold('First cycle done.')} Ingest: ${base}/v1/streams/<stream>/events · metrics: ${base}/metrics · ready: ${base}/readyz\n`,
  );
  for (const sql of queries) {
    console.log(`${dim('$')} tributary query "${sql}"`);
    console.log(
      await tributary('query', sql).catch(
        (error: Error) => `  (${error.message.split('\n')[1] ?? error.message})`,
      ),
    );
  }
  console.log(`${dim('$')} tributary catalog info`);
  console.log((await tributary('catalog', 'info')).split('\n').slice(0, 13).join('\n'));
  console.log(
    dim('Change data capture from PostgreSQL is not part of this demo yet: see docs/cdc.md to add a source.'),
  );
  console.log(
    `\n${dim(`Run the commands above yourself: cd ${DIR}; node ${path.relative(DIR, CLI)} <command>. Ctrl-C stops the demo.`)}\n`,
  );
  return true;
}

await main();
