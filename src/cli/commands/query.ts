/** `tributary query "<sql>"`: SQL over the catalog's tables, with time travel. */
import type { Command } from 'commander';
import { TributaryError } from '../../errors.ts';
import { QueryEngine } from '../../query/query-engine.ts';
import type { CliContext } from '../context.ts';
import { formatTable } from '../output.ts';
import { withCatalog } from '../project-catalog.ts';

export function registerQuery(program: Command, context: () => CliContext): void {
  program
    .command('query')
    .description('Run SQL over the tables, named as in the catalog: select count(*) from silver.orders')
    .argument('<sql>', 'the query')
    .option('--format <format>', 'table, json or csv', 'table')
    .option('--snapshot <id>', 'read the tables at this snapshot id')
    .option('--as-of <timestamp>', 'read the tables as they were at this time (ISO 8601)')
    .action(async (sql: string, options: { format: string; snapshot?: string; asOf?: string }) => {
      if (!['table', 'json', 'csv'].includes(options.format)) {
        throw new TributaryError('USAGE', `--format ${options.format}: choose table, json or csv`);
      }
      if (options.snapshot !== undefined && !/^\d+$/.test(options.snapshot)) {
        throw new TributaryError('USAGE', `--snapshot ${options.snapshot}: not a snapshot id`);
      }
      const asOfMs = options.asOf === undefined ? undefined : Date.parse(options.asOf);
      if (asOfMs !== undefined && Number.isNaN(asOfMs)) {
        throw new TributaryError('USAGE', `--as-of ${options.asOf}: not a timestamp`, {
          hint: 'write e.g. 2026-11-23T10:00:00Z',
        });
      }
      await withCatalog(context().loadProject(), async (catalog, engine) => {
        const result = await new QueryEngine(catalog, engine).query(sql, {
          snapshotId: options.snapshot === undefined ? undefined : BigInt(options.snapshot),
          asOfMs,
        });
        const names = result.columns.map((c) => c.name);
        if (options.format === 'json') {
          console.log(JSON.stringify(result.rows, null, 2));
        } else if (options.format === 'csv') {
          console.log(
            [names, ...result.rows.map((row) => names.map((n) => row[n]))]
              .map((r) => r.map(csvCell).join(','))
              .join('\n'),
          );
        } else {
          console.log(
            formatTable(
              names,
              result.rows.map((row) => names.map((n) => cell(row[n]))),
            ),
          );
          console.log(`(${result.rows.length} row${result.rows.length === 1 ? '' : 's'})`);
        }
      });
    });
}

/** A JSON-compatible value as text: scalars as themselves, nested values as JSON. */
function asText(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function cell(value: unknown): string {
  return value === null || value === undefined ? 'NULL' : asText(value);
}

function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  const written = asText(value);
  return /[",\n\r]/.test(written) ? `"${written.replace(/"/g, '""')}"` : written;
}
