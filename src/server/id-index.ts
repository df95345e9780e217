/**
 * The event ids the streams accepted, in memory, exactly: a 96-bit fingerprint of each stream and id in
 * open-addressing tables, behind a Bloom filter that answers "certainly not" for a new id — nearly every
 * id — in one cache miss.
 *
 * Why memory and not a database: ids are random (UUIDs, mostly), and a b-tree keyed by them rewrites a
 * page for nearly every id it inserts once it is larger than a commit's worth of ids — in SQLite that was
 * 15–40 µs and 4 KiB of writes per id, five times the cost of everything else ingest does. The fingerprint
 * is MurmurHash3 (x86, 128 bits) of the id's UTF-16 text, started from the hash of the stream name, of
 * which 96 bits are kept: two
 * different ids share one with a probability of about n / 2^96 per lookup (1e-22 for ten million ids), far
 * below the rate of undetected hardware errors. The store persists the fingerprints in a journal
 * (dedupe.ts), which fixes the hash: changing it would forget every id remembered.
 *
 * Ids are kept in generations, each a table of at most GENERATION_IDS ids and at most `periodMs` long (so
 * that growing one pauses for milliseconds, not seconds); a generation is dropped whole once its newest id
 * is past the window, and the oldest ones early when the index holds more than `maxIds` (see `forgotEarly`).
 *
 * The filter cannot forget one id: it is replaced whole, by a new one that takes the new ids while the
 * previous answers for the ids it has. That happens when it is a window old, and when it has taken as
 * many ids as the index holds at most (`maxIds`, or one generation if that is more) — by then none of the
 * ids before it can be held, as the index holds the newest ids only. Without the second, a server that
 * takes more than `maxIds` ids a window would overfill the filter until it answers "maybe" for every id,
 * each then searched for in every table.
 */

import { finalMix, rotl } from '../iceberg/murmur3.ts';

const C1 = 0x239b961b;
const C2 = 0xab0e9789;
const C3 = 0x38b34ae5;
const C4 = 0xa1e38b93;
const SEED = 0x5f3759df;

/** The fingerprint `fingerprint` computed last: words 0–2 are kept, word 3 feeds the Bloom filter. */
export const print = new Uint32Array(4);

/** The code units of `text` at `i` and `i + 1` (when there is one) as a little-endian word. */
function tailWord(text: string, i: number): number {
  return text.charCodeAt(i) | (i + 1 < text.length ? text.charCodeAt(i + 1) << 16 : 0);
}

/** MurmurHash3 x86 128 of the UTF-16LE bytes of `text`, from the state `seed`, into `print`. */
function hashText(text: string, seed: ArrayLike<number>): void {
  const n = text.length;
  let h1 = seed[0]!;
  let h2 = seed[1]!;
  let h3 = seed[2]!;
  let h4 = seed[3]!;
  let i = 0;
  // 16 bytes (8 code units) a block.
  for (const end = n - (n & 7); i < end; i += 8) {
    let k1 = text.charCodeAt(i) | (text.charCodeAt(i + 1) << 16);
    let k2 = text.charCodeAt(i + 2) | (text.charCodeAt(i + 3) << 16);
    let k3 = text.charCodeAt(i + 4) | (text.charCodeAt(i + 5) << 16);
    let k4 = text.charCodeAt(i + 6) | (text.charCodeAt(i + 7) << 16);
    k1 = Math.imul(rotl(Math.imul(k1, C1), 15), C2);
    h1 ^= k1;
    h1 = (Math.imul((rotl(h1, 19) + h2) | 0, 5) + 0x561ccd1b) | 0;
    k2 = Math.imul(rotl(Math.imul(k2, C2), 16), C3);
    h2 ^= k2;
    h2 = (Math.imul((rotl(h2, 17) + h3) | 0, 5) + 0x0bcaa747) | 0;
    k3 = Math.imul(rotl(Math.imul(k3, C3), 17), C4);
    h3 ^= k3;
    h3 = (Math.imul((rotl(h3, 15) + h4) | 0, 5) + 0x96cd1c35) | 0;
    k4 = Math.imul(rotl(Math.imul(k4, C4), 18), C1);
    h4 ^= k4;
    h4 = (Math.imul((rotl(h4, 13) + h1) | 0, 5) + 0x32ac3b17) | 0;
  }
  const left = n - i;
  if (left > 6) h4 ^= Math.imul(rotl(Math.imul(tailWord(text, i + 6), C4), 18), C1);
  if (left > 4) h3 ^= Math.imul(rotl(Math.imul(tailWord(text, i + 4), C3), 17), C4);
  if (left > 2) h2 ^= Math.imul(rotl(Math.imul(tailWord(text, i + 2), C2), 16), C3);
  if (left > 0) h1 ^= Math.imul(rotl(Math.imul(tailWord(text, i), C1), 15), C2);
  const bytes = 2 * n;
  h1 ^= bytes;
  h2 ^= bytes;
  h3 ^= bytes;
  h4 ^= bytes;
  h1 = (h1 + h2 + h3 + h4) | 0;
  h2 = (h2 + h1) | 0;
  h3 = (h3 + h1) | 0;
  h4 = (h4 + h1) | 0;
  h1 = finalMix(h1);
  h2 = finalMix(h2);
  h3 = finalMix(h3);
  h4 = finalMix(h4);
  h1 = (h1 + h2 + h3 + h4) | 0;
  print[0] = h1;
  print[1] = (h2 + h1) | 0;
  print[2] = (h3 + h1) | 0;
  print[3] = (h4 + h1) | 0;
}

const SEEDS = new Map<string, Uint32Array>();

/** The hash of a stream's name: the state its ids' fingerprints start from (128 bits, cached). */
export function seedOf(stream: string): Uint32Array {
  let seed = SEEDS.get(stream);
  if (seed === undefined) {
    // Four different lanes: with one seed in all four (MurmurHash3's own), a name or an id shorter than a
    // block would leave three lanes equal, and words 1 and 2 of short ids' fingerprints the same.
    hashText(stream, [SEED, SEED ^ 0x9e3779b9, SEED ^ 0x85ebca6b, SEED ^ 0xc2b2ae35]);
    seed = print.slice();
    // Stream names are configured, so few; a bound all the same.
    if (SEEDS.size < 10_000) SEEDS.set(stream, seed);
  }
  return seed;
}

/**
 * The fingerprint of `id` in the stream whose seed is `seed` (`seedOf`) into `print`: MurmurHash3 x86 128
 * of the id's UTF-16LE bytes, from the hash of the stream name. Word 2 is never 0, so that a table slot
 * holding 0 there is empty.
 */
export function fingerprint(seed: Uint32Array, id: string): void {
  hashText(id, seed);
  setPrint(print[0]!, print[1]!, print[2] === 0 ? 1 : print[2]!);
}

/**
 * Sets `print` to a fingerprint (words 0–2, as `fingerprint` made them); word 3, the Bloom filter's, is
 * taken from them, so that a fingerprint read back from the journal lands in the same block.
 */
export function setPrint(a: number, b: number, c: number): void {
  print[0] = a;
  print[1] = b;
  print[2] = c;
  print[3] = Math.imul(a ^ c, 0x9e3779b1);
}

const BLOOM_HASHES = 7;
/** Bits of a block: 512, one 64-byte cache line, so that a lookup touches one line instead of seven. */
const BLOCK_WORDS = 16;

/**
 * A blocked Bloom filter of `bits` bits (sized for the ids the index holds at most, see `bloomBits`; past
 * that more lookups reach the tables, and answers stay exact): word 3 of the fingerprint picks a block,
 * word 1 the bits in it.
 */
class Bloom {
  readonly #words: Uint32Array;
  readonly #blocks: number;

  constructor(bits: number) {
    this.#words = new Uint32Array(bits / 32);
    this.#blocks = bits / 32 / BLOCK_WORDS;
  }

  get bytes(): number {
    return this.#words.byteLength;
  }

  add(): void {
    const base = ((print[3]! >>> 0) % this.#blocks) * BLOCK_WORDS;
    const step = (print[3]! >>> 17) | 1;
    for (let i = 0; i < BLOOM_HASHES; i++) {
      const bit = (print[1]! + Math.imul(i, step)) & 511;
      this.#words[base + (bit >>> 5)]! |= 1 << (bit & 31);
    }
  }

  has(): boolean {
    const base = ((print[3]! >>> 0) % this.#blocks) * BLOCK_WORDS;
    const step = (print[3]! >>> 17) | 1;
    for (let i = 0; i < BLOOM_HASHES; i++) {
      const bit = (print[1]! + Math.imul(i, step)) & 511;
      if ((this.#words[base + (bit >>> 5)]! & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  }
}

/**
 * The filter's size for `maxIds` ids: 13.4 bits an id (16 MiB for the default 10 million), from 1 MiB to
 * 32 MiB, in whole blocks. A "maybe" searches every generation (up to 40 of them, a cache miss each), and a
 * full index asks two filters (the previous one too): with 6.7 bits an id 5–10% of new ids were searched
 * once the index held its 10 million, and an id cost 0.83–0.89 µs instead of 0.5; with 13.4 bits, 1–2% and
 * 0.61–0.68 µs (scratch micro-benchmark, 25 million new ids through `hasPrintThenFilter` and `addPrint`).
 * Lookups that miss cost one cache line whatever the size.
 */
function bloomBits(maxIds: number): number {
  const bits = Math.min(2 ** 28, Math.max(2 ** 23, 13.4 * maxIds));
  return Math.ceil(bits / 512) * 512;
}

/**
 * Ids a generation holds at most: its table then has 512 Ki slots (6 MiB), and grows in milliseconds; an
 * eighth of `maxIds` when that is less, so that forgetting the oldest keeps the index near its bound.
 */
export const GENERATION_IDS = 256 * 1024;
const FIRST_SLOTS = 1024;

/**
 * A set of fingerprints (words 0–2 of `print`) by linear probing, at most half full: a generation of the
 * index, or the ids one round of appends admitted (dedupe.ts), so that a second copy in the same round is
 * a duplicate before the first is held.
 */
export class PrintSet {
  #slots = new Uint32Array(3 * FIRST_SLOTS);
  #mask = FIRST_SLOTS - 1;
  #count = 0;

  /** Fingerprints held. */
  get count(): number {
    return this.#count;
  }

  /** The table's size in bytes. */
  get bytes(): number {
    return this.#slots.byteLength;
  }

  has(): boolean {
    const slots = this.#slots;
    for (let s = print[0]! & this.#mask; ; s = (s + 1) & this.#mask) {
      const stored = slots[3 * s + 2]!;
      if (stored === 0) return false;
      if (stored === print[2] && slots[3 * s] === print[0] && slots[3 * s + 1] === print[1]) return true;
    }
  }

  /** Adds the fingerprint in `print` (not there yet: the caller checked). */
  add(): void {
    if (2 * (this.#count + 1) > this.#mask + 1) {
      const old = this.#slots;
      this.#alloc(2 * (this.#mask + 1));
      for (let at = 0; at < old.length; at += 3)
        if (old[at + 2] !== 0) this.#put(old[at]!, old[at + 1]!, old[at + 2]!);
    }
    this.#put(print[0]!, print[1]!, print[2]!);
    this.#count++;
  }

  /** Empties it; a table much larger than its last contents needed is made smaller, so emptying stays cheap. */
  clear(): void {
    if (this.#count === 0) return;
    const needed = Math.max(FIRST_SLOTS, 2 ** Math.ceil(Math.log2(2 * this.#count)));
    if (this.#mask + 1 > 4 * needed) this.#alloc(needed);
    else this.#slots.fill(0);
    this.#count = 0;
  }

  #alloc(size: number): void {
    this.#slots = new Uint32Array(3 * size);
    this.#mask = size - 1;
  }

  #put(a: number, b: number, c: number): void {
    const slots = this.#slots;
    let s = a & this.#mask;
    while (slots[3 * s + 2] !== 0) s = (s + 1) & this.#mask;
    slots[3 * s] = a;
    slots[3 * s + 1] = b;
    slots[3 * s + 2] = c;
  }
}

/** One generation of the index: a set of fingerprints, and when they were seen. */
class Generation extends PrintSet {
  /** When its first and newest ids were seen (ms). */
  readonly since: number;
  last: number;

  constructor(since: number) {
    super();
    this.since = since;
    this.last = since;
  }

  /** Adds the fingerprint in `print` (not there yet: the caller checked), seen at `at`. */
  addAt(at: number): void {
    this.add();
    if (at > this.last) this.last = at;
  }
}

export class IdIndex {
  readonly #periodMs: number;
  readonly #maxIds: number;
  readonly #now: () => number;
  /** Oldest first; the last takes new ids. */
  #generations: Generation[] = [];
  #count = 0;
  /**
   * Two Bloom generations, each at most `#bloomMs` long and `#rotateIds` ids: an id stays in the filter
   * at least a window, or until `#rotateIds` ids came after it.
   */
  readonly #bloomMs: number;
  readonly #bloomBits: number;
  /** Ids a generation holds at most (GENERATION_IDS, or less for a small `maxIds`). */
  readonly #generationIds: number;
  #bloom: Bloom;
  /** Counts the filter's rotations: an id added to the filter in the same epoch is still in the current one. */
  #bloomEpoch = 0;
  #previousBloom: Bloom | undefined;
  #bloomSince: number;
  /** Ids added to the tables since the current filter began. */
  #bloomIds = 0;
  /** The most ids held (`maxIds`, or one generation when that is more): the filter rotates after as many. */
  readonly #rotateIds: number;
  #forgotEarly = 0;
  #searches = 0;

  /**
   * `windowMs`: the longest dedupe window (ids older are forgotten); `periodMs`: the longest a generation
   * lasts; `maxIds`: the most ids held (then the oldest generations go, however recent).
   */
  constructor(options: { windowMs: number; periodMs: number; maxIds: number; now?: () => number }) {
    this.#now = options.now ?? Date.now;
    this.#periodMs = Math.max(1, options.periodMs);
    this.#bloomMs = Math.max(1, options.windowMs);
    this.#maxIds = options.maxIds;
    this.#bloomSince = this.#now();
    this.#bloomBits = bloomBits(options.maxIds);
    this.#bloom = new Bloom(this.#bloomBits);
    this.#generationIds = Math.max(1024, Math.min(GENERATION_IDS, Math.floor(options.maxIds / 8)));
    this.#rotateIds = Math.max(this.#maxIds, this.#generationIds);
  }

  /** Ids held. */
  get size(): number {
    return this.#count;
  }

  /** Bytes of memory the tables and filters take. */
  get bytes(): number {
    let bytes = this.#bloom.bytes + (this.#previousBloom?.bytes ?? 0);
    for (const generation of this.#generations) bytes += generation.bytes;
    return bytes;
  }

  /** Ids forgotten before their window was over, because the index held `maxIds` (since the start). */
  get forgotEarly(): number {
    return this.#forgotEarly;
  }

  /** Lookups the filter answered "maybe" for, which searched the tables (since the start). */
  get searches(): number {
    return this.#searches;
  }

  /** Whether `stream` accepted `id` at or after `since` (or, at most a generation earlier). */
  has(stream: string, id: string, since: number): boolean {
    this.rotate();
    fingerprint(seedOf(stream), id);
    return this.hasPrint(since);
  }

  /** `has` for the fingerprint in `print` (call `rotate` first, once for many). */
  hasPrint(since: number): boolean {
    if (!this.#bloom.has() && !(this.#previousBloom?.has() ?? false)) return false;
    return this.#held(since);
  }

  /**
   * `hasPrint`, and the fingerprint goes into the Bloom filter (an id about to be added: see
   * `addPrint`'s `unknown`). `known` is set to whether the filter already said maybe.
   */
  hasPrintThenFilter(since: number, known: { maybe: boolean }): boolean {
    const maybe = this.#bloom.has() || (this.#previousBloom?.has() ?? false);
    known.maybe = maybe;
    if (!maybe) {
      this.#bloom.add();
      return false;
    }
    return this.#held(since);
  }

  #held(since: number): boolean {
    this.#searches++;
    const generations = this.#generations;
    for (let g = generations.length - 1; g >= 0; g--) {
      const generation = generations[g]!;
      if (generation.last >= since && generation.has()) return true;
    }
    return false;
  }

  /** Remembers that `stream` accepted `id` at `at` (default now). */
  add(stream: string, id: string, at = this.#now()): void {
    this.rotate();
    fingerprint(seedOf(stream), id);
    this.addPrint(at);
  }

  /**
   * `add` for the fingerprint in `print` (call `rotate` first, once for many). An id is held once per
   * generation: added again later — accepted anew once its window was over, or read back twice — it goes
   * into the current generation, and is remembered from then on. `unknown`: the filter said "certainly
   * not" for it (`hasPrintThenFilter`) and nothing added it since, so the current table is not searched;
   * `filteredIn`: the filter's epoch then (`filterEpoch`) — when it is still the current one, that has it.
   */
  addPrint(at: number, unknown = false, filteredIn = -1): void {
    // Dated now, not `at`: ids read back (recovery, the journal) come out of time order.
    if (this.#bloomIds >= this.#rotateIds) this.#rotateFilter(this.#now(), true);
    const known = !unknown && (this.#bloom.has() || (this.#previousBloom?.has() ?? false));
    if (!(unknown && filteredIn === this.#bloomEpoch)) this.#bloom.add();
    let current = this.#generations.at(-1);
    if (!current || current.count >= this.#generationIds || at - current.since >= this.#periodMs) {
      current = new Generation(at);
      this.#generations.push(current);
      this.#forget(this.#now() - this.#bloomMs);
    } else if (known && current.has()) {
      if (at > current.last) current.last = at;
      return;
    }
    current.addAt(at);
    this.#count++;
    this.#bloomIds++;
    if (this.#count > this.#maxIds && this.#generations.length > 1) {
      const oldest = this.#generations.shift()!;
      this.#count -= oldest.count;
      this.#forgotEarly += oldest.count;
    }
  }

  /** Drops the generations whose newest id is older than `before`. */
  #forget(before: number): void {
    while (this.#generations.length > 1 && this.#generations[0]!.last < before)
      this.#count -= this.#generations.shift()!.count;
  }

  /** The Bloom filter's epoch (see `addPrint`). */
  get filterEpoch(): number {
    return this.#bloomEpoch;
  }

  /** Starts a new Bloom generation when the current one is a window old. */
  rotate(now = this.#now()): void {
    if (now - this.#bloomSince < this.#bloomMs) return;
    // Skipped generations (an idle server) hold nothing recent: both go.
    this.#rotateFilter(now, now - this.#bloomSince < 2 * this.#bloomMs);
  }

  /** A new filter takes the new ids; the current one answers for those it has, or (`keep` false) goes. */
  #rotateFilter(now: number, keep: boolean): void {
    this.#previousBloom = keep ? this.#bloom : undefined;
    this.#bloom = new Bloom(this.#bloomBits);
    this.#bloomEpoch++;
    this.#bloomSince = now;
    this.#bloomIds = 0;
  }
}
