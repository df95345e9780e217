/**
 * The catalog Tributary works with: the SQL catalog's registry of namespaces and tables, plus what it takes
 * to create, load, commit and drop Iceberg tables in the warehouse. Engines other than Tributary open the
 * same catalog (pyiceberg's SqlCatalog, Iceberg's JdbcCatalog) and see the same tables.
 */
import { isTributaryError, TributaryError } from '../errors.ts';
import { newTableMetadata, type PartitionSpec, type SortOrder } from '../iceberg/metadata.ts';
import { nativeFiles, type NativeFiles } from '../iceberg/native-files.ts';
import {
  readMetadataFile,
  Table,
  writeMetadataFile,
  type TableOperations,
  type TableState,
} from '../iceberg/table.ts';
import { filesToPurge, type SweepGuard } from '../iceberg/operations/maintenance.ts';
import type { Schema } from '../iceberg/types.ts';
import { S3Storage } from '../storage/s3.ts';
import { locationWithin, type Storage } from '../storage/storage.ts';
import { tableIdentifierToString, type Namespace, type TableIdentifier } from './identifier.ts';
import type { SqlCatalog } from './sql-catalog.ts';

export interface CreateTableOptions {
  /** Field ids already assigned (see assignFreshIds). */
  readonly schema: Schema;
  readonly spec?: PartitionSpec;
  readonly sortOrder?: SortOrder;
  readonly properties?: Readonly<Record<string, string>>;
  /** Default: see `Catalog.defaultLocation`. */
  readonly location?: string;
}

/** Properties every table Tributary creates starts with. */
export const DEFAULT_TABLE_PROPERTIES: Readonly<Record<string, string>> = {
  'write.parquet.compression-codec': 'zstd',
  'write.delete.mode': 'copy-on-write',
  'write.update.mode': 'merge-on-read',
};

export class Catalog {
  readonly name: string;
  readonly registry: SqlCatalog;
  readonly storage: Storage;
  /** How DuckDB reads and writes the tables' files (staging and read cache for remote storage). */
  readonly files: NativeFiles;
  /** Warehouse root as a location URI (file:///…). */
  readonly warehouse: string;

  /** What sweeping files no table names must spare (`sweepRefusal`); known when opened for a project. */
  readonly sweepGuard: SweepGuard | undefined;

  constructor(options: {
    name: string;
    registry: SqlCatalog;
    storage: Storage;
    /** Default: in place, for local storage. */
    files?: NativeFiles;
    warehouse: string;
    /** The project's folder and what it keeps on disk outside tables (its log, a SQLite catalog). */
    project?: { root: string; kept: readonly string[] };
  }) {
    this.name = options.name;
    this.registry = options.registry;
    this.storage = options.storage;
    this.files = options.files ?? nativeFiles(options.storage);
    this.warehouse = options.warehouse.replace(/\/+$/, '');
    this.sweepGuard = options.project && {
      project: options.project.root,
      warehouse: this.warehouse,
      kept: options.project.kept,
    };
  }

  /**
   * Where a new table goes, as pyiceberg's SqlCatalog and Java place it: under the namespace's `location`
   * property when it has one, else <warehouse>/<dotted namespace>/<name>.
   */
  async defaultLocation(identifier: TableIdentifier): Promise<string> {
    return this.registry.defaultTableLocation(identifier);
  }

  async createNamespaceIfAbsent(
    namespace: Namespace,
    properties: Record<string, string> = {},
  ): Promise<void> {
    if (await this.registry.namespaceExists(namespace)) return;
    try {
      await this.registry.createNamespace(namespace, properties);
    } catch (error) {
      // Another writer created it since the check (two pipelines' first batches into one namespace).
      if (isTributaryError(error) && error.code === 'NAMESPACE_EXISTS') return;
      throw error;
    }
  }

  async createTable(identifier: TableIdentifier, options: CreateTableOptions): Promise<Table> {
    if (await this.registry.tableExists(identifier)) {
      throw new TributaryError(
        'TABLE_EXISTS',
        `table ${tableIdentifierToString(identifier)} already exists`,
        {
          hint: 'choose another name, or drop the table first',
        },
      );
    }
    const metadata = newTableMetadata({
      location: options.location ?? (await this.defaultLocation(identifier)),
      schema: options.schema,
      spec: options.spec ?? { 'spec-id': 0, fields: [] },
      sortOrder: options.sortOrder ?? { 'order-id': 0, fields: [] },
      properties: { ...DEFAULT_TABLE_PROPERTIES, ...options.properties },
    });
    const state = await writeMetadataFile(this.storage, metadata);
    try {
      await this.registry.registerTable(identifier, state.metadataLocation);
    } catch (error) {
      await this.storage.delete(state.metadataLocation);
      throw error;
    }
    return new Table(identifier, this.#operations(identifier), state);
  }

  async loadTable(identifier: TableIdentifier): Promise<Table> {
    const operations = this.#operations(identifier);
    return new Table(identifier, operations, await operations.load());
  }

  async tableExists(identifier: TableIdentifier): Promise<boolean> {
    return this.registry.tableExists(identifier);
  }

  /**
   * Removes the table from the catalog; with `purge`, also its files (`filesToPurge`: what its metadata
   * reaches and no other table does, and the rest of a location of its own in the warehouse). They are
   * found before the table is dropped, so a table whose metadata cannot be read stays as it was; its
   * folder is listed after, so that a commit made meanwhile is swept too. Returns the files deleted.
   */
  async dropTable(identifier: TableIdentifier, options: { purge?: boolean } = {}): Promise<number> {
    if (!options.purge) {
      await this.registry.dropTable(identifier);
      return 0;
    }
    const table = await this.loadTable(identifier);
    const { tables, unreadable } = await this.neighboursOf(table);
    const { files, sweep } = await filesToPurge(table, {
      neighbours: tables,
      alone: tables.length === 0 && unreadable.length === 0,
      ...(this.sweepGuard ? { guard: this.sweepGuard } : {}),
    });
    await this.registry.dropTable(identifier);
    const doomed = new Set(files);
    if (sweep) for await (const file of this.storage.list(table.location)) doomed.add(file.location);
    for (const file of doomed) await this.storage.delete(file);
    await this.files.forget([...doomed]);
    return doomed.size;
  }

  /** Every table of the catalog, in every namespace (nested ones included). */
  async listAllTables(): Promise<TableIdentifier[]> {
    const found: TableIdentifier[] = [];
    const walk = async (parent?: Namespace) => {
      for (const namespace of await this.registry.listNamespaces(parent)) {
        found.push(...(await this.registry.listTables(namespace)));
        await walk(namespace);
      }
    };
    await walk();
    return found;
  }

  /**
   * The other tables whose locations overlap `table`'s — one inside the other, or the same (a table
   * renamed, and another made under its old name): files under one location may belong to the other.
   * Fails when a table's metadata cannot be read (it might overlap).
   */
  async tablesOverlapping(table: Table): Promise<Table[]> {
    const { tables, unreadable } = await this.neighboursOf(table);
    if (unreadable.length > 0) await this.loadTable(unreadable[0]!); // throws its error
    return tables;
  }

  /**
   * `tablesOverlapping`, and the tables whose metadata could not be read instead of an error. A table's
   * folders are its location and the data and metadata paths its properties set (other engines write
   * files there).
   */
  async neighboursOf(table: Table): Promise<{ tables: Table[]; unreadable: TableIdentifier[] }> {
    const folders = (of: Table) => [
      of.location,
      ...['write.data.path', 'write.metadata.path', 'write.object-storage.path', 'write.folder-storage.path']
        .map((name) => of.property(name, ''))
        .filter((path) => path !== ''),
    ];
    const ours = folders(table);
    const tables: Table[] = [];
    const unreadable: TableIdentifier[] = [];
    for (const identifier of await this.listAllTables()) {
      if (tableIdentifierToString(identifier) === tableIdentifierToString(table.identifier)) continue;
      let other: Table;
      try {
        other = await this.loadTable(identifier);
      } catch {
        unreadable.push(identifier);
        continue;
      }
      const overlap = folders(other).some((theirs) =>
        ours.some(
          (mine) => locationWithin(this.storage, theirs, mine) || locationWithin(this.storage, mine, theirs),
        ),
      );
      if (overlap) tables.push(other);
    }
    return { tables, unreadable };
  }

  async renameTable(from: TableIdentifier, to: TableIdentifier): Promise<void> {
    await this.registry.renameTable(from, to);
  }

  #operations(identifier: TableIdentifier): TableOperations {
    const registry = this.registry;
    const storage = this.storage;
    return {
      storage,
      files: this.files,
      async load(): Promise<TableState> {
        const metadataLocation = await registry.getMetadataLocation(identifier);
        return { metadataLocation, metadata: await readMetadataFile(storage, metadataLocation) };
      },
      async swap(base: TableState, newLocation: string): Promise<void> {
        await registry.swapMetadataLocation(identifier, base.metadataLocation, newLocation);
      },
    };
  }

  close(): void {
    void this.registry.close();
    if (this.storage instanceof S3Storage) this.storage.destroy(); // its connections
  }
}
