/**
 * Table files as DuckDB, a native reader and writer of local files only, needs them (docs/architecture.md,
 * "Storage"). On local storage a plain pass-through: DuckDB reads files where they are and writes new ones
 * into a scratch folder beside the data, from which they are renamed into place.
 *
 * On a storage without local paths (S3), two local directories stand in between:
 * - writes go through a staging directory: DuckDB writes there, `Storage.writeFile` uploads each file, and
 *   the staged copy then moves into the read cache;
 * - reads go through a read-through cache of immutable files. Iceberg never rewrites a data or delete file
 *   (new files get new names), so a file cached under its location stays right for ever. `readable`
 *   downloads the missing files in parallel, checks each one's size against the manifest's, and pins them
 *   until released (DuckDB reads a pinned file through a hard link of this instance's own, which another
 *   process sharing the directory cannot evict); the cache evicts the least recently used unpinned files
 *   beyond its size limit.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { link, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { TributaryError } from '../errors.ts';
import { canonicalLocation } from '../storage/location.ts';
import type { Storage } from '../storage/storage.ts';

/** A table file to read, with its size as its manifest gives it (`file_size_in_bytes`). */
export interface FileToRead {
  readonly location: string;
  readonly size: number;
}

/** Files made readable by DuckDB, held in the cache until released. */
export interface ReadableFiles {
  /** The local path DuckDB reads `location` at. INTERNAL for a location that was not made readable. */
  path(location: string): string;
  /** Lets the cache evict these files again; nothing may read their paths afterwards. */
  release(): void;
}

/** A local directory DuckDB writes new table files into. */
export interface StagingDirectory {
  readonly path: string;
  /**
   * Stores each staged file at its location (`Storage.writeFile`, several at once). When one fails, deletes
   * every location it stored (best effort: what is left is an orphan for remove-orphan-files) and throws.
   */
  publish(files: ReadonlyArray<{ readonly localPath: string; readonly location: string }>): Promise<void>;
  /** Removes the directory and whatever is left in it. */
  dispose(): Promise<void>;
}

export interface NativeFiles {
  readonly storage: Storage;
  /** Local directories DuckDB reads table files from besides their own locations (the read cache). */
  readonly readDirectories: readonly string[];
  /** A new, empty staging directory for files that will go under `dataLocation`. */
  stage(dataLocation: string): Promise<StagingDirectory>;
  /** Makes the files readable by DuckDB (downloads what the cache lacks); release the result when done. */
  readable(files: readonly FileToRead[]): Promise<ReadableFiles>;
  /**
   * Removes the local copies of files deleted from the storage, pinned or not (a view still naming one
   * fails to read it, as it would on local storage): no copy of erased rows may stay behind.
   */
  forget(locations: readonly string[]): Promise<void>;
}

export interface CacheSettings {
  /** Where DuckDB writes new files before they are uploaded. */
  readonly stagingDirectory: string;
  /** Where downloaded (and uploaded) files are kept for reading. */
  readonly cacheDirectory: string;
  /** The cache's size limit in bytes; pinned files may hold it above this for as long as they are pinned. */
  readonly maxCacheBytes: number;
}

/** Files stored at once by a publish, and downloaded at once by `readable`. */
const TRANSFERS_IN_FLIGHT = 8;
/** Files up to this size are downloaded in one request, larger ones in ranges of this size. */
const DOWNLOAD_CHUNK_BYTES = 8 * 1024 * 1024;
/** The cache's folder of pin folders, one per NativeFiles instance (`<pid>-<id>`). */
const PIN_FOLDERS = '.pins';
/** A download's temporary file older than this is left over from a process that died. */
const STALE_DOWNLOAD_MS = 3_600_000;

/**
 * The native files of tables on `storage`: with `cache`, through a staging and a cache directory (needed
 * by storage without local paths); without, the pass-through for local storage.
 */
export function nativeFiles(storage: Storage, cache?: CacheSettings): NativeFiles {
  return cache === undefined ? new LocalFiles(storage) : new CachedFiles(storage, cache);
}

/** Local storage: DuckDB reads the files where they are; new ones are staged beside the data. */
class LocalFiles implements NativeFiles {
  readonly storage: Storage;
  readonly readDirectories: readonly string[] = [];

  constructor(storage: Storage) {
    this.storage = storage;
  }

  async stage(dataLocation: string): Promise<StagingDirectory> {
    // Beside the data, on the same filesystem, so that each file is renamed into place rather than copied.
    const directory = path.join(localPathFor(this.storage, dataLocation), `.tributary-${randomUUID()}`);
    mkdirSync(directory, { recursive: true });
    return staging(this.storage, directory, () => undefined);
  }

  async readable(files: readonly FileToRead[]): Promise<ReadableFiles> {
    for (const file of files) localPathFor(this.storage, file.location); // refuses a remote one now
    return { path: (location) => localPathFor(this.storage, location), release: () => undefined };
  }

  async forget(_locations: readonly string[]): Promise<void> {}
}

function localPathFor(storage: Storage, location: string): string {
  const local = storage.localPath(location);
  if (local === undefined)
    throw new TributaryError('ICEBERG_UNSUPPORTED', `${location} has no local path for DuckDB to use`, {
      context: { location },
      hint: 'Open the table through the project catalog (tributary.yaml storage settings give remote tables a staging and a cache directory).',
    });
  return local;
}

function staging(
  storage: Storage,
  directory: string,
  stored: (localPath: string, location: string) => Promise<void> | undefined,
): StagingDirectory {
  return {
    path: directory,
    async publish(files) {
      const attempted: string[] = [];
      let next = 0;
      let stop = false;
      const worker = async () => {
        while (!stop && next < files.length) {
          const { localPath, location } = files[next++]!;
          attempted.push(location);
          try {
            await storage.writeFile(location, localPath);
          } catch (error) {
            stop = true; // the others stop after their current file
            throw error;
          }
          await stored(localPath, location);
        }
      };
      const outcomes = await Promise.allSettled(
        Array.from({ length: Math.min(TRANSFERS_IN_FLIGHT, files.length) }, worker),
      );
      const failed = outcomes.find((outcome) => outcome.status === 'rejected');
      if (!failed) return;
      // A file whose write failed may still have been stored: delete every one tried.
      await Promise.allSettled(attempted.map((location) => storage.delete(location)));
      throw failed.reason;
    },
    dispose: () => rm(directory, { recursive: true, force: true }),
  };
}

interface CacheEntry {
  readonly size: number;
  pins: number;
  /** The pin link's creations and removals, in order; settled when the link is as `pins` says. */
  linking: Promise<void>;
}

/** Storage without local paths: staging for writes, a bounded read-through cache for reads. */
class CachedFiles implements NativeFiles {
  readonly storage: Storage;
  readonly #settings: CacheSettings;
  /** Cached files by name, least recently used first. */
  readonly #entries = new Map<string, CacheEntry>();
  readonly #downloads = new Map<string, Promise<void>>();
  #bytes = 0;
  #scanned: Promise<void> | undefined;
  /**
   * This instance's folder of pin links: a pinned file is read through a hard link here, which keeps it
   * readable when another process sharing the cache directory evicts the file meanwhile.
   */
  readonly #pinFolder: string;

  constructor(storage: Storage, settings: CacheSettings) {
    this.storage = storage;
    this.#settings = settings;
    this.#pinFolder = path.join(
      settings.cacheDirectory,
      PIN_FOLDERS,
      `${process.pid}-${randomUUID().slice(0, 8)}`,
    );
  }

  get readDirectories(): readonly string[] {
    return [this.#settings.cacheDirectory];
  }

  async stage(_dataLocation: string): Promise<StagingDirectory> {
    const directory = path.join(this.#settings.stagingDirectory, randomUUID());
    await mkdir(directory, { recursive: true });
    await this.#scan();
    return staging(this.storage, directory, async (localPath, location) => {
      // The next scan, the key index and models read the new file at once: keep the staged copy.
      const name = cacheName(location);
      if (this.#entries.has(name)) return;
      try {
        const { size } = await stat(localPath);
        await rename(localPath, this.#pathOf(name));
        this.#add(name, size);
        await this.#evict();
      } catch {
        // Not kept (the cache is on another filesystem, or full): it is downloaded when first read.
      }
    });
  }

  async readable(files: readonly FileToRead[]): Promise<ReadableFiles> {
    await this.#scan();
    const wanted = new Map(files.map((file) => [cacheName(file.location), file]));
    const pinned: Array<{ name: string; entry: CacheEntry }> = [];
    const release = () => {
      for (const { name, entry } of pinned.splice(0)) this.#unpin(name, entry);
    };
    try {
      const names = [...wanted.keys()];
      let next = 0;
      const worker = async () => {
        while (next < names.length) {
          const name = names[next++]!;
          for (;;) {
            // Checked and pinned in one step: another query may evict it between its download and here.
            do await this.#ensure(name, wanted.get(name)!);
            while (!this.#entries.has(name));
            const entry = this.#pin(name);
            try {
              await entry.linking;
              pinned.push({ name, entry });
              break;
            } catch {
              // Evicted by another process before it was linked: download it again.
              this.#unpin(name, entry);
              this.#remove(name, entry);
            }
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(TRANSFERS_IN_FLIGHT, names.length) }, worker));
    } catch (error) {
      release();
      throw error;
    }
    await this.#evict();
    return {
      path: (location) => {
        const name = cacheName(location);
        if (!wanted.has(name))
          throw new TributaryError('INTERNAL', `${location} was not made readable before it was read`, {
            context: { location },
          });
        return path.join(this.#pinFolder, `${name}.parquet`);
      },
      release,
    };
  }

  async forget(locations: readonly string[]): Promise<void> {
    await this.#scan();
    const pinFolders = await readdir(path.join(this.#settings.cacheDirectory, PIN_FOLDERS));
    for (const location of locations) {
      const name = cacheName(location);
      const entry = this.#entries.get(name);
      if (entry) this.#remove(name, entry);
      // Also a copy another process cached, which this one never saw, and every process's pin link.
      await rm(this.#pathOf(name), { force: true });
      for (const folder of pinFolders)
        await rm(path.join(this.#settings.cacheDirectory, PIN_FOLDERS, folder, `${name}.parquet`), {
          force: true,
        });
    }
  }

  /**
   * The file in the cache: found there (by this process or another) or downloaded. A file this process
   * cached may have been evicted by another one sharing the directory since: it is downloaded again.
   */
  async #ensure(name: string, file: FileToRead): Promise<void> {
    const entry = this.#entries.get(name);
    if (entry) {
      // Pinned, it is read through its pin link, which another process cannot evict.
      if (entry.pins > 0 || (await exists(this.#pathOf(name)))) return;
      this.#remove(name, entry);
    }
    let download = this.#downloads.get(name);
    if (!download) {
      download = this.#download(name, file).finally(() => this.#downloads.delete(name));
      this.#downloads.set(name, download);
    }
    await download;
  }

  async #download(name: string, file: FileToRead): Promise<void> {
    const target = this.#pathOf(name);
    const existing = await stat(target).catch(() => undefined);
    if (existing?.size === file.size) {
      this.#add(name, file.size);
      return;
    }
    const temp = path.join(this.#settings.cacheDirectory, `.${name}.${randomUUID()}.tmp`);
    try {
      const handle = await open(temp, 'wx');
      try {
        if (file.size <= DOWNLOAD_CHUNK_BYTES) {
          const bytes = await this.storage.read(file.location);
          if (bytes.length !== file.size) throw sizeMismatch(file, bytes.length);
          await handle.writeFile(bytes);
        } else {
          const { size } = await this.storage.stat(file.location);
          if (size !== file.size) throw sizeMismatch(file, size);
          for (let offset = 0; offset < size; offset += DOWNLOAD_CHUNK_BYTES) {
            const length = Math.min(DOWNLOAD_CHUNK_BYTES, size - offset);
            await handle.write(
              await this.storage.readRange(file.location, offset, length),
              0,
              length,
              offset,
            );
          }
        }
      } finally {
        await handle.close();
      }
      await rename(temp, target);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    this.#add(name, file.size);
  }

  #add(name: string, size: number): void {
    if (this.#entries.has(name)) return;
    this.#entries.set(name, { size, pins: 0, linking: Promise.resolve() });
    this.#bytes += size;
  }

  /** Forgets an entry (its file is gone or going), unless another has taken its place meanwhile. */
  #remove(name: string, entry: CacheEntry): void {
    if (this.#entries.get(name) !== entry) return;
    this.#entries.delete(name);
    this.#bytes -= entry.size;
  }

  /** Pins a file, marks it the most recently used, and links it into the pin folder when first pinned. */
  #pin(name: string): CacheEntry {
    const entry = this.#entries.get(name)!;
    this.#entries.delete(name);
    this.#entries.set(name, entry);
    if (entry.pins++ === 0) {
      const pinned = path.join(this.#pinFolder, `${name}.parquet`);
      entry.linking = entry.linking
        .catch(() => undefined)
        .then(() => link(this.#pathOf(name), pinned))
        .catch((error: unknown) => {
          // Already linked (a release's removal failed): the same immutable bytes.
          if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        });
    }
    return entry;
  }

  #unpin(name: string, entry: CacheEntry): void {
    entry.pins = Math.max(0, entry.pins - 1);
    if (entry.pins > 0) return;
    const pinned = path.join(this.#pinFolder, `${name}.parquet`);
    entry.linking = entry.linking.catch(() => undefined).then(() => rm(pinned, { force: true }));
  }

  /** Removes least recently used unpinned files until the cache is within its limit. */
  async #evict(): Promise<void> {
    for (const [name, entry] of this.#entries) {
      if (this.#bytes <= this.#settings.maxCacheBytes) return;
      if (entry.pins > 0 || this.#downloads.has(name)) continue;
      this.#entries.delete(name);
      this.#bytes -= entry.size;
      await unlink(this.#pathOf(name)).catch(() => undefined);
    }
  }

  /**
   * Adopts the files a previous run left in the cache (oldest first, as least recently used), and removes
   * downloads a dead process left half-done. Once per process.
   */
  #scan(): Promise<void> {
    this.#scanned ??= (async () => {
      const directory = this.#settings.cacheDirectory;
      await mkdir(this.#pinFolder, { recursive: true });
      // Pin folders of processes that ended: their links pin nothing any more.
      for (const folder of await readdir(path.join(directory, PIN_FOLDERS))) {
        if (!isAlive(Number.parseInt(folder, 10)))
          await rm(path.join(directory, PIN_FOLDERS, folder), { recursive: true, force: true });
      }
      const found: Array<{ name: string; size: number; usedMs: number }> = [];
      for (const file of await readdir(directory)) {
        const stats = await stat(path.join(directory, file)).catch(() => undefined);
        if (!stats?.isFile()) continue;
        if (file.endsWith('.tmp')) {
          if (Date.now() - stats.mtimeMs > STALE_DOWNLOAD_MS)
            await rm(path.join(directory, file), { force: true });
        } else if (/^[0-9a-f]{64}\.parquet$/.test(file)) {
          found.push({ name: file.slice(0, 64), size: stats.size, usedMs: stats.mtimeMs });
        }
      }
      found.sort((a, b) => a.usedMs - b.usedMs);
      for (const { name, size } of found) this.#add(name, size);
      await this.#evict();
    })();
    return this.#scanned;
  }

  #pathOf(name: string): string {
    return path.join(this.#settings.cacheDirectory, `${name}.parquet`);
  }
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

function isAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
}

/** The cache's name of a file: the SHA-256 of its location, every spelling of an S3 location alike. */
function cacheName(location: string): string {
  return createHash('sha256').update(canonicalLocation(location)).digest('hex');
}

function sizeMismatch(file: FileToRead, size: number): TributaryError {
  return new TributaryError(
    'STORAGE_IO',
    `${file.location} has ${size} bytes where the table's manifest says ${file.size}`,
    {
      context: { location: file.location, size, expected: file.size, reason: 'size-mismatch' },
      hint: 'The file was replaced or truncated after the table named it: restore it, or remove it from the table.',
    },
  );
}
