/**
 * The ingest path, independent of HTTP: a request's events are checked (JSON object, nesting, id, the
 * stream's JSON Schema), deduplicated, enriched, and appended to the stream's topic — invalid ones to its
 * DLQ topic with `on_invalid: dlq` — and the outcome is reported only once the log has made them durable
 * (`Log.append` resolving is that guarantee; the embedded log group-commits with fsync).
 *
 * Never half-accept: with `on_invalid: reject` one invalid event refuses the request; the appends to the
 * topic and its DLQ are issued together (the embedded log commits them in one transaction); when the log
 * fails or is saturated nothing is acknowledged and the client is told to retry (503 + Retry-After).
 */
import { createHash, randomUUID } from 'node:crypto';
import { isTributaryError } from '../errors.ts';
import { isBigInteger, nearestNumber, parseJsonExact, replaceBigIntegers } from '../core/json.ts';
import type { Logger } from '../core/logger.ts';
import type { Log, LogRecord, RecordPosition } from '../log/log.ts';
import { truncateIp } from '../transforms/mask/ip.ts';
import { membersWithin, objectRanges, type BodyItem } from './body.ts';
import {
  HEADER_DEDUPE,
  HEADER_EVENT_ID,
  HEADER_IDEMPOTENCY_KEY,
  HEADER_IDEMPOTENCY_SCOPE,
  scopedIdempotencyKey,
  type Acknowledged,
  type DedupeStore,
  type RecordedEvent,
} from './dedupe.ts';
import { HttpError } from './http-error.ts';
import { InflightIds } from './inflight.ts';
import type { ServerMetrics } from './metrics.ts';
import { PendingWrites } from './pending.ts';
import { schemaErrors, type EventError, type Stream } from './streams.ts';

export interface ClientInfo {
  readonly ip: string;
  readonly userAgent: string | undefined;
  readonly receivedAt: number;
}

export interface IngestLimits {
  readonly maxPendingAppends: number;
  readonly maxPendingBytes: number;
  readonly maxDepth: number;
  /** How long a request waits for an earlier one holding the same ids (default 5 s), then answers 503. */
  readonly maxHeldWaitMs?: number;
}

export interface IngestInput {
  readonly stream: Stream;
  readonly items: readonly BodyItem[];
  /** The field holding a client's event id (the stream's id_field; messageId for Segment). */
  readonly idField: string;
  readonly idempotencyKey?: string;
  /** Whose Idempotency-Keys these are (the API key's id); without, the stream's. See `scopedKey`. */
  readonly idempotencyScope?: string;
  /** SHA-256 of the decoded body, to refuse an Idempotency-Key reused for another body. */
  readonly bodyHash?: string;
  readonly client: ClientInfo;
  /**
   * Endpoint-specific checks and normalization of an event (Segment); returns its errors. An event without
   * an id that needs one in its value takes `newId()`, the id the server gives it (see eventIds).
   */
  readonly prepare?: (event: Record<string, unknown>, newId: () => string) => EventError[];
}

/**
 * What the Ingestor asks of the dedupe store (dedupe.ts): each stream's window, and the Idempotency-Keys'
 * answers — and the ids, for a log that does not deduplicate them itself.
 */
export type IngestDedupe = Pick<DedupeStore, 'windowOf' | 'batch' | 'seen' | 'record' | 'written'>;

export interface IngestResult {
  /** Events now in the stream: newly appended plus duplicates already there. */
  readonly accepted: number;
  readonly duplicates: number;
  /** Every event's id, by its index in the request. */
  readonly ids: readonly string[];
  readonly dlq?: {
    readonly topic: string;
    readonly count: number;
    readonly events: ReadonlyArray<{ index: number; id: string; line?: number; errors: EventError[] }>;
  };
}

export interface IngestOutcome {
  readonly result: IngestResult;
  /** True when this is the stored answer to an earlier request with the same Idempotency-Key. */
  readonly replayed: boolean;
}

/** How a request's events sent without an id get one. */
interface NewId {
  /** The id of the event at `index`. */
  id(index: number): string;
  /** The same request sent again gets the same ids. */
  readonly stable: boolean;
}

const randomIds: NewId = { id: () => randomUUID(), stable: false };

/**
 * Ids for a request's events sent without one: random; or, in a request with an Idempotency-Key, derived
 * from the stream, the key, the body's hash and the event's place in the body, so that a retry of the very
 * same request — whose answer was not stored, say because its DLQ append failed after its topic's
 * succeeded — finds its events by their ids and does not store them twice. A UUID (version 8: custom).
 * Only on a stream that deduplicates (where the key means something); the same request sent again after
 * the window is stored again, with the same ids (it is the same request).
 */
/** The request's Idempotency-Key in its scope, as the dedupe store keeps it. */
function scopedKey(input: IngestInput): string | undefined {
  return input.idempotencyKey === undefined
    ? undefined
    : scopedIdempotencyKey(input.idempotencyKey, input.idempotencyScope);
}

function eventIds(input: IngestInput): NewId {
  const key = scopedKey(input);
  if (key === undefined || input.bodyHash === undefined) return randomIds;
  const hash = createHash('sha256').update(`${input.stream.name}\0${key}\0${input.bodyHash}`).digest('hex');
  const variant = (8 | (parseInt(hash[16]!, 16) & 3)).toString(16);
  const prefix = `${hash.slice(0, 8)}-${hash.slice(8, 12)}-8${hash.slice(13, 16)}-${variant}${hash.slice(17, 20)}-`;
  return { id: (index) => prefix + index.toString(16).padStart(12, '0'), stable: true };
}

interface CheckedEvent {
  readonly index: number;
  readonly id: string;
  /**
   * The id is the same when the request is sent again — the client's, or derived from the request's
   * Idempotency-Key (see eventIds) — so the event is deduplicated by it.
   */
  readonly stableId: boolean;
  readonly line?: number;
  readonly value?: Record<string, unknown>;
  readonly raw?: string;
  /** The event's original bytes (body.ts), stored as they are when nothing was changed in `value`. */
  readonly source?: Uint8Array;
  /** What the client sent, for the DLQ, when it is not an object. */
  readonly original?: unknown;
  readonly errors?: EventError[];
}

/**
 * A log that drops a stream's duplicate events itself as it appends them, and says how many it dropped
 * (threaded-log.ts: the log worker decides, in the order of the log). It copies the records before
 * `append` or `appendDeduplicating` returns, so their values may be reused right after the call.
 */
interface DeduplicatingLog extends Log {
  appendDeduplicating(topic: string, records: readonly LogRecord[], stream: string): Promise<number>;
}

function isDeduplicatingLog(log: Log): log is DeduplicatingLog {
  return typeof (log as Partial<DeduplicatingLog>).appendDeduplicating === 'function';
}

/** What `#enrichment` adds to a request's events, and for which request. */
interface Enrichment {
  readonly enrich: Stream['config']['enrich'];
  readonly receivedAt: number;
  readonly ip: string;
  readonly userAgent: string | undefined;
  /** Never changed by its users: it may serve the next request. */
  readonly added: ReadonlyArray<readonly [string, string]>;
  readonly suffix: Buffer;
}

const MAX_ID_LENGTH = 256;
const MAX_USER_AGENT = 512;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !isBigInteger(value);
}

function valueAt(value: Record<string, unknown>, path: readonly string[]): unknown {
  let current: unknown = value;
  for (const part of path) {
    if (!isPlainObject(current)) return undefined;
    current = current[part];
  }
  return current;
}

function keyOf(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  try {
    return JSON.stringify(value);
  } catch {
    return null;
  }
}

function hasAny(value: Record<string, unknown>, fields: ReadonlyArray<readonly [string, string]>): boolean {
  for (const [name] of fields) if (Object.hasOwn(value, name)) return true;
  return false;
}

/** True when the object `source` holds (`{` … `}`) has no member. */
function emptyObject(source: Uint8Array): boolean {
  let i = source.length - 2;
  while (i > 0 && (source[i] === 0x20 || source[i] === 0x0a || source[i] === 0x0d || source[i] === 0x09)) i--;
  return source[i] === 0x7b;
}

function safeStringify(value: unknown): string | null {
  try {
    return JSON.stringify(value) ?? null;
  } catch {
    return null;
  }
}

export class Ingestor {
  readonly #log: Log;
  readonly #dedupe: IngestDedupe;
  readonly #metrics: ServerMetrics;
  readonly #logger: Logger;
  readonly #limits: IngestLimits;
  /**
   * The client ids and Idempotency-Keys of requests in flight (inflight.ts); only the keys when the log
   * deduplicates the ids itself.
   */
  readonly #inflight = new InflightIds();
  /** The requests and bytes waiting for the log, of every HTTP thread of the server (pending.ts). */
  readonly #pending: PendingWrites;
  /** Where events are spliced with their added fields, for a log that copies them (`DeduplicatingLog`). */
  #scratch = Buffer.alloc(0);
  #failures = 0;
  #lastFailureLog = 0;
  #lastEnrichment: Enrichment | undefined;

  constructor(options: {
    log: Log;
    dedupe: IngestDedupe;
    metrics: ServerMetrics;
    logger: Logger;
    limits: IngestLimits;
    /** Shared with the server's other HTTP threads (default: this thread's alone). */
    pending?: PendingWrites;
  }) {
    this.#log = options.log;
    this.#dedupe = options.dedupe;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#limits = options.limits;
    this.#pending = options.pending ?? new PendingWrites();
    // This thread's own: the metrics of the server's threads are added up (http-threads.ts).
    this.#metrics.pending = () => {
      const { requests, bytes } = this.#pending.own;
      return { appends: requests, bytes };
    };
  }

  /** Throws 503 when a request of about `bytes` would exceed the backpressure limits. */
  checkCapacity(bytes: number): void {
    const pendingBytes = this.#pending.bytes;
    if (
      this.#pending.requests + 1 > this.#limits.maxPendingAppends ||
      (pendingBytes > 0 && pendingBytes + bytes > this.#limits.maxPendingBytes)
    ) {
      throw new HttpError(
        503,
        'OVERLOADED',
        'the log cannot take more events right now; nothing was stored',
        {
          hint: 'retry after the Retry-After delay, with the same event ids so that nothing is duplicated',
          headers: { 'retry-after': '1' },
        },
      );
    }
  }

  async ingest(input: IngestInput): Promise<IngestOutcome> {
    const { stream } = input;
    const items = input.items;
    const checked = new Array<CheckedEvent>(items.length);
    const dedupeOn = this.#dedupe.windowOf(stream.name) > 0;
    const newId = dedupeOn ? eventIds(input) : randomIds;
    let invalidCount = 0;
    for (let i = 0; i < items.length; i++) {
      const event = this.#check(input, items[i]!, newId);
      checked[i] = event;
      if (event.errors) invalidCount++;
    }
    const invalid = invalidCount ? checked.filter((e) => e.errors) : [];
    if (invalidCount > 0 && stream.config.on_invalid === 'reject') {
      this.#metrics.eventsRejected.inc({ stream: stream.name }, checked.length);
      throw new HttpError(
        400,
        'INVALID_INPUT',
        `${invalid.length} of ${checked.length} event(s) are invalid; nothing was accepted`,
        {
          hint: 'fix the events listed and send the request again',
          details: {
            events: invalid.slice(0, 100).map((e) => ({
              index: e.index,
              ...(e.line === undefined ? {} : { line: e.line }),
              errors: e.errors,
            })),
          },
        },
      );
    }

    const idempotencyKey = dedupeOn ? scopedKey(input) : undefined;
    // A log that deduplicates (the embedded one, on its worker thread) decides which events are
    // duplicates as it appends them, in its order: this thread neither looks the ids up nor holds them.
    const byLog = dedupeOn && isDeduplicatingLog(this.#log);
    // The client ids of the valid events: only those are deduplicated.
    const stableIds: string[] = [];
    if (dedupeOn && !byLog)
      for (const event of checked) if (event.stableId && !event.errors) stableIds.push(event.id);
    const claim =
      idempotencyKey !== undefined || stableIds.length
        ? this.#inflight.claim(stream.name, stableIds, idempotencyKey)
        : undefined;
    try {
      if (claim?.wait) await heldAtMost(claim.wait, this.#limits.maxHeldWaitMs ?? HELD_WAIT_MS);
      if (idempotencyKey !== undefined) {
        const stored = this.#dedupe.batch(stream.name, idempotencyKey);
        if (stored) {
          if (
            stored.bodyHash !== null &&
            input.bodyHash !== undefined &&
            stored.bodyHash !== input.bodyHash
          ) {
            throw new HttpError(
              422,
              'IDEMPOTENCY_CONFLICT',
              'this Idempotency-Key was already used for a different request body',
              {
                hint: 'use a new Idempotency-Key for a new request; retry with the same body to get the first answer',
              },
            );
          }
          return { result: JSON.parse(stored.response) as IngestResult, replayed: true };
        }
      }
      const seen = stableIds.length ? this.#dedupe.seen(stream.name, stableIds) : undefined;
      const inRequest = stableIds.length > 1 ? new Set<string>() : undefined;
      const fresh: CheckedEvent[] = [];
      const ids = new Array<string>(checked.length);
      let duplicates = 0;
      for (let i = 0; i < checked.length; i++) {
        const event = checked[i]!;
        ids[i] = event.id;
        if (event.errors) continue;
        if (seen && event.stableId) {
          if (seen.has(event.id) || inRequest?.has(event.id)) {
            duplicates++;
            continue;
          }
          inRequest?.add(event.id);
        }
        fresh.push(event);
      }

      const records = this.#records(input, fresh, dedupeOn, idempotencyKey);
      const dlqRecords = invalid.map((event) => this.#dlqRecord(input, event));
      let bytes = 0;
      for (const record of records) bytes += record.value.length;
      for (const record of dlqRecords) bytes += record.value.length;
      if (records.length + dlqRecords.length > 0) this.checkCapacity(bytes);

      const events: RecordedEvent[] = [];
      if (dedupeOn && !byLog)
        for (const e of fresh) if (e.stableId) events.push({ stream: stream.name, id: e.id });
      // Of `fresh`, those the log found to be duplicates (when `byLog`).
      const dropped = await this.#append(stream, records, dlqRecords, bytes, { on: dedupeOn, byLog, events });
      const result: IngestResult = {
        accepted: fresh.length + duplicates,
        duplicates: duplicates + dropped,
        ids,
        ...(invalid.length
          ? {
              dlq: {
                topic: stream.dlqTopic,
                count: invalid.length,
                events: invalid.slice(0, 100).map((e) => ({
                  index: e.index,
                  id: e.id,
                  ...(e.line === undefined ? {} : { line: e.line }),
                  errors: e.errors ?? [],
                })),
              },
            }
          : {}),
      };
      // The answer to replay, once everything is durable (a failed append threw above): a retry with the
      // same key finds it before this request's hold goes (finally). Written before it is given, so that
      // the process crashing cannot lose an answer the client got — the log's thread may already have written the ids
      // and moved past them, so recovery would not rebuild it.
      if (idempotencyKey !== undefined) {
        this.#dedupe.record([], [], {
          stream: stream.name,
          key: idempotencyKey,
          bodyHash: input.bodyHash ?? null,
          response: JSON.stringify(result),
        });
        await this.#dedupe.written();
      }
      this.#metrics.eventsAccepted.inc({ stream: stream.name }, fresh.length - dropped);
      if (result.duplicates) this.#metrics.eventsDuplicate.inc({ stream: stream.name }, result.duplicates);
      if (invalid.length) this.#metrics.eventsDlq.inc({ stream: stream.name }, invalid.length);
      return { result, replayed: false };
    } finally {
      claim?.release();
    }
  }

  /**
   * Appends the valid events to the stream's topic and the invalid ones to its DLQ, and has what became
   * durable deduplicated: the ids of the topic's records whenever that append succeeded — by the log
   * itself when `byLog`, which drops the duplicates among them; else recorded here. Returns how many
   * duplicates the log dropped. Throws the HTTP error to answer when an append failed.
   */
  async #append(
    stream: Stream,
    records: readonly LogRecord[],
    dlqRecords: readonly LogRecord[],
    bytes: number,
    dedupe: {
      /** The stream deduplicates (else nothing is recorded). */
      readonly on: boolean;
      /** The log deduplicates the records' ids (`DeduplicatingLog`). */
      readonly byLog: boolean;
      /** The ids to record here once the topic's append is durable (when not `byLog`). */
      readonly events: readonly RecordedEvent[];
    },
  ): Promise<number> {
    if (records.length === 0 && dlqRecords.length === 0) return 0;
    this.#pending.add(1, bytes);
    const started = performance.now();
    // Issued in the same turn of the event loop, so the embedded log commits both in one transaction.
    const [main, dlq] = await Promise.allSettled([
      records.length === 0
        ? Promise.resolve<RecordPosition[] | number>([])
        : dedupe.byLog
          ? (this.#log as DeduplicatingLog).appendDeduplicating(stream.topic, records, stream.name)
          : this.#log.append(stream.topic, records),
      dlqRecords.length
        ? this.#log.append(stream.dlqTopic, dlqRecords)
        : Promise.resolve<RecordPosition[]>([]),
    ]);
    this.#metrics.appendSeconds.observe({ stream: stream.name }, (performance.now() - started) / 1000);
    this.#pending.add(-1, -bytes);
    // Recorded at once (no await since the appends settled), in the order the log acknowledged.
    if (!dedupe.byLog && dedupe.on && main.status === 'fulfilled') {
      // (Only the stream topic's positions: recovery reads no DLQ.)
      const positions: Acknowledged[] = (main.value as RecordPosition[]).map((p) => ({
        topic: stream.topic,
        ...p,
      }));
      this.#dedupe.record(dedupe.events, positions);
    }
    if (main.status === 'fulfilled' && dlq.status === 'fulfilled')
      return typeof main.value === 'number' ? main.value : 0;
    const error: unknown = main.status === 'rejected' ? main.reason : (dlq as PromiseRejectedResult).reason;
    const topic = main.status === 'rejected' ? stream.topic : stream.dlqTopic;
    // At most one line a second, however many requests fail.
    this.#failures++;
    const now = Date.now();
    if (now - this.#lastFailureLog >= 1000) {
      this.#logger.warn(
        { stream: stream.name, err: error, failures: this.#failures },
        `appending to topic ${topic} failed (${this.#failures} failed request(s) since the last report); answering 503`,
      );
      this.#failures = 0;
      this.#lastFailureLog = now;
    }
    if (isTributaryError(error) && !error.retryable) {
      throw new HttpError(500, error.code, `the log refused the events: ${error.message}`, {
        hint: error.hint ?? 'see the server log',
      });
    }
    throw new HttpError(503, 'OVERLOADED', 'the log could not store the events; nothing was acknowledged', {
      hint: 'retry after the Retry-After delay, with the same event ids so that nothing is duplicated',
      headers: { 'retry-after': '1' },
    });
  }

  #check(input: IngestInput, item: BodyItem, newId: NewId): CheckedEvent {
    const invalid = (errors: EventError[], value?: Record<string, unknown>, id?: string): CheckedEvent => ({
      index: item.index,
      ...(item.line === undefined ? {} : { line: item.line }),
      id: id ?? newId.id(item.index),
      stableId: false,
      raw: item.raw,
      value,
      original: item.value,
      errors,
    });
    if (item.scanned) {
      // body.ts read it without building its value: a valid object, within the depth, with a valid id,
      // none of the added fields. What reads the value gets it built.
      if (input.prepare || input.stream.validate || input.stream.partitionKey)
        return this.#check(
          input,
          {
            index: item.index,
            value: parseJsonExact(decoder.decode(item.source)),
            source: item.source,
            members: objectRanges(item.source!, 1, 1)[2],
          },
          newId,
        );
      return {
        index: item.index,
        line: item.line,
        id: item.id ?? newId.id(item.index),
        stableId: item.id !== undefined || newId.stable,
        value: undefined,
        raw: undefined,
        source: item.source,
        original: undefined,
        errors: undefined,
      };
    }
    if (item.parseError !== undefined) return invalid([{ path: '', message: item.parseError }]);
    const value = item.value;
    if (!isPlainObject(value)) return invalid([{ path: '', message: 'must be a JSON object' }]);
    const members = membersWithin(value, this.#limits.maxDepth);
    if (members < 0) {
      return invalid([
        { path: '', message: `nests objects and arrays deeper than ${this.#limits.maxDepth} levels` },
      ]);
    }
    const idValue = value[input.idField];
    let id: string | undefined;
    if (typeof idValue === 'string' && idValue.length > 0 && idValue.length <= MAX_ID_LENGTH) id = idValue;
    else if (typeof idValue === 'number' && Number.isSafeInteger(idValue)) id = String(idValue);
    else if (isBigInteger(idValue)) id = idValue.rawJSON;
    else if (idValue !== undefined && idValue !== null) {
      return invalid(
        [
          {
            path: `/${input.idField}`,
            message: `must be a string of 1 to ${MAX_ID_LENGTH} characters or an integer`,
          },
        ],
        value,
      );
    }
    let errors: EventError[] | undefined;
    let given = false; // prepare gave the event the server's id (Segment's messageId)
    if (input.prepare) {
      errors = input.prepare(value, () => {
        given = true;
        return newId.id(item.index);
      });
      const assigned = value[input.idField];
      if (id === undefined && typeof assigned === 'string') id = assigned;
    }
    const validate = input.stream.validate;
    // ajv knows numbers only: an integer beyond ±2^53 is checked as the double nearest to it.
    if (validate && !validate(replaceBigIntegers(value, nearestNumber)))
      (errors ??= []).push(...schemaErrors(validate.errors ?? []));
    if (errors?.length) return invalid(errors, value, id);
    // One shape for every valid event (so that the code reading them stays monomorphic).
    return {
      index: item.index,
      line: item.line,
      id: id ?? newId.id(item.index),
      stableId: id === undefined || given ? newId.stable : idValue !== undefined && idValue !== null,
      value,
      raw: undefined,
      // prepare changes the value: its original bytes are then not the event. Nor are they when an object
      // repeats a key: JSON.parse kept the last value, the one checked, where another reader may keep the
      // first.
      source: input.prepare || members !== item.members ? undefined : item.source,
      original: undefined,
      errors: undefined,
    };
  }

  /** The log records of the valid events: enriched, with the headers deduplication and recovery read. */
  #records(
    input: IngestInput,
    events: readonly CheckedEvent[],
    dedupeOn: boolean,
    idempotencyKey: string | undefined,
  ): LogRecord[] {
    const { stream, client } = input;
    const { added, suffix } = this.#enrichment(stream, client);
    const partitionKey = stream.partitionKey;
    // Events are stored as the client sent them, with the added fields spliced in before the closing
    // brace — unless a field is there already (it is replaced), the object is empty, or the partition key
    // is an added field: those are serialized again from their value.
    const spliceable = !partitionKey || !added.some(([name]) => name === partitionKey[0]);
    const spliced = new Array<boolean>(events.length);
    let size = 0;
    for (let i = 0; i < events.length; i++) {
      const { source, value } = events[i]!;
      const ok =
        spliceable &&
        source !== undefined &&
        // A scanned event (no value) holds no added field and is not empty (body.ts).
        (added.length === 0 || value === undefined || (!hasAny(value, added) && !emptyObject(source)));
      spliced[i] = ok;
      if (ok && added.length > 0) size += source.length - 1 + suffix.length;
    }
    // One buffer for the request's events, each a view into it: the same one for every request when the
    // log copies the records as it takes them (they are appended in this turn, see `#append`).
    let out: Buffer | undefined;
    if (size > 0 && isDeduplicatingLog(this.#log)) {
      if (this.#scratch.length < size) this.#scratch = Buffer.allocUnsafeSlow(Math.max(size, 64 * 1024));
      out = this.#scratch;
    } else if (size > 0) out = Buffer.allocUnsafe(size);
    let at = 0;
    const records = new Array<LogRecord>(events.length);
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!;
      const value = event.value!;
      let bytes: Uint8Array;
      if (!spliced[i]) {
        for (const [name, field] of added) value[name] = field;
        bytes = Buffer.from(JSON.stringify(value));
      } else if (added.length === 0) {
        bytes = event.source!;
      } else {
        const source = event.source!;
        const start = at;
        // The whole event, then the suffix over its closing brace (a view without it would cost more).
        out!.set(source, at);
        at += source.length - 1;
        out!.set(suffix, at);
        at += suffix.length;
        bytes = out!.subarray(start, at);
      }
      const headers: Record<string, string> =
        event.stableId && dedupeOn
          ? { [HEADER_EVENT_ID]: event.id, [HEADER_DEDUPE]: '1' }
          : { [HEADER_EVENT_ID]: event.id };
      if (idempotencyKey !== undefined) {
        // As the client sent it, and whose it is: recovery rebuilds the scoped key from both.
        headers[HEADER_IDEMPOTENCY_KEY] = input.idempotencyKey!;
        if (input.idempotencyScope !== undefined) headers[HEADER_IDEMPOTENCY_SCOPE] = input.idempotencyScope;
      }
      records[i] = {
        key: partitionKey ? keyOf(valueAt(value, partitionKey)) : null,
        value: bytes,
        headers,
        timestamp: client.receivedAt,
      };
    }
    return records;
  }

  /**
   * The fields edge enrichment adds to a request's events, and the bytes spliced in before an event's
   * closing brace. The last answer is kept: the requests of one client within one millisecond (a busy
   * sender on keep-alive) share it, sparing each a Date, its ISO string and the suffix's encoding.
   */
  #enrichment(stream: Stream, client: ClientInfo): Enrichment {
    const last = this.#lastEnrichment;
    const enrich = stream.config.enrich;
    if (
      last !== undefined &&
      last.enrich === enrich &&
      last.receivedAt === client.receivedAt &&
      last.ip === client.ip &&
      last.userAgent === client.userAgent
    )
      return last;
    const added: Array<[string, string]> = [];
    if (enrich.received_at) added.push(['_received_at', new Date(client.receivedAt).toISOString()]);
    if (enrich.client_ip !== 'off')
      added.push([
        '_client_ip',
        enrich.client_ip === 'truncated' ? (truncateIp(client.ip) ?? client.ip) : client.ip,
      ]);
    if (enrich.user_agent && client.userAgent !== undefined)
      added.push(['_user_agent', client.userAgent.slice(0, MAX_USER_AGENT)]);
    const suffix = Buffer.from(
      `${added.map(([name, value]) => `,${JSON.stringify(name)}:${JSON.stringify(value)}`).join('')}}`,
    );
    this.#lastEnrichment = {
      enrich,
      receivedAt: client.receivedAt,
      ip: client.ip,
      userAgent: client.userAgent,
      added,
      suffix,
    };
    return this.#lastEnrichment;
  }

  #dlqRecord(input: IngestInput, event: CheckedEvent): LogRecord {
    const payload = event.raw ?? (event.original === undefined ? null : safeStringify(event.original));
    return {
      key: null,
      value: encoder.encode(
        JSON.stringify({
          stream: input.stream.name,
          index: event.index,
          ...(event.line === undefined ? {} : { line: event.line }),
          id: event.id,
          errors: event.errors,
          error: (event.errors ?? []).map((e) => `${e.path || '/'}: ${e.message}`).join('; '),
          payload,
          received_at: new Date(input.client.receivedAt).toISOString(),
        }),
      ),
      headers: { [HEADER_EVENT_ID]: event.id },
      timestamp: input.client.receivedAt,
    };
  }
}

/**
 * How long a request waits for an earlier one holding the same ids. An earlier request holds them until
 * its ids are written to the dedupe store (milliseconds); while that store cannot be written, holds
 * pile up, and requests are told to come back rather than wait without end.
 */
const HELD_WAIT_MS = 5_000;

async function heldAtMost(wait: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(resolve, ms, 'timeout')));
  try {
    if ((await Promise.race([wait, timedOut])) === 'timeout')
      throw new HttpError(
        503,
        'OVERLOADED',
        'events with these ids are still being recorded (is the dedupe store failing? see /readyz); nothing was stored',
        {
          hint: 'retry after the Retry-After delay, with the same event ids so that nothing is duplicated',
          headers: { 'retry-after': '5' },
        },
      );
  } finally {
    clearTimeout(timer);
  }
}
