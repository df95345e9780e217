/**
 * PostgreSQL log sequence numbers: 64-bit WAL positions, written `X/Y` (two hex halves). Held as bigint;
 * `lsnKey` gives a fixed-width string that sorts like the number (for record headers).
 */
import { TributaryError } from '../../errors.ts';

export type Lsn = bigint;

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function parseLsn(text: string): Lsn {
  const match = LSN_TEXT.exec(text.trim());
  if (!match) throw new TributaryError('INVALID_INPUT', `"${text}" is not a PostgreSQL LSN (like 0/16B3748)`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** 16 hex digits: compares as strings like the LSNs compare as numbers. */
export function lsnKey(lsn: Lsn): string {
  return lsn.toString(16).padStart(16, '0');
}

export function lsnFromKey(key: string): Lsn {
  return BigInt(`0x${key}`);
}

export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}

export function minLsn(a: Lsn, b: Lsn): Lsn {
  return a < b ? a : b;
}
