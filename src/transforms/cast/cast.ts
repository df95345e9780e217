/**
 * `cast`: converts fields to a type. A value that cannot be converted sends the record to the DLQ with the
 * field and the value; missing fields stay missing and null stays null.
 */
import { z } from 'zod';
import type { ComponentDefinition } from '../../core/pipeline/components.ts';
import { exactInteger, isBigInteger, type BigInteger } from '../../core/json.ts';
import type { PipelineRecord, Rejection, Transform } from '../../core/pipeline/model.ts';
import {
  fieldMap,
  getField,
  hasField,
  parseFieldPath,
  setField,
  type FieldPath,
} from '../shared/field-path.ts';
import { preview, type JsonObject } from '../shared/json-value.ts';
import { toTimestamp } from './timestamp.ts';

const TARGETS = ['string', 'integer', 'number', 'boolean', 'timestamp'] as const;
type Target = (typeof TARGETS)[number];

// Also the `type` field's description: the generated reference shows that one.
const SUMMARY =
  'Converts fields to string, integer, number, boolean or timestamp; values that do not convert go to the DLQ.';

const schema = z
  .strictObject({
    type: z.literal('cast').describe(SUMMARY),
    fields: fieldMap(
      z.enum(TARGETS),
      'Field → type. string: numbers and booleans as text, objects and arrays as JSON text. integer and ' +
        'number: numbers and numeric text (integer refuses fractions; integers beyond ±2^53 stay exact). ' +
        'boolean: true/false, 1/0, ' +
        '"true"/"false", "yes"/"no", "1"/"0". timestamp: ISO 8601 text (UTC when it has no offset) or epoch ' +
        'seconds/milliseconds (below 1e11: seconds), written as ISO 8601 UTC with microseconds.',
    ),
  })
  .describe(SUMMARY);

type Outcome = { ok: true; value: unknown } | { ok: false; reason: string };

export const castTransform: ComponentDefinition<'transform', typeof schema> = {
  kind: 'transform',
  type: 'cast',
  schema,
  async create(config) {
    const casts = Object.entries(config.fields).map(([field, target]) => ({
      field,
      path: parseFieldPath(field),
      target,
    }));
    return new CastTransform(casts);
  },
};

class CastTransform implements Transform {
  readonly name = 'cast';
  readonly #casts: ReadonlyArray<{ field: string; path: FieldPath; target: Target }>;

  constructor(casts: ReadonlyArray<{ field: string; path: FieldPath; target: Target }>) {
    this.#casts = casts;
  }

  async process(records: readonly PipelineRecord[]) {
    const passed: PipelineRecord[] = [];
    const rejected: Rejection[] = [];
    for (const record of records) {
      const result = this.#castAll(record.value);
      if (typeof result === 'string') rejected.push({ record, stage: this.name, error: result });
      else passed.push(result === record.value ? record : { ...record, value: result });
    }
    return { records: passed, rejected };
  }

  /** The value with every field cast, or the reason (for the first field that does not convert). */
  #castAll(value: JsonObject): JsonObject | string {
    let result = value;
    for (const { field, path, target } of this.#casts) {
      if (!hasField(result, path)) continue;
      const current = getField(result, path);
      if (current === null) continue;
      const outcome = castValue(current, target);
      if (!outcome.ok)
        return `cannot cast field ${field} (${preview(current)}) to ${target}: ${outcome.reason}`;
      if (outcome.value !== current) result = setField(result, path, outcome.value);
    }
    return result;
  }
}

const NUMERIC = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;
/** Integer text, read exactly however long (a fraction of zeros allowed: "12.0"). */
const INTEGER_TEXT = /^\s*([+-]?\d+)(?:\.0*)?\s*$/;
const TRUE_TEXT = new Set(['true', 'yes', '1']);
const FALSE_TEXT = new Set(['false', 'no', '0']);

export function castValue(value: unknown, target: Target): Outcome {
  switch (target) {
    case 'string':
      if (typeof value === 'string') return { ok: true, value };
      if (typeof value === 'number' || typeof value === 'boolean') return { ok: true, value: String(value) };
      if (isBigInteger(value)) return { ok: true, value: value.rawJSON };
      return { ok: true, value: JSON.stringify(value) };
    case 'number':
      return toNumber(value);
    case 'integer': {
      const number = toNumber(value);
      if (!number.ok || isBigInteger(number.value)) return number;
      if (!Number.isInteger(number.value)) return { ok: false, reason: 'not a whole number' };
      if (!Number.isSafeInteger(number.value))
        return { ok: false, reason: 'too large to be exact (beyond ±2^53): write it as digits, not 1e20' };
      return number;
    }
    case 'boolean':
      if (typeof value === 'boolean') return { ok: true, value };
      if (value === 1 || value === 0) return { ok: true, value: value === 1 };
      if (typeof value === 'string') {
        const text = value.trim().toLowerCase();
        if (TRUE_TEXT.has(text)) return { ok: true, value: true };
        if (FALSE_TEXT.has(text)) return { ok: true, value: false };
      }
      return { ok: false, reason: 'not true/false, 1/0 or yes/no' };
    case 'timestamp':
      return toTimestamp(value);
  }
}

/** A number, or an exact BigInteger for an integer (or integer text) beyond ±2^53. */
function toNumber(value: unknown): { ok: true; value: number | BigInteger } | { ok: false; reason: string } {
  if (typeof value === 'number' || isBigInteger(value)) return { ok: true, value };
  if (typeof value === 'boolean') return { ok: true, value: value ? 1 : 0 };
  if (typeof value === 'string' && NUMERIC.test(value)) {
    const number = Number(value);
    if (!Number.isFinite(number)) return { ok: false, reason: 'not a number' };
    if (Number.isSafeInteger(number)) return { ok: true, value: number };
    // Integer text beyond ±2^53 is read exactly; fractions and exponents as doubles.
    const integer = INTEGER_TEXT.exec(value)?.[1];
    return { ok: true, value: integer === undefined ? number : exactInteger(BigInt(integer)) };
  }
  return { ok: false, reason: 'not a number' };
}
