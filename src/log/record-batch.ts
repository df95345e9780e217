/**
 * Record batches: the records one transaction appends to one partition, stored as one value, as Kafka
 * stores record batches. One row per batch instead of one per record makes appends cost per byte, not
 * per record. Layout (little-endian): count u32, then per record: timestamp f64, key length i32 (-1 for
 * none) and UTF-8 key, headers length i32 (-1 for none) and headers as UTF-8 JSON, value length u32 and
 * value bytes.
 */
import type { LogRecord, StoredRecord } from './log.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeBatch(
  records: readonly LogRecord[],
  defaultTimestamp: number,
): { payload: Uint8Array; maxTimestamp: number } {
  const keys = records.map((r) => (r.key == null ? undefined : encoder.encode(r.key)));
  const headers = records.map((r) =>
    r.headers && Object.keys(r.headers).length ? encoder.encode(JSON.stringify(r.headers)) : undefined,
  );
  let size = 4;
  records.forEach((record, i) => {
    size += 8 + 4 + (keys[i]?.length ?? 0) + 4 + (headers[i]?.length ?? 0) + 4 + record.value.length;
  });
  const payload = new Uint8Array(size);
  const view = new DataView(payload.buffer);
  view.setUint32(0, records.length, true);
  let at = 4;
  let maxTimestamp = 0;
  records.forEach((record, i) => {
    const timestamp = record.timestamp ?? defaultTimestamp;
    maxTimestamp = Math.max(maxTimestamp, timestamp);
    view.setFloat64(at, timestamp, true);
    at += 8;
    for (const part of [keys[i], headers[i]]) {
      view.setInt32(at, part ? part.length : -1, true);
      at += 4;
      if (part) {
        payload.set(part, at);
        at += part.length;
      }
    }
    view.setUint32(at, record.value.length, true);
    at += 4;
    payload.set(record.value, at);
    at += record.value.length;
  });
  return { payload, maxTimestamp };
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
