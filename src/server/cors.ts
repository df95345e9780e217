/**
 * Browser origins as CORS compares them: a request's `Origin` against a stream's `cors_origins`, both
 * without trailing slashes and in lower case.
 */

/**
 * Longer origins are refused unread: a browser's is a scheme, a host name (253 characters at most) and a
 * port, so anything longer is made up.
 */
export const MAX_ORIGIN_LENGTH = 2048;

/** The origin without trailing slashes, in lower case. */
export function canonicalOrigin(origin: string): string {
  // A loop, not /\/+$/: that regex is quadratic on many slashes followed by something else.
  let end = origin.length;
  while (end > 0 && origin.charCodeAt(end - 1) === 0x2f) end--;
  return origin.slice(0, end).toLowerCase();
}

/** Whether a request's `Origin` may send to a stream with these settings. */
export function originAllowed(origin: string, any: boolean, allowed: ReadonlySet<string>): boolean {
  return origin.length <= MAX_ORIGIN_LENGTH && (any || allowed.has(canonicalOrigin(origin)));
}
