import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseJsonExact } from '../../core/json.ts';
import type { JsonObject } from '../shared/json-value.ts';
import { configIssues, create, records } from '../shared/test-support.ts';
import { castTransform, castValue } from './cast.ts';
import { toTimestamp } from './timestamp.ts';

const ok = (value: unknown) => ({ ok: true, value });

describe('cast', () => {
  it('casts top-level and nested fields, leaving missing and null fields alone', async () => {
    const transform = await create(castTransform, {
      fields: {
        amount: 'number',
        'user.id': 'string',
        'user.age': 'integer',
        active: 'boolean',
        at: 'timestamp',
      },
    });
    const input = records([
      { amount: '12.50', user: { id: 42, age: '7' }, active: 'yes', at: 1_700_000_000 },
      { amount: null, user: { id: 'x' } },
      { other: 1 },
    ]);
    const result = await transform.process(input);
    assert.deepEqual(
      result.records.map((r) => r.value),
      [
        { amount: 12.5, user: { id: '42', age: 7 }, active: true, at: '2023-11-14T22:13:20.000000Z' },
        { amount: null, user: { id: 'x' } },
        { other: 1 },
      ],
    );
    assert.equal(result.records[2], input[2], 'records without the fields pass as they are');
    assert.deepEqual(input[0]?.value.user, { id: 42, age: '7' }, 'the input is not mutated');
  });

  it('rejects a record whose value does not convert, naming the field and the value', async () => {
    const transform = await create(castTransform, { fields: { 'order.qty': 'integer', at: 'timestamp' } });
    const result = await transform.process(
      records([{ order: { qty: '2.5' } }, { order: { qty: 3 }, at: 'yesterday' }, { order: { qty: '4' } }]),
    );
    assert.deepEqual(
      result.records.map((r) => [r.offset, r.value]),
      [[2, { order: { qty: 4 } }]],
    );
    assert.deepEqual(
      result.rejected.map((r) => [r.record.offset, r.stage, r.error]),
      [
        [0, 'cast', 'cannot cast field order.qty ("2.5") to integer: not a whole number'],
        [
          1,
          'cast',
          'cannot cast field at ("yesterday") to timestamp: not an ISO 8601 timestamp or an epoch number',
        ],
      ],
    );
    assert.deepEqual(result.rejected[0]?.record.value, { order: { qty: '2.5' } });
  });

  it('converts scalars by the documented rules', () => {
    assert.deepEqual(castValue(1.5, 'string'), ok('1.5'));
    assert.deepEqual(castValue(false, 'string'), ok('false'));
    assert.deepEqual(castValue({ a: [1] }, 'string'), ok('{"a":[1]}'));
    assert.deepEqual(castValue(' 1e3 ', 'integer'), ok(1000));
    assert.deepEqual(castValue('0x10', 'number'), { ok: false, reason: 'not a number' });
    assert.deepEqual(castValue('', 'number'), { ok: false, reason: 'not a number' });
    assert.deepEqual(castValue([1], 'number'), { ok: false, reason: 'not a number' });
    assert.deepEqual(castValue(2 ** 60, 'integer'), {
      ok: false,
      reason: 'too large to be exact (beyond ±2^53): write it as digits, not 1e20',
    });
    assert.deepEqual(castValue(true, 'integer'), ok(1));
    assert.deepEqual(castValue('No', 'boolean'), ok(false));
    assert.deepEqual(castValue(0, 'boolean'), ok(false));
    assert.equal(castValue(2, 'boolean').ok, false);
  });

  it('keeps integers beyond ±2^53 exact, from numbers and from text', async () => {
    const json = (outcome: { ok: boolean; value?: unknown }) => JSON.stringify(outcome);
    const big = parseJsonExact('1234567890123456789');
    assert.equal(json(castValue(big, 'integer')), '{"ok":true,"value":1234567890123456789}');
    assert.equal(json(castValue(big, 'number')), '{"ok":true,"value":1234567890123456789}');
    assert.deepEqual(castValue(big, 'string'), ok('1234567890123456789'));
    assert.equal(
      json(castValue(' +0009007199254740993 ', 'integer')),
      '{"ok":true,"value":9007199254740993}',
    );
    assert.equal(
      json(castValue('-9223372036854775808.00', 'number')),
      '{"ok":true,"value":-9223372036854775808}',
    );
    assert.equal(json(castValue('9007199254740991', 'integer')), '{"ok":true,"value":9007199254740991}');
    // Fractions and exponents are doubles, as before.
    assert.equal(
      json(castValue('12345678901234567890.5', 'number')),
      '{"ok":true,"value":12345678901234567000}',
    );
    assert.equal(castValue(big, 'boolean').ok, false);
    assert.deepEqual(castValue(big, 'timestamp'), { ok: false, reason: 'outside the years 0001 to 9999' });

    const transform = await create(castTransform, { fields: { id: 'integer', 'user.id': 'string' } });
    const result = await transform.process(
      records([
        parseJsonExact('{"id": "1234567890123456789", "user": {"id": 18446744073709551615}}') as JsonObject,
      ]),
    );
    assert.deepEqual(result.rejected, []);
    assert.equal(
      JSON.stringify(result.records[0]?.value),
      '{"id":1234567890123456789,"user":{"id":"18446744073709551615"}}',
    );
  });

  it('needs at least one field and known types', () => {
    assert.deepEqual(configIssues(castTransform, { fields: {} }), ['fields: list at least one field']);
    assert.equal(configIssues(castTransform, { fields: { a: 'date' } }).length, 1);
  });
});

describe('timestamps', () => {
  it('normalizes ISO 8601 to UTC with microseconds', () => {
    assert.deepEqual(toTimestamp('2024-05-01T12:00:00Z'), ok('2024-05-01T12:00:00.000000Z'));
    assert.deepEqual(toTimestamp('2024-05-01T14:00:00.123456789+02:00'), ok('2024-05-01T12:00:00.123456Z'));
    assert.deepEqual(toTimestamp('2024-05-01 12:00'), ok('2024-05-01T12:00:00.000000Z'), 'no offset: UTC');
    assert.deepEqual(toTimestamp('2024-05-01'), ok('2024-05-01T00:00:00.000000Z'));
    assert.deepEqual(toTimestamp('2024-01-01T00:30:00-0100'), ok('2024-01-01T01:30:00.000000Z'));
    assert.deepEqual(toTimestamp('0099-01-01T00:00:00Z'), ok('0099-01-01T00:00:00.000000Z'));
  });

  it('reads epoch seconds and milliseconds, as numbers or text', () => {
    assert.deepEqual(toTimestamp(1_700_000_000), ok('2023-11-14T22:13:20.000000Z'));
    assert.deepEqual(toTimestamp(1_700_000_000.123456), ok('2023-11-14T22:13:20.123456Z'));
    assert.deepEqual(toTimestamp(1_700_000_000_123), ok('2023-11-14T22:13:20.123000Z'));
    assert.deepEqual(toTimestamp(1_700_000_000_123.5), ok('2023-11-14T22:13:20.123500Z'));
    assert.deepEqual(toTimestamp('1700000000'), ok('2023-11-14T22:13:20.000000Z'));
    assert.deepEqual(toTimestamp(-1), ok('1969-12-31T23:59:59.000000Z'));
  });

  it('refuses what is not a timestamp', () => {
    for (const value of [
      '2024-02-30',
      '2024-13-01',
      '2024-01-01T24:00:00Z',
      '2024-01-01T10:00+25:00',
      'soon',
      true,
      {},
    ]) {
      assert.equal(toTimestamp(value).ok, false, JSON.stringify(value));
    }
    assert.deepEqual(toTimestamp(1e20), { ok: false, reason: 'outside the years 0001 to 9999' });
  });
});
