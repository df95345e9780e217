import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { PipelineRecord, Transform } from '../../core/pipeline/model.ts';
import { parseJsonExact } from '../../core/json.ts';
import { isTributaryError } from '../../errors.ts';
import type { JsonObject } from '../shared/json-value.ts';
import { configIssues, create, record } from '../shared/test-support.ts';
import { sqlTransform } from './sql.ts';

const T0 = 1_700_000_000_000;
const open: Transform[] = [];
after(async () => {
  for (const transform of open) await transform.close?.();
});

async function sql(query: string): Promise<Transform> {
  const transform = await create(sqlTransform, { query });
  open.push(transform);
  return transform;
}

const batch: PipelineRecord[] = [
  record(
    { user: 'ada', amount: 10, meta: { country: 'FR' } },
    { partition: 0, offset: 5, key: 'k1', timestamp: T0, headers: { h: '1' } },
  ),
  record({ user: 'bob', amount: 7.5, when: '2024-05-01' }, { partition: 1, offset: 3, timestamp: T0 + 1 }),
  record({ user: 'ada', amount: 2, tags: ['x'] }, { partition: 0, offset: 6, timestamp: T0 + 2 }),
];

describe('sql', () => {
  it('passes rows through with their positions, keys, timestamps and headers', async () => {
    const transform = await sql('select * from batch');
    const result = await transform.process(batch);
    assert.deepEqual(result.rejected, []);
    assert.deepEqual(
      result.records.map((r) => [r.partition, r.offset, r.key, r.timestamp, r.headers]),
      batch.map((r) => [r.partition, r.offset, r.key, r.timestamp, r.headers]),
    );
    // Columns come from the whole batch: a field missing in a record is null there.
    assert.deepEqual(result.records[0]?.value, {
      user: 'ada',
      amount: 10,
      meta: { country: 'FR' },
      when: null,
      tags: null,
    });
    assert.deepEqual(result.records[1]?.value.when, '2024-05-01', 'date-like text stays text');
    assert.deepEqual(result.records[2]?.value.tags, ['x']);
  });

  it('filters and reshapes, reaching nested fields and the position columns', async () => {
    const transform = await sql(
      `select _partition, _offset, upper(user) as user, meta.country as country, amount * 2 as double,
              _key is not null as keyed, epoch_ms(_timestamp) as ms
       from batch where amount > 5`,
    );
    const result = await transform.process(batch);
    assert.deepEqual(
      result.records.map((r) => [r.partition, r.offset, r.value]),
      [
        [0, 5, { user: 'ADA', country: 'FR', double: 20, keyed: true, ms: T0 }],
        [1, 3, { user: 'BOB', country: null, double: 15, keyed: false, ms: T0 + 1 }],
      ],
    );
  });

  it("gives aggregate rows the batch's last position, and takes _key and _timestamp from the output", async () => {
    const transform = await sql(
      `select user, sum(amount) as total, count(*) as n, user as _key, max(_timestamp) as _timestamp
       from batch group by user order by user`,
    );
    const result = await transform.process(batch);
    assert.deepEqual(
      result.records.map((r) => [r.partition, r.offset, r.key, r.timestamp, r.headers, r.value]),
      [
        [0, 6, 'ada', T0 + 2, {}, { user: 'ada', total: 12, n: 2 }],
        [0, 6, 'bob', T0 + 1, {}, { user: 'bob', total: 7.5, n: 1 }],
      ],
    );
  });

  it('keeps the order within each partition even when the query sorts otherwise', async () => {
    const transform = await sql('select _partition, _offset, amount from batch order by amount');
    const result = await transform.process(batch);
    assert.deepEqual(
      result.records.map((r) => [r.partition, r.offset]),
      [
        [0, 5],
        [1, 3],
        [0, 6],
      ],
    );
  });

  it('returns JSON values: integers as exact numbers, JSON columns parsed, timestamps in ISO 8601', async () => {
    const transform = await sql(
      `select _partition, _offset, mixed, 9007199254740993::hugeint as huge, 1.25::decimal(5, 2) as price,
              timestamptz '2024-05-01 12:00:00.123456+02' as at, map {'a': 1} as m, {'x': [1, 2]} as s
       from batch`,
    );
    const result = await transform.process([
      record({ mixed: 1 }, { offset: 0 }),
      record({ mixed: 'one' }, { offset: 1 }),
      record({ mixed: { a: [true] } }, { offset: 2 }),
    ]);
    assert.deepEqual(
      result.records.map((r) => r.value.mixed),
      [1, 'one', { a: [true] }],
    );
    assert.equal(JSON.stringify(result.records[0]?.value.huge), '9007199254740993');
    assert.deepEqual(result.records[0]?.value, {
      mixed: 1,
      huge: result.records[0]?.value.huge,
      price: 1.25,
      at: '2024-05-01T10:00:00.123456Z',
      m: { a: 1 },
      s: { x: [1, 2] },
    });
  });

  it('sees integers beyond ±2^53 exactly and returns them exactly', async () => {
    const transform = await sql(
      `select id, id + 1 as next, typeof(id) as type, huge, huge - 1 as less, 12345678901234567890123::decimal(38, 0) as d,
              '{"n": 18446744073709551615}'::json as j, [id, 1] as list, {'id': id} as s
       from batch`,
    );
    const result = await transform.process([
      record(parseJsonExact('{"id": 1234567890123456789, "huge": 18446744073709551615}') as JsonObject),
    ]);
    assert.equal(
      JSON.stringify(result.records[0]?.value),
      '{"id":1234567890123456789,"next":1234567890123456790,"type":"BIGINT","huge":18446744073709551615,' +
        '"less":18446744073709551614,"d":12345678901234567890123,"j":{"n":18446744073709551615},' +
        '"list":[1234567890123456789,1],"s":{"id":1234567890123456789}}',
    );
  });

  it('hands DuckDB integers beyond its JSON reader (-2^63 to 2^64 - 1) as exact text', async () => {
    const transform = await sql('select n, typeof(huge) as type, huge::hugeint + 1 as more from batch');
    const result = await transform.process(
      [
        '{"n": 1, "huge": 18446744073709551615}',
        '{"n": 2, "huge": 18446744073709551616}',
        '{"n": 3, "huge": -9223372036854775809}',
      ].map((text, offset) => record(parseJsonExact(text) as JsonObject, { offset })),
    );
    assert.equal(
      JSON.stringify(result.records.map((r) => r.value)),
      // Numbers and text in one column make it JSON; text alone, VARCHAR.
      '[{"n":1,"type":"JSON","more":18446744073709551616},{"n":2,"type":"JSON","more":18446744073709551617},' +
        '{"n":3,"type":"JSON","more":-9223372036854775808}]',
    );
  });

  it('handles empty batches, empty values and value fields named like position columns', async () => {
    const count = await sql('select count(*) as n from batch');
    assert.deepEqual(await count.process([]), { records: [], rejected: [] });
    const all = await sql('select * from batch');
    const result = await all.process([
      record({}, { offset: 0 }),
      record({ _offset: 99, a: 1 }, { offset: 1 }),
    ]);
    assert.deepEqual(
      result.records.map((r) => [r.offset, r.value]),
      [
        [0, { a: null }],
        [1, { a: 1 }],
      ],
    );
    assert.deepEqual((await all.process([record({}, { offset: 7 })])).records[0]?.value, {});
  });

  it('keeps nested objects DuckDB cannot type as JSON instead of failing the batch', async () => {
    const transform = await sql('select * from batch');
    const result = await transform.process([
      record({ n: { id: 1 }, a: 1 }, { offset: 0 }),
      record({ n: { ID: 2 } }, { offset: 1 }),
    ]);
    assert.deepEqual(
      result.records.map((r) => r.value),
      [
        { n: { id: 1 }, a: 1 },
        { n: { ID: 2 }, a: null },
      ],
    );
  });

  it('runs batch after batch with different columns', async () => {
    const transform = await sql('select * exclude (_timestamp) from batch');
    await transform.process([record({ a: 1 })]);
    const second = await transform.process([record({ b: 'x' }, { offset: 1 })]);
    assert.deepEqual(second.records[0]?.value, { b: 'x' });
  });

  it('fails the batch when the query fails on it', async () => {
    const transform = await sql('select cast(amount as integer) as amount from batch');
    await assert.rejects(
      transform.process([record({ amount: 'ten' })]),
      (error) =>
        isTributaryError(error, 'INVALID_INPUT') &&
        /query failed on a batch of 1 records: Conversion Error/.test(error.message),
    );
    const moved = await sql('select _partition, _offset + 100 as _offset from batch');
    await assert.rejects(
      moved.process([record({ a: 1 })]),
      /partition 0 offset 100, which is not in the batch/,
    );
    assert.equal(
      (await transform.process([record({ amount: '12' })])).records[0]?.value.amount,
      12,
      'and recovers',
    );
  });

  it('reads nothing but the batch', async () => {
    await assert.rejects(
      create(sqlTransform, { query: "select * from read_text('/etc/hostname')" }),
      (error) => isTributaryError(error, 'CONFIG_INVALID') && /Permission Error/.test(error.message),
    );
  });

  it('refuses queries that are not one SELECT, or reach unknown tables and functions', async () => {
    const cases = [
      ['delete from batch', /not a SELECT statement/],
      ['select 1; select 2', /2 statements, not one/],
      ['selec * from batch', /syntax error/],
      ['select * from batches', /Table with name batches does not exist/],
      ['select lowerr(user) from batch', /Function with name lowerr does not exist/],
      ["copy batch to 'out.csv'", /not a SELECT statement/],
    ] as const;
    for (const [query, pattern] of cases) {
      await assert.rejects(
        create(sqlTransform, { query }),
        (error) => isTributaryError(error, 'CONFIG_INVALID') && pattern.test(error.message),
        query,
      );
    }
    // Columns are only known once a batch comes: an unknown column is not a startup error.
    open.push(await create(sqlTransform, { query: 'with t as (select amount from batch) select * from t' }));
    assert.equal(configIssues(sqlTransform, { query: '' }).length, 1);
  });
});
