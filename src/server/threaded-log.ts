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
 */
import { Worker } from 'node:worker_threads';
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

export class ThreadedLog implements Log {
  readonly #worker: Worker;
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

  private constructor(worker: Worker) {
    this.#worker = worker;
    worker.on('message', (message: Message) => {
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
    });
    const fail = (why: string) => {
      this.#failure ??= new TributaryError('STORAGE_IO', `the log worker ${why}`, {
        retryable: true,
        hint: 'see the log above; restart Tributary',
      });
      for (const waiter of this.#waiting.values()) waiter.reject(this.#failure);
      this.#waiting.clear();
    };
    worker.on('error', (error: Error) => fail(`failed: ${error.message}`));
    worker.on('exit', (code) => {
      if (!this.#closed) fail(`exited with code ${code}`);
    });
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

  #settle(reply: Reply): void {
    const waiter = this.#waiting.get(reply.id);
    if (!waiter) return;
    this.#waiting.delete(reply.id);
    if (waiter.append) this.#unanswered--;
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
    this.#check();
    const id = this.#next++;
    return new Promise<number>((resolve, reject) => {
      this.#waiting.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#worker.postMessage({ op: 'dedupe', id, options });
    });
  }

  #check(): void {
    if (this.#failure) throw this.#failure;
    if (this.#closed) throw new TributaryError('STORAGE_IO', 'the embedded log is closed');
  }

  #call<T>(method: string, args: unknown[], signal?: AbortSignal): Promise<T> {
    this.#check();
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#waiting.set(id, { resolve: resolve as (value: unknown) => void, reject });
      if (signal) {
        const onAbort = () => this.#worker.postMessage({ op: 'abort', id });
        signal.addEventListener('abort', onAbort, { once: true });
      }
      this.#worker.postMessage({ op: 'call', id, method, args });
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
    try {
      this.#check();
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
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
    this.#worker.postMessage({ op: 'append', buffer, length }, [buffer]);
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

  /** Lets appends already accepted finish, closes the log in the worker, and stops the worker. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#flush();
    if (!this.#failure) await this.#call('close', []).catch(() => undefined);
    this.#closed = true;
    await this.#worker.terminate();
  }
}
