/** The server of a project, wired as `tributary serve` and `tributary up` run it. */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Registry } from 'prom-client';
import { openCatalog, resolveCatalogUri } from '../catalog/open.ts';
import { openSqlDriver } from '../catalog/sql-driver.ts';
import { openProjectLog } from '../components.ts';
import type { Logger } from '../core/logger.ts';
import { projectPath, type Project } from '../core/project.ts';
import type { Log } from '../log/log.ts';
import { createQueryApi, type QueryApi } from '../query/http-api.ts';
import { ReadOnlyQueryEngine } from '../query/read-only.ts';
import type { PipelineHandle, SourceHandleForHealth } from './health.ts';
import { KeyStore } from './keys.ts';
import { IngestServer } from './server.ts';
import { ThreadedLog } from './threaded-log.ts';

/**
 * The log of a process that serves HTTP. The embedded log runs on a worker thread (threaded-log.ts), so
 * that its commits never block request handling; the Kafka log is network requests already, and is
 * used in-process (it batches concurrent appends into one produce request itself). The pipelines of the
 * same process share it.
 */
export function openServerLog(project: Project): Promise<Log> {
  const config = project.platform.log;
  if (config.backend !== 'embedded') return openProjectLog(project);
  const directory = projectPath(project, config.path);
  return ThreadedLog.open({ directory, durability: config.durability });
}

/** The API keys of a project, in its catalog database. */
export async function openKeyStore(project: Project): Promise<KeyStore> {
  const uri = resolveCatalogUri(project.platform.catalog.uri, project.root);
  if (uri.startsWith('sqlite:') && uri !== 'sqlite::memory:')
    mkdirSync(path.dirname(uri.slice('sqlite:'.length)), { recursive: true });
  const driver = await openSqlDriver(uri);
  try {
    return await KeyStore.open(driver);
  } catch (error) {
    await driver.close();
    throw error;
  }
}

/** The query API of a project, opened (catalog and a DuckDB engine) on its first request, not at start. */
export function lazyQueryApi(project: Project): {
  queryApi: () => Promise<QueryApi>;
  close: () => Promise<void>;
} {
  let query: Promise<{ api: QueryApi; close: () => void }> | undefined;
  const queryApi = () =>
    (query ??= (async () => {
      const catalog = await openCatalog({
        name: project.platform.catalog.name,
        uri: project.platform.catalog.uri,
        warehouse: project.platform.warehouse,
        baseDir: project.root,
        storage: project.platform.storage,
      });
      try {
        const engine = await ReadOnlyQueryEngine.open(catalog);
        return {
          api: createQueryApi({ catalog, engine }),
          close: () => {
            engine.close();
            catalog.close();
          },
        };
      } catch (error) {
        catalog.close();
        query = undefined;
        throw error;
      }
    })()).then((opened) => opened.api);
  const close = async () => {
    const opened = await query?.catch(() => undefined);
    opened?.close();
  };
  return { queryApi, close };
}

export interface ProjectServerOptions {
  readonly log: Log;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly pipelines?: () => readonly PipelineHandle[];
  readonly sources?: () => readonly SourceHandleForHealth[];
  readonly host?: string;
  readonly port?: number;
}

/** Opens the key store, creates the server and starts listening; `close` stops both. */
export async function startProjectServer(
  project: Project,
  options: ProjectServerOptions,
): Promise<{ server: IngestServer; url: string; close: () => Promise<void> }> {
  const keys = await openKeyStore(project);
  const { queryApi, close: closeQuery } = lazyQueryApi(project);
  let server: IngestServer | undefined;
  try {
    server = await IngestServer.create({ project, keys, queryApi, ...options });
    const url = await server.listen();
    const running = server;
    return {
      server,
      url,
      close: async () => {
        try {
          await running.close();
        } finally {
          await closeQuery();
          await keys.close();
        }
      },
    };
  } catch (error) {
    await server?.close().catch(() => undefined);
    await closeQuery();
    await keys.close();
    throw error;
  }
}
