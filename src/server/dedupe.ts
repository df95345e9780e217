/**
 * Idempotency: the event ids (and Idempotency-Keys) each stream has accepted within its dedupe window, so a
 * client that retries after a timeout does not create duplicates.
 *
 * Ids are remembered only once the log made their events durable. The store of the ids holds every id of
 * the window in memory, exactly (id-index.ts: a 96-bit fingerprint an id, behind a Bloom filter); on disk
 * they are a journal of those fingerprints (id-journal.ts), appended once a turn of the event loop and
 * read back on start. With the embedded log, that store is the log worker's, which decides duplicates as
 * it appends, a round of appends at a time (`beginRound`, `admit`, `keep`; log-worker.ts); with another log
 * it is the server's, which looks ids up (`seen`) before appending and `record`s them after. Each journal
 * chunk carries the watermark per topic partition it completes: the offset up to which every acknowledged
 * event's id is in the journal. Idempotency-Keys and the answers to replay for them stay in a SQLite
 * database next to the log (`ingest.db`, written by the server's store), which also takes the watermarks,
 * once the journal holding them is synced.
 *
 * The crash window: a crash after the log acknowledged an append and before its ids were written would
 * forget them. On start, `recover` closes that window: it reads each stream topic from the higher of the
 * two watermarks to the end and records the ids the records carry in their headers. Neither watermark can
 * be ahead of the ids on disk, whatever a crash or a power failure lost; only deleted files forget ids.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { Log } from '../log/log.ts';
import { TributaryError } from '../errors.ts';
import { fingerprint, IdIndex, print, PrintSet, seedOf, setPrint } from './id-index.ts';
import { ENTRY_WORDS, IdJournal } from './id-journal.ts';

/** Record headers the server writes. */
export const HEADER_EVENT_ID = 'tributary-event-id';
/** Present when the id came from the client (only those are deduplicated). */
export const HEADER_DEDUPE = 'tributary-dedupe';
export const HEADER_IDEMPOTENCY_KEY = 'tributary-idempotency-key';
/** The id of the API key that sent the request, when one did: Idempotency-Keys are that key's own. */
export const HEADER_IDEMPOTENCY_SCOPE = 'tributary-idempotency-scope';

/**
 * The id a record of a stream's topic is deduplicated on: its event id when the client gave it
 * (tributary-dedupe), else none. The one rule for appends and for recovery from the log.
 */
export function dedupeIdOf(headers: Readonly<Record<string, string>> | undefined): string | undefined {
  return headers?.[HEADER_DEDUPE] === '1' ? headers[HEADER_EVENT_ID] : undefined;
}

/** An Idempotency-Key as the store keeps it: `<API key id>/<key>` for a request an API key sent. */
export function scopedIdempotencyKey(key: string, scope: string | undefined): string {
  return scope === undefined ? key : `${scope}/${key}`;
}
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
/** Words of an id a round admitted: the fingerprint's three, then 1 when the filter did not know it. */
const ADMITTED_WORDS = 4;

/**
 * Puts the fingerprint in `print` and `last` as entry `index` (4 words: ENTRY_WORDS, ADMITTED_WORDS) of
 * `list`; returns the list, grown when it was full.
 */
function pushPrint(list: Uint32Array<ArrayBuffer>, index: number, last: number): Uint32Array<ArrayBuffer> {
  if (4 * (index + 1) > list.length) {
    const grown = new Uint32Array(2 * list.length);
    grown.set(list);
    list = grown;
  }
  const at = 4 * index;
  list[at] = print[0]!;
  list[at + 1] = print[1]!;
  list[at + 2] = print[2]!;
  list[at + 3] = last;
  return list;
}
const KNOWN = { maybe: false };
/** How often the journal is synced and its watermarks written to ingest.db. */
const MARKS_SYNC_MS = 1000;
/** A journal file (and an in-memory generation) covers at most this share of the longest window. */
const PERIODS_PER_WINDOW = 8;

export class DedupeStore {
  readonly #db: DatabaseSync;
  readonly #windows: ReadonlyMap<string, number>;
  readonly #now: () => number;
  readonly #journal: IdJournal;
  readonly #pendingBatches = new Map<string, { batch: RecordedBatch; at: number }>();
  readonly #pendingMarks = new Map<string, number>();
  /**
   * Watermarks in the journal, not yet in ingest.db: those are written there only once the journal is
   * synced (every MARKS_SYNC_MS), so that ingest.db never holds a watermark above ids a power failure lost.
   */
  readonly #journaledMarks = new Map<string, number>();
  #marksSyncedAt = 0;
  /** Journal entries not written yet (ENTRY_WORDS words each). */
  #entries = new Uint32Array(ENTRY_WORDS * 1024);
  #entryCount = 0;
  #batches: Array<{ batch: RecordedBatch; at: number }> = [];
  #flushScheduled = false;
  /** Called after the next flush (`written`). */
  #onFlushed: Array<() => void> = [];
  /** Why the last flush failed, until one succeeds. */
  #writeFailure: string | undefined;
  readonly #autoFlush: boolean;
  /** Every id within the window; absent in a store that keeps only Idempotency-Keys (`ids: false`). */
  readonly #index: IdIndex | undefined;
  /** The ids the current round admitted (ADMITTED_WORDS words each), and the set of them. */
  #admitted = new Uint32Array(ADMITTED_WORDS * 1024);
  #admittedCount = 0;
  readonly #round = new PrintSet();
  #roundEpoch = -1;
  #roundNow = 0;
  #closed = false;
  readonly #purgeTimer: NodeJS.Timeout | undefined;
  readonly #lookupBatch: StatementSync;
  readonly #insertBatch: StatementSync;
  readonly #mark: StatementSync;
  readonly #periodMs: StatementSync;
  /** The watermarks the journal holds, read on open (recovery starts from them or ingest.db's). */
  #journalMarks: Map<string, number> | undefined;

  private constructor(
    db: DatabaseSync,
    directory: string,
    windows: ReadonlyMap<string, number>,
    options: { now: () => number; autoFlush: boolean; ids: boolean; maxIds: number },
  ) {
    this.#db = db;
    this.#autoFlush = options.autoFlush;
    this.#windows = windows;
    this.#now = options.now;
    this.#journal = new IdJournal(path.join(directory, 'dedupe-ids'));
    this.#lookupBatch = db.prepare(
      'select body_hash, response, seen_at from seen_batches where stream = ? and key = ?',
    );
    this.#insertBatch = db.prepare(
      'insert into seen_batches (stream, key, body_hash, response, seen_at) values (?, ?, ?, ?, ?) on conflict do update set body_hash = excluded.body_hash, response = excluded.response, seen_at = excluded.seen_at',
    );
    this.#mark = db.prepare(
      'insert into watermarks (topic, partition, next_offset) values (?, ?, ?) on conflict do update set next_offset = max(next_offset, excluded.next_offset)',
    );
    this.#periodMs = db.prepare("select value from dedupe_settings where name = 'journal_period_ms'");
    this.#purgeTimer = setInterval(() => this.purge(), 10 * 60_000);
    this.#purgeTimer.unref();
    if (!options.ids) return;
    const longest = Math.max(0, ...windows.values());
    const period = Math.max(1000, Math.ceil(longest / PERIODS_PER_WINDOW));
    // Kept in ingest.db: a store opened without the streams (an older log worker's) read it there.
    db.prepare(
      "insert into dedupe_settings (name, value) values ('journal_period_ms', ?) on conflict do update set value = excluded.value",
    ).run(period);
    if (longest <= 0) return;
    const index = new IdIndex({
      windowMs: longest,
      periodMs: period,
      maxIds: options.maxIds,
      now: this.#now,
    });
    this.#index = index;
    const since = this.#now() - longest;
    this.#journalMarks = this.#journal.read(since, (words, at, seenAt) => {
      setPrint(words[at]!, words[at + 1]!, words[at + 2]!);
      index.addPrint(seenAt);
    });
    this.#migrate(since);
  }

  /**
   * Opens (creating) the store in `directory`: `ingest.db` and the journal in `dedupe-ids/`. `windows` is
   * each stream's dedupe window in ms; a stream absent or with 0 is not deduplicated.
   */
  static open(
    directory: string,
    windows: ReadonlyMap<string, number>,
    options: {
      now?: () => number;
      /** Write what `record` queued on the next turn of the event loop (default); else `flush` does. */
      autoFlush?: boolean;
      /**
       * The store of the event ids (default): holds those of the window in memory and in the journal,
       * recovers them from the log. False for one that keeps only Idempotency-Keys and their answers — the
       * server's, when the log worker keeps the ids (threaded-log.ts). Both forget Idempotency-Keys past
       * their window every 10 minutes.
       */
      ids?: boolean;
      /** Ids held in memory at most (server.dedupe_max_ids): past it, the oldest go early. */
      maxIds?: number;
    } = {},
  ): DedupeStore {
    let db: DatabaseSync;
    try {
      mkdirSync(directory, { recursive: true });
      // Two connections may share it: the server's (Idempotency-Keys) and the log worker's (ids, watermarks).
      // The busy timeout is set when opening, so it already covers the switch to WAL.
      db = new DatabaseSync(path.join(directory, 'ingest.db'), { timeout: 5_000 });
      db.exec('pragma journal_mode = wal; pragma synchronous = normal;');
      db.exec(`
        create table if not exists dedupe_settings (name text primary key, value integer not null);
        create table if not exists seen_batches (stream text not null, key text not null, body_hash text,
          response text not null, seen_at integer not null, primary key (stream, key)) without rowid;
        create table if not exists watermarks (topic text not null, partition integer not null,
          next_offset integer not null, primary key (topic, partition)) without rowid;`);
      return new DedupeStore(db, directory, windows, {
        now: options.now ?? Date.now,
        autoFlush: options.autoFlush ?? true,
        ids: options.ids ?? true,
        maxIds: options.maxIds ?? 10_000_000,
      });
    } catch (cause) {
      throw new TributaryError(
        'STORAGE_IO',
        `cannot open the ingest dedupe store in ${directory}: ${(cause as Error).message}`,
        { cause, hint: 'check that the log directory is writable' },
      );
    }
  }

  /**
   * Ids of earlier versions, kept in SQLite tables (`seen_ids`, then `seen_ids_0` and `seen_ids_1`):
   * those within the window go into the journal, and the tables are dropped.
   */
  #migrate(since: number): void {
    const tables = (
      this.#db
        .prepare(
          "select name from sqlite_master where type = 'table' and name in ('seen_ids', 'seen_ids_0', 'seen_ids_1')",
        )
        .all() as Array<{ name: string }>
    ).map((row) => row.name);
    if (tables.length === 0) return;
    this.#index?.rotate();
    for (const table of tables)
      for (const row of this.#db
        .prepare(`select stream, id, seen_at from ${table} where seen_at >= ?`)
        .iterate(since) as Iterable<{ stream: string; id: string; seen_at: number }>)
        this.#remember(row.stream, row.id, row.seen_at);
    const error = this.flush();
    if (error) throw error;
    this.#journal.sync();
    this.#db.exec(
      `begin immediate; ${tables.map((t) => `drop table ${t};`).join(' ')} drop table if exists seen_generations; commit;`,
    );
  }

  windowOf(stream: string): number {
    return this.#windows.get(stream) ?? 0;
  }

  /**
   * Why the journal stopped — a sync failed, so what it covered may be lost — or undefined. Writes go on
   * without it (ids are remembered in memory, Idempotency-Keys in ingest.db) until a restart, which
   * recovers the ids from the log from the last watermark synced.
   */
  get journalFailure(): Error | undefined {
    return this.#journal.failure;
  }

  /** Ids held in memory, the bytes they take, and those forgotten early (see IdIndex). */
  get stats(): { ids: number; bytes: number; forgotEarly: number } {
    return {
      ids: this.#index?.size ?? 0,
      bytes: this.#index?.bytes ?? 0,
      forgotEarly: this.#index?.forgotEarly ?? 0,
    };
  }

  /** Which of `ids` the stream has accepted within its window. */
  seen(stream: string, ids: readonly string[]): Set<string> {
    const seen = new Set<string>();
    const window = this.windowOf(stream);
    const index = this.#index;
    if (window <= 0 || !index || ids.length === 0) return seen;
    const since = this.#now() - window;
    const seed = seedOf(stream);
    index.rotate();
    for (const id of ids) {
      fingerprint(seed, id);
      if (index.hasPrint(since)) seen.add(id);
    }
    return seen;
  }

  /**
   * Starts a round: the log worker decides which events of the appends it is about to commit in one
   * transaction are duplicates (`admit`), then keeps the ids of those that became durable (`keep`). A round
   * ends with the next one; one at a time, so the ids one admits are decided against every earlier round's.
   */
  beginRound(): void {
    this.#admittedCount = 0;
    this.#round.clear();
    this.#roundNow = this.#now();
    this.#index?.rotate(this.#roundNow);
    this.#roundEpoch = this.#index?.filterEpoch ?? -1;
  }

  /**
   * False when the stream accepted `id` within its window, or the round admitted it already: its event is
   * a duplicate, to drop. True otherwise: the round admits it, as the `admitted`-th id.
   */
  admit(stream: string, id: string): boolean {
    fingerprint(seedOf(stream), id);
    return this.admitPrint(stream);
  }

  /** `admit` for the id whose fingerprint is in `print` (id-index.ts `fingerprint` or `setPrint`). */
  admitPrint(stream: string): boolean {
    const window = this.windowOf(stream);
    const index = this.#index;
    if (window <= 0 || !index) return true;
    if (index.hasPrintThenFilter(this.#roundNow - window, KNOWN)) return false;
    // The filter had it (a false positive, or an id earlier in the round): only then is the round searched.
    if (KNOWN.maybe && this.#round.has()) return false;
    this.#round.add();
    this.#admitted = pushPrint(this.#admitted, this.#admittedCount++, KNOWN.maybe ? 0 : 1);
    return true;
  }

  /** How many ids the round has admitted so far. */
  get admitted(): number {
    return this.#admittedCount;
  }

  /**
   * Remembers the round's admitted ids from `from` to `to` (`admitted` before and after the append that
   * carries them), whose events are durable at `positions`, and queues them for the journal (see `record`).
   */
  keep(from: number, to: number, positions: readonly Acknowledged[]): void {
    if (this.#closed) return;
    const index = this.#index;
    if (index && to > from) {
      const at = this.#now();
      index.rotate(at);
      const admitted = this.#admitted;
      for (let i = ADMITTED_WORDS * from; i < ADMITTED_WORDS * to; i += ADMITTED_WORDS) {
        setPrint(admitted[i]!, admitted[i + 1]!, admitted[i + 2]!);
        // An id the filter did not know when admitted: nothing added it since (the round admitted it
        // once), so it goes into the table without a search.
        index.addPrint(at, admitted[i + 3] === 1, this.#roundEpoch);
        this.#queue(at);
      }
    }
    this.#queueMarks(positions);
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
   * Remembers ids whose events the log has acknowledged at `positions`, and writes them (on the next turn
   * of the event loop, or at `flush`). Call it synchronously when the append resolves, so that the order
   * of recording is the order of the log (the watermark relies on it).
   */
  record(events: readonly RecordedEvent[], positions: readonly Acknowledged[], batch?: RecordedBatch): void {
    if (this.#closed) return;
    const at = this.#now();
    this.#index?.rotate(at);
    for (const event of events) this.#remember(event.stream, event.id, at);
    if (batch) {
      this.#batches.push({ batch, at });
      this.#pendingBatches.set(`${batch.stream}\0${batch.key}`, { batch, at });
    }
    this.#queueMarks(positions);
  }

  /** Queues the watermarks `positions` complete, and schedules the write (with `autoFlush`). */
  #queueMarks(positions: readonly Acknowledged[]): void {
    for (const position of positions) {
      const mark = `${position.topic}\0${position.partition}`;
      this.#pendingMarks.set(mark, Math.max(this.#pendingMarks.get(mark) ?? 0, position.offset + 1));
    }
    if (this.#autoFlush && !this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Into the index (its callers rotate it first) and the journal's queue. */
  #remember(stream: string, id: string, at: number): void {
    fingerprint(seedOf(stream), id);
    this.#index?.addPrint(at);
    this.#queue(at);
  }

  /** The fingerprint in `print`, seen at `at`, into the journal's queue. */
  #queue(at: number): void {
    this.#entries = pushPrint(this.#entries, this.#entryCount++, Math.ceil(at / 1000));
  }

  /**
   * Writes what `record` queued: the ids to the journal with the watermarks, then the Idempotency-Keys'
   * answers — and, once a second, the journal synced, the watermarks — to ingest.db in one transaction
   * (done on the next turn of the event loop by default). Returns the error when a write failed: what was
   * not written stays queued, and is written by the next flush — a store with `autoFlush` schedules one
   * in a second; otherwise the caller decides when.
   */
  flush(syncMarks = false): Error | undefined {
    this.#flushScheduled = false;
    const error = this.#flush(syncMarks);
    this.#writeFailure = error?.message;
    const waiting = this.#onFlushed;
    this.#onFlushed = [];
    for (const resolve of waiting) resolve();
    return error;
  }

  /**
   * Resolves once what was recorded so far is written (with `autoFlush`, on the next turn of the event
   * loop), or at once while writes fail: it then stays queued in memory, and `writeFailure` says why.
   */
  written(): Promise<void> {
    if (this.#closed || this.#writeFailure !== undefined) return Promise.resolve();
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.flush());
    }
    return new Promise((resolve) => this.#onFlushed.push(resolve));
  }

  /** Why writing to the store fails right now (it retries), or undefined. */
  get writeFailure(): string | undefined {
    return this.#writeFailure;
  }

  #flush(syncMarks: boolean): Error | undefined {
    if (this.#closed) return undefined;
    try {
      const now = this.#now();
      if (this.#journal.failure) {
        // The journal stopped (see journalFailure): the ids stay in memory only, and ingest.db's watermarks
        // stay where they are, so that a restart reads them again from the log.
        this.#entryCount = 0;
        this.#pendingMarks.clear();
        this.#journaledMarks.clear();
      }
      if (this.#entryCount > 0 || this.#pendingMarks.size > 0) {
        const period = (this.#periodMs.get() as { value: number } | undefined)?.value ?? 3_600_000;
        // The ids with the watermarks they complete, in one chunk: the journal never holds a watermark
        // without the ids below it.
        this.#journal.append(this.#entries, this.#entryCount, this.#pendingMarks, now, period);
        this.#entryCount = 0;
        for (const [mark, next] of this.#pendingMarks)
          this.#journaledMarks.set(mark, Math.max(this.#journaledMarks.get(mark) ?? 0, next));
        this.#pendingMarks.clear();
      }
      const marks =
        this.#journaledMarks.size > 0 && (syncMarks || Math.abs(now - this.#marksSyncedAt) >= MARKS_SYNC_MS)
          ? [...this.#journaledMarks]
          : [];
      if (this.#batches.length === 0 && marks.length === 0) return undefined;
      if (marks.length > 0) this.#journal.sync();
      const batches = this.#batches;
      this.#db.exec('begin immediate');
      try {
        for (const { batch, at } of batches)
          this.#insertBatch.run(batch.stream, batch.key, batch.bodyHash, batch.response, at);
        for (const [mark, next] of marks) {
          const nul = mark.lastIndexOf('\0');
          this.#mark.run(mark.slice(0, nul), Number(mark.slice(nul + 1)), next);
        }
        this.#db.exec('commit');
      } catch (error) {
        this.#db.exec('rollback');
        throw error;
      }
      this.#batches = [];
      if (marks.length > 0) this.#marksSyncedAt = now;
      for (const [mark, next] of marks)
        if (this.#journaledMarks.get(mark) === next) this.#journaledMarks.delete(mark);
      for (const { batch, at } of batches) {
        const key = `${batch.stream}\0${batch.key}`;
        if (this.#pendingBatches.get(key)?.at === at) this.#pendingBatches.delete(key);
      }
      return undefined;
    } catch (error) {
      // Kept and tried again shortly; recovery from the log covers a crash meanwhile.
      if (this.#autoFlush && !this.#flushScheduled) {
        this.#flushScheduled = true;
        setTimeout(() => this.flush(), 1000).unref();
      }
      return error instanceof Error ? error : new Error(String(error));
    }
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
        const journaled = this.#journalMarks?.get(`${topic}\0${partition}`);
        // A stream without dedupe has no id to recover; a partition never seen before, nothing of ours
        // (made durable below, before anything is appended, so that a crash does not lose it).
        if (window <= 0 || (!row && journaled === undefined)) {
          if ((row?.next_offset ?? -1) < end) this.#pendingMarks.set(`${topic}\0${partition}`, end);
          continue;
        }
        // Both cover ids that are in the journal, whatever a crash lost (see #journaledMarks): the higher
        // one is safe.
        const mark = Math.max(row?.next_offset ?? 0, journaled ?? 0);
        let next = Math.max(mark, start);
        const since = this.#now() - window;
        while (next < end) {
          const records = await log.read(topic, partition, next, { maxRecords: RECOVERY_READ });
          if (records.length === 0) break;
          const batches = new Map<string, string[]>();
          this.#index?.rotate();
          for (const record of records) {
            const id = record.headers[HEADER_EVENT_ID];
            if (window > 0 && record.timestamp >= since && id !== undefined) {
              if (dedupeIdOf(record.headers) !== undefined) {
                this.#remember(stream, id, record.timestamp);
                recovered++;
              }
              const raw = record.headers[HEADER_IDEMPOTENCY_KEY];
              if (raw !== undefined) {
                const key = scopedIdempotencyKey(raw, record.headers[HEADER_IDEMPOTENCY_SCOPE]);
                batches.set(key, [...(batches.get(key) ?? []), id]);
              }
            }
          }
          for (const [key, ids] of batches) {
            // Only when the request was not recorded whole: its own record is the better answer.
            if (this.#lookupBatch.get(stream, key)) continue;
            const response = JSON.stringify({ accepted: ids.length, ids, recovered: true });
            this.#batches.push({ batch: { stream, key, bodyHash: null, response }, at: this.#now() });
          }
          next = records[records.length - 1]!.offset + 1;
          this.#pendingMarks.set(`${topic}\0${partition}`, next);
          const error = this.flush();
          if (error) throw error;
        }
      }
    }
    const error = this.flush(true);
    if (error) throw error;
    // The log worker's store writes from now on (or this one, reopening it): the file is closed, synced.
    this.#journal.close();
    return recovered;
  }

  /**
   * Forgets Idempotency-Keys older than their stream's window, and those of streams no longer configured;
   * deletes the journal files past every window.
   */
  purge(): void {
    if (this.#closed) return;
    const now = this.#now();
    const streams = [...this.#windows.keys()];
    try {
      this.#journal.deleteBefore(now - Math.max(0, ...this.#windows.values()));
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
    this.flush(true);
    this.#closed = true;
    if (this.#purgeTimer) clearInterval(this.#purgeTimer);
    this.#journal.close();
    this.#db.close();
  }
}
