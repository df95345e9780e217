/**
 * Scan planning over a table of 10,000 data files, and the same plan by pyiceberg 0.12 on the same table
 * in the same run (pyiceberg opens our SQLite catalog: the SQL catalogs are compatible).
 *
 * The table is built realistically but fast: C commits (default 200) of F files each (default 50) through
 * our real commit path (`SnapshotProducer`: one manifest per commit, manifest list, metadata file, catalog
 * swap), with synthetic `DataFile` entries — no Parquet is written, planning never opens data files. The
 * files are time-ordered as a streaming sink writes them: file g holds ids [100g, 100g + 99] and ts in its
 * own 259 s slice of 30 days (partition day(ts)), with full column metrics (sizes, counts, bounds of all
 * 10 columns), so manifest entries are as large as real ones.
 *
 * Timed: `planScan(metadata, storage)` (median of R runs, default 9, after one untimed warm-up) without a
 * filter, with a one-day ts filter (pruned by manifest partition summaries), and with a narrow id range
 * (pruned by file bounds only: every manifest is read). pyiceberg: `table.scan(row_filter).plan_files()`.
 * Every run is cold: planScan caches no manifests (only the decoder compiled for their writer schema).
 * Without a filter planScan skips the column metrics unread, as Java's scans do; "no filter + stats" is
 * the same plan with `includeColumnStats` (every metric decoded, as pyiceberg's plan_files does).
 *
 * Usage: npm run bench -- iceberg-scan-planning [commits] [--files-per-commit F] [--runs R] [--no-peer]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { DataFile } from '../src/iceberg/manifest.ts';
import { planScan, type Predicate, type ScanOptions } from '../src/iceberg/scan.ts';
import { toBinary } from '../src/iceberg/single-value.ts';
import { SnapshotProducer } from '../src/iceberg/snapshot-producer.ts';
import type { IcebergValue, PrimitiveType, Schema } from '../src/iceberg/types.ts';
import type { Benchmark, BenchResult } from './harness.ts';
import { createBenchTable, median, round, runPyiceberg } from './lib/iceberg.ts';

const DAY_US = 86_400_000_000n;
const START_US = BigInt(Date.UTC(2025, 5, 1)) * 1000n;
const START_DAY = Date.UTC(2025, 5, 1) / 86_400_000;

export function syntheticFile(schema: Schema, location: string, g: number, total: number): DataFile {
  const span = (30n * DAY_US) / BigInt(total);
  const tsLow = START_US + BigInt(g) * span;
  const tsHigh = tsLow + span - 1n;
  const day = Number((tsLow - START_US) / DAY_US);
  const bounds: Record<string, [IcebergValue, IcebergValue]> = {
    id: [BigInt(g * 100), BigInt(g * 100 + 99)],
    user_id: ['user-000017', 'user-099981'],
    ts: [tsLow, tsHigh],
    amount: [0.5, 9999.5],
    quantity: [0, 99],
    is_member: [false, true],
    payload: ['payload-0001a2b3', 'payload-fffe9c8d'],
    signup_date: [20089, 20453],
    price: [15n, 9_999_814n],
    country: ['BR', 'US'],
  };
  const lowerBounds = new Map<number, Uint8Array>();
  const upperBounds = new Map<number, Uint8Array>();
  const columnSizes = new Map<number, number>();
  const counts = new Map<number, number>();
  const nulls = new Map<number, number>();
  for (const field of schema.fields) {
    const [low, high] = bounds[field.name]!;
    lowerBounds.set(field.id, toBinary(field.type as PrimitiveType, low));
    upperBounds.set(field.id, toBinary(field.type as PrimitiveType, high));
    columnSizes.set(field.id, 400 + ((g * 31 + field.id * 17) % 600));
    counts.set(field.id, 100);
    nulls.set(field.id, 0);
  }
  const dayValue = START_DAY + day;
  const date = new Date(dayValue * 86_400_000).toISOString().slice(0, 10);
  return {
    content: 'data',
    filePath: `${location}/data/ts_day=${date}/${String(g).padStart(5, '0')}-synthetic.parquet`,
    fileFormat: 'PARQUET',
    partition: [dayValue],
    recordCount: 100,
    fileSizeInBytes: 8000 + (g % 977),
    columnSizes,
    valueCounts: counts,
    nullValueCounts: nulls,
    lowerBounds,
    upperBounds,
    splitOffsets: [4],
  };
}

interface PlanFigures {
  readonly 'files (no filter)': number;
  readonly 'files (ts day)': number;
  readonly 'files (id range)': number;
  readonly 'no filter median ms': number;
  readonly 'ts day filter median ms': number;
  readonly 'id range filter median ms': number;
  readonly 'no filter + stats median ms'?: number;
}

const PY_PLAN = `
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan
table = catalog.load_table("bench.events")
runs = int(os.environ["RUNS"])
filters = {
    "none": None,
    "ts": And(GreaterThanOrEqual("ts", os.environ["TS_FROM"]), LessThan("ts", os.environ["TS_TO"])),
    "id": And(GreaterThanOrEqual("id", int(os.environ["ID_FROM"])), LessThan("id", int(os.environ["ID_TO"]))),
}
out = {}
for name, f in filters.items():
    scan = lambda: list(table.scan(row_filter=f).plan_files()) if f is not None else list(table.scan().plan_files())
    files = len(scan())
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        scan()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    out[name] = {"files": files, "median_ms": times[len(times) // 2]}
print(json.dumps(out))
`;

const benchmark: Benchmark = {
  name: 'iceberg-scan-planning',
  description:
    'planScan over a table of 10,000 data files (200 commits × 50 synthetic files), with and without filters, vs pyiceberg 0.12',
  async run(args): Promise<BenchResult> {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: {
        'files-per-commit': { type: 'string', default: '50' },
        runs: { type: 'string', default: '9' },
        'no-peer': { type: 'boolean', default: false },
      },
    });
    const commits = Number(positionals[0] ?? 200);
    const perCommit = Number(values['files-per-commit']);
    const runs = Number(values.runs);
    const withPeer = !values['no-peer'];
    const total = commits * perCommit;
    const dir = mkdtempSync(path.join(tmpdir(), 'bench-iceberg-plan-'));
    try {
      const { catalog, table } = await createBenchTable(dir, { fsync: false });
      let started = performance.now();
      for (let c = 0; c < commits; c++) {
        const files = Array.from({ length: perCommit }, (_, j) =>
          syntheticFile(table.schema, table.location, c * perCommit + j, total),
        );
        await new SnapshotProducer(table, { operation: 'append', addedDataFiles: files }).commit();
      }
      console.log(
        `built ${total.toLocaleString('en-US')} files in ${commits} commits in ${((performance.now() - started) / 1000).toFixed(1)} s`,
      );

      const dayUs = (day: number) => START_US + BigInt(day) * DAY_US;
      const idFrom = Math.floor(total / 2) * 100;
      const filters: Record<'ts' | 'id', Predicate[]> = {
        ts: [
          { column: 'ts', op: '>=', value: dayUs(15) },
          { column: 'ts', op: '<', value: dayUs(16) },
        ],
        id: [
          { column: 'id', op: '>=', value: BigInt(idFrom) },
          { column: 'id', op: '<', value: BigInt(idFrom + 1000) },
        ],
      };
      const cases: Record<string, ScanOptions> = {
        none: {},
        ts: { filter: filters.ts },
        id: { filter: filters.id },
        stats: { includeColumnStats: true },
      };
      const ours: Record<string, { files: number; ms: number; manifests: number }> = {};
      for (const [name, options] of Object.entries(cases)) {
        const plan = await planScan(table.metadata, table.storage, options); // warm-up
        const times: number[] = [];
        for (let r = 0; r < runs; r++) {
          started = performance.now();
          await planScan(table.metadata, table.storage, options);
          times.push(performance.now() - started);
        }
        ours[name] = { files: plan.dataFiles.length, ms: median(times), manifests: plan.manifestsScanned };
        console.log(
          `tributary planScan, filter ${name === 'stats' ? 'none, includeColumnStats' : name}: ${plan.dataFiles.length} files, ${plan.manifestsScanned} manifests read, ${plan.manifestsSkipped} skipped; median ${median(times).toFixed(1)} ms (min ${Math.min(...times).toFixed(1)}, max ${Math.max(...times).toFixed(1)})`,
        );
      }
      catalog.close();
      if (ours.none!.files !== total) throw new Error(`planned ${ours.none!.files} files, not ${total}`);
      if (ours.stats!.files !== total) throw new Error(`planned ${ours.stats!.files} files, not ${total}`);
      const figuresOf = (r: Record<string, { files: number; ms: number }>): PlanFigures => ({
        'files (no filter)': r.none!.files,
        'files (ts day)': r.ts!.files,
        'files (id range)': r.id!.files,
        'no filter median ms': round(r.none!.ms),
        'ts day filter median ms': round(r.ts!.ms),
        'id range filter median ms': round(r.id!.ms),
        ...(r.stats ? { 'no filter + stats median ms': round(r.stats.ms) } : {}),
      });

      let peer: BenchResult['peer'];
      if (withPeer) {
        const iso = (day: number) =>
          new Date(Number(dayUs(day) / 1000n)).toISOString().replace('Z', '+00:00');
        const py = await runPyiceberg<Record<string, { files: number; median_ms: number }>>(PY_PLAN, {
          DB: path.join(dir, 'catalog.db'),
          WAREHOUSE: path.join(dir, 'warehouse'),
          RUNS: String(runs),
          TS_FROM: iso(15),
          TS_TO: iso(16),
          ID_FROM: String(idFrom),
          ID_TO: String(idFrom + 1000),
        });
        for (const [name, r] of Object.entries(py))
          console.log(
            `pyiceberg plan_files, filter ${name}: ${r.files} files; median ${r.median_ms.toFixed(1)} ms`,
          );
        peer = {
          name: 'pyiceberg 0.12',
          figures: figuresOf(
            Object.fromEntries(Object.entries(py).map(([k, v]) => [k, { files: v.files, ms: v.median_ms }])),
          ) as unknown as Record<string, number>,
        };
      }
      return {
        figures: { commits, 'files per commit': perCommit, ...figuresOf(ours) },
        peer,
        headline: 'no filter median ms',
        lowerIsBetter: true,
        notes: `synthetic DataFile entries committed through SnapshotProducer (${commits} manifests); median of ${runs} runs`,
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
export default benchmark;
