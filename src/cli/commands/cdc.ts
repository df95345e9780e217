/**
 * `tributary cdc …`: change data capture sources (`sources/<name>.yaml`) — run one, see where it stands,
 * re-read part of a table while it streams, and print the Iceberg schemas of its tables.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { buildSource, openProjectLog, sourceNamed } from '../../components.ts';
import { createLogger } from '../../core/logger.ts';
import { createPipelineMetrics } from '../../core/metrics.ts';
import type { Project } from '../../core/project.ts';
import { TributaryError } from '../../errors.ts';
import {
  postgresCdcSchema,
  requestBackfill,
  sourceStatus,
  tableSchemas,
  type PostgresCdcConfig,
} from '../../sources/postgres-cdc/index.ts';
import { readiness } from '../../server/health.ts';
import { startProbeServer, type ProbeServer } from '../../server/probe-server.ts';
import type { CliContext } from '../context.ts';
import { healthOption, withHealthOptions } from '../options.ts';
import { formatTable } from '../output.ts';

function cdcConfig(project: Project, name: string): PostgresCdcConfig {
  const source = sourceNamed(project, name);
  if (source.config.type !== 'postgres_cdc')
    throw new TributaryError('USAGE', `source ${name} is of type ${source.config.type}, not postgres_cdc`);
  return postgresCdcSchema.parse(source.config);
}

export function registerCdc(program: Command, context: () => CliContext): void {
  const cdc = program
    .command('cdc')
    .description('Change data capture from PostgreSQL: run a source, its status, backfills, table schemas.');

  withHealthOptions(cdc.command('run'), 'serve /healthz, /readyz and /metrics on this port (for probes)')
    .description(
      'Run one source until stopped: snapshot, then stream changes into its topic (SIGTERM/SIGINT stop it cleanly).',
    )
    .argument('<source>', 'the source name (its file in sources/)')
    .action(async (name: string, options: { healthPort?: number; healthHost: string }) => {
      const project = context().loadProject();
      sourceNamed(project, name);
      const health = healthOption(options);
      const logger = createLogger({
        level: context().verbose ? 'debug' : project.platform.logging.level,
        format: project.platform.logging.format,
      });
      // Read before anything starts, like every setting: an unresolved one stops the start, not a probe.
      const stallAfterMs = health ? project.platform.server.stall_after : 0;
      const log = await openProjectLog(project);
      let probes: ProbeServer | undefined;
      try {
        const { registry } = createPipelineMetrics();
        const source = buildSource(project, name, { log, logger, registry });
        if (health) {
          const startedAt = Date.now();
          probes = await startProbeServer({
            ...health,
            registry,
            readiness: () =>
              readiness({
                log,
                sources: () => [{ name, status: () => source.status() }],
                stallAfterMs,
                startedAt,
              }),
          });
          console.log(`Probes listening on ${probes.url} (/healthz, /readyz, /metrics)`);
        }
        const stop = (signal: string) => {
          logger.info({ signal }, `${signal} received: stopping source ${name}`);
          source.stop();
          setTimeout(() => {
            logger.error(`source ${name} did not stop within 30 s; exiting`);
            process.exit(1);
          }, 30_000).unref();
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
        await source.run();
      } finally {
        await probes?.close();
        await log.close();
      }
    });

  cdc
    .command('status')
    .description(
      "Where a source stands: its slot (holder, confirmed LSN, lag), snapshot progress, and its pipelines' lag.",
    )
    .argument('<source>', 'the source')
    .option('--json', 'print JSON')
    .action(async (name: string, options: { json?: boolean }) => {
      const project = context().loadProject();
      const config = cdcConfig(project, name);
      const log = await openProjectLog(project);
      try {
        const status = await sourceStatus(name, config, project, log);
        if (options.json) {
          console.log(JSON.stringify(status, null, 2));
          return;
        }
        const slot = status.slotExists
          ? `${status.slot}: ${status.activePid ? `held by pid ${status.activePid}` : 'not being read'}, confirmed ${status.confirmedLsn}, ${status.lagBytes?.toLocaleString('en-US')} bytes behind`
          : `${status.slot}: does not exist yet`;
        console.log(
          `source ${name} → topic ${status.topic} (${status.records.toLocaleString('en-US')} records)`,
        );
        console.log(`slot ${slot}`);
        console.log(`copied: ${status.snapshotted.join(', ') || 'none yet'}`);
        if (status.snapshots.length)
          console.log(
            formatTable(
              ['table', 'kind', 'rows', 'estimated', 'chunks'],
              status.snapshots.map((t) => [
                t.table,
                t.kind,
                t.rows.toLocaleString('en-US'),
                t.estimated?.toLocaleString('en-US') ?? '?',
                String(t.chunks),
              ]),
            ),
          );
        if (status.pipelines.length)
          console.log(
            formatTable(
              ['pipeline', 'records behind'],
              status.pipelines.map((p) => [p.pipeline, p.behind.toLocaleString('en-US')]),
            ),
          );
      } finally {
        await log.close();
      }
    });

  cdc
    .command('backfill')
    .description(
      'Re-read a table (or the rows matching --where) into the topic while the source streams, without losing or reordering changes.',
    )
    .argument('<source>', 'the source')
    .requiredOption('--table <table>', 'the table, schema.table')
    .option(
      '--where <sql>',
      'only rows matching this SQL condition, e.g. "updated_at > now() - interval \'1 day\'"',
    )
    .action(async (name: string, options: { table: string; where?: string }) => {
      const project = context().loadProject();
      const config = cdcConfig(project, name);
      const log = await openProjectLog(project);
      try {
        const id = await requestBackfill(name, config, project, log, options.table, options.where);
        console.log(
          `Backfill ${id} of ${options.table}${options.where ? ` where ${options.where}` : ''} requested; the running source copies it in chunks (tributary cdc status ${name}).`,
        );
      } finally {
        await log.close();
      }
    });

  cdc
    .command('schema')
    .description(
      "Print the Iceberg schema of a source's table (or write one file per table), for a sink's `schema:`. Types are PostgreSQL's, as the source declares them to the sinks; only primary-key columns are required (NOT NULL ones too are optional, and named on stderr).",
    )
    .argument('<source>', 'the source')
    .option('--table <table>', 'one table (default: every table of the source)')
    .option('--out <dir>', 'write <dir>/<schema>.<table>.json files instead of printing')
    .option('--delete-column <name>', 'the tombstone column the cdc transform adds', '_deleted')
    .option('--no-delete-column', 'leave the tombstone column out')
    .action(async (name: string, options: { table?: string; out?: string; deleteColumn: string | false }) => {
      const project = context().loadProject();
      const config = cdcConfig(project, name);
      const tables = options.table ? [options.table] : config.tables;
      const schemas = await tableSchemas(config, project, tables, options.deleteColumn || undefined);
      // On stderr: what is printed on stdout stays a schema file.
      for (const [table, { notNull }] of schemas) {
        if (notNull.length === 0) continue;
        console.error(
          `note: ${table}: ${notNull.join(', ')} ${notNull.length > 1 ? 'are' : 'is'} NOT NULL in PostgreSQL but optional in the schema, as every column outside the primary key: a tombstone carries only the key, and a column added or made nullable upstream can be null (docs/cdc.md)`,
        );
      }
      if (!options.out) {
        const only = options.table ? schemas.get(options.table)?.schema : undefined;
        console.log(
          JSON.stringify(
            only ?? Object.fromEntries([...schemas].map(([table, { schema }]) => [table, schema])),
            null,
            2,
          ),
        );
        return;
      }
      const dir = path.resolve(options.out);
      mkdirSync(dir, { recursive: true });
      for (const [table, { schema }] of schemas) {
        const file = path.join(dir, `${table}.json`);
        writeFileSync(file, JSON.stringify(schema, null, 2) + '\n');
        console.log(`wrote ${path.relative(process.cwd(), file)}`);
      }
    });
}
