/**
 * Bulk append, side by side with pyiceberg 0.12 in one run: N rows × 10 columns (long, string, timestamptz
 * over 30 days, double, int, boolean, string, date, decimal(12, 2), string) from one NDJSON file into a
 * `day(ts)`-partitioned table in a SQLite SQL catalog on the local disk.
 *
 * Ours is what `tributary tables append` does: `append(table, engine, fileRelation(…))` (src/iceberg/input-files.ts)
 * with fsync on (the product's default; `--no-fsync` turns it off). pyiceberg's is `pyarrow.json.read_json`
 * (explicit schema; dates arrive as text and are cast) then `table.append`, timed in Python with
 * perf_counter, interpreter start excluded. pyiceberg never fsyncs. Both timings include reading the file.
 *
 * Rounds (default 5) alternate ours and pyiceberg's, each into a new table; the figures are medians, and the
 * speed-up is also printed (and noted) as the median of each round's pair, which a passing load sways less.
 *
 * Usage: npm run bench -- iceberg-append [rows] [--rounds R] [--no-fsync] [--no-peer]
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openEngine } from '../src/iceberg/duckdb.ts';
import { fileRelation } from '../src/iceberg/input-files.ts';
import { append } from '../src/iceberg/operations/write.ts';
import type { Benchmark, BenchResult } from './harness.ts';
import {
  COPY_ONE_PASS,
  COPY_STAGED,
  createBenchTable,
  generateNdjson,
  instrumentCatalog,
  instrumentEngine,
  median,
  round as round2,
  runPyiceberg,
  Stages,
  sum,
} from './lib/iceberg.ts';

interface PyResult {
  read_s: number;
  append_s: number;
  files: number;
  records: number;
  bytes: number;
}

const PY_BULK = `
table = create_events()
read_schema = ARROW.set(ARROW.get_field_index("signup_date"), pa.field("signup_date", pa.string()))
t0 = time.perf_counter()
data = pj.read_json(os.environ["FILE"], parse_options=pj.ParseOptions(explicit_schema=read_schema))
data = data.set_column(data.schema.get_field_index("signup_date"), "signup_date", pc.cast(data.column("signup_date"), pa.date32()))
t1 = time.perf_counter()
table.append(data)
t2 = time.perf_counter()
summary = table.current_snapshot().summary
print(json.dumps({"read_s": t1 - t0, "append_s": t2 - t1, "files": int(summary["added-data-files"]), "records": int(summary["added-records"]), "bytes": int(summary["added-files-size"])}))
`;

const benchmark: Benchmark = {
  name: 'iceberg-append',
  description:
    'bulk append of N rows × 10 columns from NDJSON into a day(ts)-partitioned table, vs pyiceberg 0.12 (default N = 1,000,000)',
  async run(args): Promise<BenchResult> {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: {
        'no-fsync': { type: 'boolean', default: false },
        'no-peer': { type: 'boolean', default: false },
        rounds: { type: 'string', default: '5' },
      },
    });
    const rows = Number(positionals[0] ?? 1_000_000);
    const rounds = Number(values.rounds);
    const fsync = !values['no-fsync'];
    const withPeer = !values['no-peer'];
    const dir = mkdtempSync(path.join(tmpdir(), 'bench-iceberg-append-'));
    const engine = await openEngine();
    try {
      const file = path.join(dir, 'events.ndjson');
      let started = performance.now();
      await generateNdjson(engine, file, rows);
      console.log(
        `generated ${rows.toLocaleString('en-US')} rows: ${(statSync(file).size / 1e6).toFixed(0)} MB NDJSON in ${((performance.now() - started) / 1000).toFixed(1)} s`,
      );

      // Rounds alternate ours and pyiceberg's, each into a new table, so a change in the machine's load
      // during the run hits both; figures are medians over the rounds.
      const stages = new Stages();
      const ours: number[] = [];
      const theirs: PyResult[] = [];
      let files = 0;
      let bytes = 0;
      for (let round = 1; round <= rounds; round++) {
        const { catalog, table } = await createBenchTable(path.join(dir, `ours-${round}`), { fsync });
        instrumentCatalog(catalog, stages);
        started = performance.now();
        const relation = await fileRelation(instrumentEngine(engine, stages), 'ndjson', file, table.schema);
        const result = await append(table, instrumentEngine(engine, stages), relation);
        const ms = performance.now() - started;
        catalog.close();
        if (result.addedRecords !== rows)
          throw new Error(`appended ${result.addedRecords} rows, not ${rows}`);
        files = Number(table.currentSnapshot?.summary['added-data-files'] ?? 0);
        bytes = Number(table.currentSnapshot?.summary['added-files-size'] ?? 0);
        ours.push(ms / 1000);
        console.log(
          `round ${round} tributary: ${(ms / 1000).toFixed(2)} s, ${Math.round(rows / (ms / 1000)).toLocaleString('en-US')} rows/s, ${files} data files, fsync ${fsync ? 'on' : 'off'}`,
        );
        if (!withPeer) continue;
        const py = await runPyiceberg<PyResult>(PY_BULK, {
          DB: path.join(dir, `py-${round}`, 'catalog.db'),
          WAREHOUSE: path.join(dir, `py-${round}`, 'warehouse'),
          FILE: file,
        });
        if (py.records !== rows) throw new Error(`pyiceberg appended ${py.records} rows, not ${rows}`);
        theirs.push(py);
        const seconds = py.read_s + py.append_s;
        console.log(
          `round ${round} pyiceberg: ${seconds.toFixed(2)} s (read ${py.read_s.toFixed(2)} s, append ${py.append_s.toFixed(2)} s), ${Math.round(rows / seconds).toLocaleString('en-US')} rows/s, ${py.files} data files`,
        );
      }
      const seconds = median(ours);
      console.log(`tributary, mean time by stage over ${rounds} round(s):`);
      console.log(stages.report(sum(ours) * 1000, rounds).join('\n'));
      const stage = (name: string) => round2((stages.ms.get(name) ?? 0) / 1000 / rounds);
      const figures: Record<string, number> = {
        rows,
        rounds,
        'rows/s': Math.round(rows / seconds),
        s: round2(seconds),
        'data files': files,
        'MB written': round2(bytes / 1e6),
        'describe s': stage('describe input (schema inference)'),
        'read+stage s': stage('stage: read input + cast + partition'),
        'parquet s': stage(COPY_STAGED),
        'read+parquet s': stage(COPY_ONE_PASS),
        'metrics s': stage('metrics (parquet_metadata per file)'),
      };
      let peer: BenchResult['peer'];
      // Each round's pair runs back to back: the median of their ratios is less swayed by a load that
      // comes and goes during the run than the ratio of the two medians.
      const ratios = theirs.map((p, i) => (p.read_s + p.append_s) / ours[i]!);
      if (withPeer) {
        console.log(
          `speed-up by round: ${ratios.map((r) => `${r.toFixed(2)}×`).join(' ')}; median ${median(ratios).toFixed(2)}×`,
        );
        const pySeconds = median(theirs.map((p) => p.read_s + p.append_s));
        peer = {
          name: 'pyiceberg 0.12',
          figures: {
            rows,
            rounds,
            'rows/s': Math.round(rows / pySeconds),
            s: round2(pySeconds),
            'data files': theirs[0]!.files,
            'MB written': round2(theirs[0]!.bytes / 1e6),
            'read s': round2(median(theirs.map((p) => p.read_s))),
            'append s': round2(median(theirs.map((p) => p.append_s))),
          },
        };
      }
      return {
        figures,
        peer,
        headline: 'rows/s',
        notes: `fsync ${fsync ? 'on (product default)' : 'off'}; pyiceberg does not fsync; both read the NDJSON; median of ${rounds} alternating rounds${withPeer ? `; median speed-up of a round ${median(ratios).toFixed(2)}×` : ''}`,
      };
    } finally {
      engine.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
export default benchmark;
