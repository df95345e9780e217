/** `tributary dlq list | show | replay`: inspect a pipeline's rejected records, and send them through again. */
import type { Command } from 'commander';
import { parseTableIdentifier } from '../../catalog/identifier.ts';
import { dlqTableOf, openProjectLog, pipelineNamed } from '../../components.ts';
import { TributaryError } from '../../errors.ts';
import { deleteWhere } from '../../iceberg/operations/write.ts';
import { QueryEngine } from '../../query/query-engine.ts';
import type { CliContext } from '../context.ts';
import { formatTable } from '../output.ts';
import { withCatalog } from '../project-catalog.ts';

const sqlString = (text: string) => `'${text.replace(/'/g, "''")}'`;

export function registerDlq(program: Command, context: () => CliContext): void {
  const dlq = program
    .command('dlq')
    .description("A pipeline's dead-letter queue: list, show and replay rejected records.");

  dlq
    .command('list')
    .description('List the rejected records of a pipeline, newest first, with stage and reason.')
    .argument('<pipeline>', 'the pipeline')
    .option('--limit <n>', 'at most this many', '50')
    .option('--json', 'print JSON')
    .action(async (name: string, options: { limit: string; json?: boolean }) => {
      const project = context().loadProject();
      pipelineNamed(project, name);
      const table = dlqTableOf(project, name);
      const limit = Number(options.limit);
      if (!Number.isInteger(limit) || limit < 1)
        throw new TributaryError('USAGE', '--limit must be a whole number ≥ 1');
      await withCatalog(project, async (catalog, engine) => {
        if (!(await catalog.tableExists(parseTableIdentifier(table)))) {
          console.log(options.json ? '[]' : `No rejected records: ${table} does not exist yet.`);
          return;
        }
        const result = await new QueryEngine(catalog, engine).query(
          `select "partition", "offset", stage, error, failed_at from ${table} where pipeline = ${sqlString(name)} order by failed_at desc, "partition", "offset" limit ${limit}`,
        );
        if (options.json) console.log(JSON.stringify(result.rows, null, 2));
        else if (result.rows.length === 0) console.log(`No rejected records for ${name}.`);
        else
          console.log(
            formatTable(
              ['position', 'stage', 'error', 'failed at'],
              result.rows.map((r) => [
                `${String(r.partition)}:${String(r.offset)}`,
                String(r.stage),
                String(r.error).slice(0, 100),
                String(r.failed_at),
              ]),
            ),
          );
      });
    });

  dlq
    .command('show')
    .description('Show one rejected record in full: reason, stage, position and payload.')
    .argument('<pipeline>', 'the pipeline')
    .argument('<position>', 'partition:offset, as `dlq list` prints it')
    .action(async (name: string, position: string) => {
      const match = /^(\d+):(\d+)$/.exec(position);
      if (!match)
        throw new TributaryError('USAGE', `"${position}" is not a position`, {
          hint: 'write partition:offset, e.g. 2:1041',
        });
      const project = context().loadProject();
      pipelineNamed(project, name);
      await withCatalog(project, async (catalog, engine) => {
        const result = await new QueryEngine(catalog, engine).query(
          `select * from ${dlqTableOf(project, name)} where pipeline = ${sqlString(name)} and "partition" = ${match[1]} and "offset" = ${match[2]} order by failed_at desc limit 1`,
        );
        const row = result.rows[0];
        if (!row)
          throw new TributaryError('USAGE', `no rejected record of ${name} at ${position}`, {
            hint: 'see `tributary dlq list`',
          });
        console.log(JSON.stringify(row, null, 2));
      });
    });

  dlq
    .command('replay')
    .description(
      'Send rejected records back through the pipeline (after fixing its schema or transforms), and remove them from the DLQ.',
    )
    .argument('<pipeline>', 'the pipeline')
    .option('--where <sql>', 'only the DLQ rows matching this SQL condition, e.g. "stage = \'validate\'"')
    .action(async (name: string, options: { where?: string }) => {
      const project = context().loadProject();
      const pipeline = pipelineNamed(project, name);
      const table = dlqTableOf(project, name);
      const condition = `pipeline = ${sqlString(name)}${options.where ? ` and (${options.where})` : ''}`;
      const log = await openProjectLog(project);
      try {
        await withCatalog(project, async (catalog, engine) => {
          if (!(await catalog.tableExists(parseTableIdentifier(table)))) {
            console.log(`Nothing to replay: ${table} does not exist yet.`);
            return;
          }
          const rows = (
            await new QueryEngine(catalog, engine).query(
              `select key, payload from ${table} where ${condition} order by "partition", "offset"`,
            )
          ).rows;
          if (rows.length === 0) {
            console.log('Nothing to replay.');
            return;
          }
          const encoder = new TextEncoder();
          const topic = pipeline.config.source.topic;
          for (let i = 0; i < rows.length; i += 1000) {
            await log.append(
              topic,
              rows.slice(i, i + 1000).map((r) => ({
                key: typeof r.key === 'string' ? r.key : null,
                value: encoder.encode(
                  typeof r.payload === 'string' ? r.payload : JSON.stringify(r.payload ?? null),
                ),
              })),
            );
          }
          // Appended first, removed second: a crash in between replays these records twice, never loses them.
          await deleteWhere(await catalog.loadTable(parseTableIdentifier(table)), engine, condition);
          console.log(`Replayed ${rows.length} record(s) into ${topic}; removed them from ${table}.`);
        });
      } finally {
        await log.close();
      }
    });
}
