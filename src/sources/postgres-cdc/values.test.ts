import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isBigInteger, parseJsonExact } from '../../core/json.ts';
import {
  builtinType,
  convertValue,
  icebergTypeOf,
  numericPrecision,
  parseArray,
  TypeRegistry,
  type PgType,
} from './values.ts';

const type = (oid: number): PgType => builtinType(oid)!;

describe('values', () => {
  it('converts scalars by type', () => {
    assert.equal(convertValue(type(16), 't'), true);
    assert.equal(convertValue(type(16), 'f'), false);
    assert.equal(convertValue(type(21), '-32768'), -32768);
    assert.equal(convertValue(type(23), '2147483647'), 2147483647);
    assert.equal(convertValue(type(20), '9007199254740991'), 9007199254740991);
    for (const digits of ['9007199254740993', '9223372036854775807', '-9223372036854775808']) {
      const value = convertValue(type(20), digits);
      assert.ok(isBigInteger(value), `beyond 2^53, ${digits}: an exact integer`);
      assert.equal(JSON.stringify({ n: value }), `{"n":${digits}}`, 'written as its digits');
    }
    assert.equal(convertValue(type(20), '-9007199254740991'), -9007199254740991);
    assert.equal(
      JSON.stringify(convertValue(type(1016), '{9223372036854775807,NULL,-1}')),
      '[9223372036854775807,null,-1]',
    );
    assert.equal(convertValue(type(1700), '12.50'), '12.50', 'numeric stays exact');
    assert.equal(convertValue(type(701), '0.1'), 0.1);
    assert.equal(convertValue(type(701), 'NaN'), 'NaN');
    assert.equal(convertValue(type(700), '-Infinity'), '-Infinity');
    assert.equal(convertValue(type(1082), '2026-11-23'), '2026-11-23');
    assert.equal(convertValue(type(1083), '10:11:12.5'), '10:11:12.5');
    assert.equal(convertValue(type(1114), '2026-11-23 10:11:12.123456'), '2026-11-23T10:11:12.123456');
    assert.equal(convertValue(type(1184), '2026-11-23 10:11:12.5+00'), '2026-11-23T10:11:12.5Z');
    assert.equal(convertValue(type(1184), '2026-11-23 10:11:12+05:30'), '2026-11-23T10:11:12+05:30');
    assert.equal(convertValue(type(1184), '2026-11-23 10:11:12-08'), '2026-11-23T10:11:12-08:00');
    assert.equal(convertValue(type(1184), 'infinity'), 'infinity');
    // BC as ISO 8601's astronomical year (1 BC is year 0), which DuckDB and Iceberg read as BC.
    assert.equal(convertValue(type(1082), '0044-03-15 BC'), '-0043-03-15');
    assert.equal(convertValue(type(1082), '0001-12-31 BC'), '0000-12-31');
    assert.equal(convertValue(type(1082), '4714-11-24 BC'), '-4713-11-24');
    assert.equal(convertValue(type(1114), '0044-03-15 12:00:00 BC'), '-0043-03-15T12:00:00');
    assert.equal(convertValue(type(1184), '0100-01-01 00:00:00+00 BC'), '-0099-01-01T00:00:00Z');
    assert.equal(convertValue(type(17), '\\xdeadbeef'), '\\xdeadbeef');
    assert.equal(convertValue(type(3802), '{"a": 1}'), '{"a": 1}', 'json stays text');
    assert.equal(convertValue(type(1186), 'P1DT2H'), 'P1DT2H');
  });

  it('parses arrays: nested, quoted, escaped, NULL, with bounds', () => {
    const text = (t: string) => t;
    assert.deepEqual(parseArray('{}', ',', text), []);
    assert.deepEqual(parseArray('{a,b,NULL,"NULL","c d","e\\"f","g\\\\h"}', ',', text), [
      'a',
      'b',
      null,
      'NULL',
      'c d',
      'e"f',
      'g\\h',
    ]);
    assert.deepEqual(convertValue(type(1007), '{{1,2},{3,NULL}}'), [
      [1, 2],
      [3, null],
    ]);
    assert.deepEqual(convertValue(type(1007), '[0:1]={5,6}'), [5, 6]);
    assert.deepEqual(convertValue(type(1000), '{t,f}'), [true, false]);
    assert.deepEqual(convertValue(type(1185), '{"2026-01-01 00:00:00+00"}'), ['2026-01-01T00:00:00Z']);
  });

  it('resolves enums, domains and their arrays from catalog rows', () => {
    const registry = new TypeRegistry();
    assert.deepEqual(registry.missing([23, 90001, 90002, 90003]), [90001, 90002, 90003]);
    registry.addRows([
      { oid: 90001, name: 'mood', typtype: 'e', element: 0, base: 0, delimiter: ',' },
      { oid: 90002, name: 'mood[]', typtype: 'b', element: 90001, base: 0, delimiter: ',' },
      { oid: 90003, name: 'positive', typtype: 'd', element: 0, base: 23, delimiter: ',' },
    ]);
    assert.deepEqual(registry.unresolvedReferences(), []);
    assert.deepEqual(convertValue(registry.get(90002), '{happy,sad}'), ['happy', 'sad']);
    assert.equal(convertValue(registry.get(90003), '42'), 42);
    assert.equal(convertValue(registry.get(90001), 'ok'), 'ok');
  });

  it('maps PostgreSQL types to Iceberg types', () => {
    assert.deepEqual(numericPrecision(((12 << 16) | 2) + 4), { precision: 12, scale: 2 });
    assert.equal(numericPrecision(-1), undefined);
    assert.equal(icebergTypeOf(type(1700), ((12 << 16) | 2) + 4), 'decimal(12, 2)');
    assert.equal(icebergTypeOf(type(1700), -1), 'string', 'unconstrained numeric');
    assert.equal(icebergTypeOf(type(1700), ((50 << 16) | 2) + 4), 'string', 'precision over 38');
    assert.equal(icebergTypeOf(type(21), -1), 'int');
    assert.equal(icebergTypeOf(type(20), -1), 'long');
    assert.equal(icebergTypeOf(type(700), -1), 'float');
    assert.equal(icebergTypeOf(type(1184), -1), 'timestamptz');
    assert.equal(icebergTypeOf(type(1114), -1), 'timestamp');
    assert.equal(icebergTypeOf(type(2950), -1), 'uuid');
    assert.equal(icebergTypeOf(type(17), -1), 'string');
    assert.deepEqual(icebergTypeOf(type(1009), -1), {
      type: 'list',
      element: 'string',
      'element-required': false,
    });
  });
});

describe('RowEncoder', () => {
  it('writes the same JSON values as rowObject, for every mapped type', async () => {
    const { RowEncoder } = await import('./encode.ts');
    const { rowObject } = await import('./values.ts');
    const oids = [
      16, 21, 23, 20, 20, 1700, 701, 701, 700, 25, 2950, 17, 1082, 1083, 1114, 1184, 1186, 3802, 1009, 1007,
      20, 20, 1016,
    ];
    const texts = [
      't',
      '-5',
      '2147483647',
      '42',
      '-9223372036854775808',
      '-12.50',
      '1e+300',
      'NaN',
      '0.1',
      'a "quoted"\n\\ text ✓',
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      '\\xdeadbeef',
      '2026-11-23',
      '10:11:12.5',
      '2026-11-23 10:11:12.5',
      '2026-11-23 10:11:12.5+00',
      'P1Y2M',
      '{"a": [1, "b"]}',
      '{x,"y z",NULL}',
      '{1,NULL,3}',
      '9007199254740993',
      '9223372036854775807',
      '{-9223372036854775808,NULL,9007199254740993}',
    ];
    const columns = oids.map((typeOid, i) => ({ name: `c${i}`, typeOid, typeMod: -1, key: false }));
    const types = oids.map((oid) => builtinType(oid)!);
    const encoder = new RowEncoder(
      columns.map((c) => c.name),
      types,
    );
    // Compared as text too: a BigInteger and the JSON digits it stands for are the same.
    assert.deepEqual(parseJsonExact(encoder.json(texts)), rowObject(columns, types, texts));
    assert.equal(encoder.json(texts), JSON.stringify(rowObject(columns, types, texts)));
    assert.match(
      encoder.json(texts),
      /"c4":-9223372036854775808,.*"c20":9007199254740993,"c21":9223372036854775807,"c22":\[-9223372036854775808,null,9007199254740993\]\}$/,
    );
    const withGaps = texts.map((t, i) => (i % 3 === 0 ? null : i % 3 === 1 ? undefined : t));
    assert.deepEqual(parseJsonExact(encoder.json(withGaps)), rowObject(columns, types, withGaps));
    assert.equal(encoder.json(withGaps), JSON.stringify(rowObject(columns, types, withGaps)));
  });
});

describe('SnapshotEncoder', () => {
  it('writes the bytes of envelopeJson with RowEncoder, for every mapped type, NULL and escapes', async () => {
    const { ByteWriter, envelopeJson, RowEncoder, SnapshotEncoder } = await import('./encode.ts');
    const oids = [23, 16, 21, 20, 20, 20, 1700, 701, 701, 700, 700, 25, 25, 1043, 1042, 18, 19, 2950, 17];
    oids.push(1082, 1083, 1114, 1114, 1184, 1184, 1184, 1186, 114, 3802, 1009, 1007, 1016, 1115, 1185, 26);
    const texts = [
      '7',
      'f',
      '-32768',
      '9007199254740991',
      '-9223372036854775808',
      '123456789012345',
      'NaN',
      '1e+300',
      '-0.1',
      'Infinity',
      '3.40282347e+38',
      'a "quoted"\n\\ text ✓ \u0001 \u007f 😀',
      '',
      'tab\there \u2028',
      'padded    ',
      'x',
      'pg_class',
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      '\\xdeadbeef',
      '-infinity',
      '24:00:00',
      '2026-11-23 10:11:12.123456',
      '0044-03-15 00:00:00 BC',
      '2026-11-23 10:11:12.5+00',
      '2026-11-23 10:11:12-08',
      'infinity',
      'P-1Y2M3DT4H5M6.5S',
      '{"a": [1, "b\\"c"]}',
      '{"é": null}',
      '{x,"y \\"z\\"",NULL}',
      '{{1,2},{3,NULL}}',
      '{9223372036854775807,1}',
      '{"2026-11-23 10:11:12"}',
      '{"2026-11-23 10:11:12+00"}',
      '4294967295',
    ];
    const names = oids.map((_, i) => (i === 3 ? 'a "name" ✓' : `c${i}`));
    const types = oids.map((oid) => builtinType(oid)!);
    const keyIndexes = [0, 3, 4];
    const rowEncoder = new RowEncoder(names, types);
    const keyEncoder = new RowEncoder(
      keyIndexes.map((i) => names[i]!),
      keyIndexes.map((i) => types[i]!),
    );
    const encoder = new SnapshotEncoder('public.my "table"', names, types, keyIndexes);
    encoder.begin('1/2A3B4C5D', '2026-11-23T10:11:12.000Z');
    const out = new ByteWriter(16); // small: the writer grows, and earlier views stay valid
    const rows = [texts, texts.map((t, i) => (i % 4 === 1 ? null : t)), texts.map(() => null)];
    const views = rows.map((row, seq) => encoder.write(out, row, seq * 7));
    rows.forEach((row, seq) => {
      const expected = envelopeJson(
        {
          op: 'snapshot',
          table: JSON.stringify('public.my "table"'),
          key: keyEncoder.json(keyIndexes.map((i) => row[i] ?? null)),
          before: 'null',
          lsn: '1/2A3B4C5D',
          commitLsn: '1/2A3B4C5D',
          commitTime: '2026-11-23T10:11:12.000Z',
          xid: null,
          seq: seq * 7,
        },
        rowEncoder.json(row),
      );
      assert.equal(Buffer.from(views[seq]!).toString('utf8'), expected);
      JSON.parse(expected);
    });
    // int8 beyond ±2^53, in the key, the row and an array: JSON integers, every digit.
    assert.match(
      Buffer.from(views[0]!).toString('utf8'),
      /"key":\{"c0":7,"a \\"name\\" ✓":9007199254740991,"c4":-9223372036854775808\},.*"c4":-9223372036854775808,.*"c31":\[9223372036854775807,1\],/s,
    );
  });
});

describe('encodeTexts', () => {
  it('gives the UTF-8 of each text, ASCII or not, and for halves of a surrogate pair split across texts', async () => {
    const { encodeTexts } = await import('./encode.ts');
    const cases = [
      ['{"a":1}', '{"b":"x"}', '', '{}'],
      ['{"a":"✓"}', '{"b":"😀"}', '{"c":"é"}'],
      ['{"a":"\ud83d', '\ude00"}', 'x\ud800'],
      [],
    ];
    for (const texts of cases) {
      const encoded = encodeTexts(texts);
      assert.equal(encoded.length, texts.length);
      encoded.forEach((bytes, i) => assert.deepEqual(Buffer.from(bytes), Buffer.from(texts[i]!, 'utf8')));
    }
  });
});
