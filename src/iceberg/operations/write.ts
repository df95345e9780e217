/**
 * Row-level write operations on a table, each committed as one snapshot:
 *  - append: add rows;
 *  - deleteWhere: remove rows matching a SQL predicate, by rewriting the files that hold them
 *    (copy-on-write) or by writing position delete files (merge-on-read);
 *  - overwriteWhere: deleteWhere (copy-on-write) and append, atomically;
 *  - upsert: replace rows whose key matches an incoming row, insert the others (position deletes +
 *    append), atomically — what sinks use for silver mirrors.
 * Inputs are DuckDB relations (a table or view name, or `(SELECT …)`) with columns named as the table's.
 */
import { randomUUID } from 'node:crypto';
import { TributaryError } from '../../errors.ts';
import { describeRelation, parquetCompression, writeDataFiles } from '../data-files.ts';
import { quoteIdentifier, type Engine } from '../duckdb.ts';
import type { TableMetadata } from '../metadata.ts';
import { planScan, scanSql } from '../scan.ts';
import { SnapshotProducer } from '../snapshot-producer.ts';
import type { Table, TableState } from '../table.ts';
import { writePositionDeletes } from './position-deletes.ts';

export interface WriteOptions {
  /** Custom snapshot summary properties, e.g. the source positions a sink has written. */
  readonly summary?: Readonly<Record<string, string>>;
  /** Checked against the table state the commit applies to, on every attempt (SnapshotChanges). */
  readonly precondition?: (metadata: TableMetadata) => void;
}

export interface WriteResult {
  readonly state: TableState;
  readonly snapshotId: bigint;
  readonly addedRecords: number;
  readonly deletedRecords: number;
}

function targetFileSize(table: Table): number {
  return Number(table.property('write.target-file-size-bytes', String(512 * 1024 * 1024)));
}

async function writeRows(
  table: Table,
  engine: Engine,
  relation: string,
  options: { materialize?: boolean } = {},
) {
  return writeDataFiles({
    engine,
    relation,
    schema: table.schema,
    spec: table.spec,
    storage: table.storage,
    dataLocation: `${table.location}/data`,
    targetFileSizeBytes: targetFileSize(table),
    compression: parquetCompression((name, fallback) => table.property(name, fallback)),
    ...options,
  });
}

export interface AppendOptions extends WriteOptions {
  /**
   * Whether the input is copied into a temp table before it is written (default true). Pass false when
   * the relation is cheap to scan several times (a table, or a filter over one), to save that copy.
   */
  readonly materialize?: boolean;
}

export async function append(
  table: Table,
  engine: Engine,
  relation: string,
  options: AppendOptions = {},
): Promise<WriteResult> {
  const files = await writeRows(table, engine, relation, { materialize: options.materialize });
  const producer = new SnapshotProducer(table, {
    operation: 'append',
    addedDataFiles: files,
    summary: options.summary,
    precondition: options.precondition,
  });
  const state = await producer.commit();
  return {
    state,
    snapshotId: producer.snapshotId,
    addedRecords: files.reduce((n, f) => n + f.recordCount, 0),
    deletedRecords: 0,
  };
}

export type DeleteMode = 'copy-on-write' | 'merge-on-read';

export interface DeleteOptions extends WriteOptions {
  /** Default: the table property write.delete.mode, else copy-on-write. */
  readonly mode?: DeleteMode;
}

/** Temp table of the current rows (with `_file`, `_pos`) matching `predicate`; dropped by the caller. */
async function stageMatches(table: Table, engine: Engine, predicate: string) {
  const plan = await planScan(table.metadata, table.storage);
  const scan = scanSql(plan, table.storage, { withRowPositions: true });
  const name = `__tributary_matches_${randomUUID().replace(/-/g, '')}`;
  try {
    await engine.connection.run(`create temp table ${name} as select * from ${scan} s where ${predicate}`);
  } catch (cause) {
    throw new TributaryError(
      'INVALID_INPUT',
      `the filter "${predicate}" cannot be evaluated on ${table.name}: ${(cause as Error).message.split('\n')[0]}`,
      {
        cause,
        hint: 'write a SQL boolean expression over the table\'s columns, e.g. "user_id = 42"',
      },
    );
  }
  return { plan, scan, name };
}

export async function deleteWhere(
  table: Table,
  engine: Engine,
  predicate: string,
  options: DeleteOptions = {},
): Promise<WriteResult> {
  return rewriteWhere(table, engine, predicate, undefined, options);
}

/** Deletes the rows matching `predicate` and appends `relation`, in one snapshot (copy-on-write). */
export async function overwriteWhere(
  table: Table,
  engine: Engine,
  predicate: string,
  relation: string,
  options: WriteOptions = {},
): Promise<WriteResult> {
  return rewriteWhere(table, engine, predicate, relation, { ...options, mode: 'copy-on-write' });
}

async function rewriteWhere(
  table: Table,
  engine: Engine,
  predicate: string,
  relation: string | undefined,
  options: DeleteOptions,
): Promise<WriteResult> {
  const mode = options.mode ?? (table.property('write.delete.mode', 'copy-on-write') as DeleteMode);
  const { plan, scan, name } = await stageMatches(table, engine, predicate);
  try {
    const count = Number(
      (await engine.connection.runAndReadAll(`select count(*) from ${name}`)).getRows()[0]?.[0] ?? 0,
    );
    const added = relation ? await writeRows(table, engine, relation) : [];
    if (count === 0 && added.length === 0) {
      return {
        state: table.state,
        snapshotId: table.currentSnapshot?.['snapshot-id'] ?? -1n,
        addedRecords: 0,
        deletedRecords: 0,
      };
    }
    let producer: SnapshotProducer;
    if (mode === 'merge-on-read') {
      const deletes = await writePositionDeletes(table, engine, name, plan.dataFiles);
      producer = new SnapshotProducer(table, {
        operation: added.length ? 'overwrite' : 'delete',
        addedDataFiles: added,
        addedDeleteFiles: deletes,
        readSnapshotId: plan.snapshot?.['snapshot-id'] ?? null,
        summary: options.summary,
        precondition: options.precondition,
      });
    } else {
      const touched = (await engine.connection.runAndReadAll(`select distinct _file from ${name}`))
        .getRows()
        .map((r) => String(r[0]));
      const columns = table.schema.fields.map((f) => quoteIdentifier(f.name)).join(', ');
      const keep = touched.length
        ? await writeRows(
            table,
            engine,
            // `is not true`: rows where the predicate is null were not deleted and must be kept.
            `(select ${columns} from ${scan} s where s._file in (select _file from ${name}) and (${predicate}) is not true)`,
          )
        : [];
      producer = new SnapshotProducer(table, {
        // Rewritten files make it a logical overwrite (as Java and pyiceberg record it), not a delete.
        operation: added.length || keep.length ? 'overwrite' : 'delete',
        addedDataFiles: [...keep, ...added],
        removedPaths: new Set(touched),
        readSnapshotId: plan.snapshot?.['snapshot-id'] ?? null,
        summary: options.summary,
        precondition: options.precondition,
      });
    }
    const state = await producer.commit();
    return {
      state,
      snapshotId: producer.snapshotId,
      addedRecords: added.reduce((n, f) => n + f.recordCount, 0),
      deletedRecords: count,
    };
  } finally {
    await engine.connection.run(`drop table if exists ${name}`);
  }
}

export interface UpsertOptions extends WriteOptions {
  /** The columns that identify a row; default: the schema's identifier fields. */
  readonly keyColumns?: readonly string[];
}

/**
 * Inserts the rows of `relation`, replacing existing rows with the same key, in one snapshot. When the
 * input holds a key more than once, its last row wins. Existing rows are removed with position deletes,
 * which every engine reads (unlike equality deletes).
 */
export async function upsert(
  table: Table,
  engine: Engine,
  relation: string,
  options: UpsertOptions = {},
): Promise<WriteResult> {
  const keys =
    options.keyColumns ??
    (table.schema['identifier-field-ids'] ?? []).map(
      (id) => table.schema.fields.find((f) => f.id === id)?.name ?? '',
    );
  if (keys.length === 0 || keys.some((k) => !table.schema.fields.some((f) => f.name === k))) {
    throw new TributaryError(
      'INVALID_INPUT',
      `upsert into ${table.name} needs key columns of the table${keys.length ? ` (got ${keys.join(', ')})` : ''}`,
      {
        hint: "set the table's identifier fields, or pass the key columns",
      },
    );
  }
  const columns = await describeRelation(engine, relation);
  const missing = keys.filter((k) => !columns.has(k));
  if (missing.length > 0) {
    throw new TributaryError('INVALID_INPUT', `the input lacks the key column(s) ${missing.join(', ')}`, {
      hint: 'every input row needs a value for each key column',
    });
  }
  const keyList = keys.map(quoteIdentifier).join(', ');
  const incoming = `__tributary_upsert_${randomUUID().replace(/-/g, '')}`;
  await engine.connection.run(
    `create temp table ${incoming} as select * exclude (__ord) from (select *, row_number() over () as __ord from ${relation})
       qualify row_number() over (partition by ${keyList} order by __ord desc) = 1`,
  );
  try {
    const match = keys
      .map((k) => `s.${quoteIdentifier(k)} is not distinct from i.${quoteIdentifier(k)}`)
      .join(' and ');
    const { plan, name } = await stageMatches(
      table,
      engine,
      `exists (select 1 from ${incoming} i where ${match})`,
    );
    try {
      const replaced = Number(
        (await engine.connection.runAndReadAll(`select count(*) from ${name}`)).getRows()[0]?.[0] ?? 0,
      );
      const added = await writeRows(table, engine, incoming);
      const deletes = replaced ? await writePositionDeletes(table, engine, name, plan.dataFiles) : [];
      const producer = new SnapshotProducer(table, {
        operation: deletes.length ? 'overwrite' : 'append',
        addedDataFiles: added,
        addedDeleteFiles: deletes,
        readSnapshotId: plan.snapshot?.['snapshot-id'] ?? null,
        summary: options.summary,
        precondition: options.precondition,
      });
      const state = await producer.commit();
      return {
        state,
        snapshotId: producer.snapshotId,
        addedRecords: added.reduce((n, f) => n + f.recordCount, 0),
        deletedRecords: replaced,
      };
    } finally {
      await engine.connection.run(`drop table if exists ${name}`);
    }
  } finally {
    await engine.connection.run(`drop table if exists ${incoming}`);
  }
}
