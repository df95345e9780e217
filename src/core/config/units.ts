/** Durations ("500ms", "30s", "7d") and sizes ("16MiB", "1GB") in configuration, as zod schemas. */
import { z } from 'zod';

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** Milliseconds from a duration such as "250ms", "30s", "5m", "2h", "7d"; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$/i.exec(text);
  if (!match?.[1] || !match[2]) return undefined;
  return Math.round(Number(match[1]) * (DURATION_UNITS[match[2].toLowerCase()] ?? NaN));
}

/** Bytes from a size such as "512KiB", "16MiB", "1GB"; undefined when malformed. */
export function parseByteSize(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$/i.exec(text);
  if (!match?.[1]) return undefined;
  return Math.round(Number(match[1]) * (SIZE_UNITS[(match[2] ?? 'b').toLowerCase()] ?? NaN));
}

/** Bytes for people: "512 bytes", "16.0 MiB", "1.5 GiB" (binary units, which parseByteSize reads back). */
export function formatByteSize(bytes: number): string {
  for (const [unit, size] of [
    ['TiB', 1024 ** 4],
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const)
    if (bytes >= size) return `${(bytes / size).toFixed(1)} ${unit}`;
  return `${bytes} bytes`;
}

/** A duration written as text ("30s") in YAML; milliseconds in code. */
export function duration(description: string) {
  return z
    .string()
    .describe(`${description} A duration such as "500ms", "30s", "5m", "2h" or "7d".`)
    .transform((text, ctx) => {
      const ms = parseDuration(text);
      if (ms === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `"${text}" is not a duration: write e.g. "500ms", "30s", "5m", "7d"`,
        });
        return z.NEVER;
      }
      return ms;
    });
}

/**
 * A duration written as text ("30s") or a number of milliseconds in YAML; milliseconds in code. Both read
 * back: `tributary init` writes the defaults out as numbers, and a source's configuration is parsed again
 * after the project loaded it.
 */
export function durationOrMs(description: string) {
  return z
    .union([z.number().int().nonnegative(), duration(description)])
    .describe(`${description} A duration such as "500ms", "30s", "5m" or "7d", or a number of milliseconds.`);
}

/** A size written as text ("16MiB") or a number of bytes in YAML; bytes in code. */
export function byteSize(description: string) {
  return z
    .union([z.number().int().nonnegative(), z.string()])
    .describe(`${description} A size such as "512KiB", "16MiB" or "1GB", or a number of bytes.`)
    .transform((input, ctx) => {
      const bytes = typeof input === 'number' ? input : parseByteSize(input);
      if (bytes === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `"${String(input)}" is not a size: write e.g. "512KiB", "16MiB", "1GB"`,
        });
        return z.NEVER;
      }
      return bytes;
    });
}
