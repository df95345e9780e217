/**
 * The server's Prometheus metrics, in the process's one registry (shared with the pipelines' metrics from
 * core/metrics.ts). Labels are routes, configured stream names and status codes — never a value a client
 * chose: an unknown stream is counted as "-".
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface ServerMetrics {
  readonly requests: Counter<'route' | 'stream' | 'status'>;
  readonly requestSeconds: Histogram<'route' | 'stream'>;
  readonly eventsAccepted: Counter<'stream'>;
  readonly eventsDuplicate: Counter<'stream'>;
  readonly eventsDlq: Counter<'stream'>;
  readonly eventsRejected: Counter<'stream'>;
  readonly appendSeconds: Histogram<'stream'>;
  readonly pendingAppends: Gauge;
  readonly pendingBytes: Gauge;
  /**
   * What the two pending gauges report, read when metrics are scraped rather than set on every request
   * (each update of a prom-client metric hashes its labels).
   */
  pending: () => { readonly appends: number; readonly bytes: number };
  readonly dedupeIds: Gauge<'state'>;
  /** What the dedupe gauge reports, read when metrics are scraped (dedupe.ts `stats`). */
  dedupe: () => { readonly ids: number; readonly bytes: number; readonly forgotEarly: number };
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export function createServerMetrics(registry: Registry): ServerMetrics {
  const metrics: ServerMetrics = {
    pending: () => ({ appends: 0, bytes: 0 }),
    dedupe: () => ({ ids: 0, bytes: 0, forgotEarly: 0 }),
    requests: new Counter({
      name: 'tributary_http_requests_total',
      help: 'HTTP requests answered, by route, stream and status code.',
      labelNames: ['route', 'stream', 'status'],
      registers: [registry],
    }),
    requestSeconds: new Histogram({
      name: 'tributary_http_request_duration_seconds',
      help: 'Time from receiving a request to answering it.',
      labelNames: ['route', 'stream'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    eventsAccepted: new Counter({
      name: 'tributary_ingest_events_accepted_total',
      help: 'Events appended to their stream topic (acknowledged with 202 once durable).',
      labelNames: ['stream'],
      registers: [registry],
    }),
    eventsDuplicate: new Counter({
      name: 'tributary_ingest_events_duplicate_total',
      help: 'Events dropped as duplicates of an id accepted within the dedupe window.',
      labelNames: ['stream'],
      registers: [registry],
    }),
    eventsDlq: new Counter({
      name: 'tributary_ingest_events_dlq_total',
      help: 'Invalid events sent to the stream DLQ topic (on_invalid: dlq).',
      labelNames: ['stream'],
      registers: [registry],
    }),
    eventsRejected: new Counter({
      name: 'tributary_ingest_events_rejected_total',
      help: 'Events in requests refused with 400 because some were invalid (on_invalid: reject).',
      labelNames: ['stream'],
      registers: [registry],
    }),
    appendSeconds: new Histogram({
      name: 'tributary_ingest_log_append_seconds',
      help: "Time for the log to make a request's events durable.",
      labelNames: ['stream'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    pendingAppends: new Gauge({
      name: 'tributary_ingest_pending_appends',
      help: 'Requests waiting for the log (backpressure starts at server.max_pending_appends).',
      registers: [registry],
      collect() {
        this.set(metrics.pending().appends);
      },
    }),
    pendingBytes: new Gauge({
      name: 'tributary_ingest_pending_bytes',
      help: 'Bytes of events waiting for the log (backpressure starts at server.max_pending_bytes).',
      registers: [registry],
      collect() {
        this.set(metrics.pending().bytes);
      },
    }),
    dedupeIds: new Gauge({
      name: 'tributary_ingest_dedupe_ids',
      help:
        'Event ids remembered for deduplication (state="held", in memory) and those forgotten before their ' +
        'window was over because server.dedupe_max_ids was reached (state="forgotten_early", since the start).',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        const stats = metrics.dedupe();
        this.set({ state: 'held' }, stats.ids);
        this.set({ state: 'forgotten_early' }, stats.forgotEarly);
      },
    }),
  };
  return metrics;
}
