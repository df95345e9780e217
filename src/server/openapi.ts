/** GET /openapi.json: the API as OpenAPI 3.1, with the configured streams as the values of {stream}. */

const errorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', description: 'Stable error code (docs/errors.md).' },
        message: { type: 'string' },
        hint: { type: 'string', description: 'What to do about it.' },
        events: {
          type: 'array',
          description: 'Per-event errors (400).',
          items: {
            type: 'object',
            properties: {
              index: { type: ['integer', 'null'], description: 'Position of the event in the request.' },
              line: { type: 'integer', description: 'Line of the event (NDJSON).' },
              errors: { type: 'array', items: { $ref: '#/components/schemas/EventError' } },
            },
          },
        },
      },
    },
  },
};

const errorResponse = (description: string, retryAfter = false) => ({
  description,
  ...(retryAfter
    ? {
        headers: {
          'Retry-After': { schema: { type: 'integer' }, description: 'Seconds to wait before retrying.' },
        },
      }
    : {}),
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});

const commonErrors = {
  '400': errorResponse('Malformed body or invalid events; nothing was accepted.'),
  '401': errorResponse('No valid API key (or webhook signature).'),
  '403': errorResponse('The key is not allowed on this stream, or the browser origin is not allowed.'),
  '404': errorResponse('No such stream.'),
  '413': errorResponse('The body or its number of events is over the limit.'),
  '415': errorResponse('Unsupported Content-Type or Content-Encoding.'),
  '422': errorResponse('The Idempotency-Key was used before with another body.'),
  '429': errorResponse('Over the rate limit of the key or client IP.', true),
  '503': errorResponse('The log cannot take more right now; nothing was stored.', true),
};

/** The query API's answers other than 200 (src/query/http-api.ts). */
const queryErrors = {
  '400': errorResponse('Not one read-only SELECT over catalog tables, or an answer over the size limit.'),
  '401': errorResponse('No valid API key.'),
  '403': errorResponse(
    'The key has no query role, or is not granted a table the request names (whether it exists or not).',
  ),
  '404': errorResponse('No such table or snapshot.'),
  '408': errorResponse('The query ran past its time limit and was stopped.'),
  '429': errorResponse('Over the rate limit of the key or client IP.', true),
  '503': errorResponse('As many queries are running as the server runs at once.', true),
};

const tableParameter = {
  name: 'table',
  in: 'path',
  required: true,
  schema: { type: 'string' },
  description: 'namespace.table',
};

/** Paths of the query API: for keys with the query or admin role, on the tables they are granted. */
const queryPaths = (security: unknown) => ({
  '/v1/query': {
    post: {
      summary: 'Run one read-only SELECT over the catalog tables the key is granted',
      security,
      requestBody: {
        required: true,
        content: {
          'application/json': {
            schema: {
              type: 'object',
              required: ['sql'],
              additionalProperties: false,
              properties: {
                sql: { type: 'string' },
                format: { enum: ['json', 'csv', 'arrow'] },
                max_rows: { type: 'integer', minimum: 0 },
                timeout_ms: { type: 'integer', minimum: 1 },
                snapshot_id: { type: ['string', 'integer'], description: 'Time travel to a snapshot.' },
                as_of: { type: 'string', format: 'date-time', description: 'Time travel to a time.' },
              },
            },
          },
          'text/plain': { schema: { type: 'string', description: 'The SQL alone.' } },
        },
      },
      responses: {
        '200': {
          description:
            'The rows (x-tributary-row-count, x-tributary-truncated, x-tributary-elapsed-ms headers).',
          content: {
            'application/json': { schema: { type: 'object' } },
            'text/csv': { schema: { type: 'string' } },
            'application/vnd.apache.arrow.stream': { schema: { type: 'string', format: 'binary' } },
          },
        },
        '406': errorResponse('None of the accepted types can be produced.'),
        '415': errorResponse('Send the query as application/json or text/plain.'),
        ...queryErrors,
      },
    },
  },
  '/v1/tables': {
    get: {
      summary: 'The tables the key is granted',
      security,
      parameters: [{ name: 'namespace', in: 'query', required: false, schema: { type: 'string' } }],
      responses: { '200': { description: 'Tables, with their current snapshot.' }, ...queryErrors },
    },
  },
  '/v1/tables/{table}': {
    get: {
      summary: 'A table: schema, partitioning, properties, current snapshot',
      security,
      parameters: [tableParameter],
      responses: { '200': { description: 'The table.' }, ...queryErrors },
    },
  },
  '/v1/tables/{table}/snapshots': {
    get: {
      summary: "A table's snapshots, oldest first",
      security,
      parameters: [tableParameter],
      responses: { '200': { description: 'The snapshots.' }, ...queryErrors },
    },
  },
});

const eventsBody = {
  required: true,
  content: {
    'application/json': {
      schema: {
        oneOf: [
          { type: 'object', description: 'One event.' },
          { type: 'array', items: { type: 'object' }, description: 'A batch of events.' },
        ],
      },
    },
    'application/x-ndjson': { schema: { type: 'string', description: 'One JSON object per line.' } },
  },
};

export function openApiDocument(options: { streams: readonly string[]; segment: boolean; version: string }) {
  const security = [{ bearer: [] }, { apiKey: [] }, {}];
  const segmentPaths = options.segment
    ? Object.fromEntries(
        ['track', 'identify', 'page', 'screen', 'group', 'alias', 'batch'].map((call) => [
          `/v1/${call}`,
          {
            post: {
              summary: `Segment-compatible ${call} call`,
              description:
                'Write key as basic auth (username = an API key, empty password) or as writeKey in the body.',
              security: [{ segmentWriteKey: [] }],
              requestBody: {
                required: true,
                content: { 'application/json': { schema: { type: 'object' } } },
              },
              responses: {
                '200': {
                  description: 'Durable in the log.',
                  content: {
                    'application/json': { schema: { $ref: '#/components/schemas/SegmentAccepted' } },
                  },
                },
                ...commonErrors,
              },
            },
          },
        ]),
      )
    : {};
  return {
    openapi: '3.1.0',
    info: {
      title: 'Tributary event collection and query API',
      version: options.version,
      description:
        'Events are acknowledged (202) only once they are durable in the log. Retries are safe: events with an ' +
        "id, and requests with an Idempotency-Key, are deduplicated within the stream's dedupe window.",
    },
    paths: {
      '/v1/streams/{stream}/events': {
        post: {
          summary: 'Send events to a stream',
          description:
            'A JSON object, a JSON array of objects, or NDJSON; optionally gzip-encoded (Content-Encoding: gzip).',
          security,
          parameters: [
            {
              name: 'stream',
              in: 'path',
              required: true,
              schema: { type: 'string', ...(options.streams.length ? { enum: options.streams } : {}) },
            },
            {
              name: 'Idempotency-Key',
              in: 'header',
              required: false,
              schema: { type: 'string', maxLength: 256 },
              description: 'Makes the whole request safe to retry: a retry gets the first answer.',
            },
            {
              name: 'Content-Encoding',
              in: 'header',
              required: false,
              schema: { enum: ['gzip', 'deflate'] },
            },
          ],
          requestBody: eventsBody,
          responses: {
            '202': {
              description: 'Durable in the log.',
              headers: {
                'Idempotent-Replayed': {
                  schema: { type: 'string' },
                  description:
                    '"true" when this is the stored answer to an earlier request with the same key.',
                },
              },
              content: { 'application/json': { schema: { $ref: '#/components/schemas/Accepted' } } },
            },
            ...commonErrors,
          },
        },
        options: {
          summary: 'CORS preflight',
          security: [],
          responses: { '204': { description: 'Allowed.' } },
        },
      },
      ...segmentPaths,
      ...queryPaths([{ bearer: [] }, { apiKey: [] }]),
      '/healthz': {
        get: {
          summary: 'Alive',
          security: [],
          responses: { '200': { description: 'The process answers.' } },
        },
      },
      '/readyz': {
        get: {
          summary: 'Ready: log and catalog reachable, dedupe store writable, no pipeline failed or stalled',
          security: [],
          parameters: [
            {
              name: 'exclude',
              in: 'query',
              required: false,
              description:
                'Leave these out: `pipelines`, `sources` or both, comma-separated — ready to take events whatever the pipelines do (for a load balancer or Kubernetes readiness probe).',
              schema: { type: 'string', examples: ['pipelines,sources'] },
            },
          ],
          responses: {
            '200': {
              description: 'Ready.',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/Readiness' } } },
            },
            '400': { description: '`exclude` names something that cannot be left out.' },
            '503': {
              description: 'Not ready; the body names the unhealthy components.',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/Readiness' } } },
            },
          },
        },
      },
      '/metrics': {
        get: {
          summary: 'Prometheus metrics',
          security: [],
          responses: { '200': { description: 'Text exposition format.' } },
        },
      },
      '/openapi.json': {
        get: {
          summary: 'This document',
          security: [],
          responses: { '200': { description: 'OpenAPI 3.1.' } },
        },
      },
    },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <API key>' },
        apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
        segmentWriteKey: { type: 'http', scheme: 'basic', description: 'username = API key, empty password' },
      },
      schemas: {
        EventError: {
          type: 'object',
          required: ['path', 'message'],
          properties: {
            path: { type: 'string', description: 'JSON Pointer into the event.' },
            message: { type: 'string' },
          },
        },
        Accepted: {
          type: 'object',
          required: ['accepted', 'duplicates', 'ids'],
          properties: {
            accepted: {
              type: 'integer',
              description: 'Events now in the stream (new plus duplicates already there).',
            },
            duplicates: { type: 'integer', description: 'Events whose id the stream already had.' },
            ids: {
              type: 'array',
              items: { type: 'string' },
              description: "Each event's id, by position in the request.",
            },
            dlq: {
              type: 'object',
              description: 'Invalid events sent to the DLQ topic (on_invalid: dlq).',
              properties: {
                topic: { type: 'string' },
                count: { type: 'integer' },
                events: {
                  type: 'array',
                  items: {
                    type: 'object',
                    properties: {
                      index: { type: 'integer' },
                      id: { type: 'string' },
                      errors: { type: 'array', items: { $ref: '#/components/schemas/EventError' } },
                    },
                  },
                },
              },
            },
          },
        },
        SegmentAccepted: {
          type: 'object',
          properties: {
            success: { const: true },
            accepted: { type: 'integer' },
            ids: { type: 'array', items: { type: 'string' } },
          },
        },
        Readiness: {
          type: 'object',
          properties: {
            status: { enum: ['ok', 'unavailable'] },
            unhealthy: { type: 'array', items: { type: 'string' } },
            components: { type: 'object', additionalProperties: { type: 'object' } },
          },
        },
        Error: errorSchema,
      },
    },
  };
}
