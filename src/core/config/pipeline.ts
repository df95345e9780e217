/**
 * `pipelines/<name>.yaml`: one pipeline — a source topic, ordered transforms, one or more sinks, its
 * dead-letter queue and batching. The file name (without `.yaml`) is the pipeline's name. The schemas of
 * transforms and sinks come from the registered components (core/pipeline/components.ts).
 */
import { z } from 'zod';
import { componentUnion, type SinkDefinition, type TransformDefinition } from '../pipeline/components.ts';
import { byteSize, duration } from './units.ts';

export const PIPELINES_DIR = 'pipelines';
export const PIPELINE_NAME = /^[a-z][a-z0-9_-]{0,62}$/;

const topicSource = z
  .strictObject({
    type: z
      .literal('topic')
      .describe('Reads a topic of the log (HTTP streams and CDC sources write into topics).'),
    topic: z.string().min(1).describe('Name of the topic.'),
    start: z
      .enum(['earliest', 'latest'])
      .default('earliest')
      .describe(
        'Where a pipeline with no committed position starts: the oldest record kept, or only new ones.',
      ),
  })
  .describe('Where records come from.');

const dlq = z
  .strictObject({
    table: z
      .string()
      .optional()
      .describe(
        'Iceberg table of rejected records (default: `_dlq` in the namespace of the first Iceberg sink, else `tributary._dlq`).',
      ),
    max: z
      .number()
      .int()
      .nonnegative()
      .default(10_000)
      .describe(
        'Stop the pipeline, loudly, once this many records went to the DLQ since it started (0: no limit).',
      ),
    max_rate: z
      .number()
      .min(0)
      .max(1)
      .optional()
      .describe(
        'Stop the pipeline when more than this fraction of a batch of at least 100 records is rejected.',
      ),
  })
  .prefault({})
  .describe(
    'The dead-letter queue: where records that fail validation, a transform or a sink go, with their reason.',
  );

const batch = z
  .strictObject({
    max_records: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(10_000)
      .describe('Records per batch at most.'),
    // A pipeline holds about two batches (one committing, the next read ahead), and DuckDB stages one:
    // this bounds its memory (docs/operations.md), whatever the backlog.
    max_bytes: byteSize(
      'Bytes of record values per batch at most. With `interval`, it bounds memory: a pipeline holds about two batches.',
    ).default(8 * 1024 * 1024),
    interval: duration('How long to wait for a batch to fill before processing what arrived.').default(1000),
  })
  .prefault({})
  .describe(
    'How records are grouped: each batch goes through the transforms and is committed by every sink.',
  );

export interface PipelineComponents {
  readonly transforms: readonly TransformDefinition[];
  readonly sinks: readonly SinkDefinition[];
}

export function pipelineSchemaFor(components: PipelineComponents) {
  return z
    .strictObject({
      description: z.string().optional().describe('What the pipeline is for.'),
      source: topicSource,
      transforms: z
        .array(componentUnion(components.transforms))
        .default([])
        .describe('Applied in order to every batch.'),
      sinks: z
        .array(componentUnion(components.sinks))
        .min(1)
        .describe('Where the records go; each commits exactly once.'),
      dlq,
      batch,
      concurrency: z
        .number()
        .int()
        .min(1)
        .max(64)
        .default(1)
        .describe(
          'Lanes of one worker: the source partitions are split among them (partition p goes to lane p mod ' +
            'concurrency), and each lane reads, transforms and writes its own batches, in order per partition. ' +
            "Sinks commit one lane's batch at a time; more lanes than partitions leave some idle.",
        ),
      shutdown_timeout: duration(
        'On SIGTERM/SIGINT: how long to finish and commit the batch in flight.',
      ).default(30_000),
    })
    .describe('A pipeline: source → transforms → sinks, exactly once.');
}

/** The pipeline schema with components accepted as any object with a `type` (validated when built). */
export const genericPipelineSchema = pipelineSchemaFor({ transforms: [], sinks: [] });

export interface PipelineConfig {
  readonly description?: string;
  readonly source: z.output<typeof topicSource>;
  readonly transforms: ReadonlyArray<{ readonly type: string } & Record<string, unknown>>;
  readonly sinks: ReadonlyArray<{ readonly type: string } & Record<string, unknown>>;
  readonly dlq: z.output<typeof dlq>;
  readonly batch: z.output<typeof batch>;
  readonly concurrency: number;
  readonly shutdown_timeout: number;
}
