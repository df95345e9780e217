/**
 * The worker-thread side of `ThreadedLog` (threaded-log.ts): owns the embedded log and answers the calls
 * the main thread posts. Appends are taken in rounds: every append that arrived while the previous round
 * was being committed is issued together (`appendTogether`: one transaction, one fsync), and answers are
 * posted back in batches.
 *
 * Other threads talk to it too, each through a port of its own (`ThreadedLog#connect`, the `connect`
 * request): their appends join the same rounds, in the order they arrive, and are decided by the same
 * dedupe store; each is answered on the port it came from. A port that closes (its thread ended) is
 * forgotten: its appends already received are still appended, their answers dropped, and its reads are
 * aborted. Only the thread that started the worker opens the dedupe store and closes the log.
 *
 * Deduplication happens here, for appends that carry a stream's event ids (dedupe.ts): the round decides
 * which of its events are duplicates of ids the stream accepted within its window — or of an earlier
 * event of the same round — drops them, and once the transaction is durable keeps the ids of the others.
 * Rounds never overlap, so each decision sees every earlier one's outcome, and no id is held "in flight":
 * a failed transaction keeps nothing, and a retry of its events is decided afresh. The ids are written to
 * the journal just after the answers leave; a write that fails is retried with a growing delay, and
 * /readyz reports the dedupe store failed (`dedupeFailure`) meanwhile.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
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
  /** Serves `port` too (transferred with the message), as another client of the same log; not answered. */
  | { readonly op: 'connect'; readonly port: MessagePort }
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

const CLOSING: SerializedError = {
  code: 'STORAGE_IO',
  message: 'the log is closing: Tributary is stopping',
  retryable: true,
  hint: 'retry after the Retry-After delay',
};

/** What a client over a port is refused: only the thread that started the worker opens the store and closes the log. */
const NOT_OWNER = {
  dedupe: {
    code: 'INTERNAL',
    message:
      'a client over a port cannot open the dedupe store: the thread that started the log worker opens it, and appends from every port use it',
  },
  close: {
    code: 'INTERNAL',
    message:
      'a client over a port cannot close the log: the thread that started the log worker closes it (close() of a port client closes its port)',
  },
} as const satisfies Record<string, SerializedError>;

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

/** A thread the worker serves: the one that started it (parentPort) or one connected by a port. */
interface Client {
  readonly port: MessagePort;
  /** The thread that started the worker: it alone opens the dedupe store and closes the log. */
  readonly owner: boolean;
  /** Answers not posted yet: one `replies` message per turn. */
  replies: Reply[];
  /** Its reads under way, by request id (ids are the client's own). */
  readonly aborts: Map<number, AbortController>;
  /** Its port closed: answers are dropped. */
  closed: boolean;
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
  const options = workerData as WorkerOptions;
  let log: EmbeddedLog;
  try {
    log = await EmbeddedLog.open(options.log);
  } catch (error) {
    parentPort!.postMessage({ ready: false, error: serializeError(error) } satisfies Message);
    return;
  }
  let dedupe: DedupeStore | undefined;
  /** The clients whose ports are open. */
  const clients = new Set<Client>();
  const broadcast = (message: Message) => {
    for (const client of clients) client.port.postMessage(message);
  };
  /** Rounds answered kept ids that the store has not written yet. */
  let unwritten = false;
  let retry: NodeJS.Timeout | undefined;
  let retryMs = RETRY_FIRST_MS;
  /** Why writes to the dedupe store fail, as last told to the clients; undefined while they succeed. */
  let failing: string | undefined;
  const report = (failure: string | undefined) => {
    failing = failure;
    broadcast({ dedupeFailure: failure ?? null });
  };
  // A failed write keeps the ids queued in the store (they are in its memory already), and is tried again
  // later with what was queued meanwhile.
  const write = () => {
    retry = undefined;
    if (!dedupe) return;
    const error = dedupe.flush();
    if (error) {
      if (failing === undefined) report(error.message);
      retry = setTimeout(write, retryMs);
      retryMs = Math.min(2 * retryMs, RETRY_LAST_MS);
      return;
    }
    retryMs = RETRY_FIRST_MS;
    unwritten = false;
    // A journal that stopped (a failed sync) keeps /readyz failed, but holds nothing: the ids are in
    // memory, and a restart reads them again from the log.
    const stopped = dedupe.journalFailure;
    if (stopped && failing === undefined) report(stopped.message);
    else if (!stopped && failing !== undefined) report(undefined);
  };
  // Once a second: the figures, and a write of what waits for time rather than for more ids (the
  // watermarks, synced to ingest.db at most once a second), so that it is not left until the next append.
  const tick = setInterval(() => {
    if (!dedupe) return;
    broadcast({ dedupeStats: dedupe.stats });
    if (retry === undefined) write();
  }, TICK_MS);
  tick.unref();
  let scheduled = false;
  /** The clients with answers to post. */
  let answering: Client[] = [];
  const postReplies = () => {
    scheduled = false;
    const posting = answering;
    answering = [];
    // The answers leave first: their events are durable, and their ids already in the store's memory.
    for (const client of posting) {
      const batch = client.replies;
      client.replies = [];
      if (!client.closed) client.port.postMessage({ replies: batch } satisfies Message);
    }
    // While a retry is due, these wait for it rather than meet the failure again now.
    if (unwritten && retry === undefined) write();
  };
  const reply = (client: Client, answer: Reply) => {
    if (client.replies.push(answer) === 1) answering.push(client);
    if (scheduled) return;
    scheduled = true;
    setImmediate(postReplies);
  };
  const settle = (client: Client, id: number, work: Promise<unknown>) =>
    work.then(
      (value) => reply(client, { id, ok: true, value }),
      (error: unknown) => reply(client, { id, ok: false, error: serializeError(error) }),
    );

  /** The last opening of the dedupe store (the `dedupe` request), settled or not. */
  let opening: Promise<unknown> = Promise.resolve();
  /** Appends received, not yet in a round, and who sent each. */
  const queue: DecodedAppend[] = [];
  const senders: Client[] = [];
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
    const from: Client[] = [];
    let records = 0;
    while (
      queue.length > 0 &&
      (appends.length === 0 || records + queue[0]!.records.count <= MAX_RECORDS_PER_TRANSACTION)
    ) {
      const append = queue.shift()!;
      appends.push(append);
      from.push(senders.shift()!);
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
      appends.forEach((append, i) => {
        void settle(
          from[i]!,
          append.id,
          Promise.reject(error instanceof Error ? error : new Error(String(error))),
        ).finally(done);
      });
      return;
    }
    let next = 0;
    items.forEach((item, i) => {
      const id = appends[i]!.id;
      const client = from[i]!;
      if (item instanceof Error) {
        void settle(client, id, Promise.reject(item)).finally(done);
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
      void settle(client, id, kept).finally(done);
    });
  };

  /** Set once the owner's close has drained the rounds: nothing more is appended. */
  let logClosed = false;
  const serve = (client: Client, request: Request) => {
    // Another thread's request that comes once the owner closed the log: the process is stopping, and
    // whoever sent it is told to retry (an HTTP thread answers 503), not that something is wrong.
    if (logClosed && request.op !== 'connect' && request.op !== 'abort') {
      if (request.op === 'append') {
        for (const append of decodeAppends(new Uint8Array(request.buffer, 0, request.length)))
          reply(client, { id: append.id, ok: false, error: CLOSING });
      } else reply(client, { id: request.id, ok: false, error: CLOSING });
      return;
    }
    if (request.op === 'append') {
      for (const append of decodeAppends(new Uint8Array(request.buffer, 0, request.length))) {
        queue.push(append);
        senders.push(client);
      }
      scheduleRound();
      return;
    }
    if (request.op === 'abort') {
      client.aborts.get(request.id)?.abort();
      return;
    }
    if (request.op === 'connect') {
      attach(request.port, false);
      return;
    }
    if (request.op === 'dedupe') {
      if (!client.owner) {
        reply(client, { id: request.id, ok: false, error: NOT_OWNER.dedupe });
        return;
      }
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
              broadcast({ dedupeStats: store.stats });
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
      void settle(client, request.id, opened);
      return;
    }
    if (!METHODS.has(request.method)) {
      reply(client, {
        id: request.id,
        ok: false,
        error: { message: `unknown log method ${request.method}` },
      });
      return;
    }
    const args = [...request.args];
    if (request.method === 'read') {
      const controller = new AbortController();
      client.aborts.set(request.id, controller);
      args[3] = { ...(args[3] ?? {}), signal: controller.signal };
    }
    if (request.method === 'close') {
      if (!client.owner) {
        reply(client, { id: request.id, ok: false, error: NOT_OWNER.close });
        return;
      }
      // The rounds first: what was received is appended, its ids kept; then the log, then the store.
      // After this turn: appends that other ports sent before this close and that arrive in it join them
      // (no order holds between the messages of two ports; what arrives later fails, the log closed).
      const drained = new Promise(setImmediate).then(() => {
        paused = false;
        const rounds = idle();
        scheduleRound();
        return rounds;
      });
      void settle(
        client,
        request.id,
        drained
          .then(() => {
            logClosed = true;
            return log.close();
          })
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
      client,
      request.id,
      (async () => method.apply(log as Log, args))().finally(() => client.aborts.delete(request.id)),
    );
  };
  const attach = (port: MessagePort, owner: boolean) => {
    const client: Client = { port, owner, replies: [], aborts: new Map(), closed: false };
    clients.add(client);
    port.on('message', (request: Request) => serve(client, request));
    // Its thread ended, or closed the port: what it appended is still appended (answers dropped), what
    // it reads stops.
    port.on('close', () => {
      client.closed = true;
      clients.delete(client);
      for (const controller of client.aborts.values()) controller.abort();
    });
    if (owner) return;
    // A client that connects late learns where the dedupe store stands at once, not at the next change.
    if (dedupe) port.postMessage({ dedupeStats: dedupe.stats } satisfies Message);
    if (failing !== undefined) port.postMessage({ dedupeFailure: failing } satisfies Message);
  };
  attach(parentPort!, true);
  parentPort!.postMessage({ ready: true } satisfies Message);
}

await main();
