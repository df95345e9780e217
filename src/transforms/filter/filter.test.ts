import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FilterCondition } from './filter.ts';
import { compileCondition, filterTransform } from './filter.ts';
import { parseJsonExact, type BigInteger } from '../../core/json.ts';
import type { JsonObject } from '../shared/json-value.ts';
import { configIssues, create, records } from '../shared/test-support.ts';

const test = (condition: Omit<FilterCondition, 'field'> & { field?: string }) =>
  compileCondition({ field: 'a', ...condition });

describe('filter', () => {
  it('keeps the records that match every condition, in order, and rejects none', async () => {
    const transform = await create(filterTransform, {
      where: [
        { field: 'event', in: ['click', 'view'] },
        { field: 'user.country', equals: 'FR' },
        { field: 'amount', gte: 10, lt: 100 },
      ],
    });
    const batch = records([
      { event: 'click', user: { country: 'FR' }, amount: 10 },
      { event: 'buy', user: { country: 'FR' }, amount: 50 },
      { event: 'view', user: { country: 'DE' }, amount: 50 },
      { event: 'view', user: { country: 'FR' }, amount: 100 },
      { event: 'view', user: { country: 'FR' }, amount: '50' },
      { event: 'view', amount: 50 },
      { event: 'view', user: { country: 'FR' }, amount: 99.5 },
    ]);
    const result = await transform.process(batch);
    assert.deepEqual(
      result.records.map((r) => r.offset),
      [0, 6],
    );
    assert.deepEqual(result.rejected, []);
    assert.deepEqual(await transform.process([]), { records: [], rejected: [] });
  });

  it('tests equality strictly and deeply', () => {
    assert.equal(test({ equals: 1 })({ a: 1 }), true);
    assert.equal(test({ equals: 1 })({ a: '1' }), false);
    assert.equal(test({ equals: null })({ a: null }), true);
    assert.equal(test({ equals: null })({}), false, 'missing is not null');
    assert.equal(test({ equals: { b: [1] } })({ a: { b: [1] } }), true);
    assert.equal(test({ not_equals: 'x' })({}), true, 'a missing field is not equal');
    assert.equal(test({ not_equals: 'x' })({ a: 'x' }), false);
    assert.equal(test({ not_in: ['x', 'y'] })({ a: 'z' }), true);
    assert.equal(test({ not_in: ['x', 'y'] })({ a: 'y' }), false);
    assert.equal(test({ in: [1, 2] })({}), false);
  });

  it('tests presence: null counts as absent', () => {
    assert.equal(test({ exists: true })({ a: 0 }), true);
    assert.equal(test({ exists: true })({ a: null }), false);
    assert.equal(test({ exists: false })({}), true);
    assert.equal(test({ field: 'a.b', exists: false })({ a: 'not an object' }), true);
  });

  it('compares numbers with numbers and strings with strings', () => {
    assert.equal(test({ gt: 5 })({ a: 6 }), true);
    assert.equal(test({ gt: 5 })({ a: '6' }), false);
    assert.equal(test({ lte: '2024-06-01' })({ a: '2024-05-31T23:59:59Z' }), true);
    assert.equal(test({ gte: 0 })({}), false);
  });

  it('compares integers beyond ±2^53 exactly, with numbers and with each other', () => {
    const big = (digits: string) => parseJsonExact(digits);
    const value = parseJsonExact('{"a": 9007199254740993, "b": -9223372036854775808}') as JsonObject;
    assert.equal(test({ gt: 9007199254740992 })(value), true, '2^53 + 1 > 2^53, which a double cannot tell');
    assert.equal(test({ lt: 9007199254740992 })(value), false);
    assert.equal(test({ gte: big('9007199254740993') as BigInteger })(value), true);
    assert.equal(test({ gt: big('9007199254740993') as BigInteger })(value), false);
    assert.equal(test({ lt: 9007199254740994 })(value), true);
    assert.equal(test({ field: 'b', lt: -9223372036854775000 })(value), true);
    assert.equal(test({ gt: '9' })(value), false, 'a number is not compared with a string');
    assert.equal(test({ gt: big('9007199254740992') as BigInteger })({ a: 9007199254740991 }), false);
    assert.equal(test({ equals: big('9007199254740993') })(value), true);
    assert.equal(test({ equals: big('9007199254740992') })(value), false);
    assert.equal(test({ equals: 9007199254740992 })(value), false);
    assert.equal(test({ in: [1, big('9007199254740993')] })(value), true);
    assert.equal(test({ field: 'a.rawJSON', exists: true })(value), false, 'a BigInteger has no fields');
  });

  it('matches regular expressions against strings only', () => {
    assert.equal(test({ matches: '^[a-z]+@example\\.com$' })({ a: 'ada@example.com' }), true);
    assert.equal(test({ matches: '^1' })({ a: 12 }), false);
    assert.equal(test({ field: 'a.b.c', matches: 'x' })({ a: { b: { c: 'xyz' } } }), true);
  });

  it('refuses conditions without a test, bad regexes and bad paths', () => {
    assert.deepEqual(configIssues(filterTransform, { where: [{ field: 'a' }] }), [
      'where.0: give the field a test: equals, not_equals, in, not_in, exists, gt, gte, lt, lte, matches',
    ]);
    assert.match(
      configIssues(filterTransform, { where: [{ field: 'a', matches: '(' }] })[0] ?? '',
      /not a regular expression/,
    );
    assert.match(
      configIssues(filterTransform, { where: [{ field: 'a..b', exists: true }] })[0] ?? '',
      /empty segment/,
    );
    assert.equal(configIssues(filterTransform, { where: [] }).length, 1);
    assert.match(configIssues(filterTransform, { where: [{ field: 'a', eq: 1 }] }).join('\n'), /eq/);
  });
});
