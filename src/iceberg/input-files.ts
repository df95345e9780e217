/** Input files (NDJSON, CSV, Parquet) as DuckDB relations shaped for a table, for appends and benchmarks. */
import path from 'node:path';
import { TributaryError } from '../errors.ts';
import { duckdbType, quoteLiteral, type Engine } from './duckdb.ts';
import type { Schema } from './types.ts';

export type InputFormat = 'ndjson' | 'csv' | 'parquet';

/** How many records of an NDJSON file are looked at for keys the table lacks (DuckDB's sample size). */
const SAMPLE_ROWS = 20480;

/**
 * A DuckDB relation reading the file, columns matched to the table's by name and read straight as the
 * table's types (no full-file type inference). Keys the table lacks are looked for in a sample of the
 * file and refused, so a typo does not silently drop a column.
 */
export async function fileRelation(
  engine: Engine,
  format: InputFormat,
  file: string,
  schema: Schema,
): Promise<string> {
  const literal = quoteLiteral(file);
  const types = schema.fields
    .map((f) => `${quoteLiteral(f.name)}: ${quoteLiteral(duckdbType(f.type))}`)
    .join(', ');
  let relation: string;
  let sample: string;
  switch (format) {
    case 'ndjson':
      // The keys of the first records, without inferring their types (which costs twice as much).
      sample = `(select distinct unnest(json_keys(json)) as key
        from (select json from read_json_objects(${literal}, format = 'newline_delimited') limit ${SAMPLE_ROWS}))`;
      relation = `read_json(${literal}, format = 'newline_delimited', columns = {${types}})`;
      break;
    case 'csv':
      sample = `(describe select * from read_csv(${literal}, header = true))`;
      relation = `read_csv(${literal}, header = true, types = {${types}})`;
      break;
    case 'parquet':
      return `read_parquet(${literal})`;
    default:
      throw new TributaryError('USAGE', `unknown format "${String(format)}"`, {
        hint: 'choose ndjson, csv or parquet',
      });
  }
  let columns: string[];
  try {
    columns = (await engine.connection.runAndReadAll(`select * from ${sample}`))
      .getRows()
      .map((r) => String(r[0]));
  } catch (cause) {
    throw new TributaryError(
      'INVALID_INPUT',
      `${file} cannot be read as ${format}: ${(cause as Error).message.split('\n')[0]}`,
      { cause },
    );
  }
  const known = new Set(schema.fields.map((f) => f.name));
  const unknown = columns.filter((c) => !known.has(c));
  if (unknown.length) {
    throw new TributaryError(
      'INVALID_INPUT',
      `${path.basename(file)} has columns the table does not: ${unknown.join(', ')}`,
      {
        hint: 'add the columns to the table schema, or leave them out of the file',
      },
    );
  }
  return relation;
}
