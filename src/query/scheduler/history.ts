/**
 * The run history of scheduled and CLI-started jobs, in a table of the catalog database
 * (`tributary_job_runs`, beside the Iceberg catalog's own tables; engines that open the catalog ignore it).
 * One row per attempt: a job retried twice has three rows sharing a `run_group`.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { SqlDriver } from '../../catalog/sql-driver.ts';
import { TributaryError } from '../../errors.ts';

export const RUNS_TABLE = 'tributary_job_runs';

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'timed_out' | 'abandoned';
export type RunTrigger = 'schedule' | 'after' | 'manual' | 'retry';

export interface RunRecord {
  readonly id: string;
  /** Attempts of one run share it (the first attempt's id). */
  readonly group: string;
  readonly job: string;
  readonly kind: string;
  readonly trigger: RunTrigger;
  readonly attempt: number;
  readonly status: RunStatus;
  readonly startedAt: number;
  readonly finishedAt: number | undefined;
  readonly durationMs: number | undefined;
  readonly slaMissed: boolean;
  readonly error: string | undefined;
  /** What the job reported (rows written, files removed…). */
  readonly detail: unknown;
  readonly host: string;
}

interface Row {
  id: string;
  run_group: string;
  job: string;
  kind: string;
  run_trigger: string;
  attempt: number | string;
  status: string;
  started_at: number | string;
  finished_at: number | string | null;
  duration_ms: number | string | null;
  sla_missed: number | string;
  error: string | null;
  detail: string | null;
  host: string;
}

/** A sortable id: time then randomness, e.g. 0mhx3k2a-9f3c1b. */
export function newRunId(now = Date.now()): string {
  return `${now.toString(36).padStart(9, '0')}-${randomBytes(3).toString('hex')}`;
}

function toRecord(row: Row): RunRecord {
  let detail: unknown;
  try {
    detail = row.detail ? JSON.parse(row.detail) : null;
  } catch {
    detail = row.detail;
  }
  return {
    id: row.id,
    group: row.run_group,
    job: row.job,
    kind: row.kind,
    trigger: row.run_trigger as RunTrigger,
    attempt: Number(row.attempt),
    status: row.status as RunStatus,
    startedAt: Number(row.started_at),
    finishedAt: row.finished_at === null ? undefined : Number(row.finished_at),
    durationMs: row.duration_ms === null ? undefined : Number(row.duration_ms),
    slaMissed: Number(row.sla_missed) === 1,
    error: row.error ?? undefined,
    detail,
    host: row.host,
  };
}

export class RunHistory {
  readonly #driver: SqlDriver;
  readonly #host: string;

  private constructor(driver: SqlDriver, host: string) {
    this.#driver = driver;
    this.#host = host;
  }

  /** Opens the history on a catalog database, creating its table when absent. */
  static async open(driver: SqlDriver, host = `${os.hostname()}:${process.pid}`): Promise<RunHistory> {
    await driver.execute(
      `CREATE TABLE IF NOT EXISTS ${RUNS_TABLE} (
         id VARCHAR(40) NOT NULL PRIMARY KEY,
         run_group VARCHAR(40) NOT NULL,
         job VARCHAR(200) NOT NULL,
         kind VARCHAR(40) NOT NULL,
         run_trigger VARCHAR(20) NOT NULL,
         attempt INTEGER NOT NULL,
         status VARCHAR(20) NOT NULL,
         started_at BIGINT NOT NULL,
         finished_at BIGINT,
         duration_ms BIGINT,
         sla_missed INTEGER NOT NULL,
         error TEXT,
         detail TEXT,
         host VARCHAR(200) NOT NULL
       )`,
    );
    await driver.execute(`CREATE INDEX IF NOT EXISTS ${RUNS_TABLE}_job ON ${RUNS_TABLE} (job, started_at)`);
    return new RunHistory(driver, host);
  }

  async start(entry: {
    job: string;
    kind: string;
    trigger: RunTrigger;
    attempt: number;
    group?: string;
    now?: number;
  }): Promise<RunRecord> {
    const now = entry.now ?? Date.now();
    const id = newRunId(now);
    const group = entry.group ?? id;
    await this.#driver.execute(
      `INSERT INTO ${RUNS_TABLE} (id, run_group, job, kind, run_trigger, attempt, status, started_at, sla_missed, host)
       VALUES (?, ?, ?, ?, ?, ?, 'running', ?, 0, ?)`,
      [id, group, entry.job, entry.kind, entry.trigger, entry.attempt, now, this.#host],
    );
    return (await this.get(id))!;
  }

  async finish(
    id: string,
    outcome: {
      status: Exclude<RunStatus, 'running'>;
      error?: string;
      detail?: unknown;
      slaMissed?: boolean;
      now?: number;
    },
  ): Promise<RunRecord> {
    const now = outcome.now ?? Date.now();
    const run = await this.get(id);
    if (!run) throw new TributaryError('INTERNAL', `no run ${id} to finish`);
    await this.#driver.execute(
      `UPDATE ${RUNS_TABLE} SET status = ?, finished_at = ?, duration_ms = ?, sla_missed = ?, error = ?, detail = ?
       WHERE id = ?`,
      [
        outcome.status,
        now,
        now - run.startedAt,
        outcome.slaMissed ? 1 : 0,
        outcome.error ?? null,
        outcome.detail === undefined
          ? null
          : JSON.stringify(outcome.detail, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)),
        id,
      ],
    );
    return (await this.get(id))!;
  }

  /** Marks the run's SLA as missed while it is still running. */
  async markSlaMissed(id: string): Promise<void> {
    await this.#driver.execute(`UPDATE ${RUNS_TABLE} SET sla_missed = 1 WHERE id = ?`, [id]);
  }

  async get(id: string): Promise<RunRecord | undefined> {
    const rows = await this.#driver.query<Row & Record<string, unknown>>(
      `SELECT * FROM ${RUNS_TABLE} WHERE id = ?`,
      [id],
    );
    return rows[0] ? toRecord(rows[0]) : undefined;
  }

  /** A run by id or unique id prefix. */
  async find(idOrPrefix: string): Promise<RunRecord | undefined> {
    const exact = await this.get(idOrPrefix);
    if (exact) return exact;
    const rows = await this.#driver.query<Row & Record<string, unknown>>(
      `SELECT * FROM ${RUNS_TABLE} WHERE id LIKE ? ORDER BY started_at DESC`,
      [`${idOrPrefix.replace(/[%_]/g, '')}%`],
    );
    if (rows.length > 1) {
      throw new TributaryError('USAGE', `"${idOrPrefix}" matches ${rows.length} runs`, {
        hint: 'give more of the id',
      });
    }
    return rows[0] ? toRecord(rows[0]) : undefined;
  }

  /** Newest first. */
  async list(filter: { job?: string; status?: RunStatus; limit?: number } = {}): Promise<RunRecord[]> {
    const where: string[] = [];
    const params: Array<string | number> = [];
    if (filter.job) {
      where.push('job = ?');
      params.push(filter.job);
    }
    if (filter.status) {
      where.push('status = ?');
      params.push(filter.status);
    }
    params.push(filter.limit ?? 50);
    const rows = await this.#driver.query<Row & Record<string, unknown>>(
      `SELECT * FROM ${RUNS_TABLE}${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY started_at DESC, id DESC LIMIT ?`,
      params,
    );
    return rows.map(toRecord);
  }

  /** The newest finished run of a job, if any. */
  async last(job: string): Promise<RunRecord | undefined> {
    return (await this.list({ job, limit: 1 }))[0];
  }

  /** Runs left `running` on this machine by a process that is gone (a crash): marked abandoned. */
  async abandonOrphans(): Promise<number> {
    const prefix = `${os.hostname()}:`;
    const rows = await this.#driver.query<{ id: string; host: string }>(
      `SELECT id, host FROM ${RUNS_TABLE} WHERE status = 'running'`,
    );
    let count = 0;
    for (const row of rows) {
      if (!row.host.startsWith(prefix)) continue;
      const pid = Number(row.host.slice(prefix.length));
      if (Number.isInteger(pid) && pid !== process.pid && isAlive(pid)) continue;
      if (pid === process.pid) continue;
      count += await this.#driver.execute(
        `UPDATE ${RUNS_TABLE} SET status = 'abandoned', error = 'the process running it stopped' WHERE id = ? AND status = 'running'`,
        [row.id],
      );
    }
    return count;
  }

  async prune(olderThanMs: number): Promise<number> {
    return this.#driver.execute(`DELETE FROM ${RUNS_TABLE} WHERE started_at < ? AND status <> 'running'`, [
      olderThanMs,
    ]);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
