import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTributaryError } from '../errors.ts';
import { bucketTransform, hashValue, humanString, parseTransform, truncateTransform } from './transforms.ts';
import type { IcebergValue, PrimitiveType } from './types.ts';

const label = (value: IcebergValue): string =>
  value instanceof Uint8Array
    ? Buffer.from(value).toString('hex')
    : JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));

const bytes = (text: string) => Uint8Array.from(Buffer.from(text, 'hex'));
const DAY_2017_11_16 = 17486;
const TS_2017_11_16T22_31_08 = 1510871468000000n;

describe('bucket hashing (spec Appendix B)', () => {
  it('matches the spec test vectors', () => {
    const vectors: Array<[PrimitiveType, IcebergValue, number]> = [
      ['int', 34, 2017239379],
      ['long', 34n, 2017239379],
      ['decimal(4, 2)', 1420n, -500754589], // 14.20
      ['date', DAY_2017_11_16, -653330422],
      ['time', 81068000000n, -662762989], // 22:31:08
      ['timestamp', TS_2017_11_16T22_31_08, -2047944441],
      ['timestamp', TS_2017_11_16T22_31_08 + 1n, -1207196810],
      ['timestamptz', TS_2017_11_16T22_31_08, -2047944441], // 2017-11-16T14:31:08-08:00
      ['timestamptz', TS_2017_11_16T22_31_08 + 1n, -1207196810],
      ['string', 'iceberg', 1210000089],
      ['uuid', 'f79c3e09-677c-4bbd-a479-3f349cb785e7', 1488055340],
      ['fixed[4]', bytes('00010203'), -188683207],
      ['binary', bytes('00010203'), -188683207],
      // Not bucketable, but specified "if a hash value is needed":
      ['boolean', true, 1392991556],
      ['float', 1, -142385009],
      ['double', 1, -142385009],
      ['double', 0, 1669671676],
      ['double', -0, 1669671676],
    ];
    for (const [type, value, hash] of vectors)
      assert.equal(hashValue(type, value), hash, `${type} ${label(value)}`);
  });

  it('agrees with pyiceberg BucketTransform on edge values', () => {
    // [type, value, hash, bucket[16], bucket[1000]] from pyiceberg 0.12.
    const cases: Array<[PrimitiveType, IcebergValue, number, number, number]> = [
      ['int', -1, 1651860712, 8, 712],
      ['int', 2 ** 31 - 1, 1819228606, 14, 606],
      ['long', -(2n ** 63n), 1366273829, 5, 829],
      ['long', 1234567890123n, 1740798302, 14, 302],
      ['date', -1, 1651860712, 8, 712],
      ['time', 0n, 1669671676, 12, 676],
      ['timestamp', -1n, 1651860712, 8, 712],
      ['timestamptz', 1706706000123456n, -89537337, 7, 311],
      ['string', '', 0, 0, 0],
      ['string', 'ü€𝄞', -1653499619, 13, 29],
      ['uuid', '00000000-0000-0000-0000-000000000000', -2127245832, 8, 816],
      ['binary', bytes(''), 0, 0, 0],
      ['fixed[3]', bytes('ff0080'), -895398987, 5, 661],
      ['decimal(9, 2)', -1n, -43192051, 13, 597],
      ['decimal(38, 0)', 10n ** 38n - 1n, -1079967834, 6, 814],
    ];
    for (const [type, value, hash, of16, of1000] of cases) {
      assert.equal(hashValue(type, value), hash, `${type} ${label(value)}`);
      assert.equal(bucketTransform(16).apply(type, value), of16);
      assert.equal(parseTransform('bucket[1000]').apply(type, value), of1000);
    }
  });

  it('gives int and long the same buckets, so promotion keeps partitions', () => {
    for (const value of [0, 1, -1, 34, 2 ** 31 - 1, -(2 ** 31)]) {
      assert.equal(bucketTransform(7).apply('int', value), bucketTransform(7).apply('long', BigInt(value)));
    }
  });
});

describe('truncate', () => {
  it('follows the spec examples', () => {
    assert.equal(truncateTransform(10).apply('int', 1), 0);
    assert.equal(truncateTransform(10).apply('int', -1), -10);
    assert.equal(truncateTransform(10).apply('long', -1n), -10n);
    assert.equal(truncateTransform(50).apply('decimal(4, 2)', 1065n), 1050n); // 10.65 → 10.50
    assert.equal(truncateTransform(3).apply('string', 'iceberg'), 'ice');
    assert.deepEqual(truncateTransform(3).apply('binary', bytes('0102030405')), bytes('010203'));
  });

  it('agrees with pyiceberg on negative decimals and multi-byte strings', () => {
    assert.equal(truncateTransform(3).apply('decimal(5, 2)', -101n), -102n); // -1.01 → -1.02
    assert.equal(truncateTransform(3).apply('string', '𝄞ab𝄞'), '𝄞ab'); // by code point, not UTF-16 unit
    assert.equal(truncateTransform(100).apply('string', 'short'), 'short');
  });

  it('wraps at the bottom of the range as Java’s int and long arithmetic', () => {
    assert.equal(truncateTransform(10).apply('int', -(2 ** 31)), 2 ** 31 - 2);
    assert.equal(truncateTransform(10).apply('long', -(2n ** 63n)), 2n ** 63n - 2n);
  });
});

describe('time transforms', () => {
  it('count years, months, days and hours from 1970, flooring before it (as pyiceberg)', () => {
    const cases: Array<
      [PrimitiveType, IcebergValue, [number, number, number], string[], number | undefined]
    > = [
      ['timestamp', -1n, [-1, -1, -1], ['1969', '1969-12', '1969-12-31'], -1],
      ['timestamp', 0n, [0, 0, 0], ['1970', '1970-01', '1970-01-01'], 0],
      ['timestamptz', -31622400000000n, [-2, -13, -366], ['1968', '1968-12', '1968-12-31'], -8784],
      ['date', -1, [-1, -1, -1], ['1969', '1969-12', '1969-12-31'], undefined],
      ['date', 19753, [54, 648, 19753], ['2024', '2024-01', '2024-01-31'], undefined],
    ];
    for (const [type, value, ordinals, human, hour] of cases) {
      ['year', 'month', 'day'].forEach((name, i) => {
        const transform = parseTransform(name);
        const result = transform.apply(type, value);
        assert.equal(result, ordinals[i], `${name}(${label(value)})`);
        assert.equal(transform.toHumanString(transform.resultType(type), result), human[i]);
      });
      if (hour !== undefined) assert.equal(parseTransform('hour').apply(type, value), hour);
    }
  });

  it('names hours as yyyy-MM-dd-HH', () => {
    const hour = parseTransform('hour');
    const value = hour.apply('timestamptz', 1706706000123456n); // 2024-01-31T13:00:00.123456Z
    assert.equal(hour.toHumanString('int', value), '2024-01-31-13');
    assert.equal(hour.toHumanString('int', -1), '1969-12-31-23');
  });

  it('has the result types of the spec (day is a date)', () => {
    assert.equal(parseTransform('year').resultType('timestamp'), 'int');
    assert.equal(parseTransform('month').resultType('date'), 'int');
    assert.equal(parseTransform('day').resultType('timestamptz'), 'date');
    assert.equal(parseTransform('hour').resultType('timestamp'), 'int');
    assert.equal(parseTransform('bucket[4]').resultType('string'), 'int');
    assert.equal(parseTransform('truncate[4]').resultType('decimal(9, 2)'), 'decimal(9, 2)');
    assert.equal(parseTransform('identity').resultType('uuid'), 'uuid');
    assert.equal(parseTransform('void').resultType('long'), 'long');
  });
});

describe('parseTransform', () => {
  it('reads and writes the spec spellings', () => {
    for (const text of ['identity', 'bucket[16]', 'truncate[4]', 'year', 'month', 'day', 'hour', 'void']) {
      assert.equal(parseTransform(text).toString(), text);
    }
    assert.equal(parseTransform(' Bucket[ 8 ] ').toString(), 'bucket[8]');
    assert.equal(parseTransform('bucket[16]').parameter, 16);
    assert.ok(parseTransform('day').equals(parseTransform('day')));
    assert.equal(parseTransform('day').dedupName, parseTransform('hour').dedupName);
  });

  it('rejects unknown transforms and bad parameters', () => {
    assert.throws(
      () => parseTransform('week'),
      (error) => isTributaryError(error, 'ICEBERG_UNSUPPORTED'),
    );
    assert.throws(
      () => parseTransform('bucket[0]'),
      (error) => isTributaryError(error, 'ICEBERG_INVALID_PARTITION'),
    );
    assert.throws(
      () => bucketTransform(-3),
      (error) => isTributaryError(error, 'ICEBERG_INVALID_PARTITION'),
    );
  });

  it('knows which source types each transform accepts', () => {
    const accepts = (transform: string, type: PrimitiveType) => parseTransform(transform).canTransform(type);
    assert.ok(accepts('day', 'date') && accepts('day', 'timestamptz') && !accepts('day', 'string'));
    assert.ok(accepts('hour', 'timestamp') && !accepts('hour', 'date'));
    assert.ok(
      accepts('bucket[2]', 'uuid') && !accepts('bucket[2]', 'double') && !accepts('bucket[2]', 'boolean'),
    );
    assert.ok(
      accepts('truncate[2]', 'decimal(9, 2)') &&
        !accepts('truncate[2]', 'fixed[4]') &&
        !accepts('truncate[2]', 'uuid'),
    );
    assert.ok(
      accepts('identity', 'boolean') &&
        !parseTransform('identity').canTransform({ type: 'struct', fields: [] }),
    );
    assert.ok(parseTransform('void').canTransform({ type: 'struct', fields: [] }));
  });

  it('passes nulls through and refuses values of another type', () => {
    assert.equal(parseTransform('bucket[4]').apply('long', null), null);
    assert.equal(parseTransform('void').apply('long', 5n), null);
    assert.throws(
      () => parseTransform('day').apply('string', 'x'),
      (error) => isTributaryError(error, 'ICEBERG_INVALID_PARTITION'),
    );
    assert.throws(
      () => parseTransform('bucket[4]').apply('long', 5),
      (error) => isTributaryError(error, 'INVALID_INPUT'),
    );
  });
});

describe('human strings (Java Transform.toHumanString)', () => {
  it('writes values as Java does', () => {
    const cases: Array<[PrimitiveType, IcebergValue, string]> = [
      ['date', DAY_2017_11_16, '2017-11-16'],
      ['time', 81068000000n, '22:31:08'],
      ['time', 81060000000n, '22:31'],
      ['time', 81068500000n, '22:31:08.500'],
      ['time', 81068000001n, '22:31:08.000001'],
      ['timestamp', TS_2017_11_16T22_31_08, '2017-11-16T22:31:08'],
      ['timestamp', TS_2017_11_16T22_31_08 + 1n, '2017-11-16T22:31:08.000001'],
      ['timestamp', -1n, '1969-12-31T23:59:59.999999'],
      ['timestamptz', TS_2017_11_16T22_31_08 + 500000n, '2017-11-16T22:31:08.5+00:00'],
      ['decimal(4, 2)', 1420n, '14.20'],
      ['decimal(9, 2)', -5n, '-0.05'],
      ['decimal(38, 10)', 0n, '0E-10'],
      ['decimal(38, 9)', 123n, '1.23E-7'],
      ['decimal(38, 8)', 123n, '0.00000123'],
      ['double', 1, '1.0'],
      ['double', 1e7, '1.0E7'],
      ['double', 0.0001, '1.0E-4'],
      ['double', 123.456, '123.456'],
      ['double', -0, '-0.0'],
      ['float', Math.fround(0.1), '0.1'],
      ['boolean', true, 'true'],
      ['long', -7n, '-7'],
      ['binary', bytes('00ff'), 'AP8='],
      ['uuid', 'f79c3e09-677c-4bbd-a479-3f349cb785e7', 'f79c3e09-677c-4bbd-a479-3f349cb785e7'],
    ];
    for (const [type, value, text] of cases)
      assert.equal(humanString(type, value), text, `${type} ${label(value)}`);
    assert.equal(parseTransform('identity').toHumanString('string', null), 'null');
    assert.equal(parseTransform('bucket[8]').toHumanString('int', 3), '3');
    assert.equal(parseTransform('truncate[2]').toHumanString('binary', bytes('00ff')), 'AP8=');
    assert.equal(parseTransform('year').toHumanString('int', -1971), '-001'); // Java's %04d
  });
});

describe('inclusive projection', () => {
  const project = (
    transform: string,
    type: PrimitiveType,
    op: string,
    value?: IcebergValue,
    values?: IcebergValue[],
  ) => parseTransform(transform).project(type, { op: op as '=', value, values });

  it('keeps identity predicates and null tests', () => {
    assert.deepEqual(project('identity', 'string', '!=', 'a'), { op: '!=', value: 'a' });
    assert.deepEqual(project('identity', 'long', 'in', undefined, [1n, 2n]), { op: 'in', values: [1n, 2n] });
    assert.deepEqual(project('bucket[4]', 'long', 'is_null'), { op: 'is_null' });
    assert.deepEqual(project('day', 'timestamp', 'not_null'), { op: 'not_null' });
    assert.equal(project('void', 'long', 'is_null'), undefined);
  });

  it('projects only equality and in through bucket', () => {
    assert.deepEqual(project('bucket[16]', 'long', '=', 34n), {
      op: '=',
      value: bucketTransform(16).apply('long', 34n),
    });
    const projected = project('bucket[2]', 'int', 'in', undefined, [1, 2, 3, 4]);
    assert.equal(projected?.op, 'in');
    assert.ok((projected?.values?.length ?? 0) <= 2); // bucket values are distinct
    for (const op of ['<', '<=', '>', '>=', '!='])
      assert.equal(project('bucket[16]', 'long', op, 34n), undefined);
  });

  it('maps bounds through truncate, monotonically', () => {
    assert.deepEqual(project('truncate[10]', 'int', '<', 20), { op: '<=', value: 10 });
    assert.deepEqual(project('truncate[10]', 'int', '<=', 20), { op: '<=', value: 20 });
    assert.deepEqual(project('truncate[10]', 'long', '>', 19n), { op: '>=', value: 20n });
    assert.deepEqual(project('truncate[10]', 'long', '>=', 19n), { op: '>=', value: 10n });
    assert.deepEqual(project('truncate[50]', 'decimal(4, 2)', '=', 1065n), { op: '=', value: 1050n });
    assert.deepEqual(project('truncate[3]', 'string', '<', 'abcd'), { op: '<=', value: 'abc' });
    assert.deepEqual(project('truncate[3]', 'string', '>', 'abcd'), { op: '>=', value: 'abc' });
    assert.deepEqual(project('truncate[3]', 'string', '=', 'abcd'), { op: '=', value: 'abc' });
    assert.equal(project('truncate[3]', 'string', '!=', 'abcd'), undefined);
    assert.deepEqual(project('truncate[10]', 'int', '>', 2 ** 31 - 1), { op: '>=', value: 2147483640 });
  });

  it('maps time bounds to partition bounds (ts < X becomes day <= day(X))', () => {
    const midnight = 1706659200000000n; // 2024-01-31T00:00:00
    assert.deepEqual(project('day', 'timestamp', '<', midnight), { op: '<=', value: 19752 });
    assert.deepEqual(project('day', 'timestamp', '<=', midnight), { op: '<=', value: 19753 });
    assert.deepEqual(project('day', 'timestamp', '>', midnight), { op: '>=', value: 19753 });
    assert.deepEqual(project('month', 'date', '>=', 19753), { op: '>=', value: 648 });
    assert.deepEqual(project('hour', 'timestamptz', '=', midnight), { op: '=', value: 474072 });
    assert.deepEqual(project('day', 'date', 'in', undefined, [1, 2]), { op: 'in', values: [1, 2] });
    assert.equal(project('day', 'timestamp', '!=', midnight), undefined);
  });

  it('widens pre-1970 time projections as Java does for old writers', () => {
    assert.deepEqual(project('day', 'timestamp', '<=', -1n), { op: '<=', value: 0 });
    assert.deepEqual(project('year', 'date', '=', -1), { op: 'in', values: [-1, 0] });
    assert.deepEqual(project('day', 'date', '=', -1), { op: '=', value: -1 }); // day(date) is exact
  });
});
