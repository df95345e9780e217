/**
 * Token buckets, one per key (an API key or a client IP, per stream). A bucket holds up to `burst` tokens
 * and refills at `rate` per second; a request takes one. Memory is bounded: when there is no room, the
 * least recently used bucket nearby is dropped (a dropped bucket comes back full, which only ever errs on
 * the side of letting a request through).
 *
 * The buckets live in one SharedArrayBuffer, so that the server's threads share them and a limit holds
 * exactly across threads: a thread makes `new TokenBuckets(n, other.shared)` from the memory another
 * thread posted it. Invariants:
 *
 * 1. A bucket is known by a 64-bit hash of its id, seeded at random per table. Two live ids share a
 *    bucket only if both 32-bit halves collide: about n² / 2⁶⁵, 3 × 10⁻¹⁰ for 100,000 ids, and as the
 *    seed is random and never shown, ids cannot be picked beforehand to collide.
 * 2. The table has a fixed number of groups of 16 slots; an id belongs to one group (by its hash) and is
 *    only ever looked for there. Slots are never emptied, only overwritten, and a group fills from its
 *    first slot: the first empty slot ends the search. A new id in a full group takes the slot of the
 *    bucket that group used least recently.
 * 3. A group's slots are read and written only while holding its lock word, taken with
 *    Atomics.compareExchange and released with another: the plain reads and writes between are ordered
 *    by them. Nothing in between allocates, calls out or throws. The word counts up: even is free, odd
 *    is held. A word one holder keeps for 100 ms (a worker terminated inside `take`) is taken over; had
 *    that holder only been descheduled so long, a bucket may be a token off.
 * 4. Time never runs backwards in a bucket: threads read the clock before taking the lock, so a `now`
 *    earlier than the bucket's last is counted as that time, not as negative refill.
 */

export interface BucketLimit {
  /** Tokens per second; 0 means no limit. */
  readonly rate: number;
  readonly burst: number;
}

export type TakeResult = { readonly ok: true } | { readonly ok: false; readonly retryAfterSeconds: number };

const OK: TakeResult = { ok: true };

/** The layout of the memory, in 32-bit words unless said. */
const MAGIC = 0x54424b31; // 'TBK1'
const HEADER_WORDS = 8; // magic, groups, seed a, seed b, size, 3 spare: 32 bytes
const H_MAGIC = 0;
const H_GROUPS = 1;
const H_SEED_A = 2;
const H_SEED_B = 3;
const H_SIZE = 4;
const SLOTS = 16; // slots in a group
/**
 * A group: its lock word and a spare word, then each slot's hash (two words), then each slot's tokens and
 * time (two float64). The groups follow the header; rate-limit.test.ts finds the lock words so.
 */
const GROUP_WORDS = 2 + 2 * SLOTS + 4 * SLOTS; // 392 bytes
const GROUP_FLOATS = GROUP_WORDS / 2;
const HASHES_AT = 2; // words into a group
const FLOATS_AT = (2 + 2 * SLOTS) / 2; // float64s into a group
/**
 * Slots for each of `maxEntries` buckets. With 2, when `maxEntries` buckets are in use at once, a group is
 * full (so replaces one of them early) for about 0.08% of them; with 1.3, 2.4%.
 */
const ROOM = 2;
/** How long a lock word may stay held before it is taken over. */
const STUCK_MS = 100;

export class TokenBuckets {
  readonly #shared: SharedArrayBuffer;
  readonly #words: Int32Array;
  readonly #floats: Float64Array;
  readonly #groups: number;
  readonly #seedA: number;
  readonly #seedB: number;

  /**
   * `maxEntries`: how many buckets to keep (memory: about 49 bytes each, 4.9 MB for the default).
   * `shared`: the memory of another TokenBuckets (its `shared`), to share its buckets from another thread;
   * `maxEntries` is then that table's.
   */
  constructor(maxEntries = 100_000, shared?: SharedArrayBuffer) {
    if (shared) {
      const header = new Int32Array(shared, 0, Math.min(HEADER_WORDS, shared.byteLength >> 2));
      const groups = header[H_GROUPS] ?? 0;
      if (header[H_MAGIC] !== MAGIC || shared.byteLength !== (HEADER_WORDS + groups * GROUP_WORDS) * 4) {
        throw new TypeError('the shared memory of TokenBuckets is the `shared` of another TokenBuckets');
      }
      this.#shared = shared;
      this.#groups = groups;
    } else {
      const groups = Math.ceil((maxEntries * ROOM) / SLOTS);
      this.#groups = groups >= 1 ? groups : 1;
      this.#shared = new SharedArrayBuffer((HEADER_WORDS + this.#groups * GROUP_WORDS) * 4);
      const seeds = crypto.getRandomValues(new Int32Array(2));
      const header = new Int32Array(this.#shared, 0, HEADER_WORDS);
      header.set([MAGIC, this.#groups, seeds[0]!, seeds[1]!]);
    }
    this.#words = new Int32Array(this.#shared);
    this.#floats = new Float64Array(this.#shared);
    this.#seedA = this.#words[H_SEED_A]!;
    this.#seedB = this.#words[H_SEED_B]!;
  }

  /** The memory to hand to another thread (postMessage, workerData). */
  get shared(): SharedArrayBuffer {
    return this.#shared;
  }

  /** How many buckets the table has room for (twice `maxEntries`, in whole groups of 16). */
  get capacity(): number {
    return this.#groups * SLOTS;
  }

  /** Buckets held, by all threads: they are never removed, only replaced, so at most `capacity`. */
  get size(): number {
    return Atomics.load(this.#words, H_SIZE);
  }

  /** Takes one token from the bucket `id`; `now` in milliseconds. */
  take(id: string, limit: BucketLimit, now: number = Date.now()): TakeResult {
    const rate = limit.rate;
    if (rate <= 0) return OK;
    const burst = limit.burst;

    // The id's hash: two 32-bit lanes over its UTF-16 code units, two at a time, then mixed (murmur3's
    // finalizer), so that each bit of the id spreads over both halves.
    let a = this.#seedA;
    let b = this.#seedB;
    const length = id.length;
    let i = 0;
    for (; i + 1 < length; i += 2) {
      const word = id.charCodeAt(i) | (id.charCodeAt(i + 1) << 16);
      a = Math.imul(a ^ word, 0x9e3779b1);
      a = (a << 13) | (a >>> 19);
      b = Math.imul(b ^ word, 0x85ebca77);
      b = (b << 17) | (b >>> 15);
    }
    if (i < length) {
      const word = id.charCodeAt(i);
      a = Math.imul(a ^ word, 0x9e3779b1);
      b = Math.imul(b ^ word, 0x85ebca77);
    }
    a ^= length;
    a = Math.imul(a ^ (a >>> 16), 0x85ebca6b);
    a = Math.imul(a ^ (a >>> 13), 0xc2b2ae35);
    a ^= a >>> 16;
    b ^= length;
    b = Math.imul(b ^ (b >>> 16), 0x85ebca6b);
    b = Math.imul(b ^ (b >>> 13), 0xc2b2ae35);
    b ^= b >>> 16;
    if (a === 0 && b === 0) a = 1; // 0, 0 marks an empty slot

    const group = Math.floor(((b >>> 0) * this.#groups) / 0x1_0000_0000);
    const words = this.#words;
    const floats = this.#floats;
    const lock = HEADER_WORDS + group * GROUP_WORDS;
    const hashes = lock + HASHES_AT;
    const values = HEADER_WORDS / 2 + group * GROUP_FLOATS + FLOATS_AT;

    let held = Atomics.load(words, lock);
    if ((held & 1) !== 0 || Atomics.compareExchange(words, lock, held, held + 1) !== held) {
      held = acquire(words, lock);
    } else {
      held = (held + 1) | 0;
    }
    // Held: nothing but reads and writes of the memory until released (invariant 3).
    let slot = 0;
    for (; slot < SLOTS; slot++) {
      const lo = words[hashes + 2 * slot]!;
      const hi = words[hashes + 2 * slot + 1]!;
      if (lo === a && hi === b) break;
      if (lo === 0 && hi === 0) {
        words[hashes + 2 * slot] = a;
        words[hashes + 2 * slot + 1] = b;
        floats[values + 2 * slot] = burst;
        floats[values + 2 * slot + 1] = now;
        Atomics.add(words, H_SIZE, 1);
        break;
      }
    }
    if (slot === SLOTS) {
      // Full, and not here: replace the least recently used.
      let oldest = floats[values + 1]!;
      slot = 0;
      for (let s = 1; s < SLOTS; s++) {
        const at = floats[values + 2 * s + 1]!;
        if (at < oldest) {
          oldest = at;
          slot = s;
        }
      }
      words[hashes + 2 * slot] = a;
      words[hashes + 2 * slot + 1] = b;
      floats[values + 2 * slot] = burst;
      floats[values + 2 * slot + 1] = now;
    }
    const at = floats[values + 2 * slot + 1]!;
    let tokens = Math.min(burst, floats[values + 2 * slot]! + (now > at ? ((now - at) / 1000) * rate : 0));
    const ok = tokens >= 1;
    if (ok) tokens -= 1;
    floats[values + 2 * slot] = tokens;
    if (now > at) floats[values + 2 * slot + 1] = now;
    Atomics.compareExchange(words, lock, held, (held + 1) | 0);

    if (ok) return OK;
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - tokens) / rate)) };
  }
}

/**
 * Takes the lock word at `lock` when another thread holds it: spins while the holder changes, sleeps a
 * little while one holder keeps it (it was descheduled), and takes over a word one holder kept for
 * STUCK_MS. Returns the value that marks it held by this call.
 */
function acquire(words: Int32Array, lock: number): number {
  let seen = Atomics.load(words, lock);
  let spins = 0;
  let since = 0;
  for (;;) {
    if ((seen & 1) === 0) {
      const held = (seen + 1) | 0;
      if (Atomics.compareExchange(words, lock, seen, held) === seen) return held;
    } else if (++spins % 1024 === 0) {
      const now = performance.now();
      if (since === 0) since = now;
      else if (now - since > STUCK_MS) {
        const held = (seen + 2) | 0;
        if (Atomics.compareExchange(words, lock, seen, held) === seen) return held;
      }
      Atomics.wait(words, lock, seen, 0.5);
    }
    const value = Atomics.load(words, lock);
    if (value !== seen) {
      seen = value;
      spins = 0;
      since = 0;
    }
  }
}
