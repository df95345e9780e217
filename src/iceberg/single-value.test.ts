import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTributaryError } from '../errors.ts';
import {
  compareCodePoints,
  compareValues,
  fromBinary,
  toBinary,
  truncateLowerBound,
  truncateUpperBound,
  unscaledToBytes,
} from './single-value.ts';
import type { IcebergValue, PrimitiveType } from './types.ts';

const label = (value: IcebergValue): string =>
  value instanceof Uint8Array
    ? Buffer.from(value).toString('hex')
    : JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const bytes = (text: string) => Uint8Array.from(Buffer.from(text, 'hex'));

/** mulberry32: a small seeded PRNG, so failures reproduce. */
function prng(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (min: number, max: number) => min + Math.floor(next() * (max - min + 1));
  const randomBytes = (length: number) => Uint8Array.from({ length }, () => int(0, 255));
  const bigBits = (bits: number) => {
    let value = 0n;
    for (let i = 0; i < bits; i += 8) value = (value << 8n) | BigInt(int(0, 255));
    return value;
  };
  return { next, int, randomBytes, bigBits };
}

describe('toBinary and fromBinary (Appendix D)', () => {
  it('encode as pyiceberg conversions.to_bytes does', () => {
    const cases: Array<[PrimitiveType, IcebergValue, string]> = [
      ['boolean', true, '01'],
      ['boolean', false, '00'],
      ['int', 34, '22000000'],
      ['long', -2n, 'feffffffffffffff'],
      ['float', Math.fround(0.1), 'cdcccc3d'],
      ['double', -2.5, '00000000000004c0'],
      ['date', 17486, '4e440000'],
      ['time', 81068000000n, '008307e012000000'],
      ['timestamp', 1510871468000000n, '00c3262d215e0500'],
      ['string', 'ü€𝄞', 'c3bce282acf09d849e'],
      ['uuid', 'f79c3e09-677c-4bbd-a479-3f349cb785e7', 'f79c3e09677c4bbda4793f349cb785e7'],
      ['fixed[3]', bytes('ff0080'), 'ff0080'],
      ['binary', bytes(''), ''],
      ['decimal(10, 2)', 1420n, '058c'],
    ];
    for (const [type, value, expected] of cases) {
      assert.equal(hex(toBinary(type, value)), expected, `${type} ${label(value)}`);
      assert.deepEqual(fromBinary(type, bytes(expected)), value);
    }
  });

  it('writes decimals in the fewest two’s-complement bytes (as BigInteger.toByteArray)', () => {
    const cases: Array<[bigint, string]> = [
      [0n, '00'],
      [-1n, 'ff'],
      [127n, '7f'],
      [128n, '0080'],
      [-128n, '80'],
      [-129n, 'ff7f'],
      [255n, '00ff'],
      [32767n, '7fff'],
      [-32768n, '8000'],
      [10n ** 38n - 1n, '4b3b4ca85a86c47a098a223fffffffff'],
      [-(10n ** 38n - 1n), 'b4c4b357a5793b85f675ddc000000001'],
    ];
    for (const [unscaled, expected] of cases) {
      assert.equal(hex(unscaledToBytes(unscaled)), expected, String(unscaled));
      assert.equal(fromBinary('decimal(38, 0)', bytes(expected)), unscaled);
    }
  });

  it('reads the 4-byte bounds of columns promoted from int and float', () => {
    assert.equal(fromBinary('long', bytes('feffffff')), -2n);
    assert.equal(fromBinary('double', bytes('0000c03f')), 1.5);
  });

  it('rejects values of the wrong representation and corrupt bytes', () => {
    const invalid = (fn: () => unknown) =>
      assert.throws(fn, (error) => isTributaryError(error, 'INVALID_INPUT'));
    invalid(() => toBinary('long', 1));
    invalid(() => toBinary('int', 2 ** 31));
    invalid(() => toBinary('int', 1.5));
    invalid(() => toBinary('time', -1n));
    invalid(() => toBinary('decimal(3, 0)', 1000n));
    invalid(() => toBinary('uuid', 'not-a-uuid'));
    invalid(() => toBinary('fixed[4]', bytes('0102')));
    invalid(() => fromBinary('int', bytes('0102')));
    invalid(() => fromBinary('uuid', bytes('00')));
    invalid(() => fromBinary('decimal(9, 2)', bytes('')));
    assert.throws(
      () => toBinary('timestamp_ns' as PrimitiveType, 1n),
      (error) => isTributaryError(error, 'ICEBERG_UNSUPPORTED'),
    );
  });

  it('round-trips random values of every primitive type (seeded)', () => {
    const random = prng(20240131);
    const codePoint = () => {
      const pick = random.int(0, 3);
      if (pick === 0) return random.int(0x20, 0x7e);
      if (pick === 1) return random.int(0xa0, 0xd7ff);
      if (pick === 2) return random.int(0xe000, 0xffff);
      return random.int(0x10000, 0x10ffff);
    };
    const generators: Record<string, () => [PrimitiveType, IcebergValue]> = {
      boolean: () => ['boolean', random.next() < 0.5],
      int: () => ['int', random.int(-(2 ** 31), 2 ** 31 - 1)],
      long: () => ['long', BigInt.asIntN(64, random.bigBits(64))],
      float: () => {
        const view = new DataView(random.randomBytes(4).buffer);
        return ['float', view.getFloat32(0)];
      },
      double: () => {
        const view = new DataView(random.randomBytes(8).buffer);
        return ['double', view.getFloat64(0)];
      },
      date: () => ['date', random.int(-(2 ** 31), 2 ** 31 - 1)],
      time: () => ['time', random.bigBits(40) % 86_400_000_000n],
      timestamp: () => ['timestamp', BigInt.asIntN(64, random.bigBits(64))],
      timestamptz: () => ['timestamptz', BigInt.asIntN(64, random.bigBits(64))],
      string: () => ['string', String.fromCodePoint(...Array.from({ length: random.int(0, 24) }, codePoint))],
      uuid: () => {
        const h = hex(random.randomBytes(16));
        return [
          'uuid',
          `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`,
        ];
      },
      fixed: () => {
        const length = random.int(1, 32);
        return [`fixed[${length}]`, random.randomBytes(length)];
      },
      binary: () => ['binary', random.randomBytes(random.int(0, 40))],
      decimal: () => {
        const precision = random.int(1, 38);
        const scale = random.int(0, precision);
        const limit = 10n ** BigInt(precision);
        const unscaled = random.bigBits(128) % limit;
        return [`decimal(${precision}, ${scale})`, random.next() < 0.5 ? -unscaled : unscaled];
      },
    };
    for (const [name, generate] of Object.entries(generators)) {
      for (let i = 0; i < 300; i += 1) {
        const [type, value] = generate();
        const back = fromBinary(type, toBinary(type, value));
        if (typeof value === 'number')
          assert.ok(Object.is(back, value), `${name}: ${value} came back as ${label(back)}`);
        else assert.deepEqual(back, value, `${name} ${type}`);
        assert.equal(compareValues(type, value, back), 0);
      }
    }
  });
});

describe('compareValues', () => {
  it('orders strings by code point, as their UTF-8 bytes', () => {
    // JS `<` puts U+1D11E (a surrogate pair) before U+FFFD; Iceberg puts it after.
    assert.ok('\u{1D11E}' < '\uFFFD');
    assert.equal(compareValues('string', '\u{1D11E}', '\uFFFD'), 1);
    assert.equal(compareValues('string', 'abc', 'abd'), -1);
    assert.equal(compareValues('string', 'ab', 'abc'), -1);
    assert.equal(compareValues('string', 'é', 'é'), 0);

    const random = prng(7);
    const text = () =>
      String.fromCodePoint(
        ...Array.from({ length: random.int(0, 4) }, () =>
          random.next() < 0.5 ? random.int(0xe000, 0xffff) : random.int(0x10000, 0x10030),
        ),
      );
    for (let i = 0; i < 500; i += 1) {
      const a = text();
      const b = text();
      const byBytes = Math.sign(Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
      assert.equal(compareCodePoints(a, b), byBytes, `${a} vs ${b}`);
    }
  });

  it('orders binary as unsigned bytes and UUIDs as unsigned 128-bit numbers', () => {
    assert.equal(compareValues('binary', bytes('ff'), bytes('01')), 1);
    assert.equal(compareValues('binary', bytes('01'), bytes('0100')), -1);
    assert.equal(compareValues('fixed[1]', bytes('80'), bytes('7f')), 1);
    assert.equal(
      compareValues('uuid', 'f79c3e09-677c-4bbd-a479-3f349cb785e7', '0f9c3e09-677c-4bbd-a479-3f349cb785e7'),
      1,
    );
  });

  it('orders floating point by IEEE 754 totalOrder', () => {
    const negativeNaN = new DataView(bytes('fff8000000000000').buffer).getFloat64(0);
    const sorted = [negativeNaN, -Infinity, -1, -0, 0, 1e-300, Infinity, NaN];
    for (let i = 0; i < sorted.length - 1; i += 1) {
      assert.equal(
        compareValues('double', sorted[i]!, sorted[i + 1]!),
        -1,
        `${sorted[i]} < ${sorted[i + 1]}`,
      );
    }
    assert.equal(compareValues('float', NaN, NaN), 0);
  });

  it('orders numbers, dates, timestamps and decimals numerically', () => {
    assert.equal(compareValues('int', -5, 3), -1);
    assert.equal(compareValues('long', 10n, -(2n ** 63n)), 1);
    assert.equal(compareValues('decimal(9, 2)', -100n, -99n), -1);
    assert.equal(compareValues('boolean', false, true), -1);
  });
});

describe('bound truncation', () => {
  it('keeps the first 16 code points of a lower bound', () => {
    assert.equal(truncateLowerBound('string', 'abcdefghijklmnopqrstuvwxyz'), 'abcdefghijklmnop');
    assert.equal(truncateLowerBound('string', '𝄞𝄞𝄞', 2), '𝄞𝄞');
    assert.deepEqual(truncateLowerBound('binary', bytes('0102030405'), 2), bytes('0102'));
    assert.equal(truncateLowerBound('long', 5n), 5n);
  });

  it('increments the last code point of a truncated upper bound (Java UnicodeUtil.truncateStringMax)', () => {
    assert.equal(truncateUpperBound('string', 'abcdefghijklmnopqrstuvwxyz'), 'abcdefghijklmnoq');
    assert.equal(truncateUpperBound('string', 'short'), 'short');
    assert.equal(truncateUpperBound('string', 'ab\u{10FFFF}c', 3), 'ac');
    assert.equal(truncateUpperBound('string', 'a\uD7FFb', 2), 'a\uE000'); // never a surrogate
    assert.equal(truncateUpperBound('string', 'a𝄞b', 2), 'a\u{1D11F}');
    assert.equal(truncateUpperBound('string', '\u{10FFFF}\u{10FFFF}x', 2), undefined);
  });

  it('increments the last byte of a truncated binary upper bound, carrying past 0xff', () => {
    assert.deepEqual(truncateUpperBound('binary', bytes('0102ff03'), 3), bytes('0103'));
    assert.deepEqual(truncateUpperBound('binary', bytes('0102'), 3), bytes('0102'));
    assert.equal(truncateUpperBound('binary', bytes('ffff00'), 2), undefined);
  });

  it('gives bounds that contain the value (seeded)', () => {
    const random = prng(99);
    for (let i = 0; i < 500; i += 1) {
      const text = String.fromCodePoint(
        ...Array.from({ length: random.int(0, 30) }, () =>
          random.next() < 0.9 ? random.int(0x20, 0x2ff) : 0x10ffff,
        ),
      );
      const length = random.int(1, 20);
      const lower = truncateLowerBound('string', text, length) as string;
      const upper = truncateUpperBound('string', text, length) as string | undefined;
      assert.ok(compareValues('string', lower, text) <= 0);
      assert.ok([...lower].length <= length);
      if (upper !== undefined) {
        assert.ok(compareValues('string', upper, text) >= 0);
        assert.ok([...upper].length <= length);
      }
      const data = random.randomBytes(random.int(0, 30));
      const upperBytes = truncateUpperBound('binary', data, length) as Uint8Array | undefined;
      if (upperBytes !== undefined) assert.ok(compareValues('binary', upperBytes, data) >= 0);
      assert.ok(compareValues('binary', truncateLowerBound('binary', data, length), data) <= 0);
    }
  });
});
