/**
 * Prometheus metrics (prom-client) for pipelines. One registry per process; the server exposes it at
 * /metrics. Labels are the pipeline and the stage or sink — never a record value.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface PipelineMetrics {
  readonly registry: Registry;
  readonly recordsIn: Counter<'pipeline'>;
  readonly recordsOut: Counter<'pipeline' | 'sink'>;
  readonly recordsRejected: Counter<'pipeline' | 'stage'>;
  readonly batchRecords: Histogram<'pipeline'>;
  readonly commitSeconds: Histogram<'pipeline' | 'sink'>;
  readonly lagRecords: Gauge<'pipeline'>;
  readonly lagSeconds: Gauge<'pipeline'>;
  readonly lastCommitTimestamp: Gauge<'pipeline'>;
  readonly sinkRetries: Counter<'pipeline' | 'sink'>;
  readonly up: Gauge<'pipeline'>;
}

export function createPipelineMetrics(registry: Registry = new Registry()): PipelineMetrics {
  return {
    registry,
    recordsIn: new Counter({
      name: 'tributary_pipeline_records_in_total',
      help: 'Records read from the source topic.',
      labelNames: ['pipeline'],
      registers: [registry],
    }),
    recordsOut: new Counter({
      name: 'tributary_pipeline_records_out_total',
      help: 'Records committed by a sink.',
      labelNames: ['pipeline', 'sink'],
      registers: [registry],
    }),
    recordsRejected: new Counter({
      name: 'tributary_pipeline_records_dlq_total',
      help: 'Records sent to the dead-letter queue, by the stage that rejected them.',
      labelNames: ['pipeline', 'stage'],
      registers: [registry],
    }),
    batchRecords: new Histogram({
      name: 'tributary_pipeline_batch_records',
      help: 'Records per batch.',
      labelNames: ['pipeline'],
      buckets: [1, 10, 100, 1000, 10_000, 100_000],
      registers: [registry],
    }),
    commitSeconds: new Histogram({
      name: 'tributary_pipeline_commit_seconds',
      help: 'Time for a sink to write and commit a batch.',
      labelNames: ['pipeline', 'sink'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    lagRecords: new Gauge({
      name: 'tributary_pipeline_lag_records',
      help: 'Records in the source topic not yet committed by every sink.',
      labelNames: ['pipeline'],
      registers: [registry],
    }),
    lagSeconds: new Gauge({
      name: 'tributary_pipeline_lag_seconds',
      help: 'Age of the oldest record not yet committed by every sink (0 when caught up).',
      labelNames: ['pipeline'],
      registers: [registry],
    }),
    lastCommitTimestamp: new Gauge({
      name: 'tributary_pipeline_last_commit_timestamp_seconds',
      help: 'When the pipeline last committed a batch (Unix time).',
      labelNames: ['pipeline'],
      registers: [registry],
    }),
    sinkRetries: new Counter({
      name: 'tributary_pipeline_sink_retries_total',
      help: 'Retryable sink failures, retried with backoff.',
      labelNames: ['pipeline', 'sink'],
      registers: [registry],
    }),
    up: new Gauge({
      name: 'tributary_pipeline_up',
      help: '1 while the pipeline runs, 0 when it stopped or failed.',
      labelNames: ['pipeline'],
      registers: [registry],
    }),
  };
}
