/**
 * What flows through a pipeline and the contracts of the components it is built from.
 *
 * A pipeline reads records from a log topic in batches, passes each batch through its transforms in
 * order, and hands the result to every sink. A record a transform rejects goes to the dead-letter queue
 * with its reason; it never blocks the records after it.
 *
 * Positions: for each partition of the source topic, the offset of the next record to process. Every sink
 * commits its positions atomically with its data (exactly-once, docs/exactly-once.md); on restart the
 * runtime asks each sink where it stands and hands it only records past that.
 */

/** Next offset to process, per partition of the source topic. */
export type Positions = ReadonlyMap<number, number>;

/** The records a sink that committed `committed` still lacks: those at or past its position. */
export function recordsPast<R extends { readonly partition: number; readonly offset: number }>(
  records: readonly R[],
  committed: Positions,
): readonly R[] {
  const lacking = records.filter((r) => r.offset >= (committed.get(r.partition) ?? 0));
  return lacking.length === records.length ? records : lacking;
}

/** Each partition at the further of its two positions: what a sink commits never moves one back. */
export function furthest(a: Positions, b: Positions): Positions {
  if (![...b].some(([p, o]) => o > (a.get(p) ?? 0))) return a;
  const merged = new Map(a);
  for (const [p, o] of b) merged.set(p, Math.max(o, merged.get(p) ?? 0));
  return merged;
}

export interface PipelineRecord {
  /** The record's body: a JSON object (the event, the row change). */
  readonly value: Record<string, unknown>;
  readonly key: string | null;
  readonly partition: number;
  readonly offset: number;
  /** When the record entered the log, ms since epoch. */
  readonly timestamp: number;
  readonly headers: Readonly<Record<string, string>>;
  /**
   * The value's JSON exactly as read from the log, or as written by a transform that `writesRaw`, present
   * only while no later transform can have changed the value: a sink may write these bytes instead of
   * serializing `value` again. Whoever builds a record with another value leaves it out (or writes it).
   */
  readonly raw?: Uint8Array;
  /**
   * The value's top-level field names, in order: present on records whose `value` is built from `raw` only
   * when read (see `Sink.usesRaw`), so that a sink can check the fields without building it.
   */
  readonly fields?: readonly string[];
}

/** A record that failed, for the dead-letter queue. */
export interface Rejection {
  readonly record: PipelineRecord;
  /** Where it failed: "decode", a transform's name ("validate"), or a sink's ("iceberg"). */
  readonly stage: string;
  /** What was wrong, in a sentence (for validation: the JSON path and the rule). */
  readonly error: string;
  /** The original bytes as text, when the record could not even be decoded. */
  readonly raw?: string;
}

export interface TransformResult {
  readonly records: readonly PipelineRecord[];
  readonly rejected: readonly Rejection[];
}

/**
 * A transform: called with each batch in order, returns the records to pass on and those it rejects.
 * It may keep state across batches (dedupe); it must not reorder records within a partition.
 * Throwing fails the whole batch (a bug or an outage, not bad input): the runtime retries it.
 */
export interface Transform {
  readonly name: string;
  /**
   * True when `process` passes on the very records it was given, values untouched (validate, filter,
   * dedupe): the runtime then keeps each record's original bytes (`raw`) for the sinks. When every
   * transform of a pipeline preserves values, the runtime may also hand a batch to them in consecutive
   * slices, each through every transform before the next is decoded (so the decoded values of a whole
   * batch are never held at once); the slices come in order, and a transform treats them as the batch.
   */
  readonly preservesValues?: boolean;
  /**
   * True when every record `process` passes on carries `raw`, the UTF-8 JSON of its new value (the cdc
   * transform): transforms after it that preserve values keep those bytes for the sinks, and the runtime
   * may hand it slices as above — a batch then waits for its sinks as bytes, not as objects.
   */
  readonly writesRaw?: boolean;
  /**
   * True when `process` reads numbers as doubles only, so that an integer beyond ±2^53 rounded changes
   * nothing it does (validate: JSON Schema checks them so). When every transform says so and preserves
   * values, and every sink writes from `raw`, the runtime decodes values with plain JSON.parse, several
   * times faster for text that holds such an integer; the sinks and the DLQ still get the exact values,
   * from the bytes (core/json.ts).
   */
  readonly approximateNumbers?: boolean;
  process(records: readonly PipelineRecord[]): Promise<TransformResult>;
  close?(): Promise<void>;
}

export interface SinkBatch {
  /** The records this sink has not committed yet, in offset order per partition. */
  readonly records: readonly PipelineRecord[];
  /** Positions after this batch: commit them atomically with the records. */
  readonly positions: Positions;
  /** What `prepare` returned for these records, when the sink has it. */
  readonly prepared?: unknown;
}

/** Outcome of a sink write: the records it could not take (schema policy `freeze`) go to the DLQ. */
export interface SinkResult {
  readonly rejected?: readonly Rejection[];
}

/**
 * A sink. The runtime calls `open` once, then `write` batch after batch, then `close`.
 *  - `open` returns the positions the sink has durably committed (empty for a new sink).
 *  - `write` stores the records and the positions in one atomic commit, and resolves once both are
 *    durable. After a crash the same records may be offered again with the same positions: the sink
 *    must end up with them exactly once (its committed positions tell it what it already has). A sink
 *    may commit positions short of the batch's, keeping the last records for the next `write` (the
 *    webhook sink, to send a request cut short by a re-read whole): the runtime goes on from the batch's
 *    positions, and after a restart from what `open` returns, so the records kept are read again.
 *  - Errors with `retryable: true` are retried by the runtime with backoff; others stop the pipeline.
 */
export interface Sink {
  readonly name: string;
  /**
   * True when `write` takes a record's `raw` bytes where present and reads `value` only for a few records
   * (Iceberg). When every sink says so and the transforms preserve values, the runtime hands the sinks
   * records whose `value` is decoded again from `raw` on first read, with their `fields` listed: the
   * decoded batch then need not stay in memory until the sinks are done.
   */
  readonly usesRaw?: boolean;
  open(): Promise<Positions>;
  /**
   * Optional first half of `write`: work on the records that commits nothing and changes nothing `open`
   * would return (the Iceberg sink stages them and writes their data files). The runtime may run it for
   * several lanes at once (`concurrency`), and for a lane's next batch while the current one commits;
   * then it calls `write` with its result, one batch at a time. Whatever it leaves behind when no `write`
   * follows must be harmless (unreferenced files) even after a crash.
   */
  prepare?(records: readonly PipelineRecord[]): Promise<unknown>;
  /** Releases what `prepare` returned when no `write` will take it (the runtime dropped the batch). */
  discard?(prepared: unknown): Promise<void>;
  write(batch: SinkBatch): Promise<SinkResult>;
  /**
   * The records `write` would reject, without writing anything. A sink that rejects records (schema
   * policy `freeze`, values its columns cannot hold) implements it: after a crash between its commit and
   * the DLQ's, the runtime asks it again so that the DLQ still gets those records exactly once.
   */
  screen?(records: readonly PipelineRecord[]): Promise<readonly Rejection[]>;
  /**
   * Commits positions that `write` accepted without committing (a sink may skip committing batches with
   * no records for a while). The runtime calls it when the pipeline stops cleanly, so that a restart does
   * not replay what this sink already passed.
   */
  flush?(): Promise<void>;
  close(): Promise<void>;
}
