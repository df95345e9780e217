import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DatabaseSync } from 'node:sqlite';
import { backlog, pipelineGroup } from '../core/pipeline/runner.ts';
import { EmbeddedLog } from '../log/embedded-log.ts';
import { readiness, type SourceHandleForHealth } from './health.ts';

describe('/readyz', () => {
  let directory: string;
  let log: EmbeddedLog;
  before(async () => {
    directory = mkdtempSync(path.join(tmpdir(), 'tributary-health-'));
    log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
  });
  after(async () => {
    await log.close();
    rmSync(directory, { recursive: true, force: true });
  });

  const source = (name: string, healthy: boolean, detail: string): SourceHandleForHealth => ({
    name,
    status: () => ({ healthy, detail }),
  });

  it('is not ready while a source in the process is stalled or failed, and names it', async () => {
    const sources = [
      source('shop', true, 'streaming'),
      source('billing', false, 'stalled: nothing confirmed for 300 s'),
    ];
    const result = await readiness({ log, sources: () => sources, stallAfterMs: 60_000, startedAt: 0 });
    assert.equal(result.ready, false);
    assert.deepEqual(result.unhealthy, ['source billing']);
    assert.deepEqual(result.components['source shop'], { status: 'ok', detail: 'streaming' });
    assert.match(result.components['source billing']?.detail ?? '', /stalled/);
  });

  it('is ready when every source is healthy, and a source whose status throws is failed', async () => {
    const healthy = await readiness({
      log,
      sources: () => [source('shop', true, 'streaming')],
      stallAfterMs: 60_000,
      startedAt: 0,
    });
    assert.equal(healthy.ready, true);
    const broken: SourceHandleForHealth = {
      name: 'shop',
      status: () => {
        throw new Error('connection lost');
      },
    };
    const result = await readiness({ log, sources: () => [broken], stallAfterMs: 60_000, startedAt: 0 });
    assert.deepEqual(result.components['source shop'], { status: 'failed', detail: 'connection lost' });
  });

  it('is not ready while the dedupe store cannot be written, and says why', async () => {
    let failure: string | undefined = 'database or disk is full';
    const options = { log, dedupeFailure: () => failure, stallAfterMs: 60_000, startedAt: 0 };
    const failing = await readiness(options);
    assert.equal(failing.ready, false);
    assert.deepEqual(failing.unhealthy, ['dedupe store']);
    assert.match(failing.components['dedupe store']?.detail ?? '', /disk is full/);
    failure = undefined;
    assert.equal((await readiness(options)).ready, true);
  });

  it('does not call a pipeline stalled over offsets the log left without records', async () => {
    // With durability 'os', a batch the disk never got is dropped on open and its offsets stay unused:
    // a pipeline that read everything there is has nothing waiting, though the partition's end is past it.
    const dir = mkdtempSync(path.join(tmpdir(), 'tributary-health-gap-'));
    const open = () => EmbeddedLog.open({ directory: dir, retentionIntervalMs: 0, durability: 'os' });
    const first = await open();
    await first.ensureTopic('events.s', { partitions: 1 });
    await first.append('events.s', [{ value: Buffer.from('{"n":1}') }]);
    await first.close();
    const second = await open();
    await second.append('events.s', [{ value: Buffer.from('{"n":2}') }]);
    await second.commitOffsets(pipelineGroup('orders'), 'events.s', new Map([[0, 1]]));
    const db = new DatabaseSync(path.join(dir, 'log.db'));
    const lost = db.prepare('select position, length from batches where base_offset = 1').get() as {
      position: number;
      length: number;
    };
    db.close();
    const file = path.join(dir, 'segments', '1', '000000000001.batches');
    const bytes = readFileSync(file);
    writeFileSync(file, bytes.subarray(0, lost.position)); // the machine stopped before it was written
    const third = await open();
    const runner = { name: 'orders', status: 'running', lastCommitAt: 0 };
    const options = {
      log: third,
      pipelines: () => [{ runner: runner as never, topic: 'events.s' }],
      stallAfterMs: 1000,
      startedAt: 0,
    };
    try {
      assert.deepEqual(await third.offsets('events.s'), [{ partition: 0, start: 0, end: 2 }]);
      assert.deepEqual(await backlog(third, 'events.s', () => 1), { records: 0, oldest: undefined });
      const ready = await readiness(options);
      assert.equal(ready.ready, true, JSON.stringify(ready.components));
      assert.equal(ready.components['pipeline orders']?.detail, 'running, 0 record(s) behind');
      // A record that arrives after the gap waits, and counts from where the pipeline stands.
      await third.append('events.s', [{ value: Buffer.from('{"n":3}') }]);
      assert.equal((await backlog(third, 'events.s', () => 1)).records, 2);
      const stalled = await readiness(options);
      assert.match(stalled.components['pipeline orders']?.detail ?? '', /stalled: 2 record\(s\) waiting/);
    } finally {
      await third.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
