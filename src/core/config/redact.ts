/** Hides secrets in configuration before it is printed or logged. */
import { isBigInteger } from '../json.ts';

/** Keys whose values are secrets wherever they appear. */
export const SECRET_KEY = /(password|passwd|secret|token|credential|private_key|api_key|access_key|salt)/i;
export const REDACTED = '«redacted»';
/** What is printed for a value that depends on an unresolved placeholder (reading it would throw). */
export const UNRESOLVED = '«unresolved»';

/**
 * A deep copy of `value` with secret keys, secret-file values and passwords inside URIs replaced, and
 * values deferred for an unresolved placeholder (getters that throw, config/load-file.ts) shown as
 * UNRESOLVED, so that the whole configuration prints even where this environment lacks some of it.
 */
export function redactSecrets(
  value: unknown,
  secretPaths: ReadonlyArray<ReadonlyArray<string | number>> = [],
): unknown {
  const secret = new Set(secretPaths.map((p) => p.join('\u0000')));
  const walk = (node: unknown, at: Array<string | number>): unknown => {
    if (secret.has(at.join('\u0000'))) return REDACTED;
    if (Array.isArray(node)) return node.map((item, i) => walk(item, [...at, i]));
    if (node && typeof node === 'object' && !isBigInteger(node)) {
      return Object.fromEntries(
        Object.entries(Object.getOwnPropertyDescriptors(node))
          .filter(([, property]) => property.enumerable)
          .map(([key, property]) => {
            if (property.get) return [key, UNRESOLVED];
            const child: unknown = property.value;
            return [
              key,
              SECRET_KEY.test(key) && child !== undefined && child !== null
                ? REDACTED
                : walk(child, [...at, key]),
            ];
          }),
      );
    }
    return typeof node === 'string' ? redactUriPassword(node) : node;
  };
  return walk(value, []);
}

/**
 * `postgresql://user:pw@host/db` → `postgresql://user:«redacted»@host/db`. The password runs to the last
 * `@` (one written without escaping may hold spaces, `/`, `?` or `@`); `host:8443/…` is a port, not one.
 */
export function redactUriPassword(text: string): string {
  return text.replace(
    /^([a-z][a-z0-9+.-]*:\/\/[^:/@\s]+:)(?!\d+(?:[/?#]|$))(.*)(@[^@]*)$/is,
    `$1${REDACTED}$3`,
  );
}
