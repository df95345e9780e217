/**
 * The durable log: topics of partitions, each an ordered sequence of records addressed by offset.
 * Sources append to it; pipelines read from it and commit their consumer-group offsets only after their
 * sinks have committed. Embedded (SQLite) on one machine, Kafka when scaled out — one interface, one
 * conformance suite (`log.case.ts`).
 *
 * Contract:
 *  1. `append` resolves only when its records are durable (per the backend's durability setting); it
 *     returns each record's partition and offset. A record acknowledged is never lost, even if the
 *     process is killed right after.
 *  2. Within a partition, offsets are consecutive integers starting at 0, in append order; a record's
 *     offset never changes. Records with the same key go to the same partition.
 *  3. `read` returns records of one partition from an offset, in offset order. Offsets below the
 *     partition's start offset were removed by retention; reading there starts at the start offset.
 *  4. Consumer-group offsets are the next offset to read; committing one is durable when it resolves.
 *  5. Errors are TributaryErrors; `retryable` says whether the same call may succeed later.
 */

export interface LogRecord {
  /** Records with the same key land in the same partition (and so keep their order). */
  readonly key?: string | null;
  readonly value: Uint8Array;
  readonly headers?: Readonly<Record<string, string>>;
  /** Milliseconds since the epoch; default: when appended. */
  readonly timestamp?: number;
}

export interface StoredRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly timestamp: number;
  readonly key: string | null;
  readonly value: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
}

export interface RecordPosition {
  readonly partition: number;
  readonly offset: number;
}

export interface TopicConfig {
  readonly partitions: number;
  /**
   * Records older than this are removed; undefined keeps them forever. Retention removes whole record
   * batches (what one append wrote to a partition), so a few records past it may stay a little longer.
   */
  readonly retentionMs?: number;
  /** Per partition, the oldest records are removed above this many bytes of values. */
  readonly retentionBytes?: number;
}

export interface TopicInfo extends TopicConfig {
  readonly name: string;
}

export interface PartitionOffsets {
  readonly partition: number;
  /** The first offset still stored (after retention). */
  readonly start: number;
  /** The offset the next record will get. */
  readonly end: number;
}

export interface ReadOptions {
  /** At most this many records (default 1000). */
  readonly maxRecords?: number;
  /** Stop after about this many bytes of values (at least one record is returned). */
  readonly maxBytes?: number;
  /** When nothing is there yet, wait up to this long for records to arrive (default 0: return at once). */
  readonly waitMs?: number;
  readonly signal?: AbortSignal;
}

export interface Log {
  /**
   * Creates the topic, or checks an existing one has at least `partitions` partitions, and gives it the
   * retention of `config` (none: kept for ever). A process that asks for no retention on a topic that
   * another process created since this one last looked leaves the creator's retention (embedded log).
   */
  ensureTopic(name: string, config: TopicConfig): Promise<TopicInfo>;
  listTopics(): Promise<TopicInfo[]>;
  describeTopic(name: string): Promise<TopicInfo | undefined>;

  /** Appends the records; resolves with their positions once they are durable. */
  append(topic: string, records: readonly LogRecord[]): Promise<RecordPosition[]>;
  read(topic: string, partition: number, fromOffset: number, options?: ReadOptions): Promise<StoredRecord[]>;
  offsets(topic: string): Promise<PartitionOffsets[]>;

  /** The next offset to read per partition, for a consumer group; partitions never committed are absent. */
  committedOffsets(group: string, topic: string): Promise<Map<number, number>>;
  commitOffsets(group: string, topic: string, offsets: ReadonlyMap<number, number>): Promise<void>;

  /** Removes records past their topic's retention now (backends also do it periodically). */
  enforceRetention(): Promise<number>;
  close(): Promise<void>;
}

const utf8 = new TextEncoder();

/**
 * Kafka's default partitioner for keyed records (murmur2 of the UTF-8 key), so keys keep their partition
 * on Kafka. An ASCII key (nearly always) is its own UTF-8: it is hashed as it is, without encoding it.
 */
export function partitionForKey(key: string, partitions: number): number {
  let ascii = true;
  for (let i = 0; i < key.length && ascii; i++) ascii = key.charCodeAt(i) < 0x80;
  const hash = ascii ? murmur2Of(key, key.length, asciiByte) : murmur2(utf8.encode(key));
  return (hash & 0x7fffffff) % partitions;
}

/** `partitionForKey` of a key given as its UTF-8 bytes. */
export function partitionForKeyBytes(key: Uint8Array, partitions: number): number {
  return (murmur2(key) & 0x7fffffff) % partitions;
}

const asciiByte = (text: string, i: number) => text.charCodeAt(i);
const arrayByte = (data: Uint8Array, i: number) => data[i]!;

/** Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2). */
export function murmur2(data: Uint8Array): number {
  return murmur2Of(data, data.length, arrayByte);
}

/** murmur2 of `length` bytes, each read by `byte` (from an array or from an ASCII string). */
function murmur2Of<T>(data: T, length: number, byte: (data: T, i: number) => number): number {
  const m = 0x5bd1e995;
  let h = (0x9747b28c ^ length) | 0;
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    let k =
      (byte(data, i) & 0xff) |
      ((byte(data, i + 1) & 0xff) << 8) |
      ((byte(data, i + 2) & 0xff) << 16) |
      ((byte(data, i + 3) & 0xff) << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m);
    h ^= k;
  }
  // The tail: up to three bytes, as Kafka's switch with fall-through.
  const tail = length - i;
  if (tail >= 3) h ^= (byte(data, i + 2) & 0xff) << 16;
  if (tail >= 2) h ^= (byte(data, i + 1) & 0xff) << 8;
  if (tail >= 1) {
    h ^= byte(data, i) & 0xff;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h;
}
