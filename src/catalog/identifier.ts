/**
 * Table and namespace identifiers. Names come from users, configuration and HTTP requests: they are checked
 * here (hostile input: empty, control characters, surrounding blanks, lengths beyond the catalog's columns)
 * and always bound as SQL parameters, never spliced into SQL.
 *
 * A namespace has one or more levels and is stored dotted ("silver.eu"), as pyiceberg's SqlCatalog and
 * Java's JdbcCatalog store it; a level may therefore not contain a dot. A table identifier is a namespace and
 * a name: "silver.eu.orders" is the table "orders" of the namespace "silver.eu".
 */
import { TributaryError } from '../errors.ts';

export type Namespace = readonly string[];

export interface TableIdentifier {
  readonly namespace: Namespace;
  readonly name: string;
}

/** The catalog tables' VARCHAR(255) columns: table_namespace, table_name, namespace, property_key. */
export const MAX_NAME_LENGTH = 255;
/** The catalog tables' VARCHAR(1000) columns: metadata locations, property values. */
export const MAX_VALUE_LENGTH = 1000;

// C0 and C1 controls, line and paragraph separators, and the bidirectional overrides that make a name read
// differently than it compares ("Trojan Source").
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

/** Parses "ns1.ns2.table" into `{ namespace: ['ns1', 'ns2'], name: 'table' }`. INVALID_INPUT when invalid. */
export function parseTableIdentifier(text: string): TableIdentifier {
  if (typeof text !== 'string') throw invalid('table', String(text), 'it is not a string');
  const parts = text.split('.');
  if (parts.length < 2) {
    throw invalid(
      'table',
      text,
      'it has no namespace',
      'Name tables as <namespace>.<table>, e.g. silver.orders.',
    );
  }
  const name = parts.pop() ?? '';
  return tableIdentifier(parts, name);
}

/** Parses "ns1.ns2" into `['ns1', 'ns2']`. INVALID_INPUT when invalid. */
export function parseNamespace(text: string): Namespace {
  if (typeof text !== 'string') throw invalid('namespace', String(text), 'it is not a string');
  return namespaceOf(text.split('.'));
}

/** A checked, frozen copy of a namespace given as levels. INVALID_INPUT when invalid. */
export function namespaceOf(levels: readonly string[]): Namespace {
  return checkNamespace(
    levels,
    'namespace',
    Array.isArray(levels) ? levels.map(String).join('.') : String(levels),
  );
}

/** A checked, frozen table identifier. INVALID_INPUT when invalid. */
export function tableIdentifier(namespace: readonly string[], name: string): TableIdentifier {
  const shown = `${Array.isArray(namespace) ? namespace.map(String).join('.') : String(namespace)}.${String(name)}`;
  const checkedNamespace = checkNamespace(namespace, 'table', shown);
  if (typeof name !== 'string') throw invalid('table', shown, 'the name is not a string');
  checkName('table', shown, name);
  if (codePoints(name) > MAX_NAME_LENGTH) {
    throw invalid('table', shown, `the name is longer than ${MAX_NAME_LENGTH} characters`);
  }
  return Object.freeze({ namespace: checkedNamespace, name });
}

/** A name as DuckDB compares identifiers: ASCII letters folded, nothing else (`K` U+212A is not `k`). */
export function foldedName(name: string): string {
  return name.replace(/[A-Z]+/g, (letters) => letters.toLowerCase());
}

/** "silver.eu" */
export function namespaceToString(namespace: Namespace): string {
  return namespace.join('.');
}

/** "silver.eu.orders" */
export function tableIdentifierToString(identifier: TableIdentifier): string {
  return `${namespaceToString(identifier.namespace)}.${identifier.name}`;
}

/** Length in characters (code points), as the databases count VARCHAR lengths. */
export function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

/** True when the text holds a control character (including NUL, which PostgreSQL cannot store). */
export function hasControlCharacter(text: string): boolean {
  return CONTROL.test(text);
}

function checkNamespace(levels: unknown, kind: 'namespace' | 'table', shown: string): Namespace {
  if (!Array.isArray(levels) || levels.length === 0) throw invalid(kind, shown, 'it has no namespace levels');
  const checked: string[] = [];
  for (const level of levels as readonly unknown[]) {
    if (typeof level !== 'string') throw invalid(kind, shown, 'a namespace level is not a string');
    if (level.includes('.')) throw invalid(kind, shown, `the level ${JSON.stringify(level)} contains a dot`);
    checkName(kind, shown, level);
    checked.push(level);
  }
  if (codePoints(checked.join('.')) > MAX_NAME_LENGTH) {
    throw invalid(kind, shown, `its namespace is longer than ${MAX_NAME_LENGTH} characters`);
  }
  return Object.freeze(checked);
}

function checkName(kind: 'namespace' | 'table', shown: string, part: string): void {
  if (part === '') throw invalid(kind, shown, 'it has an empty part');
  if (hasControlCharacter(part)) throw invalid(kind, shown, 'it contains a control character');
  if (part.trim() !== part) throw invalid(kind, shown, 'a part begins or ends with blank space');
}

function invalid(kind: 'namespace' | 'table', shown: string, why: string, hint?: string): TributaryError {
  return new TributaryError('INVALID_INPUT', `Invalid ${kind} name ${JSON.stringify(shown)}: ${why}`, {
    context: { [kind]: shown },
    hint:
      hint ??
      `Use a non-empty name of at most ${MAX_NAME_LENGTH} characters, without control characters` +
        (kind === 'namespace' ? ' or dots within a level.' : '.'),
  });
}
