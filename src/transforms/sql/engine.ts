/**
 * The DuckDB side of the `sql` transform: one in-memory database per transform, locked down so that a
 * query reads nothing but the batch, which is loaded as the table `batch` before each run.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DuckDBInstance, timestampTZValue, type DuckDBConnection, type Json } from '@duckdb/node-api';
import { fitsInt64, replaceBigIntegers, type BigInteger } from '../../core/json.ts';
import type { Logger } from '../../core/logger.ts';
import type { PipelineRecord } from '../../core/pipeline/model.ts';
import { TributaryError } from '../../errors.ts';
import { toJsonValue } from './duckdb-json.ts';

/** Columns the batch table adds to the value's: where each record came from. */
export const POSITION_COLUMNS = ['_partition', '_offset', '_timestamp', '_key'] as const;
const ROW = '__tributary_row';
const POSITIONS_TABLE = '__tributary_positions';

export class SqlEngine {
  readonly #instance: DuckDBInstance;
  readonly #connection: DuckDBConnection;
  readonly #directory: string;
  readonly #file: string;
  readonly #logger: Logger;

  private constructor(
    instance: DuckDBInstance,
    connection: DuckDBConnection,
    directory: string,
    logger: Logger,
  ) {
    this.#logger = logger;
    this.#instance = instance;
    this.#connection = connection;
    this.#directory = directory;
    this.#file = path.join(directory, 'batch.ndjson');
  }

  static async open(logger: Logger): Promise<SqlEngine> {
    const directory = await mkdtemp(path.join(tmpdir(), 'tributary-sql-'));
    // Spills into its own directory, not DuckDB's default `.tmp` in the working directory (a container's
    // read-only root cannot take it; see duckdbTempDirectory in iceberg/duckdb.ts).
    const instance = await DuckDBInstance.create(':memory:', {
      temp_directory: path.join(directory, 'spill'),
    });
    const connection = await instance.connect();
    try {
      await connection.run(`SET TimeZone = 'UTC'`);
      // The query may read the batch file and nothing else, and cannot change that.
      await connection.run(`SET allowed_directories = [${literal(directory)}]`);
      await connection.run(`SET enable_external_access = false`);
      await connection.run(`SET lock_configuration = true`);
    } catch (error) {
      connection.closeSync();
      instance.closeSync();
      await rm(directory, { recursive: true, force: true });
      throw error;
    }
    return new SqlEngine(instance, connection, directory, logger);
  }

  /** Refuses, as a config error, anything but one SELECT statement that could run on a batch. */
  async checkQuery(query: string): Promise<void> {
    const invalid = (reason: string, cause?: unknown) =>
      new TributaryError('CONFIG_INVALID', `sql: the query cannot be used: ${reason}`, {
        cause,
        context: { query },
        hint: 'Write one SELECT (or WITH … SELECT) statement that reads the table `batch`.',
      });
    let count: number;
    try {
      count = (await this.#connection.extractStatements(query)).count;
    } catch (error) {
      throw invalid(firstLine(error), error);
    }
    if (count !== 1) throw invalid(`it has ${count} statements, not one`);
    // json_serialize_sql parses without binding and accepts SELECT statements only.
    const reader = await this.#connection.runAndReadAll(
      `SELECT json_serialize_sql(${literal(query)}) AS tree`,
    );
    const tree = JSON.parse(String(reader.getRows()[0]?.[0])) as { error?: boolean; error_message?: string };
    if (tree.error) throw invalid(`it is not a SELECT statement (${tree.error_message ?? 'unknown error'})`);
    // Binding needs the batch's columns, unknown until a batch comes: on an empty batch only errors that
    // no batch could fix (an unknown table or function, a file read) are the query's fault.
    await this.#connection.run(
      `CREATE OR REPLACE TABLE batch (_partition INTEGER, _offset BIGINT, _timestamp TIMESTAMPTZ, _key VARCHAR)`,
    );
    try {
      await this.#connection.prepare(query);
    } catch (error) {
      if (/^(Catalog|Parser|Permission) Error/.test(firstLine(error))) throw invalid(firstLine(error), error);
    } finally {
      await this.#connection.run('DROP TABLE IF EXISTS batch');
    }
  }

  /** Runs the query over the records (loaded as the table `batch`) and returns its rows as JSON objects. */
  async run(query: string, records: readonly PipelineRecord[]): Promise<Record<string, Json>[]> {
    await this.#load(records);
    try {
      const reader = await this.#connection.runAndReadAll(query);
      // The column types, unlike those the row converters see, keep the JSON alias (to parse JSON columns).
      const names = reader.columnNames();
      const types = reader.columnTypes();
      return reader
        .getRows()
        .map((row) =>
          Object.fromEntries(
            names.map((name, i) => [
              name,
              row[i] == null ? null : toJsonValue(row[i], types[i]!, toJsonValue),
            ]),
          ),
        );
    } finally {
      await this.#connection.run('DROP TABLE IF EXISTS batch');
      await this.#connection.run(`DROP TABLE IF EXISTS ${POSITIONS_TABLE}`);
    }
  }

  async close(): Promise<void> {
    this.#connection.closeSync();
    this.#instance.closeSync();
    await rm(this.#directory, { recursive: true, force: true });
  }

  /**
   * Values go through a newline-delimited JSON file so that DuckDB infers their columns (nested objects
   * become structs); positions go through an appender so that their types are exact.
   */
  async #load(records: readonly PipelineRecord[]): Promise<void> {
    const lines = records.map((record, row) => {
      const value = { ...(replaceBigIntegers(record.value, readable) as Record<string, unknown>) };
      for (const column of POSITION_COLUMNS) delete value[column];
      value[ROW] = row;
      return JSON.stringify(value);
    });
    try {
      await writeFile(this.#file, `${lines.join('\n')}\n`);
    } catch (error) {
      throw new TributaryError(
        'STORAGE_IO',
        `sql: cannot write the batch to ${this.#file}: ${firstLine(error)}`,
        {
          cause: error,
          retryable: true, // a full or unavailable temporary directory may recover
          hint: 'Check free space in the temporary directory (TMPDIR).',
        },
      );
    }
    await this.#connection.run(
      `CREATE OR REPLACE TABLE ${POSITIONS_TABLE} (row INTEGER, _partition INTEGER, _offset BIGINT, _timestamp TIMESTAMPTZ, _key VARCHAR)`,
    );
    const appender = await this.#connection.createAppender(POSITIONS_TABLE);
    for (const [row, record] of records.entries()) {
      appender.appendInteger(row);
      appender.appendInteger(record.partition);
      appender.appendBigInt(BigInt(record.offset));
      appender.appendTimestampTZ(timestampTZValue(BigInt(record.timestamp) * 1000n));
      if (record.key === null) appender.appendNull();
      else appender.appendVarchar(record.key);
      appender.endRow();
    }
    appender.closeSync();
    try {
      await this.#createBatchTable();
    } catch (error) {
      // Nested objects whose keys differ only in case (DuckDB names are case-insensitive) cannot become
      // structs: keep nested values as JSON rather than fail the batch again at every retry.
      this.#logger.warn(
        { error: firstLine(error) },
        'sql: the batch has nested fields DuckDB cannot type; nested objects are JSON columns for this batch',
      );
      await this.#createBatchTable(1);
    }
  }

  async #createBatchTable(maximumDepth = -1): Promise<void> {
    // Strings that look like dates stay strings (detecting them would rewrite their text).
    await this.#connection.run(
      `CREATE OR REPLACE TABLE batch AS
       SELECT v.* EXCLUDE (${ROW}), p._partition, p._offset, p._timestamp, p._key
       FROM read_json(${literal(this.#file)}, format = 'newline_delimited', sample_size = -1,
                      dateformat = 'none', timestampformat = 'none', map_inference_threshold = -1,
                      maximum_depth = ${maximumDepth}) AS v
       JOIN ${POSITIONS_TABLE} AS p ON p.row = v.${ROW}
       ORDER BY p.row`,
    );
  }
}

const UINT64_MAX = 2n ** 64n - 1n;

/**
 * DuckDB's JSON reader reads an integer from -2^63 to 2^64 - 1 exactly (BIGINT, UBIGINT, HUGEINT) and any
 * other as a DOUBLE, losing digits: such an integer goes to it as text instead (exact: the query casts it,
 * `::HUGEINT` or `::DECIMAL(38, 0)`).
 */
function readable(integer: BigInteger): BigInteger | string {
  if (
    fitsInt64(integer) ||
    (!integer.rawJSON.startsWith('-') &&
      integer.rawJSON.length <= 20 &&
      BigInt(integer.rawJSON) <= UINT64_MAX)
  )
    return integer;
  return integer.rawJSON;
}

function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '';
}
