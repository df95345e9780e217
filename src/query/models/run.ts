/**
 * Building models into Iceberg tables.
 *
 *  - table: the query over the current snapshots of its refs replaces the table's rows in one snapshot.
 *  - incremental: only upstream data new since the last run is read (see state.ts) and appended, or merged
 *    by `unique_key` (position-delete upserts, optionally combining columns with sum/min/max so aggregates
 *    stay exact). What was consumed is recorded in the same snapshot's summary, so a refresh processes only
 *    new data and a crash between runs loses or repeats nothing. A first run, a changed model, or upstream
 *    changes other than appends make a full refresh.
 *  - view: a DuckDB view, defined for the models and tests that read it; nothing is stored.
 *
 * The table is created on the first run with the schema of the query's result (and `partition:`); columns
 * added or dropped later evolve its schema.
 */
import { randomUUID } from 'node:crypto';
import type { Catalog } from '../../catalog/catalog.ts';
import { parseTableIdentifier, tableIdentifierToString } from '../../catalog/identifier.ts';
import { isTributaryError, TributaryError } from '../../errors.ts';
import { describeRelation, writeDataFiles } from '../../iceberg/data-files.ts';
import { quoteIdentifier, type Engine } from '../../iceberg/duckdb.ts';
import { updateSchema } from '../../iceberg/operations/evolve.ts';
import { append, upsert } from '../../iceberg/operations/write.ts';
import { buildSpec, parsePartitionExpression } from '../../iceberg/partition-spec.ts';
import { planScan, type ScanPlan } from '../../iceberg/scan.ts';
import { assignFreshIds } from '../../iceberg/schema.ts';
import type { SchemaChange } from '../../iceberg/schema-update.ts';
import { SnapshotProducer } from '../../iceberg/snapshot-producer.ts';
import type { TableMetadata } from '../../iceberg/metadata.ts';
import type { Table } from '../../iceberg/table.ts';
import type { IcebergType, Schema, StructType } from '../../iceberg/types.ts';
import { structOfColumns } from '../duckdb-types.ts';
import type { TableViews } from '../table-views.ts';
import type { MergeFunction } from './config.ts';
import { topologicalOrder, upstreamModels } from './graph.ts';
import { awaitReadiness } from './readiness.ts';
import { REF_PATTERN, type Model, type ModelProject } from './project.ts';
import {
  HASH_KEY,
  MODE_KEY,
  MODEL_KEY,
  modelHash,
  newDataSince,
  modelStateOf,
  readModelState,
  SNAPSHOT_PREFIX,
  WATERMARK_PREFIX,
  type ModelState,
} from './state.ts';

export interface ModelContext {
  readonly catalog: Catalog;
  readonly engine: Engine;
  /** Views of catalog tables on `engine`'s connection. */
  readonly views: TableViews;
  /** When aborted (a job's timeout), the model stops before committing anything. */
  readonly signal?: AbortSignal;
}

function checkAborted(context: ModelContext, model: Model): void {
  if (context.signal?.aborted)
    throw new TributaryError('JOB_FAILED', `model ${model.name} was stopped before it committed`, {
      hint: 'raise the timeout of the job, or make the model cheaper',
      retryable: true,
    });
}

export type ModelAction = 'created' | 'full-refresh' | 'incremental' | 'up-to-date' | 'view';

export interface ModelRunResult {
  readonly model: string;
  readonly materialized: 'table' | 'incremental' | 'view';
  readonly action: ModelAction;
  /** Why a full refresh happened, or why nothing did. */
  readonly reason?: string;
  readonly rowsWritten: number;
  readonly snapshotId?: string;
  /** Upstream table → the snapshot id (or watermark) read up to. */
  readonly consumed: Readonly<Record<string, string>>;
  readonly durationMs: number;
}

export interface RunModelOptions {
  /** Rebuild from all upstream data (incremental models), recreating the table when its schema cannot evolve. */
  readonly fullRefresh?: boolean;
}

const DELTA_SCHEMA = '__tributary_delta';

function modelFailed(model: Model, message: string, cause?: unknown, hint?: string): TributaryError {
  return new TributaryError('MODEL_FAILED', `model ${model.name}: ${message}`, {
    ...(cause === undefined ? {} : { cause }),
    hint: hint ?? `fix ${model.file} and run \`tributary models run --select ${model.name}\``,
    context: { model: model.name },
  });
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '';
}

/**
 * What DuckDB said of a model's SQL: the table library's wrapping of it ("the input cannot be read", for
 * an input that may be a file) says nothing more of a query.
 */
function sqlError(cause: unknown): string {
  return firstLine(
    isTributaryError(cause, 'INVALID_INPUT') && cause.cause !== undefined ? cause.cause : cause,
  );
}

/** The model's SQL with each ref replaced by the relation `bind` gives for its table. */
export function compileSql(model: Model, project: ModelProject, bind: (table: string) => string): string {
  // The query is wrapped (`(…)`, `create view … as …`): without a closing semicolon, and ending with a line
  // break so that a closing `-- comment` ends before what follows it.
  // Closing lines that are blank or a `--` comment go, then a closing `;` with any comment after it on its
  // line, when it is outside a string (an even number of quotes before it). Line by line: linear time.
  const lines = model.sql.split('\n');
  while (lines.length && (lines.at(-1)!.trim() === '' || lines.at(-1)!.trim().startsWith('--'))) lines.pop();
  let sql = lines.join('\n');
  const closing = /;[ \t]*(?:--[^\n]*)?\s*$/.exec(sql);
  if (closing && (sql.slice(0, closing.index).split("'").length - 1) % 2 === 0)
    sql = sql.slice(0, closing.index);
  const compiled = sql.replace(REF_PATTERN, (_m, _q, ref: string) => {
    if (ref.includes('.')) return bind(tableIdentifierToString(parseTableIdentifier(ref)));
    const named = [...project.models.values()].find((m) => m.identifier.name === ref);
    return bind(named?.name ?? ref);
  });
  return `${compiled}\n`;
}

function quotedName(name: string): string {
  const identifier = parseTableIdentifier(name);
  return `${quoteIdentifier(identifier.namespace.join('.'))}.${quoteIdentifier(identifier.name)}`;
}

/**
 * Relations for a model's refs: its delta views (incremental), view models (defined on demand), and the
 * current snapshot of every other table. Returns each catalog table's snapshot id too.
 */
async function bindRefs(
  context: ModelContext,
  project: ModelProject,
  model: Model,
  overrides: ReadonlyMap<string, string> = new Map(),
): Promise<{ bindings: Map<string, string>; snapshots: Map<string, bigint | undefined> }> {
  const bindings = new Map<string, string>();
  const snapshots = new Map<string, bigint | undefined>();
  for (const ref of model.refs) {
    const override = overrides.get(ref);
    if (override) {
      bindings.set(ref, override);
      continue;
    }
    const upstream = project.models.get(ref);
    if (upstream?.config.materialized === 'view') {
      await defineView(context, project, upstream);
      bindings.set(ref, quotedName(ref));
      continue;
    }
    try {
      const exposed = await context.views.current(parseTableIdentifier(ref));
      bindings.set(ref, exposed.view);
      snapshots.set(ref, exposed.snapshotId);
    } catch (error) {
      if (isTributaryError(error, 'TABLE_NOT_FOUND') || isTributaryError(error, 'NAMESPACE_NOT_FOUND')) {
        throw modelFailed(
          model,
          `it reads ${ref}, which does not exist`,
          error,
          upstream
            ? `run the model ${ref} first (or --select ${model.name} with a leading +)`
            : 'check the ref',
        );
      }
      throw error;
    }
  }
  return { bindings, snapshots };
}

/** Defines a view model (and the view models it reads) in the engine. */
export async function defineView(context: ModelContext, project: ModelProject, model: Model): Promise<void> {
  const { bindings } = await bindRefs(context, project, model);
  const sql = compileSql(model, project, (ref) => bindings.get(ref) ?? quotedName(ref));
  const schema = quoteIdentifier(model.identifier.namespace.join('.'));
  try {
    await context.engine.connection.run(`create schema if not exists ${schema}`);
    await context.engine.connection.run(`create or replace view ${quotedName(model.name)} as ${sql}`);
  } catch (cause) {
    throw modelFailed(model, `its SQL failed: ${sqlError(cause)}`, cause);
  }
}

function typeKey(type: IcebergType): string {
  return JSON.stringify(type, (key, value: unknown) =>
    key === 'id' || key === 'element-id' || key === 'key-id' || key === 'value-id' ? undefined : value,
  );
}

const WIDENINGS: Record<string, string[]> = { int: ['long'], float: ['double'] };

/** Schema changes that make the table's schema the result's; undefined when a type cannot change in place. */
function schemaChanges(schema: Schema, result: StructType): SchemaChange[] | undefined {
  const changes: SchemaChange[] = [];
  for (const field of result.fields) {
    const existing = schema.fields.find((f) => f.name === field.name);
    if (!existing) {
      changes.push({ kind: 'add-column', name: field.name, type: field.type });
      continue;
    }
    if (typeKey(existing.type) === typeKey(field.type)) continue;
    if (typeof existing.type === 'string' && typeof field.type === 'string') {
      const widen = WIDENINGS[existing.type]?.includes(field.type);
      const decimalFrom = /^decimal\((\d+), (\d+)\)$/.exec(existing.type);
      const decimalTo = /^decimal\((\d+), (\d+)\)$/.exec(field.type);
      const decimalWiden =
        decimalFrom &&
        decimalTo &&
        decimalFrom[2] === decimalTo[2] &&
        Number(decimalTo[1]) >= Number(decimalFrom[1]);
      if (widen || decimalWiden) {
        changes.push({ kind: 'update-column-type', column: field.name, type: field.type });
        continue;
      }
      // A narrower result type is written into the wider column.
      if (WIDENINGS[field.type]?.includes(existing.type)) continue;
    }
    return undefined;
  }
  for (const field of schema.fields)
    if (!result.fields.some((f) => f.name === field.name))
      changes.push({ kind: 'delete-column', column: field.name });
  return changes;
}

/**
 * What the model's table needs to hold `relation`'s columns: nothing, a schema change, to be created, or
 * (a full refresh only) to be dropped and created again. Changes nothing.
 */
async function planTable(
  context: ModelContext,
  model: Model,
  relation: string,
  fullRefresh: boolean,
): Promise<TablePlan> {
  let columns: Map<string, string>;
  try {
    columns = await describeRelation(context.engine, relation);
  } catch (cause) {
    throw modelFailed(model, `its SQL failed: ${sqlError(cause)}`, cause);
  }
  const struct = structOfColumns(columns);
  const { catalog } = context;
  if (!(await catalog.tableExists(model.identifier))) return { kind: 'create', struct };
  const table = await catalog.loadTable(model.identifier);
  if (table.property(MODEL_KEY, '') !== model.name) {
    throw modelFailed(
      model,
      `table ${tableIdentifierToString(model.identifier)} exists and was not made by this model`,
      undefined,
      'give the model another table (`table:` or its file path), or drop that table first',
    );
  }
  const changes = schemaChanges(table.schema, struct);
  if (changes && changes.length === 0) return { kind: 'keep', table };
  if (changes) return { kind: 'evolve', table, changes };
  if (!fullRefresh) {
    throw modelFailed(
      model,
      'its columns changed type in a way the table cannot evolve to',
      undefined,
      `run \`tributary models run --select ${model.name} --full-refresh\` to recreate the table`,
    );
  }
  return { kind: 'recreate', struct };
}

type TablePlan =
  | { kind: 'keep'; table: Table }
  | { kind: 'evolve'; table: Table; changes: SchemaChange[] }
  | { kind: 'create' | 'recreate'; struct: StructType };

/** Carries out `planTable`'s plan. `created` when the table was (re)made. */
async function prepareTable(
  context: ModelContext,
  model: Model,
  plan: TablePlan,
): Promise<{ table: Table; created: boolean }> {
  const { catalog } = context;
  if (plan.kind === 'keep') return { table: plan.table, created: false };
  if (plan.kind === 'evolve') {
    await updateSchema(plan.table, plan.changes);
    return { table: await plan.table.refresh(), created: false };
  }
  if (plan.kind === 'recreate') await catalog.dropTable(model.identifier, { purge: true });
  const struct = plan.struct;
  await catalog.createNamespaceIfAbsent(model.identifier.namespace);
  const schema: Schema = { ...assignFreshIds(struct), 'schema-id': 0 };
  const spec = model.config.partition
    ? buildSpec(parsePartitionExpression(model.config.partition, schema), 0, 999).spec
    : undefined;
  const table = await catalog.createTable(model.identifier, {
    schema,
    ...(spec ? { spec } : {}),
    properties: { [MODEL_KEY]: model.name },
  });
  return { table, created: true };
}

/** Replaces every row of the table with `relation`'s, in one snapshot. Returns rows written. */
async function replaceAll(
  context: ModelContext,
  table: Table,
  relation: string,
  summary: Record<string, string>,
): Promise<{ rows: number; snapshotId: bigint }> {
  const plan = await planScan(table.metadata, table.storage);
  const files = await writeDataFiles({
    engine: context.engine,
    relation,
    schema: table.schema,
    spec: table.spec,
    files: table.files,
    dataLocation: `${table.location}/data`,
    targetFileSizeBytes: Number(table.property('write.target-file-size-bytes', String(512 * 1024 * 1024))),
  });
  const removed = new Set(
    [...plan.dataFiles, ...plan.positionDeletes, ...plan.equalityDeletes].map((p) => p.file.filePath),
  );
  const producer = new SnapshotProducer(table, {
    operation: removed.size ? 'overwrite' : 'append',
    addedDataFiles: files,
    removedPaths: removed,
    readSnapshotId: plan.snapshot?.['snapshot-id'] ?? null,
    summary,
  });
  await producer.commit();
  return { rows: files.reduce((n, f) => n + f.recordCount, 0), snapshotId: producer.snapshotId };
}

function incrementalRefs(project: ModelProject, model: Model): string[] {
  const chosen = model.config.incremental.tables?.map((t) =>
    tableIdentifierToString(parseTableIdentifier(t)),
  );
  return model.refs.filter(
    (ref) =>
      (chosen ? chosen.includes(ref) : true) && project.models.get(ref)?.config.materialized !== 'view',
  );
}

async function watermarkOf(
  context: ModelContext,
  relation: string,
  column: string,
): Promise<string | undefined> {
  const reader = await context.engine.connection.runAndReadAll(
    `select max(${quoteIdentifier(column)})::VARCHAR from ${relation}`,
  );
  const value = reader.getRows()[0]?.[0];
  return value === null || value === undefined ? undefined : String(value);
}

/** Runs one model (view, table or incremental). Views of upstream view models are defined as needed. */
export async function runModel(
  context: ModelContext,
  project: ModelProject,
  model: Model,
  options: RunModelOptions = {},
): Promise<ModelRunResult> {
  const started = performance.now();
  const base = { model: model.name, materialized: model.config.materialized };
  const done = (result: Omit<ModelRunResult, 'model' | 'materialized' | 'durationMs'>): ModelRunResult => ({
    ...base,
    ...result,
    durationMs: performance.now() - started,
  });
  if (model.config.materialized === 'view') {
    await defineView(context, project, model);
    try {
      await context.engine.connection.run(`describe select * from ${quotedName(model.name)}`);
    } catch (cause) {
      throw modelFailed(model, `its SQL failed: ${sqlError(cause)}`, cause);
    }
    return done({ action: 'view', rowsWritten: 0, consumed: {} });
  }
  const hash = modelHash(model);
  let state: ModelState | undefined;
  let reason: string | undefined;
  if (model.config.materialized === 'incremental') {
    if (options.fullRefresh) reason = 'full refresh asked for';
    else if (!(await context.catalog.tableExists(model.identifier))) reason = 'first run';
    else {
      state = readModelState(await context.catalog.loadTable(model.identifier));
      if (!state) reason = 'no record of what was consumed';
      else if (state.hash !== hash) reason = 'the model changed since the last run';
    }
    // Views (of view models) have no snapshots to read from: such a model is built in full every run.
    if (state && !reason && incrementalRefs(project, model).length === 0)
      reason = 'it reads no table incrementally (only views)';
    if (state && !reason) {
      const result = await runIncremental(context, project, model, state, hash);
      if (result.kind === 'done') return done(result.result);
      reason = result.reason;
    }
  }
  return done(await runFull(context, project, model, hash, options, reason));
}

async function runFull(
  context: ModelContext,
  project: ModelProject,
  model: Model,
  hash: string,
  options: RunModelOptions,
  reason: string | undefined,
): Promise<Omit<ModelRunResult, 'model' | 'materialized' | 'durationMs'>> {
  const { bindings, snapshots } = await bindRefs(context, project, model);
  let relation = `(${compileSql(model, project, (ref) => bindings.get(ref) ?? quotedName(ref))})`;
  const plan = await planTable(context, model, relation, options.fullRefresh ?? false);
  // Before the table changes (a new schema, dropped and made again), the result is computed in full: a
  // model whose SQL fails as it runs, or that is stopped, leaves its table as it was.
  const stage = plan.kind === 'keep' ? undefined : `__tributary_model_${randomUUID().replace(/-/g, '')}`;
  if (stage) {
    try {
      await context.engine.connection.run(`create temp table ${stage} as select * from ${relation}`);
    } catch (cause) {
      throw modelFailed(model, `its SQL failed: ${sqlError(cause)}`, cause);
    }
    relation = stage;
  }
  try {
    return await writeFull(context, project, model, hash, plan, relation, bindings, snapshots, reason);
  } finally {
    if (stage) await context.engine.connection.run(`drop table if exists ${stage}`);
  }
}

async function writeFull(
  context: ModelContext,
  project: ModelProject,
  model: Model,
  hash: string,
  plan: TablePlan,
  relation: string,
  bindings: ReadonlyMap<string, string>,
  snapshots: ReadonlyMap<string, bigint | undefined>,
  reason: string | undefined,
): Promise<Omit<ModelRunResult, 'model' | 'materialized' | 'durationMs'>> {
  checkAborted(context, model);
  const { table, created } = await prepareTable(context, model, plan);
  const summary: Record<string, string> = { [MODEL_KEY]: model.name, [HASH_KEY]: hash, [MODE_KEY]: 'full' };
  const consumed: Record<string, string> = {};
  if (model.config.materialized === 'incremental') {
    const strategy = model.config.incremental.strategy;
    for (const ref of incrementalRefs(project, model)) {
      if (strategy === 'snapshots') {
        const id = snapshots.get(ref);
        // An empty upstream table has no snapshot: the next run reads everything it gets.
        if (id !== undefined) summary[SNAPSHOT_PREFIX + ref] = consumed[ref] = id.toString();
      } else {
        const column = watermarkColumn(model);
        const mark = await watermarkOf(context, bindings.get(ref)!, column);
        if (mark !== undefined) summary[WATERMARK_PREFIX + ref] = consumed[ref] = mark;
      }
    }
  } else {
    for (const [ref, id] of snapshots) if (id !== undefined) consumed[ref] = id.toString();
  }
  checkAborted(context, model);
  let written;
  try {
    written = await replaceAll(context, table, relation, summary);
  } catch (cause) {
    if (isTributaryError(cause) && cause.code !== 'INVALID_INPUT') throw cause;
    throw modelFailed(model, firstLine(cause), cause);
  }
  return {
    action: created ? 'created' : 'full-refresh',
    ...(reason ? { reason } : {}),
    rowsWritten: written.rows,
    snapshotId: written.snapshotId.toString(),
    consumed,
  };
}

function watermarkColumn(model: Model): string {
  const column = model.config.incremental.watermark;
  if (!column) {
    throw new TributaryError(
      'CONFIG_INVALID',
      `model ${model.name}: strategy watermark needs incremental.watermark`,
      {
        hint: 'name the upstream column that grows with new data, e.g. watermark: updated_at',
      },
    );
  }
  return column;
}

type IncrementalOutcome =
  | { kind: 'done'; result: Omit<ModelRunResult, 'model' | 'materialized' | 'durationMs'> }
  | { kind: 'full-refresh'; reason: string };

async function runIncremental(
  context: ModelContext,
  project: ModelProject,
  model: Model,
  state: ModelState,
  hash: string,
): Promise<IncrementalOutcome> {
  const connection = context.engine.connection;
  // The commit applies only while the table's record of what was consumed is the one this run read (a
  // compaction between does not change it): a run that committed meanwhile (another process) consumed the
  // same new data, which would be appended twice.
  const precondition = (metadata: TableMetadata) => {
    if (modelStateOf(metadata)?.recordedIn !== state.recordedIn) {
      throw new TributaryError(
        'ICEBERG_COMMIT_CONFLICT',
        `model ${model.name}: another run committed ${model.identifier.name} while this one ran`,
        { hint: 'run it again: it reads from where the other run stopped' },
      );
    }
  };
  const strategy = model.config.incremental.strategy;
  const overrides = new Map<string, string>();
  const summary: Record<string, string> = {
    [MODEL_KEY]: model.name,
    [HASH_KEY]: hash,
    [MODE_KEY]: 'incremental',
  };
  const consumed: Record<string, string> = {};
  let anyNew = false;
  await connection.run(`create schema if not exists ${quoteIdentifier(DELTA_SCHEMA)}`);
  const refs = incrementalRefs(project, model);
  for (const ref of refs) {
    const deltaView = `${quoteIdentifier(DELTA_SCHEMA)}.${quoteIdentifier(ref)}`;
    if (strategy === 'snapshots') {
      const table = await context.catalog.loadTable(parseTableIdentifier(ref));
      const since = state.snapshots.get(ref);
      const current = table.metadata['current-snapshot-id'];
      if (since === undefined) {
        if (current !== undefined)
          return { kind: 'full-refresh', reason: `no record of what was read from ${ref}` };
        // Still empty: nothing new.
        await context.views.define(deltaView, table, emptyPlan(table));
        overrides.set(ref, deltaView);
        continue;
      }
      const news = await newDataSince(table.metadata, table.storage, since, ref);
      if (news.kind === 'full-refresh') return { kind: 'full-refresh', reason: news.reason };
      if (news.kind === 'none') {
        await context.views.define(deltaView, table, emptyPlan(table));
      } else {
        if (news.plan.dataFiles.length) anyNew = true;
        await context.views.define(deltaView, table, news.plan);
      }
      const id = news.snapshotId ?? since;
      summary[SNAPSHOT_PREFIX + ref] = consumed[ref] = id.toString();
      overrides.set(ref, deltaView);
    } else {
      const column = watermarkColumn(model);
      const mark = state.watermarks.get(ref);
      const exposed = await context.views.current(parseTableIdentifier(ref));
      if (mark === undefined) {
        const any = await watermarkOf(context, exposed.view, column);
        if (any !== undefined) return { kind: 'full-refresh', reason: `no watermark recorded for ${ref}` };
        await connection.run(`create or replace view ${deltaView} as select * from ${exposed.view}`);
        overrides.set(ref, deltaView);
        continue;
      }
      const types = await describeRelation(context.engine, exposed.view);
      const type = types.get(column);
      if (!type) throw modelFailed(model, `${ref} has no watermark column ${column}`);
      await connection.run(
        `create or replace view ${deltaView} as select * from ${exposed.view} where ${quoteIdentifier(column)} > CAST(${quoteLiteralValue(mark)} AS ${type})`,
      );
      const next = await watermarkOf(context, deltaView, column);
      if (next !== undefined) anyNew = true;
      summary[WATERMARK_PREFIX + ref] = consumed[ref] = next ?? mark;
      overrides.set(ref, deltaView);
    }
  }
  // Refs not read incrementally keep their recorded positions (they are read in full each run).
  for (const [ref, id] of state.snapshots)
    if (!refs.includes(ref)) summary[SNAPSHOT_PREFIX + ref] ??= id.toString();
  if (!anyNew) return { kind: 'done', result: { action: 'up-to-date', rowsWritten: 0, consumed } };

  const { bindings } = await bindRefs(context, project, model, overrides);
  const sql = compileSql(model, project, (ref) => bindings.get(ref) ?? quotedName(ref));
  const stage = `__tributary_model_${randomUUID().replace(/-/g, '')}`;
  try {
    await connection.run(`create temp table ${stage} as ${sql}`);
  } catch (cause) {
    throw modelFailed(model, `its SQL failed: ${sqlError(cause)}`, cause);
  }
  try {
    const table = await context.catalog.loadTable(model.identifier);
    const columns = await describeRelation(context.engine, stage);
    const changes = schemaChanges(table.schema, structOfColumns(columns));
    if (!changes || changes.length) return { kind: 'full-refresh', reason: 'the result columns changed' };
    const keys = model.config.unique_key ?? [];
    checkAborted(context, model);
    let result;
    if (keys.length === 0) {
      result = await append(table, context.engine, stage, { summary, precondition });
    } else {
      const merge = model.config.incremental.merge;
      const combining = Object.entries(merge).some(([, fn]) => fn !== 'replace');
      let relation = stage;
      if (combining) {
        const duplicates = Number(
          (
            await connection.runAndReadAll(
              `select count(*) from (select 1 from ${stage} group by ${keys.map(quoteIdentifier).join(', ')} having count(*) > 1)`,
            )
          ).getRows()[0]?.[0] ?? 0,
        );
        if (duplicates > 0) {
          throw modelFailed(
            model,
            `its result has ${duplicates} unique_key value(s) more than once, which merge functions cannot combine`,
            undefined,
            'group the query by the unique_key columns',
          );
        }
        const target = await context.views.current(model.identifier);
        const on = keys
          .map((k) => `t.${quoteIdentifier(k)} is not distinct from n.${quoteIdentifier(k)}`)
          .join(' and ');
        const select = [...columns.keys()].map((name) => {
          const c = quoteIdentifier(name);
          return `${combine(merge[name] ?? 'replace', `t.${c}`, `n.${c}`)} as ${c}`;
        });
        relation = `(select ${select.join(', ')} from ${stage} n left join ${target.view} t on ${on})`;
      }
      checkAborted(context, model);
      result = await upsert(table, context.engine, relation, { keyColumns: keys, summary, precondition });
    }
    return {
      kind: 'done',
      result: {
        action: 'incremental',
        rowsWritten: result.addedRecords,
        snapshotId: result.snapshotId.toString(),
        consumed,
      },
    };
  } finally {
    await connection.run(`drop table if exists ${stage}`);
  }
}

function emptyPlan(table: Table): ScanPlan {
  return {
    snapshot: undefined,
    schema: table.schema,
    dataFiles: [],
    positionDeletes: [],
    equalityDeletes: [],
    manifestsScanned: 0,
    manifestsSkipped: 0,
  };
}

function quoteLiteralValue(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

function combine(fn: MergeFunction, existing: string, incoming: string): string {
  switch (fn) {
    case 'sum':
      return `case when ${existing} is null then ${incoming} when ${incoming} is null then ${existing} else ${existing} + ${incoming} end`;
    case 'min':
      return `case when ${incoming} is null then ${existing} when ${existing} is null or ${incoming} < ${existing} then ${incoming} else ${existing} end`;
    case 'max':
      return `case when ${incoming} is null then ${existing} when ${existing} is null or ${incoming} > ${existing} then ${incoming} else ${existing} end`;
    default:
      return incoming;
  }
}

export type ModelStatus = 'ok' | 'failed' | 'skipped';

export interface ModelOutcome {
  readonly model: string;
  readonly status: ModelStatus;
  readonly result?: ModelRunResult;
  readonly error?: unknown;
}

export interface RunModelsOptions extends RunModelOptions {
  /** Called before each model runs and after each ends (for progress). */
  readonly onStart?: (model: Model) => void;
  readonly onEnd?: (outcome: ModelOutcome) => void;
  /** Stop starting models once aborted. */
  readonly signal?: AbortSignal;
  /** Run models with a readiness gate without waiting for fresh inputs. */
  readonly skipReadiness?: boolean;
}

/**
 * Runs models in dependency order (`models` may be any subset, e.g. from selectModels). A model whose
 * upstream model failed in this run is skipped; the others still run.
 */
export async function runModels(
  context: ModelContext,
  project: ModelProject,
  models: readonly Model[],
  options: RunModelsOptions = {},
): Promise<ModelOutcome[]> {
  const order = topologicalOrder(project).filter((m) => models.some((s) => s.name === m.name));
  const failed = new Set<string>();
  const outcomes: ModelOutcome[] = [];
  for (const model of order) {
    if (options.signal?.aborted) break;
    const blocked = upstreamModels(project, model).find((u) => failed.has(u.name));
    let outcome: ModelOutcome;
    if (blocked) {
      failed.add(model.name);
      outcome = { model: model.name, status: 'skipped', error: `upstream model ${blocked.name} failed` };
    } else {
      options.onStart?.(model);
      try {
        if (!options.skipReadiness)
          await awaitReadiness(
            context.catalog,
            project,
            model,
            options.signal ? { signal: options.signal } : {},
          );
        outcome = {
          model: model.name,
          status: 'ok',
          result: await runModel(context, project, model, options),
        };
      } catch (error) {
        failed.add(model.name);
        outcome = { model: model.name, status: 'failed', error };
      }
    }
    outcomes.push(outcome);
    options.onEnd?.(outcome);
  }
  return outcomes;
}
