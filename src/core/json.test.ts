import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  exactInteger,
  fitsInt64,
  isBigInteger,
  mayHoldBigInteger,
  numberText,
  parseJsonExact,
  replaceBigIntegers,
  replaceLeaves,
  stringifyExact,
  type BigInteger,
} from './json.ts';

const big = (digits: string) => parseJsonExact(digits) as BigInteger;

describe('parseJsonExact', () => {
  it('keeps integers beyond ±2^53 exact, wherever they are, and reads everything else as JSON.parse', () => {
    const text =
      '{"id": 9007199254740993, "min": -9223372036854775808, "list": [18446744073709551615, 1, 2.5], ' +
      '"nested": {"n": 123456789012345678901234567890}, "safe": 9007199254740991, "double": 1e400, ' +
      '"fraction": 12345678901234567890.5, "text": "12345678901234567890"}';
    const value = parseJsonExact(text) as Record<string, unknown>;
    assert.equal(
      JSON.stringify(value),
      '{"id":9007199254740993,"min":-9223372036854775808,"list":[18446744073709551615,1,2.5],' +
        '"nested":{"n":123456789012345678901234567890},"safe":9007199254740991,"double":null,' +
        '"fraction":12345678901234567000,"text":"12345678901234567890"}',
    );
    assert.ok(isBigInteger(value.id));
    assert.equal(value.safe, 9007199254740991);
    assert.equal(typeof value.fraction, 'number');
    assert.deepEqual(parseJsonExact('{"a": [1, "x", null, true]}'), { a: [1, 'x', null, true] });
    assert.throws(() => parseJsonExact('{"a": 12345678901234567890'), SyntaxError);
  });

  it('reads nesting of any depth, where the reviver would exhaust the stack, as the reviver reads the rest', () => {
    const deep = (levels: number) => `${'['.repeat(levels)}-12345678901234567890${']'.repeat(levels)}`;
    const shallow =
      '{ "id" : 9007199254740993, "__proto__": {"x": 1}, "a": 1, "s": "[{\\"\\\\:,}]", ' +
      '"a": [ {}, [], 1.5e3, -0, true, null, "\\u00e9" ], "1": 2 }';
    for (const levels of [5_000, 100_000]) {
      const text = `{"shallow": ${shallow}, "deep": ${deep(levels)}, "n": 12345678901234567890}`;
      const value = parseJsonExact(text) as Record<string, unknown>;
      assert.equal(JSON.stringify(value.shallow), JSON.stringify(parseJsonExact(shallow)));
      const object = value.shallow as Record<string, unknown>;
      assert.deepEqual(Object.keys(object), ['1', 'id', '__proto__', 'a', 's']);
      assert.equal(Object.getPrototypeOf(object), Object.prototype, '__proto__ stays data');
      assert.ok(isBigInteger(object.id) && isBigInteger(value.n));
      let inner = value.deep;
      let depth = 0;
      for (; Array.isArray(inner); depth++) inner = inner[0] as unknown;
      assert.equal(depth, levels);
      assert.equal(numberText(inner), '-12345678901234567890');
    }
    assert.throws(() => parseJsonExact(`${deep(5_000)},`), SyntaxError);
  });

  it('looks for a run of 16 digits, wherever it starts', () => {
    for (let at = 0; at < 40; at++) {
      const prefix = 'x'.repeat(at);
      assert.equal(mayHoldBigInteger(`${prefix}1234567890123456x`), true, `16 digits at ${at}`);
      assert.equal(mayHoldBigInteger(`${prefix}123456789012345x`), false, `15 digits at ${at}`);
      assert.equal(
        mayHoldBigInteger(`${prefix}123456789012345x1234567890123456`),
        true,
        `second run at ${at}`,
      );
    }
    assert.equal(mayHoldBigInteger('1234567890123456'), true);
    assert.equal(mayHoldBigInteger(''), false);
    assert.equal(mayHoldBigInteger('123456789012345.123456789012345'), false);
  });
});

describe('BigInteger helpers', () => {
  it('converts between BigIntegers, numbers, bigints and text exactly', () => {
    assert.equal(exactInteger(5n), 5);
    assert.equal(JSON.stringify(exactInteger(2n ** 64n)), '18446744073709551616');
    assert.equal(numberText(big('12345678901234567890')), '12345678901234567890');
    assert.equal(numberText(-0.5), '-0.5');
    assert.equal(numberText('1'), undefined);
    assert.equal(isBigInteger({ rawJSON: '1' }), false, 'a look-alike object is an object');
  });

  it('tells which fit a signed 64-bit integer', () => {
    assert.equal(fitsInt64(big('9223372036854775807')), true);
    assert.equal(fitsInt64(big('-9223372036854775808')), true);
    assert.equal(fitsInt64(big('9223372036854775808')), false);
    assert.equal(fitsInt64(big('-9223372036854775809')), false);
    assert.equal(fitsInt64(big('12345678901234567890123')), false);
    assert.equal(fitsInt64(big('1234567890123456789')), true);
  });

  it('replaces BigIntegers in copies, leaving values without one as they are', () => {
    const plain = { a: [1, { b: 'c' }], d: null };
    assert.equal(
      replaceBigIntegers(plain, () => 0),
      plain,
    );
    const value = parseJsonExact('{"a": [1, {"b": 12345678901234567890}], "c": {"d": 1}}') as Record<
      string,
      unknown
    >;
    const replaced = replaceBigIntegers(value, (b) => Number(b.rawJSON)) as typeof value;
    assert.deepEqual(replaced, { a: [1, { b: 12345678901234567000 }], c: { d: 1 } });
    assert.equal(replaced.c, value.c, 'what holds none is shared');
    assert.equal(JSON.stringify(value), '{"a":[1,{"b":12345678901234567890}],"c":{"d":1}}', 'unchanged');
  });

  it('replaces leaves, taking BigIntegers and objects of classes as leaves', () => {
    const when = new Date(0);
    const value = { a: [1n, parseJsonExact('12345678901234567890')], when, n: 2 };
    const replaced = replaceLeaves(value, (leaf) =>
      typeof leaf === 'bigint' ? 'bigint' : isBigInteger(leaf) ? 'big' : leaf instanceof Date ? 'date' : leaf,
    );
    assert.deepEqual(replaced, { a: ['bigint', 'big'], when: 'date', n: 2 });
    assert.equal(
      replaceLeaves(value, (leaf) => leaf),
      value,
    );
  });
});

describe('stringifyExact', () => {
  it('writes what JSON.stringify does, but Infinity as 1e999 and NaN as "NaN" rather than null', () => {
    const value = { a: 1, b: null, c: [Infinity, -Infinity, NaN, 2], d: { e: Infinity }, f: 'null' };
    assert.equal(
      stringifyExact(value),
      '{"a":1,"b":null,"c":[1e999,-1e999,"NaN",2],"d":{"e":1e999},"f":"null"}',
    );
    assert.deepEqual(value.c, [Infinity, -Infinity, NaN, 2], 'the value is not changed');
    // Read back, Infinity is Infinity again.
    assert.deepEqual(JSON.parse(stringifyExact({ x: -Infinity })), { x: -Infinity });
    const plain = { a: [1, null], b: exactInteger(2n ** 64n) };
    assert.equal(stringifyExact(plain), JSON.stringify(plain));
    assert.equal(stringifyExact(undefined), 'null');
  });
});
