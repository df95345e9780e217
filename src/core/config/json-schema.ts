/**
 * JSON Schema of the configuration files, derived from the zod schemas: for editor completion
 * (`tributary config schema`), the commented files `tributary init` writes, and the generated reference.
 */
import { stringify } from 'yaml';
import { z } from 'zod';
import { platformSchema } from './platform.ts';

export interface JsonSchema {
  readonly description?: string;
  readonly type?: string | string[];
  readonly properties?: Readonly<Record<string, JsonSchema>>;
  readonly required?: readonly string[];
  readonly items?: JsonSchema;
  readonly oneOf?: readonly JsonSchema[];
  readonly anyOf?: readonly JsonSchema[];
  readonly enum?: readonly unknown[];
  readonly const?: unknown;
  readonly default?: unknown;
  readonly [key: string]: unknown;
}

export function toJsonSchema(schema: z.ZodType): JsonSchema {
  return z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
}

/** The JSON Schemas of the configuration files, given the schemas of the registered components. */
export function configSchemas(
  pipelineSchema: z.ZodType,
  sourceSchema: z.ZodType,
): Record<'tributary.yaml' | 'pipelines/*.yaml' | 'sources/*.yaml', JsonSchema> {
  return {
    'tributary.yaml': toJsonSchema(platformSchema),
    'pipelines/*.yaml': toJsonSchema(pipelineSchema),
    'sources/*.yaml': toJsonSchema(sourceSchema),
  };
}

/** The branch of a oneOf/anyOf whose `const` fields match `value`, or the schema itself. */
export function branchFor(schema: JsonSchema, value: unknown): JsonSchema {
  const options = schema.oneOf ?? schema.anyOf;
  if (!options) return schema;
  const record = value && typeof value === 'object' ? (value as Record<string, unknown>) : {};
  return (
    options.find((option) =>
      Object.entries(option.properties ?? {}).some(
        ([key, prop]) => prop.const !== undefined && prop.const === record[key],
      ),
    ) ??
    options[0] ??
    schema
  );
}

/** `value` as YAML with each key preceded by its description as a comment. */
export function renderCommentedYaml(schema: JsonSchema, value: Record<string, unknown>, indent = 0): string {
  const pad = ' '.repeat(indent);
  const lines: string[] = [];
  const resolved = branchFor(schema, value);
  for (const [key, child] of Object.entries(value)) {
    if (child === undefined) continue;
    const property = resolved.properties?.[key];
    const description = property
      ? (branchFor(property, child).description ?? property.description)
      : undefined;
    if (description) lines.push(...wrap(description, 100 - indent).map((line) => `${pad}# ${line}`));
    if (child && typeof child === 'object' && !Array.isArray(child)) {
      lines.push(`${pad}${key}:`);
      lines.push(renderCommentedYaml(property ?? {}, child as Record<string, unknown>, indent + 2));
    } else {
      lines.push(`${pad}${key}: ${stringify(child, { lineWidth: 0 }).trimEnd()}`);
    }
    if (indent === 0) lines.push('');
  }
  // Keys without a default (optional sections: server.tls, streams…), commented out, with what they hold.
  for (const [key, property] of Object.entries(resolved.properties ?? {})) {
    if (key in value) continue;
    if (property.description)
      lines.push(...wrap(property.description, 100 - indent).map((line) => `${pad}# ${line}`));
    // Long outlines go on over lines, after their commas.
    const [first = '', ...rest] = `${key}: ${outline(property)}`.split(/(?<=,) /);
    let line = `${pad}# ${first}`;
    for (const part of rest) {
      if (line.length + part.length + 1 > 100) {
        lines.push(line);
        line = `${pad}#   ${part}`;
      } else line += ` ${part}`;
    }
    lines.push(line);
    if (indent === 0) lines.push('');
  }
  return lines.join('\n');
}

/** What an optional key takes, in a line: an object's keys, a map's entries, or its type. */
function outline(schema: JsonSchema): string {
  const object = (schema.anyOf ?? schema.oneOf ?? [schema]).find((option) => option.type === 'object');
  if (object?.properties) return `{${Object.keys(object.properties).join(': …, ')}: …}`;
  if (object && typeof object.additionalProperties === 'object')
    return `{<name>: ${outline(object.additionalProperties as JsonSchema)}}`;
  const type = schema.type ?? (schema.anyOf ?? schema.oneOf)?.map((option) => option.type).find(Boolean);
  return `<${Array.isArray(type) ? type.join(' | ') : (type ?? 'value')}>`;
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && line.length + word.length + 1 > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}
