/**
 * Runs one pipeline: reads batches from the source topic, applies the transforms, and has every sink
 * commit each batch with its positions (docs/exactly-once.md states the protocol and its invariants).
 *
 * With `concurrency: N` the source partitions are split among N lanes (partition p to lane p mod N); each
 * lane runs this loop over its own partitions, so their batches are read, transformed and written side by
 * side. A sink commits one batch at a time (the lanes take turns), each with its positions for every
 * partition, and a transform processes one call at a time, so neither needs to be safe for concurrent use.
 *
 * The loop of a lane, per batch:
 *  1. base = the lowest position any sink has committed, per partition; ahead = the highest.
 *  2. When sinks disagree (a crash fell between two sinks' commits, or a sink had not saved the positions
 *     of empty batches), the batch is the records of [base, ahead) up to the batch limits: what the lagging
 *     sinks missed, replayed for them alone, in as many batches as the limits take. Otherwise it is the
 *     next records from base, up to the batch limits.
 *  3. Records are decoded and transformed (but those replayed for another pipeline, which are skipped);
 *     rejected ones go to the DLQ sink with their reason.
 *  4. Each sink that lacks the batch writes it with the positions after it; a sink that has it is skipped.
 *  5. Once every sink committed, the pipeline's consumer-group offsets in the log move (for lag and tools).
 * The positions of a lane's batch cover its partitions alone; positions are per partition throughout.
 * Retryable sink errors are retried with exponential backoff and jitter; anything else stops the pipeline.
 */
import { setImmediate as yieldToEventLoop, setTimeout as sleep } from 'node:timers/promises';
import { isTributaryError, TributaryError } from '../../errors.ts';
import type { Log, StoredRecord } from '../../log/log.ts';
import type { PipelineConfig } from '../config/pipeline.ts';
import { parseJsonExact, stringifyExact } from '../json.ts';
import type { Logger } from '../logger.ts';
import type { PipelineMetrics } from '../metrics.ts';
import { batchCommitted } from './heap.ts';
import { LazyRecord } from './lazy-record.ts';
import type { PipelineRecord, Positions, Rejection, Sink, Transform } from './model.ts';

interface PreparedBatch {
  readonly stored: readonly StoredRecord[];
  readonly records: readonly PipelineRecord[];
  readonly rejected: readonly Rejection[];
  /** Per sink that has `prepare`: its preparation of `records`, started when the batch was read ahead. */
  readonly staged?: ReadonlyMap<Sink, Promise<unknown>>;
}

/** Records decoded and transformed at a time when every sink writes raw bytes (see #transform). */
const SLICE = 1024;

const decoder = new TextDecoder();

/**
 * The keys of `value`: `previous` when they are the same (events of a stream mostly share their fields, so
 * records share one array), else a new array.
 */
function sameFields(previous: readonly string[], value: Record<string, unknown>): readonly string[] {
  let i = 0;
  for (const key in value) if (key !== previous[i++]) return Object.keys(value);
  return i === previous.length ? previous : Object.keys(value);
}

/** A record read from the log with its decoded value (and its bytes, `raw`, when sinks may use them). */
function pipelineRecord(
  stored: StoredRecord,
  value: Record<string, unknown>,
  raw?: Uint8Array,
): PipelineRecord {
  const { key, partition, offset, timestamp, headers } = stored;
  return raw
    ? { key, partition, offset, timestamp, headers, value, raw }
    : { key, partition, offset, timestamp, headers, value };
}

/**
 * A lane's sink preparations. Those of the batch read ahead run one at a time, in order, and start only
 * while none of the current batch is under way; those of the current batch start at once (beside a
 * preparation read ahead already running, never behind one), so the commit in flight waits for no batch
 * after it.
 */
class Preparations {
  #current = 0;
  #aheadRunning = false;
  readonly #ahead: Array<() => void> = [];

  /** Runs a preparation of the lane's current batch now. */
  async current<T>(work: () => Promise<T>): Promise<T> {
    this.#current++;
    try {
      return await work();
    } finally {
      this.#current--;
      this.#startAhead();
    }
  }

  /** Runs a preparation of a batch read ahead after those queued before it, while the current batch has none. */
  ahead<T>(work: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#ahead.push(() => {
        void work()
          .then(resolve, reject)
          .finally(() => {
            this.#aheadRunning = false;
            this.#startAhead();
          });
      });
      this.#startAhead();
    });
  }

  #startAhead(): void {
    if (this.#aheadRunning || this.#current > 0) return;
    const next = this.#ahead.shift();
    if (!next) return;
    this.#aheadRunning = true;
    next();
  }
}

/** The partitions one loop of the pipeline reads, and the batch it read ahead, with where that starts. */
interface Lane {
  readonly index: number;
  readonly partitions: readonly number[];
  next: { readonly from: Positions; readonly batch: Promise<PreparedBatch> } | undefined;
  readonly preparations: Preparations;
}

export type PipelineStatus = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

export interface RunnerOptions {
  readonly name: string;
  readonly config: PipelineConfig;
  readonly log: Log;
  readonly transforms: readonly Transform[];
  readonly sinks: readonly Sink[];
  /** Receives rejected records as DLQ rows (see `dlqRow`). */
  readonly dlq: Sink;
  /** The pipeline's logger, already bound to `{pipeline: name}` (buildPipeline's child): lines add no `pipeline` key. */
  readonly logger: Logger;
  readonly metrics?: PipelineMetrics;
  /** Partitions of the source topic when the pipeline has to create it. */
  readonly defaultPartitions: number;
  /** Stop after the source has no more records (for tests, backfills and `--once`). */
  readonly exitWhenIdle?: boolean;
}

/**
 * The header of a record `tributary dlq replay` appended to a pipeline's source topic: the pipeline it is
 * replayed for. The other pipelines reading that topic skip it (they read it and move past it, but no
 * transform or sink of theirs sees it), so that it is not written a second time into their sinks.
 */
export const HEADER_REPLAY_FOR = 'tributary-replay-for';

/** The consumer group a pipeline's progress is recorded under in the log. */
export function pipelineGroup(name: string): string {
  return `pipeline/${name}`;
}

/**
 * What waits in `topic` past `positions` (the next offset per partition; a partition without one from its
 * start): how many offsets, and the timestamp of the oldest record (undefined when none waits). A partition
 * whose remaining offsets hold no record waits for nothing: the embedded log's repair after a power loss
 * (durability 'os') leaves the offsets of the batches it dropped unused for ever, and a quiet partition
 * would otherwise show lag, and look stalled, until its next record.
 */
export async function backlog(
  log: Log,
  topic: string,
  positions: (partition: number) => number | undefined,
): Promise<{ readonly records: number; readonly oldest: number | undefined }> {
  let records = 0;
  let oldest: number | undefined;
  for (const o of await log.offsets(topic)) {
    const from = Math.max(o.start, positions(o.partition) ?? o.start);
    if (o.end <= from) continue;
    const [first] = await log.read(topic, o.partition, from, { maxRecords: 1 });
    if (!first) continue;
    records += o.end - from;
    oldest = Math.min(oldest ?? Infinity, first.timestamp);
  }
  return { records, oldest };
}

/** A rejected record as a row of the DLQ table. */
export function dlqRow(
  pipeline: string,
  topic: string,
  rejection: Rejection,
  now: number,
): Record<string, unknown> {
  const record = rejection.record;
  return {
    pipeline,
    stage: rejection.stage,
    error: rejection.error,
    // The bytes read, where the value is still theirs: they are the record as sent (see `#decode`).
    // A value's Infinity is kept as 1e999 (not null): replayed, it meets the same check again.
    payload: rejection.raw ?? (record.raw ? decoder.decode(record.raw) : stringifyExact(record.value)),
    topic,
    partition: record.partition,
    offset: record.offset,
    key: record.key,
    record_timestamp: new Date(record.timestamp).toISOString(),
    failed_at: new Date(now).toISOString(),
  };
}

export class PipelineRunner {
  readonly name: string;
  readonly #options: RunnerOptions;
  readonly #controller = new AbortController();
  #status: PipelineStatus = 'starting';
  #error: unknown;
  #lastCommitAt = 0;
  #rejectedTotal = 0;
  #positions = new Map<Sink, Map<number, number>>();
  /** Per partition, where every sink stands (for lag). */
  #committed: number[] = [];
  /** Per sink and transform, the call in progress: lanes take turns (see #exclusive). */
  readonly #turns = new Map<object, Promise<unknown>>();
  #lanes: Lane[] = [];

  constructor(options: RunnerOptions) {
    this.name = options.name;
    this.#options = options;
  }

  get status(): PipelineStatus {
    return this.#status;
  }

  get error(): unknown {
    return this.#error;
  }

  /** When the last batch was committed by every sink (ms since epoch; 0 before the first). */
  get lastCommitAt(): number {
    return this.#lastCommitAt;
  }

  /** Asks the pipeline to stop: the batch in flight is finished and committed, no new one starts. */
  stop(): void {
    if (this.#status === 'running' || this.#status === 'starting') this.#status = 'stopping';
    this.#controller.abort();
  }

  get #allSinks(): Sink[] {
    return [...this.#options.sinks, this.#options.dlq];
  }

  async run(): Promise<void> {
    const { name, config, log, logger, metrics } = this.#options;
    const topic = config.source.topic;
    metrics?.up.set({ pipeline: name }, 1);
    try {
      const info =
        (await log.describeTopic(topic)) ??
        (await log.ensureTopic(topic, { partitions: this.#options.defaultPartitions }));
      // A sink whose system is down at start (retryable) is waited for, as during writes.
      for (const sink of this.#allSinks) {
        this.#positions.set(sink, new Map(await this.#retrying(sink.name, () => sink.open())));
      }
      const start = await this.#startPositions(info.partitions);
      this.#committed = start.map((_, p) =>
        Math.min(...this.#allSinks.map((s) => this.#position(s, p, start))),
      );
      const lanes = Math.min(config.concurrency, info.partitions);
      this.#lanes = Array.from({ length: lanes }, (_, index) => ({
        index,
        partitions: Array.from({ length: info.partitions }, (_, p) => p).filter((p) => p % lanes === index),
        next: undefined,
        preparations: new Preparations(),
      }));
      if (this.#status === 'starting') this.#status = 'running';
      logger.info({ topic, sinks: this.#allSinks.map((s) => s.name), lanes }, `pipeline ${name} started`);
      const results = await Promise.allSettled(this.#lanes.map((lane) => this.#runLane(lane, start)));
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
      // Sinks that skipped committing empty batches store where they are, so a restart starts there.
      for (const sink of this.#allSinks) if (sink.flush) await this.#retrying(sink.name, () => sink.flush!());
      this.#status = 'stopped';
      logger.info(`pipeline ${name} stopped`);
    } catch (error) {
      this.#status = 'failed';
      this.#error = error;
      logger.error(
        { err: error },
        `pipeline ${name} failed: ${error instanceof Error ? error.message : String(error)}`,
      );
      throw error;
    } finally {
      // A batch read ahead is dropped (nothing committed it), but its transforms and the sinks' preparation
      // of it finish first, and what the sinks prepared is released.
      for (const lane of this.#lanes) {
        const dropped = await lane.next?.batch.catch(() => undefined);
        lane.next = undefined;
        for (const [sink, staged] of dropped?.staged ?? []) {
          const prepared = await staged.catch(() => undefined);
          if (prepared !== undefined) await sink.discard?.(prepared).catch(() => undefined);
        }
      }
      metrics?.up.set({ pipeline: name }, 0);
      for (const sink of this.#allSinks) await sink.close().catch(() => undefined);
      for (const transform of this.#options.transforms) await transform.close?.().catch(() => undefined);
    }
  }

  /** One lane's loop, until the pipeline stops (or, with `exitWhenIdle`, its partitions are drained). */
  async #runLane(lane: Lane, start: readonly number[]): Promise<void> {
    try {
      while (!this.#controller.signal.aborted) {
        const processed = await this.#step(lane, start);
        if (processed === 0 && this.#options.exitWhenIdle) break;
      }
    } catch (error) {
      // The other lanes finish and commit the batch they are writing, then stop.
      this.#controller.abort();
      throw error;
    }
  }

  /**
   * Runs `work` once every earlier call for the same owner has settled. Per sink: lanes take turns, so that
   * a sink commits one batch at a time with its positions for every partition. Per transform: one call at
   * a time.
   */
  async #exclusive<T>(owner: object, work: () => Promise<T>): Promise<T> {
    const previous = this.#turns.get(owner) ?? Promise.resolve();
    const result = previous.then(work);
    this.#turns.set(
      owner,
      result.catch(() => undefined),
    );
    return result;
  }

  /** Where a partition starts for a sink that has committed nothing there: per the source's `start`. */
  async #startPositions(partitions: number): Promise<number[]> {
    const offsets = await this.#options.log.offsets(this.#options.config.source.topic);
    return Array.from({ length: partitions }, (_, p) => {
      const partition = offsets.find((o) => o.partition === p);
      return this.#options.config.source.start === 'latest' ? (partition?.end ?? 0) : (partition?.start ?? 0);
    });
  }

  #position(sink: Sink, partition: number, start: readonly number[]): number {
    return this.#positions.get(sink)?.get(partition) ?? start[partition] ?? 0;
  }

  /** One batch of a lane through the pipeline; returns how many records it read. */
  async #step(lane: Lane, start: readonly number[]): Promise<number> {
    const { config, log, name, metrics } = this.#options;
    const topic = config.source.topic;
    const sinks = this.#allSinks;
    const base = new Map<number, number>();
    const ahead = new Map<number, number>();
    for (const p of lane.partitions) {
      const positions = sinks.map((s) => this.#position(s, p, start));
      base.set(p, Math.min(...positions));
      ahead.set(p, Math.max(...positions));
    }
    const catchUp = lane.partitions.some((p) => ahead.get(p)! > base.get(p)!);
    const prefetched = lane.next;
    lane.next = undefined;
    let batch: PreparedBatch;
    // The positions after the batch: where it ends in each partition it read, base in the others.
    const end = new Map(base);
    if (prefetched) {
      batch = await prefetched.batch;
      // After a step every sink stands at its end, where the prefetch started. Were it otherwise, its
      // records would have gone through stateful transforms (dedupe) already: stop rather than skip them.
      if (catchUp || lane.partitions.some((p) => prefetched.from.get(p) !== base.get(p))) {
        throw new TributaryError(
          'INTERNAL',
          `pipeline ${name}: the next batch was read from ${[...prefetched.from.values()].join(',')}, but the sinks stand at ${[...base.values()].join(',')}`,
          { hint: 'restart the pipeline; it resumes from what its sinks committed' },
        );
      }
    } else {
      batch = await this.#prepare(() =>
        catchUp ? this.#readRange(base, ahead, end) : this.#readBatch(base),
      );
    }
    const { stored, records, rejected } = batch;
    if (stored.length === 0) return 0;

    for (const record of stored)
      end.set(record.partition, Math.max(end.get(record.partition)!, record.offset + 1));
    // A catch-up longer than the batch limits goes on in the next step, from end: nothing is read ahead
    // until it is over (the sinks would not all stand where that batch starts).
    const caughtUp = lane.partitions.every((p) => end.get(p)! >= ahead.get(p)!);
    metrics?.recordsIn.inc({ pipeline: name }, stored.length);
    metrics?.batchRecords.observe({ pipeline: name }, stored.length);

    // Read and transform the next batch while the sinks commit this one (DuckDB and the databases work
    // off the event loop). No sink sees it before this batch is committed everywhere (invariant 5).
    const committing = { done: false };
    if (!this.#controller.signal.aborted && caughtUp) {
      const from: Positions = new Map(end);
      const next = this.#prepare(() => this.#readBatch(from, committing), true).then((b) =>
        this.#stageAhead(lane, b),
      );
      next.catch(() => undefined); // its error surfaces when the next step awaits it
      lane.next = { from, batch: next };
    }
    const endPositions: Positions = end;
    const sinkRejected: Rejection[] = [];
    for (const sink of this.#options.sinks) {
      const result = await this.#deliver(sink, lane, records, endPositions, start, batch.staged?.get(sink));
      sinkRejected.push(...(result ?? []));
    }
    const allRejected = [...rejected, ...sinkRejected];
    const now = Date.now();
    const dlqRecords: PipelineRecord[] = allRejected.map(({ record }, i) => ({
      key: record.key,
      partition: record.partition,
      offset: record.offset,
      timestamp: record.timestamp,
      headers: record.headers,
      value: dlqRow(name, topic, allRejected[i]!, now),
    }));
    await this.#deliver(this.#options.dlq, lane, dlqRecords, endPositions, start);
    for (const rejection of allRejected)
      metrics?.recordsRejected.inc({ pipeline: name, stage: rejection.stage });
    await log.commitOffsets(pipelineGroup(name), topic, endPositions);
    committing.done = true;
    let bytes = 0;
    for (const record of stored) bytes += record.value.length;
    batchCommitted(bytes);
    for (const [p, offset] of end) this.#committed[p] = offset;
    this.#lastCommitAt = Date.now();
    metrics?.lastCommitTimestamp.set({ pipeline: name }, this.#lastCommitAt / 1000);
    await this.#updateLag(this.#committed);
    this.#options.logger.info(
      {
        records: stored.length,
        written: records.length,
        rejected: allRejected.length,
        catchUp,
        ...(this.#lanes.length > 1 ? { lane: lane.index } : {}),
      },
      `pipeline ${name} committed ${stored.length} record(s)${allRejected.length ? `, ${allRejected.length} to the DLQ` : ''}`,
    );
    this.#checkDlqLimits(stored.length, allRejected.length);
    return stored.length;
  }

  /**
   * Reads a batch and passes its records through the transforms, except those replayed for another
   * pipeline (HEADER_REPLAY_FOR). A batch read ahead lets the event loop turn first and between its
   * slices: reading and validating run in promise continuations alone, which would otherwise hold off the
   * I/O callbacks of the commit in flight (DuckDB, storage) until the whole batch is done, and the sinks
   * would wait for it instead of working beside it.
   */
  async #prepare(read: () => Promise<StoredRecord[]>, ahead = false): Promise<PreparedBatch> {
    if (ahead) await yieldToEventLoop();
    const stored = await read();
    if (stored.length === 0) return { stored, records: [], rejected: [] };
    // The positions after the batch come from `stored`, so the records skipped are passed like the others.
    const addressed = (r: StoredRecord) => (r.headers[HEADER_REPLAY_FOR] ?? this.name) === this.name;
    const own = stored.every(addressed) ? stored : stored.filter(addressed);
    return { stored, ...(await this.#transform(own)) };
  }

  /**
   * Starts each sink's `prepare` of a batch read ahead (the Iceberg sink writes its data files meanwhile):
   * once the lane's current batch is committed, every sink lacks all of it. A lane prepares one batch read
   * ahead at a time, after the current batch's preparations (see Preparations).
   */
  #stageAhead(lane: Lane, batch: PreparedBatch): PreparedBatch {
    if (batch.records.length === 0 || this.#controller.signal.aborted) return batch;
    const staged = new Map<Sink, Promise<unknown>>();
    for (const sink of this.#options.sinks) {
      if (!sink.prepare) continue;
      const work = lane.preparations.ahead(() =>
        this.#retrying(sink.name, () => sink.prepare!(batch.records)),
      );
      work.catch(() => undefined); // its error surfaces when the batch is delivered
      staged.set(sink, work);
    }
    return { ...batch, staged };
  }

  /**
   * The records in [from, to) of each partition of `from`, partition after partition, until the batch is
   * full: the first records of a catch-up. `reached` gets `to` of each partition read to its end.
   */
  async #readRange(from: Positions, to: Positions, reached: Map<number, number>): Promise<StoredRecord[]> {
    const { config, log } = this.#options;
    const { max_records: maxRecords, max_bytes: maxBytes } = config.batch;
    const records: StoredRecord[] = [];
    let bytes = 0;
    for (const [p, first] of from) {
      const last = to.get(p)!;
      let next = first;
      while (next < last) {
        if (records.length >= maxRecords || bytes >= maxBytes) return records;
        const read = await log.read(config.source.topic, p, next, {
          maxRecords: Math.min(maxRecords - records.length, last - next),
          maxBytes: maxBytes - bytes,
        });
        if (read.length === 0) break;
        for (const record of read) {
          if (record.offset >= last) break;
          records.push(record);
          bytes += record.value.length;
        }
        next = read[read.length - 1]!.offset + 1;
      }
      reached.set(p, last);
    }
    return records;
  }

  /**
   * Records from `from`, across its partitions, until the batch is full or its interval has passed. A batch
   * read ahead (`committing` given) stays open past its interval until the batch before it is committed:
   * otherwise a commit longer than the interval would leave it small, and the next commit with it.
   */
  async #readBatch(from: Positions, committing?: { readonly done: boolean }): Promise<StoredRecord[]> {
    const { config, log } = this.#options;
    const { max_records: maxRecords, max_bytes: maxBytes, interval } = config.batch;
    const deadline = Date.now() + interval;
    const next = new Map(from);
    const records: StoredRecord[] = [];
    let bytes = 0;
    for (;;) {
      for (const [p, offset] of next) {
        if (records.length >= maxRecords || bytes >= maxBytes) break;
        const read = await log.read(config.source.topic, p, offset, {
          maxRecords: maxRecords - records.length,
          maxBytes: maxBytes - bytes,
        });
        for (const record of read) {
          records.push(record);
          bytes += record.value.length;
        }
        if (read.length) next.set(p, read[read.length - 1]!.offset + 1);
        await yieldToEventLoop();
      }
      const full = records.length >= maxRecords || bytes >= maxBytes;
      const due = Date.now() >= deadline && (committing?.done ?? true);
      if (full || due || this.#controller.signal.aborted || this.#options.exitWhenIdle) return records;
      // Past the interval (waiting for a commit), every 10 ms: records that arrived join the batch.
      await sleep(Date.now() < deadline ? Math.min(50, Math.max(1, deadline - Date.now())) : 10, undefined, {
        signal: this.#controller.signal,
      }).catch(() => undefined);
    }
  }

  async #transform(
    stored: readonly StoredRecord[],
  ): Promise<{ records: PipelineRecord[]; rejected: Rejection[] }> {
    const { transforms, sinks } = this.#options;
    // Sinks may write the bytes read from the log instead of serializing the values again, when nothing
    // between here and them can change a value — or the bytes of the last transform that changes values,
    // when it writes them.
    const lastChanging = transforms.findLast((t) => t.preservesValues !== true);
    const keepRaw = lastChanging === undefined || lastChanging.writesRaw === true;
    const rejected: Rejection[] = [];
    const sliced =
      keepRaw &&
      sinks.every((s) => s.usesRaw === true) &&
      transforms.every((t) => t.preservesValues === true || t.writesRaw === true);
    if (!sliced) {
      let records = this.#decode(stored, 0, stored.length, keepRaw, rejected);
      for (const transform of transforms) {
        const result = await this.#exclusive(transform, () =>
          this.#retrying(transform.name, () => transform.process(records)),
        );
        records = [...result.records];
        rejected.push(...result.rejected);
      }
      // Bytes a transform wrote that a later one may have made stale (it kept them in a copy of a record).
      if (!keepRaw && transforms.some((t) => t.writesRaw === true))
        records = records.map((r) => (r.raw ? { ...r, raw: undefined } : r));
      return { records, rejected };
    }
    // Every sink writes the raw bytes: decode and transform a slice at a time and pass on records that
    // decode their value again only if a sink reads it. A slice's objects then die young (cheap to
    // collect), and a batch in memory is its bytes, not its bytes and its objects. Only the transforms
    // read the values decoded here: exactly, unless none needs integers beyond ±2^53 exact.
    const exact = !transforms.every((t) => t.approximateNumbers === true && t.preservesValues === true);
    const records: PipelineRecord[] = [];
    let fields: readonly string[] = [];
    for (let from = 0; from < stored.length; from += SLICE) {
      if (from > 0) await yieldToEventLoop();
      let slice: readonly PipelineRecord[] = this.#decode(
        stored,
        from,
        Math.min(stored.length, from + SLICE),
        true,
        rejected,
        exact,
      );
      for (const transform of transforms) {
        const input = slice;
        const result = await this.#exclusive(transform, () =>
          this.#retrying(transform.name, () => transform.process(input)),
        );
        slice = result.records;
        rejected.push(...result.rejected);
      }
      for (const record of slice) {
        if (!record.raw) {
          records.push(record);
          continue;
        }
        fields = sameFields(fields, record.value);
        records.push(new LazyRecord(record, record.raw, fields));
      }
    }
    return { records, rejected };
  }

  /**
   * The records stored[from, to) with their values decoded (integers beyond ±2^53 exactly, see
   * core/json.ts, unless not `exact`); those that are not JSON objects go to `rejected`.
   */
  #decode(
    stored: readonly StoredRecord[],
    from: number,
    to: number,
    keepRaw: boolean,
    rejected: Rejection[],
    exact = true,
  ): PipelineRecord[] {
    const records: PipelineRecord[] = [];
    for (let i = from; i < to; i++) {
      const record = stored[i]!;
      const text = decoder.decode(record.value);
      let value: unknown;
      let error: string | undefined;
      try {
        value = exact ? parseJsonExact(text) : JSON.parse(text);
        if (value === null || typeof value !== 'object' || Array.isArray(value)) error = 'not a JSON object';
      } catch (cause) {
        error = `not valid JSON: ${(cause as Error).message}`;
      }
      if (error !== undefined) {
        rejected.push({ record: pipelineRecord(record, {}), stage: 'decode', error, raw: text });
        continue;
      }
      records.push(
        pipelineRecord(record, value as Record<string, unknown>, keepRaw ? record.value : undefined),
      );
    }
    return records;
  }

  /**
   * Writes the records the sink has not committed yet; returns what the sink rejected. `end` holds the
   * positions of the lane's partitions; the sink commits them with its positions of the other partitions.
   */
  async #deliver(
    sink: Sink,
    lane: Lane,
    records: readonly PipelineRecord[],
    end: Positions,
    start: readonly number[],
    staged?: Promise<unknown>,
  ): Promise<readonly Rejection[] | undefined> {
    // Only this lane moves the positions of its partitions: what the sink lacks is known before its turn.
    const lacking = records.filter((r) => r.offset >= this.#position(sink, r.partition, start));
    const missing = lacking.length === records.length ? records : lacking;
    let prepared: unknown;
    if (staged && missing === records) prepared = await staged;
    else {
      // Prepared for records the sink no longer lacks all of: released, and prepared again below.
      // (A failed prepare of work thrown away is no failure of the pipeline.)
      if (staged)
        await staged.then((p) => (p === undefined ? undefined : sink.discard?.(p))).catch(() => undefined);
      if (sink.prepare && !this.#has(sink, end, start))
        prepared = await lane.preparations.current(() =>
          this.#retrying(sink.name, () => sink.prepare!(missing)),
        );
    }
    return this.#exclusive(sink, () => this.#write(sink, records, missing, end, start, prepared));
  }

  #has(sink: Sink, end: Positions, start: readonly number[]): boolean {
    return [...end].every(([partition, offset]) => this.#position(sink, partition, start) >= offset);
  }

  async #write(
    sink: Sink,
    records: readonly PipelineRecord[],
    missing: readonly PipelineRecord[],
    end: Positions,
    start: readonly number[],
    prepared: unknown,
  ): Promise<readonly Rejection[] | undefined> {
    const current = this.#positions.get(sink)!;
    if (this.#has(sink, end, start)) {
      // Replaying a batch this sink committed but the DLQ did not: the DLQ still needs what it rejected.
      const dlq = this.#options.dlq;
      return sink === dlq || this.#has(dlq, end, start)
        ? undefined
        : await this.#retrying(sink.name, async () => (await sink.screen?.(records)) ?? []);
    }
    const positions = new Map(current);
    for (const [partition, offset] of end)
      positions.set(partition, Math.max(offset, current.get(partition) ?? 0));
    const timer = this.#options.metrics?.commitSeconds.startTimer({ pipeline: this.name, sink: sink.name });
    const batch =
      prepared === undefined ? { records: missing, positions } : { records: missing, positions, prepared };
    const result = await this.#retrying(sink.name, () => sink.write(batch));
    timer?.();
    this.#positions.set(sink, positions);
    if (sink !== this.#options.dlq)
      this.#options.metrics?.recordsOut.inc({ pipeline: this.name, sink: sink.name }, missing.length);
    // The sink had part of the batch already (committed by a lane of an earlier run with another
    // `concurrency`): what it rejected of that part is owed to the DLQ too, unless the DLQ has it.
    const dlq = this.#options.dlq;
    if (missing !== records && sink !== dlq && !this.#has(dlq, end, start) && sink.screen) {
      const had = new Set(missing);
      const screened = await this.#retrying(sink.name, () =>
        sink.screen!(records.filter((r) => !had.has(r))),
      );
      return [...(result.rejected ?? []), ...screened];
    }
    return result.rejected;
  }

  /** Runs `work`, retrying retryable failures with exponential backoff and full jitter until it succeeds or the pipeline stops. */
  async #retrying<T>(stage: string, work: () => Promise<T>): Promise<T> {
    let delay = 100;
    for (let attempt = 1; ; attempt++) {
      try {
        return await work();
      } catch (error) {
        const retryable = isTributaryError(error) && error.retryable;
        if (!retryable || (this.#controller.signal.aborted && attempt > 3)) {
          throw isTributaryError(error)
            ? error
            : new TributaryError(
                'PIPELINE_FAILED',
                `pipeline ${this.name}: ${stage} failed: ${error instanceof Error ? error.message : String(error)}`,
                { cause: error },
              );
        }
        this.#options.metrics?.sinkRetries.inc({ pipeline: this.name, sink: stage });
        this.#options.logger.warn(
          { stage, attempt, err: error },
          `${stage} failed, retrying in up to ${delay} ms: ${(error as Error).message}`,
        );
        await sleep(Math.random() * delay);
        delay = Math.min(delay * 2, 30_000);
      }
    }
  }

  async #updateLag(end: readonly number[]): Promise<void> {
    const { log, config, metrics, name } = this.#options;
    if (!metrics) return;
    const { records, oldest } = await backlog(log, config.source.topic, (p) => end[p]);
    metrics.lagRecords.set({ pipeline: name }, records);
    metrics.lagSeconds.set(
      { pipeline: name },
      oldest === undefined ? 0 : Math.max(0, (Date.now() - oldest) / 1000),
    );
  }

  #checkDlqLimits(batchSize: number, rejected: number): void {
    const { max, max_rate: maxRate } = this.#options.config.dlq;
    this.#rejectedTotal += rejected;
    if (max > 0 && this.#rejectedTotal > max) {
      throw new TributaryError(
        'DLQ_LIMIT',
        `pipeline ${this.name} sent ${this.#rejectedTotal} records to the DLQ, over dlq.max = ${max}`,
        {
          hint: `inspect them with \`tributary dlq list ${this.name}\`, fix the schema or transform, then replay`,
        },
      );
    }
    if (maxRate !== undefined && batchSize >= 100 && rejected / batchSize > maxRate) {
      throw new TributaryError(
        'DLQ_LIMIT',
        `pipeline ${this.name} rejected ${rejected} of ${batchSize} records in one batch, over dlq.max_rate = ${maxRate}`,
        {
          hint: `inspect them with \`tributary dlq list ${this.name}\`, fix the schema or transform, then replay`,
        },
      );
    }
  }
}
