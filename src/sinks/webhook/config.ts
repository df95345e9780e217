/** The `webhook` sink's configuration. */
import { z } from 'zod';
import { duration } from '../../core/config/units.ts';

/** Header names as HTTP defines them (a token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Headers the sink sets itself. */
export const RESERVED_HEADERS = [
  'content-type',
  'content-length',
  'idempotency-key',
  'x-tributary-signature',
  'x-tributary-timestamp',
  'host',
  'transfer-encoding',
];

export const webhookSinkSchema = z
  .strictObject({
    type: z
      .literal('webhook')
      .describe(
        'POSTs records as JSON `{"records": [...]}` to an HTTP endpoint. At-least-once: positions are kept ' +
          "in the log's consumer-group offsets after the requests succeed, so a crash in between sends the " +
          'records again — in the same requests, with the same `Idempotency-Key` header, for the receiver to ' +
          'drop the repeat (docs/exactly-once.md#webhook-receivers).',
      ),
    name: z
      .string()
      .min(1)
      .max(200)
      .optional()
      .describe(
        'Name of the sink (default `webhook:<host><path>`, or `webhook:<host>/<first segment>/…#<hash>` for a ' +
          'longer path, which may hold a secret): its positions are the consumer group ' +
          '`<pipeline>/<name>`, and it is part of every idempotency key. Changing it sends everything again.',
      ),
    url: z
      .url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' })
      .describe(
        'The endpoint. Secrets in it (a token in the query or path) belong in `${VAR}` placeholders; logs ' +
          'and messages show its host and first path segment only. A user and password in it are sent as ' +
          '`Authorization: Basic`.',
      ),
    method: z.enum(['POST', 'PUT', 'PATCH']).default('POST').describe('HTTP method of the requests.'),
    headers: z
      .record(
        z.string().regex(HEADER_NAME, 'must be an HTTP header name'),
        // Checked here, and the value never repeated: fetch's own error would print it.
        z.string().refine((value) => !/[\0\r\n]/.test(value), 'must not hold a line break or NUL'),
      )
      .default({})
      .refine((headers) => !Object.keys(headers).some((h) => RESERVED_HEADERS.includes(h.toLowerCase())), {
        message: `the sink sets ${RESERVED_HEADERS.join(', ')} itself`,
      })
      .describe(
        'Extra request headers, e.g. `Authorization: Bearer ${WEBHOOK_TOKEN}` (values are never logged).',
      ),
    secret: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Signs every request: header `X-Tributary-Timestamp` (Unix seconds when sent) and ' +
          '`X-Tributary-Signature: sha256=<hex HMAC-SHA256 with this secret of "<timestamp>.<raw body>">`; ' +
          'a receiver checks the signature and refuses timestamps older than a few minutes (replays). ' +
          'Write it as ${VAR}.',
      ),
    batch_size: z
      .number()
      .int()
      .min(1)
      .max(100_000)
      .default(500)
      .describe(
        "Records per request at most; a request holds one partition's records. Requests are cut at the " +
          "multiples of it in a partition's offsets and where a batch ended, so that records sent again go " +
          'in the same requests: changing it gives the requests not committed yet new idempotency keys.',
      ),
    timeout: duration(
      'How long one request may take, answer included, before it counts as failed (and is retried).',
    ).default(30_000),
    retry: z
      .strictObject({
        max_attempts: z
          .number()
          .int()
          .min(1)
          .max(100)
          .default(5)
          .describe(
            'Attempts per request before the write fails (retryably: the pipeline retries it later).',
          ),
        initial_backoff: duration('Backoff before the second attempt; doubled for each next one.').default(
          500,
        ),
        max_backoff: duration(
          'Backoff at most. The wait is random between 0 and the backoff (full jitter).',
        ).default(30_000),
      })
      .prefault({})
      .describe(
        'Retries of a request that failed with a network error, a timeout, 408, 429 or 5xx. A `Retry-After` ' +
          'header (seconds or an HTTP date) on 429 and 503 is waited for instead (up to 10 minutes). Other ' +
          '4xx stop the pipeline.',
      ),
  })
  .describe('Webhook sink.');

export type WebhookSinkConfig = z.output<typeof webhookSinkSchema>;
