/**
 * The server's extra HTTP threads (`server.threads`). One thread's event loop parses, checks and answers
 * every request, and with batches it is what runs out first, while the log's commits run on their own thread
 * (threaded-log.ts). So the server can run more: each extra thread (http-worker.ts) listens on the same
 * address and port — the kernel spreads new connections over the threads (SO_REUSEPORT, Linux) — and serves
 * POST /v1/streams/{stream}/events itself, appending straight to the log's thread over its own port.
 *
 * What must be one for the whole server stays with the first thread, which also serves every request as it
 * does alone:
 * - rate limits and backpressure are counted in memory all threads share (rate-limit.ts, pending.ts);
 * - event ids are deduplicated by the log's thread, whichever thread appends them;
 * - a request carrying an Idempotency-Key, and any request but events (Segment, the query API, health,
 *   metrics, OpenAPI, CORS preflights), is handed to the first thread whole and answered with its answer;
 * - GET /metrics adds up every thread's server metrics.
 *
 * A thread that stops (an uncaught error, or it ran out of memory) is started again, sooner the first
 * time, later each time it stops again soon after (RESTART_FIRST_MS to RESTART_MAX_MS); meanwhile the
 * others serve, and /readyz names it.
 */
import { availableParallelism } from 'node:os';
import { Worker, type MessagePort } from 'node:worker_threads';
import {
  AggregatorRegistry,
  type MetricObjectWithValues,
  type MetricValue,
  type Registry,
} from 'prom-client';
import type { Logger } from '../core/logger.ts';
import type { Project } from '../core/project.ts';
import { TributaryError } from '../errors.ts';
import type { ComponentHealth } from './health.ts';
import { errorBody } from './http-error.ts';
import type { PendingWrites } from './pending.ts';
import type { ThreadedLog } from './threaded-log.ts';

type MetricsJson = Array<MetricObjectWithValues<MetricValue<string>>>;

/** What an extra thread is started with. */
export interface HttpWorkerData {
  /** The project, as far as the server reads it (structured-cloned: no pipelines nor sources). */
  readonly project: Pick<Project, 'root' | 'platformFile' | 'platform' | 'platformSecretPaths'>;
  readonly logLevel: string;
  /** Its own connection to the log's thread (ThreadedLog.connect). */
  readonly log: MessagePort;
  readonly buckets: SharedArrayBuffer;
  readonly pending: SharedArrayBuffer;
  /** Whether the first thread serves the query API. */
  readonly queryApi: boolean;
  readonly threads: number;
  /** Which of the server's threads it is (the first is 0). */
  readonly slot: number;
  /** Where the first thread listens. */
  readonly host: string;
  readonly port: number;
}

/** A request an extra thread hands to the first, its body read whole. */
export interface ForwardedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Uint8Array;
  readonly remoteAddress: string | undefined;
}

export interface ForwardedAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | number | undefined>;
  readonly body: Uint8Array;
}

/** Extra thread → first thread. */
export type WorkerMessage =
  | { readonly op: 'ready' }
  | { readonly op: 'failed'; readonly message: string; readonly code?: string; readonly hint?: string }
  | ({ readonly op: 'forward'; readonly id: number } & ForwardedRequest)
  | { readonly op: 'metrics'; readonly id: number; readonly metrics: MetricsJson }
  | { readonly op: 'closed' };

/** First thread → extra thread. */
export type MainMessage =
  | ({ readonly op: 'answer'; readonly id: number } & ForwardedAnswer)
  | { readonly op: 'metrics'; readonly id: number }
  | { readonly op: 'close' };

/** A thread's metrics not in the sum after this long (it is busy or stuck; /readyz says which). */
const METRICS_WAIT_MS = 2000;
/** A thread that stopped is started again after this long, doubled each time it stops again soon after. */
const RESTART_FIRST_MS = 500;
const RESTART_MAX_MS = 30_000;
/** A thread that served this long before it stopped is started again after RESTART_FIRST_MS. */
const STEADY_MS = 60_000;

/**
 * How many threads serve HTTP: `auto` is one per core but one, at most 4 — the log's thread commits on a
 * core of its own (and in `tributary up` the pipelines need CPU too): on 2 cores, two HTTP threads beside
 * the log's took more CPU per event and served fewer (docs/ingest-performance.md). One where the kernel
 * cannot share a port between sockets, or where the log is not on its own thread.
 */
export function httpThreadCount(
  setting: number | 'auto',
  options: { readonly threadedLog: boolean; readonly logger: Logger },
): number {
  const wanted = setting === 'auto' ? Math.min(4, availableParallelism() - 1) : setting;
  if (wanted <= 1 || !options.threadedLog) return 1;
  if (process.platform !== 'linux') {
    if (setting !== 'auto')
      options.logger.warn(
        `server.threads: ${setting} needs SO_REUSEPORT, which Tributary uses on Linux only; serving on one thread`,
      );
    return 1;
  }
  return wanted;
}

interface Thread {
  readonly slot: number;
  /** The thread serving in this slot: another one once it stopped and was started again. */
  worker: Worker;
  startedAt: number;
  /** Why it stopped serving, while it is not serving again. */
  failure?: string;
  exited: boolean;
  /** How many times in a row it stopped soon after it started. */
  stops: number;
  restart?: NodeJS.Timeout;
  /** Its metrics as last collected: counted while it does not answer (counters never go back). */
  metrics?: MetricsJson;
}

/**
 * Counters and histograms: what a stopped thread counted stays in the sums. (Its gauges said what was
 * then, and prom-client types `type` as a numeric enum although the JSON holds its name.)
 */
function keepsCounting(metric: MetricsJson[number]): boolean {
  const type = metric.type as unknown as string;
  return type === 'counter' || type === 'histogram';
}

type StartOptions = Parameters<typeof HttpThreads.start>[0];

export class HttpThreads {
  readonly #threads: Thread[] = [];
  readonly #options: StartOptions;
  readonly #metricsWaiting = new Map<number, (metrics: MetricsJson) => void>();
  /**
   * The counters and histograms of threads that stopped, as last collected: the threads started in their
   * place count from zero, and the sums must not go back. Added up into one at each collection, so a
   * thread that keeps stopping does not make the list grow.
   */
  readonly #stopped: MetricsJson[] = [];
  #folding = false;
  #next = 1;
  #closing = false;

  private constructor(options: StartOptions) {
    this.#options = options;
  }

  /**
   * Starts threads 1 to `threads - 1`, listening where the first thread does; resolves once all listen.
   * `answer` serves a request one of them hands over.
   */
  static async start(options: {
    readonly threads: number;
    readonly log: ThreadedLog;
    readonly logger: Logger;
    /** The first thread's backpressure counts, shared with the others (see `data.pending`). */
    readonly pending: PendingWrites;
    readonly answer: (request: ForwardedRequest) => Promise<ForwardedAnswer>;
    readonly data: Omit<HttpWorkerData, 'log' | 'slot' | 'threads'>;
  }): Promise<HttpThreads> {
    const threads = new HttpThreads(options);
    try {
      for (let slot = 1; slot < options.threads; slot++) {
        const thread: Thread = {
          slot,
          worker: threads.#spawn(slot),
          startedAt: Date.now(),
          exited: false,
          stops: 0,
        };
        threads.#threads.push(thread);
        threads.#watch(thread);
      }
      await Promise.all(threads.#threads.map((thread) => threads.#ready(thread)));
      return threads;
    } catch (error) {
      await threads.close();
      throw error;
    }
  }

  #spawn(slot: number): Worker {
    const options = this.#options;
    const log = options.log.connect();
    const workerData: HttpWorkerData = { ...options.data, log, slot, threads: options.threads };
    return new Worker(new URL('./http-worker.ts', import.meta.url), { workerData, transferList: [log] });
  }

  /** Starts a thread in the place of one that stopped (see the module's comment). */
  #restart(thread: Thread): void {
    thread.restart = undefined;
    if (this.#closing) return;
    try {
      thread.worker = this.#spawn(thread.slot);
    } catch (error) {
      // The log's thread is gone (its own component of /readyz says why): tried again later.
      thread.failure = `cannot start again: ${(error as Error).message}`;
      this.#options.logger.error({ err: error }, `HTTP thread ${thread.slot} cannot start again`);
      thread.restart = setTimeout(() => this.#restart(thread), RESTART_MAX_MS);
      return;
    }
    thread.startedAt = Date.now();
    thread.exited = false;
    this.#watch(thread);
    this.#ready(thread).then(
      () => {
        thread.failure = undefined;
        this.#options.logger.info(`HTTP thread ${thread.slot} serves again`);
      },
      // It exited: its exit handler says why and starts another.
      () => undefined,
    );
  }

  #ready(thread: Thread): Promise<void> {
    return new Promise((resolve, reject) => {
      const onMessage = (message: WorkerMessage) => {
        if (message.op === 'ready') {
          done();
          resolve();
        } else if (message.op === 'failed') {
          done();
          reject(
            new TributaryError(
              (message.code as 'CONFIG_INVALID' | undefined) ?? 'SERVICE_UNAVAILABLE',
              `HTTP thread ${thread.slot} failed to start: ${message.message}`,
              message.hint ? { hint: message.hint } : {},
            ),
          );
        }
      };
      const onExit = (code: number) => {
        done();
        reject(
          new TributaryError('SERVICE_UNAVAILABLE', `HTTP thread ${thread.slot} exited with code ${code}`),
        );
      };
      const done = () => {
        thread.worker.off('message', onMessage);
        thread.worker.off('exit', onExit);
      };
      thread.worker.on('message', onMessage);
      thread.worker.once('exit', onExit);
    });
  }

  #watch(thread: Thread): void {
    const worker = thread.worker;
    worker.on('message', (message: WorkerMessage) => {
      if (message.op === 'forward') {
        const { id, op: _op, ...request } = message;
        this.#options.answer(request).then(
          (answered) => worker.postMessage({ op: 'answer', id, ...answered } satisfies MainMessage),
          (error: unknown) => {
            this.#options.logger.error(
              { err: error },
              'unexpected error answering a request of another HTTP thread',
            );
            const body = new TextEncoder().encode(
              JSON.stringify(
                errorBody('INTERNAL', 'the server failed to handle the request', 'see the server log'),
              ),
            );
            worker.postMessage({
              op: 'answer',
              id,
              status: 500,
              headers: { 'content-type': 'application/json; charset=utf-8' },
              body,
            } satisfies MainMessage);
          },
        );
      } else if (message.op === 'metrics') {
        this.#metricsWaiting.get(message.id)?.(message.metrics);
      }
    });
    // Its sockets close with it: the kernel gives new connections to the other threads. Requests it had
    // taken are lost to their clients unanswered, so not acknowledged (they retry).
    worker.on('error', (error: Error) => {
      thread.failure ??= error.message;
      this.#options.logger.error({ err: error, thread: thread.slot }, `HTTP thread ${thread.slot} failed`);
    });
    worker.on('exit', (code) => {
      thread.exited = true;
      // What it had sent the log is appended or dropped by now: its requests no longer wait.
      this.#options.pending.clear(thread.slot);
      if (thread.metrics) this.#stopped.push(thread.metrics.filter(keepsCounting));
      thread.metrics = undefined;
      if (this.#closing) return;
      thread.failure ??= `exited with code ${code}`;
      thread.stops = Date.now() - thread.startedAt >= STEADY_MS ? 1 : thread.stops + 1;
      const delay = Math.min(RESTART_MAX_MS, RESTART_FIRST_MS * 2 ** (thread.stops - 1));
      this.#options.logger.error(
        `HTTP thread ${thread.slot} ${thread.failure}; the other threads go on serving, and it starts again in ${delay} ms`,
      );
      thread.restart = setTimeout(() => this.#restart(thread), delay);
    });
  }

  /** The thread serving in `slot` (1 to threads − 1) now. */
  worker(slot: number): Worker | undefined {
    return this.#threads.find((thread) => thread.slot === slot)?.worker;
  }

  /** For /readyz: failed while a thread is not serving (the others go on; it is started again). */
  health(): ComponentHealth {
    const failed = this.#threads.filter((t) => t.failure !== undefined);
    if (failed.length === 0) return { status: 'ok', detail: `${this.#threads.length + 1} threads serving` };
    return {
      status: 'failed',
      detail: failed
        .map(
          (t) =>
            `thread ${t.slot} ${t.failure} (starting again${t.stops > 1 ? `, stopped ${t.stops} times in a row` : ''})`,
        )
        .join('; '),
    };
  }

  /** `registry`'s metrics with every thread's server metrics added in, as Prometheus text. */
  async metrics(registry: Registry): Promise<string> {
    const own = await registry.getMetricsAsJSON();
    if (this.#stopped.length > 1 && !this.#folding) {
      // Those stopped meanwhile are pushed after the ones added up, and stay.
      this.#folding = true;
      try {
        const count = this.#stopped.length;
        const sum = await AggregatorRegistry.aggregate(this.#stopped.slice(0, count)).getMetricsAsJSON();
        this.#stopped.splice(0, count, sum);
      } finally {
        this.#folding = false;
      }
    }
    const theirs = await Promise.all(
      this.#threads.map(async (thread) => {
        const worker = thread.worker;
        if (thread.exited) return undefined;
        const metrics = await this.#metricsOf(thread);
        // Kept only while the thread that sent them serves (once it stopped, they are in #stopped).
        if (metrics && thread.worker === worker && !thread.exited) thread.metrics = metrics;
        return thread.worker === worker && !thread.exited ? thread.metrics : undefined;
      }),
    );
    const all = [own, ...this.#stopped, ...theirs.filter((m): m is MetricsJson => m !== undefined)];
    return AggregatorRegistry.aggregate(all).metrics();
  }

  #metricsOf(thread: Thread): Promise<MetricsJson | undefined> {
    const id = this.#next++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#metricsWaiting.delete(id);
        resolve(undefined);
      }, METRICS_WAIT_MS);
      this.#metricsWaiting.set(id, (metrics) => {
        clearTimeout(timer);
        this.#metricsWaiting.delete(id);
        resolve(metrics);
      });
      thread.worker.postMessage({ op: 'metrics', id } satisfies MainMessage);
    });
  }

  /** Each thread stops listening, answers what it took (its appends complete), and ends. */
  async close(): Promise<void> {
    this.#closing = true;
    for (const thread of this.#threads) clearTimeout(thread.restart);
    await Promise.all(
      this.#threads.map(async ({ worker, exited }) => {
        if (exited) return;
        const ended = new Promise<void>((resolve) => {
          worker.on('message', (message: WorkerMessage) => {
            if (message.op === 'closed') resolve();
          });
          worker.once('exit', () => resolve());
        });
        worker.postMessage({ op: 'close' } satisfies MainMessage);
        await ended;
        await worker.terminate();
      }),
    );
  }
}
