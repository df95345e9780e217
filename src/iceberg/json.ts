/**
 * JSON with 64-bit integers. Iceberg metadata holds snapshot ids that use the whole signed 64-bit range;
 * JSON.parse would round them. Snapshot-id keys always parse to bigint (so code can rely on the type);
 * any other integer beyond 2^53 parses to bigint too. bigint values serialize as plain JSON numbers.
 */

const ALWAYS_BIGINT = new Set(['snapshot-id', 'parent-snapshot-id', 'current-snapshot-id']);

interface ReviverContext {
  readonly source?: string;
}

export function parseJson(text: string): unknown {
  return JSON.parse(text, (key: string, value: unknown, context?: ReviverContext) => {
    if (typeof value !== 'number' || context?.source === undefined || !/^-?\d+$/.test(context.source))
      return value;
    if (ALWAYS_BIGINT.has(key) || !Number.isSafeInteger(value)) return BigInt(context.source);
    return value;
  });
}

interface JsonWithRaw {
  rawJSON(text: string): unknown;
}

export function stringifyJson(value: unknown, indent?: number): string {
  return JSON.stringify(
    value,
    (_key, item: unknown) =>
      typeof item === 'bigint' ? (JSON as unknown as JsonWithRaw).rawJSON(item.toString()) : item,
    indent,
  );
}
