/**
 * The jobs of a project, and what running one does:
 *  - `model:<table>` for each model with a `schedule:` or `after:` trigger: the readiness gate, the model,
 *    then its data tests (a failing test fails the job);
 *  - the maintenance jobs of models/schedule.yaml: `expire` (expire snapshots and delete what only they
 *    reached), `compact` (small files and deletes rewritten), `validate` (every data test).
 * The same code runs under the scheduler of `tributary up` and from `tributary runs start <job>`.
 */
import type { Catalog } from '../../catalog/catalog.ts';
import { tableIdentifierToString, type TableIdentifier } from '../../catalog/identifier.ts';
import { TributaryError } from '../../errors.ts';
import { openEngine } from '../../iceberg/duckdb.ts';
import type { Table } from '../../iceberg/table.ts';
import {
  compact,
  expireSnapshots,
  gcDisabled,
  removeOrphanFiles,
} from '../../iceberg/operations/maintenance.ts';
import { TableViews } from '../table-views.ts';
import type { MaintenanceJobConfig, ScheduleFile } from '../models/config.ts';
import { collectTests, runDataTests, testsFailed, type TestResult } from '../models/data-tests.ts';
import type { Model, ModelProject } from '../models/project.ts';
import { awaitReadiness } from '../models/readiness.ts';
import { runModel } from '../models/run.ts';
import { parseCron, type CronSchedule } from './cron.ts';

export type JobKind = 'model' | MaintenanceJobConfig['kind'];

export interface JobDefinition {
  readonly name: string;
  readonly kind: JobKind;
  readonly schedule?: CronSchedule;
  /** Trigger: run when one of these tables has committed since the job last looked. */
  readonly after?: readonly string[];
  readonly retries: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  readonly timeoutMs: number;
  readonly slaMs?: number;
  readonly model?: Model;
  readonly maintenance?: MaintenanceJobConfig;
}

export const MODEL_JOB_PREFIX = 'model:';

/** Every job: scheduled or triggered models, then maintenance jobs. */
export function jobsOf(project: ModelProject): JobDefinition[] {
  const defaults = project.schedule.defaults;
  const jobs: JobDefinition[] = [];
  for (const model of project.models.values()) {
    const { schedule, after, retries, timeout, sla } = model.config;
    if (!schedule && !after) continue;
    jobs.push({
      name: `${MODEL_JOB_PREFIX}${model.name}`,
      kind: 'model',
      ...(schedule ? { schedule: parseCron(schedule) } : {}),
      ...(after ? { after } : {}),
      retries: retries ?? defaults.retries,
      backoffMs: defaults.backoff,
      maxBackoffMs: defaults.max_backoff,
      timeoutMs: timeout ?? defaults.timeout,
      ...((sla ?? defaults.sla) !== undefined ? { slaMs: sla ?? defaults.sla } : {}),
      model,
    });
  }
  for (const job of project.schedule.jobs) {
    if (jobs.some((j) => j.name === job.name)) {
      throw new TributaryError('CONFIG_DUPLICATE', `two jobs are named ${job.name}`, {
        hint: 'rename one of the jobs in models/schedule.yaml',
      });
    }
    jobs.push({
      name: job.name,
      kind: job.kind,
      schedule: parseCron(job.schedule),
      retries: job.retries ?? defaults.retries,
      backoffMs: defaults.backoff,
      maxBackoffMs: defaults.max_backoff,
      timeoutMs: job.timeout ?? defaults.timeout,
      ...((job.sla ?? defaults.sla) !== undefined ? { slaMs: job.sla ?? defaults.sla } : {}),
      maintenance: job,
    });
  }
  return jobs.sort((a, b) => a.name.localeCompare(b.name));
}

/** A job by name; a model's job also by the model's table or short name. */
export function findJob(jobs: readonly JobDefinition[], name: string): JobDefinition {
  const found =
    jobs.find((j) => j.name === name) ??
    jobs.find((j) => j.name === `${MODEL_JOB_PREFIX}${name}`) ??
    (() => {
      const short = jobs.filter((j) => j.model?.identifier.name === name);
      return short.length === 1 ? short[0] : undefined;
    })();
  if (!found) {
    throw new TributaryError('USAGE', `no job "${name}"`, {
      hint: `jobs: ${jobs.map((j) => j.name).join(', ') || 'none (add schedule: or after: to a model, or jobs to models/schedule.yaml)'}`,
    });
  }
  return found;
}

/** Tables a pattern list names: `*`, `namespace.*`, or namespace.table. */
export async function matchTables(catalog: Catalog, patterns: readonly string[]): Promise<TableIdentifier[]> {
  const all = await catalog.listAllTables();
  return all.filter((identifier) => {
    const name = tableIdentifierToString(identifier);
    return patterns.some((pattern) => {
      if (pattern === '*') return true;
      if (pattern.endsWith('.*')) return name.startsWith(pattern.slice(0, -1));
      return name === pattern;
    });
  });
}

export interface JobEnvironment {
  readonly catalog: Catalog;
  readonly project: ModelProject;
  /** Aborted when the job's time is up or the scheduler stops: the job stops as soon as it can. */
  readonly signal: AbortSignal;
}

function failedTests(results: readonly TestResult[]): TributaryError {
  const failed = results.filter((r) => r.status === 'fail' || r.status === 'error');
  return new TributaryError(
    'TESTS_FAILED',
    `${failed.length} data test(s) failed: ${failed
      .slice(0, 5)
      .map((r) => `${r.table} ${r.test} (${r.message})`)
      .join('; ')}`,
    { hint: 'run `tributary validate` for the full report', context: { failed } },
  );
}

/**
 * A maintenance job that deletes files: `work` on each table the patterns match, in turn, until aborted;
 * a table with Iceberg's gc.enabled=false (its files may be another table's) is passed over and noted —
 * deleting its files is refused, and one such table among those matched must not fail the job for the others.
 */
async function deletingFiles(
  catalog: Catalog,
  patterns: readonly string[],
  signal: AbortSignal,
  work: (table: Table) => Promise<Record<string, number>>,
): Promise<{ tables: Array<Record<string, string | number>> }> {
  const results: Array<Record<string, string | number>> = [];
  for (const identifier of await matchTables(catalog, patterns)) {
    if (signal.aborted) break;
    const table = await catalog.loadTable(identifier);
    results.push({
      table: table.name,
      ...(gcDisabled(table)
        ? { skipped: 'gc.enabled=false: its files may belong to other tables, none is deleted' }
        : await work(table)),
    });
  }
  return { tables: results };
}

/** Runs a job once; resolves to what it did (for the run history), rejects when it failed. */
export async function executeJob(job: JobDefinition, env: JobEnvironment): Promise<unknown> {
  const { catalog, project, signal } = env;
  if (job.kind === 'expire') {
    const config = job.maintenance!;
    return deletingFiles(catalog, config.tables, signal, async (table) => {
      const { expiredSnapshots, deletedFiles } = await expireSnapshots(table, {
        olderThanMs: Date.now() - config.older_than,
        retainLast: config.retain_last,
      });
      return { expiredSnapshots, deletedFiles };
    });
  }
  if (job.kind === 'remove-orphan-files') {
    const config = job.maintenance!;
    return deletingFiles(catalog, config.tables, signal, async (table) => {
      const deleted = await removeOrphanFiles(table, {
        olderThanMs: Date.now() - config.older_than,
        neighbours: await catalog.tablesOverlapping(table),
        guard: catalog.sweepGuard ?? { project: project.root, warehouse: catalog.warehouse, kept: [] },
      });
      return { deletedFiles: deleted.length };
    });
  }
  const engine = await openEngine();
  const onAbort = () => engine.connection.interrupt();
  signal.addEventListener('abort', onAbort);
  try {
    const context = { catalog, engine, views: new TableViews(catalog, engine.connection), signal };
    if (job.kind === 'compact') {
      const results: Array<{ table: string; rewrittenFiles: number; addedFiles: number }> = [];
      for (const identifier of await matchTables(catalog, job.maintenance!.tables)) {
        if (signal.aborted) break;
        const table = await catalog.loadTable(identifier);
        const result = await compact(table, engine);
        results.push({
          table: table.name,
          rewrittenFiles: result.rewrittenFiles,
          addedFiles: result.addedFiles,
        });
      }
      return { tables: results };
    }
    if (job.kind === 'validate') {
      const results = await runDataTests(context, project, collectTests(project));
      if (testsFailed(results)) throw failedTests(results);
      return { tests: results.length, failed: 0 };
    }
    const model = job.model!;
    await awaitReadiness(catalog, project, model, { signal });
    const result = await runModel(context, project, model);
    const tests = await runDataTests(context, project, collectTests(project, [model.name]));
    if (testsFailed(tests)) throw failedTests(tests);
    return { ...result, tests: tests.length };
  } finally {
    signal.removeEventListener('abort', onAbort);
    engine.close();
  }
}

/** Errors a retry cannot fix: configuration mistakes and failing data tests. */
export function isRetryable(error: unknown): boolean {
  if (!(error instanceof TributaryError)) return true;
  if (error.code === 'TESTS_FAILED') return false;
  return error.exitCode !== 2;
}

export type { ScheduleFile };
