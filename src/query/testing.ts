/** Test support for query/: a catalog in a temporary directory and tables made from SQL. Not used in production. */
import { parseTableIdentifier } from '../catalog/identifier.ts';
import { openTestCatalog, type TestCatalog } from '../catalog/test-support.ts';
import { describeRelation } from '../iceberg/data-files.ts';
import { append } from '../iceberg/operations/write.ts';
import { assignFreshIds } from '../iceberg/schema.ts';
import type { Table } from '../iceberg/table.ts';
import { structOfColumns } from './duckdb-types.ts';

export interface TestLakehouse extends TestCatalog {
  /** Creates `name` with the columns of `select` (and its rows, unless `empty`). */
  createFromSql(
    name: string,
    select: string,
    options?: { empty?: boolean; properties?: Record<string, string> },
  ): Promise<Table>;
  /** Appends the rows of `select` to `name`. */
  appendSql(name: string, select: string): Promise<void>;
}

export async function openTestLakehouse(prefix = 'tributary-query-'): Promise<TestLakehouse> {
  const base = await openTestCatalog({ prefix, name: 'tributary' });
  const { catalog, engine } = base;
  return {
    ...base,
    async createFromSql(name, select, options = {}) {
      const identifier = parseTableIdentifier(name);
      const columns = await describeRelation(engine, `(${select})`);
      await catalog.createNamespaceIfAbsent(identifier.namespace);
      const table = await catalog.createTable(identifier, {
        schema: { ...assignFreshIds(structOfColumns(columns)), 'schema-id': 0 },
        ...(options.properties ? { properties: options.properties } : {}),
      });
      if (!options.empty) await append(table, engine, `(${select})`);
      return table;
    },
    async appendSql(name, select) {
      const table = await catalog.loadTable(parseTableIdentifier(name));
      await append(table, engine, `(${select})`);
    },
  };
}
