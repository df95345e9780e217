/**
 * The fingerprints of the ids the dedupe store remembers (id-index.ts), on disk: append-only files, one
 * per period (`ids-<start ms>-<end ms>.bin`, written only between those times, so that no entry in one is
 * newer than its end), so that forgetting is deleting a file, and writing an id is 16 bytes at the end of
 * one. Two threads may write (the server's store while it recovers, the log worker's
 * afterwards), never at the same time: every chunk is one write() to a file opened for appending.
 *
 * A chunk: magic "TRI1", entries length u32, watermarks length u32, CRC-32 of what follows u32; then the
 * entries — 16 bytes each: fingerprint words 0–2 and when the id was seen (seconds, rounded up), all u32
 * little-endian — and the watermarks the chunk completes, as JSON `[[topic, partition, next offset], …]`:
 * every id acknowledged below those offsets is in this chunk or before it. Nothing is synced on each write
 * (the log is the truth; recovery reads it from the watermark), but the order is kept where a crash could
 * break it: reading stops at the first torn or damaged chunk — so a watermark is never read without the
 * ids before it — and cuts the file there; a file is synced before the next one is started; a write that
 * fails part-way is cut off at once (or, when even that fails, its file is not written again).
 */
import {
  closeSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';

const MAGIC = 0x31495254; // "TRI1" little-endian
const HEADER = 16;
export const ENTRY_WORDS = 4;
const FILE = /^ids-(\d+)-(\d+)(?:-\d+)?\.bin$/;
/** A file's size at most, about (256 MiB, 16 million ids). */
const MAX_FILE_BYTES = 256 * 1024 * 1024;
/** How much of a file is read at a time on start (a chunk larger than this is read whole). */
const READ_BYTES = 4 * 1024 * 1024;

/** Watermarks: "topic NUL partition" → the next offset. */
export type Marks = Map<string, number>;

/**
 * The chunk at the start of `bytes`, which holds the first bytes of the `remaining` left in the file: where
 * its entries and it end; or how many bytes it needs in `bytes` to be read; or 'stop' when it is damaged
 * or torn (cut short by the end of the file).
 */
function chunkAt(bytes: Buffer, remaining: number): { entriesEnd: number; end: number } | number | 'stop' {
  if (bytes.length < HEADER) return remaining < HEADER ? 'stop' : HEADER;
  if (bytes.readUInt32LE(0) !== MAGIC) return 'stop';
  const length = bytes.readUInt32LE(4);
  if (length % (ENTRY_WORDS * 4) !== 0) return 'stop';
  const entriesEnd = HEADER + length;
  const end = entriesEnd + bytes.readUInt32LE(8);
  if (end > remaining) return 'stop';
  if (end > bytes.length) return end;
  if (crc32(bytes.subarray(HEADER, end)) !== bytes.readUInt32LE(12)) return 'stop';
  return { entriesEnd, end };
}

export class IdJournal {
  readonly #directory: string;
  #fd: number | undefined;
  #file: string | undefined;
  /**
   * Files not written again — one a failed write could not be cut back in, or a full one — whose period
   * goes on in a sequel (`…-<n>.bin`).
   */
  readonly #retired = new Set<string>();
  /**
   * A sync that failed: what it covered may be lost (Linux reports that once, and a second sync says
   * nothing), so no write is trusted after it — every call fails with it, until the process restarts.
   */
  #failed: Error | undefined;
  /** The size of the file being written, after the last append. */
  #size = 0;

  constructor(directory: string) {
    this.#directory = directory;
    mkdirSync(directory, { recursive: true });
  }

  /**
   * Appends `count` entries (ENTRY_WORDS words each) of `entries` and the watermarks `marks` to the file
   * of the period `now` is in. Throws when the write fails (having cut off what it wrote).
   */
  append(entries: Uint32Array, count: number, marks: Marks, now: number, periodMs: number): void {
    if (this.#failed) throw this.#failed;
    if (count === 0 && marks.size === 0) return;
    const start = Math.floor(now / periodMs) * periodMs;
    let file = path.join(this.#directory, `ids-${start}-${start + periodMs}.bin`);
    for (let n = 1; this.#retired.has(file); n++)
      file = path.join(this.#directory, `ids-${start}-${start + periodMs}-${n}.bin`);
    // Past MAX_FILE_BYTES the period goes on in a sequel (a file a day of a busy stream would be huge).
    if (file === this.#file && this.#size >= MAX_FILE_BYTES) {
      this.#retired.add(file);
      return this.append(entries, count, marks, now, periodMs);
    }
    if (file !== this.#file || this.#fd === undefined) {
      // The file ending is synced first: a later file never survives a crash that an earlier one did not.
      this.close();
      this.#fd = openSync(file, 'a');
      this.#file = file;
    }
    const payload = Buffer.from(entries.buffer, entries.byteOffset, count * ENTRY_WORDS * 4);
    const watermarks = Buffer.from(
      marks.size === 0
        ? ''
        : JSON.stringify(
            [...marks].map(([mark, next]) => {
              const nul = mark.lastIndexOf('\0');
              return [mark.slice(0, nul), Number(mark.slice(nul + 1)), next];
            }),
          ),
    );
    const chunk = Buffer.allocUnsafe(HEADER + payload.length + watermarks.length);
    chunk.writeUInt32LE(MAGIC, 0);
    chunk.writeUInt32LE(payload.length, 4);
    chunk.writeUInt32LE(watermarks.length, 8);
    payload.copy(chunk, HEADER);
    watermarks.copy(chunk, HEADER + payload.length);
    chunk.writeUInt32LE(crc32(chunk.subarray(HEADER)), 12);
    const fd = this.#fd;
    const size = fstatSync(fd).size;
    this.#size = size + chunk.length;
    try {
      let written = 0;
      while (written < chunk.length) written += writeSync(fd, chunk, written);
    } catch (error) {
      // A part of a chunk would end the file for every reader: what follows it would never be read.
      try {
        ftruncateSync(fd, size);
      } catch {
        // Cannot cut it: readers stop at that chunk, so the file is not written again (closed synced,
        // as any file before the next one).
        this.#retired.add(this.#file);
        this.close();
      }
      throw error;
    }
  }

  /**
   * Calls `onEntry` for every entry seen at or after `since` (ms), oldest file first, and returns the
   * newest watermarks read. Files whose last write is older than `since` are deleted, damaged tails cut.
   */
  read(
    since: number,
    onEntry: (entries: Uint32Array, at: number, seenAt: number) => void,
    readBytes = READ_BYTES,
  ): Marks {
    const marks: Marks = new Map();
    for (const { name, end } of this.#files()) {
      const file = path.join(this.#directory, name);
      // Every entry in it is older than `since` (times seen are rounded up to the second); the marks it
      // holds are older than those of the files after it, or of ingest.db.
      if (end + 1000 < since) {
        rmSync(file, { force: true });
        continue;
      }
      const fd = openSync(file, 'r+');
      try {
        // Read a piece at a time (the memory of a start does not grow with the journal): `bytes` holds
        // the file from `at`, the start of the next chunk, on.
        const size = fstatSync(fd).size;
        let bytes = Buffer.alloc(0);
        let at = 0;
        for (;;) {
          const chunk = chunkAt(bytes, size - at);
          if (chunk === 'stop') break;
          if (typeof chunk === 'number') {
            // What the chunk needs, and at least a piece more (up to the end of the file), in one buffer.
            const want = Math.min(size - at, Math.max(chunk, bytes.length + readBytes));
            const next = Buffer.allocUnsafe(want);
            bytes.copy(next, 0);
            let filled = bytes.length;
            while (filled < want) {
              const got = readSync(fd, next, filled, want - filled, at + filled);
              if (got === 0) break;
              filled += got;
            }
            if (filled < want) break; // the file is shorter than it was: what is missing is a torn tail
            bytes = next;
            continue;
          }
          const { entriesEnd, end } = chunk;
          // A copy, aligned for the word view (a Buffer may start anywhere in its pool).
          const start = bytes.byteOffset + HEADER;
          const words = new Uint32Array(bytes.buffer.slice(start, start + entriesEnd - HEADER));
          for (let e = 0; e < words.length; e += ENTRY_WORDS) {
            const seenAt = words[e + 3]! * 1000;
            if (seenAt >= since) onEntry(words, e, seenAt);
          }
          if (end > entriesEnd) {
            const list = JSON.parse(bytes.toString('utf8', entriesEnd, end)) as Array<
              [string, number, number]
            >;
            for (const [topic, partition, next] of list) {
              const mark = `${topic}\0${partition}`;
              marks.set(mark, Math.max(marks.get(mark) ?? 0, next));
            }
          }
          at += end;
          bytes = bytes.subarray(end);
        }
        // Synced before its watermarks are trusted (a crash may have left it in the page cache only, and
        // what follows is written in another file); a torn or damaged chunk is cut off, or what follows it
        // would never be read.
        if (at < size) ftruncateSync(fd, at);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
    return marks;
  }

  /** Deletes the files whose every entry is older than `before` (ms). */
  deleteBefore(before: number): void {
    for (const { name, end } of this.#files()) {
      const file = path.join(this.#directory, name);
      if (end + 1000 < before && file !== this.#file) rmSync(file, { force: true });
    }
  }

  /** Why the journal stopped (a failed sync), or undefined while it works. */
  get failure(): Error | undefined {
    return this.#failed;
  }

  /** Makes what was appended durable. */
  sync(): void {
    if (this.#failed) throw this.#failed;
    if (this.#fd !== undefined) this.#fsync(this.#fd);
  }

  /** Closes the file being written, synced (whatever is written after, in another file, comes later). */
  close(): void {
    const fd = this.#fd;
    this.#fd = undefined;
    this.#file = undefined;
    if (fd === undefined) return;
    try {
      if (!this.#failed) this.#fsync(fd);
    } finally {
      closeSync(fd);
    }
  }

  #fsync(fd: number): void {
    try {
      fsyncSync(fd);
    } catch (error) {
      this.#failed = new Error(
        `the dedupe journal cannot be synced (${(error as Error).message}); restart once the disk is fixed`,
        { cause: error },
      );
      throw this.#failed;
    }
  }

  /** The journal files, oldest period first. */
  #files(): Array<{ name: string; end: number }> {
    return readdirSync(this.#directory)
      .map((name) => ({ name, match: FILE.exec(name) }))
      .filter((f) => f.match !== null)
      .map((f) => ({ name: f.name, start: Number(f.match![1]), end: Number(f.match![2]) }))
      .sort((a, b) => a.start - b.start);
  }
}
