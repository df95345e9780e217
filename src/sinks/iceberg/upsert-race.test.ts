/**
 * An upsert pipeline whose batch loses the race to a compaction (the scheduler's `compact` job, committing
 * between the batch's key lookup and its commit) writes the batch again on the compacted table instead of
 * failing: the table ends with one row per key, the last value of each. A batch that loses the race to
 * another worker of the same pipeline is not written again: that stops the pipeline.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { pino } from 'pino';
import type { Catalog } from '../../catalog/catalog.ts';
import { openTestCatalog, type TestCatalog } from '../../catalog/test-support.ts';
import { parseTableIdentifier } from '../../catalog/identifier.ts';
import type { PipelineConfig } from '../../core/config/pipeline.ts';
import { PipelineRunner } from '../../core/pipeline/runner.ts';
import { openEngine, type Engine } from '../../iceberg/duckdb.ts';
import { compact } from '../../iceberg/operations/maintenance.ts';
import { planFiles, planScan, scanSql } from '../../iceberg/scan.ts';
import { interceptedEngine } from '../../iceberg/test-support.ts';
import { EmbeddedLog } from '../../log/embedded-log.ts';
import type { TributaryError } from '../../errors.ts';
import { DlqSink } from './dlq.ts';
import { IcebergSink, icebergSinkSchema } from './iceberg.ts';

let testbed: TestCatalog;
let dir: string;
let catalog: Catalog;
let engine: Engine;
let maintenance: Engine;
let log: EmbeddedLog;

before(async () => {
  testbed = await openTestCatalog({ prefix: 'tributary-upsert-race-test-', engine: { threads: 1 } });
  ({ dir, catalog, engine } = testbed);
  maintenance = await openEngine({ threads: 1 });
  log = await EmbeddedLog.open({ directory: path.join(dir, 'log'), durability: 'os' });
  await log.ensureTopic('changes', { partitions: 1 });
});

after(async () => {
  await log.close();
  maintenance.close();
  testbed.close();
});

const encoder = new TextEncoder();

/** Changes from..to-1: change i sets key i % 50 to `v<i>`. */
async function appendChanges(from: number, to: number): Promise<void> {
  await log.append(
    'changes',
    Array.from({ length: to - from }, (_, i) => ({
      value: encoder.encode(JSON.stringify({ id: (from + i) % 50, v: `v${from + i}` })),
    })),
  );
}

async function runPipeline(sinkEngine: Engine): Promise<void> {
  const config = {
    source: { type: 'topic', topic: 'changes', start: 'earliest' },
    transforms: [],
    sinks: [],
    dlq: { max: 0 },
    batch: { max_records: 100, max_bytes: 1 << 24, interval: 10 },
    concurrency: 1,
    shutdown_timeout: 1000,
  } satisfies PipelineConfig;
  const common = { pipeline: 'p', topic: 'changes', projectRoot: dir, catalog: async () => catalog };
  const sink = new IcebergSink({
    ...common,
    name: 'iceberg:silver.t',
    config: icebergSinkSchema.parse({ type: 'iceberg', table: 'silver.t', mode: 'upsert', key: ['id'] }),
    engine: async () => sinkEngine,
  });
  const dlq = new DlqSink({ ...common, table: 'silver._dlq', log, engine: async () => sinkEngine });
  const runner = new PipelineRunner({
    name: 'p',
    config,
    log,
    transforms: [],
    sinks: [sink],
    dlq,
    logger: pino({ level: 'silent' }),
    defaultPartitions: 1,
    exitWhenIdle: true,
  });
  await runner.run();
  await sink.close?.();
}

it('writes an upsert batch again when a compaction committed during it', async () => {
  let compactions = 0;
  const hook = { armed: false };
  const sinkEngine = interceptedEngine(
    engine,
    /^\s*create temp table __tributary_matches_/,
    hook,
    async () => {
      const table = await catalog.loadTable(parseTableIdentifier('silver.t'));
      const result = await compact(table, maintenance, { targetFileSizeBytes: 64 * 1024 * 1024 });
      if (result.rewrittenFiles > 0) compactions++;
    },
  );
  await appendChanges(0, 300);
  await runPipeline(sinkEngine); // three upsert commits: several small files to compact
  await appendChanges(300, 400);
  hook.armed = true; // the compaction commits between the next batch's key lookup and its commit
  await runPipeline(sinkEngine);
  assert.equal(compactions, 1, 'the compaction committed during the batch');

  const table = await catalog.loadTable(parseTableIdentifier('silver.t'));
  const plan = await planScan(table.metadata, table.storage);
  const rows = (
    await engine.connection.runAndReadAll(
      `select id, v from ${scanSql(plan, await table.files.readable(planFiles(plan)))} order by id`,
    )
  ).getRowObjectsJson();
  // Each key's last change: 350..399 (keys 0..49 in that order).
  assert.deepEqual(
    rows,
    Array.from({ length: 50 }, (_, id) => ({ id: String(id), v: `v${350 + id}` })),
  );
});

it('does not write a batch again when another worker of the pipeline committed during it', async () => {
  const sinkFor = (sinkEngine: Engine) =>
    new IcebergSink({
      name: 'iceberg',
      config: icebergSinkSchema.parse({ type: 'iceberg', table: 'test.two' }),
      pipeline: 'p',
      topic: 'events',
      projectRoot: dir,
      catalog: async () => catalog,
      engine: async () => sinkEngine,
    });
  const ids = (from: number, to: number) =>
    Array.from({ length: to - from }, (_, i) => ({
      value: { id: from + i },
      key: null,
      partition: 0,
      offset: from + i,
      timestamp: 0,
      headers: {},
    }));
  const other = sinkFor(maintenance);
  await other.open();
  await other.write({ records: ids(0, 10), positions: new Map([[0, 10]]) });
  const sink = sinkFor(
    interceptedEngine(engine, /create temp table __tributary_sink_/, { armed: true }, async () => {
      await other.write({ records: ids(10, 20), positions: new Map([[0, 20]]) });
    }),
  );
  await sink.open();
  await assert.rejects(
    sink.write({ records: ids(10, 30), positions: new Map([[0, 30]]) }),
    (error: TributaryError) =>
      error.code === 'ICEBERG_COMMIT_CONFLICT' && !error.retryable && /another process/.test(error.message),
  );
  await sink.close?.();
  await other.close?.();
});
