/**
 * Partition transforms (spec: "Partition Transforms"): identity, bucket[N], truncate[W], year, month, day,
 * hour and void. A transform maps a source value (in the representation of types.ts) to a partition value,
 * names it for partition paths, and projects filters on the source column onto partition values so scans
 * can skip partitions.
 */
import { TributaryError } from '../errors.ts';
import { murmur3Hash32 } from './murmur3.ts';
import {
  checkValue,
  kindOf,
  longToBytes,
  MICROS_PER_DAY,
  truncateCodePoints,
  unscaledToBytes,
  utf8,
  uuidToBytes,
} from './single-value.ts';
import { decimalParams, describeType, primitiveKind } from './types.ts';
import type { IcebergType, IcebergValue, PrimitiveKind, PrimitiveType } from './types.ts';

export type TransformName = 'identity' | 'bucket' | 'truncate' | 'year' | 'month' | 'day' | 'hour' | 'void';

export type PredicateOp = '=' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | 'is_null' | 'not_null';

/** A test of one value: `value` for comparisons, `values` for `in`, neither for the null tests. */
export interface ValuePredicate {
  readonly op: PredicateOp;
  readonly value?: IcebergValue;
  readonly values?: readonly IcebergValue[];
}

export interface Transform {
  readonly name: TransformName;
  /** N of bucket[N], W of truncate[W]; undefined for the others. */
  readonly parameter: number | undefined;
  /** Whether source order is kept (a ≤ b implies t(a) ≤ t(b)): identity, truncate and the time transforms. */
  readonly preservesOrder: boolean;
  /** Two fields on one column with the same dedup name are redundant (year, month, day and hour are all "time"). */
  readonly dedupName: string;
  /** The spec's spelling: "bucket[16]", "day", … */
  toString(): string;
  equals(other: Transform): boolean;
  canTransform(sourceType: IcebergType): boolean;
  /** int for bucket, year, month and hour; date for day; the source type for identity, truncate and void. */
  resultType(sourceType: IcebergType): IcebergType;
  /** The partition value of a source value; null stays null. */
  apply(sourceType: IcebergType, value: IcebergValue): IcebergValue;
  /** The value as it appears in partition paths: "2024-01-31" for day, "2024-01-31-13" for hour, … */
  toHumanString(resultType: IcebergType, value: IcebergValue): string;
  /**
   * Inclusive projection: a predicate on the partition value that holds for every partition that may hold a
   * row matching `predicate` on the source column, or undefined when nothing can be said.
   */
  project(sourceType: IcebergType, predicate: ValuePredicate): ValuePredicate | undefined;
}

const TIME_SOURCES: readonly PrimitiveKind[] = ['date', 'timestamp', 'timestamptz'];
const BUCKET_SOURCES: readonly PrimitiveKind[] = [
  'int',
  'long',
  'decimal',
  'date',
  'time',
  'timestamp',
  'timestamptz',
  'string',
  'uuid',
  'fixed',
  'binary',
];
const TRUNCATE_SOURCES: readonly PrimitiveKind[] = ['int', 'long', 'decimal', 'string', 'binary'];
const MICROS_PER_HOUR = 3_600_000_000n;
const INT_MAX = 2 ** 31 - 1;

class IcebergTransform implements Transform {
  readonly name: TransformName;
  readonly parameter: number | undefined;

  constructor(name: TransformName, parameter?: number) {
    this.name = name;
    this.parameter = parameter;
    Object.freeze(this);
  }

  get preservesOrder(): boolean {
    return this.name !== 'bucket' && this.name !== 'void';
  }

  get dedupName(): string {
    return this.isTime() ? 'time' : this.toString();
  }

  toString(): string {
    return this.parameter === undefined ? this.name : `${this.name}[${this.parameter}]`;
  }

  equals(other: Transform): boolean {
    return this.toString() === other.toString();
  }

  canTransform(sourceType: IcebergType): boolean {
    if (this.name === 'void') return true;
    const kind = primitiveKind(sourceType);
    if (kind === undefined) return false;
    switch (this.name) {
      case 'identity':
        return true;
      case 'bucket':
        return BUCKET_SOURCES.includes(kind);
      case 'truncate':
        return TRUNCATE_SOURCES.includes(kind);
      case 'hour':
        return kind === 'timestamp' || kind === 'timestamptz';
      default:
        return TIME_SOURCES.includes(kind);
    }
  }

  resultType(sourceType: IcebergType): IcebergType {
    switch (this.name) {
      case 'bucket':
      case 'year':
      case 'month':
      case 'hour':
        return 'int';
      case 'day':
        return 'date';
      default:
        return sourceType;
    }
  }

  apply(sourceType: IcebergType, value: IcebergValue): IcebergValue {
    if (value === null || this.name === 'void') return null;
    this.checkSource(sourceType);
    const type = sourceType as PrimitiveType;
    checkValue(type, value);
    switch (this.name) {
      case 'identity':
        return value;
      case 'bucket':
        return (hashValue(type, value) & INT_MAX) % this.parameter!;
      case 'truncate':
        return truncateValue(type, value, this.parameter!);
      default:
        return timeValue(this.name, kindOf(type), value as number | bigint);
    }
  }

  toHumanString(resultType: IcebergType, value: IcebergValue): string {
    if (value === null || this.name === 'void') return 'null';
    switch (this.name) {
      case 'year':
        return humanYear(value as number);
      case 'month':
        return humanMonth(value as number);
      case 'day':
        return humanDay(value as number);
      case 'hour':
        return humanHour(value as number);
      case 'bucket':
        return scalarText(value);
      default:
        return humanString(resultType as PrimitiveType, value);
    }
  }

  project(sourceType: IcebergType, predicate: ValuePredicate): ValuePredicate | undefined {
    if (this.name === 'void' || !this.canTransform(sourceType)) return undefined;
    const { op } = predicate;
    // A null source gives a null partition value and only a null one, for every transform but void.
    if (op === 'is_null' || op === 'not_null') return { op };
    if (op === 'in' ? predicate.values === undefined : predicate.value === undefined) return undefined;
    if (predicate.value === null) return undefined;
    const apply = (value: IcebergValue) => this.apply(sourceType, value);
    const mapIn = (): ValuePredicate => ({ op: 'in', values: distinct((predicate.values ?? []).map(apply)) });
    const type = sourceType as PrimitiveType;
    const kind = kindOf(type);

    switch (this.name) {
      case 'identity':
        return op === 'in' ? { op, values: predicate.values! } : { op, value: predicate.value! };
      case 'bucket':
        if (op === '=') return { op, value: apply(predicate.value!) };
        return op === 'in' ? mapIn() : undefined;
      case 'truncate':
        if (op === 'in') return mapIn();
        if (kind === 'string' || kind === 'binary') return projectPrefix(op, apply(predicate.value!));
        return projectBounds(op, predicate.value!, apply, type);
      default: {
        const projected = op === 'in' ? mapIn() : projectBounds(op, predicate.value!, apply, type);
        // Java widens time projections for negative values, which its writers once got wrong by one.
        return this.name === 'day' && kind === 'date' ? projected : widenForPreEpochValues(projected);
      }
    }
  }

  private isTime(): boolean {
    return this.name === 'year' || this.name === 'month' || this.name === 'day' || this.name === 'hour';
  }

  private checkSource(sourceType: IcebergType): void {
    if (!this.canTransform(sourceType)) {
      throw new TributaryError(
        'ICEBERG_INVALID_PARTITION',
        `Cannot apply ${this.toString()} to a ${describeType(sourceType)} value`,
        {
          context: { transform: this.toString(), type: sourceType },
          hint: transformHint(this.name),
        },
      );
    }
  }
}

/** What a transform accepts, for error hints. */
export function transformHint(name: TransformName): string {
  switch (name) {
    case 'bucket':
      return 'bucket applies to int, long, decimal, date, time, timestamp, timestamptz, string, uuid, fixed and binary columns.';
    case 'truncate':
      return 'truncate applies to int, long, decimal, string and binary columns.';
    case 'hour':
      return 'hour applies to timestamp and timestamptz columns.';
    case 'year':
    case 'month':
    case 'day':
      return `${name} applies to date, timestamp and timestamptz columns.`;
    default:
      return `${name} applies to primitive columns.`;
  }
}

const SIMPLE: Readonly<Record<string, Transform>> = Object.fromEntries(
  (['identity', 'year', 'month', 'day', 'hour', 'void'] as const).map((name) => [
    name,
    new IcebergTransform(name),
  ]),
);

/** Parses a transform as written in metadata: "identity", "bucket[16]", "truncate[4]", "day", "void", … */
export function parseTransform(text: string): Transform {
  const normalized = text.trim().toLowerCase();
  const simple = SIMPLE[normalized];
  if (simple) return simple;
  const match = /^(bucket|truncate)\[\s*(\d+)\s*\]$/.exec(normalized);
  if (match) return parameterized(match[1] as 'bucket' | 'truncate', Number(match[2]));
  throw new TributaryError('ICEBERG_UNSUPPORTED', `Unknown partition transform ${JSON.stringify(text)}`, {
    context: { transform: text },
    hint: 'Tributary knows identity, bucket[N], truncate[W], year, month, day, hour and void.',
  });
}

export function bucketTransform(buckets: number): Transform {
  return parameterized('bucket', buckets);
}

export function truncateTransform(width: number): Transform {
  return parameterized('truncate', width);
}

function parameterized(name: 'bucket' | 'truncate', parameter: number): Transform {
  if (!Number.isSafeInteger(parameter) || parameter < 1 || parameter > INT_MAX) {
    throw new TributaryError(
      'ICEBERG_INVALID_PARTITION',
      `${name}[${parameter}] needs a positive ${name === 'bucket' ? 'bucket count' : 'width'}`,
      {
        context: { transform: name, parameter },
        hint: `Use ${name}[N] with N from 1 to ${INT_MAX}.`,
      },
    );
  }
  return new IcebergTransform(name, parameter);
}

/**
 * The spec's 32-bit hash of a value (Appendix B): murmur3 x86_32 over the value's bytes. int and long hash
 * alike (as an 8-byte little-endian long), as do date/int and time/timestamp/long.
 */
export function hashValue(type: PrimitiveType, value: IcebergValue): number {
  checkValue(type, value);
  switch (kindOf(type)) {
    case 'int':
    case 'date':
      return murmur3Hash32(longToBytes(BigInt(value as number)));
    case 'long':
    case 'time':
    case 'timestamp':
    case 'timestamptz':
      return murmur3Hash32(longToBytes(value as bigint));
    case 'decimal':
      return murmur3Hash32(unscaledToBytes(value as bigint));
    case 'string':
      return murmur3Hash32(utf8(value as string));
    case 'uuid':
      return murmur3Hash32(uuidToBytes(value as string));
    case 'fixed':
    case 'binary':
      return murmur3Hash32(value as Uint8Array);
    case 'boolean':
      return murmur3Hash32(longToBytes(value ? 1n : 0n));
    case 'float':
    case 'double':
      return murmur3Hash32(doubleBits(value as number));
  }
}

// doubleToLongBits with NaN canonicalized and -0 folded into 0, as Appendix B asks for float and double.
function doubleBits(value: number): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  if (Number.isNaN(value)) view.setBigUint64(0, 0x7ff8000000000000n, true);
  else view.setFloat64(0, value === 0 ? 0 : value, true);
  return out;
}

function truncateValue(type: PrimitiveType, value: IcebergValue, width: number): IcebergValue {
  switch (kindOf(type)) {
    case 'int': {
      const v = value as number;
      // `| 0` wraps like Java's int arithmetic at the bottom of the range.
      return (v - (((v % width) + width) % width)) | 0;
    }
    case 'long': {
      const v = value as bigint;
      const w = BigInt(width);
      return BigInt.asIntN(64, v - (((v % w) + w) % w));
    }
    case 'decimal': {
      // The width applies to the unscaled value: truncate[50] of 10.65 (scale 2) is 10.50.
      const v = value as bigint;
      const w = BigInt(width);
      return v - (((v % w) + w) % w);
    }
    case 'string':
      return truncateCodePoints(value as string, width);
    default:
      return (value as Uint8Array).slice(0, width);
  }
}

function timeValue(name: TransformName, kind: PrimitiveKind, value: number | bigint): number {
  if (kind === 'date') {
    const days = value as number;
    if (name === 'day') return days;
    const { year, month } = civilFromDays(days);
    return name === 'year' ? year - 1970 : (year - 1970) * 12 + month - 1;
  }
  const micros = value as bigint;
  if (name === 'hour') return Number(floorDiv(micros, MICROS_PER_HOUR));
  const days = Number(floorDiv(micros, MICROS_PER_DAY));
  return timeValue(name, 'date', days);
}

function projectBounds(
  op: PredicateOp,
  value: IcebergValue,
  apply: (value: IcebergValue) => IcebergValue,
  type: PrimitiveType,
): ValuePredicate | undefined {
  switch (op) {
    case '<':
      return { op: '<=', value: apply(step(type, value, -1)) };
    case '<=':
      return { op: '<=', value: apply(value) };
    case '>':
      return { op: '>=', value: apply(step(type, value, 1)) };
    case '>=':
      return { op: '>=', value: apply(value) };
    case '=':
      return { op: '=', value: apply(value) };
    default:
      return undefined;
  }
}

// For strings and binary, a bound on the prefix is all that is known: x < "abcz" means prefix(x) <= "abc".
function projectPrefix(op: PredicateOp, prefix: IcebergValue): ValuePredicate | undefined {
  switch (op) {
    case '<':
    case '<=':
      return { op: '<=', value: prefix };
    case '>':
    case '>=':
      return { op: '>=', value: prefix };
    case '=':
      return { op: '=', value: prefix };
    default:
      return undefined;
  }
}

// The adjacent value in the source domain: v - 1 for `<`, v + 1 for `>` (one unscaled unit for decimals).
// At the end of the domain the bound itself is kept: the projection is then weaker, still inclusive.
function step(type: PrimitiveType, value: IcebergValue, by: 1 | -1): IcebergValue {
  const kind = kindOf(type);
  const next = kind === 'int' || kind === 'date' ? (value as number) + by : (value as bigint) + BigInt(by);
  try {
    checkValue(type, next);
    return next;
  } catch {
    return value;
  }
}

// Java's ProjectionUtil.fixInclusiveTimeProjection: older Java writers stored pre-1970 time partition values
// one too large, so a negative projected bound also admits the value above it.
function widenForPreEpochValues(projected: ValuePredicate | undefined): ValuePredicate | undefined {
  if (!projected) return projected;
  const value = projected.value as number;
  switch (projected.op) {
    case '<':
    case '<=':
      return value < 0 ? { op: projected.op, value: value + 1 } : projected;
    case '=':
      return value < 0 ? { op: 'in', values: [value, value + 1] } : projected;
    case 'in': {
      const values = projected.values as readonly number[];
      return values.some((v) => v < 0)
        ? { op: 'in', values: distinct(values.flatMap((v) => (v < 0 ? [v, v + 1] : [v]))) }
        : projected;
    }
    default:
      return projected;
  }
}

function distinct(values: readonly IcebergValue[]): IcebergValue[] {
  const seen = new Set<string>();
  return values.filter((value) => {
    const key =
      value instanceof Uint8Array
        ? `b:${Buffer.from(value).toString('hex')}`
        : `${typeof value}:${scalarText(value)}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}

function floorMod(a: number, b: number): number {
  return ((a % b) + b) % b;
}

/** Year, month (1–12) and day of a count of days since 1970-01-01, proleptic Gregorian (H. Hinnant's algorithm). */
export function civilFromDays(days: number): { year: number; month: number; day: number } {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const dayOfEra = z - era * 146097;
  const yearOfEra = Math.floor(
    (dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36524) - Math.floor(dayOfEra / 146096)) /
      365,
  );
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const shiftedMonth = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * shiftedMonth + 2) / 5) + 1;
  const month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9;
  return { year: yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day };
}

function pad(value: number, width: number): string {
  return String(value).padStart(width, '0');
}

// Java's String.format("%04d"): the sign counts towards the width.
function format04(value: number): string {
  return value < 0 ? `-${pad(-value, 3)}` : pad(value, 4);
}

export function humanYear(ordinal: number): string {
  return format04(1970 + ordinal);
}

export function humanMonth(ordinal: number): string {
  return `${format04(1970 + Math.floor(ordinal / 12))}-${pad(floorMod(ordinal, 12) + 1, 2)}`;
}

export function humanDay(days: number): string {
  const { year, month, day } = civilFromDays(days);
  return `${format04(year)}-${pad(month, 2)}-${pad(day, 2)}`;
}

export function humanHour(hours: number): string {
  return `${humanDay(Math.floor(hours / 24))}-${pad(floorMod(hours, 24), 2)}`;
}

/**
 * A value as Java's Transform.toHumanString writes it for identity and truncate partitions: ISO dates and
 * times, base64 for binary, Java's number formats (1.0, 1.0E10, 0E-10).
 */
export function humanString(type: PrimitiveType, value: IcebergValue): string {
  if (value === null) return 'null';
  switch (kindOf(type)) {
    case 'date':
      return humanDay(value as number);
    case 'time':
      return humanTime(value as bigint);
    case 'timestamp':
      return isoTimestamp(value as bigint);
    case 'timestamptz':
      return `${isoTimestamp(value as bigint)}+00:00`;
    case 'fixed':
    case 'binary':
      return Buffer.from(value as Uint8Array).toString('base64');
    case 'decimal':
      return javaDecimalString(value as bigint, decimalParams(type)!.scale);
    case 'float':
      return javaFloatingString(shortestFloat(value as number));
    case 'double':
      return javaFloatingString(value as number);
    default:
      return scalarText(value);
  }
}

// java.time.LocalTime#toString: seconds only when not zero, fractions in groups of three digits.
function humanTime(micros: bigint): string {
  const total = Number(micros);
  const seconds = Math.floor(total / 1e6);
  const fraction = total - seconds * 1e6;
  let text = `${pad(Math.floor(seconds / 3600), 2)}:${pad(Math.floor(seconds / 60) % 60, 2)}`;
  if (seconds % 60 !== 0 || fraction !== 0) text += `:${pad(seconds % 60, 2)}`;
  if (fraction !== 0) text += fraction % 1000 === 0 ? `.${pad(fraction / 1000, 3)}` : `.${pad(fraction, 6)}`;
  return text;
}

// DateTimeFormatter.ISO_LOCAL_DATE_TIME: seconds always, fraction without trailing zeros.
function isoTimestamp(micros: bigint): string {
  const days = floorDiv(micros, MICROS_PER_DAY);
  const ofDay = Number(micros - days * MICROS_PER_DAY);
  const { year, month, day } = civilFromDays(Number(days));
  const seconds = Math.floor(ofDay / 1e6);
  const fraction = pad(ofDay - seconds * 1e6, 6).replace(/0+$/, '');
  const time = `${pad(Math.floor(seconds / 3600), 2)}:${pad(Math.floor(seconds / 60) % 60, 2)}:${pad(seconds % 60, 2)}`;
  return `${isoYear(year)}-${pad(month, 2)}-${pad(day, 2)}T${time}${fraction ? `.${fraction}` : ''}`;
}

function isoYear(year: number): string {
  if (year > 9999) return `+${year}`;
  return year < 0 ? `-${pad(-year, 4)}` : pad(year, 4);
}

// java.math.BigDecimal#toString: plain unless the exponent is below -6, then scientific ("1.5E-9", "0E-10").
function javaDecimalString(unscaled: bigint, scale: number): string {
  const sign = unscaled < 0n ? '-' : '';
  const digits = (unscaled < 0n ? -unscaled : unscaled).toString();
  if (scale === 0) return sign + digits;
  const adjusted = digits.length - 1 - scale;
  if (adjusted >= -6) {
    const padded = digits.padStart(scale + 1, '0');
    return `${sign}${padded.slice(0, -scale)}.${padded.slice(-scale)}`;
  }
  const mantissa = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${mantissa}E${adjusted}`;
}

// The shortest decimal that reads back as the same float32, as Java's Float.toString picks.
function shortestFloat(value: number): number {
  if (!Number.isFinite(value) || value === 0) return value;
  for (let precision = 1; precision < 10; precision += 1) {
    const candidate = Number(value.toPrecision(precision));
    if (Math.fround(candidate) === value) return candidate;
  }
  return value;
}

// Java's Double.toString layout: "1.0", "0.001", "1.0E7", "1.5E-4".
function javaFloatingString(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
  if (value === 0) return Object.is(value, -0) ? '-0.0' : '0.0';
  const magnitude = Math.abs(value);
  if (magnitude >= 1e-3 && magnitude < 1e7) {
    const text = String(value);
    return text.includes('.') ? text : `${text}.0`;
  }
  const [mantissa = '', exponent = '0'] = value.toExponential().split('e');
  return `${mantissa.includes('.') ? mantissa : `${mantissa}.0`}E${Number(exponent)}`;
}

function scalarText(value: IcebergValue): string {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
    case 'bigint':
    case 'boolean':
      return value.toString();
    default:
      return JSON.stringify(value) ?? 'null';
  }
}
