/**
 * An extra HTTP thread of the server (see http-threads.ts): the same IngestServer on the same address and
 * port, serving events itself and handing every other request to the first thread.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parentPort, workerData } from 'node:worker_threads';
import { Registry } from 'prom-client';
import { createLogger } from '../core/logger.ts';
import type { Project } from '../core/project.ts';
import { isTributaryError } from '../errors.ts';
import { errorBody } from './http-error.ts';
import type { HttpWorkerData, MainMessage, WorkerMessage } from './http-threads.ts';
import type { KeyStore } from './keys.ts';
import { IngestServer } from './server.ts';
import { openKeyStore } from './start.ts';
import { ThreadedLog } from './threaded-log.ts';

const port = parentPort!;
const data = workerData as HttpWorkerData;
const post = (message: WorkerMessage) => port.postMessage(message);

/** Requests handed to the first thread, waiting for its answer. */
const forwarded = new Map<number, ServerResponse>();
let next = 1;

/** Hands a request to the first thread (IngestServer#handOver read its body, if it takes one). */
function forward(request: IncomingMessage, response: ServerResponse, body: Buffer | undefined): void {
  const remoteAddress = request.socket.remoteAddress;
  // Gone already: nothing to answer. (Never forwarded without the client's address, which rate limits and
  // trusted proxies go by.)
  if (remoteAddress === undefined || response.destroyed) {
    response.destroy();
    return;
  }
  const id = next++;
  forwarded.set(id, response);
  // Once the client is gone, its answer has nowhere to go.
  response.once('close', () => forwarded.delete(id));
  const headers = { ...request.headers };
  if (body) {
    // The body travels whole: its length is known, however it was sent.
    delete headers['transfer-encoding'];
    headers['content-length'] = String(body.length);
  } else {
    // Not read, so not sent: the first thread answers without one (Node discards it here).
    delete headers['transfer-encoding'];
    delete headers['content-length'];
  }
  post({
    op: 'forward',
    id,
    method: request.method ?? 'GET',
    url: request.url ?? '/',
    headers,
    body: body ?? new Uint8Array(0),
    remoteAddress,
  });
}

/** Headers of the first thread's answer that are about its connection, not this one. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'transfer-encoding', 'date'];

function answer(message: Extract<MainMessage, { op: 'answer' }>): void {
  const response = forwarded.get(message.id);
  if (!response) return;
  forwarded.delete(message.id);
  if (response.destroyed || response.headersSent) return;
  const headers = { ...message.headers };
  // This connection follows its own client (keep-alive, HTTP/1.0) unless the first thread closes it.
  const close = headers.connection === 'close';
  for (const name of HOP_BY_HOP) delete headers[name];
  if (close) headers.connection = 'close';
  const status = message.status;
  // A HEAD answer keeps the length of what GET would send; 204 and 304 have none.
  if (status === 204 || status === 304) delete headers['content-length'];
  else if (response.req.method !== 'HEAD') headers['content-length'] = message.body.length;
  response.writeHead(status, headers);
  response.end(response.req.method === 'HEAD' ? undefined : message.body);
}

async function main(): Promise<void> {
  // The first thread starts only when every value of tributary.yaml is resolved (requireResolvedPlatform).
  const project: Project = {
    ...data.project,
    platformUnresolved: [],
    pipelines: new Map(),
    sources: new Map(),
  };
  const platform = project.platform;
  const logger = createLogger({ level: data.logLevel, format: platform.logging.format }).child({
    thread: data.slot,
  });
  const log = ThreadedLog.overPort(data.log);
  const registry = new Registry();
  let keys: KeyStore | undefined;
  let server: IngestServer;
  try {
    keys = await openKeyStore(project);
    server = IngestServer.forThread({
      project,
      log,
      registry,
      logger,
      keys,
      host: data.host,
      port: data.port,
      thread: {
        buckets: data.buckets,
        pending: data.pending,
        threads: data.threads,
        slot: data.slot,
        queryApi: data.queryApi,
        forward,
      },
    });
    await server.listen();
  } catch (error) {
    await keys?.close().catch(() => undefined);
    await log.close().catch(() => undefined);
    post({
      op: 'failed',
      message: error instanceof Error ? error.message : String(error),
      ...(isTributaryError(error) ? { code: error.code, ...(error.hint ? { hint: error.hint } : {}) } : {}),
    });
    return;
  }
  const running = server;
  port.on('message', (message: MainMessage) => {
    if (message.op === 'answer') answer(message);
    else if (message.op === 'metrics')
      registry.getMetricsAsJSON().then(
        (metrics) => post({ op: 'metrics', id: message.id, metrics }),
        (error: unknown) => logger.warn({ err: error }, 'cannot collect the metrics of this thread'),
      );
    else if (message.op === 'close') {
      void (async () => {
        try {
          await running.close();
        } finally {
          // What the first thread still owes is answered 503: it is closing too.
          for (const response of forwarded.values()) {
            if (response.destroyed) continue;
            const body = JSON.stringify(errorBody('OVERLOADED', 'the server is shutting down'));
            response.writeHead(503, {
              'content-type': 'application/json; charset=utf-8',
              'retry-after': '1',
            });
            response.end(body);
          }
          await keys?.close().catch(() => undefined);
          await log.close().catch(() => undefined);
          post({ op: 'closed' });
        }
      })();
    }
  });
  post({ op: 'ready' });
}

await main();
