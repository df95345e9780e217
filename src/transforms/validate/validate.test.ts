import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { parseJsonExact } from '../../core/json.ts';
import { isTributaryError } from '../../errors.ts';
import type { JsonObject } from '../shared/json-value.ts';
import { configIssues, create, record, records, tempProject } from '../shared/test-support.ts';
import { validateTransform } from './validate.ts';

const orderSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  required: ['user_id', 'amount'],
  properties: {
    user_id: { type: 'string' },
    amount: { type: 'number' },
    email: { type: 'string', format: 'email' },
    status: { enum: ['new', 'paid'] },
    items: { type: 'array', items: { type: 'object', required: ['sku'] } },
  },
};

const project = tempProject({
  'order.json': JSON.stringify(orderSchema),
  'draft7.json': JSON.stringify({
    $schema: 'http://json-schema.org/draft-07/schema#',
    type: 'object',
    definitions: { id: { type: 'integer' } },
    properties: { id: { $ref: '#/definitions/id' }, pair: { type: 'array', items: [{ type: 'string' }] } },
    additionalProperties: false,
  }),
  'order.yaml': 'type: object\nrequired: [id]\n',
  'ids.json': JSON.stringify({
    type: 'object',
    properties: {
      id: { type: 'integer', minimum: 0 },
      any: { minimum: 0 },
      text: { not: { type: 'number' } },
      list: { type: 'array', items: { type: 'integer' } },
    },
  }),
  'broken.json': '{ "type": ',
  'bad-keyword.json': JSON.stringify({ type: 'object', properties: { a: { type: 'strnig' } } }),
  'unknown-draft.json': JSON.stringify({ $schema: 'http://json-schema.org/draft-04/schema#' }),
  'unknown-format.json': JSON.stringify({ type: 'string', format: 'colour' }),
});
after(() => project.dispose());

describe('validate', () => {
  it('passes valid records unchanged and in order', async () => {
    const transform = await create(validateTransform, { schema: 'order.json' }, project.root);
    const batch = records([
      { user_id: 'a', amount: 1 },
      { user_id: 'b', amount: 2.5, email: 'b@example.com' },
      { user_id: 'c', amount: 3, items: [{ sku: 'x' }] },
    ]);
    const result = await transform.process(batch);
    assert.deepEqual(result.records, batch);
    assert.deepEqual(result.rejected, []);
  });

  it('checks integers beyond ±2^53 as numbers and passes them on exact', async () => {
    const transform = await create(validateTransform, { schema: 'ids.json' }, project.root);
    const batch = records(
      [
        '{"id": 1234567890123456789, "list": [18446744073709551615, 1]}',
        '{"id": -1234567890123456789}',
        '{"any": -1234567890123456789}',
        '{"text": 12345678901234567890}',
        '{"id": {"rawJSON": "1"}}',
      ].map((text) => parseJsonExact(text) as JsonObject),
    );
    const result = await transform.process(batch);
    assert.deepEqual(result.records, batch.slice(0, 1));
    assert.equal(
      JSON.stringify(result.records[0]?.value),
      '{"id":1234567890123456789,"list":[18446744073709551615,1]}',
    );
    assert.deepEqual(
      result.rejected.map((r) => `${r.record.offset}: ${r.error}`),
      [
        '1: /id: must be >= 0',
        '2: /any: must be >= 0',
        '3: /text: must NOT be valid',
        '4: /id: must be integer',
      ],
    );
  });

  it('rejects with the JSON path and rule of every error', async () => {
    const transform = await create(validateTransform, { schema: 'order.json' }, project.root);
    const bad = record(
      { amount: 'ten', email: 'nope', status: 'lost', items: [{ sku: 1 }, {}] },
      { offset: 1 },
    );
    const good = record({ user_id: 'x', amount: 1 }, { offset: 2 });
    const result = await transform.process([bad, good]);
    assert.deepEqual(result.records, [good], 'a rejection does not block the records after it');
    assert.equal(result.rejected.length, 1);
    assert.equal(result.rejected[0]?.record, bad);
    assert.equal(result.rejected[0]?.stage, 'validate');
    assert.equal(
      result.rejected[0]?.error,
      "/user_id: must have required property 'user_id'; /amount: must be number; " +
        '/email: must match format "email"; /status: must be equal to one of the allowed values ("new", "paid"); ' +
        "/items/1/sku: must have required property 'sku'",
    );
  });

  it('caps long reasons', async () => {
    const many = tempProject({
      'wide.json': JSON.stringify({
        type: 'object',
        required: Array.from({ length: 200 }, (_, i) => `a_rather_long_field_name_${i}`),
      }),
    });
    try {
      const transform = await create(validateTransform, { schema: 'wide.json' }, many.root);
      const { rejected } = await transform.process([record({})]);
      const error = rejected[0]?.error ?? '';
      assert.ok(error.length <= 1000, `reason is ${error.length} characters`);
      assert.match(error, /… and \d+ more$/);
    } finally {
      many.dispose();
    }
  });

  it('supports draft-07 and YAML schema files', async () => {
    const draft7 = await create(validateTransform, { schema: 'draft7.json' }, project.root);
    const result = await draft7.process(
      records([{ id: 1, pair: ['a'] }, { id: 1.5 }, { id: 2, extra: true }]),
    );
    assert.equal(result.records.length, 1);
    assert.deepEqual(
      result.rejected.map((r) => r.error),
      ['/id: must be integer', '/extra: must NOT have additional properties'],
    );
    const yaml = await create(validateTransform, { schema: 'order.yaml' }, project.root);
    const yamlResult = await yaml.process(records([{ id: 1 }, {}]));
    assert.equal(yamlResult.rejected[0]?.error, "/id: must have required property 'id'");
  });

  it('accepts absolute paths', async () => {
    const transform = await create(
      validateTransform,
      { schema: `${project.root}/order.json` },
      '/nonexistent',
    );
    assert.equal((await transform.process([])).records.length, 0);
  });

  it('refuses schemas that are missing, malformed or do not compile', async () => {
    for (const [file, pattern] of [
      ['missing.json', /cannot read the JSON Schema file missing\.json/],
      ['broken.json', /broken\.json is not valid JSON/],
      ['bad-keyword.json', /cannot be used: schema is invalid/],
      ['unknown-draft.json', /not a supported draft/],
      ['unknown-format.json', /unknown format "colour"/],
    ] as const) {
      await assert.rejects(
        create(validateTransform, { schema: file }, project.root),
        (error) => isTributaryError(error, 'CONFIG_INVALID') && pattern.test(error.message),
        file,
      );
    }
  });

  it('requires a schema path in the config', () => {
    assert.deepEqual(configIssues(validateTransform, {}), [
      'schema: Invalid input: expected string, received undefined',
    ]);
    assert.equal(configIssues(validateTransform, { schema: 'a.json', extra: 1 }).length, 1);
  });
});
