/**
 * The requests and bytes of events waiting for the log, which backpressure limits (server.max_pending_*),
 * counted per HTTP thread in memory all the server's threads share: each thread changes its own counts
 * only, and a check adds up every thread's.
 */

/** Counts per thread: requests, bytes. */
const FIELDS = 2;

export class PendingWrites {
  readonly #counts: Int32Array;
  readonly #at: number;
  readonly #threads: number;

  /**
   * `threads` counts; this one counts as thread `slot`. `shared`: the memory of another PendingWrites (its
   * `shared`), for a thread of the same server.
   */
  constructor(threads = 1, shared?: SharedArrayBuffer, slot = 0) {
    if (slot < 0 || slot >= threads) throw new RangeError(`slot ${slot} is not one of ${threads} threads`);
    this.#threads = threads;
    this.#counts = new Int32Array(shared ?? new SharedArrayBuffer(threads * FIELDS * 4));
    this.#at = slot * FIELDS;
  }

  /** The memory to hand to the server's other threads. */
  get shared(): SharedArrayBuffer {
    return this.#counts.buffer as SharedArrayBuffer;
  }

  /** A request of `bytes` starts waiting for the log (or stops, with negative numbers). */
  add(requests: number, bytes: number): void {
    // Only this thread writes its counts: Atomics for the others to read them whole.
    Atomics.add(this.#counts, this.#at, requests);
    Atomics.add(this.#counts, this.#at + 1, bytes);
  }

  /** This thread's requests and bytes waiting. */
  get own(): { readonly requests: number; readonly bytes: number } {
    return {
      requests: Atomics.load(this.#counts, this.#at),
      bytes: Atomics.load(this.#counts, this.#at + 1),
    };
  }

  /** Every thread's requests waiting. */
  get requests(): number {
    return this.#sum(0);
  }

  /** Every thread's bytes waiting. */
  get bytes(): number {
    return this.#sum(1);
  }

  #sum(field: number): number {
    let total = 0;
    for (let thread = 0; thread < this.#threads; thread++)
      total += Atomics.load(this.#counts, thread * FIELDS + field);
    return total;
  }
}
