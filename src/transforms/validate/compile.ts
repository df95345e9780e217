/** Compiles a JSON Schema with the ajv class its `$schema` asks for, and formats checked. */
import { Ajv, type Options, type ValidateFunction } from 'ajv';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsPlugin from 'ajv-formats';
import type { ComponentContext } from '../../core/pipeline/components.ts';
import { TributaryError } from '../../errors.ts';
import { isPlainObject } from '../shared/json-value.ts';

// ajv-formats is CommonJS: its default export is the plugin function itself.
const addFormats = addFormatsPlugin as unknown as (ajv: Ajv) => Ajv;

type Draft = '2020-12' | '2019-09' | 'draft-07';

export function compileSchema(
  jsonSchema: unknown,
  file: string,
  context: ComponentContext,
): ValidateFunction {
  if (!isPlainObject(jsonSchema) && typeof jsonSchema !== 'boolean') {
    throw invalid(file, 'it is not a JSON object');
  }
  const draft = draftOf(jsonSchema, file);
  const options: Options = {
    allErrors: true,
    // Unknown keywords (vendor extensions, typos) are logged rather than refused.
    strictSchema: 'log',
    logger: {
      log: (...args: unknown[]) => context.logger.debug({ file }, args.join(' ')),
      warn: (...args: unknown[]) => context.logger.warn({ file }, `validate: ${args.join(' ')}`),
      error: (...args: unknown[]) => context.logger.error({ file }, `validate: ${args.join(' ')}`),
    },
  };
  const ajv =
    draft === '2020-12'
      ? new Ajv2020(options)
      : draft === '2019-09'
        ? new Ajv2019(options)
        : new Ajv(options);
  addFormats(ajv);
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(jsonSchema);
  } catch (error) {
    throw invalid(file, (error as Error).message, error);
  }
  if ((validate as { $async?: boolean }).$async) throw invalid(file, '`$async` schemas are not supported');
  return validate;
}

function draftOf(jsonSchema: unknown, file: string): Draft {
  const declared = isPlainObject(jsonSchema) ? jsonSchema.$schema : undefined;
  if (declared === undefined) return '2020-12';
  if (typeof declared === 'string') {
    if (declared.includes('2020-12')) return '2020-12';
    if (declared.includes('2019-09')) return '2019-09';
    if (declared.includes('draft-07')) return 'draft-07';
  }
  throw invalid(file, `its $schema ${JSON.stringify(declared)} is not a supported draft`);
}

function invalid(file: string, reason: string, cause?: unknown): TributaryError {
  return new TributaryError('CONFIG_INVALID', `validate: the JSON Schema ${file} cannot be used: ${reason}`, {
    cause,
    context: { file },
    hint: 'Fix the schema file; supported drafts are 2020-12, 2019-09 and draft-07.',
  });
}
