/**
 * The appends the server thread hands to the log worker (threaded-log.ts → log-worker.ts), encoded into
 * one buffer that is transferred, not cloned. Structured cloning copies every record object, header
 * object and string one by one, and the whole backing store of every Buffer a value views (an 8 KiB pool
 * slab for a small event); here a record costs a few bytes of framing and one copy of its value.
 *
 * Layout (little-endian), per append: id u32, topic str, record count u32, then per record: timestamp f64
 * (NaN: none), key (i32 length, -1 for null, UTF-8), header count u16 and (name str, value str) pairs, value
 * (u32 length, bytes); then flags u8 (1: drop the duplicates of ids the stream accepted, 4: answer without
 * the records' positions) and, with 1, the stream str. A str is a u32 byte length and UTF-8.
 */
import type { LogRecord } from '../log/log.ts';

export interface DecodedAppend {
  readonly id: number;
  readonly topic: string;
  readonly records: LogRecord[];
  /**
   * The stream whose event ids the records carry (headers tributary-event-id + tributary-dedupe): the worker
   * drops the duplicates among them (log-worker.ts).
   */
  readonly dedupe?: string;
  /** False when the sender does not need the records' positions. */
  readonly positions: boolean;
}

/** A buffer of its own (transferable, unlike a pooled one), not zero-filled: every byte sent is written. */
function fresh(size: number): Uint8Array {
  return Buffer.allocUnsafeSlow(size);
}

const FLAG_DEDUPE = 1;
const FLAG_NO_POSITIONS = 4;
const MAX_START = 4 * 1024 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class AppendWriter {
  #bytes: Uint8Array;
  #view: DataView;
  #at = 0;
  #appends = 0;
  #records = 0;
  readonly #initial: number;

  constructor(initial = 16 * 1024) {
    this.#initial = initial;
    this.#bytes = fresh(initial);
    this.#view = new DataView(this.#bytes.buffer);
  }

  /** Appends encoded since the last `take`. */
  get appends(): number {
    return this.#appends;
  }

  /** Records encoded since the last `take`. */
  get records(): number {
    return this.#records;
  }

  /**
   * Encodes one append (`positions` false: its answer need not carry the records' positions); on an error
   * (a record it cannot encode) nothing of it is kept.
   */
  write(id: number, topic: string, records: readonly LogRecord[], dedupe?: string, positions = true): void {
    const start = this.#at;
    try {
      this.#write(id, topic, records, dedupe, positions);
    } catch (error) {
      this.#at = start;
      throw error;
    }
    this.#appends++;
    this.#records += records.length;
  }

  #write(
    id: number,
    topic: string,
    records: readonly LogRecord[],
    dedupe: string | undefined,
    positions: boolean,
  ): void {
    this.#u32(id);
    this.#str(topic);
    this.#u32(records.length);
    for (const record of records) {
      this.#reserve(8);
      this.#view.setFloat64(this.#at, record.timestamp ?? Number.NaN, true);
      this.#at += 8;
      this.#nullableStr(record.key ?? null);
      const headers = record.headers;
      let count = 0;
      const countAt = this.#at;
      this.#reserve(2);
      this.#at += 2;
      if (headers)
        for (const name in headers) {
          this.#str(name);
          this.#str(headers[name]!);
          count++;
        }
      if (count > 0xffff) throw new RangeError('a log record has more than 65535 headers');
      this.#view.setUint16(countAt, count, true);
      const value = record.value;
      this.#u32(value.length);
      this.#reserve(value.length);
      this.#bytes.set(value, this.#at);
      this.#at += value.length;
    }
    this.#reserve(1);
    this.#bytes[this.#at++] = (dedupe === undefined ? 0 : FLAG_DEDUPE) | (positions ? 0 : FLAG_NO_POSITIONS);
    if (dedupe !== undefined) this.#str(dedupe);
  }

  /** The encoded appends (a buffer to transfer) and their length; the writer starts afresh. */
  take(): { buffer: ArrayBuffer; length: number } {
    const taken = { buffer: this.#bytes.buffer as ArrayBuffer, length: this.#at };
    // The next one as large as this one needed (up to 4 MiB), so that a steady load never grows one.
    this.#bytes = fresh(Math.min(Math.max(this.#initial, this.#at), MAX_START));
    this.#view = new DataView(this.#bytes.buffer);
    this.#at = 0;
    this.#appends = 0;
    this.#records = 0;
    return taken;
  }

  #reserve(bytes: number): void {
    if (this.#at + bytes <= this.#bytes.length) return;
    let size = this.#bytes.length * 2;
    while (size < this.#at + bytes) size *= 2;
    const grown = fresh(size);
    grown.set(this.#bytes.subarray(0, this.#at));
    this.#bytes = grown;
    this.#view = new DataView(grown.buffer);
  }

  #u32(value: number): void {
    this.#reserve(4);
    this.#view.setUint32(this.#at, value, true);
    this.#at += 4;
  }

  #nullableStr(value: string | null): void {
    if (value === null) {
      this.#reserve(4);
      this.#view.setInt32(this.#at, -1, true);
      this.#at += 4;
    } else this.#str(value);
  }

  #str(value: string): void {
    const length = value.length;
    this.#reserve(4 + 3 * length);
    const bytes = this.#bytes;
    const start = this.#at + 4;
    // ASCII (ids, header names, topics) is copied here; anything else goes through the encoder.
    let i = 0;
    for (; i < length; i++) {
      const c = value.charCodeAt(i);
      if (c >= 0x80) break;
      bytes[start + i] = c;
    }
    const written = i === length ? length : encoder.encodeInto(value, bytes.subarray(start)).written;
    this.#view.setUint32(this.#at, written, true);
    this.#at = start + written;
  }
}

/** Header names decoded before (see `decodeAppends`). */
const names: string[] = [];

/** The appends `AppendWriter` encoded into `bytes`; record values are views into it. */
export function decodeAppends(bytes: Uint8Array): DecodedAppend[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const appends: DecodedAppend[] = [];
  let at = 0;
  const str = (): string => {
    const length = view.getUint32(at, true);
    at += 4;
    return text(length);
  };
  const nullableStr = (): string | null => {
    const length = view.getInt32(at, true);
    at += 4;
    return length < 0 ? null : text(length);
  };
  const latin1 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = (length: number): string => {
    const start = at;
    at += length;
    if (length <= 64) {
      // Short and ASCII (nearly always): copied as Latin-1, the same text for ASCII, without the decoder.
      for (let i = start; i < at; i++)
        if (bytes[i]! >= 0x80) return decoder.decode(bytes.subarray(start, at));
      return latin1.toString('latin1', start, at);
    }
    return decoder.decode(bytes.subarray(start, at));
  };
  /** A header name: the same few names on every record, so the string made for one is used again. */
  const name = (): string => {
    const length = view.getUint32(at, true);
    at += 4;
    for (const known of names) {
      if (known.length !== length) continue;
      let same = true;
      for (let i = 0; i < length && same; i++) same = bytes[at + i] === known.charCodeAt(i);
      if (same) {
        at += length;
        return known;
      }
    }
    const made = text(length);
    // Only ASCII names are kept (their byte length is their length); a few, against many distinct ones.
    if (names.length < 8 && made.length === length) names.push(made);
    return made;
  };
  while (at < bytes.length) {
    const id = view.getUint32(at, true);
    at += 4;
    const topic = str();
    const count = view.getUint32(at, true);
    at += 4;
    const records = new Array<LogRecord>(count);
    for (let r = 0; r < count; r++) {
      const timestamp = view.getFloat64(at, true);
      at += 8;
      const key = nullableStr();
      const headerCount = view.getUint16(at, true);
      at += 2;
      const headers: Record<string, string> = {};
      for (let h = 0; h < headerCount; h++) {
        const header = name();
        const value = str();
        // A header named __proto__ stays a header, as structured cloning kept it.
        if (header === '__proto__')
          Object.defineProperty(headers, header, {
            value,
            enumerable: true,
            writable: true,
            configurable: true,
          });
        else headers[header] = value;
      }
      const length = view.getUint32(at, true);
      at += 4;
      const value = bytes.subarray(at, at + length);
      at += length;
      records[r] = Number.isNaN(timestamp) ? { key, value, headers } : { key, value, headers, timestamp };
    }
    const flags = bytes[at++]!;
    const dedupe = flags & FLAG_DEDUPE ? str() : undefined;
    const positions = (flags & FLAG_NO_POSITIONS) === 0;
    appends.push(
      dedupe === undefined ? { id, topic, records, positions } : { id, topic, records, dedupe, positions },
    );
  }
  return appends;
}
