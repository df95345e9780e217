/**
 * The fingerprints of the ids the dedupe store remembers (id-index.ts), on disk: append-only files, one
 * per period (`ids-<period start ms>.bin`), so that forgetting is deleting a file, and writing an id is 16
 * bytes at the end of one. Two threads may write (the server's store while it recovers, the log worker's
 * afterwards): every chunk is one write() to a file opened for appending, which the kernel never
 * interleaves.
 *
 * A chunk: magic "TRI1", payload length u32, CRC-32 of the payload u32, then the payload — entries of 16
 * bytes: fingerprint words 0–2 and when the id was seen (seconds, rounded up), all u32 little-endian.
 * Reading stops at the first chunk that is torn or damaged (a crash in the middle of a write), and the
 * file is cut there so that later chunks are not written after it.
 */
import {
  closeSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';

const MAGIC = 0x31495254; // "TRI1" little-endian
const HEADER = 12;
export const ENTRY_WORDS = 4;
const FILE = /^ids-(\d+)\.bin$/;

export class IdJournal {
  readonly #directory: string;
  #fd: number | undefined;
  #period: number | undefined;

  constructor(directory: string) {
    this.#directory = directory;
    mkdirSync(directory, { recursive: true });
  }

  /**
   * Appends `count` entries (ENTRY_WORDS words each) of `entries` to the file of the period `now` is in.
   * Throws when the write fails.
   */
  append(entries: Uint32Array, count: number, now: number, periodMs: number): void {
    if (count === 0) return;
    const period = Math.floor(now / periodMs) * periodMs;
    if (period !== this.#period || this.#fd === undefined) {
      this.close();
      this.#fd = openSync(path.join(this.#directory, `ids-${period}.bin`), 'a');
      this.#period = period;
    }
    const payload = Buffer.from(entries.buffer, entries.byteOffset, count * ENTRY_WORDS * 4);
    const chunk = Buffer.allocUnsafe(HEADER + payload.length);
    chunk.writeUInt32LE(MAGIC, 0);
    chunk.writeUInt32LE(payload.length, 4);
    chunk.writeUInt32LE(crc32(payload), 8);
    payload.copy(chunk, HEADER);
    let written = 0;
    while (written < chunk.length) written += writeSync(this.#fd, chunk, written);
  }

  /**
   * Calls `onEntry` for every entry seen at or after `since` (ms), oldest file first; files past every
   * entry's use (older than `since` by a whole period) are deleted, damaged tails cut.
   */
  read(since: number, onEntry: (entries: Uint32Array, at: number, seenAt: number) => void): number {
    let read = 0;
    const files = this.#files();
    for (let f = 0; f < files.length; f++) {
      const { name } = files[f]!;
      const file = path.join(this.#directory, name);
      const next = files[f + 1]?.start;
      // Everything in it was written before the next file started.
      if (next !== undefined && next < since) {
        rmSync(file, { force: true });
        continue;
      }
      const bytes = readFileSync(file);
      let at = 0;
      while (at + HEADER <= bytes.length) {
        const length = bytes.readUInt32LE(at + 4);
        if (
          bytes.readUInt32LE(at) !== MAGIC ||
          length % (ENTRY_WORDS * 4) !== 0 ||
          at + HEADER + length > bytes.length ||
          crc32(bytes.subarray(at + HEADER, at + HEADER + length)) !== bytes.readUInt32LE(at + 8)
        )
          break;
        // A copy, aligned for the word view (a Buffer from readFileSync may start anywhere in its pool).
        const words = new Uint32Array(
          bytes.buffer.slice(bytes.byteOffset + at + HEADER, bytes.byteOffset + at + HEADER + length),
        );
        for (let e = 0; e < words.length; e += ENTRY_WORDS) {
          const seenAt = words[e + 3]! * 1000;
          if (seenAt < since) continue;
          onEntry(words, e, seenAt);
          read++;
        }
        at += HEADER + length;
      }
      if (at < bytes.length) {
        // A torn or damaged chunk: what follows it would never be read.
        const fd = openSync(file, 'r+');
        try {
          ftruncateSync(fd, at);
        } finally {
          closeSync(fd);
        }
      }
    }
    return read;
  }

  /** Deletes the files whose every entry is older than `before` (ms): those a later file followed by then. */
  deleteBefore(before: number): void {
    const files = this.#files();
    for (let f = 0; f + 1 < files.length; f++)
      if (files[f + 1]!.start < before && files[f]!.start !== this.#period)
        rmSync(path.join(this.#directory, files[f]!.name), { force: true });
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    this.#period = undefined;
  }

  #files(): Array<{ name: string; start: number }> {
    return readdirSync(this.#directory)
      .map((name) => ({ name, match: FILE.exec(name) }))
      .filter((f) => f.match !== null)
      .map((f) => ({ name: f.name, start: Number(f.match![1]) }))
      .sort((a, b) => a.start - b.start);
  }
}
