/**
 * Request bodies into events: the content type and encoding checked, gzip (or deflate) decoded within the
 * body limit, UTF-8 checked strictly, then a JSON object, a JSON array of objects, or NDJSON (one object a
 * line). Everything here is untrusted: every failure is an HttpError, never an exception that escapes.
 */
import { promisify } from 'node:util';
import { gunzip, inflate } from 'node:zlib';
import { HttpError } from './http-error.ts';

export type BodyFormat = 'json' | 'ndjson';

const JSON_TYPES = new Set(['application/json', 'text/json', 'text/plain']);
const NDJSON_TYPES = new Set([
  'application/x-ndjson',
  'application/ndjson',
  'application/jsonl',
  'application/x-jsonlines',
  'application/jsonlines',
]);
export const ACCEPTED_CONTENT_TYPES = ['application/json', 'application/x-ndjson', 'text/plain'] as const;

// The last Content-Type read: clients send the same one request after request.
let lastType: string | undefined;
let lastFormat: BodyFormat | undefined;

/** The format a Content-Type names, or undefined when the server does not read it. */
export function formatOf(contentType: string | undefined): BodyFormat | undefined {
  if (contentType === undefined) return undefined;
  if (contentType === lastType) return lastFormat;
  lastFormat = parseFormat(contentType);
  lastType = contentType;
  return lastFormat;
}

function parseFormat(contentType: string): BodyFormat | undefined {
  const [type = '', ...params] = contentType.split(';');
  const media = type.trim().toLowerCase();
  for (const param of params) {
    const eq = param.indexOf('=');
    if (eq < 0) continue;
    if (param.slice(0, eq).trim().toLowerCase() !== 'charset') continue;
    const charset = param
      .slice(eq + 1)
      .trim()
      .replace(/^"|"$/g, '')
      .toLowerCase();
    if (charset !== 'utf-8' && charset !== 'utf8') return undefined;
  }
  if (JSON_TYPES.has(media) || /^application\/[a-z0-9.+-]+\+json$/.test(media)) return 'json';
  if (NDJSON_TYPES.has(media)) return 'ndjson';
  return undefined;
}

export type ContentEncoding = 'identity' | 'gzip' | 'deflate';

export function encodingOf(header: string | undefined): ContentEncoding | undefined {
  const value = (header ?? 'identity').trim().toLowerCase();
  if (value === '' || value === 'identity') return 'identity';
  if (value === 'gzip' || value === 'x-gzip') return 'gzip';
  if (value === 'deflate') return 'deflate';
  return undefined;
}

const gunzipAsync = promisify(gunzip);
const inflateAsync = promisify(inflate);

/** The body with its Content-Encoding removed; 413 when it decodes to more than `limit` bytes. */
export async function decodeBody(body: Buffer, encoding: ContentEncoding, limit: number): Promise<Buffer> {
  if (encoding === 'identity') return body;
  try {
    const decode = encoding === 'gzip' ? gunzipAsync : inflateAsync;
    return await decode(body, { maxOutputLength: limit });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || error instanceof RangeError) {
      throw new HttpError(413, 'PAYLOAD_TOO_LARGE', `the body decompresses to more than ${limit} bytes`, {
        hint: 'send smaller batches',
      });
    }
    throw new HttpError(400, 'INVALID_INPUT', `the body is not valid ${encoding} data`, {
      hint: `compress the body with ${encoding}, or drop the Content-Encoding header`,
    });
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function decodeUtf8(body: Uint8Array): string {
  try {
    return utf8.decode(body);
  } catch {
    throw new HttpError(400, 'INVALID_INPUT', 'the body is not valid UTF-8', {
      hint: 'encode the body as UTF-8',
    });
  }
}

/** One event of a request: its parsed value, or why it could not be parsed (NDJSON lines fail alone). */
export interface BodyItem {
  readonly index: number;
  readonly value?: unknown;
  /** The event's text, for the DLQ when it is invalid (NDJSON only). */
  readonly raw?: string;
  /**
   * The event's original bytes when it is a JSON object in a JSON body (a view into the body): stored as
   * they are, so that an event is not serialized again (JSON.stringify costs more than the parse).
   */
  readonly source?: Uint8Array;
  /** 1-based line number (NDJSON). */
  readonly line?: number;
  readonly parseError?: string;
}

function emptyBody(): HttpError {
  return new HttpError(400, 'INVALID_INPUT', 'the body holds no events', {
    hint: 'send a JSON object, a JSON array of objects, or NDJSON (one object a line)',
  });
}

function tooMany(count: number, max: number): HttpError {
  return new HttpError(413, 'PAYLOAD_TOO_LARGE', `the request holds ${count} events, more than ${max}`, {
    hint: 'split it into smaller batches',
  });
}

function jsonMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.length > 300 ? `${message.slice(0, 300)}…` : message;
}

/**
 * The events of a body. With `bytes` (the body `text` was decoded from), the objects of a JSON body carry
 * their original bytes (`source`).
 */
export function parseEvents(
  text: string,
  format: BodyFormat,
  maxEvents: number,
  bytes?: Uint8Array,
): BodyItem[] {
  if (format === 'ndjson') return parseNdjson(text, maxEvents);
  if (text.trim() === '') throw emptyBody();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, 'INVALID_INPUT', `the body is not valid JSON: ${jsonMessage(error)}`, {
      hint: 'send a JSON object, a JSON array of objects, or NDJSON with Content-Type: application/x-ndjson',
      details: { events: [{ index: null, errors: [{ path: '', message: jsonMessage(error) }] }] },
    });
  }
  if (Array.isArray(value)) {
    if (value.length === 0) throw emptyBody();
    if (value.length > maxEvents) throw tooMany(value.length, maxEvents);
    const ranges = bytes ? objectRanges(bytes, value.length) : undefined;
    const items: BodyItem[] = new Array<BodyItem>(value.length);
    for (let index = 0; index < value.length; index++) {
      const end = ranges ? ranges[2 * index + 1]! : 0;
      items[index] =
        end > 0
          ? { index, value: value[index] as unknown, source: bytes!.subarray(ranges![2 * index], end) }
          : { index, value: value[index] as unknown };
    }
    return items;
  }
  if (value !== null && typeof value === 'object') {
    if (!bytes) return [{ index: 0, value }];
    // Valid JSON holding one object: only whitespace (and a BOM) surrounds its braces.
    return [{ index: 0, value, source: bytes.subarray(bytes.indexOf(0x7b), bytes.lastIndexOf(0x7d) + 1) }];
  }
  throw new HttpError(400, 'INVALID_INPUT', 'the body must be a JSON object or an array of objects', {
    details: { events: [{ index: null, errors: [{ path: '', message: 'must be object or array' }] }] },
  });
}

function parseNdjson(text: string, maxEvents: number): BodyItem[] {
  const items: BodyItem[] = [];
  let start = 0;
  let line = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    line++;
    let raw = text.slice(start, end);
    if (raw.endsWith('\r')) raw = raw.slice(0, -1);
    start = end + 1;
    if (raw.trim() === '') continue;
    if (items.length >= maxEvents) throw tooMany(items.length + 1, maxEvents);
    const index = items.length;
    try {
      items.push({ index, value: JSON.parse(raw), raw, line });
    } catch (error) {
      items.push({ index, raw, line, parseError: `line ${line} is not valid JSON: ${jsonMessage(error)}` });
    }
  }
  if (items.length === 0) throw emptyBody();
  return items;
}

/**
 * Where each object element of a JSON array starts and ends in `bytes`, which JSON.parse has already read
 * as an array of `count` elements (so the text is valid JSON: only strings need care). Pairs [start, end)
 * by element index; end 0 for an element that is not an object.
 */
export function objectRanges(bytes: Uint8Array, count: number): Int32Array {
  const ranges = new Int32Array(2 * count);
  const length = bytes.length;
  let depth = 0;
  let index = 0;
  let start = 0;
  for (let i = 0; i < length; i++) {
    const c = bytes[i]!;
    if (c === 0x22) {
      // A string: to its closing quote, stepping over escapes (\" included).
      for (i++; i < length; i++) {
        const d = bytes[i]!;
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth === 2 && c === 0x7b) start = i;
    } else if (c === 0x7d || c === 0x5d) {
      if (--depth === 1 && c === 0x7d && index < count) {
        ranges[2 * index] = start;
        ranges[2 * index + 1] = i + 1;
      }
    } else if (c === 0x2c && depth === 1) {
      index++;
    }
  }
  return ranges;
}

/** True when objects and arrays nest deeper than `max` inside `value` (a bounded recursion). */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (max <= 0) return true;
  if (Array.isArray(value)) {
    for (const item of value) if (nestedDeeperThan(item, max - 1)) return true;
    return false;
  }
  for (const key in value) {
    if (nestedDeeperThan((value as Record<string, unknown>)[key], max - 1)) return true;
  }
  return false;
}
