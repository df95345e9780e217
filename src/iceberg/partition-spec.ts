/**
 * Partition specs: parsing the CLI's partition expressions ("day(ts), bucket(16, user_id)"), assigning
 * partition field ids, and computing a row's partition tuple, its type and its path
 * (`ts_day=2024-01-31/user_id_bucket=3`), following Java's conventions so other engines agree.
 */
import { TributaryError } from '../errors.ts';
import type { PartitionField, PartitionSpec } from './metadata.ts';
import {
  columnNames,
  fieldRole,
  findColumnName,
  findFieldById,
  findFieldByName,
  indexParents,
} from './schema.ts';
import { parseTransform, transformHint } from './transforms.ts';
import type { Transform, TransformName } from './transforms.ts';
import type { IcebergType, IcebergValue, NestedField, StructType } from './types.ts';

/** Partition field ids start here (Java's PARTITION_DATA_ID_START); a table without partitions has 999 as its last. */
export const PARTITION_DATA_ID_START = 1000;

/** A partition field before buildSpec gives it an id (or with the id it must keep). */
export interface UnboundPartitionField {
  readonly 'source-id': number;
  readonly transform: string;
  readonly name: string;
  readonly 'field-id'?: number;
}

/** One term of an expression: a transform of a source column. */
export interface PartitionTerm {
  /** The column's full name, as the schema spells it. */
  readonly column: string;
  readonly sourceId: number;
  readonly sourceType: IcebergType;
  readonly transform: Transform;
}

/**
 * How default partition field names are made: `create` as Java's PartitionSpec.Builder (`id_bucket`,
 * `name_trunc`), `evolve` as Java's UpdatePartitionSpec (`id_bucket_16`, `name_trunc_4`). Both use the
 * column name for identity and `_year`, `_month`, `_day`, `_hour`, `_null` for the others.
 */
export type PartitionNameStyle = 'create' | 'evolve';

export function unpartitioned(): PartitionSpec {
  return { 'spec-id': 0, fields: [] };
}

/** True when the spec puts every row in one partition (no fields, or only void ones). */
export function isUnpartitioned(spec: PartitionSpec): boolean {
  return spec.fields.every((field) => field.transform === 'void');
}

export function defaultPartitionName(
  column: string,
  transform: Transform,
  style: PartitionNameStyle = 'create',
): string {
  switch (transform.name) {
    case 'identity':
      return column;
    case 'bucket':
      return style === 'create' ? `${column}_bucket` : `${column}_bucket_${transform.parameter}`;
    case 'truncate':
      return style === 'create' ? `${column}_trunc` : `${column}_trunc_${transform.parameter}`;
    case 'void':
      return `${column}_null`;
    default:
      return `${column}_${transform.name}`;
  }
}

const EXPRESSION_HINT =
  'Write terms separated by commas: column, identity(column), year(ts), month(ts), day(ts), hour(ts), bucket(16, column), truncate(4, column), void(column).';

const FUNCTIONS: Readonly<Record<string, TransformName>> = {
  identity: 'identity',
  year: 'year',
  years: 'year',
  month: 'month',
  months: 'month',
  day: 'day',
  days: 'day',
  date: 'day',
  hour: 'hour',
  hours: 'hour',
  date_hour: 'hour',
  bucket: 'bucket',
  truncate: 'truncate',
  void: 'void',
};

/**
 * Parses a partition expression against a schema into fields with default names. An empty expression is
 * an unpartitioned table. Errors (ICEBERG_INVALID_PARTITION) name the term and the column at fault.
 */
export function parsePartitionExpression(
  text: string,
  schema: StructType,
  options: { readonly nameStyle?: PartitionNameStyle } = {},
): UnboundPartitionField[] {
  const fields: UnboundPartitionField[] = [];
  const terms: Array<{ term: PartitionTerm; text: string }> = [];
  for (const termText of splitTerms(text)) {
    const term = parsePartitionTerm(termText, schema);
    const redundant = terms.find(
      (other) =>
        other.term.sourceId === term.sourceId && other.term.transform.dedupName === term.transform.dedupName,
    );
    if (redundant) {
      throw partitionError(`Partition terms ${redundant.text} and ${termText} are redundant`, {
        hint: 'Partition a column by one time transform (year, month, day or hour) and by each transform once.',
        context: { column: term.column },
      });
    }
    const name = defaultPartitionName(term.column, term.transform, options.nameStyle);
    const clash = fields.find((field) => field.name === name);
    if (clash) {
      throw partitionError(
        `Partition terms ${termText} and another term both make the partition field ${name}`,
        {
          hint: 'Use each term once.',
          context: { column: term.column },
        },
      );
    }
    const column = findFieldByName(schema, name);
    // Java refuses a partition name that is another column's name (it would shadow it in queries).
    if (
      column &&
      (term.transform.name !== 'identity' && term.transform.name !== 'void'
        ? true
        : column.id !== term.sourceId)
    ) {
      throw partitionError(
        `Partition field name ${name} (from ${termText}) is already a column of the table`,
        {
          hint: `Rename the column ${name}, or partition by another transform.`,
          context: { column: name },
        },
      );
    }
    terms.push({ term, text: termText });
    fields.push({ 'source-id': term.sourceId, transform: term.transform.toString(), name });
  }
  return fields;
}

/**
 * Splits an expression at its top-level commas (not those inside parentheses or quotes); trims each term
 * and rejects empty ones.
 */
export function splitTerms(text: string): string[] {
  if (text.trim() === '') return [];
  const terms: string[] = [];
  let depth = 0;
  let quote: string | undefined;
  let start = 0;
  for (let i = 0; i < text.length; i += 1) {
    const char = text[i]!;
    if (quote) {
      if (char === quote) quote = undefined;
    } else if (char === '"' || char === '`') {
      quote = char;
    } else if (char === '(') {
      depth += 1;
    } else if (char === ')') {
      depth -= 1;
    } else if (char === ',' && depth === 0) {
      terms.push(text.slice(start, i));
      start = i + 1;
    }
  }
  terms.push(text.slice(start));
  return terms.map((term, i) => {
    const trimmed = term.trim();
    if (trimmed === '') {
      throw partitionError(`Term ${i + 1} of ${JSON.stringify(text)} is empty`, { hint: EXPRESSION_HINT });
    }
    return trimmed;
  });
}

interface Token {
  readonly kind: 'name' | 'quoted' | '(' | ')' | ',';
  readonly text: string;
}

function tokenize(term: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < term.length) {
    const char = term[i]!;
    if (/\s/.test(char)) {
      i += 1;
    } else if (char === '(' || char === ')' || char === ',') {
      tokens.push({ kind: char, text: char });
      i += 1;
    } else if (char === '"' || char === '`') {
      // A doubled quote inside a quoted name stands for the quote itself.
      let text = '';
      let j = i + 1;
      for (;;) {
        if (j >= term.length) {
          throw partitionError(`Unclosed ${char} in partition term ${term}`, { hint: EXPRESSION_HINT });
        }
        if (term[j] === char) {
          if (term[j + 1] !== char) break;
          j += 1;
        }
        text += term[j];
        j += 1;
      }
      tokens.push({ kind: 'quoted', text });
      i = j + 1;
    } else {
      let j = i;
      while (j < term.length && !/[\s(),"`]/.test(term[j]!)) j += 1;
      tokens.push({ kind: 'name', text: term.slice(i, j) });
      i = j;
    }
  }
  return tokens;
}

/** Parses one term ("country", "day(ts)", "bucket(16, user_id)") and checks it against the schema. */
export function parsePartitionTerm(text: string, schema: StructType): PartitionTerm {
  const tokens = tokenize(text);
  const malformed = (problem: string): TributaryError =>
    partitionError(`Cannot parse partition term ${JSON.stringify(text)}: ${problem}`, {
      hint: EXPRESSION_HINT,
    });
  const first = tokens[0];
  if (!first || (first.kind !== 'name' && first.kind !== 'quoted'))
    throw malformed('expected a column or a transform');
  if (tokens.length === 1) return resolveTerm(first.text, parseTransform('identity'), schema, text);
  if (first.kind !== 'name' || tokens[1]?.kind !== '(')
    throw malformed('expected "(" after the transform name');
  if (tokens.at(-1)?.kind !== ')') throw malformed('expected ")" at the end');

  const args: Token[][] = [[]];
  for (const token of tokens.slice(2, -1)) {
    if (token.kind === ',') args.push([]);
    else if (token.kind === '(' || token.kind === ')') throw malformed('nested parentheses are not allowed');
    else args.at(-1)!.push(token);
  }
  if (args.some((arg) => arg.length !== 1)) throw malformed('each argument must be one column or number');
  const values = args.map((arg) => arg[0]!);

  const name = FUNCTIONS[first.text.toLowerCase()];
  if (!name) {
    throw partitionError(`Unknown partition transform ${first.text} in ${JSON.stringify(text)}`, {
      hint: EXPRESSION_HINT,
      context: { transform: first.text },
    });
  }
  if (name === 'bucket' || name === 'truncate') {
    // Both orders are accepted: bucket(16, id) as Spark and Java's DDL write it, bucket(id, 16) as Trino.
    const number = values.findIndex((value) => value.kind === 'name' && /^\d+$/.test(value.text));
    const column = values.find((_, i) => i !== number);
    if (values.length !== 2 || number < 0 || !column) {
      throw malformed(
        `${name} takes a ${name === 'bucket' ? 'bucket count' : 'width'} and a column, e.g. ${name}(16, id)`,
      );
    }
    return resolveTerm(column.text, parseTransform(`${name}[${values[number]!.text}]`), schema, text);
  }
  if (values.length !== 1) throw malformed(`${name} takes one column, e.g. ${name}(ts)`);
  return resolveTerm(values[0]!.text, parseTransform(name), schema, text);
}

function resolveTerm(column: string, transform: Transform, schema: StructType, text: string): PartitionTerm {
  const field = findFieldByName(schema, column);
  if (!field) {
    const sameButCase = findFieldByName(schema, column, false);
    const names = columnNames(schema);
    throw partitionError(
      `Column ${column} in partition term ${JSON.stringify(text)} is not in the table schema`,
      {
        context: { column },
        hint: sameButCase
          ? `Names are case-sensitive: did you mean ${findColumnName(schema, sameButCase.id)}?`
          : `Columns: ${names.slice(0, 30).join(', ')}${names.length > 30 ? ', …' : ''}.`,
      },
    );
  }
  const fullName = findColumnName(schema, field.id) ?? column;
  checkSource(schema, field, fullName, transform);
  return { column: fullName, sourceId: field.id, sourceType: field.type, transform };
}

// Java's PartitionSpec.checkCompatibility: a primitive source the transform accepts, nested only in structs.
function checkSource(schema: StructType, field: NestedField, column: string, transform: Transform): void {
  if (transform.name === 'void') return;
  if (typeof field.type !== 'string') {
    throw partitionError(
      `Cannot partition by ${column}: it is a ${field.type.type}, not a primitive column`,
      {
        context: { column },
        hint: 'Partition by a primitive column, or by a field inside a struct column.',
      },
    );
  }
  if (!transform.canTransform(field.type)) {
    throw partitionError(`Cannot apply ${transform.name} to column ${column} of type ${field.type}`, {
      context: { column, transform: transform.toString(), type: field.type },
      hint: transformHint(transform.name),
    });
  }
  const parents = indexParents(schema);
  for (let id: number | undefined = field.id; id !== undefined; id = parents.get(id)) {
    if (fieldRole(schema, id) !== 'field') {
      throw partitionError(`Cannot partition by ${column}: it is inside a list or map`, {
        context: { column },
        hint: 'Partition source columns may only be nested in structs.',
      });
    }
  }
}

/** Checks every field of a spec against a schema (source present, primitive, transform applicable). */
export function validatePartitionSpec(spec: PartitionSpec, schema: StructType): void {
  for (const field of spec.fields) {
    const transform = parseTransform(field.transform);
    const source = findFieldById(schema, field['source-id']);
    if (!source) {
      if (transform.name === 'void') continue;
      throw partitionError(
        `Partition field ${field.name} has source column id ${field['source-id']}, which is not in the schema`,
        {
          context: { partitionField: field.name, sourceId: field['source-id'] },
          hint: 'Drop the partition field (or replace its transform with void) before deleting its source column.',
        },
      );
    }
    checkSource(schema, source, findColumnName(schema, source.id) ?? source.name, transform);
  }
}

/**
 * Gives each field an id: the one it carries, else the id of the same field (source, transform and name)
 * in a previous spec, as Java does for v2 partition evolution, else the next after lastPartitionId (ids
 * start at 1000). Returns the spec and the new last partition id.
 */
export function buildSpec(
  fields: readonly UnboundPartitionField[],
  specId: number,
  lastPartitionId: number,
  previousSpecs: readonly PartitionSpec[] = [],
): { spec: PartitionSpec; lastPartitionId: number } {
  let last = Math.max(lastPartitionId, PARTITION_DATA_ID_START - 1);
  const historical = previousSpecs.flatMap((spec) => spec.fields);
  const bound: PartitionField[] = [];
  for (const field of fields) {
    const transform = parseTransform(field.transform);
    if (field.name === '') {
      throw partitionError(`Partition field on source id ${field['source-id']} has an empty name`, {
        hint: 'Name every partition field.',
      });
    }
    if (bound.some((other) => other.name === field.name)) {
      throw partitionError(`Partition field name ${field.name} is used twice`, {
        hint: 'Give every partition field its own name.',
      });
    }
    const reused = historical.find(
      (old) =>
        old['source-id'] === field['source-id'] &&
        parseTransform(old.transform).equals(transform) &&
        old.name === field.name,
    );
    const id = field['field-id'] ?? reused?.['field-id'] ?? ++last;
    if (bound.some((other) => other['field-id'] === id)) {
      throw partitionError(`Partition field id ${id} is used twice (by ${field.name})`, {
        hint: 'Give every partition field its own id.',
      });
    }
    last = Math.max(last, id);
    bound.push({
      'source-id': field['source-id'],
      'field-id': id,
      name: field.name,
      transform: transform.toString(),
    });
  }
  return { spec: { 'spec-id': specId, fields: bound }, lastPartitionId: last };
}

/** The partition tuple's type: one optional field per partition field, with its id and result type. */
export function partitionType(spec: PartitionSpec, schema: StructType): StructType {
  return {
    type: 'struct',
    fields: spec.fields.map((field) => ({
      id: field['field-id'],
      name: field.name,
      required: false,
      type: resultType(field, schema),
    })),
  };
}

function resultType(field: PartitionField, schema: StructType): IcebergType {
  const transform = parseTransform(field.transform);
  const source = findFieldById(schema, field['source-id']);
  if (source) return transform.resultType(source.type);
  // Transforms with a fixed result type still have one after their source column is dropped.
  if (transform.name === 'day') return 'date';
  if (transform.name !== 'identity' && transform.name !== 'truncate' && transform.name !== 'void')
    return 'int';
  throw partitionError(
    `Partition field ${field.name} has source column id ${field['source-id']}, which is not in the schema`,
    {
      context: { partitionField: field.name, sourceId: field['source-id'] },
      hint: 'Use the schema the partition spec was written with.',
    },
  );
}

/**
 * A function that computes partition tuples for a spec, with transforms parsed once: give it the source
 * value of a field id (see fieldValue) and it returns the values in spec order.
 */
export function partitioner(
  spec: PartitionSpec,
  schema: StructType,
): (getSourceValue: (sourceId: number) => IcebergValue) => IcebergValue[] {
  const steps = spec.fields.map((field) => {
    const transform = parseTransform(field.transform);
    const source = findFieldById(schema, field['source-id']);
    if (!source && transform.name !== 'void') resultType(field, schema); // throws: no source column
    return { field, transform, sourceType: source?.type };
  });
  return (getSourceValue) =>
    steps.map(({ field, transform, sourceType }) =>
      sourceType === undefined ? null : transform.apply(sourceType, getSourceValue(field['source-id'])),
    );
}

export function partitionValues(
  spec: PartitionSpec,
  schema: StructType,
  getSourceValue: (sourceId: number) => IcebergValue,
): IcebergValue[] {
  return partitioner(spec, schema)(getSourceValue);
}

/**
 * The value of a (possibly nested) struct field in a record keyed by field names; null when the field or
 * one of its parents is missing or null. Fields inside lists and maps have no single value: undefined.
 */
export function fieldValue(
  schema: StructType,
  record: IcebergValue,
  fieldId: number,
): IcebergValue | undefined {
  const path: string[] = [];
  const parents = indexParents(schema);
  for (let id: number | undefined = fieldId; id !== undefined; id = parents.get(id)) {
    const field = findFieldById(schema, id);
    if (!field || fieldRole(schema, id) !== 'field') return undefined;
    path.unshift(field.name);
  }
  let value: IcebergValue = record;
  for (const name of path) {
    if (
      value === null ||
      typeof value !== 'object' ||
      value instanceof Uint8Array ||
      Array.isArray(value) ||
      value instanceof Map
    ) {
      return null;
    }
    value = (value as { readonly [field: string]: IcebergValue })[name] ?? null;
  }
  return value;
}

/**
 * The directory of a partition under the table's data location, as Java's PartitionSpec.partitionToPath:
 * `name=value` pairs joined by `/`, values in their human form, both URL-encoded (space becomes `+`).
 */
export function partitionPath(
  spec: PartitionSpec,
  schema: StructType,
  values: readonly IcebergValue[],
): string {
  const types = partitionType(spec, schema).fields;
  return spec.fields
    .map((field, i) => {
      const human = parseTransform(field.transform).toHumanString(types[i]!.type, values[i] ?? null);
      return `${urlEncode(field.name)}=${urlEncode(human)}`;
    })
    .join('/');
}

/** java.net.URLEncoder with UTF-8: letters, digits and `.-*_` stay, space is `+`, the rest is %XX. */
export function urlEncode(text: string): string {
  return encodeURIComponent(text.toWellFormed())
    .replace(/[!'()~]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`)
    .replaceAll('%20', '+');
}

/** A spec as an expression parsePartitionExpression reads back (field names aside): "day(ts), bucket(16, id)". */
export function describePartitionSpec(spec: PartitionSpec, schema: StructType): string {
  return spec.fields.map((field) => describeTerm(field['source-id'], field.transform, schema)).join(', ');
}

/** One term: "ts", "day(ts)", "bucket(16, id)"; a dropped source column shows as its id. */
export function describeTerm(sourceId: number, transformText: string, schema: StructType): string {
  const name = findColumnName(schema, sourceId);
  const column = name === undefined ? `#${sourceId}` : quoteName(name);
  const transform = parseTransform(transformText);
  if (transform.name === 'identity') return column;
  if (transform.parameter !== undefined) return `${transform.name}(${transform.parameter}, ${column})`;
  return `${transform.name}(${column})`;
}

function quoteName(name: string): string {
  return /^[^\s(),"`]+$/.test(name) && !/^\d+$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

function partitionError(
  message: string,
  options: { readonly hint: string; readonly context?: Readonly<Record<string, unknown>> },
): TributaryError {
  return new TributaryError('ICEBERG_INVALID_PARTITION', message, options);
}
