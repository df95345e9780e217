/**
 * The webhook sink: records are sent as HTTP requests of at most `batch_size` records, `{"records":
 * [values…]}`, each holding one partition's records, a partition's requests one after the other in order.
 *
 * Delivery is at-least-once. A receiver cannot store our positions with its data, so the sink keeps them
 * in the log's consumer-group offsets (group `<pipeline>/<sink>`), committed after the requests of a write
 * succeeded; `open()` reads them back. A crash before that commit sends the records again, and every
 * request carries an `Idempotency-Key`, a hash of the pipeline, the sink, the partition and the first and
 * last offset of its records, so the receiver can drop a repeat — if the repeat is cut into the same
 * requests, whatever the batches read again hold. So a partition's requests hold its records between
 * two cuts, which no batch read again moves:
 *  - every multiple of `batch_size` (offset windows);
 *  - the end of every write that had records past the partition's highest cut, recorded before its first
 *    request in a mark (groups `<pipeline>/<sink>/pending/<n>`, kept until the positions pass them).
 * A batch read again may end inside a request sent before (lower batch limits, or a backlog of another
 * partition filling the batch): the records of that request are held back, in memory, until a later batch
 * completes it, and the positions committed stop before them (the next run reads them again). Within one
 * process, a batch retried after a failure skips the requests that already succeeded. Changing
 * `batch_size` changes the windows (and the sink's name, every key): the records sent but not committed
 * then go out again under new keys — kept so, as a lower `batch_size` is what a 413 asks for.
 *
 * Failures: network errors, timeouts, 408, 429 and 5xx are retried here with exponential backoff and full
 * jitter (a `Retry-After` on 429/503 is honoured), then reported as retryable SERVICE_UNAVAILABLE; other
 * answers (4xx, redirects) are permanent.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../core/logger.ts';
import type { PipelineRecord, Positions, Sink, SinkBatch, SinkResult } from '../../core/pipeline/model.ts';
import { TributaryError } from '../../errors.ts';
import type { Log } from '../../log/log.ts';
import type { WebhookSinkConfig } from './config.ts';
import { backoff, idempotencyKey, parseRetryAfter, requestTarget, safeUrl, signature } from './http.ts';

export interface WebhookSinkOptions {
  readonly config: WebhookSinkConfig;
  readonly pipeline: string;
  /** The topic the pipeline reads: the sink's positions are consumer-group offsets of it. */
  readonly sourceTopic: string;
  readonly log: Pick<Log, 'committedOffsets' | 'commitOffsets'>;
  readonly logger: Logger;
  /** For tests: how to wait between attempts (default: a timer), and the random source of the jitter. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly random?: () => number;
}

/** How much of a refusing answer's body goes into the error. */
const MAX_SNIPPET = 512;

interface Failure {
  readonly retryable: boolean;
  readonly message: string;
  readonly status?: number;
  readonly retryAfterMs?: number;
  readonly cause?: unknown;
}

export class WebhookSink implements Sink {
  readonly name: string;
  /** The consumer group holding this sink's positions. */
  readonly group: string;
  /** The group of this sink's default name before names left path secrets out (positions move over once). */
  readonly #legacyGroup: string | undefined;
  readonly #target: { readonly url: string; readonly authorization?: string };
  readonly #config: WebhookSinkConfig;
  readonly #pipeline: string;
  readonly #topic: string;
  readonly #log: WebhookSinkOptions['log'];
  readonly #logger: Logger;
  readonly #url: string;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly #random: () => number;
  readonly #closing = new AbortController();
  /** Positions delivered and committed. */
  readonly #positions = new Map<number, number>();
  /** Where the batches written end, per partition: past #positions by the records held back. */
  readonly #accepted = new Map<number, number>();
  /** Per partition, the records of a request no batch has completed yet (see the module comment). */
  #held = new Map<number, readonly PipelineRecord[]>();
  /** The marks not yet passed by the positions, as stored (group n holds mark n); see the module comment. */
  readonly #marks: Array<ReadonlyMap<number, number>> = [];
  /** Keys of requests the receiver accepted since the last commit (a retried batch skips them). */
  readonly #delivered = new Set<string>();

  constructor(options: WebhookSinkOptions) {
    this.#config = options.config;
    this.#pipeline = options.pipeline;
    this.#topic = options.sourceTopic;
    this.#log = options.log;
    this.#url = safeUrl(options.config.url);
    const target = requestTarget(options.config.url);
    // An Authorization header configured wins over the URL's user and password (not both: fetch joins them).
    this.#target = Object.keys(options.config.headers).some((h) => h.toLowerCase() === 'authorization')
      ? { url: target.url }
      : target;
    const named = defaultName(options.config.url);
    this.name = options.config.name ?? named.name;
    this.group = `${options.pipeline}/${this.name}`;
    this.#legacyGroup =
      options.config.name === undefined && named.legacy !== named.name
        ? `${options.pipeline}/${named.legacy}`
        : undefined;
    this.#logger = options.logger.child({ sink: this.name });
    this.#sleep = options.sleep ?? ((ms, signal) => sleep(ms, undefined, { signal }));
    this.#random = options.random ?? Math.random;
  }

  async open(): Promise<Positions> {
    let committed = await this.#log.committedOffsets(this.group, this.#topic);
    if (committed.size === 0 && this.#legacyGroup !== undefined) {
      const legacy = await this.#log.committedOffsets(this.#legacyGroup, this.#topic);
      if (legacy.size > 0) {
        await this.#log.commitOffsets(this.group, this.#topic, legacy);
        committed = legacy;
      }
    }
    this.#positions.clear();
    for (const [partition, offset] of committed) this.#positions.set(partition, offset);
    this.#accepted.clear();
    for (const [partition, offset] of committed) this.#accepted.set(partition, offset);
    this.#held.clear();
    // Every mark stored, to the first group never written: a crash may have fallen between a commit and
    // the rewrite of the marks it passed, so the marks still ahead can come after some it passed.
    const stored: Array<ReadonlyMap<number, number>> = [];
    for (;;) {
      const mark = await this.#log.committedOffsets(this.#markGroup(stored.length), this.#topic);
      if (mark.size === 0) break;
      stored.push(mark);
    }
    this.#marks.length = 0;
    this.#marks.push(...stored);
    await this.#dropPassedMarks();
    this.#logger.info({ url: this.#url, positions: Object.fromEntries(committed) }, 'webhook sink opened');
    return new Map(this.#positions);
  }

  async write(batch: SinkBatch): Promise<SinkResult> {
    const ends = new Map(this.#accepted);
    for (const [partition, offset] of batch.positions)
      ends.set(partition, Math.max(offset, ends.get(partition) ?? 0));
    // Per partition, in offset order: the records held back, then the batch's new ones (a batch offered
    // again, by a retry or a stale runtime, holds records already taken).
    const byPartition = new Map<number, PipelineRecord[]>();
    for (const [partition, held] of this.#held) byPartition.set(partition, [...held]);
    for (const record of batch.records) {
      const { partition, offset } = record;
      if (offset < (this.#accepted.get(partition) ?? 0)) continue;
      ends.set(partition, Math.max(offset + 1, ends.get(partition) ?? 0));
      const records = byPartition.get(partition);
      if (records) records.push(record);
      else byPartition.set(partition, [record]);
    }
    const partitions = [...byPartition.keys()].sort((a, b) => a - b);
    for (const records of byPartition.values()) records.sort((a, b) => a.offset - b.offset);
    // Where this write ends, in the partitions it has records past the highest cut of.
    const mark = new Map<number, number>();
    for (const partition of partitions) {
      const last = byPartition.get(partition)!.at(-1)!.offset;
      if (!this.#cuts(partition).some((cut) => cut > last)) mark.set(partition, ends.get(partition)!);
    }
    if (mark.size > 0) {
      await this.#log.commitOffsets(this.#markGroup(this.#marks.length), this.#topic, mark);
      this.#marks.push(mark);
    }
    const size = this.#config.batch_size;
    const held = new Map<number, readonly PipelineRecord[]>();
    for (const partition of partitions) {
      const records = byPartition.get(partition)!;
      const cuts = this.#cuts(partition);
      for (let from = 0; from < records.length;) {
        const first = records[from]!.offset;
        const window = (Math.floor(first / size) + 1) * size;
        const next = Math.min(window, ...cuts.filter((cut) => cut > first));
        let to = from;
        while (to < records.length && records[to]!.offset < next) to++;
        const request = records.slice(from, to);
        from = to;
        if (next > ends.get(partition)!) {
          // Sent before with records past this batch's end (it was read with other limits): wait for them.
          held.set(partition, request);
          this.#logger.debug(
            { partition, from: first, records: request.length, until: next },
            'webhook sink holds records back until the batches complete their request',
          );
          break;
        }
        const key = idempotencyKey(this.#pipeline, this.name, request);
        if (this.#delivered.has(key)) continue;
        await this.#send(request, key);
        this.#delivered.add(key);
      }
    }
    const positions = new Map(ends);
    for (const [partition, records] of held) positions.set(partition, records[0]!.offset);
    await this.#log.commitOffsets(this.group, this.#topic, positions);
    for (const [partition, offset] of positions) this.#positions.set(partition, offset);
    for (const [partition, offset] of ends) this.#accepted.set(partition, offset);
    this.#held = held;
    this.#delivered.clear();
    await this.#dropPassedMarks();
    return {};
  }

  async close(): Promise<void> {
    this.#closing.abort();
  }

  #markGroup(n: number): string {
    return `${this.group}/pending/${n}`;
  }

  /** The offsets of `partition` the marks recorded, past its position: where its requests are cut too. */
  #cuts(partition: number): number[] {
    const position = this.#positions.get(partition) ?? 0;
    return this.#marks.flatMap((mark) => {
      const offset = mark.get(partition);
      return offset !== undefined && offset > position ? [offset] : [];
    });
  }

  /**
   * Forgets the marks the positions passed, and stores the others as groups 0, 1, … in their order. Any
   * prefix of these writes keeps every mark still ahead stored (each moves down, over one passed or
   * already copied); the groups past them keep passed marks or copies of these, which add no cut when read.
   */
  async #dropPassedMarks(): Promise<void> {
    const ahead = this.#marks.filter((mark) =>
      [...mark].some(([partition, offset]) => offset > (this.#positions.get(partition) ?? 0)),
    );
    if (ahead.length === this.#marks.length) return;
    for (const [n, mark] of ahead.entries())
      await this.#log.commitOffsets(this.#markGroup(n), this.#topic, mark);
    this.#marks.splice(0, this.#marks.length, ...ahead);
  }

  /** One request, with retries; resolves once the receiver answered 2xx. */
  async #send(records: readonly PipelineRecord[], key: string): Promise<void> {
    const body = Buffer.from(JSON.stringify({ records: records.map((r) => r.value) }));
    const { max_attempts: maxAttempts, initial_backoff: initial, max_backoff: max } = this.#config.retry;
    for (let attempt = 1; ; attempt++) {
      this.#checkOpen();
      const failure = await this.#attempt(body, key);
      if (failure === undefined) return;
      const context = {
        sink: this.name,
        url: this.#url,
        status: failure.status,
        attempts: attempt,
        idempotencyKey: key,
        records: records.length,
      };
      if (!failure.retryable) {
        throw new TributaryError(
          failure.status !== undefined && [400, 413, 415, 422].includes(failure.status)
            ? 'INVALID_INPUT'
            : 'SERVICE_UNAVAILABLE',
          `Webhook sink ${this.name}: ${failure.message}`,
          { context, cause: failure.cause, retryable: false, hint: hintFor(failure.status) },
        );
      }
      if (attempt >= maxAttempts) {
        throw new TributaryError(
          'SERVICE_UNAVAILABLE',
          `Webhook sink ${this.name}: ${failure.message} (gave up after ${attempt} attempt${attempt > 1 ? 's' : ''})`,
          {
            context,
            cause: failure.cause,
            retryable: true,
            hint: 'The pipeline retries the batch later; check that the receiver is up if this goes on.',
          },
        );
      }
      const wait = failure.retryAfterMs ?? backoff(attempt, initial, max, this.#random);
      this.#logger.warn(
        { url: this.#url, status: failure.status, attempt, waitMs: wait },
        `webhook request failed, retrying: ${failure.message}`,
      );
      try {
        await this.#sleep(wait, this.#closing.signal);
      } catch {
        this.#checkOpen();
      }
    }
  }

  /** Sends the request once; undefined when it succeeded, else what went wrong. */
  async #attempt(body: Buffer, key: string): Promise<Failure | undefined> {
    const headers: Record<string, string> = {
      'user-agent': 'tributary',
      ...(this.#target.authorization ? { authorization: this.#target.authorization } : {}),
      ...this.#config.headers,
      'content-type': 'application/json',
      'idempotency-key': key,
    };
    if (this.#config.secret !== undefined) {
      const timestamp = String(Math.floor(Date.now() / 1000));
      headers['x-tributary-timestamp'] = timestamp;
      headers['x-tributary-signature'] = signature(this.#config.secret, timestamp, body);
    }
    const signal = AbortSignal.any([AbortSignal.timeout(this.#config.timeout), this.#closing.signal]);
    const where = `${this.#config.method} ${this.#url}`;
    try {
      const response = await fetch(this.#target.url, {
        method: this.#config.method,
        headers,
        body,
        signal,
        redirect: 'manual',
      });
      const snippet = await readSnippet(response);
      if (response.status >= 200 && response.status < 300) return undefined;
      const status = response.status;
      const answered = `${where} answered ${status}${response.statusText ? ` ${response.statusText}` : ''}${snippet ? `: ${snippet}` : ''}`;
      if (status === 429 || status === 503) {
        const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), Date.now());
        return {
          retryable: true,
          status,
          message: answered,
          ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
        };
      }
      return { retryable: status === 408 || status >= 500, status, message: answered };
    } catch (error) {
      this.#checkOpen();
      const name = (error as { name?: unknown } | null)?.name;
      if (name === 'TimeoutError' || name === 'AbortError') {
        return {
          retryable: true,
          message: `${where} timed out after ${this.#config.timeout} ms`,
          cause: error,
        };
      }
      const cause = (error as { cause?: unknown } | null)?.cause;
      if (error instanceof TypeError && cause !== undefined) {
        // fetch's network failure: refused, reset, unknown host, TLS.
        const code = (cause as { code?: unknown }).code;
        const detail =
          typeof code === 'string' ? code : cause instanceof Error ? cause.message : 'network error';
        return { retryable: true, message: `${where} failed: ${detail}`, cause: error };
      }
      // Not the error's own message: fetch's names the URL (credentials, path) or the header value at fault.
      return {
        retryable: false,
        message: `${where} could not be sent: ${this.#redacted(error instanceof Error ? error.message : String(error))}`,
      };
    }
  }

  /** `text` without the URL's secrets (credentials, query, path) or any header value. */
  #redacted(text: string): string {
    let out = text;
    for (const secret of [this.#config.url, this.#target.url, ...Object.values(this.#config.headers)])
      if (secret.length >= 4) out = out.split(secret).join('[redacted]');
    return out;
  }

  #checkOpen(): void {
    if (this.#closing.signal.aborted) {
      throw new TributaryError('SERVICE_UNAVAILABLE', `Webhook sink ${this.name} was closed during a write`, {
        context: { sink: this.name },
        retryable: true,
      });
    }
  }
}

/**
 * The name of a sink without one configured: `webhook:<host><path>` (its identity: consumer group and
 * idempotency keys), or, when that path has secrets to hide (more than one segment), `webhook:<host>/<first
 * segment>/…#<hash of the URL>`; `legacy` is the name earlier versions gave it.
 */
function defaultName(url: string): { name: string; legacy: string } {
  const parsed = new URL(url);
  const legacy = `webhook:${parsed.host}${parsed.pathname}`;
  const shown = safeUrl(url).replace(/^https?:\/\//, '');
  if (!shown.endsWith('…')) return { name: legacy, legacy };
  // Host and path only, as the legacy name: a token rotated in the query keeps the sink's identity.
  const hash = createHash('sha256').update(`${parsed.host}${parsed.pathname}`).digest('hex');
  return { name: `webhook:${shown}#${hash.slice(0, 12)}`, legacy };
}

function hintFor(status: number | undefined): string {
  if (status === 401 || status === 403)
    return 'Check the credentials the receiver expects (headers, secret).';
  if (status === 404 || status === 405) return 'Check the url and method of the sink.';
  if (status === 413) return 'The receiver takes smaller requests: lower batch_size.';
  if (status !== undefined && status >= 300 && status < 400) {
    return 'Point url at the final address: the sink does not follow redirects.';
  }
  if (status !== undefined && status < 500) return 'The receiver refuses these records; see its answer.';
  return 'See the message; the pipeline stops until this is fixed.';
}

/** The start of the answer's body as one line (the rest is discarded). */
async function readSnippet(response: Response): Promise<string> {
  if (!response.body) return '';
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  try {
    while (length < MAX_SNIPPET) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      length += value.length;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  const text = Buffer.concat(chunks).toString('utf8').replace(/\s+/g, ' ').trim();
  return text.length > MAX_SNIPPET ? `${text.slice(0, MAX_SNIPPET)}…` : text;
}
