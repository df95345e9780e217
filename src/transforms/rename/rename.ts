/**
 * `rename`: renames fields where they are (`user.mail` → `email` gives `user.email`), keeping their place
 * among the other keys. Renames in one object apply together, so `{ a: b, b: a }` swaps two fields.
 */
import { z } from 'zod';
import type { ComponentDefinition } from '../../core/pipeline/components.ts';
import type { PipelineRecord, Transform } from '../../core/pipeline/model.ts';
import { fieldMap, parseFieldPath, replaceObjectAt, type FieldPath } from '../shared/field-path.ts';
import type { JsonObject } from '../shared/json-value.ts';

const newName = z
  .string()
  .min(1)
  .refine((name) => !name.includes('.'), 'a new name, not a path: the field stays in the same object')
  .refine((name) => name !== '__proto__', 'this name cannot be a field name here');

// Also the `type` field's description: the generated reference shows that one.
const SUMMARY = 'Renames fields in place; nested fields keep their parent object.';

const schema = z
  .strictObject({
    type: z.literal('rename').describe(SUMMARY),
    fields: fieldMap(
      newName,
      'Field → its new name (a name, not a path: the field stays in its object). A missing field is ' +
        'skipped; an existing field of the new name is replaced.',
    ).superRefine((fields, ctx) => {
      const seen = new Map<string, string>();
      for (const [from, to] of Object.entries(fields)) {
        const target = [...parseFieldPath(from).slice(0, -1), to].join('.');
        const other = seen.get(target);
        if (other)
          ctx.addIssue({ code: 'custom', path: [from], message: `${other} is also renamed to ${target}` });
        seen.set(target, from);
      }
    }),
  })
  .describe(SUMMARY);

/** The renames of one object: its path and old name → new name. */
interface ObjectRenames {
  readonly parent: FieldPath;
  readonly names: ReadonlyMap<string, string>;
}

export const renameTransform: ComponentDefinition<'transform', typeof schema> = {
  kind: 'transform',
  type: 'rename',
  schema,
  async create(config) {
    const plan = planRenames(config.fields);
    const transform: Transform = {
      name: 'rename',
      async process(records: readonly PipelineRecord[]) {
        return {
          records: records.map((record) => ({ ...record, value: applyRenames(record.value, plan) })),
          rejected: [],
        };
      },
    };
    return transform;
  },
};

/** Renames grouped by object, deepest objects first: renaming inside `a` leaves the path of `a` valid. */
function planRenames(fields: Readonly<Record<string, string>>): ObjectRenames[] {
  const byParent = new Map<string, { parent: FieldPath; names: Map<string, string> }>();
  for (const [from, to] of Object.entries(fields)) {
    const path = parseFieldPath(from);
    const parent = path.slice(0, -1);
    const key = parent.join('.');
    const group = byParent.get(key) ?? { parent, names: new Map<string, string>() };
    group.names.set(path[path.length - 1] ?? from, to);
    byParent.set(key, group);
  }
  return [...byParent.values()].sort((a, b) => b.parent.length - a.parent.length);
}

function applyRenames(value: JsonObject, plan: readonly ObjectRenames[]): JsonObject {
  let result = value;
  for (const { parent, names } of plan) {
    result = replaceObjectAt(result, parent, (object) => renameKeys(object, names));
  }
  return result;
}

function renameKeys(object: JsonObject, names: ReadonlyMap<string, string>): JsonObject {
  if (![...names.keys()].some((name) => Object.hasOwn(object, name))) return object;
  const renamedTo = new Set<string>();
  for (const [from, to] of names) if (Object.hasOwn(object, from)) renamedTo.add(to);
  const entries: Array<[string, unknown]> = [];
  for (const [key, child] of Object.entries(object)) {
    const to = names.get(key);
    if (to !== undefined) entries.push([to, child]);
    else if (!renamedTo.has(key)) entries.push([key, child]); // replaced by a renamed field
  }
  return Object.fromEntries(entries);
}
