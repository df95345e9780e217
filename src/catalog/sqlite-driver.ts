/**
 * The catalog on SQLite through node:sqlite: one connection per catalog, WAL mode so readers never block the
 * writer, `synchronous=FULL` so a commit acknowledged is a commit kept across a power loss, and a busy timeout
 * so writers in other processes wait for each other instead of failing. node:sqlite is synchronous: calls
 * run one at a time (queued), and a wait for another process's lock blocks this thread up to the timeout.
 * A transaction awaits nothing but its own statements, so it holds the write lock for microseconds.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { TributaryError } from '../errors.ts';
import {
  sqlError,
  type SqlDriver,
  type SqlExecutor,
  type SqlFailure,
  type SqlParam,
  type SqlRow,
} from './sql-driver.ts';

export interface SqliteDriverOptions {
  /**
   * How long a writer waits for another process's lock before failing (retryable), in ms; default 10 s.
   * Set by the first opener of a file in this process: later ones share its connection.
   */
  readonly busyTimeoutMs?: number;
}

const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_CANTOPEN = 14;
const SQLITE_CONSTRAINT = 19;

/**
 * One connection per database file per process, shared by every driver opened on it: SQLite locks are per
 * connection, so two connections of one thread would wait on each other while the event loop is blocked.
 * Calls on a connection run one at a time (`queue`), which also keeps a transaction's statements together.
 */
interface SharedConnection {
  readonly db: DatabaseSync;
  readonly description: string;
  readonly statements: Map<string, StatementSync>;
  queue: Promise<unknown>;
  handles: number;
}

const shared = new Map<string, SharedConnection>();

export function openSqliteDriver(file: string, options: SqliteDriverOptions = {}): SqlDriver {
  const description = file === ':memory:' ? ':memory:' : path.resolve(file);
  const existing = description === ':memory:' ? undefined : shared.get(description);
  if (existing) {
    existing.handles += 1;
    return new SqliteDriver(existing);
  }
  const identity = { dialect: 'sqlite', description } as const;
  let db: DatabaseSync;
  try {
    if (file !== ':memory:') mkdirSync(path.dirname(description), { recursive: true });
    db = new DatabaseSync(description);
  } catch (error) {
    throw sqlError('unavailable', identity, error, {
      retryable: false,
      hint: `Check that ${description} can be created and written by this user.`,
    });
  }
  try {
    db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.trunc(options.busyTimeoutMs ?? 10_000))}`);
    db.exec('PRAGMA journal_mode = WAL');
    db.exec('PRAGMA synchronous = FULL');
  } catch (error) {
    db.close();
    throw translate(error, identity);
  }
  const connection: SharedConnection = {
    db,
    description,
    statements: new Map(),
    queue: Promise.resolve(),
    handles: 1,
  };
  if (description !== ':memory:') shared.set(description, connection);
  return new SqliteDriver(connection);
}

class SqliteDriver implements SqlDriver {
  readonly dialect = 'sqlite';
  readonly description: string;
  readonly #connection: SharedConnection;
  readonly #direct: SqlExecutor;
  #closed = false;

  constructor(connection: SharedConnection) {
    this.#connection = connection;
    this.description = connection.description;
    this.#direct = {
      query: async <Row extends SqlRow>(sql: string, params: readonly SqlParam[] = []) =>
        this.#run(sql, () => this.#prepare(sql).all(...params) as Row[]),
      execute: async (sql: string, params: readonly SqlParam[] = []) =>
        this.#run(sql, () => Number(this.#prepare(sql).run(...params).changes)),
    };
  }

  query<Row extends SqlRow = SqlRow>(sql: string, params?: readonly SqlParam[]): Promise<Row[]> {
    return this.#serialized(() => this.#direct.query<Row>(sql, params));
  }

  execute(sql: string, params?: readonly SqlParam[]): Promise<number> {
    return this.#serialized(() => this.#direct.execute(sql, params));
  }

  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    const { db } = this.#connection;
    return this.#serialized(async () => {
      this.#run('BEGIN IMMEDIATE', () => db.exec('BEGIN IMMEDIATE'));
      let result: T;
      try {
        result = await work(this.#direct);
        this.#run('COMMIT', () => db.exec('COMMIT'));
      } catch (error) {
        rollback(db);
        throw error;
      }
      return result;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const connection = this.#connection;
    connection.handles -= 1;
    if (connection.handles > 0) return;
    if (shared.get(connection.description) === connection) shared.delete(connection.description);
    await connection.queue;
    connection.statements.clear();
    if (connection.db.isOpen) connection.db.close();
  }

  #serialized<T>(work: () => Promise<T>): Promise<T> {
    if (this.#closed) {
      return Promise.reject(
        new TributaryError('SERVICE_UNAVAILABLE', `Catalog database ${this.description} is closed`, {
          context: { database: this.description },
          hint: 'Open the catalog again; a closed catalog cannot be used.',
        }),
      );
    }
    const result = this.#connection.queue.then(work);
    this.#connection.queue = result.catch(() => undefined);
    return result;
  }

  #prepare(sql: string): StatementSync {
    const { statements, db } = this.#connection;
    let statement = statements.get(sql);
    if (!statement) {
      statement = db.prepare(sql);
      statements.set(sql, statement);
    }
    return statement;
  }

  #run<T>(sql: string, work: () => T): T {
    try {
      return work();
    } catch (error) {
      throw translate(error, this, sql);
    }
  }
}

/** Rolls back whatever is open; a failure to do so must not hide the error that caused it. */
function rollback(db: DatabaseSync): void {
  try {
    if (db.isTransaction) db.exec('ROLLBACK');
  } catch {
    // The connection is unusable or the transaction already ended: nothing left to undo.
  }
}

function translate(
  error: unknown,
  driver: { readonly dialect: string; readonly description: string },
  sql?: string,
): TributaryError {
  const errcode = (error as { errcode?: unknown }).errcode;
  const primary = typeof errcode === 'number' ? errcode & 0xff : undefined;
  const message = error instanceof Error ? error.message : '';
  let failure: SqlFailure = 'other';
  if (primary === SQLITE_CONSTRAINT && /UNIQUE|PRIMARY KEY/i.test(message)) failure = 'unique-violation';
  else if (primary === SQLITE_BUSY || primary === SQLITE_LOCKED) failure = 'busy';
  else if (primary === SQLITE_CANTOPEN) failure = 'unavailable';
  else if (/^no such table/i.test(message)) failure = 'undefined-table';
  else if (/^no such column/i.test(message)) failure = 'undefined-column';
  return sqlError(failure, driver, error, { sql, retryable: failure === 'busy' });
}
