/**
 * One error type for all of Tributary. Every failure a user can see carries a stable `code` (listed in
 * docs/errors.md, generated from `errorCodes` below), the context that explains it, the cause, a
 * `retryable` flag, and a hint that says what to do next. Code that must react to a kind of failure
 * (a commit conflict, a missing table) tests `error.code`, never the message.
 *
 * This module is a leaf: every layer may import it, it imports nothing of ours.
 */

export interface ErrorCodeInfo {
  /** What the code means, for docs/errors.md. */
  readonly summary: string;
  /** Usage and configuration errors exit 2; everything else exits 1. */
  readonly kind: 'usage' | 'failure';
}

export const errorCodes = {
  USAGE: {
    kind: 'usage',
    summary: 'The command line is wrong: an unknown command or option, or a missing argument.',
  },
  CONFIG_NOT_FOUND: { kind: 'usage', summary: 'No tributary.yaml was found in the directory or any parent.' },
  CONFIG_SYNTAX: { kind: 'usage', summary: 'A configuration file is not valid YAML.' },
  CONFIG_UNRESOLVED_VARIABLE: {
    kind: 'usage',
    summary: 'A ${VAR} placeholder names an environment variable that is not set and has no default.',
  },
  CONFIG_SECRET_FILE: {
    kind: 'usage',
    summary: 'A ${file:/path} placeholder names a file that cannot be read.',
  },
  CONFIG_UNKNOWN_KEY: {
    kind: 'usage',
    summary: 'A configuration file has a key that Tributary does not know.',
  },
  CONFIG_INVALID: {
    kind: 'usage',
    summary: 'A configuration value has the wrong type or is out of range.',
  },
  CONFIG_CHECK_FAILED: {
    kind: 'usage',
    summary:
      '`tributary config check` found invalid configuration or placeholders that cannot be resolved (listed above it).',
  },
  CONFIG_DUPLICATE: {
    kind: 'usage',
    summary: 'Two pipelines or components share a name that must be unique.',
  },
  INIT_NOT_EMPTY: {
    kind: 'usage',
    summary: '`tributary init` was pointed at a directory that already has a project.',
  },
  SERVICE_UNAVAILABLE: {
    kind: 'failure',
    summary: 'A service Tributary depends on (PostgreSQL, Kafka, S3, a catalog) could not be reached.',
  },
  DOCTOR_FAILED: { kind: 'failure', summary: '`tributary doctor` found at least one failing check.' },
  INVALID_INPUT: {
    kind: 'failure',
    summary:
      'Input data (a file, a record, a request body) does not match what was expected; nothing was changed.',
  },
  ICEBERG_INVALID_SCHEMA: {
    kind: 'failure',
    summary:
      'An Iceberg schema or schema change is not valid (unknown column, disallowed type change, duplicate name).',
  },
  ICEBERG_INVALID_PARTITION: {
    kind: 'failure',
    summary: 'A partition spec, partition expression or sort order is not valid for the schema.',
  },
  ICEBERG_INVALID_FILE: {
    kind: 'failure',
    summary: 'An Iceberg metadata, manifest or data file is malformed or not of a supported version.',
  },
  ICEBERG_UNSUPPORTED: {
    kind: 'failure',
    summary: 'The table uses an Iceberg feature Tributary does not support yet.',
  },
  ICEBERG_COMMIT_CONFLICT: {
    kind: 'failure',
    summary:
      'Another writer changed the table in a way that conflicts with this commit; retry the operation on the new state.',
  },
  SNAPSHOT_NOT_FOUND: {
    kind: 'failure',
    summary: 'No snapshot of the table has that id or existed at that time.',
  },
  TABLE_NOT_FOUND: { kind: 'failure', summary: 'No table of that name is in the catalog.' },
  TABLE_EXISTS: { kind: 'failure', summary: 'A table of that name is already in the catalog.' },
  NAMESPACE_NOT_FOUND: { kind: 'failure', summary: 'No namespace of that name is in the catalog.' },
  NAMESPACE_EXISTS: { kind: 'failure', summary: 'A namespace of that name is already in the catalog.' },
  NAMESPACE_NOT_EMPTY: { kind: 'failure', summary: 'The namespace still holds tables; drop them first.' },
  STORAGE_NOT_FOUND: { kind: 'failure', summary: 'A file or object that should exist does not.' },
  STORAGE_IO: { kind: 'failure', summary: 'Reading or writing a file or object failed.' },
  DLQ_LIMIT: {
    kind: 'failure',
    summary:
      'A pipeline sent more records to its dead-letter queue than `dlq.max` (or `dlq.max_rate`) allows, and stopped.',
  },
  QUERY_TIMEOUT: {
    kind: 'failure',
    summary: 'A query ran longer than its time limit and was interrupted; nothing was changed.',
  },
  MODEL_FAILED: {
    kind: 'failure',
    summary:
      'A SQL model could not be built (its query failed, or an upstream model failed); its table is unchanged.',
  },
  TESTS_FAILED: {
    kind: 'failure',
    summary:
      "At least one data test (`tributary validate`, or a model's own tests) found rows that break it.",
  },
  INPUTS_NOT_FRESH: {
    kind: 'failure',
    summary: "A model's inputs were not fresh enough within its readiness timeout, so it did not run.",
  },
  ERASE_INCOMPLETE: {
    kind: 'failure',
    summary:
      'After `tributary erase`, files under a table still hold matching rows (kept by a branch or tag, or added meanwhile), or change and dead-letter tables hold them as JSON text.',
  },
  JOB_FAILED: {
    kind: 'failure',
    summary: 'A scheduled job failed after its retries, or ran past its timeout.',
  },
  PIPELINE_FAILED: { kind: 'failure', summary: 'A pipeline stopped on an error that retrying cannot fix.' },
  PIPELINE_RUNNING: {
    kind: 'failure',
    summary:
      'The pipeline already runs in another process on this machine (`up` or `run`); the message names its pid.',
  },
  CDC_NOT_READY: {
    kind: 'failure',
    summary:
      'PostgreSQL is not set up for change data capture: wal_level, the REPLICATION privilege, a table, its primary key or the publication is missing (`tributary doctor` says which).',
  },
  CDC_SLOT_IN_USE: {
    kind: 'failure',
    summary:
      'The replication slot is held by another connection (another source, or a leftover backend); the message names its pid.',
  },
  CDC_SLOT_LOST: {
    kind: 'failure',
    summary:
      'The replication slot was invalidated (its WAL was removed, e.g. past max_slot_wal_keep_size): changes were lost. snapshot_mode when_needed copies the tables again.',
  },
  CDC_PROTOCOL: {
    kind: 'failure',
    summary: 'The replication stream sent a message Tributary cannot decode.',
  },
  AUTH_REQUIRED: {
    kind: 'failure',
    summary:
      'HTTP 401: the request carries no valid API key (or webhook signature) for the stream; send one in Authorization: Bearer or X-API-Key.',
  },
  AUTH_FORBIDDEN: {
    kind: 'failure',
    summary:
      'HTTP 403: the API key is valid but not allowed on this stream or with this role, or the browser origin is not allowed.',
  },
  STREAM_NOT_FOUND: {
    kind: 'failure',
    summary: 'HTTP 404: no stream (or endpoint) of that name is configured in tributary.yaml.',
  },
  PAYLOAD_TOO_LARGE: {
    kind: 'failure',
    summary:
      'HTTP 413: the request body (before or after decompression) or its number of events is over the limit.',
  },
  UNSUPPORTED_MEDIA_TYPE: {
    kind: 'failure',
    summary: 'HTTP 415: the Content-Type or Content-Encoding of the request is not one the server reads.',
  },
  RATE_LIMITED: {
    kind: 'failure',
    summary:
      'HTTP 429: the API key or client IP sent more requests than its rate limit; retry after Retry-After seconds.',
  },
  OVERLOADED: {
    kind: 'failure',
    summary:
      'HTTP 503: the log cannot take more right now (too many appends in flight, or it failed); nothing was stored; retry after Retry-After seconds.',
  },
  IDEMPOTENCY_CONFLICT: {
    kind: 'failure',
    summary:
      'HTTP 422: an Idempotency-Key was reused with a different request body within the dedupe window; use a new key for a new request.',
  },
  INTERNAL: {
    kind: 'failure',
    summary: 'A bug in Tributary: please report it with the output of --verbose.',
  },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof errorCodes;

export interface TributaryErrorOptions {
  /** Structured facts about the failure (file, line, table, offset…), logged as fields. */
  readonly context?: Readonly<Record<string, unknown>>;
  readonly cause?: unknown;
  /** True when the same call may succeed later (a dropped connection, a lost commit race). */
  readonly retryable?: boolean;
  /** What the user should do next, in one sentence. */
  readonly hint?: string;
}

export class TributaryError extends Error {
  readonly code: ErrorCode;
  readonly context: Readonly<Record<string, unknown>>;
  readonly retryable: boolean;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: TributaryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TributaryError';
    this.code = code;
    this.context = options.context ?? {};
    this.retryable = options.retryable ?? false;
    this.hint = options.hint;
  }

  /** The process exit code this error maps to: 2 for usage and configuration, 1 otherwise. */
  get exitCode(): 1 | 2 {
    return errorCodes[this.code].kind === 'usage' ? 2 : 1;
  }

  /** One line for a terminal: the message, then what to do. */
  toLine(): string {
    return this.hint ? `${this.message} (${this.hint})` : this.message;
  }
}

export function isTributaryError(error: unknown, code?: ErrorCode): error is TributaryError {
  return error instanceof TributaryError && (code === undefined || error.code === code);
}
