/**
 * A table: its identifier, its current metadata, and the operations that load and commit it.
 *
 * Commit protocol (optimistic concurrency):
 *  1. An operation reads the current state (the base) and computes new metadata from it.
 *  2. The new metadata is written to a new file `metadata/<version+1>-<uuid>.metadata.json`, never over an
 *     existing one.
 *  3. The catalog swaps the table's metadata location from the base's to the new one, atomically, only if it
 *     is still the base's (compare-and-swap). That swap is the commit point: before it nothing is visible.
 *  4. If another writer committed first, the swap fails with ICEBERG_COMMIT_CONFLICT (retryable): the
 *     operation reloads and re-applies its change to the new base, up to `commit.retry.num-retries` times.
 *     An operation whose change no longer applies (the files it deletes are gone, a concurrent append
 *     added rows its upsert must see) fails with a non-retryable ICEBERG_COMMIT_CONFLICT instead.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isTributaryError, TributaryError } from '../errors.ts';
import type { Storage } from '../storage/storage.ts';
import {
  currentSchema,
  currentSnapshot,
  defaultSortOrder,
  defaultSpec,
  metadataFileLocation,
  metadataFileVersion,
  parseTableMetadata,
  serializeTableMetadata,
  type PartitionSpec,
  type Snapshot,
  type SortOrder,
  type TableMetadata,
} from './metadata.ts';
import { nativeFiles, type NativeFiles } from './native-files.ts';
import type { Schema } from './types.ts';

export interface TableIdentifier {
  readonly namespace: readonly string[];
  readonly name: string;
}

export function formatIdentifier(identifier: TableIdentifier): string {
  return [...identifier.namespace, identifier.name].join('.');
}

export interface TableState {
  readonly metadata: TableMetadata;
  readonly metadataLocation: string;
}

/**
 * What a catalog provides for one table. `load` returns the current state. `swap` atomically replaces
 * `base.metadataLocation` with `newLocation` in the catalog, and throws ICEBERG_COMMIT_CONFLICT
 * (retryable) when the table's current location is no longer `base.metadataLocation`.
 */
export interface TableOperations {
  readonly storage: Storage;
  /** How DuckDB reads and writes the table's files; default: in place, for local storage. */
  readonly files?: NativeFiles;
  load(): Promise<TableState>;
  swap(base: TableState, newLocation: string): Promise<void>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export async function readMetadataFile(storage: Storage, location: string): Promise<TableMetadata> {
  return parseTableMetadata(decoder.decode(await storage.read(location)), location);
}

/**
 * Writes `metadata` as the next version after `base` (or version 0 for a new table), recording the
 * previous file in the metadata log. Never overwrites an existing file.
 */
export async function writeMetadataFile(
  storage: Storage,
  metadata: TableMetadata,
  base?: TableState,
): Promise<TableState> {
  let next = metadata;
  if (base) {
    const keep = Number(metadata.properties['write.metadata.previous-versions-max'] ?? 100);
    const log = [
      ...base.metadata['metadata-log'],
      { 'metadata-file': base.metadataLocation, 'timestamp-ms': base.metadata['last-updated-ms'] },
    ];
    next = { ...metadata, 'metadata-log': log.slice(Math.max(0, log.length - keep)) };
  }
  const version = base ? metadataFileVersion(base.metadataLocation) + 1 : 0;
  const location = metadataFileLocation(metadata.location, Math.max(version, 0));
  await storage.writeExclusive(location, encoder.encode(serializeTableMetadata(next)));
  return { metadata: next, metadataLocation: location };
}

export interface CommitOptions {
  /** Attempts after the first when another writer commits first; default: the table's commit.retry.num-retries or 4. */
  readonly retries?: number;
}

export class Table {
  readonly identifier: TableIdentifier;
  readonly operations: TableOperations;
  #state: TableState;

  constructor(identifier: TableIdentifier, operations: TableOperations, state: TableState) {
    this.identifier = identifier;
    this.operations = operations;
    this.#state = state;
  }

  get name(): string {
    return formatIdentifier(this.identifier);
  }

  get state(): TableState {
    return this.#state;
  }

  get metadata(): TableMetadata {
    return this.#state.metadata;
  }

  get metadataLocation(): string {
    return this.#state.metadataLocation;
  }

  get storage(): Storage {
    return this.operations.storage;
  }

  get files(): NativeFiles {
    return this.operations.files ?? nativeFiles(this.storage);
  }

  get location(): string {
    return this.metadata.location;
  }

  get schema(): Schema {
    return currentSchema(this.metadata);
  }

  get spec(): PartitionSpec {
    return defaultSpec(this.metadata);
  }

  get sortOrder(): SortOrder {
    return defaultSortOrder(this.metadata);
  }

  get currentSnapshot(): Snapshot | undefined {
    return currentSnapshot(this.metadata);
  }

  property(name: string, fallback: string): string {
    return this.metadata.properties[name] ?? fallback;
  }

  async refresh(): Promise<this> {
    this.#state = await this.operations.load();
    return this;
  }

  /**
   * Commits a change computed by `apply` from the current state, retrying on the newest state when another
   * writer commits first. `apply` may be called several times and must be free of side effects other than
   * writing new files.
   */
  async commit(
    apply: (base: TableState) => Promise<TableMetadata>,
    options: CommitOptions = {},
  ): Promise<TableState> {
    const retries = options.retries ?? Number(this.property('commit.retry.num-retries', '4'));
    let waitMs = Number(this.property('commit.retry.min-wait-ms', '100'));
    const maxWaitMs = Number(this.property('commit.retry.max-wait-ms', '60000'));
    for (let attempt = 0; ; attempt++) {
      const base = this.#state;
      const metadata = await apply(base);
      const written = await writeMetadataFile(
        this.storage,
        { ...metadata, 'last-updated-ms': Math.max(Date.now(), base.metadata['last-updated-ms']) },
        base,
      );
      try {
        await this.operations.swap(base, written.metadataLocation);
        this.#state = written;
        return written;
      } catch (error) {
        // Only a conflict says the catalog kept the old pointer. Any other failure (a connection lost
        // after the update) may have moved it to this file: deleting it would leave the table unreadable,
        // keeping it costs at most an orphan file.
        if (isTributaryError(error, 'ICEBERG_COMMIT_CONFLICT'))
          await this.storage.delete(written.metadataLocation);
        if (!isTributaryError(error, 'ICEBERG_COMMIT_CONFLICT') || !error.retryable || attempt >= retries)
          throw error;
        await sleep(waitMs * (0.5 + Math.random()));
        waitMs = Math.min(waitMs * 2, maxWaitMs);
        await this.refresh();
      }
    }
  }
}

/** Thrown by an operation whose change cannot be re-applied on a newer state of the table. */
export function conflict(
  table: string,
  message: string,
  hint = 'reload the table and run the operation again',
): TributaryError {
  return new TributaryError('ICEBERG_COMMIT_CONFLICT', `${table}: ${message}`, {
    retryable: false,
    hint,
    context: { table },
  });
}
