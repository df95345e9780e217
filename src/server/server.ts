/**
 * The HTTP server: event ingest (`POST /v1/streams/{stream}/events`, the hot path, answered on node:http
 * directly), and through Fastify the Segment-compatible endpoints, the query API, CORS preflights,
 * `/healthz`, `/readyz`, `/metrics` and `/openapi.json`.
 *
 * A request to a stream passes, in order, before its body is read: the stream exists (404), the browser
 * origin is allowed (403), the content type and encoding are readable (415), the declared length fits
 * (413), the client IP is under its rate limit (429), the API key is valid (401) and allowed on the
 * stream (403) and under its rate limit (429), and the log has room (503). Then the body is read within
 * the limit (413), decoded, its signature checked for HMAC streams (401), parsed and validated (400), and
 * the events are acknowledged (202) only once the log made them durable.
 *
 * With `server.threads` above one, extra threads (http-worker.ts) run this same server on the same port;
 * see http-threads.ts for what they share and what they hand to the first.
 */
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  STATUS_CODES,
  createServer as createHttpServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createRequire } from 'node:module';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import inject from 'light-my-request';
import Fastify, {
  LogController,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import type { Registry } from 'prom-client';
import type { SqlDriver } from '../catalog/sql-driver.ts';
import { topicRetentionOf, type PlatformConfig } from '../core/config/platform.ts';
import type { Logger } from '../core/logger.ts';
import { projectPath, requireResolvedPlatform, type Project } from '../core/project.ts';
import { isTributaryError, TributaryError, type ErrorCode } from '../errors.ts';
import type { Log } from '../log/log.ts';
import {
  decodeBody,
  decodeUtf8,
  encodingOf,
  formatOf,
  parseEvents,
  parseJsonBody,
  readBody,
  scanEvents,
  type BodyFormat,
  type ContentEncoding,
} from './body.ts';
import { ClientIp, rateLimitedAs } from './client-ip.ts';
import { originAllowed } from './cors.ts';
import { DedupeStore } from './dedupe.ts';
import { readiness, type PipelineHandle, type SourceHandleForHealth } from './health.ts';
import { verifySignature } from './hmac.ts';
import { errorBody, HttpError } from './http-error.ts';
import { HttpThreads, httpThreadCount, type ForwardedAnswer, type ForwardedRequest } from './http-threads.ts';
import {
  Ingestor,
  type ClientInfo,
  type IngestDedupe,
  type IngestOutcome,
  type IngestResult,
} from './ingest.ts';
import type { ApiRequest, QueryApi } from '../query/http-api.ts';
import { keyAllowsIngest, keyAllowsQuery, keyAllowsTable, type ApiKey, type KeyStore } from './keys.ts';
import { createServerMetrics, type ServerMetrics } from './metrics.ts';
import { openApiDocument } from './openapi.ts';
import { PendingWrites } from './pending.ts';
import { TokenBuckets } from './rate-limit.ts';
import { prepareSegmentEvent, SEGMENT_BATCH, SEGMENT_CALLS, segmentEvents } from './segment.ts';
import { resolveStreams, type Stream } from './streams.ts';
import { ThreadedLog } from './threaded-log.ts';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

declare module 'fastify' {
  interface FastifyRequest {
    tributary: RequestState | null;
  }
}

interface RequestState {
  startedAt: number;
  stream: Stream | undefined;
  format: BodyFormat | undefined;
  encoding: ContentEncoding;
  key: ApiKey | undefined;
  /** Segment: the write key may come in the body (analytics.js); checked after parsing. */
  keyDeferred: boolean;
  /**
   * Whether the checks take rate-limit tokens: not when an extra thread checks a request before handing it
   * to the first, which checks it again (#handOver).
   */
  charge: boolean;
  /** The client IP, once something asked for it (see Exchange.ip). */
  ip: string | undefined;
}

function newRequestState(): RequestState {
  return {
    startedAt: performance.now(),
    stream: undefined,
    format: undefined,
    encoding: 'identity',
    key: undefined,
    keyDeferred: false,
    charge: true,
    ip: undefined,
  };
}

/**
 * A request to a stream as its checks see it, whether Fastify serves it (Segment) or the server itself
 * (events, see #serveEvents).
 */
interface Exchange {
  readonly headers: IncomingHttpHeaders;
  /** The client IP (see client-ip.ts), worked out on first use. */
  readonly ip: string;
  readonly socket: Socket;
  readonly state: RequestState;
  /** Sets a header of the response. */
  header(name: string, value: string): void;
}

export interface ServerOptions {
  readonly project: Project;
  readonly log: Log;
  /** The process's metrics registry, shared with the pipelines. */
  readonly registry: Registry;
  readonly logger: Logger;
  /** API keys; required when a stream uses `auth: key`. */
  readonly keys?: KeyStore;
  /** The catalog database, checked by /readyz (default: the key store's). */
  readonly catalog?: SqlDriver;
  /** The pipelines running in this process, for /readyz. */
  readonly pipelines?: () => readonly PipelineHandle[];
  /** The sources running in this process, for /readyz. */
  readonly sources?: () => readonly SourceHandleForHealth[];
  /**
   * The read-only query API (src/query/http-api.ts), opened on first use: POST /v1/query and GET
   * /v1/tables… for keys with the query or admin role. Absent: those endpoints answer 404.
   */
  readonly queryApi?: () => Promise<QueryApi>;
  /** Where the dedupe store lives (default: the log directory). */
  readonly dedupeDirectory?: string;
  readonly host?: string;
  readonly port?: number;
  /** Set on the server's extra HTTP threads (http-worker.ts). */
  readonly thread?: ThreadShare;
}

/** What an extra HTTP thread shares with the first (see http-threads.ts). */
export interface ThreadShare {
  /** The rate limits' buckets (rate-limit.ts `shared`). */
  readonly buckets: SharedArrayBuffer;
  /** The requests and bytes waiting for the log (pending.ts `shared`). */
  readonly pending: SharedArrayBuffer;
  readonly threads: number;
  readonly slot: number;
  /** Whether the first thread serves the query API. */
  readonly queryApi: boolean;
  /**
   * Hands a request this thread does not serve to the first thread, which answers it: with its body, read
   * here within the limit once its checks passed (#handOver), or without one (a request that takes none).
   */
  readonly forward: (request: IncomingMessage, response: ServerResponse, body: Buffer | undefined) => void;
}

/**
 * The security headers of every answer — data (JSON, text, CSV, Arrow), never a page: no sniffing it into
 * HTML, no framing, no caching (answers carry event ids and query results). None that only pages use:
 * X-Frame-Options is what `frame-ancestors` replaced (in every browser but Internet Explorer),
 * Referrer-Policy governs links a data answer has none of, and Cross-Origin-Resource-Policy
 * `cross-origin` allows what no header allows. Each line costs every client its parsing, on every answer.
 */
const SECURITY_HEADERS: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'cache-control': 'no-store',
};
const SECURITY_HEADERS_TLS: Record<string, string> = {
  ...SECURITY_HEADERS,
  'strict-transport-security': 'max-age=31536000',
};
const CORS_ALLOW_HEADERS = 'content-type, content-encoding, authorization, x-api-key, idempotency-key';
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,256}$/;
const ROUTE_EVENTS = '/v1/streams/:stream/events';

/**
 * Opens the ingest dedupe store in `directory` and recovers the event ids of the crash window from the
 * log. With the log on its worker thread, the worker keeps the ids (it deduplicates as it appends, see
 * log-worker.ts) and the store returned keeps the Idempotency-Keys' answers only.
 */
export async function openDedupe(
  log: Log,
  options: {
    readonly directory: string;
    /** Each stream's dedupe window (ms). */
    readonly windows: ReadonlyMap<string, number>;
    readonly maxIds: number;
    /** The streams' topics: topic → stream. */
    readonly topics: ReadonlyMap<string, string>;
  },
): Promise<{ store: DedupeStore; recovered: number }> {
  const { directory, windows, maxIds, topics } = options;
  const threaded = log instanceof ThreadedLog;
  const store = DedupeStore.open(directory, windows, { maxIds, ids: !threaded });
  try {
    const recovered = threaded
      ? await log.openDedupe({ directory, windows: [...windows], maxIds, topics: [...topics] })
      : await store.recover(log, topics);
    return { store, recovered };
  } catch (error) {
    store.close();
    throw error;
  }
}

export class IngestServer {
  readonly app: FastifyInstance;
  readonly streams: ReadonlyMap<string, Stream>;
  readonly #options: ServerOptions;
  readonly #settings: PlatformConfig['server'];
  readonly #metrics: ServerMetrics;
  readonly #ingestor: Ingestor;
  /** The Idempotency-Keys' answers (and the ids, for a log that does not deduplicate); the first thread's. */
  readonly #dedupe: DedupeStore | undefined;
  /** Ingests under way, which close() waits for, answered or not (their client may have left). */
  readonly #ingesting = new Set<Promise<unknown>>();
  readonly #buckets: TokenBuckets;
  readonly #pending: PendingWrites;
  /** How many threads serve HTTP (see http-threads.ts); this one is the first unless `options.thread`. */
  readonly #threadCount: number;
  #threads: HttpThreads | undefined;
  /** What answers each request, also those another thread hands over. */
  readonly #listener: (request: IncomingMessage, response: ServerResponse) => void;
  readonly #clientIp: ClientIp;
  readonly #startedAt = Date.now();
  readonly #tls: boolean;
  #closed = false;

  private constructor(
    options: ServerOptions,
    streams: Map<string, Stream>,
    dedupe: DedupeStore | undefined,
    tls: { cert: Buffer; key: Buffer } | undefined,
    threadCount: number,
  ) {
    this.#options = options;
    this.#settings = options.project.platform.server;
    this.streams = streams;
    this.#dedupe = dedupe;
    this.#tls = tls !== undefined;
    this.#threadCount = threadCount;
    const thread = options.thread;
    this.#buckets = new TokenBuckets(undefined, thread?.buckets);
    this.#pending = thread
      ? new PendingWrites(thread.threads, thread.pending, thread.slot)
      : new PendingWrites(threadCount);
    this.#metrics = createServerMetrics(options.registry);
    const log = options.log;
    // The log's thread keeps the ids for all threads: the first one reports them.
    if (dedupe) this.#metrics.dedupe = () => (log instanceof ThreadedLog ? log.dedupeStats : dedupe.stats);
    this.#ingestor = new Ingestor({
      log: options.log,
      dedupe: dedupe ?? windowsOnly(streams),
      pending: this.#pending,
      metrics: this.#metrics,
      logger: options.logger,
      limits: {
        maxPendingAppends: this.#settings.max_pending_appends,
        maxPendingBytes: this.#settings.max_pending_bytes,
        maxDepth: this.#settings.max_depth,
      },
    });
    this.#clientIp = new ClientIp(this.#settings.trusted_proxies);
    let fastify: ((request: IncomingMessage, response: ServerResponse) => void) | undefined;
    this.#listener = (request, response) => {
      if (this.#closed) this.#refuseWhileClosing(response);
      else if (this.#serveEvents(request, response)) return;
      else if (thread) this.#handOver(request, response);
      else fastify!(request, response);
    };
    this.app = Fastify({
      loggerInstance: options.logger.child({ component: 'server' }),
      // No log line per request: requests are counted in /metrics.
      logController: new LogController({ disableRequestLogging: true }),
      // One logger for all requests: a pino child per request (with redaction) costs more than the request.
      childLoggerFactory: (logger) => logger,
      bodyLimit: this.#settings.body_limit,
      requestTimeout: this.#settings.request_timeout,
      keepAliveTimeout: this.#settings.keep_alive_timeout,
      // While closing, every request gets 503 (#refuseWhileClosing) rather than Fastify's bare one.
      return503OnClosing: false,
      forceCloseConnections: 'idle',
      routerOptions: { maxParamLength: 200 },
      clientErrorHandler: (error, socket) => clientError(error, socket),
      // The router's own errors (a path that is not valid percent-encoding, an over-long parameter).
      frameworkErrors: (error, request, reply) => this.#frameworkError(error, request, reply),
      // Events go to #serveEvents first; every other request to Fastify (on an extra thread, to the first).
      serverFactory: (handler) => {
        fastify = handler;
        const listener = this.#listener;
        // request_timeout checked every second rather than Node's 30 s, so a slow client gets 408 on time.
        const options = { connectionsCheckingInterval: 1000 };
        const server = tls
          ? createHttpsServer(
              // A handshake gets request_timeout too, not Node's 120 s.
              { ...options, cert: tls.cert, key: tls.key, handshakeTimeout: this.#settings.request_timeout },
              listener,
            )
          : createHttpServer(options, listener);
        server.keepAliveTimeout = this.#settings.keep_alive_timeout;
        server.requestTimeout = this.#settings.request_timeout;
        return server;
      },
    }) as unknown as FastifyInstance;
    this.#routes();
  }

  /** Resolves the streams, creates their topics, recovers the dedupe store; does not listen yet. */
  static async create(options: ServerOptions): Promise<IngestServer> {
    const { project, log, logger } = options;
    // The server reads tributary.yaml throughout (a stream's HMAC secret at its first request): all of it
    // is resolved before it starts, never found missing while it serves.
    requireResolvedPlatform(project);
    const streams = resolveStreams(project, logger);
    const tls = prepare(options, streams);
    for (const stream of streams.values()) {
      // The stream's retention is the configuration's: changing it changes the topics' on the next start.
      for (const topic of [stream.topic, stream.dlqTopic]) {
        const existing = await log.describeTopic(topic);
        await log.ensureTopic(topic, {
          partitions: Math.max(existing?.partitions ?? 0, stream.partitions),
          ...topicRetentionOf(stream.config.retention),
        });
      }
    }
    const { store: dedupe, recovered } = await openDedupe(log, {
      directory: options.dedupeDirectory ?? projectPath(project, project.platform.log.path),
      windows: new Map([...streams.values()].map((s) => [s.name, s.config.dedupe_window])),
      maxIds: project.platform.server.dedupe_max_ids,
      topics: new Map([...streams.values()].map((s) => [s.topic, s.name])),
    });
    try {
      if (recovered)
        logger.info({ recovered }, `recovered ${recovered} event id(s) from the log for deduplication`);
      const threads = httpThreadCount(project.platform.server.threads, {
        threadedLog: log instanceof ThreadedLog,
        logger,
      });
      return new IngestServer(options, streams, dedupe, tls, threads);
    } catch (error) {
      dedupe.close();
      throw error;
    }
  }

  /**
   * The server of an extra HTTP thread (http-worker.ts): the first thread created the topics and opened
   * the dedupe store; this one shares its limits and hands it what only it serves (`options.thread`).
   */
  static forThread(options: ServerOptions & { readonly thread: ThreadShare }): IngestServer {
    const streams = resolveStreams(options.project, options.logger);
    const tls = prepare(options, streams);
    return new IngestServer(options, streams, undefined, tls, options.thread.threads);
  }

  /** Starts listening; resolves with the URL. */
  async listen(): Promise<string> {
    const host = this.#options.host ?? this.#settings.host;
    const port = this.#options.port ?? this.#settings.port;
    // Several threads: each listens on the address and port, and the kernel spreads the connections.
    const reusePort = this.#threadCount > 1 || this.#options.thread !== undefined;
    try {
      // The port is taken once without sharing first, so that it is not shared with another process (a
      // second Tributary there would split the connections, each with its own dedupe and limits).
      const free = reusePort && !this.#options.thread ? await probePort(host, port) : port;
      await this.app.listen({ host, port: free, ...(reusePort ? { reusePort } : {}) });
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code;
      throw new TributaryError(
        'SERVICE_UNAVAILABLE',
        `the server cannot listen on ${host}:${port}: ${(cause as Error).message}`,
        {
          cause,
          hint:
            code === 'EADDRINUSE'
              ? `another process uses port ${port}: stop it, or set server.port (0 picks a free port)`
              : 'check server.host and server.port in tributary.yaml',
        },
      );
    }
    this.app.server.headersTimeout = Math.min(this.#settings.request_timeout, 60_000);
    const url = this.url;
    if (this.#options.thread) return url;
    if (this.#threadCount > 1) {
      try {
        this.#threads = await this.#startThreads();
      } catch (error) {
        await this.app.close();
        throw error;
      }
    }
    const threads = this.#threadCount > 1 ? `, ${this.#threadCount} threads` : '';
    this.#options.logger.info(
      { url, streams: [...this.streams.keys()], threads: this.#threadCount },
      `server listening on ${url} (${this.streams.size} stream(s)${threads})`,
    );
    return url;
  }

  #startThreads(): Promise<HttpThreads> {
    const { project, logger } = this.#options;
    const address = this.app.server.address() as AddressInfo;
    return HttpThreads.start({
      threads: this.#threadCount,
      log: this.#options.log as ThreadedLog,
      logger,
      pending: this.#pending,
      answer: (request) => this.#answerForwarded(request),
      data: {
        project: {
          root: project.root,
          platformFile: project.platformFile,
          platform: project.platform,
          platformSecretPaths: project.platformSecretPaths,
        },
        logLevel: logger.level,
        buckets: this.#buckets.shared,
        pending: this.#pending.shared,
        queryApi: this.#options.queryApi !== undefined,
        host: address.address,
        port: address.port,
      },
    });
  }

  /**
   * Answers a request another HTTP thread handed over (see http-threads.ts) as if it came to this one:
   * through the same listener, from the client's address.
   */
  async #answerForwarded(request: ForwardedRequest): Promise<ForwardedAnswer> {
    const body = request.body;
    const response = await inject(this.#listener, {
      method: request.method as 'GET',
      url: request.url,
      // light-my-request adds its own User-Agent to a request without one, which enrichment would store.
      headers: { 'user-agent': undefined, ...request.headers },
      ...(body.length > 0 ? { payload: Buffer.from(body.buffer, body.byteOffset, body.length) } : {}),
      ...(request.remoteAddress === undefined ? {} : { remoteAddress: request.remoteAddress }),
    });
    return { status: response.statusCode, headers: response.headers, body: response.rawPayload };
  }

  get url(): string {
    const address = this.app.server.address() as AddressInfo | null;
    if (!address) return '';
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `${this.#tls ? 'https' : 'http'}://${host}:${address.port}`;
  }

  get port(): number {
    return (this.app.server.address() as AddressInfo | null)?.port ?? 0;
  }

  /** The extra HTTP threads, once listening with `server.threads` above one. */
  get httpThreads(): HttpThreads | undefined {
    return this.#threads;
  }

  /**
   * Stops accepting requests, answers those in flight (their appends complete, even those whose client
   * left), then closes the store.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // A request still being sent when its time is up does not hold the shutdown: its connection is closed
    // then (once the server stops listening, Node no longer enforces request_timeout itself).
    const deadline = setTimeout(() => this.app.server.closeAllConnections(), this.#settings.request_timeout);
    try {
      // The other threads hand over requests until they are closed: answered 503 now.
      const closed = await Promise.allSettled([this.app.close(), this.#threads?.close()]);
      for (const result of closed) if (result.status === 'rejected') throw result.reason;
    } finally {
      clearTimeout(deadline);
    }
    await Promise.allSettled(this.#ingesting);
    this.#dedupe?.close();
  }

  #routes(): void {
    const app = this.app;
    app.decorateRequest('tributary', null);
    app.removeAllContentTypeParsers();
    // Every body is read as bytes within the body limit; the handlers decode and parse it.
    app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

    app.addHook('onRequest', (request, reply, done) => {
      request.tributary = newRequestState();
      reply.headers(this.#tls ? SECURITY_HEADERS_TLS : SECURITY_HEADERS);
      done();
    });
    app.addHook('onResponse', (request, reply, done) => {
      this.#count(request, reply.statusCode);
      done();
    });

    app.setErrorHandler((error, request, reply) => this.#sendError(error, request, reply));
    app.setNotFoundHandler((request, reply) =>
      this.#sendError(noEndpoint(request.method, request.url), request, reply),
    );

    // POST to ROUTE_EVENTS is served by #serveEvents.
    app.route({
      method: 'OPTIONS',
      url: ROUTE_EVENTS,
      handler: async (request, reply) => {
        const stream = this.#streamNamed((request.params as { stream: string }).stream);
        this.#preflight(request, reply, stream);
      },
    });

    const segmentStream = this.#settings.segment
      ? this.streams.get(this.#settings.segment.stream)
      : undefined;
    for (const endpoint of [...Object.keys(SEGMENT_CALLS), ...SEGMENT_BATCH]) {
      app.route({
        method: 'POST',
        url: `/v1/${endpoint}`,
        onRequest: (request, reply, done) => {
          if (!segmentStream) {
            done(
              new HttpError(404, 'STREAM_NOT_FOUND', 'the Segment-compatible endpoints are not enabled', {
                hint: 'set server.segment.stream in tributary.yaml and start the server again',
              }),
            );
            return;
          }
          settle(() => this.#gate(this.#exchange(request, reply), segmentStream, true), done);
        },
        handler: async (request, reply) => this.#handleSegment(request, reply, endpoint),
      });
      app.route({
        method: 'OPTIONS',
        url: `/v1/${endpoint}`,
        handler: async (request, reply) => {
          if (!segmentStream)
            throw new HttpError(404, 'STREAM_NOT_FOUND', 'the Segment-compatible endpoints are not enabled');
          this.#preflight(request, reply, segmentStream);
        },
      });
    }

    const queryRoutes = [
      ['POST', '/v1/query', 'query'],
      ['GET', '/v1/tables', 'listTables'],
      ['GET', '/v1/tables/:table', 'getTable'],
      ['GET', '/v1/tables/:table/snapshots', 'listSnapshots'],
    ] as const;
    for (const [method, url, name] of queryRoutes) {
      app.route({
        method,
        url,
        onRequest: (request, _reply, done) =>
          settle(() => this.#gateQuery(request.raw, request.tributary!), done),
        handler: async (request, reply) => this.#handleQuery(request, reply, name),
      });
    }

    app.get('/healthz', async () => ({ status: 'ok' }));
    app.get('/readyz', async (request, reply) => {
      const excluded = readinessExclusions((request.query as Record<string, unknown>).exclude);
      if (typeof excluded === 'string')
        throw new HttpError(400, 'INVALID_INPUT', excluded, {
          hint: 'leave out exclude=, or give pipelines, sources or both: /readyz?exclude=pipelines,sources',
        });
      const probe = this.streams.values().next().value?.topic;
      const log = this.#options.log;
      const result = await readiness({
        log: this.#options.log,
        catalog: this.#options.catalog ?? this.#options.keys?.driver,
        ...(excluded.has('pipelines') ? {} : { pipelines: this.#options.pipelines }),
        ...(excluded.has('sources') ? {} : { sources: this.#options.sources }),
        dedupeFailure: () =>
          (log instanceof ThreadedLog ? log.dedupeFailure : undefined) ??
          this.#dedupe?.writeFailure ??
          this.#dedupe?.journalFailure?.message,
        ...(this.#threads ? { httpThreads: () => this.#threads!.health() } : {}),
        stallAfterMs: this.#settings.stall_after,
        startedAt: this.#startedAt,
        ...(probe ? { probeTopic: probe } : {}),
      });
      const ready = result.ready && !this.#closed;
      return reply.code(ready ? 200 : 503).send({
        status: ready ? 'ok' : 'unavailable',
        unhealthy: this.#closed ? [...result.unhealthy, 'server (shutting down)'] : result.unhealthy,
        components: result.components,
        ...(excluded.size ? { excluded: [...excluded] } : {}),
      });
    });
    app.get('/metrics', async (_request, reply) => {
      const registry = this.#options.registry;
      const text = this.#threads ? await this.#threads.metrics(registry) : await registry.metrics();
      return reply.type(this.#options.registry.contentType).send(text);
    });
    const openapi = JSON.stringify(
      openApiDocument({ streams: [...this.streams.keys()], segment: segmentStream !== undefined, version }),
    );
    app.get('/openapi.json', async (_request, reply) => reply.type('application/json').send(openapi));
  }

  /** Counts a request Fastify answered in /metrics. */
  #count(request: FastifyRequest, status: number): void {
    const state = request.tributary;
    const route = request.routeOptions.url ?? 'unmatched';
    const stream = state?.stream?.name ?? '-';
    this.#metrics.requests.inc({ route, stream, status: String(status) });
    if (state)
      this.#metrics.requestSeconds.observe({ route, stream }, (performance.now() - state.startedAt) / 1000);
  }

  /** The checks before the body is read (see the module comment). */
  #gate(exchange: Exchange, stream: Stream, segment: boolean): Promise<void> | undefined {
    const state = exchange.state;
    state.stream = stream;
    this.#cors(exchange, stream);

    const headers = exchange.headers;
    const length = Number(headers['content-length'] ?? 0);
    const hasBody = length > 0 || headers['transfer-encoding'] !== undefined;
    if (hasBody) {
      const format = formatOf(headers['content-type']);
      if (!format || (segment && format !== 'json')) {
        throw new HttpError(
          415,
          'UNSUPPORTED_MEDIA_TYPE',
          headers['content-type'] === undefined
            ? 'the request has no Content-Type'
            : `Content-Type ${JSON.stringify(headers['content-type'].slice(0, 100))} is not supported`,
          {
            hint: segment
              ? 'send Content-Type: application/json (UTF-8)'
              : 'send Content-Type: application/json (an object or an array of objects) or application/x-ndjson, in UTF-8',
          },
        );
      }
      state.format = format;
      const encoding = encodingOf(headers['content-encoding']);
      if (!encoding) {
        throw new HttpError(
          415,
          'UNSUPPORTED_MEDIA_TYPE',
          `Content-Encoding ${JSON.stringify(String(headers['content-encoding']).slice(0, 50))} is not supported`,
          {
            hint: 'send the body uncompressed or with Content-Encoding: gzip',
          },
        );
      }
      state.encoding = encoding;
    }
    if (Number.isFinite(length) && length > this.#settings.body_limit) {
      throw new HttpError(
        413,
        'PAYLOAD_TOO_LARGE',
        `the body has ${length} bytes, more than the limit of ${this.#settings.body_limit}`,
        {
          hint: 'send smaller batches (server.body_limit)',
        },
      );
    }

    // Without a limit, no bucket name is built (nor the client IP looked up) for nothing.
    if (stream.perIp.rate > 0 && state.charge)
      this.#limit(`ip\0${stream.name}\0${rateLimitedAs(exchange.ip)}`, stream.perIp, 'this client IP');

    const auth = stream.config.auth;
    if (auth === 'key' || (segment && auth !== 'none')) {
      const presented = presentedKey(exchange);
      if (presented === undefined) {
        if (segment) state.keyDeferred = true;
        else
          throw new HttpError(401, 'AUTH_REQUIRED', `stream ${stream.name} needs an API key`, {
            hint: 'send it as Authorization: Bearer <key> or X-API-Key: <key> (create one with `tributary keys create`)',
          });
      } else {
        const known = this.#options.keys!.verifyCached(presented, exchange.socket);
        if (known === 'miss') {
          return this.#authorize(presented, stream, state).then(() =>
            this.#ingestor.checkCapacity(Number.isFinite(length) ? length : 0),
          );
        }
        this.#admit(known, stream, state);
      }
    }

    this.#ingestor.checkCapacity(Number.isFinite(length) ? length : 0);
    return undefined;
  }

  /** The query API's checks: enabled (404), IP rate limit (429), a key with the query role (401/403). */
  #gateQuery(request: IncomingMessage, state: RequestState): Promise<void> | undefined {
    const enabled = this.#options.thread?.queryApi ?? this.#options.queryApi !== undefined;
    if (!enabled || !this.#options.keys) {
      throw new HttpError(404, 'STREAM_NOT_FOUND', 'the query API is not enabled in this process', {
        hint: 'run `tributary serve` or `tributary up`',
      });
    }
    if (state.charge)
      this.#limit(
        `ip\0query\0${rateLimitedAs(this.#ipOf(request))}`,
        bucketOf(this.#settings.rate_limit.per_ip),
        'this client IP',
      );
    const presented = presentedKey(request);
    if (presented === undefined) {
      throw new HttpError(401, 'AUTH_REQUIRED', 'the query API needs an API key with the query role', {
        hint: 'create one: tributary keys create --role query --table <namespace.table> --name <name>',
      });
    }
    const admit = (key: ApiKey | undefined) => {
      if (!key)
        throw new HttpError(401, 'AUTH_REQUIRED', 'the API key is not valid (unknown, revoked or mistyped)');
      if (!keyAllowsQuery(key)) {
        throw new HttpError(
          403,
          'AUTH_FORBIDDEN',
          `key ${key.id} (${key.name}) has role ${key.role}, not query`,
          {
            hint: 'create a key with --role query',
          },
        );
      }
      if (state.charge)
        this.#limit(`key\0query\0${key.id}`, bucketOf(this.#settings.rate_limit.per_key), `key ${key.id}`);
      state.key = key;
    };
    const known = this.#options.keys.verifyCached(presented);
    if (known !== 'miss') {
      admit(known);
      return undefined;
    }
    return this.#options.keys.verify(presented).then(admit, (cause: unknown) => {
      throw new HttpError(
        503,
        'OVERLOADED',
        'API keys cannot be checked right now (the catalog database is unreachable)',
        {
          headers: { 'retry-after': '5' },
          cause,
        },
      );
    });
  }

  async #handleQuery(
    request: FastifyRequest,
    reply: FastifyReply,
    name: 'query' | 'listTables' | 'getTable' | 'listSnapshots',
  ): Promise<void> {
    let body: unknown;
    if (request.method === 'POST') {
      const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      const encoding = encodingOf(request.headers['content-encoding']);
      if (!encoding || (type !== 'application/json' && type !== 'text/plain')) {
        throw new HttpError(
          415,
          'UNSUPPORTED_MEDIA_TYPE',
          'send the query as application/json or text/plain',
          {
            hint:
              type === 'application/x-www-form-urlencoded'
                ? 'set Content-Type: application/json (curl -d sends application/x-www-form-urlencoded)'
                : 'set Content-Type: application/json with {"sql": "select …"}, or text/plain with the SQL alone',
          },
        );
      }
      const text = decodeUtf8(await decodeBody(raw, encoding, this.#settings.body_limit));
      if (type === 'text/plain') body = text;
      else {
        try {
          body = JSON.parse(text) as unknown;
        } catch {
          throw new HttpError(400, 'INVALID_INPUT', 'the body is not valid JSON', {
            hint: 'send {"sql": "select …"}',
          });
        }
      }
    }
    const api = await this.#options.queryApi!();
    const key = request.tributary!.key!;
    const apiRequest: ApiRequest = {
      params: request.params as Record<string, string>,
      query: request.query as Record<string, string>,
      headers: request.headers,
      body,
      canRead: (table) => keyAllowsTable(key, table),
    };
    const response = await api[name](apiRequest);
    await reply
      .code(response.status)
      .headers(response.headers ?? {})
      .type(response.contentType)
      .send(response.body);
  }

  async #authorize(presented: string, stream: Stream, state: RequestState): Promise<void> {
    let key: ApiKey | undefined;
    try {
      key = await this.#options.keys!.verify(presented);
    } catch (cause) {
      this.#options.logger.warn({ err: cause }, 'cannot read API keys from the catalog database');
      throw new HttpError(
        503,
        'OVERLOADED',
        'API keys cannot be checked right now (the catalog database is unreachable)',
        {
          hint: 'retry after the Retry-After delay',
          headers: { 'retry-after': '5' },
          cause,
        },
      );
    }
    this.#admit(key, stream, state);
  }

  #admit(key: ApiKey | undefined, stream: Stream, state: RequestState): void {
    if (!key) {
      throw new HttpError(401, 'AUTH_REQUIRED', 'the API key is not valid (unknown, revoked or mistyped)', {
        hint: 'check the key; `tributary keys list` shows the active ones',
      });
    }
    if (!keyAllowsIngest(key, stream.name)) {
      const sends = key.role === 'ingest' || key.role === 'admin';
      throw new HttpError(
        403,
        'AUTH_FORBIDDEN',
        sends
          ? `key ${key.id} (${key.name}) may not send events to stream ${stream.name}`
          : `key ${key.id} (${key.name}) is a ${key.role} key: it sends no events`,
        {
          hint: `create ${sends ? 'a key for it' : 'an ingest key'}: tributary keys create --stream ${stream.name} --name <name>`,
        },
      );
    }
    state.key = key;
    if (stream.perKey.rate > 0 && state.charge)
      this.#limit(`key\0${stream.name}\0${key.id}`, stream.perKey, `key ${key.id}`);
  }

  #limit(bucket: string, limit: { rate: number; burst: number }, who: string): void {
    const taken = this.#buckets.take(bucket, limit);
    if (!taken.ok) {
      throw new HttpError(
        429,
        'RATE_LIMITED',
        `${who} is over its rate limit of ${limit.rate} requests per second`,
        {
          hint: `retry after ${taken.retryAfterSeconds} s, or send larger batches`,
          headers: { 'retry-after': String(taken.retryAfterSeconds) },
        },
      );
    }
  }

  #cors(exchange: Exchange, stream: Stream): boolean {
    const origin = exchange.headers.origin;
    if (origin === undefined) return false;
    if (!originAllowed(origin, stream.corsAny, stream.corsOrigins)) {
      throw new HttpError(
        403,
        'AUTH_FORBIDDEN',
        `origin ${JSON.stringify(origin.slice(0, 200))} may not send to stream ${stream.name}`,
        {
          hint: `add it to streams.${stream.name}.cors_origins in tributary.yaml`,
        },
      );
    }
    exchange.header('access-control-allow-origin', origin);
    exchange.header('vary', 'Origin');
    exchange.header('access-control-expose-headers', 'retry-after, idempotent-replayed');
    return true;
  }

  #preflight(request: FastifyRequest, reply: FastifyReply, stream: Stream): void {
    if (request.headers.origin === undefined) {
      throw new HttpError(400, 'INVALID_INPUT', 'a CORS preflight needs an Origin header');
    }
    request.tributary!.stream = stream;
    this.#cors(this.#exchange(request, reply), stream);
    void reply
      .header('access-control-allow-methods', 'POST, OPTIONS')
      .header('access-control-allow-headers', CORS_ALLOW_HEADERS)
      .header('access-control-max-age', '600')
      .code(204)
      .send();
  }

  /** A Fastify request as its checks see it. */
  #exchange(request: FastifyRequest, reply: FastifyReply): Exchange {
    return this.#exchangeOf(request.raw, request.tributary!, (name, value) => void reply.header(name, value));
  }

  #exchangeOf(
    request: IncomingMessage,
    state: RequestState,
    header: (name: string, value: string) => void,
  ): Exchange {
    const ipOf = () => this.#ipOf(request);
    return {
      headers: request.headers,
      get ip() {
        return (state.ip ??= ipOf());
      },
      socket: request.socket,
      state,
      header,
    };
  }

  #ipOf(request: IncomingMessage): string {
    return this.#clientIp.of(request.socket.remoteAddress, request.headers['x-forwarded-for']);
  }

  /**
   * POST /v1/streams/{stream}/events, served here on node:http rather than by Fastify: this is the hot
   * path of ingest, where Fastify's routing, hooks and replies cost about a fifth of the server's CPU per
   * single-event request. False for any other request (Fastify serves it).
   */
  #serveEvents(request: IncomingMessage, response: ServerResponse): boolean {
    if (request.method !== 'POST') return false;
    // Idempotency-Keys' answers are kept by the first thread: another hands it such requests.
    if (this.#options.thread && request.headers['idempotency-key'] !== undefined) return false;
    const name = eventsStreamOf(request.url ?? '');
    if (name === undefined) return false;
    this.#events(request, response, name).catch((error: unknown) => {
      this.#options.logger.error({ err: error }, 'unexpected error answering a request');
      response.destroy();
    });
    return true;
  }

  /**
   * On an extra thread, a request the first thread serves: first the checks that come before the body, as
   * the first thread makes them but without taking rate-limit tokens (it takes them); a request that fails
   * them is answered here, before its body is read. Then the body is read within the limit and the request
   * handed over. A request that takes no body (any but POST to events, Segment or the query API) is handed
   * over as it is: the first thread answers it without reading one.
   */
  #handOver(request: IncomingMessage, response: ServerResponse): void {
    const forward = this.#options.thread!.forward;
    const state = newRequestState();
    state.charge = false;
    const headers: Record<string, string> = { ...(this.#tls ? SECURITY_HEADERS_TLS : SECURITY_HEADERS) };
    const exchange = this.#exchangeOf(request, state, (header, value) => (headers[header] = value));
    let route = 'unmatched';
    void (async () => {
      const checks = this.#checksOf(request, exchange);
      if (!checks) {
        forward(request, response, undefined);
        return;
      }
      route = checks.route;
      const checking = checks.check();
      if (checking) await checking;
      forward(request, response, await readBody(request, this.#settings.body_limit));
    })().catch((error: unknown) => {
      if (response.destroyed) return;
      const status = this.#sendErrorAnswer(response, error, request.url ?? '', headers);
      this.#metrics.requests.inc({ route, stream: state.stream?.name ?? '-', status: String(status) });
    });
  }

  /** The stream named in an events URL; 404 when there is none. */
  #streamNamed(name: string): Stream {
    const stream = this.streams.get(name);
    if (!stream) throw noStreamNamed(name);
    return stream;
  }

  /**
   * An error of Fastify's router, raised before any hook ran (none runs for it): answered like every
   * other error, with the security headers, and counted. An over-long parameter names nothing that
   * exists: 404, as the events POST (served without the router) answers for the same name.
   */
  #frameworkError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
    request.tributary = newRequestState();
    reply.headers(this.#tls ? SECURITY_HEADERS_TLS : SECURITY_HEADERS);
    const url = request.raw.url ?? '';
    let answer: unknown = error;
    if (error.code === 'FST_ERR_BAD_URL') {
      answer = new HttpError(400, 'INVALID_INPUT', 'the path is not valid percent-encoding', {
        hint: 'encode each path segment as UTF-8, percent-encoded (encodeURIComponent)',
      });
    } else if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
      const stream = eventsStreamOf(url);
      answer = stream === undefined ? noEndpoint(request.method, url) : noStreamNamed(stream);
    }
    this.#sendError(answer, request, reply);
    this.#count(request, reply.statusCode);
  }

  /** Answers a request served on node:http that failed with `error` (see #errorAnswer); returns the status. */
  #sendErrorAnswer(
    response: ServerResponse,
    error: unknown,
    url: string,
    headers: Record<string, string>,
  ): number {
    const answer = this.#errorAnswer(error, url);
    Object.assign(headers, answer.headers);
    // A body too large is not read to its end: the connection cannot carry another request.
    if (answer.status === 413) headers.connection = 'close';
    sendJson(response, answer.status, headers, JSON.stringify(answer.body));
    return answer.status;
  }

  /** The checks before the body of a request that takes one (see #handOver), with its route's name. */
  #checksOf(
    request: IncomingMessage,
    exchange: Exchange,
  ): { route: string; check: () => Promise<void> | undefined } | undefined {
    if (request.method !== 'POST') return undefined;
    const url = request.url ?? '';
    const name = eventsStreamOf(url);
    if (name !== undefined) {
      return {
        route: ROUTE_EVENTS,
        check: () => this.#gate(exchange, this.#streamNamed(name), false),
      };
    }
    const path = url.split('?')[0]!;
    if (path === '/v1/query') return { route: path, check: () => this.#gateQuery(request, exchange.state) };
    const segment = this.#settings.segment ? this.streams.get(this.#settings.segment.stream) : undefined;
    const endpoint = path.slice('/v1/'.length);
    if (
      segment &&
      path.startsWith('/v1/') &&
      (Object.hasOwn(SEGMENT_CALLS, endpoint) || SEGMENT_BATCH.has(endpoint))
    )
      return { route: path, check: () => this.#gate(exchange, segment, true) };
    return undefined;
  }

  /** 503 to any request once the server is closing: it answers those it took, and takes no more. */
  #refuseWhileClosing(response: ServerResponse): void {
    const headers: Record<string, string> = {
      ...(this.#tls ? SECURITY_HEADERS_TLS : SECURITY_HEADERS),
      'retry-after': '1',
      connection: 'close',
    };
    const body = errorBody('OVERLOADED', 'the server is shutting down', 'retry after the Retry-After delay');
    sendJson(response, 503, headers, JSON.stringify(body));
  }

  async #events(request: IncomingMessage, response: ServerResponse, name: string): Promise<void> {
    const state = newRequestState();
    const headers: Record<string, string> = { ...(this.#tls ? SECURITY_HEADERS_TLS : SECURITY_HEADERS) };
    const exchange = this.#exchangeOf(request, state, (header, value) => (headers[header] = value));
    let status = 202;
    try {
      const checking = this.#gate(exchange, this.#streamNamed(name), false);
      if (checking) await checking;
      const outcome = await this.#ingestEvents(exchange, await readBody(request, this.#settings.body_limit));
      if (outcome.replayed) headers['idempotent-replayed'] = 'true';
      sendJson(response, status, headers, JSON.stringify(outcome.result));
    } catch (error) {
      if (response.destroyed) return; // the client went away
      status = this.#sendErrorAnswer(response, error, request.url ?? '', headers);
    }
    const stream = state.stream?.name ?? '-';
    this.#metrics.requests.inc({ route: ROUTE_EVENTS, stream, status: String(status) });
    this.#metrics.requestSeconds.observe(
      { route: ROUTE_EVENTS, stream },
      (performance.now() - state.startedAt) / 1000,
    );
  }

  #ingest(input: Parameters<Ingestor['ingest']>[0]): Promise<IngestOutcome> {
    const work = this.#ingestor.ingest(input);
    this.#ingesting.add(work);
    void work.then(
      () => this.#ingesting.delete(work),
      () => this.#ingesting.delete(work),
    );
    return work;
  }

  /** The decoded body (refused when empty) with its signature checked for HMAC streams. */
  async #decodedBody(exchange: Exchange, raw: unknown): Promise<Buffer> {
    const state = exchange.state;
    if (!Buffer.isBuffer(raw) || raw.length === 0) {
      throw new HttpError(400, 'INVALID_INPUT', 'the request has no body', {
        hint: 'send a JSON object, a JSON array of objects, or NDJSON (one object a line)',
      });
    }
    const body = await decodeBody(raw, state.encoding, this.#settings.body_limit);
    const stream = state.stream!;
    if (stream.config.auth === 'hmac' && stream.hmac) {
      const header = exchange.headers[stream.hmac.header];
      const problem = verifySignature(stream.hmac, Array.isArray(header) ? header[0] : header, body);
      if (problem) {
        throw new HttpError(401, 'AUTH_REQUIRED', `the webhook signature is not valid: ${problem}`, {
          hint: `sign the body with HMAC-SHA256 and the stream's shared secret (${stream.hmac.format} format, ${stream.hmac.header} header)`,
        });
      }
    }
    return body;
  }

  #client(exchange: Exchange): ClientInfo {
    const agent = exchange.headers['user-agent'];
    return {
      ip: exchange.ip,
      userAgent: typeof agent === 'string' ? agent : undefined,
      receivedAt: Date.now(),
    };
  }

  /**
   * The request's Idempotency-Key, with its scope: the API key that sent it (another client of the stream
   * cannot take a key first and have the real request refused with 422, or answered with its own stored
   * answer). Requests without an API key (auth: none, HMAC) share the stream's scope.
   */
  #idempotency(
    headers: IncomingHttpHeaders,
    state: RequestState,
    body: Buffer,
  ): { idempotencyKey: string; idempotencyScope?: string; bodyHash: string } | undefined {
    const key = this.#idempotencyKey(headers);
    if (key === undefined) return undefined;
    return {
      idempotencyKey: key,
      ...(state.key ? { idempotencyScope: state.key.id } : {}),
      bodyHash: createHash('sha256').update(body).digest('hex'),
    };
  }

  #idempotencyKey(headers: IncomingHttpHeaders): string | undefined {
    const header = headers['idempotency-key'];
    if (header === undefined) return undefined;
    const value = Array.isArray(header) ? header[0] : header;
    if (value === undefined || !IDEMPOTENCY_KEY.test(value)) {
      throw new HttpError(
        400,
        'INVALID_INPUT',
        'the Idempotency-Key header must be 1 to 256 visible ASCII characters',
        {
          hint: 'use a UUID',
        },
      );
    }
    return value;
  }

  async #ingestEvents(exchange: Exchange, raw: Buffer): Promise<IngestOutcome> {
    const state = exchange.state;
    const stream = state.stream!;
    const body = await this.#decodedBody(exchange, raw);
    const idempotency = this.#idempotency(exchange.headers, state, body);
    const format = state.format ?? 'json';
    // Events taken as they are need no values built (body.ts), unless a schema or a partition key reads them.
    const items =
      (format === 'json' && !stream.validate && !stream.partitionKey && isUtf8(body)
        ? scanEvents(body, this.#settings.max_events, this.#settings.max_depth, stream.config.id_field)
        : undefined) ?? parseEvents(decodeUtf8(body), format, this.#settings.max_events, body);
    return this.#ingest({
      stream,
      items,
      idField: stream.config.id_field,
      client: this.#client(exchange),
      ...idempotency,
    });
  }

  async #handleSegment(request: FastifyRequest, reply: FastifyReply, endpoint: string): Promise<void> {
    const exchange = this.#exchange(request, reply);
    const state = exchange.state;
    const stream = state.stream!;
    const body = await this.#decodedBody(exchange, request.body);
    // One JSON value, not a list of events: segmentEvents refuses anything but an object.
    const parsed = parseJsonBody(
      decodeUtf8(body),
      SEGMENT_BATCH.has(endpoint)
        ? 'send one JSON object: {"batch": [calls…]}'
        : 'send one call as a JSON object; several go to /v1/batch as {"batch": [calls…]}',
    );
    const { items, writeKey } = segmentEvents(parsed, endpoint, this.#settings.max_events);
    if (state.keyDeferred) {
      if (writeKey === undefined) {
        throw new HttpError(401, 'AUTH_REQUIRED', 'the Segment endpoints need a write key', {
          hint: 'send an API key as basic auth (username = key, empty password) or as writeKey in the body',
        });
      }
      await this.#authorize(writeKey, stream, state);
    }
    const idempotency = this.#idempotency(request.headers, state, body);
    const client = this.#client(exchange);
    const outcome = await this.#ingest({
      stream,
      items,
      idField: 'messageId',
      client,
      prepare: (event, newId) => prepareSegmentEvent(event, client.receivedAt, newId),
      ...idempotency,
    });
    if (outcome.replayed) reply.header('idempotent-replayed', 'true');
    const result: IngestResult = outcome.result;
    await reply.code(200).send({ success: true, ...result });
  }

  #sendError(error: unknown, request: FastifyRequest, reply: FastifyReply): void {
    const fastifyError = error as { code?: string; statusCode?: number; message?: string };
    if (fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      void reply
        .code(413)
        .send(
          errorBody(
            'PAYLOAD_TOO_LARGE',
            `the body is larger than the limit of ${this.#settings.body_limit} bytes`,
            'send smaller batches (server.body_limit)',
          ),
        );
      return;
    }
    if (fastifyError.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      void reply.code(415).send(errorBody('UNSUPPORTED_MEDIA_TYPE', 'the Content-Type is not supported'));
      return;
    }
    if (
      !(error instanceof HttpError) &&
      typeof fastifyError.statusCode === 'number' &&
      fastifyError.statusCode >= 400 &&
      fastifyError.statusCode < 500
    ) {
      void reply
        .code(fastifyError.statusCode === 413 ? 413 : 400)
        .send(
          errorBody(
            fastifyError.statusCode === 413 ? 'PAYLOAD_TOO_LARGE' : 'INVALID_INPUT',
            `the request is malformed: ${fastifyError.message ?? 'unknown'}`,
          ),
        );
      return;
    }
    const answer = this.#errorAnswer(error, request.url);
    void reply.headers(answer.headers).code(answer.status).send(answer.body);
  }

  /** The answer to a request that failed with `error`: an HttpError's own, 503 when retryable, else 500. */
  #errorAnswer(
    error: unknown,
    url: string,
  ): { status: number; headers: Readonly<Record<string, string>>; body: unknown } {
    if (error instanceof HttpError)
      return { status: error.status, headers: error.headers, body: error.body() };
    if (isTributaryError(error) && error.retryable) {
      return {
        status: 503,
        headers: { 'retry-after': '1' },
        body: errorBody('OVERLOADED', error.message, error.hint),
      };
    }
    this.#options.logger.error(
      { err: error, url: url.split('?')[0] },
      'unexpected error answering a request',
    );
    return {
      status: 500,
      headers: {},
      body: errorBody(
        'INTERNAL',
        'the server failed to handle the request',
        'see the server log; please report it',
      ),
    };
  }
}

/**
 * Listens on `host:port` without SO_REUSEPORT and closes again: fails with EADDRINUSE when another socket
 * has it, even one that shares it. Resolves with the port (the one picked, for port 0).
 */
export function probePort(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createNetServer();
    probe.once('error', reject);
    probe.listen({ host, port, exclusive: true }, () => {
      const taken = (probe.address() as AddressInfo).port;
      probe.close(() => resolve(taken));
    });
  });
}

/** Checks what the server needs before starting, and reads its TLS files when it has some. */
function prepare(
  options: ServerOptions,
  streams: ReadonlyMap<string, Stream>,
): { cert: Buffer; key: Buffer } | undefined {
  const project = options.project;
  const needsKeys =
    [...streams.values()].some((s) => s.config.auth === 'key') ||
    project.platform.server.segment !== undefined;
  if (needsKeys && !options.keys) {
    throw new TributaryError('INTERNAL', 'the server needs a key store for streams with auth: key');
  }
  const tlsConfig = project.platform.server.tls;
  if (!tlsConfig) return undefined;
  try {
    return {
      cert: readFileSync(projectPath(project, tlsConfig.cert)),
      key: readFileSync(projectPath(project, tlsConfig.key)),
    };
  } catch (cause) {
    throw new TributaryError(
      'CONFIG_INVALID',
      `server.tls: cannot read ${(cause as { path?: string }).path ?? 'the files'}`,
      {
        cause,
        hint: 'check server.tls.cert and server.tls.key: PEM files relative to the project, readable by this user',
      },
    );
  }
}

/**
 * The dedupe store of an extra HTTP thread: the streams' windows. Event ids are deduplicated by the log's
 * thread, and the requests with an Idempotency-Key are the first thread's (#serveEvents hands them over).
 */
function windowsOnly(streams: ReadonlyMap<string, Stream>): IngestDedupe {
  const firstThreadOnly = (): never => {
    throw new TributaryError('INTERNAL', 'Idempotency-Keys are kept by the first HTTP thread only');
  };
  return {
    windowOf: (stream) => streams.get(stream)?.config.dedupe_window ?? 0,
    batch: firstThreadOnly,
    seen: firstThreadOnly,
    record: firstThreadOnly,
    written: firstThreadOnly,
  };
}

/** Writes a JSON answer, its type and length added to `headers`. */
function sendJson(
  response: ServerResponse,
  status: number,
  headers: Record<string, string>,
  body: string,
): void {
  headers['content-type'] = 'application/json; charset=utf-8';
  headers['content-length'] = String(Buffer.byteLength(body));
  response.writeHead(status, headers);
  response.end(body);
}

/**
 * The answer to a request Node's HTTP parser refused or timed out (the `clientError` event): the status,
 * in the API's error shape, then the connection is closed.
 */
function clientError(error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, message, hint]: [number, ErrorCode, string, string] =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [
          408,
          'INVALID_INPUT',
          'the request was not sent in time',
          'send the whole request within server.request_timeout',
        ]
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'INVALID_INPUT', 'the request headers are too large', 'send smaller headers']
        : [400, 'INVALID_INPUT', 'the request is not valid HTTP', 'check the client'];
  const body = JSON.stringify(errorBody(code, message, hint));
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
}

function noStreamNamed(name: string): HttpError {
  return new HttpError(404, 'STREAM_NOT_FOUND', `no stream named ${JSON.stringify(name.slice(0, 100))}`, {
    hint: 'streams are configured under streams: in tributary.yaml (the server reads it when it starts)',
  });
}

function noEndpoint(method: string, url: string): HttpError {
  return new HttpError(404, 'STREAM_NOT_FOUND', `no endpoint ${method} ${url.split('?')[0]}`, {
    hint: 'see GET /openapi.json for the API',
  });
}

const EVENTS_PREFIX = '/v1/streams/';
const EVENTS_SUFFIX = '/events';

/**
 * The stream of an events URL (`/v1/streams/{stream}/events`, query and fragment aside; the absolute form
 * `http://host/v1/…` too), or undefined for another URL.
 */
function eventsStreamOf(url: string): string | undefined {
  if (!url.startsWith('/')) {
    try {
      url = new URL(url).pathname;
    } catch {
      return undefined;
    }
  }
  if (!url.startsWith(EVENTS_PREFIX)) return undefined;
  const end = url.search(/[?#]/);
  const path = end < 0 ? url : url.slice(0, end);
  if (!path.endsWith(EVENTS_SUFFIX) || path.length <= EVENTS_PREFIX.length + EVENTS_SUFFIX.length)
    return undefined;
  const name = path.slice(EVENTS_PREFIX.length, -EVENTS_SUFFIX.length);
  if (name.includes('/')) return undefined;
  try {
    return decodeURIComponent(name);
  } catch {
    return undefined;
  }
}

function bucketOf(limit: { requests_per_second: number; burst: number }): { rate: number; burst: number } {
  return { rate: limit.requests_per_second, burst: limit.burst };
}

/** Runs a check that finishes now (undefined) or later (a promise), and reports it to a Fastify hook. */
function settle(check: () => Promise<void> | undefined, done: (error?: Error) => void): void {
  let pending: Promise<void> | undefined;
  try {
    pending = check();
  } catch (error) {
    done(error as Error);
    return;
  }
  if (pending)
    pending.then(
      () => done(),
      (error: unknown) => done(error as Error),
    );
  else done();
}

/** The API key a request carries: Authorization: Bearer, Authorization: Basic (username), or X-API-Key. */
export function presentedKey(request: { readonly headers: IncomingHttpHeaders }): string | undefined {
  const authorization = request.headers.authorization;
  if (typeof authorization === 'string') {
    const space = authorization.indexOf(' ');
    const scheme = authorization.slice(0, space).toLowerCase();
    const value = authorization.slice(space + 1).trim();
    if (space > 0 && scheme === 'bearer' && value) return value;
    if (space > 0 && scheme === 'basic' && value) {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const user = decoded.split(':')[0];
      if (user) return user;
    }
  }
  const header = request.headers['x-api-key'];
  const value = Array.isArray(header) ? header[0] : header;
  return value ? value.trim() : undefined;
}

/**
 * `/readyz?exclude=pipelines,sources` (as Kubernetes' own /readyz?exclude=…): readiness to take events, for
 * a load balancer or a Kubernetes readiness probe — a pipeline that failed (a schema it refuses, say) is
 * the pipeline's to fix, and taking the server out of the Service for it would stop ingest too. The set
 * of names, or what is wrong with the parameter.
 */
function readinessExclusions(parameter: unknown): Set<'pipelines' | 'sources'> | string {
  const excluded = new Set<'pipelines' | 'sources'>();
  if (parameter === undefined) return excluded;
  const values = Array.isArray(parameter) ? parameter : [parameter];
  for (const value of values) {
    for (const name of String(value).split(',')) {
      const trimmed = name.trim();
      if (trimmed === 'pipelines' || trimmed === 'sources') excluded.add(trimmed);
      else if (trimmed !== '')
        return `exclude: "${trimmed.slice(0, 40)}" is not something /readyz can leave out`;
    }
  }
  return excluded;
}
