/**
 * `cdc`: turns the change records of a CDC topic into rows for a sink.
 *
 *  - `format: row` (silver): the row as it is after the change — inserts, updates and snapshot rows carry
 *    the new row, `<delete_column>` false; a delete carries the old row (whole with REPLICA IDENTITY FULL,
 *    else its key) with `<delete_column>` true. With an Iceberg sink in `mode: upsert` keyed on the primary
 *    key, the table mirrors the source; deleted rows stay as tombstones (`where not _deleted` reads the
 *    live rows) until the sink learns to delete rows so marked (docs/cdc.md).
 *  - `format: change` (bronze): one flat row per change — op, table, positions, commit time, and the key,
 *    old and new rows as JSON text — so one table holds the history of every captured table, in order
 *    of (`commit_position`, `seq`).
 *
 * In `format: row`, each row goes on with the types of its table's columns as PostgreSQL declares them
 * (header `tributary-column-types`, core/pipeline/column-types.ts), looked up by the shape its change
 * record names (schema-topic.ts), and those of the columns added here: an Iceberg sink that adds a column
 * gives it that type rather than one inferred from the JSON values.
 */
import { z } from 'zod';
import { COLUMN_TYPES_HEADER } from '../../core/pipeline/column-types.ts';
import type { ComponentDefinition } from '../../core/pipeline/components.ts';
import type { PipelineRecord, Rejection, Transform } from '../../core/pipeline/model.ts';
import { parseLsn } from './lsn.ts';
import { SCHEMA_HEADER, SchemaTopic } from './schema-topic.ts';
import type { IcebergTypeJson } from './values.ts';

const METADATA = ['op', 'table', 'lsn', 'commit_lsn', 'commit_time', 'xid'] as const;

/** The types of the metadata columns (`_op`, …) format row adds. */
const METADATA_TYPES: Readonly<Record<(typeof METADATA)[number], IcebergTypeJson>> = {
  op: 'string',
  table: 'string',
  lsn: 'string',
  commit_lsn: 'string',
  commit_time: 'timestamptz',
  xid: 'long',
};

const SUMMARY =
  'Turns change records of a CDC topic into rows: the current row (silver) or a flat change (bronze).';

const schema = z
  .strictObject({
    type: z.literal('cdc').describe(SUMMARY),
    format: z
      .enum(['row', 'change'])
      .default('row')
      .describe(
        'row: the row after the change, for an upsert sink keyed on the primary key. change: one row per change, for an append sink.',
      ),
    tables: z
      .array(z.string())
      .optional()
      .describe('Only changes of these tables (schema.table); default: all of the topic.'),
    delete_column: z
      .string()
      .min(1)
      .default('_deleted')
      .describe('format row: the column that is true for a deleted row (a tombstone) and false otherwise.'),
    metadata: z
      .array(z.enum(METADATA))
      .default([])
      .describe(
        'format row: change fields to add as columns, each named with a leading _ (e.g. _commit_time).',
      ),
  })
  .describe(SUMMARY);

export type CdcTransformConfig = z.output<typeof schema>;

interface Change {
  op: string;
  table: string;
  key?: Record<string, unknown>;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  lsn: string;
  commit_lsn: string;
  commit_time: string;
  xid: number | null;
  seq: number;
}

const OPS = new Set(['insert', 'update', 'delete', 'snapshot']);

function asChange(value: Record<string, unknown>): Change | undefined {
  if (typeof value.op !== 'string' || !OPS.has(value.op) || typeof value.table !== 'string') return undefined;
  if (typeof value.commit_lsn !== 'string') return undefined;
  return value as unknown as Change;
}

/** An LSN as a number (exact below 2^53 bytes of WAL, 8 PiB). */
function lsnNumber(text: string): number | null {
  try {
    return Number(parseLsn(text));
  } catch {
    return null;
  }
}

export function changeToRow(change: Change, config: CdcTransformConfig): Record<string, unknown> {
  const deleted = change.op === 'delete';
  const image = deleted ? (change.before ?? change.key ?? {}) : (change.after ?? {});
  const row: Record<string, unknown> = { ...image, [config.delete_column]: deleted };
  for (const field of config.metadata) row[`_${field}`] = change[field];
  return row;
}

export function changeToHistory(change: Change): Record<string, unknown> {
  return {
    op: change.op,
    table: change.table,
    lsn: change.lsn,
    commit_lsn: change.commit_lsn,
    commit_position: lsnNumber(change.commit_lsn),
    seq: change.seq,
    commit_time: change.commit_time,
    xid: change.xid,
    key: change.key === undefined ? null : JSON.stringify(change.key),
    before: change.before === null ? null : JSON.stringify(change.before),
    after: change.after === null ? null : JSON.stringify(change.after),
  };
}

export const cdcTransform: ComponentDefinition<'transform', typeof schema> = {
  kind: 'transform',
  type: 'cdc',
  schema,
  async create(config, context) {
    const tables = config.tables ? new Set(config.tables) : undefined;
    // format row: per shape id, the column types header of its rows (undefined: the shape is unknown).
    const added: Record<string, IcebergTypeJson> = { [config.delete_column]: 'boolean' };
    for (const field of config.metadata) added[`_${field}`] = METADATA_TYPES[field];
    const typesById = new Map<string, string | undefined>();
    let schemas: SchemaTopic | undefined;
    const lookUp = async (id: string): Promise<string | undefined> => {
      schemas ??= new SchemaTopic(context.log, context.sourceTopic);
      // Shapes are in the schema topic before the records that name them: read what came since.
      if (schemas.get(id) === undefined) await schemas.refresh();
      const columns = schemas.get(id);
      const types =
        columns === undefined
          ? undefined
          : JSON.stringify({ ...(JSON.parse(columns) as Record<string, IcebergTypeJson>), ...added });
      typesById.set(id, types);
      return types;
    };
    const transform: Transform = {
      name: 'cdc',
      // Each row goes on as its JSON too: sinks write those bytes, and a batch waits for them as bytes.
      writesRaw: true,
      async process(records: readonly PipelineRecord[]) {
        const out: PipelineRecord[] = [];
        const rejected: Rejection[] = [];
        for (const record of records) {
          const change = asChange(record.value);
          if (!change) {
            rejected.push({ record, stage: 'cdc', error: 'not a change record (op, table, commit_lsn)' });
            continue;
          }
          if (tables && !tables.has(change.table)) continue;
          if (config.format === 'change') {
            const value = changeToHistory(change);
            out.push({ ...record, value, raw: Buffer.from(JSON.stringify(value)) });
            continue;
          }
          const value = changeToRow(change, config);
          const id = record.headers[SCHEMA_HEADER];
          let types = id === undefined ? undefined : typesById.get(id);
          if (id !== undefined && types === undefined && !typesById.has(id)) types = await lookUp(id);
          // Buffer.from: small strings share pooled slabs rather than one allocation each.
          const raw = Buffer.from(JSON.stringify(value));
          out.push(
            types === undefined
              ? { ...record, value, raw }
              : { ...record, headers: { ...record.headers, [COLUMN_TYPES_HEADER]: types }, value, raw },
          );
        }
        return { records: out, rejected };
      },
    };
    return transform;
  },
};
