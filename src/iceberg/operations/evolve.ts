/**
 * Metadata-only changes: schema evolution, partition evolution and sort order. Data files are never
 * rewritten; files written before a change keep their schema and spec and read right by field id.
 */
import { TributaryError } from '../../errors.ts';
import { currentSchema, defaultSortOrder, type SortOrder, type TableMetadata } from '../metadata.ts';
import { buildSpec, parsePartitionExpression, validatePartitionSpec } from '../partition-spec.ts';
import { findColumnName, findFieldById } from '../schema.ts';
import { applySchemaChanges, type SchemaChange } from '../schema-update.ts';
import { parseSortOrder } from '../sort-order.ts';
import type { Table, TableState } from '../table.ts';
import type { Schema } from '../types.ts';

/** Same fields, names, types and identifier fields: the schema id aside, the schemas are one. */
function sameSchema(a: Schema, b: Schema): boolean {
  const strip = (s: Schema) => JSON.stringify({ fields: s.fields, ids: s['identifier-field-ids'] ?? [] });
  return strip(a) === strip(b);
}

/** Applies schema changes and makes the result the current schema (reusing an identical earlier schema). */
export async function updateSchema(table: Table, changes: readonly SchemaChange[]): Promise<TableState> {
  return table.commit(async (base) => withSchemaChanges(base.metadata, changes));
}

export function withSchemaChanges(metadata: TableMetadata, changes: readonly SchemaChange[]): TableMetadata {
  const current = currentSchema(metadata);
  const nextId = Math.max(...metadata.schemas.map((s) => s['schema-id'])) + 1;
  const { schema, lastColumnId } = applySchemaChanges(
    { schema: current, lastColumnId: metadata['last-column-id'] },
    changes,
    nextId,
  );
  for (const spec of metadata['partition-specs']) {
    if (spec['spec-id'] === metadata['default-spec-id']) validatePartitionSpec(spec, schema);
  }
  // Other engines bind the sort order to the current schema (pyiceberg then cannot write, Java cannot load).
  for (const field of defaultSortOrder(metadata).fields) {
    if (!findFieldById(schema, field['source-id'])) {
      const name = findColumnName(current, field['source-id']) ?? `#${field['source-id']}`;
      throw new TributaryError(
        'ICEBERG_INVALID_SCHEMA',
        `Cannot delete column ${name}: the table's sort order sorts by it`,
        {
          context: { column: name },
          hint: 'Replace the sort order first (`replaceSortOrder`), then delete the column.',
        },
      );
    }
  }
  if (sameSchema(schema, current)) return metadata;
  const existing = metadata.schemas.find((s) => sameSchema(s, schema));
  return {
    ...metadata,
    'last-column-id': lastColumnId,
    schemas: existing ? metadata.schemas : [...metadata.schemas, schema],
    'current-schema-id': existing ? existing['schema-id'] : nextId,
  };
}

/**
 * Makes `expression` ("day(ts), bucket(16, id)", or "" for unpartitioned) the partitioning of new data.
 * Field ids of fields that existed in earlier specs are reused, as the spec requires for v2 tables.
 */
export async function updatePartitionSpec(table: Table, expression: string): Promise<TableState> {
  return table.commit(async ({ metadata }) => {
    const schema = currentSchema(metadata);
    const fields = parsePartitionExpression(expression, schema, { nameStyle: 'evolve' });
    const nextSpecId = Math.max(...metadata['partition-specs'].map((s) => s['spec-id'])) + 1;
    const { spec, lastPartitionId } = buildSpec(
      fields,
      nextSpecId,
      metadata['last-partition-id'],
      metadata['partition-specs'],
    );
    const same = metadata['partition-specs'].find(
      (s) => JSON.stringify(s.fields) === JSON.stringify(spec.fields),
    );
    if (same) return { ...metadata, 'default-spec-id': same['spec-id'] };
    return {
      ...metadata,
      'partition-specs': [...metadata['partition-specs'], spec],
      'default-spec-id': nextSpecId,
      'last-partition-id': lastPartitionId,
    };
  });
}

/** Replaces the table's sort order ("ts desc, id"; "" for unsorted). */
export async function replaceSortOrder(table: Table, expression: string): Promise<TableState> {
  return table.commit(async ({ metadata }) => {
    const schema = currentSchema(metadata);
    const nextId = Math.max(0, ...metadata['sort-orders'].map((o) => o['order-id'])) + 1;
    const order: SortOrder = expression.trim()
      ? parseSortOrder(expression, schema, nextId)
      : { 'order-id': 0, fields: [] };
    const same = metadata['sort-orders'].find(
      (o) => JSON.stringify(o.fields) === JSON.stringify(order.fields),
    );
    if (same) return { ...metadata, 'default-sort-order-id': same['order-id'] };
    return {
      ...metadata,
      'sort-orders': [...metadata['sort-orders'], order],
      'default-sort-order-id': order['order-id'],
    };
  });
}

/** Sets and removes table properties. */
export async function updateProperties(
  table: Table,
  updates: Readonly<Record<string, string>>,
  removals: readonly string[] = [],
): Promise<TableState> {
  for (const key of Object.keys(updates)) {
    if (key === 'format-version')
      throw new TributaryError('ICEBERG_UNSUPPORTED', 'the format version of a table cannot be changed here');
  }
  return table.commit(async ({ metadata }) => {
    const properties = { ...metadata.properties, ...updates };
    for (const key of removals) delete properties[key];
    return { ...metadata, properties };
  });
}
