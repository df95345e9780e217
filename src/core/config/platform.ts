/**
 * `tributary.yaml`: the platform a project runs on — where the log, the catalog and the warehouse live, and
 * how the server and the logs behave. Embedded defaults need no services; production swaps components by
 * configuration alone.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { byteSize, durationOrMs as duration } from './units.ts';

export const PLATFORM_FILE = 'tributary.yaml';

const logPartitions = z
  .number()
  .int()
  .min(1)
  .max(1024)
  .default(4)
  .describe('Partitions of a topic created implicitly.');

const embeddedLog = z
  .strictObject({
    backend: z
      .literal('embedded')
      .default('embedded')
      .describe('The embedded log: SQLite files on local disk, no services.'),
    path: z
      .string()
      .default('.tributary/log')
      .describe('Directory of the log files, relative to the project.'),
    durability: z
      .enum(['fsync', 'os'])
      .default('fsync')
      .describe(
        'fsync: an append is acknowledged only after it is on disk (survives power loss). os: after the ' +
          'operating system has it (survives a crash of Tributary; a machine that stops loses about the ' +
          'last second of appends); faster.',
      ),
    partitions: logPartitions,
  })
  .describe(
    'The durable log every source writes into and every pipeline reads from; embedded: on local disk, for ' +
      'one machine (backend: kafka with brokers: [host:port] puts it on a Kafka or Redpanda cluster).',
  );

/** host:port, the host a name, an IPv4 address or a bracketed IPv6 address. */
const BROKER = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):\d{1,5}$/;

const kafkaLog = z
  .strictObject({
    backend: z
      .literal('kafka')
      .describe(
        'Apache Kafka, Redpanda or another cluster speaking the Kafka protocol (Kafka 3.5 or later).',
      ),
    brokers: z
      .array(z.string().regex(BROKER, 'a broker is host:port, e.g. kafka-1:9092'))
      .min(1, 'name at least one broker (host:port)')
      .describe('Brokers to bootstrap from, host:port; the client learns the rest of the cluster from them.'),
    client_id: z
      .string()
      .min(1)
      .default('tributary')
      .describe('Client id the brokers see (in their logs, quotas and metrics).'),
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9._-]{0,48}$/, 'a prefix is letters, digits, ".", "_" and "-" (at most 48)')
      .default('')
      .describe(
        'Put before every topic and consumer group name on the cluster (e.g. "shop."), so that several ' +
          "projects share a cluster without seeing each other's topics.",
      ),
    partitions: logPartitions,
    replication_factor: z
      .number()
      .int()
      .min(1)
      .max(32)
      .optional()
      .describe(
        "Replicas of the topics Tributary creates (default: the brokers' default.replication.factor).",
      ),
    tls: z
      .union([
        z.boolean(),
        z.strictObject({
          ca: z
            .string()
            .min(1)
            .optional()
            .describe("PEM file of the certificate authorities to trust (default: the system's)."),
          cert: z.string().min(1).optional().describe('PEM client certificate file, for mutual TLS.'),
          key: z.string().min(1).optional().describe('PEM private key file of the client certificate.'),
        }),
      ])
      .optional()
      .describe('TLS to the brokers: true, or certificate files relative to the project. Absent: plaintext.'),
    sasl: z
      .strictObject({
        mechanism: z
          .enum(['plain', 'scram-sha-256', 'scram-sha-512'])
          .describe('SASL mechanism the brokers expect.'),
        username: z.string().min(1),
        password: z.string().min(1).describe('e.g. "${KAFKA_PASSWORD}" or "${file:/run/secrets/kafka}".'),
      })
      .optional()
      .describe('SASL authentication (use it with tls: plain sends the password as it is).'),
    path: z
      .string()
      .default('.tributary/log')
      .describe(
        "Directory on local disk, relative to the project, for what stays on this machine: the HTTP server's " +
          "deduplication journal and the pipelines' locks.",
      ),
  })
  .describe('The log on a Kafka cluster, shared by every machine of the project.');

const logSchema = z
  .discriminatedUnion('backend', [embeddedLog, kafkaLog], {
    error: 'must be "embedded" (local disk, the default) or "kafka" (a Kafka or Redpanda cluster)',
  })
  .describe('The durable log every source writes into and every pipeline reads from.');

export type LogConfig = z.output<typeof logSchema>;
export type KafkaLogConfig = z.output<typeof kafkaLog>;

const sqlCatalog = z
  .strictObject({
    type: z
      .literal('sql', {
        error:
          'REST catalogs (Polaris, Lakekeeper, Nessie, Glue) are planned, not built: for many writers use the SQL catalog on PostgreSQL, uri: postgresql://… (docs/deployment.md)',
      })
      .default('sql')
      .describe("A SQL catalog: the tables of Iceberg's JDBC catalog and pyiceberg's SqlCatalog."),
    name: z.string().min(1).default('tributary').describe('Catalog name, as other engines will call it.'),
    uri: z
      .string()
      .default('sqlite:.tributary/catalog.db')
      .describe('sqlite:<path> (relative to the project) or postgresql://user:password@host:port/database.'),
  })
  .describe('Where tables are registered.');

/**
 * How long a log topic keeps its records, in a stream's or a source's configuration; `max_age` and
 * `max_bytes` become the topic's `retentionMs` and `retentionBytes`.
 */
export function topicRetention(description: string, maxAge: string) {
  return z
    .strictObject({
      max_age: duration(maxAge).optional(),
      max_bytes: byteSize(
        'Per partition: the oldest records are removed while the topic holds more than this.',
      ).optional(),
    })
    .optional()
    .describe(description);
}

/** A `retention` section as the log's topic settings (absent keys: no limit). */
export function topicRetentionOf(
  retention: { max_age?: number | undefined; max_bytes?: number | undefined } | undefined,
): { retentionMs?: number; retentionBytes?: number } {
  return {
    ...(retention?.max_age === undefined ? {} : { retentionMs: retention.max_age }),
    ...(retention?.max_bytes === undefined ? {} : { retentionBytes: retention.max_bytes }),
  };
}

const storageSchema = z
  .strictObject({
    s3: z
      .strictObject({
        region: z
          .string()
          .min(1)
          .optional()
          .describe(
            "The buckets' region. Default: the SDK's (AWS_REGION, then the profile in ~/.aws/config).",
          ),
        endpoint: z
          .string()
          .refine((text) => URL.canParse(text), 'must be a URL such as http://127.0.0.1:9000')
          .optional()
          .describe(
            'URL of an S3-compatible store (MinIO, Ceph, R2: http://minio:9000). Default: AWS for the region.',
          ),
        path_style: z
          .boolean()
          .default(false)
          .describe(
            'Path-style addressing (endpoint/bucket/key), as MinIO and most self-hosted stores need.',
          ),
        access_key_id: z
          .string()
          .min(1)
          .optional()
          .describe(
            'Access key, e.g. ${S3_ACCESS_KEY_ID} or ${file:/run/secrets/s3-key}; with secret_access_key. ' +
              "Default: the SDK's chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, web identity, the pod or instance role).",
          ),
        secret_access_key: z
          .string()
          .min(1)
          .optional()
          .describe('Secret of access_key_id, e.g. ${S3_SECRET_ACCESS_KEY}.'),
        session_token: z.string().min(1).optional().describe('Session token of temporary credentials (STS).'),
      })
      .prefault({})
      .describe('How to reach an s3:// warehouse (s3a:// and s3n:// name the same objects).'),
    staging: z
      .string()
      .default('.tributary/staging')
      .describe(
        'Directory (relative to the project) where new data files are written before they are uploaded to a ' +
          'remote warehouse; local disk (an emptyDir on Kubernetes).',
      ),
    cache: z
      .strictObject({
        path: z
          .string()
          .default('.tributary/cache')
          .describe(
            "Directory (relative to the project) of the local copies of a remote warehouse's data files, which " +
              'queries and writes read; best on the same filesystem as staging.',
          ),
        max_bytes: byteSize(
          'Size the cache is kept within, least recently used files evicted first (files in use stay).',
        ).default(10 * 1024 * 1024 * 1024),
      })
      .prefault({})
      .describe('The read cache of a remote warehouse (data and delete files never change once written).'),
  })
  .describe('Storage of a remote warehouse (s3://); a local warehouse needs none of it.');

/** Names of streams: also a URL path segment and part of a topic name. */
export const STREAM_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** An IP address or a CIDR block (10.0.0.0/8, fd00::/8). */
function isIpOrCidr(text: string): boolean {
  const [address = '', bits, extra] = text.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

const tokenBucket = (what: string, rate: number, burst: number) =>
  z
    .strictObject({
      requests_per_second: z
        .number()
        .min(0)
        .default(rate)
        .describe(`Requests per second ${what} may make on average (token bucket refill rate); 0: no limit.`),
      burst: z
        .number()
        .int()
        .min(1)
        .default(burst)
        .describe('Requests allowed at once above the average (token bucket size).'),
    })
    .describe(`Rate limit ${what}: over it, requests get 429 with Retry-After.`);

const rateLimits = z
  .strictObject({
    per_key: tokenBucket('each API key', 1000, 2000).prefault({}),
    per_ip: tokenBucket('each client IP', 200, 400).prefault({}),
  })
  .describe('Token-bucket rate limits, counted per stream.');

const serverSchema = z
  .strictObject({
    host: z.string().default('127.0.0.1').describe('Address the HTTP server listens on (0.0.0.0 for all).'),
    port: z.number().int().min(0).max(65535).default(8080).describe('Port the HTTP server listens on.'),
    threads: z
      .union([z.literal('auto'), z.number().int().min(1).max(64)])
      .default('auto')
      .describe(
        'Threads serving HTTP, each listening on the port (Linux, SO_REUSEPORT; one thread elsewhere). auto: ' +
          'one per core but one (the log commits on its own thread), at most 4.',
      ),
    tls: z
      .strictObject({
        cert: z.string().min(1).describe('PEM certificate chain file, relative to the project.'),
        key: z.string().min(1).describe('PEM private key file, relative to the project.'),
      })
      .optional()
      .describe(
        'Serve HTTPS with this certificate (and send Strict-Transport-Security). Absent: plain HTTP.',
      ),
    body_limit: byteSize(
      'Largest request body, before and after gzip decoding; larger requests get 413.',
    ).default(1024 * 1024),
    max_events: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(10_000)
      .describe('Most events in one request; more get 413.'),
    max_depth: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(64)
      .describe('Deepest nesting of objects and arrays inside an event; deeper events are invalid.'),
    request_timeout: duration(
      'Time a client has to send a whole request (headers and body; slower ones get 408), and to complete a TLS handshake.',
    ).default(30_000),
    keep_alive_timeout: duration('How long an idle keep-alive connection stays open.').default(72_000),
    trusted_proxies: z
      .array(z.string().refine(isIpOrCidr, 'must be an IP address or a CIDR block such as 10.0.0.0/8'))
      .default([])
      .describe(
        'Reverse proxies (IP addresses or CIDR blocks) whose X-Forwarded-For is believed for the client IP; ' +
          'from anyone else the header is ignored.',
      ),
    rate_limit: rateLimits.prefault({}),
    max_pending_appends: z
      .number()
      .int()
      .min(1)
      .default(10_000)
      .describe(
        'Requests waiting for the log to make their events durable, at most; beyond it requests get 503 with ' +
          'Retry-After (backpressure).',
      ),
    dedupe_max_ids: z
      .number()
      .int()
      .min(1000)
      .default(10_000_000)
      .describe(
        'Event ids remembered for deduplication at most (about 24 bytes of memory each, and a Bloom filter ' +
          'sized for them); past it the oldest are forgotten before their dedupe_window is over (metric ' +
          'tributary_ingest_dedupe_ids).',
      ),
    max_pending_bytes: byteSize(
      'Bytes of events waiting for the log, at most; beyond it requests get 503 with Retry-After.',
    ).default(64 * 1024 * 1024),
    segment: z
      .strictObject({
        stream: z
          .string()
          .describe('The configured stream that /v1/track, /v1/identify, /v1/page, /v1/batch … write into.'),
      })
      .optional()
      .describe(
        'Segment-compatible endpoints (/v1/track, /v1/identify, /v1/page, /v1/screen, /v1/group, /v1/alias, ' +
          '/v1/batch), authenticated with an API key as the write key. Absent: those endpoints answer 404.',
      ),
    stall_after: duration(
      'GET /readyz reports a pipeline as stalled when its topic has records it has not committed for this long.',
    ).default(300_000),
  })
  .prefault({})
  .describe('The HTTP server: event ingest, health, metrics and the OpenAPI description.');

const hmacSettings = z
  .strictObject({
    secret: z
      .string()
      .min(1)
      .describe('The shared secret, e.g. "${WEBHOOK_SECRET}" or "${file:/run/secrets/webhook}".'),
    format: z
      .enum(['github', 'stripe', 'hex', 'base64'])
      .default('github')
      .describe(
        'github: "sha256=<hex>" of the body; stripe: "t=<unix time>,v1=<hex>" of "<t>.<body>"; hex or base64: ' +
          'the bare HMAC-SHA256 of the body.',
      ),
    header: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Header carrying the signature (default: X-Hub-Signature-256, or Stripe-Signature for stripe).',
      ),
    tolerance: duration('stripe: how far the signed timestamp may be from now, against replays.').default(
      300_000,
    ),
  })
  .describe(
    'HMAC-SHA256 signature over the raw body with a shared secret, for webhooks from SaaS providers.',
  );

const streamSchema = z
  .strictObject({
    topic: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,200}$/, 'a topic name is letters, digits, ".", "_" and "-"')
      .optional()
      .describe('Log topic the events go to (default: events.<stream>).'),
    partitions: z
      .number()
      .int()
      .min(1)
      .max(1024)
      .optional()
      .describe('Partitions of the topic when the server creates it (default: log.partitions).'),
    retention: topicRetention(
      "How long the log keeps the stream's events (default: forever). Removal does not wait for pipelines: " +
        'keep it well above the longest time a pipeline may be stopped, or events it has not read are lost.',
      'Records older than this are removed from the topic (and from its DLQ topic).',
    ),
    schema: z
      .string()
      .min(1)
      .optional()
      .describe(
        'JSON Schema file (JSON or YAML, relative to the project) every event must match; absent: any JSON object.',
      ),
    on_invalid: z
      .enum(['reject', 'dlq'])
      .default('reject')
      .describe(
        'reject: a request with any invalid event is refused whole (400). dlq: the valid events are accepted ' +
          'and the invalid ones go to the dead-letter topic with their reasons.',
      ),
    dlq_topic: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,200}$/, 'a topic name is letters, digits, ".", "_" and "-"')
      .optional()
      .describe('Log topic of invalid events with on_invalid: dlq (default: <topic>.dlq).'),
    auth: z
      .enum(['key', 'hmac', 'none'])
      .default('key')
      .describe(
        'key: an API key (`tributary keys create`) in Authorization: Bearer or X-API-Key. hmac: a signature ' +
          'of the body (see hmac). none: anyone who can reach the server.',
      ),
    hmac: hmacSettings.optional(),
    cors_origins: z
      .array(z.string().min(1))
      .default([])
      .describe(
        'Origins allowed to send from a browser ("https://shop.example.com", or "*" for any); requests from ' +
          'other origins get 403.',
      ),
    rate_limit: z
      .strictObject({
        per_key: tokenBucket('each API key', 1000, 2000).optional(),
        per_ip: tokenBucket('each client IP', 200, 400).optional(),
      })
      .optional()
      .describe('Overrides server.rate_limit for this stream.'),
    enrich: z
      .strictObject({
        received_at: z
          .boolean()
          .default(true)
          .describe('Add `_received_at`: when the server received the event (ISO 8601, UTC).'),
        client_ip: z
          .enum(['off', 'full', 'truncated'])
          .default('off')
          .describe('Add `_client_ip`: the whole address, or truncated for privacy (IPv4 /24, IPv6 /48).'),
        user_agent: z.boolean().default(false).describe("Add `_user_agent`: the client's User-Agent header."),
      })
      .prefault({})
      .describe('Fields the server adds to every event.'),
    id_field: z
      .string()
      .min(1)
      .default('id')
      .describe(
        'Field holding an event id, used to drop retried duplicates (messageId on Segment endpoints).',
      ),
    dedupe_window: duration(
      'How long an event id (or Idempotency-Key) is remembered to drop duplicates; "0s" turns it off.',
    ).default(86_400_000),
    partition_key: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Field (dots for nested fields) whose value keys the record: events with the same value keep their order.',
      ),
  })
  .describe('One HTTP event stream.');

export type StreamConfig = z.output<typeof streamSchema>;
export type ServerConfig = z.output<typeof serverSchema>;

export const platformSchema = z
  .strictObject({
    project: z
      .string()
      .min(1)
      .default('tributary')
      .describe('Name of the project, used in logs and metrics.'),
    warehouse: z
      .string()
      .default('.tributary/warehouse')
      .describe(
        'Root of table data and metadata: a directory relative to the project, a file:///absolute/path ' +
          'URI, or s3://bucket/prefix on Amazon S3 or an S3-compatible store (see storage).',
      ),
    storage: storageSchema.prefault({}),
    log: logSchema.prefault({}),
    catalog: sqlCatalog.prefault({}),
    server: serverSchema,
    streams: z
      .record(
        z
          .string()
          .regex(
            STREAM_NAME,
            'a stream name is letters, digits, ".", "_" and "-" (at most 100), starting with a letter or digit',
          ),
        streamSchema,
      )
      .optional()
      .describe(
        'HTTP event streams, by name: clients POST events to /v1/streams/<name>/events and each stream writes ' +
          'into its own log topic, which pipelines read with `source: {type: topic, topic: events.<name>}`.',
      ),
    logging: z
      .strictObject({
        level: z
          .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
          .default('info')
          .describe('Lowest level logged.'),
        format: z
          .enum(['auto', 'pretty', 'json'])
          .default('auto')
          .describe('auto: readable on a terminal, JSON lines otherwise.'),
      })
      .prefault({})
      .describe('Log output.'),
  })
  .describe('tributary.yaml: the platform of a Tributary project.');

export type PlatformConfig = z.output<typeof platformSchema>;
