/**
 * YAML configuration beside the models, validated by a zod schema: errors name the file and line and say
 * what was expected. `${VAR}` and `${VAR:-default}` in string values are replaced from the environment
 * (value by value, after parsing, so a variable cannot change the structure of the file).
 */
import path from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import { toJSONSchema, type z } from 'zod';
import { didYouMean } from '../../did-you-mean.ts';
import { TributaryError } from '../../errors.ts';

export interface YamlSource {
  /** The file, for messages. */
  readonly file: string;
  readonly text: string;
  /** Lines to add to line numbers (the text was cut from a larger file, e.g. a SQL header). */
  readonly lineOffset?: number;
  readonly env?: Readonly<Record<string, string | undefined>>;
}

const PLACEHOLDER = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

function display(file: string): string {
  return path.relative(process.cwd(), file) || file;
}

export function parseYamlConfig<S extends z.ZodType>(source: YamlSource, schema: S): z.output<S> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(source.text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const offset = source.lineOffset ?? 0;
  const where = (pos: number | undefined) =>
    `${display(source.file)}:${(pos === undefined ? 1 : lineCounter.linePos(pos).line) + offset}`;
  const syntax = doc.errors[0];
  if (syntax) {
    throw new TributaryError('CONFIG_SYNTAX', `${where(syntax.pos[0])}: ${syntax.message.split('\n')[0]}`, {
      hint: 'fix the YAML syntax (indentation, quotes, a missing colon)',
    });
  }
  const env = source.env ?? process.env;
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return;
      node.value = node.value.replace(PLACEHOLDER, (match, name: string | undefined, fallback?: string) => {
        if (match === '$${') return '${';
        const value = env[name!] ?? fallback;
        if (value === undefined) {
          throw new TributaryError(
            'CONFIG_UNRESOLVED_VARIABLE',
            `${where(node.range?.[0])}: \${${name}} is not set`,
            { hint: `set the environment variable ${name}, or write \${${name}:-default}` },
          );
        }
        return value;
      });
    },
  });
  const raw: unknown = doc.toJS() ?? {};
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const issue = [...result.error.issues].sort(
    (a, b) => Number(b.code === 'unrecognized_keys') - Number(a.code === 'unrecognized_keys'),
  )[0]!;
  const keys = issue.code === 'unrecognized_keys' ? issue.keys : [];
  const at = [...issue.path, ...(keys.length ? [keys[0]!] : [])] as Array<string | number>;
  const node = nodeAt(doc, at, keys.length > 0);
  const label = at.length ? at.join('.') : '(top level)';
  const message =
    issue.code === 'unrecognized_keys'
      ? `unknown key "${keys[0]}"`
      : issue.code === 'invalid_union'
        ? 'is not one of the accepted forms'
        : issue.message;
  // An unknown key, or the key of a one-key form (a data test) that is none of the forms': the likely one.
  const given = valueAt(raw, issue.path);
  const unknown =
    keys[0] ??
    (issue.code === 'invalid_union' && given && typeof given === 'object' && !Array.isArray(given)
      ? Object.keys(given)[0]
      : undefined);
  const suggestion = unknown === undefined ? undefined : didYouMean(unknown, keysAt(schema, issue.path));
  throw new TributaryError('CONFIG_INVALID', `${where(node?.range?.[0])}: ${label}: ${message}`, {
    hint: suggestion
      ? `did you mean "${suggestion}"?`
      : 'see docs/models.md and docs/reference/models.md for the accepted keys',
  });
}

function valueAt(value: unknown, at: ReadonlyArray<PropertyKey>): unknown {
  for (const step of at)
    value = value && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[step] : undefined;
  return value;
}

/** The keys the object at `at` (a path into the configuration) may have, from the schema. */
function keysAt(schema: z.ZodType, at: ReadonlyArray<PropertyKey>): string[] {
  type Json = {
    properties?: Record<string, Json>;
    additionalProperties?: Json | boolean;
    items?: Json;
    anyOf?: Json[];
    oneOf?: Json[];
  };
  const options = (json: Json): Json[] => [json, ...(json.anyOf ?? []), ...(json.oneOf ?? [])];
  const entry = (json: Json): Json[] =>
    typeof json.additionalProperties === 'object' ? [json.additionalProperties] : [];
  let nodes: Json[] = [toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Json];
  for (const step of at) {
    nodes = nodes
      .flatMap(options)
      .flatMap((json) =>
        typeof step === 'number' ? (json.items ?? []) : (json.properties?.[String(step)] ?? entry(json)),
      );
  }
  return [...new Set(nodes.flatMap(options).flatMap((json) => Object.keys(json.properties ?? {})))];
}

function nodeAt(doc: Document, at: ReadonlyArray<string | number>, wantKey: boolean): Node | undefined {
  let node: unknown = doc.contents;
  for (const [i, step] of at.entries()) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(step));
      if (!pair) return node;
      if (wantKey && i === at.length - 1) return pair.key as Node;
      node = pair.value;
    } else if (isSeq(node)) {
      node = node.items[Number(step)] ?? node;
    } else break;
  }
  return node as Node | undefined;
}
