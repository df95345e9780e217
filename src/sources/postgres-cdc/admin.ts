/** What `tributary cdc …` does besides running a source: backfill requests, status, table schemas. */
import { randomUUID } from 'node:crypto';
import { pipelineGroup } from '../../core/pipeline/runner.ts';
import type { Project } from '../../core/project.ts';
import { TributaryError } from '../../errors.ts';
import type { Log } from '../../log/log.ts';
import { resolvedNames, type PostgresCdcConfig } from './config.ts';
import { connect } from './connection.ts';
import { icebergSchemaFor, type TableSchema } from './schema.ts';
import { signalPrefix, signBackfill } from './source.ts';
import { loadState, type SnapshotTask } from './state.ts';

/**
 * Asks a source to re-read (part of) a table while it streams: a signed request is written into the WAL
 * (a transactional logical message), so the running source sees it in order, or sees it when it starts.
 */
export async function requestBackfill(
  name: string,
  config: PostgresCdcConfig,
  project: Project,
  log: Log,
  table: string,
  where: string | undefined,
): Promise<string> {
  if (!config.tables.includes(table)) {
    throw new TributaryError('USAGE', `source ${name} does not capture ${table}`, {
      hint: `tables: ${config.tables.join(', ')}`,
    });
  }
  const { topic, slot } = resolvedNames(name, config);
  if (!(await log.describeTopic(topic))) {
    throw new TributaryError('USAGE', `source ${name} has not run yet (no topic ${topic})`, {
      hint: `start it first: tributary cdc run ${name}`,
    });
  }
  const state = await loadState(log, topic);
  if (!state.secret) {
    throw new TributaryError('USAGE', `source ${name} has not run yet`, {
      hint: `start it first: tributary cdc run ${name}`,
    });
  }
  const id = randomUUID();
  const signal = {
    id,
    table,
    ...(where ? { where } : {}),
    signature: signBackfill(state.secret, id, table, where),
  };
  const client = await connect(config, project.root, { applicationName: 'tributary-cdc-backfill' });
  try {
    if (where) {
      // Fail now on a condition that does not parse, rather than in the running source.
      await client.query('begin read only');
      try {
        await client.query(
          `explain select 1 from ${table
            .split('.')
            .map((p) => `"${p}"`)
            .join('.')} where (${where})`,
        );
      } catch (cause) {
        throw new TributaryError(
          'USAGE',
          `--where is not a valid condition on ${table}: ${(cause as Error).message}`,
          {
            cause,
            hint: 'write a SQL boolean expression over the table\'s columns, e.g. "id < 1000"',
          },
        );
      } finally {
        await client.query('rollback').catch(() => undefined);
      }
    }
    await client.query('select pg_logical_emit_message(true, $1, $2)', [
      signalPrefix(slot),
      JSON.stringify(signal),
    ]);
  } finally {
    await client.end().catch(() => undefined);
  }
  return id;
}

export interface OfflineStatus {
  readonly source: string;
  readonly topic: string;
  readonly slot: string;
  readonly slotExists: boolean;
  readonly activePid: number | null;
  readonly confirmedLsn: string | null;
  readonly lagBytes: number | null;
  readonly snapshotted: readonly string[];
  readonly snapshots: readonly SnapshotTask[];
  readonly records: number;
  readonly pipelines: ReadonlyArray<{ readonly pipeline: string; readonly behind: number }>;
}

/** A source's state as PostgreSQL and the log tell it, whether or not it runs now. */
export async function sourceStatus(
  name: string,
  config: PostgresCdcConfig,
  project: Project,
  log: Log,
): Promise<OfflineStatus> {
  const { topic, slot } = resolvedNames(name, config);
  const exists = await log.describeTopic(topic);
  const state = exists ? await loadState(log, topic) : undefined;
  const offsets = exists ? await log.offsets(topic) : [];
  const pipelines = [];
  for (const pipeline of project.pipelines.values()) {
    if (pipeline.config.source.topic !== topic || !exists) continue;
    const committed = await log.committedOffsets(pipelineGroup(pipeline.name), topic);
    const behind = offsets.reduce(
      (n, o) => n + Math.max(0, o.end - (committed.get(o.partition) ?? o.start)),
      0,
    );
    pipelines.push({ pipeline: pipeline.name, behind });
  }
  const client = await connect(config, project.root, { applicationName: 'tributary-cdc-status' });
  try {
    const { rows } = await client.query<{ pid: string | null; confirmed: string | null; lag: string | null }>(
      `select active_pid::text as pid, confirmed_flush_lsn::text as confirmed,
              (pg_current_wal_lsn() - confirmed_flush_lsn)::text as lag
         from pg_replication_slots where slot_name = $1`,
      [slot],
    );
    const row = rows[0];
    return {
      source: name,
      topic,
      slot,
      slotExists: row !== undefined,
      activePid: row?.pid ? Number(row.pid) : null,
      confirmedLsn: row?.confirmed ?? null,
      lagBytes: row?.lag ? Number(row.lag) : null,
      snapshotted: state?.snapshotted ?? [],
      snapshots: state?.tasks ?? [],
      records: offsets.reduce((n, o) => n + o.end - o.start, 0),
      pipelines,
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Iceberg schemas of the source's tables (or one), for the `schema:` of the sinks that mirror them. */
export async function tableSchemas(
  config: PostgresCdcConfig,
  project: Project,
  tables: readonly string[],
  deleteColumn: string | undefined,
): Promise<Map<string, TableSchema>> {
  const client = await connect(config, project.root, { applicationName: 'tributary-cdc-schema' });
  try {
    const out = new Map<string, TableSchema>();
    for (const table of tables)
      out.set(table, await icebergSchemaFor(client, table, deleteColumn ? { deleteColumn } : {}));
    return out;
  } finally {
    await client.end().catch(() => undefined);
  }
}
