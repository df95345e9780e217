/**
 * The appends the server thread hands to the log worker (threaded-log.ts → log-worker.ts), encoded into
 * one buffer that is transferred, not cloned. The records are in the layout of the log's record batches
 * already (record-batch.ts `writeRecords`): the worker copies them into its batches as they are, without
 * an object per record on either side. Structured cloning would copy every record object, header object
 * and string one by one, and the whole backing store of every Buffer a value views.
 *
 * Layout (little-endian), per append: id u32, topic str, flags u8 (1: drop the duplicates of ids the
 * stream accepted; 2: some record has a key; 4: answer without the records' positions), with 1 the
 * stream str, record count u32, highest timestamp f64, values' length f64, records' length u32 and the
 * records; with 1, then, per record the fingerprint of the id it is deduplicated on (`dedupeIdOf`,
 * id-index.ts `fingerprint`) as three u32, all 0 for none. Fingerprints rather than ids: the worker
 * commits one round at a time, so what it does per record is on every request's path, while this thread
 * hashes alongside it — and it hashes the very text the record's headers keep. A str is a u32 byte length
 * and UTF-8.
 */
import type { LogRecord } from '../log/log.ts';
import { LayoutWriter, writeRecords, writeString, type EncodedRecords } from '../log/record-batch.ts';
import { dedupeIdOf } from './dedupe.ts';
import { fingerprint, print, seedOf } from './id-index.ts';

export interface DecodedAppend {
  readonly id: number;
  readonly topic: string;
  /** Views into the buffer received. */
  readonly records: EncodedRecords;
  /**
   * The stream whose event ids the records carry: the worker drops the duplicates among them
   * (log-worker.ts), by `prints` (words 0–2 of each record's id's fingerprint, all 0 for a record that is
   * not deduplicated).
   */
  readonly dedupe?: { readonly stream: string; readonly prints: Uint32Array };
  /** False when the sender does not need the records' positions. */
  readonly positions: boolean;
}

/** A buffer of its own (transferable, unlike a pooled one), not zero-filled: every byte sent is written. */
function fresh(size: number): Buffer {
  return Buffer.allocUnsafeSlow(size);
}

const FLAG_DEDUPE = 1;
const FLAG_KEYED = 2;
const FLAG_NO_POSITIONS = 4;
const MAX_START = 4 * 1024 * 1024;
const decoder = new TextDecoder();

export class AppendWriter extends LayoutWriter {
  #appends = 0;
  #records = 0;
  readonly #initial: number;

  constructor(initial = 16 * 1024) {
    super(initial, fresh);
    this.#initial = initial;
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
   * Encodes one append (`positions` false: its answer need not carry the records' positions; `dedupe`:
   * the stream whose duplicates are dropped); on an error (a record it cannot encode) nothing of it is
   * kept.
   */
  write(id: number, topic: string, records: readonly LogRecord[], dedupe?: string, positions = true): void {
    const start = this.at;
    try {
      this.#write(id, topic, records, dedupe, positions);
    } catch (error) {
      this.at = start;
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
    this.reserve(1);
    const flagsAt = this.at++;
    if (dedupe !== undefined) this.#str(dedupe);
    this.reserve(24);
    const summaryAt = this.at;
    this.at += 24;
    const encoded = writeRecords(this, records, Date.now());
    const view = this.view;
    view.setUint32(summaryAt, encoded.count, true);
    view.setFloat64(summaryAt + 4, encoded.maxTimestamp, true);
    view.setFloat64(summaryAt + 12, encoded.valueBytes, true);
    view.setUint32(summaryAt + 20, this.at - summaryAt - 24, true);
    this.bytes[flagsAt] =
      (dedupe === undefined ? 0 : FLAG_DEDUPE) |
      (encoded.keyed ? FLAG_KEYED : 0) |
      (positions ? 0 : FLAG_NO_POSITIONS);
    if (dedupe !== undefined) {
      const seed = seedOf(dedupe);
      this.reserve(12 * records.length);
      const view = this.view;
      let at = this.at;
      for (const record of records) {
        const eventId = dedupeIdOf(record.headers) as unknown;
        // (Headers that are not strings are not stored: neither is such an id.)
        if (typeof eventId === 'string') fingerprint(seed, eventId);
        else print.fill(0, 0, 3);
        view.setUint32(at, print[0]!, true);
        view.setUint32(at + 4, print[1]!, true);
        view.setUint32(at + 8, print[2]!, true);
        at += 12;
      }
      this.at = at;
    }
  }

  /** The encoded appends (a buffer to transfer) and their length; the writer starts afresh. */
  take(): { buffer: ArrayBuffer; length: number } {
    const taken = { buffer: this.bytes.buffer as ArrayBuffer, length: this.at };
    // The next one as large as this one needed (up to 4 MiB), so that a steady load never grows one.
    this.bytes = fresh(Math.min(Math.max(this.#initial, this.at), MAX_START));
    this.view = new DataView(this.bytes.buffer);
    this.at = 0;
    this.#appends = 0;
    this.#records = 0;
    return taken;
  }

  #u32(value: number): void {
    this.reserve(4);
    this.view.setUint32(this.at, value, true);
    this.at += 4;
  }

  #str(value: string): void {
    this.reserve(4 + value.length);
    this.at = writeString(this, this.at, value);
  }
}

/** The appends `AppendWriter` encoded into `bytes`; their records are views into it. */
export function decodeAppends(bytes: Uint8Array): DecodedAppend[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const latin1 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const appends: DecodedAppend[] = [];
  let at = 0;
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
  const str = (): string => {
    const length = view.getUint32(at, true);
    at += 4;
    return text(length);
  };
  while (at < bytes.length) {
    const id = view.getUint32(at, true);
    at += 4;
    const topic = str();
    const flags = bytes[at++]!;
    const stream = flags & FLAG_DEDUPE ? str() : undefined;
    const count = view.getUint32(at, true);
    const maxTimestamp = view.getFloat64(at + 4, true);
    const valueBytes = view.getFloat64(at + 12, true);
    const length = view.getUint32(at + 20, true);
    at += 24;
    const records: EncodedRecords = {
      count,
      bytes: bytes.subarray(at, at + length),
      keyed: (flags & FLAG_KEYED) !== 0,
      maxTimestamp,
      valueBytes,
    };
    at += length;
    const positions = (flags & FLAG_NO_POSITIONS) === 0;
    if (stream === undefined) {
      appends.push({ id, topic, records, positions });
      continue;
    }
    const prints = new Uint32Array(3 * count);
    for (let i = 0; i < prints.length; i++, at += 4) prints[i] = view.getUint32(at, true);
    appends.push({ id, topic, records, dedupe: { stream, prints }, positions });
  }
  return appends;
}
