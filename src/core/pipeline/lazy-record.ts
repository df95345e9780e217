/**
 * A record that keeps its value as the bytes read from the log and decodes it only when read (once).
 * The runner hands sinks these when every sink writes from `raw` (`Sink.usesRaw`): a batch then holds
 * its bytes, not a decoded object per record, which halves its memory and spares the garbage collector
 * a batch of objects that would otherwise live long enough to be promoted.
 */
import { parseJsonExact } from '../json.ts';
import type { PipelineRecord } from './model.ts';

const decoder = new TextDecoder();

export class LazyRecord implements PipelineRecord {
  readonly key: string | null;
  readonly partition: number;
  readonly offset: number;
  readonly timestamp: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly raw: Uint8Array;
  readonly fields: readonly string[];
  #value: Record<string, unknown> | undefined;

  /** `record` must have been decoded from `raw` and `fields` be its value's keys. */
  constructor(record: PipelineRecord, raw: Uint8Array, fields: readonly string[]) {
    this.key = record.key;
    this.partition = record.partition;
    this.offset = record.offset;
    this.timestamp = record.timestamp;
    this.headers = record.headers;
    this.raw = raw;
    this.fields = fields;
  }

  get value(): Record<string, unknown> {
    // raw decoded to a JSON object once already: it does again.
    this.#value ??= parseJsonExact(decoder.decode(this.raw)) as Record<string, unknown>;
    return this.#value;
  }
}
