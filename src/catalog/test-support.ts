/**
 * Test support: a SQLite catalog in a temporary directory with a DuckDB engine beside it, the place the
 * tests of the Iceberg sink and of query/ start from. Not used in production.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openEngine, type Engine } from '../iceberg/duckdb.ts';
import type { Catalog } from './catalog.ts';
import { openCatalog } from './open.ts';

export interface TestCatalog {
  readonly dir: string;
  readonly catalog: Catalog;
  readonly engine: Engine;
  /** Closes the engine and the catalog, and removes the directory. */
  close(): void;
}

export async function openTestCatalog(options: {
  /** The temporary directory's name prefix. */
  readonly prefix: string;
  /** The catalog's name (default `test`). */
  readonly name?: string;
  readonly engine?: Parameters<typeof openEngine>[0];
}): Promise<TestCatalog> {
  const dir = mkdtempSync(path.join(tmpdir(), options.prefix));
  const catalog = await openCatalog({
    name: options.name ?? 'test',
    uri: `sqlite:${dir}/catalog.db`,
    warehouse: `${dir}/warehouse`,
    baseDir: dir,
    fsync: false,
  });
  const engine = await openEngine(options.engine);
  return {
    dir,
    catalog,
    engine,
    close() {
      engine.close();
      catalog.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
