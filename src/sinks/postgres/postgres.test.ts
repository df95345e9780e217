/** The PostgreSQL sink's parts that need no server (the sink itself: test/integration/sink-postgres.test.ts). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toJsonSchema } from '../../core/config/json-schema.ts';
import { parseJsonExact } from '../../core/json.ts';
import { isTributaryError } from '../../errors.ts';
import { postgresSinkSchema } from './config.ts';
import { describeServer, isRecordError, translate } from './errors.ts';
import { parseQualified, quote } from './identifiers.ts';
import { keySpelling } from './postgres-sink.ts';
import { inferColumns } from './infer.ts';

const base = { type: 'postgres', url: 'postgresql://app:pw@db:5432/app', table: 'public.events' };
const issues = (config: Record<string, unknown>) => {
  const result = postgresSinkSchema.safeParse({ ...base, ...config });
  return result.success ? [] : result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

describe('postgres sink configuration', () => {
  it('fills in defaults', () => {
    assert.deepEqual(postgresSinkSchema.parse(base), {
      ...base,
      mode: 'append',
      create_table: true,
      positions_table: 'tributary_sink_positions',
      rejections_table: 'tributary_sink_rejections',
      connect_timeout: 10_000,
      statement_timeout: 60_000,
    });
  });

  it('refuses what cannot work', () => {
    assert.deepEqual(issues({ mode: 'upsert' }), [
      'key: upsert needs `key`: the columns that identify a row',
    ]);
    assert.deepEqual(issues({ key: ['id'] }), ['key: `key` is only used with mode: upsert']);
    assert.deepEqual(issues({ mode: 'upsert', key: ['id', 'id'] }), ['key: a column is listed twice']);
    assert.deepEqual(issues({ mode: 'upsert', key: ['id'], columns: { name: 'text' } }), [
      'key: key column "id" is not in `columns`',
    ]);
    assert.deepEqual(issues({ url: 'mysql://x' }), ['url: must be a postgresql:// URL']);
    assert.deepEqual(issues({ url: 'postgresql://db/app?sslmode=require', ssl: { mode: 'require' } }), [
      'ssl: TLS is set both in the URL (ssl…) and in `ssl`: keep one',
    ]);
    assert.equal(issues({ statement_timeout: 'forever' }).length, 1);
  });

  it('takes only plain identifiers and simple type names', () => {
    for (const table of ['events', 'bronze.events', 'Order', '_x1'])
      assert.deepEqual(issues({ table }), [], table);
    for (const table of ['a.b.c', 'a-b', '"a"', 'a;drop', '1a', '', 'x'.repeat(64)]) {
      assert.equal(issues({ table }).length, 1, table);
    }
    for (const type of [
      'text',
      'bigint',
      'double precision',
      'numeric(12,2)',
      'numeric(12, 2)',
      'text[]',
      'varchar(64)',
    ]) {
      assert.deepEqual(issues({ columns: { a: type } }), [], type);
    }
    for (const type of ['text); drop table x; --', "text default 'x'", 'text -- x', '']) {
      assert.equal(issues({ columns: { a: type } }).length, 1, type);
    }
  });

  it('describes every field, for the reference docs', () => {
    const schema = toJsonSchema(postgresSinkSchema);
    const undescribed = Object.entries(schema.properties ?? {})
      .filter(([, property]) => !property.description)
      .map(([key]) => key);
    assert.deepEqual(undescribed, []);
  });
});

describe('postgres identifiers', () => {
  it('parses schema.table and quotes names', () => {
    assert.deepEqual(parseQualified('events'), { schema: 'public', name: 'events' });
    assert.deepEqual(parseQualified('events', 'bronze'), { schema: 'bronze', name: 'events' });
    assert.deepEqual(parseQualified('Bronze.Events'), { schema: 'Bronze', name: 'Events' });
    assert.equal(parseQualified('a."b"'), undefined);
    assert.equal(quote('select'), '"select"');
    assert.throws(() => quote('a"b'));
  });
});

describe('postgres column inference', () => {
  it('maps JSON values to column types', () => {
    const { columns, skipped } = inferColumns([
      { i: 1, f: 1.5, mixed_num: 1, b: true, s: 'x', o: { a: 1 }, a: [1], n: null, mixed: 1 },
      { i: 2, f: 2, mixed_num: 2.5, b: false, s: 'y', o: null, a: [], n: null, mixed: 'one', 'bad name': 1 },
    ]);
    assert.deepEqual(Object.fromEntries(columns), {
      i: 'bigint',
      f: 'double precision',
      mixed_num: 'double precision',
      b: 'boolean',
      s: 'text',
      o: 'jsonb',
      a: 'jsonb',
      n: 'text',
      mixed: 'jsonb',
    });
    assert.deepEqual(skipped, ['bad name']);
    assert.equal(inferColumns([{ big: 2 ** 60 }]).columns.get('big'), 'double precision');
  });

  it('keeps integers beyond ±2^53 exact: bigint, numeric beyond int64 or next to fractions', () => {
    const values = [
      '{"id": 1, "min": -9223372036854775808, "huge": 1, "mixed": 1234567890123456789, "f": 1.5, "s": 1}',
      '{"id": 1234567890123456789, "huge": 18446744073709551615, "mixed": 0.5, "f": 2, "s": 18446744073709551615}',
      '{"s": "x"}',
    ].map((text) => parseJsonExact(text) as Record<string, unknown>);
    assert.deepEqual(Object.fromEntries(inferColumns(values).columns), {
      id: 'bigint',
      min: 'bigint',
      huge: 'numeric',
      mixed: 'numeric',
      f: 'double precision',
      s: 'jsonb',
    });
  });
});

describe('postgres upsert keys', () => {
  it('spells an integer key alike however it came: number, text or an integer beyond ±2^53', () => {
    const big = parseJsonExact('1234567890123456789');
    assert.equal(keySpelling(big, 'bigint'), '1234567890123456789');
    assert.equal(keySpelling(' +1234567890123456789', 'bigint'), '1234567890123456789');
    assert.equal(keySpelling(42, 'integer'), '42');
    assert.equal(keySpelling(big, 'text'), big, 'other columns keep the value as written');
  });
});

describe('postgres errors', () => {
  const facts = { server: 'postgresql://app@db:5432/app', sink: 'postgres:public.events', action: 'write' };
  const pgError = (code: string, message = 'boom') => Object.assign(new Error(message), { code });

  it('makes connection failures, timeouts, deadlocks and serialization failures retryable', () => {
    for (const code of [
      'ECONNREFUSED',
      'ECONNRESET',
      '08006',
      '57P01',
      '53300',
      '40001',
      '40P01',
      '55P03',
      '57014',
    ]) {
      const error = translate(pgError(code), facts);
      assert.ok(isTributaryError(error, 'SERVICE_UNAVAILABLE') && error.retryable, code);
    }
    assert.ok(translate(new Error('Connection terminated unexpectedly'), facts).retryable);
  });

  it('makes bad credentials, missing databases and tables that do not fit permanent, with a hint', () => {
    for (const [code, expected] of [
      ['28P01', 'SERVICE_UNAVAILABLE'],
      ['3D000', 'SERVICE_UNAVAILABLE'],
      ['42501', 'SERVICE_UNAVAILABLE'],
      ['42703', 'INVALID_INPUT'],
      ['42P10', 'INVALID_INPUT'],
    ] as const) {
      const error = translate(pgError(code), facts);
      assert.ok(isTributaryError(error, expected) && !error.retryable && error.hint, code);
    }
  });

  it('tells record errors apart and never shows a password', () => {
    assert.ok(isRecordError(pgError('22P02')));
    assert.ok(isRecordError(pgError('23502')));
    assert.ok(!isRecordError(pgError('42P01')));
    assert.equal(
      describeServer('postgresql://app:s3cret@db:5432/app?password=s3cret'),
      'postgresql://app@db:5432/app',
    );
    assert.ok(!describeServer('postgresql://app:s3cret@db:5432/a b%').includes('s3cret'));
  });
});
