/**
 * The embedded log: the record batches of each topic in append-only segment files (segment-files.ts), and
 * in one SQLite database (WAL mode, through `node:sqlite`) where each batch is, the offsets, the topics and
 * the consumer groups' positions.
 *
 * Durability (invariant 1 of log.ts): appends are group-committed. Appends that arrive while a
 * transaction is being written wait and then share the next one, so one fsync acknowledges many
 * producers. With `durability: 'fsync'` (synchronous=FULL) a commit is on disk when it returns and survives
 * power loss (the segment's bytes are synced before the transaction that points to them); with `'os'`
 * (synchronous=NORMAL, no sync of segments) it is in the operating system and survives a crash of the
 * process, not of the machine. An append's promise resolves only after its transaction committed.
 */
import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { crc32 } from 'node:zlib';
import { TributaryError } from '../errors.ts';
import {
  batchOf,
  decodeBatch,
  encodeRecords,
  readRecord,
  recordRead,
  type EncodedRecords,
} from './record-batch.ts';
import { SegmentFiles } from './segment-files.ts';
import {
  partitionForKeyBytes,
  type Log,
  type LogRecord,
  type PartitionOffsets,
  type ReadOptions,
  type RecordPosition,
  type StoredRecord,
  type TopicConfig,
  type TopicInfo,
} from './log.ts';

export interface EmbeddedLogOptions {
  /** Directory of the log's files. */
  readonly directory: string;
  readonly durability?: 'fsync' | 'os';
  /** How often retention runs (default one minute); 0 turns the timer off. */
  readonly retentionIntervalMs?: number;
  /** Size at which a topic's segment file is closed and the next one begun (default 64 MiB). */
  readonly segmentBytes?: number;
}

interface PendingAppend {
  readonly topic: TopicState;
  readonly records: EncodedRecords;
  /** Goes into the transaction of the append before it, whatever the size (`appendTogether`). */
  readonly withPrevious?: boolean;
  readonly resolve: (positions: Float64Array) => void;
  readonly reject: (error: unknown) => void;
}

/** The records one flush appends to one partition: one record batch, of the encoded records in `parts`. */
interface PartitionGroup {
  readonly partition: number;
  readonly base: number;
  count: number;
  readonly parts: Uint8Array[];
  maxTimestamp: number;
  valueBytes: number;
}

/** Positions as [partition, offset, …] (what a flush resolves an append with) as objects. */
export function positionsOf(pairs: Float64Array): RecordPosition[] {
  const positions = new Array<RecordPosition>(pairs.length / 2);
  for (let i = 0; i < positions.length; i++)
    positions[i] = { partition: pairs[2 * i]!, offset: pairs[2 * i + 1]! };
  return positions;
}

interface TopicState {
  readonly id: number;
  readonly info: TopicInfo;
  /** Next offset per partition; advanced only when the transaction that uses the offsets commits. */
  readonly next: number[];
  readonly start: number[];
  roundRobin: number;
}

const TOPIC_NAME = /^[A-Za-z0-9._-]{1,200}$/;
/** Records one transaction takes (more when one append, or a group of `appendTogether`, is larger). */
export const MAX_RECORDS_PER_TRANSACTION = 50_000;
const SQLITE_BUSY = 5;
/** The WAL's size that starts a checkpoint (see `open`). */
const CHECKPOINT_BYTES = 4 * 1024 * 1024;
/**
 * Retention frees disk a segment file at a time (once none of its batches is kept): a topic holds up to
 * this much more than its retention asks.
 */
const SEGMENT_BYTES = 64 * 1024 * 1024;
/** A segment file holding less than 1/SPARSE_SEGMENT of its bytes in kept batches is emptied (see `enforceRetention`). */
const SPARSE_SEGMENT = 8;
/** Reads made again when a segment file is gone (another process's retention deleted it meanwhile). */
const READ_ATTEMPTS = 5;
/** How often a log with durability 'os' puts what its segments were written on disk. */
const OS_SYNC_INTERVAL_MS = 1000;
/** The log's format, kept in SQLite's user_version: 1 is record batches in segment files. */
const LOG_FORMAT = 1;

export class EmbeddedLog implements Log {
  readonly #db: DatabaseSync;
  readonly #topics = new Map<string, TopicState>();
  readonly #pending: PendingAppend[] = [];
  readonly #appended = new EventEmitter();
  readonly #retentionTimer: NodeJS.Timeout | undefined;
  readonly #segments: SegmentFiles;
  /** Durability 'fsync': segments are synced before each commit, and commits are (synchronous=FULL). */
  readonly #sync: boolean;
  /** With durability 'os', what segments have been written is put on disk once a second (see `#syncSegments`). */
  readonly #syncTimer: NodeJS.Timeout | undefined;
  #syncStopped = false;
  readonly #segmentBytes: number;
  #flushScheduled = false;
  #closed = false;
  readonly #insert: StatementSync;
  readonly #advance: StatementSync;
  readonly #nextOffsets: StatementSync;
  readonly #select: StatementSync;
  readonly #lastSegment: StatementSync;
  readonly #addSegment: StatementSync;
  readonly #fillSegment: StatementSync;
  /**
   * Per partition, the last record batch a read stopped in, while anything still holds its payload: the
   * next read usually starts inside it (a pipeline's next batch) and takes it from here instead of copying
   * it out of SQLite again (a batch row can be megabytes). Weak: a payload nothing uses is not kept.
   */
  readonly #recent = new Map<string, { readonly base: number; readonly payload: WeakRef<Uint8Array> }>();

  private constructor(db: DatabaseSync, options: EmbeddedLogOptions) {
    this.#db = db;
    this.#appended.setMaxListeners(0);
    this.#sync = options.durability !== 'os';
    this.#segments = new SegmentFiles(options.directory, this.#sync);
    this.#segmentBytes = options.segmentBytes ?? SEGMENT_BYTES;
    // The payload column is empty for a batch in a segment file (logs written before segment files keep
    // their batches in it).
    this.#insert = db.prepare(
      "insert into batches (topic_id, partition, base_offset, end_offset, max_timestamp, bytes, segment, position, length, checksum, payload) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, x'')",
    );
    this.#lastSegment = db.prepare(
      'select id, end_position from segments where topic_id = ? order by id desc limit 1',
    );
    this.#addSegment = db.prepare('insert into segments (topic_id, id) values (?, ?)');
    this.#fillSegment = db.prepare(
      `update segments set end_position = ?1, synced_position = case when ?2 then ?1 else synced_position end,
         batches = batches + ?3, live_bytes = live_bytes + ?4 where topic_id = ?5 and id = ?6`,
    );
    this.#advance = db.prepare('update partitions set next_offset = ? where topic_id = ? and partition = ?');
    this.#nextOffsets = db.prepare('select partition, next_offset from partitions where topic_id = ?');
    // The payload of the batch at the first parameter's offset is not read (the caller has it), nor the
    // empty one of a batch in a segment file.
    this.#select = db.prepare(
      `select base_offset, segment, position, length, checksum, case when base_offset = ?1 or segment is not null then null else payload end as payload
         from batches where topic_id = ?2 and partition = ?3 and end_offset > ?4 and base_offset >=
           coalesce((select max(base_offset) from batches where topic_id = ?2 and partition = ?3 and base_offset <= ?4), 0)
         order by base_offset`,
    );
    this.#repairUnsynced();
    for (const row of db
      .prepare('select id, name, partitions, retention_ms, retention_bytes from topics')
      .all() as unknown as TopicRow[]) {
      this.#topics.set(row.name, this.#loadTopic(row));
    }
    const interval = options.retentionIntervalMs ?? 60_000;
    if (interval > 0) {
      this.#retentionTimer = setInterval(
        () =>
          void this.enforceRetention().catch((error: unknown) =>
            process.emitWarning(`the embedded log's retention failed: ${(error as Error).message}`, {
              code: 'TRIBUTARY_LOG_RETENTION',
            }),
          ),
        interval,
      );
      this.#retentionTimer.unref();
    }
    if (!this.#sync) {
      this.#syncTimer = setInterval(() => this.#syncSegmentsOrStop(), OS_SYNC_INTERVAL_MS);
      this.#syncTimer.unref();
    }
  }

  static async open(options: EmbeddedLogOptions): Promise<EmbeddedLog> {
    mkdirSync(options.directory, { recursive: true });
    let db: DatabaseSync;
    try {
      // The busy timeout comes first: another process opening the log at the same moment holds a lock
      // while it switches the journal to WAL, and without it that moment fails with "database is locked".
      db = new DatabaseSync(path.join(options.directory, 'log.db'), { timeout: 10_000 });
      // SQLite's default pages (4 KiB) for a new log: it holds small rows. Logs from before segment files
      // keep their 32 KiB pages (chosen then for batches a megabyte long in the database).
      const pragmas = `pragma journal_mode = wal; pragma synchronous = ${options.durability === 'os' ? 'normal' : 'full'};`;
      // Switching a new log to WAL takes an exclusive lock; when two processes that both read it try at
      // once, SQLite answers one "database is locked" at once rather than wait (it would deadlock): that
      // one tries again shortly.
      for (let attempt = 1; ; attempt++) {
        try {
          db.exec(pragmas);
          break;
        } catch (error) {
          if ((error as { errcode?: number }).errcode !== SQLITE_BUSY || attempt >= 50) throw error;
          await sleep(10 + Math.random() * 40);
        }
      }
      // The commit that takes the WAL past this checkpoints it, and the appends waiting for that commit
      // wait for the checkpoint too. With batches in the database, SQLite's default (1,000 pages: 32 MiB
      // with 32 KiB pages) stalled a commit for 65–85 ms about every 0.4 s under 100-event batches (ingest
      // notes in docs/ingest-performance.md); a few megabytes bound the WAL the same whatever the page size.
      const { page_size: pageSize } = db.prepare('pragma page_size').get() as { page_size: number };
      db.exec(`pragma wal_autocheckpoint = ${Math.max(1, Math.round(CHECKPOINT_BYTES / pageSize))}`);
      // Before anything is added to it.
      refuseLaterFormat(db, options.directory);
      db.exec(`
        create table if not exists topics (id integer primary key, name text not null unique, partitions integer not null,
          retention_ms integer, retention_bytes integer);
        create table if not exists partitions (topic_id integer not null, partition integer not null,
          start_offset integer not null default 0, next_offset integer not null default 0, primary key (topic_id, partition)) without rowid;
        -- One row per record batch (record-batch.ts): appends cost per byte, not per record. The batch is
        -- \`length\` bytes at \`position\` in a segment file of its topic (payload empty) whose CRC-32 is
        -- \`checksum\`, or, written before segment files, the payload (segment null; those logs have a rowid
        -- table, and an index by end_offset nothing uses now). Rows are small: one b-tree, so that a commit
        -- writes few pages.
        create table if not exists batches (topic_id integer not null, partition integer not null, base_offset integer not null,
          end_offset integer not null, max_timestamp integer not null, bytes integer not null, payload blob not null,
          segment integer, position integer, length integer, checksum integer,
          primary key (topic_id, partition, base_offset)) without rowid;
        -- A topic's segment files: how far each is written (bytes past it never committed) and known to be
        -- on disk, and how many batches and bytes of them it still holds (retention deletes it at none,
        -- moves them out at few). The last one is appended to.
        create table if not exists segments (topic_id integer not null, id integer not null,
          end_position integer not null default 0, synced_position integer not null default 0,
          batches integer not null default 0, live_bytes integer not null default 0, primary key (topic_id, id)) without rowid;
        create table if not exists group_offsets (group_name text not null, topic_id integer not null, partition integer not null,
          offset integer not null, primary key (group_name, topic_id, partition)) without rowid;`);
    } catch (cause) {
      if (cause instanceof TributaryError) {
        db!.close();
        throw cause;
      }
      throw new TributaryError(
        'STORAGE_IO',
        `cannot open the embedded log in ${options.directory}: ${(cause as Error).message}`,
        {
          cause,
          hint: 'check that the directory is writable and that no other Tributary process has the log open',
        },
      );
    }
    try {
      upgradeFormat(db, options.directory);
    } catch (error) {
      db.close();
      if (error instanceof TributaryError) throw error;
      throw new TributaryError(
        'STORAGE_IO',
        `cannot upgrade the embedded log in ${options.directory}: ${(error as Error).message}`,
        {
          cause: error,
          hint: 'check that the directory is writable',
        },
      );
    }
    try {
      return new EmbeddedLog(db, options);
    } catch (cause) {
      db.close();
      throw new TributaryError(
        'STORAGE_IO',
        `cannot open the embedded log in ${options.directory}: ${(cause as Error).message}`,
        {
          cause,
          hint: 'check that the directory and its segments are readable and writable',
        },
      );
    }
  }

  #loadTopic(row: TopicRow): TopicState {
    const partitions = this.#db
      .prepare(
        'select partition, start_offset, next_offset from partitions where topic_id = ? order by partition',
      )
      .all(row.id) as unknown as Array<{ partition: number; start_offset: number; next_offset: number }>;
    return {
      id: row.id,
      info: {
        name: row.name,
        partitions: row.partitions,
        ...(row.retention_ms === null ? {} : { retentionMs: row.retention_ms }),
        ...(row.retention_bytes === null ? {} : { retentionBytes: row.retention_bytes }),
      },
      next: partitions.map((p) => p.next_offset),
      start: partitions.map((p) => p.start_offset),
      roundRobin: 0,
    };
  }

  async ensureTopic(name: string, config: TopicConfig): Promise<TopicInfo> {
    this.#checkOpen();
    if (!TOPIC_NAME.test(name)) {
      throw new TributaryError('INVALID_INPUT', `"${name}" is not a valid topic name`, {
        hint: 'use letters, digits, ".", "_" and "-" (at most 200 characters)',
      });
    }
    if (!Number.isInteger(config.partitions) || config.partitions < 1 || config.partitions > 1024) {
      throw new TributaryError(
        'INVALID_INPUT',
        `topic ${name}: partitions must be a whole number from 1 to 1024`,
      );
    }
    const existing = this.#topics.get(name);
    if (existing && existing.info.partitions >= config.partitions) {
      if (
        existing.info.retentionMs !== config.retentionMs ||
        existing.info.retentionBytes !== config.retentionBytes
      ) {
        this.#db
          .prepare('update topics set retention_ms = ?, retention_bytes = ? where id = ?')
          .run(config.retentionMs ?? null, config.retentionBytes ?? null, existing.id);
        const updated = this.#loadTopic({
          id: existing.id,
          name,
          partitions: existing.info.partitions,
          retention_ms: config.retentionMs ?? null,
          retention_bytes: config.retentionBytes ?? null,
        });
        this.#topics.set(name, updated);
        return updated.info;
      }
      return existing.info;
    }
    const { id, partitions, retention } = inTransaction(this.#db, () => {
      // Read under the write lock: another process may have created the topic since this one opened the log.
      const stored = this.#db
        .prepare('select id, partitions, retention_ms, retention_bytes from topics where name = ?')
        .get(name) as
        | { id: number; partitions: number; retention_ms: number | null; retention_bytes: number | null }
        | undefined;
      const partitions = Math.max(config.partitions, stored?.partitions ?? 0);
      // A call that says no retention, on a topic another process created meanwhile, keeps that creator's
      // (a pipeline that creates the topic it reads if absent must not undo its source's retention).
      const keepStored =
        stored !== undefined && config.retentionMs === undefined && config.retentionBytes === undefined;
      const retention = {
        retention_ms: keepStored ? stored.retention_ms : (config.retentionMs ?? null),
        retention_bytes: keepStored ? stored.retention_bytes : (config.retentionBytes ?? null),
      };
      let id = stored?.id;
      if (id === undefined) {
        const result = this.#db
          .prepare('insert into topics (name, partitions, retention_ms, retention_bytes) values (?, ?, ?, ?)')
          .run(name, partitions, retention.retention_ms, retention.retention_bytes);
        id = Number(result.lastInsertRowid);
      } else {
        this.#db
          .prepare('update topics set partitions = ?, retention_ms = ?, retention_bytes = ? where id = ?')
          .run(partitions, retention.retention_ms, retention.retention_bytes, id);
      }
      const addPartition = this.#db.prepare(
        'insert or ignore into partitions (topic_id, partition) values (?, ?)',
      );
      for (let p = 0; p < partitions; p++) addPartition.run(id, p);
      return { id, partitions, retention };
    });
    const state = this.#loadTopic({ id, name, partitions, ...retention });
    this.#topics.set(name, state);
    return state.info;
  }

  async listTopics(): Promise<TopicInfo[]> {
    return [...this.#topics.values()].map((t) => t.info).sort((a, b) => a.name.localeCompare(b.name));
  }

  async describeTopic(name: string): Promise<TopicInfo | undefined> {
    return this.#topics.get(name)?.info;
  }

  #topic(name: string): TopicState {
    const topic = this.#topics.get(name);
    if (!topic) {
      throw new TributaryError('INVALID_INPUT', `topic ${name} does not exist`, {
        hint: 'create it first (pipelines and streams create their topics)',
      });
    }
    return topic;
  }

  async append(topic: string, records: readonly LogRecord[]): Promise<RecordPosition[]> {
    this.#checkOpen();
    const state = this.#topic(topic);
    if (records.length === 0) return [];
    // Encoded now: what the caller does with the records afterwards does not change what is stored.
    const encoded = encodeRecords(records, Date.now());
    const pairs = await new Promise<Float64Array>((resolve, reject) => {
      this.#pending.push({ topic: state, records: encoded, resolve, reject });
      this.#scheduleFlush();
    });
    return positionsOf(pairs);
  }

  /**
   * Appends each item, all in one transaction: they are durable together or fail together (a group larger
   * than a transaction usually takes is still one). An item without records settles with the others — it
   * fails if their transaction does — and one whose topic does not exist fails alone, at once. Returns a
   * promise per item, in their order, of its records' positions as [partition, offset, …].
   */
  appendTogether(
    items: ReadonlyArray<{ readonly topic: string; readonly records: EncodedRecords }>,
  ): Array<Promise<Float64Array>> {
    let transaction: Promise<Float64Array> | undefined;
    const results = items.map(({ topic, records }): Promise<Float64Array> | undefined => {
      let state: TopicState;
      try {
        this.#checkOpen();
        state = this.#topic(topic);
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
      if (records.count === 0) return undefined;
      const withPrevious = transaction !== undefined;
      const appended = new Promise<Float64Array>((resolve, reject) => {
        this.#pending.push({ topic: state, records, resolve, reject, withPrevious });
        this.#scheduleFlush();
      });
      transaction ??= appended;
      return appended;
    });
    const none = new Float64Array(0);
    return results.map(
      (result) => result ?? (transaction ? transaction.then(() => none) : Promise.resolve(none)),
    );
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // setImmediate lets every append issued in this turn of the event loop join the transaction.
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  /** Writes pending appends in one transaction, then resolves them (group commit). */
  #flush(): void {
    if (this.#pending.length === 0) return;
    const batch: PendingAppend[] = [];
    let count = 0;
    while (
      this.#pending.length &&
      (batch.length === 0 ||
        this.#pending[0]!.withPrevious === true ||
        count + this.#pending[0]!.records.count <= MAX_RECORDS_PER_TRANSACTION)
    ) {
      const next = this.#pending.shift()!;
      batch.push(next);
      count += next.records.count;
    }
    const results: Float64Array[] = [];
    const advanced = new Map<TopicState, number[]>();
    const stored = new Map<TopicState, number[]>();
    try {
      // Positions are assigned under the write lock from the stored next offsets, so another process
      // appending to the same topic can never be given the same offsets.
      this.#db.exec('begin immediate');
      // Per topic, the records going to each partition (indexed by partition).
      const perPartition = new Map<TopicState, Array<PartitionGroup | undefined>>();
      for (const append of batch) {
        const topic = append.topic;
        let next = advanced.get(topic);
        let groups = perPartition.get(topic);
        if (!next || !groups) {
          next = [...topic.next];
          for (const row of this.#nextOffsets.all(topic.id) as unknown as NextOffsetRow[])
            next[row.partition] = row.next_offset;
          advanced.set(topic, next);
          stored.set(topic, [...next]);
          groups = [];
          perPartition.set(topic, groups);
        }
        const records = append.records;
        const pairs = new Float64Array(2 * records.count);
        const batchPartition = topic.roundRobin++ % topic.info.partitions;
        const groupOf = (partition: number): PartitionGroup =>
          (groups[partition] ??= {
            partition,
            base: next[partition]!,
            count: 0,
            parts: [],
            maxTimestamp: 0,
            valueBytes: 0,
          });
        if (!records.keyed) {
          // All of them to one partition, as they are.
          const group = groupOf(batchPartition);
          const base = next[batchPartition]!;
          next[batchPartition] = base + records.count;
          group.count += records.count;
          group.parts.push(records.bytes);
          group.maxTimestamp = Math.max(group.maxTimestamp, records.maxTimestamp);
          group.valueBytes += records.valueBytes;
          for (let i = 0; i < records.count; i++) {
            pairs[2 * i] = batchPartition;
            pairs[2 * i + 1] = base + i;
          }
        } else this.#scatter(records, topic.info.partitions, batchPartition, next, groupOf, pairs);
        results.push(pairs);
      }
      for (const [topic, partitionGroups] of perPartition) {
        const groups = partitionGroups.filter((group) => group !== undefined);
        const payloads = groups.map((group) => batchOf(group.parts, group.count));
        const { segment, positions } = this.#writeSegment(topic, payloads);
        groups.forEach((group, i) => {
          const payload = payloads[i]!;
          this.#insert.run(
            topic.id,
            group.partition,
            group.base,
            group.base + group.count,
            group.maxTimestamp,
            group.valueBytes,
            segment,
            positions[i]!,
            payload.byteLength,
            crc32(payload),
          );
        });
      }
      for (const [topic, next] of advanced) {
        next.forEach((offset, partition) => {
          if (offset !== stored.get(topic)![partition]) this.#advance.run(offset, topic.id, partition);
        });
      }
      this.#db.exec('commit');
    } catch (cause) {
      try {
        this.#db.exec('rollback');
      } catch {
        // the transaction may not have started
      }
      const error = new TributaryError(
        'STORAGE_IO',
        `appending to the embedded log failed: ${(cause as Error).message}`,
        { cause, retryable: true },
      );
      for (const append of batch) append.reject(error);
      if (this.#pending.length) this.#scheduleFlush();
      return;
    }
    for (const [topic, next] of advanced)
      next.forEach((offset, partition) => (topic.next[partition] = offset));
    batch.forEach((append, i) => append.resolve(results[i]!));
    for (const topic of advanced.keys()) this.#appended.emit(topic.info.name);
    if (this.#pending.length) this.#scheduleFlush();
  }

  /**
   * Puts records that have keys each in its key's partition (the others in `batchPartition`), taking
   * offsets from `next`, and their positions into `pairs`. Runs of records going to one partition stay
   * one part of its batch.
   */
  #scatter(
    records: EncodedRecords,
    partitions: number,
    batchPartition: number,
    next: number[],
    groupOf: (partition: number) => PartitionGroup,
    pairs: Float64Array,
  ): void {
    const bytes = records.bytes;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let runStart = 0;
    let runGroup: PartitionGroup | undefined;
    let at = 0;
    for (let i = 0; i < records.count; i++) {
      readRecord(view, at);
      const { timestamp, keyAt, keyLength, valueLength, end } = recordRead;
      const partition =
        keyLength < 0
          ? batchPartition
          : partitionForKeyBytes(bytes.subarray(keyAt, keyAt + keyLength), partitions);
      const group = groupOf(partition);
      if (group !== runGroup) {
        if (runGroup) runGroup.parts.push(bytes.subarray(runStart, at));
        runGroup = group;
        runStart = at;
      }
      const offset = next[partition]!;
      next[partition] = offset + 1;
      group.count++;
      group.maxTimestamp = Math.max(group.maxTimestamp, timestamp);
      group.valueBytes += valueLength;
      pairs[2 * i] = partition;
      pairs[2 * i + 1] = offset;
      at = end;
    }
    if (runGroup) runGroup.parts.push(bytes.subarray(runStart, at));
  }

  /**
   * Writes a topic's new batches to the end of its last segment file (or a new one, when they would take
   * it past the segment size), on disk before the transaction commits; returns where each batch begins.
   * Under the write lock: where the segment ends is read from SQLite, so that another process's commits
   * are appended after, and bytes a failed transaction left there are overwritten.
   */
  #writeSegment(
    topic: TopicState,
    payloads: readonly Uint8Array[],
    sync = this.#sync,
  ): { segment: number; positions: number[] } {
    const bytes = payloads.reduce((n, payload) => n + payload.byteLength, 0);
    let last = this.#lastSegment.get(topic.id) as { id: number; end_position: number } | undefined;
    if (!last || (last.end_position > 0 && last.end_position + bytes > this.#segmentBytes)) {
      last = { id: (last?.id ?? 0) + 1, end_position: 0 };
      this.#addSegment.run(topic.id, last.id);
      this.#segments.create(topic.id, last.id, sync);
    }
    this.#segments.write(topic.id, last.id, last.end_position, payloads, sync);
    let position = last.end_position;
    const positions = payloads.map((payload) => (position += payload.byteLength) - payload.byteLength);
    // A synced write syncs what the file held before it too.
    this.#fillSegment.run(position, sync ? 1 : 0, payloads.length, bytes, topic.id, last.id);
    return { segment: last.id, positions };
  }

  #syncSegmentsOrStop(): void {
    if (this.#syncStopped) return;
    try {
      this.#syncSegments();
    } catch {
      // the database was busy or failing: tried again in a second
    }
  }

  /**
   * Durability 'os': puts what the segments were written since the last time on disk, then says so in
   * a commit synced with every commit before it — after the machine stops, the log has lost at most what
   * came after, and only that needs checking (`#repairUnsynced`).
   */
  #syncSegments(): void {
    const pending = this.#unsyncedSegments();
    let synced: typeof pending;
    try {
      // A segment marked for the first time: its name too (the process that made it may have stopped).
      synced = pending.filter((segment) =>
        this.#segments.sync(segment.topic_id, segment.id, segment.synced_position === 0),
      );
      if (synced.length) this.#segments.syncFolders();
    } catch (error) {
      // After a failed fsync the kernel may have dropped the pages it could not write, and a later one
      // succeed without them: nothing is marked on disk again until the log is opened anew (which checks
      // everything after the last mark).
      this.#syncStopped = true;
      process.emitWarning(
        `the embedded log could not sync its segment files, and stops trying until it is opened again: ${(error as Error).message}`,
        { code: 'TRIBUTARY_LOG_SYNC' },
      );
      return;
    }
    if (synced.length === 0) return;
    const mark = this.#db.prepare(
      'update segments set synced_position = max(synced_position, ?) where topic_id = ? and id = ?',
    );
    this.#synchronously(() =>
      inTransaction(this.#db, () => {
        for (const segment of synced) mark.run(segment.end_position, segment.topic_id, segment.id);
      }),
    );
  }

  /** The segments written past what is known to be on disk. */
  #unsyncedSegments(): Array<{
    topic_id: number;
    id: number;
    end_position: number;
    synced_position: number;
  }> {
    return this.#db
      .prepare(
        'select topic_id, id, end_position, synced_position from segments where synced_position < end_position',
      )
      .all() as unknown as Array<{
      topic_id: number;
      id: number;
      end_position: number;
      synced_position: number;
    }>;
  }

  /**
   * After the machine stopped, a log with durability 'os' may hold commits whose batches never reached
   * the disk (the database and the segment files are written back independently). Checks every batch
   * past what was known to be on disk and, in a partition where one is damaged or gone, removes it and
   * every batch after it. The partition's next offset stays where it was: the offsets removed are never
   * given to other records (a consumer group may have committed past them; reads step over the gap).
   * With durability 'fsync' there is nothing to check.
   */
  #repairUnsynced(): void {
    if (this.#unsyncedSegments().length === 0) return;
    const cuts = inTransaction(this.#db, () => {
      const segments = this.#unsyncedSegments();
      const damaged = new Map<string, { topic: number; partition: number; from: number }>();
      for (const segment of segments) {
        const rows = this.#db
          .prepare(
            'select partition, base_offset, position, length, checksum from batches where topic_id = ? and segment = ? and position + length > ?',
          )
          .all(segment.topic_id, segment.id, segment.synced_position) as unknown as Array<{
          partition: number;
          base_offset: number;
          position: number;
          length: number;
          checksum: number | null;
        }>;
        for (const row of rows) {
          const bytes = this.#segments.read(segment.topic_id, segment.id, row.position, row.length);
          const key = `${segment.topic_id}:${row.partition}`;
          if (
            !(bytes && isWhole(bytes, row.length, row.checksum)) &&
            (damaged.get(key)?.from ?? Infinity) > row.base_offset
          )
            damaged.set(key, { topic: segment.topic_id, partition: row.partition, from: row.base_offset });
        }
      }
      for (const cut of damaged.values()) {
        const deleted = this.#db
          .prepare(
            'delete from batches where topic_id = ? and partition = ? and base_offset >= ? returning segment, length',
          )
          .all(cut.topic, cut.partition, cut.from) as unknown as Array<{
          segment: number | null;
          length: number | null;
        }>;
        this.#releaseBatches(cut.topic, deleted);
      }
      const mark = this.#db.prepare(
        'update segments set synced_position = end_position where topic_id = ? and id = ?',
      );
      for (const segment of segments)
        if (this.#segments.sync(segment.topic_id, segment.id, segment.synced_position === 0))
          mark.run(segment.topic_id, segment.id);
      return [...damaged.values()];
    });
    for (const cut of cuts) {
      process.emitWarning(
        `the embedded log lost the records of partition ${cut.partition} of topic ${cut.topic} (its id) from offset ${cut.from}: the machine stopped before they were on disk (log.durability "os"). Their offsets stay unused.`,
        { code: 'TRIBUTARY_LOG_REPAIRED' },
      );
    }
  }

  async read(
    topic: string,
    partition: number,
    fromOffset: number,
    options: ReadOptions = {},
  ): Promise<StoredRecord[]> {
    this.#checkOpen();
    const state = this.#topic(topic);
    if (!Number.isInteger(partition) || partition < 0 || partition >= state.info.partitions) {
      throw new TributaryError('INVALID_INPUT', `topic ${topic} has no partition ${partition}`);
    }
    const from = Math.max(fromOffset, state.start[partition] ?? 0);
    if (from >= (state.next[partition] ?? 0) && options.waitMs)
      await this.#waitForAppend(topic, state, partition, from, options.waitMs, options.signal);
    // Retention (in another process) may delete a segment file, or move its batches, between the query
    // and the file's read: the read is then made again, on what the index says now.
    for (let attempt = 1; ; attempt++) {
      const records = this.#readBatches(topic, state, partition, from, options);
      if (records) return records;
      if (attempt === READ_ATTEMPTS) {
        throw new TributaryError(
          'STORAGE_IO',
          `a segment file of topic ${topic} is missing from the embedded log`,
          {
            hint: 'if it stays missing, something other than Tributary changed the log directory: restore it from a backup',
            retryable: true,
          },
        );
      }
    }
  }

  /** A batch's bytes from its segment file, checked; undefined when the file is not there. */
  #segmentPayload(
    topic: string,
    partition: number,
    state: TopicState,
    row: BatchRow,
  ): Uint8Array | undefined {
    const bytes = this.#segments.read(state.id, row.segment!, row.position!, row.length!);
    if (bytes && !isWhole(bytes, row.length!, row.checksum)) {
      throw new TributaryError(
        'STORAGE_IO',
        `the record batch at offset ${row.base_offset} of topic ${topic}, partition ${partition}, is damaged on disk (${bytes.byteLength === row.length ? 'its checksum does not match' : 'its segment file ends before it'})`,
        {
          hint: 'with log.durability "os" a machine that stopped can lose the last writes; otherwise the disk or something other than Tributary changed the file. Restore the log directory from a backup',
        },
      );
    }
    return bytes;
  }

  /** Undefined when a segment file named by the batches read is not there. */
  #readBatches(
    topic: string,
    state: TopicState,
    partition: number,
    from: number,
    options: ReadOptions,
  ): StoredRecord[] | undefined {
    const maxRecords = options.maxRecords ?? 1000;
    const records: StoredRecord[] = [];
    let bytes = 0;
    const key = `${state.id}:${partition}`;
    const recent = this.#recent.get(key);
    const cached = recent?.payload.deref();
    let last: { base: number; payload: Uint8Array } | undefined;
    // Batches hold many records: step through them one row at a time (a row can be megabytes) and stop
    // as soon as enough records are gathered, so a read never copies batches it does not return.
    rows: for (const row of this.#select.iterate(
      cached ? recent!.base : -1,
      state.id,
      partition,
      from,
    ) as Iterable<BatchRow>) {
      const payload =
        cached && row.base_offset === recent!.base
          ? cached
          : row.segment === null
            ? row.payload!
            : this.#segmentPayload(topic, partition, state, row);
      if (!payload) return undefined;
      last = { base: row.base_offset, payload };
      const decoded = decodeBatch(
        payload,
        topic,
        partition,
        row.base_offset,
        from,
        maxRecords - records.length,
      );
      for (const record of decoded) {
        if (
          options.maxBytes !== undefined &&
          records.length > 0 &&
          bytes + record.value.length > options.maxBytes
        ) {
          break rows;
        }
        bytes += record.value.length;
        records.push(record);
      }
      if (records.length >= maxRecords) break;
    }
    if (last) this.#recent.set(key, { base: last.base, payload: new WeakRef(last.payload) });
    return records;
  }

  async #waitForAppend(
    name: string,
    state: TopicState,
    partition: number,
    from: number,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<void> {
    const deadline = Date.now() + waitMs;
    while (
      from >= (state.next[partition] ?? 0) &&
      Date.now() < deadline &&
      !signal?.aborted &&
      !this.#closed
    ) {
      const controller = new AbortController();
      const onAbort = () => controller.abort();
      signal?.addEventListener('abort', onAbort, { once: true });
      const woken = new Promise<void>((resolve) => {
        const listener = () => resolve();
        this.#appended.once(name, listener);
        controller.signal.addEventListener('abort', () => this.#appended.off(name, listener), { once: true });
      });
      await Promise.race([
        woken,
        sleep(Math.max(0, deadline - Date.now()), undefined, { signal: controller.signal }).catch(
          () => undefined,
        ),
      ]);
      controller.abort();
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async offsets(topic: string): Promise<PartitionOffsets[]> {
    const state = this.#topic(topic);
    // As stored: other processes may append to the topic, or remove from it.
    for (const row of this.#db
      .prepare('select partition, start_offset, next_offset from partitions where topic_id = ?')
      .all(state.id) as unknown as Array<{ partition: number; start_offset: number; next_offset: number }>) {
      state.start[row.partition] = Math.max(state.start[row.partition] ?? 0, row.start_offset);
      state.next[row.partition] = Math.max(state.next[row.partition] ?? 0, row.next_offset);
    }
    return state.next.map((end, partition) => ({ partition, start: state.start[partition] ?? 0, end }));
  }

  async committedOffsets(group: string, topic: string): Promise<Map<number, number>> {
    const state = this.#topic(topic);
    const rows = this.#db
      .prepare('select partition, offset from group_offsets where group_name = ? and topic_id = ?')
      .all(group, state.id) as unknown as Array<{ partition: number; offset: number }>;
    return new Map(rows.map((r) => [r.partition, r.offset]));
  }

  async commitOffsets(group: string, topic: string, offsets: ReadonlyMap<number, number>): Promise<void> {
    this.#checkOpen();
    const state = this.#topic(topic);
    const upsert = this.#db.prepare(
      'insert into group_offsets (group_name, topic_id, partition, offset) values (?, ?, ?, ?) on conflict do update set offset = excluded.offset',
    );
    inTransaction(this.#db, () => {
      for (const [partition, offset] of offsets) upsert.run(group, state.id, partition, offset);
    });
  }

  async enforceRetention(): Promise<number> {
    if (this.#closed) return 0;
    let removed = 0;
    let failure: Error | undefined;
    for (const topic of this.#topics.values()) {
      const { retentionMs, retentionBytes } = topic.info;
      if (retentionMs === undefined && retentionBytes === undefined) continue;
      // One topic's failure (a damaged file, say) does not stop the others'.
      try {
        removed += this.#retain(topic, retentionMs, retentionBytes);
      } catch (error) {
        failure ??= error instanceof Error ? error : new Error(String(error));
      }
    }
    // Descriptors this process holds on files another process deleted would keep their disk in use.
    const live = this.#db.prepare('select topic_id, id from segments').all() as unknown as Array<{
      topic_id: number;
      id: number;
    }>;
    this.#segments.closeAllBut(live.map((row) => [row.topic_id, row.id]));
    if (failure !== undefined) throw failure;
    return removed;
  }

  /** A topic's retention: removes what is past it, then gives the disk back; how many batches went. */
  #retain(topic: TopicState, retentionMs: number | undefined, retentionBytes: number | undefined): number {
    let removed = 0;
    for (let partition = 0; partition < topic.info.partitions; partition++) {
      // As stored: another process may have appended, or removed, since this one last looked.
      const stored = this.#db
        .prepare('select start_offset, next_offset from partitions where topic_id = ? and partition = ?')
        .get(topic.id, partition) as { start_offset: number; next_offset: number } | undefined;
      const start = Math.max(topic.start[partition] ?? 0, stored?.start_offset ?? 0);
      let newStart = start;
      const end = Math.max(topic.next[partition] ?? 0, stored?.next_offset ?? 0);
      if (retentionMs !== undefined) {
        // The first batch holding a record young enough; everything before it goes.
        const row = this.#db
          .prepare(
            'select min(base_offset) as first from batches where topic_id = ? and partition = ? and max_timestamp >= ?',
          )
          .get(topic.id, partition, Date.now() - retentionMs) as { first: number | null };
        newStart = Math.max(newStart, row.first ?? end);
      }
      if (retentionBytes !== undefined) {
        // Keep the newest batches whose values fit in retentionBytes.
        const row = this.#db
          .prepare(
            `select min(base_offset) as first from (select base_offset, sum(bytes) over (order by base_offset desc) as total
                 from batches where topic_id = ? and partition = ?) where total <= ?`,
          )
          .get(topic.id, partition, retentionBytes) as { first: number | null };
        newStart = Math.max(newStart, row.first ?? end);
      }
      topic.start[partition] = start;
      if (newStart <= start) continue;
      removed += inTransaction(this.#db, () => {
        const deleted = this.#db
          .prepare(
            'delete from batches where topic_id = ? and partition = ? and base_offset < ? returning segment, length',
          )
          .all(topic.id, partition, newStart) as unknown as Array<{
          segment: number | null;
          length: number | null;
        }>;
        this.#releaseBatches(topic.id, deleted);
        this.#db
          .prepare(
            'update partitions set start_offset = max(start_offset, ?) where topic_id = ? and partition = ?',
          )
          .run(newStart, topic.id, partition);
        return deleted.length;
      });
      topic.start[partition] = newStart;
    }
    this.#compactSegments(topic);
    return removed;
  }

  /** Takes batches deleted from the index off their segments' counts. */
  #releaseBatches(
    topic: number,
    deleted: ReadonlyArray<{ segment: number | null; length: number | null }>,
  ): void {
    const perSegment = new Map<number, { batches: number; bytes: number }>();
    for (const { segment, length } of deleted) {
      if (segment === null) continue;
      const counts = perSegment.get(segment) ?? { batches: 0, bytes: 0 };
      counts.batches++;
      counts.bytes += length ?? 0;
      perSegment.set(segment, counts);
    }
    const release = this.#db.prepare(
      'update segments set batches = batches - ?, live_bytes = live_bytes - ? where topic_id = ? and id = ?',
    );
    for (const [segment, { batches, bytes }] of perSegment) release.run(batches, bytes, topic, segment);
  }

  /**
   * Gives a topic's disk back: deletes the segment files that hold no batch any more, except the last
   * (appends go on in it), and files a crash left behind between such a delete's commit and the files'
   * removal. A file whose batches are nearly all gone is emptied first, its last batches copied to the end
   * of the last file: retention by size is per partition, and the few batches of a quiet partition would
   * otherwise keep the files they share with a busy one forever.
   */
  #compactSegments(topic: TopicState): void {
    // Files are deleted after this commit: it must be on disk first, whatever the durability (else a
    // machine that stopped could bring back batches in deleted files).
    this.#synchronously(() => this.#compactSegmentsDurably(topic));
  }

  /** Runs `work` with its commits on disk when they return, whatever the durability. */
  #synchronously(work: () => void): void {
    if (this.#sync) return work();
    this.#db.exec('pragma synchronous = full');
    try {
      work();
    } finally {
      this.#db.exec('pragma synchronous = normal');
    }
  }

  #compactSegmentsDurably(topic: TopicState): void {
    const { kept, last } = inTransaction(this.#db, () => {
      const last = (this.#lastSegment.get(topic.id) as { id: number } | undefined)?.id ?? 0;
      const sparse = this.#db
        .prepare(
          `select id, live_bytes from segments where topic_id = ? and id < ? and batches > 0 and live_bytes * ? < end_position
           order by live_bytes`,
        )
        .all(topic.id, last, SPARSE_SEGMENT) as unknown as Array<{ id: number; live_bytes: number }>;
      let budget = this.#segmentBytes / SPARSE_SEGMENT;
      const emptied = sparse
        .filter((segment) => (budget -= Math.max(0, segment.live_bytes)) >= 0)
        .map((segment) => segment.id);
      if (emptied.length) this.#moveBatches(topic, emptied);
      this.#db
        .prepare('delete from segments where topic_id = ? and batches = 0 and id < ?')
        .run(topic.id, last);
      const kept = new Set(
        (
          this.#db.prepare('select id from segments where topic_id = ?').all(topic.id) as unknown as Array<{
            id: number;
          }>
        ).map((row) => row.id),
      );
      return { kept, last };
    });
    // Files past the last are not touched: another process may be creating the next one.
    this.#segments.removeAllBut(topic.id, kept, last);
  }

  /**
   * Copies the batches of `segments` to the end of the topic's last segment (in its transaction). A
   * segment with a batch that cannot be read whole stays as it is (its reads report the damage).
   */
  #moveBatches(topic: TopicState, segments: readonly number[]): void {
    const rows = this.#db
      .prepare(
        `select partition, base_offset, segment, position, length, checksum from batches
         where topic_id = ? and segment in (${segments.map(() => '?').join(', ')})`,
      )
      .all(topic.id, ...segments) as unknown as Array<BatchRow & { partition: number }>;
    const payloads = new Map<BatchRow, Uint8Array>();
    const unreadable = new Set<number>();
    for (const row of rows) {
      try {
        const payload = this.#segmentPayload(topic.info.name, row.partition, topic, row);
        if (payload) payloads.set(row, payload);
        else unreadable.add(row.segment!);
      } catch {
        unreadable.add(row.segment!);
      }
    }
    const moving = rows.filter((row) => !unreadable.has(row.segment!));
    if (moving.length === 0) return;
    // On disk before the commit points to them, whatever the durability: their first copies go after it.
    const { segment, positions } = this.#writeSegment(
      topic,
      moving.map((row) => payloads.get(row)!),
      true,
    );
    const move = this.#db.prepare(
      'update batches set segment = ?, position = ? where topic_id = ? and partition = ? and base_offset = ?',
    );
    moving.forEach((row, i) => move.run(segment, positions[i]!, topic.id, row.partition, row.base_offset));
    const release = this.#db.prepare(
      'update segments set batches = 0, live_bytes = 0 where topic_id = ? and id = ?',
    );
    for (const id of segments) if (!unreadable.has(id)) release.run(topic.id, id);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // Let appends already accepted finish before closing.
    while (this.#pending.length) this.#flush();
    // A clean close leaves nothing for `#repairUnsynced` to check.
    if (!this.#sync) this.#syncSegmentsOrStop();
    this.#closed = true;
    if (this.#retentionTimer) clearInterval(this.#retentionTimer);
    if (this.#syncTimer) clearInterval(this.#syncTimer);
    this.#appended.emit('close');
    this.#db.close();
    this.#segments.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw new TributaryError('STORAGE_IO', 'the embedded log is closed');
  }
}

interface TopicRow {
  id: number;
  name: string;
  partitions: number;
  retention_ms: number | null;
  retention_bytes: number | null;
}

interface NextOffsetRow {
  partition: number;
  next_offset: number;
}

interface BatchRow {
  base_offset: number;
  /** Null for a batch stored in the payload column. */
  segment: number | null;
  position: number | null;
  length: number | null;
  /** CRC-32 of the batch in its segment file (null in the payload column). */
  checksum: number | null;
  /** Null for a batch in a segment file, and for the batch whose payload the read already holds. */
  payload: Uint8Array | null;
}

/**
 * Brings a log of an earlier format up to `LOG_FORMAT` (SQLite's user_version): a log written before
 * segment files gains the columns that say where a batch is. A log of a later format is refused.
 */
function upgradeFormat(db: DatabaseSync, directory: string): void {
  if (formatOf(db) === LOG_FORMAT) return;
  inTransaction(db, () => {
    // Again under the write lock: another process opening the log may have upgraded it.
    refuseLaterFormat(db, directory);
    if (formatOf(db) < LOG_FORMAT) {
      addMissingColumns(db, 'batches', ['segment', 'position', 'length', 'checksum']);
      const added = addMissingColumns(db, 'segments', [
        'live_bytes integer not null default 0',
        'synced_position integer not null default 0',
      ]);
      // Segment tables from before these columns (a development version): what their batches hold, and
      // synced (that version synced every write, or never checked).
      if (added.has('live_bytes')) {
        db.exec(`update segments set live_bytes = (select coalesce(sum(length), 0) from batches
          where batches.topic_id = segments.topic_id and batches.segment = segments.id)`);
      }
      if (added.has('synced_position')) db.exec('update segments set synced_position = end_position');
      db.exec(`pragma user_version = ${LOG_FORMAT}`);
    }
  });
}

/** Runs `work` holding the write lock (`begin immediate`); commits when it returns, rolls back when it throws. */
function inTransaction<T>(db: DatabaseSync, work: () => T): T {
  db.exec('begin immediate');
  try {
    const result = work();
    db.exec('commit');
    return result;
  } catch (error) {
    db.exec('rollback');
    throw error;
  }
}

/** Whether a batch read from its segment file is all there, with the checksum it was written with. */
function isWhole(bytes: Uint8Array, length: number, checksum: number | null): boolean {
  return bytes.byteLength === length && (checksum === null || crc32(bytes) === checksum);
}

function formatOf(db: DatabaseSync): number {
  return (db.prepare('pragma user_version').get() as { user_version: number }).user_version;
}

function refuseLaterFormat(db: DatabaseSync, directory: string): void {
  const found = formatOf(db);
  if (found <= LOG_FORMAT) return;
  throw new TributaryError(
    'STORAGE_IO',
    `the embedded log in ${directory} was written by a newer Tributary (log format ${found}; this one reads up to ${LOG_FORMAT})`,
    { hint: 'run the release that wrote it, or a later one' },
  );
}

/** Adds each column (`name` with an optional definition; integer without one) the table lacks; their names. */
function addMissingColumns(db: DatabaseSync, table: string, columns: readonly string[]): Set<string> {
  const added = new Set<string>();
  const present = new Set(
    (db.prepare(`pragma table_info(${table})`).all() as unknown as Array<{ name: string }>).map(
      (c) => c.name,
    ),
  );
  for (const column of columns) {
    const [name] = column.split(' ');
    if (present.has(name!)) continue;
    db.exec(`alter table ${table} add column ${column.includes(' ') ? column : `${name} integer`}`);
    added.add(name!);
  }
  return added;
}
