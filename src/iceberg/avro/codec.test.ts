import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTributaryError } from '../../errors.ts';
import { AvroReader, AvroWriter, compile, decode, encode, expandSchema, type AvroSchema } from './codec.ts';

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const fromHex = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'hex'));

function roundTrip(schema: AvroSchema, value: unknown, expected: unknown = value): Uint8Array {
  const bytes = encode(schema, value);
  assert.deepEqual(decode(schema, bytes), expected);
  return bytes;
}

describe('Avro codec: primitives', () => {
  it('encodes ints as zigzag varints', () => {
    const cases: [number, string][] = [
      [0, '00'],
      [-1, '01'],
      [1, '02'],
      [-64, '7f'],
      [64, '8001'],
      [2147483647, 'feffffff0f'],
      [-2147483648, 'ffffffff0f'],
    ];
    for (const [value, expected] of cases)
      assert.equal(hex(roundTrip('int', value)), expected, `int ${value}`);
  });

  it('encodes longs as zigzag varints and decodes them as bigint', () => {
    const cases: [bigint, string][] = [
      [0n, '00'],
      [-1n, '01'],
      [1n, '02'],
      [8192n, '808001'],
      [(1n << 48n) + 5n, '8a80808080808001'], // past the 7-byte fast path
      [9223372036854775807n, 'feffffffffffffffff01'],
      [-9223372036854775808n, 'ffffffffffffffffff01'],
      [-4611686018427387905n, '81808080808080808001'],
    ];
    for (const [value, expected] of cases)
      assert.equal(hex(roundTrip('long', value)), expected, `long ${value}`);
  });

  it('accepts a safe-integer number for a long', () => {
    assert.equal(decode('long', encode('long', 1234567890123)), 1234567890123n);
    assert.equal(decode('long', encode('long', -3)), -3n);
    assert.throws(
      () => encode('long', 2 ** 60),
      (e) => isTributaryError(e, 'INVALID_INPUT'),
    );
    assert.throws(
      () => encode('long', 1n << 63n),
      (e) => isTributaryError(e, 'INVALID_INPUT'),
    );
  });

  it('encodes floats and doubles as little-endian IEEE 754', () => {
    assert.equal(hex(roundTrip('float', 1.5)), '0000c03f');
    assert.equal(hex(roundTrip('double', -2.25)), '00000000000002c0');
    assert.ok(Number.isNaN(decode('double', encode('double', NaN))));
    assert.equal(decode('float', encode('float', 0.1)), Math.fround(0.1));
  });

  it('encodes booleans, null, bytes and UTF-8 strings', () => {
    assert.equal(hex(roundTrip('boolean', true)), '01');
    assert.equal(hex(roundTrip('null', null)), '');
    assert.equal(hex(roundTrip('bytes', Uint8Array.of(1, 2, 255))), '060102ff');
    assert.equal(hex(roundTrip('string', 'héllo')), '0c68c3a96c6c6f');
    assert.equal(hex(roundTrip('string', '')), '00');
  });

  it('returns plain Uint8Array copies for bytes, even from a Buffer', () => {
    const input = Buffer.from('040102', 'hex');
    const value = decode('bytes', input) as Uint8Array;
    assert.equal(Object.getPrototypeOf(value), Uint8Array.prototype);
    input[1] = 9;
    assert.deepEqual(value, Uint8Array.of(1, 2));
  });
});

describe('Avro codec: complex types', () => {
  it('encodes records by field name, in schema order', () => {
    const schema: AvroSchema = {
      type: 'record',
      name: 'r',
      fields: [
        { name: 'a', type: 'int' },
        { name: 'b', type: 'string' },
      ],
    };
    assert.equal(hex(roundTrip(schema, { a: 1, b: 'x' })), '02' + '0278');
  });

  it('fills missing fields from defaults and optional fields with null', () => {
    const schema: AvroSchema = {
      type: 'record',
      name: 'r',
      fields: [
        { name: 'a', type: 'long', default: 7 },
        { name: 'b', type: ['null', 'string'], default: null },
        { name: 'c', type: ['null', 'int'] },
      ],
    };
    assert.deepEqual(decode(schema, encode(schema, {})), { a: 7n, b: null, c: null });
  });

  it('rejects a missing required field, naming it', () => {
    const schema: AvroSchema = {
      type: 'record',
      name: 'outer',
      fields: [{ name: 'inner', type: { type: 'record', name: 'in', fields: [{ name: 'x', type: 'int' }] } }],
    };
    assert.throws(
      () => encode(schema, { inner: {} }),
      (e) =>
        isTributaryError(e, 'INVALID_INPUT') &&
        /inner/.test(e.message) &&
        /missing required field x/.test(e.message),
    );
    assert.throws(
      () => encode(schema, { inner: { x: 'no' } }),
      (e) => isTributaryError(e, 'INVALID_INPUT') && /at inner\.x/.test(e.message),
    );
  });

  it('encodes enums by index', () => {
    const schema: AvroSchema = { type: 'enum', name: 'e', symbols: ['A', 'B', 'C'] };
    assert.equal(hex(roundTrip(schema, 'C')), '04');
    assert.throws(
      () => encode(schema, 'D'),
      (e) => isTributaryError(e, 'INVALID_INPUT'),
    );
    assert.throws(
      () => decode(schema, fromHex('06')),
      (e) => isTributaryError(e, 'ICEBERG_INVALID_FILE'),
    );
  });

  it('encodes arrays and maps in one block ended by zero', () => {
    assert.equal(hex(roundTrip({ type: 'array', items: 'int' }, [1, 2])), '04' + '0204' + '00');
    assert.equal(hex(roundTrip({ type: 'array', items: 'int' }, [])), '00');
    const map = new Map([['k', 1n]]);
    assert.equal(hex(roundTrip({ type: 'map', values: 'long' }, map)), '02' + '026b' + '02' + '00');
    // A plain object is accepted for a map.
    assert.deepEqual(
      decode({ type: 'map', values: 'long' }, encode({ type: 'map', values: 'long' }, { k: 1 })),
      map,
    );
  });

  it('decodes several blocks, including negative counts with byte sizes', () => {
    // [1] then a block of -2 items with its byte size (2), then end.
    const bytes = fromHex('02' + '02' + '03' + '04' + '0406' + '00');
    assert.deepEqual(decode({ type: 'array', items: 'int' }, bytes), [1, 2, 3]);
  });

  it('encodes fixed without a length', () => {
    const schema: AvroSchema = { type: 'fixed', name: 'f', size: 3 };
    assert.equal(hex(roundTrip(schema, Uint8Array.of(1, 2, 3))), '010203');
    assert.throws(
      () => encode(schema, Uint8Array.of(1)),
      (e) => isTributaryError(e, 'INVALID_INPUT'),
    );
  });

  it('picks the first union branch that accepts the value', () => {
    assert.equal(hex(roundTrip(['null', 'long'], null)), '00');
    assert.equal(hex(roundTrip(['null', 'long'], 5n)), '020a');
    assert.equal(hex(encode(['null', 'long'], 5)), '020a');
    assert.equal(hex(roundTrip(['int', 'string'], 'x')), '020278');
    assert.equal(hex(roundTrip(['string', 'int'], 3)), '0206');
    // An integral number goes to int before long, to double when it is not integral.
    assert.equal(hex(encode(['int', 'long', 'double'], 3)), '0006');
    assert.equal(hex(encode(['int', 'long', 'double'], 2 ** 40)), '0280808080804' + '0');
    assert.equal(decode(['int', 'double'], encode(['int', 'double'], 1.5)), 1.5);
    assert.throws(
      () => encode(['null', 'int'], 'x'),
      (e) => isTributaryError(e, 'INVALID_INPUT'),
    );
    assert.throws(
      () => decode(['null', 'int'], fromHex('04')),
      (e) => isTributaryError(e, 'ICEBERG_INVALID_FILE'),
    );
  });

  it('resolves named types by reference, with namespaces', () => {
    const schema: AvroSchema = {
      type: 'record',
      name: 'outer',
      namespace: 'a.b',
      fields: [
        { name: 'x', type: { type: 'fixed', name: 'f4', size: 4 } },
        { name: 'y', type: 'f4' },
        { name: 'z', type: 'a.b.f4' },
      ],
    };
    const value = {
      x: Uint8Array.of(1, 2, 3, 4),
      y: Uint8Array.of(5, 6, 7, 8),
      z: Uint8Array.of(0, 0, 0, 0),
    };
    roundTrip(schema, value);
    const expanded = expandSchema(schema) as unknown as { fields: { type: unknown }[] };
    assert.deepEqual(expanded.fields[1]!.type, { type: 'fixed', name: 'f4', size: 4 });
  });

  it('handles recursive schemas', () => {
    const schema: AvroSchema = {
      type: 'record',
      name: 'Node',
      fields: [
        { name: 'v', type: 'int' },
        { name: 'next', type: ['null', 'Node'] },
      ],
    };
    const bytes = roundTrip(schema, { v: 1, next: { v: 2, next: null } });
    const reader = new AvroReader(bytes);
    compile(schema).skip(reader);
    assert.equal(reader.remaining, 0);
    // A record that holds itself (no value of it can be written) still compiles.
    const endless: AvroSchema = { type: 'record', name: 'E', fields: [{ name: 'e', type: 'E' }] };
    assert.doesNotThrow(() => compile(endless));
  });

  it('rejects invalid schemas', () => {
    for (const schema of [
      'nope',
      { type: 'record', name: 'r' },
      { type: 'fixed', name: 'f' },
      ['int', ['string']],
      {
        type: 'record',
        name: 'r',
        fields: [
          { name: 'a', type: { type: 'fixed', name: 'x', size: 1 } },
          { name: 'b', type: { type: 'fixed', name: 'x', size: 1 } },
        ],
      },
    ] as AvroSchema[]) {
      assert.throws(
        () => compile(schema),
        (e) => isTributaryError(e, 'ICEBERG_INVALID_FILE'),
        JSON.stringify(schema),
      );
    }
  });
});

describe('Avro codec: malformed input', () => {
  it('reports truncated data', () => {
    assert.throws(
      () => decode('string', fromHex('0a6162')),
      (e) => isTributaryError(e, 'ICEBERG_INVALID_FILE'),
    );
    assert.throws(
      () => decode('long', fromHex('ff')),
      (e) => isTributaryError(e, 'ICEBERG_INVALID_FILE'),
    );
    assert.throws(() => decode('int', fromHex('ffffffffff01')), /varint too long/);
    assert.throws(() => decode('long', fromHex('ffffffffffffffffff7f')), /more than 64 bits/);
  });

  it('reports trailing bytes and invalid UTF-8', () => {
    assert.throws(
      () => decode('int', fromHex('0202')),
      (e) => isTributaryError(e, 'ICEBERG_INVALID_FILE'),
    );
    assert.throws(
      () => decode('string', fromHex('02ff')),
      (e) => isTributaryError(e, 'ICEBERG_INVALID_FILE'),
    );
  });

  it('names the path of a decoding error', () => {
    const schema: AvroSchema = {
      type: 'record',
      name: 'r',
      fields: [{ name: 'list', type: { type: 'array', items: 'string' } }],
    };
    assert.throws(() => decode(schema, fromHex('04' + '0278' + '0a')), /at list\.1/);
  });
});

describe('Avro codec: writer and reader', () => {
  it('streams several values through one writer', () => {
    const codec = compile(['null', 'long']);
    const writer = new AvroWriter();
    for (let i = 0; i < 1000; i++) codec.write(writer, i % 3 === 0 ? null : BigInt(i) * 1_000_000_007n);
    const reader = new AvroReader(writer.toBytes());
    for (let i = 0; i < 1000; i++) {
      assert.equal(codec.read(reader), i % 3 === 0 ? null : BigInt(i) * 1_000_000_007n);
    }
    assert.equal(reader.remaining, 0);
  });

  it('leaves the writer unchanged when a value fails', () => {
    const codec = compile({
      type: 'record',
      name: 'r',
      fields: [
        { name: 'a', type: 'int' },
        { name: 'b', type: 'int' },
      ],
    });
    const writer = new AvroWriter();
    codec.write(writer, { a: 1, b: 2 });
    assert.throws(() => codec.write(writer, { a: 1, b: 'x' }));
    assert.equal(hex(writer.toBytes()), '0204');
  });
});

describe('Avro codec: skipping and fast paths', () => {
  // Every Avro type, including a block with a byte size, so skip must follow each encoding exactly.
  const everything: AvroSchema = {
    type: 'record',
    name: 'all',
    fields: [
      { name: 'n', type: 'null' },
      { name: 'b', type: 'boolean' },
      { name: 'i', type: 'int' },
      { name: 'l', type: 'long' },
      { name: 'f', type: 'float' },
      { name: 'd', type: 'double' },
      { name: 'by', type: 'bytes' },
      { name: 's', type: 'string' },
      { name: 'fx', type: { type: 'fixed', name: 'four', size: 4 } },
      { name: 'e', type: { type: 'enum', name: 'color', symbols: ['red', 'green'] } },
      { name: 'ints', type: { type: 'array', items: 'long' } },
      {
        name: 'kvs',
        type: {
          type: 'array',
          items: {
            type: 'record',
            name: 'kv',
            fields: [
              { name: 'key', type: 'int' },
              { name: 'value', type: 'long' },
            ],
          },
        },
      },
      {
        name: 'bounds',
        type: {
          type: 'array',
          items: {
            type: 'record',
            name: 'kb',
            fields: [
              { name: 'key', type: 'int' },
              { name: 'value', type: 'bytes' },
            ],
          },
        },
      },
      { name: 'm', type: { type: 'map', values: ['null', 'string'] } },
      { name: 'u', type: ['null', 'long', 'string'] },
    ],
  };
  const value = {
    n: null,
    b: true,
    i: -5,
    l: -(1n << 62n),
    f: 1.5,
    d: -2.25,
    by: Uint8Array.of(1, 2, 3),
    s: 'héllo',
    fx: Uint8Array.of(9, 8, 7, 6),
    e: 'green',
    ints: [1n, -300n, 1n << 50n],
    kvs: [
      { key: 1, value: 10n },
      { key: 2, value: -(1n << 60n) },
    ],
    bounds: [{ key: 7, value: Uint8Array.of(0xff, 0) }],
    m: new Map<string, string | null>([
      ['a', 'x'],
      ['b', null],
    ]),
    u: 'branch',
  };

  it('skips exactly one value of every type', () => {
    const codec = compile(everything);
    const writer = new AvroWriter();
    codec.write(writer, value);
    codec.write(writer, { ...value, u: 42n, kvs: [], m: new Map() });
    writer.writeInt(1234); // a sentinel after the two values
    const reader = new AvroReader(writer.toBytes());
    codec.skip(reader);
    assert.deepEqual(codec.read(reader), { ...value, u: 42n, kvs: [], m: new Map() });
    assert.equal(reader.readInt(), 1234);
    assert.equal(reader.remaining, 0);
    // Each field alone, too.
    for (const field of everything.fields) {
      const fieldCodec = compile(field.type);
      const bytes = encode(field.type, value[field.name as keyof typeof value]);
      const r = new AvroReader(Uint8Array.of(...bytes, 0x02));
      fieldCodec.skip(r);
      assert.equal(r.readInt(), 1, `skip ${field.name}`);
    }
  });

  it('skips a block with a byte size whole, and reports truncation', () => {
    const kvs = compile({
      type: 'array',
      items: {
        type: 'record',
        name: 'kv',
        fields: [
          { name: 'key', type: 'int' },
          { name: 'value', type: 'long' },
        ],
      },
    });
    // -1 item in 2 bytes (unread, 0xff 0xff would be an unfinished varint), then 1 item, then the end.
    const reader = new AvroReader(fromHex('01' + '04' + 'ffff' + '02' + '0204' + '00'));
    kvs.skip(reader);
    assert.equal(reader.remaining, 0);
    assert.throws(
      () => kvs.skip(new AvroReader(fromHex('02' + '02'))),
      (e) => isTributaryError(e, 'ICEBERG_INVALID_FILE') && /truncated/.test((e as Error).message),
    );
    assert.throws(() => compile('long').skip(new AvroReader(fromHex('ffffffffffffffffffff01'))), /too long/);
    const bounds = compile({
      type: 'array',
      items: {
        type: 'record',
        name: 'kb',
        fields: [
          { name: 'key', type: 'int' },
          { name: 'value', type: 'bytes' },
        ],
      },
    });
    // One item: key 1, then 5 bytes of which only 1 is there.
    assert.throws(() => bounds.skip(new AvroReader(fromHex('02' + '02' + '0a' + 'ff'))), /truncated/);
    assert.throws(() => bounds.skip(new AvroReader(fromHex('02' + '02' + '01'))), /truncated/); // length -1
  });

  it('decodes longs of every varint length, at the 2^48 and 2^53 boundaries', () => {
    const values = [0n, 1n, -1n, (1n << 48n) - 1n, 1n << 48n, -(1n << 48n), -(1n << 48n) - 1n];
    for (let bits = 49n; bits < 63n; bits++) values.push(1n << bits, -(1n << bits), (1n << bits) - 1n);
    values.push((1n << 63n) - 1n, -(1n << 63n), 6_969_696_969_696_969_696n, -1_234_567_890_123_456_789n);
    for (const v of values) {
      assert.equal(decode('long', encode('long', v)), v, `long ${v}`);
      const reader = new AvroReader(encode('long', v));
      if (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) {
        assert.equal(reader.readSafeLong('value'), Number(v), `safe long ${v}`);
      } else {
        assert.throws(() => reader.readSafeLong('value'), /out of range/, `unsafe long ${v}`);
      }
    }
  });
});
