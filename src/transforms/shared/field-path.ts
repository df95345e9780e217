/**
 * Dotted field paths ("user.address.city") into record values: read, replace and delete nested fields
 * without mutating the input. Records may still be referenced elsewhere (a rejection carries the record
 * as it came in), so every change copies only the objects along the path.
 */
import { z } from 'zod';
import { isPlainObject, type JsonObject } from './json-value.ts';

export type FieldPath = readonly string[];

// Segments that would reach Object.prototype instead of a field when assigned.
const FORBIDDEN_SEGMENTS = new Set(['__proto__', 'constructor', 'prototype']);

/** Why `text` is not a field path, or undefined when it is one. */
export function fieldPathProblem(text: string): string | undefined {
  if (text === '') return 'a field path cannot be empty';
  const segments = text.split('.');
  if (segments.some((s) => s === '')) return `"${text}" has an empty segment: write e.g. "user.id"`;
  const forbidden = segments.find((s) => FORBIDDEN_SEGMENTS.has(s));
  if (forbidden) return `"${text}" uses "${forbidden}", which cannot be a field name here`;
  return undefined;
}

export function parseFieldPath(text: string): FieldPath {
  return text.split('.');
}

/** A field path in configuration: names of nested objects joined by dots. */
export function fieldPath(description: string) {
  return z
    .string()
    .superRefine((text, ctx) => {
      const problem = fieldPathProblem(text);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .describe(`${description} A dotted path such as "user.id" reaches nested objects.`);
}

/** A map whose keys are field paths, with at least one entry. */
export function fieldMap<Value extends z.ZodType>(value: Value, description: string) {
  return z
    .record(z.string(), value)
    .superRefine((fields, ctx) => {
      const keys = Object.keys(fields);
      if (keys.length === 0) ctx.addIssue({ code: 'custom', message: 'list at least one field' });
      for (const key of keys) {
        const problem = fieldPathProblem(key);
        if (problem) ctx.addIssue({ code: 'custom', message: problem, path: [key] });
      }
    })
    .describe(`${description} Keys are dotted paths such as "user.id" that reach nested objects.`);
}

/** Whether the field exists (it may hold null). */
export function hasField(value: JsonObject, path: FieldPath): boolean {
  return lookup(value, path).found;
}

/** The field's value, or undefined when it is missing (or a parent is not an object). */
export function getField(value: JsonObject, path: FieldPath): unknown {
  return lookup(value, path).value;
}

function lookup(value: JsonObject, path: FieldPath): { found: boolean; value: unknown } {
  let current: unknown = value;
  for (const segment of path) {
    if (!isPlainObject(current) || !Object.hasOwn(current, segment))
      return { found: false, value: undefined };
    current = current[segment];
  }
  return { found: true, value: current };
}

/**
 * A copy of `value` with the field at `path` replaced. Returns `value` itself when a parent is missing
 * or not an object: callers only replace fields they found.
 */
export function setField(value: JsonObject, path: FieldPath, replacement: unknown): JsonObject {
  return updateAt(value, path, (parent, name) => ({ ...parent, [name]: replacement }));
}

/** A copy of `value` without the field at `path`, or `value` itself when there is no such field. */
export function deleteField(value: JsonObject, path: FieldPath): JsonObject {
  return updateAt(value, path, (parent, name) => {
    if (!Object.hasOwn(parent, name)) return parent;
    const copy = { ...parent };
    delete copy[name];
    return copy;
  });
}

/** Replaces the object at `path` (the root for an empty path) with `change(object)`, copying its parents. */
export function replaceObjectAt(
  value: JsonObject,
  path: FieldPath,
  change: (object: JsonObject) => JsonObject,
): JsonObject {
  if (path.length === 0) return change(value);
  const [head, ...rest] = path as [string, ...string[]];
  const child = Object.hasOwn(value, head) ? value[head] : undefined;
  if (!isPlainObject(child)) return value;
  const changed = replaceObjectAt(child, rest, change);
  return changed === child ? value : { ...value, [head]: changed };
}

function updateAt(
  value: JsonObject,
  path: FieldPath,
  change: (parent: JsonObject, name: string) => JsonObject,
): JsonObject {
  const name = path[path.length - 1];
  if (name === undefined) return value;
  return replaceObjectAt(value, path.slice(0, -1), (parent) => change(parent, name));
}
