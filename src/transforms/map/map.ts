/**
 * `map`: a function from a module of the project rewrites each record's value. It returns the new value
 * (an object), several (an array of objects, which keep the source record's position), or null/undefined
 * to drop the record. A throw, or a result that is not JSON objects, sends that record to the DLQ.
 * Integers beyond ±2^53 reach the function as bigints (exact), and bigints it returns become exact JSON
 * integers.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import type { ComponentDefinition } from '../../core/pipeline/components.ts';
import {
  exactInteger,
  isBigInteger,
  parseJsonExact,
  replaceBigIntegers,
  replaceLeaves,
} from '../../core/json.ts';
import type { PipelineRecord, Rejection, Transform } from '../../core/pipeline/model.ts';
import { TributaryError } from '../../errors.ts';
import { capReason, isPlainObject, nonJsonProblem, typeName, type JsonObject } from '../shared/json-value.ts';
import { resolveProjectPath } from '../shared/project-path.ts';

/** What the function gets besides the value. */
export interface MapContext {
  readonly key: string | null;
  readonly partition: number;
  readonly offset: number;
  readonly timestamp: number;
  readonly headers: Readonly<Record<string, string>>;
}

export type MapFunction = (value: JsonObject, context: MapContext) => unknown;

const MODULE_EXTENSION = /\.(m?js|cjs|m?ts)$/;

// Also the `type` field's description: the generated reference shows that one.
const SUMMARY =
  'Calls `fn(value, { key, partition, offset, timestamp, headers })` for each record, sync or async, one ' +
  'record at a time in order. Return an object (the new value), an array of objects (one record becomes ' +
  'several, at the same position), or null/undefined (drop it). A throw or any other result sends the ' +
  'record to the DLQ. Integers beyond ±2^53 are bigints, both ways.';

const schema = z
  .strictObject({
    type: z.literal('map').describe(SUMMARY),
    module: z
      .string()
      .regex(MODULE_EXTENSION, 'must be a .js, .mjs, .cjs, .ts or .mts file')
      .describe('Path of the module (.js, .mjs, .cjs, .ts or .mts), relative to the project.'),
    function: z
      .string()
      .min(1)
      .optional()
      .describe('Name of the exported function (default: the default export).'),
  })
  .describe(SUMMARY);

export const mapTransform: ComponentDefinition<'transform', typeof schema> = {
  kind: 'transform',
  type: 'map',
  schema,
  async create(config, context) {
    const file = resolveProjectPath(context.projectRoot, config.module);
    const fn = await loadFunction(file, config.function ?? 'default');
    return new MapTransform(fn);
  },
};

class MapTransform implements Transform {
  readonly name = 'map';
  readonly #fn: MapFunction;

  constructor(fn: MapFunction) {
    this.#fn = fn;
  }

  async process(records: readonly PipelineRecord[]) {
    const passed: PipelineRecord[] = [];
    const rejected: Rejection[] = [];
    // One at a time: functions may keep state, and order within a partition must hold.
    for (const record of records) {
      const outcome = await this.#apply(record);
      if (typeof outcome === 'string') rejected.push({ record, stage: this.name, error: capReason(outcome) });
      else for (const value of outcome) passed.push({ ...record, value });
    }
    return { records: passed, rejected };
  }

  /** The new values, or why the record is rejected. */
  async #apply(record: PipelineRecord): Promise<JsonObject[] | string> {
    let result: unknown;
    try {
      // A copy: the function may mutate its argument, and a rejection must carry the record as it came in.
      // (structuredClone cannot copy a BigInteger: the function gets a bigint.)
      const argument = replaceBigIntegers(record.value, (integer) => BigInt(integer.rawJSON));
      result = await this.#fn(structuredClone(argument) as JsonObject, {
        key: record.key,
        partition: record.partition,
        offset: record.offset,
        timestamp: record.timestamp,
        headers: { ...record.headers },
      });
    } catch (error) {
      return `map function threw: ${error instanceof Error ? error.message : String(error)}`;
    }
    if (result === null || result === undefined) return [];
    const values = (Array.isArray(result) ? (result as unknown[]) : [result]).map(exactJson);
    for (const [index, value] of values.entries()) {
      const where = Array.isArray(result) ? `element ${index} of the returned array` : 'the returned value';
      if (!isPlainObject(value)) {
        return `map function returned ${typeName(value)} as ${where}: return an object, an array of objects, or null to drop the record`;
      }
      const problem = nonJsonProblem(value);
      if (problem) return `map function returned a value JSON cannot hold in ${where}: ${problem}`;
    }
    return values as JsonObject[];
  }
}

/**
 * `value` with bigints as exact JSON integers, and JSON.rawJSON values the function made read again (an
 * integer beyond ±2^53 becomes a BigInteger; any other is what its text says).
 */
function exactJson(value: unknown): unknown {
  return replaceLeaves(value, (leaf) =>
    typeof leaf === 'bigint' ? exactInteger(leaf) : isBigInteger(leaf) ? parseJsonExact(leaf.rawJSON) : leaf,
  );
}

async function loadFunction(file: string, name: string): Promise<MapFunction> {
  let exports: Record<string, unknown>;
  try {
    exports = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (error) {
    throw new TributaryError(
      'CONFIG_INVALID',
      `map: cannot load the module ${file}: ${(error as Error).message}`,
      {
        cause: error,
        context: { file },
        hint: 'Check the `module` path of the map transform (relative to the project root) and that the module runs.',
      },
    );
  }
  const fn = exports[name];
  if (typeof fn !== 'function') {
    const functions = Object.keys(exports).filter((key) => typeof exports[key] === 'function');
    throw new TributaryError(
      'CONFIG_INVALID',
      `map: ${path.basename(file)} has no ${name === 'default' ? 'default export that is a function' : `exported function "${name}"`}`,
      {
        context: { file, function: name },
        hint: functions.length
          ? `Set \`function\` to one of: ${functions.join(', ')}.`
          : 'Export the function from the module (`export default function (value) { … }`).',
      },
    );
  }
  return fn as MapFunction;
}
