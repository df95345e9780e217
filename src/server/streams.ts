/**
 * The configured streams, resolved for serving: topics named, JSON Schemas compiled, limits merged with
 * the server's defaults. Configuration mistakes surface here, before the server listens.
 */
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type Options, type ValidateFunction } from 'ajv';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsPlugin from 'ajv-formats';
import { parse as parseYaml } from 'yaml';
import type { StreamConfig } from '../core/config/platform.ts';
import type { Logger } from '../core/logger.ts';
import { projectPath, type Project } from '../core/project.ts';
import { TributaryError } from '../errors.ts';
import { canonicalOrigin } from './cors.ts';
import { defaultSignatureHeader, type HmacSettings } from './hmac.ts';
import type { BucketLimit } from './rate-limit.ts';

// ajv-formats is CommonJS: its default export is the plugin function itself.
const addFormats = addFormatsPlugin as unknown as (ajv: Ajv) => Ajv;

export interface Stream {
  readonly name: string;
  readonly config: StreamConfig;
  readonly topic: string;
  readonly dlqTopic: string;
  readonly partitions: number;
  readonly validate: ValidateFunction | undefined;
  readonly hmac: HmacSettings | undefined;
  readonly corsAny: boolean;
  readonly corsOrigins: ReadonlySet<string>;
  readonly perKey: BucketLimit;
  readonly perIp: BucketLimit;
  readonly partitionKey: readonly string[] | undefined;
}

export interface EventError {
  readonly path: string;
  readonly message: string;
}

const MAX_ERRORS_PER_EVENT = 20;

export function streamTopic(name: string, config: Pick<StreamConfig, 'topic'>): string {
  return config.topic ?? `events.${name}`;
}

/** Where the stream's rejected events go (`on_invalid: dlq`). */
export function streamDlqTopic(name: string, config: Pick<StreamConfig, 'topic' | 'dlq_topic'>): string {
  return config.dlq_topic ?? `${streamTopic(name, config)}.dlq`;
}

function bucket(limit: { requests_per_second: number; burst: number }): BucketLimit {
  return { rate: limit.requests_per_second, burst: limit.burst };
}

export function resolveStreams(project: Project, logger: Logger): Map<string, Stream> {
  const server = project.platform.server;
  const streams = new Map<string, Stream>();
  const topics = new Map<string, string>();
  for (const [name, config] of Object.entries(project.platform.streams ?? {})) {
    const topic = streamTopic(name, config);
    const dlqTopic = streamDlqTopic(name, config);
    for (const t of [topic, dlqTopic]) {
      const other = topics.get(t);
      if (other !== undefined && other !== name) {
        throw new TributaryError(
          'CONFIG_DUPLICATE',
          `streams ${other} and ${name} both write to topic ${t}`,
          {
            hint: 'give each stream its own topic',
          },
        );
      }
      topics.set(t, name);
    }
    if (config.auth === 'hmac' && !config.hmac) {
      throw new TributaryError(
        'CONFIG_INVALID',
        `stream ${name}: auth is hmac but no hmac settings are given`,
        {
          hint: 'add hmac: {secret: "${WEBHOOK_SECRET}"} to the stream, or use auth: key',
        },
      );
    }
    const hmac = config.hmac
      ? {
          secret: config.hmac.secret,
          format: config.hmac.format,
          header: (config.hmac.header ?? defaultSignatureHeader(config.hmac.format)).toLowerCase(),
          toleranceMs: config.hmac.tolerance,
        }
      : undefined;
    streams.set(name, {
      name,
      config,
      topic,
      dlqTopic,
      partitions: config.partitions ?? project.platform.log.partitions,
      validate: config.schema ? compileStreamSchema(project, name, config.schema, logger) : undefined,
      hmac,
      corsAny: config.cors_origins.includes('*'),
      corsOrigins: new Set(config.cors_origins.map(canonicalOrigin)),
      perKey: bucket(config.rate_limit?.per_key ?? server.rate_limit.per_key),
      perIp: bucket(config.rate_limit?.per_ip ?? server.rate_limit.per_ip),
      partitionKey: config.partition_key?.split('.'),
    });
  }
  const segment = server.segment?.stream;
  if (segment !== undefined && !streams.has(segment)) {
    throw new TributaryError(
      'CONFIG_INVALID',
      `server.segment.stream names "${segment}", which is not a configured stream`,
      {
        hint: `add streams.${segment} to tributary.yaml, or name one of: ${[...streams.keys()].join(', ') || 'none yet'}`,
      },
    );
  }
  return streams;
}

function compileStreamSchema(
  project: Project,
  stream: string,
  file: string,
  logger: Logger,
): ValidateFunction {
  const resolved = projectPath(project, file);
  let jsonSchema: unknown;
  try {
    const text = readFileSync(resolved, 'utf8');
    jsonSchema = /\.ya?ml$/i.test(resolved) ? parseYaml(text) : JSON.parse(text);
  } catch (cause) {
    throw new TributaryError(
      'CONFIG_INVALID',
      `stream ${stream}: cannot read the JSON Schema ${file}: ${(cause as Error).message}`,
      { cause, hint: 'check streams.<name>.schema: a JSON or YAML file relative to the project' },
    );
  }
  const declared =
    jsonSchema && typeof jsonSchema === 'object'
      ? (jsonSchema as Record<string, unknown>).$schema
      : undefined;
  const options: Options = {
    allErrors: true,
    strictSchema: 'log',
    logger: {
      log: (...args: unknown[]) => logger.debug({ stream, file }, args.join(' ')),
      warn: (...args: unknown[]) => logger.warn({ stream, file }, `stream schema: ${args.join(' ')}`),
      error: (...args: unknown[]) => logger.error({ stream, file }, `stream schema: ${args.join(' ')}`),
    },
  };
  let ajv: Ajv;
  if (declared === undefined || (typeof declared === 'string' && declared.includes('2020-12'))) {
    ajv = new Ajv2020(options);
  } else if (typeof declared === 'string' && declared.includes('2019-09')) {
    ajv = new Ajv2019(options);
  } else if (typeof declared === 'string' && declared.includes('draft-07')) {
    ajv = new Ajv(options);
  } else {
    throw new TributaryError(
      'CONFIG_INVALID',
      `stream ${stream}: the JSON Schema ${file} declares an unsupported $schema ${JSON.stringify(declared)}`,
      { hint: 'use draft 2020-12, 2019-09 or draft-07' },
    );
  }
  addFormats(ajv);
  try {
    const validate = ajv.compile(jsonSchema as object);
    if ((validate as { $async?: boolean }).$async) throw new Error('`$async` schemas are not supported');
    return validate;
  } catch (cause) {
    throw new TributaryError(
      'CONFIG_INVALID',
      `stream ${stream}: the JSON Schema ${file} cannot be used: ${(cause as Error).message}`,
      { cause, hint: 'fix the schema file' },
    );
  }
}

function escapePointer(name: string): string {
  return name.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** Schema violations as JSON paths (JSON Pointer) and messages, at most 20. */
export function schemaErrors(errors: readonly ErrorObject[]): EventError[] {
  return errors.slice(0, MAX_ERRORS_PER_EVENT).map((error) => {
    const params = error.params as Record<string, unknown>;
    let at = error.instancePath;
    if (typeof params.missingProperty === 'string') at += `/${escapePointer(params.missingProperty)}`;
    if (typeof params.additionalProperty === 'string') at += `/${escapePointer(params.additionalProperty)}`;
    let message = error.message ?? `must pass "${error.keyword}"`;
    if (error.keyword === 'enum' && Array.isArray(params.allowedValues))
      message += ` (${params.allowedValues.map((v) => JSON.stringify(v)).join(', ')})`;
    return { path: at || '/', message };
  });
}
