/**
 * A pipeline end to end: log → validate (JSON Schema) → Iceberg append, over 1 KB JSON events already in
 * the embedded log (a backlog), measured in-process. Reports records/s and the peak RSS while draining.
 * Goals (issue 4): ≥ 100k records/s; a 5M-record backlog drains with RSS under 500 MB
 * (`npm run bench -- pipeline 5000000`). The backlog is written by a child process, as a producer would
 * write it, so that the peak RSS is the draining pipeline's alone.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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

function event(i: number): string {
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
  return JSON.stringify({ ...base, payload: 'x'.repeat(Math.max(0, 1000 - text.length - 14)) });
}

/** The project and its backlog of `total` events in topic `events`. */
async function fill(root: string, total: number): Promise<void> {
  writeFileSync(
    path.join(root, 'tributary.yaml'),
    'project: bench\nlog:\n  backend: embedded\n  partitions: 4\nlogging:\n  level: warn\n',
  );
  mkdirSync(path.join(root, 'pipelines'));
  writeFileSync(path.join(root, 'event.schema.json'), JSON.stringify(schema));
  // Batches are bounded by the default max_bytes (8 MiB of values, about 8,000 of these events).
  writeFileSync(
    path.join(root, 'pipelines', 'events.yaml'),
    'source:\n  type: topic\n  topic: events\ntransforms:\n  - type: validate\n    schema: event.schema.json\nsinks:\n  - type: iceberg\n    table: bronze.events\n    partition: day(ts)\nbatch:\n  max_records: 50000\n  interval: 1s\n',
  );
  const project = loadProject(root, { pipelineSchema });
  const log = await openProjectLog(project);
  await log.ensureTopic('events', { partitions: 4 });
  const encoder = new TextEncoder();
  for (let i = 0; i < total; i += 5000) {
    await log.append(
      'events',
      Array.from({ length: Math.min(5000, total - i) }, (_, j) => ({
        value: encoder.encode(event(i + j)),
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
    const root = mkdtempSync(path.join(tmpdir(), 'bench-pipeline-'));
    const filled = spawnSync(process.execPath, [import.meta.filename, '--fill', root, String(total)], {
      stdio: 'inherit',
    });
    if (filled.status !== 0) throw new Error(`writing the backlog failed (exit ${filled.status})`);
    const project = loadProject(root, { pipelineSchema });
    const log = await openProjectLog(project);
    const logger = createLogger({ level: 'warn', format: 'json' });
    const { runner, close } = await buildPipeline(project, 'events', { log, logger, exitWhenIdle: true });
    // Sampled every 100 ms: the median shows the steady state, which must not grow with the backlog.
    const samples: number[] = [];
    const sampler = setInterval(() => samples.push(process.memoryUsage().rss), 100);
    const started = performance.now();
    await runner.run();
    const seconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    // The kernel's high-water mark catches a peak between two samples (this process only drained).
    const peakRss = Math.max(...samples, process.resourceUsage().maxRSS * 1024);
    samples.sort((a, b) => a - b);
    const medianRss = samples[Math.floor(samples.length / 2)] ?? peakRss;
    await close();
    await log.close();
    rmSync(root, { recursive: true, force: true });
    const flags = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' ').trim();
    return {
      figures: {
        records: total,
        'records/s': Math.round(total / seconds),
        'MB/s of JSON': (total * 1000) / 1e6 / seconds,
        'peak RSS MB': Math.round(peakRss / 1e6),
        'median RSS MB': Math.round(medianRss / 1e6),
      },
      notes: `default batch limits (8 MiB), day-partitioned table, 4 log partitions${flags ? `, node ${flags}` : ''}`,
    };
  },
};
export default benchmark;

if (import.meta.main && process.argv[2] === '--fill') await fill(process.argv[3]!, Number(process.argv[4]));
