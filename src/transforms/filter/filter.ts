/**
 * `filter`: keeps the records that match every condition of `where` and drops the others (dropped records
 * are not errors: they do not go to the DLQ).
 */
import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import type { ComponentDefinition } from '../../core/pipeline/components.ts';
import { isBigInteger, type BigInteger } from '../../core/json.ts';
import type { PipelineRecord, Transform } from '../../core/pipeline/model.ts';
import { fieldPath, hasField, getField, parseFieldPath } from '../shared/field-path.ts';
import { isPlainObject, type JsonObject } from '../shared/json-value.ts';

/** An integer beyond ±2^53 written in the pipeline file: the config loader reads it exactly (core/json.ts). */
const bigInteger = z
  .custom<BigInteger>(isBigInteger, 'expected a number')
  .meta({ type: 'integer', description: 'An integer beyond ±2^53, kept exact.' });

/** A JSON value, kept as it is (z.json() would copy a BigInteger into a plain object). */
const json = z.custom<unknown>(isJson, 'expected a JSON value');

const bound = z.union([z.number(), z.string(), bigInteger]);

const OPERATORS = [
  'equals',
  'not_equals',
  'in',
  'not_in',
  'exists',
  'gt',
  'gte',
  'lt',
  'lte',
  'matches',
] as const;

const condition = z
  .strictObject({
    field: fieldPath('The field the condition tests.'),
    equals: json.optional().describe('The field holds exactly this value (1 and "1" differ).'),
    not_equals: json.optional().describe('The field is missing or holds another value.'),
    in: z.array(json).optional().describe('The field holds one of these values.'),
    not_in: z.array(json).optional().describe('The field is missing or holds none of these values.'),
    exists: z
      .boolean()
      .optional()
      .describe('true: the field is present and not null. false: it is missing or null.'),
    gt: bound
      .optional()
      .describe(
        'Greater than: numbers compare with numbers (exactly, beyond ±2^53 too), strings with strings.',
      ),
    gte: bound.optional().describe('Greater than or equal.'),
    lt: bound.optional().describe('Less than.'),
    lte: bound.optional().describe('Less than or equal.'),
    matches: z
      .string()
      .superRefine((pattern, ctx) => {
        try {
          new RegExp(pattern);
        } catch (error) {
          ctx.addIssue({ code: 'custom', message: `not a regular expression: ${(error as Error).message}` });
        }
      })
      .optional()
      .describe('A regular expression (JavaScript syntax, unanchored) a string field must match.'),
  })
  .superRefine((c, ctx) => {
    if (!OPERATORS.some((operator) => c[operator] !== undefined)) {
      ctx.addIssue({ code: 'custom', message: `give the field a test: ${OPERATORS.join(', ')}` });
    }
  })
  .describe('A condition on one field; several tests in one condition must all hold (e.g. gte and lt).');

// Also the `type` field's description: the generated reference shows that one.
const SUMMARY = 'Drops the records that do not match every condition (they do not go to the DLQ).';

const schema = z
  .strictObject({
    type: z.literal('filter').describe(SUMMARY),
    where: z
      .array(condition)
      .min(1)
      .describe(
        'Conditions a record must all meet to be kept. A missing field fails every test but not_equals, not_in and exists: false.',
      ),
  })
  .describe(SUMMARY);

export type FilterCondition = z.output<typeof condition>;
type Predicate = (value: JsonObject) => boolean;

export const filterTransform: ComponentDefinition<'transform', typeof schema> = {
  kind: 'transform',
  type: 'filter',
  schema,
  async create(config) {
    const predicates = config.where.map(compileCondition);
    const matches = (value: JsonObject) => predicates.every((predicate) => predicate(value));
    const transform: Transform = {
      name: 'filter',
      preservesValues: true,
      async process(records: readonly PipelineRecord[]) {
        return { records: records.filter((record) => matches(record.value)), rejected: [] };
      },
    };
    return transform;
  },
};

/** One predicate for all the tests of a condition. */
export function compileCondition(condition: FilterCondition): Predicate {
  const path = parseFieldPath(condition.field);
  const tests: Array<(found: boolean, field: unknown) => boolean> = [];
  const { equals, not_equals, exists, matches } = condition;
  if (equals !== undefined) tests.push((found, field) => found && isDeepStrictEqual(field, equals));
  if (not_equals !== undefined) tests.push((found, field) => !found || !isDeepStrictEqual(field, not_equals));
  if (condition.in) {
    const options = condition.in;
    tests.push((found, field) => found && options.some((option) => isDeepStrictEqual(field, option)));
  }
  if (condition.not_in) {
    const options = condition.not_in;
    tests.push((found, field) => !found || !options.some((option) => isDeepStrictEqual(field, option)));
  }
  if (exists !== undefined) tests.push((found, field) => (found && field !== null) === exists);
  if (condition.gt !== undefined) tests.push(compare(condition.gt, (order) => order > 0));
  if (condition.gte !== undefined) tests.push(compare(condition.gte, (order) => order >= 0));
  if (condition.lt !== undefined) tests.push(compare(condition.lt, (order) => order < 0));
  if (condition.lte !== undefined) tests.push(compare(condition.lte, (order) => order <= 0));
  if (matches !== undefined) {
    const pattern = new RegExp(matches);
    tests.push((_found, field) => typeof field === 'string' && pattern.test(field));
  }
  return (value) => {
    const found = hasField(value, path);
    const field = found ? getField(value, path) : undefined;
    return tests.every((test) => test(found, field));
  };
}

/**
 * A test of the field against `limit`; values of another type (or missing) never match. Numbers compare
 * exactly, integers beyond ±2^53 included (as bigints: JavaScript compares a bigint with a number exactly).
 */
function compare(limit: number | string | BigInteger, accept: (order: number) => boolean) {
  const bound = comparable(limit)!;
  return (_found: boolean, field: unknown) => {
    const value = comparable(field);
    if (
      typeof bound === 'string'
        ? typeof value !== 'string'
        : typeof value !== 'number' && typeof value !== 'bigint'
    )
      return false;
    if (typeof value === 'number' && Number.isNaN(value)) return false;
    return accept(value! < bound ? -1 : value! > bound ? 1 : 0);
  };
}

/** A number, bigint or string to compare with `<`, or undefined for anything else. */
function comparable(value: unknown): number | bigint | string | undefined {
  if (typeof value === 'number' || typeof value === 'string') return value;
  return isBigInteger(value) ? BigInt(value.rawJSON) : undefined;
}

/** Whether `value` is JSON: null, a boolean, a finite number, a string, a BigInteger, an array or object of JSON. */
function isJson(value: unknown): boolean {
  switch (typeof value) {
    case 'boolean':
    case 'string':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object':
      if (value === null || isBigInteger(value)) return true;
      if (Array.isArray(value)) return value.every(isJson);
      return isPlainObject(value) && Object.values(value).every(isJson);
    default:
      return false;
  }
}
