/**
 * Record batches: the records one transaction appends to one partition, stored as one value, as Kafka
 * stores record batches. One row per batch instead of one per record makes appends cost per byte, not
 * per record. Layout (little-endian): count u32, then per record: timestamp f64, key length i32 (-1 for
 * none) and UTF-8 key, headers length i32 (-1 for none) and headers as UTF-8 JSON, value length u32 and
 * value bytes.
 */
import { TributaryError } from '../errors.ts';
import type { LogRecord, StoredRecord } from './log.ts';

const decoder = new TextDecoder();

/**
 * A buffer that grows as it is written, front to back: `reserve` makes room for `n` more bytes at `at`
 * (moving what was written to a larger buffer, so views taken before stay on the old one).
 */
export class LayoutWriter {
  bytes: Buffer;
  view: DataView;
  at = 0;
  readonly #alloc: (size: number) => Buffer;

  constructor(initial: number, alloc: (size: number) => Buffer = (size) => Buffer.allocUnsafe(size)) {
    this.#alloc = alloc;
    this.bytes = alloc(Math.max(initial, 64));
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
  }

  reserve(n: number): void {
    if (this.at + n <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.at + n) size *= 2;
    const grown = this.#alloc(size);
    grown.set(this.bytes.subarray(0, this.at));
    this.bytes = grown;
    this.view = new DataView(grown.buffer, grown.byteOffset, grown.byteLength);
  }
}

/**
 * Records in the batch layout (without the batch's count), back to back: an append holds its records so
 * from the moment it is made (or, through the log worker, from the server thread: append-codec.ts) until
 * a transaction copies them into its batches — encoded once, where they are made, instead of as objects
 * that are encoded at commit.
 */
export interface EncodedRecords {
  readonly count: number;
  readonly bytes: Uint8Array;
  /** Some record has a key (it goes to its key's partition; the others share one). */
  readonly keyed: boolean;
  /** The highest timestamp of the records, at least 0. */
  readonly maxTimestamp: number;
  /** The length of the records' values together. */
  readonly valueBytes: number;
}

/**
 * Writes the records in the batch layout at `out.at` (those without a timestamp, or with NaN, get
 * `defaultTimestamp`) and returns what `EncodedRecords` says of them. Keys and headers are nearly always
 * short ASCII (table names and keys, positions, ids): they are copied by plain loops that check as they
 * go, without a UTF-8 array and a JSON string per record (which made encoding most of an append's cost).
 * Anything else takes the general path; the bytes are the same either way. A record that cannot be encoded (a key that is not
 * a string, a value that is not bytes, headers JSON cannot write) throws an INVALID_INPUT error, and
 * `out.at` is left where it was.
 */
export function writeRecords(
  out: LayoutWriter,
  records: readonly LogRecord[],
  defaultTimestamp: number,
): Omit<EncodedRecords, 'bytes'> {
  const start = out.at;
  let maxTimestamp = 0;
  let valueBytes = 0;
  let keyed = false;
  try {
    for (const record of records) {
      const key = record.key;
      const value = record.value;
      if (!(key == null || typeof key === 'string') || !(value instanceof Uint8Array))
        throw new TypeError('a log record needs a string or null key and a Uint8Array value');
      // Room for the fixed fields, and the key and value as far as they are known.
      out.reserve(20 + (key == null ? 0 : key.length) + value.length);
      let at = out.at;
      let timestamp = record.timestamp ?? defaultTimestamp;
      if (Number.isNaN(timestamp)) timestamp = defaultTimestamp;
      if (timestamp > maxTimestamp) maxTimestamp = timestamp;
      out.view.setFloat64(at, timestamp, true);
      at += 8;
      if (key == null) {
        out.view.setInt32(at, -1, true);
        at += 4;
      } else {
        keyed = true;
        at = writeString(out, at, key);
      }
      // The key's 4 bytes and its length are there when it is ASCII, the headers' 4 bytes after it.
      if (at + 4 > out.bytes.length) {
        out.at = at;
        out.reserve(4);
      }
      at = record.headers == null ? writeNone(out, at) : writeHeaders(out, at, record.headers);
      if (at + 4 + value.length > out.bytes.length) {
        out.at = at;
        out.reserve(4 + value.length);
      }
      out.view.setUint32(at, value.length, true);
      out.bytes.set(value, at + 4);
      out.at = at + 4 + value.length;
      valueBytes += value.length;
    }
  } catch (error) {
    out.at = start;
    throw new TributaryError('INVALID_INPUT', `a log record cannot be encoded: ${(error as Error).message}`, {
      hint: 'give records a string or null key, a Uint8Array value and headers of strings',
      cause: error,
    });
  }
  return { count: records.length, keyed, maxTimestamp, valueBytes };
}

/** A length of -1 (no key, no headers) at `at` (room for it is made); returns the position after it. */
function writeNone(out: LayoutWriter, at: number): number {
  out.view.setInt32(at, -1, true);
  return at + 4;
}

/**
 * The text's length (i32) and UTF-8 at `at`, which must have room for 4 bytes and the text's length (ASCII,
 * nearly always, is copied by a loop; anything else makes its own room); returns the end.
 */
export function writeString(out: LayoutWriter, at: number, text: string): number {
  const bytes = out.bytes;
  const start = at + 4;
  let end = start;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) return writeText(out, at, text);
    bytes[end++] = c;
  }
  out.view.setInt32(at, text.length, true);
  return end;
}

/** The text's length and UTF-8 at `at` (a lone surrogate is U+FFFD, as TextEncoder writes it). */
function writeText(out: LayoutWriter, at: number, text: string): number {
  const length = Buffer.byteLength(text, 'utf8');
  out.at = at;
  out.reserve(4 + length);
  out.view.setInt32(at, length, true);
  out.bytes.write(text, at + 4, length, 'utf8');
  return at + 4 + length;
}

/**
 * The headers' length and JSON at `at`; returns the end. When every name and value is a string of
 * printable ASCII without `"` or `\`, JSON.stringify would write exactly `{"name":"value",…}`: that is
 * written here directly; otherwise by JSON.stringify. Headers without a property of their own are stored
 * as none (-1), as an empty object.
 */
function writeHeaders(out: LayoutWriter, at: number, headers: Readonly<Record<string, string>>): number {
  // Own properties, in JSON.stringify's order.
  const names = Object.keys(headers);
  if (names.length === 0) return writeNone(out, at);
  const lengthAt = at;
  at += 4;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const value = headers[name] as unknown;
    if (typeof value !== 'string') return writeText(out, lengthAt, JSON.stringify(headers));
    const room = name.length + value.length + 7;
    if (at + room > out.bytes.length) {
      out.at = at;
      out.reserve(room);
    }
    const bytes = out.bytes;
    bytes[at] = i === 0 ? 123 : 44; // { or ,
    bytes[at + 1] = 34;
    at = copyPlain(bytes, at + 2, name);
    if (at < 0) return writeText(out, lengthAt, JSON.stringify(headers));
    bytes[at] = 34;
    bytes[at + 1] = 58; // :
    bytes[at + 2] = 34;
    at = copyPlain(bytes, at + 3, value);
    if (at < 0) return writeText(out, lengthAt, JSON.stringify(headers));
    bytes[at++] = 34;
  }
  out.bytes[at++] = 125; // }
  out.view.setInt32(lengthAt, at - lengthAt - 4, true);
  return at;
}

/** Copies printable ASCII that JSON writes as it is; -1 at the first character that is not. */
function copyPlain(bytes: Buffer, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 34 || c === 92) return -1;
    bytes[at++] = c;
  }
  return at;
}

/** The records encoded on their own (`writeRecords`). */
export function encodeRecords(records: readonly LogRecord[], defaultTimestamp: number): EncodedRecords {
  let size = 0;
  for (const record of records) size += 64 + record.value.length;
  const out = new LayoutWriter(size);
  const encoded = writeRecords(out, records, defaultTimestamp);
  return { ...encoded, bytes: out.bytes.subarray(0, out.at) };
}

/**
 * The encoded record `readRecord` read last: its timestamp, where its key begins and its length (-1: none),
 * its value's length, and where it ends.
 */
export const recordRead = { timestamp: 0, keyAt: 0, keyLength: 0, valueLength: 0, end: 0 };

/** Reads the encoded record that begins at `at` into `recordRead`. */
export function readRecord(view: DataView, at: number): void {
  recordRead.timestamp = view.getFloat64(at, true);
  const keyLength = view.getInt32(at + 8, true);
  recordRead.keyAt = at + 12;
  at += 12 + Math.max(0, keyLength);
  at += 4 + Math.max(0, view.getInt32(at, true));
  const valueLength = view.getUint32(at, true);
  recordRead.keyLength = keyLength;
  recordRead.valueLength = valueLength;
  recordRead.end = at + 4 + valueLength;
}

/** The records but those marked in `dropped` (one byte per record). */
export function withoutRecords(records: EncodedRecords, dropped: Uint8Array): EncodedRecords {
  const { bytes } = records;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const kept = Buffer.allocUnsafe(bytes.length);
  let length = 0;
  let count = 0;
  let maxTimestamp = 0;
  let valueBytes = 0;
  let keyed = false;
  for (let i = 0, at = 0; i < records.count; i++) {
    readRecord(view, at);
    const { timestamp, keyLength, valueLength, end } = recordRead;
    if (!dropped[i]) {
      kept.set(bytes.subarray(at, end), length);
      length += end - at;
      count++;
      maxTimestamp = Math.max(maxTimestamp, timestamp);
      if (keyLength >= 0) keyed = true;
      valueBytes += valueLength;
    }
    at = end;
  }
  return { count, bytes: kept.subarray(0, length), keyed, maxTimestamp, valueBytes };
}

/** Encodes the records as one batch: their count, then the records (`writeRecords`). */
export function encodeBatch(
  records: readonly LogRecord[],
  defaultTimestamp: number,
): { payload: Uint8Array; maxTimestamp: number } {
  const encoded = encodeRecords(records, defaultTimestamp);
  return { payload: batchOf([encoded.bytes], records.length), maxTimestamp: encoded.maxTimestamp };
}

/** A batch of `count` records from their encoded bytes (`writeRecords`), in `parts`. */
export function batchOf(parts: readonly Uint8Array[], count: number): Uint8Array {
  let size = 4;
  for (const part of parts) size += part.length;
  const payload = Buffer.allocUnsafe(size);
  payload.writeUInt32LE(count, 0);
  let at = 4;
  for (const part of parts) {
    payload.set(part, at);
    at += part.length;
  }
  return payload;
}

/** Headers of the records that have none: one shared, frozen object rather than one per record. */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * The records of a batch of `topic`'s `partition` whose first record has `baseOffset`, from offset `from`
 * on and at most `limit` of them (records before `from` are stepped over, not decoded); values are views
 * into `payload`.
 */
export function decodeBatch(
  payload: Uint8Array,
  topic: string,
  partition: number,
  baseOffset: number,
  from = baseOffset,
  limit = Infinity,
): StoredRecord[] {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const count = view.getUint32(0, true);
  const records: StoredRecord[] = [];
  let at = 4;
  for (let i = 0; i < count && records.length < limit; i++) {
    const timestamp = view.getFloat64(at, true);
    at += 8;
    const keyLength = view.getInt32(at, true);
    const keyAt = (at += 4);
    at += Math.max(0, keyLength);
    const headersLength = view.getInt32(at, true);
    const headersAt = (at += 4);
    at += Math.max(0, headersLength);
    const valueLength = view.getUint32(at, true);
    const valueAt = (at += 4);
    at += valueLength;
    if (baseOffset + i < from) continue;
    records.push({
      topic,
      partition,
      offset: baseOffset + i,
      timestamp,
      key: keyLength < 0 ? null : decoder.decode(payload.subarray(keyAt, keyAt + keyLength)),
      value: payload.subarray(valueAt, valueAt + valueLength),
      headers:
        headersLength < 0
          ? NO_HEADERS
          : (JSON.parse(decoder.decode(payload.subarray(headersAt, headersAt + headersLength))) as Record<
              string,
              string
            >),
    });
  }
  return records;
}
