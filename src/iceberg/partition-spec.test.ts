import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTributaryError } from '../errors.ts';
import {
  buildSpec,
  describePartitionSpec,
  fieldValue,
  isUnpartitioned,
  parsePartitionExpression,
  partitioner,
  partitionPath,
  partitionType,
  partitionValues,
  unpartitioned,
  urlEncode,
  validatePartitionSpec,
} from './partition-spec.ts';
import { parseSchemaJson } from './schema.ts';
import type { IcebergValue } from './types.ts';

const schema = parseSchemaJson({
  fields: [
    { name: 'ts', type: 'timestamptz', required: true }, // 1
    { name: 'user_id', type: 'long' }, // 2
    { name: 'name', type: 'string' }, // 3
    { name: 'country', type: 'string' }, // 4
    { name: 'x', type: 'int' }, // 5
    { name: 'd', type: 'date' }, // 6
    { name: 'user id', type: 'long' }, // 7
    { name: 'loc', type: { type: 'struct', fields: [{ name: 'zone', type: 'string' }] } }, // 8, zone 11
    { name: 'tags', type: { type: 'list', element: 'string' } }, // 9, element 12
    { name: 'score', type: 'double' }, // 10
  ],
});

const rejects = (text: string, pattern: RegExp) =>
  assert.throws(
    () => parsePartitionExpression(text, schema),
    (error) =>
      isTributaryError(error, 'ICEBERG_INVALID_PARTITION') && pattern.test(error.message) && !!error.hint,
    text,
  );

describe('parsePartitionExpression', () => {
  it('reads every transform and names fields as Java’s PartitionSpec.Builder', () => {
    const fields = parsePartitionExpression(
      'day(ts), bucket(16, user_id), truncate(4, name), identity(country), void(x), year(d), "user id", loc.zone',
      schema,
    );
    assert.deepEqual(fields, [
      { 'source-id': 1, transform: 'day', name: 'ts_day' },
      { 'source-id': 2, transform: 'bucket[16]', name: 'user_id_bucket' },
      { 'source-id': 3, transform: 'truncate[4]', name: 'name_trunc' },
      { 'source-id': 4, transform: 'identity', name: 'country' },
      { 'source-id': 5, transform: 'void', name: 'x_null' },
      { 'source-id': 6, transform: 'year', name: 'd_year' },
      { 'source-id': 7, transform: 'identity', name: 'user id' },
      { 'source-id': 11, transform: 'identity', name: 'loc.zone' },
    ]);
    assert.deepEqual(
      parsePartitionExpression('month(ts)', schema).map((f) => f.name),
      ['ts_month'],
    );
    assert.deepEqual(
      parsePartitionExpression('hour(ts), identity(`country`)', schema).map((f) => [f.name, f.transform]),
      [
        ['ts_hour', 'hour'],
        ['country', 'identity'],
      ],
    );
    assert.deepEqual(parsePartitionExpression('', schema), []);
  });

  it('accepts Spark’s plural names and either argument order', () => {
    assert.deepEqual(parsePartitionExpression('days(ts), bucket(user_id, 8), TRUNCATE(name, 2)', schema), [
      { 'source-id': 1, transform: 'day', name: 'ts_day' },
      { 'source-id': 2, transform: 'bucket[8]', name: 'user_id_bucket' },
      { 'source-id': 3, transform: 'truncate[2]', name: 'name_trunc' },
    ]);
  });

  it('names fields as Java’s UpdatePartitionSpec when evolving', () => {
    const fields = parsePartitionExpression('bucket(16, user_id), truncate(4, name), day(ts)', schema, {
      nameStyle: 'evolve',
    });
    assert.deepEqual(
      fields.map((field) => field.name),
      ['user_id_bucket_16', 'name_trunc_4', 'ts_day'],
    );
  });

  it('explains malformed expressions, unknown columns and misapplied transforms', () => {
    rejects('day(ts), , country', /Term 2 of .* is empty/);
    rejects('day(ts', /expected "\)"/);
    rejects('day ts', /expected "\("/);
    rejects('bucket(user_id)', /bucket takes a bucket count and a column/);
    rejects('day(ts, d)', /day takes one column/);
    rejects('week(ts)', /Unknown partition transform week/);
    rejects(
      'day(timestamp)',
      /Column timestamp in partition term "day\(timestamp\)" is not in the table schema/,
    );
    rejects('Country', /is not in the table schema/);
    rejects('day(name)', /Cannot apply day to column name of type string/);
    rejects('hour(d)', /Cannot apply hour to column d of type date/);
    rejects('bucket(4, score)', /Cannot apply bucket to column score of type double/);
    rejects('loc', /it is a struct, not a primitive/);
    rejects('tags.element', /inside a list or map/);
    rejects('day(ts), hour(ts)', /day\(ts\) and hour\(ts\) are redundant/);
    rejects('bucket(4, x), bucket(8, x)', /x_bucket/);
    rejects('"unclosed', /Unclosed "/);
    assert.throws(
      () => parsePartitionExpression('Country', schema),
      (error) => isTributaryError(error) && /did you mean country/.test(error.hint ?? ''),
    );
  });

  it('refuses partition names that shadow another column', () => {
    const clash = parseSchemaJson({
      fields: [
        { name: 'ts', type: 'timestamp' },
        { name: 'ts_day', type: 'date' },
      ],
    });
    assert.throws(
      () => parsePartitionExpression('day(ts)', clash),
      (error) =>
        isTributaryError(error, 'ICEBERG_INVALID_PARTITION') &&
        /ts_day .* is already a column/.test(error.message),
    );
  });
});

describe('buildSpec', () => {
  it('assigns ids from 1000 on, continuing from the last partition id', () => {
    const fields = parsePartitionExpression('day(ts), bucket(16, user_id)', schema);
    const first = buildSpec(fields, 0, 999);
    assert.deepEqual(first, {
      spec: {
        'spec-id': 0,
        fields: [
          { 'source-id': 1, 'field-id': 1000, name: 'ts_day', transform: 'day' },
          { 'source-id': 2, 'field-id': 1001, name: 'user_id_bucket', transform: 'bucket[16]' },
        ],
      },
      lastPartitionId: 1001,
    });
    assert.equal(buildSpec(fields, 0, 0).spec.fields[0]?.['field-id'], 1000);
  });

  it('reuses the id of the same field in an earlier spec (v2 partition evolution)', () => {
    const { spec: first, lastPartitionId } = buildSpec(
      parsePartitionExpression('day(ts), bucket(16, user_id)', schema),
      0,
      999,
    );
    const { spec: second, lastPartitionId: last } = buildSpec(
      parsePartitionExpression('country, day(ts), bucket(8, user_id)', schema),
      1,
      lastPartitionId,
      [first],
    );
    assert.deepEqual(
      second.fields.map((field) => [field.name, field['field-id']]),
      [
        ['country', 1002],
        ['ts_day', 1000],
        ['user_id_bucket', 1003], // bucket[8] is another transform than bucket[16]
      ],
    );
    assert.equal(last, 1003);
  });

  it('rejects duplicate names and ids', () => {
    const fail = (fn: () => unknown) =>
      assert.throws(fn, (error) => isTributaryError(error, 'ICEBERG_INVALID_PARTITION'));
    fail(() =>
      buildSpec(
        [
          { 'source-id': 1, transform: 'day', name: 'a' },
          { 'source-id': 2, transform: 'identity', name: 'a' },
        ],
        0,
        999,
      ),
    );
    fail(() =>
      buildSpec(
        [
          { 'source-id': 1, transform: 'day', name: 'a', 'field-id': 1000 },
          { 'source-id': 2, transform: 'identity', name: 'b', 'field-id': 1000 },
        ],
        0,
        999,
      ),
    );
    fail(() => buildSpec([{ 'source-id': 1, transform: 'day', name: '' }], 0, 999));
  });
});

describe('partition values, types and paths', () => {
  const { spec } = buildSpec(
    parsePartitionExpression('day(ts), bucket(16, user_id), truncate(4, name), country, loc.zone', schema),
    0,
    999,
  );

  it('types the partition tuple with optional fields of the result types', () => {
    assert.deepEqual(partitionType(spec, schema), {
      type: 'struct',
      fields: [
        { id: 1000, name: 'ts_day', required: false, type: 'date' },
        { id: 1001, name: 'user_id_bucket', required: false, type: 'int' },
        { id: 1002, name: 'name_trunc', required: false, type: 'string' },
        { id: 1003, name: 'country', required: false, type: 'string' },
        { id: 1004, name: 'loc.zone', required: false, type: 'string' },
      ],
    });
  });

  it('computes a row’s tuple and its path as pyiceberg’s partition_to_path and Java’s partitionToPath', () => {
    const row: IcebergValue = {
      ts: 1706706000123456n,
      user_id: 42n,
      name: 'a/b?c',
      country: 'x y=z&ü',
      loc: { zone: null },
    };
    const values = partitionValues(spec, schema, (id) => fieldValue(schema, row, id) ?? null);
    assert.deepEqual(values, [19753, 14, 'a/b?', 'x y=z&ü', null]);
    assert.equal(
      partitionPath(spec, schema, values),
      'ts_day=2024-01-31/user_id_bucket=14/name_trunc=a%2Fb%3F/country=x+y%3Dz%26%C3%BC/loc.zone=null',
    );
    assert.deepEqual(
      partitioner(spec, schema)(() => null),
      [null, null, null, null, null],
    );
  });

  it('writes identity paths in Java’s human forms', () => {
    const wide = parseSchemaJson({
      fields: [
        { name: 'd', type: 'date' },
        { name: 'amount', type: 'decimal(10, 2)' },
        { name: 'b', type: 'binary' },
      ],
    });
    const { spec: identity } = buildSpec(parsePartitionExpression('d, amount, b', wide), 0, 999);
    // Same string as pyiceberg 0.12 produces for these values.
    assert.equal(
      partitionPath(identity, wide, [-1, -5n, Uint8Array.of(0, 255)]),
      'd=1969-12-31/amount=-0.05/b=AP8%3D',
    );
  });

  it('encodes like java.net.URLEncoder', () => {
    assert.equal(urlEncode("a-b_c.d*e f!'()~/"), 'a-b_c.d*e+f%21%27%28%29%7E%2F');
  });

  it('reads nested struct values, and nothing inside lists', () => {
    assert.equal(fieldValue(schema, { loc: { zone: 'eu' } }, 11), 'eu');
    assert.equal(fieldValue(schema, { loc: null }, 11), null);
    assert.equal(fieldValue(schema, {}, 2), null);
    assert.equal(fieldValue(schema, { tags: ['a'] }, 12), undefined);
  });
});

describe('specs against schemas', () => {
  it('describes a spec as an expression that parses back', () => {
    const text = 'day(ts), bucket(16, user_id), truncate(4, name), country, "user id", void(x)';
    const { spec } = buildSpec(parsePartitionExpression(text, schema), 0, 999);
    assert.equal(describePartitionSpec(spec, schema), text);
  });

  it('knows the unpartitioned spec', () => {
    assert.deepEqual(unpartitioned(), { 'spec-id': 0, fields: [] });
    assert.ok(isUnpartitioned(unpartitioned()));
    assert.ok(
      isUnpartitioned({
        'spec-id': 1,
        fields: [{ 'source-id': 1, 'field-id': 1000, name: 'ts_null', transform: 'void' }],
      }),
    );
  });

  it('validates specs and keeps fixed result types when a source column is gone', () => {
    const spec = {
      'spec-id': 0,
      fields: [{ 'source-id': 99, 'field-id': 1000, name: 'gone_day', transform: 'day' }],
    };
    assert.throws(
      () => validatePartitionSpec(spec, schema),
      (error) => isTributaryError(error, 'ICEBERG_INVALID_PARTITION') && /gone_day/.test(error.message),
    );
    assert.equal(partitionType(spec, schema).fields[0]?.type, 'date');
    const identity = {
      'spec-id': 0,
      fields: [{ 'source-id': 99, 'field-id': 1000, name: 'gone', transform: 'identity' }],
    };
    assert.throws(
      () => partitionType(identity, schema),
      (error) => isTributaryError(error, 'ICEBERG_INVALID_PARTITION'),
    );
    validatePartitionSpec(
      buildSpec(parsePartitionExpression('day(ts), country', schema), 0, 999).spec,
      schema,
    );
  });
});
