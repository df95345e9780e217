/**
 * The `postgres_cdc` source: PostgreSQL logical replication (pgoutput) into a log topic, with snapshots
 * consistent with the stream, and the LSN confirmed only after the pipelines committed (docs/cdc.md).
 *
 * One session = three connections: the replication stream, a query connection for snapshot chunks and
 * their watermarks, and a control connection for heartbeats, lag and lookups. A session ends on an error;
 * the source then reconnects with backoff and PostgreSQL sends again everything past the confirmed LSN —
 * changes already in the log are recognized by their position and skipped (state.ts).
 *
 * Order and whole transactions: pgoutput (protocol 1) sends each transaction at its commit, in commit
 * order. Changes are buffered per transaction and appended to the log in one append with the transactions
 * around them (a transaction of more than `max_batch_records` changes spans appends). Each record is keyed
 * by table and primary key, so the changes of a row keep their order in one partition.
 *
 * Snapshots (initial and backfill) are keyset chunks with watermarks (DBLog): a low watermark message is
 * written into the WAL, a chunk of rows is read by primary key, a high watermark follows. Rows whose key
 * changed between the watermarks in the stream are dropped from the chunk (the stream has a newer version);
 * the rest are written at the high watermark's place in the stream. Progress is saved after each chunk.
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { topicRetentionOf } from '../../core/config/platform.ts';
import { pipelineGroup } from '../../core/pipeline/runner.ts';
import type { Logger } from '../../core/logger.ts';
import { isTributaryError, TributaryError } from '../../errors.ts';
import { partitionForKey, type Log, type LogRecord, type RecordPosition } from '../../log/log.ts';
import type { RunningSource, SourceContext, SourceState, SourceStatus, TableProgress } from '../source.ts';
import { resolvedNames, type PostgresCdcConfig } from './config.ts';
import { connect, quoteIdent, quoteTable, splitTable } from './connection.ts';
import {
  ByteWriter,
  encodeTexts,
  envelopeJson,
  RowEncoder,
  SnapshotEncoder,
  type EnvelopeParts,
} from './encode.ts';
import { formatLsn, lsnKey, maxLsn, minLsn, parseLsn, type Lsn } from './lsn.ts';
import { cdcMetrics, type CdcMetrics } from './metrics.ts';
import { decodePgOutput, type PgOutputMessage, type RelationColumn, type TupleValues } from './pgoutput.ts';
import { startReplication, type ReplicationStream } from './replication.ts';
import { columnTypesOf, SCHEMA_HEADER, SchemaTopic, schemaTopicOf } from './schema-topic.ts';
import {
  applyChunkMark,
  CHUNK_HEADER,
  comparePositions,
  finishTask,
  lastPositions,
  loadState,
  parsePosition,
  POSITION_HEADER,
  saveState,
  stateTopicOf,
  type ChunkMark,
  type Position,
  type SnapshotTask,
  type SourceState as StoredState,
} from './state.ts';
import { parseArray, TYPE_QUERY, TypeRegistry, type PgType, type TypeRow } from './values.ts';

export const MESSAGE_PREFIX = 'tributary';

export function heartbeatPrefix(slot: string): string {
  return `${MESSAGE_PREFIX}.heartbeat.${slot}`;
}
export function watermarkPrefix(slot: string): string {
  return `${MESSAGE_PREFIX}.watermark.${slot}`;
}
export function signalPrefix(slot: string): string {
  return `${MESSAGE_PREFIX}.signal.${slot}`;
}

/** A backfill request, as written into the WAL by `tributary cdc backfill` (signed with the source's secret). */
export interface BackfillSignal {
  readonly id: string;
  readonly table: string;
  readonly where?: string;
  readonly signature: string;
}

export function signBackfill(secret: string, id: string, table: string, where: string | undefined): string {
  return createHmac('sha256', secret)
    .update(JSON.stringify([id, table, where ?? null]))
    .digest('hex');
}

export type ChangeOp = 'insert' | 'update' | 'delete' | 'snapshot';

interface TableInfo {
  readonly table: string;
  readonly oid: number;
  readonly primaryKey: readonly string[];
  readonly replicaIdentity: string;
}

interface Relation {
  readonly table: string;
  /** The table name as a JSON string. */
  readonly tableJson: string;
  readonly captured: boolean;
  readonly columns: readonly RelationColumn[];
  readonly types: readonly PgType[];
  /** Positions of the primary-key columns among `columns`. */
  readonly keyIndexes: readonly number[];
  /** The id of its shape in the schema topic (captured tables). */
  readonly schema?: string;
  readonly rows: RowEncoder;
  readonly keys: RowEncoder;
}

interface PendingRecord {
  readonly key: string;
  readonly position: Position;
  /** The position as the `cdc.pos` header writes it. */
  readonly positionText: string;
  readonly table: string;
  readonly op: ChangeOp;
  value: string | undefined;
  /** The value as UTF-8 already (snapshot rows, written as bytes); then `value` is not set. */
  readonly encoded?: Uint8Array;
  /** About how many bytes it will take (for memory bounds). */
  readonly size: number;
  /** The id of its table's shape (header `cdc.schema`, see schema-topic.ts). */
  readonly schema: string | undefined;
  /** An update whose unchanged TOASTed values have to be read back before it is written. */
  toast?: ToastFix;
  headers?: Record<string, string>;
}

interface ToastFix {
  readonly relation: Relation;
  readonly after: TupleValues;
  readonly envelope: EnvelopeParts;
}

/** Changes bound for the log: a transaction (or a part of a large one), or a snapshot chunk. */
interface Unit {
  readonly records: PendingRecord[];
  readonly commitLsn: Lsn;
  /** Set when the unit completes its transaction: the position past it. */
  readonly endLsn?: Lsn;
  readonly commitTime: number;
  readonly afterAppend?: () => Promise<void>;
}

interface OpenTransaction {
  readonly xid: number;
  readonly commitLsn: Lsn;
  readonly commitTime: number;
  /** Texts every change of the transaction carries. */
  readonly commitLsnText: string;
  readonly commitTimeText: string;
  readonly positionPrefix: string;
  records: PendingRecord[];
  /** Bytes of `records`. */
  bytes: number;
  seq: number;
  /** Some of its changes went to the log already (a large transaction). */
  partial: boolean;
  readonly signals: Buffer[];
}

interface AppendedRange {
  readonly start: number;
  end: number;
  readonly lsn: Lsn;
}

/** How far a snapshot task has been read in this session (ahead of what the log has, by a chunk or so). */
interface Cursor {
  lastKey: string[] | null;
  chunks: number;
  rows: number;
  done: boolean;
}

interface Chunk {
  readonly id: string;
  readonly task: SnapshotTask;
  rows?: string[][];
  fields?: { names: string[]; types: PgType[]; keyIndexes: number[]; schema: string };
  windowOpen: boolean;
  readonly changed: Set<string>;
  /** When its rows were read (the snapshot records' time). */
  readAt: number;
}

type Inbound =
  | { readonly kind: 'data'; readonly lsn: Lsn; readonly data: Buffer }
  | { readonly kind: 'keepalive'; readonly lsn: Lsn };

const BACKOFF_MAX_MS = 30_000;
/** How long a slot held by another backend may take to be let go before that is an error. */
const SLOT_RELEASE_GRACE_MS = 5_000;
/**
 * How long a chunk waits for transactions in progress when its low watermark was written (one may be
 * between its commit record and its commit: the WAL flush): see `#beginChunkRead`.
 */
const COMMIT_SETTLE_MS = 100;
const INBOUND_HIGH = 20_000;
const INBOUND_LOW = 2_000;
/** Bytes of change records per append at most (large TOASTed rows). */
const MAX_APPEND_BYTES = 16 * 1024 * 1024;
/** Bytes of undecoded messages at most before the socket is paused (large TOASTed values). */
const INBOUND_HIGH_BYTES = 64 * 1024 * 1024;

/**
 * The ids of the transactions in progress now (as an array literal): those a snapshot lists, and those past its xmax — begun
 * after the last transaction to end, which a snapshot does not list — up to the next id (one taken for
 * this: a transaction with nothing to write, which commits without waiting for a standby).
 */
async function transactionsInProgress(query: pg.Client): Promise<string> {
  // As text: the session reads arrays as their text.
  const { rows } = await query.query<{ xip: string; xmax: string }>(
    `select array_to_string(array(select pg_snapshot_xip(s)), ',') as xip, pg_snapshot_xmax(s)::text as xmax
       from pg_current_snapshot() as s`,
  );
  const { xip, xmax } = rows[0]!;
  const { rows: assigned } = await query.query<{ id: string }>('select pg_current_xact_id()::text as id');
  const next = BigInt(assigned[0]!.id);
  const ids = xip ? xip.split(',') : [];
  for (let id = BigInt(xmax); id < next && ids.length < 10_000; id++) ids.push(String(id));
  return `{${ids.join(',')}}`;
}

function pgCode(error: unknown): string {
  return (error as { code?: string } | undefined)?.code ?? '';
}

/** Connection-level failures that a reconnect may cure. */
export function isRetryable(error: unknown): boolean {
  if (isTributaryError(error)) return error.retryable;
  const code = pgCode(error);
  if (/^(08|53|57P|58)/.test(code)) return true;
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND'].includes(code))
    return true;
  const message = (error as Error | undefined)?.message ?? '';
  return /Connection terminated|connection timeout|timeout expired|socket|not queryable|terminating connection|the database system is (starting|shutting)/i.test(
    message,
  );
}

export interface PostgresCdcSourceOptions {
  readonly name: string;
  readonly config: PostgresCdcConfig;
  readonly context: SourceContext;
}

export class PostgresCdcSource implements RunningSource {
  readonly name: string;
  readonly #config: PostgresCdcConfig;
  readonly #log: Log;
  readonly #logger: Logger;
  readonly #metrics: CdcMetrics | undefined;
  readonly #projectRoot: string;
  readonly #topic: string;
  readonly #slot: string;
  readonly #publication: string;
  readonly #groups: readonly string[];
  /**
   * Partitions of the topic: configured, until the topic exists; then the topic's own count (it may have
   * more, created by a pipeline first), which is how the log places records by key.
   */
  #partitions: number;
  readonly #types = new TypeRegistry();

  #state: SourceState = 'starting';
  #stopping = false;
  #stopWake: (() => void) | undefined;
  #error: unknown;
  #detail = 'starting';
  #stored: StoredState | undefined;
  /** Shapes of the captured tables (schema-topic.ts); made with the topics, at the first session. */
  #schemas: SchemaTopic | undefined;
  /** Per partition, the position of the last record written (changes at or before it are skipped). */
  #written = new Map<number, Position>();
  #confirmed: Lsn = 0n;
  #received: Lsn = 0n;
  #lagBytes: number | undefined;
  #lagSeconds: number | undefined;
  #lastBackendPid: number | undefined;
  #disconnectedSince: number | undefined;
  #confirmMovedAt = Date.now();
  #everStreamed = false;

  // --- per session ---
  #tables = new Map<string, TableInfo>();
  #relations = new Map<number, Relation>();
  #replication: pg.Client | undefined;
  #stream: ReplicationStream | undefined;
  #query: pg.Client | undefined;
  #control: pg.Client | undefined;
  #inbound: Inbound[] = [];
  #inboundBytes = 0;
  #inboundWake: (() => void) | undefined;
  #paused = false;
  #txn: OpenTransaction | undefined;
  #queue: Unit[] = [];
  #appending: Unit[] = [];
  #flushing: Promise<void> | undefined;
  #appendedThrough: Lsn = 0n;
  #idleLsn: Lsn = 0n;
  #chunk: Chunk | undefined;
  #chunkRunning: Promise<void> | undefined;
  #cursors = new Map<string, Cursor>();
  /** Per partition, the offset ranges this process appended and the commit LSN each starts with. */
  readonly #appended = new Map<number, AppendedRange[]>();
  /** The last commit LSN read back from the log per partition (while a pipeline stays at one offset). */
  readonly #readBack = new Map<number, { offset: number; lsn: Lsn }>();
  #buffered = 0;
  #bufferedBytes = 0;
  #sessionError: ((error: unknown) => void) | undefined;
  #timers: NodeJS.Timeout[] = [];
  #lastProgressLog = 0;

  constructor(options: PostgresCdcSourceOptions) {
    this.name = options.name;
    this.#config = options.config;
    const { context } = options;
    this.#log = context.log;
    this.#logger = context.logger.child({ source: options.name });
    this.#metrics = context.registry ? cdcMetrics(context.registry) : undefined;
    this.#projectRoot = context.project.root;
    const names = resolvedNames(options.name, options.config);
    this.#topic = names.topic;
    this.#slot = names.slot;
    this.#publication = names.publication;
    this.#partitions = options.config.partitions ?? context.project.platform.log.partitions;
    this.#groups = (
      options.config.acknowledge.pipelines ??
      [...context.project.pipelines.values()]
        .filter((p) => p.config.source.topic === names.topic)
        .map((p) => p.name)
    ).map(pipelineGroup);
  }

  get topic(): string {
    return this.#topic;
  }

  status(): SourceStatus {
    const now = Date.now();
    const threshold = this.#config.stall_threshold;
    let healthy = this.#state === 'streaming' || this.#state === 'snapshotting' || this.#state === 'done';
    let detail = this.#detail;
    if (this.#state === 'reconnecting' && this.#disconnectedSince !== undefined) {
      healthy = now - this.#disconnectedSince < threshold;
      if (!healthy)
        detail = `stalled: disconnected from PostgreSQL for ${Math.round((now - this.#disconnectedSince) / 1000)} s`;
    } else if (healthy && this.#state !== 'done') {
      const waiting = this.#durableBound() > this.#confirmed;
      if (waiting && now - this.#confirmMovedAt > threshold) {
        healthy = false;
        detail = `stalled: the confirmed LSN has not moved for ${Math.round((now - this.#confirmMovedAt) / 1000)} s while changes wait for pipelines ${this.#groups.join(', ') || '(none)'}`;
      }
    }
    const snapshots: TableProgress[] = (this.#stored?.tasks ?? []).map((t) => ({
      table: t.table,
      kind: t.kind,
      rows: t.rows,
      chunks: t.chunks,
      ...(t.estimated !== undefined ? { estimated: t.estimated } : {}),
    }));
    return {
      name: this.name,
      type: 'postgres_cdc',
      state: this.#state,
      healthy,
      detail,
      topic: this.#topic,
      ...(this.#confirmed ? { confirmedLsn: formatLsn(this.#confirmed) } : {}),
      ...(this.#received ? { receivedLsn: formatLsn(this.#received) } : {}),
      ...(this.#lagBytes !== undefined ? { lagBytes: this.#lagBytes } : {}),
      ...(this.#lagSeconds !== undefined ? { lagSeconds: this.#lagSeconds } : {}),
      snapshots,
      ...(this.#error ? { error: (this.#error as Error).message } : {}),
    };
  }

  stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#state !== 'done' && this.#state !== 'failed') this.#state = 'stopping';
    this.#stopWake?.();
  }

  async run(): Promise<void> {
    let delay = 250;
    const labels = { source: this.name };
    try {
      while (!this.#stopping) {
        const started = Date.now();
        try {
          await this.#session();
          if (this.#stopping || this.#state === 'done') break;
        } catch (error) {
          this.#metrics?.connected.set(labels, 0);
          if (this.#stopping) break;
          if (!isRetryable(error)) throw error;
          if (Date.now() - started > 30_000) delay = 250;
          this.#disconnectedSince ??= Date.now();
          this.#state = 'reconnecting';
          this.#detail = `reconnecting: ${(error as Error).message}`;
          this.#metrics?.reconnects.inc(labels);
          const wait = Math.round(delay / 2 + (Math.random() * delay) / 2);
          this.#logger.warn(
            { err: error, retryInMs: wait },
            `source ${this.name}: ${(error as Error).message}; reconnecting in ${wait} ms`,
          );
          await this.#sleepUnlessStopped(wait);
          delay = Math.min(delay * 2, BACKOFF_MAX_MS);
        }
      }
      if (this.#state !== 'done') this.#state = 'stopped';
      this.#detail = this.#state === 'done' ? 'snapshot finished (snapshot_mode: initial_only)' : 'stopped';
      this.#logger.info(`source ${this.name} ${this.#state}`);
    } catch (error) {
      this.#state = 'failed';
      this.#error = error;
      this.#detail = `failed: ${(error as Error).message}`;
      this.#logger.error({ err: error }, `source ${this.name} failed: ${(error as Error).message}`);
      throw error;
    } finally {
      this.#metrics?.connected.set(labels, 0);
    }
  }

  /** initial_only finished (the state changes behind TypeScript's narrowing, in callbacks). */
  #isDone(): boolean {
    return this.#state === 'done';
  }

  async #sleepUnlessStopped(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#stopWake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#stopWake = undefined;
  }

  // ---------------------------------------------------------------------------------------------------
  // A session: connect, prepare, stream until an error or stop.

  async #session(): Promise<void> {
    this.#state = this.#everStreamed ? 'reconnecting' : 'starting';
    this.#resetSession();
    const config = this.#config;
    try {
      this.#control = await connect(config, this.#projectRoot, {
        applicationName: `tributary-cdc-${this.name}`,
      });
      await this.#checkServer(this.#control);
      await this.#loadTables(this.#control);
      await this.#ensurePublication(this.#control);
      if (config.replica_identity_full) await this.#ensureReplicaIdentity(this.#control);
      const slot = await this.#ensureSlot(this.#control);
      if (!this.#stored) {
        this.#partitions = (
          await this.#log.ensureTopic(this.#topic, {
            partitions: this.#partitions,
            ...topicRetentionOf(config.retention),
          })
        ).partitions;
        await this.#log.ensureTopic(stateTopicOf(this.#topic), { partitions: 1 });
        await this.#log.ensureTopic(schemaTopicOf(this.#topic), { partitions: 1 });
        this.#schemas = new SchemaTopic(this.#log, this.#topic);
        await this.#schemas.refresh();
        this.#stored = await loadState(this.#log, this.#topic);
        this.#written = await lastPositions(this.#log, this.#topic);
        if (!this.#stored.secret) this.#stored.secret = randomBytes(32).toString('hex');
        await saveState(this.#log, this.#topic, this.#stored);
      }
      this.#planSnapshots(slot.created);
      if (config.snapshot_mode === 'initial_only' && this.#stored.tasks.length === 0) {
        this.#state = 'done';
        return;
      }
      this.#query = await connect(config, this.#projectRoot, {
        applicationName: `tributary-cdc-${this.name}-snapshot`,
      });
      this.#replication = await connect(config, this.#projectRoot, {
        replication: true,
        applicationName: `tributary-cdc-${this.name}`,
      });
      this.#lastBackendPid = (this.#replication as unknown as { processID?: number }).processID;
      if (this.#stopping) return;

      const failed = new Promise<never>((_, reject) => (this.#sessionError = reject));
      failed.catch(() => undefined);
      this.#stream = startReplication(
        this.#replication,
        this.#slot,
        '0/0',
        { proto_version: '1', publication_names: `"${this.#publication}"`, messages: 'true' },
        {
          onData: (lsn, _walEnd, data) => this.#enqueue({ kind: 'data', lsn, data }),
          onKeepalive: (walEnd, reply) => {
            this.#received = maxLsn(this.#received, walEnd);
            this.#enqueue({ kind: 'keepalive', lsn: walEnd });
            if (reply) this.#stream?.sendStatus(this.#received, this.#confirmed);
          },
        },
      );
      const stream = this.#stream;
      const stopped = new Promise<void>((resolve) => (this.#stopWake = resolve));
      const pump = this.#pump();
      pump.catch(() => undefined);
      await this.#waitForStart(stream);
      this.#state = this.#stored.tasks.length ? 'snapshotting' : 'streaming';
      this.#detail = this.#state;
      this.#disconnectedSince = undefined;
      this.#everStreamed = true;
      this.#metrics?.connected.set({ source: this.name }, 1);
      this.#logger.info(
        {
          slot: this.#slot,
          publication: this.#publication,
          topic: this.#topic,
          confirmed: formatLsn(this.#confirmed),
        },
        `source ${this.name} streaming from slot ${this.#slot} into topic ${this.#topic}`,
      );
      this.#startTimers();
      this.#maybeStartChunk();
      await Promise.race([stream.done, pump, failed, stopped]);
      if (!this.#stopping && !this.#isDone())
        throw new TributaryError('SERVICE_UNAVAILABLE', 'PostgreSQL ended the replication stream', {
          retryable: true,
        });
      // Stopping: let what is buffered reach the log, then confirm what the pipelines committed.
      await this.#drain();
      await this.#acknowledge().catch(() => undefined);
    } catch (error) {
      throw this.#explain(error);
    } finally {
      await this.#closeSession();
    }
  }

  #resetSession(): void {
    this.#relations.clear();
    this.#inbound = [];
    this.#inboundBytes = 0;
    this.#paused = false;
    this.#txn = undefined;
    this.#queue = [];
    this.#buffered = 0;
    this.#bufferedBytes = 0;
    this.#appending = [];
    this.#flushing = undefined;
    this.#chunk = undefined;
    this.#chunkRunning = undefined;
    this.#cursors.clear();
    this.#idleLsn = 0n;
    this.#appendedThrough = this.#confirmed;
  }

  async #closeSession(): Promise<void> {
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers = [];
    this.#sessionError = undefined;
    this.#inboundWake?.();
    await this.#flushing?.catch(() => undefined);
    await this.#chunkRunning?.catch(() => undefined);
    for (const client of [this.#replication, this.#query, this.#control]) {
      await Promise.race([client?.end().catch(() => undefined), sleep(2000)]);
    }
    this.#replication = this.#query = this.#control = undefined;
    this.#stream = undefined;
    this.#stopWake = undefined;
  }

  /** Waits for the server to start streaming (the first message), or the error that it will not. */
  async #waitForStart(stream: ReplicationStream): Promise<void> {
    // The server answers START_REPLICATION with CopyBothResponse, or an error (the slot is in use).
    const deadline = Date.now() + 30_000;
    while (!stream.started && Date.now() < deadline) await Promise.race([stream.done, sleep(20)]);
    if (!stream.started) {
      throw new TributaryError('SERVICE_UNAVAILABLE', 'the replication stream did not start within 30 s', {
        retryable: true,
      });
    }
  }

  /** PostgreSQL errors with the context a user needs. */
  #explain(error: unknown): unknown {
    if (isTributaryError(error)) return error;
    const code = pgCode(error);
    const message = (error as Error).message ?? String(error);
    if (code === '55006' || /is active for PID/i.test(message)) {
      const pid = /PID (\d+)/i.exec(message)?.[1];
      return slotInUse(this.#slot, pid ? Number(pid) : undefined, error);
    }
    if (code === '42501')
      return new TributaryError('CDC_NOT_READY', `source ${this.name}: ${message}`, {
        cause: error,
        hint: /publication|database/i.test(message)
          ? `making or extending the publication takes CREATE on the database and owning the tables: create it as their owner (\`tributary doctor\` prints the statement), or set create_publication: false once it exists`
          : `grant the role what it needs: ALTER ROLE ${this.#config.user} REPLICATION, and SELECT on the tables (\`tributary doctor\` checks each)`,
      });
    if (isRetryable(error))
      return new TributaryError('SERVICE_UNAVAILABLE', `source ${this.name}: ${message}`, {
        cause: error,
        retryable: true,
      });
    return new TributaryError('CDC_NOT_READY', `source ${this.name}: ${message}`, {
      cause: error,
      hint: 'run `tributary doctor` for the checks of this source',
    });
  }

  // ---------------------------------------------------------------------------------------------------
  // Preparation: server settings, tables, publication, slot.

  async #checkServer(client: pg.Client): Promise<void> {
    const { rows } = await client.query<{ wal_level: string }>('show wal_level');
    if (rows[0]?.wal_level !== 'logical') {
      throw new TributaryError(
        'CDC_NOT_READY',
        `PostgreSQL runs with wal_level = ${rows[0]?.wal_level ?? '?'}; change data capture needs logical`,
        { hint: 'ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL' },
      );
    }
  }

  async #loadTables(client: pg.Client): Promise<void> {
    const { rows } = await client.query<{ oid: string; table: string; ident: string; pk: string | null }>(
      `select c.oid::int::text as oid, n.nspname || '.' || c.relname as "table", c.relreplident::text as ident,
          (select array_agg(a.attname order by k.ord)::text from pg_index i
             cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
             join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
           where i.indrelid = c.oid and i.indisprimary) as pk
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where c.relkind in ('r', 'p') and n.nspname || '.' || c.relname = any($1::text[])`,
      [this.#config.tables],
    );
    this.#tables.clear();
    for (const row of rows) {
      const primaryKey = row.pk ? (parseArray(row.pk, ',', (t) => t) as string[]) : [];
      this.#tables.set(row.table, {
        table: row.table,
        oid: Number(row.oid),
        primaryKey,
        replicaIdentity: row.ident,
      });
    }
    const missing = this.#config.tables.filter((t) => !this.#tables.has(t));
    if (missing.length) {
      throw new TributaryError(
        'CDC_NOT_READY',
        `source ${this.name}: no table ${missing.join(', ')} in database ${this.#config.database}`,
        { hint: 'create the table, or fix `tables` in the source file (schema.table, case-sensitive)' },
      );
    }
    const keyless = [...this.#tables.values()].filter((t) => t.primaryKey.length === 0).map((t) => t.table);
    if (keyless.length) {
      throw new TributaryError(
        'CDC_NOT_READY',
        `source ${this.name}: table ${keyless.join(', ')} has no primary key; changes are keyed by it`,
        { hint: 'add a primary key to the table' },
      );
    }
  }

  async #ensurePublication(client: pg.Client): Promise<void> {
    const exists = (
      await client.query('select 1 from pg_publication where pubname = $1', [this.#publication])
    ).rows.length;
    const tables = this.#config.tables.map(quoteTable);
    if (!exists) {
      if (!this.#config.create_publication) {
        throw new TributaryError('CDC_NOT_READY', `publication ${this.#publication} does not exist`, {
          hint: `CREATE PUBLICATION ${quoteIdent(this.#publication)} FOR TABLE ${tables.join(', ')}, or set create_publication: true`,
        });
      }
      await client.query(
        `create publication ${quoteIdent(this.#publication)} for table ${tables.join(', ')} with (publish = 'insert, update, delete')`,
      );
      this.#logger.info(`source ${this.name}: created publication ${this.#publication}`);
      return;
    }
    const { rows } = await client.query<{ t: string }>(
      `select schemaname || '.' || tablename as t from pg_publication_tables where pubname = $1`,
      [this.#publication],
    );
    const members = new Set(rows.map((r) => r.t));
    const missing = this.#config.tables.filter((t) => !members.has(t));
    if (missing.length === 0) return;
    if (!this.#config.create_publication) {
      throw new TributaryError(
        'CDC_NOT_READY',
        `publication ${this.#publication} lacks ${missing.join(', ')}`,
        {
          hint: `ALTER PUBLICATION ${quoteIdent(this.#publication)} ADD TABLE ${missing.map(quoteTable).join(', ')}`,
        },
      );
    }
    for (const table of missing)
      await client.query(`alter publication ${quoteIdent(this.#publication)} add table ${quoteTable(table)}`);
    this.#logger.info(`source ${this.name}: added ${missing.join(', ')} to publication ${this.#publication}`);
  }

  async #ensureReplicaIdentity(client: pg.Client): Promise<void> {
    for (const info of this.#tables.values()) {
      if (info.replicaIdentity === 'f') continue;
      await client.query(`alter table ${quoteTable(info.table)} replica identity full`);
      this.#logger.info(`source ${this.name}: set REPLICA IDENTITY FULL on ${info.table}`);
    }
  }

  async #ensureSlot(client: pg.Client): Promise<{ created: boolean }> {
    const find = async () =>
      (
        await client.query<{
          plugin: string;
          database: string;
          active_pid: string | null;
          confirmed: string | null;
          wal_status: string | null;
        }>(
          `select plugin, database, active_pid::text, confirmed_flush_lsn::text as confirmed, wal_status
             from pg_replication_slots where slot_name = $1`,
          [this.#slot],
        )
      ).rows[0];
    let slot = await find();
    let created = false;
    if (slot?.wal_status === 'lost') {
      if (this.#config.snapshot_mode !== 'when_needed') {
        throw new TributaryError(
          'CDC_SLOT_LOST',
          `replication slot ${this.#slot} was invalidated: PostgreSQL removed WAL it still needed, so changes were lost`,
          {
            hint: `drop it (SELECT pg_drop_replication_slot('${this.#slot}')) and start again with snapshot_mode: when_needed, or run \`tributary cdc backfill\` for each table`,
          },
        );
      }
      this.#logger.warn(
        `source ${this.name}: slot ${this.#slot} was lost; dropping it and copying the tables again`,
      );
      await client.query('select pg_drop_replication_slot($1)', [this.#slot]);
      slot = undefined;
    }
    if (slot && slot.plugin !== 'pgoutput') {
      throw new TributaryError(
        'CDC_NOT_READY',
        `replication slot ${this.#slot} uses plugin ${slot.plugin}, not pgoutput`,
        {
          hint: 'set another slot_name, or drop that slot',
        },
      );
    }
    if (slot && slot.database !== this.#config.database) {
      throw new TributaryError(
        'CDC_NOT_READY',
        `replication slot ${this.#slot} belongs to database ${slot.database}`,
        {
          hint: 'set another slot_name',
        },
      );
    }
    if (slot?.active_pid) {
      const pid = Number(slot.active_pid);
      if (pid === this.#lastBackendPid) {
        // Our own connection from before a network failure, not yet noticed by the server.
        await client.query('select pg_terminate_backend($1)', [pid]);
        await sleep(200);
      } else {
        // A process that just died (killed, crashed) lets go of the slot within moments; another
        // source reading it does not.
        const deadline = Date.now() + SLOT_RELEASE_GRACE_MS;
        while (slot?.active_pid && Date.now() < deadline && !this.#stopping) {
          await sleep(250);
          slot = await find();
        }
        if (slot?.active_pid) throw slotInUse(this.#slot, Number(slot.active_pid));
      }
    }
    if (!slot) {
      await client.query(`select pg_create_logical_replication_slot($1, 'pgoutput')`, [this.#slot]);
      created = true;
      slot = await find();
      this.#logger.info(`source ${this.name}: created replication slot ${this.#slot}`);
    }
    if (slot?.confirmed) this.#confirmed = maxLsn(this.#confirmed, parseLsn(slot.confirmed));
    this.#appendedThrough = maxLsn(this.#appendedThrough, this.#confirmed);
    return { created };
  }

  /** Snapshot tasks for tables never copied (snapshot_mode initial, initial_only, when_needed). */
  #planSnapshots(slotCreated: boolean): void {
    const state = this.#stored!;
    const mode = this.#config.snapshot_mode;
    if (mode === 'never') return;
    if (slotCreated && state.snapshotted.length > 0) {
      if (mode === 'when_needed') {
        this.#logger.warn(
          `source ${this.name}: the slot is new; copying every table again (snapshot_mode: when_needed)`,
        );
        state.snapshotted = [];
      } else {
        this.#logger.warn(
          `source ${this.name}: replication slot ${this.#slot} was created anew; changes made while it did not exist are not captured (use snapshot_mode: when_needed, or \`tributary cdc backfill\`)`,
        );
      }
    }
    for (const table of this.#config.tables) {
      if (state.snapshotted.includes(table)) continue;
      if (state.tasks.some((t) => t.table === table && t.kind === 'initial')) continue;
      state.tasks.push({
        id: randomUUID(),
        table,
        kind: 'initial',
        lastKey: null,
        chunks: 0,
        rows: 0,
        startedAt: Date.now(),
      });
    }
  }

  // ---------------------------------------------------------------------------------------------------
  // The stream: inbound messages, decoded in order.

  #enqueue(item: Inbound): void {
    this.#inbound.push(item);
    if (item.kind === 'data') this.#inboundBytes += item.data.length;
    if (!this.#paused && (this.#inbound.length >= INBOUND_HIGH || this.#inboundBytes >= INBOUND_HIGH_BYTES)) {
      this.#paused = true;
      this.#stream?.pause();
    }
    const wake = this.#inboundWake;
    this.#inboundWake = undefined;
    wake?.();
  }

  async #pump(): Promise<void> {
    let index = 0;
    for (;;) {
      if (this.#stopping || !this.#stream) return;
      if (index >= this.#inbound.length) {
        this.#inbound = [];
        this.#inboundBytes = 0;
        index = 0;
        if (this.#paused) {
          this.#paused = false;
          this.#stream.resume();
        }
        this.#scheduleFlush();
        await new Promise<void>((resolve) => (this.#inboundWake = resolve));
        continue;
      }
      const item = this.#inbound[index++]!;
      if (item.kind === 'data') this.#inboundBytes -= item.data.length;
      if (
        this.#paused &&
        this.#inbound.length - index < INBOUND_LOW &&
        this.#inboundBytes < INBOUND_HIGH_BYTES / 4
      ) {
        this.#paused = false;
        this.#stream.resume();
      }
      if (item.kind === 'keepalive') {
        if (!this.#txn) this.#idleLsn = maxLsn(this.#idleLsn, item.lsn);
        continue;
      }
      this.#received = maxLsn(this.#received, item.lsn);
      const message = decodePgOutput(item.data);
      if (message.tag === 'relation') await this.#onRelation(message);
      else this.#onMessage(message, item.lsn);
      if (this.#bufferedRecords() >= this.#config.max_batch_records) this.#scheduleFlush();
      if (this.#bufferedBytes >= MAX_APPEND_BYTES) this.#scheduleFlush();
      // Backpressure: the log is slower than the stream; wait for the append in flight.
      while (
        (this.#bufferedRecords() >= this.#config.max_batch_records * 4 ||
          this.#bufferedBytes >= MAX_APPEND_BYTES * 4) &&
        this.#flushing
      )
        await this.#flushing;
    }
  }

  /** Records decoded and not yet taken by an append (kept as a count: this is asked per message). */
  #bufferedRecords(): number {
    return this.#buffered;
  }

  async #onRelation(message: Extract<PgOutputMessage, { tag: 'relation' }>): Promise<void> {
    const table = `${message.schema}.${message.name}`;
    await this.#lookupTypes(
      this.#control!,
      message.columns.map((c) => c.typeOid),
    );
    const info = this.#tables.get(table);
    const keyIndexes = (info?.primaryKey ?? []).map((k) => message.columns.findIndex((c) => c.name === k));
    if (info && keyIndexes.some((i) => i < 0)) {
      throw new TributaryError('CDC_NOT_READY', `table ${table} no longer has its primary key columns`, {
        hint: 'restart the source after changing a primary key',
      });
    }
    const types = message.columns.map((c) => this.#types.get(c.typeOid));
    // The shape is in the schema topic before any change record that names it.
    const schema = info
      ? await this.#schemas!.put(
          table,
          columnTypesOf(
            message.columns.map((c) => c.name),
            types,
            message.columns.map((c) => c.typeMod),
          ),
        )
      : undefined;
    this.#relations.set(message.oid, {
      table,
      tableJson: JSON.stringify(table),
      captured: info !== undefined,
      columns: message.columns,
      types,
      keyIndexes,
      ...(schema === undefined ? {} : { schema }),
      rows: new RowEncoder(
        message.columns.map((c) => c.name),
        types,
      ),
      keys: new RowEncoder(
        keyIndexes.map((i) => message.columns[i]!.name),
        keyIndexes.map((i) => types[i]!),
      ),
    });
  }

  /** Reads the catalog rows of types that are not built in (enums, domains, their arrays). */
  async #lookupTypes(client: pg.Client, oids: readonly number[]): Promise<void> {
    let missing = this.#types.missing(oids);
    while (missing.length) {
      const { rows } = await client.query<Record<string, string>>(TYPE_QUERY, [`{${missing.join(',')}}`]);
      if (rows.length === 0) return;
      this.#types.addRows(
        rows.map((r): TypeRow => ({
          oid: Number(r.oid),
          name: r.name ?? '',
          typtype: r.typtype ?? 'b',
          element: Number(r.element),
          base: Number(r.base),
          delimiter: r.delimiter ?? ',',
        })),
      );
      missing = this.#types.unresolvedReferences();
    }
  }

  #onMessage(message: PgOutputMessage, lsn: Lsn): void {
    switch (message.tag) {
      case 'begin':
        this.#txn = {
          xid: message.xid,
          commitLsn: message.finalLsn,
          commitTime: message.commitTimeMs,
          commitLsnText: formatLsn(message.finalLsn),
          commitTimeText: new Date(message.commitTimeMs).toISOString(),
          positionPrefix: lsnKey(message.finalLsn),
          records: [],
          bytes: 0,
          seq: 0,
          partial: false,
          signals: [],
        };
        return;
      case 'commit': {
        const txn = this.#txn;
        this.#txn = undefined;
        if (!txn) return;
        const signals = txn.signals;
        if (txn.records.length || signals.length || txn.partial) {
          this.#queue.push({
            records: txn.records,
            commitLsn: txn.commitLsn,
            endLsn: message.endLsn,
            commitTime: txn.commitTime,
            ...(signals.length ? { afterAppend: () => this.#onSignals(signals) } : {}),
          });
        } else {
          this.#idleLsn = maxLsn(this.#idleLsn, message.endLsn);
        }
        return;
      }
      case 'insert':
      case 'update':
      case 'delete':
        this.#onChange(message, lsn);
        return;
      case 'message':
        this.#onLogicalMessage(message);
        return;
      default:
        return; // origin, type (types are looked up by oid), truncate (not published)
    }
  }

  #onChange(message: Extract<PgOutputMessage, { tag: 'insert' | 'update' | 'delete' }>, lsn: Lsn): void {
    const txn = this.#txn;
    const relation = this.#relations.get(message.relation);
    if (!txn || !relation?.captured) return;
    const lsnText = formatLsn(lsn);
    const keyOf = (values: TupleValues) => relation.keyIndexes.map((i) => values[i] ?? null);
    if (message.tag === 'insert') {
      this.#addChange(txn, relation, 'insert', keyOf(message.after), 'null', message.after, lsnText);
      return;
    }
    if (message.tag === 'delete') {
      const before = this.#beforeImage(relation, message.before, message.beforeKind);
      this.#addChange(txn, relation, 'delete', keyOf(message.before), before, null, lsnText);
      return;
    }
    // update
    const newKey = keyOf(message.after);
    const oldKey = message.before ? keyOf(message.before) : newKey;
    let after = message.after;
    if (message.before && message.beforeKind === 'full' && after.includes(undefined)) {
      // Unchanged TOASTed values: the old row (REPLICA IDENTITY FULL) has them.
      after = after.map((v, i) => (v === undefined ? message.before![i] : v));
    }
    if (oldKey.some((k, i) => k !== newKey[i])) {
      // The primary key changed: the old row is gone, a new one exists (they may live in other partitions).
      const oldRow = message.before
        ? this.#beforeImage(relation, message.before, message.beforeKind!)
        : 'null';
      this.#addChange(txn, relation, 'delete', oldKey, oldRow, null, lsnText);
      this.#addChange(txn, relation, 'insert', newKey, 'null', after, lsnText);
      return;
    }
    const before =
      message.before && message.beforeKind === 'full' ? relation.rows.json(message.before) : 'null';
    this.#addChange(txn, relation, 'update', newKey, before, after, lsnText);
  }

  /** The old row: whole with REPLICA IDENTITY FULL, else only its key columns (the rest was not sent). */
  #beforeImage(relation: Relation, values: TupleValues, kind: 'key' | 'full'): string {
    if (kind === 'full') return relation.rows.json(values);
    return relation.keys.json(relation.keyIndexes.map((k) => values[k]));
  }

  #addChange(
    txn: OpenTransaction,
    relation: Relation,
    op: ChangeOp,
    key: ReadonlyArray<string | null>,
    before: string,
    after: TupleValues | null,
    lsn: string,
  ): void {
    const keyText = recordKey(relation.table, key);
    const seq = txn.seq++;
    const envelope: EnvelopeParts = {
      op,
      table: relation.tableJson,
      key: relation.keys.json(key),
      before,
      lsn,
      commitLsn: txn.commitLsnText,
      commitTime: txn.commitTimeText,
      xid: txn.xid,
      seq,
    };
    const toast = after !== null && after.includes(undefined);
    const value = toast ? undefined : envelopeJson(envelope, after ? relation.rows.json(after) : 'null');
    const record: PendingRecord = {
      key: keyText,
      position: { lsn: txn.commitLsn, seq },
      positionText: `${txn.positionPrefix}.${seq}`,
      table: relation.table,
      op,
      value,
      // A TOASTed value still to be read back: count it as large.
      size: value?.length ?? 64 * 1024,
      schema: relation.schema,
      ...(toast ? { toast: { relation, after, envelope } } : {}),
    };
    txn.records.push(record);
    txn.bytes += record.size;
    this.#buffered++;
    this.#bufferedBytes += record.size;
    const chunk = this.#chunk;
    if (chunk?.windowOpen && chunk.task.table === relation.table) chunk.changed.add(keyText);
    // A large transaction goes to the log in parts; the position of each change keeps them in order.
    if (txn.records.length >= this.#config.max_batch_records || txn.bytes >= MAX_APPEND_BYTES) {
      this.#queue.push({ records: txn.records, commitLsn: txn.commitLsn, commitTime: txn.commitTime });
      txn.records = [];
      txn.bytes = 0;
      txn.partial = true;
      this.#scheduleFlush();
    }
  }

  #onLogicalMessage(message: Extract<PgOutputMessage, { tag: 'message' }>): void {
    if (message.prefix === heartbeatPrefix(this.#slot)) {
      const sent = Number(message.content.toString('utf8'));
      if (!this.#txn && this.#queue.length === 0 && this.#appending.length === 0) {
        this.#idleLsn = maxLsn(this.#idleLsn, message.lsn);
        if (Number.isFinite(sent)) this.#setLagSeconds(Math.max(0, (Date.now() - sent) / 1000));
      }
      return;
    }
    if (message.prefix === watermarkPrefix(this.#slot)) {
      const [id, which] = message.content.toString('utf8').split(':');
      const chunk = this.#chunk;
      if (!chunk || chunk.id !== id) return; // a watermark of a chunk from before a restart
      if (which === 'low') chunk.windowOpen = true;
      else if (which === 'high') this.#completeChunk(chunk, message.lsn);
      return;
    }
    if (message.prefix === signalPrefix(this.#slot) && message.transactional) {
      this.#txn?.signals.push(Buffer.from(message.content));
    }
  }

  #setLagSeconds(seconds: number): void {
    this.#lagSeconds = seconds;
    this.#metrics?.lagSeconds.set({ source: this.name }, seconds);
  }

  // ---------------------------------------------------------------------------------------------------
  // Into the log.

  #scheduleFlush(): void {
    if (this.#flushing || this.#queue.length === 0 || !this.#sessionError) return;
    this.#flushing = this.#flushLoop().then(
      () => {
        this.#flushing = undefined;
        if (this.#queue.length && this.#sessionError) this.#scheduleFlush();
      },
      (error: unknown) => {
        this.#flushing = undefined;
        // The session ends, and nothing more is appended in it: a later change written now would make
        // the failed ones look written (changes at or before a partition's last position are skipped
        // when PostgreSQL sends them again), and they would be lost.
        const fail = this.#sessionError;
        this.#sessionError = undefined;
        fail?.(error);
      },
    );
  }

  async #flushLoop(): Promise<void> {
    while (this.#queue.length && this.#sessionError) {
      const units: Unit[] = [];
      let count = 0;
      let bytes = 0;
      while (
        this.#queue.length &&
        (units.length === 0 ||
          (count + this.#queue[0]!.records.length <= this.#config.max_batch_records &&
            bytes < MAX_APPEND_BYTES))
      ) {
        const unit = this.#queue.shift()!;
        this.#buffered -= unit.records.length;
        for (const record of unit.records) bytes += record.size;
        units.push(unit);
        count += unit.records.length;
      }
      this.#bufferedBytes -= bytes;
      this.#appending = units;
      await this.#fillToast(units);
      const records: LogRecord[] = [];
      const touched = new Map<number, Position>();
      const counts = new Map<string, Partial<Record<ChangeOp, number>>>();
      // Past the newest position written, nothing can be in the log yet: only below it (after a
      // reconnect or restart, when PostgreSQL sends again what was not confirmed) is each record checked.
      let written: Position | undefined;
      for (const position of this.#written.values())
        if (!written || comparePositions(position, written) > 0) written = position;
      const kept: PendingRecord[] = [];
      for (const unit of units) {
        for (const record of unit.records) {
          if (written && comparePositions(record.position, written) <= 0) {
            const last = this.#written.get(partitionForKey(record.key, this.#partitions));
            if (last && comparePositions(record.position, last) <= 0) continue; // already in the log
          }
          kept.push(record);
        }
      }
      const texts: string[] = [];
      for (const record of kept) if (!record.encoded) texts.push(record.value ?? '');
      const values = encodeTexts(texts);
      let text = 0;
      kept.forEach((record) => {
        const headers: Record<string, string> =
          record.schema === undefined
            ? { [POSITION_HEADER]: record.positionText }
            : { [POSITION_HEADER]: record.positionText, [SCHEMA_HEADER]: record.schema };
        records.push({
          key: record.key,
          value: record.encoded ?? values[text++]!,
          headers: record.headers ? { ...headers, ...record.headers } : headers,
        });
        let byOp = counts.get(record.table);
        if (!byOp) counts.set(record.table, (byOp = {}));
        byOp[record.op] = (byOp[record.op] ?? 0) + 1;
      });
      if (records.length) {
        const positions = await this.#appendWithRetry(records);
        const ranges = new Map<number, AppendedRange>();
        positions.forEach((at, i) => {
          touched.set(at.partition, kept[i]!.position);
          const range = ranges.get(at.partition);
          if (range) range.end = at.offset + 1;
          else ranges.set(at.partition, { start: at.offset, end: at.offset + 1, lsn: kept[i]!.position.lsn });
        });
        for (const [partition, range] of ranges) {
          let list = this.#appended.get(partition);
          if (!list) this.#appended.set(partition, (list = []));
          list.push(range);
        }
      }
      for (const [partition, position] of touched) this.#written.set(partition, position);
      for (const [table, byOp] of counts) {
        for (const [op, n] of Object.entries(byOp))
          this.#metrics?.changes.inc({ source: this.name, table, op }, n);
      }
      // What follows an append (a chunk's progress, a backfill request taken) is done before the units
      // count as appended: until then the confirmed LSN stays before them, and a crash meanwhile has
      // PostgreSQL send them again.
      for (const unit of units) await unit.afterAppend?.();
      for (const unit of units) {
        if (unit.endLsn !== undefined) this.#appendedThrough = maxLsn(this.#appendedThrough, unit.endLsn);
      }
      const newest = units[units.length - 1]!;
      this.#setLagSeconds(Math.max(0, (Date.now() - newest.commitTime) / 1000));
      this.#appending = [];
    }
  }

  async #appendWithRetry(records: LogRecord[]): Promise<RecordPosition[]> {
    let delay = 100;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#log.append(this.#topic, records);
      } catch (error) {
        if (!(isTributaryError(error) && error.retryable) || attempt >= 8) throw error;
        this.#logger.warn({ err: error }, `appending to ${this.#topic} failed, retrying`);
        await sleep(Math.random() * delay);
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  /** Reads back unchanged TOASTed values the stream did not carry (tables without REPLICA IDENTITY FULL). */
  async #fillToast(units: readonly Unit[]): Promise<void> {
    for (const unit of units) {
      for (const record of unit.records) {
        const fix = record.toast;
        if (!fix) continue;
        const { relation, after } = fix;
        const missing = relation.columns.filter((_, i) => after[i] === undefined).map((c) => c.name);
        const keyColumns = relation.keyIndexes.map((i) => relation.columns[i]!.name);
        let current: Record<string, string | null> | undefined;
        let gone = 'the row was deleted';
        try {
          const { rows } = await this.#control!.query<Record<string, string | null>>(
            `select ${missing.map(quoteIdent).join(', ')} from ${quoteTable(relation.table)} where ${keyColumns
              .map((k, i) => `${quoteIdent(k)} = $${i + 1}`)
              .join(' and ')}`,
            relation.keyIndexes.map((i) => after[i]),
          );
          current = rows[0];
        } catch (error) {
          // A column or the table dropped since the change: the values are gone for good, and waiting
          // for them would stop the source at this change forever.
          if (pgCode(error) !== '42703' && pgCode(error) !== '42P01') throw error;
          gone = `${(error as Error).message} now`;
        }
        const filled = after.map((v, i) => (v === undefined ? current?.[relation.columns[i]!.name] : v));
        this.#metrics?.toastLookups.inc({ source: this.name, table: relation.table });
        if (!current)
          this.#logger.warn(
            { table: relation.table },
            `source ${this.name}: the unchanged TOASTed values of a row of ${relation.table} could not be read back (${gone}); they are left out of the update (set REPLICA IDENTITY FULL)`,
          );
        record.value = envelopeJson(fix.envelope, relation.rows.json(filled));
        delete record.toast;
      }
    }
  }

  async #drain(): Promise<void> {
    if (this.#txn) {
      // An unfinished transaction comes again after a restart.
      this.#buffered -= this.#txn.records.length;
      this.#bufferedBytes -= this.#txn.bytes;
      this.#txn = undefined;
    }
    this.#scheduleFlush();
    while (this.#flushing) await this.#flushing.catch(() => undefined);
  }

  // ---------------------------------------------------------------------------------------------------
  // Acknowledgement: what PostgreSQL may forget.

  /**
   * Everything before this LSN is in the log: the commit LSN of the first change not yet appended, or,
   * with nothing pending, how far the stream has come.
   */
  #durableBound(): Lsn {
    const first = this.#appending[0] ?? this.#queue[0];
    if (first) return first.commitLsn;
    if (this.#txn) return this.#txn.commitLsn;
    return maxLsn(this.#appendedThrough, this.#idleLsn);
  }

  async #acknowledge(): Promise<void> {
    const stream = this.#stream;
    if (!stream) return;
    let bound = this.#durableBound();
    const offsets = await this.#log.offsets(this.#topic);
    const lowest = new Map<number, number>();
    for (const group of this.#groups) {
      const committed = await this.#log
        .committedOffsets(group, this.#topic)
        .catch(() => new Map<number, number>());
      for (const partition of offsets) {
        const next = Math.max(committed.get(partition.partition) ?? partition.start, partition.start);
        lowest.set(partition.partition, Math.min(lowest.get(partition.partition) ?? Infinity, next));
        if (next >= partition.end) continue;
        const lsn = await this.#commitLsnAt(partition.partition, next);
        if (lsn !== undefined) bound = minLsn(bound, lsn);
      }
    }
    // What every pipeline has passed is no longer asked about.
    for (const [partition, list] of this.#appended) {
      const passed = lowest.get(partition) ?? 0;
      while (list.length && list[0]!.end <= passed) list.shift();
    }
    if (bound > this.#confirmed) {
      this.#confirmed = bound;
      this.#confirmMovedAt = Date.now();
      this.#metrics?.confirmedLsn.set({ source: this.name }, Number(bound));
    } else if (bound >= this.#durableBound()) {
      this.#confirmMovedAt = Date.now(); // nothing waits
    }
    stream.sendStatus(maxLsn(this.#received, this.#confirmed), this.#confirmed);
  }

  /**
   * The commit LSN of the record at `offset` (or a lower one: the first of its append), from what this
   * process appended; records from before it started are read from the log.
   */
  async #commitLsnAt(partition: number, offset: number): Promise<Lsn | undefined> {
    const list = this.#appended.get(partition) ?? [];
    if (list.length && offset >= list[0]!.start) {
      let lo = 0;
      let hi = list.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (list[mid]!.start <= offset) lo = mid;
        else hi = mid - 1;
      }
      return list[lo]!.lsn;
    }
    const cached = this.#readBack.get(partition);
    if (cached?.offset === offset) return cached.lsn;
    const [record] = await this.#log.read(this.#topic, partition, offset, { maxRecords: 1 });
    const lsn = parsePosition(record?.headers[POSITION_HEADER])?.lsn;
    if (lsn !== undefined) this.#readBack.set(partition, { offset, lsn });
    return lsn;
  }

  #startTimers(): void {
    const fail = (error: unknown) => this.#sessionError?.(error);
    const every = (ms: number, work: () => Promise<void>) => {
      let running = false;
      const timer = setInterval(() => {
        if (running) return;
        running = true;
        work()
          .catch(fail)
          .finally(() => (running = false));
      }, ms);
      this.#timers.push(timer);
    };
    every(this.#config.acknowledge.interval, () => this.#acknowledge());
    if (this.#config.heartbeat_interval > 0) {
      every(this.#config.heartbeat_interval, () => this.#heartbeat());
      void this.#heartbeat().catch(fail);
    }
    every(60_000, async () => {
      if (this.#stored?.tasks.length) await this.#saveStateInOrder();
    });
  }

  async #heartbeat(): Promise<void> {
    const control = this.#control;
    if (!control) return;
    await control.query('select pg_logical_emit_message(false, $1, $2)', [
      heartbeatPrefix(this.#slot),
      String(Date.now()),
    ]);
    const { rows } = await control.query<{ lag: string | null; retained: string | null }>(
      `select (pg_current_wal_lsn() - confirmed_flush_lsn)::text as lag, (pg_current_wal_lsn() - restart_lsn)::text as retained
         from pg_replication_slots where slot_name = $1`,
      [this.#slot],
    );
    const row = rows[0];
    if (row?.lag != null) {
      this.#lagBytes = Number(row.lag);
      this.#metrics?.lagBytes.set({ source: this.name }, this.#lagBytes);
    }
    if (row?.retained != null) this.#metrics?.retainedBytes.set({ source: this.name }, Number(row.retained));
  }

  // ---------------------------------------------------------------------------------------------------
  // Snapshots: keyset chunks between watermarks.

  #cursorOf(task: SnapshotTask): Cursor {
    let cursor = this.#cursors.get(task.id);
    if (!cursor) {
      cursor = { lastKey: task.lastKey, chunks: task.chunks, rows: task.rows, done: false };
      this.#cursors.set(task.id, cursor);
    }
    return cursor;
  }

  #maybeStartChunk(): void {
    if (this.#chunk || this.#chunkRunning || this.#stopping || !this.#query) return;
    // Read ahead of the log by about one chunk, not more.
    if (this.#bufferedRecords() >= this.#config.snapshot.chunk_size * 2) return;
    const task = this.#stored?.tasks.find((t) => !this.#cursorOf(t).done);
    if (!task) return;
    this.#chunkRunning = this.#readChunk(task)
      .catch((error: unknown) => this.#chunkFailed(task, error))
      .finally(() => {
        this.#chunkRunning = undefined;
        // The high watermark may have come through the stream already: then read on.
        this.#maybeStartChunk();
      });
  }

  /**
   * A chunk that could not be read: a lost connection ends the session (the chunk is read again after
   * it); a backfill whose condition no longer holds (a dropped column) is dropped, not the source.
   */
  async #chunkFailed(task: SnapshotTask, error: unknown): Promise<void> {
    this.#chunk = undefined;
    if (task.kind === 'backfill' && !isRetryable(error) && /^(22|42)/.test(pgCode(error))) {
      this.#logger.error(
        { err: error, table: task.table, where: task.where },
        `source ${this.name}: backfill of ${task.table} dropped: ${(error as Error).message}`,
      );
      finishTask(this.#stored!, task);
      this.#cursors.delete(task.id);
      await this.#saveStateInOrder();
      return;
    }
    this.#sessionError?.(error);
  }

  async #readChunk(task: SnapshotTask): Promise<void> {
    const query = this.#query!;
    const info = this.#tables.get(task.table);
    if (!info) {
      // A backfill of a table no longer captured: drop it.
      finishTask(this.#stored!, task);
      await this.#saveStateInOrder();
      return;
    }
    if (task.chunks === 0 && task.estimated === undefined) {
      // The planner's estimate; a table never analyzed has none (-1): then its size over the row width.
      const { rows } = await query.query<{ n: string }>(
        `select (case when c.reltuples >= 0 then c.reltuples
                 else pg_relation_size(c.oid) / greatest(coalesce((select sum(avg_width) from pg_stats s
                   where s.schemaname = n.nspname and s.tablename = c.relname), 0) + 28, 32) end)::bigint::text as n
           from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = $1`,
        [info.oid],
      );
      task.estimated = Number(rows[0]?.n ?? 0);
      this.#metrics?.snapshotRowsEstimated.set({ source: this.name, table: task.table }, task.estimated);
      this.#metrics?.snapshotDone.set({ source: this.name, table: task.table }, 0);
      this.#logger.info(
        `source ${this.name}: ${task.kind === 'initial' ? 'snapshot' : 'backfill'} of ${task.table}${task.where ? ` where ${task.where}` : ''} started (about ${task.estimated.toLocaleString('en-US')} rows in the table)`,
      );
    }
    const cursor = this.#cursorOf(task);
    const chunk: Chunk = {
      id: randomUUID(),
      task,
      windowOpen: false,
      changed: new Set(),
      readAt: Date.now(),
    };
    this.#chunk = chunk;
    const prefix = watermarkPrefix(this.#slot);
    const keys = info.primaryKey.map(quoteIdent);
    const conditions: string[] = [];
    const params: Array<string | null> = [];
    if (cursor.lastKey) {
      conditions.push(`(${keys.join(', ')}) > (${cursor.lastKey.map((_, i) => `$${i + 1}`).join(', ')})`);
      params.push(...cursor.lastKey);
    }
    if (task.where) conditions.push(`(${task.where})`);
    const sql = `select * from ${quoteTable(task.table)}${conditions.length ? ` where ${conditions.join(' and ')}` : ''} order by ${keys.join(', ')} limit ${this.#config.snapshot.chunk_size}`;
    await query.query('select pg_logical_emit_message(false, $1, $2)', [prefix, `${chunk.id}:low`]);
    let result: pg.QueryResult<string[]>;
    try {
      await this.#beginChunkRead(query, task);
      chunk.readAt = Date.now();
      result = await query.query<string[]>({ text: sql, values: params, rowMode: 'array' });
    } finally {
      await query.query('rollback').catch(() => undefined);
    }
    const oids = result.fields.map((f) => f.dataTypeID);
    await this.#lookupTypes(query, oids);
    const names = result.fields.map((f) => f.name);
    const types = oids.map((oid) => this.#types.get(oid));
    chunk.fields = {
      names,
      types,
      keyIndexes: info.primaryKey.map((k) => names.indexOf(k)),
      schema: await this.#schemas!.put(
        task.table,
        columnTypesOf(
          names,
          types,
          result.fields.map((f) => f.dataTypeModifier),
        ),
      ),
    };
    chunk.rows = result.rows;
    await emitFlushed(query, prefix, `${chunk.id}:high`);
  }

  /**
   * Opens the chunk's read — read-only (a backfill's condition is SQL, and must not be able to change
   * anything), at a snapshot that sees every transaction committed before the low watermark. A commit is
   * in the WAL, and streamed before the watermark, a moment before other sessions see it (its WAL flush;
   * a synchronous standby's answer): a chunk reading in that moment would take the row as it was, and
   * emit it after the change — the mirror would keep the old row. So while a transaction in progress when
   * the watermark was written is still invisible to the snapshot and is known to have committed, or may
   * be between its commit record and its commit (the first moments), the snapshot is taken again.
   */
  async #beginChunkRead(query: pg.Client, task: SnapshotTask): Promise<void> {
    const atWatermark = await transactionsInProgress(query);
    const started = Date.now();
    let warned = false;
    for (;;) {
      await query.query('begin transaction isolation level repeatable read read only');
      if (atWatermark === '{}') return;
      // The transaction's first query takes its snapshot, which the chunk's select then reads. An
      // invisible transaction that has ended since (pg_xact_status no longer "in progress"), or that waits
      // for its synchronous standby — committed, its changes streamed, not visible, and "in progress" to
      // pg_xact_status: only pg_stat_activity says so, to a role allowed to read it — is waited for. Other
      // invisible ones are running, or between their commit record and their commit: a little while.
      const { rows: invisible } = await query.query<{ ended: string }>(
        `select (pg_xact_status(x) <> 'in progress' or exists (select 1 from pg_stat_activity a
                   where a.backend_xid = x::xid and a.wait_event = 'SyncRep'))::text as ended
           from unnest($1::xid8[]) as x
          where not pg_visible_in_snapshot(x, pg_current_snapshot())`,
        [atWatermark],
      );
      const waited = Date.now() - started;
      // (The session reads every value as text.)
      if (
        invisible.length === 0 ||
        (waited >= COMMIT_SETTLE_MS && invisible.every((row) => row.ended === 'false'))
      )
        return;
      await query.query('rollback');
      if (this.#stopping || !this.#sessionError) throw new Error(`source ${this.name} is stopping`);
      if (!warned && waited > 10_000) {
        warned = true;
        this.#logger.warn(
          `source ${this.name}: the next chunk of ${task.table} waits for a transaction that committed but is not visible yet (a synchronous standby that does not answer?)`,
        );
      }
      await sleep(20);
    }
  }

  /** The high watermark arrived: the chunk's rows whose keys did not change in the window join the stream here. */
  #completeChunk(chunk: Chunk, lsn: Lsn): void {
    this.#chunk = undefined;
    const { task } = chunk;
    const rows = chunk.rows ?? [];
    const fields = chunk.fields!;
    const encoder = new SnapshotEncoder(task.table, fields.names, fields.types, fields.keyIndexes);
    encoder.begin(formatLsn(lsn), new Date(chunk.readAt).toISOString());
    // The chunk's values are written into one buffer, each record's a view of it.
    const out = new ByteWriter(rows.length * 256);
    const records: PendingRecord[] = [];
    const prefix = lsnKey(lsn);
    const { keyIndexes } = fields;
    const keyTexts: Array<string | null> = keyIndexes.map(() => null);
    let seq = 0;
    let bytes = 0;
    for (const row of rows) {
      for (let k = 0; k < keyIndexes.length; k++) keyTexts[k] = row[keyIndexes[k]!] ?? null;
      const key = recordKey(task.table, keyTexts);
      if (chunk.changed.size && chunk.changed.has(key)) continue;
      const encoded = encoder.write(out, row, seq);
      records.push({
        key,
        position: { lsn, seq },
        positionText: `${prefix}.${seq}`,
        table: task.table,
        op: 'snapshot',
        value: undefined,
        encoded,
        size: encoded.length,
        schema: fields.schema,
      });
      bytes += encoded.length;
      seq++;
    }
    const last = rows[rows.length - 1];
    const done = rows.length < this.#config.snapshot.chunk_size;
    const cursor = this.#cursorOf(task);
    const mark: ChunkMark = {
      task: task.id,
      chunk: cursor.chunks + 1,
      lastKey: last ? fields.keyIndexes.map((i) => last[i] ?? '') : cursor.lastKey,
      rows: cursor.rows + records.length,
      done,
    };
    Object.assign(cursor, { lastKey: mark.lastKey, chunks: mark.chunk, rows: mark.rows, done });
    const lastRecord = records[records.length - 1];
    if (lastRecord) lastRecord.headers = { [CHUNK_HEADER]: JSON.stringify(mark) };
    this.#buffered += records.length;
    this.#bufferedBytes += bytes;
    this.#queue.push({
      records,
      commitLsn: lsn,
      endLsn: lsn,
      commitTime: chunk.readAt,
      afterAppend: async () => {
        applyChunkMark(this.#stored!, mark);
        this.#metrics?.snapshotRows.set({ source: this.name, table: task.table }, mark.rows);
        if (done) {
          this.#metrics?.snapshotDone.set({ source: this.name, table: task.table }, 1);
          this.#logger.info(
            `source ${this.name}: ${task.kind === 'initial' ? 'snapshot' : 'backfill'} of ${task.table} finished: ${mark.rows.toLocaleString('en-US')} rows in ${mark.chunk} chunk(s)`,
          );
        } else if (Date.now() - this.#lastProgressLog > 2000) {
          this.#lastProgressLog = Date.now();
          const pct = task.estimated
            ? ` (${Math.min(99, Math.round((100 * mark.rows) / task.estimated))}%)`
            : '';
          this.#logger.info(
            `source ${this.name}: ${task.table}: ${mark.rows.toLocaleString('en-US')} of ~${(task.estimated ?? 0).toLocaleString('en-US')} rows${pct}`,
          );
        }
        await saveState(this.#log, this.#topic, this.#stored!);
        if (this.#stored!.tasks.length === 0) {
          if (this.#config.snapshot_mode === 'initial_only') {
            this.#state = 'done';
            this.#stopWake?.();
            return;
          }
          this.#state = 'streaming';
          this.#detail = 'streaming';
        }
        this.#maybeStartChunk();
      },
    });
    this.#scheduleFlush();
    // Read the next chunk while this one is written.
    this.#maybeStartChunk();
  }

  /** Saves the state after what is queued has reached the log (so that it never runs ahead of the log). */
  async #saveStateInOrder(): Promise<void> {
    this.#queue.push({
      records: [],
      commitLsn: this.#durableBound(),
      commitTime: Date.now(),
      afterAppend: () => saveState(this.#log, this.#topic, this.#stored!),
    });
    this.#scheduleFlush();
  }

  async #onSignals(signals: readonly Buffer[]): Promise<void> {
    const state = this.#stored!;
    let changed = false;
    for (const content of signals) {
      let signal: BackfillSignal;
      try {
        signal = JSON.parse(content.toString('utf8')) as BackfillSignal;
      } catch {
        this.#logger.warn(`source ${this.name}: ignored a malformed backfill request`);
        continue;
      }
      if (state.signals.includes(signal.id)) continue;
      if (
        !state.secret ||
        signBackfill(state.secret, signal.id, signal.table, signal.where) !== signal.signature
      ) {
        this.#logger.warn(
          `source ${this.name}: ignored a backfill request with a bad signature (id ${signal.id})`,
        );
        continue;
      }
      state.signals.push(signal.id);
      changed = true;
      if (!this.#tables.has(signal.table)) {
        this.#logger.warn(
          `source ${this.name}: ignored a backfill of ${signal.table}, which it does not capture`,
        );
        continue;
      }
      state.tasks.push({
        id: signal.id,
        table: signal.table,
        kind: 'backfill',
        ...(signal.where ? { where: signal.where } : {}),
        lastKey: null,
        chunks: 0,
        rows: 0,
        startedAt: Date.now(),
      });
      this.#logger.info(
        `source ${this.name}: backfill of ${signal.table}${signal.where ? ` where ${signal.where}` : ''} requested`,
      );
    }
    if (!changed) return;
    await saveState(this.#log, this.#topic, state);
    if (this.#state === 'streaming') {
      this.#state = 'snapshotting';
      this.#detail = 'snapshotting';
    }
    this.#maybeStartChunk();
  }
}

/**
 * Writes a logical message into the WAL and flushes the WAL past it, so that the stream delivers it at
 * once: a non-transactional message alone waits for the WAL writer (up to wal_writer_delay, 200 ms by
 * default), which is what each snapshot chunk waits for its high watermark. A transaction with an xid
 * flushes at commit (the `flush` argument of pg_logical_emit_message needs PostgreSQL 17).
 */
async function emitFlushed(client: pg.Client, prefix: string, content: string): Promise<void> {
  await client.query('begin');
  try {
    await client.query('set local synchronous_commit = local');
    await client.query('select pg_logical_emit_message(false, $1, $2), txid_current()', [prefix, content]);
    await client.query('commit');
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  }
}

/** A record's key: its table and primary key, so that a row's changes share a partition. */
export function recordKey(table: string, key: ReadonlyArray<string | null | undefined>): string {
  let out = `${table}:[`;
  for (let i = 0; i < key.length; i++) {
    const part = key[i];
    if (i > 0) out += ',';
    out += part === null || part === undefined ? 'null' : JSON.stringify(part);
  }
  return `${out}]`;
}

function slotInUse(slot: string, pid: number | undefined, cause?: unknown): TributaryError {
  return new TributaryError(
    'CDC_SLOT_IN_USE',
    `replication slot ${slot} is in use by PostgreSQL backend pid ${pid ?? '?'}: another source (or a leftover connection) is reading it`,
    {
      cause,
      context: { slot, pid },
      hint: `stop the other \`tributary cdc run\` / \`tributary up\` using this slot, or end that backend: SELECT pg_terminate_backend(${pid ?? '<pid>'}); give each source its own slot_name`,
    },
  );
}

export { splitTable };
