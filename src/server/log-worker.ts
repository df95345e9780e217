/**
 * The worker-thread side of `ThreadedLog` (threaded-log.ts): owns the embedded log and answers the calls
 * the main thread posts. Appends that arrive together are issued in the same turn of this thread's event
 * loop, so the embedded log group-commits them; answers are posted back in batches. An append may carry
 * the event ids to remember for deduplication (dedupe.ts): they are written here, after the log's commit
 * and just after the answer (then the worker says `recorded`; the server holds the ids as in flight until
 * then), so the server thread never writes to the dedupe store on the hot path and no answer waits for
 * that write. A write that fails is retried with a growing delay, and `recorded` is said only once it
 * succeeded: meanwhile the server keeps holding the ids (a retry of them waits rather than being appended
 * again) and /readyz reports the dedupe store failed (`dedupeFailure`).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isTributaryError } from '../errors.ts';
import { EmbeddedLog, type EmbeddedLogOptions } from '../log/embedded-log.ts';
import type { Log, LogRecord, RecordPosition } from '../log/log.ts';
import { decodeAppends, type AppendDedupe } from './append-codec.ts';
import {
  DedupeStore,
  HEADER_DEDUPE,
  HEADER_EVENT_ID,
  type Acknowledged,
  type RecordedEvent,
} from './dedupe.ts';

export interface WorkerOptions {
  readonly log: EmbeddedLogOptions;
  /** Where the dedupe store lives, for appends that carry ids to remember. */
  readonly dedupeDirectory?: string;
}

export type Request =
  /**
   * Appends encoded by append-codec.ts; each is answered with its positions as [partition, offset, …], or
   * null when its sender said it does not need them.
   */
  | { readonly op: 'append'; readonly buffer: ArrayBuffer; readonly length: number }
  | { readonly op: 'abort'; readonly id: number }
  | { readonly op: 'call'; readonly id: number; readonly method: string; readonly args: readonly unknown[] };

export interface SerializedError {
  readonly code?: string;
  readonly message: string;
  readonly retryable?: boolean;
  readonly hint?: string;
  readonly context?: Record<string, unknown>;
}

export type Reply =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly error: SerializedError };

export type Message =
  | { readonly ready: true }
  | { readonly ready: false; readonly error: SerializedError }
  | { readonly replies: Reply[] }
  /** The ids these appends carried are written to the dedupe store (they were answered before). */
  | { readonly recorded: number[] }
  /** Writes to the dedupe store fail (the error) or, with null, succeed again. */
  | { readonly dedupeFailure: string | null };

/** The delays between attempts to write ids to the dedupe store after a failed write. */
const RETRY_FIRST_MS = 50;
const RETRY_LAST_MS = 5_000;

export function serializeError(error: unknown): SerializedError {
  if (isTributaryError(error)) {
    let context: Record<string, unknown> | undefined;
    try {
      context = structuredClone(error.context);
    } catch {
      context = undefined;
    }
    return {
      code: error.code,
      message: error.message,
      retryable: error.retryable,
      hint: error.hint,
      context,
    };
  }
  return { message: error instanceof Error ? error.message : String(error) };
}

const METHODS = new Set([
  'ensureTopic',
  'listTopics',
  'describeTopic',
  'read',
  'offsets',
  'committedOffsets',
  'commitOffsets',
  'enforceRetention',
  'close',
]);

/** Positions as [partition, offset, …]: one typed array to post instead of an object per record. */
function pairsOf(positions: readonly RecordPosition[]): Float64Array {
  const pairs = new Float64Array(2 * positions.length);
  for (let i = 0; i < positions.length; i++) {
    pairs[2 * i] = positions[i]!.partition;
    pairs[2 * i + 1] = positions[i]!.offset;
  }
  return pairs;
}

/**
 * Records in the dedupe store the ids of durable records: those whose headers mark them for dedupe, the
 * very rule recovery applies to the log (dedupe.ts), and the watermark of each partition written.
 */
function remember(
  store: DedupeStore,
  topic: string,
  records: readonly LogRecord[],
  positions: readonly RecordPosition[],
  dedupe: AppendDedupe,
): void {
  const events: RecordedEvent[] = [];
  for (const record of records) {
    const headers = record.headers;
    if (headers?.[HEADER_DEDUPE] === '1' && headers[HEADER_EVENT_ID] !== undefined)
      events.push({ stream: dedupe.stream, id: headers[HEADER_EVENT_ID] });
  }
  // The highest offset per partition is all the watermark needs.
  const highest = new Map<number, number>();
  for (const { partition, offset } of positions)
    if (!((highest.get(partition) ?? -1) >= offset)) highest.set(partition, offset);
  const marks: Acknowledged[] = [];
  for (const [partition, offset] of highest) marks.push({ topic, partition, offset });
  store.record(events, marks, dedupe.batch ? { stream: dedupe.stream, ...dedupe.batch } : undefined);
}

async function main(): Promise<void> {
  const port = parentPort!;
  const options = workerData as WorkerOptions;
  let log: EmbeddedLog;
  let dedupe: DedupeStore | undefined;
  try {
    log = await EmbeddedLog.open(options.log);
    if (options.dedupeDirectory !== undefined)
      dedupe = DedupeStore.open(options.dedupeDirectory, new Map(), { autoFlush: false, lookups: false });
  } catch (error) {
    port.postMessage({ ready: false, error: serializeError(error) } satisfies Message);
    return;
  }
  const aborts = new Map<number, AbortController>();
  let replies: Reply[] = [];
  /** The appends answered in `replies` that carried ids to record. */
  let recorded: number[] = [];
  /** Appends answered whose ids are queued in the store and not written yet. */
  let unwritten: number[] = [];
  let retry: NodeJS.Timeout | undefined;
  let retryMs = RETRY_FIRST_MS;
  let failing = false;
  // Says `recorded` only for ids the store has written: a failed write keeps them queued in the store
  // and held by the server, and is tried again later (with what was queued meanwhile).
  const write = () => {
    retry = undefined;
    const error = dedupe?.flush();
    if (error) {
      if (!failing) port.postMessage({ dedupeFailure: error.message } satisfies Message);
      failing = true;
      retry = setTimeout(write, retryMs);
      retryMs = Math.min(2 * retryMs, RETRY_LAST_MS);
      return;
    }
    retryMs = RETRY_FIRST_MS;
    // A journal that stopped (a failed sync) keeps /readyz failed, but holds nothing: the ids are in the
    // server's memory, and a restart reads them again from the log.
    const stopped = dedupe?.journalFailure;
    if (stopped && !failing) port.postMessage({ dedupeFailure: stopped.message } satisfies Message);
    else if (!stopped && failing) port.postMessage({ dedupeFailure: null } satisfies Message);
    failing = stopped !== undefined;
    const ids = unwritten;
    unwritten = [];
    port.postMessage({ recorded: ids } satisfies Message);
  };
  let scheduled = false;
  const reply = (answer: Reply) => {
    replies.push(answer);
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      const batch = replies;
      const ids = recorded;
      replies = [];
      recorded = [];
      // The answers leave first: their events are durable. The server holds their ids as in flight until
      // the ids are written (`recorded`), so a retry waits for that rather than every answer for the write
      // (and a checkpoint of ingest.db it may do).
      port.postMessage({ replies: batch } satisfies Message);
      if (ids.length === 0) return;
      for (const id of ids) unwritten.push(id);
      // While a retry is due, these wait for it rather than meet the failure again now.
      if (retry === undefined) write();
    });
  };
  const settle = (id: number, work: Promise<unknown>) =>
    work.then(
      (value) => reply({ id, ok: true, value }),
      (error: unknown) => reply({ id, ok: false, error: serializeError(error) }),
    );

  port.on('message', (request: Request) => {
    if (request.op === 'append') {
      for (const item of decodeAppends(new Uint8Array(request.buffer, 0, request.length))) {
        const appended = log.append(item.topic, item.records);
        void settle(
          item.id,
          appended.then((positions) => {
            if (item.dedupe) {
              if (dedupe) remember(dedupe, item.topic, item.records, positions, item.dedupe);
              recorded.push(item.id);
            }
            return item.positions ? pairsOf(positions) : null;
          }),
        );
      }
      return;
    }
    if (request.op === 'abort') {
      aborts.get(request.id)?.abort();
      return;
    }
    if (!METHODS.has(request.method)) {
      reply({ id: request.id, ok: false, error: { message: `unknown log method ${request.method}` } });
      return;
    }
    const args = [...request.args];
    if (request.method === 'read') {
      const controller = new AbortController();
      aborts.set(request.id, controller);
      args[3] = { ...(args[3] ?? {}), signal: controller.signal };
    }
    if (request.method === 'close') {
      // The log first: appends still pending complete and record their ids, then the store writes them.
      void settle(
        request.id,
        log.close().then(() => {
          clearTimeout(retry);
          dedupe?.close();
        }),
      );
      return;
    }
    const method = (log as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[request.method]!;
    void settle(
      request.id,
      (async () => method.apply(log as Log, args))().finally(() => aborts.delete(request.id)),
    );
  });
  port.postMessage({ ready: true } satisfies Message);
}

await main();
