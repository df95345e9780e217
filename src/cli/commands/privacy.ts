/**
 * `tributary erase` and `tributary export`: a person's rows across tables, deleted for good (row-level
 * deletes, then the snapshot expiry that removes the old files) with an audit record, or gathered into one
 * NDJSON or Parquet file.
 */
import path from 'node:path';
import type { Command } from 'commander';
import { resolveCatalogUri } from '../../catalog/open.ts';
import { openSqlDriver } from '../../catalog/sql-driver.ts';
import { openProjectLog } from '../../components.ts';
import type { Project } from '../../core/project.ts';
import { TributaryError } from '../../errors.ts';
import { formatMs } from '../../query/models/config.ts';
import { loadModels, type ModelProject } from '../../query/models/project.ts';
import { eraseRows, exportRows, listAudit, type SkippedTable } from '../../query/privacy.ts';
import type { CliContext } from '../context.ts';
import { wholeNumber } from '../options.ts';
import { color, formatTable } from '../output.ts';
import { withCatalog } from '../project-catalog.ts';
import { Progress } from '../progress.ts';

function tablesOption(value: string | undefined): string[] | undefined {
  return value
    ?.split(',')
    .map((t) => t.trim())
    .filter(Boolean);
}

/** Quoted for a POSIX shell's double quotes. */
function shellQuoted(text: string): string {
  return `"${text.replace(/[\\"$`]/g, '\\$&')}"`;
}

/**
 * Tables left out that keep the values as JSON text (change tables, dead-letter tables): the person's data
 * may be there, out of the condition's reach. Said on stderr, with the command that reaches them.
 */
function warnJsonText(command: 'erase' | 'export', skipped: readonly SkippedTable[]): void {
  for (const s of skipped) {
    if (!s.jsonColumns || s.jsonRows === 0) continue;
    const what =
      s.jsonRows === undefined
        ? `${s.table} keeps rows as JSON text (${s.jsonColumns.join(', ')}), which the condition does not reach`
        : `${s.jsonRows} row(s) of ${s.table} match it in JSON text (${s.jsonColumns.join(', ')}), which the condition does not reach`;
    const how = s.jsonWhere
      ? `tributary ${command} --tables ${s.table} --where ${shellQuoted(s.jsonWhere)}${command === 'export' ? ' --to …' : ''}`
      : `tributary ${command} --tables ${s.table} with a condition on the JSON, e.g. ${shellQuoted(`json_extract_string(${s.jsonColumns.at(-1)}, '$.user_id') = 'u-42'`)}`;
    console.error(`${color('yellow', 'warning')} ${what}: ${how}`);
  }
}

/**
 * A model the erasure reached, built from tables it did not reach (the condition names columns they do not
 * have): if one of them holds the person under other columns (`cust` where the model says `customer_id`),
 * the model's next full rebuild brings their rows back. Said on stderr, naming the model and those tables.
 */
function warnModelInputs(project: Project, reached: ReadonlySet<string>): void {
  let models: ModelProject;
  try {
    models = loadModels(project.root);
  } catch {
    return; // a models folder that does not load is `models list`'s to explain, not erase's
  }
  for (const model of models.models.values()) {
    if (!reached.has(model.name)) continue;
    const inputs = new Set<string>();
    const visit = (refs: readonly string[]) => {
      for (const ref of refs) {
        if (inputs.has(ref)) continue;
        inputs.add(ref);
        visit(models.models.get(ref)?.refs ?? []);
      }
    };
    visit(model.refs);
    const unreached = [...inputs].filter((table) => !reached.has(table));
    if (unreached.length)
      console.error(
        `${color('yellow', 'warning')} ${model.name} is built from ${unreached.join(', ')}, which the condition did not reach: if the person is there under other columns, rebuilding ${model.name} (models run --full-refresh) brings their rows back — erase there too, with --tables and a condition on those columns`,
      );
  }
}

/**
 * The log's topics keep the raw records (the events, CDC changes, rejected records) until their retention
 * removes them: erase cannot reach them, and a pipeline reading them again (a reset, a new pipeline,
 * `dlq replay`) would write the person back. Said after every erasure, with each topic's retention.
 */
async function warnLogTopics(project: Project): Promise<void> {
  const log = await openProjectLog(project);
  try {
    const kept: string[] = [];
    for (const topic of await log.listTopics()) {
      const records = (await log.offsets(topic.name)).reduce((n, o) => n + o.end - o.start, 0);
      if (records > 0)
        kept.push(
          `${topic.name} (${topic.retentionMs === undefined ? 'kept forever' : formatMs(topic.retentionMs)})`,
        );
    }
    if (kept.length)
      console.error(
        `${color('yellow', 'warning')} the log keeps the raw records until their retention, out of erase's reach: ${kept.join(', ')}; reading them again (a pipeline reset, a new pipeline, dlq replay) would bring the rows back — set streams.<name>.retention (docs/ingest.md, Retention) or a CDC source's retention (docs/cdc.md)`,
      );
  } finally {
    await log.close();
  }
}

async function withAudit<T>(
  project: Project,
  work: (audit: Awaited<ReturnType<typeof openSqlDriver>>) => Promise<T>,
): Promise<T> {
  const driver = await openSqlDriver(resolveCatalogUri(project.platform.catalog.uri, project.root));
  try {
    return await work(driver);
  } finally {
    await driver.close();
  }
}

export function registerPrivacy(program: Command, context: () => CliContext): void {
  program
    .command('erase')
    .description(
      'Delete the rows matching a condition from every table it applies to, expire the snapshots that still hold them (their files are deleted) and record an audit entry.',
    )
    .requiredOption('--where <condition>', `SQL condition, e.g. "user_id = 'u-42'"`)
    .option(
      '--tables <list>',
      'comma-separated tables (default: every table whose columns the condition names)',
    )
    .option('--dry-run', 'count the matching rows and files, change nothing')
    .option('--reason <text>', 'why, e.g. the request (kept in the audit record)')
    .option('--actor <name>', 'who runs it (kept in the audit record; default: the OS user)')
    .option('--json', 'print the result as JSON')
    .action(
      async (options: {
        where: string;
        tables?: string;
        dryRun?: boolean;
        reason?: string;
        actor?: string;
        json?: boolean;
      }) => {
        const project = context().loadProject();
        const tables = tablesOption(options.tables);
        const result = await withCatalog(project, (catalog, engine) =>
          withAudit(project, async (audit) => {
            const progress = new Progress(options.dryRun ? 'looking for matching rows' : 'erasing');
            try {
              const erased = await eraseRows(
                catalog,
                engine,
                {
                  where: options.where,
                  ...(tables ? { tables } : {}),
                  ...(options.dryRun ? { dryRun: true } : {}),
                  ...(options.reason ? { reason: options.reason } : {}),
                  ...(options.actor ? { actor: options.actor } : {}),
                },
                audit,
              );
              progress.done(options.dryRun ? 'dry run done' : `erasure ${erased.id} done`);
              return erased;
            } catch (error) {
              progress.fail();
              throw error;
            }
          }),
        );
        if (options.json) console.log(JSON.stringify(result, null, 2));
        else {
          console.log(
            formatTable(
              ['table', 'rows', 'files rewritten', 'snapshots expired', 'files deleted', 'remaining'],
              result.tables.map((t) => [
                t.table,
                String(t.rows),
                String(t.rewrittenFiles),
                String(t.expiredSnapshots),
                String(t.deletedFiles),
                t.remainingFiles.length ? color('red', String(t.remainingFiles.length)) : '0',
              ]),
            ),
          );
          if (result.skipped.length)
            console.log(color('dim', `not applicable: ${result.skipped.map((s) => s.table).join(', ')}`));
          // What the dry run cannot show in its counts: the real run takes time travel away.
          const expiring = result.tables.filter((t) => (t.rows > 0 || t.inHistory) && !t.gcDisabled);
          if (options.dryRun && expiring.length)
            console.log(
              `the erasure would expire every snapshot before it in ${expiring.map((t) => t.table).join(', ')}: time travel to before it is gone there`,
            );
        }
        warnJsonText('erase', result.skipped);
        warnModelInputs(project, new Set(result.tables.map((t) => t.table)));
        if (!options.dryRun) await warnLogTopics(project);
        // Not done while the person's values remain in JSON text: a script reading the exit status must
        // not mark the request done (the warnings above give the commands that reach them).
        const inJson = options.dryRun ? [] : result.skipped.filter((s) => (s.jsonRows ?? 0) > 0);
        if (inJson.length)
          throw new TributaryError(
            'ERASE_INCOMPLETE',
            `matching values remain as JSON text in ${inJson.map((s) => `${s.table} (${s.jsonRows} row(s))`).join(', ')}`,
            { hint: 'erase them with the commands the warnings above give, then the request is done' },
          );
        const remaining = result.tables.filter((t) => t.remainingFiles.length);
        const shared = remaining.filter((t) => t.gcDisabled).map((t) => t.table);
        if (remaining.length) {
          throw new TributaryError(
            'ERASE_INCOMPLETE',
            `matching rows remain in ${remaining.map((t) => `${t.table} (${t.remainingFiles.length} file(s))`).join(', ')}`,
            {
              hint: `${shared.length ? `gc.enabled=false keeps the old snapshots and files of ${shared.join(', ')} (they may be other tables'): erase the rows where those files belong, or set gc.enabled=true and erase again; ` : ''}branches or tags keep old snapshots (${remaining.flatMap((t) => t.protectedRefs).join(', ') || 'none'}), a writer added them meanwhile, or a write that never committed left them (no snapshot reaches such a file: "tributary tables remove-orphan-files <table>" deletes it once it is old enough): remove the refs or those files and erase again`,
            },
          );
        }
      },
    );

  program
    .command('export')
    .description(
      "Gather the rows matching a condition from every table it applies to into one NDJSON or Parquet file (a person's data).",
    )
    .requiredOption('--where <condition>', `SQL condition, e.g. "user_id = 'u-42'"`)
    .requiredOption(
      '--to <file>',
      'output file: .parquet for Parquet, anything else NDJSON ({"table": …, "row": {…}} per line)',
    )
    .option(
      '--tables <list>',
      'comma-separated tables (default: every table whose columns the condition names)',
    )
    .option('--format <format>', 'ndjson or parquet (default: from the file extension)')
    .option('--reason <text>', 'why, e.g. the request (kept in the audit record)')
    .option('--actor <name>', 'who runs it (kept in the audit record; default: the OS user)')
    .action(
      async (options: {
        where: string;
        to: string;
        tables?: string;
        format?: string;
        reason?: string;
        actor?: string;
      }) => {
        if (options.format && options.format !== 'ndjson' && options.format !== 'parquet')
          throw new TributaryError('USAGE', `--format ${options.format}: choose ndjson or parquet`);
        const project = context().loadProject();
        const tables = tablesOption(options.tables);
        const result = await withCatalog(project, (catalog, engine) =>
          withAudit(project, (audit) =>
            exportRows(
              catalog,
              engine,
              {
                where: options.where,
                to: path.resolve(options.to),
                ...(tables ? { tables } : {}),
                ...(options.format ? { format: options.format as 'ndjson' | 'parquet' } : {}),
                ...(options.reason ? { reason: options.reason } : {}),
                ...(options.actor ? { actor: options.actor } : {}),
              },
              audit,
            ),
          ),
        );
        // Every table searched is listed, those without a match too: "0 rows from bronze.x" is an answer,
        // a table left out of the list is a question.
        const withRows = result.tables.filter((t) => t.rows > 0).length;
        console.log(
          `wrote ${result.rows} row(s) from ${withRows} table(s) of ${result.tables.length} searched to ${result.file} (${result.format})`,
        );
        for (const t of result.tables) console.log(`  ${t.table}: ${t.rows}`);
        if (result.skipped.length)
          console.log(color('dim', `not applicable: ${result.skipped.map((s) => s.table).join(', ')}`));
        warnJsonText('export', result.skipped);
      },
    );

  program
    .command('audit')
    .description(
      'List the privacy audit records (erasures and exports), newest first: who, when, why, which tables, how many rows.',
    )
    .option(
      '--where <condition>',
      'only those made with exactly this condition (matched by its SHA-256, as the records keep it)',
    )
    .option('--limit <n>', 'at most this many', wholeNumber('--limit'), 50)
    .option('--json', 'print JSON')
    .action(async (options: { where?: string; limit: number; json?: boolean }) => {
      const project = context().loadProject();
      const records = await withAudit(project, (audit) =>
        listAudit(audit, options.limit, options.where === undefined ? {} : { where: options.where }),
      );
      if (options.json) {
        console.log(JSON.stringify(records, null, 2));
        return;
      }
      if (records.length === 0) {
        console.log(
          options.where ? 'No erasure or export with this condition.' : 'No erasure or export yet.',
        );
        return;
      }
      console.log(
        formatTable(
          ['id', 'kind', 'at', 'actor', 'reason', 'rows', 'tables'],
          records.map((r) => {
            const detail = (r.detail ?? {}) as {
              reason?: string | null;
              tables?: ReadonlyArray<{ table: string; rows: number }>;
            };
            const tables = detail.tables ?? [];
            return [
              r.id,
              r.kind,
              new Date(r.at).toISOString(),
              r.actor,
              detail.reason ?? '',
              String(tables.reduce((n, t) => n + t.rows, 0)),
              tables.map((t) => t.table).join(', '),
            ];
          }),
        ),
      );
    });
}
