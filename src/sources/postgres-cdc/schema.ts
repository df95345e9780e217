/**
 * The Iceberg schema (docs/tables.md notation) of a captured table, from PostgreSQL's catalog, for the
 * `schema:` of the sink that mirrors it (`tributary cdc schema`). The types are those the source declares
 * to the sinks for the columns it captures (schema-topic.ts), so a column is the same type whether the
 * table was made from this schema or the column was added to it later.
 *
 * Primary-key columns are required and the identifier fields. The others are optional, NOT NULL ones too,
 * on purpose: a tombstone (a delete without `delete_column`) carries only the key; a column added later
 * can only be added optional (Iceberg), and its existing rows hold null (docs/cdc.md, Limits); and
 * `ALTER … DROP NOT NULL` upstream would otherwise send every change with a null to the DLQ.
 * `notNull` lists those columns, for the command to say so.
 */
import type pg from 'pg';
import { TributaryError } from '../../errors.ts';
import { splitTable } from './connection.ts';
import { icebergTypeOf, TYPE_QUERY, TypeRegistry, type IcebergTypeJson } from './values.ts';

export interface IcebergSchemaJson {
  fields: Array<{ name: string; type: IcebergTypeJson; required: boolean }>;
  'identifier-fields': string[];
}

export interface TableSchema {
  readonly schema: IcebergSchemaJson;
  /** Columns NOT NULL in PostgreSQL that are optional in the schema (those outside the primary key). */
  readonly notNull: readonly string[];
}

export async function icebergSchemaFor(
  client: pg.Client,
  table: string,
  options: { deleteColumn?: string } = {},
): Promise<TableSchema> {
  const [schema, name] = splitTable(table);
  const { rows } = await client.query<{
    name: string;
    oid: string;
    typmod: string;
    pk: string;
    notnull: string;
  }>(
    `select a.attname as name, a.atttypid::int::text as oid, a.atttypmod::text as typmod,
        coalesce(a.attnum = any(i.indkey::int2[]), false)::text as pk, a.attnotnull::text as notnull
       from pg_attribute a
       join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
       left join pg_index i on i.indrelid = c.oid and i.indisprimary
      where n.nspname = $1 and c.relname = $2 and a.attnum > 0 and not a.attisdropped
      order by a.attnum`,
    [schema, name],
  );
  if (rows.length === 0)
    throw new TributaryError('CDC_NOT_READY', `no table ${table}`, {
      hint: 'give the table as schema.table',
    });
  const types = new TypeRegistry();
  let missing = types.missing(rows.map((r) => Number(r.oid)));
  while (missing.length) {
    const found = (await client.query<Record<string, string>>(TYPE_QUERY, [`{${missing.join(',')}}`])).rows;
    if (found.length === 0) break;
    types.addRows(
      found.map((r) => ({
        oid: Number(r.oid),
        name: r.name ?? '',
        typtype: r.typtype ?? 'b',
        element: Number(r.element),
        base: Number(r.base),
        delimiter: r.delimiter ?? ',',
      })),
    );
    missing = types.unresolvedReferences();
  }
  const fields = rows.map((r) => ({
    name: r.name,
    type: icebergTypeOf(types.get(Number(r.oid)), Number(r.typmod)),
    required: r.pk === 'true',
  }));
  if (options.deleteColumn) fields.push({ name: options.deleteColumn, type: 'boolean', required: false });
  return {
    schema: { fields, 'identifier-fields': rows.filter((r) => r.pk === 'true').map((r) => r.name) },
    notNull: rows.filter((r) => r.pk !== 'true' && r.notnull === 'true').map((r) => r.name),
  };
}
