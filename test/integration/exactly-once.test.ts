/**
 * docs/exactly-once.md, tested the hard way: a pipeline over 100,000 records (some invalid) is killed with
 * -9 at random moments, many of them in the middle of a commit, and restarted each time. At the end the
 * Iceberg table and the PostgreSQL table hold exactly the valid records, and the DLQ exactly the invalid ones.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import pg from 'pg';
import { CLI, tributary } from '../cli.ts';
import { useService } from '../services/index.ts';

const postgres = await useService('postgres');

const RECORDS = 100_000;
const KILLS = Number(process.env.TRIBUTARY_CRASH_KILLS ?? 20);

/** Every 97th record is not JSON; every 89th has an amount that is not a number. */
function recordAt(i: number): { line: string; valid: boolean } {
  if (i % 97 === 3) return { line: `{"id": ${i}, broken`, valid: false };
  const amount = i % 89 === 5 ? '"lots"' : String((i % 1000) / 4);
  return {
    line: `{"id": ${i}, "user": "u${i % 101}", "amount": ${amount}, "ts": "2026-11-${String(1 + (i % 28)).padStart(2, '0')}T12:00:00Z"}`,
    valid: i % 89 !== 5,
  };
}

/** Runs `run <pipeline> --once`, killing it with -9 at random moments, then once more to the end. */
async function runWithKills(project: string, pipeline: string, maxKills: number): Promise<number> {
  let kills = 0;
  for (let attempt = 0; kills < maxKills && attempt < maxKills * 3; attempt++) {
    const child = spawn(process.execPath, [CLI, 'run', pipeline, '--once'], {
      cwd: project,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // Kill at a random moment after start-up (DuckDB and the catalog take ~0.5 s to open).
    const outcome = await Promise.race([
      exited.then(() => 'exited' as const),
      sleep(400 + Math.random() * 1500).then(() => 'timer' as const),
    ]);
    if (outcome === 'exited') {
      assert.equal(await exited, 0, `run exited on its own with an error:\n${stderr}`);
      break; // all records processed before the kill came
    }
    child.kill('SIGKILL');
    await exited;
    kills++;
  }
  const final = await tributary(['run', pipeline, '--once'], { cwd: project });
  assert.equal(final.code, 0, final.stderr);
  return kills;
}

describe('exactly once', { skip: postgres.skip }, () => {
  it(
    'delivers every record exactly once into Iceberg and PostgreSQL across 20 kills with -9, and through validate into Iceberg alone',
    { timeout: 15 * 60_000 },
    async () => {
      const pgTable = `crash_orders_${process.pid}_${Date.now()}`;
      const project = mkdtempSync(path.join(tmpdir(), 'tributary-exactly-once-'));
      writeFileSync(
        path.join(project, 'tributary.yaml'),
        'project: crash\nlog:\n  backend: embedded\n  durability: os\n  partitions: 3\n',
      );
      writeFileSync(
        path.join(project, 'schema.json'),
        JSON.stringify({
          fields: [
            { name: 'id', type: 'long', required: true },
            { name: 'user', type: 'string' },
            { name: 'amount', type: 'double' },
            { name: 'ts', type: 'timestamptz' },
          ],
        }),
      );
      const pipelines = path.join(project, 'pipelines');
      (await import('node:fs')).mkdirSync(pipelines);
      writeFileSync(
        path.join(pipelines, 'orders.yaml'),
        [
          'source:',
          '  type: topic',
          '  topic: orders',
          'sinks:',
          '  - type: iceberg',
          '    table: bronze.orders',
          '    schema: schema.json',
          '    partition: day(ts)',
          '  - type: postgres',
          `    url: ${postgres.info!.url}`,
          `    table: ${pgTable}`,
          '    columns: { id: bigint, user: text, amount: double precision, ts: timestamptz }',
          'dlq:',
          '  max: 0',
          'batch:',
          '  max_records: 2000',
          '  interval: 50ms',
          '',
        ].join('\n'),
      );
      // The same records through validate into Iceberg alone: the path where sinks get records decoded on
      // demand from their log bytes (every transform preserves values, every sink takes raw bytes), in two
      // lanes (concurrency 2) whose data files are written side by side and committed in turn.
      writeFileSync(
        path.join(project, 'order.schema.json'),
        JSON.stringify({ type: 'object', properties: { amount: { type: 'number' } }, required: ['id'] }),
      );
      writeFileSync(
        path.join(pipelines, 'lake.yaml'),
        [
          'source: {type: topic, topic: orders}',
          'transforms:',
          '  - {type: validate, schema: order.schema.json}',
          'sinks:',
          '  - {type: iceberg, table: lake.orders, schema: schema.json, partition: day(ts)}',
          'dlq: {max: 0}',
          'batch: {max_records: 2000, interval: 50ms}',
          'concurrency: 2',
          '',
        ].join('\n'),
      );
      let expectedValid = 0;
      let expectedSum = 0n;
      const lines: string[] = [];
      for (let i = 0; i < RECORDS; i++) {
        const { line, valid } = recordAt(i);
        lines.push(line);
        if (valid) {
          expectedValid++;
          expectedSum += BigInt(i);
        }
      }
      writeFileSync(path.join(project, 'orders.ndjson'), lines.join('\n') + '\n');
      const produced = await tributary(['topics', 'produce', 'orders', 'orders.ndjson'], {
        cwd: project,
      });
      assert.equal(produced.code, 0, produced.stderr);

      const kills = await runWithKills(project, 'orders', KILLS);

      const query = async (sql: string) => {
        const result = await tributary(['query', sql, '--format', 'json'], { cwd: project });
        assert.equal(result.code, 0, result.stderr);
        return (JSON.parse(result.stdout) as Array<Record<string, string | number>>)[0]!;
      };
      const rows = await query(
        'select count(*)::bigint as n, count(distinct id)::bigint as d, sum(id)::hugeint as s from bronze.orders',
      );
      assert.equal(Number(rows.n), expectedValid, `rows in Iceberg after ${kills} kills`);
      assert.equal(Number(rows.d), expectedValid, 'no duplicates');
      assert.equal(BigInt(rows.s!), expectedSum, 'checksum');
      // A record that is not JSON is rejected once (stage decode); one whose amount is not a number is
      // rejected by each sink that cannot store it (Iceberg and PostgreSQL): one DLQ row per stage.
      const dlq = await query(
        `select count(*)::bigint as n, count(distinct ("partition", "offset"))::bigint as records,
                count(distinct (stage, "partition", "offset"))::bigint as d from bronze._dlq where pipeline = 'orders'`,
      );
      const notJson = lines.filter((l) => l.includes('broken')).length;
      const badAmount = RECORDS - expectedValid - notJson;
      assert.equal(Number(dlq.records), RECORDS - expectedValid, 'every invalid record is in the DLQ');
      assert.equal(Number(dlq.n), notJson + 2 * badAmount, 'DLQ rows: one per rejecting stage');
      assert.equal(Number(dlq.d), Number(dlq.n), 'no duplicate DLQ rows');
      const client = new pg.Client({ connectionString: postgres.info!.url });
      await client.connect();
      try {
        const { rows: pgRows } = await client.query<{ n: string; d: string; s: string }>(
          `select count(*) as n, count(distinct id) as d, coalesce(sum(id), 0) as s from ${pgTable}`,
        );
        assert.equal(Number(pgRows[0]!.n), expectedValid, 'rows in PostgreSQL');
        assert.equal(Number(pgRows[0]!.d), expectedValid, 'no duplicates in PostgreSQL');
        assert.equal(BigInt(pgRows[0]!.s), expectedSum, 'PostgreSQL checksum');
      } finally {
        await client.query(`drop table if exists ${pgTable}`);
        await client.end();
      }
      assert.ok(kills >= Math.min(KILLS, 5), `the pipeline was killed ${kills} times`);

      const lakeKills = await runWithKills(project, 'lake', Math.ceil(KILLS / 2));
      const lake = await query(
        'select count(*)::bigint as n, count(distinct id)::bigint as d, sum(id)::hugeint as s from lake.orders',
      );
      assert.equal(Number(lake.n), expectedValid, `rows in lake.orders after ${lakeKills} kills`);
      assert.equal(Number(lake.d), expectedValid, 'no duplicates in lake.orders');
      assert.equal(BigInt(lake.s!), expectedSum, 'lake.orders checksum');
      const lakeDlq = await query(
        `select count(*)::bigint as n, count(distinct ("partition", "offset"))::bigint as records,
                count(distinct stage) as stages from lake._dlq where pipeline = 'lake'`,
      );
      assert.equal(Number(lakeDlq.records), RECORDS - expectedValid, 'every invalid record in lake._dlq');
      assert.equal(Number(lakeDlq.n), RECORDS - expectedValid, 'each rejected once (decode or validate)');
      assert.equal(Number(lakeDlq.stages), 2);
      console.log(
        `exactly-once: ${kills} + ${lakeKills} kills, ${expectedValid} rows, ${RECORDS - expectedValid} DLQ rows`,
      );
    },
  );
});
