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
import { readBody } from './body.ts';
import { errorBody, HttpError } from './http-error.ts';
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

/** Reads the request's body (within the body limit) and hands the request to the first thread. */
function forward(request: IncomingMessage, response: ServerResponse, bodyLimit: number): void {
  readBody(request, bodyLimit).then(
    (body) => {
      const id = next++;
      forwarded.set(id, response);
      // Once the client is gone, its answer has nowhere to go.
      response.once('close', () => forwarded.delete(id));
      const headers = { ...request.headers };
      // The body travels whole: its length is known, however it was sent.
      delete headers['transfer-encoding'];
      delete headers['content-length'];
      post({
        op: 'forward',
        id,
        method: request.method ?? 'GET',
        url: request.url ?? '/',
        headers,
        body: body,
        remoteAddress: request.socket.remoteAddress,
      });
    },
    (error: unknown) => {
      if (response.destroyed) return;
      // Over the limit: answered as the first thread would; the rest of the body is not read.
      if (error instanceof HttpError) {
        const body = JSON.stringify(error.body());
        response.writeHead(error.status, {
          'content-type': 'application/json; charset=utf-8',
          'content-length': String(Buffer.byteLength(body)),
          connection: 'close',
        });
        response.end(body);
      } else response.destroy();
    },
  );
}

function answer(message: Extract<MainMessage, { op: 'answer' }>): void {
  const response = forwarded.get(message.id);
  if (!response) return;
  forwarded.delete(message.id);
  if (response.destroyed) return;
  const headers = { ...message.headers };
  delete headers['transfer-encoding'];
  headers['content-length'] = message.body.length;
  response.writeHead(message.status, headers);
  response.end(message.body);
}

async function main(): Promise<void> {
  const project: Project = { ...data.project, pipelines: new Map(), sources: new Map() };
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
        forward: (request, response) => forward(request, response, platform.server.body_limit),
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
      void registry.getMetricsAsJSON().then((metrics) => post({ op: 'metrics', id: message.id, metrics }));
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
