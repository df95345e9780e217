/**
 * Builds a new snapshot from a base state: the files it adds (data and delete files), the files it
 * removes, and a summary. Every snapshot-producing operation (append, overwrite, delete, row delta,
 * upsert, compaction) is this with different inputs.
 *
 * Manifests for the added files are written once per producer; on a retry only the manifest list and
 * the manifests that mark removals are rewritten against the new base.
 */
import { randomUUID } from 'node:crypto';
import {
  decodeManifest,
  decodeManifestList,
  encodeManifest,
  encodeManifestList,
  inheritManifestMetadata,
  type DataFile,
  type FieldSummary,
  type ManifestEntry,
  type ManifestFile,
} from './manifest.ts';
import {
  MAIN_BRANCH,
  newSnapshotId,
  schemaById,
  schemaForPartitionSpecs,
  specById,
  type PartitionSpec,
  type Snapshot,
  type SnapshotOperation,
  type TableMetadata,
} from './metadata.ts';
import { partitionType } from './partition-spec.ts';
import { promotePartitionValue } from './scan.ts';
import { compareValues, toBinary } from './single-value.ts';
import { conflict, type Table, type TableState } from './table.ts';
import type { IcebergValue, PrimitiveType, StructType } from './types.ts';

export interface SnapshotChanges {
  readonly operation: SnapshotOperation;
  readonly addedDataFiles?: readonly DataFile[];
  /** Delete files, each with the spec of the data files it applies to (default: the default spec). */
  readonly addedDeleteFiles?: ReadonlyArray<DataFile & { readonly specId?: number }>;
  /** Paths of live data or delete files this snapshot removes; each must still be live in the base. */
  readonly removedPaths?: ReadonlySet<string>;
  /** Custom summary properties (sinks record their source positions here). */
  readonly summary?: Readonly<Record<string, string>>;
  /**
   * The snapshot the operation read when it decided what to change. When set, the commit fails with a
   * conflict if any later snapshot added or removed data files (the decision could be wrong now).
   */
  readonly readSnapshotId?: bigint | null;
  /** Spec the added files were written with; default: the table's default spec. */
  readonly specId?: number;
  /**
   * Checked against the table state the snapshot is applied to, on every attempt (a retry after another
   * writer committed included): throw to abandon the commit. Sinks use it to check that their positions in
   * the table did not move since they decided to write (docs/exactly-once.md, invariant 7).
   */
  readonly precondition?: (metadata: TableMetadata) => void;
}

export class SnapshotProducer {
  readonly #table: Table;
  readonly #changes: SnapshotChanges;
  readonly #snapshotId = newSnapshotId();
  #addedManifests: ManifestFile[] | undefined;

  constructor(table: Table, changes: SnapshotChanges) {
    this.#table = table;
    this.#changes = changes;
  }

  get snapshotId(): bigint {
    return this.#snapshotId;
  }

  async commit(): Promise<TableState> {
    return this.#table.commit((base) => this.apply(base));
  }

  async apply(base: TableState): Promise<TableMetadata> {
    const metadata = base.metadata;
    const parentId = metadata['current-snapshot-id'];
    this.#validate(metadata);
    this.#changes.precondition?.(metadata);
    const sequenceNumber = metadata['last-sequence-number'] + 1;
    const storage = this.#table.storage;
    const parent =
      parentId === undefined ? undefined : metadata.snapshots.find((s) => s['snapshot-id'] === parentId);
    const inherited = parent ? decodeManifestList(await storage.read(parent['manifest-list'])) : [];

    const removed = new Set(this.#changes.removedPaths ?? []);
    const found = new Set<string>();
    const carried: ManifestFile[] = [];
    let removedStats = {
      dataFiles: 0,
      deleteFiles: 0,
      records: 0,
      bytes: 0,
      positionDeletes: 0,
      equalityDeletes: 0,
    };
    for (const manifest of inherited) {
      if (removed.size === 0 || manifest.addedFilesCount + manifest.existingFilesCount === 0) {
        if (manifest.addedFilesCount + manifest.existingFilesCount > 0) carried.push(manifest);
        continue;
      }
      const decoded = decodeManifest(await storage.read(manifest.manifestPath));
      const entries = inheritManifestMetadata(decoded.entries, manifest);
      const live = entries.filter((e) => e.status !== 'deleted');
      const hits = live.filter((e) => removed.has(e.dataFile.filePath));
      if (hits.length === 0) {
        carried.push(manifest);
        continue;
      }
      const rewritten: ManifestEntry[] = live.map((entry) => {
        if (!removed.has(entry.dataFile.filePath)) return { ...entry, status: 'existing' };
        found.add(entry.dataFile.filePath);
        const file = entry.dataFile;
        if (file.content === 'data') {
          removedStats = {
            ...removedStats,
            dataFiles: removedStats.dataFiles + 1,
            records: removedStats.records + file.recordCount,
          };
        } else {
          removedStats = {
            ...removedStats,
            deleteFiles: removedStats.deleteFiles + 1,
            positionDeletes:
              removedStats.positionDeletes + (file.content === 'position-deletes' ? file.recordCount : 0),
            equalityDeletes:
              removedStats.equalityDeletes + (file.content === 'equality-deletes' ? file.recordCount : 0),
          };
        }
        removedStats = { ...removedStats, bytes: removedStats.bytes + file.fileSizeInBytes };
        // Without its column bounds: nothing plans with a removed file's, and they would keep values of
        // its rows (an erased person's, say) in the current snapshot's manifests.
        return {
          ...entry,
          status: 'deleted',
          snapshotId: this.#snapshotId,
          dataFile: { ...file, lowerBounds: new Map(), upperBounds: new Map() },
        };
      });
      const spec = specById(metadata, decoded.spec['spec-id']);
      carried.push(
        await this.#writeManifest(
          rewritten,
          spec,
          metadata,
          manifest.content,
          sequenceNumber,
          manifest.sequenceNumber,
        ),
      );
    }
    const missing = [...removed].filter((p) => !found.has(p));
    if (missing.length > 0) {
      throw conflict(
        this.#table.name,
        `${missing.length} file(s) this operation replaces were removed by another commit (${missing[0]})`,
      );
    }

    const added = await this.#added(metadata, sequenceNumber);
    // Manifests of added files are written once: on a retry their entries take the new sequence number.
    const manifests = [
      ...added.map((m) => ({ ...m, sequenceNumber, minSequenceNumber: sequenceNumber })),
      ...carried,
    ];
    const listLocation = `${metadata.location}/metadata/snap-${this.#snapshotId}-1-${randomUUID()}.avro`;
    await storage.write(
      listLocation,
      encodeManifestList(manifests, {
        snapshotId: this.#snapshotId,
        parentSnapshotId: parentId,
        sequenceNumber,
      }),
    );
    const now = Math.max(Date.now(), metadata['last-updated-ms']);
    const snapshot: Snapshot = {
      'snapshot-id': this.#snapshotId,
      ...(parentId === undefined ? {} : { 'parent-snapshot-id': parentId }),
      'sequence-number': sequenceNumber,
      'timestamp-ms': now,
      'manifest-list': listLocation,
      summary: this.#summary(parent, removedStats),
      'schema-id': metadata['current-schema-id'],
    };
    return {
      ...metadata,
      'last-sequence-number': sequenceNumber,
      'last-updated-ms': now,
      'current-snapshot-id': this.#snapshotId,
      snapshots: [...metadata.snapshots, snapshot],
      'snapshot-log': [...metadata['snapshot-log'], { 'snapshot-id': this.#snapshotId, 'timestamp-ms': now }],
      refs: { ...metadata.refs, [MAIN_BRANCH]: { 'snapshot-id': this.#snapshotId, type: 'branch' } },
    };
  }

  /** Fails when snapshots committed after the one the operation read changed the files it reasoned about. */
  #validate(metadata: TableMetadata): void {
    const readId = this.#changes.readSnapshotId;
    if (readId === undefined) return;
    const current = metadata['current-snapshot-id'];
    if (current === (readId ?? undefined)) return;
    const byId = new Map(metadata.snapshots.map((s) => [s['snapshot-id'], s]));
    for (let id = current; id !== undefined && id !== readId; id = byId.get(id)?.['parent-snapshot-id']) {
      const snapshot = byId.get(id);
      // Expired: what it changed cannot be known, so it may have changed what this operation read.
      if (!snapshot)
        throw conflict(
          this.#table.name,
          `snapshot ${id}, committed after this operation read the table, was expired`,
        );
      const summary = snapshot.summary;
      if (
        Number(summary['added-data-files'] ?? 0) > 0 ||
        Number(summary['deleted-data-files'] ?? 0) > 0 ||
        Number(summary['added-delete-files'] ?? 0) > 0
      ) {
        throw conflict(this.#table.name, `snapshot ${id} changed the table after this operation read it`);
      }
    }
  }

  async #added(metadata: TableMetadata, sequenceNumber: number): Promise<ManifestFile[]> {
    if (this.#addedManifests) return this.#addedManifests;
    const spec = specById(metadata, this.#changes.specId ?? metadata['default-spec-id']);
    const manifests: ManifestFile[] = [];
    const entries = (files: readonly DataFile[]): ManifestEntry[] =>
      files.map((dataFile) => ({ status: 'added', snapshotId: this.#snapshotId, dataFile }));
    if (this.#changes.addedDataFiles?.length) {
      manifests.push(
        await this.#writeManifest(
          entries(this.#changes.addedDataFiles),
          spec,
          metadata,
          'data',
          sequenceNumber,
          sequenceNumber,
        ),
      );
    }
    const deletesBySpec = new Map<number, DataFile[]>();
    for (const file of this.#changes.addedDeleteFiles ?? []) {
      const specId = file.specId ?? spec['spec-id'];
      deletesBySpec.set(specId, [...(deletesBySpec.get(specId) ?? []), file]);
    }
    for (const [specId, files] of deletesBySpec) {
      manifests.push(
        await this.#writeManifest(
          entries(files),
          specById(metadata, specId),
          metadata,
          'deletes',
          sequenceNumber,
          sequenceNumber,
        ),
      );
    }
    this.#addedManifests = manifests;
    return manifests;
  }

  async #writeManifest(
    entries: readonly ManifestEntry[],
    spec: PartitionSpec,
    metadata: TableMetadata,
    content: 'data' | 'deletes',
    sequenceNumber: number,
    minSequenceNumber: number,
  ): Promise<ManifestFile> {
    const schema = schemaById(metadata, metadata['current-schema-id']);
    // An old spec may partition by a column dropped since: its type comes from an older schema.
    const type = partitionType(spec, schemaForPartitionSpecs(metadata));
    // Entries from before a promotion of a partition source column (int → long) take the current type.
    entries = entries.map((entry) => {
      const partition = entry.dataFile.partition.map((v, i) =>
        promotePartitionValue(type.fields[i]!.type, v),
      );
      return { ...entry, dataFile: { ...entry.dataFile, partition } };
    });
    const bytes = encodeManifest(entries, { schema, spec, partitionType: type, content });
    const location = `${this.#table.location}/metadata/${randomUUID()}-m${content === 'data' ? 0 : 1}.avro`;
    await this.#table.storage.write(location, bytes);
    const count = (status: ManifestEntry['status']) => entries.filter((e) => e.status === status);
    const rows = (list: ManifestEntry[]) => list.reduce((sum, e) => sum + e.dataFile.recordCount, 0);
    const live = entries.filter((e) => e.status !== 'deleted');
    const seqs = live.map((e) => e.sequenceNumber ?? sequenceNumber);
    return {
      manifestPath: location,
      manifestLength: bytes.length,
      partitionSpecId: spec['spec-id'],
      content,
      sequenceNumber,
      minSequenceNumber: seqs.length ? Math.min(...seqs, minSequenceNumber) : minSequenceNumber,
      addedSnapshotId: this.#snapshotId,
      addedFilesCount: count('added').length,
      existingFilesCount: count('existing').length,
      deletedFilesCount: count('deleted').length,
      addedRowsCount: rows(count('added')),
      existingRowsCount: rows(count('existing')),
      deletedRowsCount: rows(count('deleted')),
      partitions: summarizePartitions(
        type,
        live.map((e) => e.dataFile.partition),
      ),
    };
  }

  #summary(
    parent: Snapshot | undefined,
    removed: {
      dataFiles: number;
      deleteFiles: number;
      records: number;
      bytes: number;
      positionDeletes: number;
      equalityDeletes: number;
    },
  ): Snapshot['summary'] {
    const data = this.#changes.addedDataFiles ?? [];
    const deletes = this.#changes.addedDeleteFiles ?? [];
    const sum = (files: readonly DataFile[], pick: (f: DataFile) => number) =>
      files.reduce((s, f) => s + pick(f), 0);
    const addedRecords = sum(data, (f) => f.recordCount);
    const addedPositionDeletes = sum(
      deletes.filter((f) => f.content === 'position-deletes'),
      (f) => f.recordCount,
    );
    const addedEqualityDeletes = sum(
      deletes.filter((f) => f.content === 'equality-deletes'),
      (f) => f.recordCount,
    );
    const addedBytes = sum([...data, ...deletes], (f) => f.fileSizeInBytes);
    const previous = (key: string) => Number(parent?.summary[key] ?? 0);
    const partitions = new Set(
      [...data, ...deletes].map((f) =>
        JSON.stringify(f.partition, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)),
      ),
    );
    const summary: Record<string, string> = {
      operation: this.#changes.operation,
      'added-data-files': String(data.length),
      'added-records': String(addedRecords),
      'added-files-size': String(addedBytes),
      'changed-partition-count': String(partitions.size),
      'total-records': String(previous('total-records') + addedRecords - removed.records),
      'total-files-size': String(previous('total-files-size') + addedBytes - removed.bytes),
      'total-data-files': String(previous('total-data-files') + data.length - removed.dataFiles),
      'total-delete-files': String(previous('total-delete-files') + deletes.length - removed.deleteFiles),
      'total-position-deletes': String(
        previous('total-position-deletes') + addedPositionDeletes - removed.positionDeletes,
      ),
      'total-equality-deletes': String(
        previous('total-equality-deletes') + addedEqualityDeletes - removed.equalityDeletes,
      ),
    };
    if (deletes.length) summary['added-delete-files'] = String(deletes.length);
    if (addedPositionDeletes) summary['added-position-deletes'] = String(addedPositionDeletes);
    if (addedEqualityDeletes) summary['added-equality-deletes'] = String(addedEqualityDeletes);
    if (removed.dataFiles) summary['deleted-data-files'] = String(removed.dataFiles);
    if (removed.records) summary['deleted-records'] = String(removed.records);
    if (removed.deleteFiles) summary['removed-delete-files'] = String(removed.deleteFiles);
    if (removed.positionDeletes) summary['removed-position-deletes'] = String(removed.positionDeletes);
    if (removed.bytes) summary['removed-files-size'] = String(removed.bytes);
    return {
      ...summary,
      ...this.#changes.summary,
      operation: this.#changes.operation,
    };
  }
}

/** Per partition field: whether any value is null, and the lowest and highest value (serialized). */
export function summarizePartitions(
  type: StructType,
  tuples: ReadonlyArray<readonly IcebergValue[]>,
): FieldSummary[] {
  return type.fields.map((field, i) => {
    const fieldType = field.type as PrimitiveType;
    let containsNull = false;
    let containsNaN = false;
    let lower: IcebergValue | undefined;
    let upper: IcebergValue | undefined;
    for (const tuple of tuples) {
      const value = tuple[i] ?? null;
      if (value === null) {
        containsNull = true;
        continue;
      }
      if (typeof value === 'number' && Number.isNaN(value)) {
        containsNaN = true;
        continue;
      }
      if (lower === undefined || compareValues(fieldType, value, lower) < 0) lower = value;
      if (upper === undefined || compareValues(fieldType, value, upper) > 0) upper = value;
    }
    return {
      containsNull,
      containsNaN,
      ...(lower === undefined ? {} : { lowerBound: toBinary(fieldType, lower) }),
      ...(upper === undefined ? {} : { upperBound: toBinary(fieldType, upper) }),
    };
  });
}
