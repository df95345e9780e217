/**
 * The catalog on PostgreSQL through a small `pg` pool: many Tributary processes (and Java or pyiceberg
 * catalogs) share one database, and the compare-and-swap UPDATE of a table's metadata location is the only
 * commit point. Connection failures are SERVICE_UNAVAILABLE and retryable; the pool replaces broken
 * connections on the next call.
 */
import pg from 'pg';
import { TributaryError } from '../errors.ts';
import {
  redactUri,
  sqlError,
  type SqlDriver,
  type SqlExecutor,
  type SqlFailure,
  type SqlParam,
  type SqlRow,
} from './sql-driver.ts';

export interface PostgresDriverOptions {
  /** Connections in the pool; default 4. */
  readonly maxConnections?: number;
  /** How long to wait for a connection, in ms; default 10 s. */
  readonly connectTimeoutMs?: number;
}

const CONNECTION_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);
// Class 08 (connection exception), shutdown and too many connections: the next attempt may succeed.
const TRANSIENT_STATES = new Set(['57P01', '57P02', '57P03', '53300']);
// Serialization failure, deadlock, lock not available.
const BUSY_STATES = new Set(['40001', '40P01', '55P03']);
// Bad password, no such role or database: retrying will not help.
const FATAL_CONNECT_STATES = new Set(['28P01', '28000', '3D000']);

export function openPostgresDriver(url: string, options: PostgresDriverOptions = {}): SqlDriver {
  return new PostgresDriver(url, options);
}

class PostgresDriver implements SqlDriver {
  readonly dialect = 'postgresql';
  readonly description: string;
  readonly #pool: pg.Pool;
  #closed = false;

  constructor(url: string, options: PostgresDriverOptions) {
    this.description = redactUri(url);
    this.#pool = new pg.Pool({
      connectionString: url,
      max: options.maxConnections ?? 4,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
      idleTimeoutMillis: 30_000,
      application_name: 'tributary-catalog',
    });
    // An idle connection that breaks is dropped by the pool; the next call reports the failure if it lasts.
    this.#pool.on('error', () => {});
  }

  async query<Row extends SqlRow = SqlRow>(sql: string, params: readonly SqlParam[] = []): Promise<Row[]> {
    this.#checkOpen();
    try {
      return (await this.#pool.query<Row>(numbered(sql), [...params])).rows;
    } catch (error) {
      throw this.#translate(error, sql);
    }
  }

  async execute(sql: string, params: readonly SqlParam[] = []): Promise<number> {
    this.#checkOpen();
    try {
      return (await this.#pool.query(numbered(sql), [...params])).rowCount ?? 0;
    } catch (error) {
      throw this.#translate(error, sql);
    }
  }

  async transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    this.#checkOpen();
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw this.#translate(error, 'connect');
    }
    const run = async <R>(sql: string, params: readonly SqlParam[], pick: (result: pg.QueryResult) => R) => {
      try {
        return pick(await client.query(numbered(sql), [...params]));
      } catch (error) {
        throw this.#translate(error, sql);
      }
    };
    const tx: SqlExecutor = {
      query: <Row extends SqlRow>(sql: string, params: readonly SqlParam[] = []) =>
        run(sql, params, (result) => result.rows as Row[]),
      execute: (sql: string, params: readonly SqlParam[] = []) =>
        run(sql, params, (result) => result.rowCount ?? 0),
    };
    let broken: Error | undefined;
    try {
      await run('BEGIN', [], () => undefined);
      const result = await work(tx);
      await run('COMMIT', [], () => undefined);
      return result;
    } catch (error) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackError) {
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      }
      throw error;
    } finally {
      client.release(broken);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }

  #checkOpen(): void {
    if (this.#closed) {
      throw new TributaryError('SERVICE_UNAVAILABLE', `Catalog database ${this.description} is closed`, {
        context: { database: this.description },
        hint: 'Open the catalog again; a closed catalog cannot be used.',
      });
    }
  }

  #translate(error: unknown, sql: string): TributaryError {
    if (error instanceof TributaryError) return error;
    const code = (error as { code?: unknown }).code;
    const state = typeof code === 'string' ? code : '';
    const message = error instanceof Error ? error.message : String(error);
    let failure: SqlFailure = 'other';
    let retryable = false;
    if (state === '23505') failure = 'unique-violation';
    else if (state === '42P01') failure = 'undefined-table';
    else if (state === '42703') failure = 'undefined-column';
    else if (BUSY_STATES.has(state)) [failure, retryable] = ['busy', true];
    else if (FATAL_CONNECT_STATES.has(state)) failure = 'unavailable';
    else if (
      CONNECTION_ERRNOS.has(state) ||
      state.startsWith('08') ||
      TRANSIENT_STATES.has(state) ||
      /Connection terminated|timeout exceeded when trying to connect|connect ECONNREFUSED/i.test(message)
    ) {
      [failure, retryable] = ['unavailable', true];
    }
    return sqlError(failure, this, error, { sql, retryable });
  }
}

/** `?` placeholders as PostgreSQL's `$1, $2, …` (the catalog's SQL has no `?` inside literals). */
function numbered(sql: string): string {
  let index = 0;
  return sql.replace(/\?/g, () => `$${++index}`);
}
