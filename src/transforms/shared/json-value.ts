/** Helpers for the JSON values records carry, and for describing them in rejection reasons. */
import { isBigInteger } from '../../core/json.ts';

export type JsonObject = Record<string, unknown>;

/** A JSON object: not an array, and not a BigInteger (a number, though its typeof is 'object'). */
export function isPlainObject(value: unknown): value is JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const prototype = Object.getPrototypeOf(value) as unknown;
  return prototype === Object.prototype || (prototype === null && !isBigInteger(value));
}

/** "null", "array", "object", or the typeof name ("number" for a BigInteger): for messages. */
export function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return isBigInteger(value) ? 'number' : typeof value;
}

/** A value as short JSON text for a message (long values are cut). */
export function preview(value: unknown, max = 80): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Cuts a rejection reason to a length a DLQ row can carry. */
export function capReason(text: string, max = 1000): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * Where `value` holds something JSON cannot represent (a bigint, a function, a Date, a cycle…), as
 * "/a/b is a bigint"; undefined when it is plain JSON (undefined fields are allowed: JSON omits them).
 */
export function nonJsonProblem(value: unknown, at = '', ancestors = new Set<object>()): string | undefined {
  const where = at || '/';
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'undefined':
      return undefined;
    case 'number':
      return Number.isFinite(value) ? undefined : `${where} is ${value}, which JSON cannot represent`;
    case 'object': {
      if (value === null || isBigInteger(value)) return undefined;
      if (ancestors.has(value)) return `${where} refers back to itself`;
      if (!Array.isArray(value) && !isPlainObject(value)) {
        const name = value.constructor?.name ?? 'object';
        return `${where} is a ${name}, not a plain object${value instanceof Date ? ' (use toISOString())' : ''}`;
      }
      ancestors.add(value);
      const entries = Array.isArray(value) ? value.entries() : Object.entries(value);
      for (const [key, child] of entries) {
        const problem = nonJsonProblem(child, `${at}/${String(key)}`, ancestors);
        if (problem) return problem;
      }
      ancestors.delete(value);
      return undefined;
    }
    default:
      return `${where} is a ${typeof value}, which JSON cannot represent`;
  }
}
