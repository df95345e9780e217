/**
 * The webhook sink: each batch is sent as HTTP requests of `batch_size` records, `{"records": [values…]}`,
 * one after the other (so a partition's records arrive in order).
 *
 * Delivery is at-least-once. A receiver cannot store our positions with its data, so the sink keeps them
 * in the log's consumer-group offsets (group `<pipeline>/<sink>`), committed after every request of the
 * batch succeeded; `open()` reads them back. A crash between the last request and that commit sends the
 * batch again. Every request carries an `Idempotency-Key` computed from the pipeline, the sink and the
 * offsets it holds, so the repeat has the same key and the receiver can drop it. For the repeat to be
 * cut into the same requests, where each write's records end is recorded before its first request, as a
 * mark (groups `<pipeline>/<sink>/pending/<n>`, n counting the marks since the last commit): records are
 * sent by partition, then offset, in parts cut at the marks, each partition's records of a part chunked
 * from their start (a request holds one partition's records) — so after
 * a crash, or a failure and a retry, the records sent before go out in the same requests whatever the
 * batch read again holds beyond them. Within one process, a batch retried after a failure skips the
 * requests that already succeeded.
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
  /** The marks since the last commit: where each write's records ended, in order (see the module comment). */
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
    // Marks left by a run that stopped before its commit: those past the positions (older ones are not).
    this.#marks.length = 0;
    for (;;) {
      const mark = await this.#log.committedOffsets(this.#markGroup(this.#marks.length), this.#topic);
      if (![...mark].some(([partition, offset]) => offset > (this.#positions.get(partition) ?? 0))) break;
      this.#marks.push(mark);
    }
    this.#logger.info({ url: this.#url, positions: Object.fromEntries(committed) }, 'webhook sink opened');
    return new Map(this.#positions);
  }

  async write(batch: SinkBatch): Promise<SinkResult> {
    const records = batch.records
      .filter((r) => r.offset >= (this.#positions.get(r.partition) ?? 0))
      .sort((a, b) => a.partition - b.partition || a.offset - b.offset);
    // Part n: the records before mark n and past the marks before it; the last, those past every mark.
    const marks = this.#marks;
    const parts: PipelineRecord[][] = Array.from({ length: marks.length + 1 }, () => []);
    for (const record of records) {
      const part = marks.findIndex((mark) => record.offset < (mark.get(record.partition) ?? 0));
      parts[part < 0 ? marks.length : part]!.push(record);
    }
    if (parts[marks.length]!.length > 0) {
      const end = new Map(marks.at(-1) ?? this.#positions);
      for (const [partition, offset] of batch.positions)
        end.set(partition, Math.max(offset, end.get(partition) ?? 0));
      await this.#log.commitOffsets(this.#markGroup(marks.length), this.#topic, end);
      marks.push(end);
    }
    // Requests never span partitions: a batch read again may hold another set of partitions (a backlog
    // fills it from the first), and a partition's records of a part are then still cut the same way.
    const size = this.#config.batch_size;
    for (const part of parts) {
      for (let from = 0; from < part.length;) {
        const partition = part[from]!.partition;
        let to = from;
        while (to < part.length && part[to]!.partition === partition && to - from < size) to++;
        const chunk = part.slice(from, to);
        from = to;
        const key = idempotencyKey(this.#pipeline, this.name, chunk);
        if (this.#delivered.has(key)) continue;
        await this.#send(chunk, key);
        this.#delivered.add(key);
      }
    }
    const positions = new Map(this.#positions);
    for (const [partition, offset] of batch.positions) {
      positions.set(partition, Math.max(offset, positions.get(partition) ?? 0));
    }
    await this.#log.commitOffsets(this.group, this.#topic, positions);
    for (const [partition, offset] of positions) this.#positions.set(partition, offset);
    this.#delivered.clear();
    // Marks at or before the positions are done with; the next write's mark is numbered after the others
    // (there are none left unless this batch ended before a mark: the batch limits were lowered).
    const left = marks.filter((mark) => [...mark].some(([p, offset]) => offset > (positions.get(p) ?? 0)));
    if (left.length < marks.length) {
      for (const [n, mark] of left.entries())
        await this.#log.commitOffsets(this.#markGroup(n), this.#topic, mark);
      marks.splice(0, marks.length, ...left);
    }
    return {};
  }

  async close(): Promise<void> {
    this.#closing.abort();
  }

  #markGroup(n: number): string {
    return `${this.group}/pending/${n}`;
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
