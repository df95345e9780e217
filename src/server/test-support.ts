/** A server in a temporary project, on 127.0.0.1 and a free port, for the server's tests. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { createLogger } from '../core/logger.ts';
import { loadProject, type Project } from '../core/project.ts';
import { EmbeddedLog } from '../log/embedded-log.ts';
import type { Log, StoredRecord } from '../log/log.ts';
import type { PipelineHandle } from './health.ts';
import { KeyStore } from './keys.ts';
import { IngestServer } from './server.ts';
import { lazyQueryApi, openKeyStore } from './start.ts';
import { ThreadedLog } from './threaded-log.ts';

export interface TestServer {
  readonly url: string;
  readonly server: IngestServer;
  readonly project: Project;
  readonly log: Log;
  readonly keys: KeyStore;
  readonly registry: Registry;
  /** Creates a key and returns it: an ingest or admin key for streams, a query key for tables. */
  key(scope: readonly string[], role?: 'ingest' | 'query' | 'admin'): Promise<string>;
  /** Every record of a topic, in partition then offset order. */
  records(topic: string): Promise<StoredRecord[]>;
  /** Values of a topic's records, parsed. */
  values(topic: string): Promise<Array<Record<string, unknown>>>;
  count(topic: string): Promise<number>;
  close(): Promise<void>;
}

export interface TestServerOptions {
  /** tributary.yaml; `server.port: 0` and the host are added. */
  readonly yaml: string;
  /** Extra files of the project (schemas, certificates). */
  readonly files?: Readonly<Record<string, string>>;
  /** Wraps the log (to slow it down or make it fail). */
  readonly wrapLog?: (log: Log) => Log;
  readonly pipelines?: () => readonly PipelineHandle[];
  readonly keyCacheTtlMs?: number;
  /** The log on its worker thread, as `tributary serve` runs it (needed for server.threads > 1). */
  readonly threadedLog?: boolean;
  /** Default 0: a free port. */
  readonly port?: number;
}

export async function startTestServer(options: TestServerOptions): Promise<TestServer> {
  const root = mkdtempSync(path.join(tmpdir(), 'tributary-server-'));
  writeFileSync(path.join(root, 'tributary.yaml'), options.yaml);
  for (const [name, content] of Object.entries(options.files ?? {}))
    writeFileSync(path.join(root, name), content);
  const project = loadProject(root);
  const logOptions = {
    directory: path.join(root, '.tributary', 'log'),
    durability: 'os' as const,
    retentionIntervalMs: 0,
  };
  const embedded: Log = options.threadedLog
    ? await ThreadedLog.open(logOptions)
    : await EmbeddedLog.open(logOptions);
  const log = options.wrapLog ? options.wrapLog(embedded) : embedded;
  const store = await openKeyStore(project);
  const keys =
    options.keyCacheTtlMs === undefined
      ? store
      : await KeyStore.open(store.driver, { cacheTtlMs: options.keyCacheTtlMs });
  const registry = new Registry();
  const query = lazyQueryApi(project);
  const server = await IngestServer.create({
    queryApi: query.queryApi,
    project,
    log,
    registry,
    logger: createLogger({ level: 'silent' }),
    keys,
    host: '127.0.0.1',
    port: options.port ?? 0,
    ...(options.pipelines ? { pipelines: options.pipelines } : {}),
  });
  const close = async () => {
    await server.close();
    await query.close();
    await store.close();
    await embedded.close();
    rmSync(root, { recursive: true, force: true });
  };
  let url: string;
  try {
    url = await server.listen();
  } catch (error) {
    await close();
    throw error;
  }
  const records = async (topic: string) => {
    const all: StoredRecord[] = [];
    for (const { partition, start, end } of await embedded.offsets(topic)) {
      let next = start;
      while (next < end) {
        const batch = await embedded.read(topic, partition, next, { maxRecords: 10_000 });
        if (batch.length === 0) break;
        all.push(...batch);
        next = batch[batch.length - 1]!.offset + 1;
      }
    }
    return all;
  };
  return {
    url,
    server,
    project,
    log,
    keys,
    registry,
    async key(scope, role = 'ingest') {
      const name = `k${Math.random().toString(36).slice(2)}`;
      const granted = role === 'query' ? { tables: scope } : { streams: scope };
      return (await keys.create({ name, role, ...granted })).secret;
    },
    records,
    async values(topic) {
      return (await records(topic)).map(
        (r) => JSON.parse(new TextDecoder().decode(r.value)) as Record<string, unknown>,
      );
    },
    async count(topic) {
      return (await embedded.offsets(topic)).reduce((n, o) => n + o.end - o.start, 0);
    },
    close,
  };
}
