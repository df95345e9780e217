/**
 * Single values of primitive types: the binary serialization of the spec's Appendix D (used for column
 * bounds in manifests), checks that a value has the representation of types.ts, Iceberg's ordering of
 * values, and the truncation writers apply to string and binary bounds.
 */
import { TributaryError } from '../errors.ts';
import { decimalParams, fixedLength, primitiveKind } from './types.ts';
import type { IcebergValue, PrimitiveKind, PrimitiveType } from './types.ts';

const INT_MIN = -(2 ** 31);
const INT_MAX = 2 ** 31 - 1;
const LONG_MIN = -(1n << 63n);
const LONG_MAX = (1n << 63n) - 1n;
export const MICROS_PER_DAY = 86_400_000_000n;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Writers keep the first 16 characters (or bytes) of string and binary bounds, as Java's default metrics mode. */
export const DEFAULT_BOUND_LENGTH = 16;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8');

/** The kind of a primitive type, or an ICEBERG_UNSUPPORTED error naming it. */
export function kindOf(type: PrimitiveType): PrimitiveKind {
  const kind = primitiveKind(type);
  if (kind === undefined) {
    throw new TributaryError('ICEBERG_UNSUPPORTED', `Type ${String(type)} is not supported`, {
      hint: 'Tributary supports the primitive types of Iceberg format v2.',
    });
  }
  return kind;
}

/** Throws INVALID_INPUT unless `value` is a non-null value of `type` in the representation of types.ts. */
export function checkValue(type: PrimitiveType, value: IcebergValue, column?: string): void {
  if (!isValueOf(type, value)) {
    const where = column === undefined ? '' : ` for column ${column}`;
    throw new TributaryError('INVALID_INPUT', `${show(value)} is not a valid ${type} value${where}`, {
      context: { type, column },
      hint: `A ${type} value must be ${expectation(type)}.`,
    });
  }
}

function isValueOf(type: PrimitiveType, value: IcebergValue): boolean {
  switch (kindOf(type)) {
    case 'boolean':
      return typeof value === 'boolean';
    case 'int':
    case 'date':
      return typeof value === 'number' && Number.isInteger(value) && value >= INT_MIN && value <= INT_MAX;
    case 'long':
    case 'timestamp':
    case 'timestamptz':
      return typeof value === 'bigint' && value >= LONG_MIN && value <= LONG_MAX;
    case 'time':
      return typeof value === 'bigint' && value >= 0n && value < MICROS_PER_DAY;
    case 'float':
    case 'double':
      return typeof value === 'number';
    case 'decimal': {
      const { precision } = decimalParams(type)!;
      return typeof value === 'bigint' && (value < 0n ? -value : value) < 10n ** BigInt(precision);
    }
    case 'string':
      return typeof value === 'string';
    case 'uuid':
      return typeof value === 'string' && UUID.test(value);
    case 'fixed':
      return value instanceof Uint8Array && value.length === fixedLength(type);
    case 'binary':
      return value instanceof Uint8Array;
  }
}

function expectation(type: PrimitiveType): string {
  switch (kindOf(type)) {
    case 'boolean':
      return 'a boolean';
    case 'int':
      return 'an integer number in the 32-bit range';
    case 'date':
      return 'an integer number of days since 1970-01-01';
    case 'long':
      return 'a bigint in the 64-bit range';
    case 'timestamp':
    case 'timestamptz':
      return 'a bigint of microseconds since 1970-01-01 00:00:00 UTC';
    case 'time':
      return 'a bigint of microseconds since midnight, below 86400000000';
    case 'float':
    case 'double':
      return 'a number';
    case 'decimal':
      return `a bigint unscaled value of at most ${decimalParams(type)!.precision} digits`;
    case 'string':
      return 'a string';
    case 'uuid':
      return 'a string in the 8-4-4-4-12 hex form';
    case 'fixed':
      return `a Uint8Array of ${fixedLength(type)} bytes`;
    case 'binary':
      return 'a Uint8Array';
  }
}

function show(value: IcebergValue): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (value instanceof Uint8Array) return `Uint8Array(${value.length})`;
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

/** Appendix D: the bytes of a single value (a bound, a partition value in a v1 manifest). */
export function toBinary(type: PrimitiveType, value: IcebergValue): Uint8Array {
  checkValue(type, value);
  switch (kindOf(type)) {
    case 'boolean':
      return Uint8Array.of(value ? 1 : 0);
    case 'int':
    case 'date': {
      const out = new Uint8Array(4);
      new DataView(out.buffer).setInt32(0, value as number, true);
      return out;
    }
    case 'long':
    case 'time':
    case 'timestamp':
    case 'timestamptz':
      return longToBytes(value as bigint);
    case 'float': {
      const out = new Uint8Array(4);
      new DataView(out.buffer).setFloat32(0, value as number, true);
      return out;
    }
    case 'double': {
      const out = new Uint8Array(8);
      new DataView(out.buffer).setFloat64(0, value as number, true);
      return out;
    }
    case 'decimal':
      return unscaledToBytes(value as bigint);
    case 'string':
      return utf8Encoder.encode(value as string);
    case 'uuid':
      return uuidToBytes(value as string);
    case 'fixed':
    case 'binary':
      return (value as Uint8Array).slice();
  }
}

/** Appendix D, the other way. Accepts the narrower encodings left by type promotion (int → long, float → double). */
export function fromBinary(type: PrimitiveType, bytes: Uint8Array): IcebergValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const expectLength = (...lengths: number[]): void => {
    if (!lengths.includes(bytes.length)) {
      throw new TributaryError('INVALID_INPUT', `Cannot read a ${type} value from ${bytes.length} bytes`, {
        context: { type, length: bytes.length },
        hint: `A serialized ${type} has ${lengths.join(' or ')} bytes; the bound or partition value is corrupt or was written for another type.`,
      });
    }
  };
  switch (kindOf(type)) {
    case 'boolean':
      expectLength(1);
      return bytes[0] !== 0;
    case 'int':
    case 'date':
      expectLength(4);
      return view.getInt32(0, true);
    case 'long':
      // A column promoted from int keeps 4-byte bounds in its older files.
      expectLength(8, 4);
      return bytes.length === 4 ? BigInt(view.getInt32(0, true)) : view.getBigInt64(0, true);
    case 'time':
    case 'timestamp':
    case 'timestamptz':
      expectLength(8);
      return view.getBigInt64(0, true);
    case 'float':
      expectLength(4);
      return view.getFloat32(0, true);
    case 'double':
      // A column promoted from float keeps 4-byte bounds in its older files.
      expectLength(8, 4);
      return bytes.length === 4 ? view.getFloat32(0, true) : view.getFloat64(0, true);
    case 'decimal':
      if (bytes.length === 0) expectLength(1);
      return bytesToUnscaled(bytes);
    case 'string':
      return utf8Decoder.decode(bytes);
    case 'uuid':
      expectLength(16);
      return bytesToUuid(bytes);
    case 'fixed':
      expectLength(fixedLength(type)!);
      return bytes.slice();
    case 'binary':
      return bytes.slice();
  }
}

export function longToBytes(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigInt64(0, value, true);
  return out;
}

/** The 16 big-endian bytes of a UUID (spec Appendix B, note 4). */
export function uuidToBytes(uuid: string): Uint8Array {
  if (!UUID.test(uuid)) {
    throw new TributaryError('INVALID_INPUT', `${JSON.stringify(uuid)} is not a UUID`, {
      hint: 'Write UUIDs in the 8-4-4-4-12 hex form, e.g. f79c3e09-677c-4bbd-a479-3f349cb785e7.',
    });
  }
  return Uint8Array.from(Buffer.from(uuid.replaceAll('-', ''), 'hex'));
}

export function bytesToUuid(bytes: Uint8Array): string {
  const hex = Buffer.from(bytes).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The fewest two's-complement big-endian bytes that hold `unscaled` (as Java's BigInteger.toByteArray). */
export function unscaledToBytes(unscaled: bigint): Uint8Array {
  // Bits needed without the sign; a negative n needs as many as -n - 1 (so -128 fits in one byte).
  const magnitude = unscaled < 0n ? -unscaled - 1n : unscaled;
  const bits = magnitude === 0n ? 0 : magnitude.toString(2).length;
  const length = (bits >> 3) + 1;
  const out = new Uint8Array(length);
  let rest = BigInt.asUintN(length * 8, unscaled);
  for (let i = length - 1; i >= 0; i -= 1) {
    out[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return out;
}

export function bytesToUnscaled(bytes: Uint8Array): bigint {
  let unsigned = 0n;
  for (const byte of bytes) unsigned = (unsigned << 8n) | BigInt(byte);
  return BigInt.asIntN(bytes.length * 8, unsigned);
}

export function utf8(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

/**
 * Iceberg's order of two non-null values of `type`: negative, zero or positive. Strings compare by code
 * point (the order of their UTF-8 bytes), binary and fixed as unsigned bytes, UUIDs as unsigned 128-bit
 * big-endian numbers (RFC 9562; older Java writers compared signed halves), floating point by IEEE 754
 * totalOrder (-NaN < -Infinity < … < -0 < 0 < … < Infinity < NaN). Values are not checked: pass values of
 * `type` (see checkValue).
 */
export function compareValues(type: PrimitiveType, a: IcebergValue, b: IcebergValue): number {
  return comparatorFor(type)(a, b);
}

/** The comparison of compareValues with the type resolved once, for sorting and min/max over many values. */
export function comparatorFor(type: PrimitiveType): (a: IcebergValue, b: IcebergValue) => number {
  switch (kindOf(type)) {
    case 'boolean':
      return (a, b) => Number(a) - Number(b);
    case 'int':
    case 'date':
      return (a, b) => Math.sign((a as number) - (b as number));
    case 'long':
    case 'time':
    case 'timestamp':
    case 'timestamptz':
    case 'decimal':
      return (a, b) => (a === b ? 0 : (a as bigint) < (b as bigint) ? -1 : 1);
    case 'float':
    case 'double':
      return (a, b) => compareTotalOrder(a as number, b as number);
    case 'string':
      return (a, b) => compareCodePoints(a as string, b as string);
    case 'uuid':
      return (a, b) => {
        const x = (a as string).toLowerCase();
        const y = (b as string).toLowerCase();
        return x === y ? 0 : x < y ? -1 : 1;
      };
    case 'fixed':
    case 'binary':
      return (a, b) => compareUnsignedBytes(a as Uint8Array, b as Uint8Array);
  }
}

function compareTotalOrder(a: number, b: number): number {
  const x = totalOrderKey(a);
  const y = totalOrderKey(b);
  return x === y ? 0 : x < y ? -1 : 1;
}

// Maps a double's bits to an unsigned integer whose order is IEEE 754 totalOrder.
function totalOrderKey(value: number): bigint {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, value);
  const bits = view.getBigUint64(0);
  return bits >> 63n === 1n ? ~bits & 0xffff_ffff_ffff_ffffn : bits | (1n << 63n);
}

/** Compares by Unicode code point: unlike `<` on JS strings, a surrogate pair sorts after U+E000–U+FFFF. */
export function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i += 1) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) {
      const xSurrogate = x >= 0xd800 && x <= 0xdfff;
      const ySurrogate = y >= 0xd800 && y <= 0xdfff;
      if (xSurrogate !== ySurrogate) return xSurrogate ? 1 : -1;
      return x < y ? -1 : 1;
    }
  }
  return Math.sign(a.length - b.length);
}

export function compareUnsignedBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i += 1) {
    if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  }
  return Math.sign(a.length - b.length);
}

/** The first `length` code points of a string (never splitting a surrogate pair). */
export function truncateCodePoints(text: string, length: number): string {
  let end = 0;
  let count = 0;
  for (const char of text) {
    if (count === length) return text.slice(0, end);
    end += char.length;
    count += 1;
  }
  return text;
}

/**
 * A lower bound no longer than `length` characters (string) or bytes (binary): the prefix. Values of other
 * types are returned unchanged.
 */
export function truncateLowerBound(
  type: PrimitiveType,
  value: IcebergValue,
  length = DEFAULT_BOUND_LENGTH,
): IcebergValue {
  checkLength(length);
  if (type === 'string') return truncateCodePoints(value as string, length);
  if (type === 'binary') return (value as Uint8Array).slice(0, length);
  return value;
}

/**
 * An upper bound no longer than `length` characters (string) or bytes (binary): the prefix with its last
 * character (byte) incremented, carrying leftwards past U+10FFFF (0xFF), as Java's
 * UnicodeUtil.truncateStringMax / BinaryUtil.truncateBinaryMax. Undefined when no such bound exists (every
 * character is U+10FFFF): then writers store no upper bound. Values of other types are returned unchanged.
 */
export function truncateUpperBound(
  type: PrimitiveType,
  value: IcebergValue,
  length = DEFAULT_BOUND_LENGTH,
): IcebergValue | undefined {
  checkLength(length);
  if (type === 'string') {
    const text = (value as string).toWellFormed();
    const prefix = Array.from(truncateCodePoints(text, length));
    if (prefix.join('') === text) return text;
    for (let i = prefix.length - 1; i >= 0; i -= 1) {
      const next = nextCodePoint(prefix[i]!.codePointAt(0)!);
      if (next !== undefined) return prefix.slice(0, i).join('') + String.fromCodePoint(next);
    }
    return undefined;
  }
  if (type === 'binary') {
    const bytes = value as Uint8Array;
    if (bytes.length <= length) return bytes.slice();
    for (let i = length - 1; i >= 0; i -= 1) {
      if (bytes[i]! < 0xff) {
        const out = bytes.slice(0, i + 1);
        out[i] = bytes[i]! + 1;
        return out;
      }
    }
    return undefined;
  }
  return value;
}

function nextCodePoint(codePoint: number): number | undefined {
  if (codePoint === 0xd7ff) return 0xe000; // skip the surrogates: they are not Unicode scalar values
  if (codePoint === 0x10ffff) return undefined;
  return codePoint + 1;
}

function checkLength(length: number): void {
  if (!Number.isInteger(length) || length <= 0) {
    throw new TributaryError(
      'INVALID_INPUT',
      `Bound truncation length must be a positive integer, got ${length}`,
      {
        hint: 'Use a length of 1 or more (Iceberg writers use 16 by default).',
      },
    );
  }
}
