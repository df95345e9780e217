/**
 * Puts the machine's free memory in use once before a benchmark that writes files, so that page-cache
 * writes cost what they cost on a machine whose memory is backed.
 *
 * Why: on a virtual machine whose memory the host hands out on first touch (Firecracker's, where these
 * benchmarks run), the first write to a page of guest memory waits for the host: 400 KB writes into new
 * files measured ~1 ms each while the page cache took pages never used before, ~0.1 ms once it reused
 * pages (filling 8 GB this way took 21 s the first time). Tributary's ingest, which persists every event,
 * paid the hypervisor's cost as its log grew; Bento, which persists nothing, did not. The memory is filled
 * by a child process, which returns it on exit.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Left untouched, for the rest of the machine. */
const SPARE_BYTES = 2 * 1024 ** 3;
const MAX_BYTES = 16 * 1024 ** 3;
const CHUNK_BYTES = 256 * 1024 ** 2;

/** Fills the free memory (less 2 GiB, at most 16 GiB) once; returns the GiB touched and how long it took. */
export function touchFreeMemory(): { gib: number; seconds: number } | undefined {
  let free: number;
  try {
    const line = /^MemFree:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (!line) return undefined;
    free = Number(line[1]) * 1024;
  } catch {
    return undefined; // not Linux
  }
  const chunks = Math.floor(Math.min(MAX_BYTES, free - SPARE_BYTES) / CHUNK_BYTES);
  if (chunks <= 0) return undefined;
  const started = Date.now();
  const child = spawnSync(
    process.execPath,
    [
      '-e',
      `const held = []; for (let i = 0; i < ${chunks}; i++) held.push(Buffer.allocUnsafeSlow(${CHUNK_BYTES}).fill(1));`,
    ],
    { stdio: 'inherit' },
  );
  if (child.status !== 0) return undefined;
  return { gib: (chunks * CHUNK_BYTES) / 1024 ** 3, seconds: (Date.now() - started) / 1000 };
}
