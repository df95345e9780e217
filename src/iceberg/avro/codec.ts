/**
 * Apache Avro binary encoding (specification 1.11), written for Iceberg's metadata files: manifests and
 * manifest lists. Schemas are the plain JSON objects of the Avro specification (`AvroSchema`); values are
 * plain TypeScript values:
 *
 * | Avro type | TypeScript value                                                                      |
 * |-----------|---------------------------------------------------------------------------------------|
 * | null      | null (encode also accepts undefined)                                                  |
 * | boolean   | boolean                                                                               |
 * | int       | number (a 32-bit integer)                                                             |
 * | long      | bigint when decoded; encode accepts a bigint or a safe-integer number                 |
 * | float     | number (rounded to 32 bits when encoded)                                              |
 * | double    | number                                                                                |
 * | bytes     | Uint8Array (decoded values are fresh copies, never views of the input)                |
 * | string    | string (UTF-8)                                                                        |
 * | fixed     | Uint8Array of exactly `size` bytes                                                    |
 * | enum      | string: the symbol                                                                    |
 * | array     | array (encode accepts any iterable)                                                   |
 * | map       | Map<string, value> when decoded; encode accepts a Map or a plain object               |
 * | record    | plain object keyed by field name                                                      |
 * | union     | the value of the branch; null selects the null branch                                 |
 *
 * Unions: encoding picks the FIRST branch whose type accepts the value (`null`/`undefined` → null;
 * boolean → boolean; an integral number → int if in range, else long; a bigint → long; any number →
 * float/double; Uint8Array → bytes, or fixed of the same size; string → string, or enum holding the
 * symbol; array → array; Map → map; other objects → record first, then map). Iceberg only uses
 * `["null", T]` unions, for which this is unambiguous. Decoding returns the branch value as is.
 *
 * Decoding runs closures compiled once per schema; `AvroCodec.skip` moves past a value without building
 * it. Callers after speed (manifest decoding) read fields themselves with `AvroReader`'s primitives
 * (`readSafeLong` gives a long as a number, `readBytesView` bytes without a copy).
 *
 * Logical types are left to the caller (`iceberg-schema.ts` converts Iceberg values): this module works
 * on physical types only. Named types (record, enum, fixed) may be referenced by name after their
 * definition, with Avro's namespace rules; recursive schemas work.
 *
 * Malformed input (a truncated varint, a union index out of range, bad UTF-8, an unknown type in a
 * schema) throws TributaryError ICEBERG_INVALID_FILE; a value that does not fit its schema when encoding
 * throws INVALID_INPUT. Messages name the path of the offending field (`data_file.partition.day`).
 */
import { TributaryError } from '../../errors.ts';

export type AvroPrimitiveName = 'null' | 'boolean' | 'int' | 'long' | 'float' | 'double' | 'bytes' | 'string';

/** Extra attributes (`field-id`, `logicalType`, `element-id`, …) are kept as given. */
interface AvroProps {
  readonly [attribute: string]: unknown;
}

export interface AvroPrimitiveSchema extends AvroProps {
  readonly type: AvroPrimitiveName;
  readonly logicalType?: string;
}

export interface AvroField extends AvroProps {
  readonly name: string;
  readonly type: AvroSchema;
  readonly doc?: string;
  /** The default as JSON, per the Avro specification (for a union: a value of its first branch). */
  readonly default?: unknown;
  readonly 'field-id'?: number;
}

export interface AvroRecordSchema extends AvroProps {
  readonly type: 'record' | 'error';
  readonly name: string;
  readonly namespace?: string;
  readonly doc?: string;
  readonly fields: readonly AvroField[];
}

export interface AvroEnumSchema extends AvroProps {
  readonly type: 'enum';
  readonly name: string;
  readonly namespace?: string;
  readonly symbols: readonly string[];
  readonly default?: string;
}

export interface AvroArraySchema extends AvroProps {
  readonly type: 'array';
  readonly items: AvroSchema;
  readonly 'element-id'?: number;
  readonly logicalType?: string;
}

export interface AvroMapSchema extends AvroProps {
  readonly type: 'map';
  readonly values: AvroSchema;
  readonly 'key-id'?: number;
  readonly 'value-id'?: number;
}

export interface AvroFixedSchema extends AvroProps {
  readonly type: 'fixed';
  readonly name: string;
  readonly namespace?: string;
  readonly size: number;
  readonly logicalType?: string;
}

export type AvroUnionSchema = readonly AvroSchema[];
export type AvroNamedSchema = AvroRecordSchema | AvroEnumSchema | AvroFixedSchema;

/**
 * An Avro schema: a primitive name, a reference to a named type defined earlier (any other string), a
 * schema object or a union (array).
 */
export type AvroSchema =
  | string // an AvroPrimitiveName or the name of a named type
  | AvroPrimitiveSchema
  | AvroNamedSchema
  | AvroArraySchema
  | AvroMapSchema
  | AvroUnionSchema;

// ---------------------------------------------------------------------------------------------------
// Compiled schemas

type Node =
  | { readonly kind: AvroPrimitiveName }
  | { readonly kind: 'fixed'; readonly name: string; readonly size: number }
  | { readonly kind: 'enum'; readonly name: string; readonly symbols: readonly string[] }
  | { readonly kind: 'array'; items: Node }
  | { readonly kind: 'map'; values: Node }
  | { readonly kind: 'record'; readonly name: string; readonly fields: CompiledField[] }
  | { readonly kind: 'union'; readonly branches: readonly Node[] };

interface CompiledField {
  readonly name: string;
  readonly type: Node;
  /** Encoded when the value has no such property (undefined). */
  readonly hasDefault: boolean;
  readonly default: unknown;
}

const PRIMITIVES: ReadonlySet<string> = new Set([
  'null',
  'boolean',
  'int',
  'long',
  'float',
  'double',
  'bytes',
  'string',
]);

function invalidSchema(message: string): TributaryError {
  return new TributaryError('ICEBERG_INVALID_FILE', `Invalid Avro schema: ${message}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function fullName(name: string, namespace: string | undefined): string {
  if (name.includes('.') || !namespace) return name;
  return `${namespace}.${name}`;
}

function namespaceOf(fullname: string): string | undefined {
  const dot = fullname.lastIndexOf('.');
  return dot < 0 ? undefined : fullname.slice(0, dot);
}

class Compiler {
  readonly named = new Map<string, Node>();

  compile(schema: unknown, namespace: string | undefined): Node {
    if (typeof schema === 'string') return this.reference(schema, namespace);
    if (Array.isArray(schema)) {
      const branches = schema.map((branch) => this.compile(branch, namespace));
      if (branches.some((branch) => branch.kind === 'union'))
        throw invalidSchema('a union directly in a union');
      return { kind: 'union', branches };
    }
    if (!isObject(schema)) throw invalidSchema(`expected a type, got ${JSON.stringify(schema)}`);
    const type = schema.type;
    // `{"type": {...}}` and `{"type": [...]}` wrap another schema.
    if (typeof type !== 'string') return this.compile(type, namespace);
    switch (type) {
      case 'record':
      case 'error': {
        const name = this.define(schema, namespace);
        const fields: CompiledField[] = [];
        const node: Node = { kind: 'record', name, fields };
        this.named.set(name, node);
        if (!Array.isArray(schema.fields)) throw invalidSchema(`record ${name} has no fields array`);
        const inner = namespaceOf(name);
        for (const field of schema.fields as unknown[]) {
          if (!isObject(field) || typeof field.name !== 'string') {
            throw invalidSchema(`record ${name} has a field without a name`);
          }
          const fieldType = this.compile(field.type, inner);
          const hasDefault = 'default' in field;
          fields.push({
            name: field.name,
            type: fieldType,
            hasDefault,
            default: hasDefault ? defaultValue(fieldType, field.default, `${name}.${field.name}`) : undefined,
          });
        }
        return node;
      }
      case 'enum': {
        const name = this.define(schema, namespace);
        const symbols = schema.symbols;
        if (!Array.isArray(symbols) || !symbols.every((s) => typeof s === 'string')) {
          throw invalidSchema(`enum ${name} has no symbols array`);
        }
        const node: Node = { kind: 'enum', name, symbols };
        this.named.set(name, node);
        return node;
      }
      case 'fixed': {
        const name = this.define(schema, namespace);
        const size = schema.size;
        if (typeof size !== 'number' || !Number.isInteger(size) || size < 0) {
          throw invalidSchema(`fixed ${name} has no valid size`);
        }
        const node: Node = { kind: 'fixed', name, size };
        this.named.set(name, node);
        return node;
      }
      case 'array': {
        if (!('items' in schema)) throw invalidSchema('array without items');
        const node: { kind: 'array'; items: Node } = { kind: 'array', items: { kind: 'null' } };
        node.items = this.compile(schema.items, namespace);
        return node;
      }
      case 'map': {
        if (!('values' in schema)) throw invalidSchema('map without values');
        const node: { kind: 'map'; values: Node } = { kind: 'map', values: { kind: 'null' } };
        node.values = this.compile(schema.values, namespace);
        return node;
      }
      default:
        if (PRIMITIVES.has(type)) return { kind: type as AvroPrimitiveName };
        return this.reference(type, namespace);
    }
  }

  private define(schema: Record<string, unknown>, namespace: string | undefined): string {
    if (typeof schema.name !== 'string' || schema.name === '') {
      throw invalidSchema(`a ${String(schema.type)} without a name`);
    }
    const ns = typeof schema.namespace === 'string' ? schema.namespace : namespace;
    const name = fullName(schema.name, ns);
    if (this.named.has(name)) throw invalidSchema(`the name ${name} is defined twice`);
    return name;
  }

  private reference(name: string, namespace: string | undefined): Node {
    if (PRIMITIVES.has(name)) return { kind: name as AvroPrimitiveName };
    const found = this.named.get(fullName(name, namespace)) ?? this.named.get(name);
    if (!found) throw invalidSchema(`unknown type ${JSON.stringify(name)}`);
    return found;
  }
}

/** Converts a field's JSON default to the value `encode` expects (a union's default is its first branch). */
function defaultValue(type: Node, json: unknown, path: string): unknown {
  const fail = (): never => {
    throw invalidSchema(`the default of ${path} (${JSON.stringify(json)}) does not fit its type`);
  };
  switch (type.kind) {
    case 'union':
      return defaultValue(type.branches[0] ?? fail(), json, path);
    case 'null':
      return json === null ? null : fail();
    case 'boolean':
      return typeof json === 'boolean' ? json : fail();
    case 'int':
    case 'float':
    case 'double':
      return typeof json === 'number' ? json : fail();
    case 'long':
      return typeof json === 'number' && Number.isSafeInteger(json) ? BigInt(json) : fail();
    case 'string':
    case 'enum':
      return typeof json === 'string' ? json : fail();
    case 'bytes':
    case 'fixed': {
      // JSON encodes bytes as a string of code points 0-255.
      if (typeof json !== 'string') return fail();
      return Uint8Array.from(json, (c) => c.charCodeAt(0) & 0xff);
    }
    case 'array':
      return Array.isArray(json) ? json.map((item) => defaultValue(type.items, item, path)) : fail();
    case 'map':
      return isObject(json)
        ? new Map(Object.entries(json).map(([k, v]) => [k, defaultValue(type.values, v, path)]))
        : fail();
    case 'record': {
      if (!isObject(json)) return fail();
      const value: Record<string, unknown> = {};
      for (const field of type.fields) {
        value[field.name] =
          field.name in json ? defaultValue(field.type, json[field.name], path) : field.default;
      }
      return value;
    }
  }
}

const compiled = new WeakMap<object, Node>();

function compileSchema(schema: AvroSchema): Node {
  if (typeof schema === 'string') return new Compiler().compile(schema, undefined);
  let node = compiled.get(schema);
  if (!node) {
    node = new Compiler().compile(schema, undefined);
    compiled.set(schema, node);
  }
  return node;
}

/**
 * Checks a schema and returns it with every named-type reference replaced by its definition, so code that
 * walks schemas (Iceberg's type conversion) never meets a bare name. A recursive reference stays a name.
 */
export function expandSchema(schema: AvroSchema): AvroSchema {
  compileSchema(schema); // validates
  const definitions = new Map<string, AvroNamedSchema>();
  const expanding = new Set<string>();
  const walk = (s: unknown, namespace: string | undefined): unknown => {
    if (typeof s === 'string') {
      if (PRIMITIVES.has(s)) return s;
      const name = definitions.has(fullName(s, namespace)) ? fullName(s, namespace) : s;
      const definition = definitions.get(name);
      if (!definition || expanding.has(name)) return s;
      return definition;
    }
    if (Array.isArray(s)) return s.map((branch) => walk(branch, namespace));
    if (!isObject(s)) return s;
    if (typeof s.type !== 'string') return { ...s, type: walk(s.type, namespace) };
    switch (s.type) {
      case 'record':
      case 'error': {
        const name = fullName(s.name as string, typeof s.namespace === 'string' ? s.namespace : namespace);
        expanding.add(name);
        const result = { ...s } as Record<string, unknown>;
        definitions.set(name, result as unknown as AvroNamedSchema);
        result.fields = (s.fields as Record<string, unknown>[]).map((field) => ({
          ...field,
          type: walk(field.type, namespaceOf(name)),
        }));
        expanding.delete(name);
        return result;
      }
      case 'enum':
      case 'fixed': {
        const name = fullName(s.name as string, typeof s.namespace === 'string' ? s.namespace : namespace);
        definitions.set(name, s as unknown as AvroNamedSchema);
        return s;
      }
      case 'array':
        return { ...s, items: walk(s.items, namespace) };
      case 'map':
        return { ...s, values: walk(s.values, namespace) };
      default:
        return PRIMITIVES.has(s.type) ? s : walk(s.type, namespace);
    }
  };
  return walk(schema, undefined) as AvroSchema;
}

// ---------------------------------------------------------------------------------------------------
// Binary writer and reader

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

/** A growable byte buffer with Avro's primitive encodings. */
export class AvroWriter {
  private buffer = new Uint8Array(256);
  private view = new DataView(this.buffer.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buffer.subarray(0, this.length));
    this.buffer = next;
    this.view = new DataView(next.buffer);
  }

  /** The bytes written so far (a copy). */
  toBytes(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }

  reset(): void {
    this.length = 0;
  }

  writeRaw(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.buffer.set(bytes, this.length);
    this.length += bytes.length;
  }

  writeBoolean(value: boolean): void {
    this.reserve(1);
    this.buffer[this.length++] = value ? 1 : 0;
  }

  /** A zigzag varint of a 32-bit integer. */
  writeInt(value: number): void {
    this.reserve(5);
    let n = ((value << 1) ^ (value >> 31)) >>> 0;
    while (n > 0x7f) {
      this.buffer[this.length++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    this.buffer[this.length++] = n;
  }

  /** A zigzag varint of a 64-bit integer. */
  writeLong(value: bigint | number): void {
    if (typeof value === 'number' && value >= INT_MIN && value <= INT_MAX) {
      this.writeInt(value);
      return;
    }
    this.reserve(10);
    const v = BigInt(value);
    let n = BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));
    while (n > 0x7fn) {
      this.buffer[this.length++] = Number(n & 0x7fn) | 0x80;
      n >>= 7n;
    }
    this.buffer[this.length++] = Number(n);
  }

  writeFloat(value: number): void {
    this.reserve(4);
    this.view.setFloat32(this.length, value, true);
    this.length += 4;
  }

  writeDouble(value: number): void {
    this.reserve(8);
    this.view.setFloat64(this.length, value, true);
    this.length += 8;
  }

  writeBytes(value: Uint8Array): void {
    this.writeLong(value.length);
    this.writeRaw(value);
  }

  writeString(value: string): void {
    this.writeBytes(textEncoder.encode(value));
  }
}

function varintTooLong(): TributaryError {
  return new TributaryError('ICEBERG_INVALID_FILE', 'Invalid Avro long: varint too long');
}

/** `AvroReader.skipLayout` ops (n ≥ 0 skips n fixed bytes). */
export const SKIP_VARINT = -1;
export const SKIP_BYTES = -2;

/** Reads Avro's primitive encodings from a byte array; every overrun throws ICEBERG_INVALID_FILE. */
export class AvroReader {
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  position: number;
  private readonly end: number;

  constructor(bytes: Uint8Array, start = 0, end = bytes.length) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.position = start;
    this.end = end;
  }

  get remaining(): number {
    return this.end - this.position;
  }

  private need(n: number, what: string): void {
    if (n < 0 || this.position + n > this.end) throw this.truncated(n, what);
  }

  private truncated(n: number, what: string): TributaryError {
    return new TributaryError(
      'ICEBERG_INVALID_FILE',
      `Avro data is truncated: ${what} needs ${n} bytes at offset ${this.position}, ${this.end - this.position} left`,
    );
  }

  /** A copy of the next n bytes. */
  readRaw(n: number, what = 'a value'): Uint8Array {
    this.need(n, what);
    // A plain Uint8Array even when the input is a Buffer (whose slice is a view).
    const out = new Uint8Array(n);
    out.set(this.bytes.subarray(this.position, this.position + n));
    this.position += n;
    return out;
  }

  /** A view of the next n bytes (no copy). */
  readView(n: number, what = 'a value'): Uint8Array {
    this.need(n, what);
    const out = this.bytes.subarray(this.position, this.position + n);
    this.position += n;
    return out;
  }

  /** Moves past the next n bytes. */
  skip(n: number, what = 'a value'): void {
    this.need(n, what);
    this.position += n;
  }

  readBoolean(): boolean {
    this.need(1, 'a boolean');
    const b = this.bytes[this.position++]!;
    if (b > 1) throw new TributaryError('ICEBERG_INVALID_FILE', `Invalid Avro boolean byte ${b}`);
    return b === 1;
  }

  readInt(): number {
    const bytes = this.bytes;
    let position = this.position;
    let result = 0;
    let shift = 0;
    for (;;) {
      if (position >= this.end) throw this.truncated(1, 'an int');
      const b = bytes[position++]!;
      result |= (b & 0x7f) << shift;
      if (b < 0x80) break;
      shift += 7;
      if (shift > 28) throw new TributaryError('ICEBERG_INVALID_FILE', 'Invalid Avro int: varint too long');
    }
    this.position = position;
    return (result >>> 1) ^ -(result & 1);
  }

  readLong(): bigint {
    const start = this.position;
    const small = this.readSmallLong();
    if (small !== undefined) return BigInt(small);
    // 8 to 10 bytes (snapshot ids are): bits 0-48 in `low`, bits 49-63 in `high`, both exact numbers.
    const bytes = this.bytes;
    let low = 0;
    let multiplier = 1;
    for (let i = 0; i < 7; i++, multiplier *= 128) low += (bytes[start + i]! & 0x7f) * multiplier;
    let high = 0;
    for (let shift = 0; ; shift += 7) {
      if (shift > 14) throw new TributaryError('ICEBERG_INVALID_FILE', 'Invalid Avro long: varint too long');
      this.need(1, 'a long');
      const b = this.bytes[this.position++]!;
      if (shift === 14 && b > 1) {
        throw new TributaryError('ICEBERG_INVALID_FILE', 'Invalid Avro long: more than 64 bits');
      }
      high += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
    }
    // Zigzag: the unsigned value shifted right by one, negated (minus one) when its low bit is set.
    const magnitude = (BigInt(high) << 48n) + BigInt(Math.floor(low / 2));
    return low % 2 === 0 ? magnitude : -magnitude - 1n;
  }

  /**
   * A long of up to 7 varint bytes (|value| < 2^48, exact as a double) as a number, moving past it;
   * undefined for a longer one, with the position after its first 7 bytes.
   */
  private readSmallLong(): number | undefined {
    const bytes = this.bytes;
    let position = this.position;
    let n = 0;
    let multiplier = 1;
    for (let i = 0; i < 7; i++) {
      if (position >= this.end) throw this.truncated(1, 'a long');
      const b = bytes[position++]!;
      n += (b & 0x7f) * multiplier;
      if (b < 0x80) {
        this.position = position;
        return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
      }
      multiplier *= 128;
    }
    this.position = position;
    return undefined;
  }

  /** A long that must be a safe integer (a count, a length, a size), as a number. */
  readSafeLong(what: string): number {
    const start = this.position;
    const small = this.readSmallLong();
    if (small !== undefined) return small;
    this.position = start;
    const value = this.readLong();
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new TributaryError('ICEBERG_INVALID_FILE', `Avro ${what} ${value} is out of range`);
    }
    return Number(value);
  }

  /** The item count of the next block of an array or map (0 at the end), moving past a block's byte size. */
  readBlockCount(): number {
    const count = this.readSafeLong('block count');
    if (count >= 0) return count;
    this.readSafeLong('block size');
    return -count;
  }

  /**
   * Moves past `times` values laid out as `ops`: SKIP_VARINT (an int or long), SKIP_BYTES (bytes or a
   * string) or n ≥ 0 (n fixed bytes), without decoding them.
   */
  skipLayout(ops: Int32Array, times: number): void {
    const bytes = this.bytes;
    const end = this.end;
    let position = this.position;
    // Bounds are checked once per value, not per byte: past the array's end a read gives undefined,
    // which ends a varint, and the position is then past `end`.
    for (let t = 0; t < times; t++) {
      for (let o = 0; o < ops.length; o++) {
        const op = ops[o]!;
        if (op >= 0) {
          position += op;
          continue;
        }
        const start = position;
        if (op === SKIP_VARINT) {
          while (bytes[position++]! >= 0x80);
          if (position - start > 10) throw varintTooLong();
          continue;
        }
        // SKIP_BYTES: a zigzag length, then that many bytes.
        let n = 0;
        let multiplier = 1;
        let b: number;
        do {
          b = bytes[position++]!;
          n += (b & 0x7f) * multiplier;
          multiplier *= 128;
        } while (b >= 0x80);
        if (position - start > 10) throw varintTooLong();
        if (position > end) break;
        const length = n % 2 === 0 ? n / 2 : -(n + 1) / 2;
        if (length < 0) {
          this.position = position;
          throw this.truncated(length, 'bytes');
        }
        position += length;
      }
      if (position > end) {
        this.position = Math.min(position, end);
        throw this.truncated(1, 'a value');
      }
    }
    this.position = position;
  }

  /**
   * Moves past n ints or longs by counting their last bytes: the fastest walk over Iceberg's metric maps.
   * Their lengths are not checked (a corrupt one shifts what follows, which the block checks catch).
   */
  skipVarints(n: number): void {
    const bytes = this.bytes;
    const end = this.end;
    let position = this.position;
    let left = n;
    while (left > 0) {
      if (bytes[position++]! < 0x80) left--;
      else if (position > end) break; // past the end, reads give undefined
    }
    if (position > end) throw this.truncated(1, 'a varint');
    this.position = position;
  }

  /** Moves past an int or long without decoding it. */
  skipVarint(): void {
    const bytes = this.bytes;
    let position = this.position;
    for (let i = 0; i < 10; i++) {
      if (position >= this.end) throw this.truncated(1, 'a varint');
      if (bytes[position++]! < 0x80) {
        this.position = position;
        return;
      }
    }
    throw new TributaryError('ICEBERG_INVALID_FILE', 'Invalid Avro long: varint too long');
  }

  readFloat(): number {
    this.need(4, 'a float');
    const value = this.view.getFloat32(this.position, true);
    this.position += 4;
    return value;
  }

  readDouble(): number {
    this.need(8, 'a double');
    const value = this.view.getFloat64(this.position, true);
    this.position += 8;
    return value;
  }

  /** A copy of the next bytes value. */
  readBytes(): Uint8Array {
    const n = this.readSafeLong('bytes length');
    return this.readRaw(n, 'bytes');
  }

  /** A view of the next bytes value (no copy: for values that do not outlive the input). */
  readBytesView(): Uint8Array {
    const n = this.readSafeLong('bytes length');
    return this.readView(n, 'bytes');
  }

  /** Moves past a bytes or string value. */
  skipBytes(): void {
    const n = this.readSafeLong('bytes length');
    this.skip(n, 'bytes');
  }

  readString(): string {
    const n = this.readSafeLong('string length');
    const view = this.readView(n, 'a string');
    try {
      return textDecoder.decode(view);
    } catch (cause) {
      throw new TributaryError('ICEBERG_INVALID_FILE', 'Invalid UTF-8 in an Avro string', { cause });
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Encoding and decoding values

/** An error with the path of the field it happened in, turned into a TributaryError at the top. */
class PathError extends Error {
  readonly path: string[];
  readonly code: 'INVALID_INPUT' | 'ICEBERG_INVALID_FILE';
  readonly original: unknown;
  constructor(code: 'INVALID_INPUT' | 'ICEBERG_INVALID_FILE', message: string, original?: unknown) {
    super(message);
    this.code = code;
    this.path = [];
    this.original = original;
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Map) return 'a Map';
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'object') return 'an object';
  return typeof value === 'number' || typeof value === 'boolean' ? String(value) : typeof value;
}

function mismatch(type: Node, value: unknown): PathError {
  const name = type.kind === 'fixed' ? `fixed(${type.size})` : type.kind;
  return new PathError('INVALID_INPUT', `expected an Avro ${name}, got ${describe(value)}`);
}

const INT_MIN = -0x80000000;
const INT_MAX = 0x7fffffff;
const LONG_MIN = -(1n << 63n);
const LONG_MAX = (1n << 63n) - 1n;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    !(value instanceof Map) &&
    !(value instanceof Uint8Array)
  );
}

/** Whether a union branch accepts the value (see the module comment for the order). */
function accepts(type: Node, value: unknown): boolean {
  switch (type.kind) {
    case 'null':
      return value === null || value === undefined;
    case 'boolean':
      return typeof value === 'boolean';
    case 'int':
      return typeof value === 'number' && Number.isInteger(value) && value >= INT_MIN && value <= INT_MAX;
    case 'long':
      return (
        (typeof value === 'bigint' && value >= LONG_MIN && value <= LONG_MAX) ||
        (typeof value === 'number' && Number.isSafeInteger(value))
      );
    case 'float':
    case 'double':
      return typeof value === 'number';
    case 'bytes':
      return value instanceof Uint8Array;
    case 'fixed':
      return value instanceof Uint8Array && value.length === type.size;
    case 'string':
      return typeof value === 'string';
    case 'enum':
      return typeof value === 'string' && type.symbols.includes(value);
    case 'array':
      return Array.isArray(value);
    case 'map':
      return value instanceof Map || isPlainObject(value);
    case 'record':
      return isPlainObject(value);
    case 'union':
      return type.branches.some((branch) => accepts(branch, value));
  }
}

function write(w: AvroWriter, type: Node, value: unknown): void {
  switch (type.kind) {
    case 'null':
      if (value !== null && value !== undefined) throw mismatch(type, value);
      return;
    case 'boolean':
      if (typeof value !== 'boolean') throw mismatch(type, value);
      w.writeBoolean(value);
      return;
    case 'int':
      if (!accepts(type, value)) throw mismatch(type, value);
      w.writeInt(value as number);
      return;
    case 'long':
      if (!accepts(type, value)) throw mismatch(type, value);
      w.writeLong(value as bigint | number);
      return;
    case 'float':
      if (typeof value !== 'number') throw mismatch(type, value);
      w.writeFloat(value);
      return;
    case 'double':
      if (typeof value !== 'number') throw mismatch(type, value);
      w.writeDouble(value);
      return;
    case 'bytes':
      if (!(value instanceof Uint8Array)) throw mismatch(type, value);
      w.writeBytes(value);
      return;
    case 'string':
      if (typeof value !== 'string') throw mismatch(type, value);
      w.writeString(value);
      return;
    case 'fixed':
      if (!(value instanceof Uint8Array) || value.length !== type.size) throw mismatch(type, value);
      w.writeRaw(value);
      return;
    case 'enum': {
      const index = typeof value === 'string' ? type.symbols.indexOf(value) : -1;
      if (index < 0)
        throw new PathError('INVALID_INPUT', `${describe(value)} is not a symbol of enum ${type.name}`);
      w.writeInt(index);
      return;
    }
    case 'array': {
      if (typeof value !== 'object' || value === null || !(Symbol.iterator in value))
        throw mismatch(type, value);
      const items = Array.isArray(value) ? (value as unknown[]) : [...(value as Iterable<unknown>)];
      if (items.length > 0) {
        w.writeLong(items.length);
        let i = 0;
        try {
          for (; i < items.length; i++) write(w, type.items, items[i]);
        } catch (error) {
          throw withPath(error, String(i));
        }
      }
      w.writeLong(0);
      return;
    }
    case 'map': {
      let entries: [unknown, unknown][];
      if (value instanceof Map) entries = [...(value as Map<unknown, unknown>)];
      else if (isPlainObject(value)) entries = Object.entries(value);
      else throw mismatch(type, value);
      if (entries.length > 0) {
        w.writeLong(entries.length);
        for (const [key, item] of entries) {
          if (typeof key !== 'string')
            throw new PathError('INVALID_INPUT', `a map key must be a string, got ${describe(key)}`);
          w.writeString(key);
          try {
            write(w, type.values, item);
          } catch (error) {
            throw withPath(error, key);
          }
        }
      }
      w.writeLong(0);
      return;
    }
    case 'record': {
      if (!isPlainObject(value)) throw mismatch(type, value);
      for (const field of type.fields) {
        let fieldValue = value[field.name];
        if (fieldValue === undefined && !(field.name in value)) {
          if (field.hasDefault) fieldValue = field.default;
          else if (!accepts(field.type, undefined)) {
            throw new PathError(
              'INVALID_INPUT',
              `missing required field ${field.name} of record ${type.name}`,
            );
          }
        }
        try {
          write(w, field.type, fieldValue);
        } catch (error) {
          throw withPath(error, field.name);
        }
      }
      return;
    }
    case 'union': {
      const index = type.branches.findIndex((branch) => accepts(branch, value));
      if (index < 0) {
        const names = type.branches.map((b) => b.kind).join(', ');
        throw new PathError('INVALID_INPUT', `no branch of the union [${names}] accepts ${describe(value)}`);
      }
      w.writeLong(index);
      write(w, type.branches[index]!, value);
      return;
    }
  }
}

/** Prefixes an error's path with the segment it passed through (kept off the hot path: no closures). */
function withPath(error: unknown, segment: string): unknown {
  if (error instanceof PathError) {
    error.path.unshift(segment);
    return error;
  }
  if (error instanceof TributaryError) {
    const wrapped = new PathError(
      error.code === 'INVALID_INPUT' ? 'INVALID_INPUT' : 'ICEBERG_INVALID_FILE',
      error.message,
      error,
    );
    wrapped.path.unshift(segment);
    return wrapped;
  }
  return error;
}

type ReadFn = (r: AvroReader) => unknown;
type SkipFn = (r: AvroReader) => void;

// Decoding runs closures compiled once per schema node: no per-value interpretation of the schema.
const readers = new WeakMap<Node, ReadFn>();
const skippers = new WeakMap<Node, SkipFn>();

function readerOf(type: Node): ReadFn {
  const cached = readers.get(type);
  if (cached) return cached;
  const fn = makeReader(type);
  readers.set(type, fn);
  return fn;
}

function makeReader(type: Node): ReadFn {
  switch (type.kind) {
    case 'null':
      return () => null;
    case 'boolean':
      return (r) => r.readBoolean();
    case 'int':
      return (r) => r.readInt();
    case 'long':
      return (r) => r.readLong();
    case 'float':
      return (r) => r.readFloat();
    case 'double':
      return (r) => r.readDouble();
    case 'bytes':
      return (r) => r.readBytes();
    case 'string':
      return (r) => r.readString();
    case 'fixed': {
      const { size } = type;
      const what = `fixed ${type.name}`;
      return (r) => r.readRaw(size, what);
    }
    case 'enum': {
      const { symbols, name } = type;
      return (r) => {
        const index = r.readInt();
        const symbol = symbols[index];
        if (symbol === undefined) {
          throw new PathError('ICEBERG_INVALID_FILE', `enum index ${index} is out of range for ${name}`);
        }
        return symbol;
      };
    }
    case 'array': {
      let item: ReadFn | undefined;
      return (r) => {
        item ??= readerOf(type.items);
        const items: unknown[] = [];
        try {
          for (let count = r.readBlockCount(); count !== 0; count = r.readBlockCount()) {
            for (let i = 0; i < count; i++) items.push(item(r));
          }
        } catch (error) {
          throw withPath(error, String(items.length));
        }
        return items;
      };
    }
    case 'map': {
      let value: ReadFn | undefined;
      return (r) => {
        value ??= readerOf(type.values);
        const map = new Map<string, unknown>();
        let key = '';
        try {
          for (let count = r.readBlockCount(); count !== 0; count = r.readBlockCount()) {
            for (let i = 0; i < count; i++) {
              key = r.readString();
              map.set(key, value(r));
            }
          }
        } catch (error) {
          throw withPath(error, key);
        }
        return map;
      };
    }
    case 'record': {
      // Field readers are resolved on first use, so a recursive record can refer to itself.
      const names = type.fields.map((f) => f.name);
      let fns: ReadFn[] | undefined;
      return (r) => {
        fns ??= type.fields.map((f) => readerOf(f.type));
        const value: Record<string, unknown> = {};
        let i = 0;
        try {
          for (; i < fns.length; i++) value[names[i]!] = fns[i]!(r);
        } catch (error) {
          throw withPath(error, names[i]!);
        }
        return value;
      };
    }
    case 'union': {
      let branches: ReadFn[] | undefined;
      return (r) => {
        branches ??= type.branches.map(readerOf);
        return branches[unionIndex(r, branches.length)]!(r);
      };
    }
  }
}

function unionIndex(r: AvroReader, branches: number): number {
  const index = r.readSafeLong('union index');
  if (index < 0 || index >= branches) {
    throw new PathError(
      'ICEBERG_INVALID_FILE',
      `union index ${index} is out of range (${branches} branches)`,
    );
  }
  return index;
}

function skipperOf(type: Node): SkipFn {
  const cached = skippers.get(type);
  if (cached) return cached;
  const fn = makeSkipper(type);
  skippers.set(type, fn);
  return fn;
}

/**
 * The layout of a value made of varints, length-prefixed bytes and fixed-size parts only (an int, a
 * record of key and bound), as `AvroReader.skipLayout` ops; undefined for any other value.
 */
function flatLayout(type: Node, visiting = new Set<Node>()): number[] | undefined {
  switch (type.kind) {
    case 'null':
      return [];
    case 'int':
    case 'long':
    case 'enum':
      return [SKIP_VARINT];
    case 'bytes':
    case 'string':
      return [SKIP_BYTES];
    case 'boolean':
      return [1];
    case 'float':
      return [4];
    case 'double':
      return [8];
    case 'fixed':
      return [type.size];
    case 'record': {
      if (visiting.has(type)) return undefined; // a record that contains itself
      visiting.add(type);
      const ops: number[] = [];
      for (const field of type.fields) {
        const inner = flatLayout(field.type, visiting);
        if (!inner) return undefined;
        ops.push(...inner);
      }
      visiting.delete(type);
      return ops;
    }
    default:
      return undefined;
  }
}

function makeSkipper(type: Node): SkipFn {
  switch (type.kind) {
    case 'null':
      return () => {};
    case 'boolean':
      return (r) => r.skip(1, 'a boolean');
    case 'int':
    case 'long':
    case 'enum':
      return (r) => r.skipVarint();
    case 'float':
      return (r) => r.skip(4, 'a float');
    case 'double':
      return (r) => r.skip(8, 'a double');
    case 'bytes':
    case 'string':
      return (r) => r.skipBytes();
    case 'fixed': {
      const { size } = type;
      return (r) => r.skip(size, 'a fixed');
    }
    case 'array':
    case 'map': {
      let item: SkipFn | undefined;
      const isMap = type.kind === 'map';
      const flat = flatLayout(isMap ? type.values : type.items);
      if (flat) {
        // Flat items (Iceberg's metric maps: int keys, long or bytes values): one tight loop per block.
        const ops = Int32Array.from(isMap ? [SKIP_BYTES, ...flat] : flat);
        const varints = ops.every((op) => op === SKIP_VARINT) ? ops.length : 0;
        return (r) => {
          for (;;) {
            const count = r.readSafeLong('block count');
            if (count === 0) return;
            if (count < 0) r.skip(r.readSafeLong('block size'), 'a block');
            else if (varints > 0) r.skipVarints(count * varints);
            else r.skipLayout(ops, count);
          }
        };
      }
      return (r) => {
        item ??= skipperOf(type.kind === 'map' ? type.values : type.items);
        for (;;) {
          const count = r.readSafeLong('block count');
          if (count === 0) return;
          if (count < 0) {
            // A block with its byte size: skipped without looking at its items.
            r.skip(r.readSafeLong('block size'), 'a block');
            continue;
          }
          for (let i = 0; i < count; i++) {
            if (isMap) r.skipBytes();
            item(r);
          }
        }
      };
    }
    case 'record': {
      const flat = flatLayout(type);
      if (flat) {
        const ops = Int32Array.from(flat);
        return (r) => r.skipLayout(ops, 1);
      }
      let fns: SkipFn[] | undefined;
      return (r) => {
        fns ??= type.fields.map((f) => skipperOf(f.type));
        for (let i = 0; i < fns.length; i++) fns[i]!(r);
      };
    }
    case 'union': {
      let branches: SkipFn[] | undefined;
      return (r) => {
        branches ??= type.branches.map(skipperOf);
        branches[unionIndex(r, branches.length)]!(r);
      };
    }
  }
}

function toTributaryError(error: unknown, action: string): unknown {
  if (!(error instanceof PathError)) return error;
  const where = error.path.length > 0 ? ` at ${error.path.join('.')}` : '';
  const cause = error.original instanceof TributaryError ? error.original.cause : undefined;
  return new TributaryError(error.code, `Cannot ${action} Avro value${where}: ${error.message}`, {
    context: { path: error.path.join('.') },
    ...(cause === undefined ? {} : { cause }),
  });
}

/** A schema compiled once, to encode and decode many values. */
export interface AvroCodec {
  /** Appends the encoding of one value. */
  write(writer: AvroWriter, value: unknown): void;
  /** Reads one value at the reader's position. */
  read(reader: AvroReader): unknown;
  /** Moves past one value without building it (blocks with a byte size are skipped whole). */
  skip(reader: AvroReader): void;
}

/** Compiles a schema (validating it); compiled codecs of schema objects are cached. */
export function compile(schema: AvroSchema): AvroCodec {
  const node = compileSchema(schema);
  const readValue = readerOf(node);
  const skipValue = skipperOf(node);
  return {
    write(writer, value) {
      const start = writer.length;
      try {
        write(writer, node, value);
      } catch (error) {
        writer.length = start;
        throw toTributaryError(error, 'encode');
      }
    },
    read(reader) {
      try {
        return readValue(reader);
      } catch (error) {
        throw toTributaryError(error, 'decode');
      }
    },
    skip(reader) {
      try {
        skipValue(reader);
      } catch (error) {
        throw toTributaryError(error, 'decode');
      }
    },
  };
}

/** Encodes one value with a schema. */
export function encode(schema: AvroSchema, value: unknown): Uint8Array {
  const writer = new AvroWriter();
  compile(schema).write(writer, value);
  return writer.toBytes();
}

/** Decodes one value, which must span all the bytes. */
export function decode(schema: AvroSchema, bytes: Uint8Array): unknown {
  const reader = new AvroReader(bytes);
  const value = compile(schema).read(reader);
  if (reader.remaining !== 0) {
    throw new TributaryError(
      'ICEBERG_INVALID_FILE',
      `Avro value ends at offset ${reader.position}, but ${reader.remaining} more bytes follow`,
    );
  }
  return value;
}
