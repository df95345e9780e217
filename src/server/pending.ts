/**
 * The requests and bytes of events waiting for the log, which backpressure limits (server.max_pending_*),
 * counted per HTTP thread in memory all the server's threads share: each thread changes its own counts
 * only, and a check adds up every thread's. 64-bit: requests admitted together before any is counted may
 * hold far more than the limit.
 */

/** Counts per thread: requests, bytes. */
const FIELDS = 2;

export class PendingWrites {
  readonly #counts: BigInt64Array;
  readonly #at: number;
  readonly #threads: number;

  /**
   * `threads` counts; this one counts as thread `slot`. `shared`: the memory of another PendingWrites (its
   * `shared`), for a thread of the same server.
   */
  constructor(threads = 1, shared?: SharedArrayBuffer, slot = 0) {
    if (slot < 0 || slot >= threads) throw new RangeError(`slot ${slot} is not one of ${threads} threads`);
    this.#threads = threads;
    this.#counts = new BigInt64Array(shared ?? new SharedArrayBuffer(threads * FIELDS * 8));
    this.#at = slot * FIELDS;
  }

  /** The memory to hand to the server's other threads. */
  get shared(): SharedArrayBuffer {
    return this.#counts.buffer as SharedArrayBuffer;
  }

  /** A request of `bytes` starts waiting for the log (or stops, with negative numbers). */
  add(requests: number, bytes: number): void {
    // Only this thread writes its counts: Atomics for the others to read them whole.
    Atomics.add(this.#counts, this.#at, BigInt(requests));
    Atomics.add(this.#counts, this.#at + 1, BigInt(bytes));
  }

  /** Forgets the counts of thread `slot`, which ended: what it had sent the log is appended or dropped. */
  clear(slot: number): void {
    Atomics.store(this.#counts, slot * FIELDS, 0n);
    Atomics.store(this.#counts, slot * FIELDS + 1, 0n);
  }

  /** This thread's requests and bytes waiting. */
  get own(): { readonly requests: number; readonly bytes: number } {
    return {
      requests: Number(Atomics.load(this.#counts, this.#at)),
      bytes: Number(Atomics.load(this.#counts, this.#at + 1)),
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
    let total = 0n;
    for (let thread = 0; thread < this.#threads; thread++)
      total += Atomics.load(this.#counts, thread * FIELDS + field);
    return Number(total);
  }
}
