/**
 * `tributary runs …`: the jobs of the scheduler (models with schedule:/after:, maintenance jobs of
 * models/schedule.yaml), their run history in the catalog database, and running one now — with its
 * retries, timeout, SLA and alerts — for teams that schedule with Airflow, Dagster or Kubernetes CronJobs.
 */
import type { Command } from 'commander';
import { TributaryError } from '../../errors.ts';
import { loadModels } from '../../query/models/project.ts';
import { nextRun } from '../../query/scheduler/cron.ts';
import type { RunRecord, RunStatus } from '../../query/scheduler/history.ts';
import { jobsOf } from '../../query/scheduler/jobs.ts';
import { openRunHistory, runJobNow } from '../../query/scheduler/scheduler.ts';
import { createLogger } from '../../core/logger.ts';
import type { CliContext } from '../context.ts';
import { wholeNumber } from '../options.ts';
import { color, formatTable } from '../output.ts';

const STATUSES: readonly RunStatus[] = ['running', 'succeeded', 'failed', 'timed_out', 'abandoned'];

function statusText(run: RunRecord): string {
  const text =
    run.status === 'succeeded'
      ? color('green', run.status)
      : run.status === 'running'
        ? run.status
        : color('red', run.status);
  return run.slaMissed ? `${text} ${color('yellow', '(SLA missed)')}` : text;
}

function seconds(ms: number | undefined): string {
  return ms === undefined ? '—' : `${(ms / 1000).toFixed(1)}s`;
}

function json(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2);
}

export function registerRuns(program: Command, context: () => CliContext): void {
  const runs = program
    .command('runs')
    .description(
      'Scheduled jobs and their run history; run a job now (exit 0 when it succeeds, 1 when it fails).',
    );

  runs
    .command('list')
    .description('List runs (every attempt), newest first.')
    .option('--job <name>', 'only this job')
    .option('--status <status>', `only runs with this status: ${STATUSES.join(', ')}`)
    .option('--limit <n>', 'at most this many', wholeNumber('--limit'), 50)
    .option('--json', 'print JSON')
    .action(async (options: { job?: string; status?: string; limit: number; json?: boolean }) => {
      if (options.status && !STATUSES.includes(options.status as RunStatus))
        throw new TributaryError('USAGE', `--status ${options.status}: choose ${STATUSES.join(', ')}`);
      const limit = options.limit;
      const { history, driver } = await openRunHistory(context().loadProject());
      try {
        const rows = await history.list({
          ...(options.job ? { job: options.job } : {}),
          ...(options.status ? { status: options.status as RunStatus } : {}),
          limit,
        });
        if (options.json) console.log(json(rows));
        else if (rows.length === 0) console.log('No runs yet.');
        else
          console.log(
            formatTable(
              ['run', 'job', 'attempt', 'trigger', 'started', 'duration', 'status'],
              rows.map((r) => [
                r.id,
                r.job,
                String(r.attempt),
                r.trigger,
                new Date(r.startedAt).toISOString(),
                seconds(r.durationMs),
                statusText(r),
              ]),
            ),
          );
      } finally {
        await driver.close();
      }
    });

  runs
    .command('show')
    .description('Show one run: status, timing, error and what the job did.')
    .argument('<id>', 'run id (or a unique prefix)')
    .option('--json', 'print JSON')
    .action(async (id: string, options: { json?: boolean }) => {
      const { history, driver } = await openRunHistory(context().loadProject());
      try {
        const run = await history.find(id);
        if (!run)
          throw new TributaryError('USAGE', `no run ${id}`, { hint: 'list runs with `tributary runs list`' });
        const attempts = (await history.list({ job: run.job, limit: 200 })).filter(
          (r) => r.group === run.group,
        );
        if (options.json) {
          console.log(
            json({
              ...run,
              attempts: attempts.map((a) => ({ id: a.id, attempt: a.attempt, status: a.status })),
            }),
          );
          return;
        }
        console.log(
          `run       ${run.id}${run.group !== run.id ? ` (attempt ${run.attempt} of run ${run.group})` : ''}`,
        );
        console.log(`job       ${run.job} (${run.kind})`);
        console.log(`status    ${statusText(run)}`);
        console.log(`trigger   ${run.trigger}`);
        console.log(`started   ${new Date(run.startedAt).toISOString()} on ${run.host}`);
        console.log(`duration  ${seconds(run.durationMs)}`);
        if (attempts.length > 1)
          console.log(
            `attempts  ${attempts
              .map((a) => `${a.attempt}: ${a.status} (${a.id})`)
              .reverse()
              .join(', ')}`,
          );
        if (run.error) console.log(`error     ${run.error}`);
        if (run.detail !== null && run.detail !== undefined) console.log(`detail    ${json(run.detail)}`);
      } finally {
        await driver.close();
      }
    });

  runs
    .command('jobs')
    .description('List the jobs the scheduler of `tributary up` runs, with their next run and last run.')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const project = context().loadProject();
      const jobs = jobsOf(loadModels(project.root));
      const { history, driver } = await openRunHistory(project);
      try {
        const rows = [];
        for (const job of jobs) {
          const last = await history.last(job.name);
          const next = job.schedule ? nextRun(job.schedule, Date.now()) : undefined;
          rows.push({
            job: job.name,
            kind: job.kind,
            schedule: job.schedule?.expression ?? null,
            after: job.after ?? null,
            nextRun: next === undefined ? null : new Date(next).toISOString(),
            retries: job.retries,
            timeoutMs: job.timeoutMs,
            slaMs: job.slaMs ?? null,
            lastRun: last
              ? { id: last.group, status: last.status, startedAt: new Date(last.startedAt).toISOString() }
              : null,
          });
        }
        if (options.json) console.log(json(rows));
        else if (rows.length === 0)
          console.log(
            'No jobs: add schedule: or after: to a model, or jobs: to models/schedule.yaml (see docs/models.md).',
          );
        else
          console.log(
            formatTable(
              ['job', 'kind', 'trigger', 'next run', 'last run'],
              rows.map((r) => [
                r.job,
                r.kind,
                r.schedule ? `cron ${r.schedule}` : `after ${(r.after ?? []).join(', ')}`,
                r.nextRun ?? '—',
                r.lastRun ? `${r.lastRun.status} ${r.lastRun.startedAt}` : '—',
              ]),
            ),
          );
      } finally {
        await driver.close();
      }
    });

  runs
    .command('start')
    .description(
      'Run a job now, with its retries, timeout, SLA and alerts, recorded in the history. Exit 1 when it fails.',
    )
    .argument('<job>', 'job name (see `tributary runs jobs`; a model job also by its table name)')
    .action(async (name: string) => {
      const project = context().loadProject();
      const logger = createLogger({
        level: context().verbose ? 'debug' : project.platform.logging.level,
        format: project.platform.logging.format,
      });
      const controller = new AbortController();
      const onSignal = () => controller.abort(new Error('interrupted'));
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        const run = await runJobNow(project, name, { logger, signal: controller.signal });
        console.log(
          `run ${run.group}: ${statusText(run)} after ${run.attempt} attempt(s), ${seconds(run.durationMs)}`,
        );
        if (run.status !== 'succeeded') {
          throw new TributaryError(
            'JOB_FAILED',
            `job ${run.job} ${run.status === 'timed_out' ? 'timed out' : 'failed'}: ${run.error ?? ''}`,
            {
              hint: `see \`tributary runs show ${run.group}\``,
            },
          );
        }
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
