/**
 * Idempotency: the event ids (and Idempotency-Keys) each stream has accepted within its dedupe window, so a
 * client that retries after a timeout does not create duplicates.
 *
 * Ids are recorded only after the log made their events durable, in a SQLite database next to the log
 * (`ingest.db`). Recording is batched: what the log acknowledged in one turn of the event loop is written
 * in one transaction, together with a watermark per topic partition — the offset up to which every
 * acknowledged event's id is recorded. Until then the ids live in memory, so a retry that arrives at once
 * is still caught.
 *
 * The crash window: a crash after the log acknowledged an append and before its ids were written would
 * forget them. On start, `recover` closes that window: it reads each stream topic from its watermark to the
 * end and records the ids the records carry in their headers. Only a lost ingest.db (deleted, or its last
 * transactions lost with the machine's power, since it is written with synchronous=NORMAL) forgets ids —
 * then the watermark is lost with them and recovery starts from the oldest one still stored.
 *
 * Ids are kept in two generation tables (`seen_ids_0`, `seen_ids_1`), each holding what was recorded
 * while it was the current one; the current one changes once it is a generation old (the longest dedupe
 * window, in `dedupe_settings`), emptying the other, whose ids are then all past every window. Forgetting
 * needs no index by time, which would cost every insert a second b-tree; a lookup reads both tables.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { Log } from '../log/log.ts';
import { TributaryError } from '../errors.ts';
import { IdFilter } from './id-filter.ts';

/** Record headers the server writes. */
export const HEADER_EVENT_ID = 'tributary-event-id';
/** Present when the id came from the client (only those are deduplicated). */
export const HEADER_DEDUPE = 'tributary-dedupe';
export const HEADER_IDEMPOTENCY_KEY = 'tributary-idempotency-key';
export const HEADER_STREAM = 'tributary-stream';

export interface RecordedEvent {
  readonly stream: string;
  readonly id: string;
}

export interface RecordedBatch {
  readonly stream: string;
  readonly key: string;
  readonly bodyHash: string | null;
  /** The response the request got, replayed to a retry. */
  readonly response: string;
}

export interface Acknowledged {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
}

export interface StoredBatch {
  readonly bodyHash: string | null;
  readonly response: string;
}

const RECOVERY_READ = 5000;

export class DedupeStore {
  readonly #db: DatabaseSync;
  readonly #windows: ReadonlyMap<string, number>;
  readonly #now: () => number;
  /** Ids acknowledged but not yet written: "stream\0id" → when seen. */
  readonly #pendingIds = new Map<string, number>();
  readonly #pendingBatches = new Map<string, { batch: RecordedBatch; at: number }>();
  readonly #pendingMarks = new Map<string, number>();
  #queue: Array<{ events: readonly RecordedEvent[]; batch?: RecordedBatch; at: number }> = [];
  #flushScheduled = false;
  readonly #autoFlush: boolean;
  /** Ids the store may hold (lookups only when it says maybe); absent in a store that only writes. */
  readonly #filter: IdFilter | undefined;
  readonly #lookups: boolean;
  #closed = false;
  readonly #purgeTimer: NodeJS.Timeout | undefined;
  readonly #lookup: StatementSync;
  readonly #lookupMany: StatementSync;
  readonly #lookupBatch: StatementSync;
  /** By generation slot (0, 1). */
  readonly #insert: StatementSync[];
  readonly #insertMany: StatementSync[];
  readonly #generations: StatementSync;
  readonly #clear: StatementSync[];
  readonly #startGeneration: StatementSync;
  readonly #generationMs: StatementSync;
  readonly #insertBatch: StatementSync;
  readonly #mark: StatementSync;

  private constructor(
    db: DatabaseSync,
    windows: ReadonlyMap<string, number>,
    now: () => number,
    autoFlush: boolean,
    lookups: boolean,
  ) {
    this.#db = db;
    this.#autoFlush = autoFlush;
    this.#lookups = lookups;
    this.#windows = windows;
    this.#now = now;
    this.#lookup = db.prepare(
      'select seen_at from seen_ids_0 where stream = ?1 and id = ?2 union all select seen_at from seen_ids_1 where stream = ?1 and id = ?2',
    );
    this.#lookupMany = db.prepare(
      'select id, seen_at from seen_ids_0 where stream = ?1 and id in (select value from json_each(?2)) union all ' +
        'select id, seen_at from seen_ids_1 where stream = ?1 and id in (select value from json_each(?2))',
    );
    this.#lookupBatch = db.prepare(
      'select body_hash, response, seen_at from seen_batches where stream = ? and key = ?',
    );
    this.#insert = [0, 1].map((slot) =>
      db.prepare(
        `insert into seen_ids_${slot} (stream, id, seen_at) values (?, ?, ?) on conflict do update set seen_at = excluded.seen_at`,
      ),
    );
    this.#insertMany = [0, 1].map((slot) =>
      db.prepare(
        `insert into seen_ids_${slot} (stream, id, seen_at) select ?, value, ? from json_each(?) where true on conflict do update set seen_at = excluded.seen_at`,
      ),
    );
    this.#generations = db.prepare('select slot, started_at from seen_generations order by started_at desc');
    this.#clear = [0, 1].map((slot) => db.prepare(`delete from seen_ids_${slot}`));
    this.#startGeneration = db.prepare('update seen_generations set started_at = ? where slot = ?');
    this.#generationMs = db.prepare("select value from dedupe_settings where name = 'generation_ms'");
    this.#insertBatch = db.prepare(
      'insert into seen_batches (stream, key, body_hash, response, seen_at) values (?, ?, ?, ?, ?) on conflict do update set body_hash = excluded.body_hash, response = excluded.response, seen_at = excluded.seen_at',
    );
    this.#mark = db.prepare(
      'insert into watermarks (topic, partition, next_offset) values (?, ?, ?) on conflict do update set next_offset = max(next_offset, excluded.next_offset)',
    );
    this.#purgeTimer = lookups ? setInterval(() => this.purge(), 10 * 60_000) : undefined;
    this.#purgeTimer?.unref();
    const longest = Math.max(0, ...windows.values());
    // The store that serves lookups knows the streams: a generation lasts their longest window (a store
    // that only writes, the log worker's, reads it when it writes).
    if (lookups)
      db.prepare(
        "insert into dedupe_settings (name, value) values ('generation_ms', ?) on conflict do update set value = excluded.value",
      ).run(longest);
    this.#filter = lookups && longest > 0 ? new IdFilter(longest, now) : undefined;
    if (this.#filter) {
      // Every id still within its window, so that "not in the filter" means "not seen".
      const since = now() - longest;
      for (const row of db
        .prepare(
          'select stream, id from seen_ids_0 where seen_at >= ?1 union all select stream, id from seen_ids_1 where seen_at >= ?1',
        )
        .iterate(since) as Iterable<{
        stream: string;
        id: string;
      }>)
        this.#filter.add(row.stream, row.id);
    }
  }

  /**
   * Opens (creating) `<directory>/ingest.db`. `windows` is each stream's dedupe window in ms; a stream
   * absent or with 0 is not deduplicated.
   */
  static open(
    directory: string,
    windows: ReadonlyMap<string, number>,
    options: {
      now?: () => number;
      /** Write what `record` queued on the next turn of the event loop (default); else `flush` does. */
      autoFlush?: boolean;
      /**
       * A store that serves lookups (default): forgets ids past their window every 10 minutes and keeps an
       * in-memory filter of the ids it holds. A store that only writes (the log worker's) says false.
       */
      lookups?: boolean;
    } = {},
  ): DedupeStore {
    let db: DatabaseSync;
    try {
      mkdirSync(directory, { recursive: true });
      // Two connections may share it: the server's (lookups) and the log worker's (writes, threaded-log.ts).
      // The busy timeout is set when opening, so it already covers the switch to WAL.
      db = new DatabaseSync(path.join(directory, 'ingest.db'), { timeout: 5_000 });
      db.exec('pragma journal_mode = wal; pragma synchronous = normal; pragma cache_size = -32768;');
      db.exec('begin immediate');
      try {
        db.exec(`
          create table if not exists seen_ids_0 (stream text not null, id text not null, seen_at integer not null,
            primary key (stream, id)) without rowid;
          create table if not exists seen_ids_1 (stream text not null, id text not null, seen_at integer not null,
            primary key (stream, id)) without rowid;
          create table if not exists seen_generations (slot integer primary key, started_at integer not null);
          create table if not exists dedupe_settings (name text primary key, value integer not null);
          create table if not exists seen_batches (stream text not null, key text not null, body_hash text,
            response text not null, seen_at integer not null, primary key (stream, key)) without rowid;
          create table if not exists watermarks (topic text not null, partition integer not null,
            next_offset integer not null, primary key (topic, partition)) without rowid;`);
        db.prepare('insert or ignore into seen_generations (slot, started_at) values (0, ?), (1, 0)').run(
          (options.now ?? Date.now)(),
        );
        // The one table of earlier versions, with an index by time: its ids go into the current generation.
        if (db.prepare("select 1 from sqlite_master where type = 'table' and name = 'seen_ids'").get()) {
          db.exec(`
            insert into seen_ids_0 (stream, id, seen_at) select stream, id, seen_at from seen_ids where true
              on conflict do update set seen_at = max(seen_at, excluded.seen_at);
            drop table seen_ids;`);
        }
        db.exec('commit');
      } catch (error) {
        db.exec('rollback');
        throw error;
      }
    } catch (cause) {
      throw new TributaryError(
        'STORAGE_IO',
        `cannot open the ingest dedupe store in ${directory}: ${(cause as Error).message}`,
        { cause, hint: 'check that the log directory is writable' },
      );
    }
    return new DedupeStore(
      db,
      windows,
      options.now ?? Date.now,
      options.autoFlush ?? true,
      options.lookups ?? true,
    );
  }

  windowOf(stream: string): number {
    return this.#windows.get(stream) ?? 0;
  }

  /**
   * Which of `ids` the stream has accepted within its window. With `expect`, the others are noted as
   * about to be recorded (see `expect`), each id hashed once for both.
   */
  seen(stream: string, ids: Iterable<string>, expect = false): Set<string> {
    const found = new Set<string>();
    const window = this.windowOf(stream);
    if (window <= 0) return found;
    const since = this.#now() - window;
    const stored: string[] = [];
    const filter = this.#filter;
    const pendingIds = this.#pendingIds.size > 0 ? this.#pendingIds : undefined;
    for (const id of ids) {
      const pending = pendingIds?.get(`${stream}\0${id}`);
      if (pending !== undefined) {
        if (pending >= since) found.add(id);
      } else if (!filter || (expect ? filter.mayHaveThenAdd(stream, id) : filter.mayHave(stream, id))) {
        stored.push(id);
      }
    }
    if (stored.length === 0) return found;
    if (stored.length < 8) {
      for (const id of stored) {
        const row = this.#lookup.get(stream, id) as { seen_at: number } | undefined;
        if (row && row.seen_at >= since) found.add(id);
      }
    } else {
      // One statement for a batch: most ids are new, and each call into SQLite has a fixed cost.
      for (const row of this.#lookupMany.all(stream, JSON.stringify(stored)) as Array<{
        id: string;
        seen_at: number;
      }>)
        if (row.seen_at >= since) found.add(row.id);
    }
    return found;
  }

  /** The response a request with this Idempotency-Key got within the window. */
  batch(stream: string, key: string): StoredBatch | undefined {
    const window = this.windowOf(stream);
    if (window <= 0) return undefined;
    const since = this.#now() - window;
    const pending = this.#pendingBatches.get(`${stream}\0${key}`);
    if (pending) return pending.at >= since ? pending.batch : undefined;
    const row = this.#lookupBatch.get(stream, key) as
      { body_hash: string | null; response: string; seen_at: number } | undefined;
    if (!row || row.seen_at < since) return undefined;
    return { bodyHash: row.body_hash, response: row.response };
  }

  /**
   * Remembers ids whose events the log has acknowledged at `positions`. Call it synchronously when the
   * append resolves, so that the order of recording is the order of the log (the watermark relies on it).
   */
  record(events: readonly RecordedEvent[], positions: readonly Acknowledged[], batch?: RecordedBatch): void {
    if (this.#closed) return;
    const at = this.#now();
    // A store that only writes (the log worker's) answers no lookups: it needs no ids in memory.
    if (this.#lookups)
      for (const event of events) {
        this.#pendingIds.set(`${event.stream}\0${event.id}`, at);
        this.#filter?.add(event.stream, event.id);
      }
    if (batch && this.#lookups) this.#pendingBatches.set(`${batch.stream}\0${batch.key}`, { batch, at });
    for (const position of positions) {
      const mark = `${position.topic}\0${position.partition}`;
      this.#pendingMarks.set(mark, Math.max(this.#pendingMarks.get(mark) ?? 0, position.offset + 1));
    }
    this.#queue.push({ events, batch, at });
    if (this.#autoFlush && !this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /**
   * Notes ids that another connection (the log worker's) is about to record, so that the filter answers
   * "maybe" for them from now on.
   */
  expect(events: readonly RecordedEvent[]): void {
    if (this.#filter) for (const event of events) this.#filter.add(event.stream, event.id);
  }

  /**
   * The generation table to write ids into, inside a write transaction: the current one; or, once that is
   * a generation old, the other one, emptied first (all its ids were recorded before the current one
   * started, so are older than a generation, past every window).
   */
  #writeSlot(now: number): number {
    const [current, other] = this.#generations.all() as Array<{ slot: number; started_at: number }>;
    const generation = (this.#generationMs.get() as { value: number } | undefined)?.value ?? 0;
    if (generation > 0 && now - current!.started_at >= generation) {
      this.#clear[other!.slot]!.run();
      this.#startGeneration.run(now, other!.slot);
      return other!.slot;
    }
    return current!.slot;
  }

  /**
   * Writes what `record` queued, in one transaction (done on the next turn of the event loop by default).
   * Returns the error when the write failed: what was queued stays queued, and is written by the next
   * flush — a store with `autoFlush` schedules one in a second; otherwise the caller decides when.
   */
  flush(): Error | undefined {
    this.#flushScheduled = false;
    if (this.#closed || this.#queue.length === 0) return undefined;
    const queue = this.#queue;
    const marks = [...this.#pendingMarks];
    this.#queue = [];
    this.#pendingMarks.clear();
    try {
      this.#db.exec('begin immediate');
      const slot = this.#writeSlot(this.#now());
      // Ids of the same stream and time go in one statement: each call into SQLite has a fixed cost.
      let ids: string[] = [];
      let stream = '';
      let at = 0;
      const insertIds = () => {
        if (ids.length < 4) for (const id of ids) this.#insert[slot]!.run(stream, id, at);
        else this.#insertMany[slot]!.run(stream, at, JSON.stringify(ids));
        ids = [];
      };
      for (const entry of queue) {
        for (const event of entry.events) {
          if (event.stream !== stream || entry.at !== at) {
            insertIds();
            stream = event.stream;
            at = entry.at;
          }
          ids.push(event.id);
        }
        if (entry.batch)
          this.#insertBatch.run(
            entry.batch.stream,
            entry.batch.key,
            entry.batch.bodyHash,
            entry.batch.response,
            entry.at,
          );
      }
      insertIds();
      for (const [mark, next] of marks) {
        const [topic = '', partition = '0'] = mark.split('\0');
        this.#mark.run(topic, Number(partition), next);
      }
      this.#db.exec('commit');
    } catch (error) {
      try {
        this.#db.exec('rollback');
      } catch {
        // not in a transaction
      }
      // Keep them in memory and try again shortly; recovery from the log covers a crash meanwhile.
      this.#queue = [...queue, ...this.#queue];
      for (const [mark, next] of marks)
        this.#pendingMarks.set(mark, Math.max(this.#pendingMarks.get(mark) ?? 0, next));
      if (this.#autoFlush && !this.#flushScheduled) {
        this.#flushScheduled = true;
        setTimeout(() => this.flush(), 1000).unref();
      }
      return error instanceof Error ? error : new Error(String(error));
    }
    if (!this.#lookups) return undefined;
    for (const entry of queue) {
      for (const event of entry.events) {
        const key = `${event.stream}\0${event.id}`;
        if (this.#pendingIds.get(key) === entry.at) this.#pendingIds.delete(key);
      }
      if (entry.batch) {
        const key = `${entry.batch.stream}\0${entry.batch.key}`;
        if (this.#pendingBatches.get(key)?.at === entry.at) this.#pendingBatches.delete(key);
      }
    }
    return undefined;
  }

  /**
   * Records the ids of events appended after the watermark of each topic (the crash window). A topic
   * partition never seen before starts at its current end: there is nothing of ours to recover there.
   */
  async recover(log: Log, topics: ReadonlyMap<string, string>): Promise<number> {
    let recovered = 0;
    const getMark = this.#db.prepare('select next_offset from watermarks where topic = ? and partition = ?');
    for (const [topic, stream] of topics) {
      const window = this.windowOf(stream);
      for (const { partition, start, end } of await log.offsets(topic)) {
        const row = getMark.get(topic, partition) as { next_offset: number } | undefined;
        if (!row) {
          this.#mark.run(topic, partition, end);
          continue;
        }
        let next = Math.max(row.next_offset, start);
        const since = this.#now() - window;
        while (next < end) {
          const records = await log.read(topic, partition, next, { maxRecords: RECOVERY_READ });
          if (records.length === 0) break;
          const batches = new Map<string, string[]>();
          this.#db.exec('begin immediate');
          try {
            const slot = this.#writeSlot(this.#now());
            for (const record of records) {
              const id = record.headers[HEADER_EVENT_ID];
              if (window > 0 && record.timestamp >= since && id !== undefined) {
                if (record.headers[HEADER_DEDUPE] === '1') {
                  this.#insert[slot]!.run(stream, id, record.timestamp);
                  this.#filter?.add(stream, id);
                  recovered++;
                }
                const key = record.headers[HEADER_IDEMPOTENCY_KEY];
                if (key !== undefined) batches.set(key, [...(batches.get(key) ?? []), id]);
              }
            }
            for (const [key, ids] of batches) {
              const response = JSON.stringify({ accepted: ids.length, ids, recovered: true });
              // Only when the request was not recorded whole: its own record is the better answer.
              const existing = this.#lookupBatch.get(stream, key);
              if (!existing) this.#insertBatch.run(stream, key, null, response, this.#now());
            }
            next = records[records.length - 1]!.offset + 1;
            this.#mark.run(topic, partition, next);
            this.#db.exec('commit');
          } catch (error) {
            this.#db.exec('rollback');
            throw error;
          }
        }
      }
    }
    return recovered;
  }

  /**
   * Forgets Idempotency-Keys older than their stream's window, and those of streams no longer configured.
   * (Ids go with their generation, see `#writeSlot`.)
   */
  purge(): void {
    if (this.#closed) return;
    const now = this.#now();
    const streams = [...this.#windows.keys()];
    try {
      for (const [stream, window] of this.#windows) {
        this.#db
          .prepare('delete from seen_batches where stream = ? and seen_at < ?')
          .run(stream, now - window);
      }
      const placeholders = streams.map(() => '?').join(', ');
      this.#db
        .prepare(`delete from seen_batches where stream not in (${placeholders || "''"})`)
        .run(...streams);
    } catch {
      // busy: the next round purges
    }
  }

  close(): void {
    if (this.#closed) return;
    this.flush();
    this.#closed = true;
    if (this.#purgeTimer) clearInterval(this.#purgeTimer);
    this.#db.close();
  }
}
