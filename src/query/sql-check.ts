/**
 * What a SQL text is, as DuckDB's own parser sees it: how many statements, whether it is a single SELECT
 * (`json_serialize_sql` serializes SELECT statements only), which tables and table functions it names.
 * The read-only query path refuses anything else; time travel rewrites the table references of the parsed
 * statement and turns it back into SQL (`json_deserialize_sql`).
 */
import { foldedName } from '../catalog/identifier.ts';
import { TributaryError } from '../errors.ts';
import { quoteIdentifier, type DuckDBConnection } from '../iceberg/duckdb.ts';

/** A table named in a FROM clause: its name parts as written (catalog.schema.table, empty parts dropped). */
export interface TableReference {
  readonly parts: readonly string[];
  /**
   * A one-part name that a WITH clause in scope defines: DuckDB binds it to that query, not to a table.
   * Scope as DuckDB has it: a WITH's names in its query and in the WITH's later entries; a recursive
   * entry's name in its own body too. Compared without case, as DuckDB compares identifiers.
   */
  readonly cte: boolean;
}

export interface ParsedSelect {
  /** The SQL text as given. */
  readonly sql: string;
  /** The serialized statement, json_serialize_sql's output (numbers kept as written: see `parseJson`). */
  readonly serialized: string;
  readonly tables: readonly TableReference[];
  /** Table functions called in FROM clauses (range, read_csv, query…), lower-case. */
  readonly tableFunctions: readonly string[];
  /**
   * Other functions called, lower-case: scalar functions, macros, aggregates, window functions, and the
   * operators DuckDB parses as calls (`+`, `||`, `~~` for LIKE; not casts, comparisons, AND, IN, CASE).
   */
  readonly functions: readonly string[];
  /** Node types that make it more than a plain query (SHOW_REF for DESCRIBE/SUMMARIZE). */
  readonly otherRefs: readonly string[];
}

type Json = Record<string, unknown>;

/**
 * JSON with every number kept as its text: the serialized statement holds uint64s past 2^53 and doubles
 * written as `10.0` that DuckDB reads back only as they were.
 */
function parseJson(text: string): unknown {
  return JSON.parse(text, (_key, value: unknown, context?: { source?: string }) =>
    typeof value === 'number' && context?.source !== undefined ? rawJson(context.source) : value,
  );
}

/** JSON.rawJSON (Node 21+; not in TypeScript's lib yet): a value JSON.stringify writes as the text given. */
const rawJson = (text: string): unknown =>
  (JSON as unknown as { rawJSON: (text: string) => unknown }).rawJSON(text);

function refused(message: string, hint?: string, cause?: unknown): TributaryError {
  return new TributaryError('INVALID_INPUT', message, {
    hint: hint ?? 'send one SELECT (or WITH … SELECT) statement',
    ...(cause === undefined ? {} : { cause }),
  });
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '';
}

/** The parts of a BASE_TABLE node's name, empty ones dropped. */
function nameParts(node: Json): string[] {
  return [node.catalog_name, node.schema_name, node.table_name].filter(
    (p): p is string => typeof p === 'string' && p !== '',
  );
}

/**
 * A WITH name that a reference may bind to: a plain identifier. Anything else is left to the catalog
 * check, which refuses it: DuckDB reads a table name that looks like a file path (`'…/*.parquet'`) as that
 * file whenever its scoping differs from this walk's in some corner, so no such name is ever let through.
 */
const PLAIN_NAME = /^[a-z_][a-z0-9_]*$/;

/**
 * Calls `visit` on every node of the statement with the WITH names in scope at it (folded, plain): see
 * TableReference.cte.
 */
function walkScoped(
  node: unknown,
  scope: ReadonlySet<string>,
  visit: (node: Json, scope: ReadonlySet<string>) => void,
): void {
  if (Array.isArray(node)) {
    for (const item of node) walkScoped(item, scope, visit);
    return;
  }
  if (!node || typeof node !== 'object') return;
  const record = node as Json;
  visit(record, scope);
  const withName = (names: ReadonlySet<string>, name: unknown): ReadonlySet<string> =>
    typeof name === 'string' && PLAIN_NAME.test(foldedName(name))
      ? new Set([...names, foldedName(name)])
      : names;
  let inner = scope;
  const entries = (record.cte_map as { map?: Array<{ key?: unknown; value?: unknown }> } | undefined)?.map;
  if (Array.isArray(entries)) {
    for (const entry of entries) {
      walkScoped(entry.value, inner, visit);
      inner = withName(inner, entry.key);
    }
  }
  for (const [key, value] of Object.entries(record)) {
    if (key === 'cte_map') continue;
    // A recursive entry's own name binds in its recursive branch only, not in the first.
    const recursive = record.type === 'RECURSIVE_CTE_NODE' && key === 'right';
    walkScoped(value, recursive ? withName(inner, record.cte_name) : inner, visit);
  }
}

/** json_serialize_sql of `sql`: its one statement, or INVALID_INPUT. */
async function serialize(
  connection: DuckDBConnection,
  sql: string,
): Promise<{ text: string; statement: Json }> {
  const reader = await connection.runAndReadAll('select json_serialize_sql($1::VARCHAR)', [sql]);
  const text = String(reader.getRows()[0]?.[0] ?? '');
  const parsed = parseJson(text) as {
    error?: boolean;
    error_message?: string;
    statements?: Json[];
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
  return { text, statement: parsed.statements[0]! };
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
  const { text, statement } = await serialize(connection, sql);
  const tables: TableReference[] = [];
  const tableFunctions: string[] = [];
  const functions: string[] = [];
  const otherRefs: string[] = [];
  /** The FUNCTION nodes that name table functions: those are tableFunctions, not functions. */
  const tableFunctionNodes = new Set<unknown>();
  walkScoped(statement, new Set(), (record, scope) => {
    if (record.type === 'BASE_TABLE' && typeof record.table_name === 'string') {
      const parts = nameParts(record);
      tables.push({ parts, cte: parts.length === 1 && scope.has(foldedName(parts[0]!)) });
    } else if (record.type === 'TABLE_FUNCTION') {
      const fn = record.function as Json | undefined;
      if (fn && typeof fn.function_name === 'string') tableFunctions.push(foldedName(fn.function_name));
      tableFunctionNodes.add(fn);
    } else if (typeof record.function_name === 'string' && !tableFunctionNodes.has(record)) {
      // A FUNCTION or a WINDOW node (`sum(x) over ()`), or any other that names a function.
      functions.push(foldedName(record.function_name));
    } else if (record.type === 'SHOW_REF') {
      otherRefs.push('SHOW_REF');
    }
  });
  return { sql, serialized: text, tables, tableFunctions, functions, otherRefs };
}

/** The statement as JSON text without `query_location`s (where in the text a node was: not its meaning). */
function meaning(statement: unknown): string {
  return JSON.stringify(statement, (key, value: unknown) => (key === 'query_location' ? undefined : value));
}

/** A table reference's name in the SQL text, to replace: where it starts (a byte offset) and its parts. */
interface NameEdit {
  readonly at: number;
  readonly parts: readonly string[];
  readonly replacement: string;
}

const SPACE = new Set([0x20, 0x09, 0x0a, 0x0d]);

/** A byte of an unquoted name: an ASCII letter, digit, `_` or `$`, or any byte of a UTF-8 character. */
function isNameByte(byte: number): boolean {
  return (
    (byte >= 0x61 && byte <= 0x7a) ||
    (byte >= 0x41 && byte <= 0x5a) ||
    (byte >= 0x30 && byte <= 0x39) ||
    byte === 0x5f ||
    byte === 0x24 ||
    byte >= 0x80
  );
}

/**
 * Where the qualified name that starts at byte `at` of `bytes` ends, if its parts are `parts` (compared as
 * DuckDB compares identifiers); undefined when the text there is anything else.
 */
function nameEnd(bytes: Buffer, at: number, parts: readonly string[]): number | undefined {
  let i = at;
  for (let k = 0; k < parts.length; k++) {
    if (k > 0) {
      while (SPACE.has(bytes[i]!)) i++;
      if (bytes[i] !== 0x2e) return undefined; // .
      i++;
      while (SPACE.has(bytes[i]!)) i++;
    }
    let part: string;
    if (bytes[i] === 0x22) {
      // "…", a quote doubled inside (a multi-byte UTF-8 character never holds the byte 0x22).
      let end = i + 1;
      for (;;) {
        if (end >= bytes.length) return undefined;
        if (bytes[end] === 0x22) {
          if (bytes[end + 1] !== 0x22) break;
          end++;
        }
        end++;
      }
      part = bytes.toString('utf8', i + 1, end).replaceAll('""', '"');
      i = end + 1;
    } else {
      let end = i;
      while (end < bytes.length && isNameByte(bytes[end]!)) end++;
      if (end === i) return undefined;
      part = bytes.toString('utf8', i, end);
      i = end;
    }
    if (foldedName(part) !== foldedName(parts[k]!)) return undefined;
  }
  return i;
}

/** `sql` with each edit's name replaced, or undefined when a name is not where its edit says. */
function splice(sql: string, edits: readonly NameEdit[]): string | undefined {
  const bytes = Buffer.from(sql, 'utf8');
  const pieces: Buffer[] = [];
  let from = 0;
  for (const edit of [...edits].sort((a, b) => a.at - b.at)) {
    if (!Number.isSafeInteger(edit.at) || edit.at < from) return undefined;
    const end = nameEnd(bytes, edit.at, edit.parts);
    if (end === undefined) return undefined;
    pieces.push(bytes.subarray(from, edit.at), Buffer.from(edit.replacement, 'utf8'));
    from = end;
  }
  pieces.push(bytes.subarray(from));
  return Buffer.concat(pieces).toString('utf8');
}

/**
 * The statement with each table reference `rename` maps (by its name parts) pointed at another (schema,
 * table), back as SQL text; the reference keeps its name as its alias, so that columns qualified by the
 * table name still bind (and those qualified by its schema too, rewritten to the alias). The text is the
 * query's own with those names replaced where the parser found them; where that cannot be done, DuckDB's
 * printing of the statement — which is not always SQL that parses back into it (`1e3` prints as
 * `1000.0`, a DECIMAL; a quoted name with a quote inside, before `.*`, comes out unquoted). Either text is
 * parsed again and must be the same statement, or the query is refused: the text run is always the
 * statement checked.
 */
export async function rewriteTableReferences(
  connection: DuckDBConnection,
  parsed: ParsedSelect,
  rename: (parts: readonly string[]) => { schema: string; table: string } | undefined,
): Promise<string> {
  const document = parseJson(parsed.serialized) as { statements: Json[] };
  const statement = document.statements[0]!;
  // (parseJson keeps numbers as their text.)
  const locationOf = (record: Json) =>
    Number((record.query_location as { rawJSON?: string } | undefined)?.rawJSON ?? Number.NaN);
  const edits: NameEdit[] = [];
  /** Qualified names (folded, dotted) of the tables renamed without an alias: their table name becomes it. */
  const renamedAs = new Map<string, string>();
  walkScoped(statement, new Set(), (record, scope) => {
    if (record.type !== 'BASE_TABLE' || typeof record.table_name !== 'string') return;
    const parts = nameParts(record);
    if (parts.length === 1 && scope.has(foldedName(parts[0]!))) return;
    const target = rename(parts);
    if (!target) return;
    const aliased = typeof record.alias === 'string' && record.alias !== '';
    edits.push({
      at: locationOf(record),
      parts,
      replacement: `${quoteIdentifier(target.schema)}.${quoteIdentifier(target.table)}${aliased ? '' : ` AS ${quoteIdentifier(record.table_name)}`}`,
    });
    if (!aliased) {
      record.alias = record.table_name;
      if (parts.length > 1) renamedAs.set(parts.map(foldedName).join('.'), record.table_name);
    }
    record.catalog_name = '';
    record.schema_name = target.schema;
    record.table_name = target.table;
  });
  // A column qualified by a renamed table's schema (`shop.orders.id`, DuckDB's first reading of three
  // names) is qualified by the name it keeps as its alias instead (`orders.id`): the alias has no schema.
  if (renamedAs.size > 0) {
    walkScoped(statement, new Set(), (record) => {
      const names = record.column_names;
      if (record.type !== 'COLUMN_REF' || !Array.isArray(names) || names.length < 3) return;
      if (!names.every((name): name is string => typeof name === 'string')) return;
      for (const length of [3, 2]) {
        if (names.length <= length) continue;
        const alias = renamedAs.get(names.slice(0, length).map(foldedName).join('.'));
        if (alias === undefined) continue;
        edits.push({
          at: locationOf(record),
          parts: names.slice(0, length),
          replacement: quoteIdentifier(alias),
        });
        record.column_names = [alias, ...names.slice(length)];
        return;
      }
    });
  }
  const cannot = (why: string, cause?: unknown) =>
    refused(
      `time travel cannot be applied to this query: ${why}`,
      'query the current snapshot, or simplify the query',
      cause,
    );
  const sameStatement = async (text: string): Promise<boolean> => {
    try {
      return meaning((await serialize(connection, text)).statement) === meaning(statement);
    } catch {
      return false; // not one SELECT
    }
  };
  const spliced = splice(parsed.sql, edits);
  if (spliced !== undefined && (await sameStatement(spliced))) return spliced;
  let text: string;
  try {
    const reader = await connection.runAndReadAll('select json_deserialize_sql($1::JSON)', [
      JSON.stringify(document),
    ]);
    text = String(reader.getRows()[0]?.[0] ?? '');
  } catch (cause) {
    throw cannot(firstLine(cause), cause);
  }
  if (!(await sameStatement(text))) throw cannot('DuckDB cannot print it back as SQL');
  return text;
}
