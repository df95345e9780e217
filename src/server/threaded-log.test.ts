import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { Registry } from 'prom-client';
import { createLogger } from '../core/logger.ts';
import { loadProject } from '../core/project.ts';
import { logCases } from '../log/log.case.ts';
import { scanEvents } from './body.ts';
import { DedupeStore, HEADER_DEDUPE, HEADER_EVENT_ID } from './dedupe.ts';
import { Ingestor } from './ingest.ts';
import { createServerMetrics } from './metrics.ts';
import { resolveStreams } from './streams.ts';
import { ThreadedLog } from './threaded-log.ts';

// The log on a worker thread keeps every promise of the Log contract.
logCases('embedded on a worker thread', (directory) =>
  ThreadedLog.open({ directory, retentionIntervalMs: 0 }),
);

it('records dedupe ids in the worker after the commit, and says when they are written', async () => {
  const directory = mkdtempSync(path.join(tmpdir(), 'threaded-log-'));
  const log = await ThreadedLog.open({ directory, retentionIntervalMs: 0 }, { dedupeDirectory: directory });
  const store = DedupeStore.open(directory, new Map([['s', 60_000]]));
  try {
    await log.ensureTopic('events.s', { partitions: 2 });
    const value = new TextEncoder().encode('{}');
    const marked = (id: string) => ({ value, headers: { [HEADER_EVENT_ID]: id, [HEADER_DEDUPE]: '1' } });
    let written!: () => void;
    const recorded = new Promise<void>((resolve) => (written = resolve));
    const positions = await log.appendRecording(
      'events.s',
      [marked('a'), marked('b'), { value, headers: { [HEADER_EVENT_ID]: 'generated' } }],
      { stream: 's', batch: { key: 'k1', bodyHash: null, response: '{"accepted":3}' } },
      true,
      written,
    );
    assert.equal(positions.length, 3);
    await recorded;
    let dWritten!: () => void;
    const dRecorded = new Promise<void>((resolve) => (dWritten = resolve));
    assert.deepEqual(
      await log.appendRecording('events.s', [marked('d')], { stream: 's' }, false, dWritten),
      [],
      'no positions asked for',
    );
    await dRecorded;
    let failed = false;
    await assert.rejects(
      log.appendRecording('missing-topic', [marked('e')], { stream: 's' }, true, () => (failed = true)),
    );
    assert.ok(failed, 'a failed append says so too (nothing to wait for)');
    store.expect([
      { stream: 's', id: 'a' },
      { stream: 's', id: 'b' },
      { stream: 's', id: 'd' },
      { stream: 's', id: 'generated' },
    ]);
    assert.deepEqual([...store.seen('s', ['a', 'b', 'c', 'd', 'generated'])].sort(), ['a', 'b', 'd']);
    assert.equal(store.batch('s', 'k1')?.response, '{"accepted":3}');
    await assert.rejects(log.append('missing-topic', [{ value }]), /does not exist/);
  } finally {
    store.close();
    await log.close();
  }
  await assert.rejects(log.append('events.s', [{ value: new Uint8Array(1) }]), /closed/);
});

it('deduplicates a retry sent as soon as the first request is answered, or at the same time', async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'threaded-ingest-'));
  writeFileSync(path.join(root, 'tributary.yaml'), 'project: t\nstreams:\n  s: {}\n');
  const project = loadProject(root);
  const logger = createLogger({ level: 'silent' });
  const directory = path.join(root, 'log');
  const log = await ThreadedLog.open({ directory, retentionIntervalMs: 0 }, { dedupeDirectory: directory });
  const streams = resolveStreams(project, logger);
  const stream = streams.get('s')!;
  await log.ensureTopic(stream.topic, { partitions: 1 });
  await log.ensureTopic(stream.dlqTopic, { partitions: 1 });
  const dedupe = DedupeStore.open(directory, new Map([['s', stream.config.dedupe_window]]));
  const ingestor = new Ingestor({
    log,
    dedupe,
    metrics: createServerMetrics(new Registry()),
    logger,
    limits: { maxPendingAppends: 1000, maxPendingBytes: 1e9, maxDepth: 10 },
  });
  const send = (ids: string[], idempotencyKey?: string) =>
    ingestor.ingest({
      stream,
      items: scanEvents(Buffer.from(JSON.stringify(ids.map((id) => ({ id, n: 1 })))), 100, 10, 'id')!,
      idField: 'id',
      client: { ip: '127.0.0.1', userAgent: undefined, receivedAt: Date.now() },
      ...(idempotencyKey ? { idempotencyKey } : {}),
    });
  try {
    for (let round = 0; round < 20; round++) {
      const first = await send([`a${round}`, `b${round}`]);
      const retry = await send([`a${round}`, `b${round}`, `c${round}`]);
      assert.equal(first.result.duplicates, 0);
      assert.equal(retry.result.duplicates, 2, `round ${round}`);
      const together = await Promise.all([send([`d${round}`]), send([`d${round}`]), send([`d${round}`])]);
      assert.deepEqual(together.map((o) => o.result.duplicates).sort(), [0, 1, 1]);
      const keyed = await send([`e${round}`], `key-${round}`);
      const keyedRetry = await send([`e${round}`], `key-${round}`);
      assert.equal(keyed.replayed, false);
      assert.equal(keyedRetry.replayed, true);
    }
    const stored = (await log.offsets(stream.topic)).reduce((n, o) => n + o.end - o.start, 0);
    assert.equal(stored, 20 * 5, 'each id stored once');
  } finally {
    await log.close();
    dedupe.close();
    rmSync(root, { recursive: true, force: true });
  }
});
