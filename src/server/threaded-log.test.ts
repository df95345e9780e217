import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { it } from 'node:test';
import { Registry } from 'prom-client';
import { createLogger } from '../core/logger.ts';
import { loadProject } from '../core/project.ts';
import { EmbeddedLog } from '../log/embedded-log.ts';
import type { Log, LogRecord } from '../log/log.ts';
import { logCases } from '../log/log.case.ts';
import { scanEvents } from './body.ts';
import { DedupeStore, HEADER_DEDUPE, HEADER_EVENT_ID } from './dedupe.ts';
import { Ingestor } from './ingest.ts';
import { createServerMetrics } from './metrics.ts';
import { openDedupe } from './server.ts';
import { resolveStreams, type Stream } from './streams.ts';
import { ThreadedLog } from './threaded-log.ts';

// The log on a worker thread keeps every promise of the Log contract.
logCases('embedded on a worker thread', (directory) =>
  ThreadedLog.open({ directory, retentionIntervalMs: 0 }),
);

it('deduplicates in the worker as it appends, and keeps the ids of what became durable', async () => {
  const directory = mkdtempSync(path.join(tmpdir(), 'threaded-log-'));
  const log = await ThreadedLog.open({ directory, retentionIntervalMs: 0 });
  let store: DedupeStore | undefined;
  try {
    await log.ensureTopic('events.s', { partitions: 2 });
    const windows = new Map([['s', 60_000]]);
    const topics = new Map([['events.s', 's']]);
    const options = { directory, windows: [...windows], maxIds: 1000, topics: [...topics] };
    const value = new TextEncoder().encode('{}');
    const marked = (id: string) => ({ value, headers: { [HEADER_EVENT_ID]: id, [HEADER_DEDUPE]: '1' } });
    await assert.rejects(
      log.appendDeduplicating('events.s', [marked('a')], 's'),
      /no dedupe store/,
      'not before the store is opened',
    );
    // Opened twice at once (two servers on one log): one after the other, the later one's store kept.
    assert.deepEqual(await Promise.all([log.openDedupe(options), log.openDedupe(options)]), [0, 0]);
    const generated = { value, headers: { [HEADER_EVENT_ID]: 'generated' } };
    assert.equal(
      await log.appendDeduplicating('events.s', [marked('a'), marked('b'), marked('a'), generated], 's'),
      1,
      'the second a',
    );
    // Sent together: decided in one round, in order.
    const [first, second, third] = await Promise.all([
      log.appendDeduplicating('events.s', [marked('c'), marked('b')], 's'),
      log.appendDeduplicating('events.s', [marked('c'), generated], 's'),
      log.append('events.s', [marked('c')]),
    ]);
    assert.deepEqual([first, second, third.length], [1, 1, 1], 'a plain append is not deduplicated');
    await assert.rejects(log.appendDeduplicating('missing-topic', [marked('e')], 's'), /does not exist/);
    assert.equal(await log.appendDeduplicating('events.s', [marked('e')], 's'), 0, 'e failed: not kept');
    const stored = (await log.offsets('events.s')).reduce((n, o) => n + o.end - o.start, 0);
    assert.equal(stored, 3 + 1 + 1 + 1 + 1);
    await until(() => log.dedupeStats.ids === 4, 'the figures are posted');
    await log.close();
    // What the worker wrote, read back by a store of the ids: those marked for dedupe only.
    store = DedupeStore.open(directory, windows);
    assert.deepEqual([...store.seen('s', ['a', 'b', 'c', 'd', 'e', 'generated'])].sort(), [
      'a',
      'b',
      'c',
      'e',
    ]);
  } finally {
    store?.close();
    await log.close();
  }
  await assert.rejects(log.append('events.s', [{ value: new Uint8Array(1) }]), /closed/);
});

it('stores the records of an append but its duplicates as they were: keys, headers, timestamps, values', async () => {
  const directory = mkdtempSync(path.join(tmpdir(), 'threaded-log-'));
  const log = await ThreadedLog.open({ directory, retentionIntervalMs: 0 });
  try {
    await log.ensureTopic('events.s', { partitions: 3 });
    await log.openDedupe({ directory, windows: [['s', 60_000]], maxIds: 1000, topics: [['events.s', 's']] });
    const record = (id: string, key: string | null, i: number) => ({
      key,
      value: new TextEncoder().encode(`{"n":${i}}`),
      headers: { [HEADER_EVENT_ID]: id, [HEADER_DEDUPE]: '1', extra: `é${i}` },
      timestamp: 1000 + i,
    });
    assert.equal(await log.appendDeduplicating('events.s', [record('seen', null, 0)], 's'), 0);
    const refused = log.append('events.s', [{ key: 5, value: new Uint8Array(1) } as unknown as LogRecord]);
    await assert.rejects(refused, { code: 'INVALID_INPUT' }, 'a promise rejected, not a throw');
    const sent = [
      record('seen', 'k1', 1),
      record('a', 'k1', 2),
      record('a', null, 3),
      record('b', null, 4),
      record('c', 'k2', 5),
      record('seen', null, 6),
      record('d', 'k1', 7),
    ];
    assert.equal(await log.appendDeduplicating('events.s', sent, 's'), 3, 'seen twice, the second a');
    const stored = [];
    for (const { partition, end } of await log.offsets('events.s'))
      stored.push(...(await log.read('events.s', partition, 0, { maxRecords: end })));
    const kept = stored
      .filter((r) => r.timestamp > 1000)
      .sort((x, y) => x.timestamp - y.timestamp)
      .map((r) => ({ key: r.key, value: r.value, headers: r.headers, timestamp: r.timestamp }));
    assert.deepEqual(
      kept.map((r) => ({ ...r, value: Buffer.from(r.value) })),
      [sent[1], sent[3], sent[4], sent[6]].map((r) => ({ ...r!, value: Buffer.from(r!.value) })),
    );
  } finally {
    await log.close();
    rmSync(directory, { recursive: true, force: true });
  }
});

it('fails a request whose events were all duplicates of its round when that round fails', async () => {
  const directory = mkdtempSync(path.join(tmpdir(), 'threaded-log-'));
  const log = await ThreadedLog.open({ directory, retentionIntervalMs: 0 });
  const db = new DatabaseSync(path.join(directory, 'log.db'), { timeout: 5_000 });
  try {
    await log.ensureTopic('events.s', { partitions: 1 });
    await log.openDedupe({ directory, windows: [['s', 60_000]], maxIds: 1000, topics: [['events.s', 's']] });
    const value = new TextEncoder().encode('{}');
    const x = [{ value, headers: { [HEADER_EVENT_ID]: 'x', [HEADER_DEDUPE]: '1' } }];
    // Every write to the log fails, as a full disk would make it.
    db.exec("create trigger fail before insert on batches begin select raise(abort, 'injected'); end");
    // A request and its retry, sent together: one round, x admitted for the first, dropped for the second.
    const [first, retry] = await Promise.allSettled([
      log.appendDeduplicating('events.s', x, 's'),
      log.appendDeduplicating('events.s', x, 's'),
    ]);
    assert.equal(first.status, 'rejected');
    assert.equal(retry.status, 'rejected', 'not acknowledged: the event it duplicates was not stored');
    db.exec('drop trigger fail');
    assert.equal(await log.appendDeduplicating('events.s', x, 's'), 0, 'x was not kept: stored now');
    assert.equal(await log.appendDeduplicating('events.s', x, 's'), 1);
  } finally {
    db.close();
    await log.close();
    rmSync(directory, { recursive: true, force: true });
  }
});

/** The ingest dedupe store as the server opens it on `log` (the worker keeps the ids of a ThreadedLog). */
async function openStore(log: Log, directory: string, stream: Stream) {
  const { store } = await openDedupe(log, {
    directory,
    windows: new Map([[stream.name, stream.config.dedupe_window]]),
    maxIds: 100_000,
    topics: new Map([[stream.topic, stream.name]]),
  });
  return store;
}

it('deduplicates a retry sent as soon as the first request is answered, or at the same time', async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'threaded-ingest-'));
  writeFileSync(path.join(root, 'tributary.yaml'), 'project: t\nstreams:\n  s: {}\n');
  const project = loadProject(root);
  const logger = createLogger({ level: 'silent' });
  const directory = path.join(root, 'log');
  const log = await ThreadedLog.open({ directory, retentionIntervalMs: 0 });
  const streams = resolveStreams(project, logger);
  const stream = streams.get('s')!;
  await log.ensureTopic(stream.topic, { partitions: 1 });
  await log.ensureTopic(stream.dlqTopic, { partitions: 1 });
  const dedupe = await openStore(log, directory, stream);
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
      // Written before it was given: a crash now cannot lose it.
      const db = new DatabaseSync(path.join(directory, 'ingest.db'));
      assert.ok(db.prepare('select 1 from seen_batches where key = ?').get(`key-${round}`));
      db.close();
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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `done` says true, for up to 10 s. */
async function until(done: () => boolean, what: string): Promise<void> {
  for (const started = Date.now(); !done(); await sleep(20))
    if (Date.now() - started > 10_000) assert.fail(`timed out waiting until ${what}`);
}

/**
 * Makes every write of the dedupe store in `directory` fail (another connection renames a table it writes
 * to) until the returned function is called.
 */
function breakDedupeWrites(directory: string): () => void {
  const db = new DatabaseSync(path.join(directory, 'ingest.db'), { timeout: 5_000 });
  db.exec('alter table watermarks rename to watermarks_away');
  return () => {
    db.exec('alter table watermarks_away rename to watermarks');
    db.close();
  };
}

it(
  'retries a failed write of the dedupe ids, says why meanwhile, and still finds the duplicates',
  { timeout: 30_000 },
  async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'threaded-ingest-'));
    const directory = path.join(root, 'log');
    const log = await ThreadedLog.open({ directory, retentionIntervalMs: 0 });
    const { send, stored, dedupe } = await dlqIngest(root, log, directory);
    try {
      const repair = breakDedupeWrites(directory);
      assert.equal((await send(['z'], false)).result.accepted, 1);
      await until(() => /watermarks/.test(log.dedupeFailure ?? ''), '/readyz says why');
      assert.equal((await send(['z'], false)).result.duplicates, 1, 'the ids are in memory');
      repair();
      await until(() => log.dedupeFailure === undefined, 'the retried write succeeds');
      assert.equal(await stored(), 1);
      await log.close();
      // Written: a store of the ids reads it back.
      const store = DedupeStore.open(directory, new Map([['s', 60_000]]));
      assert.deepEqual([...store.seen('s', ['z'])], ['z']);
      store.close();
    } finally {
      await log.close();
      dedupe.close();
      rmSync(root, { recursive: true, force: true });
    }
  },
);

/** An Ingestor on `log` for the stream `s` with on_invalid: dlq, whose DLQ topic is not created yet. */
async function dlqIngest(root: string, log: Log, directory: string) {
  writeFileSync(path.join(root, 'tributary.yaml'), 'project: t\nstreams:\n  s: { on_invalid: dlq }\n');
  const logger = createLogger({ level: 'silent' });
  const stream = resolveStreams(loadProject(root), logger).get('s')!;
  await log.ensureTopic(stream.topic, { partitions: 1 });
  const dedupe = await openStore(log, directory, stream);
  const ingestor = new Ingestor({
    log,
    dedupe,
    metrics: createServerMetrics(new Registry()),
    logger,
    limits: { maxPendingAppends: 1000, maxPendingBytes: 1e9, maxDepth: 10 },
  });
  /**
   * Sends events with these ids (null: an event without one), and an invalid one (not an object) with
   * `invalid`; with an Idempotency-Key, the body's hash as the server computes it.
   */
  const send = (
    ids: (string | null)[],
    invalid: boolean,
    idempotencyKey?: string,
    prepare?: (event: Record<string, unknown>, newId: () => string) => [],
  ) => {
    const values = ids.map((id, index) => (id === null ? { n: index } : { id }));
    return ingestor.ingest({
      stream,
      items: [
        ...values.map((value, index) => ({ index, value, source: Buffer.from(JSON.stringify(value)) })),
        ...(invalid ? [{ index: ids.length, value: 5 }] : []),
      ],
      idField: 'id',
      client: { ip: '127.0.0.1', userAgent: undefined, receivedAt: Date.now() },
      ...(prepare ? { prepare } : {}),
      ...(idempotencyKey
        ? {
            idempotencyKey,
            bodyHash: createHash('sha256')
              .update(JSON.stringify([...values, ...(invalid ? [5] : [])]))
              .digest('hex'),
          }
        : {}),
    });
  };
  const stored = async () => (await log.offsets(stream.topic)).reduce((n, o) => n + o.end - o.start, 0);
  return { stream, dedupe, send, stored };
}

it('keeps deduplicating the events appended when the DLQ append of their request failed', async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'threaded-ingest-'));
  const directory = path.join(root, 'log');
  const log = await ThreadedLog.open({ directory, retentionIntervalMs: 0 });
  const { stream, dedupe, send, stored } = await dlqIngest(root, log, directory);
  try {
    await assert.rejects(send(['x'], true), /does not exist/);
    assert.equal((await send(['x'], false)).result.duplicates, 1, 'x was appended: the retry finds it');
    assert.equal(await stored(), 1);

    // With an Idempotency-Key, the failed request's answer is not stored: its retry is not a replay.
    // Its events without an id got ids derived from the key and the body: the retry finds them too.
    const first = send(['y', null, null], true, 'k');
    await assert.rejects(first, /does not exist/);
    await log.ensureTopic(stream.dlqTopic, { partitions: 1 });
    const keyed = await send(['y', null, null], true, 'k');
    assert.equal(keyed.replayed, false);
    assert.equal(keyed.result.duplicates, 3);
    assert.equal(keyed.result.dlq?.count, 1);
    assert.equal((await send(['y', null, null], true, 'k')).replayed, true);
    assert.equal(await stored(), 4);
    // Another body under the same key (its answer never stored): other ids, stored.
    const other = await send([null], false, 'k2');
    assert.equal(other.result.duplicates, 0);
    assert.match(
      other.result.ids[0]!,
      /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    assert.equal(await stored(), 5);
    // An endpoint that writes the id into the event (Segment's messageId) gives it the derived one, and a
    // failed request's retry finds it.
    const prepare = (event: Record<string, unknown>, newId: () => string): [] => {
      event.id ??= newId();
      return [];
    };
    const writable = stream as { dlqTopic: string };
    const dlq = writable.dlqTopic;
    writable.dlqTopic = 'missing.dlq'; // the DLQ append fails again
    await assert.rejects(send([null], true, 'k3', prepare), /does not exist/);
    writable.dlqTopic = dlq;
    const prepared = await send([null], true, 'k3', prepare);
    assert.equal(prepared.result.duplicates, 1);
    assert.match(prepared.result.ids[0]!, /^[0-9a-f]{8}-[0-9a-f]{4}-8/);
    assert.equal(await stored(), 6);
  } finally {
    await log.close();
    dedupe.close();
    rmSync(root, { recursive: true, force: true });
  }
});

it('records the ids of the events appended when the DLQ append failed, with a log that does not record them', async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'embedded-ingest-'));
  const directory = path.join(root, 'log');
  const log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
  const { dedupe, send, stored } = await dlqIngest(root, log, directory);
  try {
    await assert.rejects(send(['x'], true), /does not exist/);
    assert.equal((await send(['x'], false)).result.duplicates, 1);
    assert.equal(await stored(), 1);
  } finally {
    await log.close();
    dedupe.close();
    rmSync(root, { recursive: true, force: true });
  }
});
