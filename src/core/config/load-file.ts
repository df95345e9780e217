/**
 * Reads one YAML configuration file and validates it against a component's zod schema. Every error names
 * the file and line, says what was expected, and for an unknown key suggests the closest known one.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isNode, LineCounter, parseDocument, visit, type Document } from 'yaml';
import type { z } from 'zod';
import { TributaryError } from '../../errors.ts';
import { exactInteger, isBigInteger } from '../json.ts';
import { didYouMean } from '../../did-you-mean.ts';
import { substitutePlaceholders, type SecretPaths } from './placeholders.ts';

export interface LoadedFile<T> {
  readonly file: string;
  readonly value: T;
  /** Values that came from `${file:...}` secrets, redacted when printed. */
  readonly secretPaths: SecretPaths;
}

export interface LoadOptions {
  readonly env?: Readonly<Record<string, string | undefined>>;
}

export function loadConfigFile<S extends z.ZodType>(
  file: string,
  schema: S,
  options: LoadOptions = {},
): LoadedFile<z.output<S>> {
  const text = readFileSync(file, 'utf8');
  return parseConfigText(text, file, schema, options);
}

export function parseConfigText<S extends z.ZodType>(
  text: string,
  file: string,
  schema: S,
  options: LoadOptions = {},
): LoadedFile<z.output<S>> {
  const display = path.relative(process.cwd(), file) || file;
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const syntaxError = doc.errors[0];
  if (syntaxError) {
    const line = lineCounter.linePos(syntaxError.pos[0]).line;
    throw new TributaryError('CONFIG_SYNTAX', `${display}:${line}: ${firstLine(syntaxError.message)}`, {
      context: { file: display, line },
      hint: 'fix the YAML syntax (indentation, quotes, a missing colon)',
    });
  }
  const secretPaths = substitutePlaceholders(doc, {
    file: display,
    lineCounter,
    env: options.env ?? process.env,
    baseDir: path.dirname(file),
  });
  keepBigIntegers(doc);
  const raw: unknown = doc.toJS() ?? {};
  const result = schema.safeParse(raw);
  if (!result.success) throw issueToError(result.error.issues, { display, doc, lineCounter, schema, raw });
  return { file, value: result.data, secretPaths };
}

/**
 * Integers beyond ±2^53 written in decimal keep every digit, as BigIntegers (core/json.ts; a filter may
 * compare a field with one): YAML reads them as doubles. Settings that take a number refuse them.
 */
function keepBigIntegers(doc: Document): void {
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value !== 'number' || Number.isSafeInteger(node.value)) return;
      if (typeof node.source === 'string' && /^[-+]?\d+$/.test(node.source))
        node.value = exactInteger(BigInt(node.source));
    },
  });
}

interface IssueContext {
  readonly display: string;
  readonly doc: Document;
  readonly lineCounter: LineCounter;
  readonly schema: z.ZodType;
  readonly raw: unknown;
}

function issueToError(issues: readonly z.core.$ZodIssue[], context: IssueContext): TributaryError {
  // An unknown key is usually a typo, and the typo also causes "missing required" issues: report it first.
  const ordered = [...issues].sort(
    (a, b) => Number(b.code === 'unrecognized_keys') - Number(a.code === 'unrecognized_keys'),
  );
  const issue = ordered[0];
  if (!issue) return new TributaryError('INTERNAL', 'configuration failed validation without an issue');
  const more =
    ordered.length > 1 ? ` (and ${ordered.length - 1} more problem${ordered.length > 2 ? 's' : ''})` : '';
  const where = describePath(issue.path);

  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? '';
    const line = lineOf(context, [...issue.path, key], true);
    const known = knownKeys(context.schema, context.raw, issue.path);
    const suggestion = didYouMean(key, known);
    const hint = suggestion
      ? `did you mean "${suggestion}"?`
      : `known keys here: ${[...known].sort().join(', ') || '(none)'}`;
    return new TributaryError(
      'CONFIG_UNKNOWN_KEY',
      `${context.display}:${line}: unknown key "${key}" in ${where}${more}`,
      { context: { file: context.display, line, key, path: issue.path }, hint },
    );
  }

  const line = lineOf(context, issue.path, false);
  const input = valueAt(context.raw, issue.path);
  if (isBigInteger(input)) {
    return new TributaryError(
      'CONFIG_INVALID',
      `${context.display}:${line}: ${where}: ${input.rawJSON} is beyond ±2^53, which this setting cannot hold exactly${more}`,
      {
        context: { file: context.display, line, path: issue.path },
        hint: 'use a number from -9007199254740991 to 9007199254740991',
      },
    );
  }
  const message = describeIssue(issue, input);
  return new TributaryError('CONFIG_INVALID', `${context.display}:${line}: ${where}: ${message}${more}`, {
    context: { file: context.display, line, path: issue.path },
    hint: hintFor(issue, input),
  });
}

function valueAt(data: unknown, issuePath: ReadonlyArray<PropertyKey>): unknown {
  let value = data;
  for (const part of issuePath) {
    value = value && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[part] : undefined;
  }
  return value;
}

function describeIssue(issue: z.core.$ZodIssue, input: unknown): string {
  switch (issue.code) {
    case 'invalid_type':
      return input === undefined
        ? `is required (${issue.expected})`
        : `expected ${issue.expected}, got ${typeName(input)}`;
    case 'invalid_value':
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'invalid_union':
      // A schema's own message (a component type that is none of the registered ones) says more.
      return issue.message && issue.message !== 'Invalid input'
        ? issue.message
        : 'does not match any of the allowed forms';
    default:
      return issue.message.replace(/^Invalid input: /, '');
  }
}

function hintFor(issue: z.core.$ZodIssue, input: unknown): string | undefined {
  if (issue.code === 'invalid_type' && issue.expected === 'string' && typeof input === 'number') {
    return 'quote the value (for a placeholder: "${VAR}") to keep it a string';
  }
  if (issue.code === 'invalid_type' && input === undefined) return 'add the missing key';
  return 'see `tributary config schema` or docs/reference/configuration.md';
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${JSON.stringify(value)}`;
}

function describePath(issuePath: ReadonlyArray<PropertyKey>): string {
  if (issuePath.length === 0) return 'the top level';
  return issuePath
    .map((part) => (typeof part === 'number' ? `[${part}]` : String(part)))
    .join('.')
    .replace(/\.\[/g, '[');
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}

/** The line of the node at `issuePath`, or of its closest existing ancestor. */
function lineOf(context: IssueContext, issuePath: ReadonlyArray<PropertyKey>, wantKey: boolean): number {
  for (let length = issuePath.length; length >= 0; length--) {
    const prefix = issuePath.slice(0, length) as Array<string | number>;
    if (wantKey && length === issuePath.length && length > 0) {
      const parent = prefix.length > 1 ? context.doc.getIn(prefix.slice(0, -1), true) : context.doc.contents;
      const keyNode = findKeyNode(parent, prefix[prefix.length - 1]);
      if (keyNode?.range) return context.lineCounter.linePos(keyNode.range[0]).line;
    }
    const node = prefix.length === 0 ? context.doc.contents : context.doc.getIn(prefix, true);
    if (isNode(node) && node.range) return context.lineCounter.linePos(node.range[0]).line;
  }
  return 1;
}

function findKeyNode(
  parent: unknown,
  key: string | number | undefined,
): { range?: [number, number, number] | null } | undefined {
  if (!parent || typeof parent !== 'object' || !('items' in parent) || !Array.isArray(parent.items))
    return undefined;
  for (const item of parent.items as unknown[]) {
    if (item && typeof item === 'object' && 'key' in item) {
      const keyNode = item.key;
      if (isNode(keyNode) && 'value' in keyNode && keyNode.value === key) return keyNode;
    }
  }
  return undefined;
}

/** The keys an object schema allows at `issuePath`, following the data through unions and wrappers. */
export function knownKeys(
  schema: z.ZodType,
  data: unknown,
  issuePath: ReadonlyArray<PropertyKey>,
): Set<string> {
  let current: z.ZodType | undefined = schema;
  let value: unknown = data;
  for (const part of issuePath) {
    current = unwrap(current, value);
    value = value && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[part] : undefined;
    current = current ? childOf(current, part) : undefined;
    if (!current) return new Set();
  }
  const target = unwrap(current, value);
  return new Set(target && target.def.type === 'object' ? Object.keys((target as z.ZodObject).shape) : []);
}

function unwrap(schema: z.ZodType | undefined, value: unknown): z.ZodType | undefined {
  let current = schema;
  for (let depth = 0; current && depth < 20; depth++) {
    const def = current.def as unknown as Record<string, unknown> & { type: string };
    if (
      def.type === 'optional' ||
      def.type === 'default' ||
      def.type === 'nullable' ||
      def.type === 'prefault'
    ) {
      current = def.innerType as z.ZodType;
    } else if (def.type === 'pipe') {
      current = def.in as z.ZodType;
    } else if (def.type === 'union') {
      current = pickUnionOption(def.options as z.ZodType[], value);
    } else {
      return current;
    }
  }
  return current;
}

function pickUnionOption(options: z.ZodType[], value: unknown): z.ZodType | undefined {
  const objects = options
    .map((o) => unwrap(o, value))
    .filter((o): o is z.ZodObject => o?.def.type === 'object');
  if (value && typeof value === 'object') {
    // A discriminated union: the option whose literal fields match the data.
    for (const option of objects) {
      const matches = Object.entries(option.shape).some(([key, field]) => {
        const def = (field as z.ZodType).def as unknown as { type: string; values?: unknown[] };
        return def.type === 'literal' && def.values?.includes((value as Record<string, unknown>)[key]);
      });
      if (matches) return option;
    }
  }
  return objects[0];
}

function childOf(schema: z.ZodType, part: PropertyKey): z.ZodType | undefined {
  const def = schema.def as unknown as Record<string, unknown> & { type: string };
  if (def.type === 'object') return (schema as z.ZodObject).shape[String(part)] as z.ZodType | undefined;
  if (def.type === 'array') return def.element as z.ZodType;
  if (def.type === 'record') return def.valueType as z.ZodType;
  return undefined;
}
