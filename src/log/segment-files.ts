/**
 * The files that hold the embedded log's record batches: per topic, a sequence of append-only segment
 * files (`segments/<topic id>/<sequence>.batches`). SQLite (embedded-log.ts) keeps where each batch is and
 * how far each segment is written; a segment's bytes past that point are a write that never committed and
 * are overwritten by the next one, so a torn write needs no repair.
 *
 * Why not blobs in SQLite: a blob is written twice (to the WAL, then by the checkpoint into the database)
 * and checksummed page by page; a segment is written once. Per topic rather than one sequence for the
 * whole log, so that a topic kept forever never holds on to the files of a topic with retention.
 *
 * Every call is synchronous: the embedded log writes under SQLite's write lock, inside its transaction.
 */
import {
  closeSync,
  constants,
  fdatasyncSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  writeSync,
  writevSync,
} from 'node:fs';
import path from 'node:path';

/** Open files kept at most (the least recently used beyond this are closed). */
const OPEN_FILES = 32;
/** Buffers one writev takes (Linux's IOV_MAX is 1,024). */
const WRITEV_BUFFERS = 512;

export class SegmentFiles {
  readonly #directory: string;
  readonly #sync: boolean;
  /** Open descriptors by file path, least recently used first. */
  readonly #open = new Map<string, number>();
  /** Without `sync`: folders that gained a file since `syncFolders` last ran. */
  readonly #unsyncedFolders = new Set<string>();

  /** `sync`: writes and new files are flushed to disk before the calls return. */
  constructor(directory: string, sync: boolean) {
    this.#directory = path.join(directory, 'segments');
    this.#sync = sync;
  }

  /**
   * Creates the file of a new segment (or reuses one a rolled-back transaction left behind: its bytes
   * are overwritten from the start).
   */
  create(topic: number, segment: number, sync = this.#sync): void {
    const folder = this.#folder(topic);
    mkdirSync(folder, { recursive: true });
    this.#descriptor(topic, segment, constants.O_RDWR | constants.O_CREAT);
    if (!sync) {
      this.#unsyncedFolders.add(folder);
      return;
    }
    // The new names must be on disk before a commit points to them: the folders' too, every time (a
    // process that stopped after making one may not have synced it; this is once per segment).
    syncDirectory(path.dirname(this.#directory));
    syncDirectory(this.#directory);
    syncDirectory(folder);
  }

  /** Writes `payloads` one after the other from `position`; on disk when it returns if `sync`. */
  write(
    topic: number,
    segment: number,
    position: number,
    payloads: readonly Uint8Array[],
    sync = this.#sync,
  ): void {
    const fd = this.#sync
      ? this.#descriptor(topic, segment, constants.O_RDWR)
      : this.#recreated(topic, segment);
    let at = position;
    for (let first = 0; first < payloads.length; first += WRITEV_BUFFERS) {
      const chunk = payloads.slice(first, first + WRITEV_BUFFERS);
      const length = chunk.reduce((n, p) => n + p.byteLength, 0);
      const written = writevSync(fd, chunk, at);
      if (written < length) {
        // A short write (a full disk answers with one before it fails): write the rest, or fail on it.
        const rest = Buffer.concat(chunk).subarray(written);
        for (let done = 0; done < rest.byteLength;)
          done += writeSync(fd, rest, done, rest.byteLength - done, at + written + done);
      }
      at += length;
    }
    if (sync) fdatasyncSync(fd);
  }

  /**
   * Without `sync`, a machine that stopped may have lost a new file, or its topic's folder, whose name
   * had not reached the disk: they are made again. (With `sync` a missing file is damage: it fails.)
   */
  #recreated(topic: number, segment: number): number {
    if (!this.#open.has(this.#file(topic, segment))) {
      // Opening it may create it: its name is synced with the next `syncFolders`.
      const folder = this.#folder(topic);
      mkdirSync(folder, { recursive: true });
      this.#unsyncedFolders.add(folder);
    }
    return this.#descriptor(topic, segment, constants.O_RDWR | constants.O_CREAT);
  }

  /** Without `sync`: puts the names of the files made since the last call on disk. */
  syncFolders(): void {
    if (this.#unsyncedFolders.size === 0) return;
    syncDirectory(path.dirname(this.#directory));
    syncDirectory(this.#directory);
    for (const folder of this.#unsyncedFolders) {
      syncDirectory(folder);
      this.#unsyncedFolders.delete(folder);
    }
  }

  /** Puts what was written to a segment on disk (`withName`: its folders too); false when it is not there. */
  sync(topic: number, segment: number, withName = false): boolean {
    try {
      fdatasyncSync(this.#descriptor(topic, segment, constants.O_RDWR));
      if (withName) {
        syncDirectory(path.dirname(this.#directory));
        syncDirectory(this.#directory);
        syncDirectory(this.#folder(topic));
      }
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
  }

  /**
   * The `length` bytes at `position` (fewer when the file ends before); undefined when the file is gone
   * (retention removed it meanwhile).
   */
  read(topic: number, segment: number, position: number, length: number): Uint8Array | undefined {
    let fd: number;
    try {
      fd = this.#descriptor(topic, segment, constants.O_RDWR);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    const bytes = Buffer.allocUnsafe(length);
    let read = 0;
    while (read < length) {
      const n = readSync(fd, bytes, read, length - read, position + read);
      if (n === 0) return bytes.subarray(0, read);
      read += n;
    }
    return bytes;
  }

  /** Deletes the topic's segment files before `last` that are not in `kept`. */
  removeAllBut(topic: number, kept: ReadonlySet<number>, last: number): void {
    let names: string[];
    try {
      names = readdirSync(this.#folder(topic));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    for (const name of names) {
      const segment = Number.parseInt(name, 10);
      if (!/^\d+\.batches$/.test(name) || segment >= last || kept.has(segment)) continue;
      const file = this.#file(topic, segment);
      this.#close(file);
      rmSync(file, { force: true });
    }
  }

  /** Closes the descriptors of every file but those of `kept` (topic, segment) pairs. */
  closeAllBut(kept: ReadonlyArray<readonly [number, number]>): void {
    const files = new Set(kept.map(([topic, segment]) => this.#file(topic, segment)));
    for (const file of [...this.#open.keys()]) if (!files.has(file)) this.#close(file);
  }

  close(): void {
    for (const file of [...this.#open.keys()]) this.#close(file);
  }

  #folder(topic: number): string {
    return path.join(this.#directory, String(topic));
  }

  #file(topic: number, segment: number): string {
    return path.join(this.#folder(topic), `${String(segment).padStart(12, '0')}.batches`);
  }

  #descriptor(topic: number, segment: number, flags: number): number {
    const file = this.#file(topic, segment);
    const open = this.#open.get(file);
    if (open !== undefined) {
      this.#open.delete(file);
      this.#open.set(file, open);
      return open;
    }
    const fd = openSync(file, flags, 0o644);
    this.#open.set(file, fd);
    if (this.#open.size > OPEN_FILES) this.#close(this.#open.keys().next().value!);
    return fd;
  }

  #close(file: string): void {
    const fd = this.#open.get(file);
    if (fd === undefined) return;
    this.#open.delete(file);
    closeSync(fd);
  }
}

/** fsync of a directory, so that a file made in it survives a power loss (not possible on every platform). */
function syncDirectory(directory: string): void {
  const fd = openSync(directory, constants.O_RDONLY);
  try {
    fsyncSync(fd);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EBADF') throw error;
  } finally {
    closeSync(fd);
  }
}
