/** Opening PostgreSQL connections for a CDC source: a query connection and a replication connection. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { TributaryError } from '../../errors.ts';
import type { PostgresCdcConfig } from './config.ts';
import { sessionOptions } from './values.ts';

/** Every value as PostgreSQL's text, unparsed: the source converts by type itself (values.ts). */
const RAW_TEXT: pg.CustomTypesConfig = { getTypeParser: () => (value: string) => value };

function sslFor(config: PostgresCdcConfig, projectRoot: string, mode: string): pg.ClientConfig['ssl'] {
  if (mode === 'disable') return false;
  if (mode === 'prefer' || mode === 'require') return { rejectUnauthorized: false };
  let ca: string | undefined;
  if (config.sslrootcert) {
    const file = path.resolve(projectRoot, config.sslrootcert);
    try {
      ca = readFileSync(file, 'utf8');
    } catch (cause) {
      throw new TributaryError(
        'CONFIG_INVALID',
        `cannot read sslrootcert ${file}: ${(cause as Error).message}`,
        {
          cause,
          hint: 'fix sslrootcert in the source file (relative paths are relative to the project)',
        },
      );
    }
  }
  return {
    rejectUnauthorized: true,
    ...(ca ? { ca } : {}),
    // verify-ca checks the chain but not the host name, as libpq does.
    ...(mode === 'verify-ca' ? { checkServerIdentity: () => undefined } : {}),
  };
}

export interface ConnectOptions {
  readonly replication?: boolean;
  readonly applicationName?: string;
}

/**
 * A connected client with the source's session settings. sslmode prefer tries TLS first and, when the
 * server does not offer it, connects without.
 */
export async function connect(
  config: PostgresCdcConfig,
  projectRoot: string,
  options: ConnectOptions = {},
): Promise<pg.Client> {
  const attempt = async (mode: string) => {
    const client = new pg.Client({
      host: config.host,
      port: config.port,
      database: config.database,
      user: config.user,
      ...(config.password !== undefined ? { password: config.password } : {}),
      ssl: sslFor(config, projectRoot, mode),
      application_name: options.applicationName ?? 'tributary-cdc',
      options: sessionOptions(),
      types: RAW_TEXT,
      connectionTimeoutMillis: 15_000,
      keepAlive: true,
      ...(options.replication ? { replication: 'database' } : {}),
    });
    // Errors after connecting surface through the query or the stream in progress; without a listener
    // an 'error' event would crash the process.
    client.on('error', () => undefined);
    await client.connect();
    return client;
  };
  try {
    if (config.sslmode !== 'prefer') return await attempt(config.sslmode);
    try {
      return await attempt('prefer');
    } catch (error) {
      if (!/does not support SSL/i.test((error as Error).message)) throw error;
      return await attempt('disable');
    }
  } catch (error) {
    throw connectionError(error, config);
  }
}

/** A connection failure as a TributaryError: retryable unless it is about credentials or configuration. */
export function connectionError(error: unknown, config: PostgresCdcConfig): TributaryError {
  if (error instanceof TributaryError) return error;
  const code = (error as { code?: string }).code ?? '';
  const message = (error as Error).message ?? String(error);
  const permanent = ['28P01', '28000', '3D000', '42501'].includes(code);
  return new TributaryError(
    'SERVICE_UNAVAILABLE',
    `PostgreSQL at ${config.host}:${config.port}/${config.database}: ${message}`,
    {
      cause: error,
      retryable: !permanent,
      context: { code },
      hint: permanent
        ? 'check user, password and database in the source file, and that the role may connect (pg_hba.conf)'
        : 'check that PostgreSQL is running and reachable; the source retries with backoff',
    },
  );
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** `schema.table` → `"schema"."table"`. */
export function quoteTable(table: string): string {
  const [schema, name] = splitTable(table);
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

export function splitTable(table: string): [string, string] {
  const dot = table.indexOf('.');
  return [table.slice(0, dot), table.slice(dot + 1)];
}
