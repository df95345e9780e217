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
import { randomUUID } from 'node:crypto';
import { isTributaryError } from '../errors.ts';
import type { Logger } from '../core/logger.ts';
import type { Log, LogRecord, RecordPosition } from '../log/log.ts';
import { truncateIp } from '../transforms/mask/ip.ts';
import { nestedDeeperThan, type BodyItem } from './body.ts';
import {
  HEADER_DEDUPE,
  HEADER_EVENT_ID,
  HEADER_IDEMPOTENCY_KEY,
  type Acknowledged,
  type DedupeStore,
} from './dedupe.ts';
import type { DedupeRecord } from './log-worker.ts';
import { HttpError } from './http-error.ts';
import type { ServerMetrics } from './metrics.ts';
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
}

export interface IngestInput {
  readonly stream: Stream;
  readonly items: readonly BodyItem[];
  /** The field holding a client's event id (the stream's id_field; messageId for Segment). */
  readonly idField: string;
  readonly idempotencyKey?: string;
  /** SHA-256 of the decoded body, to refuse an Idempotency-Key reused for another body. */
  readonly bodyHash?: string;
  readonly client: ClientInfo;
  /** Endpoint-specific checks and normalization of an event (Segment); returns its errors. */
  readonly prepare?: (event: Record<string, unknown>) => EventError[];
}

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

interface CheckedEvent {
  readonly index: number;
  readonly id: string;
  /** The id came from the client, so it is deduplicated. */
  readonly clientId: boolean;
  readonly line?: number;
  readonly value?: Record<string, unknown>;
  readonly raw?: string;
  /** What the client sent, for the DLQ, when it is not an object. */
  readonly original?: unknown;
  readonly errors?: EventError[];
}

/** A log that can record dedupe ids itself once an append is durable (threaded-log.ts). */
interface RecordingLog extends Log {
  appendRecording(
    topic: string,
    records: readonly LogRecord[],
    dedupe: DedupeRecord,
  ): Promise<RecordPosition[]>;
}

function isRecordingLog(log: Log): log is RecordingLog {
  return typeof (log as Partial<RecordingLog>).appendRecording === 'function';
}

const MAX_ID_LENGTH = 256;
const MAX_USER_AGENT = 512;
const encoder = new TextEncoder();

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
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

function safeStringify(value: unknown): string | null {
  try {
    return JSON.stringify(value) ?? null;
  } catch {
    return null;
  }
}

export class Ingestor {
  readonly #log: Log;
  readonly #dedupe: DedupeStore;
  readonly #metrics: ServerMetrics;
  readonly #logger: Logger;
  readonly #limits: IngestLimits;
  readonly #inflight = new Map<string, Promise<void>>();
  #pendingAppends = 0;
  #pendingBytes = 0;
  #failures = 0;
  #lastFailureLog = 0;

  constructor(options: {
    log: Log;
    dedupe: DedupeStore;
    metrics: ServerMetrics;
    logger: Logger;
    limits: IngestLimits;
  }) {
    this.#log = options.log;
    this.#dedupe = options.dedupe;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#limits = options.limits;
  }

  get pendingAppends(): number {
    return this.#pendingAppends;
  }

  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /** Throws 503 when a request of about `bytes` would exceed the backpressure limits. */
  checkCapacity(bytes: number): void {
    if (
      this.#pendingAppends + 1 > this.#limits.maxPendingAppends ||
      (this.#pendingBytes > 0 && this.#pendingBytes + bytes > this.#limits.maxPendingBytes)
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
    const checked = input.items.map((item) => this.#check(input, item));
    const invalid = checked.filter((e) => e.errors);
    if (invalid.length > 0 && stream.config.on_invalid === 'reject') {
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

    const dedupeOn = this.#dedupe.windowOf(stream.name) > 0;
    const claims: string[] = [];
    const idempotencyKey = dedupeOn ? input.idempotencyKey : undefined;
    if (idempotencyKey !== undefined) claims.push(`${stream.name}\0b\0${idempotencyKey}`);
    if (dedupeOn)
      for (const event of checked)
        if (event.clientId && !event.errors) claims.push(`${stream.name}\0e\0${event.id}`);
    const release = claims.length ? (this.#tryClaim(claims) ?? (await this.#claim(claims))) : undefined;
    try {
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
      const seen = dedupeOn
        ? this.#dedupe.seen(
            stream.name,
            checked.filter((e) => e.clientId && !e.errors).map((e) => e.id),
          )
        : new Set<string>();
      const inRequest = new Set<string>();
      const fresh: CheckedEvent[] = [];
      let duplicates = 0;
      for (const event of checked) {
        if (event.errors) continue;
        if (event.clientId && dedupeOn && (seen.has(event.id) || inRequest.has(event.id))) {
          duplicates++;
          continue;
        }
        if (event.clientId && dedupeOn) inRequest.add(event.id);
        fresh.push(event);
      }

      const receivedAt = new Date(input.client.receivedAt).toISOString();
      const records = fresh.map((event) => this.#record(input, event, receivedAt, dedupeOn, idempotencyKey));
      const dlqRecords = invalid.map((event) => this.#dlqRecord(input, event));
      let bytes = 0;
      for (const record of records) bytes += record.value.length;
      for (const record of dlqRecords) bytes += record.value.length;
      if (records.length + dlqRecords.length > 0) this.checkCapacity(bytes);

      const result: IngestResult = {
        accepted: fresh.length + duplicates,
        duplicates,
        ids: checked.map((e) => e.id),
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
      const remember: DedupeRecord = {
        events: dedupeOn
          ? fresh.filter((e) => e.clientId).map((e) => ({ stream: stream.name, id: e.id }))
          : [],
        ...(idempotencyKey === undefined
          ? {}
          : {
              batch: {
                stream: stream.name,
                key: idempotencyKey,
                bodyHash: input.bodyHash ?? null,
                response: JSON.stringify(result),
              },
            }),
      };
      // A log on a worker thread records the ids there, after its commit (threaded-log.ts).
      const delegated = records.length > 0 && isRecordingLog(this.#log);
      if (delegated) this.#dedupe.expect(remember.events);
      const positions = await this.#append(
        stream,
        records,
        dlqRecords,
        bytes,
        delegated ? remember : undefined,
      );
      // Recorded at once (no await since the append resolved), in the order the log acknowledged.
      if (!delegated) this.#dedupe.record(remember.events, positions, remember.batch);
      this.#metrics.eventsAccepted.inc({ stream: stream.name }, fresh.length);
      if (duplicates) this.#metrics.eventsDuplicate.inc({ stream: stream.name }, duplicates);
      if (invalid.length) this.#metrics.eventsDlq.inc({ stream: stream.name }, invalid.length);
      return { result, replayed: false };
    } finally {
      release?.();
    }
  }

  /** Waits until no other request holds any of `keys`, then holds them; returns the release. */
  async #claim(keys: readonly string[]): Promise<() => void> {
    for (;;) {
      const waits: Array<Promise<void>> = [];
      for (const key of keys) {
        const wait = this.#inflight.get(key);
        if (wait) waits.push(wait);
      }
      if (waits.length === 0) break;
      await Promise.all(waits);
    }
    return this.#hold(keys);
  }

  /** Holds `keys` now when no other request holds any of them (the common case), else undefined. */
  #tryClaim(keys: readonly string[]): (() => void) | undefined {
    for (const key of keys) if (this.#inflight.has(key)) return undefined;
    return this.#hold(keys);
  }

  #hold(keys: readonly string[]): () => void {
    let done!: () => void;
    const held = new Promise<void>((resolve) => (done = resolve));
    for (const key of keys) this.#inflight.set(key, held);
    return () => {
      for (const key of keys) if (this.#inflight.get(key) === held) this.#inflight.delete(key);
      done();
    };
  }

  async #append(
    stream: Stream,
    records: readonly LogRecord[],
    dlqRecords: readonly LogRecord[],
    bytes: number,
    remember: DedupeRecord | undefined,
  ): Promise<Acknowledged[]> {
    if (records.length === 0 && dlqRecords.length === 0) return [];
    this.#pendingAppends++;
    this.#pendingBytes += bytes;
    this.#metrics.pendingAppends.set(this.#pendingAppends);
    this.#metrics.pendingBytes.set(this.#pendingBytes);
    const timer = this.#metrics.appendSeconds.startTimer({ stream: stream.name });
    // Issued in the same turn of the event loop, so the embedded log commits both in one transaction.
    const [main, dlq] = await Promise.allSettled([
      records.length === 0
        ? Promise.resolve<RecordPosition[]>([])
        : remember
          ? (this.#log as RecordingLog).appendRecording(stream.topic, records, remember)
          : this.#log.append(stream.topic, records),
      dlqRecords.length
        ? this.#log.append(stream.dlqTopic, dlqRecords)
        : Promise.resolve<RecordPosition[]>([]),
    ]);
    timer();
    this.#pendingAppends--;
    this.#pendingBytes -= bytes;
    this.#metrics.pendingAppends.set(this.#pendingAppends);
    this.#metrics.pendingBytes.set(this.#pendingBytes);
    if (main.status === 'fulfilled' && dlq.status === 'fulfilled') {
      return [
        ...main.value.map((p) => ({ topic: stream.topic, ...p })),
        ...dlq.value.map((p) => ({ topic: stream.dlqTopic, ...p })),
      ];
    }
    const error: unknown = main.status === 'rejected' ? main.reason : (dlq as PromiseRejectedResult).reason;
    // At most one line a second, however many requests fail.
    this.#failures++;
    const now = Date.now();
    if (now - this.#lastFailureLog >= 1000) {
      this.#logger.warn(
        { stream: stream.name, err: error, failures: this.#failures },
        `appending to topic ${stream.topic} failed (${this.#failures} failed request(s) since the last report); answering 503`,
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

  #check(input: IngestInput, item: BodyItem): CheckedEvent {
    const base = { index: item.index, ...(item.line === undefined ? {} : { line: item.line }) };
    const invalid = (errors: EventError[], value?: Record<string, unknown>, id?: string): CheckedEvent => ({
      ...base,
      id: id ?? randomUUID(),
      clientId: false,
      raw: item.raw,
      value,
      original: item.value,
      errors,
    });
    if (item.parseError !== undefined) return invalid([{ path: '', message: item.parseError }]);
    const value = item.value;
    if (!isPlainObject(value)) return invalid([{ path: '', message: 'must be a JSON object' }]);
    if (nestedDeeperThan(value, this.#limits.maxDepth)) {
      return invalid([
        { path: '', message: `nests objects and arrays deeper than ${this.#limits.maxDepth} levels` },
      ]);
    }
    const idValue = value[input.idField];
    let id: string | undefined;
    if (typeof idValue === 'string' && idValue.length > 0 && idValue.length <= MAX_ID_LENGTH) id = idValue;
    else if (typeof idValue === 'number' && Number.isSafeInteger(idValue)) id = String(idValue);
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
    const errors = input.prepare?.(value) ?? [];
    if (id === undefined && input.prepare) {
      // prepare may have assigned an id (Segment's messageId)
      const assigned = value[input.idField];
      if (typeof assigned === 'string') id = assigned;
    }
    const validate = input.stream.validate;
    if (validate && !validate(value)) errors.push(...schemaErrors(validate.errors ?? []));
    if (errors.length) return invalid(errors, value, id);
    return {
      ...base,
      id: id ?? randomUUID(),
      clientId: id !== undefined && idValue !== undefined && idValue !== null,
      value,
    };
  }

  #record(
    input: IngestInput,
    event: CheckedEvent,
    receivedAt: string,
    dedupeOn: boolean,
    idempotencyKey: string | undefined,
  ): LogRecord {
    const value = event.value!;
    const enrich = input.stream.config.enrich;
    if (enrich.received_at) value._received_at = receivedAt;
    if (enrich.client_ip !== 'off')
      value._client_ip =
        enrich.client_ip === 'truncated' ? (truncateIp(input.client.ip) ?? input.client.ip) : input.client.ip;
    if (enrich.user_agent && input.client.userAgent !== undefined)
      value._user_agent = input.client.userAgent.slice(0, MAX_USER_AGENT);
    const headers: Record<string, string> = { [HEADER_EVENT_ID]: event.id };
    if (event.clientId && dedupeOn) headers[HEADER_DEDUPE] = '1';
    if (idempotencyKey !== undefined) headers[HEADER_IDEMPOTENCY_KEY] = idempotencyKey;
    return {
      key: input.stream.partitionKey ? keyOf(valueAt(value, input.stream.partitionKey)) : null,
      value: Buffer.from(JSON.stringify(value)),
      headers,
      timestamp: input.client.receivedAt,
    };
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
