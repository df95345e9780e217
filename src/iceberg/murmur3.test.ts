import assert from 'node:assert/strict';
import { it } from 'node:test';
import { murmur3Hash32 } from './murmur3.ts';

const bytes = (hex: string) => Uint8Array.from(Buffer.from(hex, 'hex'));

it('hashes every tail length like mmh3.hash (pyiceberg)', () => {
  // mmh3.hash(bytes(range(n))) for n = 0..8: covers 0–3 tail bytes and one or two blocks.
  const expected = [
    0, 1364076727, 1893835456, 1372901591, -188683207, -861610805, -1877163262, -1921103596, -782117261,
  ];
  expected.forEach((hash, n) => {
    assert.equal(murmur3Hash32(Uint8Array.from({ length: n }, (_, i) => i)), hash, `length ${n}`);
  });
});

it('matches the spec and mmh3 on text', () => {
  assert.equal(murmur3Hash32(new TextEncoder().encode('iceberg')), 1210000089);
  assert.equal(murmur3Hash32(new TextEncoder().encode('hello')), 613153351);
  assert.equal(murmur3Hash32(bytes('c3bce282acf09d849e')), -1653499619); // "ü€𝄞" as UTF-8
});

it('returns a signed 32-bit integer', () => {
  const hash = murmur3Hash32(bytes('00010203'));
  assert.equal(hash, -188683207);
  assert.equal(hash | 0, hash);
});
