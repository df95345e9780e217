/**
 * Token buckets, one per key (an API key or a client IP, per stream). A bucket holds up to `burst` tokens
 * and refills at `rate` per second; a request takes one. Memory is bounded: the least recently used
 * buckets are dropped first (a dropped bucket comes back full, which only ever errs on the side of
 * letting a request through).
 */

export interface BucketLimit {
  /** Tokens per second; 0 means no limit. */
  readonly rate: number;
  readonly burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export type TakeResult = { readonly ok: true } | { readonly ok: false; readonly retryAfterSeconds: number };

const OK: TakeResult = { ok: true };

export class TokenBuckets {
  readonly #buckets = new Map<string, Bucket>();
  readonly #maxEntries: number;

  constructor(maxEntries = 100_000) {
    this.#maxEntries = maxEntries;
  }

  get size(): number {
    return this.#buckets.size;
  }

  /** Takes one token from the bucket `id`; `now` in milliseconds. */
  take(id: string, limit: BucketLimit, now: number = Date.now()): TakeResult {
    if (limit.rate <= 0) return OK;
    let bucket = this.#buckets.get(id);
    if (bucket) {
      bucket.tokens = Math.min(limit.burst, bucket.tokens + ((now - bucket.at) / 1000) * limit.rate);
      bucket.at = now;
      // Re-inserting keeps the map in least-recently-used order.
      this.#buckets.delete(id);
    } else {
      bucket = { tokens: limit.burst, at: now };
      if (this.#buckets.size >= this.#maxEntries) this.#evict();
    }
    this.#buckets.set(id, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return OK;
    }
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / limit.rate)) };
  }

  #evict(): void {
    // Drop the oldest tenth in one go, so eviction is amortized.
    let drop = Math.max(1, Math.floor(this.#maxEntries / 10));
    for (const id of this.#buckets.keys()) {
      this.#buckets.delete(id);
      if (--drop === 0) break;
    }
  }
}
