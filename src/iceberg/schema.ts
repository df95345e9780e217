/**
 * Helpers over schemas: lookups by field id and by name, fresh id assignment for new tables, validation of
 * user-supplied schema JSON, type promotion rules and column projection.
 *
 * Names follow Iceberg: nested struct fields are dotted (`address.city`), a list's element is
 * `tags.element`, a map's key and value are `attrs.key` and `attrs.value`. Lookups by name also accept the
 * short form that leaves out `element`/`value` when it holds a struct (`points.x` for `points.element.x`).
 */
import { TributaryError } from '../errors.ts';
import {
  decimalParams,
  decimalType,
  fixedLength,
  fixedType,
  isPrimitiveTypeName,
  primitiveTypeNames,
} from './types.ts';
import type {
  IcebergType,
  ListType,
  MapType,
  NestedField,
  PrimitiveType,
  Schema,
  StructType,
} from './types.ts';

interface SchemaIndex {
  readonly byId: ReadonlyMap<number, NestedField>;
  readonly fullNameToId: ReadonlyMap<string, number>;
  readonly nameToId: ReadonlyMap<string, number>;
  readonly idToName: ReadonlyMap<number, string>;
  readonly parents: ReadonlyMap<number, number>;
  readonly roles: ReadonlyMap<number, FieldRole>;
}

/** Where a field sits: in a struct, or as a list's element, a map's key or a map's value. */
export type FieldRole = 'field' | 'element' | 'key' | 'value';

// Types are immutable values, so an index computed once per object stays right.
const indexCache = new WeakMap<object, SchemaIndex>();

function indexOf(type: IcebergType): SchemaIndex {
  if (typeof type === 'string') return buildIndex(type);
  let index = indexCache.get(type);
  if (!index) {
    index = buildIndex(type);
    indexCache.set(type, index);
  }
  return index;
}

function buildIndex(root: IcebergType): SchemaIndex {
  const byId = new Map<number, NestedField>();
  const fullNameToId = new Map<string, number>();
  const shortNameToId = new Map<string, number>();
  const idToName = new Map<number, string>();
  const parents = new Map<number, number>();
  const roles = new Map<number, FieldRole>();

  const add = (
    field: NestedField,
    role: FieldRole,
    path: readonly string[],
    shortPath: readonly string[],
    parent?: number,
  ) => {
    const fullName = [...path, field.name].join('.');
    const existing = fullNameToId.get(fullName);
    if (existing !== undefined) {
      throw new TributaryError(
        'ICEBERG_INVALID_SCHEMA',
        `Schema has two fields named ${fullName} (ids ${existing} and ${field.id})`,
        {
          context: { column: fullName },
          hint: 'Rename one of the fields: full column names must be unique.',
        },
      );
    }
    fullNameToId.set(fullName, field.id);
    shortNameToId.set([...shortPath, field.name].join('.'), field.id);
    idToName.set(field.id, fullName);
    byId.set(field.id, field);
    roles.set(field.id, role);
    if (parent !== undefined) parents.set(field.id, parent);
  };

  const visit = (
    type: IcebergType,
    path: readonly string[],
    shortPath: readonly string[],
    owner?: number,
  ) => {
    if (typeof type === 'string') return;
    for (const child of childFields(type)) {
      const role: FieldRole = type.type === 'struct' ? 'field' : (child.name as FieldRole);
      add(child, role, path, shortPath, owner);
      // Short names leave out the element or value node when it is a struct.
      const skip =
        type.type !== 'struct' &&
        child.name !== 'key' &&
        typeof child.type === 'object' &&
        child.type.type === 'struct';
      visit(child.type, [...path, child.name], skip ? shortPath : [...shortPath, child.name], child.id);
    }
  };

  visit(root, [], []);
  const nameToId = new Map(shortNameToId);
  for (const [name, id] of fullNameToId) nameToId.set(name, id);
  return { byId, fullNameToId, nameToId, idToName, parents, roles };
}

/** The direct children of a nested type as fields: a struct's fields, a list's element, a map's key and value. */
export function childFields(type: IcebergType): readonly NestedField[] {
  if (typeof type === 'string') return [];
  switch (type.type) {
    case 'struct':
      return type.fields;
    case 'list':
      return [listElementField(type)];
    case 'map':
      return mapFields(type);
  }
}

export function listElementField(list: ListType): NestedField {
  return { id: list['element-id'], name: 'element', required: list['element-required'], type: list.element };
}

export function mapFields(map: MapType): readonly [NestedField, NestedField] {
  return [
    { id: map['key-id'], name: 'key', required: true, type: map.key },
    { id: map['value-id'], name: 'value', required: map['value-required'], type: map.value },
  ];
}

/** Every field of a type by id, including list elements and map keys and values. */
export function indexById(type: IcebergType): ReadonlyMap<number, NestedField> {
  return indexOf(type).byId;
}

/** Field ids by full dotted name and by short name (full names win when both exist). */
export function indexByName(type: IcebergType): ReadonlyMap<string, number> {
  return indexOf(type).nameToId;
}

/** The id of the field that contains each nested field; top-level fields have no entry. */
export function indexParents(type: IcebergType): ReadonlyMap<number, number> {
  return indexOf(type).parents;
}

export function fieldRole(type: IcebergType, id: number): FieldRole | undefined {
  return indexOf(type).roles.get(id);
}

export function findFieldById(type: IcebergType, id: number): NestedField | undefined {
  return indexOf(type).byId.get(id);
}

export function findFieldByName(
  type: IcebergType,
  name: string,
  caseSensitive = true,
): NestedField | undefined {
  const index = indexOf(type);
  let id = index.nameToId.get(name);
  if (id === undefined && !caseSensitive) {
    const lower = name.toLowerCase();
    for (const [candidate, candidateId] of index.nameToId) {
      if (candidate.toLowerCase() === lower) {
        id = candidateId;
        break;
      }
    }
  }
  return id === undefined ? undefined : index.byId.get(id);
}

/** The full dotted name of a field, e.g. `address.city` or `tags.element`. */
export function findColumnName(type: IcebergType, id: number): string | undefined {
  return indexOf(type).idToName.get(id);
}

/** All full column names, in schema order (a parent before its children). */
export function columnNames(type: IcebergType): readonly string[] {
  return [...indexOf(type).fullNameToId.keys()];
}

/** The largest field id used anywhere in the type; 0 when there is none. */
export function highestFieldId(type: IcebergType): number {
  let highest = 0;
  for (const id of indexOf(type).byId.keys()) highest = Math.max(highest, id);
  return highest;
}

/**
 * Gives every field of a type a new id from `nextId`, as Java's TypeUtil.assignFreshIds and pyiceberg's
 * assign_fresh_schema_ids: a struct numbers all its own fields first, then descends into each in order; a
 * map numbers key then value. `onAssign` learns each old → new id.
 */
export function assignFreshTypeIds<T extends IcebergType>(
  type: T,
  nextId: () => number,
  onAssign: (oldId: number, newId: number) => void = () => {},
): T {
  return freshIds(type, nextId, onAssign) as T;
}

function freshIds(
  type: IcebergType,
  nextId: () => number,
  onAssign: (oldId: number, newId: number) => void,
): IcebergType {
  if (typeof type === 'string') return type;
  const fresh = (id: number): number => {
    const assigned = nextId();
    onAssign(id, assigned);
    return assigned;
  };
  switch (type.type) {
    case 'struct': {
      const ids = type.fields.map((field) => fresh(field.id));
      const fields = type.fields.map((field, i) => ({
        ...field,
        id: ids[i]!,
        type: freshIds(field.type, nextId, onAssign),
      }));
      return { ...type, fields };
    }
    case 'list': {
      const elementId = fresh(type['element-id']);
      return { ...type, 'element-id': elementId, element: freshIds(type.element, nextId, onAssign) };
    }
    case 'map': {
      const keyId = fresh(type['key-id']);
      const valueId = fresh(type['value-id']);
      return {
        ...type,
        'key-id': keyId,
        key: freshIds(type.key, nextId, onAssign),
        'value-id': valueId,
        value: freshIds(type.value, nextId, onAssign),
      };
    }
  }
}

/**
 * Renumbers a struct or schema from `startAt` (1 for a new table). A schema's identifier fields follow their
 * fields to the new ids.
 */
export function assignFreshIds<T extends StructType>(struct: T, startAt = 1): T {
  let next = startAt;
  const newIds = new Map<number, number>();
  const fresh = assignFreshTypeIds(
    struct as StructType,
    () => next++,
    (oldId, newId) => newIds.set(oldId, newId),
  );
  const identifiers = (struct as Partial<Schema>)['identifier-field-ids'];
  if (identifiers === undefined) return fresh as T;
  return { ...fresh, 'identifier-field-ids': identifiers.map((id) => newIds.get(id) ?? id) } as unknown as T;
}

/**
 * Whether values of type `from` can be read as `to` (and a column's type changed from one to the other):
 * the same type, int → long, float → double, or decimal(P, S) → decimal(P2, S) with P2 ≥ P.
 */
export function isPromotionAllowed(from: IcebergType, to: IcebergType): boolean {
  if (typeof from !== 'string' || typeof to !== 'string') return false;
  if (from === to) return true;
  if (from === 'int') return to === 'long';
  if (from === 'float') return to === 'double';
  const a = decimalParams(from);
  const b = decimalParams(to);
  if (a && b) return a.scale === b.scale && b.precision >= a.precision;
  const fa = fixedLength(from);
  return fa !== undefined && fa === fixedLength(to);
}

const V3_TYPES = /^(timestamp_ns|timestamptz_ns|unknown|variant|geometry\b.*|geography\b.*)$/;
const TYPE_ALIASES: Readonly<Record<string, string>> = {
  integer: 'int',
  int32: 'int',
  bigint: 'long',
  int64: 'long',
  bool: 'boolean',
  text: 'string',
  varchar: 'string',
  float32: 'float',
  real: 'float',
  float64: 'double',
  bytes: 'binary',
  datetime: 'timestamp',
};

/**
 * Reads a primitive type name as a user or another engine may write it ("Long", "decimal(10,2)",
 * "fixed[ 16 ]") and returns its canonical form ("long", "decimal(10, 2)", "fixed[16]").
 */
export function parsePrimitiveType(text: string, column?: string): PrimitiveType {
  const where = column === undefined ? '' : ` of column ${column}`;
  const name = text.trim().toLowerCase();
  if (isPrimitiveTypeName(name)) return name;
  const decimal = /^decimal\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)$/.exec(name);
  if (decimal) {
    const precision = Number(decimal[1]);
    const scale = Number(decimal[2]);
    if (precision < 1 || precision > 38 || scale > precision) {
      throw new TributaryError('ICEBERG_INVALID_SCHEMA', `Type ${text}${where} is not a valid decimal`, {
        context: { column, type: text },
        hint: 'Use decimal(P, S) with a precision P from 1 to 38 and a scale S from 0 to P.',
      });
    }
    return decimalType(precision, scale);
  }
  const fixed = /^fixed\s*\[\s*(\d+)\s*\]$/.exec(name);
  if (fixed) {
    const length = Number(fixed[1]);
    if (length < 1) {
      throw new TributaryError('ICEBERG_INVALID_SCHEMA', `Type ${text}${where} has no length`, {
        context: { column, type: text },
        hint: 'Use fixed[L] with a length L of 1 or more bytes.',
      });
    }
    return fixedType(length);
  }
  if (V3_TYPES.test(name)) {
    throw new TributaryError('ICEBERG_UNSUPPORTED', `Type ${text}${where} needs Iceberg format v3`, {
      context: { column, type: text },
      hint: 'Tributary writes format v2 tables: use timestamp/timestamptz (microseconds), or a string or binary column.',
    });
  }
  const alias = TYPE_ALIASES[name];
  throw new TributaryError(
    'ICEBERG_INVALID_SCHEMA',
    `Type ${JSON.stringify(text)}${where} is not an Iceberg type`,
    {
      context: { column, type: text },
      hint: alias
        ? `Did you mean ${alias}?`
        : `Use one of ${primitiveTypeNames.join(', ')}, decimal(P, S), fixed[L], or a struct, list or map object.`,
    },
  );
}

/**
 * Checks the schema's identifier fields as Java does: each must exist, be a required primitive that is
 * not float or double, and sit only inside required structs (not in a list or map).
 */
export function validateIdentifierFields(schema: Schema): void {
  const index = indexOf(schema);
  for (const id of schema['identifier-field-ids'] ?? []) {
    const field = index.byId.get(id);
    const name = index.idToName.get(id) ?? String(id);
    const fail = (reason: string, hint: string): never => {
      throw new TributaryError(
        'ICEBERG_INVALID_SCHEMA',
        `Column ${name} cannot be an identifier field: ${reason}`,
        {
          context: { column: name, fieldId: id },
          hint,
        },
      );
    };
    if (!field) fail('no field has that id', 'Name identifier fields that exist in the schema.');
    if (typeof field!.type !== 'string')
      fail('it is not a primitive', 'Use primitive columns as identifier fields.');
    if (!field!.required) fail('it is optional', 'Identifier fields must be required columns.');
    if (field!.type === 'float' || field!.type === 'double') {
      fail('it is a floating point column', 'Use an int, long, string, uuid, date or decimal column.');
    }
    for (let parent = index.parents.get(id); parent !== undefined; parent = index.parents.get(parent)) {
      const container = index.byId.get(parent)!;
      const containerName = index.idToName.get(parent) ?? String(parent);
      if (
        typeof container.type !== 'object' ||
        container.type.type !== 'struct' ||
        index.roles.get(parent) !== 'field'
      ) {
        fail(
          `it is inside ${containerName}, which is not a struct`,
          'Identifier fields may only be nested in structs.',
        );
      }
      if (!container.required) {
        fail(
          `it is inside the optional field ${containerName}`,
          'Identifier fields may only be nested in required structs.',
        );
      }
    }
  }
}

export interface ParseSchemaOptions {
  /** The schema id of the result when the JSON has none; 0 by default. */
  readonly schemaId?: number;
}

/**
 * Validates a schema given by a user, in Iceberg's JSON form or in a simple form where field ids, `required`
 * (default false) and the element/key/value ids may be left out:
 *
 *   {"fields": [{"name": "id", "type": "long", "required": true},
 *               {"name": "tags", "type": {"type": "list", "element": "string"}}],
 *    "identifier-fields": ["id"]}
 *
 * Without ids, ids are assigned as for a new table (assignFreshIds). Either every field has an id or none.
 * Identifier fields are given by id (`identifier-field-ids`) or by name (`identifier-fields`).
 */
export function parseSchemaJson(json: unknown, options: ParseSchemaOptions = {}): Schema {
  const reader = new SchemaJsonReader();
  const root = expectObject(json, 'The schema');
  checkKeys(root, ['type', 'schema-id', 'fields', 'identifier-field-ids', 'identifier-fields'], 'The schema');
  if (root.type !== undefined && root.type !== 'struct') {
    throw invalid(
      'The schema',
      `has type ${JSON.stringify(root.type)}`,
      'A schema is a struct: use "type": "struct" or leave it out.',
    );
  }
  const schemaId = root['schema-id'] ?? options.schemaId ?? 0;
  if (!isNonNegativeInteger(schemaId)) {
    throw invalid(
      'The schema',
      `has schema-id ${JSON.stringify(schemaId)}`,
      'Use a non-negative integer schema-id.',
    );
  }
  const struct = reader.readStruct(root, []);

  let schema: Schema;
  if (reader.withIds.length > 0 && reader.withoutIds.length > 0) {
    throw invalid(
      `Field ${reader.withoutIds[0]}`,
      `has no id while ${reader.withIds[0]} has one`,
      'Give every field (and every list element, map key and map value) an id, or leave all ids out.',
    );
  }
  if (reader.withoutIds.length > 0) {
    schema = { ...assignFreshIds(struct), 'schema-id': schemaId };
  } else {
    schema = { ...struct, 'schema-id': schemaId };
    const seen = new Map<number, string>();
    for (const [id, name] of reader.ids) {
      const other = seen.get(id);
      if (other !== undefined) {
        throw invalid(
          `Field ${name}`,
          `has id ${id}, already used by ${other}`,
          'Field ids must be unique across the schema.',
        );
      }
      seen.set(id, name);
    }
  }
  indexOf(schema); // rejects duplicate full names

  const identifierIds = root['identifier-field-ids'];
  const identifierNames = root['identifier-fields'];
  if (identifierIds !== undefined && identifierNames !== undefined) {
    throw invalid(
      'The schema',
      'has both identifier-field-ids and identifier-fields',
      'Give identifier fields one way.',
    );
  }
  let identifiers: readonly number[] | undefined;
  if (identifierIds !== undefined) {
    if (!Array.isArray(identifierIds) || !identifierIds.every(isNonNegativeInteger)) {
      throw invalid(
        'The schema',
        'has identifier-field-ids that are not a list of field ids',
        'Use e.g. "identifier-field-ids": [1].',
      );
    }
    if (reader.withoutIds.length > 0) {
      throw invalid(
        'The schema',
        'has identifier-field-ids but its fields have no ids',
        'Use "identifier-fields" with column names.',
      );
    }
    identifiers = identifierIds;
  } else if (identifierNames !== undefined) {
    if (!Array.isArray(identifierNames) || !identifierNames.every((name) => typeof name === 'string')) {
      throw invalid(
        'The schema',
        'has identifier-fields that are not a list of column names',
        'Use e.g. "identifier-fields": ["id"].',
      );
    }
    identifiers = identifierNames.map((name) => {
      const field = findFieldByName(schema, name);
      if (!field) {
        throw invalid(
          `Identifier field ${name}`,
          'is not a column of the schema',
          'Name existing columns, dotted for nested ones.',
        );
      }
      return field.id;
    });
  }
  if (identifiers !== undefined) {
    schema = { ...schema, 'identifier-field-ids': identifiers };
    validateIdentifierFields(schema);
  }
  return schema;
}

class SchemaJsonReader {
  readonly ids: Array<[number, string]> = [];
  readonly withIds: string[] = [];
  readonly withoutIds: string[] = [];

  readStruct(json: Record<string, unknown>, path: readonly string[]): StructType {
    const where = path.length ? `Field ${path.join('.')}` : 'The schema';
    if (!Array.isArray(json.fields)) {
      throw invalid(where, 'has no "fields" list', 'A struct needs "fields": [{"name": …, "type": …}, …].');
    }
    const names = new Set<string>();
    const fields = json.fields.map((item: unknown, i): NestedField => {
      const field = expectObject(item, `${where}: fields[${i}]`);
      if (typeof field.name !== 'string' || field.name === '') {
        throw invalid(`${where}: fields[${i}]`, 'has no name', 'Every field needs a non-empty "name".');
      }
      const name = [...path, field.name].join('.');
      checkKeys(
        field,
        ['id', 'name', 'type', 'required', 'doc', 'initial-default', 'write-default'],
        `Field ${name}`,
      );
      if (names.has(field.name)) {
        throw invalid(`Field ${name}`, 'appears twice', 'Field names must be unique within a struct.');
      }
      names.add(field.name);
      if (field['initial-default'] !== undefined || field['write-default'] !== undefined) {
        throw new TributaryError(
          'ICEBERG_UNSUPPORTED',
          `Field ${name} has a default value, which needs Iceberg format v3`,
          {
            context: { column: name },
            hint: 'Remove initial-default and write-default.',
          },
        );
      }
      if (field.required !== undefined && typeof field.required !== 'boolean') {
        throw invalid(
          `Field ${name}`,
          `has required ${JSON.stringify(field.required)}`,
          'Use "required": true or false.',
        );
      }
      if (field.doc !== undefined && typeof field.doc !== 'string') {
        throw invalid(`Field ${name}`, 'has a doc that is not a string', 'Write "doc" as a string.');
      }
      const id = this.readId(field.id, name, 'id');
      const result: NestedField = {
        id,
        name: field.name,
        required: field.required === true,
        type: this.readType(field.type, [...path, field.name]),
      };
      return field.doc === undefined ? result : { ...result, doc: field.doc };
    });
    return { type: 'struct', fields };
  }

  readType(json: unknown, path: readonly string[]): IcebergType {
    const name = path.join('.');
    if (typeof json === 'string') return parsePrimitiveType(json, name);
    if (json === undefined) throw invalid(`Field ${name}`, 'has no type', 'Give every field a "type".');
    const type = expectObject(json, `Field ${name}: type`);
    switch (type.type) {
      case 'struct':
        checkKeys(type, ['type', 'fields'], `Field ${name}: type`);
        return this.readStruct(type, path);
      case 'list': {
        checkKeys(type, ['type', 'element-id', 'element', 'element-required'], `Field ${name}: type`);
        const elementName = `${name}.element`;
        return {
          type: 'list',
          'element-id': this.readId(type['element-id'], elementName, 'element-id'),
          element: this.readType(type.element, [...path, 'element']),
          'element-required': this.readFlag(type['element-required'], elementName, 'element-required'),
        };
      }
      case 'map': {
        checkKeys(
          type,
          ['type', 'key-id', 'key', 'value-id', 'value', 'value-required'],
          `Field ${name}: type`,
        );
        return {
          type: 'map',
          'key-id': this.readId(type['key-id'], `${name}.key`, 'key-id'),
          key: this.readType(type.key, [...path, 'key']),
          'value-id': this.readId(type['value-id'], `${name}.value`, 'value-id'),
          value: this.readType(type.value, [...path, 'value']),
          'value-required': this.readFlag(type['value-required'], `${name}.value`, 'value-required'),
        };
      }
      default:
        throw invalid(
          `Field ${name}`,
          `has type ${JSON.stringify(type.type)}`,
          'A nested type is an object with "type": "struct", "list" or "map"; primitive types are strings.',
        );
    }
  }

  readId(id: unknown, name: string, key: string): number {
    if (id === undefined) {
      this.withoutIds.push(name);
      return 0;
    }
    if (!isNonNegativeInteger(id)) {
      throw invalid(
        `Field ${name}`,
        `has ${key} ${JSON.stringify(id)}`,
        `Use a non-negative integer ${key}, or leave all ids out.`,
      );
    }
    this.withIds.push(name);
    this.ids.push([id, name]);
    return id;
  }

  readFlag(value: unknown, name: string, key: string): boolean {
    if (value === undefined) return false;
    if (typeof value !== 'boolean')
      throw invalid(`Field ${name}`, `has ${key} ${JSON.stringify(value)}`, `Use true or false.`);
    return value;
  }
}

function expectObject(json: unknown, what: string): Record<string, unknown> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw invalid(what, 'is not a JSON object', 'Write it as {"name": …, "type": …}.');
  }
  return json as Record<string, unknown>;
}

function checkKeys(json: Record<string, unknown>, allowed: readonly string[], what: string): void {
  const unknown = Object.keys(json).find((key) => !allowed.includes(key));
  if (unknown !== undefined) {
    throw invalid(
      what,
      `has an unknown key ${JSON.stringify(unknown)}`,
      `Allowed keys: ${allowed.join(', ')}.`,
    );
  }
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

function invalid(what: string, problem: string, hint: string): TributaryError {
  return new TributaryError('ICEBERG_INVALID_SCHEMA', `${what} ${problem}`, { hint });
}

/**
 * Projection: the schema with only the given fields, keeping their ancestors. Selecting a struct, list or
 * map selects everything in it (as Java's TypeUtil.select). Identifier ids not kept are dropped.
 */
export function selectFields(schema: Schema, ids: Iterable<number>): Schema {
  const selected = new Set(ids);
  const fields = pruneStruct(schema, selected)?.fields ?? [];
  const kept = indexById({ type: 'struct', fields });
  const result: Schema = { ...schema, fields };
  const identifiers = schema['identifier-field-ids'];
  return identifiers === undefined
    ? result
    : { ...result, 'identifier-field-ids': identifiers.filter((id) => kept.has(id)) };
}

/** selectFields by column names (full or short dotted names); unknown names are an ICEBERG_INVALID_SCHEMA error. */
export function selectColumns(schema: Schema, names: readonly string[]): Schema {
  return selectFields(
    schema,
    names.map((name) => {
      const field = findFieldByName(schema, name);
      if (!field) {
        throw new TributaryError('ICEBERG_INVALID_SCHEMA', `Column ${name} is not in the schema`, {
          context: { column: name },
          hint: `Select from: ${columnNames(schema).join(', ')}.`,
        });
      }
      return field.id;
    }),
  );
}

function pruneStruct(struct: StructType, selected: ReadonlySet<number>): StructType | undefined {
  const fields: NestedField[] = [];
  for (const field of struct.fields) {
    if (selected.has(field.id)) {
      fields.push(field);
      continue;
    }
    const type = pruneType(field.type, selected);
    if (type !== undefined) fields.push({ ...field, type });
  }
  return fields.length ? { ...struct, fields } : undefined;
}

function pruneType(type: IcebergType, selected: ReadonlySet<number>): IcebergType | undefined {
  if (typeof type === 'string') return undefined;
  switch (type.type) {
    case 'struct':
      return pruneStruct(type, selected);
    case 'list': {
      if (selected.has(type['element-id'])) return type;
      const element = pruneType(type.element, selected);
      return element === undefined ? undefined : { ...type, element };
    }
    case 'map': {
      if (selected.has(type['key-id']) || selected.has(type['value-id'])) return type;
      // Keys are kept whole: a map cannot be read without them.
      const value = pruneType(type.value, selected);
      return value === undefined ? undefined : { ...type, value };
    }
  }
}
