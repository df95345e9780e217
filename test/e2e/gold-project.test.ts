/**
 * A sample project through the CLI: bronze tables loaded with `tables append`, silver and gold models built
 * with `models run` (incremental models equal their full refresh after more appends), `validate` exiting 1
 * on a failing data test, a job started with `runs start` and its history, and a person's data exported and
 * erased.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { tributary } from '../cli.ts';

const project = mkdtempSync(path.join(tmpdir(), 'tributary-gold-'));
const write = (name: string, content: string) => {
  const full = path.join(project, name);
  mkdirSync(path.dirname(full), { recursive: true });
  writeFileSync(full, content);
  return full;
};
const run = async (...args: string[]) => tributary(args, { cwd: project });
const ok = async (...args: string[]) => {
  const result = await run(...args);
  assert.equal(result.code, 0, `${args.join(' ')}: ${result.stderr}${result.stdout}`);
  return result.stdout;
};
const query = async (sql: string) =>
  JSON.parse(await ok('query', sql, '--format', 'json')) as Array<Record<string, unknown>>;

const orders = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => {
    const id = from + i;
    return JSON.stringify({
      id,
      customer_id: `c${id % 5}`,
      amount: ((id * 37) % 500) / 10,
      status: id % 13 === 0 ? 'refunded' : 'paid',
      ts: `2026-11-${String(1 + (id % 6)).padStart(2, '0')}T${String(id % 24).padStart(2, '0')}:00:00Z`,
    });
  }).join('\n') + '\n';

describe('a bronze → silver → gold project', () => {
  before(async () => {
    await ok('init', project);
    write(
      'orders.schema.json',
      JSON.stringify({
        fields: [
          { name: 'id', type: 'long', required: true },
          { name: 'customer_id', type: 'string' },
          { name: 'amount', type: 'decimal(10, 2)' },
          { name: 'status', type: 'string' },
          { name: 'ts', type: 'timestamptz' },
        ],
      }),
    );
    write(
      'customers.schema.json',
      JSON.stringify({
        fields: [
          { name: 'customer_id', type: 'string', required: true },
          { name: 'name', type: 'string' },
        ],
      }),
    );
    await ok('tables', 'create', 'bronze.orders', '--schema', 'orders.schema.json', '--partition', 'day(ts)');
    await ok('tables', 'create', 'bronze.customers', '--schema', 'customers.schema.json');
    await ok('tables', 'append', 'bronze.orders', write('o1.ndjson', orders(0, 200)));
    await ok(
      'tables',
      'append',
      'bronze.customers',
      write(
        'c.ndjson',
        [0, 1, 2, 3, 4]
          .map((i) => JSON.stringify({ customer_id: `c${i}`, name: `Customer ${i}` }))
          .join('\n'),
      ),
    );
    write(
      'models/silver/orders.sql',
      `/* ---
materialized: incremental
unique_key: id
tests:
  - unique: id
  - not_null: [id, customer_id]
  - relationships: { column: customer_id, to: bronze.customers, field: customer_id }
--- */
select id, customer_id, amount, status, ts, ts::date as day from ref('bronze.orders')
`,
    );
    write(
      'models/gold/daily_revenue.sql',
      `/* ---
materialized: incremental
unique_key: day
incremental: { merge: { revenue: sum, orders: sum } }
after: [silver.orders]
tests:
  - expression: revenue >= 0
  - row_count: { min: 1, max: 31 }
--- */
select day, sum(amount) filter (where status = 'paid') as revenue, count(*) as orders
from ref('silver.orders') group by day
`,
    );
    write(
      'models/gold/customer_revenue.sql',
      `select c.customer_id, c.name, coalesce(sum(o.amount), 0) as revenue
from ref('bronze.customers') c left join ref('silver.orders') o using (customer_id)
group by all
`,
    );
    write(
      'models/tests.yaml',
      `tables:
  bronze.orders:
    tests:
      - accepted_values: { column: status, values: [paid, refunded] }
      - freshness: { max_age: 1d }
`,
    );
    write(
      'models/schedule.yaml',
      `defaults:
  retries: 1
  backoff: 10ms
jobs:
  - name: nightly-validate
    kind: validate
    schedule: "0 2 * * *"
  - name: nightly-expire
    kind: expire
    tables: ['bronze.*']
    schedule: "0 3 * * *"
`,
    );
  });

  it('lists, draws and builds the models', async () => {
    const listed = JSON.parse(await ok('models', 'list', '--json')) as Array<{
      model: string;
      materialized: string;
    }>;
    assert.deepEqual(
      listed.map((m) => [m.model, m.materialized]),
      [
        ['silver.orders', 'incremental'],
        ['gold.customer_revenue', 'table'],
        ['gold.daily_revenue', 'incremental'],
      ],
    );
    assert.match(await ok('models', 'graph'), /bronze_orders --> silver_orders/);
    assert.match(await ok('models', 'graph', '--format', 'dot'), /"silver.orders" -> "gold.daily_revenue";/);
    const built = await ok('models', 'run');
    assert.match(built, /ok silver\.orders: created, 200 rows written/);
    assert.match(built, /3 of 3 model\(s\) ok/);
  });

  it('keeps incremental gold equal to a full computation after more appends', async () => {
    for (const [from, to] of [
      [200, 230],
      [230, 231],
      [231, 300],
    ] as const) {
      await ok('tables', 'append', 'bronze.orders', write(`o-${from}.ndjson`, orders(from, to)));
      const out = await ok('models', 'run', '--select', 'silver.orders+');
      assert.match(out, /ok silver\.orders: incremental/);
      assert.match(out, /ok gold\.daily_revenue: incremental/);
    }
    const gold = await query(
      'select day::varchar as day, revenue::double as revenue, orders::int as orders from gold.daily_revenue order by day',
    );
    const full = await query(
      `select ts::date::varchar as day, (sum(amount) filter (where status = 'paid'))::double as revenue, count(*)::int as orders
       from bronze.orders group by 1 order by 1`,
    );
    assert.equal(gold.length, 6);
    assert.deepEqual(gold, full);
    assert.match(await ok('models', 'run', '--select', 'daily_revenue'), /up to date/);
  });

  it('validates: passes, then exits 1 with JSON when a test fails', async () => {
    const passed = await ok('validate');
    assert.match(passed, /7 passed, 0 failed/);
    await ok(
      'tables',
      'append',
      'bronze.orders',
      write(
        'bad.ndjson',
        JSON.stringify({ id: 999, customer_id: 'c9', amount: 1, status: 'lost', ts: '2026-11-02T00:00:00Z' }),
      ),
    );
    await ok('models', 'run');
    const failed = await run('validate', '--json');
    assert.equal(failed.code, 1, failed.stderr);
    const report = JSON.parse(failed.stdout) as {
      ok: boolean;
      failed: number;
      results: Array<{ table: string; test: string; status: string }>;
    };
    assert.equal(report.ok, false);
    assert.deepEqual(
      report.results
        .filter((r) => r.status === 'fail')
        .map((r) => `${r.table} ${r.test}`)
        .sort(),
      [
        'bronze.orders accepted_values(status)',
        'silver.orders relationships(customer_id → bronze.customers.customer_id)',
      ],
    );
    assert.match(failed.stderr, /TESTS_FAILED/);
  });

  it('starts a job from the CLI with an exit code, and keeps its history', async () => {
    const jobs = JSON.parse(await ok('runs', 'jobs', '--json')) as Array<{
      job: string;
      nextRun: string | null;
    }>;
    assert.deepEqual(
      jobs.map((j) => j.job),
      ['model:gold.daily_revenue', 'nightly-expire', 'nightly-validate'],
    );
    assert.match(jobs[2]!.nextRun ?? '', /T02:00:00/);
    const started = await run('runs', 'start', 'nightly-validate');
    assert.equal(started.code, 1, started.stderr);
    assert.match(started.stderr, /JOB_FAILED.*data test/);
    const history = JSON.parse(await ok('runs', 'list', '--job', 'nightly-validate', '--json')) as Array<{
      id: string;
      status: string;
      attempt: number;
    }>;
    // Failing data tests are not retried (a retry cannot fix data); errors such as a SQL failure are.
    assert.deepEqual(
      history.map((r) => [r.attempt, r.status]),
      [[1, 'failed']],
    );
    assert.match(await ok('runs', 'show', history[0]!.id), /status\s+failed[\s\S]*error\s+\[TESTS_FAILED\]/);
    assert.equal((await run('runs', 'start', 'model:gold.daily_revenue')).code, 0);
  });

  it("exports and erases a customer's rows", async () => {
    const exported = await ok('export', '--where', "customer_id = 'c1'", '--to', 'c1.ndjson');
    assert.match(exported, /wrote \d+ row\(s\) from 4 table\(s\) of \d+ searched/);
    const lines = readFileSync(path.join(project, 'c1.ndjson'), 'utf8').trim().split('\n');
    assert.ok(lines.length > 60);
    const dry = await ok('erase', '--where', "customer_id = 'c1'", '--dry-run');
    assert.match(dry, /the erasure would expire every snapshot before it in .*bronze\.orders.*: time travel/);
    const erased = await ok('erase', '--where', "customer_id = 'c1'", '--reason', 'request 7');
    assert.match(erased, /bronze\.orders\s+\d+/);
    for (const table of ['bronze.orders', 'bronze.customers', 'silver.orders', 'gold.customer_revenue']) {
      assert.deepEqual(
        await query(`select count(*)::int as n from ${table} where customer_id = 'c1'`),
        [{ n: 0 }],
        table,
      );
    }
    assert.ok(((await query('select count(*)::int as n from bronze.orders'))[0]!.n as number) > 200);

    // A change table keeps the customer in JSON text: erase is not done (exit 1) until that is erased too.
    write(
      'changes.json',
      JSON.stringify({
        fields: ['op', 'key', 'before', 'after'].map((name) => ({ name, type: 'string', required: false })),
      }),
    );
    write(
      'changes.ndjson',
      [
        { op: 'insert', key: '{"id":1}', before: null, after: '{"id":1,"customer_id":"c2"}' },
        { op: 'insert', key: '{"id":2}', before: null, after: '{"id":2,"customer_id":"c3"}' },
      ]
        .map((row) => JSON.stringify(row))
        .join('\n'),
    );
    await ok('tables', 'create', 'bronze.changes', '--schema', 'changes.json');
    await ok('tables', 'append', 'bronze.changes', 'changes.ndjson');
    await ok('topics', 'produce', 'events.orders', 'changes.ndjson');
    const partly = await run('erase', '--where', "customer_id = 'c2'");
    assert.equal(partly.code, 1, partly.stderr);
    assert.match(
      partly.stderr,
      /\[ERASE_INCOMPLETE\] matching values remain as JSON text in bronze\.changes \(1 row\(s\)\)/,
    );
    // The log keeps the raw records, which erase cannot reach: it says so, with their retention.
    assert.match(
      partly.stderr,
      /warning the log keeps the raw records until their retention, out of erase's reach: .*events\.orders \(kept forever\)/,
    );
    const command = /tributary erase --tables bronze\.changes --where "(.+)"$/m.exec(partly.stderr);
    assert.ok(command, partly.stderr);
    await ok('erase', '--tables', 'bronze.changes', '--where', command[1]!.replace(/\\(.)/g, '$1'));
    assert.deepEqual(await query(`select count(*)::int as n from bronze.changes`), [{ n: 1 }]);
    assert.equal((await run('erase', '--where', "customer_id = 'c2'")).code, 0);

    // The audit record, for the compliance officer: by the request's condition, newest first.
    const c1 = await ok('audit', '--where', "customer_id = 'c1'");
    const records = c1.trim().split('\n').slice(1);
    assert.equal(records.length, 2, c1);
    assert.match(records[0]!, /^\S+\s+erase\s+\S+\s+\S+\s+request 7\s+\d+\s+.*bronze\.orders/);
    assert.match(records[1]!, /^\S+\s+export\s+/);
    assert.doesNotMatch(c1, /customer_id|'c1'/, 'not the condition');
    assert.match(
      await ok('audit', '--where', "customer_id = 'c9'"),
      /No erasure or export with this condition/,
    );
    assert.equal((JSON.parse(await ok('audit', '--json', '--limit', '2')) as unknown[]).length, 2);
  });

  it('warns when a model erase reached is built from a table it did not reach', async () => {
    // bronze.tickets names the customer `cust`: `customer_id = …` does not reach it, but the model it
    // feeds has customer_id, so erase reaches the model, whose next rebuild would bring the rows back.
    write('tickets.json', JSON.stringify({ fields: [{ name: 'cust', type: 'string' }] }));
    await ok('tables', 'create', 'bronze.tickets', '--schema', 'tickets.json');
    await ok('tables', 'append', 'bronze.tickets', write('t.ndjson', '{"cust":"c4"}\n{"cust":"c0"}\n'));
    write(
      'models/gold/customer_tickets.sql',
      `select cust as customer_id, count(*) as tickets from ref('bronze.tickets') group by all\n`,
    );
    await ok('models', 'run', '--select', 'gold.customer_tickets');
    const erased = await run('erase', '--where', "customer_id = 'c4'");
    assert.equal(erased.code, 0, erased.stderr);
    assert.match(
      erased.stderr,
      /warning gold\.customer_tickets is built from bronze\.tickets, which the condition did not reach: .*--full-refresh/,
    );
    assert.doesNotMatch(erased.stderr, /gold\.customer_revenue is built/, 'its inputs were all reached');
  });

  it('names a cycle and exits 2', async () => {
    write('models/gold/loop_a.sql', `select * from ref('gold.loop_b')`);
    write('models/gold/loop_b.sql', `select * from ref('gold.loop_a')`);
    const result = await run('models', 'list');
    assert.equal(result.code, 2);
    assert.match(result.stderr, /models form a cycle: gold\.loop_a → gold\.loop_b → gold\.loop_a/);
  });
});
