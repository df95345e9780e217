/** Column types for a table created from the JSON shape of the first batch. */
import { fitsInt64, isBigInteger } from '../../core/json.ts';
import { isIdentifier } from './identifiers.ts';

export interface InferredColumns {
  /** Column → PostgreSQL type, in the order fields were first seen. */
  readonly columns: Map<string, string>;
  /** Field names that cannot be columns (not plain identifiers). */
  readonly skipped: string[];
}

/**
 * `integer`: a safe integer; `long`: an integer beyond ±2^53 within int64; `huge`: one beyond int64 (both
 * BigIntegers, see core/json.ts); `number`: any other number.
 */
type Kind = 'null' | 'boolean' | 'integer' | 'long' | 'huge' | 'number' | 'string' | 'json';

function kindOf(value: unknown): Kind {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean') return 'boolean';
  if (typeof value === 'number') return Number.isSafeInteger(value) ? 'integer' : 'number';
  if (typeof value === 'string') return 'string';
  if (isBigInteger(value)) return fitsInt64(value) ? 'long' : 'huge';
  return 'json';
}

const NUMBERS = new Set<Kind>(['integer', 'long', 'huge', 'number']);

function merge(a: Kind, b: Kind): Kind {
  if (a === b || b === 'null') return a;
  if (a === 'null') return b;
  if (NUMBERS.has(a) && NUMBERS.has(b)) {
    // Exact where a value needs it: a BigInteger never goes into a double precision column.
    if (a === 'huge' || b === 'huge') return 'huge';
    if (a === 'number' || b === 'number') return a === 'long' || b === 'long' ? 'huge' : 'number';
    return 'long';
  }
  return 'json';
}

const TYPES: Record<Kind, string> = {
  null: 'text',
  boolean: 'boolean',
  integer: 'bigint',
  long: 'bigint',
  huge: 'numeric',
  number: 'double precision',
  string: 'text',
  json: 'jsonb',
};

/**
 * Integers → bigint (numeric beyond int64), other numbers → double precision, booleans → boolean, strings
 * → text, objects and arrays → jsonb; a field whose values disagree → jsonb (integers and fractions →
 * double precision, or numeric when an integer is beyond ±2^53); a field that is only ever null → text.
 */
export function inferColumns(values: Iterable<Readonly<Record<string, unknown>>>): InferredColumns {
  const kinds = new Map<string, Kind>();
  const skipped = new Set<string>();
  for (const value of values) {
    for (const [field, fieldValue] of Object.entries(value)) {
      if (!isIdentifier(field)) {
        skipped.add(field);
        continue;
      }
      kinds.set(field, merge(kinds.get(field) ?? 'null', kindOf(fieldValue)));
    }
  }
  const columns = new Map<string, string>();
  for (const [field, kind] of kinds) columns.set(field, TYPES[kind]);
  return { columns, skipped: [...skipped] };
}
