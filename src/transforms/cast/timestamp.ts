/**
 * Timestamps for `cast`: ISO 8601 text or epoch numbers, normalized to ISO 8601 UTC with microseconds
 * ("2024-05-01T12:00:00.123456Z"): one form that sorts as text and keeps microsecond precision.
 */
import { isBigInteger } from '../../core/json.ts';
import { isoTimestamp } from '../shared/iso-timestamp.ts';

/** Epoch numbers below this magnitude are seconds, above it milliseconds (1e11 s is the year 5138; 1e11 ms is 1973). */
const SECONDS_BELOW = 1e11;

const ISO =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?\s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?$/;
const DECIMAL = /^[+-]?\d+(\.\d+)?$/;

/** The timestamp as ISO 8601 UTC with microseconds, or why it is not one. */
export function toTimestamp(value: unknown): { ok: true; value: string } | { ok: false; reason: string } {
  if (typeof value === 'number') return fromEpoch(value);
  // Beyond ±2^53 milliseconds (the year 285,000): out of range, as the message says.
  if (isBigInteger(value)) return fromEpoch(Number(value.rawJSON));
  if (typeof value !== 'string') return { ok: false, reason: 'not a string or a number' };
  const text = value.trim();
  if (DECIMAL.test(text)) return fromEpoch(Number(text));
  return fromIso(text);
}

function fromEpoch(epoch: number): { ok: true; value: string } | { ok: false; reason: string } {
  if (!Number.isFinite(epoch)) return { ok: false, reason: 'not a finite number' };
  let ms: number;
  let micros: number;
  if (Math.abs(epoch) < SECONDS_BELOW) {
    const total = Math.round(epoch * 1e6);
    ms = Math.floor(total / 1000);
    micros = total - ms * 1000;
  } else {
    ms = Math.floor(epoch);
    micros = Math.round((epoch - ms) * 1000);
    if (micros === 1000) [ms, micros] = [ms + 1, 0];
  }
  return format(ms, micros);
}

function fromIso(text: string): { ok: true; value: string } | { ok: false; reason: string } {
  const match = ISO.exec(text);
  if (!match) return { ok: false, reason: 'not an ISO 8601 timestamp or an epoch number' };
  const [
    ,
    year,
    month,
    day,
    hour = '0',
    minute = '0',
    second = '0',
    fraction = '',
    ,
    sign,
    offsetHours,
    offsetMinutes,
  ] = match;
  const parts = [year, month, day, hour, minute, second].map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const [y, mo, d, h, mi, s] = parts;
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d);
  date.setUTCHours(h, mi, s, 0);
  // Date rolls 2024-02-30 over to March: a different day back means the fields were out of range.
  if (
    date.getUTCFullYear() !== y ||
    date.getUTCMonth() !== mo - 1 ||
    date.getUTCDate() !== d ||
    h > 23 ||
    mi > 59 ||
    s > 59
  ) {
    return { ok: false, reason: 'not a valid date and time' };
  }
  let ms = date.getTime();
  if (sign) {
    const offset = (Number(offsetHours) * 60 + Number(offsetMinutes ?? 0)) * 60_000;
    if (Number(offsetHours) > 23 || Number(offsetMinutes ?? 0) > 59)
      return { ok: false, reason: 'not a valid UTC offset' };
    ms += sign === '+' ? -offset : offset;
  }
  const fractionMicros = Number(fraction.padEnd(6, '0').slice(0, 6)); // beyond microseconds is cut
  return format(ms + Math.floor(fractionMicros / 1000), fractionMicros % 1000);
}

function format(ms: number, micros: number): { ok: true; value: string } | { ok: false; reason: string } {
  const value = isoTimestamp(ms, micros);
  return value === undefined ? { ok: false, reason: 'outside the years 0001 to 9999' } : { ok: true, value };
}
