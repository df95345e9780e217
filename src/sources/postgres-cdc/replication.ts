/**
 * The streaming-replication side of a PostgreSQL connection, on top of `pg`: `pg` opens the connection
 * (`replication: 'database'`: authentication, TLS), and `START_REPLICATION` runs as a `Submittable`, pg's
 * public extension point for custom queries — the same one pg-copy-streams uses — which receives the
 * CopyBoth stream's CopyData messages. This module frames them: XLogData ('w') and primary keepalives
 * ('k') in, standby status updates ('r') out (https://www.postgresql.org/docs/current/protocol-replication.html).
 */
import type pg from 'pg';
import type { Lsn } from './lsn.ts';
import { msToPgTimestamp } from './pgoutput.ts';

/** The parts of pg's connection object a Submittable uses (pg/lib/connection.js). */
interface PgConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  readonly stream: NodeJS.ReadableStream & { pause(): void; resume(): void };
}

export interface ReplicationHandlers {
  /** An XLogData message: `walStart` is the LSN of the data, `data` the plugin's message. */
  onData(walStart: Lsn, walEnd: Lsn, data: Buffer): void;
  /** A keepalive: `walEnd` is the server's position; answer at once when `replyRequested`. */
  onKeepalive(walEnd: Lsn, replyRequested: boolean): void;
}

/**
 * `START_REPLICATION … LOGICAL …` as a pg Submittable: resolves `done` when the server ends the stream
 * normally, rejects it on an error (the server's, or the connection's).
 */
export class ReplicationStream {
  readonly #sql: string;
  readonly #handlers: ReplicationHandlers;
  #connection: PgConnection | undefined;
  #resolve!: () => void;
  #reject!: (error: unknown) => void;
  #started = false;
  readonly done: Promise<void>;

  constructor(sql: string, handlers: ReplicationHandlers) {
    this.#sql = sql;
    this.#handlers = handlers;
    this.done = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // The source awaits `done`; an unhandled rejection before that must not crash the process.
    this.done.catch(() => undefined);
  }

  /** Whether the server has started the stream (the slot is ours). */
  get started(): boolean {
    return this.#started;
  }

  /** The server answered START_REPLICATION with CopyBothResponse. */
  markStarted(): void {
    this.#started = true;
  }

  // --- pg's Submittable protocol ---
  submit(connection: PgConnection): void {
    this.#connection = connection;
    connection.query(this.#sql);
  }

  handleCopyData(message: { chunk: Buffer }): void {
    const chunk = message.chunk;
    this.#started = true;
    const kind = chunk[0];
    if (kind === 0x77) {
      // XLogData: Byte1('w') Int64 dataStart Int64 walEnd Int64 sendTime, then the data.
      // A copy: pg's parser reuses its buffer for the next bytes from the socket.
      this.#handlers.onData(
        chunk.readBigUInt64BE(1),
        chunk.readBigUInt64BE(9),
        Buffer.from(chunk.subarray(25)),
      );
    } else if (kind === 0x6b) {
      // Primary keepalive: Byte1('k') Int64 walEnd Int64 sendTime Byte1 replyRequested.
      this.#handlers.onKeepalive(chunk.readBigUInt64BE(1), chunk[17] === 1);
    }
  }

  handleError(error: unknown): void {
    this.#reject(error);
  }

  handleReadyForQuery(): void {
    this.#resolve();
  }

  handleCommandComplete(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}

  // --- the client's side of the stream ---

  /**
   * Standby status update: `received` is how far data arrived, `flushed` what the server may treat as
   * done (the slot's confirmed_flush_lsn moves there).
   */
  sendStatus(received: Lsn, flushed: Lsn, replyRequested = false): void {
    if (!this.#connection) return;
    const message = Buffer.alloc(34);
    message[0] = 0x72; // 'r'
    message.writeBigUInt64BE(received, 1);
    message.writeBigUInt64BE(flushed, 9);
    message.writeBigUInt64BE(flushed, 17);
    message.writeBigInt64BE(msToPgTimestamp(Date.now()), 25);
    message[33] = replyRequested ? 1 : 0;
    this.#connection.sendCopyFromChunk(message);
  }

  /** Stops reading from the socket (backpressure); the server's send buffer fills and it waits. */
  pause(): void {
    this.#connection?.stream.pause();
  }

  resume(): void {
    this.#connection?.stream.resume();
  }
}

/** Runs START_REPLICATION on a connected replication client; returns the stream. */
export function startReplication(
  client: pg.Client,
  slot: string,
  startLsn: string,
  options: Readonly<Record<string, string>>,
  handlers: ReplicationHandlers,
): ReplicationStream {
  const quotedOptions = Object.entries(options)
    .map(([k, v]) => `"${k}" '${v.replace(/'/g, "''")}'`)
    .join(', ');
  const sql = `START_REPLICATION SLOT "${slot.replace(/"/g, '""')}" LOGICAL ${startLsn} (${quotedOptions})`;
  const stream = new ReplicationStream(sql, handlers);
  // pg emits CopyBothResponse as 'replicationStart' on the connection, without passing it to the query.
  const connection = (client as unknown as { connection: NodeJS.EventEmitter }).connection;
  connection.once('replicationStart', () => stream.markStarted());
  client.query(stream as unknown as pg.Submittable);
  return stream;
}
