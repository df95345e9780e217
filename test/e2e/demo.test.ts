/**
 * `npm run demo` on embedded defaults: it starts, takes traffic, prints queries that return rows, and stops
 * cleanly. With PostgreSQL (the test services'; required under TRIBUTARY_REQUIRE_SERVICES=1) it also mirrors
 * an orders table by CDC while changing it, and prints matching numbers from both sides; run again, it
 * reuses nothing stale, and it leaves no replication slot or database behind. Without PostgreSQL it says in
 * one line how to get that part.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { it } from 'node:test';
import pg from 'pg';
import { REPO_ROOT, run } from '../services/harness.ts';
import { useService } from '../services/index.ts';

const postgres = await useService('postgres');

async function demo(...args: string[]): Promise<string> {
  const result = await run(process.execPath, [path.join(REPO_ROOT, 'scripts', 'demo.ts'), ...args], {
    cwd: REPO_ROOT,
  });
  assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
  assert.match(result.stdout, /Stopped cleanly/);
  return result.stdout;
}

function assertFirstCycle(stdout: string): void {
  const cycle = /First cycle done \((\d+) s\)/.exec(stdout);
  assert.ok(cycle, stdout);
  assert.ok(Number(cycle[1]) < 60, `the first cycle took ${cycle[1]} s`);
  assert.match(stdout, /page_views\s+visitors\n\d+\s+\d+/, 'bronze.pageviews has rows');
  assert.match(stdout, /status\s+orders\s+amount\n\w+\s+\d+/, 'silver.orders has rows');
  assert.match(stdout, /day\s+orders\s+revenue\n\d{4}-/, 'gold.daily_revenue has rows');
  assert.match(stdout, /stage\s+rejected\nvalidate\s+\d+/, 'the DLQ has the invalid page views');
  assert.match(stdout, /status,orders\r?\n\w+,\d+/, 'the query API answered CSV');
}

/** The CDC part's output: PostgreSQL's and the mirror's count and sum, equal, and the change history. */
function assertMirror(stdout: string): void {
  const source = /psql -d tributary_demo .*\norders\s+amount\n(\d+)\s+([\d.]+)/.exec(stdout);
  const mirror =
    /tributary query "select count\(\*\) as orders.*shop_orders.*\norders\s+amount\n(\d+)\s+([\d.]+)/.exec(
      stdout,
    );
  assert.ok(source && mirror, stdout);
  assert.deepEqual(mirror.slice(1), source.slice(1), 'the mirror shows the same count and sum as PostgreSQL');
  assert.ok(Number(source[1]) > 0);
  const made = /Mirror matches: .* after (\d+) inserts, (\d+) updates and (\d+) deletes/.exec(stdout);
  assert.ok(made, `the mirror matched row for row:\n${stdout}`);
  assert.ok(Number(made[1]) > 0 && Number(made[2]) > 0, 'rows were inserted and updated while running');
  const history = /op\s+changes\n((?:\w+\s+\d+\n)+)/.exec(stdout);
  assert.ok(history, stdout);
  const ops = new Map(
    history[1]!
      .trim()
      .split('\n')
      .map((line) => line.split(/\s+/) as [string, string]),
  );
  for (const op of ['snapshot', 'insert', 'update']) assert.ok(Number(ops.get(op)) > 0, history[1]);
}

it(
  'the demo runs a full cycle, mirrors PostgreSQL by CDC, and runs again',
  { timeout: 300_000, skip: postgres.skip },
  async () => {
    const first = await demo('--duration', '25');
    assertFirstCycle(first);
    assert.match(first, /CDC from PostgreSQL \(tributary_demo\.public\.orders/);
    assertMirror(first);

    // Again: the previous run's database and slot are gone, and the new run starts from a clean table.
    const second = await demo('--duration', '3');
    assertMirror(second);

    const client = new pg.Client({ connectionString: postgres.info!.url });
    await client.connect();
    try {
      const slots = await client.query(
        "select slot_name from pg_replication_slots where slot_name like 'tributary_demo%'",
      );
      assert.deepEqual(slots.rows, [], 'no replication slot is left to hold WAL');
      const databases = await client.query("select 1 from pg_database where datname = 'tributary_demo'");
      assert.equal(databases.rowCount, 0, 'the demo database is dropped');
    } finally {
      await client.end();
    }
  },
);

it(
  'without PostgreSQL, the demo runs the rest and says in one line how to add CDC',
  { timeout: 180_000 },
  async () => {
    const stdout = await demo('--duration', '10', '--no-cdc');
    assertFirstCycle(stdout);
    assert.match(stdout, /^CDC from PostgreSQL is off \(--no-cdc\): .*$/m);
    assert.doesNotMatch(stdout, /Change data capture/);
  },
);
