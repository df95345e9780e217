/**
 * Queries from untrusted callers (the HTTP query API): one SELECT over the catalog's tables, with a time
 * limit and a row limit, that can neither read nor write anything else. Three layers:
 *
 *  1. The text is parsed by DuckDB before anything runs: exactly one statement, a SELECT (or WITH … SELECT),
 *     naming only catalog tables and the WITH names in scope where they are named, calling no table function
 *     but range/generate_series/unnest and only the functions that compute values (allowed-functions.ts, an
 *     allowlist: a function DuckDB adds is refused until it is classified there); time travel runs a
 *     rewritten text only if it parses back into the statement checked (sql-check.ts), and only ever one
 *     statement (a prepared one).
 *     COPY, ATTACH, INSTALL, LOAD, SET, PRAGMA, CREATE, two statements, read_csv('/etc/passwd'), query('…')
 *     are all refused with INVALID_INPUT, and have no effect.
 *  2. The DuckDB instance is hardened once, before any query: no external access except the warehouse's
 *     directories (enable_external_access=false, allowed_directories), no extension auto-install or
 *     auto-load, then lock_configuration=true so SQL cannot change any setting back.
 *  3. Each query runs on its own connection, interrupted when its time is up (QUERY_TIMEOUT), and streams
 *     only `maxRows + 1` rows to learn whether the result was truncated.
 */
import { mkdirSync } from 'node:fs';
import { totalmem } from 'node:os';
import path from 'node:path';
import { DuckDBInstance, type DuckDBConnection, type DuckDBType, type DuckDBValue } from '@duckdb/node-api';
import type { Catalog } from '../catalog/catalog.ts';
import { foldedName, tableIdentifierToString, type TableIdentifier } from '../catalog/identifier.ts';
import { TributaryError, isTributaryError } from '../errors.ts';
import { duckdbTempDirectory, quoteLiteral } from '../iceberg/duckdb.ts';
import { isLocalLocation, localPathOf } from '../storage/location.ts';
import type { QueryResult } from './query-engine.ts';
import { ALLOWED_FUNCTIONS, ALLOWED_FUNCTIONS_HINT, ALLOWED_TABLE_FUNCTIONS } from './allowed-functions.ts';
import { parseSingleSelect, rewriteTableReferences } from './sql-check.ts';
import { SNAPSHOT_SCHEMA, TableViews, type SnapshotSelector } from './table-views.ts';

export interface ReadOnlyEngineOptions {
  /** DuckDB worker threads; default: DuckDB's (the cores). */
  readonly threads?: number;
  /**
   * DuckDB memory limit, e.g. "2GB"; default a quarter of the machine's memory (DuckDB's own default, 80%,
   * would leave the server it shares the process with too little).
   */
  readonly memoryLimit?: string;
  /** Queries run at once at most; more are refused (SERVICE_UNAVAILABLE, retryable). Default 4. */
  readonly maxConcurrent?: number;
}

export interface ReadOnlyQueryOptions extends SnapshotSelector {
  /** Interrupt the query after this long; default 30 s. */
  readonly timeoutMs?: number;
  /** Return at most this many rows (`truncated` says when there were more); default 10,000. */
  readonly maxRows?: number;
  /** Return DuckDB's types and values column by column in `columnar` (for Arrow output) instead of `rows`. */
  readonly columnar?: boolean;
  /**
   * Whether the caller may read a table, by the name the query gives it (the API key's grants); every
   * table when absent. Asked before the catalog is, so a table one may not read is refused alike whether
   * it exists or not.
   */
  readonly canRead?: (table: string) => boolean;
}

export interface ReadOnlyQueryResult extends QueryResult {
  /** True when the result had more than `maxRows` rows and was cut. */
  readonly truncated: boolean;
  readonly elapsedMs: number;
  /** The snapshot each table was read at (table → snapshot id as a string, or null for an empty table). */
  readonly snapshots: Readonly<Record<string, string | null>>;
  /** With `columnar: true`: the result as DuckDB returned it (`rows` is then empty). */
  readonly columnar?: {
    readonly types: readonly DuckDBType[];
    readonly columns: ReadonlyArray<readonly DuckDBValue[]>;
    readonly rowCount: number;
  };
}

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_ROWS = 10_000;

/** A hardened DuckDB instance over a catalog, shared by concurrent read-only queries. */
export class ReadOnlyQueryEngine {
  readonly #catalog: Catalog;
  readonly #instance: DuckDBInstance;
  readonly #admin: DuckDBConnection;
  readonly #views: TableViews;
  readonly #allowed: readonly string[];
  readonly #maxConcurrent: number;
  #running = 0;
  #closed = false;

  private constructor(
    catalog: Catalog,
    instance: DuckDBInstance,
    admin: DuckDBConnection,
    allowed: readonly string[],
    maxConcurrent: number,
  ) {
    this.#catalog = catalog;
    this.#instance = instance;
    this.#admin = admin;
    this.#views = new TableViews(catalog, admin);
    this.#allowed = allowed;
    this.#maxConcurrent = maxConcurrent;
  }

  static async open(catalog: Catalog, options: ReadOnlyEngineOptions = {}): Promise<ReadOnlyQueryEngine> {
    // Directories DuckDB may read: the warehouse, the location of any table kept outside it, and the read
    // cache of a remote warehouse.
    const roots = new Set<string>();
    const addRoot = (location: string) => {
      if (!isLocalLocation(location)) return;
      const local = localPathOf(location);
      for (const root of roots) if (local.startsWith(root)) return;
      roots.add(local.endsWith(path.sep) ? local : `${local}${path.sep}`);
    };
    addRoot(catalog.warehouse);
    for (const directory of catalog.files.readDirectories) {
      mkdirSync(directory, { recursive: true }); // DuckDB allows only directories that exist
      addRoot(directory);
    }
    for (const identifier of await catalog.listAllTables()) {
      try {
        addRoot((await catalog.loadTable(identifier)).location);
      } catch {
        // an unreadable table is refused when queried
      }
    }
    const { instance, admin } = await openHardenedInstance([...roots], options);
    return new ReadOnlyQueryEngine(catalog, instance, admin, [...roots], options.maxConcurrent ?? 4);
  }

  /** The directories queries may read (the warehouse and tables outside it). */
  get allowedDirectories(): readonly string[] {
    return this.#allowed;
  }

  /**
   * Runs one read-only SELECT. INVALID_INPUT when the SQL is anything else, names an unknown table or
   * fails; QUERY_TIMEOUT when interrupted; SNAPSHOT_NOT_FOUND for a snapshot a table lacks.
   */
  async run(sql: string, options: ReadOnlyQueryOptions = {}): Promise<ReadOnlyQueryResult> {
    if (this.#closed) throw new TributaryError('INTERNAL', 'the read-only query engine is closed');
    const started = performance.now();
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const maxRows = Math.max(0, Math.floor(options.maxRows ?? DEFAULT_MAX_ROWS));
    if (this.#running >= this.#maxConcurrent) {
      throw new TributaryError(
        'SERVICE_UNAVAILABLE',
        `${this.#running} queries are running, the most this server runs at once`,
        { retryable: true, hint: 'retry in a moment' },
      );
    }
    this.#running++;
    try {
      const connection = await this.#instance.connect();
      try {
        return await this.#run(connection, sql, started, timeoutMs, maxRows, options);
      } finally {
        connection.closeSync();
      }
    } finally {
      this.#running--;
    }
  }

  async #run(
    connection: DuckDBConnection,
    sql: string,
    started: number,
    timeoutMs: number,
    maxRows: number,
    options: ReadOnlyQueryOptions,
  ): Promise<ReadOnlyQueryResult> {
    const parsed = await parseSingleSelect(connection, sql);
    if (parsed.otherRefs.length)
      throw refused(
        'DESCRIBE, SUMMARIZE and SHOW are not allowed',
        'describe tables with GET /v1/tables/{table}',
      );
    const forbidden = parsed.tableFunctions.filter((f) => !ALLOWED_TABLE_FUNCTIONS.has(f));
    if (forbidden.length) {
      throw refused(
        `the table function ${forbidden[0]}() is not allowed`,
        `query catalog tables by name; table functions allowed: ${[...ALLOWED_TABLE_FUNCTIONS].join(', ')}`,
      );
    }
    const denied = parsed.functions.find((f) => !ALLOWED_FUNCTIONS.has(f));
    if (denied) throw refused(`the function ${denied}() is not allowed`, ALLOWED_FUNCTIONS_HINT);
    const catalogTables = new Map<string, TableIdentifier>(
      (await this.#catalog.listAllTables()).map((t) => [foldedName(tableIdentifierToString(t)), t]),
    );
    const used = new Map<string, TableIdentifier>();
    for (const reference of parsed.tables) {
      if (reference.cte) continue;
      if (options.canRead && !options.canRead(reference.parts.join('.'))) throw notGranted(reference.parts);
      const dotted = viewName(reference.parts);
      const identifier = dotted === undefined ? undefined : catalogTables.get(dotted);
      if (dotted === undefined || !identifier) {
        throw refused(
          `no table ${reference.parts.join('.')} in the catalog`,
          'name tables as namespace.table ("silver.eu".orders for a namespace of two levels); GET /v1/tables lists them',
        );
      }
      used.set(dotted, identifier);
    }
    const timeTravel = options.snapshotId !== undefined || options.asOfMs !== undefined;
    const snapshots: Record<string, string | null> = {};
    const pinned = new Map<string, { schema: string; table: string }>();
    for (const [dotted, identifier] of used) {
      let exposed;
      try {
        exposed = timeTravel
          ? await this.#views.at(identifier, options)
          : await this.#views.current(identifier);
      } catch (cause) {
        if (isTributaryError(cause)) throw cause;
        // The table's files cannot be read (a data file gone, say): the server's fault, not the query's.
        throw new TributaryError(
          'STORAGE_IO',
          `table ${tableIdentifierToString(identifier)} cannot be read: ${this.#redacted(cause)}`,
          { cause, hint: 'see the server log; `tributary doctor` checks the tables' },
        );
      }
      snapshots[tableIdentifierToString(identifier)] = exposed.snapshotId?.toString() ?? null;
      if (timeTravel)
        pinned.set(dotted, {
          schema: SNAPSHOT_SCHEMA,
          table: `${tableIdentifierToString(identifier)}@${exposed.snapshotId}`,
        });
    }
    const text = timeTravel
      ? await rewriteTableReferences(connection, parsed, (parts) => {
          const dotted = viewName(parts);
          return dotted === undefined ? undefined : pinned.get(dotted);
        })
      : sql;
    const remaining = timeoutMs - (performance.now() - started);
    if (remaining <= 0) throw timedOut(timeoutMs);
    let interrupted = false;
    const timer = setTimeout(() => {
      interrupted = true;
      connection.interrupt();
    }, remaining);
    try {
      // Prepared: one statement only, whatever the text turned out to be.
      const reader = await (await connection.prepare(text)).streamAndReadUntil(maxRows + 1);
      const names = reader.columnNames();
      const types = reader.columnTypes();
      const read = reader.currentRowCount;
      const rows = options.columnar ? [] : reader.getRowObjectsJson();
      const columnar = options.columnar
        ? {
            types,
            columns: reader.getColumns().map((c) => (c.length > maxRows ? c.slice(0, maxRows) : c)),
            rowCount: Math.min(read, maxRows),
          }
        : undefined;
      if (interrupted) throw timedOut(timeoutMs);
      return {
        columns: names.map((name, i) => ({ name, type: String(types[i]) })),
        rows: rows.length > maxRows ? rows.slice(0, maxRows) : rows,
        truncated: read > maxRows,
        elapsedMs: performance.now() - started,
        snapshots,
        ...(columnar ? { columnar } : {}),
      };
    } catch (cause) {
      if (interrupted || /interrupt/i.test(String((cause as Error).message))) throw timedOut(timeoutMs);
      if (isTributaryError(cause)) throw cause;
      throw refused(`the query failed: ${this.#redacted(cause)}`, undefined, cause);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The first line of an error's message, without the server's directories (files show as `…/<path>`). */
  #redacted(error: unknown): string {
    let text = (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '';
    for (const root of this.#allowed) text = text.split(root).join('…/');
    return text;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#admin.closeSync();
    this.#instance.closeSync();
  }
}

/**
 * The DuckDB instance read-only queries run on (layer 2), with the connection the engine keeps for its own
 * work: it reads only `directories`, loads no extension but those built in, and its configuration is locked
 * before any query. allowed-functions.test.ts lists the functions of an instance opened here, so that
 * whatever it ever loads is classified there.
 */
export async function openHardenedInstance(
  directories: readonly string[],
  options: ReadOnlyEngineOptions = {},
): Promise<{ instance: DuckDBInstance; admin: DuckDBConnection }> {
  const instance = await DuckDBInstance.create(':memory:', {
    temp_directory: duckdbTempDirectory(),
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'false',
    ...(options.threads ? { threads: String(options.threads) } : {}),
    memory_limit: options.memoryLimit ?? `${Math.max(256, Math.floor(totalmem() / 4 / 2 ** 20))}MB`,
  });
  const admin = await instance.connect();
  try {
    await admin.run(`set TimeZone = 'UTC'`);
    await admin.run(`set allowed_directories = [${directories.map(quoteLiteral).join(', ')}]`);
    await admin.run('set enable_external_access = false');
    await admin.run('set lock_configuration = true');
  } catch (cause) {
    admin.closeSync();
    instance.closeSync();
    throw cause;
  }
  return { instance, admin };
}

/**
 * The catalog table (folded "namespace.table") whose view a reference binds to: a view is
 * `"<namespace>"."<table>"`, so only a name of two parts is one, the namespace of several levels quoted as
 * one (`"silver.eu".orders`). Three parts are catalog.schema.table to DuckDB: `memory.hr.salaries` is the
 * view "hr"."salaries", not the table salaries of the namespace memory.hr that its dotted text names.
 */
function viewName(parts: readonly string[]): string | undefined {
  return parts.length === 2 && !parts[1]!.includes('.') ? foldedName(`${parts[0]}.${parts[1]}`) : undefined;
}

function refused(message: string, hint?: string, cause?: unknown): TributaryError {
  return new TributaryError('INVALID_INPUT', message, {
    hint: hint ?? 'send one SELECT (or WITH … SELECT) statement over catalog tables',
    ...(cause === undefined ? {} : { cause }),
  });
}

/** AUTH_FORBIDDEN: a table the caller's key is not granted. */
export function notGranted(parts: readonly string[]): TributaryError {
  return new TributaryError('AUTH_FORBIDDEN', `this API key may not read table ${parts.join('.')}`, {
    hint: 'an admin grants tables when making a key: tributary keys create --role query --table <namespace.table>',
  });
}

function timedOut(timeoutMs: number): TributaryError {
  return new TributaryError('QUERY_TIMEOUT', `the query ran longer than ${timeoutMs} ms and was stopped`, {
    hint: 'narrow the query (a filter, fewer columns) or ask for a longer timeout',
    retryable: false,
  });
}

export interface RunReadOnlyQueryOptions extends ReadOnlyQueryOptions {
  /** A shared engine (the server keeps one); else one is opened over `catalog` for this query. */
  readonly engine?: ReadOnlyQueryEngine;
  readonly catalog?: Catalog;
}

/**
 * One read-only query: `{ engine }` (shared, the server's case) or `{ catalog }` (a hardened engine is opened
 * and closed around the query). See ReadOnlyQueryEngine.run.
 */
export async function runReadOnlyQuery(
  sql: string,
  options: RunReadOnlyQueryOptions,
): Promise<ReadOnlyQueryResult> {
  if (options.engine) return options.engine.run(sql, options);
  if (!options.catalog) throw new TributaryError('INTERNAL', 'runReadOnlyQuery needs an engine or a catalog');
  const engine = await ReadOnlyQueryEngine.open(options.catalog);
  try {
    return await engine.run(sql, options);
  } finally {
    engine.close();
  }
}
