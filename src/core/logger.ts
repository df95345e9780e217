/**
 * Structured logs through pino: sentences with fields. Readable on a terminal, JSON lines otherwise.
 * Secret-looking fields are redacted wherever they appear in a log call's fields.
 */
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export interface LoggerOptions {
  readonly level?: string;
  readonly format?: 'auto' | 'pretty' | 'json';
  /** Where logs go; standard error by default, so that command output on standard out stays clean. */
  readonly destination?: NodeJS.WritableStream & { fd?: number };
}

const SECRET_FIELDS = [
  'password',
  'secret',
  'token',
  'apiKey',
  'api_key',
  'authorization',
  'credential',
  'key',
];
const redactPaths = SECRET_FIELDS.flatMap((field) => [field, `*.${field}`, `*.*.${field}`]);

export function createLogger(options: LoggerOptions = {}): Logger {
  const destination = options.destination ?? process.stderr;
  const isTerminal = 'isTTY' in destination && destination.isTTY === true;
  const format =
    options.format === undefined || options.format === 'auto'
      ? isTerminal
        ? 'pretty'
        : 'json'
      : options.format;
  const base = {
    level: options.level ?? 'info',
    redact: { paths: redactPaths, censor: '«redacted»' },
    base: undefined,
  };
  if (format === 'pretty') {
    const stream = pretty({
      destination,
      sync: true,
      colorize: isTerminal,
      ignore: 'pid,hostname',
      translateTime: 'SYS:HH:MM:ss.l',
    });
    return pino(base, stream);
  }
  return pino(base, destination);
}
