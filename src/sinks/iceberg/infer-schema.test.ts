import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseJsonExact } from '../../core/json.ts';
import { inferStruct } from './infer-schema.ts';

/** The inferred type of each field, for values given as JSON texts. */
const types = (...texts: string[]) =>
  Object.fromEntries(
    inferStruct(texts.map((text) => parseJsonExact(text) as Record<string, unknown>)).fields.map((f) => [
      f.name,
      f.type,
    ]),
  );

describe('inferStruct', () => {
  it('infers long for integers up to int64 and decimal(38, 0) beyond, never a struct', () => {
    assert.deepEqual(
      types(
        '{"id": 1234567890123456789, "min": -9223372036854775808, "huge": 18446744073709551615, "list": [9007199254740993]}',
      ),
      {
        id: 'long',
        min: 'long',
        huge: 'decimal(38, 0)',
        list: { type: 'list', 'element-id': 0, element: 'long', 'element-required': false },
      },
    );
  });

  it('merges integers of every size into decimal(38, 0), and with fractions into double', () => {
    assert.deepEqual(
      types(
        '{"a": 1, "b": 1, "c": 1.5, "d": "x"}',
        '{"a": 1234567890123456789, "b": 18446744073709551615, "c": 18446744073709551615, "d": 18446744073709551615}',
        '{"a": 2, "b": 2}',
      ),
      { a: 'long', b: 'decimal(38, 0)', c: 'double', d: 'string' },
    );
  });
});
