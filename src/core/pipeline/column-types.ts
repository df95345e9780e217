/**
 * Declared column types, carried with a record from whoever knows them (the cdc transform, from the
 * types PostgreSQL declares) to the sinks, in the header `COLUMN_TYPES_HEADER`: a JSON object of the
 * value's top-level field names and their types in the schema-file notation of docs/tables.md
 * (`{"id": "int", "amount": "decimal(10, 2)", "tags": {"type": "list", "element": "string"}}`).
 *
 * A sink that makes a table's columns from the records (a table created from its first records, a column
 * added under schema policy `evolve`) takes the declared type of a field over the one it would infer from
 * its JSON values; fields the header leaves out are inferred. The header never decides whether a column
 * may be added, and a column the table already has keeps its type. Records that share their types share
 * one header text, so a sink reads each text once.
 */
export const COLUMN_TYPES_HEADER = 'tributary-column-types';
