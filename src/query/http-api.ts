/**
 * The query API's handlers, free of any HTTP framework: the server parses a request into `ApiRequest`
 * pieces, calls a handler, and writes the `ApiResponse` (status, content type, body). Routes:
 *
 *   POST /v1/query                          role `query`: one read-only SELECT (see read-only.ts)
 *   GET  /v1/tables                         role `query`: the catalog's tables
 *   GET  /v1/tables/{table}                 role `query`: schema, partitioning, properties, current snapshot
 *   GET  /v1/tables/{table}/snapshots       role `query`: the snapshots, oldest first
 *
 * POST /v1/query takes JSON `{"sql": "…", "format": "json"|"csv"|"arrow", "max_rows": n, "timeout_ms": n,
 * "snapshot_id": "…", "as_of": "2026-11-23T10:00:00Z"}` (or the SQL alone as text/plain). The format is
 * also taken from `?format=` or the Accept header. Limits: the request may lower the server's row and time
 * limits, never raise them. `"format": "arrow"` or `Accept: application/vnd.apache.arrow.stream` answers an
 * Arrow IPC stream (arrow-ipc.ts: one record batch; row count, truncation and time in the x-tributary-*
 * headers); the Arrow file format (`…arrow.file`) is answered 406.
 *
 * A caller sees only the tables its key is granted (ApiRequest.canRead): others are left out of the list, and
 * naming one answers 403 whether it exists or not.
 *
 * Errors: INVALID_INPUT and USAGE → 400, AUTH_FORBIDDEN → 403, TABLE_NOT_FOUND/NAMESPACE_NOT_FOUND/SNAPSHOT_NOT_FOUND → 404,
 * QUERY_TIMEOUT → 408, SERVICE_UNAVAILABLE → 503, anything else 500; body `{"error": {code, message, hint}}`.
 */
import { z } from 'zod';
import type { Catalog } from '../catalog/catalog.ts';
import { parseTableIdentifier, tableIdentifierToString } from '../catalog/identifier.ts';
import { isTributaryError, TributaryError, type ErrorCode } from '../errors.ts';
import { describePartitionSpec } from '../iceberg/partition-spec.ts';
import { describeSortOrder } from '../iceberg/sort-order.ts';
import { ARROW_STREAM_TYPE, toArrowStream } from './arrow-ipc.ts';
import {
  DEFAULT_MAX_ROWS,
  DEFAULT_TIMEOUT_MS,
  notGranted,
  type ReadOnlyQueryEngine,
  type ReadOnlyQueryResult,
} from './read-only.ts';

export interface ApiRequest {
  /** Path parameters, e.g. `{ table: 'silver.orders' }`. */
  readonly params?: Readonly<Record<string, string | undefined>>;
  readonly query?: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** Lower-case header names. */
  readonly headers?: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** The parsed JSON body, or the raw text for text/plain. */
  readonly body?: unknown;
  /** Whether the caller may read a table ("namespace.table"): its key's grants. Every table when absent. */
  readonly canRead?: (table: string) => boolean;
}

export interface ApiResponse {
  readonly status: number;
  readonly contentType: string;
  /** Text, or bytes (Arrow IPC). */
  readonly body: string | Uint8Array;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface QueryApiLimits {
  /** Rows a query may return at most (a request may ask for fewer). Default 10,000. */
  readonly maxRows: number;
  /** Time a query may run at most, in ms (a request may ask for less). Default 30 s. */
  readonly timeoutMs: number;
  /** Longest SQL text accepted, in characters. Default 100,000. */
  readonly maxSqlLength: number;
  /** Largest answer sent, in bytes (a larger one is refused: fewer rows or columns). Default 64 MiB. */
  readonly maxResponseBytes: number;
}

export interface QueryApiOptions {
  readonly catalog: Catalog;
  /** The shared hardened engine (ReadOnlyQueryEngine.open(catalog)); the server closes it on shutdown. */
  readonly engine: ReadOnlyQueryEngine;
  readonly limits?: Partial<QueryApiLimits>;
}

export type ApiHandler = (request: ApiRequest) => Promise<ApiResponse>;

export interface ApiRoute {
  readonly method: 'GET' | 'POST';
  /** Path with `{table}` parameters. */
  readonly path: string;
  /** The role a caller needs. */
  readonly role: 'query';
  readonly handler: ApiHandler;
}

export interface QueryApi {
  readonly query: ApiHandler;
  readonly listTables: ApiHandler;
  readonly getTable: ApiHandler;
  readonly listSnapshots: ApiHandler;
  /** Every route, for the server to mount. */
  readonly routes: readonly ApiRoute[];
}

const STATUS: Partial<Record<ErrorCode, number>> = {
  USAGE: 400,
  INVALID_INPUT: 400,
  AUTH_FORBIDDEN: 403,
  TABLE_NOT_FOUND: 404,
  NAMESPACE_NOT_FOUND: 404,
  SNAPSHOT_NOT_FOUND: 404,
  QUERY_TIMEOUT: 408,
  SERVICE_UNAVAILABLE: 503,
};

const JSON_TYPE = 'application/json; charset=utf-8';
const CSV_TYPE = 'text/csv; charset=utf-8';

function stringify(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

function json(status: number, value: unknown, headers?: Record<string, string>): ApiResponse {
  return { status, contentType: JSON_TYPE, body: stringify(value), ...(headers ? { headers } : {}) };
}

/** The response for an error: its code's status and `{ error: { code, message, hint } }`. */
export function errorResponse(error: unknown): ApiResponse {
  if (isTributaryError(error)) {
    return json(STATUS[error.code] ?? 500, {
      error: { code: error.code, message: error.message, ...(error.hint ? { hint: error.hint } : {}) },
    });
  }
  return json(500, { error: { code: 'INTERNAL', message: 'internal error' } });
}

function badRequest(message: string, hint?: string): TributaryError {
  return new TributaryError('INVALID_INPUT', message, hint ? { hint } : {});
}

function single(value: string | readonly string[] | undefined): string | undefined {
  return Array.isArray(value) ? (value[0] as string | undefined) : (value as string | undefined);
}

const queryBody = z.strictObject({
  sql: z.string().min(1),
  format: z.enum(['json', 'csv', 'arrow']).optional(),
  max_rows: z.number().int().min(0).optional(),
  timeout_ms: z.number().int().min(1).optional(),
  snapshot_id: z.union([z.string().regex(/^\d+$/), z.number().int().nonnegative()]).optional(),
  as_of: z.string().optional(),
});

type Format = 'json' | 'csv' | 'arrow';

/** The format from the body, ?format=, or Accept (first supported type wins). */
function negotiate(body: Format | undefined, request: ApiRequest): Format | 'unacceptable' {
  const explicit = body ?? (single(request.query?.format) as Format | undefined);
  if (explicit) {
    if (!['json', 'csv', 'arrow'].includes(explicit))
      throw badRequest(`format ${explicit}: choose json, csv or arrow`);
    return explicit;
  }
  const accept = single(request.headers?.accept);
  if (!accept) return 'json';
  for (const part of accept.split(',')) {
    const type = part.split(';')[0]!.trim().toLowerCase();
    if (type === 'application/json' || type === '*/*' || type === 'application/*') return 'json';
    if (type === 'text/csv' || type === 'text/*') return 'csv';
    if (type === ARROW_STREAM_TYPE) return 'arrow';
  }
  return 'unacceptable';
}

function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toCsv(result: Pick<ReadOnlyQueryResult, 'columns' | 'rows'>): string {
  const names = result.columns.map((c) => c.name);
  return [
    names.map(csvCell).join(','),
    ...result.rows.map((row) => names.map((n) => csvCell(row[n])).join(',')),
  ]
    .map((line) => `${line}\r\n`)
    .join('');
}

export function createQueryApi(options: QueryApiOptions): QueryApi {
  const limits: QueryApiLimits = {
    maxRows: options.limits?.maxRows ?? DEFAULT_MAX_ROWS,
    timeoutMs: options.limits?.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    maxSqlLength: options.limits?.maxSqlLength ?? 100_000,
    maxResponseBytes: options.limits?.maxResponseBytes ?? 64 * 1024 * 1024,
  };
  /** The answer, unless it is over the size limit. */
  const capped = (response: ApiResponse): ApiResponse => {
    const bytes =
      typeof response.body === 'string' ? Buffer.byteLength(response.body) : response.body.byteLength;
    if (bytes <= limits.maxResponseBytes) return response;
    const size = (n: number) =>
      n < 2 ** 20 ? `${Math.ceil(n / 1024)} KiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
    throw badRequest(
      `the answer would be ${size(bytes)}, over the ${size(limits.maxResponseBytes)} limit`,
      'select fewer rows (max_rows, a filter, LIMIT) or fewer columns',
    );
  };
  const { catalog, engine } = options;

  const guard =
    (handler: ApiHandler): ApiHandler =>
    async (request) => {
      try {
        return await handler(request);
      } catch (error) {
        return errorResponse(error);
      }
    };

  const query = guard(async (request) => {
    const raw = typeof request.body === 'string' ? { sql: request.body } : request.body;
    const parsed = queryBody.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw badRequest(
        `the request body is not valid: ${issue ? `${issue.path.join('.') || 'body'}: ${issue.message}` : 'expected JSON'}`,
        'send {"sql": "select …"} (optional: format, max_rows, timeout_ms, snapshot_id, as_of)',
      );
    }
    const body = parsed.data;
    if (body.sql.length > limits.maxSqlLength)
      throw badRequest(`the SQL is longer than ${limits.maxSqlLength} characters`);
    const format = negotiate(body.format, request);
    if (format === 'unacceptable') {
      return json(406, {
        error: {
          code: 'NOT_ACCEPTABLE',
          message: `none of the accepted types (${single(request.headers?.accept)}) can be produced`,
          hint: `ask for application/json, text/csv or ${ARROW_STREAM_TYPE} (the Arrow IPC stream format)`,
        },
      });
    }
    if (body.snapshot_id !== undefined && body.as_of !== undefined)
      throw badRequest('give snapshot_id or as_of, not both');
    const asOfMs = body.as_of === undefined ? undefined : Date.parse(body.as_of);
    if (asOfMs !== undefined && Number.isNaN(asOfMs))
      throw badRequest(`as_of ${body.as_of}: not a timestamp`, 'write e.g. 2026-11-23T10:00:00Z');
    const result = await engine.run(body.sql, {
      maxRows: Math.min(body.max_rows ?? limits.maxRows, limits.maxRows),
      timeoutMs: Math.min(body.timeout_ms ?? limits.timeoutMs, limits.timeoutMs),
      ...(body.snapshot_id !== undefined ? { snapshotId: BigInt(body.snapshot_id) } : {}),
      ...(asOfMs !== undefined ? { asOfMs } : {}),
      ...(format === 'arrow' ? { columnar: true } : {}),
      ...(request.canRead ? { canRead: request.canRead } : {}),
    });
    const headers = {
      'x-tributary-row-count': String(result.columnar?.rowCount ?? result.rows.length),
      'x-tributary-truncated': String(result.truncated),
      'x-tributary-elapsed-ms': result.elapsedMs.toFixed(1),
    };
    if (format === 'csv') return capped({ status: 200, contentType: CSV_TYPE, body: toCsv(result), headers });
    if (result.columnar) {
      const body = toArrowStream({ names: result.columns.map((c) => c.name), ...result.columnar });
      return capped({ status: 200, contentType: ARROW_STREAM_TYPE, body, headers });
    }
    return capped(
      json(
        200,
        {
          columns: result.columns,
          rows: result.rows,
          row_count: result.rows.length,
          truncated: result.truncated,
          elapsed_ms: Math.round(result.elapsedMs * 10) / 10,
          snapshots: result.snapshots,
        },
        headers,
      ),
    );
  });

  const listTables = guard(async (request) => {
    const namespace = single(request.query?.namespace);
    const tables = [];
    for (const identifier of await catalog.listAllTables()) {
      const name = tableIdentifierToString(identifier);
      if (namespace && !name.startsWith(`${namespace}.`)) continue;
      if (request.canRead && !request.canRead(name)) continue;
      const table = await catalog.loadTable(identifier);
      const snapshot = table.currentSnapshot;
      tables.push({
        table: name,
        namespace: identifier.namespace.join('.'),
        name: identifier.name,
        location: table.location,
        snapshots: table.metadata.snapshots.length,
        current_snapshot_id: snapshot?.['snapshot-id'].toString() ?? null,
        records: snapshot ? Number(snapshot.summary['total-records'] ?? 0) : 0,
        last_updated: new Date(table.metadata['last-updated-ms']).toISOString(),
      });
    }
    return json(200, { tables });
  });

  const loadTable = async (request: ApiRequest) => {
    const name = request.params?.table;
    if (!name) throw badRequest('no table in the path', 'GET /v1/tables/{namespace.table}');
    // Already decoded by the router: decoding again would read `%25` as an escape (a 500, or another name).
    const identifier = parseTableIdentifier(name);
    if (request.canRead && !request.canRead(name)) throw notGranted(name.split('.'));
    return catalog.loadTable(identifier);
  };

  const getTable = guard(async (request) => {
    const table = await loadTable(request);
    const schema = table.schema;
    const identifiers = new Set(schema['identifier-field-ids'] ?? []);
    const snapshot = table.currentSnapshot;
    return json(200, {
      table: table.name,
      location: table.location,
      metadata_location: table.metadataLocation,
      format_version: table.metadata['format-version'],
      schema: {
        schema_id: schema['schema-id'],
        fields: schema.fields.map((f) => ({
          id: f.id,
          name: f.name,
          type: f.type,
          required: f.required,
          ...(identifiers.has(f.id) ? { identifier: true } : {}),
          ...(f.doc ? { doc: f.doc } : {}),
        })),
      },
      partition_spec: describePartitionSpec(table.spec, schema) || null,
      sort_order: describeSortOrder(table.sortOrder, schema) || null,
      properties: table.metadata.properties,
      current_snapshot: snapshot
        ? {
            snapshot_id: snapshot['snapshot-id'].toString(),
            timestamp: new Date(snapshot['timestamp-ms']).toISOString(),
            operation: snapshot.summary.operation,
            summary: snapshot.summary,
          }
        : null,
    });
  });

  const listSnapshots = guard(async (request) => {
    const table = await loadTable(request);
    const current = table.metadata['current-snapshot-id'];
    return json(200, {
      table: table.name,
      snapshots: table.metadata.snapshots.map((s) => ({
        snapshot_id: s['snapshot-id'].toString(),
        parent_id: s['parent-snapshot-id']?.toString() ?? null,
        timestamp: new Date(s['timestamp-ms']).toISOString(),
        operation: s.summary.operation,
        summary: s.summary,
        current: s['snapshot-id'] === current,
      })),
    });
  });

  return {
    query,
    listTables,
    getTable,
    listSnapshots,
    routes: [
      { method: 'POST', path: '/v1/query', role: 'query', handler: query },
      { method: 'GET', path: '/v1/tables', role: 'query', handler: listTables },
      { method: 'GET', path: '/v1/tables/{table}', role: 'query', handler: getTable },
      { method: 'GET', path: '/v1/tables/{table}/snapshots', role: 'query', handler: listSnapshots },
    ],
  };
}
