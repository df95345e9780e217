/**
 * Record batches: the records one transaction appends to one partition, stored as one value, as Kafka
 * stores record batches. One row per batch instead of one per record makes appends cost per byte, not
 * per record. Layout (little-endian): count u32, then per record: timestamp f64, key length i32 (-1 for
 * none) and UTF-8 key, headers length i32 (-1 for none) and headers as UTF-8 JSON, value length u32 and
 * value bytes.
 */
import type { LogRecord, StoredRecord } from './log.ts';

const decoder = new TextDecoder();

/**
 * Encodes the records as one batch. Keys and headers are nearly always short ASCII (table names and
 * keys, positions, ids): they are measured in a first pass and copied into the payload by plain loops in
 * a second, without a UTF-8 array and a JSON string per record (which made this function most of an
 * append's cost). Anything else takes the general path; the bytes are the same either way.
 */
export function encodeBatch(
  records: readonly LogRecord[],
  defaultTimestamp: number,
): { payload: Uint8Array; maxTimestamp: number } {
  const count = records.length;
  // Per record, the headers' JSON when it is not plain (see `plainHeadersLength`).
  const headerTexts: Array<string | undefined> = new Array<string | undefined>(count);
  const keyLengths = new Int32Array(count);
  const headerLengths = new Int32Array(count);
  let size = 4;
  for (let i = 0; i < count; i++) {
    const record = records[i]!;
    const key = record.key;
    const keyLength = key == null ? -1 : utf8Length(key);
    let headersLength = -1;
    if (record.headers !== undefined) {
      headersLength = plainHeadersLength(record.headers);
      if (headersLength === NOT_PLAIN) {
        const text = JSON.stringify(record.headers);
        headerTexts[i] = text;
        headersLength = utf8Length(text);
      }
    }
    keyLengths[i] = keyLength;
    headerLengths[i] = headersLength;
    size += 20 + Math.max(0, keyLength) + Math.max(0, headersLength) + record.value.length;
  }

  const payload = Buffer.allocUnsafe(size);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  view.setUint32(0, count, true);
  let at = 4;
  let maxTimestamp = 0;
  for (let i = 0; i < count; i++) {
    const record = records[i]!;
    const timestamp = record.timestamp ?? defaultTimestamp;
    maxTimestamp = Math.max(maxTimestamp, timestamp);
    view.setFloat64(at, timestamp, true);
    at += 8;
    const keyLength = keyLengths[i]!;
    view.setInt32(at, keyLength, true);
    at += 4;
    if (keyLength > 0) at = writeText(payload, at, record.key!, keyLength);
    const headersLength = headerLengths[i]!;
    view.setInt32(at, headersLength, true);
    at += 4;
    if (headersLength >= 0) {
      const text = headerTexts[i];
      at =
        text === undefined
          ? writePlainHeaders(payload, at, record.headers!)
          : writeText(payload, at, text, headersLength);
    }
    const value = record.value;
    view.setUint32(at, value.length, true);
    at += 4;
    payload.set(value, at);
    at += value.length;
  }
  // Every byte of the (not zero-filled) payload is written: the measure and the writing agree.
  if (at !== size) throw new Error(`record batch encoding wrote ${at} of ${size} bytes`);
  return { payload, maxTimestamp };
}

/** Returned by `plainHeadersLength` for headers that need JSON.stringify. */
const NOT_PLAIN = -2;

/**
 * The length of the headers' JSON when every name and value is a string of printable ASCII without `"`
 * or `\` — then JSON.stringify writes exactly `{"name":"value",…}` and `writePlainHeaders` writes the
 * same; -1 for no headers (stored as none, as an empty object); otherwise NOT_PLAIN.
 */
function plainHeadersLength(headers: Readonly<Record<string, string>>): number {
  let length = 1; // {
  let entries = 0;
  // for…in takes the properties in JSON.stringify's order; inherited ones are not JSON's.
  for (const name in headers) {
    if (!Object.hasOwn(headers, name)) continue;
    const value = headers[name] as unknown;
    if (typeof value !== 'string' || !isPlain(name) || !isPlain(value)) return NOT_PLAIN;
    length += name.length + value.length + 6; // "name":"value" and a comma or the closing brace
    entries++;
  }
  return entries === 0 ? -1 : length;
}

/** Printable ASCII that JSON writes as it is. */
function isPlain(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 34 || c === 92) return false;
  }
  return true;
}

/** Writes headers `plainHeadersLength` measured; returns the position after them. */
function writePlainHeaders(out: Buffer, at: number, headers: Readonly<Record<string, string>>): number {
  let separator = 123; // {
  for (const name in headers) {
    if (!Object.hasOwn(headers, name)) continue;
    out[at++] = separator;
    separator = 44; // ,
    out[at++] = 34;
    at = writeAscii(out, at, name);
    out[at++] = 34;
    out[at++] = 58; // :
    out[at++] = 34;
    at = writeAscii(out, at, headers[name]!);
    out[at++] = 34;
  }
  out[at++] = 125; // }
  return at;
}

/** The length of the text in UTF-8 (a lone surrogate is U+FFFD, three bytes, as TextEncoder writes it). */
function utf8Length(text: string): number {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) >= 0x80) return Buffer.byteLength(text, 'utf8');
  }
  return text.length;
}

/** Writes the text's `length` UTF-8 bytes; returns the position after them. */
function writeText(out: Buffer, at: number, text: string, length: number): number {
  if (length === text.length) return writeAscii(out, at, text);
  out.write(text, at, length, 'utf8');
  return at + length;
}

/** ASCII by a plain loop, which beats a native call for short texts. */
function writeAscii(out: Buffer, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) out[at++] = text.charCodeAt(i);
  return at;
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
