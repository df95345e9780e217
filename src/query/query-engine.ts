/**
 * SQL over the catalog's tables, executed by DuckDB. Tables are named as in the catalog
 * (`select count(*) from silver.orders`); each table a query names is exposed as a view over the
 * snapshot asked for (the current one by default), with its deletes applied.
 */
import type { Catalog } from '../catalog/catalog.ts';
import { namespaceToString, type TableIdentifier } from '../catalog/identifier.ts';
import { TributaryError } from '../errors.ts';
import { quoteIdentifier, type Engine } from '../iceberg/duckdb.ts';
import { planScan, scanSql } from '../iceberg/scan.ts';

export interface QueryOptions {
  /** Read every table at this snapshot id (time travel); the tables must have it. */
  readonly snapshotId?: bigint;
  /** Read every table as it was at this time (ms since epoch). */
  readonly asOfMs?: number;
}

export interface QueryResult {
  readonly columns: ReadonlyArray<{ readonly name: string; readonly type: string }>;
  /** Rows as JSON-compatible objects (64-bit integers and decimals as strings). */
  readonly rows: ReadonlyArray<Record<string, unknown>>;
}

export class QueryEngine {
  readonly #catalog: Catalog;
  readonly #engine: Engine;

  constructor(catalog: Catalog, engine: Engine) {
    this.#catalog = catalog;
    this.#engine = engine;
  }

  /** Catalog tables whose `namespace.name` appears in the SQL text. */
  async referencedTables(sql: string): Promise<TableIdentifier[]> {
    const found: TableIdentifier[] = [];
    for (const namespace of await this.#catalog.registry.listNamespaces()) {
      for (const identifier of await this.#catalog.registry.listTables(namespace)) {
        const ns = escape(namespaceToString(identifier.namespace));
        const name = escape(identifier.name);
        const pattern = new RegExp(`(?<![\\w."])"?${ns}"?\\s*\\.\\s*"?${name}"?(?![\\w"])`, 'i');
        if (pattern.test(sql)) found.push(identifier);
      }
    }
    return found;
  }

  /** Creates (or refreshes) a view per referenced table over the requested snapshot. */
  async attach(sql: string, options: QueryOptions = {}): Promise<TableIdentifier[]> {
    const tables = await this.referencedTables(sql);
    for (const identifier of tables) {
      const table = await this.#catalog.loadTable(identifier);
      const plan = await planScan(table.metadata, table.storage, options);
      const schemaName = quoteIdentifier(namespaceToString(identifier.namespace));
      await this.#engine.connection.run(`create schema if not exists ${schemaName}`);
      await this.#engine.connection.run(
        `create or replace view ${schemaName}.${quoteIdentifier(identifier.name)} as select * from ${scanSql(plan, table.storage)}`,
      );
    }
    return tables;
  }

  async query(sql: string, options: QueryOptions = {}): Promise<QueryResult> {
    await this.attach(sql, options);
    let reader;
    try {
      reader = await this.#engine.connection.runAndReadAll(sql);
    } catch (cause) {
      throw new TributaryError('INVALID_INPUT', `query failed: ${(cause as Error).message.split('\n')[0]}`, {
        cause,
        hint: 'name tables as namespace.table (see `tributary tables list`)',
      });
    }
    const names = reader.columnNames();
    const types = reader.columnTypes();
    return {
      columns: names.map((name, i) => ({ name, type: String(types[i]) })),
      rows: reader.getRowObjectsJson(),
    };
  }
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
