import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { it } from 'node:test';
import { Worker, type MessagePort } from 'node:worker_threads';
import { Registry } from 'prom-client';
import { createLogger } from '../core/logger.ts';
import { isTributaryError } from '../errors.ts';
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

// And so does a client of that worker over a port; its close closes the owner too, for the suite's reopen.
logCases('embedded on a worker thread, over a port', async (directory) => {
  const owner = await ThreadedLog.open({ directory, retentionIntervalMs: 0 });
  const client = ThreadedLog.overPort(owner.connect());
  const close = async () => {
    await client.close();
    await owner.close();
  };
  return new Proxy(client, {
    get: (target, property) => {
      if (property === 'close') return close;
      const value: unknown = Reflect.get(target, property);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
});

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

const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/**
 * Runs `body` — JavaScript, the body of an async function of `log` (a ThreadedLog over `port`) and `data`
 * — on a thread of its own, as an HTTP thread would; resolves with what it returns once the thread ended.
 */
function onThread(port: MessagePort, body: string, data?: unknown): Promise<unknown> {
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.module).then(async ({ ThreadedLog }) => {
      const log = ThreadedLog.overPort(workerData.port);
      parentPort.postMessage(await (async (log, data) => { ${body} })(log, workerData.data));
    });`;
  const module = new URL('./threaded-log.ts', import.meta.url).href;
  const worker = new Worker(source, { eval: true, workerData: { module, port, data }, transferList: [port] });
  let result: unknown;
  worker.on('message', (message: unknown) => (result = message));
  return new Promise((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', (code) => (code === 0 ? resolve(result) : reject(new Error(`exit ${code}`))));
  });
}

/** Every record of `topic`, by partition, each partition's offsets checked to run from 0 without a gap. */
async function readAll(log: Log, topic: string): Promise<Map<string, { partition: number; offset: number }>> {
  const found = new Map<string, { partition: number; offset: number }>();
  for (const { partition, start, end } of await log.offsets(topic)) {
    assert.equal(start, 0);
    const records = await log.read(topic, partition, 0, { maxRecords: end + 1 });
    assert.deepEqual(
      records.map((r) => r.offset),
      Array.from({ length: end }, (_, i) => i),
      `partition ${partition} has no gap`,
    );
    for (const r of records) {
      assert.ok(!found.has(decode(r.value)), `${decode(r.value)} once`);
      found.set(decode(r.value), { partition, offset: r.offset });
    }
  }
  return found;
}

it('appends from another thread through a port while the owner appends: one log, every record once', async () => {
  const directory = mkdtempSync(path.join(tmpdir(), 'threaded-log-'));
  const log = await ThreadedLog.open({ directory, retentionIntervalMs: 0 });
  try {
    await log.ensureTopic('events', { partitions: 3 });
    // 60 appends of 10 records each side, in waves of 20 at once (batched as the server's requests are).
    const thread = onThread(
      log.connect(),
      `const positions = {};
      for (let wave = 0; wave < 3; wave++)
        await Promise.all(Array.from({ length: 20 }, async (_, a) => {
          const values = Array.from({ length: 10 }, (_, r) => 't' + (wave * 20 + a) + '.' + r);
          const got = await log.append('events', values.map((v, r) => ({ key: 'k' + r, value: new TextEncoder().encode(v) })));
          values.forEach((v, r) => (positions[v] = got[r]));
        }));
      await log.close();
      return positions;`,
    ) as Promise<Record<string, { partition: number; offset: number }>>;
    const positions: Record<string, { partition: number; offset: number }> = {};
    for (let wave = 0; wave < 3; wave++)
      await Promise.all(
        Array.from({ length: 20 }, async (_, a) => {
          const values = Array.from({ length: 10 }, (_, r) => `o${wave * 20 + a}.${r}`);
          const got = await log.append(
            'events',
            values.map((v, r) => ({ key: `k${r}`, value: encode(v) })),
          );
          values.forEach((v, r) => (positions[v] = got[r]!));
        }),
      );
    Object.assign(positions, await thread);
    const found = await readAll(log, 'events');
    assert.equal(found.size, 1200);
    assert.deepEqual(Object.fromEntries(found), positions, 'each append answered with its records’ places');
  } finally {
    await log.close();
    rmSync(directory, { recursive: true, force: true });
  }
});

it('deduplicates across the owner and its ports with one store: an id kept once, wherever it came from', async () => {
  const directory = mkdtempSync(path.join(tmpdir(), 'threaded-log-'));
  const log = await ThreadedLog.open({ directory, retentionIntervalMs: 0 });
  const client = ThreadedLog.overPort(log.connect());
  try {
    await log.ensureTopic('events.s', { partitions: 2 });
    const options = {
      directory,
      windows: [['s', 60_000]],
      maxIds: 10_000,
      topics: [['events.s', 's']],
    } as const;
    await assert.rejects(client.openDedupe(options), /cannot open the dedupe store/);
    await log.openDedupe(options);
    const marked = (id: string) => ({
      value: encode(id),
      headers: { [HEADER_EVENT_ID]: id, [HEADER_DEDUPE]: '1' },
    });
    // At once from both: one round, decided in the order received.
    const together = await Promise.all([
      log.appendDeduplicating('events.s', [marked('x')], 's'),
      client.appendDeduplicating('events.s', [marked('x')], 's'),
    ]);
    assert.deepEqual(together.sort(), [0, 1]);
    assert.equal(await client.appendDeduplicating('events.s', [marked('y')], 's'), 0);
    assert.equal(await log.appendDeduplicating('events.s', [marked('y'), marked('z')], 's'), 1);
    assert.equal(await client.appendDeduplicating('events.s', [marked('z')], 's'), 1);
    // From a thread of its own, overlapping the owner's: ids 0–99 there, 50–149 here.
    const thread = onThread(
      log.connect(),
      `let duplicates = 0;
      const marked = (id) => ({ value: new TextEncoder().encode(id), headers: { 'tributary-event-id': id, 'tributary-dedupe': '1' } });
      await Promise.all(Array.from({ length: 20 }, async (_, a) => {
        const dropped = await log.appendDeduplicating('events.s', Array.from({ length: 5 }, (_, r) => marked('n' + (a * 5 + r))), 's');
        duplicates += dropped;
      }));
      await log.close();
      return duplicates;`,
    );
    let duplicates = 0;
    await Promise.all(
      Array.from({ length: 20 }, async (_, a) => {
        const ids = Array.from({ length: 5 }, (_, r) => marked(`n${50 + a * 5 + r}`));
        const dropped = await log.appendDeduplicating('events.s', ids, 's');
        duplicates += dropped;
      }),
    );
    duplicates += (await thread) as number;
    assert.equal(duplicates, 50);
    const found = await readAll(log, 'events.s');
    assert.deepEqual(
      [...found.keys()].sort(),
      ['x', 'y', 'z', ...Array.from({ length: 150 }, (_, i) => `n${i}`)].sort(),
    );
    await until(() => client.dedupeStats.ids === 153, 'a port client gets the figures too');
    assert.equal(client.dedupeFailure, undefined);
  } finally {
    await client.close();
    await log.close();
    rmSync(directory, { recursive: true, force: true });
  }
});

it('closes a port client once its appends are answered, and leaves the log open for the owner', async () => {
  const directory = mkdtempSync(path.join(tmpdir(), 'threaded-log-'));
  const log = await ThreadedLog.open({ directory, retentionIntervalMs: 0 });
  try {
    await log.ensureTopic('events', { partitions: 1 });
    await log.ensureTopic('quiet', { partitions: 1 });
    const client = ThreadedLog.overPort(log.connect());
    const waiting = client.read('quiet', 0, 0, { waitMs: 60_000 });
    waiting.catch(() => undefined);
    const issued = [
      client.append('events', [{ value: encode('a') }]),
      client.append('events', [{ value: encode('b') }]),
    ];
    const closed = client.close();
    await assert.rejects(client.append('events', [{ value: encode('c') }]), /closed/, 'refused once closing');
    await closed;
    const positions = await Promise.all(issued);
    assert.equal(positions.length, 2, 'issued before close: appended and answered');
    await assert.rejects(waiting, /closed/, 'a read still waiting fails as closed');
    await assert.rejects(client.offsets('events'), /closed/);
    // The owner goes on, and connects other clients.
    await log.append('events', [{ value: encode('d') }]);
    const other = ThreadedLog.overPort(log.connect());
    await other.append('events', [{ value: encode('e') }]);
    await other.close();
    assert.deepEqual([...(await readAll(log, 'events')).keys()].sort(), ['a', 'b', 'd', 'e']);
  } finally {
    await log.close();
    rmSync(directory, { recursive: true, force: true });
  }
});

it(
  'answers or fails, never leaves waiting, the appends of a thread while the owner closes the log',
  { timeout: 30_000 },
  async () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'threaded-log-'));
    const log = await ThreadedLog.open({ directory, retentionIntervalMs: 0 });
    await log.ensureTopic('events', { partitions: 1 });
    const client = ThreadedLog.overPort(log.connect());
    let appended = 0;
    const watch = setInterval(() => {
      client.offsets('events').then(
        ([o]) => (appended = o!.end),
        () => clearInterval(watch),
      );
    }, 5);
    // This thread's client, and another thread's appending as fast as it can, while the owner closes.
    const thread = onThread(
      log.connect(),
      `const appended = [];
      let failure;
      for (let n = 0; !failure; n++) {
        const values = Array.from({ length: 8 }, (_, a) => 't' + n + '.' + a);
        const settled = await Promise.allSettled(values.map((v) => log.append('events', [{ value: new TextEncoder().encode(v) }])));
        settled.forEach((s, a) => (s.status === 'fulfilled' ? appended.push(values[a]) : (failure ??= s.reason)));
      }
      const later = await log.append('events', [{ value: new Uint8Array(1) }]).catch((e) => e);
      return { appended, failure: failure.code, later: later.code, retryable: later.retryable };`,
    ) as Promise<{ appended: string[]; failure: string; later: string; retryable: boolean }>;
    await log.append('events', [{ value: encode('first') }]);
    await until(() => appended >= 100, 'the thread appends');
    // Sent to the worker before the owner's close (c), and after it (d).
    const append = (value: string) => client.append('events', [{ value: encode(value) }]);
    const before = Promise.allSettled(Array.from({ length: 8 }, (_, a) => append(`c${a}`)));
    await new Promise(setImmediate);
    const closing = log.close();
    const after = Promise.allSettled(Array.from({ length: 8 }, (_, a) => append(`d${a}`)));
    await closing;
    const settled = [...(await before), ...(await after)];
    const result = await thread;
    for (const s of settled)
      if (s.status === 'rejected') assert.equal((s.reason as { code: string }).code, 'STORAGE_IO');
    assert.equal(result.failure, 'STORAGE_IO');
    assert.deepEqual([result.later, result.retryable], ['STORAGE_IO', true], 'the worker is gone');
    await assert.rejects(client.append('events', [{ value: encode('x') }]), {
      code: 'STORAGE_IO',
      retryable: true,
    });
    clearInterval(watch);
    await client.close();
    // What was answered is in the log.
    const reopened = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
    try {
      const found = await readAll(reopened, 'events');
      const answered = settled.flatMap((s, a) =>
        s.status === 'fulfilled' ? [a < 8 ? `c${a}` : `d${a - 8}`] : [],
      );
      for (const value of [...answered, ...result.appended, 'first']) assert.ok(found.has(value), value);
      assert.ok(result.appended.length > 0, 'the thread appended before the close');
    } finally {
      await reopened.close();
      rmSync(directory, { recursive: true, force: true });
    }
  },
);

it('fails the calls of a port client, waiting and later, with STORAGE_IO when the log worker dies', async () => {
  const directory = mkdtempSync(path.join(tmpdir(), 'threaded-log-'));
  // The owner on a thread of its own, which ends without closing the log: its worker dies with it.
  const module = new URL('./threaded-log.ts', import.meta.url).href;
  const owner = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.module).then(async ({ ThreadedLog }) => {
      const log = await ThreadedLog.open({ directory: workerData.directory, retentionIntervalMs: 0 });
      await log.ensureTopic('events', { partitions: 1 });
      const port = log.connect();
      parentPort.postMessage(port, [port]);
    });`,
    { eval: true, workerData: { module, directory } },
  );
  try {
    const port = await new Promise<MessagePort>((resolve) => owner.once('message', resolve));
    const client = ThreadedLog.overPort(port);
    assert.equal((await client.append('events', [{ value: encode('a') }])).length, 1);
    const gone = { code: 'STORAGE_IO', retryable: true };
    const waiting = assert.rejects(client.read('events', 0, 1, { waitMs: 60_000 }), gone);
    // In flight as the worker dies: answered before, or failed so.
    const appending = client.append('events', [{ value: encode('b') }]).then(
      () => undefined,
      (error: unknown) => error,
    );
    await owner.terminate();
    await waiting;
    const failed = await appending;
    if (failed !== undefined)
      assert.ok(isTributaryError(failed, 'STORAGE_IO') && failed.retryable, 'appended, or failed so');
    await assert.rejects(client.append('events', [{ value: encode('c') }]), gone);
    await assert.rejects(client.offsets('events'), gone);
    await client.close();
  } finally {
    await owner.terminate();
    rmSync(directory, { recursive: true, force: true });
  }
});
