/**
 * The embedded log's append throughput with fsync durability: batched appends (1,000 records of 1 KB per
 * call) and single-record appends from 100 concurrent producers, which group commit turns into shared
 * transactions. Goals (issue 4): ≥ 300k records/s batched, ≥ 50k records/s single-record.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EmbeddedLog } from '../src/log/embedded-log.ts';
import type { Benchmark } from './harness.ts';

const payload = (i: number) =>
  new TextEncoder().encode(JSON.stringify({ id: i, type: 'page_view', pad: 'x'.repeat(980) }));

const benchmark: Benchmark = {
  name: 'log-append',
  description:
    'embedded log appends, fsync: batches of 1,000 records of 1 KB and of 100 B, and 100 concurrent single-record producers of 1 KB',
  async run(args) {
    const total = Number(args[0] ?? 1_000_000);
    const singles = Number(args[1] ?? 200_000);
    const directory = mkdtempSync(path.join(tmpdir(), 'bench-log-'));
    const log = await EmbeddedLog.open({ directory, durability: 'fsync', retentionIntervalMs: 0 });
    await log.ensureTopic('batched', { partitions: 4 });
    await log.ensureTopic('single', { partitions: 4 });
    const value = payload(1);

    let started = performance.now();
    for (let i = 0; i < total; i += 1000) {
      await log.append(
        'batched',
        Array.from({ length: 1000 }, () => ({ value })),
      );
    }
    const batchedSeconds = (performance.now() - started) / 1000;

    const small = new TextEncoder().encode(
      JSON.stringify({ id: 1, type: 'page_view', path: '/pricing' }).padEnd(100, ' '),
    );
    await log.ensureTopic('small', { partitions: 4 });
    started = performance.now();
    for (let i = 0; i < total; i += 1000) {
      await log.append(
        'small',
        Array.from({ length: 1000 }, () => ({ value: small })),
      );
    }
    const smallSeconds = (performance.now() - started) / 1000;

    let next = 0;
    const latencies: number[] = [];
    started = performance.now();
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        while (next < singles) {
          next++;
          const t = performance.now();
          await log.append('single', [{ value }]);
          latencies.push(performance.now() - t);
        }
      }),
    );
    const singleSeconds = (performance.now() - started) / 1000;
    await log.close();
    rmSync(directory, { recursive: true, force: true });
    latencies.sort((a, b) => a - b);
    return {
      figures: {
        'batched records/s': Math.round(total / batchedSeconds),
        'batched MB/s': (total * value.length) / 1e6 / batchedSeconds,
        'batched 100 B records/s': Math.round(total / smallSeconds),
        'single-record records/s (100 producers)': Math.round(singles / singleSeconds),
        'single-record p50 ms': latencies[Math.floor(latencies.length / 2)] ?? 0,
        'single-record p99 ms': latencies[Math.floor(latencies.length * 0.99)] ?? 0,
      },
      notes: `${total.toLocaleString('en-US')} batched, ${singles.toLocaleString('en-US')} single-record appends`,
    };
  },
};
export default benchmark;
