/**
 * Row-level write operations on a table, each committed as one snapshot:
 *  - append: add rows (or its halves: writeFiles, then commitFiles);
 *  - deleteWhere: remove rows matching a SQL predicate, by rewriting the files that hold them
 *    (copy-on-write) or by writing position delete files (merge-on-read);
 *  - overwriteWhere: deleteWhere (copy-on-write) and append, atomically;
 *  - upsert: replace rows whose key matches an incoming row, insert the others (position deletes +
 *    append), atomically — what sinks use for silver mirrors.
 * Inputs are DuckDB relations (a table or view name, or `(SELECT …)`) with columns named as the table's.
 */
import { randomUUID } from 'node:crypto';
import { TributaryError } from '../../errors.ts';
import { asInputError, describeRelation, parquetCompression, writeDataFiles } from '../data-files.ts';
import { duckdbType, quoteIdentifier, type Engine } from '../duckdb.ts';
import type { DataFile } from '../manifest.ts';
import type { TableMetadata } from '../metadata.ts';
import { planFiles, planScan, scanSql, type Predicate } from '../scan.ts';
import { SnapshotProducer } from '../snapshot-producer.ts';
import type { Table, TableState } from '../table.ts';
import type { IcebergValue, NestedField } from '../types.ts';
import { liveKeysSql, type KeyIndex } from './key-index.ts';
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

/** The table's target data file size: its property write.target-file-size-bytes, else `fallback`. */
function targetFileSize(table: Table, fallback = 512 * 1024 * 1024): number {
  return Number(table.property('write.target-file-size-bytes', String(fallback)));
}

async function writeRows(table: Table, engine: Engine, relation: string, options: WriteFilesOptions = {}) {
  return writeDataFiles({
    engine,
    relation,
    schema: table.schema,
    spec: table.spec,
    files: table.files,
    dataLocation: `${table.location}/data`,
    targetFileSizeBytes: targetFileSize(table, options.targetFileSizeBytes),
    compression: parquetCompression((name, fallback) => table.property(name, fallback)),
    materialize: options.materialize,
  });
}

export interface WriteFilesOptions {
  /**
   * Whether the input is copied into a temp table before it is written, when the table's partition values
   * need two passes over it (see `WriteDataFilesOptions.materialize`; default true). Pass false when the
   * relation is cheap to scan several times (a table, or a filter over one), to save that copy.
   */
  readonly materialize?: boolean;
  /** Target size of a data file when the table has no write.target-file-size-bytes property (default 512 MiB). */
  readonly targetFileSizeBytes?: number;
}

export type AppendOptions = WriteOptions & WriteFilesOptions;

/** Data files written for a table by `writeFiles` and not committed yet, with the schema and spec they follow. */
export interface WrittenFiles {
  readonly files: readonly DataFile[];
  readonly schemaId: number;
  readonly specId: number;
}

/**
 * The first half of an append: writes the rows of `relation` as data files of the table's current schema
 * and default spec, and commits nothing. `commitFiles` commits them (a pipeline writes a batch's files
 * while the batch before it commits).
 */
export async function writeFiles(
  table: Table,
  engine: Engine,
  relation: string,
  options: WriteFilesOptions = {},
): Promise<WrittenFiles> {
  // Taken in the same turn as writeRows takes the schema and spec: the table may be refreshed (and evolve)
  // while its files are written.
  const schemaId = table.metadata['current-schema-id'];
  const specId = table.metadata['default-spec-id'];
  return { files: await writeRows(table, engine, relation, options), schemaId, specId };
}

/** Whether files from `writeFiles` follow the table's current schema and default spec. */
export function writtenForCurrent(table: Table, written: WrittenFiles): boolean {
  return (
    written.schemaId === table.metadata['current-schema-id'] &&
    written.specId === table.metadata['default-spec-id']
  );
}

/** The second half of an append: commits files from `writeFiles` as one append snapshot. */
export async function commitFiles(
  table: Table,
  written: WrittenFiles,
  options: WriteOptions = {},
): Promise<WriteResult> {
  const producer = new SnapshotProducer(table, {
    operation: 'append',
    addedDataFiles: written.files,
    specId: written.specId,
    summary: options.summary,
    precondition: options.precondition,
  });
  const state = await producer.commit();
  return {
    state,
    snapshotId: producer.snapshotId,
    addedRecords: written.files.reduce((n, f) => n + f.recordCount, 0),
    deletedRecords: 0,
  };
}

/** Appends the rows of `relation` in one snapshot: `writeFiles`, then `commitFiles`. */
export async function append(
  table: Table,
  engine: Engine,
  relation: string,
  options: AppendOptions = {},
): Promise<WriteResult> {
  return commitFiles(table, await writeFiles(table, engine, relation, options), options);
}

export type DeleteMode = 'copy-on-write' | 'merge-on-read';

export interface DeleteOptions extends WriteOptions {
  /** Default: the table property write.delete.mode, else copy-on-write. */
  readonly mode?: DeleteMode;
}

/**
 * Temp table of the positions (`_file`, `_pos`) of the current rows matching `predicate`; the caller drops
 * it and releases `readable` (the files `scan` reads).
 */
async function stageMatches(table: Table, engine: Engine, predicate: string) {
  const plan = await planScan(table.metadata, table.storage);
  const readable = await table.files.readable(planFiles(plan));
  const scan = scanSql(plan, readable, { withRowPositions: true });
  const name = `__tributary_matches_${randomUUID().replace(/-/g, '')}`;
  try {
    // Only the positions: DuckDB then reads just the columns the predicate names.
    await engine.connection.run(
      `create temp table ${name} as select _file, _pos from ${scan} s where ${predicate}`,
    );
  } catch (cause) {
    readable.release();
    throw new TributaryError(
      'INVALID_INPUT',
      `the filter "${predicate}" cannot be evaluated on ${table.name}: ${(cause as Error).message.split('\n')[0]}`,
      {
        cause,
        hint: 'write a SQL boolean expression over the table\'s columns, e.g. "user_id = 42"',
      },
    );
  }
  return { plan, readable, scan, name };
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
  const { plan, readable, scan, name } = await stageMatches(table, engine, predicate);
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
    readable.release();
    await engine.connection.run(`drop table if exists ${name}`);
  }
}

export interface UpsertOptions extends WriteOptions {
  /** The columns that identify a row; default: the schema's identifier fields. */
  readonly keyColumns?: readonly string[];
  /**
   * A boolean column of the input marking deletions (a CDC tombstone): a row whose value is true removes
   * the row with its key and is not written. The column is written only when the table has it.
   */
  readonly deleteColumn?: string;
  /**
   * Where the current rows' keys are, kept between the upserts of one writer (see key-index.ts); without
   * it, each upsert reads the key columns of the files that may hold its keys. Upserts given the same
   * index run one after the other.
   */
  readonly keyIndex?: KeyIndex;
  /**
   * Whether the input is copied into a temp table first (default true). Pass false when it is cheap to scan
   * several times (a table, or a filter over one): it is then copied only to drop repeated keys.
   */
  readonly materialize?: boolean;
}

/** The table's fields of the key columns. */
function keyFields(table: Table, keys: readonly string[]): NestedField[] {
  return keys.map((k) => table.schema.fields.find((f) => f.name === k)!);
}

/**
 * Inserts the rows of `relation`, replacing existing rows with the same key, in one snapshot. When the
 * input holds a key more than once, its last row wins (with `deleteColumn`, a last row marked deleted
 * removes the key). Existing rows are removed with position deletes, which every engine reads (unlike
 * equality deletes).
 */
export function upsert(
  table: Table,
  engine: Engine,
  relation: string,
  options: UpsertOptions = {},
): Promise<WriteResult> {
  const index = options.keyIndex;
  return index
    ? index.exclusive(() => upsertOnce(table, engine, relation, options))
    : upsertOnce(table, engine, relation, options);
}

async function upsertOnce(
  table: Table,
  engine: Engine,
  relation: string,
  options: UpsertOptions,
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
  const deleteColumn = options.deleteColumn;
  if (deleteColumn !== undefined && !columns.has(deleteColumn)) {
    throw new TributaryError('INVALID_INPUT', `the input lacks the delete column ${deleteColumn}`, {
      hint: 'the delete column marks rows to remove (true) or to write (false or null)',
    });
  }
  const keyList = keys.map(quoteIdentifier).join(', ');
  const fields = keyFields(table, keys);
  // Keys are matched and deduplicated as the table will store them: 1.2 and 1.4 written to an int key
  // are both 1 (compared as they came, neither would replace the stored 1, nor each other).
  const casts = fields
    .filter((f) => !sameDuckdbType(columns.get(f.name) ?? '', duckdbType(f.type)))
    .map((f) => `CAST(${quoteIdentifier(f.name)} AS ${duckdbType(f.type)}) AS ${quoteIdentifier(f.name)}`);
  // The input with one row per key, its last. A rescannable input whose keys are distinct and of the
  // table's types is used as it is.
  let incoming = relation;
  let deduplicated: string | undefined;
  if (options.materialize !== false || casts.length > 0 || !(await distinctKeys(engine, relation, keys))) {
    incoming = deduplicated = `__tributary_upsert_${randomUUID().replace(/-/g, '')}`;
    const all = casts.length ? `* replace (${casts.join(', ')})` : '*';
    try {
      await engine.connection.run(
        `create temp table ${incoming} as select * exclude (__ord) from (select ${all}, row_number() over () as __ord from ${relation})
           qualify row_number() over (partition by ${keyList} order by __ord desc) = 1`,
      );
    } catch (cause) {
      throw asInputError(cause);
    }
  }
  // The key columns' types as `incoming` has them.
  const incomingTypes = new Map(columns);
  if (casts.length) for (const f of fields) incomingTypes.set(f.name, duckdbType(f.type));
  try {
    const match = keys
      .map((k) => `s.${quoteIdentifier(k)} is not distinct from i.${quoteIdentifier(k)}`)
      .join(' and ');
    const indexed = await options.keyIndex?.match(table, engine, incoming, fields);
    const { name, dataFiles, readSnapshotId } = indexed
      ? { ...indexed, readSnapshotId: indexed.snapshotId }
      : await stageKeyMatches(table, engine, incoming, keys, incomingTypes, match).then(({ plan, name }) => ({
          name,
          dataFiles: plan.dataFiles,
          readSnapshotId: plan.snapshot?.['snapshot-id'] ?? null,
        }));
    try {
      const replaced = Number(
        (await engine.connection.runAndReadAll(`select count(*) from ${name}`)).getRows()[0]?.[0] ?? 0,
      );
      let rows = incoming;
      if (deleteColumn !== undefined) {
        const flag = quoteIdentifier(deleteColumn);
        const kept = table.schema.fields.some((f) => f.name === deleteColumn) ? '*' : `* exclude (${flag})`;
        rows = `(select ${kept} from ${incoming} where ${flag} is not true)`;
      }
      const specId = table.spec['spec-id']; // the spec writeRows writes with
      const added = await writeRows(table, engine, rows);
      const deletes = replaced ? await writePositionDeletes(table, engine, name, dataFiles) : [];
      const producer = new SnapshotProducer(table, {
        operation: deletes.length ? (added.length ? 'overwrite' : 'delete') : 'append',
        addedDataFiles: added,
        addedDeleteFiles: deletes,
        readSnapshotId,
        summary: options.summary,
        precondition: options.precondition,
      });
      const state = await producer.commit();
      if (indexed)
        await options.keyIndex!.committed(table, engine, {
          matches: name,
          snapshotId: producer.snapshotId,
          added,
          specId,
          fields,
        });
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
    if (deduplicated) await engine.connection.run(`drop table if exists ${deduplicated}`);
  }
}

/**
 * Whether two DuckDB type names are one type, as `describe` prints them and as duckdbType writes them
 * (`DECIMAL(10,2)` and `DECIMAL(10, 2)`, `TIMESTAMPTZ` and `TIMESTAMP WITH TIME ZONE`, quoted struct fields).
 */
function sameDuckdbType(a: string, b: string): boolean {
  const plain = (type: string) =>
    type.toUpperCase().replaceAll('TIMESTAMP WITH TIME ZONE', 'TIMESTAMPTZ').replace(/[\s"]/g, '');
  return plain(a) === plain(b);
}

/** Whether no key is in `relation` twice (a null key counts as a repeat: it takes the general path). */
async function distinctKeys(engine: Engine, relation: string, keys: readonly string[]): Promise<boolean> {
  const key = keys.length === 1 ? quoteIdentifier(keys[0]!) : `row(${keys.map(quoteIdentifier).join(', ')})`;
  const [row] = (
    await engine.connection.runAndReadAll(`select count(*) = count(distinct ${key}) from ${relation}`)
  ).getRows();
  return row?.[0] === true;
}

/** Key column types whose bounds (min/max of a batch) prune the files an upsert looks into. */
const PRUNABLE: Readonly<Record<string, string>> = { int: 'INTEGER', long: 'BIGINT', string: 'VARCHAR' };
/** Input types that compare with those as the table's values do (not text with numbers, say). */
const INTEGERS = /^(U?(TINYINT|SMALLINT|INTEGER|BIGINT)|HUGEINT)$/;

/**
 * Temp table of the positions (`_file`, `_pos`) of the current rows whose key is in `incoming`; dropped by
 * the caller. The key lookup of an upsert: only files whose key bounds overlap the batch's are read, only
 * their key columns, and the (few) matching rows are checked against the position deletes afterwards,
 * instead of applying every delete to every row of the table first.
 */
async function stageKeyMatches(
  table: Table,
  engine: Engine,
  incoming: string,
  keys: readonly string[],
  inputTypes: ReadonlyMap<string, string>,
  match: string,
) {
  const plan = await planScan(table.metadata, table.storage, {
    filter: await keyBounds(table, engine, incoming, keys, inputTypes),
  });
  // Equality deletes (written by other engines) depend on more than positions: the general scan applies them.
  if (plan.equalityDeletes.length) {
    const staged = await stageMatches(table, engine, `exists (select 1 from ${incoming} i where ${match})`);
    staged.readable.release(); // the positions are staged: their files are not read again
    return staged;
  }
  const name = `__tributary_matches_${randomUUID().replace(/-/g, '')}`;
  if (plan.dataFiles.length === 0) {
    await engine.connection.run(
      `create temp table ${name} as select CAST(NULL AS VARCHAR) as _file, CAST(NULL AS BIGINT) as _pos where false`,
    );
    return { plan, name };
  }
  const readable = await table.files.readable(planFiles(plan));
  try {
    const sql = liveKeysSql(
      readable,
      plan,
      keyFields(table, keys),
      'f.location as _file, s.file_row_number as _pos',
      `semi join ${incoming} i on ${match}`,
    );
    await engine.connection.run(`create temp table ${name} as ${sql}`);
  } finally {
    readable.release();
  }
  return { plan, name };
}

/**
 * A scan filter no looked-up key can fall outside of: the batch's lowest and highest key, for a single key
 * column of a type whose bounds compare simply; none (every file) otherwise, or when a key is null.
 */
async function keyBounds(
  table: Table,
  engine: Engine,
  incoming: string,
  keys: readonly string[],
  inputTypes: ReadonlyMap<string, string>,
): Promise<Predicate[]> {
  if (keys.length !== 1) return [];
  const field = table.schema.fields.find((f) => f.name === keys[0]);
  const type = typeof field?.type === 'string' ? PRUNABLE[field.type] : undefined;
  const inputType = inputTypes.get(keys[0]!) ?? '';
  if (!field || !type || !(type === 'VARCHAR' ? inputType === 'VARCHAR' : INTEGERS.test(inputType)))
    return [];
  const column = `try_cast(${quoteIdentifier(field.name)} as ${type})`;
  const row = (
    await engine.connection.runAndReadAll(
      `select min(${column}), max(${column}), count(*) filter (where ${column} is null) from ${incoming}`,
    )
  ).getRows()[0];
  const [lower, upper, nulls] = row ?? [];
  if (lower === null || upper === null || lower === undefined || upper === undefined || Number(nulls) > 0)
    return [];
  const value = (v: unknown): IcebergValue =>
    field.type === 'long' ? BigInt(v as bigint) : field.type === 'int' ? Number(v) : String(v);
  return [
    { column: field.name, op: '>=', value: value(lower) },
    { column: field.name, op: '<=', value: value(upper) },
  ];
}
