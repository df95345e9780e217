/**
 * PostgreSQL and `pg` failures as TributaryErrors: whether the same write may succeed later (a dropped
 * connection, a deadlock: retryable SERVICE_UNAVAILABLE) or needs a person (bad credentials, a table that
 * does not fit: not retryable, with a hint). Messages name the server without its password.
 */
import { redactUriPassword } from '../../core/config/redact.ts';
import { TributaryError } from '../../errors.ts';

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
/** Shutdown, too many connections, out of resources, statement timeout, serialization failure, deadlock, lock not available. */
const RETRYABLE_STATES = new Set([
  '57P01',
  '57P02',
  '57P03',
  '57014',
  '53000',
  '53100',
  '53200',
  '53300',
  '40001',
  '40P01',
  '55P03',
]);
const CONNECTION_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|connection is closed|ECONNREFUSED|ECONNRESET/i;

/** The SQLSTATE of a server error, or the errno of a socket error. */
export function sqlState(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/**
 * Refusals of one row, not of the sink: data that does not fit a column or a constraint (class 22, 23), a
 * value past a limit (54000: an index entry too large, a row too wide), a trigger raising (P0001).
 */
const RECORD_STATES = new Set(['54000', 'P0001']);

/** The record is at fault, not the sink (see RECORD_STATES). */
export function isRecordError(error: unknown): boolean {
  const state = sqlState(error);
  return state.startsWith('22') || state.startsWith('23') || RECORD_STATES.has(state);
}

/**
 * An upsert that would change one row twice (21000): two records whose keys PostgreSQL takes as equal,
 * spelled differently in JSON (1 and "1", one instant at two offsets) were not merged. Each half of the
 * rows, in order, is a valid upsert.
 */
export function isSameRowTwice(error: unknown): boolean {
  return sqlState(error) === '21000';
}

export function isRetryable(error: unknown): boolean {
  if (error instanceof TributaryError) return error.retryable;
  const state = sqlState(error);
  const message = error instanceof Error ? error.message : String(error);
  return (
    CONNECTION_ERRNOS.has(state) ||
    state.startsWith('08') ||
    RETRYABLE_STATES.has(state) ||
    CONNECTION_MESSAGES.test(message)
  );
}

export interface ErrorFacts {
  /** The server, as postgresql://user@host:port/database (never the password). */
  readonly server: string;
  readonly sink: string;
  readonly table?: string;
  /** What the sink was doing: "connect", "create table", "insert"… */
  readonly action: string;
}

export function translate(error: unknown, facts: ErrorFacts): TributaryError {
  if (error instanceof TributaryError) return error;
  const state = sqlState(error);
  const detail = error instanceof Error ? error.message : String(error);
  const context = {
    sink: facts.sink,
    server: facts.server,
    table: facts.table,
    sqlstate: state || undefined,
  };
  const where = `${facts.action} on ${facts.server}${facts.table ? ` (table ${facts.table})` : ''}`;
  if (isRetryable(error)) {
    return new TributaryError(
      'SERVICE_UNAVAILABLE',
      `PostgreSQL sink ${facts.sink}: ${where} failed: ${detail}`,
      {
        context,
        cause: error,
        retryable: true,
        hint: 'The write is retried; check that the server is up and reachable if this goes on.',
      },
    );
  }
  let hint: string;
  let code: 'SERVICE_UNAVAILABLE' | 'INVALID_INPUT' = 'SERVICE_UNAVAILABLE';
  if (state === '28P01' || state === '28000') {
    hint = "Check the user and password in the sink's url (and the server's pg_hba.conf).";
  } else if (state === '3D000') {
    hint = "Create the database, or point the sink's url at one that exists.";
  } else if (state === '42501') {
    hint = "Grant the sink's user the privileges it needs on the table, its schema and the positions table.";
  } else if (state === '42P01' || state === '3F000') {
    code = 'INVALID_INPUT';
    hint = 'Create the table, or set create_table: true.';
  } else if (state.startsWith('42')) {
    code = 'INVALID_INPUT';
    hint =
      'Make the table fit the records (columns, types, a unique index on the key), or change `columns`/`key`.';
  } else {
    hint = 'See the PostgreSQL message; the pipeline stops until this is fixed.';
  }
  return new TributaryError(code, `PostgreSQL sink ${facts.sink}: ${where} failed: ${detail}`, {
    context,
    cause: error,
    retryable: false,
    hint,
  });
}

/** postgresql://user@host:port/database, for messages: never the password or the query string. */
export function describeServer(url: string): string {
  try {
    const parsed = new URL(url);
    const user = parsed.username ? `${decodeURIComponent(parsed.username)}@` : '';
    return `${parsed.protocol}//${user}${parsed.host}${parsed.pathname}`;
  } catch {
    // Redacted first: a password written without escaping may hold a `?`.
    return redactUriPassword(url).split('?')[0] ?? '';
  }
}
