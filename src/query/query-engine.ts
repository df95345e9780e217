/**
 * SQL over the catalog's tables, executed by DuckDB. Tables are named as in the catalog
 * (`select count(*) from silver.orders`); each table a query names is exposed as a view over the
 * snapshot asked for (the current one by default), with its deletes applied. Views of current snapshots are
 * kept until their table commits again (see TableViews), so an engine kept open answers repeated queries
 * without planning them again and still sees every commit.
 */
import type { Catalog } from '../catalog/catalog.ts';
import { namespaceToString, tableIdentifierToString, type TableIdentifier } from '../catalog/identifier.ts';
import { TributaryError } from '../errors.ts';
import { didYouMean } from '../did-you-mean.ts';
import type { Engine } from '../iceberg/duckdb.ts';
import { parseSingleSelect } from './sql-check.ts';
import { TableViews } from './table-views.ts';

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
  readonly views: TableViews;

  constructor(catalog: Catalog, engine: Engine) {
    this.#catalog = catalog;
    this.#engine = engine;
    this.views = new TableViews(catalog, engine.connection);
  }

  /** Catalog tables the SQL names: from DuckDB's parse of a SELECT, else where `namespace.name` appears. */
  async referencedTables(sql: string): Promise<TableIdentifier[]> {
    const all = await this.#catalog.listAllTables();
    let parsed;
    try {
      parsed = await parseSingleSelect(this.#engine.connection, sql);
    } catch {
      parsed = undefined;
    }
    if (parsed) {
      const named = new Set(parsed.tables.map((t) => t.parts.join('.').toLowerCase()));
      return all.filter((identifier) => named.has(tableIdentifierToString(identifier).toLowerCase()));
    }
    return all.filter((identifier) => {
      const ns = escape(namespaceToString(identifier.namespace));
      const name = escape(identifier.name);
      return new RegExp(`(?<![\\w."])"?${ns}"?\\s*\\.\\s*"?${name}"?(?![\\w"])`, 'i').test(sql);
    });
  }

  /**
   * Exposes each referenced table as a view over the requested snapshot. Current snapshots are cached
   * until the table commits again; a time-travel view replaces the table's view in this engine.
   */
  async attach(sql: string, options: QueryOptions = {}): Promise<TableIdentifier[]> {
    const tables = await this.referencedTables(sql);
    const timeTravel = options.snapshotId !== undefined || options.asOfMs !== undefined;
    for (const identifier of tables) {
      if (timeTravel) await this.views.replaceWith(await this.#catalog.loadTable(identifier), options);
      else await this.views.current(identifier);
    }
    return tables;
  }

  async query(sql: string, options: QueryOptions = {}): Promise<QueryResult> {
    await this.attach(sql, options);
    let reader;
    try {
      reader = await this.#engine.connection.runAndReadAll(sql);
    } catch (cause) {
      const message = (cause as Error).message.split('\n')[0]!;
      // DuckDB says "schema silver does not exist" of silver.order when silver holds tables but not that
      // one (only the tables a query names are attached): say which table, and the likely one.
      const missing = /^Catalog Error: Table with name (.+?) does not exist\b/.exec(message)?.[1];
      if (missing) {
        const names = (await this.#catalog.listAllTables()).map((t) => tableIdentifierToString(t));
        const suggestion = didYouMean(missing.replace(/"/g, ''), names);
        throw new TributaryError('INVALID_INPUT', `query failed: there is no table ${missing}`, {
          cause,
          hint: suggestion
            ? `did you mean ${suggestion}? (see \`tributary tables list\`)`
            : 'name tables as namespace.table (see `tributary tables list`)',
        });
      }
      throw new TributaryError('INVALID_INPUT', `query failed: ${message}`, {
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
