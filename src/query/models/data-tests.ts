/**
 * Data tests: each one is a query counting the rows that break it, over the current snapshot of a table (a
 * model's, or any catalog table's from models/tests.yaml). `tributary validate` runs them all.
 */
import { parseTableIdentifier, tableIdentifierToString } from '../../catalog/identifier.ts';
import { quoteIdentifier, quoteLiteral } from '../../iceberg/duckdb.ts';
import { formatMs, type DataTestConfig } from './config.ts';
import { selectModels } from './graph.ts';
import type { ModelProject } from './project.ts';
import { defineView, type ModelContext } from './run.ts';

export interface DataTest {
  readonly table: string;
  readonly config: DataTestConfig;
  /** Where it is declared: the model file or models/tests.yaml. */
  readonly declaredIn: string;
}

export type TestStatus = 'pass' | 'fail' | 'warn' | 'error';

export interface TestResult {
  readonly table: string;
  readonly test: string;
  readonly status: TestStatus;
  /** Rows (or groups, for unique) that break it; 1 for a failed row_count or freshness. */
  readonly failures: number;
  readonly message: string;
  readonly durationMs: number;
}

/** A one-line name for a test: `unique(order_id)`, `accepted_values(status)`. */
export function describeTest(config: DataTestConfig): string {
  if ('not_null' in config) return `not_null(${config.not_null.join(', ')})`;
  if ('unique' in config) return `unique(${config.unique.join(', ')})`;
  if ('accepted_values' in config) return `accepted_values(${config.accepted_values.column})`;
  if ('relationships' in config) {
    const r = config.relationships;
    return `relationships(${r.column} → ${r.to}.${r.field})`;
  }
  if ('expression' in config) return `expression(${config.expression})`;
  if ('row_count' in config) {
    const { min, max } = config.row_count;
    return `row_count(${min ?? 0}..${max ?? '∞'})`;
  }
  return `freshness(${config.freshness.column ?? 'last commit'} ≤ ${formatMs(config.freshness.max_age)})`;
}

/** The tests of the selected models (all by default) and of models/tests.yaml (unless models are selected). */
export function collectTests(project: ModelProject, selectors: readonly string[] = []): DataTest[] {
  const tests: DataTest[] = [];
  for (const model of selectModels(project, selectors)) {
    for (const config of model.config.tests)
      tests.push({ table: model.name, config, declaredIn: model.configFile ?? model.file });
  }
  if (selectors.length === 0) {
    for (const [table, configs] of project.tableTests) {
      const name = tableIdentifierToString(parseTableIdentifier(table));
      for (const config of configs) tests.push({ table: name, config, declaredIn: 'models/tests.yaml' });
    }
  }
  return tests;
}

async function relationFor(context: ModelContext, project: ModelProject, table: string): Promise<string> {
  const model = project.models.get(table);
  if (model?.config.materialized === 'view') {
    await defineView(context, project, model);
    const id = model.identifier;
    return `${quoteIdentifier(id.namespace.join('.'))}.${quoteIdentifier(id.name)}`;
  }
  return (await context.views.current(parseTableIdentifier(table))).view;
}

async function count(context: ModelContext, sql: string): Promise<number> {
  const reader = await context.engine.connection.runAndReadAll(sql);
  return Number(reader.getRows()[0]?.[0] ?? 0);
}

/** Runs one test. Errors (a missing table, bad SQL) are results with status "error", not exceptions. */
export async function runDataTest(
  context: ModelContext,
  project: ModelProject,
  test: DataTest,
  now: number = Date.now(),
): Promise<TestResult> {
  const started = performance.now();
  const config = test.config;
  const name = describeTest(config);
  const result = (failures: number, message: string): TestResult => ({
    table: test.table,
    test: name,
    status: failures === 0 ? 'pass' : config.severity === 'warn' ? 'warn' : 'fail',
    failures,
    message,
    durationMs: performance.now() - started,
  });
  try {
    const relation = await relationFor(context, project, test.table);
    const where = 'where' in config && config.where ? `(${config.where})` : 'true';
    const rows = `(select * from ${relation} where ${where})`;
    if ('not_null' in config) {
      const n = await count(
        context,
        `select count(*) from ${rows} t where ${config.not_null.map((c) => `${quoteIdentifier(c)} is null`).join(' or ')}`,
      );
      return result(n, n ? `${n} row(s) with a null` : 'no nulls');
    }
    if ('unique' in config) {
      const cols = config.unique.map(quoteIdentifier).join(', ');
      const n = await count(
        context,
        `select count(*) from (select ${cols} from ${rows} t group by ${cols} having count(*) > 1)`,
      );
      return result(n, n ? `${n} value(s) appear more than once` : 'all distinct');
    }
    if ('accepted_values' in config) {
      const { column, values } = config.accepted_values;
      const list = values.map((v) => quoteLiteral(String(v))).join(', ');
      const n = await count(
        context,
        `select count(*) from ${rows} t where ${quoteIdentifier(column)} is not null and CAST(${quoteIdentifier(column)} AS VARCHAR) not in (${list})`,
      );
      return result(n, n ? `${n} row(s) with another value` : 'only accepted values');
    }
    if ('relationships' in config) {
      const r = config.relationships;
      const target = await relationFor(context, project, tableIdentifierToString(parseTableIdentifier(r.to)));
      const n = await count(
        context,
        `select count(*) from ${rows} c where c.${quoteIdentifier(r.column)} is not null
           and not exists (select 1 from ${target} p where p.${quoteIdentifier(r.field)} = c.${quoteIdentifier(r.column)})`,
      );
      return result(n, n ? `${n} row(s) reference no ${r.to} row` : 'every reference resolves');
    }
    if ('expression' in config) {
      const n = await count(
        context,
        `select count(*) from ${rows} t where (${config.expression}) is not true`,
      );
      return result(n, n ? `${n} row(s) do not satisfy it` : 'every row satisfies it');
    }
    if ('row_count' in config) {
      const { min, max } = config.row_count;
      const n = await count(context, `select count(*) from ${rows} t`);
      const ok = (min === undefined || n >= min) && (max === undefined || n <= max);
      return result(ok ? 0 : 1, `${n} row(s)`);
    }
    const { column, max_age } = config.freshness;
    let newest: number | undefined;
    if (column) {
      const reader = await context.engine.connection.runAndReadAll(
        `select epoch_ms(max(${quoteIdentifier(column)})::TIMESTAMPTZ) from ${relation}`,
      );
      const value = reader.getRows()[0]?.[0];
      newest = value === null || value === undefined ? undefined : Number(value);
    } else {
      const table = await context.catalog.loadTable(parseTableIdentifier(test.table));
      newest = table.currentSnapshot?.['timestamp-ms'];
    }
    if (newest === undefined) return result(1, 'no data');
    const age = now - newest;
    return result(
      age > max_age ? 1 : 0,
      `newest ${column ?? 'commit'} is ${formatMs(Math.max(0, Math.round(age / 1000) * 1000))} old`,
    );
  } catch (error) {
    return {
      table: test.table,
      test: name,
      status: 'error',
      failures: 0,
      message: (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '',
      durationMs: performance.now() - started,
    };
  }
}

export async function runDataTests(
  context: ModelContext,
  project: ModelProject,
  tests: readonly DataTest[],
): Promise<TestResult[]> {
  const results: TestResult[] = [];
  for (const test of tests) results.push(await runDataTest(context, project, test));
  return results;
}

/** Whether results should fail a run: any fail or error (warnings do not). */
export function testsFailed(results: readonly TestResult[]): boolean {
  return results.some((r) => r.status === 'fail' || r.status === 'error');
}
