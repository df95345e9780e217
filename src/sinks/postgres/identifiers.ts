/**
 * PostgreSQL names in SQL the sink writes. Only plain identifiers (a letter or underscore, then letters,
 * digits and underscores, at most 63 characters) are accepted, and every one is double-quoted, so a name
 * is taken verbatim (case kept) and can never be read as SQL.
 */

export const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** A type in `columns`: a name of words, an optional (precision[, scale]) and optional []. */
export const COLUMN_TYPE =
  /^[A-Za-z_][A-Za-z0-9_]*(?: [A-Za-z_][A-Za-z0-9_]*)*(?: ?\(\d+(?:, ?\d+)?\))?(?:\[\])*$/;

export function isIdentifier(name: string): boolean {
  return IDENTIFIER.test(name);
}

/** `"name"`; throws for anything that is not a plain identifier (callers validate first). */
export function quote(name: string): string {
  if (!IDENTIFIER.test(name)) throw new Error(`not a plain identifier: ${JSON.stringify(name)}`);
  return `"${name}"`;
}

export interface QualifiedName {
  readonly schema: string;
  readonly name: string;
}

/** `schema.table` or `table` (in `defaultSchema`); undefined when a part is not a plain identifier. */
export function parseQualified(text: string, defaultSchema = 'public'): QualifiedName | undefined {
  const parts = text.split('.');
  if (parts.length > 2 || !parts.every(isIdentifier)) return undefined;
  return parts.length === 2
    ? { schema: parts[0]!, name: parts[1]! }
    : { schema: defaultSchema, name: parts[0]! };
}

export function quoteQualified(name: QualifiedName): string {
  return `${quote(name.schema)}.${quote(name.name)}`;
}

export function displayQualified(name: QualifiedName): string {
  return `${name.schema}.${name.name}`;
}
