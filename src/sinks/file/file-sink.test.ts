import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { createResources } from '../../core/pipeline/components.ts';
import type { PipelineRecord, SinkBatch } from '../../core/pipeline/model.ts';
import { isTributaryError } from '../../errors.ts';
import type { Log } from '../../log/log.ts';
import { FileSink, fileSinkDefinition, fileSinkSchema, type FileSinkOptions } from './index.ts';

const logger = pino({ level: 'silent' });

function record(partition: number, offset: number): PipelineRecord {
  return { value: { p: partition, o: offset }, key: null, partition, offset, timestamp: 5, headers: {} };
}

/** Records `from`..`to - 1` of a partition, and the batch whose positions end there. */
function batch(ranges: Array<[partition: number, from: number, to: number]>): SinkBatch {
  const records = ranges.flatMap(([p, from, to]) =>
    Array.from({ length: to - from }, (_, i) => record(p, from + i)),
  );
  return { records, positions: new Map(ranges.map(([p, , to]) => [p, to])) };
}

const lines = (file: string) =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { p: number; o: number })
    : [];

describe('file sink', () => {
  let root: string;
  const open: FileSink[] = [];

  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'tributary-file-sink-'));
  });

  afterEach(async () => {
    for (const sink of open.splice(0)) await sink.close();
    rmSync(root, { recursive: true, force: true });
  });

  function sink(config: Record<string, unknown> = {}, options: Partial<FileSinkOptions> = {}): FileSink {
    const created = new FileSink({
      config: fileSinkSchema.parse({ type: 'file', path: 'out/events.ndjson', ...config }),
      pipeline: 'orders',
      projectRoot: root,
      logger,
      ...options,
    });
    open.push(created);
    return created;
  }

  it('appends JSON lines under the project and commits positions with the length they cover', async () => {
    const s = sink();
    assert.equal(s.path, path.join(root, 'out/events.ndjson'));
    assert.deepEqual(await s.open(), new Map());
    await s.write(
      batch([
        [0, 0, 3],
        [1, 0, 2],
      ]),
    );
    await s.write(batch([[0, 3, 4]]));
    assert.deepEqual(lines(s.path), [
      { p: 0, o: 0 },
      { p: 0, o: 1 },
      { p: 0, o: 2 },
      { p: 1, o: 0 },
      { p: 1, o: 1 },
      { p: 0, o: 3 },
    ]);
    const committed = JSON.parse(readFileSync(s.positionsPath, 'utf8')) as Record<string, unknown>;
    assert.deepEqual(committed, {
      version: 1,
      pipeline: 'orders',
      sink: 'file:out/events.ndjson',
      length: readFileSync(s.path).length,
      positions: { 0: 4, 1: 2 },
    });
    await s.close();
    assert.equal(existsSync(s.lockPath), false);
    const again = sink();
    assert.deepEqual(
      await again.open(),
      new Map([
        [0, 4],
        [1, 2],
      ]),
    );
  });

  it('does not duplicate a batch offered again, nor the committed part of an overlapping one', async () => {
    const s = sink();
    await s.open();
    await s.write(batch([[0, 0, 5]]));
    await s.write(batch([[0, 0, 5]]));
    await s.write(batch([[0, 3, 8]]));
    assert.deepEqual(
      lines(s.path).map((l) => l.o),
      [0, 1, 2, 3, 4, 5, 6, 7],
    );
  });

  it('cuts off the lines of a batch whose commit a crash prevented, on the next open', async () => {
    let crash = false;
    const s = sink(
      {},
      { afterDataSync: async () => void (crash && assert.fail('crash between data and positions')) },
    );
    await s.open();
    await s.write(batch([[0, 0, 3]]));
    crash = true;
    await assert.rejects(s.write(batch([[0, 3, 6]])), /crash between data and positions/);
    assert.equal(lines(s.path).length, 6, 'the lines are on disk, but not committed');
    await s.close(); // the process is gone: nothing is repaired on the way out

    const restarted = sink();
    assert.deepEqual(await restarted.open(), new Map([[0, 3]]));
    assert.deepEqual(
      lines(s.path).map((l) => l.o),
      [0, 1, 2],
    );
    await restarted.write(batch([[0, 3, 6]]));
    assert.deepEqual(
      lines(s.path).map((l) => l.o),
      [0, 1, 2, 3, 4, 5],
    );
  });

  it('cuts off the lines of a failed write before the runtime retries it in the same process', async () => {
    let failures = 1;
    const s = sink(
      {},
      {
        afterDataSync: async () => {
          if (failures-- > 0) throw new Error('disk hiccup');
        },
      },
    );
    await s.open();
    await assert.rejects(s.write(batch([[0, 0, 4]])), /disk hiccup/);
    await s.write(batch([[0, 0, 4]]));
    assert.deepEqual(
      lines(s.path).map((l) => l.o),
      [0, 1, 2, 3],
    );
  });

  it('keeps what a file held before its first open, even when the first batch is cut off', async () => {
    const file = path.join(root, 'out/events.ndjson');
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, '{"p":9,"o":9}\n');
    const s = sink({}, { afterDataSync: async () => assert.fail('crash') });
    await s.open();
    await assert.rejects(s.write(batch([[0, 0, 2]])));
    await s.close();
    await sink().open();
    assert.deepEqual(lines(file), [{ p: 9, o: 9 }]);
  });

  it('starts a file emptied, rotated or removed from outside again, keeping its positions', async () => {
    const s = sink();
    await s.open();
    await s.write(batch([[0, 0, 2]]));
    truncateSync(s.path, 0); // logrotate copytruncate
    await s.write(batch([[0, 2, 3]]));
    assert.deepEqual(lines(s.path), [{ p: 0, o: 2 }]);
    renameSync(s.path, `${s.path}.1`); // logrotate create
    await s.write(batch([[0, 3, 4]]));
    assert.deepEqual(lines(s.path), [{ p: 0, o: 3 }]);
    assert.deepEqual(lines(`${s.path}.1`), [{ p: 0, o: 2 }]);
    rmSync(s.path);
    await s.close();
    const again = sink();
    assert.deepEqual(await again.open(), new Map([[0, 4]]));
    await again.write(batch([[0, 4, 5]]));
    assert.deepEqual(lines(s.path), [{ p: 0, o: 4 }]);
  });

  it('refuses a file that lost committed lines', async () => {
    const s = sink();
    await s.open();
    await s.write(batch([[0, 0, 3]]));
    await s.close();
    truncateSync(s.path, 5);
    await assert.rejects(sink().open(), (error: unknown) => {
      assert.ok(isTributaryError(error, 'STORAGE_IO') && !error.retryable, String(error));
      assert.match(error.message, /5 bytes but \d+ were committed/);
      return true;
    });
  });

  it('keeps a second writer out, and takes over the lock of a process that is gone', async () => {
    const first = sink();
    await first.open();
    await assert.rejects(sink().open(), (error: unknown) => {
      assert.ok(isTributaryError(error, 'STORAGE_IO'), String(error));
      assert.match(error.message, new RegExp(`being written by process ${process.pid}`));
      return true;
    });
    await first.close();
    const gone = spawnSync(process.execPath, [
      '-e',
      'process.stdout.write(String(process.pid))',
    ]).stdout.toString();
    writeFileSync(first.lockPath, gone);
    const second = sink();
    await second.open();
    assert.equal(readFileSync(second.lockPath, 'utf8'), String(process.pid));
  });

  it("refuses a file another pipeline's sink writes", async () => {
    const s = sink();
    await s.open();
    await s.close();
    const other = new FileSink({
      config: fileSinkSchema.parse({ type: 'file', path: 'out/events.ndjson' }),
      pipeline: 'payments',
      projectRoot: root,
      logger,
    });
    open.push(other);
    await assert.rejects(other.open(), (error: unknown) => isTributaryError(error, 'CONFIG_INVALID'));
  });

  it('commits positions of a batch without records, and writes metadata lines when asked', async () => {
    const s = sink({ metadata: true, name: 'audit' });
    await s.open();
    await s.write({ records: [], positions: new Map([[0, 10]]) });
    assert.equal(readFileSync(s.path, 'utf8'), '');
    await s.write(batch([[0, 10, 11]]));
    assert.deepEqual(JSON.parse(readFileSync(s.path, 'utf8')), {
      partition: 0,
      offset: 10,
      key: null,
      timestamp: 5,
      headers: {},
      value: { p: 0, o: 10 },
    });
    const committed = JSON.parse(readFileSync(s.positionsPath, 'utf8')) as { positions: unknown };
    assert.deepEqual(committed.positions, { 0: 11 });
  });

  it('checks for doctor without changing anything', async () => {
    const check = () =>
      fileSinkDefinition.check!(fileSinkSchema.parse({ type: 'file', path: 'out/events.ndjson' }), {
        pipeline: 'orders',
        sourceTopic: 'events',
        projectRoot: root,
        log: undefined as unknown as Log,
        logger,
        resources: createResources(),
      });
    assert.deepEqual(
      (await check()).map((r) => r.status),
      ['pass'],
    );
    assert.equal(existsSync(path.join(root, 'out')), false, 'nothing was created');
    const s = sink({}, { afterDataSync: async () => assert.fail('crash') });
    await s.open();
    assert.match((await check())[0]?.detail ?? '', new RegExp(`being written by process ${process.pid}`));
    await assert.rejects(s.write(batch([[0, 0, 2]])));
    await s.close();
    assert.equal((await check())[0]?.status, 'warn');
    const again = sink();
    await again.open();
    await again.write(batch([[0, 0, 2]]));
    await again.close();
    truncateSync(s.path, 3);
    assert.equal((await check())[0]?.status, 'fail');
  });

  it('is created by its definition', async () => {
    const created = await fileSinkDefinition.create(
      fileSinkSchema.parse({ type: 'file', path: 'a.ndjson' }),
      {
        pipeline: 'orders',
        sourceTopic: 'events',
        projectRoot: root,
        log: {} as Log,
        logger,
        resources: createResources(),
      },
    );
    assert.equal(created.name, 'file:a.ndjson');
    await created.open();
    await created.close();
  });
});
