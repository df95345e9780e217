/**
 * `dedupe`: drops a record whose key was already seen within the window, measured on record timestamps
 * from the first record of that key. The keys live in memory only: a restart forgets them, so records
 * replayed after a restart pass again — sinks in upsert mode are the durable dedupe.
 */
import { z } from 'zod';
import type { ComponentDefinition } from '../../core/pipeline/components.ts';
import type { PipelineRecord, Transform } from '../../core/pipeline/model.ts';
import { duration } from '../../core/config/units.ts';
import { fieldPath, getField, hasField, parseFieldPath, type FieldPath } from '../shared/field-path.ts';

// Also the `type` field's description: the generated reference shows that one.
const SUMMARY =
  'Drops a record whose key was seen within the window. Keys are kept in memory only: a restart ' +
  'forgets them; for durable deduplication write to a sink in upsert mode.';

const schema = z
  .strictObject({
    type: z.literal('dedupe').describe(SUMMARY),
    key: z
      .array(fieldPath('A field of the key.'))
      .min(1)
      .describe('Fields that together identify a record. Records missing any of them are never dropped.'),
    window: duration('How long after the first record of a key (by record timestamp) a repeat is dropped.'),
    max_keys: z
      .number()
      .int()
      .min(1)
      .default(1_000_000)
      .describe(
        'Keys remembered at most (memory grows with them); beyond it the oldest are forgotten first.',
      ),
  })
  .describe(SUMMARY);

/** The first record of a key still in the window. */
interface Seen {
  readonly timestamp: number;
  /** Where that record came from: the same record offered again (a retried batch) is not a repeat. */
  readonly partition: number;
  readonly offset: number;
  readonly ordinal: number;
}

export const dedupeTransform: ComponentDefinition<'transform', typeof schema> = {
  kind: 'transform',
  type: 'dedupe',
  schema,
  async create(config) {
    return new DedupeTransform(config.key.map(parseFieldPath), config.window, config.max_keys);
  },
};

export class DedupeTransform implements Transform {
  readonly name = 'dedupe';
  readonly preservesValues = true;
  readonly #key: readonly FieldPath[];
  readonly #window: number;
  readonly #maxKeys: number;
  /** Key → its first record; insertion order is roughly timestamp order, oldest first. */
  readonly #seen = new Map<string, Seen>();
  #latest = -Infinity;

  constructor(key: readonly FieldPath[], windowMs: number, maxKeys: number) {
    this.#key = key;
    this.#window = windowMs;
    this.#maxKeys = maxKeys;
  }

  get size(): number {
    return this.#seen.size;
  }

  async process(records: readonly PipelineRecord[]) {
    const passed: PipelineRecord[] = [];
    // Records a map fanned out share a position; their ordinal tells them apart.
    const ordinals = new Map<string, number>();
    for (const record of records) {
      const position = `${record.partition}:${record.offset}`;
      const ordinal = ordinals.get(position) ?? 0;
      ordinals.set(position, ordinal + 1);
      if (this.#isRepeat(record, ordinal)) continue;
      passed.push(record);
    }
    this.#forgetExpired();
    return { records: passed, rejected: [] };
  }

  #isRepeat(record: PipelineRecord, ordinal: number): boolean {
    const key = this.#keyOf(record);
    if (key === undefined) return false;
    this.#latest = Math.max(this.#latest, record.timestamp);
    const seen = this.#seen.get(key);
    if (seen && Math.abs(record.timestamp - seen.timestamp) < this.#window) {
      const sameRecord =
        seen.partition === record.partition && seen.offset === record.offset && seen.ordinal === ordinal;
      return !sameRecord;
    }
    // New, or outside the window: this record starts the window of its key.
    this.#seen.delete(key);
    this.#seen.set(key, {
      timestamp: record.timestamp,
      partition: record.partition,
      offset: record.offset,
      ordinal,
    });
    if (this.#seen.size > this.#maxKeys) {
      const oldest = this.#seen.keys().next();
      if (!oldest.done) this.#seen.delete(oldest.value);
    }
    return false;
  }

  /** The key as text, or undefined when a key field is missing. */
  #keyOf(record: PipelineRecord): string | undefined {
    const parts: unknown[] = [];
    for (const path of this.#key) {
      if (!hasField(record.value, path)) return undefined;
      parts.push(getField(record.value, path));
    }
    return JSON.stringify(parts);
  }

  /** Frees keys whose window ended before the newest timestamp seen, oldest first. */
  #forgetExpired(): void {
    for (const [key, seen] of this.#seen) {
      if (this.#latest - seen.timestamp < this.#window) break;
      this.#seen.delete(key);
    }
  }
}
