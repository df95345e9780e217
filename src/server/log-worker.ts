/**
 * The worker-thread side of `ThreadedLog` (threaded-log.ts): owns the embedded log and answers the calls
 * the main thread posts. Appends are taken in rounds: every append that arrived while the previous round
 * was being committed is issued together (`appendTogether`: one transaction, one fsync), and answers are
 * posted back in batches.
 *
 * Deduplication happens here, for appends that carry a stream's event ids (dedupe.ts): the round decides
 * which of its events are duplicates of ids the stream accepted within its window — or of an earlier
 * event of the same round — drops them, and once the transaction is durable keeps the ids of the others.
 * Rounds never overlap, so each decision sees every earlier one's outcome, and no id is held "in flight":
 * a failed transaction keeps nothing, and a retry of its events is decided afresh. The ids are written to
 * the journal just after the answers leave; a write that fails is retried with a growing delay, and
 * /readyz reports the dedupe store failed (`dedupeFailure`) meanwhile.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isTributaryError } from '../errors.ts';
import { EmbeddedLog, MAX_RECORDS_PER_TRANSACTION, type EmbeddedLogOptions } from '../log/embedded-log.ts';
import type { Log } from '../log/log.ts';
import { withoutRecords, type EncodedRecords } from '../log/record-batch.ts';
import { decodeAppends, type DecodedAppend } from './append-codec.ts';
import { DedupeStore, type Acknowledged } from './dedupe.ts';
import { setPrint } from './id-index.ts';

export interface WorkerOptions {
  readonly log: EmbeddedLogOptions;
}

/** What the worker needs to deduplicate appends (the `dedupe` request). */
export interface DedupeOptions {
  /** Where the dedupe store lives. */
  readonly directory: string;
  /** Each stream's dedupe window (ms). */
  readonly windows: ReadonlyArray<readonly [string, number]>;
  /** Ids held in memory at most (server.dedupe_max_ids). */
  readonly maxIds: number;
  /** The streams' topics (topic, stream), whose ids are recovered from the log on opening. */
  readonly topics: ReadonlyArray<readonly [string, string]>;
}

/** The dedupe store's figures, posted once a second (for the metrics). */
export interface DedupeStats {
  readonly ids: number;
  readonly bytes: number;
  readonly forgotEarly: number;
}

export type Request =
  /**
   * Appends encoded by append-codec.ts; each is answered with its positions as [partition, offset, …], or
   * null when its sender said it does not need them — one that deduplicates with how many of its records
   * were duplicates, dropped.
   */
  | { readonly op: 'append'; readonly buffer: ArrayBuffer; readonly length: number }
  /** Opens the dedupe store and recovers the ids of the crash window; answered with how many. */
  | { readonly op: 'dedupe'; readonly id: number; readonly options: DedupeOptions }
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
  /** Writes to the dedupe store fail (the error) or, with null, succeed again. */
  | { readonly dedupeFailure: string | null }
  | { readonly dedupeStats: DedupeStats };

/** The delays between attempts to write ids to the dedupe store after a failed write. */
const RETRY_FIRST_MS = 50;
const RETRY_LAST_MS = 5_000;
const TICK_MS = 1000;

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

/** The highest offset per partition of `pairs` ([partition, offset, …]): the watermarks an append completes. */
function marksOf(topic: string, pairs: Float64Array): Acknowledged[] {
  const highest = new Map<number, number>();
  for (let i = 0; i < pairs.length; i += 2) {
    const partition = pairs[i]!;
    const offset = pairs[i + 1]!;
    if (!((highest.get(partition) ?? -1) >= offset)) highest.set(partition, offset);
  }
  const marks: Acknowledged[] = [];
  for (const [partition, offset] of highest) marks.push({ topic, partition, offset });
  return marks;
}

/** An append of a round, with the records kept (its duplicates dropped) and the ids it admitted. */
interface RoundItem {
  readonly append: DecodedAppend;
  readonly records: EncodedRecords;
  /** The round's admitted ids from `from` to `to` are this append's (dedupe.ts `keep`). */
  readonly from: number;
  readonly to: number;
  readonly duplicates: number;
}

/** Drops the records of `append` that are duplicates (`DedupeStore.admitPrint`). */
function deduplicate(
  store: DedupeStore,
  append: DecodedAppend,
  dedupe: NonNullable<DecodedAppend['dedupe']>,
): RoundItem {
  const from = store.admitted;
  const { stream, prints } = dedupe;
  const count = append.records.count;
  let dropped: Uint8Array | undefined;
  let duplicates = 0;
  for (let i = 0; i < count; i++) {
    // Word 2 of a fingerprint is never 0: all 0 is a record without an id to deduplicate on.
    if (prints[3 * i + 2] === 0) continue;
    setPrint(prints[3 * i]!, prints[3 * i + 1]!, prints[3 * i + 2]!);
    if (!store.admitPrint(stream)) {
      (dropped ??= new Uint8Array(count))[i] = 1;
      duplicates++;
    }
  }
  const records = dropped ? withoutRecords(append.records, dropped) : append.records;
  return { append, records, from, to: store.admitted, duplicates };
}

async function main(): Promise<void> {
  const port = parentPort!;
  const options = workerData as WorkerOptions;
  let log: EmbeddedLog;
  try {
    log = await EmbeddedLog.open(options.log);
  } catch (error) {
    port.postMessage({ ready: false, error: serializeError(error) } satisfies Message);
    return;
  }
  let dedupe: DedupeStore | undefined;
  const aborts = new Map<number, AbortController>();
  let replies: Reply[] = [];
  /** Rounds answered kept ids that the store has not written yet. */
  let unwritten = false;
  let retry: NodeJS.Timeout | undefined;
  let retryMs = RETRY_FIRST_MS;
  let failing = false;
  // A failed write keeps the ids queued in the store (they are in its memory already), and is tried again
  // later with what was queued meanwhile.
  const write = () => {
    retry = undefined;
    if (!dedupe) return;
    const error = dedupe.flush();
    if (error) {
      if (!failing) port.postMessage({ dedupeFailure: error.message } satisfies Message);
      failing = true;
      retry = setTimeout(write, retryMs);
      retryMs = Math.min(2 * retryMs, RETRY_LAST_MS);
      return;
    }
    retryMs = RETRY_FIRST_MS;
    unwritten = false;
    // A journal that stopped (a failed sync) keeps /readyz failed, but holds nothing: the ids are in
    // memory, and a restart reads them again from the log.
    const stopped = dedupe.journalFailure;
    if (stopped && !failing) port.postMessage({ dedupeFailure: stopped.message } satisfies Message);
    else if (!stopped && failing) port.postMessage({ dedupeFailure: null } satisfies Message);
    failing = stopped !== undefined;
  };
  // Once a second: the figures, and a write of what waits for time rather than for more ids (the
  // watermarks, synced to ingest.db at most once a second), so that it is not left until the next append.
  const tick = setInterval(() => {
    if (!dedupe) return;
    port.postMessage({ dedupeStats: dedupe.stats } satisfies Message);
    if (retry === undefined) write();
  }, TICK_MS);
  tick.unref();
  let scheduled = false;
  const reply = (answer: Reply) => {
    replies.push(answer);
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      const batch = replies;
      replies = [];
      // The answers leave first: their events are durable, and their ids already in the store's memory.
      port.postMessage({ replies: batch } satisfies Message);
      // While a retry is due, these wait for it rather than meet the failure again now.
      if (unwritten && retry === undefined) write();
    });
  };
  const settle = (id: number, work: Promise<unknown>) =>
    work.then(
      (value) => reply({ id, ok: true, value }),
      (error: unknown) => reply({ id, ok: false, error: serializeError(error) }),
    );

  /** The last opening of the dedupe store (the `dedupe` request), settled or not. */
  let opening: Promise<unknown> = Promise.resolve();
  /** Appends received, not yet in a round. */
  const queue: DecodedAppend[] = [];
  let roundActive = false;
  let roundScheduled = false;
  /** While the dedupe store is being opened, no round starts (they would be decided without it). */
  let paused = false;
  /** Called whenever no round is active nor due. */
  let whenIdle: Array<() => void> = [];
  const idle = () => new Promise<void>((resolve) => whenIdle.push(resolve));
  const scheduleRound = () => {
    if (roundActive || roundScheduled) return;
    if (queue.length === 0 || paused) {
      const waiting = whenIdle;
      whenIdle = [];
      for (const resolve of waiting) resolve();
      return;
    }
    roundScheduled = true;
    // After this turn: what else arrives in it joins the round.
    setImmediate(round);
  };
  const round = () => {
    roundScheduled = false;
    const appends: DecodedAppend[] = [];
    let records = 0;
    while (
      queue.length > 0 &&
      (appends.length === 0 || records + queue[0]!.records.count <= MAX_RECORDS_PER_TRANSACTION)
    ) {
      const append = queue.shift()!;
      appends.push(append);
      records += append.records.count;
    }
    roundActive = true;
    let left = appends.length;
    const done = () => {
      if (--left > 0) return;
      roundActive = false;
      scheduleRound();
    };
    // The store the round decides with keeps its ids, whatever happens to `dedupe` meanwhile.
    const store = dedupe;
    let items: Array<RoundItem | Error>;
    let results: Array<Promise<Float64Array>>;
    try {
      store?.beginRound();
      items = appends.map((append): RoundItem | Error => {
        if (append.dedupe === undefined)
          return { append, records: append.records, from: 0, to: 0, duplicates: 0 };
        if (!store) return new Error('the log worker has no dedupe store (the server did not open it)');
        return deduplicate(store, append, append.dedupe);
      });
      // One transaction: the ids a round admitted are durable together or not at all. (An append whose
      // topic does not exist fails alone; an id's duplicates are in its stream, so its topic, which fails
      // them all.)
      results = log.appendTogether(
        items
          .filter((item): item is RoundItem => !(item instanceof Error))
          .map((item) => ({ topic: item.append.topic, records: item.records })),
      );
    } catch (error) {
      // Nothing of the round was appended: it fails whole, and the next one goes on.
      for (const append of appends)
        void settle(
          append.id,
          Promise.reject(error instanceof Error ? error : new Error(String(error))),
        ).finally(done);
      return;
    }
    let next = 0;
    items.forEach((item, i) => {
      const id = appends[i]!.id;
      if (item instanceof Error) {
        void settle(id, Promise.reject(item)).finally(done);
        return;
      }
      // Settled in the order of the log (one transaction resolves its appends in order), so the
      // watermarks the store keeps follow it.
      const kept = results[next++]!.then((pairs) => {
        if (item.append.dedupe !== undefined) {
          store!.keep(item.from, item.to, marksOf(item.append.topic, pairs));
          unwritten = true;
          return item.duplicates;
        }
        return item.append.positions ? pairs : null;
      });
      void settle(id, kept).finally(done);
    });
  };

  port.on('message', (request: Request) => {
    if (request.op === 'append') {
      for (const append of decodeAppends(new Uint8Array(request.buffer, 0, request.length)))
        queue.push(append);
      scheduleRound();
      return;
    }
    if (request.op === 'abort') {
      aborts.get(request.id)?.abort();
      return;
    }
    if (request.op === 'dedupe') {
      const { directory, windows, maxIds, topics } = request.options;
      // One opening at a time, in the order asked.
      const opened = opening
        .catch(() => undefined)
        .then(async () => {
          // Opened again (another server on this log): the rounds decided with the old store finish
          // first, and no round starts until the new one has recovered what they appended.
          paused = true;
          try {
            if (roundActive || roundScheduled) await idle();
            dedupe?.close();
            dedupe = undefined;
            const store = DedupeStore.open(directory, new Map(windows), { autoFlush: false, maxIds });
            try {
              const recovered = await store.recover(log, new Map(topics));
              dedupe = store;
              port.postMessage({ dedupeStats: store.stats } satisfies Message);
              return recovered;
            } catch (error) {
              store.close();
              throw error;
            }
          } finally {
            paused = false;
            scheduleRound();
          }
        });
      opening = opened;
      void settle(request.id, opened);
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
      // The rounds first: what was received is appended, its ids kept; then the log, then the store.
      paused = false;
      const drained = idle();
      scheduleRound();
      void settle(
        request.id,
        drained
          .then(() => log.close())
          .then(() => {
            clearTimeout(retry);
            clearInterval(tick);
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
