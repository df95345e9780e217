/**
 * The SQL the catalog needs from a database, behind one small interface with two drivers: SQLite through
 * node:sqlite (embedded, one file, many processes) and PostgreSQL through `pg` (many writers on many hosts).
 *
 * Statements are written once with `?` placeholders and bound, never concatenated; drivers translate them.
 * Every failure leaves a driver as a `TributaryError` with code SERVICE_UNAVAILABLE and a `context.failure`
 * the catalog can branch on (see `SqlFailure`): connection failures and lock timeouts are retryable.
 */
import { TributaryError, isTributaryError } from '../errors.ts';

export type SqlParam = string | number | null;
export type SqlRow = Record<string, unknown>;

export interface SqlExecutor {
  /** The rows a statement returns (SELECT, or DELETE … RETURNING). */
  query<Row extends SqlRow = SqlRow>(sql: string, params?: readonly SqlParam[]): Promise<Row[]>;
  /** Runs a statement; resolves to the number of rows it inserted, changed or deleted. */
  execute(sql: string, params?: readonly SqlParam[]): Promise<number>;
}

/**
 * A connection (SQLite) or pool of connections (PostgreSQL) to the catalog database. Safe for concurrent
 * calls: each `query`/`execute` outside a transaction is its own atomic statement.
 */
export interface SqlDriver extends SqlExecutor {
  readonly dialect: 'sqlite' | 'postgresql';
  /** The database, for messages: a file path, ":memory:", or a URL without its password. */
  readonly description: string;
  /**
   * Runs `work` in one transaction and commits when it resolves, rolls back when it throws. SQLite takes the
   * write lock at BEGIN (BEGIN IMMEDIATE, waiting up to the busy timeout), so work that reads then writes is
   * serialized across processes; PostgreSQL runs it in READ COMMITTED. `work` must use only `tx`.
   */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** Closes connections after pending calls finish; idempotent. */
  close(): Promise<void>;
}

/**
 * What went wrong, for the catalog to branch on:
 * - `unique-violation`: an INSERT or UPDATE hit a primary key (a table or namespace that already exists);
 * - `undefined-table`, `undefined-column`: the catalog tables (or the iceberg_type column) are absent;
 * - `unavailable`: the database cannot be reached or opened (retryable when it is a connection failure);
 * - `busy`: a lock was not granted in time, or a transaction was cancelled to break a deadlock (retryable);
 * - `other`: anything else.
 */
export type SqlFailure =
  'unique-violation' | 'undefined-table' | 'undefined-column' | 'unavailable' | 'busy' | 'other';

export function sqlFailureOf(error: unknown): SqlFailure | undefined {
  if (!isTributaryError(error, 'SERVICE_UNAVAILABLE')) return undefined;
  const failure = error.context.failure;
  return typeof failure === 'string' ? (failure as SqlFailure) : undefined;
}

const HINTS: Record<SqlFailure, string> = {
  'unique-violation': 'The row already exists.',
  'undefined-table': 'The catalog tables are missing: open the catalog with openSqlCatalog to create them.',
  'undefined-column': 'The catalog tables do not have the columns of an Iceberg JDBC/SQL catalog.',
  unavailable: 'Check that the catalog database is running and reachable, and its address and credentials.',
  busy: 'Another writer holds the catalog database: retry, or raise the busy timeout.',
  other: 'Check the catalog database and its logs.',
};

export function sqlError(
  failure: SqlFailure,
  driver: { readonly dialect: string; readonly description: string },
  cause: unknown,
  options: { retryable?: boolean; sql?: string; hint?: string } = {},
): TributaryError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new TributaryError(
    'SERVICE_UNAVAILABLE',
    `Catalog database ${driver.description} (${driver.dialect}) failed: ${detail}`,
    {
      context: { failure, database: driver.description, sql: options.sql },
      cause,
      retryable: options.retryable ?? (failure === 'busy' || failure === 'unavailable'),
      hint: options.hint ?? HINTS[failure],
    },
  );
}

/**
 * Opens the database a catalog URI names: `sqlite:<path>` (a relative path is resolved against the current
 * directory; the file and its directory are created), `sqlite::memory:` (one connection, for tests), or
 * `postgresql://user:password@host:port/database` (also `postgres://`). CONFIG_INVALID for anything else.
 */
export async function openSqlDriver(uri: string): Promise<SqlDriver> {
  if (typeof uri !== 'string' || uri === '') throw badUri(String(uri), 'it is empty');
  if (/^postgres(ql)?:\/\//i.test(uri)) {
    const { openPostgresDriver } = await import('./postgres-driver.ts');
    return openPostgresDriver(uri);
  }
  if (/^sqlite:/i.test(uri)) {
    const target = uri.slice('sqlite:'.length);
    if (target === '') throw badUri(uri, 'it names no file');
    if (target.startsWith('//')) {
      throw badUri(
        uri,
        'SQLAlchemy-style sqlite:// URIs are ambiguous here',
        'Write sqlite:/absolute/path.db.',
      );
    }
    const { openSqliteDriver } = await import('./sqlite-driver.ts');
    return openSqliteDriver(target === ':memory:' ? ':memory:' : target);
  }
  throw badUri(uri, 'the scheme is not sqlite: or postgresql://');
}

/** A URI safe to show: the password of a PostgreSQL URL replaced. */
export function redactUri(uri: string): string {
  try {
    const url = new URL(uri);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return uri.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@');
  }
}

function badUri(uri: string, why: string, hint?: string): TributaryError {
  const shown = redactUri(uri);
  return new TributaryError('CONFIG_INVALID', `Invalid catalog URI ${JSON.stringify(shown)}: ${why}`, {
    context: { uri: shown },
    hint: hint ?? 'Use sqlite:<path>, sqlite::memory: or postgresql://user:password@host:port/database.',
  });
}
