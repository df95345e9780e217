import assert from 'node:assert/strict';
import { it } from 'node:test';
import { isTributaryError } from '../errors.ts';
import { parseSchemaJson } from './schema.ts';
import { describeSortOrder, parseSortOrder, unsorted } from './sort-order.ts';

const schema = parseSchemaJson({
  fields: [
    { name: 'ts', type: 'timestamp' },
    { name: 'id', type: 'long' },
    { name: 'name', type: 'string' },
    { name: 'desc', type: 'string' },
  ],
});

it('parses directions and null orders with Iceberg’s defaults', () => {
  assert.deepEqual(
    parseSortOrder(
      'ts desc nulls last, id, name DESC, bucket(4, id) asc nulls last, day(ts) desc NULLS FIRST',
      schema,
    ),
    {
      'order-id': 1,
      fields: [
        { 'source-id': 1, transform: 'identity', direction: 'desc', 'null-order': 'nulls-last' },
        { 'source-id': 2, transform: 'identity', direction: 'asc', 'null-order': 'nulls-first' },
        { 'source-id': 3, transform: 'identity', direction: 'desc', 'null-order': 'nulls-last' },
        { 'source-id': 2, transform: 'bucket[4]', direction: 'asc', 'null-order': 'nulls-last' },
        { 'source-id': 1, transform: 'day', direction: 'desc', 'null-order': 'nulls-first' },
      ],
    },
  );
  assert.equal(parseSortOrder('id', schema, 3)['order-id'], 3);
  assert.deepEqual(parseSortOrder('"desc" desc', schema).fields[0], {
    'source-id': 4,
    transform: 'identity',
    direction: 'desc',
    'null-order': 'nulls-last',
  });
});

it('treats an empty order as unsorted (order id 0)', () => {
  assert.deepEqual(unsorted(), { 'order-id': 0, fields: [] });
  assert.deepEqual(parseSortOrder('  ', schema), unsorted());
});

it('explains bad sort orders', () => {
  const rejects = (text: string, pattern: RegExp) =>
    assert.throws(
      () => parseSortOrder(text, schema),
      (error) => isTributaryError(error, 'ICEBERG_INVALID_PARTITION') && pattern.test(error.message),
      text,
    );
  rejects('nope desc', /Column nope/);
  rejects('desc', /names no column/);
  rejects('id, id desc', /Sort term "id desc" repeats id/);
  rejects('day(name)', /Cannot apply day to column name/);
  rejects('void(id)', /Cannot sort by void\(id\)/);
  assert.throws(
    () => parseSortOrder('id', schema, 0),
    (error) => isTributaryError(error, 'ICEBERG_INVALID_PARTITION'),
  );
});

it('describes an order as text that parses back', () => {
  const order = parseSortOrder('ts desc, bucket(4, id)', schema);
  const text = describeSortOrder(order, schema);
  assert.equal(text, 'ts desc nulls last, bucket(4, id) asc nulls first');
  assert.deepEqual(parseSortOrder(text, schema), order);
});
