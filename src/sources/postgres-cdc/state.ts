/**
 * What a CDC source remembers between runs, kept in the log next to its changes:
 *  - the position of every record it wrote (header `cdc.pos`: commit LSN and sequence), from which it finds
 *    on restart what it already wrote, per partition, and skips those changes when PostgreSQL sends them
 *    again (so the topic holds each change once);
 *  - its snapshot progress, in a one-partition state topic (`<topic>.state`), written after each chunk. The
 *    last record of a chunk also carries the progress (header `cdc.chunk`), so a chunk written just before
 *    a crash, whose state record was not, is found by reading the records after the last state.
 */
import type { Log, StoredRecord } from '../../log/log.ts';
import { lsnFromKey, lsnKey, type Lsn } from './lsn.ts';

export const POSITION_HEADER = 'cdc.pos';
export const CHUNK_HEADER = 'cdc.chunk';

/** A record's place in the source's order: transactions by commit LSN, changes by sequence within. */
export interface Position {
  readonly lsn: Lsn;
  readonly seq: number;
}

export function formatPosition(lsn: Lsn, seq: number): string {
  return `${lsnKey(lsn)}.${seq}`;
}

export function parsePosition(text: string | undefined): Position | undefined {
  if (!text) return undefined;
  const dot = text.indexOf('.');
  if (dot !== 16) return undefined;
  return { lsn: lsnFromKey(text.slice(0, 16)), seq: Number(text.slice(17)) };
}

export function comparePositions(a: Position, b: Position): number {
  return a.lsn < b.lsn ? -1 : a.lsn > b.lsn ? 1 : a.seq - b.seq;
}

export interface SnapshotTask {
  readonly id: string;
  readonly table: string;
  readonly kind: 'initial' | 'backfill';
  /** A SQL condition limiting the rows (backfill --where). */
  readonly where?: string;
  /** The primary key (as text) of the last row copied; null before the first chunk. */
  lastKey: string[] | null;
  chunks: number;
  rows: number;
  estimated?: number;
  readonly startedAt: number;
}

export interface SourceState {
  readonly version: 1;
  /** Tables whose initial snapshot finished (they are not copied again unless the slot is lost). */
  snapshotted: string[];
  /** Snapshots and backfills not finished, in order. */
  tasks: SnapshotTask[];
  /** Ids of backfill requests already taken (a request replayed after a restart is not taken twice). */
  signals: string[];
  /** Signs backfill requests (`tributary cdc backfill` reads it from here): random, made on first start. */
  secret?: string;
  /** End offsets of the change topic when this state was written. */
  offsets: Record<string, number>;
  writtenAt: number;
}

export function emptyState(): SourceState {
  return { version: 1, snapshotted: [], tasks: [], signals: [], offsets: {}, writtenAt: 0 };
}

/** What the last record of a chunk says about its task (header `cdc.chunk`). */
export interface ChunkMark {
  readonly task: string;
  readonly chunk: number;
  readonly lastKey: string[] | null;
  readonly rows: number;
  readonly done: boolean;
}

export function stateTopicOf(topic: string): string {
  return `${topic}.state`;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The partition's last record before `end` (that `matches`). Usually at `end - 1`, but a log can have
 * offsets without a record (the embedded log's, after a machine with durability "os" stopped before they
 * were on disk), or records that do not match: then further back, a window 16 times wider each time.
 */
export async function readLastRecord(
  log: Log,
  topic: string,
  partition: number,
  end: number,
  start: number,
  matches: (record: StoredRecord) => boolean = () => true,
): Promise<StoredRecord | undefined> {
  for (let span = 1; ; span *= 16) {
    const from = Math.max(start, end - span);
    if (from >= end) return undefined;
    let last: StoredRecord | undefined;
    for (let next = from; next < end;) {
      const records = (await log.read(topic, partition, next, { maxRecords: 1000 })).filter(
        (record) => record.offset < end,
      );
      if (records.length === 0) break;
      last = records.findLast(matches) ?? last;
      next = records.at(-1)!.offset + 1;
    }
    if (last) return last;
    if (from === start) return undefined;
  }
}

/** The source's state: the last state record, brought forward by chunk marks written after it. */
export async function loadState(log: Log, topic: string): Promise<SourceState> {
  const stateTopic = stateTopicOf(topic);
  const [offsets] = await log.offsets(stateTopic);
  let state = emptyState();
  const last = offsets ? await readLastRecord(log, stateTopic, 0, offsets.end, offsets.start) : undefined;
  if (last) state = { ...emptyState(), ...(JSON.parse(decoder.decode(last.value)) as SourceState) };
  if (state.tasks.length === 0) return state;
  // Chunks written after the state record (a crash between the chunk and its state record).
  for (const partition of await log.offsets(topic)) {
    let next = Math.max(partition.start, state.offsets[partition.partition] ?? 0);
    while (next < partition.end) {
      const records = await log.read(topic, partition.partition, next, { maxRecords: 5000 });
      if (records.length === 0) break;
      for (const record of records) {
        const mark = record.headers[CHUNK_HEADER];
        if (mark) applyChunkMark(state, JSON.parse(mark) as ChunkMark);
      }
      next = records[records.length - 1]!.offset + 1;
    }
  }
  return state;
}

/** Moves a task forward to the chunk a mark describes (marks of older chunks change nothing). */
export function applyChunkMark(state: SourceState, mark: ChunkMark): void {
  const task = state.tasks.find((t) => t.id === mark.task);
  if (!task || task.chunks >= mark.chunk) return;
  task.chunks = mark.chunk;
  task.lastKey = mark.lastKey;
  task.rows = mark.rows;
  if (mark.done) finishTask(state, task);
}

export function finishTask(state: SourceState, task: SnapshotTask): void {
  state.tasks = state.tasks.filter((t) => t.id !== task.id);
  if (task.kind === 'initial' && !state.snapshotted.includes(task.table)) state.snapshotted.push(task.table);
}

export async function saveState(log: Log, topic: string, state: SourceState): Promise<void> {
  const offsets = await log.offsets(topic);
  state.offsets = Object.fromEntries(offsets.map((o) => [String(o.partition), o.end]));
  state.writtenAt = Date.now();
  state.signals = state.signals.slice(-200);
  await log.append(stateTopicOf(topic), [{ key: 'state', value: encoder.encode(JSON.stringify(state)) }]);
}

/** Per partition, the position of the last record the source wrote (what it must not write again). */
export async function lastPositions(log: Log, topic: string): Promise<Map<number, Position>> {
  const out = new Map<number, Position>();
  for (const partition of await log.offsets(topic)) {
    // The last record with a position: records replayed from a DLQ (`tributary dlq replay`) carry none.
    const record = await readLastRecord(
      log,
      topic,
      partition.partition,
      partition.end,
      partition.start,
      (r) => r.headers[POSITION_HEADER] !== undefined,
    );
    const position = parsePosition(record?.headers[POSITION_HEADER]);
    if (position) out.set(partition.partition, position);
  }
  return out;
}
