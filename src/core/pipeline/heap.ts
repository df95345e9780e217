/**
 * A full garbage collection of the JavaScript heap after every few batches a process commits.
 *
 * Why: a batch's records are read, decoded and staged over several scavenges, so V8 promotes them to old
 * space; once the batch is committed they are garbage, but V8 lets old space grow to several times the live
 * heap before its own major collection (draining a 5M-record backlog: ~180 MB of heap pages resident for
 * ~30 MB live), and the log's payload buffers the records are views into stay allocated until then.
 * Collecting after every RECLAIM_BYTES of committed records (15–30 ms each on that drain) keeps them from
 * piling up: docs/operations.md (Memory) has the measurements. Process-wide, whatever the number of
 * pipelines, and never more than MAX_SHARE of the time. A collection stops the JavaScript thread while it
 * runs (under `tributary up`, the HTTP server's too). Exposing `gc` sets V8's --expose-gc for the rest of
 * the process: worker threads and vm contexts created later see a global `gc` (nothing here relies on
 * that either way).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Records' bytes committed between two collections: about four batches at the default batch.max_bytes. */
const RECLAIM_BYTES = 32 * 1024 * 1024;
/** The most of the time collections may take (the last one's duration against the time since). */
const MAX_SHARE = 0.05;

let collect: (() => void) | null | undefined;
let committed = 0;
let lastEnd = 0;
let lastDuration = 0;
let scheduled = false;

/** V8's `gc`, made available without the --expose-gc flag; null where it cannot be. */
function collector(): (() => void) | null {
  if (collect === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      const gc = runInNewContext('gc') as unknown;
      collect = typeof gc === 'function' ? (gc as () => void) : null;
    } catch {
      collect = null;
    }
  }
  return collect;
}

/**
 * Counts a committed batch of `bytes`; when enough has been committed since the last collection, collects
 * the heap in the next turn of the event loop, once the caller has let go of the batch it just committed.
 */
export function batchCommitted(bytes: number): void {
  committed += bytes;
  if (committed < RECLAIM_BYTES || scheduled) return;
  scheduled = true;
  setImmediate(collectNow);
}

function collectNow(): void {
  scheduled = false;
  const start = performance.now();
  if (lastDuration > 0 && start - lastEnd < lastDuration / MAX_SHARE) return;
  const gc = collector();
  if (!gc) return;
  committed = 0;
  gc();
  lastEnd = performance.now();
  lastDuration = lastEnd - start;
}
