import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino, type Logger } from 'pino';
import { TributaryError } from '../../errors.ts';
import { EmbeddedLog } from '../../log/embedded-log.ts';
import type { PipelineConfig } from '../config/pipeline.ts';
import { LazyRecord } from './lazy-record.ts';
import type { PipelineRecord, Positions, Rejection, Sink, SinkBatch, Transform } from './model.ts';
import { HEADER_REPLAY_FOR, PipelineRunner } from './runner.ts';

const directory = mkdtempSync(path.join(tmpdir(), 'tributary-runner-'));
after(() => rmSync(directory, { recursive: true, force: true }));

/** A sink that keeps what it was given. */
class MemorySink implements Sink {
  readonly name: string;
  readonly usesRaw: boolean;
  readonly batches: PipelineRecord[][] = [];
  /** The positions of the last write. */
  positions: Positions = new Map();
  flushes = 0;
  constructor(name: string, usesRaw: boolean) {
    this.name = name;
    this.usesRaw = usesRaw;
  }
  async open(): Promise<Positions> {
    return new Map();
  }
  async write(batch: SinkBatch) {
    if (batch.records.length) this.batches.push([...batch.records]);
    this.positions = batch.positions;
    return {};
  }
  async flush() {
    this.flushes++;
  }
  async close() {}
}

/** A runner `test` of topic `events` with the given parts, batches of at most 5,000 records unless told. */
function testRunner(options: {
  name?: string;
  log: EmbeddedLog;
  transforms?: Transform[];
  sinks: Sink[];
  dlq: Sink;
  dlqMax?: number;
  interval?: number;
  maxRecords?: number;
  maxBytes?: number;
  partitions?: number;
  exitWhenIdle?: boolean;
  logger?: Logger;
}): PipelineRunner {
  const config = {
    source: { type: 'topic', topic: 'events', start: 'earliest' },
    transforms: [],
    sinks: [],
    dlq: { max: options.dlqMax ?? 0 },
    batch: {
      max_records: options.maxRecords ?? 5000,
      max_bytes: options.maxBytes ?? 1 << 24,
      interval: options.interval ?? 10,
    },
    concurrency: 1,
    shutdown_timeout: 1000,
  } satisfies PipelineConfig;
  return new PipelineRunner({
    name: options.name ?? 'test',
    config,
    log: options.log,
    transforms: options.transforms ?? [],
    sinks: options.sinks,
    dlq: options.dlq,
    logger: options.logger ?? pino({ level: 'silent' }),
    defaultPartitions: options.partitions ?? 1,
    exitWhenIdle: options.exitWhenIdle ?? false,
  });
}

/** Rejects records without a numeric `n`, and counts the records of each call. */
function checkN(calls: number[]): Transform {
  return {
    name: 'check',
    preservesValues: true,
    async process(records) {
      calls.push(records.length);
      const rejected: Rejection[] = [];
      const passed = records.filter((record) => {
        const ok = typeof record.value.n === 'number';
        if (!ok) rejected.push({ record, stage: 'check', error: 'n is not a number' });
        return ok;
      });
      return { records: passed, rejected };
    },
  };
}

async function run(count: number, sink: MemorySink, transform: Transform | Transform[]) {
  const log = await EmbeddedLog.open({ directory: mkdtempSync(path.join(directory, 'log-')) });
  const encoder = new TextEncoder();
  await log.ensureTopic('events', { partitions: 1 });
  await log.append(
    'events',
    Array.from({ length: count }, (_, i) => ({
      value: encoder.encode(
        i % 500 === 7 ? '{"n": ' : i % 500 === 9 ? `{"n": "x${i}"}` : `{"n": ${i}, "s": "é${i}"}`,
      ),
    })),
  );
  const dlq = new MemorySink('dlq', false);
  const transforms = Array.isArray(transform) ? transform : [transform];
  const runner = testRunner({ log, transforms, sinks: [sink], dlq, exitWhenIdle: true });
  await runner.run();
  await log.close();
  return { written: sink.batches.flat(), rejected: dlq.batches.flat(), flushes: [sink.flushes, dlq.flushes] };
}

/** A sink whose first write waits until `release()`; it keeps the size of each batch. */
class GatedSink extends MemorySink {
  readonly sizes: number[] = [];
  #open!: () => void;
  readonly #gate = new Promise<void>((resolve) => (this.#open = resolve));
  release(): void {
    this.#open();
  }
  override async write(batch: SinkBatch) {
    if (batch.records.length) this.sizes.push(batch.records.length);
    if (this.sizes.length === 1) await this.#gate;
    return super.write(batch);
  }
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await sleep(5);
}

/** Whether `condition` holds within `ms`. */
async function within(ms: number, condition: () => boolean): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!condition() && Date.now() < deadline) await sleep(5);
  return condition();
}

/** A promise and the function that resolves it. */
function gate(): { readonly opened: Promise<void>; readonly open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

describe('PipelineRunner', () => {
  it('hands sinks that use raw bytes records decoded again on demand, a slice at a time', async () => {
    const calls: number[] = [];
    const { written, rejected } = await run(3000, new MemorySink('lake', true), checkN(calls));
    // Transforms see slices of a batch, in order, and see every record once.
    assert.ok(
      calls.every((n) => n <= 1024),
      `calls of ${calls.join(', ')}`,
    );
    assert.equal(
      calls.reduce((a, b) => a + b, 0),
      3000 - 6,
      'every decoded record once',
    );
    assert.equal(written.length, 3000 - 12);
    assert.deepEqual(
      written.map((r) => r.offset),
      Array.from({ length: 3000 }, (_, i) => i).filter((i) => i % 500 !== 7 && i % 500 !== 9),
      'in offset order, none lost',
    );
    for (const record of written) {
      assert.ok(record instanceof LazyRecord);
      assert.deepEqual(record.fields, ['n', 's']);
      assert.deepEqual(record.value, { n: record.offset, s: `é${record.offset}` });
      assert.equal(new TextDecoder().decode(record.raw), `{"n": ${record.offset}, "s": "é${record.offset}"}`);
    }
    assert.equal(written[0]!.fields, written[1]!.fields, 'records of one shape share their fields');
    assert.deepEqual(
      rejected.map((r) => [r.offset, r.value.stage]).sort((a, b) => Number(a[0]) - Number(b[0])),
      [7, 9, 507, 509, 1007, 1009, 1507, 1509, 2007, 2009, 2507, 2509].map((o) => [
        o,
        o % 500 === 7 ? 'decode' : 'check',
      ]),
      'bad records go to the DLQ with their stage',
    );
  });

  it('hands sinks the bytes a transform wrote for its new values, until a later transform changes them', async () => {
    // Doubles n, as the cdc transform rewrites a change: its records carry the new value's JSON.
    const double = (writesRaw: boolean): Transform => ({
      name: 'double',
      writesRaw,
      async process(records) {
        return {
          records: records.map((r) => {
            const value = { n: 2 * (r.value.n as number) };
            return { ...r, value, raw: writesRaw ? Buffer.from(JSON.stringify(value)) : undefined };
          }),
          rejected: [],
        };
      },
    });
    const plusOne: Transform = {
      name: 'plus-one',
      async process(records) {
        return {
          records: records.map((r) => ({ ...r, value: { n: (r.value.n as number) + 1 } })),
          rejected: [],
        };
      },
    };
    const calls: number[] = [];
    let { written } = await run(3000, new MemorySink('lake', true), [checkN(calls), double(true)]);
    assert.ok(calls.length > 1 && calls.every((n) => n <= 1024), 'in slices');
    assert.equal(written.length, 3000 - 12);
    for (const record of written) {
      assert.ok(record instanceof LazyRecord);
      assert.equal(new TextDecoder().decode(record.raw), `{"n":${2 * record.offset}}`);
      assert.deepEqual(record.value, { n: 2 * record.offset });
    }
    // A transform after it changes values without writing them: no bytes reach the sink, only values.
    ({ written } = await run(3000, new MemorySink('lake', true), [checkN([]), double(true), plusOne]));
    assert.ok(written.every((r) => r.raw === undefined && r.value.n === 2 * r.offset + 1));
    // The bytes of the input are never mistaken for the new values.
    ({ written } = await run(3000, new MemorySink('lake', true), [checkN([]), double(false)]));
    assert.ok(written.every((r) => r.raw === undefined && r.value.n === 2 * r.offset));
  });

  it('passes decoded values to sinks that do not use raw bytes, in one call per batch', async () => {
    const calls: number[] = [];
    const { written, flushes } = await run(3000, new MemorySink('db', false), checkN(calls));
    assert.deepEqual(flushes, [1, 1], 'a clean stop flushes every sink once');
    assert.deepEqual(calls, [2994], 'one call for the batch');
    assert.equal(written.length, 3000 - 12);
    assert.ok(written.every((r) => !(r instanceof LazyRecord) && r.fields === undefined));
    assert.deepEqual(written[0]!.value, { n: 0, s: 'é0' });
  });

  it('decodes integers beyond ±2^53 exactly, for sinks that read values and for those decoded on demand', async () => {
    const texts = [
      '{"id": 9007199254740993, "list": [1234567890123456789], "n": 1.5}',
      '{"id": -9223372036854775808, "nested": {"id": 18446744073709551615}}',
      '{"id": 1}',
    ];
    for (const usesRaw of [false, true]) {
      const log = await EmbeddedLog.open({ directory: mkdtempSync(path.join(directory, 'log-')) });
      await log.ensureTopic('events', { partitions: 1 });
      await log.append(
        'events',
        texts.map((text) => ({ value: new TextEncoder().encode(text) })),
      );
      const sink = new MemorySink('sink', usesRaw);
      await testRunner({ log, sinks: [sink], dlq: new MemorySink('dlq', false), exitWhenIdle: true }).run();
      await log.close();
      const written = sink.batches.flat();
      assert.equal(
        written.some((r) => r instanceof LazyRecord),
        usesRaw,
      );
      assert.deepEqual(
        written.map((r) => JSON.stringify(r.value)),
        texts.map((text) => text.replaceAll(': ', ':').replaceAll(', ', ',')),
        `usesRaw: ${usesRaw}`,
      );
    }
  });

  it('skips the records replayed for another pipeline of its topic, and moves past them', async () => {
    const log = await EmbeddedLog.open({ directory: mkdtempSync(path.join(directory, 'log-')) });
    await log.ensureTopic('events', { partitions: 1 });
    const encoder = new TextEncoder();
    await log.append('events', [
      { value: encoder.encode('{"n": 0}') },
      {
        value: encoder.encode('{"n": 1}'),
        headers: { [HEADER_REPLAY_FOR]: 'test', 'tributary-event-id': 'e-1' },
      },
      { value: encoder.encode('{"n": 2}'), headers: { [HEADER_REPLAY_FOR]: 'other' } },
      // Not even decoded by `test`: what `other` rejects is no rejection of `test`.
      { value: encoder.encode('{"n": '), headers: { [HEADER_REPLAY_FOR]: 'other' } },
      { value: encoder.encode('{"n": 4}') },
    ]);
    const results = [];
    for (const name of ['test', 'other']) {
      const calls: number[] = [];
      const sink = new MemorySink('lake', false);
      const dlq = new MemorySink('dlq', false);
      await testRunner({
        name,
        log,
        transforms: [checkN(calls)],
        sinks: [sink],
        dlq,
        exitWhenIdle: true,
      }).run();
      results.push({
        name,
        calls,
        written: sink.batches.flat().map((r) => r.value.n),
        rejected: dlq.batches.flat().map((r) => r.offset),
        at: [sink.positions.get(0), dlq.positions.get(0)],
      });
    }
    await log.close();
    assert.deepEqual(results, [
      { name: 'test', calls: [3], written: [0, 1, 4], rejected: [], at: [5, 5] },
      { name: 'other', calls: [3], written: [0, 2, 4], rejected: [3], at: [5, 5] },
    ]);
  });

  it('hands sinks and the DLQ exact values when the transforms read numbers as doubles only', async () => {
    const texts = ['{"id": 9007199254740993, "keep": true}', '{"id": 9007199254740995, "keep": false}'];
    const log = await EmbeddedLog.open({ directory: mkdtempSync(path.join(directory, 'log-')) });
    await log.ensureTopic('events', { partitions: 1 });
    await log.append(
      'events',
      texts.map((text) => ({ value: new TextEncoder().encode(text) })),
    );
    const check: Transform = {
      name: 'check',
      preservesValues: true,
      approximateNumbers: true,
      async process(records) {
        const rejected = records
          .filter((r) => r.value.keep !== true)
          .map((record) => ({ record, stage: 'check', error: 'not kept' }));
        return { records: records.filter((r) => r.value.keep === true), rejected };
      },
    };
    const sink = new MemorySink('lake', true);
    const dlq = new MemorySink('dlq', false);
    await testRunner({ log, transforms: [check], sinks: [sink], dlq, exitWhenIdle: true }).run();
    await log.close();
    assert.deepEqual(
      sink.batches.flat().map((r) => JSON.stringify(r.value)),
      ['{"id":9007199254740993,"keep":true}'],
    );
    assert.deepEqual(
      dlq.batches.flat().map((r) => r.value.payload),
      ['{"id": 9007199254740995, "keep": false}'],
    );
  });

  it("keeps a transform's Infinity and NaN in a DLQ payload rather than write null", async () => {
    const log = await EmbeddedLog.open({ directory: mkdtempSync(path.join(directory, 'log-')) });
    await log.ensureTopic('events', { partitions: 1 });
    await log.append('events', [{ value: new TextEncoder().encode('{"n": 1}') }]);
    const divide: Transform = {
      name: 'divide',
      async process(records) {
        const rejected = records.map((r) => ({
          record: {
            ...r,
            raw: undefined,
            value: { n: r.value.n, ratio: Infinity, score: NaN, low: -Infinity },
          },
          stage: 'divide',
          error: 'out of range',
        }));
        return { records: [], rejected };
      },
    };
    const dlq = new MemorySink('dlq', false);
    await testRunner({
      log,
      transforms: [divide],
      sinks: [new MemorySink('lake', true)],
      dlq,
      exitWhenIdle: true,
    }).run();
    await log.close();
    // Replayed, 1e999 is Infinity again (JSON.parse), and meets the check that refused it.
    assert.deepEqual(
      dlq.batches.flat().map((r) => r.value.payload),
      ['{"n":1,"ratio":1e999,"score":"NaN","low":-1e999}'],
    );
  });

  it('keeps the batch read ahead open past its interval while the one before it commits', async () => {
    const log = await EmbeddedLog.open({ directory: mkdtempSync(path.join(directory, 'log-')) });
    const encoder = new TextEncoder();
    const produce = (from: number, count: number) =>
      log.append(
        'events',
        Array.from({ length: count }, (_, i) => ({ value: encoder.encode(`{"n": ${from + i}}`) })),
      );
    await log.ensureTopic('events', { partitions: 1 });
    await produce(0, 10);
    const sink = new GatedSink('lake', true);
    const runner = testRunner({ log, sinks: [sink], dlq: new MemorySink('dlq', false), interval: 20 });
    const running = runner.run();
    await until(() => sink.sizes.length === 1);
    // The first commit takes longer than several intervals; records keep arriving meanwhile.
    await produce(10, 5);
    await sleep(60);
    await produce(15, 5);
    await sleep(60);
    sink.release();
    await until(() => sink.sizes.length === 2);
    runner.stop();
    await running;
    await log.close();
    assert.deepEqual(sink.sizes, [10, 10], 'the second batch holds what arrived during the first commit');
  });

  it('logs a retried sink failure as one JSON object with one "pipeline" key (the logger it gets names it)', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn', base: undefined }, { write: (line: string) => lines.push(line) });
    const log = await EmbeddedLog.open({ directory: mkdtempSync(path.join(directory, 'log-')) });
    await log.ensureTopic('events', { partitions: 1 });
    await log.append('events', [{ value: new TextEncoder().encode('{"n": 1}') }]);
    let failures = 0;
    const sink = new (class extends MemorySink {
      override async write(batch: SinkBatch) {
        if (batch.records.length && failures++ === 0)
          throw new TributaryError('SERVICE_UNAVAILABLE', 'catalog down', { retryable: true });
        return super.write(batch);
      }
    })('flaky', false);
    const runner = testRunner({
      log,
      sinks: [sink],
      dlq: new MemorySink('dlq', false),
      exitWhenIdle: true,
      // As buildPipeline gives it: a child logger that already carries the pipeline's name.
      logger: logger.child({ pipeline: 'test' }),
    });
    await runner.run();
    await log.close();
    assert.equal(sink.batches.flat().length, 1);
    const retry = lines.find((line) => line.includes('retrying'));
    assert.ok(retry, lines.join(''));
    // JSON.parse keeps the last of duplicate keys, but Elasticsearch and other strict parsers reject the line.
    assert.equal(retry.match(/"pipeline":/g)?.length, 1, retry);
    assert.equal((JSON.parse(retry) as { pipeline: string; stage: string }).stage, 'flaky');
  });
});

/**
 * Rejects records whose `bad` is true (when `rejects`), on write and on screen; opens at the given
 * positions. Keeps the records of each call to `screen`.
 */
class FreezingSink extends MemorySink {
  readonly screened: PipelineRecord[][] = [];
  readonly #positions: Positions;
  readonly #rejects: boolean;
  constructor(name: string, positions: Positions, rejects = true) {
    super(name, false);
    this.#positions = positions;
    this.#rejects = rejects;
  }
  override async open(): Promise<Positions> {
    return new Map(this.#positions);
  }
  override async write(batch: SinkBatch) {
    await super.write(batch);
    return { rejected: this.#reject(batch.records) };
  }
  async screen(records: readonly PipelineRecord[]): Promise<Rejection[]> {
    this.screened.push([...records]);
    return this.#reject(records);
  }
  #reject(records: readonly PipelineRecord[]): Rejection[] {
    return records
      .filter((record) => this.#rejects && record.value.bad === true)
      .map((record) => ({ record, stage: `sink ${this.name}`, error: 'bad' }));
  }
}

describe('PipelineRunner catch-up', () => {
  it('sends to the DLQ what a sink rejected of the part of a batch it had already (another concurrency before)', async () => {
    const log = await EmbeddedLog.open({ directory: mkdtempSync(path.join(directory, 'log-')) });
    const encoder = new TextEncoder();
    await log.ensureTopic('events', { partitions: 2 });
    const stored = await log.append(
      'events',
      Array.from({ length: 40 }, (_, i) => ({
        key: `k${i}`,
        value: encoder.encode(JSON.stringify({ i, bad: i % 4 === 0 })),
      })),
    );
    const inPartition1 = stored.filter((s) => s.partition === 1).length;
    assert.ok(inPartition1 > 0 && inPartition1 < 40);
    // An earlier run with two lanes: lane 0 committed partition 0 to `bronze` only, lane 1 partition 1 to
    // `bronze` and `silver`; then the process died, before either reached the DLQ.
    const bronze = new FreezingSink(
      'bronze',
      new Map([
        [0, 40 - inPartition1],
        [1, inPartition1],
      ]),
      false,
    );
    const silver = new FreezingSink('silver', new Map([[1, inPartition1]]));
    const dlq = new MemorySink('dlq', false);
    const runner = testRunner({
      log,
      sinks: [bronze, silver],
      dlq,
      dlqMax: 100,
      partitions: 2,
      exitWhenIdle: true,
    });
    await runner.run();
    await log.close();
    // silver wrote only partition 0; the DLQ holds every bad record of both partitions.
    assert.deepEqual(new Set(silver.batches.flat().map((r) => r.partition)), new Set([0]));
    const inDlq = dlq.batches.flat().map((r) => `${r.partition}:${r.offset}`);
    const bad = stored.filter((_, i) => i % 4 === 0).map((s) => `${s.partition}:${s.offset}`);
    assert.deepEqual(inDlq.sort(), bad.sort());
  });

  for (const limit of [{ maxRecords: 7 }, { maxBytes: 100 }]) {
    it(`replays what the DLQ lacks in batches within the batch limits (${JSON.stringify(limit)})`, async () => {
      const log = await EmbeddedLog.open({ directory: mkdtempSync(path.join(directory, 'log-')) });
      const encoder = new TextEncoder();
      await log.ensureTopic('events', { partitions: 2 });
      const stored = await log.append(
        'events',
        Array.from({ length: 60 }, (_, i) => ({
          key: `k${i}`,
          value: encoder.encode(JSON.stringify({ i, bad: i % 5 === 0 })),
        })),
      );
      const ends = new Map([0, 1].map((p) => [p, stored.filter((s) => s.partition === p).length]));
      assert.ok(ends.get(0)! > 10 && ends.get(1)! > 10);
      // `lake` committed everything; `silver` part of partition 0; the DLQ, which saves the positions of
      // batches without rejections only now and then, nothing: the whole topic is to be caught up.
      const lake = new FreezingSink('lake', ends);
      const silver = new FreezingSink('silver', new Map([[0, 5]]), false);
      const dlq = new MemorySink('dlq', false);
      const runner = testRunner({
        log,
        sinks: [lake, silver],
        dlq,
        dlqMax: 100,
        partitions: 2,
        exitWhenIdle: true,
        ...limit,
      });
      await runner.run();
      await log.close();
      const size = (records: readonly PipelineRecord[]) =>
        records.reduce((sum, r) => sum + JSON.stringify(r.value).length, 0);
      for (const batch of [...lake.screened, ...silver.batches]) {
        if (limit.maxRecords) assert.ok(batch.length <= limit.maxRecords, `a batch of ${batch.length}`);
        // A batch closes after the record that reaches max_bytes.
        else assert.ok(size(batch.slice(0, -1)) < limit.maxBytes!, `a batch of ${size(batch)} bytes`);
      }
      assert.ok(lake.screened.length > 2, `${lake.screened.length} batch(es)`);
      assert.deepEqual(lake.batches, [], 'lake had everything');
      const key = (r: { partition: number; offset: number }) => `${r.partition}:${r.offset}`;
      assert.deepEqual(
        silver.batches.flat().map(key).sort(),
        stored
          .filter((s) => s.partition === 1 || s.offset >= 5)
          .map(key)
          .sort(),
        'silver wrote what it lacked, once',
      );
      assert.deepEqual(
        lake.screened.flat().map(key).sort(),
        stored.map(key).sort(),
        'every record screened once for the DLQ',
      );
      assert.deepEqual(
        dlq.batches.flat().map(key).sort(),
        stored
          .filter((_, i) => i % 5 === 0)
          .map(key)
          .sort(),
        'the DLQ holds every bad record once',
      );
      assert.deepEqual(dlq.positions, ends);
      assert.deepEqual(silver.positions, ends);
    });
  }
});

/** A sink with `prepare`, which keeps the first offset of each batch it prepares; `hold` can make one wait. */
class PreparingSink extends MemorySink {
  readonly prepared: number[] = [];
  readonly written: number[] = [];
  /** Per first offset, what a prepare or write of the batch from there waits for. */
  readonly holds = new Map<string, Promise<void>>();
  async prepare(records: readonly PipelineRecord[]): Promise<number> {
    const first = records[0]!.offset;
    this.prepared.push(first);
    await this.holds.get(`prepare ${first}`);
    return first;
  }
  override async write(batch: SinkBatch) {
    const first = batch.records[0]?.offset;
    if (first !== undefined) {
      this.written.push(first);
      assert.equal(batch.prepared, first, 'written with its preparation');
      await this.holds.get(`write ${first}`);
    }
    return super.write(batch);
  }
}

describe('PipelineRunner preparations', () => {
  it('prepares the batch in flight without waiting for a batch read ahead', async () => {
    const log = await EmbeddedLog.open({ directory: mkdtempSync(path.join(directory, 'log-')) });
    const encoder = new TextEncoder();
    await log.ensureTopic('events', { partitions: 1 });
    await log.append(
      'events',
      Array.from({ length: 20 }, (_, i) => ({ value: encoder.encode(`{"n": ${i}}`) })),
    );
    // The first batch has no preparation read ahead: each sink prepares it in its turn. While `a`
    // commits it, `a` starts preparing the second batch, which takes long.
    const a = new PreparingSink('a', false);
    const b = new PreparingSink('b', false);
    const aheadOfA = gate();
    const writeOfA = gate();
    a.holds.set('prepare 10', aheadOfA.opened);
    a.holds.set('write 0', writeOfA.opened);
    const runner = testRunner({
      log,
      sinks: [a, b],
      dlq: new MemorySink('dlq', false),
      maxRecords: 10,
      exitWhenIdle: true,
    });
    const running = runner.run();
    try {
      await until(() => a.prepared.includes(10) && a.written.includes(0));
      writeOfA.open();
      assert.ok(
        await within(2000, () => b.prepared.includes(0)),
        `b prepared ${JSON.stringify(b.prepared)} while a prepares the next batch`,
      );
    } finally {
      writeOfA.open();
      aheadOfA.open();
      await running;
      await log.close();
    }
    for (const sink of [a, b]) {
      assert.deepEqual(sink.written, [0, 10]);
      assert.deepEqual(
        sink.batches.flat().map((r) => r.offset),
        Array.from({ length: 20 }, (_, i) => i),
      );
    }
  });
});
