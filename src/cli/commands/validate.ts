/**
 * `tributary validate`: checks the models (configuration, refs, cycles) and runs every data test — the
 * models' own and those of models/tests.yaml on any table — over the current snapshots. Prints a table
 * (`--json` for CI); exits 1 when a test fails or cannot run, 2 when the configuration is invalid.
 */
import type { Command } from 'commander';
import { TributaryError } from '../../errors.ts';
import { collectTests, runDataTests, testsFailed, type TestResult } from '../../query/models/data-tests.ts';
import { topologicalOrder } from '../../query/models/graph.ts';
import { loadModels } from '../../query/models/project.ts';
import { TableViews } from '../../query/table-views.ts';
import type { CliContext } from '../context.ts';
import { color, formatTable } from '../output.ts';
import { withCatalog } from '../project-catalog.ts';

const MARK: Record<TestResult['status'], string> = {
  pass: color('green', 'pass'),
  fail: color('red', 'FAIL'),
  warn: color('yellow', 'warn'),
  error: color('red', 'ERROR'),
};

export function printTestResults(results: readonly TestResult[]): void {
  if (results.length === 0) {
    console.log('No data tests: add tests: to a model, or models/tests.yaml (see docs/models.md).');
    return;
  }
  console.log(
    formatTable(
      ['status', 'table', 'test', 'failures', 'detail'],
      results.map((r) => [MARK[r.status], r.table, r.test, String(r.failures), r.message]),
    ),
  );
  const count = (status: TestResult['status']) => results.filter((r) => r.status === status).length;
  console.log(
    `\n${count('pass')} passed, ${count('fail')} failed, ${count('warn')} warned, ${count('error')} could not run`,
  );
}

export function registerValidate(program: Command, context: () => CliContext): void {
  program
    .command('validate')
    .description('Run every data test on models and tables (models/tests.yaml); exit 1 when one fails.')
    .option('-s, --select <selector...>', "only these models' tests (name, name+, +name, namespace.*)")
    .option('--json', 'print the results as JSON (for CI)')
    .action(async (options: { select?: string[]; json?: boolean }) => {
      const project = context().loadProject();
      const models = loadModels(project.root);
      topologicalOrder(models); // configuration errors and cycles first
      const tests = collectTests(models, options.select ?? []);
      const results = await withCatalog(project, async (catalog, engine) =>
        runDataTests({ catalog, engine, views: new TableViews(catalog, engine.connection) }, models, tests),
      );
      const failed = testsFailed(results);
      if (options.json) {
        console.log(
          JSON.stringify(
            {
              ok: !failed,
              passed: results.filter((r) => r.status === 'pass').length,
              failed: results.filter((r) => r.status === 'fail').length,
              warned: results.filter((r) => r.status === 'warn').length,
              errors: results.filter((r) => r.status === 'error').length,
              results,
            },
            null,
            2,
          ),
        );
      } else printTestResults(results);
      if (failed) {
        throw new TributaryError('TESTS_FAILED', 'data tests failed', {
          hint: options.json ? 'see "results" above' : 'see the table above',
        });
      }
    });
}
