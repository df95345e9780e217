/**
 * The benchmark harness. A benchmark is a module in bench/ whose default export is a `Benchmark`;
 * `npm run bench -- <name>` runs it and appends one row to bench/RESULTS.md with the machine it ran on,
 * the date, its figures and — where it has a peer — the peer's figure from the same run and the ratio.
 */
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface BenchResult {
  /** Named figures, each with its unit in the name ("rows/s", "p50 ms"). */
  readonly figures: Readonly<Record<string, number>>;
  /** The same measurements of the peer, run on the same machine in the same run. */
  readonly peer?: { readonly name: string; readonly figures: Readonly<Record<string, number>> };
  /** Which figure the ratio compares (ours / peer's); higher is better unless `lowerIsBetter`. */
  readonly headline?: string;
  readonly lowerIsBetter?: boolean;
  readonly notes?: string;
}

export interface Benchmark {
  readonly name: string;
  readonly description: string;
  run(args: readonly string[]): Promise<BenchResult>;
}

export const RESULTS_FILE = path.resolve(import.meta.dirname, 'RESULTS.md');

export function machine(): string {
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  return `${os.availableParallelism()} cores (${cpu}), ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB, Node ${process.versions.node}, ${os.platform()}`;
}

function format(figures: Readonly<Record<string, number>>): string {
  return Object.entries(figures)
    .map(
      ([name, value]) =>
        `${name}: ${Number.isInteger(value) ? value.toLocaleString('en-US') : value.toFixed(2)}`,
    )
    .join('; ');
}

export function recordResult(benchmark: Benchmark, result: BenchResult, command: string): string {
  if (!existsSync(RESULTS_FILE)) {
    writeFileSync(
      RESULTS_FILE,
      '# Benchmark results\n\nAppended by `npm run bench -- <name>`: every row is one run, on the machine it names. ' +
        'Ratios compare Tributary with the peer measured in the same run.\n\n' +
        '| date | benchmark | command | machine | figures | peer | ratio |\n|---|---|---|---|---|---|---|\n',
    );
  }
  let ratio = '';
  if (result.peer && result.headline) {
    const ours = result.figures[result.headline];
    const theirs = result.peer.figures[result.headline];
    if (ours !== undefined && theirs)
      ratio = `${(result.lowerIsBetter ? theirs / ours : ours / theirs).toFixed(2)}× (${result.headline})`;
  }
  const peer = result.peer ? `${result.peer.name}: ${format(result.peer.figures)}` : '—';
  const notes = result.notes ? ` (${result.notes})` : '';
  const row = `| ${new Date().toISOString().slice(0, 10)} | ${benchmark.name} | \`${command}\` | ${machine()} | ${format(result.figures)}${notes} | ${peer} | ${ratio || '—'} |\n`;
  // A trial run (while tuning, or on a busy machine) prints its row without recording it.
  if (process.env.TRIBUTARY_BENCH_RECORD !== '0') appendFileSync(RESULTS_FILE, row);
  return row;
}
