/**
 * The embedded log on a worker thread. node:sqlite is synchronous: on the main thread, every group commit
 * (a transaction and its fsync) would stop the server from reading, parsing and answering requests until
 * the disk returns. Here the main thread only posts appends — encoded into one transferred buffer
 * (append-codec.ts), one message per turn of its event loop, or per commit of the worker while it is busy —
 * and goes on serving while the worker commits; an append resolves when the worker's commit did, so the
 * guarantee of `Log.append` (resolves only when durable) is unchanged. The worker also deduplicates a
 * stream's events as it appends them (`appendDeduplicating`, log-worker.ts).
 *
 * `tributary up` and `tributary serve` use it for the server and the pipelines together (one log
 * instance per process: the embedded log keeps its offsets in memory).
 *
 * Other threads of the process (HTTP servers on worker threads) append to the same log worker directly:
 * the owner — the ThreadedLog that `open` started — makes a port for each (`connect`), and the thread
 * builds its client on it (`ThreadedLog.overPort`). A client over a port is the same Log, batched the same
 * way, and deduplicates with the store the owner opened; it cannot open the store nor close the log: its
 * `close` closes only its port. When the worker fails or the owner closes the log, its port closes: what
 * it was waiting for, and what it asks later, fails with the retryable STORAGE_IO error the owner sees.
 */
import { MessageChannel, Worker, type MessagePort, type TransferListItem } from 'node:worker_threads';
import { TributaryError, type ErrorCode } from '../errors.ts';
import { positionsOf, type EmbeddedLogOptions } from '../log/embedded-log.ts';
import type {
  Log,
  LogRecord,
  PartitionOffsets,
  ReadOptions,
  RecordPosition,
  StoredRecord,
  TopicConfig,
  TopicInfo,
} from '../log/log.ts';
import { AppendWriter } from './append-codec.ts';
import type {
  DedupeOptions,
  DedupeStats,
  Message,
  Reply,
  Request,
  SerializedError,
  WorkerOptions,
} from './log-worker.ts';

/** Appends (or records) that are sent to the worker at once rather than at the end of the turn. */
const SEND_AFTER_APPENDS = 16;
const SEND_AFTER_RECORDS = 2000;

interface Waiter {
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  /**
   * An append: the worker answers with its positions as [partition, offset, …] pairs (or null), or, for
   * one that deduplicates, with how many records were duplicates.
   */
  readonly append?: 'positions' | 'duplicates';
}

function toError(error: SerializedError): TributaryError {
  return new TributaryError((error.code as ErrorCode | undefined) ?? 'STORAGE_IO', error.message, {
    retryable: error.retryable ?? false,
    ...(error.hint ? { hint: error.hint } : {}),
    ...(error.context ? { context: error.context } : {}),
  });
}

/** What a ThreadedLog posts its requests to: the log worker (on its owner's thread) or a port to it. */
interface Endpoint {
  postMessage(request: Request, transfer?: readonly TransferListItem[]): void;
}

export class ThreadedLog implements Log {
  readonly #endpoint: Endpoint;
  /** The log worker, on the thread that started it (the owner); undefined for a client over a port. */
  readonly #worker: Worker | undefined;
  /** For a client over a port: the port (closed by `close`). */
  readonly #port: MessagePort | undefined;
  readonly #waiting = new Map<number, Waiter>();
  #next = 1;
  /** Appends not yet sent, encoded (append-codec.ts). */
  readonly #outbox = new AppendWriter();
  /** Appends sent to the worker and not answered yet: while there are, the worker is committing. */
  #unanswered = 0;
  #scheduled = false;
  #failure: TributaryError | undefined;
  #dedupeFailure: string | undefined;
  #dedupeStats: DedupeStats = { ids: 0, bytes: 0, forgotEarly: 0 };
  #closed = false;
  /** A client over a port closing: called once no append is left unanswered. */
  #onAnswered: (() => void) | undefined;

  private constructor(endpoint: Worker | MessagePort) {
    const listener = (message: Message) => {
      if ('dedupeStats' in message) {
        this.#dedupeStats = message.dedupeStats;
        return;
      }
      if ('dedupeFailure' in message) {
        this.#dedupeFailure = message.dedupeFailure ?? undefined;
        return;
      }
      if (!('replies' in message)) return;
      // The worker answers after each commit: it is free now, so it gets what waited meanwhile.
      this.#flush();
      for (const reply of message.replies) this.#settle(reply);
    };
    const fail = (why: string) => {
      this.#failure ??= new TributaryError('STORAGE_IO', `the log worker ${why}`, {
        retryable: true,
        hint: 'see the log above; restart Tributary',
      });
      this.#rejectWaiting(this.#failure);
    };
    this.#endpoint = endpoint;
    if (endpoint instanceof Worker) {
      this.#worker = endpoint;
      endpoint.on('message', listener);
      endpoint.on('error', (error: Error) => fail(`failed: ${error.message}`));
      endpoint.on('exit', (code) => {
        if (!this.#closed) fail(`exited with code ${code}`);
      });
    } else {
      this.#port = endpoint;
      endpoint.on('message', listener);
      // The worker exited (failed, or its owner closed the log), or this client closed its port.
      endpoint.on('close', () => {
        if (this.#closed && this.#onAnswered === undefined) this.#rejectWaiting(closedError());
        else fail('is gone: it failed, or the thread that opened the log closed it');
      });
    }
  }

  /** Starts the worker on the embedded log `options` describes. */
  static async open(options: EmbeddedLogOptions): Promise<ThreadedLog> {
    const workerData: WorkerOptions = { log: options };
    const worker = new Worker(new URL('./log-worker.ts', import.meta.url), { workerData });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (message: Message) => {
        if (!('ready' in message)) return;
        worker.off('message', onMessage);
        worker.off('error', onError);
        if (message.ready) resolve();
        else {
          void worker.terminate();
          reject(toError(message.error));
        }
      };
      const onError = (error: Error) => {
        worker.off('message', onMessage);
        reject(
          new TributaryError('STORAGE_IO', `the log worker failed to start: ${error.message}`, {
            cause: error,
          }),
        );
      };
      worker.on('message', onMessage);
      worker.once('error', onError);
    });
    return new ThreadedLog(worker);
  }

  /**
   * A client of the log worker over `port`, a port made by `connect` of the ThreadedLog that opened the
   * log (or of another client) and transferred to this thread. It is a Log as the owner is, and
   * `appendDeduplicating` uses the dedupe store the owner opened; `openDedupe` is refused. `close` closes
   * the port only, once the appends already issued are answered.
   */
  static overPort(port: MessagePort): ThreadedLog {
    return new ThreadedLog(port);
  }

  /**
   * A new port to the log worker, to transfer to another thread (`postMessage(…, [port])`) that makes its
   * client on it (`overPort`). Its appends join the owner's rounds: one transaction, one dedupe store,
   * decided in the order the worker receives them (each thread's in the order it issued them).
   */
  connect(): MessagePort {
    this.#check();
    const { port1, port2 } = new MessageChannel();
    this.#endpoint.postMessage({ op: 'connect', port: port2 }, [port2]);
    return port1;
  }

  #settle(reply: Reply): void {
    const waiter = this.#waiting.get(reply.id);
    if (!waiter) return;
    this.#waiting.delete(reply.id);
    if (waiter.append && --this.#unanswered === 0) this.#onAnswered?.();
    if (!reply.ok) waiter.reject(toError(reply.error));
    else if (waiter.append === 'positions')
      waiter.resolve(reply.value === null ? [] : positionsOf(reply.value as Float64Array));
    else waiter.resolve(reply.value);
  }

  /**
   * Why the worker cannot write dedupe ids to disk right now (it retries; meanwhile they are in its
   * memory, and a restart would read them again from the log), or undefined when it can.
   */
  get dedupeFailure(): string | undefined {
    return this.#dedupeFailure;
  }

  /** The worker's dedupe store's figures (dedupe.ts `stats`), as of at most a second ago. */
  get dedupeStats(): DedupeStats {
    return this.#dedupeStats;
  }

  /**
   * Opens the dedupe store in the worker, which then deduplicates the appends that ask for it
   * (`appendDeduplicating`), and recovers the ids of the crash window from the log; resolves with how
   * many it recovered.
   */
  openDedupe(options: DedupeOptions): Promise<number> {
    if (!this.#worker)
      return Promise.reject(
        new TributaryError('INTERNAL', 'a client of the log over a port cannot open the dedupe store', {
          hint: 'the thread that opened the log (ThreadedLog.open) opens it; appendDeduplicating from a port uses it',
        }),
      );
    const refused = this.#refused();
    if (refused) return refused;
    const id = this.#next++;
    return new Promise<number>((resolve, reject) => {
      this.#waiting.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#endpoint.postMessage({ op: 'dedupe', id, options });
    });
  }

  #check(): void {
    if (this.#failure) throw this.#failure;
    if (this.#closed) throw closedError();
  }

  /** `#check` for a call that answers with a promise: the promise rejected, or undefined when it may go. */
  #refused(): Promise<never> | undefined {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(closedError());
    return undefined;
  }

  /** Fails every call waiting for an answer with `error`. */
  #rejectWaiting(error: TributaryError): void {
    for (const waiter of this.#waiting.values()) waiter.reject(error);
    this.#waiting.clear();
    this.#onAnswered?.();
  }

  #call<T>(method: string, args: unknown[], signal?: AbortSignal): Promise<T> {
    const refused = this.#refused();
    if (refused) return refused;
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#waiting.set(id, { resolve: resolve as (value: unknown) => void, reject });
      if (signal) {
        const onAbort = () => this.#endpoint.postMessage({ op: 'abort', id });
        signal.addEventListener('abort', onAbort, { once: true });
      }
      this.#endpoint.postMessage({ op: 'call', id, method, args });
    });
  }

  append(topic: string, records: readonly LogRecord[]): Promise<RecordPosition[]> {
    return this.#append(topic, records, undefined, true) as Promise<RecordPosition[]>;
  }

  /**
   * Appends the records of `stream` but those that are duplicates — their id (header tributary-event-id,
   * with tributary-dedupe) accepted within the stream's window, or carried by an earlier record — and
   * resolves, once the others are durable, with how many were dropped (see log-worker.ts). Needs
   * `openDedupe` first. The records are copied before it returns: their values may be reused at once.
   */
  appendDeduplicating(topic: string, records: readonly LogRecord[], stream: string): Promise<number> {
    return this.#append(topic, records, stream, false) as Promise<number>;
  }

  #append(
    topic: string,
    records: readonly LogRecord[],
    dedupe: string | undefined,
    positions: boolean,
  ): Promise<RecordPosition[] | number> {
    const refused = this.#refused();
    if (refused) return refused;
    if (records.length === 0) return Promise.resolve(dedupe === undefined ? [] : 0);
    const id = this.#next++;
    try {
      this.#outbox.write(id, topic, records, dedupe, positions);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    const result = new Promise<RecordPosition[] | number>((resolve, reject) => {
      this.#waiting.set(id, {
        resolve: resolve as (value: unknown) => void,
        reject,
        append: dedupe === undefined ? 'positions' : 'duplicates',
      });
    });
    // While the worker commits, what it would receive waits in its queue anyway: appends are held here
    // until it answers (one message per commit, not one per turn of this thread's event loop), or until
    // there are many. When it is idle, a burst of requests read in one turn is sent in parts, the first at
    // once, so that the worker commits them while this thread parses the rest (a pipeline, not a wave).
    // At once means after the current task: appends issued together (a stream topic and its DLQ) stay in
    // one message, so in one transaction.
    const busy = this.#unanswered > 0;
    if (this.#outbox.records >= SEND_AFTER_RECORDS || (!busy && this.#outbox.appends >= SEND_AFTER_APPENDS)) {
      queueMicrotask(() => this.#flush());
    } else if (!busy && !this.#scheduled) {
      this.#scheduled = true;
      // Appends issued in this turn of the event loop travel together and share one commit.
      setImmediate(() => this.#flush());
    }
    return result;
  }

  #flush(): void {
    this.#scheduled = false;
    if (this.#outbox.appends === 0) return;
    this.#unanswered += this.#outbox.appends;
    const { buffer, length } = this.#outbox.take();
    this.#endpoint.postMessage({ op: 'append', buffer, length }, [buffer]);
  }

  ensureTopic(name: string, config: TopicConfig): Promise<TopicInfo> {
    return this.#call('ensureTopic', [name, config]);
  }

  listTopics(): Promise<TopicInfo[]> {
    return this.#call('listTopics', []);
  }

  describeTopic(name: string): Promise<TopicInfo | undefined> {
    return this.#call('describeTopic', [name]);
  }

  read(
    topic: string,
    partition: number,
    fromOffset: number,
    options: ReadOptions = {},
  ): Promise<StoredRecord[]> {
    const { signal, ...rest } = options;
    if (signal?.aborted && rest.waitMs) rest.waitMs = 0;
    return this.#call('read', [topic, partition, fromOffset, rest], signal);
  }

  offsets(topic: string): Promise<PartitionOffsets[]> {
    return this.#call('offsets', [topic]);
  }

  committedOffsets(group: string, topic: string): Promise<Map<number, number>> {
    return this.#call('committedOffsets', [group, topic]);
  }

  commitOffsets(group: string, topic: string, offsets: ReadonlyMap<number, number>): Promise<void> {
    return this.#call('commitOffsets', [group, topic, new Map(offsets)]);
  }

  enforceRetention(): Promise<number> {
    return this.#call('enforceRetention', []);
  }

  /**
   * The owner: lets appends already accepted (from every port too) finish, closes the log in the worker,
   * and stops the worker. A client over a port: refuses calls from now on, waits for the answers to its
   * appends already issued, and closes its port; the log stays open. Calls still waiting then (a read's
   * long poll) fail as closed.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#flush();
    if (this.#worker) {
      if (!this.#failure) await this.#call('close', []).catch(() => undefined);
      this.#closed = true;
      await this.#worker.terminate();
    } else {
      this.#closed = true;
      if (this.#unanswered > 0 && !this.#failure)
        await new Promise<void>((resolve) => (this.#onAnswered = resolve));
      this.#onAnswered = undefined;
      this.#port!.close();
    }
    this.#rejectWaiting(closedError());
  }
}

const closedError = () => new TributaryError('STORAGE_IO', 'the embedded log is closed');
