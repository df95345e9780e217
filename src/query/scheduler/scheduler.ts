/**
 * The scheduler that `tributary up` runs: models on their cron schedules or `after:` triggers, and the
 * maintenance jobs of models/schedule.yaml, with
 *  - retries with exponential backoff (`backoff`, doubled each time up to `max_backoff`, ±25% jitter);
 *  - a timeout per attempt (the job is interrupted: DuckDB work stops, nothing half-committed);
 *  - an SLA: a run still going after `sla` raises an alert at once, and is recorded as a miss;
 *  - a concurrency limit, and never two runs of one job at once;
 *  - a run history in the catalog database (history.ts) and alerts by webhook (alerts.ts).
 *
 *   const scheduler = await startScheduler(project, { logger, metrics: registry, signal });
 *   scheduler.status();   // jobs, next run times, last runs
 *   await scheduler.stop();
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Catalog } from '../../catalog/catalog.ts';
import { parseTableIdentifier } from '../../catalog/identifier.ts';
import { openCatalog, projectCatalogSettings, resolveCatalogUri } from '../../catalog/open.ts';
import { openSqlDriver, type SqlDriver } from '../../catalog/sql-driver.ts';
import { isTributaryError, TributaryError } from '../../errors.ts';
import { loadModels, type ModelProject } from '../models/project.ts';
import { alertText, postWebhook, type AlertEvent } from './alerts.ts';
import { nextRun } from './cron.ts';
import { RunHistory, type RunRecord, type RunTrigger } from './history.ts';
import { executeJob, findJob, isRetryable, jobsOf, type JobDefinition } from './jobs.ts';

/** What the scheduler needs of a project (core's `Project` has it). */
export interface SchedulerProject {
  readonly root: string;
  readonly platform: {
    readonly project?: string;
    readonly warehouse: string;
    readonly catalog: { readonly name: string; readonly uri: string };
    readonly log?: { readonly path?: string };
  };
}

export interface SchedulerOptions {
  /** The project's catalog; opened (and closed on stop) when not given. */
  readonly catalog?: Catalog;
  readonly logger?: Logger;
  /** Registry for the job metrics (tributary_job_*); the server exposes it at /metrics. */
  readonly metrics?: Registry;
  /** Stops the scheduler when aborted (like `stop()`). */
  readonly signal?: AbortSignal;
  /** The models; read from `<root>/models` when not given. */
  readonly models?: ModelProject;
  /** How often due jobs are looked for; default 1 s. */
  readonly tickMs?: number;
}

export interface JobStatus {
  readonly name: string;
  readonly kind: string;
  readonly schedule?: string;
  readonly after?: readonly string[];
  readonly state: 'idle' | 'queued' | 'running' | 'retrying';
  readonly nextRunAt?: string;
  readonly lastRun?: { readonly id: string; readonly status: string; readonly startedAt: string };
}

export interface SchedulerStatus {
  readonly running: boolean;
  readonly concurrency: number;
  readonly active: number;
  readonly queued: number;
  readonly jobs: readonly JobStatus[];
}

export interface SchedulerHandle {
  /** Stops starting jobs, interrupts running ones, and waits for them to end. */
  stop(): Promise<void>;
  status(): SchedulerStatus;
  /** Runs a job now (outside its schedule); resolves to its final run record. */
  trigger(job: string): Promise<RunRecord>;
  /** Resolves when the scheduler has stopped. */
  readonly stopped: Promise<void>;
}

interface JobMetrics {
  readonly runs: Counter<'job' | 'status'>;
  readonly duration: Histogram<'job'>;
  readonly slaMisses: Counter<'job'>;
  readonly running: Gauge<'job'>;
}

function jobMetrics(registry: Registry | undefined): JobMetrics | undefined {
  if (!registry) return undefined;
  const existing = <T>(name: string) => registry.getSingleMetric(name) as T | undefined;
  return {
    runs:
      existing<Counter<'job' | 'status'>>('tributary_job_runs_total') ??
      new Counter({
        name: 'tributary_job_runs_total',
        help: 'Job attempts ended, by status (succeeded, failed, timed_out).',
        labelNames: ['job', 'status'],
        registers: [registry],
      }),
    duration:
      existing<Histogram<'job'>>('tributary_job_duration_seconds') ??
      new Histogram({
        name: 'tributary_job_duration_seconds',
        help: 'Duration of job attempts.',
        labelNames: ['job'],
        buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600],
        registers: [registry],
      }),
    slaMisses:
      existing<Counter<'job'>>('tributary_job_sla_misses_total') ??
      new Counter({
        name: 'tributary_job_sla_misses_total',
        help: 'Runs that took longer than their SLA.',
        labelNames: ['job'],
        registers: [registry],
      }),
    running:
      existing<Gauge<'job'>>('tributary_job_running') ??
      new Gauge({
        name: 'tributary_job_running',
        help: '1 while a job runs.',
        labelNames: ['job'],
        registers: [registry],
      }),
  };
}

export interface JobRunnerOptions {
  readonly catalog: Catalog;
  readonly models: ModelProject;
  readonly history: RunHistory;
  readonly logger?: Logger;
  readonly metrics?: Registry;
  readonly projectName?: string;
  /** Aborting it interrupts running attempts and cancels backoff waits. */
  readonly signal?: AbortSignal;
}

/** Runs jobs with retries, timeouts, SLA, history and alerts: shared by the scheduler and the CLI. */
export class JobRunner {
  readonly #options: JobRunnerOptions;
  readonly #metrics: JobMetrics | undefined;

  constructor(options: JobRunnerOptions) {
    this.#options = options;
    this.#metrics = jobMetrics(options.metrics);
  }

  async #alert(event: AlertEvent, job: JobDefinition, run: RunRecord, error?: string): Promise<void> {
    const alerts = this.#options.models.schedule.alerts;
    if (!alerts.webhook || !alerts.on.includes(event)) return;
    const text = alertText(event, {
      ...(this.#options.projectName ? { project: this.#options.projectName } : {}),
      job: job.name,
      runId: run.group,
      attempts: run.attempt,
      ...(run.durationMs !== undefined ? { durationMs: run.durationMs } : {}),
      ...(job.slaMs !== undefined ? { slaMs: job.slaMs } : {}),
      ...(error ? { error } : {}),
    });
    const delivery = await postWebhook(alerts.webhook, text);
    if (!delivery.ok)
      this.#options.logger?.warn(
        { job: job.name, event, ...delivery },
        'the alert webhook did not accept the alert',
      );
    else this.#options.logger?.info({ job: job.name, event }, 'alert sent');
  }

  /** One run of a job: attempts until success, a non-retryable error, or retries are exhausted. */
  async run(
    job: JobDefinition,
    trigger: RunTrigger,
    onState?: (state: 'running' | 'retrying') => void,
  ): Promise<RunRecord> {
    const { history, logger } = this.#options;
    const outer = this.#options.signal;
    let group: string | undefined;
    const started = Date.now();
    let slaAlerted = false;
    let slaTimer: NodeJS.Timeout | undefined;
    let last: RunRecord | undefined;
    for (let attempt = 1; ; attempt++) {
      onState?.('running');
      const run = await history.start({
        job: job.name,
        kind: job.kind,
        trigger: attempt === 1 ? trigger : 'retry',
        attempt,
        ...(group ? { group } : {}),
      });
      group ??= run.id;
      if (job.slaMs !== undefined && !slaTimer && !slaAlerted) {
        const remaining = job.slaMs - (Date.now() - started);
        slaTimer = setTimeout(
          () => {
            slaAlerted = true;
            this.#metrics?.slaMisses.inc({ job: job.name });
            logger?.warn({ job: job.name, run: run.id, slaMs: job.slaMs }, `job ${job.name} missed its SLA`);
            void history.markSlaMissed(run.id).catch(() => undefined);
            void this.#alert('sla_miss', job, run).catch(() => undefined);
          },
          Math.max(0, remaining),
        );
        slaTimer.unref();
      }
      logger?.info({ job: job.name, run: run.id, attempt }, `job ${job.name} started`);
      this.#metrics?.running.set({ job: job.name }, 1);
      const controller = new AbortController();
      const onOuterAbort = () => controller.abort(outer?.reason);
      outer?.addEventListener('abort', onOuterAbort);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        controller.abort(new Error('timeout'));
      }, job.timeoutMs);
      timer.unref();
      const attemptStarted = performance.now();
      let detail: unknown;
      let failure: unknown;
      try {
        detail = await executeJob(job, {
          catalog: this.#options.catalog,
          project: this.#options.models,
          signal: controller.signal,
        });
      } catch (error) {
        failure = error;
      } finally {
        clearTimeout(timer);
        outer?.removeEventListener('abort', onOuterAbort);
        this.#metrics?.running.set({ job: job.name }, 0);
        this.#metrics?.duration.observe({ job: job.name }, (performance.now() - attemptStarted) / 1000);
      }
      if (timedOut && failure === undefined)
        failure = new TributaryError('JOB_FAILED', `job ${job.name} ran past its timeout`);
      const slaMissed = job.slaMs !== undefined && Date.now() - started > job.slaMs;
      if (failure === undefined) {
        clearTimeout(slaTimer);
        last = await history.finish(run.id, { status: 'succeeded', detail, slaMissed });
        this.#metrics?.runs.inc({ job: job.name, status: 'succeeded' });
        logger?.info(
          { job: job.name, run: run.id, durationMs: last.durationMs },
          `job ${job.name} succeeded`,
        );
        if (slaMissed && !slaAlerted) {
          this.#metrics?.slaMisses.inc({ job: job.name });
          await this.#alert('sla_miss', job, last);
        }
        await this.#alert('success', job, last);
        return last;
      }
      const message = timedOut
        ? `timed out after ${job.timeoutMs} ms`
        : failure instanceof Error
          ? isTributaryError(failure)
            ? `[${failure.code}] ${failure.message}`
            : failure.message
          : JSON.stringify(failure);
      const status = timedOut ? 'timed_out' : 'failed';
      last = await history.finish(run.id, { status, error: message, slaMissed });
      this.#metrics?.runs.inc({ job: job.name, status });
      const retry = attempt <= job.retries && isRetryable(failure) && !outer?.aborted;
      logger?.warn(
        { job: job.name, run: run.id, attempt, error: message, retry },
        `job ${job.name} ${status === 'timed_out' ? 'timed out' : 'failed'}${retry ? '; retrying' : ''}`,
      );
      if (!retry) {
        clearTimeout(slaTimer);
        if (!outer?.aborted) await this.#alert('failure', job, last, message);
        return last;
      }
      onState?.('retrying');
      const base = Math.min(job.backoffMs * 2 ** (attempt - 1), job.maxBackoffMs);
      const wait = Math.round(base * (0.75 + Math.random() * 0.5));
      try {
        await sleep(wait, undefined, outer ? { signal: outer } : undefined);
      } catch {
        clearTimeout(slaTimer);
        return last;
      }
    }
  }
}

/** Opens the run history in the project's catalog database. */
export async function openRunHistory(
  project: SchedulerProject,
): Promise<{ history: RunHistory; driver: SqlDriver }> {
  const driver = await openSqlDriver(resolveCatalogUri(project.platform.catalog.uri, project.root));
  return { history: await RunHistory.open(driver), driver };
}

function openProjectCatalog(project: SchedulerProject): Promise<Catalog> {
  return openCatalog(projectCatalogSettings(project));
}

/**
 * Runs one job now with its retries, timeout, SLA, history and alerts (`tributary runs start <job>`).
 * Resolves to the final run; its status says whether it succeeded.
 */
export async function runJobNow(
  project: SchedulerProject,
  jobName: string,
  options: Omit<SchedulerOptions, 'tickMs'> & { trigger?: RunTrigger } = {},
): Promise<RunRecord> {
  const models = options.models ?? loadModels(project.root);
  const job = findJob(jobsOf(models), jobName);
  const catalog = options.catalog ?? (await openProjectCatalog(project));
  const { history, driver } = await openRunHistory(project);
  try {
    const runner = new JobRunner({
      catalog,
      models,
      history,
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.metrics ? { metrics: options.metrics } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(project.platform.project ? { projectName: project.platform.project } : {}),
    });
    return await runner.run(job, options.trigger ?? 'manual');
  } finally {
    await driver.close();
    if (!options.catalog) catalog.close();
  }
}

/** Starts the scheduler; see the module comment. */
export async function startScheduler(
  project: SchedulerProject,
  options: SchedulerOptions = {},
): Promise<SchedulerHandle> {
  const models = options.models ?? loadModels(project.root);
  const jobs = jobsOf(models);
  const logger = options.logger;
  const ownCatalog = !options.catalog;
  const catalog = options.catalog ?? (await openProjectCatalog(project));
  const { history, driver } = await openRunHistory(project);
  const abandoned = await history.abandonOrphans();
  if (abandoned)
    logger?.warn({ runs: abandoned }, 'runs left running by a stopped process were marked abandoned');
  await history.prune(Date.now() - models.schedule.history.keep_days * 86_400_000);

  const stopController = new AbortController();
  const onExternalAbort = () => void stop();
  options.signal?.addEventListener('abort', onExternalAbort);
  const runner = new JobRunner({
    catalog,
    models,
    history,
    signal: stopController.signal,
    ...(logger ? { logger } : {}),
    ...(options.metrics ? { metrics: options.metrics } : {}),
    ...(project.platform.project ? { projectName: project.platform.project } : {}),
  });
  const concurrency = models.schedule.concurrency;
  const states = new Map<string, JobStatus['state']>(jobs.map((j) => [j.name, 'idle']));
  const nextAt = new Map<string, number>();
  const lastRuns = new Map<string, RunRecord>();
  const seen = new Map<string, string>();
  const queue: Array<{
    job: JobDefinition;
    trigger: RunTrigger;
    resolve?: (run: RunRecord) => void;
    reject?: (e: unknown) => void;
  }> = [];
  const active = new Set<Promise<void>>();
  let lastTriggerPoll = 0;
  let stopping = false;
  /** After-triggered jobs an upstream committed for while they ran: they run again once done. */
  const triggeredWhileRunning = new Set<string>();

  const now = Date.now();
  for (const job of jobs) {
    if (job.schedule) {
      const next = nextRun(job.schedule, now);
      if (next !== undefined) nextAt.set(job.name, next);
    }
    const last = await history.last(job.name);
    if (last) lastRuns.set(job.name, last);
  }

  const enqueue = (job: JobDefinition, trigger: RunTrigger) => {
    if (states.get(job.name) !== 'idle') return false;
    states.set(job.name, 'queued');
    queue.push({ job, trigger });
    return true;
  };

  const pump = () => {
    while (!stopping && active.size < concurrency && queue.length) {
      const item = queue.shift()!;
      const work = runner
        .run(item.job, item.trigger, (state) => states.set(item.job.name, state))
        .then(
          (run) => {
            lastRuns.set(item.job.name, run);
            item.resolve?.(run);
          },
          (error: unknown) => {
            logger?.error({ job: item.job.name, error }, `job ${item.job.name} could not run`);
            item.reject?.(error);
          },
        )
        .finally(() => {
          states.set(item.job.name, 'idle');
          active.delete(work);
          // What committed upstream after the run read its inputs is read by the next run.
          if (triggeredWhileRunning.delete(item.job.name) && !stopping) enqueue(item.job, 'after');
          pump();
        });
      active.add(work);
    }
  };

  /** After-triggered jobs: due when an upstream table committed since the job last looked. */
  const pollTriggers = async () => {
    for (const job of jobs) {
      if (!job.after) continue;
      const locations: string[] = [];
      let newest = 0;
      for (const table of job.after) {
        try {
          const identifier = parseTableIdentifier(table);
          locations.push(await catalog.registry.getMetadataLocation(identifier));
          newest = Math.max(
            newest,
            (await catalog.loadTable(identifier)).currentSnapshot?.['timestamp-ms'] ?? 0,
          );
        } catch {
          locations.push('');
        }
      }
      const key = locations.join('\n');
      const previous = seen.get(job.name);
      seen.set(job.name, key);
      if (previous === key) continue;
      if (previous === undefined) {
        // First look since start: run when an upstream committed after the model's table last did.
        let own: number;
        try {
          own = job.model
            ? ((await catalog.loadTable(job.model.identifier)).currentSnapshot?.['timestamp-ms'] ?? 0)
            : 0;
        } catch {
          own = 0;
        }
        if (newest === 0 || newest <= own) continue;
      }
      if (enqueue(job, 'after'))
        logger?.info({ job: job.name }, `job ${job.name} triggered by a new upstream snapshot`);
      else if (states.get(job.name) === 'running') triggeredWhileRunning.add(job.name);
    }
  };

  const tick = async () => {
    const time = Date.now();
    for (const job of jobs) {
      const due = nextAt.get(job.name);
      if (due === undefined || due > time || !job.schedule) continue;
      enqueue(job, 'schedule');
      const next = nextRun(job.schedule, time);
      if (next === undefined) nextAt.delete(job.name);
      else nextAt.set(job.name, next);
    }
    if (time - lastTriggerPoll >= models.schedule.trigger_poll) {
      lastTriggerPoll = time;
      await pollTriggers();
    }
    pump();
  };

  let resolveStopped!: () => void;
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve));
  let ticking: Promise<void> = Promise.resolve();
  const interval = setInterval(() => {
    ticking = ticking.then(tick).catch((error: unknown) => logger?.error({ error }, 'scheduler tick failed'));
  }, options.tickMs ?? 1000);
  logger?.info(
    { jobs: jobs.map((j) => j.name), concurrency },
    jobs.length ? `scheduler started with ${jobs.length} job(s)` : 'scheduler started with no jobs',
  );

  let stopPromise: Promise<void> | undefined;
  async function stop(): Promise<void> {
    stopPromise ??= (async () => {
      stopping = true;
      clearInterval(interval);
      stopController.abort(new Error('scheduler stopped'));
      options.signal?.removeEventListener('abort', onExternalAbort);
      for (const item of queue.splice(0))
        item.reject?.(new TributaryError('JOB_FAILED', 'the scheduler stopped'));
      await ticking;
      await Promise.allSettled([...active]);
      await driver.close();
      if (ownCatalog) catalog.close();
      logger?.info('scheduler stopped');
      resolveStopped();
    })();
    return stopPromise;
  }
  if (options.signal?.aborted) await stop();

  return {
    stop,
    stopped,
    status(): SchedulerStatus {
      return {
        running: !stopping,
        concurrency,
        active: active.size,
        queued: queue.length,
        jobs: jobs.map((job) => {
          const last = lastRuns.get(job.name);
          const next = nextAt.get(job.name);
          return {
            name: job.name,
            kind: job.kind,
            ...(job.schedule ? { schedule: job.schedule.expression } : {}),
            ...(job.after ? { after: job.after } : {}),
            state: states.get(job.name) ?? 'idle',
            ...(next !== undefined ? { nextRunAt: new Date(next).toISOString() } : {}),
            ...(last
              ? {
                  lastRun: {
                    id: last.group,
                    status: last.status,
                    startedAt: new Date(last.startedAt).toISOString(),
                  },
                }
              : {}),
          };
        }),
      };
    },
    trigger(name: string): Promise<RunRecord> {
      const job = findJob(jobs, name);
      if (stopping) return Promise.reject(new TributaryError('JOB_FAILED', 'the scheduler is stopped'));
      if (states.get(job.name) !== 'idle')
        return Promise.reject(
          new TributaryError('USAGE', `job ${job.name} is already ${states.get(job.name)}`),
        );
      return new Promise<RunRecord>((resolve, reject) => {
        states.set(job.name, 'queued');
        queue.push({ job, trigger: 'manual', resolve, reject });
        pump();
      });
    },
  };
}
