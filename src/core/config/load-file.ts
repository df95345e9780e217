/**
 * Reads one YAML configuration file and validates it against a component's zod schema. Every error names
 * the file and line, says what was expected, and for an unknown key suggests the closest known one.
 *
 * A value whose placeholder cannot be resolved (a variable not set, a secret file not readable) either
 * fails the load (`unresolved: 'throw'`, the default) or is deferred (`'defer'`, how tributary.yaml is
 * read): the file loads, every other value validated as usual, and reading that value throws its error.
 * Deferred by value rather than by file or top-level section, so that a command stops exactly when it
 * reads what it cannot have: `tributary run` reads server.stall_after but not server.tls, `keys create`
 * the names of the streams but not their HMAC secrets. See validateDeferring for how such a value is
 * validated.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isNode, LineCounter, parseDocument, visit, type Document } from 'yaml';
import type { z } from 'zod';
import { TributaryError } from '../../errors.ts';
import { exactInteger, isBigInteger } from '../json.ts';
import { didYouMean } from '../../did-you-mean.ts';
import {
  substitutePlaceholders,
  type PlaceholderContext,
  type SecretPaths,
  type UnresolvedValue,
} from './placeholders.ts';

export type { UnresolvedValue } from './placeholders.ts';

export interface LoadedFile<T> {
  readonly file: string;
  /** With unresolved values deferred: reading one of them (see `unresolved`) throws its error. */
  readonly value: T;
  /** Values that came from `${file:...}` secrets, redacted when printed. */
  readonly secretPaths: SecretPaths;
  /**
   * The parts of `value` that depend on an unresolved placeholder, in the order of the file, with its
   * errors; reading one throws the first. Empty unless `unresolved: 'defer'`.
   */
  readonly unresolved: readonly UnresolvedValue[];
}

export interface LoadOptions {
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** What an unresolved placeholder does: fail the load (the default), or fail the value's readers. */
  readonly unresolved?: 'throw' | 'defer';
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
  const { doc, context } = parseYaml(text, file, options);
  const { secretPaths, unresolved: unresolvedScalars } = substitutePlaceholders(doc, context);
  const first = unresolvedScalars[0]?.errors[0];
  if (first && options.unresolved !== 'defer') throw first;
  keepBigIntegers(doc);
  const raw: unknown = doc.toJS() ?? {};
  const { value, unresolved } = validateDeferring(raw, unresolvedScalars, {
    display: context.file,
    doc,
    lineCounter: context.lineCounter,
    schema,
  });
  return { file, value: value as z.output<S>, secretPaths, unresolved };
}

/**
 * Every placeholder of a configuration file that cannot be resolved, in the order of the file, without
 * validating it: for the commands that report them all (`config check`, `doctor`) rather than stop at the first.
 */
export function findUnresolvedPlaceholders(file: string, options: LoadOptions = {}): TributaryError[] {
  const { doc, context } = parseYaml(readFileSync(file, 'utf8'), file, options);
  return substitutePlaceholders(doc, context).unresolved.flatMap((value) => value.errors);
}

function parseYaml(
  text: string,
  file: string,
  options: LoadOptions,
): { doc: Document; context: PlaceholderContext } {
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
  return {
    doc,
    context: { file: display, lineCounter, env: options.env ?? process.env, baseDir: path.dirname(file) },
  };
}

type Path = ReadonlyArray<string | number>;

/**
 * Validates a file, some of whose values may be unresolved, and makes each of those a getter that throws.
 *
 * An unresolved value cannot be validated: its type is only known once it resolves (`port: ${PORT}` is a
 * number when PORT is set). So it is left out of validation, and so is a list it is an item of (leaving out
 * one item would renumber the others). Where leaving it out makes what holds it invalid — a required key,
 * a union that no longer matches — that is left out instead, up to the top level, where the file cannot load
 * at all. Everything else is validated at once as usual; an unknown key, even next to an unresolved value, is
 * a typo and fails the load. In the validated value, what was left out is a getter that throws the first
 * error of its placeholders, whatever default validation gave it.
 */
function validateDeferring(
  raw: unknown,
  scalars: readonly UnresolvedValue[],
  context: Omit<IssueContext, 'raw'>,
): { value: unknown; unresolved: UnresolvedValue[] } {
  let deferred: UnresolvedValue[] = [];
  for (const scalar of scalars) {
    const owner = listOwner(scalar.path);
    if (owner.length === 0) throw scalar.errors[0]!; // an item of a file that is a list: nothing to defer
    deferred = defer(deferred, owner, scalar.errors);
  }
  for (;;) {
    const input = deferred.reduce((node, { path: at }) => withoutValueAt(node, at, 0), raw);
    const result = context.schema.safeParse(input);
    if (result.success) {
      for (const entry of deferred) throwWhenRead(result.data, entry);
      return { value: result.data, unresolved: deferred };
    }
    const real: z.core.$ZodIssue[] = [];
    const holders: Path[] = [];
    for (const issue of result.error.issues) {
      const at = issue.path as Path;
      const left =
        issue.code === 'unrecognized_keys' ? undefined : deferred.find((d) => isPrefix(at, d.path));
      if (!left) real.push(issue);
      // Failed at a value left out (it is required): what holds it is left out too. Failed above one (a
      // union that no longer matches, a refinement of its object): that is left out.
      else holders.push(at.length === left.path.length ? at.slice(0, -1) : at);
    }
    if (real.length > 0) throw issueToError(real, { ...context, raw: input });
    const before = deferred;
    for (const holder of holders) {
      const owner = listOwner(holder);
      if (owner.length === 0) throw deferred.find((d) => isPrefix(holder, d.path))!.errors[0]!;
      deferred = defer(deferred, owner, []);
    }
    // Nothing more to leave out, yet still invalid (cannot happen with the schemas of today): say why.
    if (deferred.length === before.length && deferred.every((d, i) => d.path === before[i]!.path))
      throw issueToError(result.error.issues, { ...context, raw: input });
  }
}

/** `at`, or the list it is in, or the list that one is in… (a list item cannot be left out alone). */
function listOwner(at: Path): Path {
  let end = at.length;
  while (end > 0 && typeof at[end - 1] === 'number') end--;
  return at.slice(0, end);
}

function isPrefix(prefix: ReadonlyArray<PropertyKey>, at: ReadonlyArray<PropertyKey>): boolean {
  return prefix.length <= at.length && prefix.every((part, i) => String(part) === String(at[i]));
}

/** The deferred values with `at` added: one entry for `at` and everything below it. */
function defer(
  deferred: readonly UnresolvedValue[],
  at: Path,
  errors: readonly TributaryError[],
): UnresolvedValue[] {
  const holder = deferred.find((d) => isPrefix(d.path, at));
  const merged = (entries: readonly UnresolvedValue[]): UnresolvedValue => ({
    path: holder?.path ?? at,
    errors: [...entries.flatMap((e) => e.errors), ...errors].sort(byLine),
  });
  if (holder) return deferred.map((d) => (d === holder ? merged([d]) : d));
  const below = deferred.filter((d) => isPrefix(at, d.path));
  return [...deferred.filter((d) => !below.includes(d)), merged(below)].sort((a, b) =>
    byLine(a.errors[0], b.errors[0]),
  );
}

function byLine(a: TributaryError | undefined, b: TributaryError | undefined): number {
  return Number(a?.context.line ?? 0) - Number(b?.context.line ?? 0);
}

/** A copy of `node` without the value at `at` (only what leads to it is copied). */
function withoutValueAt(node: unknown, at: Path, depth: number): unknown {
  if (!node || typeof node !== 'object') return node;
  const key = String(at[depth]);
  if (!Object.hasOwn(node, key)) return node;
  const copy = (Array.isArray(node) ? [...(node as unknown[])] : { ...node }) as Record<string, unknown>;
  if (depth === at.length - 1) delete copy[key];
  else copy[key] = withoutValueAt(copy[key], at, depth + 1);
  return copy;
}

/** Makes the value at `entry.path` (or what holds it, where validation left no place for it) throw. */
function throwWhenRead(value: unknown, entry: UnresolvedValue): void {
  const error = entry.errors[0]!;
  if (!value || typeof value !== 'object') throw error;
  let holder = value as Record<string, unknown>;
  let key = String(entry.path[0]);
  for (let depth = 1; depth < entry.path.length; depth++) {
    const next = holder[key];
    if (!next || typeof next !== 'object') break;
    holder = next as Record<string, unknown>;
    key = String(entry.path[depth]);
  }
  Object.defineProperty(holder, key, {
    enumerable: true,
    configurable: true,
    get(): never {
      throw error;
    },
  });
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
  // Before it, a value the schema explains (`catalog.type: rest`, planned, not built): the keys written for
  // that kind (`credential`) are unknown because of it.
  const rank = (issue: z.core.$ZodIssue) =>
    issue.code === 'invalid_value' && hasOwnMessage(issue) ? 2 : issue.code === 'unrecognized_keys' ? 1 : 0;
  const ordered = [...issues].sort((a, b) => rank(b) - rank(a));
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
    case 'invalid_value': {
      const allowed = `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
      // A schema's own message (a backend that is planned, not built) says why the value is not one of them.
      return hasOwnMessage(issue) ? `${allowed} — ${issue.message}` : allowed;
    }
    case 'invalid_union':
      // A schema's own message (a component type that is none of the registered ones) says more.
      return issue.message && issue.message !== 'Invalid input'
        ? issue.message
        : 'does not match any of the allowed forms';
    default:
      return issue.message.replace(/^Invalid input: /, '');
  }
}

/** The issue carries its schema's own message, not zod's default ("Invalid input: …", "Invalid option: …"). */
function hasOwnMessage(issue: z.core.$ZodIssue): boolean {
  return issue.message !== '' && !issue.message.startsWith('Invalid ');
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
