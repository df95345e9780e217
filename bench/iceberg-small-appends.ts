/**
 * Small appends, side by side with pyiceberg 0.12 in one run: K appends (default 1,000) of 100 rows each to
 * the 10-column `day(ts)`-partitioned table in a SQLite SQL catalog, each its own snapshot — what a sink
 * committing small batches does. The latency of one append is the whole call: write the Parquet file,
 * the manifest, the manifest list and the metadata file, then swap the catalog pointer.
 *
 * Ours: `append(table, engine, (select … from range(…)))` with fsync on (the product's default;
 * `--no-fsync` turns it off). pyiceberg: `table.append(pyarrow_table)`, the batch built before the clock
 * starts, timed in Python with perf_counter. pyiceberg never fsyncs. Rows are 10 s apart, so a batch
 * lands in one partition (rarely two) and the table grows to K snapshots and K manifests.
 *
 * Usage: npm run bench -- iceberg-small-appends [appends] [--rows N] [--no-fsync] [--no-peer]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openEngine } from '../src/iceberg/duckdb.ts';
import { append } from '../src/iceberg/operations/write.ts';
import type { Benchmark, BenchResult } from './harness.ts';
import {
  createBenchTable,
  eventRowsSql,
  instrumentCatalog,
  instrumentEngine,
  mean,
  percentile,
  round,
  runPyiceberg,
  Stages,
} from './lib/iceberg.ts';

const PY_SMALL = `
import datetime, decimal
table = create_events()
appends, rows = int(os.environ["APPENDS"]), int(os.environ["ROWS"])
base = datetime.datetime(2025, 6, 1, tzinfo=datetime.timezone.utc)
countries = ["US", "DE", "FR", "JP", "BR", "IN", "GB", "CA"]
def batch(k):
    ids = range(k * rows, (k + 1) * rows)
    return pa.table({
        "id": [i for i in ids],
        "user_id": [f"user-{(i * 7919) % 100000:06d}" for i in ids],
        "ts": [base + datetime.timedelta(seconds=10 * i) for i in ids],
        "amount": [(i % 1000000) / 100.0 for i in ids],
        "quantity": [i % 100 for i in ids],
        "is_member": [i % 2 == 0 for i in ids],
        "payload": [f"payload-{i:032x}" for i in ids],
        "signup_date": [datetime.date(2025, 1, 1) + datetime.timedelta(days=i % 365) for i in ids],
        "price": [decimal.Decimal(i % 10000000).scaleb(-2) for i in ids],
        "country": [countries[i % 8] for i in ids],
    }, schema=ARROW)
latencies = []
for k in range(appends):
    data = batch(k)
    t0 = time.perf_counter()
    table.append(data)
    latencies.append((time.perf_counter() - t0) * 1000)
summary = table.current_snapshot().summary
print(json.dumps({"latencies_ms": latencies, "records": int(summary["total-records"]), "files": int(summary["total-data-files"])}))
`;

function latencyFigures(latencies: readonly number[]): Record<string, number> {
  const tenth = Math.max(1, Math.floor(latencies.length / 10));
  return {
    'p50 ms': round(percentile(latencies, 50)),
    'p90 ms': round(percentile(latencies, 90)),
    'p99 ms': round(percentile(latencies, 99)),
    'max ms': round(Math.max(...latencies)),
    'first 10% mean ms': round(mean(latencies.slice(0, tenth))),
    'last 10% mean ms': round(mean(latencies.slice(-tenth))),
    'appends/s': round(latencies.length / (latencies.reduce((a, b) => a + b, 0) / 1000)),
  };
}

const benchmark: Benchmark = {
  name: 'iceberg-small-appends',
  description:
    'K appends of 100 rows each (default K = 1,000) into a day(ts)-partitioned table: latency per append, vs pyiceberg 0.12',
  async run(args): Promise<BenchResult> {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: {
        rows: { type: 'string', default: '100' },
        'no-fsync': { type: 'boolean', default: false },
        'no-peer': { type: 'boolean', default: false },
      },
    });
    const appends = Number(positionals[0] ?? 1000);
    const rows = Number(values.rows);
    const fsync = !values['no-fsync'];
    const withPeer = !values['no-peer'];
    const dir = mkdtempSync(path.join(tmpdir(), 'bench-iceberg-small-'));
    const engine = await openEngine();
    try {
      // Ours.
      const { catalog, table } = await createBenchTable(path.join(dir, 'ours'), { fsync });
      const stages = new Stages();
      instrumentCatalog(catalog, stages);
      const instrumented = instrumentEngine(engine, stages);
      const latencies: number[] = [];
      for (let k = 0; k < appends; k++) {
        const relation = `(${eventRowsSql(rows, k * rows, { secondsApart: 10 })})`;
        const started = performance.now();
        await append(table, instrumented, relation);
        latencies.push(performance.now() - started);
      }
      catalog.close();
      const total = Number(table.currentSnapshot?.summary['total-records'] ?? 0);
      if (total !== appends * rows) throw new Error(`the table has ${total} rows, not ${appends * rows}`);
      const ours = latencyFigures(latencies);
      const totalMs = latencies.reduce((a, b) => a + b, 0);
      console.log(
        `tributary (fsync ${fsync ? 'on' : 'off'}): p50 ${ours['p50 ms']} ms, p99 ${ours['p99 ms']} ms, first 10% ${ours['first 10% mean ms']} ms, last 10% ${ours['last 10% mean ms']} ms; mean per append by stage:`,
      );
      console.log(stages.report(totalMs, appends).join('\n'));
      const perAppend = (...names: string[]) =>
        round(names.reduce((sum, n) => sum + (stages.ms.get(n) ?? 0), 0) / appends);
      const figures: Record<string, number> = {
        appends,
        rows,
        ...ours,
        'data write mean ms': perAppend(
          'describe input (schema inference)',
          'stage: read input + cast + partition',
          'required-column check',
          'partition split: distinct groups',
          'parquet write (COPY per partition)',
          'read + cast + partition + parquet write (one COPY)',
          'metrics (parquet_metadata per file)',
          'drop stage',
          'other SQL',
        ),
        'metadata commit IO mean ms': perAppend(
          'read manifest list',
          'write+fsync manifest',
          'write+fsync manifest list',
          'write+fsync metadata.json',
          'catalog swap (SQLite UPDATE, synchronous=FULL)',
        ),
      };

      // pyiceberg.
      let peer: BenchResult['peer'];
      if (withPeer) {
        const py = await runPyiceberg<{ latencies_ms: number[]; records: number; files: number }>(PY_SMALL, {
          DB: path.join(dir, 'py', 'catalog.db'),
          WAREHOUSE: path.join(dir, 'py', 'warehouse'),
          APPENDS: String(appends),
          ROWS: String(rows),
        });
        if (py.records !== appends * rows)
          throw new Error(`pyiceberg's table has ${py.records} rows, not ${appends * rows}`);
        const theirs = latencyFigures(py.latencies_ms);
        console.log(
          `pyiceberg: p50 ${theirs['p50 ms']} ms, p99 ${theirs['p99 ms']} ms, first 10% ${theirs['first 10% mean ms']} ms, last 10% ${theirs['last 10% mean ms']} ms`,
        );
        peer = { name: 'pyiceberg 0.12', figures: { appends, rows, ...theirs } };
      }
      return {
        figures,
        peer,
        headline: 'p50 ms',
        lowerIsBetter: true,
        notes: `fsync ${fsync ? 'on (product default)' : 'off'}; pyiceberg does not fsync; latency = whole append call`,
      };
    } finally {
      engine.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
export default benchmark;
