/**
 * Privacy requests: erasing a person's rows everywhere (right to erasure), and gathering them (access).
 *
 * Erasure, per table the predicate applies to:
 *  1. every data file of the current snapshot that physically holds a matching row — visible, or already
 *     hidden by a delete file — is rewritten without it (deletes folded in), in one snapshot;
 *  2. if any file of any snapshot held a match, every older snapshot is expired, which deletes the files
 *     only they reached (old data files, manifests), so the bytes are gone and time travel cannot bring
 *     them back; branches and tags that still reach a match are reported;
 *  3. every Parquet file under the table's location is read once more: any still holding a match (a
 *     protected ref, a file a concurrent writer is adding) is reported.
 * An audit record (who, when, which tables, how many rows, the snapshot ids; the predicate only as a
 * SHA-256 hash, as it usually holds personal data) goes to `tributary_privacy_audit` in the catalog database.
 */
import { createHash, randomUUID } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import type { Catalog } from '../catalog/catalog.ts';
import {
  parseTableIdentifier,
  tableIdentifierToString,
  type TableIdentifier,
} from '../catalog/identifier.ts';
import type { SqlDriver } from '../catalog/sql-driver.ts';
import { didYouMean } from '../did-you-mean.ts';
import { isTributaryError, TributaryError } from '../errors.ts';
import { writeDataFiles } from '../iceberg/data-files.ts';
import { duckdbType, quoteIdentifier, quoteLiteral, type Engine } from '../iceberg/duckdb.ts';
import { decodeManifest, decodeManifestList } from '../iceberg/manifest.ts';
import { expireSnapshots, gcDisabled } from '../iceberg/operations/maintenance.ts';
import type { FileToRead, ReadableFiles } from '../iceberg/native-files.ts';
import { FILE_COLUMN, planFiles, planScan, scanSql, type ScanPlan } from '../iceberg/scan.ts';
import { SnapshotProducer } from '../iceberg/snapshot-producer.ts';
import type { Table } from '../iceberg/table.ts';
import type { Schema } from '../iceberg/types.ts';

export const AUDIT_TABLE = 'tributary_privacy_audit';

export interface PrivacyRequest {
  /** A SQL condition over a table's columns, e.g. "user_id = 'u-42'" or "email = 'a@b.c'". */
  readonly where: string;
  /** Tables to work on (namespace.table); default: every table whose columns the condition can be evaluated on. */
  readonly tables?: readonly string[];
}

export interface EraseOptions extends PrivacyRequest {
  /** Count what would be erased, change nothing. */
  readonly dryRun?: boolean;
  /** Who asked (for the audit record); default: the OS user. */
  readonly actor?: string;
  readonly reason?: string;
}

export interface EraseTableResult {
  readonly table: string;
  /** Matching rows in the current snapshot (deleted). */
  readonly rows: number;
  /** Current data files rewritten (they held matches, visible or not). */
  readonly rewrittenFiles: number;
  /** Whether any snapshot's files held a match (then older snapshots were expired). */
  readonly inHistory: boolean;
  readonly snapshotId?: string;
  readonly expiredSnapshots: number;
  readonly deletedFiles: number;
  /** Files under the table location still holding a match after the erasure (should be empty). */
  readonly remainingFiles: readonly string[];
  /** Branches or tags other than main that kept old snapshots alive. */
  readonly protectedRefs: readonly string[];
  /** The table has gc.enabled=false (its files may be other tables'): its old snapshots were not expired. */
  readonly gcDisabled: boolean;
}

/** A table the condition does not apply to (a column it names is missing). */
export interface SkippedTable {
  readonly table: string;
  readonly reason: string;
  /**
   * Columns holding other rows' values as JSON text, which a condition on a column does not reach: a change
   * table's key, before and after, a dead-letter table's payload.
   */
  readonly jsonColumns?: readonly string[];
  /** The same condition over those columns, when the condition is a column equal to a value. */
  readonly jsonWhere?: string;
  /** The rows jsonWhere matches (the person's data, left as it is). */
  readonly jsonRows?: number;
}

export interface EraseResult {
  readonly id: string;
  readonly dryRun: boolean;
  readonly tables: readonly EraseTableResult[];
  /** Tables the condition does not apply to (a column it names is missing). */
  readonly skipped: readonly SkippedTable[];
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '';
}

function schemaMap(schema: Schema): string {
  return `map {${schema.fields
    .map(
      (f) =>
        `${f.id}: {name: ${quoteLiteral(f.name)}, type: ${quoteLiteral(duckdbType(f.type))}, default_value: NULL}`,
    )
    .join(', ')}}`;
}

/** The data files of every snapshot of the table (current and historical). */
async function allDataFiles(table: Table): Promise<FileToRead[]> {
  const files = new Map<string, FileToRead>();
  const seenManifests = new Set<string>();
  for (const snapshot of table.metadata.snapshots) {
    for (const manifest of decodeManifestList(await table.storage.read(snapshot['manifest-list']))) {
      if (manifest.content !== 'data' || seenManifests.has(manifest.manifestPath)) continue;
      seenManifests.add(manifest.manifestPath);
      for (const entry of decodeManifest(await table.storage.read(manifest.manifestPath)).entries) {
        // A deleted entry names a file its snapshot removed (and expiry may have deleted since): the
        // snapshots before it list the file as live if any still holds it.
        if (entry.dataFile.content !== 'data' || entry.status === 'deleted') continue;
        const { filePath, fileSizeInBytes } = entry.dataFile;
        files.set(filePath, { location: filePath, size: fileSizeInBytes });
      }
    }
  }
  return [...files.values()];
}

/**
 * The files (by location) among `files` (made readable in `readable`) that physically hold a row matching
 * `where`, deletes ignored.
 */
async function filesWithMatches(
  engine: Engine,
  schema: Schema,
  readable: ReadableFiles,
  files: readonly FileToRead[],
  where: string,
): Promise<Set<string>> {
  if (files.length === 0) return new Set();
  const byLocal = new Map(files.map((file) => [readable.path(file.location), file.location]));
  const list = [...byLocal.keys()].map(quoteLiteral).join(', ');
  const reader = await engine.connection.runAndReadAll(
    `select distinct ${FILE_COLUMN} from read_parquet([${list}], schema = ${schemaMap(schema)}, filename = ${quoteLiteral(FILE_COLUMN)}) t where (${where})`,
  );
  return new Set(reader.getRows().map((r) => byLocal.get(String(r[0])) ?? String(r[0])));
}

/** Files `parquetFilesWithMatches` makes readable at a time (each batch is held in the read cache). */
const REMAINING_BATCH = 64;

/**
 * Every Parquet file under the table's location that holds a matching row (by column name). Every file is
 * read, through the read cache on remote storage: one skipped could hold a person's rows.
 */
async function parquetFilesWithMatches(table: Table, engine: Engine, where: string): Promise<string[]> {
  const parquet: FileToRead[] = [];
  for await (const entry of table.storage.list(table.location)) {
    if (entry.location.endsWith('.parquet')) parquet.push({ location: entry.location, size: entry.size });
  }
  const found: string[] = [];
  for (let start = 0; start < parquet.length; start += REMAINING_BATCH) {
    const batch = parquet.slice(start, start + REMAINING_BATCH);
    const readable = await table.files.readable(batch);
    try {
      for (const file of batch) {
        try {
          const reader = await engine.connection.runAndReadAll(
            `select count(*) from read_parquet(${quoteLiteral(readable.path(file.location))}) t where (${where})`,
          );
          if (Number(reader.getRows()[0]?.[0] ?? 0) > 0) found.push(file.location);
        } catch {
          // Delete files and files without the condition's columns cannot hold a match.
        }
      }
    } finally {
      readable.release();
    }
  }
  return found;
}

async function targetTables(
  catalog: Catalog,
  request: PrivacyRequest,
): Promise<{ tables: TableIdentifier[]; explicit: boolean }> {
  if (request.tables?.length) return { tables: request.tables.map(parseTableIdentifier), explicit: true };
  return { tables: await catalog.listAllTables(), explicit: false };
}

/**
 * The condition applies to no table (a misspelt column, an unquoted string): nothing would be erased or
 * exported, which must not pass for "this person has no data". Says why, with the column meant if a table
 * has one like the missing one.
 */
async function noTableApplies(catalog: Catalog, skipped: readonly SkippedTable[]): Promise<TributaryError> {
  const columns = new Set<string>();
  for (const identifier of await catalog.listAllTables())
    for (const field of (await catalog.loadTable(identifier)).schema.fields) columns.add(field.name);
  const missingColumn = (reason: string) => /Referenced column "([^"]+)" not found/.exec(reason)?.[1];
  // A column some table has is missing only from the others: not why the condition applies to none.
  const telling = skipped.filter((s) => !columns.has(missingColumn(s.reason) ?? ''));
  const reasons = [...new Set((telling.length ? telling : skipped).map((s) => s.reason))];
  const missing = [...new Set(telling.flatMap((s) => missingColumn(s.reason) ?? []))];
  const meant = missing.flatMap((name) => {
    const close = name.length >= 3 ? didYouMean(name, columns) : undefined;
    return close ? [`"${name}": did you mean "${close}"?`] : [];
  });
  return new TributaryError(
    'INVALID_INPUT',
    skipped.length
      ? `the condition applies to no table: ${reasons.slice(0, 3).join('; ')}`
      : 'the condition applies to no table: the catalog has none',
    {
      hint: `${meant.length ? `${meant.join(' ')} ` : ''}name columns that exist (strings in single quotes, e.g. "user_id = 'u-42'"), or pass --tables`,
    },
  );
}

/** A change table's JSON text columns (key, before, after), or a dead-letter table's (payload). */
function jsonTextColumns(schema: Schema): string[] {
  const text = new Set(schema.fields.filter((f) => f.type === 'string').map((f) => f.name));
  if (text.has('before') && text.has('after')) return ['key', 'before', 'after'].filter((c) => text.has(c));
  if (text.has('payload') && text.has('stage') && text.has('error')) return ['payload'];
  return [];
}

/**
 * `column = 'value'` (or a number) as the same condition over JSON text columns, each holding an object with
 * the row's columns; undefined for any other condition.
 */
export function jsonCondition(where: string, columns: readonly string[]): string | undefined {
  const match =
    /^\s*(?:"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_]*))\s*=\s*('(?:[^']|'')*'|-?\d+(?:\.\d+)?)\s*$/.exec(
      where,
    );
  if (!match || columns.length === 0) return undefined;
  const name = match[1]?.replaceAll('""', '"') ?? match[2] ?? '';
  const value = match[3]!.startsWith("'") ? match[3]! : quoteLiteral(match[3]!);
  const path = quoteLiteral(
    /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? `$.${name}` : `$.${JSON.stringify(name)}`,
  );
  // The columns are key, before, after or payload: no quotes needed.
  return columns.map((c) => `json_extract_string(${c}, ${path}) = ${value}`).join(' or ');
}

async function skippedTable(
  engine: Engine,
  table: Table,
  where: string,
  reason: string,
): Promise<SkippedTable> {
  const jsonColumns = jsonTextColumns(table.schema);
  if (jsonColumns.length === 0) return { table: table.name, reason };
  const jsonWhere = jsonCondition(where, jsonColumns);
  const counted = jsonWhere === undefined ? undefined : await countMatches(engine, table, jsonWhere);
  return {
    table: table.name,
    reason,
    jsonColumns,
    ...(jsonWhere !== undefined && counted && 'rows' in counted ? { jsonWhere, jsonRows: counted.rows } : {}),
  };
}

/** For the audit record: the tables left out, by name (a reason can quote the condition's values). */
function skippedForAudit(skipped: readonly SkippedTable[]): unknown[] {
  return skipped.map((s) => ({
    table: s.table,
    ...(s.jsonColumns ? { jsonColumns: s.jsonColumns } : {}),
    ...(s.jsonRows !== undefined ? { jsonRows: s.jsonRows } : {}),
  }));
}

/** Counts the rows of the current snapshot matching `where`; undefined when it cannot be evaluated on the table. */
async function countMatches(
  engine: Engine,
  table: Table,
  where: string,
): Promise<{ rows: number } | { error: string }> {
  const plan = await planScan(table.metadata, table.storage);
  const readable = await table.files.readable(planFiles(plan));
  try {
    const reader = await engine.connection.runAndReadAll(
      `select count(*) from ${scanSql(plan, readable)} t where (${where})`,
    );
    return { rows: Number(reader.getRows()[0]?.[0] ?? 0) };
  } catch (error) {
    return { error: firstLine(error) };
  } finally {
    readable.release();
  }
}

export async function eraseRows(
  catalog: Catalog,
  engine: Engine,
  options: EraseOptions,
  audit?: SqlDriver,
): Promise<EraseResult> {
  if (!options.where.trim()) throw new TributaryError('USAGE', 'erase needs a --where condition');
  const id = randomUUID();
  const { tables, explicit } = await targetTables(catalog, options);
  const results: EraseTableResult[] = [];
  const skipped: SkippedTable[] = [];
  for (const identifier of tables) {
    const table = await catalog.loadTable(identifier);
    let counted = await countMatches(engine, table, options.where);
    if ('error' in counted) {
      if (explicit) {
        throw new TributaryError(
          'INVALID_INPUT',
          `the condition cannot be evaluated on ${table.name}: ${counted.error}`,
          {
            hint: "write a SQL condition over the table's columns, e.g. \"user_id = 'u-42'\"",
          },
        );
      }
      skipped.push(await skippedTable(engine, table, options.where, counted.error));
      continue;
    }
    // A pipeline committing to the table meanwhile makes the commit conflict: read it again and retry.
    for (let attempt = 1; ; attempt++) {
      try {
        results.push(await eraseFromTable(engine, table, options, counted.rows, id));
        break;
      } catch (error) {
        if (!isTributaryError(error, 'ICEBERG_COMMIT_CONFLICT') || attempt === ERASE_ATTEMPTS) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100 * attempt * Math.random()));
        await table.refresh();
        const again = await countMatches(engine, table, options.where);
        if ('error' in again) throw error;
        counted = again;
      }
    }
  }
  if (!explicit && results.length === 0) throw await noTableApplies(catalog, skipped);
  if (audit && !options.dryRun) {
    await recordAudit(audit, {
      id,
      kind: 'erase',
      actor: options.actor,
      where: options.where,
      detail: {
        reason: options.reason ?? null,
        tables: results.map((r) => ({
          table: r.table,
          rows: r.rows,
          snapshotId: r.snapshotId ?? null,
          expiredSnapshots: r.expiredSnapshots,
          deletedFiles: r.deletedFiles,
          remainingFiles: r.remainingFiles.length,
        })),
        skipped: skippedForAudit(skipped),
      },
    });
  }
  return { id, dryRun: options.dryRun ?? false, tables: results, skipped };
}

/** Tries of an erasure whose commit lost to another writer of the table (a running pipeline). */
const ERASE_ATTEMPTS = 10;

async function eraseFromTable(
  engine: Engine,
  table: Table,
  options: EraseOptions,
  rows: number,
  id: string,
): Promise<EraseTableResult> {
  const plan = await planScan(table.metadata, table.storage);
  const history = await allDataFiles(table);
  // Every file of every snapshot, and the current one's delete files: none may be skipped.
  const readable = await table.files.readable([...history, ...planFiles(plan)]);
  try {
    return await eraseWithFiles(engine, table, options, rows, id, { plan, history, readable });
  } finally {
    readable.release();
  }
}

async function eraseWithFiles(
  engine: Engine,
  table: Table,
  options: EraseOptions,
  rows: number,
  id: string,
  { plan, history, readable }: { plan: ScanPlan; history: FileToRead[]; readable: ReadableFiles },
): Promise<EraseTableResult> {
  const where = options.where;
  const holding = await filesWithMatches(engine, table.schema, readable, history, where);
  const live = plan.dataFiles.filter((p) => holding.has(p.file.filePath));
  const liveFiles = new Set(plan.dataFiles.map((p) => p.file.filePath));
  const inHistory = [...holding].some((f) => !liveFiles.has(f));
  const otherRefs = Object.entries(table.metadata.refs)
    .filter(([name]) => name !== 'main')
    .map(([name]) => name);
  if (options.dryRun || holding.size === 0) {
    return {
      table: table.name,
      rows,
      rewrittenFiles: options.dryRun ? live.length : 0,
      inHistory,
      expiredSnapshots: 0,
      deletedFiles: 0,
      remainingFiles: options.dryRun ? [] : await parquetFilesWithMatches(table, engine, where),
      protectedRefs: [],
      gcDisabled: gcDisabled(table),
    };
  }
  let snapshotId: bigint | undefined;
  if (live.length) {
    const columns = plan.schema.fields.map((f) => quoteIdentifier(f.name)).join(', ');
    const subset = { ...plan, dataFiles: live };
    const kept = await writeDataFiles({
      engine,
      relation: `(select ${columns} from ${scanSql(subset, readable)} s where (${where}) is not true)`,
      schema: table.schema,
      spec: table.spec,
      files: table.files,
      dataLocation: `${table.location}/data`,
      targetFileSizeBytes: Number(table.property('write.target-file-size-bytes', String(512 * 1024 * 1024))),
    });
    const producer = new SnapshotProducer(table, {
      operation: kept.length ? 'overwrite' : 'delete',
      addedDataFiles: kept,
      removedPaths: new Set(live.map((p) => p.file.filePath)),
      readSnapshotId: plan.snapshot?.['snapshot-id'] ?? null,
      summary: { 'tributary.erase': id },
    });
    try {
      await producer.commit();
    } catch (error) {
      // Files of the other rows, never committed: none holds the erased ones, but none should stay.
      for (const file of kept) await table.storage.delete(file.filePath).catch(() => undefined);
      throw error;
    }
    snapshotId = producer.snapshotId;
  }
  // Every snapshot before this one may reach the rows: all of them go (refs other than main are kept by
  // expireSnapshots, and reported) — unless the table's files may be other tables' (gc.enabled=false):
  // then the files that held the rows stay, and are reported as remaining.
  const shared = gcDisabled(table);
  const expired = shared
    ? { expiredSnapshots: 0, deletedFiles: 0 }
    : await expireSnapshots(table, { olderThanMs: Date.now() + 1, retainLast: 1 });
  await table.refresh();
  const remainingFiles = await parquetFilesWithMatches(table, engine, where);
  return {
    table: table.name,
    rows,
    rewrittenFiles: live.length,
    inHistory,
    ...(snapshotId !== undefined ? { snapshotId: snapshotId.toString() } : {}),
    expiredSnapshots: expired.expiredSnapshots,
    deletedFiles: expired.deletedFiles,
    remainingFiles,
    protectedRefs: remainingFiles.length ? otherRefs : [],
    gcDisabled: shared,
  };
}

export interface ExportOptions extends PrivacyRequest {
  /** The file to write: NDJSON (`{"table": …, "row": {…}}` per line) or Parquet (by extension or `format`). */
  readonly to: string;
  readonly format?: 'ndjson' | 'parquet';
  /** Who asked (for the audit record); default: the OS user. */
  readonly actor?: string;
  /** Why, e.g. the request's ticket (kept in the audit record). */
  readonly reason?: string;
}

export interface ExportResult {
  readonly id: string;
  readonly file: string;
  readonly format: 'ndjson' | 'parquet';
  readonly rows: number;
  readonly tables: ReadonlyArray<{ readonly table: string; readonly rows: number }>;
  readonly skipped: readonly SkippedTable[];
}

/**
 * Gathers the rows matching `where` from every table it applies to into one file. Parquet: one row per
 * matching row with the table's name in `_table` and the columns of all tables by name (a column missing
 * from a table is null).
 */
export async function exportRows(
  catalog: Catalog,
  engine: Engine,
  options: ExportOptions,
  audit?: SqlDriver,
): Promise<ExportResult> {
  // The files each table's query reads stay readable until the export is written.
  const held: ReadableFiles[] = [];
  try {
    if (!options.where.trim()) throw new TributaryError('USAGE', 'export needs a --where condition');
    const format = options.format ?? (/\.parquet$/i.test(options.to) ? 'parquet' : 'ndjson');
    const { tables, explicit } = await targetTables(catalog, options);
    const parts: Array<{ table: string; sql: string; rows: number }> = [];
    const skipped: SkippedTable[] = [];
    for (const identifier of tables) {
      const table = await catalog.loadTable(identifier);
      const counted = await countMatches(engine, table, options.where);
      if ('error' in counted) {
        if (explicit)
          throw new TributaryError(
            'INVALID_INPUT',
            `the condition cannot be evaluated on ${table.name}: ${counted.error}`,
          );
        skipped.push(await skippedTable(engine, table, options.where, counted.error));
        continue;
      }
      const plan = await planScan(table.metadata, table.storage);
      const readable = await table.files.readable(planFiles(plan));
      held.push(readable);
      parts.push({
        table: tableIdentifierToString(identifier),
        sql: `select * from ${scanSql(plan, readable)} t where (${options.where})`,
        rows: counted.rows,
      });
    }
    if (!explicit && parts.length === 0) throw await noTableApplies(catalog, skipped);
    const nonEmpty = parts.filter((p) => p.rows > 0);
    const target = quoteLiteral(options.to);
    try {
      // A person's data: readable by this user alone (DuckDB would write it as the umask says, 0644 mostly).
      await writeFile(options.to, '', { mode: 0o600 });
      await chmod(options.to, 0o600);
      if (format === 'ndjson') {
        const union = nonEmpty.length
          ? nonEmpty
              // The row by an alias no column has: a column named like it would be taken for it.
              .map(
                (p) =>
                  `select ${quoteLiteral(p.table)} as "table", to_json(__tributary_row) as "row" from (${p.sql}) __tributary_row`,
              )
              .join(' union all ')
          : `select NULL::VARCHAR as "table", NULL::JSON as "row" where false`;
        await engine.connection.run(`copy (${union}) to ${target} (format json)`);
        await quoteSpecialFloats(options.to);
      } else {
        const union = nonEmpty.length
          ? nonEmpty
              .map((p) => `select ${quoteLiteral(p.table)} as _table, * from (${p.sql}) s`)
              .join(' union all by name ')
          : `select NULL::VARCHAR as _table where false`;
        await engine.connection.run(`copy (${union}) to ${target} (format parquet, compression zstd)`);
      }
      await chmod(options.to, 0o600);
    } catch (cause) {
      throw new TributaryError('INVALID_INPUT', `the export could not be written: ${firstLine(cause)}`, {
        cause,
        hint:
          format === 'parquet'
            ? 'tables with conflicting column types: export them one at a time with --tables, or as NDJSON'
            : 'check the --to path',
      });
    }
    const id = randomUUID();
    const result = {
      id,
      file: options.to,
      format,
      rows: parts.reduce((n, p) => n + p.rows, 0),
      tables: parts.map((p) => ({ table: p.table, rows: p.rows })),
      skipped,
    } as const;
    if (audit) {
      await recordAudit(audit, {
        id,
        kind: 'export',
        actor: options.actor,
        where: options.where,
        detail: {
          reason: options.reason ?? null,
          format,
          rows: result.rows,
          tables: result.tables,
          skipped: skippedForAudit(skipped),
        },
      });
    }
    return result;
  } finally {
    for (const readable of held) readable.release();
  }
}

/**
 * DuckDB writes a float's NaN and infinities into JSON as the bare words NaN, Infinity and -Infinity, which
 * no JSON reader takes: they become strings ("NaN"), as change data capture writes them. Words inside
 * strings are left alone.
 */
async function quoteSpecialFloats(file: string): Promise<void> {
  const text = await readFile(file, 'utf8');
  if (!/NaN|Infinity/.test(text)) return;
  let out = '';
  let at = 0;
  for (const match of text.matchAll(/"(?:[^"\\]|\\.)*"|-?Infinity|NaN/g)) {
    if (match[0].startsWith('"')) continue;
    out += `${text.slice(at, match.index)}"${match[0]}"`;
    at = match.index + match[0].length;
  }
  await writeFile(file, out + text.slice(at));
}

export interface AuditRecord {
  readonly id: string;
  readonly kind: 'erase' | 'export';
  readonly at: number;
  readonly actor: string;
  readonly predicateSha256: string;
  readonly detail: unknown;
}

async function ensureAuditTable(driver: SqlDriver): Promise<void> {
  await driver.execute(
    `CREATE TABLE IF NOT EXISTS ${AUDIT_TABLE} (
       id VARCHAR(40) NOT NULL PRIMARY KEY,
       kind VARCHAR(20) NOT NULL,
       at BIGINT NOT NULL,
       actor VARCHAR(200) NOT NULL,
       predicate_sha256 VARCHAR(64) NOT NULL,
       detail TEXT NOT NULL
     )`,
  );
}

function predicateHash(where: string): string {
  return createHash('sha256').update(where).digest('hex');
}

async function recordAudit(
  driver: SqlDriver,
  entry: { id: string; kind: 'erase' | 'export'; actor: string | undefined; where: string; detail: unknown },
): Promise<void> {
  await ensureAuditTable(driver);
  let actor = entry.actor;
  if (!actor) {
    try {
      actor = os.userInfo().username;
    } catch {
      actor = 'unknown';
    }
  }
  await driver.execute(
    `INSERT INTO ${AUDIT_TABLE} (id, kind, at, actor, predicate_sha256, detail) VALUES (?, ?, ?, ?, ?, ?)`,
    [entry.id, entry.kind, Date.now(), actor, predicateHash(entry.where), JSON.stringify(entry.detail)],
  );
}

/** The audit records, newest first. */
/**
 * The audit records, newest first; with `where`, those made with exactly that condition (by its hash, as
 * they keep it: the condition usually names the person).
 */
export async function listAudit(
  driver: SqlDriver,
  limit = 50,
  options: { where?: string } = {},
): Promise<AuditRecord[]> {
  await ensureAuditTable(driver);
  const hash = options.where === undefined ? undefined : predicateHash(options.where);
  const rows = await driver.query<{
    id: string;
    kind: string;
    at: number | string;
    actor: string;
    predicate_sha256: string;
    detail: string;
  }>(
    `SELECT * FROM ${AUDIT_TABLE}${hash ? ' WHERE predicate_sha256 = ?' : ''} ORDER BY at DESC LIMIT ?`,
    hash ? [hash, limit] : [limit],
  );
  return rows.map((r) => ({
    id: r.id,
    kind: r.kind as 'erase' | 'export',
    at: Number(r.at),
    actor: r.actor,
    predicateSha256: r.predicate_sha256,
    detail: JSON.parse(r.detail) as unknown,
  }));
}
