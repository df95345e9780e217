/**
 * The PostgreSQL sink: records become rows of one table, exactly once.
 *
 * Every `write` is one transaction: it takes a per-sink advisory lock, reads the sink's committed positions
 * (`SELECT … FOR UPDATE` on the positions table), skips records below them (a batch offered again after a
 * crash, or by a second worker racing on the same sink), inserts the rest, advances the positions, and
 * commits. Rows and positions become visible together or not at all, so `open()` — which reads the
 * positions — always tells the runtime exactly what the table holds.
 *
 * Rows are inserted with `INSERT … SELECT … FROM json_populate_recordset(NULL::table, $1::json)`: the whole
 * chunk travels as one JSON parameter, PostgreSQL converts each field to its column's type. (Measured
 * faster than multi-row `INSERT … VALUES` with parameters and than `unnest` of per-column arrays.) Upserts
 * add `ON CONFLICT (key) DO UPDATE`. A record the table cannot take (a value of the wrong type, a violated
 * constraint) is found by bisecting the failed chunk under savepoints and goes to the dead-letter queue;
 * the rest of the batch is committed.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import type { CheckResult } from '../../core/doctor.ts';
import type { Logger } from '../../core/logger.ts';
import type {
  PipelineRecord,
  Positions,
  Rejection,
  Sink,
  SinkBatch,
  SinkResult,
} from '../../core/pipeline/model.ts';
import { numberText } from '../../core/json.ts';
import { TributaryError } from '../../errors.ts';
import type { PostgresSinkConfig } from './config.ts';
import { describeServer, isRecordError, isRetryable, isSameRowTwice, sqlState, translate } from './errors.ts';
import {
  displayQualified,
  parseQualified,
  quote,
  quoteQualified,
  type QualifiedName,
} from './identifiers.ts';
import { inferColumns } from './infer.ts';

export interface PostgresSinkOptions {
  readonly config: PostgresSinkConfig;
  readonly pipeline: string;
  /** Relative TLS file paths are relative to it. */
  readonly projectRoot: string;
  readonly logger: Logger;
  /** For tests: runs inside the write transaction after rows and positions, just before COMMIT. */
  readonly beforeCommit?: (info: { readonly backendPid: number }) => Promise<void>;
}

interface TableInfo {
  /** Writable columns (not generated) → type, in table order. */
  readonly columns: ReadonlyMap<string, string>;
}

interface Row {
  /** The records this row is made of, in order: one, or for upsert all those of its key in the batch. */
  readonly records: readonly PipelineRecord[];
  /** The row's fields as JSON: the record's fields that have a column (merged, for upsert). */
  readonly json: string;
}

/** Rows per INSERT at most, and bytes of JSON per INSERT at most (a chunk has at least one row). */
const MAX_CHUNK_ROWS = 50_000;
const MAX_CHUNK_BYTES = 16 * 1024 * 1024;

export class PostgresSink implements Sink {
  readonly name: string;
  readonly #config: PostgresSinkConfig;
  readonly #pipeline: string;
  readonly #logger: Logger;
  readonly #pool: pg.Pool;
  readonly #server: string;
  readonly #table: QualifiedName;
  readonly #positionsTable: QualifiedName;
  readonly #rejectionsTable: QualifiedName;
  readonly #extraFields: 'reject' | 'ignore';
  readonly #beforeCommit: PostgresSinkOptions['beforeCommit'];
  /** The table's columns as last read (undefined until it exists). */
  #tableInfo: TableInfo | undefined;
  /** Positions known committed: what open() read, advanced by every commit. */
  readonly #committed = new Map<number, number>();
  /**
   * Partitions whose rows in the rejections table are known to be none (after open nothing is known:
   * every partition may have some).
   */
  readonly #noRejectionsStored = new Set<number>();
  #closed = false;

  constructor(options: PostgresSinkOptions) {
    const { config } = options;
    this.#config = config;
    this.#pipeline = options.pipeline;
    const table = parseQualified(config.table);
    if (!table) throw configError(`table "${config.table}" is not table or schema.table`);
    this.#table = table;
    const positions = parseQualified(config.positions_table, table.schema);
    if (!positions) throw configError(`positions_table "${config.positions_table}" is not a plain name`);
    this.#positionsTable = positions;
    const rejections = parseQualified(config.rejections_table, table.schema);
    if (!rejections) throw configError(`rejections_table "${config.rejections_table}" is not a plain name`);
    this.#rejectionsTable = rejections;
    this.name = config.name ?? `postgres:${displayQualified(table)}`;
    this.#extraFields = config.extra_fields ?? (config.columns ? 'ignore' : 'reject');
    this.#server = describeServer(config.url);
    this.#logger = options.logger.child({ sink: this.name });
    this.#beforeCommit = options.beforeCommit;
    this.#pool = new pg.Pool({
      connectionString: config.url,
      max: 2,
      connectionTimeoutMillis: config.connect_timeout,
      idleTimeoutMillis: 30_000,
      statement_timeout: config.statement_timeout,
      // A socket that hangs without an answer from the server: give up a little after the server would.
      query_timeout: config.statement_timeout + 10_000,
      keepAlive: true,
      application_name: `tributary ${options.pipeline}`.slice(0, 63),
      ...(config.ssl ? { ssl: sslOptions(config.ssl, options.projectRoot) } : {}),
    });
    // A broken idle connection is dropped by the pool; the next write reports the failure if it lasts.
    this.#pool.on('error', () => {});
  }

  async open(): Promise<Positions> {
    await this.#withClient('open', async (client) => {
      await this.#ensureBookkeepingTables(client);
      const { rows } = await client.query<{ partition: number; next_offset: string }>(
        `SELECT partition, next_offset FROM ${quoteQualified(this.#positionsTable)} WHERE pipeline = $1 AND sink = $2`,
        [this.#pipeline, this.name],
      );
      this.#committed.clear();
      for (const row of rows) this.#committed.set(row.partition, Number(row.next_offset));

      this.#tableInfo = await this.#readTable(client);
      if (!this.#tableInfo && !this.#config.create_table) {
        throw new TributaryError(
          'INVALID_INPUT',
          `PostgreSQL sink ${this.name}: table ${displayQualified(this.#table)} does not exist on ${this.#server}`,
          {
            context: { sink: this.name, table: displayQualified(this.#table) },
            hint: 'Create the table, or set create_table: true.',
          },
        );
      }
      if (!this.#tableInfo && this.#config.columns) {
        // Declared columns: create the table now rather than with the first batch.
        await client.query('BEGIN');
        try {
          await this.#createTable(client, new Map(Object.entries(this.#config.columns)));
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK').catch(() => {});
          throw error;
        }
        this.#tableInfo = await this.#readTable(client);
      }
      if (this.#tableInfo) await this.#checkTable(client, this.#tableInfo);
    });
    this.#logger.info(
      {
        server: this.#server,
        table: displayQualified(this.#table),
        positions: Object.fromEntries(this.#committed),
      },
      'PostgreSQL sink opened',
    );
    return new Map(this.#committed);
  }

  async write(batch: SinkBatch): Promise<SinkResult> {
    checkBatch(this.name, batch);
    let rejected: Rejection[] = [];
    let tableInfo: TableInfo | undefined;
    let remembered = false;
    const committed = await this.#withClient('write', async (client) => {
      await client.query('BEGIN');
      try {
        // One writer per sink at a time; then the committed positions, locked until COMMIT.
        await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
          `${displayQualified(this.#positionsTable)}/${this.#pipeline}/${this.name}`,
        ]);
        const { rows } = await client.query<{ partition: number; next_offset: string }>(
          `SELECT partition, next_offset FROM ${quoteQualified(this.#positionsTable)}
            WHERE pipeline = $1 AND sink = $2 FOR UPDATE`,
          [this.#pipeline, this.name],
        );
        const committed = new Map(rows.map((r) => [r.partition, Number(r.next_offset)]));
        const fresh = batch.records.filter((r) => r.offset >= (committed.get(r.partition) ?? 0));
        if (fresh.length < batch.records.length) {
          this.#logger.info(
            { skipped: batch.records.length - fresh.length },
            'skipped records already committed (a batch offered again)',
          );
        }
        tableInfo = this.#tableInfo;
        const partitions = [...batch.positions.keys()];
        if (fresh.length > 0) {
          const result = await this.#insert(client, fresh, tableInfo);
          rejected = result.rejected;
          tableInfo = result.tableInfo;
          await this.#rememberRejections(client, rejected, partitions);
          remembered = true;
        }
        await client.query(
          `INSERT INTO ${quoteQualified(this.#positionsTable)} AS current (pipeline, sink, partition, next_offset)
           SELECT $1, $2, p, o FROM unnest($3::int[], $4::bigint[]) AS u(p, o)
           ON CONFLICT (pipeline, sink, partition)
           DO UPDATE SET next_offset = GREATEST(current.next_offset, EXCLUDED.next_offset)`,
          [this.#pipeline, this.name, partitions, partitions.map((p) => batch.positions.get(p))],
        );
        await this.#beforeCommit?.({ backendPid: (client as unknown as { processID: number }).processID });
        await client.query('COMMIT');
        return committed;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        // The table may have been dropped or altered meanwhile: read it again next time.
        this.#tableInfo = undefined;
        throw error;
      }
    });
    this.#tableInfo = tableInfo;
    if (remembered)
      for (const partition of batch.positions.keys()) {
        if (rejected.some((r) => r.record.partition === partition))
          this.#noRejectionsStored.delete(partition);
        else this.#noRejectionsStored.add(partition);
      }
    for (const [partition, offset] of [...committed, ...batch.positions]) {
      this.#committed.set(partition, Math.max(offset, this.#committed.get(partition) ?? 0));
    }
    if (rejected.length > 0) {
      this.#logger.warn(
        { rejected: rejected.length },
        'records the table could not take go to the dead-letter queue',
      );
    }
    return rejected.length > 0 ? { rejected } : {};
  }

  /**
   * What `write` rejected of these records when it committed them (the runtime asks after a crash that
   * fell between this sink's commit and the dead-letter queue's). Remembered per partition for the last
   * batch that had records there, in the rejections table, in the same transaction as the rows: with
   * concurrency, lanes (which own disjoint partitions) commit in any order and each keeps its own.
   */
  async screen(records: readonly PipelineRecord[]): Promise<readonly Rejection[]> {
    if (records.length === 0) return [];
    const found = await this.#withClient('screen', async (client) => {
      const { rows } = await client.query<{ partition: number; record_offset: string; error: string }>(
        `SELECT r.partition, r.record_offset, r.error
           FROM ${quoteQualified(this.#rejectionsTable)} r
           JOIN unnest($3::int[], $4::bigint[]) AS u(p, o) ON r.partition = u.p AND r.record_offset = u.o
          WHERE r.pipeline = $1 AND r.sink = $2`,
        [this.#pipeline, this.name, records.map((r) => r.partition), records.map((r) => r.offset)],
      );
      return new Map(rows.map((row) => [`${row.partition}:${Number(row.record_offset)}`, row.error]));
    });
    const rejected: Rejection[] = [];
    for (const record of records) {
      const error = found.get(`${record.partition}:${record.offset}`);
      if (error !== undefined) rejected.push({ record, stage: this.name, error });
    }
    return rejected;
  }

  /**
   * For `tributary doctor`, changing nothing: the server answers and is recent enough, the table (if it
   * exists) fits the configuration, and the user may write it and create or write the bookkeeping tables.
   */
  async check(): Promise<CheckResult[]> {
    const results: CheckResult[] = [];
    try {
      await this.#withClient('check', async (client) => {
        const { rows } = await client.query<{ version: string; user: string }>(
          "SELECT current_setting('server_version_num') AS version, current_user AS user",
        );
        const version = Number(rows[0]?.version ?? 0);
        results.push(
          version >= 110_000
            ? { status: 'pass', detail: `${this.#server}: PostgreSQL ${Math.floor(version / 10_000)}` }
            : {
                status: 'fail',
                detail: `${this.#server}: PostgreSQL ${version} is older than 11`,
                fix: 'use PostgreSQL 11 or newer',
              },
        );
        const table = displayQualified(this.#table);
        const info = await this.#readTable(client);
        if (!info) {
          results.push(
            this.#config.create_table
              ? await this.#canCreate(client, this.#table, `${table} does not exist yet; the sink creates it`)
              : {
                  status: 'fail',
                  detail: `${table} does not exist`,
                  fix: 'create it, or set create_table: true',
                },
          );
        } else {
          try {
            await this.#checkTable(client, info);
            const privileges = this.#config.mode === 'upsert' ? 'INSERT, UPDATE' : 'INSERT';
            results.push(
              await this.#privilege(
                client,
                this.#table,
                privileges,
                `${table}: ${info.columns.size} columns`,
              ),
            );
          } catch (error) {
            if (!(error instanceof TributaryError) || error.retryable) throw error;
            results.push({ status: 'fail', detail: error.message, fix: error.hint ?? 'fix the table' });
          }
        }
        for (const bookkeeping of [this.#positionsTable, this.#rejectionsTable]) {
          const name = quoteQualified(bookkeeping);
          const exists = await client.query<{ exists: boolean }>(
            'SELECT to_regclass($1) IS NOT NULL AS exists',
            [name],
          );
          results.push(
            exists.rows[0]?.exists
              ? await this.#privilege(
                  client,
                  bookkeeping,
                  'SELECT, INSERT, UPDATE, DELETE',
                  `${displayQualified(bookkeeping)} is writable`,
                )
              : await this.#canCreate(
                  client,
                  bookkeeping,
                  `${displayQualified(bookkeeping)} does not exist yet; the sink creates it`,
                ),
          );
        }
      });
    } catch (error) {
      const failure =
        error instanceof TributaryError
          ? error
          : translate(error, { server: this.#server, sink: this.name, action: 'check' });
      results.push({ status: 'fail', detail: failure.message, fix: failure.hint ?? 'see the message' });
    }
    return results;
  }

  async #canCreate(client: pg.PoolClient, name: QualifiedName, detail: string): Promise<CheckResult> {
    const { rows } = await client.query<{ allowed: boolean }>(
      `SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)
                   THEN has_schema_privilege($1, 'CREATE')
                   ELSE has_database_privilege(current_database(), 'CREATE') END AS allowed`,
      [name.schema],
    );
    return rows[0]?.allowed
      ? { status: 'pass', detail }
      : {
          status: 'fail',
          detail: `${detail}, but the user may not create tables in schema ${name.schema}`,
          fix: `GRANT CREATE ON SCHEMA ${quote(name.schema)} to the sink's user, or create ${displayQualified(name)} beforehand`,
        };
  }

  async #privilege(
    client: pg.PoolClient,
    name: QualifiedName,
    privileges: string,
    detail: string,
  ): Promise<CheckResult> {
    // Each privilege on its own: has_table_privilege with a list is true when any one is held.
    const { rows } = await client.query<{ allowed: boolean }>(
      'SELECT bool_and(has_table_privilege($1, p)) AS allowed FROM unnest($2::text[]) AS p',
      [quoteQualified(name), privileges.split(', ')],
    );
    return rows[0]?.allowed
      ? { status: 'pass', detail }
      : {
          status: 'fail',
          detail: `the user lacks ${privileges} on ${displayQualified(name)}`,
          fix: `GRANT ${privileges} ON ${quoteQualified(name)} to the sink's user`,
        };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }

  /** Inserts `records` (none of them committed yet) in the open transaction; returns what it rejected. */
  async #insert(
    client: pg.PoolClient,
    records: readonly PipelineRecord[],
    known: TableInfo | undefined,
  ): Promise<{ rejected: Rejection[]; tableInfo: TableInfo }> {
    let tableInfo = known ?? (await this.#readTable(client));
    if (!tableInfo) {
      if (!this.#config.create_table) {
        throw new TributaryError(
          'INVALID_INPUT',
          `PostgreSQL sink ${this.name}: table ${displayQualified(this.#table)} was dropped`,
          {
            context: { sink: this.name, table: displayQualified(this.#table) },
            hint: 'Create the table again, or set create_table: true.',
          },
        );
      }
      const columns = this.#config.columns
        ? new Map(Object.entries(this.#config.columns))
        : this.#inferColumns(records);
      await this.#createTable(client, columns);
      tableInfo = (await this.#readTable(client))!;
    }
    let writable = this.#writableColumns(tableInfo);
    let split = records.map((record) => splitFields(record, writable));
    if (tableInfo === known && split.some((fields) => fields.extra.length > 0)) {
      // Columns may have been added since the table was read: read it again before rejecting anything.
      tableInfo = (await this.#readTable(client)) ?? known;
      writable = this.#writableColumns(tableInfo);
      split = records.map((record) => splitFields(record, writable));
    }

    const rejected: Rejection[] = [];
    const accepted: Array<{ record: PipelineRecord; fields: Readonly<Record<string, unknown>> }> = [];
    for (const [i, record] of records.entries()) {
      const { fields, extra } = split[i]!;
      if (extra.length > 0 && this.#extraFields === 'reject') {
        rejected.push({
          record,
          stage: this.name,
          error: `field${extra.length > 1 ? 's' : ''} ${extra
            .slice(0, 5)
            .map((f) => JSON.stringify(f))
            .join(
              ', ',
            )}${extra.length > 5 ? ', …' : ''} ha${extra.length > 1 ? 've' : 's'} no column in table ${displayQualified(this.#table)}`,
        });
      } else {
        accepted.push({ record, fields });
      }
    }
    // Rows grouped by the columns they have, so that a field a record lacks gets the column's default
    // (append) or keeps the row's value (upsert) whatever the other records of the batch hold.
    const key = this.#config.key ?? [];
    const groups = new Map<string, { columns: string[]; rows: Row[] }>();
    // Records mostly share one shape: look groups up by the fields as they come, sort them out once.
    const byFields = new Map<string, { columns: string[]; rows: Row[] }>();
    const add = (records: readonly PipelineRecord[], fields: Readonly<Record<string, unknown>>) => {
      const names = Object.keys(fields).join('\0');
      let group = byFields.get(names);
      if (!group) {
        const columns = [...tableInfo.columns.keys()].filter(
          (c) => Object.hasOwn(fields, c) || key.includes(c),
        );
        const signature = columns.join('\0');
        group = groups.get(signature);
        if (!group) groups.set(signature, (group = { columns, rows: [] }));
        byFields.set(names, group);
      }
      if (group.columns.length > 0) group.rows.push({ records, json: JSON.stringify(fields) });
    };
    if (this.#config.mode === 'upsert') {
      // Records of one key are merged in order (INSERT … ON CONFLICT cannot touch a row twice): the same
      // row as applying them one after the other.
      const merged = new Map<
        string,
        { records: PipelineRecord[]; fields: Readonly<Record<string, unknown>> }
      >();
      for (const { record, fields } of accepted) {
        const id = JSON.stringify(
          key.map((column) => keySpelling(record.value[column], tableInfo?.columns.get(column))),
        );
        const entry = merged.get(id);
        if (entry) {
          entry.records.push(record);
          // A new object: the records' values are never modified.
          entry.fields = Object.assign(Object.create(null) as Record<string, unknown>, entry.fields, fields);
        } else {
          merged.set(id, { records: [record], fields });
        }
      }
      for (const { records: group, fields } of merged.values()) add(group, fields);
    } else {
      for (const { record, fields } of accepted) add([record], fields);
    }
    let statements = [...groups.values()].flatMap(({ columns, rows }) => {
      const sql = this.#insertSql(columns);
      return [...chunks(rows)].map((chunk) => ({ sql, rows: chunk }));
    });
    if (this.#config.mode === 'upsert' && statements.length > 1) {
      // One key in two spellings in two statements changes no row twice in either, so nothing fails: the
      // later statement would win, whichever record is later. Those keys' records go one by one, in
      // order; the other rows as they are. When PostgreSQL cannot tell (`#sameKeyRows` empty), statement
      // order it is: every record alone would cost far more, on every batch of a table with, say, an
      // updated_at trigger.
      const clashing = await this.#sameKeyRows(
        client,
        statements.flatMap((statement) => statement.rows),
      );
      if (clashing.size > 0) {
        await this.#insertEach(client, recordsInOrder([...clashing]), tableInfo, rejected);
        statements = statements
          .map(({ sql, rows }) => ({ sql, rows: rows.filter((row) => !clashing.has(row)) }))
          .filter(({ rows }) => rows.length > 0);
      }
    }
    for (const { sql, rows } of statements)
      await this.#insertBisecting(client, sql, rows, tableInfo, rejected);
    return { rejected, tableInfo };
  }

  /** The columns records are written to: the table's, and with `columns` only those declared. */
  #writableColumns(table: TableInfo): ReadonlySet<string> {
    const declared = this.#config.columns;
    return new Set(
      [...table.columns.keys()].filter((c) => declared === undefined || Object.hasOwn(declared, c)),
    );
  }

  /**
   * Inserts the rows under a savepoint. When the table refuses a row (a value of the wrong type, a violated
   * constraint) it halves the rows until it has found each refused one, and rejects its records; a merged
   * upsert row is then retried record by record, so that only the records at fault are rejected. Rows
   * of one key in spellings `keySpelling` does not bring together (`isSameRowTwice`) are written record by
   * record, in order — only those: PostgreSQL names them (`#sameKeyRows`), the others go on together.
   */
  async #insertBisecting(
    client: pg.PoolClient,
    sql: string,
    rows: readonly Row[],
    table: TableInfo,
    rejected: Rejection[],
  ): Promise<void> {
    const several = rows.length > 1 || (rows[0]?.records.length ?? 0) > 1;
    const error = await this.#tryInsert(client, sql, `[${rows.map((r) => r.json).join(',')}]`, several);
    if (error === undefined) return;
    if (isSameRowTwice(error)) {
      // One key in spellings merged apart (1 and "1", say): that key's records one by one, in the batch's
      // order, so that the last one wins as if each had been applied in turn; the other rows together.
      // Not knowing which rows clash, every record alone is the safe way.
      const clashing = await this.#sameKeyRows(client, rows);
      await this.#insertEach(
        client,
        recordsInOrder(clashing.size > 0 ? [...clashing] : rows),
        table,
        rejected,
      );
      if (clashing.size > 0) {
        const others = rows.filter((row) => !clashing.has(row));
        if (others.length > 0) await this.#insertBisecting(client, sql, others, table, rejected);
      }
      return;
    }
    if (rows.length > 1) {
      const middle = Math.ceil(rows.length / 2);
      await this.#insertBisecting(client, sql, rows.slice(0, middle), table, rejected);
      await this.#insertBisecting(client, sql, rows.slice(middle), table, rejected);
      return;
    }
    const row = rows[0]!;
    if (row.records.length === 1) {
      rejected.push({ record: row.records[0]!, stage: this.name, error: this.#refusal(error) });
      return;
    }
    await this.#insertEach(client, row.records, table, rejected);
  }

  /**
   * The rows whose keys PostgreSQL takes as one (each row's key fields read as the table's row type, as the
   * INSERT reads them; a NULL key part is counted as a clash too, which costs nothing but a row written
   * alone). Empty when none are, and whenever the answer could miss keys the INSERT's conflict check takes
   * as one ("don't know"): a BEFORE INSERT row trigger (it may change a key after it is read), a unique
   * index with a collation or operator class of its own (it may take more values as equal than the column
   * does), or a query that fails (a key type without equality, a key value the column cannot hold).
   */
  async #sameKeyRows(client: pg.PoolClient, rows: readonly Row[]): Promise<Set<Row>> {
    const table = quoteQualified(this.#table);
    const keyColumns = this.#config.key ?? [];
    const key = keyColumns.map((column) => `r.${quote(column)}`).join(', ');
    await client.query('SAVEPOINT tributary_keys');
    try {
      const {
        rows: [conflicts],
      } = await client.query<{ other: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM pg_trigger t
                         WHERE t.tgrelid = $1::regclass AND NOT t.tgisinternal AND (t.tgtype & 7) = 7)
             OR EXISTS (SELECT 1 FROM pg_index i
                               CROSS JOIN LATERAL unnest(i.indkey::int2[], i.indcollation::oid[], i.indclass::oid[]) AS u(attnum, coll, opclass)
                               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.attnum
                               JOIN pg_opclass o ON o.oid = u.opclass
                         WHERE i.indrelid = $1::regclass AND i.indisunique
                           AND (u.coll <> a.attcollation OR NOT o.opcdefault)) AS other`,
        [table],
      );
      let clashing = new Set<Row>();
      if (conflicts?.other === false) {
        // The key fields only: a bad value in another column (a record for the DLQ) must not fail the query.
        // A row's records all spell its key alike but for integers, which PostgreSQL reads alike.
        const keys = rows.map((row) => {
          const { value } = row.records.at(-1)!;
          return JSON.stringify(
            Object.fromEntries(
              keyColumns.map((column) => [column, Object.hasOwn(value, column) ? value[column] : null]),
            ),
          );
        });
        const result = await client.query<{ rows: Array<number | string> }>(
          `SELECT array_agg(e.n - 1) AS rows
             FROM json_array_elements($1::json) WITH ORDINALITY AS e(j, n),
                  LATERAL json_populate_record(NULL::${table}, e.j) AS r
            GROUP BY ${key} HAVING count(*) > 1`,
          [`[${keys.join(',')}]`],
        );
        clashing = new Set(result.rows.flatMap((group) => group.rows.map((i) => rows[Number(i)]!)));
      }
      await client.query('RELEASE SAVEPOINT tributary_keys');
      return clashing;
    } catch (error) {
      // Only reads: the server's refusal (not a lost connection) means "write them one by one".
      if (isRetryable(error) || !/^[0-9A-Z]{5}$/.test(sqlState(error))) throw error;
      await client.query('ROLLBACK TO SAVEPOINT tributary_keys');
      await client.query('RELEASE SAVEPOINT tributary_keys');
      return new Set();
    }
  }

  /** Inserts each record as a row of its own, in the order given; rejects those the table refuses. */
  async #insertEach(
    client: pg.PoolClient,
    records: readonly PipelineRecord[],
    table: TableInfo,
    rejected: Rejection[],
  ): Promise<void> {
    const key = this.#config.key ?? [];
    const writable = this.#writableColumns(table);
    for (const record of records) {
      const { fields } = splitFields(record, writable);
      const columns = [...table.columns.keys()].filter((c) => Object.hasOwn(fields, c) || key.includes(c));
      const failure = await this.#tryInsert(client, this.#insertSql(columns), `[${JSON.stringify(fields)}]`);
      if (failure !== undefined) rejected.push({ record, stage: this.name, error: this.#refusal(failure) });
    }
  }

  /**
   * Runs one INSERT under a savepoint; returns the error when the table refused a row (or, with `several`
   * rows or records, when it would change one row twice), else undefined.
   */
  async #tryInsert(
    client: pg.PoolClient,
    sql: string,
    json: string,
    several = false,
  ): Promise<Error | undefined> {
    await client.query('SAVEPOINT tributary_rows');
    try {
      await client.query(sql, [json]);
      await client.query('RELEASE SAVEPOINT tributary_rows');
      return undefined;
    } catch (error) {
      if (sqlState(error) === '42P01' || sqlState(error) === '42703') {
        // Dropped or altered under us: the retry reads the table again (and creates it if allowed).
        throw new TributaryError(
          'SERVICE_UNAVAILABLE',
          `PostgreSQL sink ${this.name}: table ${displayQualified(this.#table)} changed during the write: ${(error as Error).message}`,
          {
            context: { sink: this.name, table: displayQualified(this.#table) },
            cause: error,
            retryable: true,
          },
        );
      }
      // A single row changing a row twice is not the key's spellings: a trigger's subquery, say.
      if (!isRecordError(error) && !(several && isSameRowTwice(error))) throw error;
      await client.query('ROLLBACK TO SAVEPOINT tributary_rows');
      await client.query('RELEASE SAVEPOINT tributary_rows');
      return error as Error;
    }
  }

  #refusal(error: Error): string {
    return `table ${displayQualified(this.#table)} refused the row: ${error.message}`;
  }

  #insertSql(columns: readonly string[]): string {
    const list = columns.map(quote).join(', ');
    const table = quoteQualified(this.#table);
    let sql = `INSERT INTO ${table} (${list}) SELECT ${list} FROM json_populate_recordset(NULL::${table}, $1::json)`;
    if (this.#config.mode === 'upsert') {
      const key = this.#config.key ?? [];
      const others = columns.filter((c) => !key.includes(c));
      sql +=
        ` ON CONFLICT (${key.map(quote).join(', ')}) ` +
        (others.length === 0
          ? 'DO NOTHING'
          : `DO UPDATE SET ${others.map((c) => `${quote(c)} = EXCLUDED.${quote(c)}`).join(', ')}`);
    }
    return sql;
  }

  #inferColumns(records: readonly PipelineRecord[]): Map<string, string> {
    const { columns, skipped } = inferColumns(records.map((r) => r.value));
    if (skipped.length > 0) {
      this.#logger.warn(
        { fields: skipped.slice(0, 20).map((f) => JSON.stringify(f)) },
        'fields whose names are not plain identifiers get no column',
      );
    }
    for (const column of this.#config.key ?? []) {
      if (!columns.has(column)) {
        throw new TributaryError(
          'INVALID_INPUT',
          `PostgreSQL sink ${this.name}: key column "${column}" is not a field of the first batch's records`,
          {
            context: { sink: this.name, table: displayQualified(this.#table), column },
            hint: 'Declare the table with `columns`, or create it yourself.',
          },
        );
      }
    }
    if (columns.size === 0) {
      throw new TributaryError(
        'INVALID_INPUT',
        `PostgreSQL sink ${this.name}: the first batch has no field that can be a column of ${displayQualified(this.#table)}`,
        { context: { sink: this.name }, hint: 'Declare the table with `columns`, or create it yourself.' },
      );
    }
    return columns;
  }

  async #createTable(client: pg.PoolClient, columns: ReadonlyMap<string, string>): Promise<void> {
    const definitions = [...columns].map(([column, type]) => `${quote(column)} ${type}`);
    if (this.#config.mode === 'upsert') {
      definitions.push(`PRIMARY KEY (${(this.#config.key ?? []).map(quote).join(', ')})`);
    }
    try {
      await this.#ensureSchema(client, this.#table.schema);
      await client.query(`CREATE TABLE ${quoteQualified(this.#table)} (${definitions.join(', ')})`);
    } catch (error) {
      throw raceOrError(error, this.name, `table ${displayQualified(this.#table)}`);
    }
    this.#logger.info(
      { table: displayQualified(this.#table), columns: Object.fromEntries(columns) },
      'created the table',
    );
  }

  async #ensureSchema(client: pg.PoolClient, schema: string): Promise<void> {
    const { rowCount } = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    if (rowCount === 0) await client.query(`CREATE SCHEMA IF NOT EXISTS ${quote(schema)}`);
  }

  /** The positions table and the rejections table, created when missing. */
  async #ensureBookkeepingTables(client: pg.PoolClient): Promise<void> {
    const tables: Array<[QualifiedName, string]> = [
      [
        this.#positionsTable,
        'pipeline text NOT NULL, sink text NOT NULL, partition integer NOT NULL, next_offset bigint NOT NULL, ' +
          'PRIMARY KEY (pipeline, sink, partition)',
      ],
      [
        this.#rejectionsTable,
        'pipeline text NOT NULL, sink text NOT NULL, partition integer NOT NULL, record_offset bigint NOT NULL, ' +
          'error text NOT NULL, PRIMARY KEY (pipeline, sink, partition, record_offset)',
      ],
    ];
    for (const [table, columns] of tables) {
      const name = quoteQualified(table);
      const { rows } = await client.query<{ exists: boolean }>(
        'SELECT to_regclass($1) IS NOT NULL AS exists',
        [name],
      );
      if (rows[0]?.exists) continue;
      try {
        await this.#ensureSchema(client, table.schema);
        await client.query(`CREATE TABLE IF NOT EXISTS ${name} (${columns})`);
      } catch (error) {
        // Another sink created it at the same moment.
        if (!['23505', '42P07', '42P06'].includes(sqlState(error))) throw error;
      }
    }
  }

  /**
   * Replaces the remembered rejections of the batch's partitions (those of the previous batch there) with
   * this batch's (see `screen`).
   */
  async #rememberRejections(
    client: pg.PoolClient,
    rejected: readonly Rejection[],
    partitions: readonly number[],
  ): Promise<void> {
    const table = quoteQualified(this.#rejectionsTable);
    const stale = partitions.filter((p) => !this.#noRejectionsStored.has(p));
    if (stale.length > 0) {
      await client.query(
        `DELETE FROM ${table} WHERE pipeline = $1 AND sink = $2 AND partition = ANY($3::int[])`,
        [this.#pipeline, this.name, stale],
      );
    }
    if (rejected.length > 0) {
      await client.query(
        `INSERT INTO ${table} (pipeline, sink, partition, record_offset, error)
         SELECT $1, $2, p, o, e FROM unnest($3::int[], $4::bigint[], $5::text[]) AS u(p, o, e)`,
        [
          this.#pipeline,
          this.name,
          rejected.map((r) => r.record.partition),
          rejected.map((r) => r.record.offset),
          rejected.map((r) => r.error),
        ],
      );
    }
  }

  async #readTable(client: pg.PoolClient): Promise<TableInfo | undefined> {
    const { rows } = await client.query<{ name: string | null; type: string | null }>(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
         FROM (SELECT to_regclass($1) AS oid) t
         LEFT JOIN pg_attribute a
           ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
        WHERE t.oid IS NOT NULL
        ORDER BY a.attnum`,
      [quoteQualified(this.#table)],
    );
    if (rows.length === 0) return undefined;
    return { columns: new Map(rows.filter((r) => r.name !== null).map((r) => [r.name!, r.type ?? ''])) };
  }

  /** The table fits the configuration: declared and key columns exist; upsert has a unique index on the key. */
  async #checkTable(client: pg.PoolClient, table: TableInfo): Promise<void> {
    const wanted = [...Object.keys(this.#config.columns ?? {}), ...(this.#config.key ?? [])];
    const missing = [...new Set(wanted)].filter((c) => !table.columns.has(c));
    if (missing.length > 0) {
      throw new TributaryError(
        'INVALID_INPUT',
        `PostgreSQL sink ${this.name}: table ${displayQualified(this.#table)} has no column ${missing.map((c) => `"${c}"`).join(', ')}`,
        {
          context: { sink: this.name, table: displayQualified(this.#table), missing },
          hint: 'Add the columns to the table (ALTER TABLE … ADD COLUMN), or remove them from `columns`/`key`.',
        },
      );
    }
    if (this.#config.mode !== 'upsert') return;
    const key = [...(this.#config.key ?? [])].sort();
    const { rowCount } = await client.query(
      `SELECT 1 FROM pg_index i
        WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
          AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text)
                 FROM unnest(i.indkey[0:i.indnkeyatts - 1]) AS k(attnum)
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) = $2::text[]`,
      [quoteQualified(this.#table), key],
    );
    if (rowCount === 0) {
      throw new TributaryError(
        'INVALID_INPUT',
        `PostgreSQL sink ${this.name}: table ${displayQualified(this.#table)} has no primary key or unique index on (${key.join(', ')}), which upsert needs`,
        {
          context: { sink: this.name, table: displayQualified(this.#table), key },
          hint: `Add one: CREATE UNIQUE INDEX ON ${quoteQualified(this.#table)} (${key.map(quote).join(', ')}).`,
        },
      );
    }
  }

  /** Runs `work` on a pooled connection; a connection that failed is discarded, errors are translated. */
  async #withClient<T>(action: string, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    if (this.#closed) {
      throw new TributaryError('SERVICE_UNAVAILABLE', `PostgreSQL sink ${this.name} is closed`, {
        context: { sink: this.name },
        hint: 'A closed sink cannot be used; open a new one.',
      });
    }
    const facts = { server: this.#server, sink: this.name, table: displayQualified(this.#table), action };
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw translate(error, { ...facts, action: 'connect' });
    }
    let failed: Error | undefined;
    // A connection that breaks between two queries emits 'error' (which would crash the process without a
    // listener); the next query then fails, and the error says why the connection broke.
    let broken: Error | undefined;
    const onError = (error: Error) => {
      broken ??= error;
    };
    client.on('error', onError);
    try {
      return await work(client);
    } catch (error) {
      // After a failure the connection is in doubt: do not reuse it.
      failed = error instanceof Error ? error : new Error(String(error));
      throw translate(error instanceof TributaryError ? error : (broken ?? error), facts);
    } finally {
      client.off('error', onError);
      client.release(failed);
    }
  }
}

function configError(message: string): TributaryError {
  return new TributaryError('CONFIG_INVALID', message, { hint: 'Fix the sink in the pipeline file.' });
}

/** Every record's partition has a position, past the record. Anything else is a bug in the caller. */
function checkBatch(sink: string, batch: SinkBatch): void {
  for (const record of batch.records) {
    const position = batch.positions.get(record.partition);
    if (position === undefined || record.offset >= position) {
      throw new TributaryError(
        'INTERNAL',
        `Sink ${sink} was given record ${record.partition}:${record.offset} with position ${position ?? 'none'} for its partition`,
        { context: { sink, partition: record.partition, offset: record.offset, position } },
      );
    }
  }
}

/** A CREATE that lost a race with another session is retryable: the next attempt finds the object. */
function raceOrError(error: unknown, sink: string, what: string): unknown {
  if (['23505', '42P07', '42P06'].includes(sqlState(error))) {
    return new TributaryError(
      'SERVICE_UNAVAILABLE',
      `PostgreSQL sink ${sink}: ${what} was created by another session meanwhile`,
      {
        context: { sink },
        cause: error,
        retryable: true,
        hint: 'The write is retried and uses the table that is now there.',
      },
    );
  }
  return error;
}

/** The record's fields that have a column, and the names of the non-null ones that have none. */
function splitFields(
  record: PipelineRecord,
  writable: ReadonlySet<string>,
): { fields: Readonly<Record<string, unknown>>; extra: string[] } {
  const names = Object.keys(record.value);
  // The common case: every field has a column, and the value is used as it is (never modified).
  if (names.every((name) => writable.has(name))) return { fields: record.value, extra: [] };
  // No prototype: a field named __proto__ is a field like any other.
  const fields = Object.create(null) as Record<string, unknown>;
  const extra: string[] = [];
  for (const field of names) {
    const value = record.value[field];
    if (writable.has(field)) fields[field] = value;
    else if (value !== null && value !== undefined) extra.push(field);
  }
  return { fields, extra };
}

/** The rows' records in (partition, offset) order: the order that makes the last record of a key win. */
function recordsInOrder(rows: readonly Row[]): PipelineRecord[] {
  return rows.flatMap((row) => row.records).sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

function* chunks(rows: readonly Row[]): Generator<Row[]> {
  let chunk: Row[] = [];
  let bytes = 0;
  for (const row of rows) {
    if (chunk.length > 0 && (chunk.length >= MAX_CHUNK_ROWS || bytes + row.json.length > MAX_CHUNK_BYTES)) {
      yield chunk;
      chunk = [];
      bytes = 0;
    }
    chunk.push(row);
    bytes += row.json.length + 1;
  }
  if (chunk.length > 0) yield chunk;
}

function sslOptions(
  ssl: NonNullable<PostgresSinkConfig['ssl']>,
  projectRoot: string,
): pg.ClientConfig['ssl'] {
  if (ssl.mode === 'disable') return false;
  const read = (file: string | undefined, what: string) => {
    if (file === undefined) return undefined;
    const full = path.resolve(projectRoot, file);
    try {
      return readFileSync(full, 'utf8');
    } catch (error) {
      throw new TributaryError(
        'CONFIG_INVALID',
        `Cannot read the ${what} file ${full} of a PostgreSQL sink`,
        {
          cause: error,
          hint: 'Fix the path under ssl: in the pipeline file (relative paths are relative to the project).',
        },
      );
    }
  };
  const ca = read(ssl.ca, 'ssl.ca');
  const cert = read(ssl.cert, 'ssl.cert');
  const key = read(ssl.key, 'ssl.key');
  return {
    rejectUnauthorized: ssl.mode === 'verify-full',
    ...(ca !== undefined ? { ca } : {}),
    ...(cert !== undefined ? { cert } : {}),
    ...(key !== undefined ? { key } : {}),
  };
}

/**
 * A key value as an integer column holds it, for merging a batch's records by key: `1`, `"1"` and `" 1"` are
 * one key (and an integer beyond ±2^53 and its digits as text). Anything else as written: spellings still
 * apart (a timestamptz at two offsets) are named by PostgreSQL — after an INSERT refused to change a row
 * twice, or before a batch of several INSERTs — and their records written one by one, in order.
 */
export function keySpelling(value: unknown, type: string | undefined): unknown {
  if (value === undefined || value === null) return null;
  if (type !== undefined && /^(smallint|integer|bigint)$/.test(type)) {
    const text = typeof value === 'string' ? value.trim() : (numberText(value) ?? '');
    if (/^[+-]?\d+$/.test(text)) return BigInt(text).toString();
  }
  return value;
}
