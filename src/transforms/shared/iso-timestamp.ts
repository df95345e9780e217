/** The one text form transforms write timestamps in: ISO 8601 UTC with microseconds. */

// Years 0001–9999: what ISO 8601 writes with four digits. (Date.UTC maps years below 100 to 19xx.)
const MIN_MS = new Date(0).setUTCFullYear(1, 0, 1);
const MAX_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/** "2024-05-01T12:00:00.123456Z" from milliseconds since the epoch and the microseconds within the last one. */
export function isoTimestamp(ms: number, micros = 0): string | undefined {
  if (!(ms >= MIN_MS && ms <= MAX_MS)) return undefined;
  const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  return `${iso.slice(0, -1)}${String(micros).padStart(3, '0')}Z`;
}

/** The same from microseconds since the epoch (DuckDB's timestamps). */
export function isoTimestampFromMicros(micros: bigint): string | undefined {
  let ms = micros / 1000n;
  let rest = micros % 1000n;
  if (rest < 0n) [ms, rest] = [ms - 1n, rest + 1000n]; // BigInt division truncates toward zero
  return isoTimestamp(Number(ms), Number(rest));
}
