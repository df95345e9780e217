/**
 * The key lookup of an upsert: where the current rows with the batch's keys are (data file, row position),
 * so that position deletes can remove them.
 *
 * Without an index, each upsert reads the key column of every data file its key bounds cannot rule out —
 * all of them when keys are spread (a CDC mirror of a busy table) — and every position delete file, and
 * both grow with each commit. A `KeyIndex` keeps the live rows' keys and positions in a temp table of the
 * engine between upserts of one writer: built once by that same scan, then kept in step by each commit
 * (the rows it replaced leave, the rows it wrote come in), so a lookup costs a join with the batch.
 *
 * The index is only trusted for the snapshot it was kept up to: when the table moved otherwise (another
 * writer, compaction, a rollback, a failed or retried commit), it is built again from the table.
 */
import { randomUUID } from 'node:crypto';
import { duckdbType, quoteIdentifier, quoteLiteral, type Engine } from '../duckdb.ts';
import type { DataFile } from '../manifest.ts';
import type { ReadableFiles } from '../native-files.ts';
import { FILE_COLUMN, planFiles, planScan, type PlannedFile, type ScanPlan } from '../scan.ts';
import type { Table } from '../table.ts';
import type { NestedField } from '../types.ts';

/**
 * SQL reading the key columns of `files` (made readable in `readable`), with FILE_COLUMN (the local path)
 * and `file_row_number`. Columns are matched by field id, as scanSql reads them (renamed columns, files
 * written before the column).
 */
export function keyColumnsSql(
  readable: ReadableFiles,
  files: readonly DataFile[],
  fields: readonly NestedField[],
): string {
  const schemaMap = `map {${fields
    .map(
      (f) =>
        `${f.id}: {name: ${quoteLiteral(f.name)}, type: ${quoteLiteral(duckdbType(f.type))}, default_value: NULL}`,
    )
    .join(', ')}}`;
  const paths = files.map((f) => quoteLiteral(readable.path(f.filePath)));
  return `read_parquet([${paths.join(', ')}], schema = ${schemaMap}, filename = ${quoteLiteral(FILE_COLUMN)}, file_row_number = true)`;
}

/**
 * SQL of the live rows of a plan's data files, `s` (key columns, FILE_COLUMN, `file_row_number`) beside the
 * file they are in, `f` (`path`, `location` and `id`, its position in plan.dataFiles): position deletes
 * applied. `semiJoin` (e.g. `semi join batch i on …`) narrows the rows before the deletes are looked at.
 * The plan must have data files and no equality deletes; `readable`, its files made readable.
 */
export function liveKeysSql(
  readable: ReadableFiles,
  plan: ScanPlan,
  fields: readonly NestedField[],
  select: string,
  semiJoin = '',
): string {
  const files = plan.dataFiles.map(
    (p, id) => `(${quoteLiteral(readable.path(p.file.filePath))}, ${quoteLiteral(p.file.filePath)}, ${id})`,
  );
  let sql = `select ${select}
    from ${keyColumnsSql(
      readable,
      plan.dataFiles.map((p) => p.file),
      fields,
    )} s ${semiJoin}
    join (values ${files.join(', ')}) f(path, location, id) on s.${FILE_COLUMN} = f.path`;
  if (plan.positionDeletes.length) {
    const deletes = plan.positionDeletes.map((p) => quoteLiteral(readable.path(p.file.filePath)));
    sql += `
    anti join (select file_path, pos from read_parquet([${deletes.join(', ')}])) pd
      on pd.file_path = f.location and pd.pos = s.file_row_number`;
  }
  return sql;
}

/** What the index's columns are: a renamed or widened key column needs another index. */
function indexedColumns(fields: readonly NestedField[]): string {
  return JSON.stringify(fields.map((f) => [f.id, f.name, f.type]));
}

/** What an indexed lookup found: the matches table (`_file`, `_pos`, `_rowid`) and the files it names. */
export interface IndexedMatches {
  readonly name: string;
  readonly dataFiles: readonly PlannedFile[];
  readonly snapshotId: bigint | null;
}

/** The index of one table for one writer (an upsert sink); see the module comment. */
export class KeyIndex {
  /** Tables larger than this (in rows of data files) are not indexed: the index lives in memory. */
  readonly maxRows: number;
  readonly #id = randomUUID().replace(/-/g, '');
  /** The temp tables: keys with file id and position; file ids with their locations. */
  readonly #rows = `__tributary_key_index_${this.#id}`;
  readonly #files = `__tributary_key_files_${this.#id}`;
  /** The engine the temp tables may exist in (also while they are being built). */
  #engine: Engine | undefined;
  /** What the index holds, once it is consistent with a snapshot. */
  #state:
    | {
        engine: Engine;
        tableUuid: string;
        keys: string;
        snapshotId: bigint | null;
        files: PlannedFile[];
        live: number;
        dead: number;
      }
    | undefined;

  /** How many times the index was built from the table (once, unless the table moved otherwise). */
  #builds = 0;
  /** The upsert using the index, if any: the next waits for it (see `exclusive`). */
  #turn: Promise<unknown> = Promise.resolve();

  constructor(options: { maxRows?: number } = {}) {
    this.maxRows = options.maxRows ?? 10_000_000;
  }

  /**
   * Runs `work` (an upsert: `match`, its commit, `committed`) after the work given before it has ended.
   * Upserts sharing an index take turns: one matching keys while another brings the index up to its
   * commit would read it half-changed, and two matching against the same snapshot would both commit on it.
   */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const result = this.#turn.then(work, work);
    this.#turn = result.catch(() => undefined);
    return result;
  }

  /**
   * Stages, as a temp table the caller drops, the positions (`_file`, `_pos`, and the index's `_rowid`) of
   * the current rows whose key (the columns `fields`) is in `incoming`; undefined when this table is not
   * indexed (too large, or with equality deletes), and the caller looks the keys up in the files.
   */
  async match(
    table: Table,
    engine: Engine,
    incoming: string,
    fields: readonly NestedField[],
  ): Promise<IndexedMatches | undefined> {
    const current = table.metadata['current-snapshot-id'] ?? null;
    const keys = indexedColumns(fields);
    const state = this.#state;
    if (
      !state ||
      state.engine !== engine ||
      state.tableUuid !== table.metadata['table-uuid'] ||
      state.keys !== keys ||
      state.snapshotId !== current
    ) {
      await this.drop();
      if (!(await this.#build(table, engine, fields))) return undefined;
    }
    const name = `__tributary_matches_${randomUUID().replace(/-/g, '')}`;
    const match = fields
      .map((f, k) => `s.__k${k} is not distinct from i.${quoteIdentifier(f.name)}`)
      .join(' and ');
    await engine.connection.run(
      `create temp table ${name} as
         select f.location as _file, s.__pos as _pos, s.rowid as _rowid
         from ${this.#rows} s semi join ${incoming} i on ${match}
         join ${this.#files} f on f.id = s.__file`,
    );
    return { name, dataFiles: this.#state!.files, snapshotId: current };
  }

  /**
   * Brings the index up to the snapshot an upsert just committed: the rows in `matches` left, the rows of
   * `added` came in. Forgets everything when that snapshot is not the direct child of the indexed one.
   */
  async committed(
    table: Table,
    engine: Engine,
    change: {
      readonly matches: string;
      readonly snapshotId: bigint;
      readonly added: readonly DataFile[];
      /** The partition spec the added files were written with. */
      readonly specId: number;
      readonly fields: readonly NestedField[];
    },
  ): Promise<void> {
    const state = this.#state;
    const snapshot = table.metadata.snapshots.find((s) => s['snapshot-id'] === change.snapshotId);
    if (
      !state ||
      state.engine !== engine ||
      !snapshot ||
      (snapshot['parent-snapshot-id'] ?? null) !== state.snapshotId
    ) {
      await this.drop();
      return;
    }
    this.#state = undefined; // until the index is consistent again
    try {
      const removed = Number(
        (
          await engine.connection.runAndReadAll(
            `delete from ${this.#rows} using ${change.matches} m where ${this.#rows}.rowid = m._rowid`,
          )
        ).getRows()[0]?.[0] ?? 0,
      );
      const added = await this.#add(table, engine, state.files, change, snapshot['sequence-number']);
      const next = {
        ...state,
        snapshotId: change.snapshotId,
        live: state.live - removed + added,
        dead: state.dead + removed,
      };
      if (next.live > this.maxRows) {
        await this.drop(); // the table outgrew the index
        return;
      }
      // DuckDB keeps deleted rows until the table is rewritten, and scans them.
      if (next.dead > next.live && next.dead > 100_000) {
        await engine.connection.run(
          `create or replace temp table ${this.#rows} as select * from ${this.#rows}`,
        );
        next.dead = 0;
      }
      this.#state = next;
    } catch {
      // The commit stands; the next upsert builds the index again.
      await this.drop().catch(() => undefined);
    }
  }

  get builds(): number {
    return this.#builds;
  }

  /** Frees the index's memory: its tables are dropped, whatever state they were left in. */
  async drop(): Promise<void> {
    const engine = this.#engine;
    this.#state = undefined;
    this.#engine = undefined;
    if (!engine) return;
    await engine.connection.run(`drop table if exists ${this.#rows}`);
    await engine.connection.run(`drop table if exists ${this.#files}`);
  }

  /**
   * Builds the index from the table's current snapshot; false when the table is not to be indexed. The
   * index is trusted only once every statement succeeded: a failure leaves no index.
   */
  async #build(table: Table, engine: Engine, fields: readonly NestedField[]): Promise<boolean> {
    const summary: Readonly<Record<string, string>> = table.currentSnapshot?.summary ?? {};
    if (Number(summary['total-records'] ?? 0) > this.maxRows) return false;
    const plan = await planScan(table.metadata, table.storage);
    if (plan.equalityDeletes.length) return false;
    this.#builds++;
    // Key columns have names of the index's own (__k0, …): a key column may be called anything.
    const columns = fields.map((f, k) => `__k${k} ${duckdbType(f.type)}`).join(', ');
    this.#engine = engine;
    try {
      await engine.connection.run(`create temp table ${this.#files} (id INTEGER, location VARCHAR)`);
      await engine.connection.run(
        `create temp table ${this.#rows} (${columns}, __file INTEGER, __pos BIGINT)`,
      );
      let live = 0;
      if (plan.dataFiles.length) {
        await this.#insertFiles(engine, 0, plan.dataFiles);
        const keyColumns = fields.map((f) => `s.${quoteIdentifier(f.name)}`).join(', ');
        const readable = await table.files.readable(planFiles(plan));
        try {
          await engine.connection.run(
            `insert into ${this.#rows} ${liveKeysSql(readable, plan, fields, `${keyColumns}, f.id, s.file_row_number`)}`,
          );
        } finally {
          readable.release();
        }
        live = Number(
          (await engine.connection.runAndReadAll(`select count(*) from ${this.#rows}`)).getRows()[0]?.[0] ??
            0,
        );
      }
      this.#state = {
        engine,
        tableUuid: table.metadata['table-uuid'],
        keys: indexedColumns(fields),
        snapshotId: plan.snapshot?.['snapshot-id'] ?? null,
        files: [...plan.dataFiles],
        live,
        dead: 0,
      };
      return true;
    } catch (error) {
      await this.drop().catch(() => undefined);
      throw error;
    }
  }

  async #insertFiles(engine: Engine, first: number, files: readonly PlannedFile[]): Promise<void> {
    if (files.length === 0) return;
    await engine.connection.run(
      `insert into ${this.#files} values ${files.map((p, i) => `(${first + i}, ${quoteLiteral(p.file.filePath)})`).join(', ')}`,
    );
  }

  /** Indexes the rows of the data files a commit added; returns how many. */
  async #add(
    table: Table,
    engine: Engine,
    known: PlannedFile[],
    change: {
      readonly added: readonly DataFile[];
      readonly specId: number;
      readonly fields: readonly NestedField[];
    },
    sequenceNumber: number,
  ): Promise<number> {
    const { added, specId, fields } = change;
    if (added.length === 0) return 0;
    const first = known.length;
    const planned = added.map((file) => ({ file, sequenceNumber, specId }));
    await this.#insertFiles(engine, first, planned);
    known.push(...planned);
    const readable = await table.files.readable(
      added.map((f) => ({ location: f.filePath, size: f.fileSizeInBytes })),
    );
    try {
      const ids = added.map((f, i) => `(${quoteLiteral(readable.path(f.filePath))}, ${first + i})`);
      const keyColumns = fields.map((f) => `s.${quoteIdentifier(f.name)}`).join(', ');
      await engine.connection.run(
        `insert into ${this.#rows}
           select ${keyColumns}, f.id, s.file_row_number
           from ${keyColumnsSql(readable, added, fields)} s join (values ${ids.join(', ')}) f(path, id) on s.${FILE_COLUMN} = f.path`,
      );
    } finally {
      readable.release();
    }
    return added.reduce((n, f) => n + f.recordCount, 0);
  }
}
