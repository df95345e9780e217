import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTributaryError } from '../errors.ts';
import { parseSchemaJson, findFieldByName, columnNames } from './schema.ts';
import { applySchemaChanges, unionByName } from './schema-update.ts';
import type { SchemaChange, SchemaState } from './schema-update.ts';
import type { PrimitiveType, StructType } from './types.ts';

const schema = parseSchemaJson({
  fields: [
    { name: 'id', type: 'long', required: true },
    { name: 'name', type: 'string', required: true },
    { name: 'count', type: 'int' },
    {
      name: 'loc',
      type: {
        type: 'struct',
        fields: [
          { name: 'lat', type: 'float' },
          { name: 'lon', type: 'float' },
        ],
      },
    },
    {
      name: 'points',
      type: { type: 'list', element: { type: 'struct', fields: [{ name: 'x', type: 'int' }] } },
    },
    { name: 'attrs', type: { type: 'map', key: 'string', value: 'decimal(9, 2)', 'value-required': true } },
  ],
  'identifier-fields': ['id'],
});
// ids: id 1, name 2, count 3, loc 4, points 5, attrs 6, loc.lat 7, loc.lon 8, points.element 9, attrs.key 10, attrs.value 11, points.element.x 12
const base: SchemaState = { schema, lastColumnId: 12 };
const apply = (...changes: SchemaChange[]) => applySchemaChanges(base, changes, 1);
const names = (state: SchemaState) => columnNames(state.schema);
const rejects = (pattern: RegExp, ...changes: SchemaChange[]) =>
  assert.throws(
    () => apply(...changes),
    (error) =>
      isTributaryError(error, 'ICEBERG_INVALID_SCHEMA') && pattern.test(error.message) && !!error.hint,
  );

describe('applySchemaChanges', () => {
  it('adds optional columns with fresh ids, at the top level and into structs', () => {
    const result = apply(
      { kind: 'add-column', name: 'email', type: 'string', doc: 'contact' },
      { kind: 'add-column', parent: 'loc', name: 'alt', type: 'Double' as string as PrimitiveType },
      { kind: 'add-column', parent: 'points', name: 'y', type: 'int' },
      {
        kind: 'add-column',
        name: 'tags',
        type: { type: 'list', 'element-id': 0, element: 'string', 'element-required': false },
      },
    );
    assert.equal(result.schema['schema-id'], 1);
    assert.equal(result.lastColumnId, 17);
    assert.deepEqual(findFieldByName(result.schema, 'email'), {
      id: 13,
      name: 'email',
      required: false,
      type: 'string',
      doc: 'contact',
    });
    assert.deepEqual(findFieldByName(result.schema, 'loc.alt'), {
      id: 14,
      name: 'alt',
      required: false,
      type: 'double',
    });
    assert.equal(findFieldByName(result.schema, 'points.element.y')?.id, 15);
    assert.equal(findFieldByName(result.schema, 'tags.element')?.id, 17);
    assert.equal(findFieldByName(base.schema, 'email'), undefined, 'the input is not changed');
  });

  it('refuses required and duplicate columns, and parents that are not structs', () => {
    rejects(/Cannot add required column email/, {
      kind: 'add-column',
      name: 'email',
      type: 'string',
      required: true,
    });
    rejects(/Cannot add column count: it already exists/, {
      kind: 'add-column',
      name: 'count',
      type: 'long',
    });
    rejects(/Cannot add column x to count/, { kind: 'add-column', parent: 'count', name: 'x', type: 'long' });
    rejects(/Column nope is not in the schema/, {
      kind: 'add-column',
      parent: 'nope',
      name: 'x',
      type: 'long',
    });
    rejects(/two fields named loc\.lat/, { kind: 'add-column', name: 'loc.lat', type: 'long' });
  });

  it('deletes columns, but not identifier fields or list elements', () => {
    assert.ok(!names(apply({ kind: 'delete-column', column: 'loc' })).includes('loc.lat'));
    assert.deepEqual(
      names(apply({ kind: 'delete-column', column: 'loc.lat' })).filter((name) => name.startsWith('loc')),
      ['loc', 'loc.lon'],
    );
    rejects(/Cannot delete column id: it is an identifier field/, { kind: 'delete-column', column: 'id' });
    rejects(/Cannot delete points\.element: it is a list element/, {
      kind: 'delete-column',
      column: 'points.element',
    });
    // Dropping the identifier first makes the delete possible, and a new column may take the old name.
    const replaced = apply(
      { kind: 'set-identifier-fields', columns: ['name'] },
      { kind: 'delete-column', column: 'id' },
      { kind: 'add-column', name: 'id', type: 'string' },
    );
    assert.equal(findFieldByName(replaced.schema, 'id')?.id, 13);
    assert.deepEqual(replaced.schema['identifier-field-ids'], [2]);
  });

  it('renames columns, keeping their ids', () => {
    const result = apply(
      { kind: 'rename-column', column: 'loc.lat', newName: 'latitude' },
      { kind: 'rename-column', column: 'id', newName: 'key' },
    );
    assert.equal(findFieldByName(result.schema, 'loc.latitude')?.id, 7);
    assert.deepEqual(result.schema['identifier-field-ids'], [1]);
    rejects(/Cannot rename column count to name: that name is taken/, {
      kind: 'rename-column',
      column: 'count',
      newName: 'name',
    });
    rejects(/Cannot rename attrs\.key/, { kind: 'rename-column', column: 'attrs.key', newName: 'k' });
  });

  it('widens types only as the spec allows', () => {
    const result = apply(
      { kind: 'update-column-type', column: 'count', type: 'long' },
      { kind: 'update-column-type', column: 'loc.lat', type: 'double' },
      { kind: 'update-column-type', column: 'attrs.value', type: 'decimal(18,2)' as string as PrimitiveType },
    );
    assert.equal(findFieldByName(result.schema, 'count')?.type, 'long');
    assert.equal(findFieldByName(result.schema, 'loc.lat')?.type, 'double');
    assert.equal(findFieldByName(result.schema, 'attrs.value')?.type, 'decimal(18, 2)');
    assert.equal(findFieldByName(result.schema, 'attrs.value')?.required, true);
    rejects(/Cannot change column id from long to int/, {
      kind: 'update-column-type',
      column: 'id',
      type: 'int',
    });
    rejects(/Cannot change column name from string to long/, {
      kind: 'update-column-type',
      column: 'name',
      type: 'long',
    });
    rejects(/Cannot change the type of loc: it is a struct/, {
      kind: 'update-column-type',
      column: 'loc',
      type: 'long',
    });
    rejects(/map key attrs\.key/, { kind: 'update-column-type', column: 'attrs.key', type: 'long' });
  });

  it('makes columns optional, never required', () => {
    const result = apply(
      { kind: 'make-column-optional', column: 'name' },
      { kind: 'make-column-optional', column: 'attrs.value' },
    );
    assert.equal(findFieldByName(result.schema, 'name')?.required, false);
    assert.equal(findFieldByName(result.schema, 'attrs.value')?.required, false);
    assert.equal(apply({ kind: 'make-column-required', column: 'id' }).schema.fields[0]?.required, true);
    rejects(/Cannot make optional column count required/, { kind: 'make-column-required', column: 'count' });
    rejects(/Cannot make column id optional: it is an identifier field/, {
      kind: 'make-column-optional',
      column: 'id',
    });
    rejects(/Cannot make map key attrs\.key optional/, { kind: 'make-column-optional', column: 'attrs.key' });
  });

  it('moves columns within their struct', () => {
    const order = (state: SchemaState) => state.schema.fields.map((field) => field.name);
    assert.deepEqual(order(apply({ kind: 'move-column', column: 'count', position: 'first' })), [
      'count',
      'id',
      'name',
      'loc',
      'points',
      'attrs',
    ]);
    assert.deepEqual(
      order(apply({ kind: 'move-column', column: 'attrs', position: 'before', reference: 'name' })),
      ['id', 'attrs', 'name', 'count', 'loc', 'points'],
    );
    assert.deepEqual(
      order(apply({ kind: 'move-column', column: 'id', position: 'after', reference: 'attrs' })),
      ['name', 'count', 'loc', 'points', 'attrs', 'id'],
    );
    const nested = apply(
      { kind: 'add-column', parent: 'loc', name: 'alt', type: 'double' },
      { kind: 'move-column', column: 'loc.alt', position: 'first' },
    );
    assert.deepEqual(
      names(nested).filter((name) => name.startsWith('loc.')),
      ['loc.alt', 'loc.lat', 'loc.lon'],
    );
    rejects(/different structs/, {
      kind: 'move-column',
      column: 'loc.lat',
      position: 'after',
      reference: 'count',
    });
    rejects(/before itself/, {
      kind: 'move-column',
      column: 'count',
      position: 'before',
      reference: 'count',
    });
  });

  it('sets and checks identifier fields', () => {
    assert.deepEqual(
      apply({ kind: 'set-identifier-fields', columns: ['id', 'name'] }).schema['identifier-field-ids'],
      [1, 2],
    );
    assert.deepEqual(
      apply({ kind: 'set-identifier-fields', columns: [] }).schema['identifier-field-ids'],
      [],
    );
    rejects(/Column count cannot be an identifier field: it is optional/, {
      kind: 'set-identifier-fields',
      columns: ['count'],
    });
  });

  it('updates and removes docs', () => {
    const documented = apply({ kind: 'update-column-doc', column: 'count', doc: 'how many' });
    assert.equal(findFieldByName(documented.schema, 'count')?.doc, 'how many');
    const cleared = applySchemaChanges(
      documented,
      [{ kind: 'update-column-doc', column: 'count', doc: undefined }],
      2,
    );
    assert.ok(!('doc' in findFieldByName(cleared.schema, 'count')!));
  });
});

describe('unionByName', () => {
  it('adds new columns, widens types and relaxes required columns the data leaves null', () => {
    const incoming: StructType = {
      type: 'struct',
      fields: [
        { id: 0, name: 'id', required: true, type: 'int' }, // narrower than the table: fine as is
        { id: 0, name: 'name', required: false, type: 'string' },
        { id: 0, name: 'count', required: false, type: 'long' },
        {
          id: 0,
          name: 'loc',
          required: false,
          type: { type: 'struct', fields: [{ id: 0, name: 'alt', required: false, type: 'double' }] },
        },
        {
          id: 0,
          name: 'points',
          required: false,
          type: {
            type: 'list',
            'element-id': 0,
            'element-required': false,
            element: { type: 'struct', fields: [{ id: 0, name: 'y', required: true, type: 'int' }] },
          },
        },
        { id: 0, name: 'email', required: true, type: 'string' },
      ],
    };
    const changes = unionByName(schema, incoming);
    assert.deepEqual(changes, [
      { kind: 'make-column-optional', column: 'name' },
      { kind: 'update-column-type', column: 'count', type: 'long' },
      { kind: 'add-column', parent: 'loc', name: 'alt', type: 'double' },
      { kind: 'add-column', parent: 'points.element', name: 'y', type: 'int' },
      { kind: 'add-column', name: 'email', type: 'string' },
    ]);
    const result = apply(...changes);
    assert.equal(findFieldByName(result.schema, 'email')?.required, false, 'new columns are optional');
    assert.equal(findFieldByName(result.schema, 'points.element.y')?.id, 14);
    assert.deepEqual(unionByName(result.schema, incoming), [], 'a second union changes nothing');
  });

  it('refuses types that cannot widen, naming the column', () => {
    const incoming: StructType = {
      type: 'struct',
      fields: [{ id: 0, name: 'loc', required: false, type: 'string' }],
    };
    assert.throws(
      () => unionByName(schema, incoming),
      (error) =>
        isTributaryError(error, 'ICEBERG_INVALID_SCHEMA') &&
        /Column loc is struct<.*> in the table but string/.test(error.message),
    );
    const narrowing: StructType = {
      type: 'struct',
      fields: [{ id: 0, name: 'name', required: true, type: 'binary' }],
    };
    assert.throws(() => unionByName(schema, narrowing), /Column name is string in the table but binary/);
  });
});
