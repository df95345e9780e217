/**
 * Bytes at locations: the one interface the table format, the catalog and the query engine use to read and
 * write files: local disk (`LocalStorage`) and S3-compatible object stores (`S3Storage`), behind the same contract.
 *
 * Locations are URIs as Iceberg metadata writes them: `file:///abs/path` (pyiceberg), `file:/abs/path`
 * (Java's HadoopFileIO), `s3://bucket/key`; a plain absolute path is accepted too. Paths after the scheme are
 * taken verbatim, never percent-decoded, as the other Iceberg implementations do.
 *
 * Errors are `TributaryError`s:
 * - `STORAGE_NOT_FOUND` when a location that must exist does not (read, readRange, stat);
 * - `STORAGE_IO` for everything else that fails, `retryable` when the same call may succeed later (too many
 *   open files, a busy device; for S3 a throttled or dropped request); a `writeExclusive` that finds the file
 *   already there is `STORAGE_IO` with `context.reason === 'exists'`, tested with `isAlreadyExists`.
 *
 * Implementations are safe for concurrent use by many callers and many processes: every write is atomic
 * (a reader sees the whole old file, the whole new file, or no file — never part of one).
 */
import path from 'node:path';
import { isTributaryError } from '../errors.ts';
import { canonicalLocation } from './location.ts';

/** A file found by `list`. */
export interface StorageEntry {
  /** The file's location, in the form of the prefix it was listed under. */
  readonly location: string;
  readonly size: number;
  /** Last modification, milliseconds since the epoch. */
  readonly modifiedMs: number;
}

export interface StorageStat {
  readonly size: number;
  /** Last modification, milliseconds since the epoch. */
  readonly modifiedMs: number;
}

export interface Storage {
  /** The whole file. STORAGE_NOT_FOUND when absent. */
  read(location: string): Promise<Uint8Array>;

  /**
   * Exactly `length` bytes starting at `offset` (Parquet footers, column chunks). STORAGE_NOT_FOUND when the
   * file is absent; STORAGE_IO when it ends before `offset + length`.
   */
  readRange(location: string, offset: number, length: number): Promise<Uint8Array>;

  /**
   * Creates or replaces the file, atomically: concurrent readers see the old content or the new, whole.
   * Parent directories are created as needed. Data files and anything with a unique name use this.
   */
  write(location: string, bytes: Uint8Array): Promise<void>;

  /**
   * Creates the file, atomically, only if nothing is at `location`: of two writers racing for one name,
   * exactly one succeeds and the other gets STORAGE_IO with `context.reason === 'exists'` (see
   * `isAlreadyExists`) — so table metadata files are never overwritten. Not retryable as such: the caller
   * picks another name or reloads the table.
   */
  writeExclusive(location: string, bytes: Uint8Array): Promise<void>;

  /**
   * Creates or replaces the file at `location` with the local file at `localPath` (one a native writer such
   * as DuckDB's COPY wrote), atomically and durably as `write` does, without holding it in memory. The
   * local file must not change during the call; afterwards it may be gone (`LocalStorage` renames it into
   * place): the caller removes it if it is still there and no longer wanted.
   */
  writeFile(location: string, localPath: string): Promise<void>;

  exists(location: string): Promise<boolean>;

  /** Size and modification time. STORAGE_NOT_FOUND when absent. */
  stat(location: string): Promise<StorageStat>;

  /** Removes the file; a file already absent is not an error. */
  delete(location: string): Promise<void>;

  /**
   * Every file under `prefix`, a directory location (trailing slash optional), recursively, in no particular
   * order; nothing when the prefix does not exist. Files being written (temporary files) are not listed; a
   * file deleted while listing may or may not be.
   */
  list(prefix: string): AsyncIterable<StorageEntry>;

  /**
   * The local filesystem path of `location` when this storage keeps files on local disk (DuckDB and other
   * native readers open it directly), otherwise undefined.
   */
  localPath(location: string): string | undefined;
}

/** True for the error of a `writeExclusive` that found a file already at its location. */
export function isAlreadyExists(error: unknown): boolean {
  return isTributaryError(error, 'STORAGE_IO') && error.context.reason === 'exists';
}

/**
 * Whether `inner` is `outer` or a location under it, as folders (/w/ab is not under /w/a; `//`, `.` and
 * `..` are resolved in local paths first, and `s3a://` and `s3n://` are spelled `s3://`).
 */
export function locationWithin(storage: Storage, inner: string, outer: string): boolean {
  const folder = (location: string) => `${comparableLocation(storage, location).replace(/\/+$/, '')}/`;
  return folder(inner).startsWith(folder(outer));
}

/**
 * The form in which two locations of one file compare equal: the normalised local path for local storage,
 * otherwise the location with `s3a://` and `s3n://` spelled `s3://`.
 */
export function comparableLocation(storage: Storage, location: string): string {
  const local = storage.localPath(location);
  return local === undefined ? canonicalLocation(location) : path.posix.normalize(local);
}
