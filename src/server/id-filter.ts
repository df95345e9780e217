/**
 * A Bloom filter of the event ids a dedupe store holds, so that checking a new id — nearly every id — costs
 * no database read. "No" is certain; "maybe" is confirmed in the database. Two generations rotate every
 * `rotateMs` (the longest dedupe window): an id stays in the filter at least that long, and older ones
 * drop out with their generation. Each generation has a fixed size (8 MiB: about 7 million ids at a 1%
 * false-positive rate); past that, more lookups go to the database, and answers stay correct.
 */

const BITS = 2 ** 26;
const HASHES = 7;

/** Two 32-bit FNV-1a style hashes of a string, for double hashing. */
function hashes(text: string): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  a ^= a >>> 13;
  a = Math.imul(a, 0xc2b2ae35);
  a ^= a >>> 16;
  return [a >>> 0, (b | 1) >>> 0];
}

class Bits {
  readonly #words = new Uint32Array(BITS / 32);

  add(h1: number, h2: number): void {
    for (let i = 0; i < HASHES; i++) {
      const bit = (h1 + Math.imul(i, h2)) >>> 0;
      const index = bit & (BITS - 1);
      this.#words[index >>> 5]! |= 1 << (index & 31);
    }
  }

  has(h1: number, h2: number): boolean {
    for (let i = 0; i < HASHES; i++) {
      const bit = (h1 + Math.imul(i, h2)) >>> 0;
      const index = bit & (BITS - 1);
      if ((this.#words[index >>> 5]! & (1 << (index & 31))) === 0) return false;
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

  add(key: string): void {
    this.#rotate();
    const [h1, h2] = hashes(key);
    this.#current.add(h1, h2);
  }

  /** False when `key` was certainly not added within the last `rotateMs`. */
  mayHave(key: string): boolean {
    this.#rotate();
    const [h1, h2] = hashes(key);
    return this.#current.has(h1, h2) || (this.#previous?.has(h1, h2) ?? false);
  }
}
