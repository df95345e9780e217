import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseTableIdentifier } from '../../catalog/identifier.ts';
import { isTributaryError } from '../../errors.ts';
import { compact } from '../../iceberg/operations/maintenance.ts';
import { deleteWhere } from '../../iceberg/operations/write.ts';
import { TableViews } from '../table-views.ts';
import { openTestLakehouse, type TestLakehouse } from '../testing.ts';
import { renderGraph, selectModels, topologicalOrder } from './graph.ts';
import { loadModels } from './project.ts';
import { runModels, type ModelContext } from './run.ts';
import { readModelState } from './state.ts';

function write(root: string, file: string, text: string): void {
  const full = path.join(root, file);
  mkdirSync(path.dirname(full), { recursive: true });
  writeFileSync(full, text);
}

const batch = (from: number, count: number) =>
  `select (${from} + i)::bigint as id, 'c' || ((${from} + i) % 7) as customer_id,
     (((${from} + i) * 37) % 1000 / 10)::decimal(12, 2) as amount,
     case when (${from} + i) % 11 = 0 then 'test' else 'paid' end as status,
     timestamptz '2026-11-01 00:00:00+00' + to_hours(((${from} + i) * 5) % (24 * 9)) as ts
   from range(${count}) r(i)`;

describe('SQL models', () => {
  let lake: TestLakehouse;
  let context: ModelContext;
  const root = () => path.join(lake.dir, 'project');
  const rowCount = async (table: string) => {
    const exposed = await context.views.current(parseTableIdentifier(table));
    const reader = await lake.engine.connection.runAndReadAll(`select count(*)::int from ${exposed.view}`);
    return Number(reader.getRows()[0]?.[0]);
  };

  before(async () => {
    lake = await openTestLakehouse('tributary-models-');
    context = {
      catalog: lake.catalog,
      engine: lake.engine,
      views: new TableViews(lake.catalog, lake.engine.connection),
    };
    await lake.createFromSql('bronze.orders', batch(0, 50));
    write(
      root(),
      'models/silver/orders.sql',
      `/* ---
materialized: incremental
unique_key: id
tests:
  - not_null: [id, day]
  - unique: id
  - accepted_values: { column: status, values: [paid, refunded] }
--- */
select id, customer_id, amount, status, ts::date as day
from ref('bronze.orders')
where status <> 'test'
`,
    );
    write(
      root(),
      'models/gold/daily_revenue.sql',
      `select day, sum(amount) as revenue, count(*) as orders, max(amount) as max_amount
from ref('silver.orders') group by day
`,
    );
    write(
      root(),
      'models/gold/daily_revenue.yaml',
      `materialized: incremental
unique_key: day
incremental:
  merge: { revenue: sum, orders: sum, max_amount: max }
after: [silver.orders]
tests:
  - expression: revenue >= 0
  - row_count: { min: 1 }
`,
    );
    write(
      root(),
      'models/gold/revenue_full.sql',
      `-- ---
-- materialized: table
-- ---
select day, sum(amount) as revenue, count(*) as orders, max(amount) as max_amount
from ref('silver.orders') group by day
`,
    );
    write(
      root(),
      'models/gold/customers.sql',
      `/* materialized: view */
select distinct customer_id from ref('silver.orders')
`,
    );
    write(
      root(),
      'models/gold/customer_totals.sql',
      `select c.customer_id, coalesce(sum(o.amount), 0) as total
from ref('customers') c left join ref('silver.orders') o using (customer_id) group by 1
`,
    );
  });
  after(() => lake.close());

  const rows = async (sql: string) =>
    (await lake.engine.connection.runAndReadAll(sql)).getRowObjectsJson().map((r) => JSON.stringify(r));

  it('orders models by their refs and renders the graph', () => {
    const project = loadModels(root());
    assert.deepEqual(
      topologicalOrder(project).map((m) => m.name),
      ['silver.orders', 'gold.customers', 'gold.customer_totals', 'gold.daily_revenue', 'gold.revenue_full'],
    );
    assert.deepEqual(selectModels(project, ['silver.orders+']).map((m) => m.name).length, 5);
    assert.deepEqual(
      selectModels(project, ['+customer_totals']).map((m) => m.name),
      ['silver.orders', 'gold.customers', 'gold.customer_totals'],
    );
    const mermaid = renderGraph(project, 'mermaid');
    assert.match(mermaid, /bronze_orders\[\(bronze\.orders\)\]/);
    assert.match(mermaid, /silver_orders --> gold_daily_revenue/);
    assert.match(renderGraph(project, 'dot'), /"silver.orders" -> "gold.daily_revenue";/);
  });

  it('keeps an incremental model equal to its full refresh over many appends', async () => {
    const project = loadModels(root());
    const first = await runModels(context, project, selectModels(project));
    assert.deepEqual(
      first.map((o) => [o.model, o.status, o.result?.action]),
      [
        ['silver.orders', 'ok', 'created'],
        ['gold.customers', 'ok', 'view'],
        ['gold.customer_totals', 'ok', 'created'],
        ['gold.daily_revenue', 'ok', 'created'],
        ['gold.revenue_full', 'ok', 'created'],
      ],
      JSON.stringify(first.map((o) => String(o.error))),
    );
    let next = 50;
    for (let round = 0; round < 12; round++) {
      const size = 1 + ((round * 13) % 40);
      await lake.appendSql('bronze.orders', batch(next, size));
      next += size;
      if (round === 5) {
        // A compaction upstream changes no rows: the incremental model carries on.
        const bronze = await lake.catalog.loadTable(parseTableIdentifier('bronze.orders'));
        await compact(bronze, lake.engine);
      }
      const outcomes = await runModels(context, project, selectModels(project));
      assert.ok(
        outcomes.every((o) => o.status === 'ok'),
        String(outcomes.find((o) => o.error)?.error),
      );
      const actions = Object.fromEntries(outcomes.map((o) => [o.model, o.result?.action]));
      assert.equal(actions['silver.orders'], 'incremental');
      assert.equal(actions['gold.daily_revenue'], 'incremental');
    }
    const silver = await lake.catalog.loadTable(parseTableIdentifier('silver.orders'));
    const state = readModelState(silver);
    const bronze = await lake.catalog.loadTable(parseTableIdentifier('bronze.orders'));
    assert.equal(state?.snapshots.get('bronze.orders'), bronze.metadata['current-snapshot-id']);
    await context.views.current(parseTableIdentifier('gold.daily_revenue'));
    await context.views.current(parseTableIdentifier('gold.revenue_full'));
    await context.views.current(parseTableIdentifier('silver.orders'));
    const incremental = await rows('select * from gold.daily_revenue order by day');
    const full = await rows('select * from gold.revenue_full order by day');
    assert.equal(incremental.length, 9);
    assert.deepEqual(incremental, full);
    const [count] = await rows('select count(*)::int as n from silver.orders');
    assert.equal(
      (JSON.parse(count!) as { n: number }).n,
      Array.from({ length: next }, (_, i) => i).filter((i) => i % 11 !== 0).length,
    );

    // Nothing new: nothing is committed.
    const idle = await runModels(
      context,
      project,
      selectModels(project, ['silver.orders', 'gold.daily_revenue']),
    );
    assert.deepEqual(
      idle.map((o) => o.result?.action),
      ['up-to-date', 'up-to-date'],
    );
  });

  it('refreshes in full when upstream rows are deleted, and stays exact', async () => {
    const project = loadModels(root());
    const bronze = await lake.catalog.loadTable(parseTableIdentifier('bronze.orders'));
    await deleteWhere(bronze, lake.engine, "customer_id = 'c3'");
    const outcomes = await runModels(context, project, selectModels(project, ['silver.orders+']));
    const silver = outcomes.find((o) => o.model === 'silver.orders')!;
    assert.equal(silver.result?.action, 'full-refresh');
    assert.match(String(silver.result?.reason), /delete|overwrite/);
    await context.views.current(parseTableIdentifier('silver.orders'));
    const [n] = await rows(`select count(*)::int as n from silver.orders where customer_id = 'c3'`);
    assert.equal((JSON.parse(n!) as { n: number }).n, 0);
    await context.views.current(parseTableIdentifier('gold.daily_revenue'));
    await context.views.current(parseTableIdentifier('gold.revenue_full'));
    assert.deepEqual(
      await rows('select * from gold.daily_revenue order by day'),
      await rows('select * from gold.revenue_full order by day'),
    );
  });

  it('leaves its table as it was when its SQL fails as it runs, and writes no table it did not make', async () => {
    const dir = path.join(lake.dir, 'failing');
    await lake.createFromSql(
      'bronze.src',
      `select i::bigint as id, 'v' || i as v, 'b' || i as b from range(2) r(i)`,
    );
    const run = async (sql: string, options = {}) => {
      write(dir, 'models/gold/t.sql', sql);
      const project = loadModels(dir);
      const [outcome] = await runModels(context, project, selectModels(project, ['gold.t']), options);
      return outcome!;
    };
    assert.equal((await run(`select id, v, b from ref('bronze.src')`)).status, 'ok');
    const columns = async () =>
      (await lake.catalog.loadTable(parseTableIdentifier('gold.t'))).schema.fields.map((f) => f.name);
    // A dropped column, then a failure at run time (after the columns were described).
    const failing = await run(`select id, v from ref('bronze.src') where error('boom') is null;`);
    assert.equal(failing.status, 'failed');
    assert.deepEqual(await columns(), ['id', 'v', 'b'], 'the schema is as it was');
    const changedType = `select id::varchar as id, v from ref('bronze.src') where error('boom') is null`;
    assert.equal((await run(changedType, { fullRefresh: true })).status, 'failed');
    assert.equal(await rowCount('gold.t'), 2, 'a failed full refresh keeps the rows');
    // A trailing semicolon and a closing comment are fine.
    // A column that is not there: DuckDB's own words, not the table library's "cannot be read".
    const unbound = await run(`select id, nope from ref('bronze.src')`);
    assert.equal(unbound.status, 'failed');
    assert.match(
      String((unbound.error as Error).message),
      /model gold\.t: its SQL failed: Binder Error: Referenced column "nope" not found/,
    );
    assert.equal((await run(`select id, v, b from ref('bronze.src');\n-- done`)).status, 'ok');
    assert.equal((await run(`select id, v, b from ref('bronze.src'); -- done\r\n`)).status, 'ok');
    assert.equal((await run(`select id, v, b || '; -- x' as b from ref('bronze.src')`)).status, 'ok');
    // A ; then a banner of dashes before more SQL: no backtracking blow-up (a regex took seconds here).
    const banner = `-- owned by the data team;\n${'-'.repeat(200)}\nselect id, v, b from ref('bronze.src')`;
    assert.equal((await run(banner)).status, 'ok');
    assert.equal((await run(`select id, v, b from ref('bronze.src');\n`)).status, 'ok');
    assert.equal((await run(`select id, v, b from ref('bronze.src') -- done`)).status, 'ok');
    // A model named like a table it did not make (a pipeline's) refuses to write it.
    write(dir, 'models/bronze/src.sql', 'select 1 as id');
    const project = loadModels(dir);
    const [taken] = await runModels(context, project, selectModels(project, ['bronze.src']));
    assert.equal(taken!.status, 'failed');
    assert.match(String((taken!.error as Error).message), /was not made by this model/);
    assert.equal(await rowCount('bronze.src'), 2);
  });

  it('commits an incremental append only on the state it read: a concurrent run fails instead of doubling', async () => {
    const dir = path.join(lake.dir, 'racing');
    await lake.createFromSql('bronze.ev', `select i::bigint as id from range(5) r(i)`);
    write(
      dir,
      'models/gold/ev.sql',
      `/* ---\nmaterialized: incremental\n--- */\nselect id from ref('bronze.ev')`,
    );
    const project = loadModels(dir);
    const runOnce = () => runModels(context, project, selectModels(project, ['gold.ev']));
    await runOnce();
    await lake.appendSql('bronze.ev', `select (5 + i)::bigint as id from range(5) r(i)`);
    const outcomes = (await Promise.all([runOnce(), runOnce()])).flat();
    for (const outcome of outcomes)
      if (outcome.status !== 'ok')
        assert.match(String((outcome.error as Error).message), /another run committed/);
    assert.equal(await rowCount('gold.ev'), 10, 'the new rows once');
    // A compaction of the model's table between runs changes no record of what was consumed.
    await compact(await lake.catalog.loadTable(parseTableIdentifier('gold.ev')), lake.engine);
    await lake.appendSql('bronze.ev', `select (10 + i)::bigint as id from range(5) r(i)`);
    assert.equal((await runOnce())[0]!.result?.action, 'incremental');
    assert.equal(await rowCount('gold.ev'), 15);
  });

  it('builds in full, every run, an incremental model that reads only views', async () => {
    const dir = path.join(lake.dir, 'viewsonly');
    await lake.createFromSql('bronze.e', `select i::bigint as id from range(5) r(i)`);
    write(dir, 'models/silver/v.sql', `/* ---\nmaterialized: view\n--- */\nselect id from ref('bronze.e')`);
    write(
      dir,
      'models/gold/inc.sql',
      `/* ---\nmaterialized: incremental\n--- */\nselect id from ref('silver.v')`,
    );
    const project = loadModels(dir);
    const runAll = () => runModels(context, project, selectModels(project, ['gold.inc+', '+gold.inc']));
    await runAll();
    await lake.appendSql('bronze.e', `select (5 + i)::bigint as id from range(5) r(i)`);
    const outcome = (await runAll()).find((o) => o.model === 'gold.inc')!;
    assert.equal(outcome.result?.action, 'full-refresh');
    assert.equal(await rowCount('gold.inc'), 10);
  });

  it('names the cycle when models refer to each other', () => {
    const dir = path.join(lake.dir, 'cyclic');
    write(dir, 'models/gold/a.sql', `select * from ref('gold.b')`);
    write(dir, 'models/gold/b.sql', `select * from ref('gold.c')`);
    write(dir, 'models/gold/c.sql', `select * from ref('gold.a')`);
    assert.throws(
      () => topologicalOrder(loadModels(dir)),
      (error) =>
        isTributaryError(error, 'CONFIG_INVALID') &&
        /gold\.a → gold\.b → gold\.c → gold\.a/.test(error.message),
    );
  });

  it('reports configuration errors with the file and line', () => {
    const dir = path.join(lake.dir, 'bad');
    write(dir, 'models/gold/x.sql', `/* ---\nmaterialized: table\nunique_keys: id\n--- */\nselect 1 as id`);
    assert.throws(
      () => loadModels(dir),
      (error) =>
        isTributaryError(error, 'CONFIG_INVALID') &&
        /x\.sql:3: .*unknown key "unique_keys"/.test(error.message),
    );
  });
});
