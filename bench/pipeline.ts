/**
 * A pipeline end to end: log → validate (JSON Schema) → Iceberg append, over 1 KB JSON events already in
 * the embedded log (a backlog). Reports records/s, the peak and median RSS while draining, CPU time per
 * record (all threads) and how busy the main thread was. Goals (issue 4): ≥ 100k records/s; a 5M-record
 * backlog drains with RSS under 500 MB (`npm run bench -- pipeline 5000000`). A second argument sets the
 * pipeline's `concurrency` (default 1); a third, `big-ids`, gives every event an id beyond 2^53 (a
 * snowflake, which the pipeline reads exactly: docs/pipelines.md#numbers). The backlog is written by one child process, as a producer would
 * write it, and drained by another with the Dockerfile's Node.js options, so that the peak RSS is the
 * deployed pipeline's alone.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildPipeline, openProjectLog, pipelineSchema } from '../src/components.ts';
import { createLogger } from '../src/core/logger.ts';
import { loadProject } from '../src/core/project.ts';
import type { Benchmark } from './harness.ts';

const schema = {
  type: 'object',
  required: ['id', 'type', 'user_id', 'ts'],
  properties: {
    id: { type: 'integer' },
    type: { enum: ['page_view', 'click', 'purchase'] },
    user_id: { type: 'string' },
    ts: { type: 'string', format: 'date-time' },
    amount: { type: 'number' },
    path: { type: 'string' },
    referrer: { type: 'string' },
    user_agent: { type: 'string' },
    payload: { type: 'string' },
  },
};

function event(i: number, bigIds: boolean): string {
  const base = {
    id: i,
    type: ['page_view', 'click', 'purchase'][i % 3],
    user_id: `user-${i % 10_000}`,
    ts: new Date(Date.UTC(2026, 10, 1) + i * 1000).toISOString(),
    amount: (i % 10_000) / 100,
    path: `/products/${i % 500}`,
    referrer: 'https://www.example.com/search?q=tributary',
    user_agent:
      'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
  };
  const text = JSON.stringify(base);
  const json = JSON.stringify({ ...base, payload: 'x'.repeat(Math.max(0, 1000 - text.length - 14)) });
  return bigIds ? json.replace(`"id":${i},`, `"id":${1234567890123456789n + BigInt(i)},`) : json;
}

/** The project and its backlog of `total` events in topic `events`. */
async function fill(root: string, total: number, concurrency: number, bigIds: boolean): Promise<void> {
  writeFileSync(
    path.join(root, 'tributary.yaml'),
    'project: bench\nlog:\n  backend: embedded\n  partitions: 4\nlogging:\n  level: warn\n',
  );
  mkdirSync(path.join(root, 'pipelines'));
  writeFileSync(path.join(root, 'event.schema.json'), JSON.stringify(schema));
  // Batches are bounded by the default max_bytes (8 MiB of values, about 8,000 of these events).
  writeFileSync(
    path.join(root, 'pipelines', 'events.yaml'),
    'source:\n  type: topic\n  topic: events\ntransforms:\n  - type: validate\n    schema: event.schema.json\nsinks:\n  - type: iceberg\n    table: bronze.events\n    partition: day(ts)\nbatch:\n  max_records: 50000\n  interval: 1s\n' +
      `concurrency: ${concurrency}\n`,
  );
  const project = loadProject(root, { pipelineSchema });
  const log = await openProjectLog(project);
  await log.ensureTopic('events', { partitions: 4 });
  const encoder = new TextEncoder();
  for (let i = 0; i < total; i += 5000) {
    await log.append(
      'events',
      Array.from({ length: Math.min(5000, total - i) }, (_, j) => ({
        value: encoder.encode(event(i + j, bigIds)),
      })),
    );
  }
  await log.close();
}

const benchmark: Benchmark = {
  name: 'pipeline',
  description:
    'log → validate → Iceberg append of 1 KB JSON events from a backlog (default 500,000), fsync log',
  async run(args) {
    const total = Number(args[0] ?? 500_000);
    const concurrency = Number(args[1] ?? 1);
    const bigIds = args[2] === 'big-ids';
    const root = mkdtempSync(path.join(tmpdir(), 'bench-pipeline-'));
    try {
      const filled = spawnSync(
        process.execPath,
        [import.meta.filename, '--fill', root, String(total), String(concurrency), String(bigIds)],
        { stdio: 'inherit' },
      );
      if (filled.status !== 0) throw new Error(`writing the backlog failed (exit ${filled.status})`);
      // Drained in a process of its own, with the memory settings the Dockerfile ships (NODE_OPTIONS, glibc
      // malloc's) where the environment does not set them: its peak RSS is then the deployed pipeline's.
      const shipped = Object.fromEntries(
        Object.entries(dockerEnvironment()).filter(
          ([name]) =>
            /^(NODE_OPTIONS|GLIBC_TUNABLES|MALLOC_\w+)$/.test(name) && process.env[name] === undefined,
        ),
      );
      const env = { ...process.env, ...shipped };
      const drained = spawnSync(process.execPath, [import.meta.filename, '--drain', root, String(total)], {
        stdio: ['ignore', 'pipe', 'inherit'],
        encoding: 'utf8',
        env,
      });
      if (drained.status !== 0) throw new Error(`draining the backlog failed (exit ${drained.status})`);
      const figures = JSON.parse(drained.stdout.trim().split('\n').at(-1)!) as Record<string, number>;
      const settings = Object.entries(env)
        .filter(([name]) => /^(NODE_OPTIONS|GLIBC_TUNABLES|MALLOC_\w+)$/.test(name))
        .map(([name, value]) => `${name}=${value}`);
      return {
        figures,
        notes: `default batch limits (8 MiB), day-partitioned table, 4 log partitions, concurrency ${concurrency}${bigIds ? ', ids beyond 2^53' : ''}${settings.length ? `, ${settings.join(' ')}` : ''}`,
      };
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  },
};

/** The variables the Dockerfile sets with `ENV NAME=value` lines. */
function dockerEnvironment(): Record<string, string> {
  const dockerfile = readFileSync(path.resolve(import.meta.dirname, '..', 'Dockerfile'), 'utf8');
  return Object.fromEntries(
    [...dockerfile.matchAll(/^ENV (\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!.trim().replace(/^"|"$/g, '')]),
  );
}

/** Drains the backlog of the project in `root`; prints the figures as JSON. */
async function drain(root: string, total: number): Promise<void> {
  const project = loadProject(root, { pipelineSchema });
  const log = await openProjectLog(project);
  const logger = createLogger({ level: 'warn', format: 'json' });
  const { runner, close } = await buildPipeline(project, 'events', { log, logger, exitWhenIdle: true });
  // Sampled every 100 ms: the median shows the steady state, which must not grow with the backlog.
  const samples: number[] = [];
  const sampler = setInterval(() => samples.push(process.memoryUsage().rss), 100);
  const started = performance.now();
  const cpu = process.cpuUsage();
  const loop = performance.eventLoopUtilization();
  await runner.run();
  const seconds = (performance.now() - started) / 1000;
  // CPU of every thread (JavaScript, DuckDB, libuv): less sensitive than records/s to other load.
  const { user, system } = process.cpuUsage(cpu);
  const mainBusy = performance.eventLoopUtilization(loop).utilization;
  clearInterval(sampler);
  // The kernel's high-water mark catches a peak between two samples (this process only drained).
  const peakRss = Math.max(...samples, process.resourceUsage().maxRSS * 1024);
  samples.sort((a, b) => a - b);
  const medianRss = samples[Math.floor(samples.length / 2)] ?? peakRss;
  await close();
  await log.close();
  console.log(
    JSON.stringify({
      records: total,
      'records/s': Math.round(total / seconds),
      'MB/s of JSON': (total * 1000) / 1e6 / seconds,
      'peak RSS MB': Math.round(peakRss / 1e6),
      'median RSS MB': Math.round(medianRss / 1e6),
      'CPU µs/record': (user + system) / total,
      'main thread busy %': Math.round(mainBusy * 100),
    }),
  );
}
export default benchmark;

if (import.meta.main && process.argv[2] === '--fill')
  await fill(process.argv[3]!, Number(process.argv[4]), Number(process.argv[5]), process.argv[6] === 'true');
if (import.meta.main && process.argv[2] === '--drain') await drain(process.argv[3]!, Number(process.argv[4]));
