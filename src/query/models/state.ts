/**
 * What an incremental model has consumed, kept in its table's snapshot summaries (so it commits atomically
 * with the data, and other engines can read it):
 *
 *   tributary.model                    the model's name
 *   tributary.model.hash               hash of its SQL and materialization settings (a change forces a full refresh)
 *   tributary.model.mode               full | incremental
 *   tributary.model.snapshot.<table>   the upstream snapshot id read up to (strategy snapshots)
 *   tributary.model.watermark.<table>  the highest watermark value read, as text (strategy watermark)
 *
 * And the new data of an upstream table since a snapshot: the data files its `append` snapshots added,
 * read from their own manifests — work proportional to the new data, not to the table.
 */
import { createHash } from 'node:crypto';
import { decodeManifest, decodeManifestList, inheritManifestMetadata } from '../../iceberg/manifest.ts';
import { ancestorsOf, currentSchema, type TableMetadata } from '../../iceberg/metadata.ts';
import type { PlannedFile, ScanPlan } from '../../iceberg/scan.ts';
import type { Table } from '../../iceberg/table.ts';
import type { Storage } from '../../storage/storage.ts';
import type { Model } from './project.ts';

export const MODEL_KEY = 'tributary.model';
export const HASH_KEY = 'tributary.model.hash';
export const MODE_KEY = 'tributary.model.mode';
export const SNAPSHOT_PREFIX = 'tributary.model.snapshot.';
export const WATERMARK_PREFIX = 'tributary.model.watermark.';

export interface ModelState {
  readonly hash: string;
  readonly snapshots: ReadonlyMap<string, bigint>;
  readonly watermarks: ReadonlyMap<string, string>;
  /** The snapshot of the target that recorded this state. */
  readonly recordedIn: bigint;
}

/** Hash of what decides a model's rows: its SQL and its materialization settings. */
export function modelHash(model: Model): string {
  const { materialized, unique_key, incremental } = model.config;
  return createHash('sha256')
    .update(
      JSON.stringify({ sql: model.sql.trim(), materialized, unique_key, incremental, refs: model.refs }),
    )
    .digest('hex')
    .slice(0, 16);
}

/**
 * The state recorded by the newest snapshot of the target that has one. Snapshots made by others since
 * (compaction) change no rows, so the state still holds; a snapshot made by another writer that changed
 * rows is the model's table's owner's problem (models own their tables).
 */
export function readModelState(table: Table): ModelState | undefined {
  return modelStateOf(table.metadata);
}

/** `readModelState` of a table's metadata. */
export function modelStateOf(metadata: TableMetadata): ModelState | undefined {
  for (const snapshot of ancestorsOf(metadata, metadata['current-snapshot-id'])) {
    const summary = snapshot.summary;
    const hash = summary[HASH_KEY];
    if (hash === undefined) {
      if (snapshot.summary.operation === 'replace') continue;
      return undefined;
    }
    const snapshots = new Map<string, bigint>();
    const watermarks = new Map<string, string>();
    for (const [key, value] of Object.entries(summary)) {
      if (key.startsWith(SNAPSHOT_PREFIX)) snapshots.set(key.slice(SNAPSHOT_PREFIX.length), BigInt(value));
      else if (key.startsWith(WATERMARK_PREFIX)) watermarks.set(key.slice(WATERMARK_PREFIX.length), value);
    }
    return { hash, snapshots, watermarks, recordedIn: snapshot['snapshot-id'] };
  }
  return undefined;
}

export type NewData =
  | { readonly kind: 'none'; readonly snapshotId: bigint | undefined }
  | { readonly kind: 'files'; readonly snapshotId: bigint; readonly plan: ScanPlan }
  | { readonly kind: 'full-refresh'; readonly reason: string; readonly snapshotId: bigint | undefined };

/**
 * The rows added to `metadata`'s table after snapshot `since`: the data files of the `append` snapshots
 * since then (`replace` snapshots — compactions — change no rows and are skipped). Anything else since
 * (a delete, an overwrite, a rollback past `since`, expired history) needs a full refresh.
 */
export async function newDataSince(
  metadata: TableMetadata,
  storage: Storage,
  since: bigint,
  tableName: string,
): Promise<NewData> {
  const current = metadata['current-snapshot-id'];
  if (current === since) return { kind: 'none', snapshotId: current };
  const chain = ancestorsOf(metadata, current);
  const at = chain.findIndex((s) => s['snapshot-id'] === since);
  if (at < 0) {
    return {
      kind: 'full-refresh',
      reason: `${tableName} no longer has snapshot ${since} in its history (rolled back or expired)`,
      snapshotId: current,
    };
  }
  const newer = chain.slice(0, at);
  const changed = newer.find((s) => s.summary.operation !== 'append' && s.summary.operation !== 'replace');
  if (changed) {
    return {
      kind: 'full-refresh',
      reason: `${tableName} had a ${changed.summary.operation} (snapshot ${changed['snapshot-id']}) since the last run`,
      snapshotId: current,
    };
  }
  const files: PlannedFile[] = [];
  for (const snapshot of newer) {
    if (snapshot.summary.operation !== 'append') continue;
    const id = snapshot['snapshot-id'];
    for (const manifest of decodeManifestList(await storage.read(snapshot['manifest-list']))) {
      if (manifest.addedSnapshotId !== id) continue;
      const entries = inheritManifestMetadata(
        decodeManifest(await storage.read(manifest.manifestPath)).entries,
        manifest,
      );
      for (const entry of entries) {
        if (entry.status !== 'added' || entry.snapshotId !== id) continue;
        if (entry.dataFile.content !== 'data') {
          return {
            kind: 'full-refresh',
            reason: `${tableName} snapshot ${id} added delete files`,
            snapshotId: current,
          };
        }
        files.push({
          file: entry.dataFile,
          sequenceNumber: entry.sequenceNumber ?? manifest.sequenceNumber,
          specId: manifest.partitionSpecId,
        });
      }
    }
  }
  const snapshot = chain[0]!;
  return {
    kind: 'files',
    snapshotId: snapshot['snapshot-id'],
    plan: {
      snapshot,
      schema: currentSchema(metadata),
      dataFiles: files,
      positionDeletes: [],
      equalityDeletes: [],
      manifestsScanned: 0,
      manifestsSkipped: 0,
    },
  };
}
