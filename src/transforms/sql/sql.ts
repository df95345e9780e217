/**
 * `sql`: a DuckDB query over each batch. The batch is the table `batch`: one column per top-level field
 * of the values (inferred from the whole batch) plus `_partition`, `_offset`, `_timestamp` (TIMESTAMPTZ)
 * and `_key`. Each output row becomes a record value.
 *
 * Positions: a row that carries `_partition` and `_offset` keeps that record's position (and its key,
 * timestamp and headers); other rows — aggregates — take the position of the batch's last record. The
 * four columns never become value fields; `_key` and `_timestamp` in the output set the record's key
 * and timestamp. An error at run time fails the whole batch: a query that cannot handle some records
 * stops the pipeline until it is fixed (TRY_CAST and COALESCE avoid that).
 */
import { z } from 'zod';
import type { ComponentDefinition } from '../../core/pipeline/components.ts';
import type { PipelineRecord, Transform } from '../../core/pipeline/model.ts';
import { isTributaryError, TributaryError } from '../../errors.ts';
import { POSITION_COLUMNS, SqlEngine } from './engine.ts';

// Also the `type` field's description: the generated reference shows that one.
const SUMMARY =
  'Filters, reshapes, enriches or aggregates each batch with DuckDB SQL. Empty batches are not queried.';

const schema = z
  .strictObject({
    type: z.literal('sql').describe(SUMMARY),
    query: z
      .string()
      .min(1)
      .describe(
        'One SELECT (or WITH … SELECT) over the table `batch`: the columns of the values plus _partition, ' +
          "_offset, _timestamp and _key. Rows that keep _partition and _offset keep their record's position; " +
          "other rows get the batch's last record's position. Use TRY_CAST for values that may not convert: " +
          'an error fails the whole batch.',
      ),
  })
  .describe(SUMMARY);

export const sqlTransform: ComponentDefinition<'transform', typeof schema> = {
  kind: 'transform',
  type: 'sql',
  schema,
  async create(config, context) {
    const engine = await SqlEngine.open(context.logger);
    try {
      await engine.checkQuery(config.query);
    } catch (error) {
      await engine.close();
      throw error;
    }
    return new SqlTransform(engine, config.query);
  },
};

class SqlTransform implements Transform {
  readonly name = 'sql';
  readonly #engine: SqlEngine;
  readonly #query: string;
  /** Batches run one after another: they share the table `batch`. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(engine: SqlEngine, query: string) {
    this.#engine = engine;
    this.#query = query;
  }

  process(records: readonly PipelineRecord[]) {
    const run = this.#queue.then(() => this.#process(records));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    await this.#queue;
    await this.#engine.close();
  }

  async #process(records: readonly PipelineRecord[]) {
    const last = records[records.length - 1];
    // An aggregate over nothing would still yield a row, with no record to take a position from.
    if (!last) return { records: [], rejected: [] };
    let rows: Record<string, unknown>[];
    try {
      rows = await this.#engine.run(this.#query, records);
    } catch (error) {
      if (isTributaryError(error)) throw error; // already says what failed (writing the batch file)
      throw new TributaryError(
        'INVALID_INPUT',
        `sql: the query failed on a batch of ${records.length} records: ${message(error)}`,
        {
          cause: error,
          context: { partition: records[0]?.partition, offset: records[0]?.offset },
          hint: 'Fix the query (TRY_CAST and COALESCE handle values that may not convert or be missing), then restart the pipeline.',
        },
      );
    }
    const byPosition = new Map(
      records.map((record) => [positionKey(record.partition, record.offset), record]),
    );
    return { records: inPartitionOrder(rows.map((row) => toRecord(row, byPosition, last))), rejected: [] };
  }
}

function toRecord(
  row: Record<string, unknown>,
  byPosition: ReadonlyMap<string, PipelineRecord>,
  last: PipelineRecord,
): PipelineRecord {
  const { _partition: partition, _offset: offset, _timestamp: timestamp, _key: key } = row;
  const value = { ...row };
  for (const column of POSITION_COLUMNS) delete value[column];
  let source: PipelineRecord | undefined;
  if (typeof partition === 'number' && typeof offset === 'number') {
    source = byPosition.get(positionKey(partition, offset));
    if (!source) {
      throw new TributaryError(
        'INVALID_INPUT',
        `sql: the query returned a row at partition ${partition} offset ${offset}, which is not in the batch`,
        { hint: 'Pass _partition and _offset through unchanged, or leave them out of the output.' },
      );
    }
  }
  const base = source ?? { ...last, key: null, headers: {} };
  return {
    ...base,
    value,
    key: '_key' in row ? keyOf(key) : base.key,
    timestamp: timestampOf(timestamp) ?? base.timestamp,
  };
}

function keyOf(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Milliseconds from an output `_timestamp`: TIMESTAMPTZ text or epoch milliseconds. */
function timestampOf(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return Math.trunc(value);
  if (typeof value === 'string') {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? undefined : ms;
  }
  return undefined;
}

/**
 * Sorts each partition's records by offset (an ORDER BY in the query must not reorder a partition),
 * leaving each in one of the slots its partition had: the interleaving of partitions stays as it was.
 */
function inPartitionOrder(records: PipelineRecord[]): PipelineRecord[] {
  const slots = new Map<number, number[]>();
  records.forEach((record, index) => {
    const list = slots.get(record.partition) ?? [];
    list.push(index);
    slots.set(record.partition, list);
  });
  const ordered = [...records];
  for (const indexes of slots.values()) {
    const sorted = indexes.map((index) => records[index]!).sort((a, b) => a.offset - b.offset);
    indexes.forEach((index, i) => (ordered[index] = sorted[i]!));
  }
  return ordered;
}

function positionKey(partition: number, offset: number): string {
  return `${partition}:${offset}`;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
