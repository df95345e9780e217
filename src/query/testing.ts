/** Test support for query/: a catalog in a temporary directory and tables made from SQL. Not used in production. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Catalog } from '../catalog/catalog.ts';
import { parseTableIdentifier } from '../catalog/identifier.ts';
import { openCatalog } from '../catalog/open.ts';
import { openEngine, type Engine } from '../iceberg/duckdb.ts';
import { describeRelation } from '../iceberg/data-files.ts';
import { append } from '../iceberg/operations/write.ts';
import { assignFreshIds } from '../iceberg/schema.ts';
import type { Table } from '../iceberg/table.ts';
import { structOfColumns } from './duckdb-types.ts';

export interface TestLakehouse {
  readonly dir: string;
  readonly catalog: Catalog;
  readonly engine: Engine;
  /** Creates `name` with the columns of `select` (and its rows, unless `empty`). */
  createFromSql(name: string, select: string, options?: { empty?: boolean }): Promise<Table>;
  /** Appends the rows of `select` to `name`. */
  appendSql(name: string, select: string): Promise<void>;
  close(): void;
}

export async function openTestLakehouse(prefix = 'tributary-query-'): Promise<TestLakehouse> {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  const catalog = await openCatalog({
    name: 'tributary',
    uri: `sqlite:${dir}/catalog.db`,
    warehouse: `${dir}/warehouse`,
    baseDir: dir,
    fsync: false,
  });
  const engine = await openEngine();
  return {
    dir,
    catalog,
    engine,
    async createFromSql(name, select, options = {}) {
      const identifier = parseTableIdentifier(name);
      const columns = await describeRelation(engine, `(${select})`);
      await catalog.createNamespaceIfAbsent(identifier.namespace);
      const table = await catalog.createTable(identifier, {
        schema: { ...assignFreshIds(structOfColumns(columns)), 'schema-id': 0 },
      });
      if (!options.empty) await append(table, engine, `(${select})`);
      return table;
    },
    async appendSql(name, select) {
      const table = await catalog.loadTable(parseTableIdentifier(name));
      await append(table, engine, `(${select})`);
    },
    close() {
      engine.close();
      catalog.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
