import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTributaryError } from '../errors.ts';
import {
  assignFreshIds,
  columnNames,
  findColumnName,
  findFieldById,
  findFieldByName,
  highestFieldId,
  indexParents,
  isPromotionAllowed,
  parsePrimitiveType,
  parseSchemaJson,
  selectColumns,
  selectFields,
  validateIdentifierFields,
} from './schema.ts';
import type { Schema } from './types.ts';

/** The schema pyiceberg's assign_fresh_schema_ids was run on (ids 10, 20, …). */
const input: Schema = {
  type: 'struct',
  'schema-id': 0,
  'identifier-field-ids': [10],
  fields: [
    { id: 10, name: 'id', required: true, type: 'long' },
    {
      id: 20,
      name: 'loc',
      required: false,
      type: {
        type: 'struct',
        fields: [
          { id: 21, name: 'lat', required: false, type: 'double' },
          { id: 22, name: 'lon', required: false, type: 'double' },
        ],
      },
    },
    {
      id: 30,
      name: 'tags',
      required: false,
      type: { type: 'list', 'element-id': 31, element: 'string', 'element-required': false },
    },
    {
      id: 40,
      name: 'attrs',
      required: false,
      type: {
        type: 'map',
        'key-id': 41,
        key: 'string',
        'value-id': 42,
        value: {
          type: 'struct',
          fields: [
            { id: 43, name: 'a', required: false, type: 'int' },
            {
              id: 44,
              name: 'b',
              required: false,
              type: { type: 'list', 'element-id': 45, element: 'int', 'element-required': true },
            },
          ],
        },
        'value-required': false,
      },
    },
    { id: 50, name: 'ts', required: false, type: 'timestamp' },
  ],
};

describe('lookups', () => {
  it('index fields by id and by Iceberg’s dotted names', () => {
    assert.equal(findFieldById(input, 21)?.name, 'lat');
    assert.equal(findFieldByName(input, 'loc.lat')?.id, 21);
    assert.equal(findFieldByName(input, 'tags.element')?.id, 31);
    assert.equal(findFieldByName(input, 'attrs.key')?.id, 41);
    assert.equal(findFieldByName(input, 'attrs.value')?.id, 42);
    assert.equal(findFieldByName(input, 'attrs.value.b.element')?.id, 45);
    assert.equal(findFieldByName(input, 'attrs.a')?.id, 43, 'short name leaves out a struct value');
    assert.equal(findFieldByName(input, 'LOC.LAT'), undefined);
    assert.equal(findFieldByName(input, 'LOC.LAT', false)?.id, 21);
    assert.equal(findColumnName(input, 44), 'attrs.value.b');
    assert.equal(findFieldById(input, 31)?.required, false);
    assert.equal(indexParents(input).get(43), 42);
    assert.equal(indexParents(input).get(10), undefined);
    assert.deepEqual(columnNames(input).slice(0, 4), ['id', 'loc', 'loc.lat', 'loc.lon']);
  });

  it('finds the highest field id, nested ones included', () => {
    assert.equal(highestFieldId(input), 50);
    assert.equal(highestFieldId({ type: 'struct', fields: [] }), 0);
  });

  it('rejects a schema whose full names clash', () => {
    const clash: Schema = {
      type: 'struct',
      'schema-id': 0,
      fields: [
        { id: 1, name: 'a.b', required: false, type: 'int' },
        {
          id: 2,
          name: 'a',
          required: false,
          type: { type: 'struct', fields: [{ id: 3, name: 'b', required: false, type: 'int' }] },
        },
      ],
    };
    assert.throws(
      () => findFieldById(clash, 1),
      (error) => isTributaryError(error, 'ICEBERG_INVALID_SCHEMA'),
    );
  });
});

describe('assignFreshIds', () => {
  it('numbers depth-first as pyiceberg’s assign_fresh_schema_ids, moving identifier fields along', () => {
    const fresh = assignFreshIds(input);
    // Expected ids from pyiceberg 0.12: struct fields first, then each field's children.
    assert.deepEqual(
      [...columnNames(fresh)].map((name) => [name, findFieldByName(fresh, name)!.id]),
      [
        ['id', 1],
        ['loc', 2],
        ['loc.lat', 6],
        ['loc.lon', 7],
        ['tags', 3],
        ['tags.element', 8],
        ['attrs', 4],
        ['attrs.key', 9],
        ['attrs.value', 10],
        ['attrs.value.a', 11],
        ['attrs.value.b', 12],
        ['attrs.value.b.element', 13],
        ['ts', 5],
      ],
    );
    assert.deepEqual(fresh['identifier-field-ids'], [1]);
    assert.equal(fresh['schema-id'], 0);
    assert.equal(findFieldById(input, 10)?.name, 'id', 'input unchanged');
  });

  it('starts where asked', () => {
    assert.equal(highestFieldId(assignFreshIds(input, 100)), 112);
  });
});

describe('parsePrimitiveType', () => {
  it('normalizes spellings', () => {
    assert.equal(parsePrimitiveType('Long'), 'long');
    assert.equal(parsePrimitiveType('decimal(10,2)'), 'decimal(10, 2)');
    assert.equal(parsePrimitiveType(' fixed[ 16 ] '), 'fixed[16]');
  });

  it('explains what is wrong', () => {
    assert.throws(
      () => parsePrimitiveType('bigint', 'id'),
      (error) =>
        isTributaryError(error, 'ICEBERG_INVALID_SCHEMA') &&
        /column id/.test(error.message) &&
        /long/.test(error.hint ?? ''),
    );
    assert.throws(
      () => parsePrimitiveType('decimal(39, 2)'),
      (error) => isTributaryError(error, 'ICEBERG_INVALID_SCHEMA'),
    );
    assert.throws(
      () => parsePrimitiveType('decimal(2, 3)'),
      (error) => isTributaryError(error, 'ICEBERG_INVALID_SCHEMA'),
    );
    assert.throws(
      () => parsePrimitiveType('fixed[0]'),
      (error) => isTributaryError(error, 'ICEBERG_INVALID_SCHEMA'),
    );
    assert.throws(
      () => parsePrimitiveType('timestamp_ns'),
      (error) => isTributaryError(error, 'ICEBERG_UNSUPPORTED'),
    );
  });
});

describe('parseSchemaJson', () => {
  it('reads the simple form, assigning ids as for a new table', () => {
    const schema = parseSchemaJson({
      fields: [
        { name: 'id', type: 'long', required: true },
        { name: 'tags', type: { type: 'list', element: 'string' } },
        { name: 'attrs', type: { type: 'map', key: 'string', value: 'Double', 'value-required': true } },
        { name: 'loc', type: { type: 'struct', fields: [{ name: 'lat', type: 'double' }] }, doc: 'where' },
      ],
      'identifier-fields': ['id'],
    });
    assert.deepEqual(schema, {
      type: 'struct',
      'schema-id': 0,
      'identifier-field-ids': [1],
      fields: [
        { id: 1, name: 'id', required: true, type: 'long' },
        {
          id: 2,
          name: 'tags',
          required: false,
          type: { type: 'list', 'element-id': 5, element: 'string', 'element-required': false },
        },
        {
          id: 3,
          name: 'attrs',
          required: false,
          type: {
            type: 'map',
            'key-id': 6,
            key: 'string',
            'value-id': 7,
            value: 'double',
            'value-required': true,
          },
        },
        {
          id: 4,
          name: 'loc',
          required: false,
          doc: 'where',
          type: { type: 'struct', fields: [{ id: 8, name: 'lat', required: false, type: 'double' }] },
        },
      ],
    });
  });

  it('reads Iceberg’s JSON form and keeps its ids', () => {
    const json = JSON.parse(JSON.stringify({ ...input, 'schema-id': 3 })) as unknown;
    assert.deepEqual(parseSchemaJson(json), { ...input, 'schema-id': 3 });
  });

  it('names the field at fault', () => {
    const fails = (
      json: unknown,
      pattern: RegExp,
      code: 'ICEBERG_INVALID_SCHEMA' | 'ICEBERG_UNSUPPORTED' = 'ICEBERG_INVALID_SCHEMA',
    ) =>
      assert.throws(
        () => parseSchemaJson(json),
        (error) => isTributaryError(error, code) && pattern.test(error.message) && !!error.hint,
      );
    fails([], /schema is not a JSON object/);
    fails({}, /no "fields" list/);
    fails({ fields: [{ name: 'a', type: 'strng' }] }, /"strng" of column a/);
    fails(
      {
        fields: [
          { name: 'a', type: 'int' },
          { name: 'a', type: 'int' },
        ],
      },
      /Field a appears twice/,
    );
    fails({ fields: [{ name: 'a', type: 'int', requird: true }] }, /Field a has an unknown key "requird"/);
    fails({ fields: [{ name: 'a', type: 'int', required: 'yes' }] }, /Field a has required "yes"/);
    fails({ fields: [{ name: 'a' }] }, /Field a has no type/);
    fails({ fields: [{ type: 'int' }] }, /fields\[0\] has no name/);
    fails(
      { fields: [{ name: 's', type: { type: 'struct', fields: [{ name: 'x', type: 'blob' }] } }] },
      /column s\.x/,
    );
    fails(
      {
        fields: [
          { id: 1, name: 'a', type: 'int' },
          { name: 'b', type: 'int' },
        ],
      },
      /Field b has no id/,
    );
    fails(
      {
        fields: [
          { id: 1, name: 'a', type: 'int' },
          { id: 1, name: 'b', type: 'int' },
        ],
      },
      /Field b has id 1, already used by a/,
    );
    fails(
      { fields: [{ name: 'a', type: 'int' }], 'identifier-fields': ['a'] },
      /Column a cannot be an identifier field: it is optional/,
    );
    fails(
      { fields: [{ name: 'a', type: 'int', required: true }], 'identifier-fields': ['b'] },
      /Identifier field b/,
    );
    fails(
      { fields: [{ name: 'a', type: 'int', 'initial-default': 1 }] },
      /default value/,
      'ICEBERG_UNSUPPORTED',
    );
  });
});

describe('validateIdentifierFields', () => {
  const withIdentifier = (schema: Schema, id: number): Schema => ({
    ...schema,
    'identifier-field-ids': [id],
  });
  const nested: Schema = parseSchemaJson({
    fields: [
      { name: 'id', type: 'long', required: true },
      { name: 'score', type: 'double', required: true },
      {
        name: 'req',
        type: { type: 'struct', fields: [{ name: 'k', type: 'string', required: true }] },
        required: true,
      },
      { name: 'opt', type: { type: 'struct', fields: [{ name: 'k', type: 'string', required: true }] } },
      {
        name: 'items',
        type: {
          type: 'list',
          element: { type: 'struct', fields: [{ name: 'k', type: 'int', required: true }] },
          'element-required': true,
        },
        required: true,
      },
    ],
  });
  const id = (name: string) => findFieldByName(nested, name)!.id;

  it('accepts required primitives nested in required structs', () => {
    validateIdentifierFields(withIdentifier(nested, id('id')));
    validateIdentifierFields(withIdentifier(nested, id('req.k')));
  });

  it('rejects floating point, optional parents, and lists', () => {
    for (const [name, reason] of [
      ['score', /floating point/],
      ['opt.k', /optional field opt/],
      ['items.element.k', /not a struct/],
      ['req', /not a primitive/],
    ] as const) {
      assert.throws(
        () => validateIdentifierFields(withIdentifier(nested, id(name))),
        (error) => isTributaryError(error, 'ICEBERG_INVALID_SCHEMA') && reason.test(error.message),
        name,
      );
    }
  });
});

describe('isPromotionAllowed', () => {
  it('allows exactly the v2 promotions', () => {
    assert.ok(isPromotionAllowed('int', 'long'));
    assert.ok(isPromotionAllowed('float', 'double'));
    assert.ok(isPromotionAllowed('decimal(9, 2)', 'decimal(18, 2)'));
    assert.ok(isPromotionAllowed('long', 'long'));
    assert.ok(!isPromotionAllowed('long', 'int'));
    assert.ok(!isPromotionAllowed('decimal(9, 2)', 'decimal(18, 3)'));
    assert.ok(!isPromotionAllowed('decimal(18, 2)', 'decimal(9, 2)'));
    assert.ok(!isPromotionAllowed('int', 'double'));
    assert.ok(!isPromotionAllowed('date', 'timestamp'));
    assert.ok(!isPromotionAllowed('int', { type: 'struct', fields: [] }));
  });
});

describe('selectFields', () => {
  it('keeps selected fields with their ancestors, whole types when a container is selected', () => {
    const selected = selectFields(input, [21, 30, 43]);
    assert.deepEqual(columnNames(selected), [
      'loc',
      'loc.lat',
      'tags',
      'tags.element',
      'attrs',
      'attrs.key',
      'attrs.value',
      'attrs.value.a',
    ]);
    assert.deepEqual(selected['identifier-field-ids'], []);
    assert.equal(selected['schema-id'], input['schema-id']);
    assert.deepEqual(columnNames(selectFields(input, [20])), ['loc', 'loc.lat', 'loc.lon']);
    assert.deepEqual(
      selectColumns(input, ['id', 'ts']).fields.map((field) => field.name),
      ['id', 'ts'],
    );
    assert.deepEqual(selectColumns(input, ['id'])['identifier-field-ids'], [10]);
  });

  it('rejects unknown column names', () => {
    assert.throws(
      () => selectColumns(input, ['nope']),
      (error) => isTributaryError(error, 'ICEBERG_INVALID_SCHEMA'),
    );
  });
});
