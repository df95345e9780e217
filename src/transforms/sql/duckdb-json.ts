/**
 * DuckDB values → JSON values for record values. Unlike DuckDB's own JSON converter, integers come back
 * as numbers (exact beyond ±2^53 too: BigIntegers, see core/json.ts), decimals as numbers (exact when
 * their scale is 0, else doubles), JSON columns parsed (exactly), maps as objects, and timestamps as ISO
 * 8601 UTC with microseconds.
 */
import {
  DuckDBDecimalValue,
  DuckDBMapValue,
  DuckDBTimestampMillisecondsValue,
  DuckDBTimestampNanosecondsValue,
  DuckDBTimestampSecondsValue,
  DuckDBTimestampTZValue,
  DuckDBTimestampValue,
  DuckDBTypeId,
  JsonDuckDBValueConverter,
  type DuckDBValueConverter,
  type Json,
} from '@duckdb/node-api';
import { exactInteger, parseJsonExact } from '../../core/json.ts';
import { isoTimestampFromMicros } from '../shared/iso-timestamp.ts';

export const toJsonValue: DuckDBValueConverter<Json> = (value, type, converter) => {
  if (value === null) return null;
  if (type.alias === 'JSON' && typeof value === 'string') return parseJsonExact(value) as Json;
  switch (type.typeId) {
    case DuckDBTypeId.BIGINT:
    case DuckDBTypeId.UBIGINT:
    case DuckDBTypeId.HUGEINT:
    case DuckDBTypeId.UHUGEINT:
      // A BigInteger is a JSON value to every consumer, though not to the converter's Json type.
      return typeof value === 'bigint' ? (exactInteger(value) as Json) : (value as Json);
    case DuckDBTypeId.DECIMAL:
      if (!(value instanceof DuckDBDecimalValue)) return value as Json;
      return value.scale === 0 ? (exactInteger(value.value) as Json) : value.toDouble();
    case DuckDBTypeId.TIMESTAMP:
    case DuckDBTypeId.TIMESTAMP_TZ:
    case DuckDBTypeId.TIMESTAMP_S:
    case DuckDBTypeId.TIMESTAMP_MS:
    case DuckDBTypeId.TIMESTAMP_NS:
      return timestampText(value);
    case DuckDBTypeId.MAP:
      if (value instanceof DuckDBMapValue) {
        const valueType = type.valueType;
        return Object.fromEntries(
          value.entries.map((entry) => [String(entry.key), converter(entry.value, valueType, converter)]),
        );
      }
      return JsonDuckDBValueConverter(value, type, converter);
    default:
      return JsonDuckDBValueConverter(value, type, converter);
  }
};

function timestampText(value: unknown): string {
  const micros =
    value instanceof DuckDBTimestampValue || value instanceof DuckDBTimestampTZValue
      ? value.micros
      : value instanceof DuckDBTimestampMillisecondsValue
        ? value.millis * 1000n
        : value instanceof DuckDBTimestampSecondsValue
          ? value.seconds * 1_000_000n
          : value instanceof DuckDBTimestampNanosecondsValue
            ? value.nanos / 1000n
            : undefined;
  // ±infinity and years beyond 9999 keep DuckDB's own text.
  return (micros === undefined ? undefined : isoTimestampFromMicros(micros)) ?? String(value);
}
