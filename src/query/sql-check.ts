/**
 * What a SQL text is, as DuckDB's own parser sees it: how many statements, whether it is a single SELECT
 * (`json_serialize_sql` serializes SELECT statements only), which tables and table functions it names.
 * The read-only query path refuses anything else; time travel rewrites the table references of the parsed
 * statement and turns it back into SQL (`json_deserialize_sql`).
 */
import { TributaryError } from '../errors.ts';
import type { DuckDBConnection } from '../iceberg/duckdb.ts';

/** A table named in a FROM clause: its name parts as written (catalog.schema.table, empty parts dropped). */
export interface TableReference {
  readonly parts: readonly string[];
}

export interface ParsedSelect {
  /** The serialized statement (json_serialize_sql's output). */
  readonly json: Record<string, unknown>;
  readonly tables: readonly TableReference[];
  /** Names defined by WITH clauses anywhere in the statement. */
  readonly cteNames: ReadonlySet<string>;
  /** Table functions called in FROM clauses (range, read_csv, query…), lower-case. */
  readonly tableFunctions: readonly string[];
  /** Node types that make it more than a plain query (SHOW_REF for DESCRIBE/SUMMARIZE). */
  readonly otherRefs: readonly string[];
}

function refused(message: string, hint?: string, cause?: unknown): TributaryError {
  return new TributaryError('INVALID_INPUT', message, {
    hint: hint ?? 'send one SELECT (or WITH … SELECT) statement',
    ...(cause === undefined ? {} : { cause }),
  });
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '';
}

/** Parses `sql`, which must be exactly one SELECT statement; INVALID_INPUT otherwise. Nothing is executed. */
export async function parseSingleSelect(connection: DuckDBConnection, sql: string): Promise<ParsedSelect> {
  if (typeof sql !== 'string' || sql.trim() === '') throw refused('the query is empty');
  let count: number;
  try {
    count = (await connection.extractStatements(sql)).count;
  } catch (cause) {
    throw refused(`the query cannot be parsed: ${firstLine(cause)}`, 'fix the SQL syntax', cause);
  }
  if (count !== 1) throw refused(`the query has ${count} statements; exactly one is allowed`);
  const reader = await connection.runAndReadAll('select json_serialize_sql($1::VARCHAR)', [sql]);
  const text = String(reader.getRows()[0]?.[0] ?? '');
  const parsed = JSON.parse(text) as {
    error?: boolean;
    error_message?: string;
    statements?: Array<Record<string, unknown>>;
  };
  if (parsed.error || !parsed.statements) {
    const why = parsed.error_message ?? 'not a query';
    throw refused(
      /only select/i.test(why)
        ? 'only a SELECT (or WITH … SELECT) statement is allowed'
        : `the query cannot be parsed: ${why}`,
    );
  }
  if (parsed.statements.length !== 1)
    throw refused(`the query has ${parsed.statements.length} statements; exactly one is allowed`);
  const json = parsed.statements[0]!;
  const tables: TableReference[] = [];
  const cteNames = new Set<string>();
  const tableFunctions: string[] = [];
  const otherRefs: string[] = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const item of node) walk(item);
      return;
    }
    if (!node || typeof node !== 'object') return;
    const record = node as Record<string, unknown>;
    if (record.type === 'BASE_TABLE' && typeof record.table_name === 'string') {
      tables.push({
        parts: [record.catalog_name, record.schema_name, record.table_name].filter(
          (p): p is string => typeof p === 'string' && p !== '',
        ),
      });
    } else if (record.type === 'TABLE_FUNCTION') {
      const fn = record.function as Record<string, unknown> | undefined;
      if (fn && typeof fn.function_name === 'string') tableFunctions.push(fn.function_name.toLowerCase());
    } else if (record.type === 'SHOW_REF') {
      otherRefs.push('SHOW_REF');
    }
    const cteMap = record.cte_map as { map?: Array<{ key?: unknown }> } | undefined;
    for (const entry of cteMap?.map ?? []) if (typeof entry.key === 'string') cteNames.add(entry.key);
    for (const value of Object.values(record)) walk(value);
  };
  walk(json);
  return { json, tables, cteNames, tableFunctions, otherRefs };
}

/** Table functions a read-only query may call: they compute rows and touch no file or setting. */
export const ALLOWED_TABLE_FUNCTIONS: ReadonlySet<string> = new Set(['range', 'generate_series', 'unnest']);

/**
 * The statement with each table reference `rename` maps (by its dotted name, lower-case) pointed at another
 * (schema, table), back as SQL text.
 */
export async function rewriteTableReferences(
  connection: DuckDBConnection,
  parsed: ParsedSelect,
  rename: (parts: readonly string[]) => { schema: string; table: string } | undefined,
): Promise<string> {
  const copy = structuredClone(parsed.json);
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const item of node) walk(item);
      return;
    }
    if (!node || typeof node !== 'object') return;
    const record = node as Record<string, unknown>;
    if (record.type === 'BASE_TABLE' && typeof record.table_name === 'string') {
      const parts = [record.catalog_name, record.schema_name, record.table_name].filter(
        (p): p is string => typeof p === 'string' && p !== '',
      );
      const target = rename(parts);
      if (target) {
        record.catalog_name = '';
        record.schema_name = target.schema;
        record.table_name = target.table;
      }
    }
    for (const value of Object.values(record)) walk(value);
  };
  walk(copy);
  const document = JSON.stringify({ error: false, statements: [copy] });
  try {
    const reader = await connection.runAndReadAll('select json_deserialize_sql($1::JSON)', [document]);
    return String(reader.getRows()[0]?.[0] ?? '');
  } catch (cause) {
    throw refused(
      `time travel cannot be applied to this query: ${firstLine(cause)}`,
      'query the current snapshot, or simplify the query',
      cause,
    );
  }
}
