/**
 * The log on Apache Kafka (or Redpanda, or anything speaking Kafka's protocol), through the pure-JavaScript
 * client @platformatic/kafka. A topic is a Kafka topic, a consumer group's offsets are Kafka's committed
 * offsets of that group: tools made for Kafka see what Tributary writes.
 *
 * Durability (invariant 1 of log.ts): appends go through an idempotent producer with acks=all, so an
 * acknowledged record is on every in-sync replica and a retried produce is never written twice. Appends
 * are group-committed as on the embedded log: those issued in one turn of the event loop share one produce
 * request, and while a few requests are in flight later appends wait and share the next.
 *
 * Placement is the embedded log's, so that both agree: a keyed record goes to `partitionForKey` (Kafka's
 * own default partitioner), and the records without a key of one append go together to one partition,
 * the next append's to the next partition (round robin).
 *
 * Retention is the broker's: `ensureTopic` sets the topic's retention.ms and retention.bytes (-1 for
 * "forever", as the embedded log keeps records without retention), Kafka removes whole segments past
 * them on its own schedule, and `enforceRetention` has nothing to do.
 */
import type { ConnectionOptions as TlsOptions } from 'node:tls';
import {
  Admin,
  Consumer,
  findErrorBy,
  Producer,
  type ConnectionOptions,
  type MessageToProduce,
} from '@platformatic/kafka';
import { TributaryError } from '../errors.ts';
import {
  partitionForKey,
  type Log,
  type LogRecord,
  type PartitionOffsets,
  type ReadOptions,
  type RecordPosition,
  type StoredRecord,
  type TopicConfig,
  type TopicInfo,
} from './log.ts';

export interface KafkaLogOptions {
  /** host:port of one or more brokers; the client learns the others from them. */
  readonly brokers: readonly string[];
  readonly clientId?: string;
  /**
   * Put before every topic and consumer group name on the cluster (and taken off the names the log
   * reports), so that several projects can share a cluster without seeing each other's topics.
   */
  readonly prefix?: string;
  /** Replicas of a topic the log creates; default: the broker's default.replication.factor. */
  readonly replicationFactor?: number;
  /** TLS to the brokers: true for the system's certificate authorities, or node:tls options. */
  readonly tls?: boolean | TlsOptions;
  readonly sasl?: {
    readonly mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512';
    readonly username: string;
    readonly password: string;
  };
  /** How long a request may take before it fails (default 30 s; a read waiting for records adds its wait). */
  readonly timeoutMs?: number;
}

const TOPIC_NAME = /^[A-Za-z0-9._-]{1,200}$/;
/** Kafka's own limit on topic names. */
const KAFKA_TOPIC_NAME_LENGTH = 249;
/** Produce requests in flight at once; Kafka keeps an idempotent producer's order with up to 5. */
const MAX_IN_FLIGHT = 4;
/**
 * Bytes of values one produce request carries at most: a partition's batch must stay under the broker's
 * message.max.bytes (1 MiB by default). A larger append is split over several requests.
 */
const REQUEST_BYTES = 512 * 1024;
/** See `#flush`: records of a batch whose timestamps are further apart go in separate requests. */
const MAX_TIMESTAMP_DELTA = 2 ** 31;
/** Consumers reading at once; a read beyond them waits for one to be free. */
const MAX_READERS = 8;
/** How long a topic's partition count and leaders are trusted before being asked for again. */
const METADATA_MAX_AGE_MS = 30_000;
/** Largest fetch of one partition when the caller gives no maxBytes. */
const FETCH_BYTES = 4 * 1024 * 1024;
const CONFIG_RESOURCE_TOPIC = 2;
const CONFIG_SET = 0;
const EARLIEST = -2n;
const LATEST = -1n;
/** A batch's attributes bit of a transaction's control records (commit and abort markers). */
const IS_CONTROL = 0x20;
const READ_UNCOMMITTED = 0;

interface TopicMetadata {
  readonly id: string;
  readonly partitions: number;
  /** Broker id of each partition's leader. */
  readonly leaders: readonly number[];
  readonly at: number;
}

interface PendingAppend {
  readonly topic: string;
  readonly records: readonly LogRecord[];
  readonly positions: RecordPosition[];
  /** Records put into produce requests so far. */
  sent: number;
  /** Produce requests still carrying some of its records. */
  waiting: number;
  failed: boolean;
  readonly resolve: (positions: RecordPosition[]) => void;
  readonly reject: (error: unknown) => void;
}

/** One produce request: its messages, and for each, the append and index it comes from. */
interface Request {
  readonly messages: Array<MessageToProduce<Buffer, Buffer, Buffer, Buffer>>;
  readonly owners: Array<{ readonly append: PendingAppend; readonly index: number }>;
}

type FetchResponse = Awaited<ReturnType<Consumer['fetch']>>;

const utf8 = new TextDecoder();
const EMPTY = new Uint8Array(0);

export class KafkaLog implements Log {
  readonly #options: KafkaLogOptions;
  readonly #prefix: string;
  readonly #admin: Admin;
  readonly #producer: Producer;
  readonly #clientOptions: ConnectionOptions & { clientId: string; bootstrapBrokers: string[] };
  readonly #readers: Consumer[] = [];
  readonly #idleReaders: Consumer[] = [];
  readonly #readerWaiters: Array<(reader: Consumer) => void> = [];
  readonly #metadata = new Map<string, TopicMetadata>();
  readonly #roundRobin = new Map<string, number>();
  readonly #pending: PendingAppend[] = [];
  #inFlight = 0;
  #flushScheduled = false;
  #closed = false;

  private constructor(options: KafkaLogOptions) {
    this.#options = options;
    this.#prefix = options.prefix ?? '';
    const timeout = options.timeoutMs ?? 30_000;
    this.#clientOptions = {
      clientId: options.clientId ?? 'tributary',
      bootstrapBrokers: [...options.brokers],
      connectTimeout: Math.min(timeout, 10_000),
      requestTimeout: timeout,
      ...(options.tls ? { tls: options.tls === true ? {} : options.tls } : {}),
      ...(options.sasl ? { sasl: { ...options.sasl } } : {}),
    };
    const base = { ...this.#clientOptions, timeout, retries: 3, retryDelay: 250, metadataMaxAge: 5_000 };
    this.#admin = new Admin(base);
    this.#producer = new Producer({
      ...base,
      idempotent: true,
      acks: -1,
      autocreateTopics: false,
    });
  }

  /** Connects to the brokers; fails (retryable) when none answers. */
  static async open(options: KafkaLogOptions): Promise<KafkaLog> {
    if (options.brokers.length === 0)
      throw new TributaryError('CONFIG_INVALID', 'the Kafka log needs at least one broker', {
        hint: 'set log.brokers in tributary.yaml, e.g. [kafka-1:9092]',
      });
    const log = new KafkaLog(options);
    try {
      await log.#admin.metadata({ topics: [] });
    } catch (error) {
      await log.close();
      throw log.#error(error, 'connecting to Kafka');
    }
    return log;
  }

  /** Which brokers this log talks to, for messages. */
  get brokers(): string {
    return this.#options.brokers.join(', ');
  }

  async ensureTopic(name: string, config: TopicConfig): Promise<TopicInfo> {
    this.#checkOpen();
    this.#checkName(name);
    if (!Number.isInteger(config.partitions) || config.partitions < 1 || config.partitions > 1024) {
      throw new TributaryError(
        'INVALID_INPUT',
        `topic ${name}: partitions must be a whole number from 1 to 1024`,
      );
    }
    const wanted = retentionConfigs(config);
    let existing = await this.#topicMetadata(name, true).catch((error: unknown) => {
      if (isDoesNotExist(error)) return undefined;
      throw error;
    });
    if (!existing) {
      try {
        await this.#admin.createTopics({
          topics: [this.#full(name)],
          partitions: config.partitions,
          replicas: this.#options.replicationFactor ?? -1,
          configs: wanted,
        });
      } catch (error) {
        // Created meanwhile by another process: then it is an existing topic like any other.
        if (!findError(error, 'TOPIC_ALREADY_EXISTS')) throw this.#error(error, `creating topic ${name}`);
      }
      existing = await this.#awaitTopic(name, config.partitions);
    }
    // As on the embedded log: an existing topic grows to the partitions asked for (never shrinks), and
    // takes the retention asked for.
    if (existing.partitions < config.partitions) {
      try {
        await this.#admin.createPartitions({
          topics: [{ name: this.#full(name), count: config.partitions }],
        });
      } catch (error) {
        if (!findError(error, 'INVALID_PARTITIONS'))
          throw this.#error(error, `adding partitions to topic ${name}`);
      }
      existing = await this.#awaitTopic(name, config.partitions);
    }
    const current = (await this.#retentionOf([name])).get(name) ?? {};
    if (current.retentionMs !== config.retentionMs || current.retentionBytes !== config.retentionBytes) {
      try {
        await this.#admin.incrementalAlterConfigs({
          resources: [
            {
              resourceType: CONFIG_RESOURCE_TOPIC,
              resourceName: this.#full(name),
              configs: wanted.map((c) => ({ ...c, configOperation: CONFIG_SET })),
            },
          ],
        });
      } catch (error) {
        throw this.#error(error, `setting the retention of topic ${name}`);
      }
    }
    return topicInfo(name, existing.partitions, config);
  }

  async listTopics(): Promise<TopicInfo[]> {
    this.#checkOpen();
    let names: string[];
    try {
      names = (await this.#admin.listTopics())
        .filter((full) => full.startsWith(this.#prefix) && TOPIC_NAME.test(full.slice(this.#prefix.length)))
        .map((full) => full.slice(this.#prefix.length));
    } catch (error) {
      throw this.#error(error, 'listing the topics');
    }
    if (names.length === 0) return [];
    const retention = await this.#retentionOf(names);
    const topics: TopicInfo[] = [];
    for (const name of names) {
      // Deleted since it was listed: not there any more.
      const metadata = await this.#topicMetadata(name, true).catch((error: unknown) => {
        if (isDoesNotExist(error)) return undefined;
        throw error;
      });
      if (metadata) topics.push(topicInfo(name, metadata.partitions, retention.get(name) ?? {}));
    }
    return topics.sort((a, b) => a.name.localeCompare(b.name));
  }

  async describeTopic(name: string): Promise<TopicInfo | undefined> {
    this.#checkOpen();
    if (!this.#validName(name)) return undefined;
    const metadata = await this.#topicMetadata(name, true).catch((error: unknown) => {
      if (isDoesNotExist(error)) return undefined;
      throw error;
    });
    if (!metadata) return undefined;
    return topicInfo(name, metadata.partitions, (await this.#retentionOf([name])).get(name) ?? {});
  }

  async append(topic: string, records: readonly LogRecord[]): Promise<RecordPosition[]> {
    this.#checkOpen();
    // The topic must exist (and its partitions be known) before its records are placed.
    const { partitions } = await this.#topicMetadata(topic);
    if (records.length === 0) return [];
    this.#checkOpen();
    const positions = new Array<RecordPosition>(records.length);
    const batchPartition = this.#nextRoundRobin(topic, partitions);
    for (let i = 0; i < records.length; i++) {
      const key = records[i]!.key;
      positions[i] = {
        partition: key === null || key === undefined ? batchPartition : partitionForKey(key, partitions),
        offset: -1,
      };
    }
    return new Promise<RecordPosition[]>((resolve, reject) => {
      this.#pending.push({ topic, records, positions, sent: 0, waiting: 0, failed: false, resolve, reject });
      this.#scheduleFlush();
    });
  }

  #nextRoundRobin(topic: string, partitions: number): number {
    const next = this.#roundRobin.get(topic) ?? 0;
    this.#roundRobin.set(topic, next + 1);
    return next % partitions;
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#inFlight >= MAX_IN_FLIGHT) return;
    this.#flushScheduled = true;
    // setImmediate lets every append issued in this turn of the event loop join the request.
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  /** Sends the pending appends, as few produce requests as their size allows (group commit). */
  #flush(): void {
    while (this.#pending.length && this.#inFlight < MAX_IN_FLIGHT) {
      const request: Request = { messages: [], owners: [] };
      let bytes = 0;
      const now = Date.now();
      /** Per partition of the request, its first record's timestamp. */
      const firstTimestamps = new Map<string, number>();
      // Whole appends while they fit; an append larger than a request alone is split over several.
      while (this.#pending.length) {
        const append = this.#pending[0]!;
        let index = append.sent;
        for (; index < append.records.length; index++) {
          const record = append.records[index]!;
          if (bytes > 0 && bytes + record.value.byteLength > REQUEST_BYTES) break;
          const partition = append.positions[index]!.partition;
          const timestamp = record.timestamp ?? now;
          const batch = `${append.topic}:${partition}`;
          const first = firstTimestamps.get(batch) ?? timestamp;
          // @platformatic/dynamic-buffer 0.3 encodes a record's timestamp delta (from its batch's first
          // record) wrongly beyond ±2^31 ms (its zigzag shifts by 31, not 63): such a record goes into
          // the next request, where it starts a batch.
          if (Math.abs(timestamp - first) >= MAX_TIMESTAMP_DELTA) break;
          firstTimestamps.set(batch, first);
          bytes += record.value.byteLength;
          request.messages.push(this.#message(append.topic, record, partition, timestamp));
          request.owners.push({ append, index });
        }
        if (index > append.sent) append.waiting++;
        append.sent = index;
        if (index < append.records.length) break;
        this.#pending.shift();
      }
      this.#inFlight++;
      void this.#send(request);
    }
  }

  #message(
    topic: string,
    record: LogRecord,
    partition: number,
    timestamp: number,
  ): MessageToProduce<Buffer, Buffer, Buffer, Buffer> {
    const value = record.value;
    const headers = new Map<Buffer, Buffer>();
    for (const [name, text] of Object.entries(record.headers ?? {}))
      headers.set(Buffer.from(name), Buffer.from(text));
    return {
      topic: this.#full(topic),
      partition,
      value: Buffer.from(value.buffer, value.byteOffset, value.byteLength),
      ...(record.key === null || record.key === undefined ? {} : { key: Buffer.from(record.key) }),
      ...(headers.size ? { headers } : {}),
      timestamp: BigInt(timestamp),
    };
  }

  async #send(request: Request): Promise<void> {
    let failure: unknown;
    try {
      const result = await this.#producer.send({ messages: request.messages });
      // One record batch per partition: its base offset plus the record's place in it.
      const base = new Map<string, number>();
      for (const { topic, partition, offset } of result.offsets ?? [])
        base.set(`${topic}:${partition}`, Number(offset));
      const seen = new Map<string, number>();
      request.messages.forEach((message, i) => {
        const key = `${message.topic}:${message.partition!}`;
        const index = seen.get(key) ?? 0;
        seen.set(key, index + 1);
        const first = base.get(key);
        if (first === undefined)
          throw new Error(`the broker did not acknowledge partition ${message.partition!}`);
        const { append, index: at } = request.owners[i]!;
        append.positions[at] = { partition: message.partition!, offset: first + index };
      });
    } catch (error) {
      failure = error;
    } finally {
      this.#inFlight--;
    }
    const done = new Set<PendingAppend>();
    for (const { append } of request.owners) {
      if (done.has(append)) continue;
      done.add(append);
      append.waiting--;
      if (failure !== undefined && !append.failed) {
        append.failed = true;
        append.reject(this.#error(failure, `appending to topic ${append.topic}`));
      }
      if (!append.failed && append.waiting === 0 && append.sent === append.records.length)
        append.resolve(append.positions);
    }
    if (this.#pending.length) this.#scheduleFlush();
  }

  async read(
    topic: string,
    partition: number,
    fromOffset: number,
    options: ReadOptions = {},
  ): Promise<StoredRecord[]> {
    this.#checkOpen();
    let metadata = await this.#topicMetadata(topic);
    if (!Number.isInteger(partition) || partition < 0 || partition >= metadata.partitions) {
      // A partition added by another process since the partitions were last looked at.
      metadata = await this.#topicMetadata(topic, true);
      if (!Number.isInteger(partition) || partition < 0 || partition >= metadata.partitions)
        throw new TributaryError('INVALID_INPUT', `topic ${topic} has no partition ${partition}`);
    }
    const maxRecords = options.maxRecords ?? 1000;
    let waitMs = options.signal?.aborted ? 0 : Math.max(0, options.waitMs ?? 0);
    let from = Math.max(0, fromOffset);
    const read: Fetched = { records: [], bytes: 0, next: from, end: 0, full: false };
    // A fetch answers from one segment file of the partition (and a wait only the first time): fetched
    // again until the read is full or at the end, as a read on the embedded log is.
    for (let attempt = 1; ;) {
      let response: FetchResponse | undefined;
      try {
        response = await this.#fetch(metadata, partition, from, waitMs, options);
      } catch (error) {
        if (findError(error, 'OFFSET_OUT_OF_RANGE') && attempt++ < 3) {
          // Below the start (removed by retention): read from the start. Past the end: nothing yet.
          const [offsets] = await this.#listOffsets(topic, [partition]);
          if (offsets && from < offsets.start) {
            from = offsets.start;
            continue;
          }
          return read.records;
        }
        if (isStaleLeader(error) && attempt++ < 3) {
          metadata = await this.#topicMetadata(topic, true);
          continue;
        }
        throw this.#error(error, `reading topic ${topic}, partition ${partition}`);
      }
      if (!response) return read.records;
      decodeFetch(response, topic, partition, from, maxRecords, options.maxBytes, read);
      if (read.full || read.next <= from || read.next >= read.end || options.signal?.aborted)
        return read.records;
      from = read.next;
      waitMs = 0;
    }
  }

  /** One fetch of one partition from its leader; undefined when the signal aborted the wait. */
  async #fetch(
    metadata: TopicMetadata,
    partition: number,
    from: number,
    waitMs: number,
    options: ReadOptions,
  ): Promise<FetchResponse | undefined> {
    const reader = await this.#reader();
    const partitionBytes =
      options.maxBytes === undefined
        ? FETCH_BYTES
        : Math.min(FETCH_BYTES, Math.max(64 * 1024, options.maxBytes * 2));
    const fetched = reader.fetch({
      node: metadata.leaders[partition]!,
      maxWaitTime: waitMs,
      minBytes: 1,
      maxBytes: partitionBytes,
      isolationLevel: READ_UNCOMMITTED,
      topics: [
        {
          topicId: metadata.id,
          partitions: [
            {
              partition,
              fetchOffset: BigInt(from),
              currentLeaderEpoch: -1,
              lastFetchedEpoch: -1,
              partitionMaxBytes: partitionBytes,
            },
          ],
        },
      ],
    });
    // The reader goes back to the pool only when its request is answered, even when the caller stopped waiting.
    void fetched.then(
      () => this.#releaseReader(reader),
      () => this.#releaseReader(reader),
    );
    const signal = options.signal;
    if (!signal || waitMs === 0) return fetched;
    return new Promise<FetchResponse | undefined>((resolve, reject) => {
      const onAbort = () => resolve(undefined);
      signal.addEventListener('abort', onAbort, { once: true });
      fetched.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  async #reader(): Promise<Consumer> {
    const idle = this.#idleReaders.pop();
    if (idle) return idle;
    if (this.#readers.length < MAX_READERS) {
      // Each read has a consumer to itself: a consumer's fetch session follows one request at a time.
      const reader = new Consumer({
        ...this.#clientOptions,
        groupId: `${this.#prefix}tributary-reader`,
        timeout: this.#clientOptions.requestTimeout,
        retries: 2,
        retryDelay: 250,
      });
      this.#readers.push(reader);
      return reader;
    }
    return new Promise((resolve) => this.#readerWaiters.push(resolve));
  }

  #releaseReader(reader: Consumer): void {
    const waiter = this.#readerWaiters.shift();
    if (waiter) waiter(reader);
    else this.#idleReaders.push(reader);
  }

  async offsets(topic: string): Promise<PartitionOffsets[]> {
    this.#checkOpen();
    const { partitions } = await this.#topicMetadata(topic);
    return this.#listOffsets(
      topic,
      Array.from({ length: partitions }, (_, p) => p),
    );
  }

  async #listOffsets(topic: string, partitions: readonly number[]): Promise<PartitionOffsets[]> {
    const ask = async (timestamp: bigint) => {
      const [listed] = await this.#admin.listOffsets({
        topics: [
          { name: this.#full(topic), partitions: partitions.map((p) => ({ partitionIndex: p, timestamp })) },
        ],
        isolationLevel: READ_UNCOMMITTED,
      });
      return new Map((listed?.partitions ?? []).map((p) => [p.partitionIndex, Number(p.offset)]));
    };
    try {
      const [start, end] = await Promise.all([ask(EARLIEST), ask(LATEST)]);
      return partitions.map((partition) => ({
        partition,
        start: start.get(partition) ?? 0,
        end: end.get(partition) ?? 0,
      }));
    } catch (error) {
      throw this.#error(error, `listing the offsets of topic ${topic}`);
    }
  }

  async committedOffsets(group: string, topic: string): Promise<Map<number, number>> {
    this.#checkOpen();
    const { partitions } = await this.#topicMetadata(topic);
    try {
      const [listed] = await this.#admin.listConsumerGroupOffsets({
        groups: [
          {
            groupId: this.#prefix + group,
            topics: [
              { name: this.#full(topic), partitionIndexes: Array.from({ length: partitions }, (_, p) => p) },
            ],
          },
        ],
      });
      const committed = new Map<number, number>();
      for (const t of listed?.topics ?? []) {
        for (const p of t.partitions)
          if (p.committedOffset >= 0n) committed.set(p.partitionIndex, Number(p.committedOffset));
      }
      return committed;
    } catch (error) {
      throw this.#error(error, `reading the offsets consumer group ${group} committed on topic ${topic}`);
    }
  }

  async commitOffsets(group: string, topic: string, offsets: ReadonlyMap<number, number>): Promise<void> {
    this.#checkOpen();
    await this.#topicMetadata(topic);
    if (offsets.size === 0) return;
    try {
      // Committed as a group without members (generation -1): Tributary's groups never join; Kafka keeps
      // their offsets like any group's.
      await this.#admin.alterConsumerGroupOffsets({
        groupId: this.#prefix + group,
        topics: [
          {
            name: this.#full(topic),
            partitionOffsets: [...offsets].map(([partition, offset]) => ({
              partition,
              offset: BigInt(offset),
            })),
          },
        ],
      });
    } catch (error) {
      throw this.#error(error, `committing the offsets of consumer group ${group} on topic ${topic}`);
    }
  }

  /** Kafka removes records past a topic's retention.ms and retention.bytes itself: nothing to do here. */
  async enforceRetention(): Promise<number> {
    return 0;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closing = new TributaryError('INTERNAL', 'the Kafka log was closed before the append was sent', {
      retryable: true,
    });
    for (const append of this.#pending.splice(0)) append.reject(closing);
    // Appends already sent are waited for by the producer's close; readers are closed at once (a read
    // waiting for records would hold them up to its wait).
    await Promise.allSettled([
      this.#producer.close(),
      this.#admin.close(),
      ...this.#readers.map((reader) => reader.close(true)),
    ]);
  }

  #checkOpen(): void {
    if (this.#closed) throw new TributaryError('INTERNAL', 'the Kafka log is closed');
  }

  #full(name: string): string {
    return this.#prefix + name;
  }

  #validName(name: string): boolean {
    return TOPIC_NAME.test(name) && this.#full(name).length <= KAFKA_TOPIC_NAME_LENGTH;
  }

  #checkName(name: string): void {
    if (!this.#validName(name)) {
      throw new TributaryError('INVALID_INPUT', `"${name}" is not a valid topic name`, {
        hint: 'use letters, digits, ".", "_" and "-" (at most 200 characters)',
      });
    }
  }

  /** The topic's partitions and leaders, from the cache unless stale or `fresh`; fails when it does not exist. */
  async #topicMetadata(name: string, fresh = false): Promise<TopicMetadata> {
    const cached = this.#metadata.get(name);
    if (cached && !fresh && Date.now() - cached.at < METADATA_MAX_AGE_MS) return cached;
    if (!this.#validName(name)) throw doesNotExist(name);
    let metadata;
    try {
      metadata = await this.#admin.metadata({ topics: [this.#full(name)], forceUpdate: true });
    } catch (error) {
      if (isUnknownTopic(error)) {
        this.#metadata.delete(name);
        throw doesNotExist(name);
      }
      throw this.#error(error, `looking up topic ${name}`);
    }
    const topic = metadata.topics.get(this.#full(name));
    if (!topic) throw doesNotExist(name);
    const entry: TopicMetadata = {
      id: topic.id,
      partitions: topic.partitionsCount,
      leaders: topic.partitions.map((p) => p.leader),
      at: Date.now(),
    };
    this.#metadata.set(name, entry);
    return entry;
  }

  /** Waits until the brokers know the topic with at least `partitions` partitions (just created or grown). */
  async #awaitTopic(name: string, partitions: number): Promise<TopicMetadata> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const metadata = await this.#topicMetadata(name, true);
        if (metadata.partitions >= partitions && metadata.leaders.every((leader) => leader >= 0))
          return metadata;
      } catch (error) {
        if (!isDoesNotExist(error)) throw error;
      }
      if (Date.now() > deadline)
        throw new TributaryError(
          'SERVICE_UNAVAILABLE',
          `Kafka did not make topic ${name} ready within 30 s`,
          {
            retryable: true,
            hint: `check the brokers (${this.brokers}) are healthy`,
          },
        );
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** retention.ms and retention.bytes of the topics, as TopicConfig fields (absent when unlimited). */
  async #retentionOf(
    names: readonly string[],
  ): Promise<Map<string, Pick<TopicConfig, 'retentionMs' | 'retentionBytes'>>> {
    let described;
    try {
      described = await this.#admin.describeConfigs({
        resources: names.map((name) => ({
          resourceType: CONFIG_RESOURCE_TOPIC,
          resourceName: this.#full(name),
          configurationKeys: ['retention.ms', 'retention.bytes'],
        })),
      });
    } catch (error) {
      throw this.#error(error, `reading the configuration of topic ${names.join(', ')}`);
    }
    const retention = new Map<string, Pick<TopicConfig, 'retentionMs' | 'retentionBytes'>>();
    for (const resource of described) {
      const value = (key: string) => {
        const text = resource.configs.find((c) => c.name === key)?.value;
        const number = text === null || text === undefined ? -1 : Number(text);
        return number >= 0 ? number : undefined;
      };
      const retentionMs = value('retention.ms');
      const retentionBytes = value('retention.bytes');
      retention.set(resource.resourceName.slice(this.#prefix.length), {
        ...(retentionMs === undefined ? {} : { retentionMs }),
        ...(retentionBytes === undefined ? {} : { retentionBytes }),
      });
    }
    return retention;
  }

  /** A client error as a TributaryError saying what failed, whether to retry, and what to do. */
  #error(error: unknown, doing: string): TributaryError {
    if (error instanceof TributaryError) return error;
    const detail = describe(error);
    const brokers = this.brokers;
    if (
      findCode(error, 'PLT_KFK_AUTHENTICATION') ||
      findError(error, 'SASL_AUTHENTICATION_FAILED') ||
      findError(error, 'ILLEGAL_SASL_STATE') ||
      findError(error, 'UNSUPPORTED_SASL_MECHANISM')
    ) {
      return new TributaryError(
        'SERVICE_UNAVAILABLE',
        `${doing} failed: Kafka refused the credentials (${detail})`,
        {
          cause: error,
          hint: 'check log.sasl (mechanism, username, password) in tributary.yaml against the cluster',
        },
      );
    }
    const denied = [
      'TOPIC_AUTHORIZATION_FAILED',
      'GROUP_AUTHORIZATION_FAILED',
      'CLUSTER_AUTHORIZATION_FAILED',
    ].find((id) => findError(error, id));
    if (denied) {
      return new TributaryError('SERVICE_UNAVAILABLE', `${doing} failed: Kafka denied it (${denied})`, {
        cause: error,
        hint: `grant the Kafka user ${this.#options.sasl?.username ?? '(anonymous)'} the ACLs Tributary needs (docs/deployment.md)`,
      });
    }
    if (findError(error, 'MESSAGE_TOO_LARGE') || findError(error, 'RECORD_LIST_TOO_LARGE')) {
      return new TributaryError(
        'INVALID_INPUT',
        `${doing} failed: a record is larger than the broker accepts`,
        {
          cause: error,
          hint: "raise the topic's max.message.bytes (and the broker's message.max.bytes), or send smaller records",
        },
      );
    }
    if (findError(error, 'INVALID_REPLICATION_FACTOR')) {
      return new TributaryError('CONFIG_INVALID', `${doing} failed: ${detail}`, {
        cause: error,
        hint: 'set log.replication_factor to at most the number of brokers',
      });
    }
    if (findError(error, 'POLICY_VIOLATION') || findError(error, 'INVALID_CONFIG')) {
      return new TributaryError('CONFIG_INVALID', `${doing} failed: the cluster refused it (${detail})`, {
        cause: error,
        hint: "check the topic settings against the cluster's policies",
      });
    }
    if (isUnknownTopic(error)) {
      return new TributaryError('INVALID_INPUT', `${doing} failed: the topic does not exist`, {
        cause: error,
        hint: 'create it first (pipelines and streams create their topics)',
      });
    }
    const unreachable = /connect to any broker|Connection|ECONNREFUSED|ENOTFOUND|EHOSTUNREACH/i.test(detail);
    // Everything else is the network, a broker moving leadership, or a timeout: worth trying again.
    return new TributaryError(
      'SERVICE_UNAVAILABLE',
      unreachable
        ? `${doing} failed: cannot reach the Kafka brokers ${brokers} (${detail})`
        : `${doing} failed: ${detail}`,
      {
        cause: error,
        retryable: true,
        hint: unreachable
          ? 'check that the brokers run and that log.brokers (and log.tls) in tributary.yaml are right'
          : `try again; if it persists, check the brokers (${brokers})`,
      },
    );
  }
}

function topicInfo(
  name: string,
  partitions: number,
  retention: Pick<TopicConfig, 'retentionMs' | 'retentionBytes'>,
): TopicInfo {
  return {
    name,
    partitions,
    ...(retention.retentionMs === undefined ? {} : { retentionMs: retention.retentionMs }),
    ...(retention.retentionBytes === undefined ? {} : { retentionBytes: retention.retentionBytes }),
  };
}

/** The topic configs of `config`'s retention; -1 (no limit) for what it leaves out, as the embedded log keeps records. */
function retentionConfigs(config: TopicConfig): Array<{ name: string; value: string }> {
  return [
    { name: 'retention.ms', value: String(config.retentionMs ?? -1) },
    { name: 'retention.bytes', value: String(config.retentionBytes ?? -1) },
  ];
}

function doesNotExist(name: string): TributaryError {
  return new TributaryError('INVALID_INPUT', `topic ${name} does not exist`, {
    hint: 'create it first (pipelines and streams create their topics)',
  });
}

function isDoesNotExist(error: unknown): boolean {
  return (
    error instanceof TributaryError && error.code === 'INVALID_INPUT' && /does not exist$/.test(error.message)
  );
}

/** The client reports a topic missing from a metadata answer as a UserError "Unknown topic <name>.". */
function isUnknownTopic(error: unknown): boolean {
  return (
    (error instanceof Error && /^Unknown topic /.test(error.message)) ||
    findError(error, 'UNKNOWN_TOPIC_OR_PARTITION') ||
    findError(error, 'UNKNOWN_TOPIC_ID')
  );
}

function isStaleLeader(error: unknown): boolean {
  return [
    'NOT_LEADER_OR_FOLLOWER',
    'LEADER_NOT_AVAILABLE',
    'FENCED_LEADER_EPOCH',
    'UNKNOWN_LEADER_EPOCH',
  ].some((id) => findError(error, id));
}

/** Whether the error, or one it aggregates, is the broker's error `id` (e.g. TOPIC_ALREADY_EXISTS). */
function findError(error: unknown, id: string): boolean {
  return error instanceof Error && findErrorBy(error, 'apiId', id) !== null;
}

function findCode(error: unknown, code: string): boolean {
  return error instanceof Error && findErrorBy(error, 'code', code) !== null;
}

/** The client's message, with the broker errors and causes it wraps. */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const parts = new Set<string>();
  const walk = (e: unknown, depth: number) => {
    if (!(e instanceof Error) || depth > 4) return;
    const id = (e as { apiId?: string }).apiId;
    if (id) parts.add(id);
    else if (!(e instanceof AggregateError) || e.errors.length === 0) parts.add(e.message);
    if (e instanceof AggregateError) for (const inner of e.errors) walk(inner, depth + 1);
    if (e.cause) walk(e.cause, depth + 1);
  };
  walk(error, 0);
  return [...parts].join('; ') || error.message;
}

/** What a read gathered so far, over one or more fetches. */
interface Fetched {
  readonly records: StoredRecord[];
  bytes: number;
  /** The offset after the last batch fetched. */
  next: number;
  /** The partition's high watermark: the end of what can be read. */
  end: number;
  /** maxRecords or maxBytes reached. */
  full: boolean;
}

/** Adds the records of one partition in a fetch answer from `from` on to `read`, within maxRecords and maxBytes. */
function decodeFetch(
  response: FetchResponse,
  topic: string,
  partition: number,
  from: number,
  maxRecords: number,
  maxBytes: number | undefined,
  read: Fetched,
): void {
  const records = read.records;
  for (const answer of response.responses) {
    for (const data of answer.partitions) {
      if (data.partitionIndex !== partition) continue;
      read.end = Math.max(read.end, Number(data.highWatermark));
      for (const batch of data.records ?? []) {
        const base = Number(batch.firstOffset);
        if (batch.attributes & IS_CONTROL) {
          read.next = Math.max(read.next, base + batch.lastOffsetDelta + 1);
          continue;
        }
        for (const record of batch.records) {
          const offset = base + record.offsetDelta;
          // A batch is answered whole: the records before the offset asked for are dropped.
          if (offset < from) continue;
          const value = record.value ?? EMPTY;
          if (
            records.length >= maxRecords ||
            (maxBytes !== undefined && records.length > 0 && read.bytes + value.byteLength > maxBytes)
          ) {
            read.full = true;
            return;
          }
          read.bytes += value.byteLength;
          const headers: Record<string, string> = {};
          for (const [name, text] of record.headers)
            if (name) headers[utf8.decode(name)] = text ? utf8.decode(text) : '';
          records.push({
            topic,
            partition,
            offset,
            timestamp: Number(batch.firstTimestamp + record.timestampDelta),
            key: record.key ? utf8.decode(record.key) : null,
            value,
            headers,
          });
          read.next = offset + 1;
        }
        read.next = Math.max(read.next, base + batch.lastOffsetDelta + 1);
      }
    }
  }
  if (records.length >= maxRecords) read.full = true;
}
