/**
 * Prometheus metrics of CDC sources (prom-client), labelled by source and, where it makes sense, table.
 * Created once per registry, so several sources share them.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

export interface CdcMetrics {
  readonly changes: Counter<'source' | 'table' | 'op'>;
  readonly lagBytes: Gauge<'source'>;
  readonly retainedBytes: Gauge<'source'>;
  readonly lagSeconds: Gauge<'source'>;
  readonly confirmedLsn: Gauge<'source'>;
  readonly connected: Gauge<'source'>;
  readonly reconnects: Counter<'source'>;
  readonly snapshotRows: Gauge<'source' | 'table'>;
  readonly snapshotRowsEstimated: Gauge<'source' | 'table'>;
  readonly snapshotDone: Gauge<'source' | 'table'>;
  readonly toastLookups: Counter<'source' | 'table'>;
}

const byRegistry = new WeakMap<Registry, CdcMetrics>();

export function cdcMetrics(registry: Registry): CdcMetrics {
  const existing = byRegistry.get(registry);
  if (existing) return existing;
  const registers = [registry];
  const metrics: CdcMetrics = {
    changes: new Counter({
      name: 'tributary_cdc_changes_total',
      help: 'Row changes written to the log (snapshot rows included, as op="snapshot").',
      labelNames: ['source', 'table', 'op'],
      registers,
    }),
    lagBytes: new Gauge({
      name: 'tributary_cdc_lag_bytes',
      help: "Bytes of WAL between the server's current position and the slot's confirmed LSN.",
      labelNames: ['source'],
      registers,
    }),
    retainedBytes: new Gauge({
      name: 'tributary_cdc_slot_retained_bytes',
      help: "Bytes of WAL the server keeps for the slot (current position minus the slot's restart LSN).",
      labelNames: ['source'],
      registers,
    }),
    lagSeconds: new Gauge({
      name: 'tributary_cdc_lag_seconds',
      help: 'Seconds between a change committing in PostgreSQL (or a heartbeat) and it reaching the log.',
      labelNames: ['source'],
      registers,
    }),
    confirmedLsn: new Gauge({
      name: 'tributary_cdc_confirmed_lsn',
      help: 'The LSN last confirmed to PostgreSQL (as a number).',
      labelNames: ['source'],
      registers,
    }),
    connected: new Gauge({
      name: 'tributary_cdc_connected',
      help: '1 while the replication stream is connected.',
      labelNames: ['source'],
      registers,
    }),
    reconnects: new Counter({
      name: 'tributary_cdc_reconnects_total',
      help: 'Times the source reconnected after losing PostgreSQL.',
      labelNames: ['source'],
      registers,
    }),
    snapshotRows: new Gauge({
      name: 'tributary_cdc_snapshot_rows',
      help: 'Rows copied by the snapshot (or backfill) of a table so far.',
      labelNames: ['source', 'table'],
      registers,
    }),
    snapshotRowsEstimated: new Gauge({
      name: 'tributary_cdc_snapshot_rows_estimated',
      help: "Rows the snapshot of a table expects to copy (the planner's estimate).",
      labelNames: ['source', 'table'],
      registers,
    }),
    snapshotDone: new Gauge({
      name: 'tributary_cdc_snapshot_done',
      help: '1 once the snapshot of a table has finished.',
      labelNames: ['source', 'table'],
      registers,
    }),
    toastLookups: new Counter({
      name: 'tributary_cdc_toast_lookups_total',
      help: 'Unchanged TOASTed values read back from the table because the update did not carry the old row (set REPLICA IDENTITY FULL).',
      labelNames: ['source', 'table'],
      registers,
    }),
  };
  byRegistry.set(registry, metrics);
  return metrics;
}
