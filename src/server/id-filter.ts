/**
 * A Bloom filter of the event ids a dedupe store holds, so that checking a new id — nearly every id — costs
 * no database read. "No" is certain; "maybe" is confirmed in the database. Two generations rotate every
 * `rotateMs` (the longest dedupe window): an id stays in the filter at least that long, and older ones
 * drop out with their generation. Each generation has a fixed size (8 MiB: about 7 million ids at a 1-2%
 * false-positive rate); past that, more lookups go to the database, and answers stay correct. The filter
 * is blocked (an id's bits share one cache line): a lookup costs one cache miss, not seven.
 */

const BITS = 2 ** 26;
const HASHES = 7;
/** Bits of a block: 512, one 64-byte cache line, so that a lookup touches one line instead of seven. */
const BLOCK_WORDS = 16;
const BLOCKS = BITS / 32 / BLOCK_WORDS;

// The two hashes of the last key, without allocating a pair per call.
let h1 = 0;
let h2 = 0;

/** Two 32-bit FNV-1a style hashes of `stream` NUL `id`, for double hashing (into h1, h2). */
function hash(stream: string, id: string): void {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ (stream.length + 1 + id.length);
  for (let i = 0; i < stream.length; i++) {
    const c = stream.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  a = Math.imul(a, 0x01000193);
  b = Math.imul(b, 0x5bd1e995);
  b ^= b >>> 15;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  a ^= a >>> 13;
  a = Math.imul(a, 0xc2b2ae35);
  a ^= a >>> 16;
  h1 = a >>> 0;
  h2 = (b | 1) >>> 0;
}

/** A blocked Bloom filter: h1 picks a 512-bit block, h2 the HASHES bits in it. */
class Bits {
  readonly #words = new Uint32Array(BITS / 32);

  add(): void {
    const base = (h1 % BLOCKS) * BLOCK_WORDS;
    const step = (h1 >>> 17) | 1;
    for (let i = 0; i < HASHES; i++) {
      const bit = (h2 + Math.imul(i, step)) & 511;
      this.#words[base + (bit >>> 5)]! |= 1 << (bit & 31);
    }
  }

  has(): boolean {
    const base = (h1 % BLOCKS) * BLOCK_WORDS;
    const step = (h1 >>> 17) | 1;
    for (let i = 0; i < HASHES; i++) {
      const bit = (h2 + Math.imul(i, step)) & 511;
      if ((this.#words[base + (bit >>> 5)]! & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  }
}

export class IdFilter {
  readonly #rotateMs: number;
  readonly #now: () => number;
  #current = new Bits();
  #previous: Bits | undefined;
  #since: number;

  constructor(rotateMs: number, now: () => number = Date.now) {
    this.#rotateMs = Math.max(1, rotateMs);
    this.#now = now;
    this.#since = now();
  }

  #rotate(): void {
    const now = this.#now();
    if (now - this.#since < this.#rotateMs) return;
    // Skipped generations (an idle server) hold nothing recent: both go.
    this.#previous = now - this.#since < 2 * this.#rotateMs ? this.#current : undefined;
    this.#current = new Bits();
    this.#since = now;
  }

  add(stream: string, id: string): void {
    this.#rotate();
    hash(stream, id);
    this.#current.add();
  }

  /** False when the id was certainly not added within the last `rotateMs`. */
  mayHave(stream: string, id: string): boolean {
    this.#rotate();
    hash(stream, id);
    return this.#current.has() || (this.#previous?.has() ?? false);
  }

  /** `mayHave`, then `add`: for an id about to be stored, hashed once. */
  mayHaveThenAdd(stream: string, id: string): boolean {
    this.#rotate();
    hash(stream, id);
    if (this.#current.has()) return true;
    this.#current.add();
    return this.#previous?.has() ?? false;
  }
}
