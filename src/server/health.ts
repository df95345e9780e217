/**
 * GET /readyz: ready only when the log and the catalog database answer, no pipeline has failed or
 * stalled (records waiting in its topic and no commit for `stallAfterMs`), and every source in the process
 * says it is healthy (a CDC source: streaming, not stalled past its `stall_threshold`, not failed), and the
 * ingest dedupe store can be written. The body names each component and what is wrong with it.
 */
import type { SqlDriver } from '../catalog/sql-driver.ts';
import { backlog, pipelineGroup, type PipelineRunner } from '../core/pipeline/runner.ts';
import type { Log } from '../log/log.ts';

export interface PipelineHandle {
  readonly runner: PipelineRunner;
  readonly topic: string;
}

/** A source running in this process (`tributary up`), as /readyz sees it. */
export interface SourceHandleForHealth {
  readonly name: string;
  status(): { readonly healthy: boolean; readonly detail: string };
}

export interface ReadinessOptions {
  readonly log: Log;
  readonly catalog?: SqlDriver;
  readonly pipelines?: () => readonly PipelineHandle[];
  readonly sources?: () => readonly SourceHandleForHealth[];
  /** Why the ingest dedupe store cannot be written right now (threaded-log.ts), if it cannot. */
  readonly dedupeFailure?: () => string | undefined;
  /** The server's extra HTTP threads (http-threads.ts), when it has some. */
  readonly httpThreads?: () => ComponentHealth;
  readonly stallAfterMs: number;
  /** A topic the server writes to: reading its end proves the log is open. */
  readonly probeTopic?: string;
  readonly startedAt: number;
  readonly timeoutMs?: number;
}

export interface ComponentHealth {
  readonly status: 'ok' | 'failed';
  readonly detail?: string;
}

export interface Readiness {
  readonly ready: boolean;
  readonly unhealthy: string[];
  readonly components: Record<string, ComponentHealth>;
}

function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    work,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export async function readiness(options: ReadinessOptions): Promise<Readiness> {
  const timeout = options.timeoutMs ?? 2000;
  const components: Record<string, ComponentHealth> = {};
  const checks: Array<Promise<void>> = [];
  checks.push(
    (async () => {
      try {
        await withTimeout(
          (async () => {
            await options.log.listTopics();
            if (options.probeTopic) {
              const offsets = await options.log.offsets(options.probeTopic);
              const first = offsets[0];
              if (first)
                await options.log.read(options.probeTopic, first.partition, first.end, { maxRecords: 1 });
            }
          })(),
          timeout,
          'the log',
        );
        components.log = { status: 'ok' };
      } catch (error) {
        components.log = { status: 'failed', detail: message(error) };
      }
    })(),
  );
  if (options.catalog) {
    const catalog = options.catalog;
    checks.push(
      (async () => {
        try {
          await withTimeout(catalog.query('select 1 as ok'), timeout, 'the catalog database');
          components.catalog = { status: 'ok' };
        } catch (error) {
          components.catalog = { status: 'failed', detail: message(error) };
        }
      })(),
    );
  }
  for (const { runner, topic } of options.pipelines?.() ?? []) {
    checks.push(
      (async () => {
        const name = `pipeline ${runner.name}`;
        if (runner.status === 'failed') {
          components[name] = { status: 'failed', detail: `failed: ${message(runner.error)}` };
          return;
        }
        if (runner.status === 'stopping' || runner.status === 'stopped') {
          components[name] = { status: 'failed', detail: runner.status };
          return;
        }
        try {
          const [offsets, committed] = await withTimeout(
            Promise.all([
              options.log.offsets(topic),
              options.log.committedOffsets(pipelineGroup(runner.name), topic),
            ]),
            timeout,
            'the log',
          );
          let lag = offsets.reduce(
            (sum, o) => sum + Math.max(0, o.end - (committed.get(o.partition) ?? o.start)),
            0,
          );
          const since = Math.max(runner.lastCommitAt, options.startedAt);
          const idle = Date.now() - since;
          // Offsets that hold no record (see `backlog`) are not waiting: looked at before calling it stalled.
          if (lag > 0 && idle > options.stallAfterMs)
            lag = (
              await withTimeout(
                backlog(options.log, topic, (p) => committed.get(p)),
                timeout,
                'the log',
              )
            ).records;
          if (lag > 0 && idle > options.stallAfterMs) {
            components[name] = {
              status: 'failed',
              detail: `stalled: ${lag} record(s) waiting and no commit for ${Math.round(idle / 1000)} s`,
            };
          } else {
            components[name] = { status: 'ok', detail: `${runner.status}, ${lag} record(s) behind` };
          }
        } catch (error) {
          components[name] = { status: 'failed', detail: message(error) };
        }
      })(),
    );
  }
  for (const source of options.sources?.() ?? []) {
    try {
      const { healthy, detail } = source.status();
      components[`source ${source.name}`] = { status: healthy ? 'ok' : 'failed', detail };
    } catch (error) {
      components[`source ${source.name}`] = { status: 'failed', detail: message(error) };
    }
  }
  if (options.dedupeFailure) {
    const failure = options.dedupeFailure();
    components['dedupe store'] =
      failure === undefined
        ? { status: 'ok' }
        : {
            status: 'failed',
            detail: `cannot write event ids or Idempotency-Key answers to disk (retrying; they are kept in memory meanwhile): ${failure}`,
          };
  }
  if (options.httpThreads) components['http threads'] = options.httpThreads();
  await Promise.all(checks);
  const unhealthy = Object.entries(components)
    .filter(([, health]) => health.status !== 'ok')
    .map(([name]) => name);
  return { ready: unhealthy.length === 0, unhealthy, components };
}
