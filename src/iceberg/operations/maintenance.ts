/**
 * Table maintenance: expire snapshots (and delete what only they reached), compact small data files with
 * their deletes folded in, rewrite manifests, remove orphan files, and roll back to an earlier snapshot.
 */
import { randomUUID } from 'node:crypto';
import { TributaryError } from '../../errors.ts';
import { writeDataFiles } from '../data-files.ts';
import { quoteIdentifier, quoteLiteral, type Engine } from '../duckdb.ts';
import {
  decodeManifest,
  decodeManifestList,
  encodeManifest,
  encodeManifestList,
  inheritManifestMetadata,
  type DataFile,
  type ManifestEntry,
  type ManifestFile,
} from '../manifest.ts';
import {
  ancestorsOf,
  MAIN_BRANCH,
  newSnapshotId,
  schemaById,
  schemaForPartitionSpecs,
  snapshotById,
  specById,
  type Snapshot,
  type TableMetadata,
} from '../metadata.ts';
import { partitionType } from '../partition-spec.ts';
import type { ReadableFiles } from '../native-files.ts';
import { planFiles, planScan, scanSql, type PlannedFile, type ScanPlan } from '../scan.ts';
import { SnapshotProducer, summarizePartitions } from '../snapshot-producer.ts';
import { comparableLocation, locationWithin } from '../../storage/storage.ts';
import type { Table, TableState } from '../table.ts';
import type { Storage } from '../../storage/storage.ts';

/** Files a snapshot reaches: its manifest list, its manifests, and its live data and delete files. */
async function reachableFrom(
  storage: Storage,
  snapshot: Snapshot,
  into: Set<string>,
  manifestCache: Map<string, ManifestEntry[]>,
): Promise<void> {
  into.add(snapshot['manifest-list']);
  for (const manifest of decodeManifestList(await storage.read(snapshot['manifest-list']))) {
    into.add(manifest.manifestPath);
    let entries = manifestCache.get(manifest.manifestPath);
    if (!entries) {
      entries = inheritManifestMetadata(
        decodeManifest(await storage.read(manifest.manifestPath)).entries,
        manifest,
      );
      manifestCache.set(manifest.manifestPath, entries);
    }
    for (const entry of entries) if (entry.status !== 'deleted') into.add(entry.dataFile.filePath);
  }
}

export interface ExpireOptions {
  /** Expire snapshots made before this time (ms since epoch); default: 5 days ago (history.expire.max-snapshot-age-ms). */
  readonly olderThanMs?: number;
  /** Always keep this many of the most recent snapshots of the current history; default 1. */
  readonly retainLast?: number;
}

export interface ExpireResult {
  readonly expiredSnapshots: number;
  readonly deletedFiles: number;
  readonly state: TableState;
}

/**
 * Removes the snapshots made before `olderThanMs` but the last `retainLast` of the current history and
 * those of branches and tags, then deletes the files only they reached. Refused for a table with
 * gc.enabled=false.
 */
export async function expireSnapshots(table: Table, options: ExpireOptions = {}): Promise<ExpireResult> {
  refuseWithoutGc(table, 'expire its snapshots', `its snapshots stay; ${GC_OWNER_HINT}`);
  const maxAge = Number(table.property('history.expire.max-snapshot-age-ms', String(5 * 86_400_000)));
  const olderThan = options.olderThanMs ?? Date.now() - maxAge;
  const retainLast = Math.max(
    1,
    options.retainLast ?? Number(table.property('history.expire.min-snapshots-to-keep', '1')),
  );
  let expired: Snapshot[] = [];
  let kept: Snapshot[] = [];
  const state = await table.commit(async (base) => {
    const metadata = base.metadata;
    const protectedIds = new Set<bigint>(
      ancestorsOf(metadata, metadata['current-snapshot-id'])
        .slice(0, retainLast)
        .map((s) => s['snapshot-id']),
    );
    for (const ref of Object.values(metadata.refs)) protectedIds.add(ref['snapshot-id']);
    expired = metadata.snapshots.filter(
      (s) => !protectedIds.has(s['snapshot-id']) && s['timestamp-ms'] < olderThan,
    );
    const expiredIds = new Set(expired.map((s) => s['snapshot-id']));
    kept = metadata.snapshots.filter((s) => !expiredIds.has(s['snapshot-id']));
    return {
      ...metadata,
      snapshots: kept,
      'snapshot-log': metadata['snapshot-log'].filter((e) => !expiredIds.has(e['snapshot-id'])),
    };
  });
  // Only after the commit: delete what no retained snapshot reaches any more.
  const cache = new Map<string, ManifestEntry[]>();
  const retained = new Set<string>();
  for (const snapshot of kept) await reachableFrom(table.storage, snapshot, retained, cache);
  const candidates = new Set<string>();
  for (const snapshot of expired) {
    await reachableFrom(table.storage, snapshot, candidates, cache);
    // Files the expired snapshot deleted were live in its parent, which may be expired too: covered by the parent.
  }
  let deletedFiles = 0;
  const deleted: string[] = [];
  for (const location of candidates) {
    if (retained.has(location)) continue;
    await table.storage.delete(location);
    deleted.push(location);
    deletedFiles++;
  }
  // Local copies of deleted files go too: an erasure's expiry must leave no copy of the rows it erased.
  await table.files.forget(deleted);
  return { expiredSnapshots: expired.length, deletedFiles, state };
}

export interface CompactOptions {
  /** Files smaller than this are rewritten; default 3/4 of write.target-file-size-bytes. */
  readonly minFileSizeBytes?: number;
  readonly targetFileSizeBytes?: number;
}

export interface CompactResult {
  readonly rewrittenFiles: number;
  readonly addedFiles: number;
  readonly removedDeleteFiles: number;
  readonly state: TableState;
}

/**
 * Rewrites, per partition, the small data files and the files that deletes apply to into files of the
 * target size, with the deletes applied; delete files that only applied to rewritten files are removed.
 * The table's rows are unchanged.
 */
export async function compact(
  table: Table,
  engine: Engine,
  options: CompactOptions = {},
): Promise<CompactResult> {
  const target =
    options.targetFileSizeBytes ??
    Number(table.property('write.target-file-size-bytes', String(512 * 1024 * 1024)));
  const minSize = options.minFileSizeBytes ?? Math.floor(target * 0.75);
  const plan = await planScan(table.metadata, table.storage);
  // Every file, delete files included: which files a delete applies to is read from the delete file.
  const readable = await table.files.readable(planFiles(plan));
  try {
    return await compactPlan(table, engine, plan, readable, { target, minSize });
  } finally {
    readable.release();
  }
}

async function compactPlan(
  table: Table,
  engine: Engine,
  plan: ScanPlan,
  readable: ReadableFiles,
  { target, minSize }: { target: number; minSize: number },
): Promise<CompactResult> {
  const positionTargets = await positionDeleteTargets(readable, engine, plan.positionDeletes);
  const withDeletes = new Set([...positionTargets.values()].flat());
  const hasEqualityDeletes = plan.equalityDeletes.length > 0;
  const groups = new Map<string, PlannedFile[]>();
  for (const planned of plan.dataFiles) {
    const key = `${planned.specId}:${JSON.stringify(planned.file.partition, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v))}`;
    groups.set(key, [...(groups.get(key) ?? []), planned]);
  }
  const rewrite: PlannedFile[] = [];
  for (const files of groups.values()) {
    const small = files.filter(
      (p) => p.file.fileSizeInBytes < minSize || withDeletes.has(p.file.filePath) || hasEqualityDeletes,
    );
    if (small.length > 1 || small.some((p) => withDeletes.has(p.file.filePath) || hasEqualityDeletes))
      rewrite.push(...small);
  }
  const rewritten = new Set(rewrite.map((p) => p.file.filePath));
  // A delete file goes when every file it names is rewritten here or already gone (replaced by a
  // copy-on-write delete or an overwrite since): the rows it deletes are in no live file any more.
  const live = new Set(plan.dataFiles.map((p) => p.file.filePath));
  const removedDeletes = plan.positionDeletes.filter((p) => {
    const targets = positionTargets.get(p.file.filePath);
    return targets !== undefined && targets.every((f) => rewritten.has(f) || !live.has(f));
  });
  if (rewrite.length === 0 && removedDeletes.length === 0)
    return { rewrittenFiles: 0, addedFiles: 0, removedDeleteFiles: 0, state: table.state };
  const subset: ScanPlan = { ...plan, dataFiles: rewrite };
  const columns = plan.schema.fields.map((f) => quoteIdentifier(f.name)).join(', ');
  const added = rewrite.length
    ? await writeDataFiles({
        engine,
        relation: `(select ${columns} from ${scanSql(subset, readable)})`,
        schema: table.schema,
        spec: table.spec,
        files: table.files,
        dataLocation: `${table.location}/data`,
        targetFileSizeBytes: target,
      })
    : [];
  const allRewritten = plan.dataFiles.every((p) => rewritten.has(p.file.filePath));
  const removedEquality = allRewritten ? plan.equalityDeletes : [];
  const producer = new SnapshotProducer(table, {
    operation: 'replace',
    addedDataFiles: added,
    removedPaths: new Set([
      ...rewritten,
      ...[...removedDeletes, ...removedEquality].map((p) => p.file.filePath),
    ]),
    readSnapshotId: plan.snapshot?.['snapshot-id'] ?? null,
  });
  const state = await producer.commit();
  return {
    rewrittenFiles: rewrite.length,
    addedFiles: added.length,
    removedDeleteFiles: removedDeletes.length + removedEquality.length,
    state,
  };
}

/** For each position delete file, the data files it names. */
async function positionDeleteTargets(
  readable: ReadableFiles,
  engine: Engine,
  deletes: readonly PlannedFile[],
): Promise<Map<string, string[]>> {
  const targets = new Map<string, string[]>();
  for (const planned of deletes) {
    const rows = await engine.connection.runAndReadAll(
      `select distinct file_path from read_parquet(${quoteLiteral(readable.path(planned.file.filePath))})`,
    );
    targets.set(
      planned.file.filePath,
      rows.getRows().map((r) => String(r[0])),
    );
  }
  return targets;
}

/** Rewrites the current snapshot's manifests into as few as possible per spec and content; data unchanged. */
export async function rewriteManifests(
  table: Table,
  options: { entriesPerManifest?: number } = {},
): Promise<TableState> {
  const perManifest = options.entriesPerManifest ?? 10_000;
  return table.commit(async (base) => {
    const metadata = base.metadata;
    const current = metadata['current-snapshot-id'];
    if (current === undefined) return metadata;
    const snapshot = snapshotById(metadata, current);
    const snapshotId = newSnapshotId();
    const sequenceNumber = metadata['last-sequence-number'] + 1;
    const groups = new Map<
      string,
      { specId: number; content: 'data' | 'deletes'; entries: ManifestEntry[] }
    >();
    for (const manifest of decodeManifestList(await table.storage.read(snapshot['manifest-list']))) {
      const entries = inheritManifestMetadata(
        decodeManifest(await table.storage.read(manifest.manifestPath)).entries,
        manifest,
      );
      const key = `${manifest.partitionSpecId}:${manifest.content}`;
      const group = groups.get(key) ?? {
        specId: manifest.partitionSpecId,
        content: manifest.content,
        entries: [],
      };
      for (const entry of entries)
        if (entry.status !== 'deleted') group.entries.push({ ...entry, status: 'existing' });
      groups.set(key, group);
    }
    const schema = schemaById(metadata, metadata['current-schema-id']);
    const manifests: ManifestFile[] = [];
    for (const group of groups.values()) {
      const spec = specById(metadata, group.specId);
      // Old specs may partition by columns dropped since: typed from older schemas.
      const type = partitionType(spec, schemaForPartitionSpecs(metadata));
      for (let i = 0; i < group.entries.length; i += perManifest) {
        const chunk = group.entries.slice(i, i + perManifest);
        const bytes = encodeManifest(chunk, { schema, spec, partitionType: type, content: group.content });
        const location = `${metadata.location}/metadata/${randomUUID()}-m${manifests.length}.avro`;
        await table.storage.write(location, bytes);
        const rows = chunk.reduce((n, e) => n + e.dataFile.recordCount, 0);
        manifests.push({
          manifestPath: location,
          manifestLength: bytes.length,
          partitionSpecId: group.specId,
          content: group.content,
          sequenceNumber,
          minSequenceNumber: Math.min(...chunk.map((e) => e.sequenceNumber ?? sequenceNumber)),
          addedSnapshotId: snapshotId,
          addedFilesCount: 0,
          existingFilesCount: chunk.length,
          deletedFilesCount: 0,
          addedRowsCount: 0,
          existingRowsCount: rows,
          deletedRowsCount: 0,
          partitions: summarizePartitions(
            type,
            chunk.map((e) => e.dataFile.partition),
          ),
        });
      }
    }
    const listLocation = `${metadata.location}/metadata/snap-${snapshotId}-1-${randomUUID()}.avro`;
    await table.storage.write(
      listLocation,
      encodeManifestList(manifests, { snapshotId, parentSnapshotId: current, sequenceNumber }),
    );
    const now = Date.now();
    const totals = Object.fromEntries(
      Object.entries(snapshot.summary).filter(([k]) => k.startsWith('total-')),
    );
    const next: Snapshot = {
      'snapshot-id': snapshotId,
      'parent-snapshot-id': current,
      'sequence-number': sequenceNumber,
      'timestamp-ms': now,
      'manifest-list': listLocation,
      summary: { ...totals, operation: 'replace', 'manifests-created': String(manifests.length) },
      'schema-id': metadata['current-schema-id'],
    };
    return withNewSnapshot(metadata, next);
  });
}

function withNewSnapshot(metadata: TableMetadata, snapshot: Snapshot): TableMetadata {
  return {
    ...metadata,
    'last-sequence-number': snapshot['sequence-number'],
    'last-updated-ms': snapshot['timestamp-ms'],
    'current-snapshot-id': snapshot['snapshot-id'],
    snapshots: [...metadata.snapshots, snapshot],
    'snapshot-log': [
      ...metadata['snapshot-log'],
      { 'snapshot-id': snapshot['snapshot-id'], 'timestamp-ms': snapshot['timestamp-ms'] },
    ],
    refs: { ...metadata.refs, [MAIN_BRANCH]: { 'snapshot-id': snapshot['snapshot-id'], type: 'branch' } },
  };
}

/** Makes `snapshotId` the current snapshot again. It must be an ancestor of the current snapshot. */
export async function rollbackTo(table: Table, snapshotId: bigint): Promise<TableState> {
  return table.commit(async (base) => {
    const metadata = base.metadata;
    snapshotById(metadata, snapshotId);
    const ancestors = ancestorsOf(metadata, metadata['current-snapshot-id']);
    if (!ancestors.some((s) => s['snapshot-id'] === snapshotId)) {
      throw new TributaryError(
        'SNAPSHOT_NOT_FOUND',
        `snapshot ${snapshotId} is not an ancestor of the current snapshot of ${table.name}`,
        {
          hint: 'roll back only to a snapshot listed by `tributary tables snapshots` in the current history',
        },
      );
    }
    const now = Date.now();
    return {
      ...metadata,
      'current-snapshot-id': snapshotId,
      'last-updated-ms': now,
      'snapshot-log': [...metadata['snapshot-log'], { 'snapshot-id': snapshotId, 'timestamp-ms': now }],
      refs: { ...metadata.refs, [MAIN_BRANCH]: { 'snapshot-id': snapshotId, type: 'branch' } },
    };
  });
}

/** The statistics files (table and partition statistics) the metadata lists; kept as other engines wrote them. */
function statisticsPaths(metadata: TableMetadata): string[] {
  const listed = metadata as unknown as Record<string, unknown>;
  const paths: string[] = [];
  for (const field of ['statistics', 'partition-statistics']) {
    const entries = listed[field];
    if (!Array.isArray(entries)) continue;
    for (const entry of entries as Array<Record<string, unknown>>) {
      const path = entry['statistics-path'];
      if (typeof path === 'string') paths.push(path);
    }
  }
  return paths;
}

/**
 * The youngest files `tributary tables remove-orphan-files` and its scheduled job may delete: a write in
 * progress (a compaction, a model's full refresh, an Iceberg sink's prepared batch — which is written again
 * when older than an hour) has files no snapshot reaches until it commits.
 */
export const ORPHAN_MIN_AGE_MS = 86_400_000;

/**
 * What must never be swept as files no table names: the project, its warehouse, and what the project keeps
 * on disk (its configuration, the embedded log, a SQLite catalog).
 */
export interface SweepGuard {
  readonly project: string;
  readonly warehouse: string;
  readonly kept: readonly string[];
}

/** Why files under `table`'s location that no table names must not be swept; undefined when they may. */
export function sweepRefusal(table: Table, guard: SweepGuard): string | undefined {
  const within = (inner: string, outer: string) => locationWithin(table.storage, inner, outer);
  const { project, warehouse } = guard;
  const holds = [project, warehouse].find((location) => within(location, table.location));
  if (holds !== undefined) return `holds ${holds}`;
  const kept = guard.kept.find((path) => within(path, table.location) || within(table.location, path));
  if (kept !== undefined) return `overlaps ${kept}, which the project keeps`;
  // In the project, only a warehouse of its own (a folder of the project) may be swept.
  const ownWarehouse = within(warehouse, project) && !within(project, warehouse);
  if (within(table.location, project) && !(ownWarehouse && within(table.location, warehouse)))
    return 'is in the project but outside the warehouse';
  return undefined;
}

/**
 * Iceberg's `gc.enabled=false`: the table names files it does not own (a snapshot of another table, a
 * table sharing files with another catalog), so nothing may delete its files — not a purge, not orphan
 * removal, not expiring snapshots (Iceberg refuses all three alike).
 */
export function gcDisabled(table: Table): boolean {
  return table.property('gc.enabled', 'true').toLowerCase() === 'false';
}

const GC_OWNER_HINT = 'set gc.enabled=true only if it owns every file it names';

function refuseWithoutGc(table: Table, doing: string, hint: string): void {
  if (gcDisabled(table))
    throw new TributaryError(
      'INVALID_INPUT',
      `${table.name} has gc.enabled=false (its files may belong to other tables): refusing to ${doing}`,
      { hint },
    );
}

export interface OrphanOptions {
  /** Only files older than this are removed, so in-flight writes are safe; default 3 days. */
  readonly olderThanMs?: number;
  /** Refuses a table whose location `sweepRefusal` refuses (the CLI and the scheduler pass the catalog's). */
  readonly guard?: SweepGuard | undefined;
  readonly dryRun?: boolean;
  /**
   * Tables whose locations overlap this one's (`Catalog.tablesOverlapping`): the files they reach are
   * not orphans either.
   */
  readonly neighbours?: readonly Table[];
}

/** Deletes files under the table's location that no metadata reaches (left by failed or aborted writes). */
export async function removeOrphanFiles(table: Table, options: OrphanOptions = {}): Promise<string[]> {
  const olderThan = options.olderThanMs ?? Date.now() - 3 * 86_400_000;
  refuseWithoutGc(table, 'remove its orphan files', `its files stay; ${GC_OWNER_HINT}`);
  const refusal = options.guard && sweepRefusal(table, options.guard);
  if (refusal !== undefined)
    throw new TributaryError(
      'INVALID_INPUT',
      `the location of ${table.name} (${table.location}) ${refusal}: removing its orphan files would delete what is there`,
      { hint: 'give tables locations of their own, under the warehouse' },
    );
  const reachable = new Set<string>();
  for (const reaching of [table, ...(options.neighbours ?? [])]) await addReachable(reaching, reachable);
  const normalize = (location: string) => comparableLocation(table.storage, location);
  const reachableLocal = new Set([...reachable].map(normalize));
  const orphans: string[] = [];
  for await (const file of table.storage.list(table.location)) {
    if (file.modifiedMs >= olderThan || reachableLocal.has(normalize(file.location))) continue;
    orphans.push(file.location);
    if (!options.dryRun) await table.storage.delete(file.location);
  }
  if (!options.dryRun) await table.files.forget(orphans);
  return orphans;
}

/**
 * What to delete when `table` is dropped with its files: `files`, every file its metadata reaches, wherever
 * it is, that no neighbour (`Catalog.neighboursOf`) reaches; and `sweep`, whether everything else under its
 * location may go too (files of failed writes) — only when no other table overlaps it (`alone`: none, and
 * none unreadable), its location is a folder of the warehouse and `sweepRefusal` allows it. Otherwise what
 * its metadata does not name stays, as with Iceberg's own purge. Refused for a table with gc.enabled=false.
 */
export async function filesToPurge(
  table: Table,
  options: { readonly neighbours: readonly Table[]; readonly alone: boolean; readonly guard?: SweepGuard },
): Promise<{ files: string[]; sweep: boolean }> {
  refuseWithoutGc(table, 'delete its files', `drop it without --purge, or ${GC_OWNER_HINT}`);
  const normalize = (location: string) => comparableLocation(table.storage, location);
  const theirs = new Set<string>();
  for (const neighbour of options.neighbours) await addReachable(neighbour, theirs);
  const theirsLocal = new Set([...theirs].map(normalize));
  const ours = new Set<string>();
  await addReachable(table, ours);
  const files = [...ours].filter((file) => !theirsLocal.has(normalize(file)));
  const guard = options.guard;
  const sweep =
    options.alone &&
    guard !== undefined &&
    sweepRefusal(table, guard) === undefined &&
    locationWithin(table.storage, table.location, guard.warehouse);
  return { files, sweep };
}

/** Adds every file the table's metadata reaches: its metadata files, statistics, manifests, data and deletes. */
async function addReachable(table: Table, reachable: Set<string>): Promise<void> {
  const metadata = table.metadata;
  reachable.add(table.metadataLocation);
  for (const entry of metadata['metadata-log']) reachable.add(entry['metadata-file']);
  // Puffin statistics other engines (Spark, Trino) wrote and the metadata lists.
  for (const path of statisticsPaths(metadata)) reachable.add(path);
  const cache = new Map<string, ManifestEntry[]>();
  for (const snapshot of metadata.snapshots) {
    reachable.add(snapshot['manifest-list']);
    for (const manifest of decodeManifestList(await table.storage.read(snapshot['manifest-list']))) {
      reachable.add(manifest.manifestPath);
      let entries = cache.get(manifest.manifestPath);
      if (!entries) {
        entries = decodeManifest(await table.storage.read(manifest.manifestPath)).entries;
        cache.set(manifest.manifestPath, entries);
      }
      for (const entry of entries) reachable.add(entry.dataFile.filePath);
    }
  }
}

export type { DataFile };
