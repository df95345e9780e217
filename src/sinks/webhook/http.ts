/** The pieces of the webhook protocol that need no network: signatures, idempotency keys, backoff. */
import { createHash, createHmac } from 'node:crypto';
import type { PipelineRecord } from '../../core/pipeline/model.ts';

/**
 * `sha256=<hex>`, as in `X-Tributary-Signature`: HMAC-SHA256 with the secret of `<timestamp>.<raw body>`,
 * the timestamp being `X-Tributary-Timestamp`'s. Signed with the body, the timestamp cannot be changed: a
 * receiver that refuses old ones refuses a captured request replayed later.
 */
export function signature(secret: string, timestamp: string, body: Uint8Array | string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`;
}

/**
 * The `Idempotency-Key` of a request: a hash of the pipeline, the sink and, per partition, the first and
 * last offset of the records it carries. The same records sent again (a retry, a batch redelivered after
 * a crash) carry the same key.
 */
export function idempotencyKey(pipeline: string, sink: string, records: readonly PipelineRecord[]): string {
  const ranges = new Map<number, [number, number]>();
  for (const { partition, offset } of records) {
    const range = ranges.get(partition);
    if (!range) ranges.set(partition, [offset, offset]);
    else {
      range[0] = Math.min(range[0], offset);
      range[1] = Math.max(range[1], offset);
    }
  }
  const sorted = [...ranges].sort(([a], [b]) => a - b).map(([p, [first, last]]) => [p, first, last]);
  return createHash('sha256')
    .update(JSON.stringify(['tributary-webhook-v1', pipeline, sink, sorted]))
    .digest('hex');
}

/** Longest `Retry-After` honoured. */
export const MAX_RETRY_AFTER_MS = 10 * 60_000;

/** Milliseconds to wait from a `Retry-After` value (delay-seconds or an HTTP date); undefined when invalid. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  let ms: number;
  if (/^\d+$/.test(text)) ms = Number(text) * 1000;
  else {
    const date = Date.parse(text);
    if (Number.isNaN(date) || !/[a-z]/i.test(text)) return undefined;
    ms = date - now;
  }
  return Math.min(Math.max(0, ms), MAX_RETRY_AFTER_MS);
}

/** Exponential backoff with full jitter: random in [0, min(max, initial · 2^(attempt-1))). */
export function backoff(attempt: number, initialMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}

/**
 * The URL for messages, logs and names: without credentials, query string or any path segment after the
 * first (Slack, Discord and Teams webhooks carry their secret in the path): `https://host/services/…`.
 */
export function safeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    const [first, ...rest] = parsed.pathname.split('/').filter((segment) => segment !== '');
    const path = first === undefined ? '/' : `/${first}${rest.length ? '/…' : ''}`;
    return `${parsed.protocol}//${parsed.host}${path}`;
  } catch {
    return '(unparsable url)';
  }
}

/**
 * The URL fetch is given (which refuses one with credentials) and, when it had a user or password, the
 * `Authorization: Basic` header they stand for.
 */
export function requestTarget(url: string): { url: string; authorization?: string } {
  const parsed = new URL(url);
  if (parsed.username === '' && parsed.password === '') return { url };
  const decoded = (text: string) => {
    try {
      return decodeURIComponent(text);
    } catch {
      return text; // a stray % is itself
    }
  };
  const credentials = `${decoded(parsed.username)}:${decoded(parsed.password)}`;
  parsed.username = '';
  parsed.password = '';
  return { url: parsed.toString(), authorization: `Basic ${Buffer.from(credentials).toString('base64')}` };
}
