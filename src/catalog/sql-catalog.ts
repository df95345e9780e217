/**
 * The embedded SQL catalog's table registry: which tables exist, in which namespaces, and where each table's
 * current metadata file is. It stores exactly what Iceberg's Java `JdbcCatalog` and pyiceberg's `SqlCatalog`
 * store, in the same two tables, so each can open a catalog the others wrote:
 *
 *   iceberg_tables(catalog_name, table_namespace, table_name, metadata_location,
 *                  previous_metadata_location[, iceberg_type])
 *   iceberg_namespace_properties(catalog_name, namespace, property_key, property_value)
 *
 * Compatibility rules, shared with pyiceberg 0.12 and Java's JdbcCatalog:
 * - New databases get pyiceberg's tables, which are Java's "V1" schema: `iceberg_type` is 'TABLE' for a table
 *   and 'VIEW' for a view. Catalogs without that column (Java's V0) are used as they are, never altered.
 *   Rows whose `iceberg_type` is neither 'TABLE' nor NULL (views) are never treated as tables.
 * - Namespaces are stored dotted ("silver.eu"). A namespace exists when a property row or a table row has
 *   it or a namespace below it. Creating a namespace always writes the reserved property `exists=true` (as
 *   Java does), so removing every other property never makes it vanish; `exists` is hidden from callers.
 * - A commit is one `UPDATE … SET metadata_location = new, previous_metadata_location = expected WHERE …
 *   AND metadata_location = expected`: the compare-and-swap every implementation uses.
 *
 * The registry never reads metadata files: creating, loading and purging tables is the format modules' job.
 */
import { TributaryError } from '../errors.ts';
import { fileLocationOf, schemeOf } from '../storage/index.ts';
import {
  codePoints,
  hasControlCharacter,
  MAX_NAME_LENGTH,
  MAX_VALUE_LENGTH,
  namespaceOf,
  namespaceToString,
  parseNamespace,
  parseTableIdentifier,
  tableIdentifier,
  tableIdentifierToString,
  type Namespace,
  type TableIdentifier,
} from './identifier.ts';
import { openSqlDriver, sqlFailureOf, type SqlDriver, type SqlExecutor } from './sql-driver.ts';

export {
  namespaceToString,
  parseNamespace,
  parseTableIdentifier,
  tableIdentifierToString,
  type Namespace,
  type TableIdentifier,
} from './identifier.ts';

export interface SqlCatalogOptions {
  /** The catalog's name (the `catalog_name` column): other engines must use the same name to see its tables. */
  readonly name: string;
  /**
   * `sqlite:<path>` (the file and its directory are created; resolve relative paths before), `sqlite::memory:`
   * (tests), or `postgresql://user:password@host:port/database`.
   */
  readonly uri: string;
  /** Root of table data and metadata: a `file://`/`s3://` URI or an absolute path. */
  readonly warehouse: string;
}

/** A namespace as levels, or dotted ("silver.eu"). */
export type NamespaceInput = Namespace | string;
/** A table identifier, or dotted ("silver.orders"). */
export type TableInput = TableIdentifier | string;

export interface TableEntry {
  readonly identifier: TableIdentifier;
  readonly metadataLocation: string;
  /** The location the last commit replaced; undefined for a table never committed since it was registered. */
  readonly previousMetadataLocation: string | undefined;
}

/** What `updateNamespaceProperties` did, as pyiceberg reports it. */
export interface NamespacePropertiesUpdate {
  readonly removed: readonly string[];
  readonly updated: readonly string[];
  /** Keys asked to be removed that were not set. */
  readonly missing: readonly string[];
}

/**
 * The table registry. Called by the table format modules (create, load, commit, drop tables), the CLI and
 * the server; safe for concurrent calls and for many processes on one database.
 *
 * Atomicity: every change is one transaction, its checks included (the namespace exists, the name is free).
 * `swapMetadataLocation` is the commit point of a table: of writers racing from the same metadata, exactly
 * one wins; the others get ICEBERG_COMMIT_CONFLICT (retryable: reload the table, redo the commit on its new
 * metadata). Reads see committed state; a listing is not a snapshot across namespaces.
 *
 * Errors: TABLE_NOT_FOUND, TABLE_EXISTS, NAMESPACE_NOT_FOUND, NAMESPACE_EXISTS, NAMESPACE_NOT_EMPTY,
 * ICEBERG_COMMIT_CONFLICT (retryable), INVALID_INPUT for a bad name, property or location, and
 * SERVICE_UNAVAILABLE when the database fails (retryable for lost connections and lock timeouts).
 */
export interface SqlCatalog {
  readonly name: string;
  /** The warehouse as a URI (`file:///…` for a local directory), without a trailing slash. */
  readonly warehouse: string;

  /** The namespaces one level below `parent` (top-level ones without it), sorted. NAMESPACE_NOT_FOUND. */
  listNamespaces(parent?: NamespaceInput): Promise<Namespace[]>;
  /** NAMESPACE_EXISTS when it exists, explicitly or because something below it does. */
  createNamespace(namespace: NamespaceInput, properties?: Readonly<Record<string, string>>): Promise<void>;
  namespaceExists(namespace: NamespaceInput): Promise<boolean>;
  /** The namespace's properties (without the reserved `exists`). NAMESPACE_NOT_FOUND. */
  loadNamespaceProperties(namespace: NamespaceInput): Promise<Readonly<Record<string, string>>>;
  /** Removes then sets properties, atomically. INVALID_INPUT when a key is in both. NAMESPACE_NOT_FOUND. */
  updateNamespaceProperties(
    namespace: NamespaceInput,
    removals: readonly string[],
    updates: Readonly<Record<string, string>>,
  ): Promise<NamespacePropertiesUpdate>;
  /** NAMESPACE_NOT_FOUND; NAMESPACE_NOT_EMPTY while tables, views or namespaces remain in it. */
  dropNamespace(namespace: NamespaceInput): Promise<void>;

  /** The tables of one namespace (not of those below it), sorted by name. NAMESPACE_NOT_FOUND. */
  listTables(namespace: NamespaceInput): Promise<TableIdentifier[]>;
  tableExists(table: TableInput): Promise<boolean>;
  /** The current metadata file of the table. TABLE_NOT_FOUND. */
  getMetadataLocation(table: TableInput): Promise<string>;
  /** The current and previous metadata locations. TABLE_NOT_FOUND. */
  loadTableEntry(table: TableInput): Promise<TableEntry>;
  /** Adds a table whose metadata file exists already. NAMESPACE_NOT_FOUND, TABLE_EXISTS. */
  registerTable(table: TableInput, metadataLocation: string): Promise<void>;
  /**
   * Commits: points the table at `newLocation` if it still points at `expectedLocation`, and records
   * `expectedLocation` as the previous one. ICEBERG_COMMIT_CONFLICT (retryable) when another commit came
   * first; TABLE_NOT_FOUND when the table is gone.
   */
  swapMetadataLocation(table: TableInput, expectedLocation: string, newLocation: string): Promise<void>;
  /** TABLE_NOT_FOUND, NAMESPACE_NOT_FOUND (target namespace), TABLE_EXISTS (target name). */
  renameTable(from: TableInput, to: TableInput): Promise<void>;
  /** Unregisters the table and returns its last metadata location; deleting its files is the caller's job. */
  dropTable(table: TableInput): Promise<string | undefined>;

  /**
   * Where a new table's files go, as pyiceberg's SqlCatalog places them: the namespace's `location`
   * property, or `<warehouse>/<dotted namespace>`, then `/<table name>`. NAMESPACE_NOT_FOUND.
   */
  defaultTableLocation(table: TableInput): Promise<string>;

  /** Closes the database connections; idempotent. */
  close(): Promise<void>;
}

/** The reserved property that makes a namespace exist without other properties (Java and pyiceberg). */
const EXISTS_PROPERTY = 'exists';
const TABLE_TYPE = 'TABLE';

interface TableRow {
  readonly metadata_location: string | null;
  readonly previous_metadata_location: string | null;
}

/**
 * Opens (and on first use creates) a catalog. CONFIG_INVALID for a bad name, URI or warehouse;
 * SERVICE_UNAVAILABLE when the database cannot be reached.
 */
export async function openSqlCatalog(options: SqlCatalogOptions): Promise<SqlCatalog> {
  const name = checkCatalogName(options.name);
  const warehouse = normalizeWarehouse(options.warehouse);
  const driver = await openSqlDriver(options.uri);
  try {
    await createCatalogTables(driver);
    const hasTypeColumn = await hasColumn(driver, 'iceberg_tables', 'iceberg_type');
    return new SqlCatalogImpl(driver, name, warehouse, hasTypeColumn);
  } catch (error) {
    await driver.close();
    throw error;
  }
}

/** Creates both tables as pyiceberg does (Java's V1 schema) unless they exist; safe against racing openers. */
async function createCatalogTables(driver: SqlDriver): Promise<void> {
  if ((await hasTable(driver, 'iceberg_tables')) && (await hasTable(driver, 'iceberg_namespace_properties')))
    return;
  await driver.transaction(async (tx) => {
    // Two PostgreSQL sessions racing on CREATE TABLE IF NOT EXISTS can both try to create: serialize them.
    if (driver.dialect === 'postgresql') await tx.query('SELECT pg_advisory_xact_lock(8318395215641202177)');
    await tx.execute(
      `CREATE TABLE IF NOT EXISTS iceberg_tables (
        catalog_name VARCHAR(255) NOT NULL,
        table_namespace VARCHAR(255) NOT NULL,
        table_name VARCHAR(255) NOT NULL,
        metadata_location VARCHAR(1000),
        previous_metadata_location VARCHAR(1000),
        iceberg_type VARCHAR(5),
        PRIMARY KEY (catalog_name, table_namespace, table_name)
      )`,
    );
    await tx.execute(
      `CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (
        catalog_name VARCHAR(255) NOT NULL,
        namespace VARCHAR(255) NOT NULL,
        property_key VARCHAR(255) NOT NULL,
        property_value VARCHAR(1000) NOT NULL,
        PRIMARY KEY (catalog_name, namespace, property_key)
      )`,
    );
  });
}

async function hasTable(driver: SqlDriver, table: 'iceberg_tables' | 'iceberg_namespace_properties') {
  try {
    await driver.query(`SELECT 1 AS probe FROM ${table} WHERE 1 = 0`);
    return true;
  } catch (error) {
    if (sqlFailureOf(error) === 'undefined-table') return false;
    throw error;
  }
}

async function hasColumn(driver: SqlDriver, table: 'iceberg_tables', column: 'iceberg_type') {
  try {
    await driver.query(`SELECT ${column} FROM ${table} WHERE 1 = 0`);
    return true;
  } catch (error) {
    if (sqlFailureOf(error) === 'undefined-column') return false;
    throw error;
  }
}

class SqlCatalogImpl implements SqlCatalog {
  readonly name: string;
  readonly warehouse: string;
  readonly #driver: SqlDriver;
  /** `AND …` keeping table rows (not views) when the catalog has the iceberg_type column. */
  readonly #onlyTables: string;
  readonly #hasTypeColumn: boolean;

  constructor(driver: SqlDriver, name: string, warehouse: string, hasTypeColumn: boolean) {
    this.#driver = driver;
    this.name = name;
    this.warehouse = warehouse;
    this.#hasTypeColumn = hasTypeColumn;
    this.#onlyTables = hasTypeColumn ? ` AND (iceberg_type = '${TABLE_TYPE}' OR iceberg_type IS NULL)` : '';
  }

  // ---- namespaces ------------------------------------------------------------------------------------

  async listNamespaces(parent?: NamespaceInput): Promise<Namespace[]> {
    const parentLevels = parent === undefined ? [] : toNamespace(parent);
    const prefix = parentLevels.length ? `${namespaceToString(parentLevels)}.` : '';
    const under = (column: string) => (prefix ? ` AND substr(${column}, 1, CAST(? AS INTEGER)) = ?` : '');
    const underParams = prefix ? [codePoints(prefix), prefix] : [];
    if (parentLevels.length && !(await this.namespaceExists(parentLevels))) {
      throw this.#namespaceNotFound(parentLevels);
    }
    const rows = await this.#driver.query<{ ns: string }>(
      `SELECT table_namespace AS ns FROM iceberg_tables WHERE catalog_name = ?${under('table_namespace')}
       UNION
       SELECT namespace AS ns FROM iceberg_namespace_properties WHERE catalog_name = ?${under('namespace')}`,
      [this.name, ...underParams, this.name, ...underParams],
    );
    const children = new Map<string, Namespace>();
    for (const { ns } of rows) {
      const levels = ns.split('.');
      if (levels.length <= parentLevels.length) continue;
      const child = levels.slice(0, parentLevels.length + 1);
      children.set(child.join('.'), Object.freeze(child));
    }
    return [...children.entries()].sort(([a], [b]) => compare(a, b)).map(([, levels]) => levels);
  }

  async createNamespace(namespace: NamespaceInput, properties: Readonly<Record<string, string>> = {}) {
    const levels = toNamespace(namespace);
    const entries = checkProperties(Object.entries(properties), levels);
    const dotted = namespaceToString(levels);
    try {
      await this.#driver.transaction(async (tx) => {
        if (await this.#namespaceExistsIn(tx, levels)) throw this.#namespaceExists(levels);
        for (const [key, value] of [[EXISTS_PROPERTY, 'true'] as const, ...entries]) {
          await tx.execute(
            'INSERT INTO iceberg_namespace_properties (catalog_name, namespace, property_key, property_value) VALUES (?, ?, ?, ?)',
            [this.name, dotted, key, value],
          );
        }
      });
    } catch (error) {
      if (sqlFailureOf(error) === 'unique-violation') throw this.#namespaceExists(levels, error);
      throw error;
    }
  }

  async namespaceExists(namespace: NamespaceInput): Promise<boolean> {
    return this.#namespaceExistsIn(this.#driver, toNamespace(namespace));
  }

  async loadNamespaceProperties(namespace: NamespaceInput): Promise<Readonly<Record<string, string>>> {
    const levels = toNamespace(namespace);
    if (!(await this.namespaceExists(levels))) throw this.#namespaceNotFound(levels);
    const rows = await this.#propertyRows(this.#driver, levels);
    return Object.freeze(
      Object.fromEntries(
        rows
          .filter((row) => row.property_key !== EXISTS_PROPERTY)
          .map((row) => [row.property_key, row.property_value ?? '']),
      ),
    );
  }

  async updateNamespaceProperties(
    namespace: NamespaceInput,
    removals: readonly string[],
    updates: Readonly<Record<string, string>>,
  ): Promise<NamespacePropertiesUpdate> {
    const levels = toNamespace(namespace);
    const toSet = checkProperties(Object.entries(updates), levels);
    const toRemove = [
      ...new Set(
        checkProperties(
          removals.map((key) => [key, '']),
          levels,
        ).map(([key]) => key),
      ),
    ];
    const both = toRemove.filter((key) => Object.hasOwn(updates, key));
    if (both.length) {
      throw new TributaryError(
        'INVALID_INPUT',
        `Namespace ${namespaceToString(levels)}: properties ${both.join(', ')} are both removed and set`,
        {
          context: { namespace: namespaceToString(levels), keys: both },
          hint: 'Remove or set each key, not both.',
        },
      );
    }
    const dotted = namespaceToString(levels);
    return this.#driver.transaction(async (tx) => {
      if (!(await this.#namespaceExistsIn(tx, levels))) throw this.#namespaceNotFound(levels);
      const current = new Set((await this.#propertyRows(tx, levels)).map((row) => row.property_key));
      const remove =
        'DELETE FROM iceberg_namespace_properties WHERE catalog_name = ? AND namespace = ? AND property_key = ?';
      for (const key of [...toRemove, ...toSet.map(([key]) => key)])
        await tx.execute(remove, [this.name, dotted, key]);
      const insert =
        'INSERT INTO iceberg_namespace_properties (catalog_name, namespace, property_key, property_value) VALUES (?, ?, ?, ?)';
      for (const [key, value] of toSet) await tx.execute(insert, [this.name, dotted, key, value]);
      // Keep the namespace in existence whatever was removed (a namespace pyiceberg created with properties
      // has no `exists` row).
      if (!current.has(EXISTS_PROPERTY))
        await tx.execute(insert, [this.name, dotted, EXISTS_PROPERTY, 'true']);
      return Object.freeze({
        removed: toRemove.filter((key) => current.has(key)),
        updated: toSet.map(([key]) => key),
        missing: toRemove.filter((key) => !current.has(key)),
      });
    });
  }

  async dropNamespace(namespace: NamespaceInput): Promise<void> {
    const levels = toNamespace(namespace);
    const dotted = namespaceToString(levels);
    await this.#driver.transaction(async (tx) => {
      if (!(await this.#namespaceExistsIn(tx, levels))) throw this.#namespaceNotFound(levels);
      const members = await tx.query<{ table_name: string }>(
        'SELECT table_name FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? ORDER BY table_name',
        [this.name, dotted],
      );
      if (members.length) {
        const names = members.slice(0, 5).map((row) => `${dotted}.${row.table_name}`);
        throw new TributaryError(
          'NAMESPACE_NOT_EMPTY',
          `Namespace ${dotted} in catalog ${this.name} still holds ${members.length} table(s) or view(s): ` +
            `${names.join(', ')}${members.length > names.length ? ', …' : ''}`,
          {
            context: { namespace: dotted, catalog: this.name, tables: names },
            hint: 'Drop or move them first.',
          },
        );
      }
      const below = await this.#childNamespaces(tx, levels);
      if (below.length) {
        throw new TributaryError(
          'NAMESPACE_NOT_EMPTY',
          `Namespace ${dotted} in catalog ${this.name} still holds namespaces: ${below.slice(0, 5).join(', ')}`,
          { context: { namespace: dotted, catalog: this.name, namespaces: below }, hint: 'Drop them first.' },
        );
      }
      await tx.execute('DELETE FROM iceberg_namespace_properties WHERE catalog_name = ? AND namespace = ?', [
        this.name,
        dotted,
      ]);
    });
  }

  // ---- tables ----------------------------------------------------------------------------------------

  async listTables(namespace: NamespaceInput): Promise<TableIdentifier[]> {
    const levels = toNamespace(namespace);
    if (!(await this.namespaceExists(levels))) throw this.#namespaceNotFound(levels);
    const rows = await this.#driver.query<{ table_name: string }>(
      `SELECT table_name FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ?${this.#onlyTables}`,
      [this.name, namespaceToString(levels)],
    );
    return rows
      .map((row) => row.table_name)
      .sort(compare)
      .map((name) => Object.freeze({ namespace: levels, name }));
  }

  async tableExists(table: TableInput): Promise<boolean> {
    return (await this.#tableRow(this.#driver, toTable(table))) !== undefined;
  }

  async getMetadataLocation(table: TableInput): Promise<string> {
    return (await this.loadTableEntry(table)).metadataLocation;
  }

  async loadTableEntry(table: TableInput): Promise<TableEntry> {
    const identifier = toTable(table);
    const row = await this.#tableRow(this.#driver, identifier);
    if (!row) throw this.#tableNotFound(identifier);
    if (!row.metadata_location) {
      throw new TributaryError(
        'TABLE_NOT_FOUND',
        `Table ${tableIdentifierToString(identifier)} in catalog ${this.name} has no metadata location`,
        {
          context: { table: tableIdentifierToString(identifier), catalog: this.name },
          hint: 'The catalog row is incomplete (an interrupted create by another engine?): drop and register it again.',
        },
      );
    }
    return Object.freeze({
      identifier,
      metadataLocation: row.metadata_location,
      previousMetadataLocation: row.previous_metadata_location ?? undefined,
    });
  }

  async registerTable(table: TableInput, metadataLocation: string): Promise<void> {
    const identifier = toTable(table);
    const location = checkLocation(metadataLocation, identifier);
    const columns = this.#hasTypeColumn ? ', iceberg_type' : '';
    const values = this.#hasTypeColumn ? ', ?' : '';
    try {
      await this.#driver.transaction(async (tx) => {
        if (!(await this.#namespaceExistsIn(tx, identifier.namespace))) {
          throw this.#namespaceNotFound(identifier.namespace);
        }
        await tx.execute(
          `INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, metadata_location, previous_metadata_location${columns})
           VALUES (?, ?, ?, ?, NULL${values})`,
          [
            this.name,
            namespaceToString(identifier.namespace),
            identifier.name,
            location,
            ...(this.#hasTypeColumn ? [TABLE_TYPE] : []),
          ],
        );
      });
    } catch (error) {
      if (sqlFailureOf(error) === 'unique-violation') throw await this.#tableExists(identifier, error);
      throw error;
    }
  }

  async swapMetadataLocation(
    table: TableInput,
    expectedLocation: string,
    newLocation: string,
  ): Promise<void> {
    const identifier = toTable(table);
    const expected = checkLocation(expectedLocation, identifier);
    const next = checkLocation(newLocation, identifier);
    if (next === expected) {
      throw new TributaryError(
        'INVALID_INPUT',
        `Commit to table ${tableIdentifierToString(identifier)} names the same metadata file as old and new: ${next}`,
        {
          context: { table: tableIdentifierToString(identifier), location: next },
          hint: 'Every commit writes a new metadata file.',
        },
      );
    }
    const changed = await this.#driver.execute(
      `UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ?
       WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? AND metadata_location = ?${this.#onlyTables}`,
      [next, expected, this.name, namespaceToString(identifier.namespace), identifier.name, expected],
    );
    if (changed === 1) return;
    // Nothing changed: tell a lost race from a missing table (this read is for the message only).
    const current = await this.#tableRow(this.#driver, identifier);
    if (!current) throw this.#tableNotFound(identifier);
    const shown = tableIdentifierToString(identifier);
    throw new TributaryError(
      'ICEBERG_COMMIT_CONFLICT',
      `Commit to table ${shown} in catalog ${this.name} lost a race: its metadata is no longer ${expected}`,
      {
        context: {
          table: shown,
          catalog: this.name,
          expectedLocation: expected,
          currentLocation: current.metadata_location,
          newLocation: next,
        },
        retryable: true,
        hint: 'Another writer committed first: reload the table and apply the change to its new metadata.',
      },
    );
  }

  async renameTable(from: TableInput, to: TableInput): Promise<void> {
    const source = toTable(from);
    const target = toTable(to);
    try {
      await this.#driver.transaction(async (tx) => {
        if (!(await this.#tableRow(tx, source))) throw this.#tableNotFound(source);
        if (tableIdentifierToString(source) === tableIdentifierToString(target)) return;
        if (!(await this.#namespaceExistsIn(tx, target.namespace)))
          throw this.#namespaceNotFound(target.namespace);
        const changed = await tx.execute(
          `UPDATE iceberg_tables SET table_namespace = ?, table_name = ?
           WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?${this.#onlyTables}`,
          [
            namespaceToString(target.namespace),
            target.name,
            this.name,
            namespaceToString(source.namespace),
            source.name,
          ],
        );
        if (changed !== 1) throw this.#tableNotFound(source);
      });
    } catch (error) {
      if (sqlFailureOf(error) === 'unique-violation') throw await this.#tableExists(target, error);
      throw error;
    }
  }

  async dropTable(table: TableInput): Promise<string | undefined> {
    const identifier = toTable(table);
    const rows = await this.#driver.query<{ metadata_location: string | null }>(
      `DELETE FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?${this.#onlyTables}
       RETURNING metadata_location`,
      [this.name, namespaceToString(identifier.namespace), identifier.name],
    );
    if (!rows[0]) throw this.#tableNotFound(identifier);
    return rows[0].metadata_location ?? undefined;
  }

  async defaultTableLocation(table: TableInput): Promise<string> {
    const identifier = toTable(table);
    const properties = await this.loadNamespaceProperties(identifier.namespace);
    const base =
      properties.location?.replace(/\/+$/, '') ||
      `${this.warehouse}/${namespaceToString(identifier.namespace)}`;
    return `${base}/${identifier.name}`;
  }

  async close(): Promise<void> {
    await this.#driver.close();
  }

  // ---- helpers ---------------------------------------------------------------------------------------

  async #namespaceExistsIn(executor: SqlExecutor, levels: Namespace): Promise<boolean> {
    const dotted = namespaceToString(levels);
    const prefix = `${dotted}.`;
    const length = codePoints(prefix);
    const rows = await executor.query(
      `SELECT 1 AS found FROM iceberg_tables
       WHERE catalog_name = ? AND (table_namespace = ? OR substr(table_namespace, 1, CAST(? AS INTEGER)) = ?)
       UNION ALL
       SELECT 1 AS found FROM iceberg_namespace_properties
       WHERE catalog_name = ? AND (namespace = ? OR substr(namespace, 1, CAST(? AS INTEGER)) = ?)
       LIMIT 1`,
      [this.name, dotted, length, prefix, this.name, dotted, length, prefix],
    );
    return rows.length > 0;
  }

  async #childNamespaces(executor: SqlExecutor, levels: Namespace): Promise<string[]> {
    const prefix = `${namespaceToString(levels)}.`;
    const length = codePoints(prefix);
    const rows = await executor.query<{ ns: string }>(
      `SELECT table_namespace AS ns FROM iceberg_tables
       WHERE catalog_name = ? AND substr(table_namespace, 1, CAST(? AS INTEGER)) = ?
       UNION
       SELECT namespace AS ns FROM iceberg_namespace_properties
       WHERE catalog_name = ? AND substr(namespace, 1, CAST(? AS INTEGER)) = ?`,
      [this.name, length, prefix, this.name, length, prefix],
    );
    return rows.map((row) => row.ns).sort(compare);
  }

  async #propertyRows(executor: SqlExecutor, levels: Namespace) {
    return executor.query<{ property_key: string; property_value: string | null }>(
      'SELECT property_key, property_value FROM iceberg_namespace_properties WHERE catalog_name = ? AND namespace = ?',
      [this.name, namespaceToString(levels)],
    );
  }

  async #tableRow(executor: SqlExecutor, identifier: TableIdentifier): Promise<TableRow | undefined> {
    const rows = await executor.query<{
      metadata_location: string | null;
      previous_metadata_location: string | null;
    }>(
      `SELECT metadata_location, previous_metadata_location FROM iceberg_tables
       WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?${this.#onlyTables}`,
      [this.name, namespaceToString(identifier.namespace), identifier.name],
    );
    return rows[0];
  }

  #tableNotFound(identifier: TableIdentifier): TributaryError {
    const shown = tableIdentifierToString(identifier);
    return new TributaryError('TABLE_NOT_FOUND', `Table ${shown} not found in catalog ${this.name}`, {
      context: { table: shown, catalog: this.name },
      hint: 'Check the name against the namespace’s tables, and that every engine uses the same catalog name.',
    });
  }

  async #tableExists(identifier: TableIdentifier, cause: unknown): Promise<TributaryError> {
    const shown = tableIdentifierToString(identifier);
    let kind = 'Table';
    if (this.#hasTypeColumn) {
      const rows = await this.#driver
        .query<{ iceberg_type: string | null }>(
          'SELECT iceberg_type FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?',
          [this.name, namespaceToString(identifier.namespace), identifier.name],
        )
        .catch(() => []);
      if (rows[0]?.iceberg_type && rows[0].iceberg_type !== TABLE_TYPE) kind = 'A view named';
    }
    return new TributaryError('TABLE_EXISTS', `${kind} ${shown} already exists in catalog ${this.name}`, {
      context: { table: shown, catalog: this.name },
      cause,
      hint: 'Choose another name, or drop the existing one first.',
    });
  }

  #namespaceNotFound(levels: Namespace): TributaryError {
    const shown = namespaceToString(levels);
    return new TributaryError('NAMESPACE_NOT_FOUND', `Namespace ${shown} not found in catalog ${this.name}`, {
      context: { namespace: shown, catalog: this.name },
      hint: 'Create the namespace first.',
    });
  }

  #namespaceExists(levels: Namespace, cause?: unknown): TributaryError {
    const shown = namespaceToString(levels);
    return new TributaryError(
      'NAMESPACE_EXISTS',
      `Namespace ${shown} already exists in catalog ${this.name}`,
      {
        context: { namespace: shown, catalog: this.name },
        cause,
        hint: 'Use the existing namespace, or update its properties.',
      },
    );
  }
}

function toNamespace(namespace: NamespaceInput): Namespace {
  return typeof namespace === 'string' ? parseNamespace(namespace) : namespaceOf(namespace);
}

function toTable(table: TableInput): TableIdentifier {
  if (typeof table === 'string') return parseTableIdentifier(table);
  if (typeof table !== 'object' || table === null) return parseTableIdentifier(String(table));
  return tableIdentifier(table.namespace, table.name);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Checked property entries: keys non-empty, short, without control characters, not `exists`; values short. */
function checkProperties(
  entries: readonly (readonly [string, unknown])[],
  levels: Namespace,
): [string, string][] {
  const namespace = namespaceToString(levels);
  const fail = (why: string, key: string) =>
    new TributaryError('INVALID_INPUT', `Namespace ${namespace}: property ${JSON.stringify(key)} ${why}`, {
      context: { namespace, key },
      hint: `Use keys of 1 to ${MAX_NAME_LENGTH} characters without control characters, and string values of at most ${MAX_VALUE_LENGTH}.`,
    });
  return entries.map(([key, value]) => {
    if (typeof key !== 'string' || key === '') throw fail('has an empty key', String(key));
    if (hasControlCharacter(key)) throw fail('has a control character in its key', key);
    if (codePoints(key) > MAX_NAME_LENGTH)
      throw fail(`has a key longer than ${MAX_NAME_LENGTH} characters`, key);
    if (key === EXISTS_PROPERTY)
      throw fail('is reserved: the catalog sets it to mark the namespace as existing', key);
    if (typeof value !== 'string') throw fail('has a value that is not a string', key);
    if (value.includes('\0')) throw fail('has a NUL character in its value', key);
    if (codePoints(value) > MAX_VALUE_LENGTH)
      throw fail(`has a value longer than ${MAX_VALUE_LENGTH} characters`, key);
    return [key, value];
  });
}

function checkLocation(location: string, identifier: TableIdentifier): string {
  const table = tableIdentifierToString(identifier);
  const fail = (why: string) =>
    new TributaryError(
      'INVALID_INPUT',
      `Metadata location for table ${table} ${why}: ${JSON.stringify(location)}`,
      {
        context: { table, location },
        hint: `Give the URI of the table's metadata file, at most ${MAX_VALUE_LENGTH} characters.`,
      },
    );
  if (typeof location !== 'string' || location === '') throw fail('is empty');
  if (hasControlCharacter(location)) throw fail('contains a control character');
  if (codePoints(location) > MAX_VALUE_LENGTH) throw fail(`is longer than ${MAX_VALUE_LENGTH} characters`);
  return location;
}

function checkCatalogName(name: string): string {
  if (
    typeof name !== 'string' ||
    name === '' ||
    hasControlCharacter(name) ||
    codePoints(name) > MAX_NAME_LENGTH
  ) {
    throw new TributaryError('CONFIG_INVALID', `Invalid catalog name ${JSON.stringify(name)}`, {
      context: { name },
      hint: `Use 1 to ${MAX_NAME_LENGTH} characters without control characters.`,
    });
  }
  return name;
}

function normalizeWarehouse(warehouse: string): string {
  if (typeof warehouse === 'string' && warehouse !== '') {
    const trimmed = warehouse.length > 1 ? warehouse.replace(/\/+$/, '') : warehouse;
    if (schemeOf(trimmed) !== undefined) return trimmed;
    if (trimmed.startsWith('/')) return fileLocationOf(trimmed);
  }
  throw new TributaryError('CONFIG_INVALID', `Invalid warehouse ${JSON.stringify(warehouse)}`, {
    context: { warehouse },
    hint: 'Give an absolute directory (resolved against the project) or a file:// or s3:// URI.',
  });
}
