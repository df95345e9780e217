/**
 * `validate`: checks every record's value against a JSON Schema file. A record that does not match goes
 * to the DLQ with every violation ("/amount: must be number; /user_id: must have required property
 * 'user_id'"); the others pass unchanged. The schema is compiled once, when the pipeline starts.
 * Integers beyond ±2^53 (BigIntegers, see core/json.ts) are numbers to it: "type": "integer" matches them,
 * and bounds compare them as the nearest double.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { ComponentDefinition } from '../../core/pipeline/components.ts';
import { nearestNumber, replaceBigIntegers } from '../../core/json.ts';
import type { PipelineRecord, Rejection, Transform } from '../../core/pipeline/model.ts';
import { TributaryError } from '../../errors.ts';
import { resolveProjectPath } from '../shared/project-path.ts';
import { compileSchema } from './compile.ts';

// Also the `type` field's description: the generated reference shows that one.
const SUMMARY =
  'Rejects records whose value does not match a JSON Schema, with the JSON path and the rule of every violation.';

const schema = z
  .strictObject({
    type: z.literal('validate').describe(SUMMARY),
    schema: z
      .string()
      .min(1)
      .describe(
        'Path of the JSON Schema file (JSON or YAML), relative to the project. Draft 2020-12, 2019-09 or ' +
          'draft-07, chosen by its `$schema` (2020-12 when absent); `format` is checked.',
      ),
  })
  .describe(SUMMARY);

export type ValidateConfig = z.output<typeof schema>;

/** Longest reason kept: a record with hundreds of violations would otherwise bloat the DLQ. */
const MAX_REASON = 1000;

export const validateTransform: ComponentDefinition<'transform', typeof schema> = {
  kind: 'transform',
  type: 'validate',
  schema,
  async create(config, context) {
    const file = resolveProjectPath(context.projectRoot, config.schema);
    const validate = compileSchema(await readSchemaFile(file, config.schema), file, context);
    return new ValidateTransform(validate);
  },
};

class ValidateTransform implements Transform {
  readonly name = 'validate';
  // ajv only reads: no coercion, defaults or removal are configured (compile.ts).
  readonly preservesValues = true;
  // JSON Schema checks an integer beyond ±2^53 as the nearest double (below): the same when it is one.
  readonly approximateNumbers = true;
  readonly #validate: ValidateFunction;

  constructor(validate: ValidateFunction) {
    this.#validate = validate;
  }

  async process(records: readonly PipelineRecord[]) {
    const passed: PipelineRecord[] = [];
    const rejected: Rejection[] = [];
    for (const record of records) {
      // ajv knows numbers only: an integer beyond ±2^53 is checked as the double nearest to it (the record
      // passes on with the exact one).
      if (this.#validate(replaceBigIntegers(record.value, nearestNumber))) passed.push(record);
      else rejected.push({ record, stage: this.name, error: describeErrors(this.#validate.errors ?? []) });
    }
    return { records: passed, rejected };
  }
}

async function readSchemaFile(file: string, configured: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new TributaryError('CONFIG_INVALID', `validate: cannot read the JSON Schema file ${configured}`, {
      cause: error,
      context: { file },
      hint: 'Check the `schema` path of the validate transform: it is relative to the project root.',
    });
  }
  try {
    return /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (error) {
    throw new TributaryError(
      'CONFIG_INVALID',
      `validate: ${path.basename(file)} is not valid ${/\.ya?ml$/i.test(file) ? 'YAML' : 'JSON'}: ${(error as Error).message}`,
      { cause: error, context: { file }, hint: 'Fix the JSON Schema file.' },
    );
  }
}

/** "/amount: must be number; /user_id: must have required property 'user_id'", cut to MAX_REASON. */
export function describeErrors(errors: readonly ErrorObject[]): string {
  const parts: string[] = [];
  let length = 0;
  for (const [index, error] of errors.entries()) {
    const part = describeError(error);
    if (length + part.length > MAX_REASON && parts.length > 0) {
      parts.push(`… and ${errors.length - index} more`);
      break;
    }
    parts.push(part);
    length += part.length + 2;
  }
  const text = parts.join('; ');
  return text.length > MAX_REASON ? `${text.slice(0, MAX_REASON - 1)}…` : text;
}

function describeError(error: ErrorObject): string {
  const params = error.params as Record<string, unknown>;
  let at = error.instancePath;
  // These rules report the parent object; name the field itself, as users think of it.
  if (typeof params.missingProperty === 'string') at += `/${escapePointer(params.missingProperty)}`;
  if (typeof params.additionalProperty === 'string') at += `/${escapePointer(params.additionalProperty)}`;
  let message = error.message ?? `must pass "${error.keyword}"`;
  if (error.keyword === 'enum' && Array.isArray(params.allowedValues)) {
    message += ` (${params.allowedValues.map((v) => JSON.stringify(v)).join(', ')})`;
  } else if (error.keyword === 'const') {
    message += ` (${JSON.stringify(params.allowedValue)})`;
  }
  return `${at || '/'}: ${message}`;
}

function escapePointer(name: string): string {
  return name.replace(/~/g, '~0').replace(/\//g, '~1');
}
