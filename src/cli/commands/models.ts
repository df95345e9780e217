/** `tributary models …`: list, run and draw the SQL models of models/. */
import path from 'node:path';
import type { Command } from 'commander';
import { isTributaryError, TributaryError } from '../../errors.ts';
import { collectTests, runDataTests, testsFailed } from '../../query/models/data-tests.ts';
import { renderGraph, selectModels, sourceTables, topologicalOrder } from '../../query/models/graph.ts';
import { loadModels, type Model } from '../../query/models/project.ts';
import { runModels, type ModelOutcome } from '../../query/models/run.ts';
import { TableViews } from '../../query/table-views.ts';
import type { CliContext } from '../context.ts';
import { color, formatTable } from '../output.ts';
import { withCatalog } from '../project-catalog.ts';
import { Progress } from '../progress.ts';
import { printTestResults } from './validate.ts';

function trigger(model: Model): string {
  const parts: string[] = [];
  if (model.config.schedule) parts.push(`cron ${model.config.schedule}`);
  if (model.config.after) parts.push(`after ${model.config.after.join(', ')}`);
  return parts.join('; ') || '—';
}

function describeOutcome(outcome: ModelOutcome): string {
  if (outcome.status === 'skipped')
    return `${color('yellow', 'skipped')} ${outcome.model}: ${String(outcome.error)}`;
  if (outcome.status === 'failed') {
    const error = outcome.error;
    const text = isTributaryError(error)
      ? `[${error.code}] ${error.toLine()}`
      : error instanceof Error
        ? error.message
        : String(error);
    return `${color('red', 'failed')} ${outcome.model}: ${text}`;
  }
  const r = outcome.result!;
  const what =
    r.action === 'view'
      ? 'view defined'
      : r.action === 'up-to-date'
        ? 'up to date (no new upstream data)'
        : `${r.action}, ${r.rowsWritten.toLocaleString('en-US')} rows written${r.snapshotId ? ` (snapshot ${r.snapshotId})` : ''}`;
  return `${color('green', 'ok')} ${outcome.model}: ${what}${r.reason ? color('dim', ` — ${r.reason}`) : ''}`;
}

export function registerModels(program: Command, context: () => CliContext): void {
  const models = program
    .command('models')
    .description('SQL models (models/**/*.sql): build gold tables from other tables with ref().');

  models
    .command('list')
    .description('List the models in run order: table, materialization, trigger and what each reads.')
    .option('--json', 'print JSON')
    .action((options: { json?: boolean }) => {
      const project = loadModels(context().loadProject().root);
      const order = topologicalOrder(project);
      if (options.json) {
        console.log(
          JSON.stringify(
            order.map((m) => ({
              model: m.name,
              file: path.relative(project.root, m.file),
              materialized: m.config.materialized,
              uniqueKey: m.config.unique_key ?? null,
              schedule: m.config.schedule ?? null,
              after: m.config.after ?? null,
              refs: m.refs,
              sources: sourceTables(project, m),
              tests: m.config.tests.length,
              description: m.config.description ?? null,
            })),
            null,
            2,
          ),
        );
        return;
      }
      if (order.length === 0) {
        console.log('No models yet: add models/<namespace>/<name>.sql (see docs/models.md).');
        return;
      }
      console.log(
        formatTable(
          ['model', 'materialized', 'trigger', 'reads', 'tests'],
          order.map((m) => [
            m.name,
            m.config.materialized,
            trigger(m),
            m.refs.join(', ') || '—',
            String(m.config.tests.length),
          ]),
        ),
      );
    });

  models
    .command('run')
    .description(
      'Build models in dependency order; a model whose upstream model failed is skipped. Exit 1 if any failed.',
    )
    .option(
      '-s, --select <selector...>',
      'models to run: name, name+ (and downstream), +name (and upstream), namespace.*',
    )
    .option(
      '--full-refresh',
      'rebuild incremental models from all upstream data (and recreate tables whose columns changed type)',
    )
    .option('--test', "run the selected models' data tests afterwards (exit 1 if one fails)")
    .option('--no-wait', 'do not wait for fresh inputs (readiness gates)')
    .option('--json', 'print the outcomes as JSON')
    .action(
      async (options: {
        select?: string[];
        fullRefresh?: boolean;
        test?: boolean;
        wait: boolean;
        json?: boolean;
      }) => {
        const project = context().loadProject();
        const modelProject = loadModels(project.root);
        const selected = selectModels(modelProject, options.select ?? []);
        if (selected.length === 0) {
          console.log('No models to run: add models/<namespace>/<name>.sql (see docs/models.md).');
          return;
        }
        await withCatalog(project, async (catalog, engine) => {
          const modelContext = { catalog, engine, views: new TableViews(catalog, engine.connection) };
          let progress: Progress | undefined;
          const started = performance.now();
          const outcomes = await runModels(modelContext, modelProject, selected, {
            fullRefresh: options.fullRefresh ?? false,
            skipReadiness: !options.wait,
            onStart: (model) => {
              if (!options.json) progress = new Progress(`${model.name} (${model.config.materialized})`);
            },
            onEnd: (outcome) => {
              if (options.json) return;
              if (outcome.status === 'ok') progress?.done(describeOutcome(outcome));
              else {
                progress?.fail();
                console.log(describeOutcome(outcome));
              }
              progress = undefined;
            },
          });
          const failed = outcomes.filter((o) => o.status !== 'ok');
          let testFailure: TributaryError | undefined;
          if (options.test) {
            const results = await runDataTests(
              modelContext,
              modelProject,
              collectTests(
                modelProject,
                selected.map((m) => m.name),
              ),
            );
            if (!options.json) printTestResults(results);
            if (testsFailed(results))
              testFailure = new TributaryError('TESTS_FAILED', 'data tests failed', {
                hint: 'see the table above; `tributary validate` runs every test',
              });
          }
          if (options.json) {
            console.log(
              JSON.stringify(
                outcomes.map((o) => ({
                  model: o.model,
                  status: o.status,
                  ...(o.result ?? {}),
                  ...(o.error
                    ? {
                        error: isTributaryError(o.error)
                          ? { code: o.error.code, message: o.error.message }
                          : o.error instanceof Error
                            ? o.error.message
                            : JSON.stringify(o.error),
                      }
                    : {}),
                })),
                null,
                2,
              ),
            );
          } else {
            console.log(
              `${outcomes.length - failed.length} of ${outcomes.length} model(s) ok in ${((performance.now() - started) / 1000).toFixed(2)}s`,
            );
          }
          if (failed.length) {
            throw new TributaryError(
              'MODEL_FAILED',
              `${failed.length} of ${outcomes.length} model(s) failed or were skipped`,
              {
                hint: 'fix the first failure above and run again with --select <model>+',
              },
            );
          }
          if (testFailure) throw testFailure;
        });
      },
    );

  models
    .command('graph')
    .description(
      'Print the dependency graph of models and their sources, as Mermaid (default) or Graphviz DOT.',
    )
    .option('--format <format>', 'mermaid or dot', 'mermaid')
    .action((options: { format: string }) => {
      if (options.format !== 'mermaid' && options.format !== 'dot')
        throw new TributaryError('USAGE', `--format ${options.format}: choose mermaid or dot`);
      console.log(renderGraph(loadModels(context().loadProject().root), options.format));
    });
}
