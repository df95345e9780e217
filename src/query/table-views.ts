/**
 * Catalog tables as DuckDB views. A table's view reads the snapshot asked for, with its deletes applied:
 *  - the current snapshot under the table's own name (`"silver"."orders"`), rebuilt only when the table's
 *    metadata location in the catalog has changed since (a commit), so repeated queries plan nothing;
 *  - a given snapshot (time travel) under `"__tributary_snapshots"."silver.orders@<id>"`, built once: a
 *    snapshot never changes.
 *
 * Reading: a snapshot without delete files and without renamed nested fields is one `read_parquet` over its
 * data files, matched by field id (as fast as `read_parquet` over the same files); anything else goes
 * through `scanSql`, which applies position and equality deletes.
 */
import type { Catalog } from '../catalog/catalog.ts';
import { namespaceToString, tableIdentifierToString, type TableIdentifier } from '../catalog/identifier.ts';
import { duckdbType, quoteIdentifier, quoteLiteral, type DuckDBConnection } from '../iceberg/duckdb.ts';
import type { ReadableFiles } from '../iceberg/native-files.ts';
import { planFiles, planScan, scanSql, snapshotFor, type ScanPlan } from '../iceberg/scan.ts';
import type { Table } from '../iceberg/table.ts';

export const SNAPSHOT_SCHEMA = '__tributary_snapshots';
const MAX_PINNED_VIEWS = 256;

export interface SnapshotSelector {
  /** Read at this snapshot id (time travel); the table must have it. */
  readonly snapshotId?: bigint;
  /** Read as of this time (ms since epoch). */
  readonly asOfMs?: number;
}

export interface ExposedTable {
  readonly identifier: TableIdentifier;
  /** The qualified, quoted view name to select from. */
  readonly view: string;
  /** The snapshot the view reads; undefined for a table without snapshots. */
  readonly snapshotId: bigint | undefined;
}

/**
 * DuckDB SQL reading a planned snapshot: a bare read_parquet when there is nothing to apply. `files` are
 * the plan's files made readable (`NativeFiles.readable(planFiles(plan))`).
 */
export function readPlanSql(plan: ScanPlan, files: ReadableFiles): string {
  const simple =
    plan.dataFiles.length > 0 &&
    plan.positionDeletes.length === 0 &&
    plan.equalityDeletes.length === 0 &&
    plan.dataFiles.every((p) => p.columns === undefined);
  if (!simple) return scanSql(plan, files);
  const paths = plan.dataFiles.map((p) => quoteLiteral(files.path(p.file.filePath)));
  const schemaMap = `map {${plan.schema.fields
    .map(
      (f) =>
        `${f.id}: {name: ${quoteLiteral(f.name)}, type: ${quoteLiteral(duckdbType(f.type))}, default_value: NULL}`,
    )
    .join(', ')}}`;
  const columns = plan.schema.fields.map((f) => quoteIdentifier(f.name)).join(', ');
  return `(select ${columns} from read_parquet([${paths.join(', ')}], schema = ${schemaMap}))`;
}

interface CurrentView {
  readonly metadataLocation: string;
  readonly exposed: ExposedTable;
}

export class TableViews {
  readonly #catalog: Catalog;
  readonly #connection: DuckDBConnection;
  readonly #current = new Map<string, CurrentView>();
  readonly #pinned = new Map<string, ExposedTable>();
  readonly #schemas = new Set<string>();
  /** The files each view reads, held in the read cache until the view is replaced or dropped. */
  readonly #held = new Map<string, ReadableFiles>();
  /** View changes run one at a time: one connection, and no view is rebuilt twice at once. */
  #pending: Promise<unknown> = Promise.resolve();

  constructor(catalog: Catalog, connection: DuckDBConnection) {
    this.#catalog = catalog;
    this.#connection = connection;
  }

  async #schema(name: string): Promise<void> {
    if (this.#schemas.has(name)) return;
    await this.#connection.run(`create schema if not exists ${quoteIdentifier(name)}`);
    this.#schemas.add(name);
  }

  /**
   * Creates or replaces `view` (a qualified, quoted name) reading the plan of `table`; the files it reads
   * stay readable until the view is replaced or dropped here. Models define their delta views with it.
   */
  define(view: string, table: Table, plan: ScanPlan): Promise<void> {
    return this.#serial(() => this.#define(view, table, plan));
  }

  async #define(view: string, table: Table, plan: ScanPlan): Promise<void> {
    const files = await table.files.readable(planFiles(plan));
    try {
      await this.#connection.run(
        `create or replace view ${view} as select * from ${readPlanSql(plan, files)}`,
      );
    } catch (error) {
      files.release();
      throw error;
    }
    this.#held.get(view)?.release();
    this.#held.set(view, files);
  }

  async #drop(view: string): Promise<void> {
    await this.#connection.run(`drop view if exists ${view}`);
    this.#held.get(view)?.release();
    this.#held.delete(view);
  }

  async #serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#pending.then(work, work);
    this.#pending = next.catch(() => undefined);
    return next;
  }

  /** The view of the table's current snapshot, rebuilt if the table has committed since it was built. */
  async current(identifier: TableIdentifier): Promise<ExposedTable> {
    const key = tableIdentifierToString(identifier);
    return this.#serial(async () => {
      const location = await this.#catalog.registry.getMetadataLocation(identifier);
      const cached = this.#current.get(key);
      if (cached?.metadataLocation === location) return cached.exposed;
      const table = await this.#catalog.loadTable(identifier);
      const schemaName = namespaceToString(identifier.namespace);
      await this.#schema(schemaName);
      const view = `${quoteIdentifier(schemaName)}.${quoteIdentifier(identifier.name)}`;
      const plan = await planScan(table.metadata, table.storage);
      await this.#define(view, table, plan);
      const exposed = { identifier, view, snapshotId: plan.snapshot?.['snapshot-id'] };
      this.#current.set(key, { metadataLocation: table.metadataLocation, exposed });
      return exposed;
    });
  }

  /** The view of one snapshot of the table (by id or time); the current one when `selector` is empty. */
  async at(identifier: TableIdentifier, selector: SnapshotSelector = {}): Promise<ExposedTable> {
    if (selector.snapshotId === undefined && selector.asOfMs === undefined) return this.current(identifier);
    const table = await this.#catalog.loadTable(identifier);
    const snapshot = snapshotFor(table.metadata, selector);
    const id = snapshot?.['snapshot-id'];
    const key = `${tableIdentifierToString(identifier)}@${id}`;
    return this.#serial(async () => {
      const cached = this.#pinned.get(key);
      if (cached) return cached;
      await this.#schema(SNAPSHOT_SCHEMA);
      const view = `${quoteIdentifier(SNAPSHOT_SCHEMA)}.${quoteIdentifier(key)}`;
      const plan = await planScan(table.metadata, table.storage, id === undefined ? {} : { snapshotId: id });
      await this.#define(view, table, plan);
      const exposed = { identifier, view, snapshotId: id };
      this.#pinned.set(key, exposed);
      if (this.#pinned.size > MAX_PINNED_VIEWS) {
        const [oldest, old] = this.#pinned.entries().next().value!;
        this.#pinned.delete(oldest);
        await this.#drop(old.view);
      }
      return exposed;
    });
  }

  /** A view of `table` (already loaded) under its own name at a snapshot: for CLI time travel and models. */
  async replaceWith(table: Table, selector: SnapshotSelector): Promise<ExposedTable> {
    const identifier = table.identifier;
    const key = tableIdentifierToString(identifier);
    return this.#serial(async () => {
      const schemaName = namespaceToString(identifier.namespace);
      await this.#schema(schemaName);
      const view = `${quoteIdentifier(schemaName)}.${quoteIdentifier(identifier.name)}`;
      const plan = await planScan(table.metadata, table.storage, selector);
      await this.#define(view, table, plan);
      // Not the current snapshot (perhaps): the next `current` call rebuilds it.
      this.#current.delete(key);
      return { identifier, view, snapshotId: plan.snapshot?.['snapshot-id'] };
    });
  }

  /** Forgets every view, e.g. after the files of a table were rewritten outside this process. */
  invalidate(): void {
    this.#current.clear();
    this.#pinned.clear();
  }
}
