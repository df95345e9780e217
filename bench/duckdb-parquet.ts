/**
 * Baseline for the Iceberg writer: how fast DuckDB (our Parquet encoder) writes 10-column rows to a
 * Parquet file with Iceberg field ids on this machine. Every Iceberg append is bounded by this figure.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Benchmark } from './harness.ts';

const benchmark: Benchmark = {
  name: 'duckdb-parquet',
  description: 'DuckDB writes N rows × 10 columns to Parquet with FIELD_IDS (default N = 5,000,000)',
  async run(args) {
    const rows = Number(args[0] ?? 5_000_000);
    const dir = mkdtempSync(path.join(tmpdir(), 'bench-parquet-'));
    const file = path.join(dir, 'out.parquet');
    const instance = await DuckDBInstance.create(':memory:');
    const connection = await instance.connect();
    await connection.run(`create table t as select i::bigint as id, 'user-' || (i % 1000) as user_id, (i % 7)::int as kind,
      i * 0.5 as amount, 'event' as name, now() as ts, i % 2 = 0 as flag, 'payload-' || i as payload, (i % 100)::smallint as s, uuid() as u
      from range(${rows}) r(i)`);
    const fieldIds =
      '{id: 1, user_id: 2, kind: 3, amount: 4, name: 5, ts: 6, flag: 7, payload: 8, s: 9, u: 10}';
    const started = performance.now();
    await connection.run(`copy t to '${file}' (format parquet, compression zstd, field_ids ${fieldIds})`);
    const seconds = (performance.now() - started) / 1000;
    const bytes = statSync(file).size;
    connection.closeSync();
    instance.closeSync();
    rmSync(dir, { recursive: true, force: true });
    return { figures: { rows, 'rows/s': Math.round(rows / seconds), 'MB/s written': bytes / 1e6 / seconds } };
  },
};
export default benchmark;
