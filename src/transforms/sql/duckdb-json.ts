/**
 * DuckDB values → JSON values for record values. Unlike DuckDB's own JSON converter, integers come back
 * as numbers (as text only beyond ±2^53, where a number would lose digits), decimals as numbers, JSON
 * columns parsed, maps as objects, and timestamps as ISO 8601 UTC with microseconds.
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
import { isoTimestampFromMicros } from '../shared/iso-timestamp.ts';

export const toJsonValue: DuckDBValueConverter<Json> = (value, type, converter) => {
  if (value === null) return null;
  if (type.alias === 'JSON' && typeof value === 'string') return JSON.parse(value) as Json;
  switch (type.typeId) {
    case DuckDBTypeId.BIGINT:
    case DuckDBTypeId.UBIGINT:
    case DuckDBTypeId.HUGEINT:
    case DuckDBTypeId.UHUGEINT:
      return typeof value === 'bigint' ? exactNumber(value) : (value as Json);
    case DuckDBTypeId.DECIMAL:
      return value instanceof DuckDBDecimalValue ? value.toDouble() : (value as Json);
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

function exactNumber(value: bigint): number | string {
  const number = Number(value);
  return Number.isSafeInteger(number) ? number : value.toString();
}

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
