/**
 * `Storage` on the local filesystem (node:fs/promises). Writes go to a temporary file beside the target
 * (`.<name>.<uuid>.tmp`, never listed), are flushed with fsync, then renamed into place and the directory is
 * flushed too, so a crash or power loss leaves the old file or the new one. `writeExclusive` publishes the
 * temporary file with link(2), which fails when the target exists: exclusive and atomic at once.
 *
 * `fsync: false` skips the flushes (tests, benchmarks): still atomic for readers, no longer durable across a
 * power loss. Deletes are never flushed: a delete lost to a power loss is redone by the next cleanup.
 */
import { randomUUID } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { copyFile, link, mkdir, open, opendir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { TributaryError } from '../errors.ts';
import { localPathOf } from './location.ts';
import type { Storage, StorageEntry, StorageStat } from './storage.ts';

export interface LocalStorageOptions {
  /** Flush files and directories to disk on every write (default true). */
  readonly fsync?: boolean;
}

const TEMP_FILE = /^\..*\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.tmp$/;
const RETRYABLE_CODES = new Set(['EMFILE', 'ENFILE', 'EAGAIN', 'EBUSY', 'EINTR', 'ETIMEDOUT']);
const LINK_UNSUPPORTED_CODES = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV', 'EMLINK']);

export class LocalStorage implements Storage {
  readonly #fsync: boolean;

  constructor(options: LocalStorageOptions = {}) {
    this.#fsync = options.fsync ?? true;
  }

  async read(location: string): Promise<Uint8Array> {
    const file = localPathOf(location);
    try {
      const buffer = await readFile(file);
      return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    } catch (error) {
      throw fsError(error, 'read', location, { missingIsNotFound: true });
    }
  }

  async readRange(location: string, offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new TributaryError('INTERNAL', `Invalid byte range ${offset}+${length} of ${location}`, {
        context: { location, offset, length },
      });
    }
    const file = localPathOf(location);
    const bytes = new Uint8Array(length);
    let filled = 0;
    try {
      const handle = await open(file, 'r');
      try {
        while (filled < length) {
          const { bytesRead } = await handle.read(bytes, filled, length - filled, offset + filled);
          if (bytesRead === 0) break;
          filled += bytesRead;
        }
      } finally {
        await handle.close();
      }
    } catch (error) {
      throw fsError(error, 'read', location, { missingIsNotFound: true });
    }
    if (filled < length) {
      throw new TributaryError(
        'STORAGE_IO',
        `${location} ends at byte ${offset + filled}, before the ${length} bytes asked for at offset ${offset}`,
        {
          context: { location, offset, length, available: filled },
          hint: 'The file is shorter than its metadata says: it may be truncated or replaced.',
        },
      );
    }
    return bytes;
  }

  async write(location: string, bytes: Uint8Array): Promise<void> {
    const file = localPathOf(location);
    const dir = path.dirname(file);
    await this.#ensureDir(dir, location);
    const temp = tempPathFor(file);
    try {
      await this.#writeNew(temp, bytes);
      await rename(temp, file);
    } catch (error) {
      await rm(temp, { force: true });
      throw fsError(error, 'write', location);
    }
    await this.#syncDir(dir, location);
  }

  async writeExclusive(location: string, bytes: Uint8Array): Promise<void> {
    const file = localPathOf(location);
    const dir = path.dirname(file);
    await this.#ensureDir(dir, location);
    const temp = tempPathFor(file);
    try {
      await this.#writeNew(temp, bytes);
      try {
        await link(temp, file);
      } catch (error) {
        if (!LINK_UNSUPPORTED_CODES.has(errorCode(error))) throw error;
        // No hard links on this filesystem: create the target exclusively and write it in place. Still never
        // overwrites, but a concurrent reader may see the file before it is complete.
        await this.#writeNew(file, bytes, { removeOnFailure: true });
      }
    } catch (error) {
      throw fsError(error, 'write', location, { existsIsConflict: true });
    } finally {
      await rm(temp, { force: true });
    }
    await this.#syncDir(dir, location);
  }

  async exists(location: string): Promise<boolean> {
    const file = localPathOf(location);
    try {
      return (await stat(file)).isFile();
    } catch (error) {
      if (isMissing(error)) return false;
      throw fsError(error, 'stat', location);
    }
  }

  async stat(location: string): Promise<StorageStat> {
    const file = localPathOf(location);
    let stats;
    try {
      stats = await stat(file);
    } catch (error) {
      throw fsError(error, 'stat', location, { missingIsNotFound: true });
    }
    if (!stats.isFile()) {
      throw new TributaryError('STORAGE_NOT_FOUND', `${location} is a directory, not a file`, {
        context: { location },
      });
    }
    return { size: stats.size, modifiedMs: Math.trunc(stats.mtimeMs) };
  }

  async delete(location: string): Promise<void> {
    const file = localPathOf(location);
    try {
      await unlink(file);
    } catch (error) {
      if (isMissing(error)) return;
      throw fsError(error, 'delete', location);
    }
  }

  async *list(prefix: string): AsyncIterable<StorageEntry> {
    const root = localPathOf(prefix);
    const base = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
    yield* walk(root, base, prefix);
  }

  async writeFile(location: string, localPath: string): Promise<void> {
    const file = localPathOf(location);
    const dir = path.dirname(file);
    await this.#ensureDir(dir, location);
    try {
      // Flushed before it is renamed into place: a reader never sees the name before the bytes are durable.
      if (this.#fsync) await syncPath(localPath, location, { directory: false });
      await rename(localPath, file);
    } catch (error) {
      if (errorCode(error) !== 'EXDEV') throw fsError(error, 'write', location);
      // The staged file is on another filesystem: copy it beside the target, then rename that.
      const temp = tempPathFor(file);
      try {
        await copyFile(localPath, temp);
        if (this.#fsync) await syncPath(temp, location, { directory: false });
        await rename(temp, file);
      } catch (copyError) {
        await rm(temp, { force: true });
        throw fsError(copyError, 'write', location);
      }
      await rm(localPath, { force: true });
    }
    await this.#syncDir(dir, location);
  }

  localPath(location: string): string {
    return localPathOf(location);
  }

  /** Writes a file that must not exist yet, flushed when durability is on. */
  async #writeNew(
    file: string,
    bytes: Uint8Array,
    options: { removeOnFailure?: boolean } = {},
  ): Promise<void> {
    const handle = await open(file, 'wx');
    try {
      await handle.writeFile(bytes);
      if (this.#fsync) await handle.sync();
    } catch (error) {
      await handle.close();
      if (options.removeOnFailure) await rm(file, { force: true });
      throw error;
    }
    await handle.close();
  }

  /** Creates `dir` and its missing parents; when durable, flushes each directory that gained an entry. */
  async #ensureDir(dir: string, location: string): Promise<void> {
    let firstCreated: string | undefined;
    try {
      firstCreated = await mkdir(dir, { recursive: true });
    } catch (error) {
      throw fsError(error, 'write', location);
    }
    if (firstCreated === undefined || !this.#fsync) return;
    // Each new directory's entry lives in its parent: flush the parent of the first one created and every
    // new directory but the last (which the write itself flushes).
    const toFlush = [path.dirname(firstCreated)];
    for (let current = dir; current !== firstCreated; current = path.dirname(current)) {
      toFlush.push(path.dirname(current));
    }
    for (const directory of new Set(toFlush)) await this.#syncDir(directory, location);
  }

  async #syncDir(dir: string, location: string): Promise<void> {
    if (this.#fsync) await syncPath(dir, location, { directory: true });
  }
}

/** Flushes a file or directory to disk. */
async function syncPath(target: string, location: string, options: { directory: boolean }): Promise<void> {
  try {
    const handle = await open(target, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    // Some platforms (Windows) cannot open or flush a directory; the rename is still atomic there.
    if (options.directory && ['EISDIR', 'EINVAL', 'EPERM', 'EBADF'].includes(errorCode(error))) return;
    throw fsError(error, 'write', location);
  }
}

async function* walk(dir: string, base: string, prefix: string): AsyncGenerator<StorageEntry> {
  let entries: Dirent[];
  try {
    const handle = await opendir(dir);
    entries = [];
    for await (const entry of handle) entries.push(entry);
  } catch (error) {
    if (isMissing(error)) return; // no such prefix, or deleted while listing
    throw fsError(error, 'list', prefix);
  }
  for (const entry of entries) {
    if (TEMP_FILE.test(entry.name)) continue;
    const full = path.join(dir, entry.name);
    const location = `${base}/${entry.name}`;
    if (entry.isDirectory()) {
      yield* walk(full, location, prefix);
    } else if (entry.isFile() || entry.isSymbolicLink()) {
      try {
        const stats = await stat(full);
        if (stats.isFile()) yield { location, size: stats.size, modifiedMs: Math.trunc(stats.mtimeMs) };
      } catch (error) {
        if (!isMissing(error)) throw fsError(error, 'list', prefix);
      }
    }
  }
}

function tempPathFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file).slice(0, 100)}.${randomUUID()}.tmp`);
}

function errorCode(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : '';
}

function isMissing(error: unknown): boolean {
  const code = errorCode(error);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

const HINTS: Record<string, string> = {
  ENOSPC: 'The disk is full: free space or move the warehouse.',
  EDQUOT: 'The disk quota is exhausted: free space or raise the quota.',
  EACCES: 'Tributary may not access this path: check its permissions and owner.',
  EPERM: 'Tributary may not access this path: check its permissions and owner.',
  EROFS: 'The filesystem is read-only.',
  EISDIR: 'A directory is at that location.',
  ENOTDIR: 'A file is where a directory is expected on the path.',
  EMFILE: 'Too many open files: raise the limit (ulimit -n) or retry.',
};

function fsError(
  error: unknown,
  operation: 'read' | 'write' | 'stat' | 'delete' | 'list',
  location: string,
  options: { missingIsNotFound?: boolean; existsIsConflict?: boolean } = {},
): TributaryError {
  if (error instanceof TributaryError) return error;
  const code = errorCode(error);
  if (options.missingIsNotFound && isMissing(error)) {
    return new TributaryError('STORAGE_NOT_FOUND', `No file at ${location}`, {
      context: { location, operation },
      cause: error,
    });
  }
  if (options.existsIsConflict && code === 'EEXIST') {
    return new TributaryError('STORAGE_IO', `A file already exists at ${location}`, {
      context: { location, operation, reason: 'exists' },
      cause: error,
      hint: 'Another writer created it first: reload and retry under a new name.',
    });
  }
  const detail = error instanceof Error ? error.message : String(error);
  return new TributaryError('STORAGE_IO', `Could not ${operation} ${location}: ${detail}`, {
    context: { location, operation, errno: code || undefined },
    cause: error,
    retryable: RETRYABLE_CODES.has(code),
    hint: HINTS[code],
  });
}
