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
