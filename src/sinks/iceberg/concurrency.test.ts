/**
 * A pipeline with `concurrency: 2` over a topic of four partitions into Iceberg: two lanes read,
 * transform and write their partitions side by side (data files written in `prepare`, committed in turn),
 * and the table ends with exactly the valid records, the DLQ with exactly the rejected ones, and the
 * table's positions at the end of every partition, across a restart.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { Catalog } from '../../catalog/catalog.ts';
import { openTestCatalog, type TestCatalog } from '../../catalog/test-support.ts';
import { parseTableIdentifier } from '../../catalog/identifier.ts';
import type { PipelineConfig } from '../../core/config/pipeline.ts';
import type { Rejection, Transform } from '../../core/pipeline/model.ts';
import { pipelineGroup, PipelineRunner } from '../../core/pipeline/runner.ts';
import type { Engine } from '../../iceberg/duckdb.ts';
import { ancestorsOf } from '../../iceberg/metadata.ts';
import { planFiles, planScan, scanSql } from '../../iceberg/scan.ts';
import { EmbeddedLog } from '../../log/embedded-log.ts';
import { DlqSink } from './dlq.ts';
import { committedPositions, IcebergSink, icebergSinkSchema, positionsKey } from './iceberg.ts';

let testbed: TestCatalog;
let dir: string;
let catalog: Catalog;
let engine: Engine;
let log: EmbeddedLog;

before(async () => {
  testbed = await openTestCatalog({ prefix: 'tributary-concurrency-test-', engine: { threads: 1 } });
  ({ dir, catalog, engine } = testbed);
  log = await EmbeddedLog.open({ directory: path.join(dir, 'log'), durability: 'os' });
  await log.ensureTopic('events', { partitions: 4 });
});

after(async () => {
  await log.close();
  testbed.close();
});

const encoder = new TextEncoder();

const notJson = (i: number) => i % 97 === 5;
// Past the first batches, whose values the table's column types are inferred from.
const badAmount = (i: number) => !notJson(i) && i >= 8000 && i % 89 === 7;
const noId = (i: number) => !notJson(i) && !badAmount(i) && i % 83 === 3;

/** Record i: valid, not JSON, an amount the table's double column rejects, or without an id. */
function text(i: number): string {
  if (notJson(i)) return `{"id": ${i}, broken`;
  const ts = new Date(Date.UTC(2026, 10, 1) + i * 60_000).toISOString();
  if (badAmount(i)) return JSON.stringify({ id: i, ts, amount: `x${i}` });
  if (noId(i)) return JSON.stringify({ ts, amount: i });
  return JSON.stringify({ id: i, ts, amount: i / 2 });
}

function valid(i: number): boolean {
  return !notJson(i) && !badAmount(i) && !noId(i);
}

/** Rejects records without an id (preserves values, so the sink gets the log's bytes). */
const requireId: Transform = {
  name: 'require-id',
  preservesValues: true,
  async process(records) {
    const rejected: Rejection[] = [];
    const passed = records.filter((record) => {
      if (typeof record.value.id === 'number') return true;
      rejected.push({ record, stage: 'require-id', error: 'id is missing' });
      return false;
    });
    return { records: passed, rejected };
  },
};

async function append(from: number, to: number): Promise<void> {
  // Keyed: records spread over the four partitions.
  const records = [];
  for (let i = from; i < to; i++) records.push({ key: `k${i}`, value: encoder.encode(text(i)) });
  await log.append('events', records);
}

async function runPipeline(concurrency: number): Promise<void> {
  const config = {
    source: { type: 'topic', topic: 'events', start: 'earliest' },
    transforms: [],
    sinks: [],
    dlq: { max: 0 },
    batch: { max_records: 700, max_bytes: 1 << 24, interval: 10 },
    concurrency,
    shutdown_timeout: 1000,
  } satisfies PipelineConfig;
  const sink = new IcebergSink({
    name: 'iceberg:lake.events',
    config: icebergSinkSchema.parse({ type: 'iceberg', table: 'lake.events', partition: 'day(ts)' }),
    pipeline: 'events',
    topic: 'events',
    projectRoot: dir,
    catalog: async () => catalog,
    engine: async () => engine,
  });
  const dlq = new DlqSink({
    pipeline: 'events',
    topic: 'events',
    table: 'lake._dlq',
    projectRoot: dir,
    log,
    catalog: async () => catalog,
    engine: async () => engine,
  });
  const runner = new PipelineRunner({
    name: 'events',
    config,
    log,
    transforms: [requireId],
    sinks: [sink],
    dlq,
    logger: pino({ level: 'silent' }),
    defaultPartitions: 4,
    exitWhenIdle: true,
  });
  await runner.run();
}

/** `select <select> from <table> <rest>`. */
async function query<T>(table: string, select: string, rest: string): Promise<T[]> {
  const loaded = await catalog.loadTable(parseTableIdentifier(table));
  const plan = await planScan(loaded.metadata, loaded.storage);
  const reader = await engine.connection.runAndReadAll(
    `select ${select} from ${scanSql(plan, await loaded.files.readable(planFiles(plan)))} t ${rest}`,
  );
  return reader.getRowObjectsJson() as T[];
}

async function check(total: number): Promise<void> {
  const expected = Array.from({ length: total }, (_, i) => i).filter(valid);
  const rows = await query<{ id: string }>('lake.events', 'id', 'order by id');
  assert.deepEqual(
    rows.map((r) => Number(r.id)),
    expected,
    'exactly the valid records, once each',
  );
  const rejected = await query<{ stage: string; n: string }>(
    'lake._dlq',
    'stage, count(*) as n',
    'group by stage order by stage',
  );
  const count = (test: (i: number) => boolean) =>
    Array.from({ length: total }, (_, i) => i).filter(test).length;
  assert.deepEqual(
    rejected.map((r) => [r.stage, Number(r.n)]),
    [
      ['decode', count(notJson)],
      ['iceberg:lake.events', count(badAmount)],
      ['require-id', count(noId)],
    ],
    'exactly the rejected records in the DLQ, once each',
  );
  const offsets = await log.offsets('events');
  const ends = new Map(offsets.map((o) => [o.partition, o.end]));
  const table = await catalog.loadTable(parseTableIdentifier('lake.events'));
  assert.deepEqual(committedPositions(table, 'events', 'events'), ends, 'the table stands at every end');
  assert.deepEqual(await log.committedOffsets(pipelineGroup('events'), 'events'), ends);
}

describe('pipeline concurrency', () => {
  it('two lanes write exactly the valid records and commit their partitions in turn', async () => {
    await append(0, 12_000);
    await runPipeline(2);
    await check(12_000);
    // Lanes commit on their own: snapshots that move partitions 0 and 2 (lane 0) but not 1 and 3 (lane 1).
    const table = await catalog.loadTable(parseTableIdentifier('lake.events'));
    const history = [...ancestorsOf(table.metadata, table.metadata['current-snapshot-id'])]
      .reverse()
      .map((s) => s.summary[positionsKey('events')])
      .filter((text): text is string => text !== undefined)
      .map((text) => (JSON.parse(text) as { positions: Record<string, number> }).positions);
    const moved = history.slice(1).map((now, i) => {
      const before = history[i]!;
      return [0, 1, 2, 3].filter((p) => now[p] !== before[p]);
    });
    assert.ok(
      moved.some((m) => m.length > 0 && m.every((p) => p % 2 === 0)),
      `a commit of lane 0 alone: ${JSON.stringify(moved)}`,
    );
    assert.ok(
      moved.some((m) => m.length > 0 && m.every((p) => p % 2 === 1)),
      `a commit of lane 1 alone: ${JSON.stringify(moved)}`,
    );
  });

  it('resumes from what the table committed, with another number of lanes', async () => {
    await append(12_000, 20_000);
    await runPipeline(3);
    await check(20_000);
    await runPipeline(1);
    await check(20_000);
  });
});
