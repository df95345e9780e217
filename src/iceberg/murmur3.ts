/**
 * MurmurHash3, x86 32-bit variant: the hash behind Iceberg's bucket transform (spec, Appendix B).
 * Returns a signed 32-bit integer, as Guava's `murmur3_32` and Python's `mmh3.hash` do, so values can be
 * compared with theirs directly.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

export function murmur3Hash32(bytes: Uint8Array, seed = 0): number {
  let h = seed | 0;
  const length = bytes.length;
  const whole = length - (length % 4);

  for (let i = 0; i < whole; i += 4) {
    // Blocks are read little-endian.
    const k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24) | 0;
    h ^= mixK(k);
    h = Math.imul(rotl(h, 13), 5) + 0xe6546b64;
  }

  const rest = length - whole;
  if (rest > 0) {
    let tail = 0;
    if (rest === 3) tail ^= bytes[whole + 2]! << 16;
    if (rest >= 2) tail ^= bytes[whole + 1]! << 8;
    tail ^= bytes[whole]!;
    h ^= mixK(tail);
  }

  h ^= length;
  return finalMix(h);
}

function mixK(k: number): number {
  return Math.imul(rotl(Math.imul(k, C1), 15), C2);
}

/** Rotates a 32-bit word left (MurmurHash3's ROTL32; the dedupe fingerprints use it too). */
export function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

/** MurmurHash3's fmix32 finalizer. */
export function finalMix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}
