/**
 * The file sink: records appended to one file as JSON lines, exactly once.
 *
 * Beside the data file `<path>` lives `<path>.positions.json`: the sink's positions and the length of the
 * data file they cover. A write
 *   1. cuts the data file back to the committed length if a failed write left bytes past it,
 *   2. appends the batch's lines and fsyncs the data file,
 *   3. writes the new positions and length to `<path>.positions.json.tmp`, fsyncs it, renames it over the
 *      positions file and fsyncs the directory — the commit point.
 * `open()` reads the positions file and cuts the data file to the length it names, so the lines of a batch
 * whose commit did not happen (a crash between 2 and 3) are gone before the runtime offers that batch again.
 * A file that exists before the sink first opens it is kept: its length is committed at once as the start.
 *
 * A `<path>.lock` file holding the writer's process id keeps a second writer out; a lock whose process is
 * gone is taken over. A data file emptied from outside (logrotate's copytruncate, or deleted) is started
 * again from empty, keeping the positions; one cut to any other length is an error, since committed lines
 * would be lost.
 */
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { CheckResult } from '../../core/doctor.ts';
import type { Logger } from '../../core/logger.ts';
import { lockHolder, takePidLock, type PidLock } from '../../core/pid-lock.ts';
import {
  furthest,
  recordsPast,
  type PipelineRecord,
  type Positions,
  type Sink,
  type SinkBatch,
  type SinkResult,
} from '../../core/pipeline/model.ts';
import { TributaryError } from '../../errors.ts';
import type { FileSinkConfig } from './config.ts';

export interface FileSinkOptions {
  readonly config: FileSinkConfig;
  readonly pipeline: string;
  /** Relative paths are relative to it. */
  readonly projectRoot: string;
  readonly logger: Logger;
  /** For tests: runs after the data is fsynced, before the positions file is replaced. */
  readonly afterDataSync?: () => Promise<void>;
}

/** The positions file. */
interface Committed {
  readonly version: 1;
  readonly pipeline: string;
  readonly sink: string;
  /** Bytes of the data file these positions cover. */
  readonly length: number;
  readonly positions: Record<string, number>;
}

const RETRYABLE_ERRNOS = new Set(['ENOSPC', 'EMFILE', 'ENFILE', 'EAGAIN', 'EBUSY', 'EINTR', 'EDQUOT']);

export class FileSink implements Sink {
  readonly name: string;
  /** Absolute paths of the data file, its positions file and its lock. */
  readonly path: string;
  readonly positionsPath: string;
  readonly lockPath: string;
  readonly #config: FileSinkConfig;
  readonly #pipeline: string;
  readonly #logger: Logger;
  readonly #afterDataSync: FileSinkOptions['afterDataSync'];
  #file: FileHandle | undefined;
  #locked: PidLock | undefined;
  /** What the positions file says. */
  #length = 0;
  readonly #positions = new Map<number, number>();

  constructor(options: FileSinkOptions) {
    this.#config = options.config;
    this.#pipeline = options.pipeline;
    this.path = path.resolve(options.projectRoot, options.config.path);
    this.positionsPath = `${this.path}.positions.json`;
    this.lockPath = `${this.path}.lock`;
    this.name = options.config.name ?? `file:${options.config.path}`;
    this.#logger = options.logger.child({ sink: this.name });
    this.#afterDataSync = options.afterDataSync;
  }

  async open(): Promise<Positions> {
    if (this.#file) return new Map(this.#positions);
    await this.#io('create the directory of', () => mkdir(path.dirname(this.path), { recursive: true }));
    this.#lock();
    try {
      await rm(`${this.positionsPath}.tmp`, { force: true });
      const committed = await this.#readCommitted();
      this.#file = await this.#io('open', () => open(this.path, 'a'));
      const size = (await this.#io('stat', () => this.#file!.stat())).size;
      if (committed === undefined) {
        // First open: whatever the file holds already is kept, and committed as the start.
        this.#length = size;
        this.#positions.clear();
        await this.#commit();
        if (size > 0) this.#logger.info({ path: this.path, bytes: size }, 'appending to an existing file');
      } else {
        this.#length = committed.length;
        this.#positions.clear();
        for (const [partition, offset] of Object.entries(committed.positions)) {
          this.#positions.set(Number(partition), offset);
        }
        await this.#reconcile(size);
      }
    } catch (error) {
      await this.close();
      throw error;
    }
    return new Map(this.#positions);
  }

  async write(batch: SinkBatch): Promise<SinkResult> {
    if (!this.#file) {
      throw new TributaryError(
        'INTERNAL',
        `File sink ${this.name} was written before open() or after close()`,
        {
          context: { sink: this.name },
        },
      );
    }
    const records = recordsPast(batch.records, this.#positions);
    const positions = furthest(this.#positions, batch.positions);
    const advances = [...positions].some(([p, o]) => this.#positions.get(p) !== o);
    if (records.length === 0 && !advances) return {};

    const file = await this.#current();
    await this.#reconcile((await this.#io('stat', () => file.stat())).size);
    let length = this.#length;
    if (records.length > 0) {
      const bytes = Buffer.from(records.map((r) => this.#line(r)).join(''));
      await this.#io('append to', async () => {
        for (let written = 0; written < bytes.length;) {
          written += (await file.write(bytes, written, bytes.length - written)).bytesWritten;
        }
        await file.sync();
      });
      length += bytes.length;
    }
    await this.#afterDataSync?.();
    await this.#commit(length, positions);
    return {};
  }

  /** For `tributary doctor`, changing nothing: the file can be written, and agrees with its positions. */
  async check(): Promise<CheckResult[]> {
    let directory = path.dirname(this.path);
    while (!existsSync(directory) && path.dirname(directory) !== directory)
      directory = path.dirname(directory);
    try {
      accessSync(directory, constants.W_OK);
      if (existsSync(this.path)) accessSync(this.path, constants.W_OK);
    } catch (error) {
      return [
        {
          status: 'fail',
          detail: `${this.path} cannot be written: ${(error as Error).message}`,
          fix: 'make the directory writable by Tributary, or choose another path',
        },
      ];
    }
    const writer = lockHolder(this.lockPath);
    let committed: Committed | undefined;
    try {
      committed = await this.#readCommitted();
    } catch (error) {
      const failure = error instanceof TributaryError ? error : this.#ioError('read', error);
      return [{ status: 'fail', detail: failure.message, fix: failure.hint ?? 'see the message' }];
    }
    const running = writer === undefined ? '' : ` (being written by process ${writer})`;
    if (!committed) return [{ status: 'pass', detail: `${this.path}: nothing committed yet${running}` }];
    const size = existsSync(this.path) ? statSync(this.path).size : 0;
    if (size < committed.length && size > 0) {
      return [
        {
          status: 'fail',
          detail: `${this.path} has ${size} bytes but ${committed.length} were committed; lines were lost`,
          fix: `restore the file, or remove it and ${path.basename(this.positionsPath)} to write everything again`,
        },
      ];
    }
    if (size > committed.length && writer === undefined) {
      return [
        {
          status: 'warn',
          detail: `${this.path}: ${size - committed.length} bytes past the last commit (a crash mid-batch)`,
          fix: 'nothing to do: the sink cuts them off when it starts, and writes that batch again',
        },
      ];
    }
    return [
      {
        status: 'pass',
        detail: `${this.path}: ${committed.length} bytes committed, positions ${JSON.stringify(committed.positions)}${running}`,
      },
    ];
  }

  async close(): Promise<void> {
    const file = this.#file;
    this.#file = undefined;
    await file?.close().catch(() => undefined);
    this.#locked?.release();
    this.#locked = undefined;
  }

  /** The open data file; reopened when the path no longer leads to it (renamed or removed from outside). */
  async #current(): Promise<FileHandle> {
    const file = this.#file!;
    const [opened, named] = await Promise.all([
      this.#io('stat', () => file.stat()),
      stat(this.path).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return undefined;
        throw this.#ioError('stat', error);
      }),
    ]);
    if (named && named.ino === opened.ino && named.dev === opened.dev) return file;
    this.#logger.info({ path: this.path }, 'the file was renamed or removed from outside: opening it again');
    this.#file = await this.#io('open', () => open(this.path, 'a'));
    await file.close().catch(() => undefined);
    return this.#file;
  }

  #line(record: PipelineRecord): string {
    if (!this.#config.metadata) return `${JSON.stringify(record.value)}\n`;
    const { partition, offset, key, timestamp, headers, value } = record;
    return `${JSON.stringify({ partition, offset, key, timestamp, headers, value })}\n`;
  }

  /** Brings the data file to the committed length: cuts off uncommitted bytes, accepts a file emptied from outside. */
  async #reconcile(size: number): Promise<void> {
    if (size === this.#length) return;
    if (size > this.#length) {
      await this.#io('truncate', async () => {
        await this.#file!.truncate(this.#length);
        await this.#file!.sync();
      });
      this.#logger.warn(
        { path: this.path, bytes: size - this.#length },
        'cut off lines of a batch that was not committed (after a crash or a failed write)',
      );
      return;
    }
    if (size === 0) {
      this.#logger.warn(
        { path: this.path, committedBytes: this.#length },
        'the file was emptied or removed from outside: starting it again, positions kept',
      );
      await this.#commit(0, this.#positions);
      return;
    }
    throw new TributaryError(
      'STORAGE_IO',
      `File sink ${this.name}: ${this.path} has ${size} bytes but ${this.#length} were committed; lines were lost`,
      {
        context: { sink: this.name, path: this.path, size, committed: this.#length },
        hint: `Restore the file, or remove it and ${path.basename(this.positionsPath)} to write everything again.`,
      },
    );
  }

  /** Replaces the positions file atomically (the commit point), then updates what the sink knows. */
  async #commit(
    length = this.#length,
    positions: ReadonlyMap<number, number> = this.#positions,
  ): Promise<void> {
    const committed: Committed = {
      version: 1,
      pipeline: this.#pipeline,
      sink: this.name,
      length,
      positions: Object.fromEntries([...positions].sort(([a], [b]) => a - b)),
    };
    const temporary = `${this.positionsPath}.tmp`;
    await this.#io('write the positions of', async () => {
      const handle = await open(temporary, 'w');
      try {
        await handle.writeFile(`${JSON.stringify(committed, null, 2)}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, this.positionsPath);
    });
    // Committed as far as this process can tell: the sink must know it even if the directory sync fails
    // (or it would cut off the lines it just committed).
    this.#length = length;
    if (positions !== this.#positions) {
      this.#positions.clear();
      for (const [partition, offset] of positions) this.#positions.set(partition, offset);
    }
    await this.#io('sync the directory of', () => syncDirectory(path.dirname(this.positionsPath)));
  }

  async #readCommitted(): Promise<Committed | undefined> {
    let text: string;
    try {
      text = await readFile(this.positionsPath, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw this.#ioError('read the positions of', error);
    }
    let committed: Committed;
    try {
      committed = JSON.parse(text) as Committed;
      if (
        committed.version !== 1 ||
        !Number.isSafeInteger(committed.length) ||
        typeof committed.positions !== 'object' ||
        !Object.values(committed.positions).every(Number.isSafeInteger)
      ) {
        throw new Error('unexpected content');
      }
    } catch (error) {
      throw new TributaryError(
        'STORAGE_IO',
        `File sink ${this.name}: ${this.positionsPath} is not a positions file`,
        {
          context: { sink: this.name, path: this.positionsPath },
          cause: error,
          hint: 'Restore it, or remove the data file and it to write everything again.',
        },
      );
    }
    if (committed.pipeline !== this.#pipeline || committed.sink !== this.name) {
      throw new TributaryError(
        'CONFIG_INVALID',
        `File sink ${this.name}: ${this.path} is written by pipeline ${committed.pipeline}, sink ${committed.sink}`,
        {
          context: {
            sink: this.name,
            path: this.path,
            owner: { pipeline: committed.pipeline, sink: committed.sink },
          },
          hint: 'Give each file sink a file of its own.',
        },
      );
    }
    return committed;
  }

  /** Takes `<path>.lock`, or fails naming the process that holds it. */
  #lock(): void {
    try {
      this.#locked = takePidLock(
        this.lockPath,
        (owner) =>
          new TributaryError(
            'STORAGE_IO',
            `File sink ${this.name}: ${this.path} is being written by process ${owner ?? '(unknown)'}`,
            {
              context: { sink: this.name, path: this.path, lock: this.lockPath, pid: owner },
              hint: `Stop the other writer; if there is none, remove ${this.lockPath}.`,
            },
          ),
        (pid) =>
          this.#logger.warn({ lock: this.lockPath, pid }, 'taking over the lock of a process that is gone'),
      );
    } catch (error) {
      throw this.#ioError('lock', error);
    }
  }

  async #io<T>(action: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw this.#ioError(action, error);
    }
  }

  #ioError(action: string, error: unknown): TributaryError {
    if (error instanceof TributaryError) return error;
    const code = (error as NodeJS.ErrnoException).code ?? '';
    const retryable = RETRYABLE_ERRNOS.has(code);
    return new TributaryError(
      'STORAGE_IO',
      `File sink ${this.name}: cannot ${action} ${this.path}: ${(error as Error).message}`,
      {
        context: { sink: this.name, path: this.path, errno: code || undefined },
        cause: error,
        retryable,
        hint: retryable
          ? 'The write is retried (a full disk, too many open files); free the resource if this goes on.'
          : 'Check that the directory exists and is writable by Tributary.',
      },
    );
  }
}

/** fsync of a directory, so that a rename in it survives a power loss (not possible on every platform). */
async function syncDirectory(directory: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(directory, 'r');
    await handle.sync();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EBADF') throw error;
  } finally {
    await handle?.close();
  }
}
