/**
 * The dead-letter queue of a pipeline: rejected records with their reason, stage, source position and
 * time, committed exactly once into an Iceberg table (`<namespace>._dlq`, queryable like any table) and
 * appended to the log topic `<pipeline>.dlq` for tools that consume it (at least once).
 */
import type { Catalog } from '../../catalog/catalog.ts';
import type { Log } from '../../log/log.ts';
import type { Positions, Sink, SinkBatch, SinkResult } from '../../core/pipeline/model.ts';
import type { Engine } from '../../iceberg/duckdb.ts';
import type { StructType } from '../../iceberg/types.ts';
import { IcebergSink, icebergSinkSchema } from './iceberg.ts';

export const DLQ_TABLE_NAME = '_dlq';

export const dlqSchema: StructType = {
  type: 'struct',
  fields: [
    { id: 1, name: 'pipeline', required: true, type: 'string' },
    {
      id: 2,
      name: 'stage',
      required: true,
      type: 'string',
      doc: 'Where the record failed: decode, a transform, or a sink.',
    },
    {
      id: 3,
      name: 'error',
      required: true,
      type: 'string',
      doc: 'Why, e.g. the JSON path and the rule that failed.',
    },
    {
      id: 4,
      name: 'payload',
      required: false,
      type: 'string',
      doc: 'The record as it was read (JSON text).',
    },
    { id: 5, name: 'topic', required: false, type: 'string' },
    { id: 6, name: 'partition', required: false, type: 'int' },
    { id: 7, name: 'offset', required: false, type: 'long' },
    { id: 8, name: 'key', required: false, type: 'string' },
    { id: 9, name: 'record_timestamp', required: false, type: 'timestamptz' },
    { id: 10, name: 'failed_at', required: true, type: 'timestamptz' },
  ],
};

export interface DlqSinkOptions {
  readonly pipeline: string;
  readonly topic: string;
  /** namespace.table of the DLQ table. */
  readonly table: string;
  readonly projectRoot: string;
  readonly log: Log;
  readonly catalog: () => Promise<Catalog>;
  readonly engine: () => Promise<Engine>;
}

export function dlqTopic(pipeline: string): string {
  return `${pipeline}.dlq`;
}

export class DlqSink implements Sink {
  readonly name = 'dlq';
  readonly #table: IcebergSink;
  readonly #options: DlqSinkOptions;

  constructor(options: DlqSinkOptions) {
    this.#options = options;
    this.#table = new IcebergSink({
      name: 'dlq',
      config: icebergSinkSchema.parse({
        type: 'iceberg',
        table: options.table,
        schema_policy: 'fail',
        partition: 'day(failed_at)',
      }),
      pipeline: options.pipeline,
      topic: options.topic,
      projectRoot: options.projectRoot,
      catalog: options.catalog,
      engine: options.engine,
      fixedSchema: dlqSchema,
    });
  }

  async open(): Promise<Positions> {
    await this.#options.log.ensureTopic(dlqTopic(this.#options.pipeline), { partitions: 1 });
    return this.#table.open();
  }

  async write(batch: SinkBatch): Promise<SinkResult> {
    if (batch.records.length > 0) {
      const encoder = new TextEncoder();
      await this.#options.log.append(
        dlqTopic(this.#options.pipeline),
        batch.records.map((r) => ({ key: r.key, value: encoder.encode(JSON.stringify(r.value)) })),
      );
    }
    return this.#table.write(batch);
  }

  async flush(): Promise<void> {
    await this.#table.flush();
  }

  async close(): Promise<void> {
    await this.#table.close();
  }
}
