/**
 * Iceberg types ↔ Avro schemas (Iceberg spec, Appendix A), and Iceberg values (types.ts) ↔ the values
 * codec.ts encodes.
 *
 * Schemas are built the way Java's `AvroSchemaUtil` and pyiceberg build them: every struct field carries
 * `field-id`; optional fields are `["null", T]` with default null; lists carry `element-id`; maps with
 * string keys are Avro maps with `key-id`/`value-id`, other maps are arrays of `k<key>_v<value>` records
 * with logicalType "map"; nested records are named `r<field id>`; field names that are not valid Avro
 * names are sanitized (`_xHH` for a character, `_` before a leading digit) and the original kept in
 * `iceberg-field-name`.
 *
 * Named types must be unique in an Avro schema, and pyiceberg cannot read a by-name reference to an
 * earlier definition, so a second fixed/decimal/uuid of the same shape gets a suffixed name
 * (`uuid_fixed`, then `uuid_fixed_2`) instead of a reference: both Java and pyiceberg read that.
 */
import { TributaryError } from '../../errors.ts';
import type { IcebergType, IcebergValue, ListType, MapType, NestedField, StructType } from '../types.ts';
import type {
  AvroArraySchema,
  AvroField,
  AvroFixedSchema,
  AvroMapSchema,
  AvroRecordSchema,
  AvroSchema,
} from './codec.ts';

export const FIELD_ID_PROP = 'field-id';
export const ICEBERG_FIELD_NAME_PROP = 'iceberg-field-name';

// ---------------------------------------------------------------------------------------------------
// Type helpers

/** Precision and scale of "decimal(P, S)", or undefined for other types. */
export function parseDecimal(type: IcebergType): { precision: number; scale: number } | undefined {
  if (typeof type !== 'string') return undefined;
  const match = /^decimal\(\s*(\d+)\s*,\s*(-?\d+)\s*\)$/.exec(type);
  return match ? { precision: Number(match[1]), scale: Number(match[2]) } : undefined;
}

/** The length of "fixed[L]", or undefined for other types. */
export function parseFixed(type: IcebergType): number | undefined {
  if (typeof type !== 'string') return undefined;
  const match = /^fixed\[\s*(\d+)\s*\]$/.exec(type);
  return match ? Number(match[1]) : undefined;
}

/** The fewest bytes whose two's complement holds every unscaled value of the precision (1 ≤ P ≤ 38…). */
export function decimalRequiredBytes(precision: number): number {
  if (!Number.isInteger(precision) || precision <= 0 || precision > 76) {
    throw new TributaryError('ICEBERG_INVALID_SCHEMA', `Invalid decimal precision ${precision}`);
  }
  const max = 10n ** BigInt(precision);
  let bytes = 1;
  while (1n << BigInt(8 * bytes - 1) <= max) bytes++;
  return bytes;
}

function isLetter(c: string): boolean {
  return /^\p{L}$/u.test(c);
}

function isDigit(c: string): boolean {
  return /^\p{Nd}$/u.test(c);
}

function sanitizeChar(c: string): string {
  if (isDigit(c)) return `_${c}`;
  return `_x${c.codePointAt(0)!.toString(16).toUpperCase()}`;
}

/** A valid Avro name for an Iceberg field name, as Java and pyiceberg make it. */
export function sanitizeAvroName(name: string): string {
  const chars = [...name];
  if (chars.length === 0) throw new TributaryError('ICEBERG_INVALID_SCHEMA', 'A field name cannot be empty');
  const valid = (c: string, first: boolean): boolean => c === '_' || isLetter(c) || (!first && isDigit(c));
  if (chars.every((c, i) => valid(c, i === 0))) return name;
  return chars.map((c, i) => (valid(c, i === 0) ? c : sanitizeChar(c))).join('');
}

// ---------------------------------------------------------------------------------------------------
// Iceberg → Avro schema

class ToAvro {
  private readonly names = new Set<string>();

  private uniqueName(base: string): string {
    let name = base;
    for (let i = 2; this.names.has(name); i++) name = `${base}_${i}`;
    this.names.add(name);
    return name;
  }

  struct(struct: StructType, name: string): AvroRecordSchema {
    this.names.add(name);
    return { type: 'record', name, fields: struct.fields.map((field) => this.field(field)) };
  }

  field(field: NestedField): AvroField {
    const type = this.type(field.type, `r${field.id}`);
    const name = sanitizeAvroName(field.name);
    const result: Record<string, unknown> = { name };
    if (name !== field.name) result[ICEBERG_FIELD_NAME_PROP] = field.name;
    result.type = field.required ? type : ['null', type];
    if (!field.required) result.default = null;
    if (field.doc !== undefined) result.doc = field.doc;
    result[FIELD_ID_PROP] = field.id;
    return result as unknown as AvroField;
  }

  type(type: IcebergType, recordName: string): AvroSchema {
    if (typeof type === 'string') return this.primitive(type);
    switch (type.type) {
      case 'struct':
        return this.struct(type, recordName);
      case 'list':
        return this.list(type);
      case 'map':
        return this.map(type);
    }
  }

  private list(type: ListType): AvroArraySchema {
    const items = this.type(type.element, `r${type['element-id']}`);
    return {
      type: 'array',
      items: type['element-required'] ? items : ['null', items],
      'element-id': type['element-id'],
    };
  }

  private map(type: MapType): AvroSchema {
    const value = this.type(type.value, `r${type['value-id']}`);
    const values = type['value-required'] ? value : ['null', value];
    if (type.key === 'string') {
      const schema: AvroMapSchema = {
        type: 'map',
        values,
        'key-id': type['key-id'],
        'value-id': type['value-id'],
      };
      return schema;
    }
    const key = this.type(type.key, `r${type['key-id']}`);
    const valueField: Record<string, unknown> = { name: 'value', type: values };
    if (!type['value-required']) valueField.default = null;
    valueField[FIELD_ID_PROP] = type['value-id'];
    return {
      type: 'array',
      items: {
        type: 'record',
        name: this.uniqueName(`k${type['key-id']}_v${type['value-id']}`),
        fields: [
          { name: 'key', type: key, [FIELD_ID_PROP]: type['key-id'] },
          valueField as unknown as AvroField,
        ],
      },
      logicalType: 'map',
    };
  }

  private primitive(type: string): AvroSchema {
    switch (type) {
      case 'boolean':
      case 'int':
      case 'long':
      case 'float':
      case 'double':
      case 'string':
        return type;
      case 'binary':
        return 'bytes';
      case 'date':
        return { type: 'int', logicalType: 'date' };
      case 'time':
        return { type: 'long', logicalType: 'time-micros' };
      case 'timestamp':
        return { type: 'long', logicalType: 'timestamp-micros', 'adjust-to-utc': false };
      case 'timestamptz':
        return { type: 'long', logicalType: 'timestamp-micros', 'adjust-to-utc': true };
      case 'uuid':
        return { type: 'fixed', name: this.uniqueName('uuid_fixed'), size: 16, logicalType: 'uuid' };
    }
    const decimal = parseDecimal(type as IcebergType);
    if (decimal) {
      const schema: AvroFixedSchema = {
        type: 'fixed',
        name: this.uniqueName(`decimal_${decimal.precision}_${decimal.scale}`),
        size: decimalRequiredBytes(decimal.precision),
        logicalType: 'decimal',
        precision: decimal.precision,
        scale: decimal.scale,
      };
      return schema;
    }
    const length = parseFixed(type as IcebergType);
    if (length !== undefined)
      return { type: 'fixed', name: this.uniqueName(`fixed_${length}`), size: length };
    throw new TributaryError('ICEBERG_INVALID_SCHEMA', `Unknown Iceberg type ${JSON.stringify(type)}`);
  }
}

/** The Avro record schema of an Iceberg struct (or table schema), named `recordName`. */
export function icebergToAvroSchema(struct: StructType, recordName: string): AvroRecordSchema {
  return new ToAvro().struct(struct, recordName);
}

// ---------------------------------------------------------------------------------------------------
// Avro → Iceberg schema

function fileError(message: string): TributaryError {
  return new TributaryError('ICEBERG_INVALID_FILE', message);
}

function asObject(schema: AvroSchema): Record<string, unknown> | undefined {
  return typeof schema === 'object' && !Array.isArray(schema)
    ? (schema as Record<string, unknown>)
    : undefined;
}

/** Splits `["null", T]` (either order) into T and whether it is optional. */
export function unwrapOptional(schema: AvroSchema): { type: AvroSchema; optional: boolean } {
  if (!Array.isArray(schema)) return { type: schema, optional: false };
  const union = schema as readonly AvroSchema[];
  const isNull = (s: AvroSchema): boolean => s === 'null' || asObject(s)?.type === 'null';
  const others = union.filter((s) => !isNull(s));
  if (others.length === 1 && union.length === 2) return { type: others[0]!, optional: true };
  if (others.length === 1 && union.length === 1) return { type: others[0]!, optional: false };
  throw fileError(`Unsupported Avro union ${JSON.stringify(schema)}: Iceberg only uses ["null", type]`);
}

function fieldId(field: AvroField | Record<string, unknown>, what: string): number {
  const id = field[FIELD_ID_PROP];
  if (typeof id === 'number' && Number.isInteger(id)) return id;
  if (typeof id === 'string' && /^-?\d+$/.test(id)) return Number(id);
  throw fileError(`The Avro ${what} has no ${FIELD_ID_PROP}`);
}

function icebergFieldName(field: AvroField): string {
  const original = field[ICEBERG_FIELD_NAME_PROP];
  return typeof original === 'string' ? original : field.name;
}

/**
 * The Iceberg struct of an Avro record with field ids (a manifest's, a data file's). The schema should be
 * expanded (codec.ts `expandSchema`) so named references are resolved.
 */
export function avroToIcebergStruct(record: AvroRecordSchema): StructType {
  return {
    type: 'struct',
    fields: record.fields.map((field) => {
      const { type, optional } = unwrapOptional(field.type);
      const result: NestedField = {
        id: fieldId(field, `field ${field.name}`),
        name: icebergFieldName(field),
        required: !optional,
        type: avroToIcebergType(type),
        ...(typeof field.doc === 'string' ? { doc: field.doc } : {}),
      };
      return result;
    }),
  };
}

/** The Iceberg type of a (non-union) Avro schema. */
export function avroToIcebergType(schema: AvroSchema): IcebergType {
  if (Array.isArray(schema)) {
    const { type, optional } = unwrapOptional(schema);
    if (optional) throw fileError('An optional Avro type where a required one was expected');
    return avroToIcebergType(type);
  }
  if (typeof schema === 'string') {
    switch (schema) {
      case 'boolean':
      case 'int':
      case 'long':
      case 'float':
      case 'double':
      case 'string':
        return schema;
      case 'bytes':
        return 'binary';
      case 'null':
        throw new TributaryError(
          'ICEBERG_UNSUPPORTED',
          'The Iceberg v3 type "unknown" (Avro null) is not supported',
        );
      default:
        throw fileError(`Unresolved Avro type reference ${JSON.stringify(schema)}`);
    }
  }
  const object = schema as Record<string, unknown>;
  const physical = object.type;
  if (typeof physical !== 'string') return avroToIcebergType(physical as AvroSchema);
  const logical = typeof object.logicalType === 'string' ? object.logicalType : undefined;
  switch (logical) {
    case 'decimal': {
      const precision = Number(object.precision);
      const scale = Number(object.scale ?? 0);
      if (!Number.isInteger(precision) || !Number.isInteger(scale))
        throw fileError('An Avro decimal without precision');
      return `decimal(${precision}, ${scale})`;
    }
    case 'date':
      if (physical === 'int') return 'date';
      break;
    case 'time-micros':
      if (physical === 'long') return 'time';
      break;
    case 'timestamp-micros':
      if (physical === 'long') return object['adjust-to-utc'] === true ? 'timestamptz' : 'timestamp';
      break;
    case 'timestamp-nanos':
      throw new TributaryError('ICEBERG_UNSUPPORTED', 'Nanosecond timestamps (Iceberg v3) are not supported');
    case 'uuid':
      if (physical === 'fixed' || physical === 'string') return 'uuid';
      break;
    case 'map':
      if (physical === 'array') return logicalMap(object as unknown as AvroArraySchema);
      break;
  }
  switch (physical) {
    case 'record':
    case 'error':
      return avroToIcebergStruct(object as unknown as AvroRecordSchema);
    case 'array': {
      const array = object as unknown as AvroArraySchema;
      const { type, optional } = unwrapOptional(array.items);
      return {
        type: 'list',
        'element-id': idProp(object, 'element-id'),
        element: avroToIcebergType(type),
        'element-required': !optional,
      } satisfies ListType;
    }
    case 'map': {
      const map = object as unknown as AvroMapSchema;
      const { type, optional } = unwrapOptional(map.values);
      return {
        type: 'map',
        'key-id': idProp(object, 'key-id'),
        key: 'string',
        'value-id': idProp(object, 'value-id'),
        value: avroToIcebergType(type),
        'value-required': !optional,
      } satisfies MapType;
    }
    case 'fixed':
      return `fixed[${Number(object.size)}]`;
    case 'enum':
      return 'string';
    default:
      return avroToIcebergType(physical);
  }
}

function idProp(object: Record<string, unknown>, prop: 'element-id' | 'key-id' | 'value-id'): number {
  const id = object[prop];
  if (typeof id === 'number' && Number.isInteger(id)) return id;
  throw fileError(`The Avro ${String(object.type)} has no ${prop}`);
}

function logicalMap(array: AvroArraySchema): MapType {
  const record = asObject(array.items) as unknown as AvroRecordSchema | undefined;
  const key = record?.fields?.find((f) => f.name === 'key') ?? record?.fields?.[0];
  const value = record?.fields?.find((f) => f.name === 'value') ?? record?.fields?.[1];
  if (!record || record.fields.length !== 2 || !key || !value) {
    throw fileError('An Avro array with logicalType map must hold records of a key and a value');
  }
  const valueType = unwrapOptional(value.type);
  return {
    type: 'map',
    'key-id': fieldId(key, 'map key'),
    key: avroToIcebergType(unwrapOptional(key.type).type),
    'value-id': fieldId(value, 'map value'),
    value: avroToIcebergType(valueType.type),
    'value-required': !valueType.optional,
  };
}

// ---------------------------------------------------------------------------------------------------
// Values

function valueError(type: IcebergType, value: unknown, detail = ''): TributaryError {
  const shown =
    typeof value === 'bigint'
      ? `${value}n`
      : value instanceof Uint8Array
        ? `${value.length} bytes`
        : JSON.stringify(value);
  return new TributaryError(
    'INVALID_INPUT',
    `${shown ?? String(value)} is not a value of Iceberg type ${JSON.stringify(type)}${detail ? `: ${detail}` : ''}`,
  );
}

/** Two's complement, big-endian, in exactly `size` bytes. */
export function bigintToTwosComplement(value: bigint, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let v = BigInt.asUintN(size * 8, value);
  for (let i = size - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** The signed integer of big-endian two's-complement bytes (any length). */
export function twosComplementToBigint(bytes: Uint8Array): bigint {
  if (bytes.length === 0) return 0n;
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return BigInt.asIntN(bytes.length * 8, v);
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function uuidToBytes(uuid: string): Uint8Array {
  if (!UUID_PATTERN.test(uuid)) throw valueError('uuid', uuid);
  const hex = uuid.replaceAll('-', '');
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

export function bytesToUuid(bytes: Uint8Array): string {
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function toBigint(type: IcebergType, value: unknown): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
  throw valueError(type, value);
}

/**
 * An Iceberg value (types.ts) as codec.ts encodes it under `icebergToAvroSchema`'s schema for the type:
 * uuid → 16-byte fixed, decimal → two's-complement fixed of the minimal size, struct → record keyed by
 * Avro field name, map → Map (string keys) or array of {key, value} records. Null stays null.
 */
export function toAvroValue(type: IcebergType, value: IcebergValue | undefined): unknown {
  if (value === null || value === undefined) return null;
  if (typeof type === 'string') {
    switch (type) {
      case 'boolean':
        if (typeof value !== 'boolean') throw valueError(type, value);
        return value;
      case 'int':
      case 'date':
        if (typeof value !== 'number' || !Number.isInteger(value)) throw valueError(type, value);
        return value;
      case 'long':
      case 'time':
      case 'timestamp':
      case 'timestamptz':
        return toBigint(type, value);
      case 'float':
      case 'double':
        if (typeof value !== 'number') throw valueError(type, value);
        return value;
      case 'string':
        if (typeof value !== 'string') throw valueError(type, value);
        return value;
      case 'uuid':
        if (value instanceof Uint8Array && value.length === 16) return value;
        if (typeof value !== 'string') throw valueError(type, value);
        return uuidToBytes(value);
      case 'binary':
        if (!(value instanceof Uint8Array)) throw valueError(type, value);
        return value;
    }
    const decimal = parseDecimal(type);
    if (decimal) {
      const unscaled = toBigint(type, value);
      const limit = 10n ** BigInt(decimal.precision);
      if (unscaled >= limit || unscaled <= -limit) throw valueError(type, value, 'too many digits');
      return bigintToTwosComplement(unscaled, decimalRequiredBytes(decimal.precision));
    }
    const length = parseFixed(type);
    if (length !== undefined) {
      if (!(value instanceof Uint8Array) || value.length !== length) throw valueError(type, value);
      return value;
    }
    throw new TributaryError('ICEBERG_INVALID_SCHEMA', `Unknown Iceberg type ${JSON.stringify(type)}`);
  }
  switch (type.type) {
    case 'struct': {
      if (
        typeof value !== 'object' ||
        Array.isArray(value) ||
        value instanceof Map ||
        value instanceof Uint8Array
      ) {
        throw valueError(type, value);
      }
      const record: Record<string, unknown> = {};
      const struct = value as { readonly [field: string]: IcebergValue };
      for (const field of type.fields) {
        record[sanitizeAvroName(field.name)] = toAvroValue(field.type, struct[field.name]);
      }
      return record;
    }
    case 'list':
      if (!Array.isArray(value)) throw valueError(type, value);
      return (value as readonly IcebergValue[]).map((item) => toAvroValue(type.element, item));
    case 'map': {
      if (!(value instanceof Map)) throw valueError(type, value);
      const entries = [...(value as ReadonlyMap<IcebergValue, IcebergValue>)];
      if (type.key === 'string') {
        return new Map(entries.map(([k, v]) => [toAvroValue(type.key, k), toAvroValue(type.value, v)]));
      }
      return entries.map(([k, v]) => ({ key: toAvroValue(type.key, k), value: toAvroValue(type.value, v) }));
    }
  }
}

/** The Iceberg value of a decoded Avro value of the type (the inverse of `toAvroValue`; tolerant of
 * other writers' choices: decimals as bytes, uuids as strings, maps either way). */
export function fromAvroValue(type: IcebergType, value: unknown): IcebergValue {
  if (value === null || value === undefined) return null;
  if (typeof type === 'string') {
    switch (type) {
      case 'boolean':
        if (typeof value !== 'boolean') throw fileValueError(type, value);
        return value;
      case 'int':
      case 'date':
        if (typeof value === 'number') return value;
        throw fileValueError(type, value);
      case 'long':
      case 'time':
      case 'timestamp':
      case 'timestamptz':
        if (typeof value === 'bigint') return value;
        if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value); // int promoted to long
        throw fileValueError(type, value);
      case 'float':
      case 'double':
        if (typeof value === 'number') return value;
        throw fileValueError(type, value);
      case 'string':
        if (typeof value === 'string') return value;
        throw fileValueError(type, value);
      case 'uuid':
        if (value instanceof Uint8Array && value.length === 16) return bytesToUuid(value);
        if (typeof value === 'string' && UUID_PATTERN.test(value)) return value.toLowerCase();
        throw fileValueError(type, value);
      case 'binary':
        if (value instanceof Uint8Array) return value;
        throw fileValueError(type, value);
    }
    if (parseDecimal(type)) {
      if (value instanceof Uint8Array) return twosComplementToBigint(value);
      throw fileValueError(type, value);
    }
    if (parseFixed(type) !== undefined) {
      if (value instanceof Uint8Array) return value;
      throw fileValueError(type, value);
    }
    throw fileError(`Unknown Iceberg type ${JSON.stringify(type)}`);
  }
  switch (type.type) {
    case 'struct': {
      if (typeof value !== 'object' || Array.isArray(value)) throw fileValueError(type, value);
      const record = value as Record<string, unknown>;
      const struct: Record<string, IcebergValue> = {};
      for (const field of type.fields) {
        const avroName = sanitizeAvroName(field.name);
        struct[field.name] = fromAvroValue(
          field.type,
          avroName in record ? record[avroName] : record[field.name],
        );
      }
      return struct;
    }
    case 'list':
      if (!Array.isArray(value)) throw fileValueError(type, value);
      return value.map((item) => fromAvroValue(type.element, item));
    case 'map': {
      const map = new Map<IcebergValue, IcebergValue>();
      if (value instanceof Map) {
        for (const [k, v] of value as Map<unknown, unknown>) {
          map.set(fromAvroValue(type.key, k), fromAvroValue(type.value, v));
        }
      } else if (Array.isArray(value)) {
        for (const entry of value as Record<string, unknown>[]) {
          map.set(fromAvroValue(type.key, entry.key), fromAvroValue(type.value, entry.value));
        }
      } else {
        throw fileValueError(type, value);
      }
      return map;
    }
  }
}

function fileValueError(type: IcebergType, value: unknown): TributaryError {
  const shown =
    typeof value === 'bigint'
      ? `${value}n`
      : value instanceof Uint8Array
        ? `${value.length} bytes`
        : typeof value;
  return fileError(`An Avro value (${shown}) does not fit Iceberg type ${JSON.stringify(type)}`);
}
