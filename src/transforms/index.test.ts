import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { componentUnion } from '../core/pipeline/components.ts';
import { transformDefinitions } from './index.ts';

type JsonSchemaNode = {
  description?: string;
  properties?: Record<string, JsonSchemaNode>;
  items?: JsonSchemaNode;
};

/** Paths of properties without a description (the reference docs are generated from them). */
function undocumented(node: JsonSchemaNode, at: string): string[] {
  const missing: string[] = [];
  for (const [key, property] of Object.entries(node.properties ?? {})) {
    if (!property.description) missing.push(`${at}.${key}`);
    missing.push(...undocumented(property, `${at}.${key}`));
    if (property.items) missing.push(...undocumented(property.items, `${at}.${key}[]`));
  }
  return missing;
}

describe('transform registry', () => {
  it('registers each type once, with a strict schema whose type is its literal', () => {
    const types = transformDefinitions.map((d) => d.type);
    assert.deepEqual(types, ['validate', 'map', 'filter', 'rename', 'drop', 'cast', 'mask', 'dedupe', 'sql']);
    for (const definition of transformDefinitions) {
      assert.equal(definition.kind, 'transform');
      assert.equal(definition.schema.safeParse({ type: definition.type, unknown_key: 1 }).success, false);
      const type = definition.schema.shape.type as z.ZodLiteral;
      assert.deepEqual([...type.values], [definition.type]);
    }
  });

  it('documents every field, for the generated reference', () => {
    for (const definition of transformDefinitions) {
      const jsonSchema = z.toJSONSchema(definition.schema, {
        io: 'input',
        unrepresentable: 'any',
      }) as JsonSchemaNode;
      assert.ok(jsonSchema.description, `${definition.type} has a description`);
      assert.deepEqual(undocumented(jsonSchema, definition.type), []);
    }
  });

  it('parses a list of transforms as a pipeline file would', () => {
    const union = z.array(componentUnion(transformDefinitions));
    const parsed = union.parse([
      { type: 'validate', schema: 'schemas/order.json' },
      { type: 'filter', where: [{ field: 'status', not_equals: 'test' }] },
      { type: 'dedupe', key: ['id'], window: '10m' },
      { type: 'sql', query: 'select * from batch' },
    ]) as Array<Record<string, unknown>>;
    assert.equal(parsed[2]?.window, 600_000);
    assert.equal(parsed[2]?.max_keys, 1_000_000);
  });
});
