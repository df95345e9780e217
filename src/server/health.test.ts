import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
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
});
