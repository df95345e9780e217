/**
 * The Iceberg sink: appends (bronze) or upserts by key (silver) each batch into a table, exactly once.
 *
 * Exactly-once: every commit records, in its snapshot summary under `tributary.pipeline.<pipeline>`, the
 * source topic and the positions it covers — in the same atomic metadata swap as the data. `open` reads
 * them back from the newest snapshot that has them, so after a crash at any point the pipeline resumes
 * exactly where the table says, and a batch is never committed twice (docs/exactly-once.md).
 *
 * Appends are written in two halves: `prepare` stages a batch and writes its Parquet data files on a
 * DuckDB connection of its own (lanes of a pipeline with `concurrency` do so side by side), and `write`
 * commits those files with the positions, one batch at a time.
 *
 * Bad records never block good ones: a value that cannot be read as its column's type, at the top or inside a
 * struct, list or map (a number too large for it, beyond a float's or double's range too, says what to do; so
 * does a struct given anything but an object), a missing required column, or (schema policy `freeze`) a column
 * the table lacks sends that record to the DLQ.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import type { Catalog } from '../../catalog/catalog.ts';
import { parseTableIdentifier, type TableIdentifier } from '../../catalog/identifier.ts';
import { byteSize } from '../../core/config/units.ts';
import type { CheckResult } from '../../core/doctor.ts';
import { isBigInteger, parseJsonExact, stringifyExact } from '../../core/json.ts';
import type { ComponentContext, SinkDefinition } from '../../core/pipeline/components.ts';
import {
  furthest,
  recordsPast,
  type PipelineRecord,
  type Positions,
  type Rejection,
  type Sink,
  type SinkBatch,
  type SinkResult,
} from '../../core/pipeline/model.ts';
import { didYouMean } from '../../did-you-mean.ts';
import { isTributaryError, TributaryError } from '../../errors.ts';
import {
  decimalParts,
  duckdbType,
  openEngine,
  quoteIdentifier,
  quoteLiteral,
  type Engine,
} from '../../iceberg/duckdb.ts';
import { ancestorsOf, type TableMetadata } from '../../iceberg/metadata.ts';
import { updateSchema } from '../../iceberg/operations/evolve.ts';
import { KeyIndex } from '../../iceberg/operations/key-index.ts';
import {
  append,
  commitFiles,
  upsert,
  writeFiles,
  writtenForCurrent,
  type WriteFilesOptions,
  type WrittenFiles,
} from '../../iceberg/operations/write.ts';
import { buildSpec, parsePartitionExpression } from '../../iceberg/partition-spec.ts';
import { assignFreshIds, isPromotionAllowed, parseSchemaJson } from '../../iceberg/schema.ts';
import { unionByName, type SchemaChange } from '../../iceberg/schema-update.ts';
import type { Table } from '../../iceberg/table.ts';
import {
  sameType,
  type IcebergType,
  type PrimitiveType,
  type Schema,
  type StructType,
} from '../../iceberg/types.ts';
import { DeclaredTypes, inferStruct, withDeclaredTypes } from './infer-schema.ts';

export const icebergSinkSchema = z
  .strictObject({
    type: z.literal('iceberg').describe('Commits records into an Apache Iceberg table, exactly once.'),
    table: z.string().min(1).describe('namespace.table; created on the first batch when absent.'),
    mode: z
      .enum(['append', 'upsert'])
      .default('append')
      .describe(
        'append: every record is a new row (bronze). upsert: a record replaces the row with the same key (silver).',
      ),
    key: z
      .array(z.string().min(1))
      .optional()
      .describe("Key columns for upsert (default: the table's identifier fields)."),
    delete_column: z
      .string()
      .min(1)
      .optional()
      .describe(
        "With mode upsert: a boolean field of the records marking deletions (the cdc transform's _deleted): " +
          'a record marked true deletes the row with its key. The field is not a column of the table.',
      ),
    schema: z
      .string()
      .optional()
      .describe(
        "JSON schema file for creating the table (see docs/tables.md); default: inferred from the first records written (a batch all filtered out makes no table), with the types they declare where they do (the cdc transform: PostgreSQL's).",
      ),
    partition: z
      .string()
      .optional()
      .describe('Partitioning when the table is created, e.g. "day(ts), bucket(16, user_id)".'),
    schema_policy: z
      .enum(['evolve', 'freeze', 'fail'])
      .default('evolve')
      .describe(
        "A record with columns the table lacks: evolve adds them, of the types the records declare (the cdc transform: PostgreSQL's) or else inferred from the values; freeze sends the record to the DLQ; fail stops the pipeline.",
      ),
    target_file_size: byteSize('Target size of the Parquet data files.').default(128 * 1024 * 1024),
    properties: z
      .record(z.string(), z.string())
      .default({})
      .describe('Table properties set when the table is created.'),
  })
  .describe('Apache Iceberg table.');

export type IcebergSinkConfig = z.output<typeof icebergSinkSchema>;

/** The snapshot-summary key under which a pipeline records its positions. */
export function positionsKey(pipeline: string): string {
  return `tributary.pipeline.${pipeline}`;
}

interface StoredPositions {
  readonly topic: string;
  readonly positions: Record<string, number>;
}

/** The positions a pipeline last committed to the table, from the newest snapshot that records them. */
export function committedPositions(table: Table, pipeline: string, topic: string): Map<number, number> {
  return positionsIn(table.metadata, pipeline, topic);
}

function positionsIn(metadata: TableMetadata, pipeline: string, topic: string): Map<number, number> {
  const key = positionsKey(pipeline);
  for (const snapshot of ancestorsOf(metadata, metadata['current-snapshot-id'])) {
    const text = snapshot.summary[key];
    if (text === undefined) continue;
    const stored = JSON.parse(text) as StoredPositions;
    if (stored.topic !== topic) return new Map();
    return new Map(Object.entries(stored.positions).map(([p, o]) => [Number(p), o]));
  }
  return new Map();
}

/** An idle sink still commits its positions this often, so a restart does not replay far. */
const EMPTY_COMMIT_INTERVAL_MS = 60_000;

/**
 * Prepared files older than this are written again rather than committed: no snapshot reaches them until
 * the commit, and `remove-orphan-files` deletes unreached files older than a day (ORPHAN_MIN_AGE_MS, maintenance.ts)
 * — a batch held back for long (another sink down, commits failing) must not commit files it deleted.
 */
const PREPARED_MAX_AGE_MS = 3_600_000;

/** An append's data files, written by `prepare`, awaiting their commit. */
interface PreparedAppend {
  readonly records: readonly PipelineRecord[];
  readonly written: WrittenFiles;
  readonly rejected: readonly Rejection[];
  /** When the files were written (ms). */
  readonly at: number;
}

export interface IcebergSinkOptions {
  readonly name: string;
  readonly config: IcebergSinkConfig;
  readonly pipeline: string;
  readonly topic: string;
  readonly projectRoot: string;
  readonly catalog: () => Promise<Catalog>;
  readonly engine: () => Promise<Engine>;
  /** A fixed schema for the table (the DLQ); otherwise config.schema or inference. */
  readonly fixedSchema?: StructType;
}

export class IcebergSink implements Sink {
  readonly name: string;
  // Staging takes `raw`; values are read only for records with columns the table lacks.
  readonly usesRaw = true;
  readonly #options: IcebergSinkOptions;
  readonly #identifier: TableIdentifier;
  #table: Table | undefined;
  #lastCommit = 0;
  /** Positions of batches with no records accepted since the last commit, not committed yet. */
  #unsaved: Positions | undefined;
  readonly #workDir = mkdtempSync(path.join(tmpdir(), 'tributary-iceberg-sink-'));
  /**
   * Per engine, where the NDJSON of a chunk is built; kept across chunks and batches. An engine stages
   * one batch at a time (the shared one in `write`'s turn, this sink's own in `prepare`).
   */
  readonly #scratch = new Map<Engine, { buffer: Buffer }>();
  /** DuckDB engines of this sink's own, for `prepare`, and those not in use. */
  readonly #engines: Engine[] = [];
  readonly #idleEngines: Engine[] = [];
  #tableLoading: Promise<Table> | undefined;
  /** Upserts: where the table's rows are by key, kept across batches (the engine holds it). */
  readonly #keyIndex = new KeyIndex();
  /** Prepares under way. */
  readonly #preparing = new Set<Promise<PreparedAppend | undefined>>();
  /** Column types the records declare, used where columns would otherwise be inferred. */
  readonly #declared = new DeclaredTypes();

  constructor(options: IcebergSinkOptions) {
    this.name = options.name;
    this.#options = options;
    this.#identifier = parseTableIdentifier(options.config.table);
  }

  async open(): Promise<Positions> {
    const catalog = await this.#options.catalog();
    if (!(await catalog.tableExists(this.#identifier))) return new Map();
    this.#table = await catalog.loadTable(this.#identifier);
    return committedPositions(this.#table, this.#options.pipeline, this.#options.topic);
  }

  /**
   * Stages an append's records and writes their data files, committing nothing: `write` commits them.
   * Records with columns the table lacks, and upserts (which read the table), are left to `write`.
   */
  async prepare(records: readonly PipelineRecord[]): Promise<PreparedAppend | undefined> {
    // Tracked so that `close` waits for it: a lane that failed may leave a prepare of its batch running.
    const work = this.#prepare(records);
    this.#preparing.add(work);
    try {
      return await work;
    } finally {
      this.#preparing.delete(work);
    }
  }

  async #prepare(records: readonly PipelineRecord[]): Promise<PreparedAppend | undefined> {
    if (this.#options.config.mode !== 'append' || records.length === 0) return undefined;
    const table = await this.#ensureTable(records);
    const schema = table.schema;
    if (this.#unknownColumns(schema, records).size > 0 || this.#widenings(schema, records).length > 0)
      return undefined;
    const engine = this.#idleEngines.pop() ?? (await this.#openEngine());
    try {
      const rejected: Rejection[] = [];
      const at = Date.now();
      const stage = await this.#stage(engine, schema, records, rejected);
      try {
        const written = await writeFiles(table, engine, acceptedRows(stage), this.#writeOptions);
        return { records, written, rejected, at };
      } finally {
        await engine.connection.run(`drop table if exists ${stage}`);
      }
    } finally {
      this.#idleEngines.push(engine);
    }
  }

  async discard(prepared: unknown): Promise<void> {
    if (this.#table && prepared) await this.#discard(this.#table, prepared as PreparedAppend);
  }

  async #openEngine(): Promise<Engine> {
    // One thread: the pipeline's other lanes and its JavaScript thread use the other cores.
    const engine = await openEngine({ threads: 1 });
    this.#engines.push(engine);
    // DuckDB keeps up to 128 MiB freed by its threads before returning it; a staging needs a few
    // megabytes at a time.
    await engine.connection.run(`set allocator_flush_threshold = '8MiB'`);
    return engine;
  }

  async write(batch: SinkBatch): Promise<SinkResult> {
    const prepared = batch.prepared as PreparedAppend | undefined;
    let { records, positions } = batch;
    if (records.length === 0 && Date.now() - this.#lastCommit < EMPTY_COMMIT_INTERVAL_MS) {
      this.#unsaved = positions; // committed by the next write, or by flush() when the pipeline stops
      return {};
    }
    if (records.length === 0 && (await this.#notInferredYet())) {
      // A table whose columns come from the data is made with the first records (made now, it would have
      // none, and no batch could be staged into it); until they come, nothing holds the positions.
      this.#unsaved = positions;
      return {};
    }
    this.#unsaved = undefined;
    const table = await this.#ensureTable(records);
    await table.refresh();
    // Another worker may have committed this batch already: the table's positions are the truth.
    const current = committedPositions(table, this.#options.pipeline, this.#options.topic);
    // Prepared files are left alone here: an earlier attempt of this very write may have committed them
    // (and failed after the commit point); otherwise they are orphans, which maintenance removes.
    if ([...positions].every(([p, o]) => (current.get(p) ?? -1) >= o)) return {};
    // Part of it, or positions past it: written by another process running this pipeline since the runtime
    // read them (its commit is whole, so every record before its positions is in the table). Only the
    // records past them are written, and no partition's position goes back.
    records = recordsPast(records, current);
    positions = furthest(positions, current);
    if (prepared) {
      // Files written against the table's current schema and spec, lately, are committed as they are;
      // otherwise (the schema evolved meanwhile, or they are old: see PREPARED_MAX_AGE_MS) the batch is
      // written again below.
      if (
        prepared.records === records &&
        writtenForCurrent(table, prepared.written) &&
        Date.now() - prepared.at < PREPARED_MAX_AGE_MS
      ) {
        await commitFiles(table, prepared.written, {
          summary: this.#summary(positions),
          precondition: this.#unmoved(table.name, current),
        });
        this.#lastCommit = Date.now();
        return { rejected: prepared.rejected };
      }
      await this.#discard(table, prepared);
    }

    const rejected: Rejection[] = [];
    let accepted = [...records];
    const unknown = this.#unknownColumns(table.schema, accepted);
    if (unknown.size > 0) {
      const policy = this.#options.config.schema_policy;
      if (policy === 'fail') {
        throw new TributaryError(
          'PIPELINE_FAILED',
          `${table.name} has no column${unknown.size > 1 ? 's' : ''} ${[...unknown].join(', ')} (schema_policy: fail)`,
          {
            hint: 'add the columns to the table, or set schema_policy to evolve or freeze',
          },
        );
      }
      if (policy === 'freeze') {
        accepted = accepted.filter((record) => {
          const extra = fieldsOf(record).filter((k) => unknown.has(k));
          if (extra.length)
            rejected.push({
              record,
              stage: this.name,
              error: `${table.name} has no column ${extra.join(', ')} (schema_policy: freeze)`,
            });
          return extra.length === 0;
        });
      } else {
        // Only the records that have a new column are decoded (when they came as raw bytes). A type
        // they declare (a CDC column's, as PostgreSQL has it) wins over the one their values suggest.
        const adding = accepted.filter((r) => fieldsOf(r).some((k) => unknown.has(k)));
        const incoming = withDeclaredTypes(
          inferStruct(
            adding.map((r) => Object.fromEntries(Object.entries(r.value).filter(([k]) => unknown.has(k)))),
          ),
          this.#declared.of(adding),
        );
        await updateSchema(table, unionByName(table.schema, incoming));
      }
    }
    if (this.#options.config.schema_policy === 'evolve') {
      const widen = this.#widenings(table.schema, accepted);
      if (widen.length) await updateSchema(table, widen);
    }
    const engine = await this.#options.engine();
    const stage = await this.#stage(engine, table.schema, accepted, rejected);
    try {
      const summary = this.#summary(positions);
      const relation = acceptedRows(stage);
      if (this.#options.config.mode === 'upsert')
        await upsert(table, engine, relation, {
          keyColumns: this.#options.config.key,
          ...(this.#options.config.delete_column ? { deleteColumn: this.#options.config.delete_column } : {}),
          keyIndex: this.#keyIndex,
          materialize: false, // the stage is a table
          summary,
          precondition: this.#unmoved(table.name, current),
        });
      else
        await append(table, engine, relation, {
          ...this.#writeOptions,
          summary,
          precondition: this.#unmoved(table.name, current),
        });
      this.#lastCommit = Date.now();
      return { rejected };
    } catch (error) {
      // An operation that cannot re-apply itself on the table's newer state (an upsert that lost a race to
      // a compaction or another writer) is not retryable for the table library, but this write is: it
      // re-reads the table, and what it committed, on the next attempt. Not when another worker of this
      // pipeline committed positions meanwhile (#unmoved): that stops the pipeline (invariant 7).
      if (
        isTributaryError(error, 'ICEBERG_COMMIT_CONFLICT') &&
        !error.retryable &&
        error.context.positionsMoved !== true
      )
        throw new TributaryError(error.code, error.message, {
          retryable: true,
          hint: 'the batch is written again on the table as it is now',
          context: error.context,
          cause: error,
        });
      throw error;
    } finally {
      await engine.connection.run(`drop table if exists ${stage}`);
    }
  }

  /** How appends write data files (`prepare`'s and `write`'s alike). */
  get #writeOptions(): WriteFilesOptions {
    return {
      targetFileSizeBytes: this.#options.config.target_file_size,
      // The stage is a table: rescanning it is cheaper than copying it once more.
      materialize: false,
    };
  }

  /** The snapshot summary that records the positions a commit covers. */
  #summary(positions: Positions): Record<string, string> {
    return {
      [positionsKey(this.#options.pipeline)]: JSON.stringify({
        topic: this.#options.topic,
        positions: Object.fromEntries(positions),
      }),
    };
  }

  /** Deletes the data files of a prepared append that will not be committed (best effort: unreferenced anyway). */
  async #discard(table: Table, prepared: PreparedAppend): Promise<void> {
    for (const file of prepared.written.files)
      await table.storage.delete(file.filePath).catch(() => undefined);
  }

  /**
   * A commit precondition: the pipeline's positions in the table are still those this write started from.
   * When another process committed for the same pipeline meanwhile (two workers running it), writing the
   * batch could duplicate rows: the commit is abandoned instead (invariant 7).
   */
  #unmoved(table: string, read: ReadonlyMap<number, number>): (metadata: TableMetadata) => void {
    return (metadata) => {
      const now = positionsIn(metadata, this.#options.pipeline, this.#options.topic);
      const same = now.size === read.size && [...now].every(([p, o]) => read.get(p) === o);
      if (!same)
        throw new TributaryError(
          'ICEBERG_COMMIT_CONFLICT',
          `${table}: another process committed positions of pipeline ${this.#options.pipeline} while this one wrote a batch`,
          {
            hint: 'run one worker per pipeline (Kubernetes: replicas 1, strategy Recreate); restarting resumes from the table',
            // Not to be retried (see write): the batch would be written over what the other one wrote.
            context: { table, positionsMoved: true },
          },
        );
    };
  }

  async flush(): Promise<void> {
    const positions = this.#unsaved;
    if (!positions) return;
    this.#lastCommit = 0; // past the interval: this write commits
    await this.write({ records: [], positions });
  }

  async screen(records: readonly PipelineRecord[]): Promise<readonly Rejection[]> {
    if (records.length === 0) return [];
    const table = await this.#ensureTable(records);
    await table.refresh();
    const rejected: Rejection[] = [];
    let accepted = [...records];
    if (this.#options.config.schema_policy === 'freeze') {
      const unknown = this.#unknownColumns(table.schema, accepted);
      accepted = accepted.filter((record) => {
        const extra = fieldsOf(record).filter((k) => unknown.has(k));
        if (extra.length)
          rejected.push({
            record,
            stage: this.name,
            error: `${table.name} has no column ${extra.join(', ')} (schema_policy: freeze)`,
          });
        return extra.length === 0;
      });
    }
    const engine = await this.#options.engine();
    const stage = await this.#stage(engine, table.schema, accepted, rejected);
    await engine.connection.run(`drop table if exists ${stage}`);
    return rejected;
  }

  async close(): Promise<void> {
    // Never close an engine under a running COPY (the files it writes are orphans, which maintenance removes).
    await Promise.allSettled([...this.#preparing]);
    await this.#keyIndex.drop().catch(() => undefined);
    for (const engine of this.#engines) engine.close();
    this.#engines.length = 0;
    this.#scratch.clear();
    this.#idleEngines.length = 0;
    rmSync(this.#workDir, { recursive: true, force: true });
  }

  /** True while the table, whose columns are to be inferred from records, does not exist. */
  async #notInferredYet(): Promise<boolean> {
    if (this.#table || this.#options.fixedSchema || this.#options.config.schema) return false;
    return !(await (await this.#options.catalog()).tableExists(this.#identifier));
  }

  /** The table, loaded or created once: a lane's read-ahead prepare and a write may ask at once. */
  async #ensureTable(records: readonly PipelineRecord[]): Promise<Table> {
    if (this.#table) return this.#table;
    this.#tableLoading ??= this.#loadOrCreateTable(records).finally(() => (this.#tableLoading = undefined));
    return this.#tableLoading;
  }

  async #loadOrCreateTable(records: readonly PipelineRecord[]): Promise<Table> {
    const catalog = await this.#options.catalog();
    if (await catalog.tableExists(this.#identifier)) {
      this.#table = await catalog.loadTable(this.#identifier);
      return this.#table;
    }
    const { config } = this.#options;
    let struct: StructType;
    if (this.#options.fixedSchema) struct = this.#options.fixedSchema;
    else if (config.schema) {
      const file = path.resolve(this.#options.projectRoot, config.schema);
      let json: unknown;
      try {
        json = JSON.parse(readFileSync(file, 'utf8'));
      } catch (cause) {
        throw new TributaryError(
          'CONFIG_INVALID',
          `sink ${this.name}: cannot read schema file ${file}: ${(cause as Error).message}`,
          { cause },
        );
      }
      struct = parseSchemaJson(json);
    } else struct = withDeclaredTypes(inferStruct(valuesOf(records)), this.#declared.of(records));
    // The deletion marker decides what is written; it is not data.
    if (config.delete_column)
      struct = { ...struct, fields: struct.fields.filter((f) => f.name !== config.delete_column) };
    const keyIds = (schema: Schema) =>
      (config.key ?? [])
        .map((k) => schema.fields.find((f) => f.name === k)?.id)
        .filter((id): id is number => id !== undefined);
    let schema: Schema = assignFreshIds({ ...struct, 'schema-id': 0 });
    if (config.mode === 'upsert' && config.key) {
      // Identifier fields must be required; keys inferred from data are made so.
      const keys = new Set(config.key);
      schema = {
        ...schema,
        fields: schema.fields.map((f) => (keys.has(f.name) ? { ...f, required: true } : f)),
      };
      schema = { ...schema, 'identifier-field-ids': keyIds(schema) };
    }
    const { spec } = buildSpec(parsePartitionExpression(config.partition ?? '', schema), 0, 999);
    await catalog.createNamespaceIfAbsent(this.#identifier.namespace);
    try {
      this.#table = await catalog.createTable(this.#identifier, {
        schema,
        spec,
        properties: { 'write.target-file-size-bytes': String(config.target_file_size), ...config.properties },
      });
    } catch (error) {
      // Another worker created it first.
      if (!(error instanceof TributaryError && error.code === 'TABLE_EXISTS')) throw error;
      this.#table = await catalog.loadTable(this.#identifier);
    }
    return this.#table;
  }

  /**
   * Columns whose type the records declare wider than the table's, as Iceberg widens a type (int → long,
   * float → double, a decimal's precision): a CDC column changed upstream by `ALTER COLUMN … TYPE`. Under
   * schema_policy evolve the table takes the wider type before the batch is staged, so the values the
   * new type allows fit; a change Iceberg does not allow (int → text) is left, and values the column
   * cannot hold go to the DLQ with what to do.
   */
  #widenings(schema: Schema, records: readonly PipelineRecord[]): SchemaChange[] {
    if (this.#options.config.schema_policy !== 'evolve') return [];
    const changes: SchemaChange[] = [];
    for (const [name, type] of this.#declared.of(records)) {
      const field = schema.fields.find((f) => f.name === name);
      if (
        field &&
        typeof type === 'string' &&
        !sameType(field.type, type) &&
        isPromotionAllowed(field.type, type)
      )
        changes.push({ kind: 'update-column-type', column: name, type });
    }
    return changes;
  }

  #unknownColumns(schema: Schema, records: readonly PipelineRecord[]): Set<string> {
    const known = new Set(schema.fields.map((f) => f.name));
    if (this.#options.config.delete_column) known.add(this.#options.config.delete_column);
    const unknown = new Set<string>();
    let checked: readonly string[] | undefined;
    for (const record of records) {
      // Records mostly share one array of fields (LazyRecord): each array is checked once.
      if (record.fields) {
        if (record.fields === checked) continue;
        checked = record.fields;
      }
      for (const key of fieldsOf(record)) if (!known.has(key)) unknown.add(key);
    }
    return unknown;
  }

  /**
   * Loads the records into a temp table with the table's columns, each value cast to its column's type;
   * `_bad` names the columns whose value could not be read (those rows go to the DLQ, the rest are written).
   * The records go to DuckDB as NDJSON files of a few megabytes, each read once: a record's original bytes
   * (`raw`) are written as they are, with the row number spliced in; other values are serialized.
   */
  async #stage(
    engine: Engine,
    schema: Schema,
    records: readonly PipelineRecord[],
    rejected: Rejection[],
  ): Promise<string> {
    // The allocator's background thread returns the pages freed between batches meanwhile, rather than at
    // the next allocation (docs/operations.md, Memory). It is process-wide, and opening or closing any
    // DuckDB instance (a SQL transform, a scheduled model, a query) turns it off: set again each batch.
    await engine.connection.run(`set allocator_background_threads = true`);
    const file = path.join(this.#workDir, `${randomUUID()}.ndjson`);
    const stage = `__tributary_sink_${randomUUID().replace(/-/g, '')}`;
    // The deletion marker is staged beside the table's columns (upsert reads it, never writes it).
    const marker = this.#options.config.delete_column;
    const extra = marker !== undefined && !schema.fields.some((f) => f.name === marker) ? marker : undefined;
    const columns = [
      `_row: 'BIGINT'`,
      ...schema.fields.map(
        (f) => `${quoteLiteral(f.name)}: ${quoteLiteral(typeof f.type === 'string' ? 'VARCHAR' : 'JSON')}`,
      ),
      ...(extra === undefined ? [] : [`${quoteLiteral(extra)}: 'VARCHAR'`]),
    ];
    // Each value is cast once (c<i>), next to its text (r<i>), and the reasons are built from both.
    const inner = schema.fields.map((f, i) => {
      const column = quoteIdentifier(f.name);
      const shadow = typeof f.type === 'string' ? undefined : shadowType(f.type);
      return `${column} as r${i}, ${castExpression(column, f.type)} as c${i}${shadow === undefined ? '' : `, try_cast(${column} as ${shadow}) as s${i}`}`;
    });
    const casts = schema.fields.map((f, i) => `c${i} as ${quoteIdentifier(f.name)}`);
    if (extra !== undefined) {
      inner.push(`try_cast(${quoteIdentifier(extra)} as BOOLEAN) as d`);
      casts.push(`d as ${quoteIdentifier(extra)}`);
    }
    // A deletion needs its key alone (a CDC delete often carries nothing else): its other columns are
    // neither required nor read, as upsert does not write the row.
    const upserts = this.#options.config.mode === 'upsert';
    const markerIndex = marker === undefined ? -1 : schema.fields.findIndex((f) => f.name === marker);
    const deleted = !upserts
      ? undefined
      : extra !== undefined
        ? 'd'
        : markerIndex >= 0
          ? `try_cast(c${markerIndex} as BOOLEAN)`
          : undefined;
    const identifiers = new Set(schema['identifier-field-ids'] ?? []);
    const keys = new Set(
      this.#options.config.key ?? schema.fields.filter((f) => identifiers.has(f.id)).map((f) => f.name),
    );
    const advice: Advice = { table: this.#options.config.table, pipeline: this.#options.pipeline };
    const problems = schema.fields.map((f, i) => {
      const missing = f.required ? `r${i} is null` : 'false';
      const inside = [
        ...(typeof f.type === 'string' ? [] : structProblems(`r${i}`, f.type, f.name)),
        ...(typeof f.type === 'string' || shadowType(f.type) === undefined
          ? []
          : [nestedProblem(`c${i}`, `s${i}`, f.type, f.name, advice, 0)]),
      ].filter((problem) => problem !== undefined);
      const within =
        inside.length === 0
          ? ''
          : ` when r${i} is not null then ${inside.length === 1 ? inside[0] : `coalesce(${inside.join(', ')})`}`;
      const problem = `case when ${missing} then ${quoteLiteral(`${f.name} is required but missing`)} when r${i} is not null and c${i} is null then ${unreadableReason(f.name, f.type, `r${i}`, advice)}${within} end`;
      return deleted !== undefined && !keys.has(f.name)
        ? `case when ${deleted} is true then null else ${problem} end`
        : problem;
    });
    const known = new Set(schema.fields.map((f) => f.name));
    if (extra !== undefined) known.add(extra);
    const floating = schema.fields.flatMap((f) => {
      const shape = floatingShape(f.type);
      return shape === undefined ? [] : [{ name: f.name, shape }];
    });
    let scratch = this.#scratch.get(engine);
    if (!scratch) this.#scratch.set(engine, (scratch = { buffer: Buffer.alloc(0) }));
    const load = async (lines: Buffer, into: 'create' | 'insert') => {
      // Written and removed off the event loop: the pipeline decodes and validates meanwhile.
      await writeFile(file, lines);
      try {
        const select = `select _row, ${[...casts, `nullif(concat_ws('; ', ${problems.join(', ')}), '') as _bad`].join(', ')}
             from (select _row${inner.map((c) => `, ${c}`).join('')}
             from read_json(${quoteLiteral(file)}, format = 'newline_delimited', columns = {${columns.join(', ')}}))`;
        await engine.connection.run(
          into === 'create' ? `create temp table ${stage} as ${select}` : `insert into ${stage} ${select}`,
        );
      } finally {
        await rm(file, { force: true });
      }
    };
    // A few megabytes at a time: DuckDB's JSON reader holds buffers in proportion to the file it reads, and
    // so does the NDJSON here; the batch as a whole then stays in the stage table alone.
    let from = 0;
    do {
      const to = chunkEnd(records, from, STAGE_CHUNK_BYTES);
      const into = from === 0 ? 'create' : 'insert';
      try {
        await load(ndjson(records, from, to, known, floating, true, scratch), into);
      } catch (error) {
        // JSON.parse lets a later duplicate key win where DuckDB refuses the object: serialize the values.
        if (!/duplicate key/i.test((error as Error).message)) throw error;
        await load(ndjson(records, from, to, known, floating, false, scratch), into);
      }
      from = to;
    } while (from < records.length);
    const bad = await engine.connection.runAndReadAll(
      `select _row, _bad from ${stage} where _bad is not null`,
    );
    for (const [row, reason] of bad.getRows()) {
      rejected.push({ record: records[Number(row)]!, stage: this.name, error: String(reason) });
    }
    return stage;
  }
}

const decoder = new TextDecoder();

/** The rows of a stage (see IcebergSink.#stage) that go into the table: those with nothing bad. */
function acceptedRows(stage: string): string {
  return `(select * exclude (_row, _bad) from ${stage} where _bad is null)`;
}

/**
 * The records' values, one at a time. A value read from the log's bytes on demand (`fields` present) is
 * decoded afresh and let go: reading `value` would keep every record's decoded value until the batch is
 * committed (tens of megabytes for the first batch, whose values a new table's columns are inferred from).
 */
function* valuesOf(records: readonly PipelineRecord[]): Generator<Record<string, unknown>> {
  for (const record of records)
    yield record.fields && record.raw
      ? (parseJsonExact(decoder.decode(record.raw)) as Record<string, unknown>)
      : record.value;
}

/** The value's top-level fields that hold something (JSON has no undefined, but values built in code may). */
function fieldsOf(record: PipelineRecord): readonly string[] {
  if (record.fields) return record.fields;
  const value = record.value;
  return Object.keys(value).filter((k) => value[k] !== undefined);
}

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;
const COMMA = 0x2c;
const ROW_PREFIX = '{"_row":';

/** Where a record's raw JSON object starts (`{`) and whether it is empty; undefined when it cannot be one NDJSON line. */
function rawObject(raw: Uint8Array): { brace: number; empty: boolean } | undefined {
  // JSON whitespace may hold line breaks (inside strings they are escaped): such a value spans lines.
  const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength); // a view: Buffer searches natively
  if (bytes.indexOf(NEWLINE) >= 0 || bytes.indexOf(CARRIAGE_RETURN) >= 0) return undefined;
  const brace = bytes.indexOf(OPEN_BRACE);
  if (brace < 0) return undefined;
  let next = brace + 1;
  while (raw[next] === 0x20 || raw[next] === 0x09) next++;
  return { brace, empty: raw[next] === CLOSE_BRACE };
}

/** Bytes of NDJSON DuckDB reads at a time when staging a batch (see IcebergSink.#stage). */
const STAGE_CHUNK_BYTES = 4 * 1024 * 1024;

/** Where the chunk of records starting at `from` ends: after about `bytes` of values (raw bytes, or an estimate). */
function chunkEnd(records: readonly PipelineRecord[], from: number, bytes: number): number {
  let size = 0;
  let to = from;
  while (to < records.length && (to === from || size < bytes)) {
    size += records[to]!.raw?.length ?? 1024;
    to++;
  }
  return to;
}

/**
 * One NDJSON line per record of records[from, to), `{"_row": <index>, …the value's columns}`: the raw bytes
 * with `_row` spliced in after the opening brace when `useRaw` and the record has them (DuckDB ignores
 * keys it was not asked for), else the value's known columns serialized. Written into `scratch.buffer`
 * (grown when too small, and kept for the next chunk: one buffer rather than one per chunk).
 *
 * A value at a float or double place of a column (`floating`, see floatingShape) that is ±Infinity —
 * JSON.parse reads a number beyond the double range (1e400) so, and JSON.stringify would write null — is
 * written as a number beyond that range, which the cast refuses as the raw bytes' is (see castExpression,
 * nestedProblem): the record goes to the DLQ rather than being written with NULL. A -0 there is written
 * -0.0, as the bytes say it (JSON.stringify writes 0).
 */
function ndjson(
  records: readonly PipelineRecord[],
  from: number,
  to: number,
  known: ReadonlySet<string>,
  floating: readonly { name: string; shape: FloatingShape }[],
  useRaw: boolean,
  scratch: { buffer: Buffer },
): Buffer {
  let buffer = scratch.buffer;
  let at = 0;
  const reserve = (bytes: number) => {
    if (at + bytes <= buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(at + bytes, buffer.length * 2));
    buffer.copy(grown, 0, 0, at);
    buffer = scratch.buffer = grown;
  };
  for (let row = from; row < to; row++) {
    const record = records[row]!;
    const raw = useRaw && record.raw ? rawObject(record.raw) : undefined;
    if (raw) {
      const rest = record.raw!.subarray(raw.brace + 1);
      reserve(ROW_PREFIX.length + 24 + rest.length);
      at += buffer.write(ROW_PREFIX, at, 'latin1');
      at += buffer.write(String(row), at, 'latin1');
      if (!raw.empty) buffer[at++] = COMMA;
      buffer.set(rest, at);
      at += rest.length;
    } else {
      const value: Record<string, unknown> = { _row: row };
      for (const [key, v] of Object.entries(record.value)) if (known.has(key)) value[key] = v;
      for (const { name, shape } of floating) {
        const v = value[name];
        if (v !== undefined && v !== null) value[name] = exactFloats(v, shape);
      }
      // Elsewhere than at a float or double place, a number that is not finite too is written as the bytes
      // would say it (1e999), not as null: refused by its column's cast rather than written as NULL.
      const text = stringifyExact(value);
      reserve(Buffer.byteLength(text) + 1);
      at += buffer.write(text, at, 'utf8');
    }
    buffer[at++] = NEWLINE;
  }
  return buffer.subarray(0, at);
}

/** JSON.rawJSON (Node 21+; not in TypeScript's lib yet): JSON.stringify writes the text as it is. */
const RawJson = JSON as unknown as { rawJSON(text: string): unknown };

/**
 * Where a type holds a float or double: true for one, else the struct fields, list element or map value
 * that do (by name); undefined when none does. Only those places of a value are looked at (see ndjson).
 */
type FloatingShape =
  | true
  | { readonly fields: readonly { name: string; shape: FloatingShape }[] }
  | { readonly element: FloatingShape }
  | { readonly value: FloatingShape };

function floatingShape(type: IcebergType): FloatingShape | undefined {
  if (typeof type === 'string') return type === 'float' || type === 'double' ? true : undefined;
  if (type.type === 'struct') {
    const fields = type.fields.flatMap((f) => {
      const shape = floatingShape(f.type);
      return shape === undefined ? [] : [{ name: f.name, shape }];
    });
    return fields.length === 0 ? undefined : { fields };
  }
  const inner = floatingShape(type.type === 'list' ? type.element : type.value);
  return inner === undefined ? undefined : type.type === 'list' ? { element: inner } : { value: inner };
}

const INFINITY = RawJson.rawJSON('1e999');
const MINUS_INFINITY = RawJson.rawJSON('-1e999');
const MINUS_ZERO = RawJson.rawJSON('-0.0');

/**
 * The value with each ±Infinity or -0 at a float or double place (`shape`) as JSON text that DuckDB reads as
 * such (see ndjson): the same value when there is none, else a copy of what leads to one.
 */
function exactFloats(value: unknown, shape: FloatingShape): unknown {
  if (shape === true) {
    if (typeof value !== 'number' || (value !== 0 && Number.isFinite(value))) return value;
    return value === Infinity
      ? INFINITY
      : value === -Infinity
        ? MINUS_INFINITY
        : Object.is(value, -0)
          ? MINUS_ZERO
          : value;
  }
  // Anything but an object or array the cast cannot read anyway; a BigInteger holds no float.
  if (typeof value !== 'object' || value === null || isBigInteger(value)) return value;
  if ('element' in shape) {
    if (!Array.isArray(value)) return value;
    const list = value as readonly unknown[];
    let copy: unknown[] | undefined;
    for (let i = 0; i < list.length; i++) {
      const exact = exactFloats(list[i], shape.element);
      if (exact !== list[i]) (copy ??= [...list])[i] = exact;
    }
    return copy ?? list;
  }
  if (Array.isArray(value)) return value;
  const object = value as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  const visit = (key: string, inner: FloatingShape) => {
    const v = object[key];
    if (v === undefined) return;
    const exact = exactFloats(v, inner);
    if (exact !== v) (copy ??= { ...object })[key] = exact;
  };
  if ('value' in shape) for (const key of Object.keys(object)) visit(key, shape.value);
  else for (const { name, shape: inner } of shape.fields) visit(name, inner);
  return copy ?? object;
}

/** An integer as JSON writes it (5, -5), in RE2 syntax. */
const INTEGER = String.raw`\s*-?[0-9]+\s*`;
/** A whole number as DuckDB reads it from JSON (5, -5, 5.0), in RE2 syntax. */
const WHOLE_NUMBER = String.raw`\s*-?[0-9]+(\.0+)?\s*`;
/** Any JSON number as DuckDB reads it (1.5, 1e+38), or as text in a string ("123.45"), in RE2 syntax. */
const NUMBER = String.raw`\s*-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*`;

/**
 * Why a staged value (`text`, a SQL expression) that is not null could not be read as its column's type
 * (see castExpression), as a SQL expression. A number too large for an int, long or decimal column names
 * the column, its type and the number (cut to 40 characters), and what to do: widen the column when Iceberg
 * allows a type that holds the number, else give such numbers another column. Other values cannot be read.
 */
function unreadableReason(name: string, type: IcebergType, text: string, advice: Advice): string {
  const cannotRead = `${quoteLiteral(`${name}: cannot read `)} || left(${text}::VARCHAR, 80) || ${quoteLiteral(` as ${typeof type === 'string' ? type : type.type}`)}`;
  const range = typeof type === 'string' ? numberRange(type, name, advice) : undefined;
  if (range === undefined) return cannotRead;
  // What to do depends on the number: the fix of the first type that holds it.
  const hint = range.fits.reduceRight(
    (otherwise, { duckdb, fix }) =>
      // A double beyond its range is Infinity, not NULL.
      `case when ${duckdb === 'DOUBLE' ? `isfinite(try_cast(${text} as DOUBLE))` : `try_cast(${text} as ${duckdb}) is not null`} then ${quoteLiteral(fix)} else ${otherwise} end`,
    quoteLiteral(range.otherwise),
  );
  const shown = `trim(${text})`;
  let number = `case when length(${shown}) > 40 then left(${shown}, 40) || '… (' || length(regexp_replace(${shown}, '[^0-9]', '', 'g')) || ' digits)' else ${shown} end`;
  // A number beyond the double range read from a record's value (not its bytes) was Infinity, its text lost
  // (see ndjson), unless it was an integer (parseJsonExact keeps its digits): the reason is the same either
  // way.
  if (type === 'float' || type === 'double') {
    const lost = `isinf(try_cast(${text} as DOUBLE)) and not regexp_full_match(${text}, ${quoteLiteral(INTEGER)})`;
    number = `case when ${lost} then 'a number beyond ±1.8e308' else ${number} end`;
  }
  // A number the cast refused (castExpression takes only whole ones for int and long) was too large.
  return `case when regexp_full_match(${text}, ${quoteLiteral(range.pattern)}) then ${quoteLiteral(`column ${name} is ${range.holds}; `)} || ${number} || ' does not fit — ' || ${hint} else ${cannotRead} end`;
}

/** What a DLQ reason's advice names: the table whose column to widen, the pipeline to replay. */
interface Advice {
  readonly table: string;
  readonly pipeline: string;
}

/**
 * For a column of a type a number can be too large for (int, long, float, double, decimal): the numbers its
 * cast reads (RE2), what the type holds, and what to do about a number it cannot hold — the fix of the first
 * of `fits` (DuckDB types) that holds the number, else `otherwise`.
 */
function numberRange(
  type: PrimitiveType,
  column: string,
  advice: Advice,
):
  | { pattern: string; holds: string; fits: readonly { duckdb: string; fix: string }[]; otherwise: string }
  | undefined {
  const transform = 'or filter or change them in a transform';
  const widen = (wider: string) =>
    `widen the column to ${wider} (tributary tables evolve ${advice.table} --widen ${column}:${wider}, as Iceberg allows ${type} → ${wider}), then replay the record (tributary dlq replay ${advice.pipeline}); ${transform}`;
  const exact = `give such values a decimal(38, 0) column (create the table from a schema file that says so), ${transform}`;
  const otherwise = `no Iceberg number holds it exactly: give such values a string column (or double, which rounds them), ${transform}`;
  const noNumber = `no Iceberg number holds it: give such values a string column, ${transform}`;
  if (type === 'float')
    return {
      pattern: NUMBER,
      holds: 'float (32-bit, at most ±3.4e38)',
      fits: [{ duckdb: 'DOUBLE', fix: widen('double') }],
      otherwise: noNumber,
    };
  // No Iceberg type is wider than a double, and a decimal holds 38 digits at most.
  if (type === 'double')
    return { pattern: NUMBER, holds: 'double (64-bit, at most ±1.8e308)', fits: [], otherwise: noNumber };
  if (type === 'int')
    return {
      pattern: WHOLE_NUMBER,
      holds: 'int (32-bit)',
      fits: [
        { duckdb: 'BIGINT', fix: widen('long') },
        {
          duckdb: 'DECIMAL(38, 0)',
          fix: `long, the one type Iceberg widens an int to, cannot hold it either: ${exact}`,
        },
      ],
      otherwise,
    };
  if (type === 'long')
    return {
      pattern: WHOLE_NUMBER,
      holds: 'long (64-bit)',
      fits: [{ duckdb: 'DECIMAL(38, 0)', fix: `Iceberg cannot widen a long: ${exact}` }],
      otherwise,
    };
  const decimal = decimalParts(type);
  if (decimal === undefined) return undefined;
  const { precision, scale } = decimal;
  const whole = precision - scale;
  return {
    pattern: NUMBER,
    holds: `${type} (${
      scale === 0
        ? `at most ${precision} digits`
        : whole > 0
          ? `at most ${whole} digit${whole > 1 ? 's' : ''} before the point`
          : 'less than 1 in magnitude'
    })`,
    // Iceberg widens a decimal's precision (to 38 at most), never its scale.
    fits: precision < 38 ? [{ duckdb: `DECIMAL(38, ${scale})`, fix: widen(`decimal(38, ${scale})`) }] : [],
    otherwise:
      scale === 0
        ? otherwise
        : `no Iceberg decimal of scale ${scale} holds it (38 digits at most): give such values another column (a smaller scale, double or string), ${transform}`,
  };
}

/**
 * The type a nested column is read as a second time to see what its cast lost (see nestedProblem): the same
 * shape, with the text of each value that can be lost (VARCHAR) in place of its type, and string map keys;
 * undefined when nothing can be lost (strings read anything).
 */
function shadowType(type: IcebergType): string | undefined {
  if (typeof type === 'string') return type === 'string' ? undefined : 'VARCHAR';
  if (type.type === 'struct') {
    const fields = type.fields.flatMap((f) => {
      const shadow = shadowType(f.type);
      return shadow === undefined ? [] : [`${quoteIdentifier(f.name)} ${shadow}`];
    });
    return fields.length === 0 ? undefined : `STRUCT(${fields.join(', ')})`;
  }
  if (type.type === 'list') {
    const element = shadowType(type.element);
    return element === undefined ? undefined : `${element}[]`;
  }
  const value = shadowType(type.value);
  return value === undefined ? undefined : `MAP(VARCHAR, ${value})`;
}

/**
 * Where the cast of a nested value (`cast`) lost a value its text (`shadow`, of shadowType) holds, the reason
 * for the first such place, as a SQL expression (NULL when none); undefined when nothing can be lost. try_cast
 * makes NULL of a field, element or map value it cannot read (an integer beyond int64 in a long) rather than
 * of the whole, and rounds 1.5 to 2 in an int: each sends the record to the DLQ, as a column of that type
 * would, naming the place as Iceberg does (`address.zip`, `points.element.x`).
 */
function nestedProblem(
  cast: string,
  shadow: string,
  type: IcebergType,
  path: string,
  advice: Advice,
  depth: number,
): string | undefined {
  if (typeof type === 'string') {
    if (type === 'string') return undefined;
    // try_cast rounds 1.5 to 2 in an int, and makes Infinity of a number beyond a float's or double's range.
    const altered =
      type === 'int' || type === 'long'
        ? ` or not regexp_full_match(${shadow}, ${quoteLiteral(WHOLE_NUMBER)})`
        : type === 'float' || type === 'double'
          ? ` or isinf(${cast}) and regexp_full_match(${shadow}, ${quoteLiteral(NUMBER)})`
          : '';
    return `case when ${shadow} is not null and (${cast} is null${altered}) then ${unreadableReason(path, type, shadow, advice)} end`;
  }
  const p = `p${depth}`;
  const firstOf = (pairs: string, problem: string | undefined) =>
    problem === undefined
      ? undefined
      : `list_filter(list_transform(${pairs}, lambda ${p}: ${problem}), lambda ${p}: ${p} is not null)[1]`;
  if (type.type === 'struct') {
    const fields = type.fields.flatMap((f) => {
      const problem = nestedProblem(
        `struct_extract(${cast}, ${quoteLiteral(f.name)})`,
        `struct_extract(${shadow}, ${quoteLiteral(f.name)})`,
        f.type,
        `${path}.${f.name}`,
        advice,
        depth + 1,
      );
      return problem === undefined ? [] : [problem];
    });
    return fields.length === 0
      ? undefined
      : fields.length === 1
        ? fields[0]
        : `coalesce(${fields.join(', ')})`;
  }
  if (type.type === 'list')
    return firstOf(
      `list_zip(${cast}, ${shadow})`,
      nestedProblem(`${p}[1]`, `${p}[2]`, type.element, `${path}.element`, advice, depth + 1),
    );
  return firstOf(
    `list_zip(map_values(${cast}), map_values(${shadow}))`,
    nestedProblem(`${p}[1]`, `${p}[2]`, type.value, `${path}.value`, advice, depth + 1),
  );
}

/**
 * Where a struct of the type (the column itself, a field, a list element or a map value) holds a JSON value
 * that is not an object, the reason, as SQL expressions (each NULL when there is none), in the order of the
 * type; `json` is the staged JSON of the column. try_cast reads a string, number, boolean or array as a
 * struct of NULLs (`"address": "Main St 1"`), which would be written so: the record goes to the DLQ instead.
 * Only columns that hold a struct pay for it.
 */
function structProblems(json: string, type: IcebergType, name: string): string[] {
  const problems: string[] = [];
  const reason = (value: string, place: string) =>
    `${quoteLiteral(`column ${place} is a struct; `)} || left(${value}::VARCHAR, 80) || ${quoteLiteral(
      ' is not an object — send an object of its fields (or null) there, or filter or change such records in a transform',
    )}`;
  const notObject = (value: string) => `json_type(${value}) not in ('OBJECT', 'NULL')`;
  const visit = (type: IcebergType, path: string, place: string, many: boolean) => {
    if (typeof type === 'string') return;
    if (type.type === 'struct') {
      if (path === '$') problems.push(`case when ${notObject(json)} then ${reason(json, place)} end`);
      else if (!many) {
        const value = `json_extract(${json}, ${quoteLiteral(path)})`;
        problems.push(`case when ${notObject(value)} then ${reason(value, place)} end`);
      } else
        // A path with a wildcard ([*], .*) gives the list of values it reaches.
        problems.push(
          `list_transform(list_filter(json_extract(${json}, ${quoteLiteral(path)}), lambda j: ${notObject('j')}), lambda j: ${reason('j', place)})[1]`,
        );
      for (const f of type.fields)
        visit(f.type, `${path}."${f.name.replace(/["\\]/g, '\\$&')}"`, `${place}.${f.name}`, many);
    } else if (type.type === 'list') visit(type.element, `${path}[*]`, `${place}.element`, true);
    else visit(type.value, `${path}.*`, `${place}.value`, true);
  };
  visit(type, '$', name, false);
  return problems;
}

/** Whether a value of the type holds a map whose keys are not strings (see castExpression). */
function hasTypedKeys(type: IcebergType): boolean {
  if (typeof type === 'string') return false;
  if (type.type === 'struct') return type.fields.some((f) => hasTypedKeys(f.type));
  if (type.type === 'list') return hasTypedKeys(type.element);
  return type.key !== 'string' || hasTypedKeys(type.value);
}

/** Reads a staged text (VARCHAR) or JSON value as the Iceberg type; NULL when it is not one. */
function castExpression(column: string, type: IcebergType): string {
  // A JSON key DuckDB cannot cast to a map's key type ("b", or 3000000000 for an int) fails the statement,
  // and so the whole batch, even in try_cast (a map key cannot be NULL): try() makes that value NULL.
  if (typeof type !== 'string')
    return hasTypedKeys(type)
      ? `try(try_cast(${column} as ${duckdbType(type)}))`
      : `try_cast(${column} as ${duckdbType(type)})`;
  switch (type) {
    case 'int':
    case 'long':
      // try_cast would round 1.5 to 2: only whole numbers are integers. DuckDB writes a JSON number such as
      // 5.0 or 1e3 as "5.0" / "1000.0", which JavaScript reads as the integer it is: so is it here.
      return `case when regexp_full_match(${column}, ${quoteLiteral(WHOLE_NUMBER)}) then try_cast(${column} as ${duckdbType(type)}) end`;
    case 'boolean':
      return `case lower(${column}) when 'true' then true when 'false' then false end`;
    case 'float':
    case 'double': {
      // try_cast makes Infinity of a number beyond the type's range (1e39 for a float, 1e400): NULL, so that
      // the record goes to the DLQ (unreadableReason). Text that says Infinity ("inf") is Infinity.
      const cast = `try_cast(${column} as ${duckdbType(type)})`;
      return `case when isinf(${cast}) and regexp_full_match(${column}, ${quoteLiteral(NUMBER)}) then null else ${cast} end`;
    }
    default:
      if (decimalParts(type) || type !== 'string') return `try_cast(${column} as ${duckdbType(type)})`;
      return column;
  }
}

/** Doctor: the table is reachable, and compatible with the declared schema and key when it exists. */
async function checkIcebergSink(
  config: IcebergSinkConfig,
  context: ComponentContext,
): Promise<CheckResult[]> {
  const catalog = await context.resources.get<Catalog>('catalog');
  const identifier = parseTableIdentifier(config.table);
  if (!(await catalog.tableExists(identifier))) {
    return [{ status: 'pass', detail: `${config.table} does not exist yet; the first batch creates it` }];
  }
  const table = await catalog.loadTable(identifier);
  const problems: string[] = [];
  /** Columns widened in the table (`tributary tables evolve --widen`) past what the schema file says. */
  const widened: string[] = [];
  if (config.schema) {
    const declared = parseSchemaJson(
      JSON.parse(readFileSync(path.resolve(context.projectRoot, config.schema), 'utf8')),
    );
    for (const field of declared.fields) {
      if (field.name === config.delete_column) continue; // a marker, not a column
      const existing = table.schema.fields.find((f) => f.name === field.name);
      if (!existing) problems.push(`column ${field.name} is declared but not in the table`);
      else if (
        JSON.stringify(existing.type) !== JSON.stringify(field.type) &&
        typeof existing.type === 'string' &&
        typeof field.type === 'string'
      ) {
        // Wider in the table: it holds every value the file allows (the DLQ's widen-and-replay made it so).
        if (isPromotionAllowed(field.type, existing.type))
          widened.push(
            `column ${field.name} is ${existing.type} in the table, ${field.type} in ${config.schema}`,
          );
        else
          problems.push(
            `column ${field.name} is ${existing.type} in the table, ${field.type} in ${config.schema}`,
          );
      }
    }
  }
  // A key the table lacks is most often a slip in the pipeline (orderid for order_id): say which column.
  const keyFixes: string[] = [];
  for (const key of config.mode === 'upsert' ? (config.key ?? []) : []) {
    if (table.schema.fields.some((f) => f.name === key)) continue;
    const likely = didYouMean(
      key,
      table.schema.fields.map((f) => f.name),
    );
    problems.push(`key column ${key} is not in the table${likely ? ` (did you mean ${likely}?)` : ''}`);
    keyFixes.push(
      likely ? `key: ${likely} rather than ${key}` : `a key column of the table instead of ${key}`,
    );
  }
  if (problems.length)
    return [
      {
        status: 'fail',
        detail: `${config.table}: ${problems.join('; ')}`,
        fix:
          problems.length === keyFixes.length
            ? `in the pipeline's iceberg sink, ${keyFixes.join('; ')}`
            : 'evolve the table (or the schema file) so they agree',
      },
    ];
  if (widened.length)
    return [
      {
        status: 'warn',
        detail: `${config.table}: ${widened.join('; ')} (widened: the table holds every value the file allows)`,
        fix: `write the wider types in ${config.schema}, so that a table made from it (another environment, a rebuild) is alike`,
      },
    ];
  return [
    {
      status: 'pass',
      detail: `${config.table}: ${table.schema.fields.length} columns, ${table.metadata.snapshots.length} snapshot(s)`,
    },
  ];
}

export const icebergSinkDefinition: SinkDefinition = {
  kind: 'sink',
  type: 'iceberg',
  schema: icebergSinkSchema,
  check: (config, context) => checkIcebergSink(config as IcebergSinkConfig, context),
  async create(config, context: ComponentContext) {
    const parsed = config as IcebergSinkConfig;
    if (parsed.delete_column !== undefined && parsed.mode !== 'upsert')
      throw new TributaryError(
        'CONFIG_INVALID',
        `sink iceberg:${parsed.table}: delete_column needs mode: upsert (an append keeps every record)`,
        { hint: 'set mode: upsert with a key, or remove delete_column' },
      );
    return new IcebergSink({
      name: `iceberg:${parsed.table}`,
      config: parsed,
      pipeline: context.pipeline,
      topic: context.sourceTopic,
      projectRoot: context.projectRoot,
      catalog: () => context.resources.get<Catalog>('catalog'),
      engine: () => context.resources.get<Engine>('engine'),
    });
  },
};
