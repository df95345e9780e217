/**
 * The column types of captured tables, as PostgreSQL declares them, for the sinks: what lets a column
 * added upstream (`ALTER TABLE … ADD COLUMN amount numeric(10, 2)`) reach an Iceberg table as
 * decimal(10, 2), as `tributary cdc schema` has it, and not as the string its JSON value looks like.
 *
 * Each shape of a table (its columns with their Iceberg types, `icebergTypeOf`) has an id, a hash of it.
 * The source appends a shape to the one-partition topic `<topic>.schemas` (key and value: the id and the
 * shape) before the first change record that has it, and every change record names its shape in the
 * header `cdc.schema` — a dozen bytes, where the types themselves would make a header as long as the row.
 * The cdc transform looks the id up here (reading the topic again when it meets one it does not know
 * yet, which the source wrote before the record) and hands the types to the sinks in memory
 * (core/pipeline/column-types.ts). A record whose id is not found (its schema topic removed) goes on
 * without them: its new columns' types are inferred from the values, as before.
 */
import { createHash } from 'node:crypto';
import type { Log } from '../../log/log.ts';
import { icebergTypeOf, type IcebergTypeJson, type PgType } from './values.ts';

export const SCHEMA_HEADER = 'cdc.schema';

export function schemaTopicOf(topic: string): string {
  return `${topic}.schemas`;
}

/** A table's columns in order, each with its Iceberg type (docs/tables.md notation). */
export type ColumnTypes = Readonly<Record<string, IcebergTypeJson>>;

/** The id of a shape: the same columns and types give the same id, in every session and process. */
export function schemaId(table: string, columnsJson: string): string {
  return createHash('sha256').update(`${table}\n${columnsJson}`).digest('base64url').slice(0, 12);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The shapes of a change topic, read from and (by its source) appended to its schema topic. */
export class SchemaTopic {
  readonly #log: Log;
  readonly #topic: string;
  /** Id → the columns' JSON text (what the cdc transform hands on). */
  readonly #columns = new Map<string, string>();
  #next = 0;
  #reading: Promise<void> | undefined;
  readonly #writing = new Map<string, Promise<void>>();

  /** `topic`: the change topic. */
  constructor(log: Log, topic: string) {
    this.#log = log;
    this.#topic = schemaTopicOf(topic);
  }

  /** The columns' JSON text of a shape read so far. */
  get(id: string): string | undefined {
    return this.#columns.get(id);
  }

  /**
   * Reads the shapes appended since the last read. Each call reads after the previous one ends (not
   * joining a read in flight, which may have begun before the shape its caller looks for was appended).
   */
  async refresh(): Promise<void> {
    const read = (this.#reading ?? Promise.resolve()).catch(() => undefined).then(() => this.#read());
    this.#reading = read;
    return read;
  }

  async #read(): Promise<void> {
    // ensureTopic, not describeTopic: a process knows the topics of the embedded log that existed when
    // it opened it, and the source may have made this one since (or has yet to: then it is empty).
    await this.#log.ensureTopic(this.#topic, { partitions: 1 });
    const [offsets] = await this.#log.offsets(this.#topic);
    if (!offsets) return;
    let next = Math.max(this.#next, offsets.start);
    while (next < offsets.end) {
      const records = await this.#log.read(this.#topic, 0, next, { maxRecords: 1000 });
      if (records.length === 0) break;
      for (const record of records) {
        const shape = JSON.parse(decoder.decode(record.value)) as { id?: unknown; columns?: unknown };
        if (typeof shape.id === 'string' && shape.columns && typeof shape.columns === 'object')
          this.#columns.set(shape.id, JSON.stringify(shape.columns));
      }
      next = records[records.length - 1]!.offset + 1;
    }
    this.#next = next;
  }

  /**
   * The source's part: the id of a table's shape, appended to the topic first if it is not there yet
   * (`refresh` first, once, to learn what is).
   */
  async put(table: string, columns: ColumnTypes): Promise<string> {
    const text = JSON.stringify(columns);
    const id = schemaId(table, text);
    if (this.#columns.has(id)) return id;
    let writing = this.#writing.get(id);
    if (!writing) {
      const value = encoder.encode(
        `{"id":${JSON.stringify(id)},"table":${JSON.stringify(table)},"columns":${text}}`,
      );
      writing = this.#log
        .append(this.#topic, [{ key: id, value }])
        .then(() => void this.#columns.set(id, text))
        .finally(() => this.#writing.delete(id));
      this.#writing.set(id, writing);
    }
    await writing;
    return id;
  }
}

/** The shape of columns of these names, PostgreSQL types and type modifiers. */
export function columnTypesOf(
  names: readonly string[],
  types: readonly PgType[],
  typeMods: readonly number[],
): ColumnTypes {
  // fromEntries: a column may be called __proto__.
  return Object.fromEntries(names.map((name, i) => [name, icebergTypeOf(types[i]!, typeMods[i] ?? -1)]));
}
