/**
 * Schema evolution: changes (add, delete, rename, widen, make optional, move, identifier fields) applied in
 * order to a schema, giving a new schema and the new last column id. Only changes that keep every
 * existing data file readable are allowed; any other is an ICEBERG_INVALID_SCHEMA error naming the column.
 *
 * Columns are named by full dotted name (`address.city`, `points.element.x`) in the schema as it is when
 * the change applies, so a change may refer to a column added or renamed by an earlier change.
 */
import { TributaryError } from '../errors.ts';
import {
  assignFreshTypeIds,
  columnNames,
  fieldRole,
  findColumnName,
  findFieldById,
  findFieldByName,
  highestFieldId,
  indexParents,
  isPromotionAllowed,
  listElementField,
  mapFields,
  parsePrimitiveType,
  validateIdentifierFields,
} from './schema.ts';
import { describeType, sameType } from './types.ts';
import type { IcebergType, NestedField, PrimitiveType, Schema, StructType } from './types.ts';

export type SchemaChange =
  | {
      readonly kind: 'add-column';
      /** The struct to add to (a struct column, or a list/map column whose element/value is a struct); top level when absent. */
      readonly parent?: string;
      readonly name: string;
      /** Field ids inside a nested type are ignored: new ones are assigned. */
      readonly type: IcebergType;
      /** Must be false (the default): existing rows have no value for a new column. */
      readonly required?: boolean;
      readonly doc?: string;
    }
  | { readonly kind: 'delete-column'; readonly column: string }
  | { readonly kind: 'rename-column'; readonly column: string; readonly newName: string }
  | { readonly kind: 'update-column-type'; readonly column: string; readonly type: PrimitiveType }
  | { readonly kind: 'update-column-doc'; readonly column: string; readonly doc: string | undefined }
  | { readonly kind: 'make-column-optional'; readonly column: string }
  /** Always refused for an optional column (rows already written may hold nulls); a no-op otherwise. */
  | { readonly kind: 'make-column-required'; readonly column: string }
  | { readonly kind: 'move-column'; readonly column: string; readonly position: 'first' }
  | {
      readonly kind: 'move-column';
      readonly column: string;
      readonly position: 'before' | 'after';
      readonly reference: string;
    }
  | { readonly kind: 'set-identifier-fields'; readonly columns: readonly string[] };

export interface SchemaState {
  readonly schema: Schema;
  /** The highest field id ever assigned in the table (table metadata's last-column-id). */
  readonly lastColumnId: number;
}

/** Applies the changes in order; the result has schema id `newSchemaId`. */
export function applySchemaChanges(
  state: SchemaState,
  changes: readonly SchemaChange[],
  newSchemaId: number,
): SchemaState {
  let current: SchemaState = {
    schema: state.schema,
    lastColumnId: Math.max(state.lastColumnId, highestFieldId(state.schema)),
  };
  for (const change of changes) current = applyChange(current, change);
  const schema: Schema = { ...current.schema, 'schema-id': newSchemaId };
  validateIdentifierFields(schema);
  return { schema, lastColumnId: current.lastColumnId };
}

function applyChange({ schema, lastColumnId }: SchemaState, change: SchemaChange): SchemaState {
  switch (change.kind) {
    case 'add-column':
      return addColumn(schema, lastColumnId, change);
    case 'delete-column': {
      const field = resolveStructField(schema, change.column, 'delete');
      const parents = indexParents(schema);
      for (const id of schema['identifier-field-ids'] ?? []) {
        for (let at: number | undefined = id; at !== undefined; at = parents.get(at)) {
          if (at === field.id) {
            throw schemaError(
              change.column,
              `Cannot delete column ${change.column}: it is ${id === field.id ? 'an identifier field' : 'the parent of an identifier field'}`,
              'Change the identifier fields first (set-identifier-fields), then delete the column.',
            );
          }
        }
      }
      return { schema: rewriteField(schema, field.id, () => undefined), lastColumnId };
    }
    case 'rename-column': {
      const field = resolveStructField(schema, change.column, 'rename');
      if (change.newName === '') {
        throw schemaError(
          change.column,
          `Cannot rename column ${change.column} to an empty name`,
          'Give the column a non-empty name.',
        );
      }
      if (change.newName === field.name) return { schema, lastColumnId };
      if (siblings(schema, field.id).some((sibling) => sibling.name === change.newName)) {
        throw schemaError(
          change.column,
          `Cannot rename column ${change.column} to ${change.newName}: that name is taken`,
          'Pick a name no other column of the same struct has.',
        );
      }
      return {
        schema: rewriteField(schema, field.id, (f) => ({ ...f, name: change.newName })),
        lastColumnId,
      };
    }
    case 'update-column-type': {
      const field = resolve(schema, change.column);
      if (fieldRole(schema, field.id) === 'key') {
        throw schemaError(
          change.column,
          `Cannot change the type of map key ${change.column}`,
          'Map keys cannot change; add a new map column instead.',
        );
      }
      if (typeof field.type !== 'string') {
        throw schemaError(
          change.column,
          `Cannot change the type of ${change.column}: it is a ${field.type.type}`,
          'Change the fields inside it instead.',
        );
      }
      const type = parsePrimitiveType(change.type, change.column);
      if (sameType(field.type, type)) return { schema, lastColumnId };
      if (!isPromotionAllowed(field.type, type)) {
        throw schemaError(
          change.column,
          `Cannot change column ${change.column} from ${field.type} to ${type}`,
          'Only int → long, float → double and decimal(P, S) → decimal(P2, S) with P2 ≥ P keep existing files readable; add a new column instead.',
        );
      }
      return { schema: rewriteField(schema, field.id, (f) => ({ ...f, type })), lastColumnId };
    }
    case 'update-column-doc': {
      const field = resolveStructField(schema, change.column, 'document');
      return {
        schema: rewriteField(schema, field.id, ({ doc: _doc, ...rest }) =>
          change.doc === undefined ? rest : { ...rest, doc: change.doc },
        ),
        lastColumnId,
      };
    }
    case 'make-column-optional': {
      const field = resolve(schema, change.column);
      if (!field.required) return { schema, lastColumnId };
      if (fieldRole(schema, field.id) === 'key') {
        throw schemaError(
          change.column,
          `Cannot make map key ${change.column} optional`,
          'Map keys are always required.',
        );
      }
      if ((schema['identifier-field-ids'] ?? []).includes(field.id)) {
        throw schemaError(
          change.column,
          `Cannot make column ${change.column} optional: it is an identifier field`,
          'Change the identifier fields first (set-identifier-fields).',
        );
      }
      return { schema: rewriteField(schema, field.id, (f) => ({ ...f, required: false })), lastColumnId };
    }
    case 'make-column-required': {
      const field = resolve(schema, change.column);
      if (field.required) return { schema, lastColumnId };
      throw schemaError(
        change.column,
        `Cannot make optional column ${change.column} required`,
        'Rows already written may hold nulls; keep the column optional and check values in the pipeline.',
      );
    }
    case 'move-column':
      return { schema: moveColumn(schema, change), lastColumnId };
    case 'set-identifier-fields': {
      const ids = change.columns.map((column) => resolve(schema, column).id);
      const next: Schema = { ...schema, 'identifier-field-ids': [...new Set(ids)] };
      validateIdentifierFields(next);
      return { schema: next, lastColumnId };
    }
  }
}

function addColumn(
  schema: Schema,
  lastColumnId: number,
  change: Extract<SchemaChange, { kind: 'add-column' }>,
): SchemaState {
  const fullName = change.parent === undefined ? change.name : `${change.parent}.${change.name}`;
  if (change.name === '') {
    throw schemaError(
      fullName,
      `Cannot add a column with an empty name${change.parent === undefined ? '' : ` to ${change.parent}`}`,
      'Give the column a name.',
    );
  }
  let parentId: number | undefined;
  let fields: readonly NestedField[] = schema.fields;
  if (change.parent !== undefined) {
    const parent = resolve(schema, change.parent);
    const struct = structInside(parent.type);
    if (!struct) {
      throw schemaError(
        change.parent,
        `Cannot add column ${change.name} to ${change.parent}: it is ${describeType(parent.type)}, not a struct`,
        'Add nested columns to a struct column, or to a list or map of structs.',
      );
    }
    parentId =
      typeof parent.type === 'object' && parent.type.type === 'list'
        ? parent.type['element-id']
        : typeof parent.type === 'object' && parent.type.type === 'map'
          ? parent.type['value-id']
          : parent.id;
    fields = struct.fields;
  }
  if (fields.some((field) => field.name === change.name)) {
    throw schemaError(
      fullName,
      `Cannot add column ${fullName}: it already exists`,
      'Pick another name, or delete the existing column first.',
    );
  }
  if (change.required) {
    throw schemaError(
      fullName,
      `Cannot add required column ${fullName}`,
      'Add it as optional: rows already written have no value for it, and format v2 has no column defaults.',
    );
  }
  let next = lastColumnId;
  const id = ++next;
  const type = assignFreshTypeIds(normalizeType(change.type, fullName), () => ++next);
  const field: NestedField = {
    id,
    name: change.name,
    required: false,
    type,
    ...(change.doc === undefined ? {} : { doc: change.doc }),
  };
  const updated =
    parentId === undefined
      ? { ...schema, fields: [...schema.fields, field] }
      : rewriteField(schema, parentId, (f) => ({
          ...f,
          type: {
            ...(structInside(f.type) as StructType),
            fields: [...(structInside(f.type) as StructType).fields, field],
          },
        }));
  columnNames(updated); // rejects a full name that clashes, e.g. a top-level "a.b" next to a struct a with b
  return { schema: updated, lastColumnId: next };
}

function moveColumn(schema: Schema, change: Extract<SchemaChange, { kind: 'move-column' }>): Schema {
  const field = resolveStructField(schema, change.column, 'move');
  const parents = indexParents(schema);
  const parentId = parents.get(field.id);
  let reference: NestedField | undefined;
  if (change.position !== 'first') {
    reference = resolve(schema, change.reference);
    if (reference.id === field.id) {
      throw schemaError(
        change.column,
        `Cannot move column ${change.column} ${change.position} itself`,
        'Name another column of the same struct.',
      );
    }
    if (parents.get(reference.id) !== parentId || fieldRole(schema, reference.id) !== 'field') {
      throw schemaError(
        change.column,
        `Cannot move column ${change.column} ${change.position} ${change.reference}: they are in different structs`,
        'Columns move only within their struct.',
      );
    }
  }
  const reorder = (fields: readonly NestedField[]): NestedField[] => {
    const rest = fields.filter((f) => f.id !== field.id);
    if (!reference) return [field, ...rest];
    const at = rest.findIndex((f) => f.id === reference.id) + (change.position === 'after' ? 1 : 0);
    return [...rest.slice(0, at), field, ...rest.slice(at)];
  };
  if (parentId === undefined) return { ...schema, fields: reorder(schema.fields) };
  return rewriteField(schema, parentId, (f) => ({
    ...f,
    type: { ...(f.type as StructType), fields: reorder((f.type as StructType).fields) },
  }));
}

/**
 * The changes that let the table accept rows of `incoming` (matched by name): new columns (added as
 * optional, nested ones into their struct), widened types, and required columns the data leaves null made
 * optional. Columns the data lacks stay. A type that cannot widen is an ICEBERG_INVALID_SCHEMA error.
 */
export function unionByName(schema: Schema, incoming: StructType): SchemaChange[] {
  const changes: SchemaChange[] = [];
  unionStruct(schema, schema, undefined, incoming, changes);
  return changes;
}

function unionStruct(
  schema: Schema,
  existing: StructType,
  parent: string | undefined,
  incoming: StructType,
  changes: SchemaChange[],
): void {
  for (const field of incoming.fields) {
    const match = existing.fields.find((candidate) => candidate.name === field.name);
    if (match) {
      unionField(schema, match, findColumnName(schema, match.id)!, field, changes);
    } else {
      changes.push({
        kind: 'add-column',
        ...(parent === undefined ? {} : { parent }),
        name: field.name,
        type: field.type,
        ...(field.doc === undefined ? {} : { doc: field.doc }),
      });
    }
  }
}

function unionField(
  schema: Schema,
  existing: NestedField,
  column: string,
  incoming: NestedField,
  changes: SchemaChange[],
): void {
  if (existing.required && !incoming.required) changes.push({ kind: 'make-column-optional', column });
  const table = existing.type;
  const data = incoming.type;
  if (typeof table === 'string' && typeof data === 'string') {
    if (sameType(table, data) || isPromotionAllowed(data, table)) return;
    if (isPromotionAllowed(table, data)) {
      changes.push({ kind: 'update-column-type', column, type: data });
      return;
    }
    throw schemaError(
      column,
      `Column ${column} is ${table} in the table but ${data} in the incoming data`,
      'Only int → long, float → double and decimal(P, S) → decimal(P2, S) widen automatically; cast the value in the pipeline, or add a new column.',
    );
  }
  if (typeof table === 'object' && typeof data === 'object' && table.type === data.type) {
    if (table.type === 'struct' && data.type === 'struct') {
      unionStruct(schema, table, column, data, changes);
    } else if (table.type === 'list' && data.type === 'list') {
      unionField(schema, listElementField(table), `${column}.element`, listElementField(data), changes);
    } else if (table.type === 'map' && data.type === 'map') {
      const [tableKey, tableValue] = mapFields(table);
      const [dataKey, dataValue] = mapFields(data);
      unionField(schema, tableKey, `${column}.key`, dataKey, changes);
      unionField(schema, tableValue, `${column}.value`, dataValue, changes);
    }
    return;
  }
  throw schemaError(
    column,
    `Column ${column} is ${describeType(table)} in the table but ${describeType(data)} in the incoming data`,
    'Rename the field in the pipeline, or add it as a new column.',
  );
}

// Replaces (or, when `update` returns undefined, removes) the field with this id: a struct field, a list
// element or a map key/value (those are never removed: callers check first).
function rewriteField<T extends StructType>(
  struct: T,
  id: number,
  update: (field: NestedField) => NestedField | undefined,
): T {
  return { ...struct, fields: rewriteFields(struct.fields, id, update) };
}

function rewriteFields(
  fields: readonly NestedField[],
  id: number,
  update: (field: NestedField) => NestedField | undefined,
): NestedField[] {
  const result: NestedField[] = [];
  for (const field of fields) {
    if (field.id === id) {
      const updated = update(field);
      if (updated) result.push(updated);
    } else {
      result.push({ ...field, type: rewriteType(field.type, id, update) });
    }
  }
  return result;
}

function rewriteType(
  type: IcebergType,
  id: number,
  update: (field: NestedField) => NestedField | undefined,
): IcebergType {
  if (typeof type === 'string') return type;
  const child = (field: NestedField): NestedField =>
    field.id === id ? update(field)! : { ...field, type: rewriteType(field.type, id, update) };
  switch (type.type) {
    case 'struct':
      return { ...type, fields: rewriteFields(type.fields, id, update) };
    case 'list': {
      const element = child(listElementField(type));
      return { ...type, element: element.type, 'element-required': element.required };
    }
    case 'map': {
      const [key, value] = mapFields(type).map(child) as [NestedField, NestedField];
      return { ...type, key: key.type, value: value.type, 'value-required': value.required };
    }
  }
}

// The struct a column holds fields in: its own type, or its list's element or map's value.
function structInside(type: IcebergType): StructType | undefined {
  if (typeof type === 'string') return undefined;
  if (type.type === 'struct') return type;
  const inner = type.type === 'list' ? type.element : type.value;
  return typeof inner === 'object' && inner.type === 'struct' ? inner : undefined;
}

function siblings(schema: Schema, id: number): readonly NestedField[] {
  const parentId = indexParents(schema).get(id);
  if (parentId === undefined) return schema.fields;
  return (findFieldById(schema, parentId)!.type as StructType).fields;
}

// Primitive names as users write them ("Long", "decimal(10,2)") become canonical, here and inside nested types.
function normalizeType(type: IcebergType, column: string): IcebergType {
  if (typeof type === 'string') return parsePrimitiveType(type, column);
  switch (type.type) {
    case 'struct':
      return {
        ...type,
        fields: type.fields.map((field) => ({
          ...field,
          type: normalizeType(field.type, `${column}.${field.name}`),
        })),
      };
    case 'list':
      return { ...type, element: normalizeType(type.element, `${column}.element`) };
    case 'map':
      return {
        ...type,
        key: normalizeType(type.key, `${column}.key`),
        value: normalizeType(type.value, `${column}.value`),
      };
  }
}

function resolve(schema: Schema, column: string): NestedField {
  const field = findFieldByName(schema, column);
  if (field) return field;
  const sameButCase = findFieldByName(schema, column, false);
  const names = columnNames(schema);
  throw schemaError(
    column,
    `Column ${column} is not in the schema`,
    sameButCase
      ? `Names are case-sensitive: did you mean ${findColumnName(schema, sameButCase.id)}?`
      : `Columns: ${names.slice(0, 30).join(', ')}${names.length > 30 ? ', …' : ''}.`,
  );
}

// Lists' elements and maps' keys and values have fixed names and always exist.
function resolveStructField(schema: Schema, column: string, action: string): NestedField {
  const field = resolve(schema, column);
  const role = fieldRole(schema, field.id);
  if (role !== 'field') {
    throw schemaError(
      column,
      `Cannot ${action} ${column}: it is a ${role === 'element' ? 'list element' : `map ${role}`}`,
      `Change the ${role === 'element' ? 'list' : 'map'} column itself.`,
    );
  }
  return field;
}

function schemaError(column: string, message: string, hint: string): TributaryError {
  return new TributaryError('ICEBERG_INVALID_SCHEMA', message, { context: { column }, hint });
}
