/**
 * Request bodies into events: the content type and encoding checked, gzip (or deflate) decoded within the
 * body limit, UTF-8 checked strictly, then a JSON object, a JSON array of objects, or NDJSON (one object a
 * line). Everything here is untrusted: every failure is an HttpError, never an exception that escapes.
 */
import type { IncomingMessage } from 'node:http';
import { promisify } from 'node:util';
import { gunzip, inflate } from 'node:zlib';
import { isBigInteger, parseJsonExact } from '../core/json.ts';
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

/**
 * The bytes of a request's body, refused with 413 as soon as they pass `limit` (a chunked body has no
 * length to check beforehand). Rejects when the client goes away before the end.
 */
export function readBody(request: IncomingMessage, limit: number): Promise<Buffer> {
  if (request.destroyed) {
    // Gone while its checks ran (a key looked up in the database): no event will come any more.
    return Promise.reject(new Error('the client closed the connection before its body was read'));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      request.off('data', onData);
      request.off('end', onEnd);
      request.off('error', onError);
      request.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      done();
      reject(
        new HttpError(413, 'PAYLOAD_TOO_LARGE', `the body is larger than the limit of ${limit} bytes`, {
          hint: 'send smaller batches (server.body_limit)',
        }),
      );
    };
    const onEnd = () => {
      done();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (error: Error) => {
      done();
      reject(error);
    };
    const onClose = () => onError(new Error('the client closed the connection before the end of the body'));
    request.on('data', onData);
    request.on('end', onEnd);
    request.on('error', onError);
    request.on('close', onClose);
  });
}

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
  /**
   * With `source`: how many members the objects in it have, at every depth. More than its value has when
   * an object repeats a key (JSON.parse keeps the last).
   */
  readonly members?: number;
  /** 1-based line number (NDJSON). */
  readonly line?: number;
  readonly parseError?: string;
  /**
   * Set by `scanEvents`: the event is a valid JSON object within the depth limit, without any of the
   * fields the server adds, and `value` was not built; `id` is its id field when it is a string.
   */
  readonly scanned?: true;
  readonly id?: string;
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

/** A JSON body as one value (integers beyond ±2^53 kept exact). */
export function parseJsonBody(
  text: string,
  hint = 'send a JSON object, a JSON array of objects, or NDJSON with Content-Type: application/x-ndjson',
): unknown {
  if (text.trim() === '') throw emptyBody();
  try {
    return parseJsonExact(text);
  } catch (error) {
    throw new HttpError(400, 'INVALID_INPUT', `the body is not valid JSON: ${jsonMessage(error)}`, {
      hint,
      details: { events: [{ index: null, errors: [{ path: '', message: jsonMessage(error) }] }] },
    });
  }
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
  const value = parseJsonBody(text);
  if (Array.isArray(value)) {
    if (value.length === 0) throw emptyBody();
    if (value.length > maxEvents) throw tooMany(value.length, maxEvents);
    const ranges = bytes ? objectRanges(bytes, value.length, 2) : undefined;
    const items: BodyItem[] = new Array<BodyItem>(value.length);
    for (let index = 0; index < value.length; index++) {
      const end = ranges ? ranges[3 * index + 1]! : 0;
      items[index] =
        end > 0
          ? {
              index,
              value: value[index] as unknown,
              source: bytes!.subarray(ranges![3 * index], end),
              members: ranges![3 * index + 2],
            }
          : { index, value: value[index] as unknown };
    }
    return items;
  }
  if (value !== null && typeof value === 'object' && !isBigInteger(value)) {
    if (!bytes) return [{ index: 0, value }];
    const [start = 0, end = 0, members] = objectRanges(bytes, 1, 1);
    return [{ index: 0, value, source: bytes.subarray(start, end), members }];
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
      items.push({ index, value: parseJsonExact(raw), raw, line });
    } catch (error) {
      items.push({ index, raw, line, parseError: `line ${line} is not valid JSON: ${jsonMessage(error)}` });
    }
  }
  if (items.length === 0) throw emptyBody();
  return items;
}

/**
 * Where each object element of a JSON array (`top` 2; or the JSON object itself, `top` 1) starts and ends
 * in `bytes`, which JSON.parse has already read as `count` elements (so the text is valid JSON: only
 * strings need care), and how many members its objects have at every depth (its colons outside strings).
 * Triples [start, end, members] by element index; end 0 for an element that is not an object.
 */
export function objectRanges(bytes: Uint8Array, count: number, top: 1 | 2): Int32Array {
  const ranges = new Int32Array(3 * count);
  const length = bytes.length;
  let depth = 0;
  let index = 0;
  let start = 0;
  let members = 0;
  let membersBefore = 0;
  for (let i = 0; i < length; i++) {
    const c = bytes[i]!;
    if (c === 0x22) {
      // A string: to its closing quote, stepping over escapes (\" included).
      for (i++; i < length; i++) {
        const d = bytes[i]!;
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x3a) {
      members++;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth === top && c === 0x7b) {
        start = i;
        membersBefore = members;
      }
    } else if (c === 0x7d || c === 0x5d) {
      if (--depth === top - 1 && c === 0x7d && index < count) {
        ranges[3 * index] = start;
        ranges[3 * index + 1] = i + 1;
        ranges[3 * index + 2] = members - membersBefore;
      }
    } else if (c === 0x2c && depth === top - 1) {
      index++;
    }
  }
  return ranges;
}

/**
 * How many members the objects in `value` have, at every depth; -1 when objects and arrays nest deeper
 * than `max` inside it (a bounded recursion).
 */
export function membersWithin(value: unknown, max: number): number {
  if (value === null || typeof value !== 'object' || isBigInteger(value)) return 0;
  if (max <= 0) return -1;
  let members = 0;
  if (Array.isArray(value)) {
    for (const item of value) {
      const within = membersWithin(item, max - 1);
      if (within < 0) return -1;
      members += within;
    }
    return members;
  }
  for (const key in value) {
    const within = membersWithin((value as Record<string, unknown>)[key], max - 1);
    if (within < 0) return -1;
    members += within + 1;
  }
  return members;
}

/** The fields enrichment may add (ingest.ts): an event holding one is not taken by `scanEvents`. */
const ADDED_FIELDS = ['_received_at', '_client_ip', '_user_agent'];
const MAX_SCANNED_ID = 256;
const PRINTABLE_ASCII = /^[\x20-\x7e]+$/;

// The scanner below reads bytes at an index it passes along: -1 is "not valid JSON", -2 "valid maybe,
// but not for `scanEvents`". Locals and arguments only, so that the loops stay tight.
const INVALID = -1;
const NOT_PLAIN = -2;

function skipWhitespace(b: Uint8Array, i: number): number {
  const n = b.length;
  while (i < n) {
    const c = b[i]!;
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
    else break;
  }
  return i;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** 1 for the bytes a JSON string cannot hold as they are: the quote, the backslash, controls; and non-ASCII. */
const STRING_SPECIAL = new Uint8Array(256);
for (let c = 0; c < 256; c++) STRING_SPECIAL[c] = c < 0x20 || c === 0x22 || c === 0x5c || c >= 0x80 ? 1 : 0;

/**
 * Past the JSON string whose opening quote is at `i`. `plain`: NOT_PLAIN for one with an escape or a byte
 * outside ASCII (a key or an id that would have to be decoded to be compared).
 */
function endOfString(b: Uint8Array, i: number, plain: boolean): number {
  const n = b.length;
  for (i++; i < n;) {
    // Ordinary characters first, one table lookup each.
    while (i < n && STRING_SPECIAL[b[i]!] === 0) i++;
    if (i >= n) break;
    const c = b[i]!;
    if (c === 0x22) return i + 1;
    if (c === 0x5c) {
      if (plain) return NOT_PLAIN;
      const e = i + 1 < n ? b[i + 1]! : 0;
      if (
        e === 0x22 ||
        e === 0x5c ||
        e === 0x2f ||
        e === 0x62 ||
        e === 0x66 ||
        e === 0x6e ||
        e === 0x72 ||
        e === 0x74
      )
        i += 2;
      else if (
        e === 0x75 &&
        i + 5 < n &&
        isHex(b[i + 2]!) &&
        isHex(b[i + 3]!) &&
        isHex(b[i + 4]!) &&
        isHex(b[i + 5]!)
      )
        i += 6;
      else return INVALID;
    } else if (c < 0x20) return INVALID;
    else if (c >= 0x80 && plain) return NOT_PLAIN;
    else i++;
  }
  return INVALID;
}

function endOfDigits(b: Uint8Array, i: number): number {
  const n = b.length;
  const start = i;
  while (i < n && b[i]! >= 0x30 && b[i]! <= 0x39) i++;
  return i > start ? i : INVALID;
}

/** Past the JSON number at `i`, by the grammar of RFC 8259. */
function endOfNumber(b: Uint8Array, i: number): number {
  const n = b.length;
  if (b[i] === 0x2d) i++;
  if (i < n && b[i] === 0x30) i++;
  else if ((i = endOfDigits(b, i)) < 0) return INVALID;
  if (i < n && b[i] === 0x2e && (i = endOfDigits(b, i + 1)) < 0) return INVALID;
  if (i < n && (b[i] === 0x65 || b[i] === 0x45)) {
    i++;
    if (i < n && (b[i] === 0x2b || b[i] === 0x2d)) i++;
    return endOfDigits(b, i);
  }
  return i;
}

function endOfLiteral(b: Uint8Array, i: number, word: string): number {
  if (i + word.length > b.length) return INVALID;
  for (let k = 0; k < word.length; k++) if (b[i + k] !== word.charCodeAt(k)) return INVALID;
  return i + word.length;
}

/** Past any JSON value at `i` inside containers nested `depth` deep, within `limit` levels. */
function endOfValue(b: Uint8Array, i: number, depth: number, limit: number): number {
  const c = i < b.length ? b[i]! : 0;
  if (c === 0x22) return endOfString(b, i, false);
  if (c === 0x7b || c === 0x5b) {
    if (depth + 1 > limit) return NOT_PLAIN;
    const close = c === 0x7b ? 0x7d : 0x5d;
    i = skipWhitespace(b, i + 1);
    if (b[i] === close) return i + 1;
    for (;;) {
      if (close === 0x7d) {
        if (b[i] !== 0x22 || (i = endOfString(b, i, false)) < 0) return INVALID;
        i = skipWhitespace(b, i);
        if (b[i] !== 0x3a) return INVALID;
        i = skipWhitespace(b, i + 1);
      }
      if ((i = endOfValue(b, i, depth + 1, limit)) < 0) return i;
      i = skipWhitespace(b, i);
      const next = b[i];
      if (next === close) return i + 1;
      if (next !== 0x2c) return INVALID;
      i = skipWhitespace(b, i + 1);
    }
  }
  if (c === 0x74) return endOfLiteral(b, i, 'true');
  if (c === 0x66) return endOfLiteral(b, i, 'false');
  if (c === 0x6e) return endOfLiteral(b, i, 'null');
  return c === 0x2d || (c >= 0x30 && c <= 0x39) ? endOfNumber(b, i) : INVALID;
}

/** True when bytes [start, end) are the ASCII text `name`. */
function bytesAre(b: Uint8Array, start: number, end: number, name: string): boolean {
  if (end - start !== name.length) return false;
  for (let k = 0; k < name.length; k++) if (b[start + k] !== name.charCodeAt(k)) return false;
  return true;
}

/** Where `scanEvent` leaves the id it found: [start, end) in the body, or start -1 for none. */
let idStart = -1;
let idEnd = -1;

/**
 * Past the event at `i`: a non-empty object whose `idField` is absent, null, or a string of 1 to 256
 * ASCII characters without escapes, once, and that holds none of the fields enrichment adds (its id in
 * `idStart`/`idEnd`). A negative number when it is not such an event, or not valid JSON.
 */
function endOfEvent(b: Buffer, i: number, limit: number, idField: string): number {
  if (b[i] !== 0x7b || limit < 1) return NOT_PLAIN;
  i = skipWhitespace(b, i + 1);
  if (b[i] === 0x7d) return NOT_PLAIN;
  idStart = -1;
  let idSeen = false;
  for (;;) {
    if (b[i] !== 0x22) return INVALID;
    const keyStart = i + 1;
    if ((i = endOfString(b, i, true)) < 0) return i;
    const keyEnd = i - 1;
    i = skipWhitespace(b, i);
    if (b[i] !== 0x3a) return INVALID;
    i = skipWhitespace(b, i + 1);
    if (bytesAre(b, keyStart, keyEnd, idField)) {
      // A repeated id is read as JSON.parse reads it, the last one: the event is then stored as read.
      if (idSeen) return NOT_PLAIN;
      idSeen = true;
      if (b[i] === 0x22) {
        const start = i + 1;
        if ((i = endOfString(b, i, true)) < 0) return i;
        if (i - 1 - start < 1 || i - 1 - start > MAX_SCANNED_ID) return NOT_PLAIN;
        idStart = start;
        idEnd = i - 1;
      } else if ((i = endOfLiteral(b, i, 'null')) >= 0) idStart = -1;
      else return NOT_PLAIN;
    } else {
      for (const name of ADDED_FIELDS) if (bytesAre(b, keyStart, keyEnd, name)) return NOT_PLAIN;
      if ((i = endOfValue(b, i, 1, limit)) < 0) return i;
    }
    i = skipWhitespace(b, i);
    const next = b[i];
    if (next === 0x7d) return i + 1;
    if (next !== 0x2c) return INVALID;
    i = skipWhitespace(b, i + 1);
  }
}

/**
 * The events of a JSON body (an object or an array of objects) read without building their values, for
 * the common case: every event is an object the server takes as it is (see `scanEvent`), at most
 * `maxEvents` of them, nested at most `maxDepth` deep. Undefined in every other case — invalid JSON
 * included — and then `parseEvents` reads the body and answers for it (so the errors are the same).
 * The body must be valid UTF-8 (checked before).
 */
export function scanEvents(
  bytes: Buffer,
  maxEvents: number,
  maxDepth: number,
  idField: string,
): BodyItem[] | undefined {
  // An id field outside printable ASCII would be missed by the byte comparison: such streams parse.
  if (!PRINTABLE_ASCII.test(idField)) return undefined;
  try {
    const items: BodyItem[] = [];
    const array = bytes[skipWhitespace(bytes, 0)] === 0x5b;
    let i = skipWhitespace(bytes, array ? skipWhitespace(bytes, 0) + 1 : 0);
    for (;;) {
      const start = i;
      if ((i = endOfEvent(bytes, i, maxDepth, idField)) < 0 || items.length >= maxEvents) return undefined;
      const source = bytes.subarray(start, i);
      items.push(
        idStart < 0
          ? { index: items.length, source, scanned: true }
          : { index: items.length, source, scanned: true, id: bytes.toString('latin1', idStart, idEnd) },
      );
      i = skipWhitespace(bytes, i);
      if (!array) break;
      const next = bytes[i];
      if (next === 0x5d) {
        i = skipWhitespace(bytes, i + 1);
        break;
      }
      if (next !== 0x2c) return undefined;
      i = skipWhitespace(bytes, i + 1);
    }
    return i === bytes.length ? items : undefined;
  } catch {
    // Nesting deeper than the stack (a very high max_depth): the body is read the usual way.
    return undefined;
  }
}
