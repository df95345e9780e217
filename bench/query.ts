/**
 * Queries and incremental models over an Iceberg table of N rows (default 10,000,000; 5 columns, 10 appends
 * so 10+ data files).
 *
 *  1. An aggregate (group by a low-cardinality column, count/sum/avg) through `QueryEngine.query` — the
 *     path of `tributary query` and of models: the table exposed as a view over its current snapshot —
 *     and through the hardened `ReadOnlyQueryEngine` of the HTTP API, against the peer: DuckDB's
 *     `read_parquet` over the same data files, in its own instance with the same settings. Medians of 7
 *     alternating warm runs. Goal: ours ≥ 0.8× the peer's speed.
 *  2. Two incremental models over the table — an aggregate (sum per kind, merged by key) and a row-level
 *     filter keeping half the rows (appended) — built in full, then refreshed after appending 1,000 rows
 *     and after 100,000: a refresh should cost in proportion to the new rows, not the table.
 *
 * Usage: npm run bench -- query [rows]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { parseTableIdentifier } from '../src/catalog/identifier.ts';
import { quoteLiteral } from '../src/iceberg/duckdb.ts';
import { planScan } from '../src/iceberg/scan.ts';
import { loadModels } from '../src/query/models/project.ts';
import { runModel } from '../src/query/models/run.ts';
import { QueryEngine } from '../src/query/query-engine.ts';
import { ReadOnlyQueryEngine } from '../src/query/read-only.ts';
import { TableViews } from '../src/query/table-views.ts';
import { openTestLakehouse } from '../src/query/testing.ts';
import type { Benchmark, BenchResult } from './harness.ts';

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
};
const round = (n: number) => Math.round(n * 100) / 100;

const rowsSql = (from: number, count: number) => `select (${from} + i)::bigint as id,
  'user-' || ((${from} + i) * 7919 % 100000) as user_id,
  ((${from} + i) % 16)::int as kind,
  ((${from} + i) * 37 % 100000) / 100.0 as amount,
  timestamptz '2026-01-01 00:00:00+00' + to_seconds((${from} + i) % 2592000) as ts
  from range(${count}) r(i)`;

const QUERY =
  'select kind, count(*) as n, sum(amount) as total, avg(amount) as mean from bench.events group by kind order by kind';

const benchmark: Benchmark = {
  name: 'query',
  description:
    'aggregate over an Iceberg table of N rows vs read_parquet on the same files; incremental model refresh after small appends (default N = 10,000,000)',
  async run(args): Promise<BenchResult> {
    const rows = Number(args[0] ?? 10_000_000);
    const lake = await openTestLakehouse('bench-query-');
    try {
      const started = performance.now();
      const batch = Math.ceil(rows / 10);
      await lake.createFromSql('bench.events', rowsSql(0, batch));
      for (let from = batch; from < rows; from += batch)
        await lake.appendSql('bench.events', rowsSql(from, Math.min(batch, rows - from)));
      console.log(
        `loaded ${rows.toLocaleString('en-US')} rows in ${((performance.now() - started) / 1000).toFixed(1)}s`,
      );

      const table = await lake.catalog.loadTable(parseTableIdentifier('bench.events'));
      const plan = await planScan(table.metadata, table.storage);
      const files = plan.dataFiles.map((p) => quoteLiteral(table.storage.localPath(p.file.filePath)!));
      const peerInstance = await DuckDBInstance.create(':memory:');
      const peer = await peerInstance.connect();
      await peer.run(`set TimeZone = 'UTC'`);
      const peerSql = QUERY.replace('bench.events', `read_parquet([${files.join(', ')}])`);
      const engine = new QueryEngine(lake.catalog, lake.engine);
      const readOnly = await ReadOnlyQueryEngine.open(lake.catalog);

      const time = async (work: () => Promise<unknown>) => {
        const t = performance.now();
        await work();
        return performance.now() - t;
      };
      const ours: number[] = [];
      const hardened: number[] = [];
      const theirs: number[] = [];
      let check: string | undefined;
      for (let i = 0; i < 8; i++) {
        const a = await time(async () => {
          const result = await engine.query(QUERY);
          check ??= JSON.stringify(result.rows.map((r) => [r.kind, r.n]));
        });
        const b = await time(() => readOnly.run(QUERY, { maxRows: 100 }));
        const c = await time(async () => {
          const result = (await peer.runAndReadAll(peerSql)).getRowObjectsJson();
          if (JSON.stringify(result.map((r) => [r.kind, r.n])) !== check)
            throw new Error('the peer returned other rows');
        });
        if (i === 0) continue; // warm-up
        ours.push(a);
        hardened.push(b);
        theirs.push(c);
      }
      readOnly.close();
      peer.closeSync();
      peerInstance.closeSync();
      console.log(
        `query: ours ${median(ours).toFixed(1)} ms, read-only ${median(hardened).toFixed(1)} ms, read_parquet ${median(theirs).toFixed(1)} ms`,
      );

      // Incremental models: an aggregate (sum per kind, merged by key) and a row-level filter (appended).
      const root = path.join(lake.dir, 'project');
      mkdirSync(path.join(root, 'models', 'gold'), { recursive: true });
      writeFileSync(
        path.join(root, 'models', 'gold', 'kind_totals.sql'),
        `/* ---\nmaterialized: incremental\nunique_key: kind\nincremental: { merge: { n: sum, total: sum } }\n--- */\nselect kind, count(*) as n, sum(amount) as total from ref('bench.events') group by kind\n`,
      );
      writeFileSync(
        path.join(root, 'models', 'gold', 'big_spenders.sql'),
        `/* materialized: incremental */\nselect id, user_id, amount, ts from ref('bench.events') where amount >= 500\n`,
      );
      const project = loadModels(root);
      const context = {
        catalog: lake.catalog,
        engine: lake.engine,
        views: new TableViews(lake.catalog, lake.engine.connection),
      };
      const timings: Record<string, number> = {};
      for (const name of ['gold.kind_totals', 'gold.big_spenders']) {
        const t = performance.now();
        await runModel(context, project, project.models.get(name)!);
        timings[`${name} full`] = performance.now() - t;
      }
      let next = rows;
      for (const count of [1_000, 100_000]) {
        await lake.appendSql('bench.events', rowsSql(next, count));
        next += count;
        for (const name of ['gold.kind_totals', 'gold.big_spenders']) {
          const t = performance.now();
          const result = await runModel(context, project, project.models.get(name)!);
          if (result.action !== 'incremental')
            throw new Error(`expected an incremental refresh, got ${result.action}`);
          timings[`${name} +${count}`] = performance.now() - t;
        }
      }
      console.log(
        `models: ${Object.entries(timings)
          .map(([k, v]) => `${k} ${v.toFixed(0)} ms`)
          .join(', ')}`,
      );
      return {
        figures: {
          rows,
          'data files': files.length,
          'query median ms': round(median(ours)),
          'read-only query median ms': round(median(hardened)),
          'aggregate model full build ms': Math.round(timings['gold.kind_totals full']!),
          'aggregate model refresh +1k rows ms': Math.round(timings['gold.kind_totals +1000']!),
          'aggregate model refresh +100k rows ms': Math.round(timings['gold.kind_totals +100000']!),
          'row model full build ms': Math.round(timings['gold.big_spenders full']!),
          'row model refresh +1k rows ms': Math.round(timings['gold.big_spenders +1000']!),
          'row model refresh +100k rows ms': Math.round(timings['gold.big_spenders +100000']!),
        },
        peer: { name: 'DuckDB read_parquet', figures: { 'query median ms': round(median(theirs)) } },
        headline: 'query median ms',
        lowerIsBetter: true,
        notes:
          'group by over 5 columns, medians of 7 warm runs alternating; aggregate model = sum per kind merged by key, row model = filter keeping half the rows, appended',
      };
    } finally {
      lake.close();
    }
  },
};
export default benchmark;
