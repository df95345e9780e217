/**
 * Iceberg's type system (format v2), in the shape of its JSON serialization: a primitive type is its
 * name ("long", "decimal(10, 2)", "fixed[16]"), nested types are objects. The same values appear in table
 * metadata, so there is one representation in memory and on disk.
 *
 * Values of each type, wherever code handles them (partition values, bounds, literals in filters), use
 * this representation — the spec's "internal representation" in TypeScript terms:
 *
 * | Iceberg type            | TypeScript value                               |
 * |-------------------------|------------------------------------------------|
 * | boolean                 | boolean                                        |
 * | int                     | number (32-bit)                                |
 * | long                    | bigint                                         |
 * | float, double           | number                                         |
 * | decimal(P, S)           | bigint: the unscaled value                     |
 * | date                    | number: days since 1970-01-01                  |
 * | time                    | bigint: microseconds since midnight            |
 * | timestamp, timestamptz  | bigint: microseconds since 1970-01-01 UTC      |
 * | string                  | string                                         |
 * | uuid                    | string: canonical lower-case 8-4-4-4-12 form   |
 * | fixed[L], binary        | Uint8Array                                     |
 */

export type PrimitiveTypeName =
  | 'boolean'
  | 'int'
  | 'long'
  | 'float'
  | 'double'
  | 'date'
  | 'time'
  | 'timestamp'
  | 'timestamptz'
  | 'string'
  | 'uuid'
  | 'binary';

/** A primitive type as written in metadata: a name, "decimal(P, S)" or "fixed[L]". */
export type PrimitiveType = PrimitiveTypeName | `decimal(${number}, ${number})` | `fixed[${number}]`;

export interface NestedField {
  readonly id: number;
  readonly name: string;
  readonly required: boolean;
  readonly type: IcebergType;
  readonly doc?: string;
}

export interface StructType {
  readonly type: 'struct';
  readonly fields: readonly NestedField[];
}

export interface ListType {
  readonly type: 'list';
  readonly 'element-id': number;
  readonly element: IcebergType;
  readonly 'element-required': boolean;
}

export interface MapType {
  readonly type: 'map';
  readonly 'key-id': number;
  readonly key: IcebergType;
  readonly 'value-id': number;
  readonly value: IcebergType;
  readonly 'value-required': boolean;
}

export type NestedType = StructType | ListType | MapType;
export type IcebergType = PrimitiveType | NestedType;

/** A table schema: a struct with an id, and optionally the fields that identify a row (for upserts). */
export interface Schema extends StructType {
  readonly 'schema-id': number;
  readonly 'identifier-field-ids'?: readonly number[];
}

/** A value of some Iceberg type, in the representation of the table above; null for a missing value. */
export type IcebergValue =
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | null
  | readonly IcebergValue[]
  | ReadonlyMap<IcebergValue, IcebergValue>
  | { readonly [field: string]: IcebergValue };

export function isPrimitive(type: IcebergType): type is PrimitiveType {
  return typeof type === 'string';
}

export function isStruct(type: IcebergType): type is StructType {
  return typeof type === 'object' && type.type === 'struct';
}

export function isList(type: IcebergType): type is ListType {
  return typeof type === 'object' && type.type === 'list';
}

export function isMap(type: IcebergType): type is MapType {
  return typeof type === 'object' && type.type === 'map';
}

export const primitiveTypeNames: readonly PrimitiveTypeName[] = [
  'boolean',
  'int',
  'long',
  'float',
  'double',
  'date',
  'time',
  'timestamp',
  'timestamptz',
  'string',
  'uuid',
  'binary',
];

export function isPrimitiveTypeName(text: string): text is PrimitiveTypeName {
  return (primitiveTypeNames as readonly string[]).includes(text);
}

export interface DecimalParams {
  readonly precision: number;
  readonly scale: number;
}

// The spec asks readers to accept optional whitespace inside parameterized type strings.
const DECIMAL = /^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$/;
const FIXED = /^fixed\[\s*(\d+)\s*\]$/;

/** Precision and scale of a "decimal(P, S)" type; undefined for any other type. */
export function decimalParams(type: IcebergType): DecimalParams | undefined {
  if (typeof type !== 'string') return undefined;
  const match = DECIMAL.exec(type);
  return match ? { precision: Number(match[1]), scale: Number(match[2]) } : undefined;
}

/** Length of a "fixed[L]" type; undefined for any other type. */
export function fixedLength(type: IcebergType): number | undefined {
  if (typeof type !== 'string') return undefined;
  const match = FIXED.exec(type);
  return match ? Number(match[1]) : undefined;
}

/** What kind of primitive a type is, with decimal and fixed stripped of their parameters. */
export type PrimitiveKind = PrimitiveTypeName | 'decimal' | 'fixed';

/** The kind of a primitive type; undefined for nested types and for names this library does not know. */
export function primitiveKind(type: IcebergType): PrimitiveKind | undefined {
  if (typeof type !== 'string') return undefined;
  if (isPrimitiveTypeName(type)) return type;
  if (decimalParams(type)) return 'decimal';
  if (fixedLength(type) !== undefined) return 'fixed';
  return undefined;
}

/** The canonical spelling of a decimal type, as Java writes it: "decimal(10, 2)". */
export function decimalType(precision: number, scale: number): PrimitiveType {
  return `decimal(${precision}, ${scale})`;
}

export function fixedType(length: number): PrimitiveType {
  return `fixed[${length}]`;
}

/** Whether two types are the same, ignoring whitespace in "decimal(P,S)" and field docs. */
export function sameType(a: IcebergType, b: IcebergType): boolean {
  if (typeof a === 'string' || typeof b === 'string') {
    if (typeof a !== 'string' || typeof b !== 'string') return false;
    const da = decimalParams(a);
    const db = decimalParams(b);
    if (da || db) return !!da && !!db && da.precision === db.precision && da.scale === db.scale;
    const fa = fixedLength(a);
    if (fa !== undefined) return fa === fixedLength(b);
    return a === b;
  }
  if (a.type === 'struct' && b.type === 'struct') {
    return (
      a.fields.length === b.fields.length &&
      a.fields.every((field, i) => {
        const other = b.fields[i];
        return (
          !!other &&
          field.id === other.id &&
          field.name === other.name &&
          field.required === other.required &&
          sameType(field.type, other.type)
        );
      })
    );
  }
  if (a.type === 'list' && b.type === 'list') {
    return (
      a['element-id'] === b['element-id'] &&
      a['element-required'] === b['element-required'] &&
      sameType(a.element, b.element)
    );
  }
  if (a.type === 'map' && b.type === 'map') {
    return (
      a['key-id'] === b['key-id'] &&
      a['value-id'] === b['value-id'] &&
      a['value-required'] === b['value-required'] &&
      sameType(a.key, b.key) &&
      sameType(a.value, b.value)
    );
  }
  return false;
}

/** A short, readable spelling of a type for messages: "list<string>", "map<string, long>", "struct<…>". */
export function describeType(type: IcebergType): string {
  if (typeof type === 'string') return type;
  switch (type.type) {
    case 'struct':
      return `struct<${type.fields.map((field) => `${field.name}: ${describeType(field.type)}`).join(', ')}>`;
    case 'list':
      return `list<${describeType(type.element)}>`;
    case 'map':
      return `map<${describeType(type.key)}, ${describeType(type.value)}>`;
  }
}
