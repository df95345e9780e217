/**
 * The `webhook` sink against a real HTTP server on loopback: signed requests of `batch_size` records,
 * retries with backoff on 500 and `Retry-After` on 429/503, permanent failures on 4xx, positions in the
 * log's consumer-group offsets, and the same idempotency keys when a batch is delivered again.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { createResources, type SinkDefinition } from '../../src/core/pipeline/components.ts';
import type { PipelineRecord, SinkBatch } from '../../src/core/pipeline/model.ts';
import { isTributaryError } from '../../src/errors.ts';
import { EmbeddedLog } from '../../src/log/embedded-log.ts';
import type { Log } from '../../src/log/log.ts';
import {
  WebhookSink,
  webhookSinkDefinition,
  webhookSinkSchema,
  type WebhookSinkOptions,
} from '../../src/sinks/webhook/index.ts';
import { freePort } from '../services/harness.ts';

const SECRET = 'whsec-test-secret';
const TOPIC = 'events';
const logger = pino({ level: 'silent' });

interface Received {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
  readonly records: unknown[];
  readonly signatureValid: boolean;
}

type Responder = (request: Received, res: ServerResponse) => void;

function record(partition: number, offset: number): PipelineRecord {
  return { value: { id: `${partition}-${offset}` }, key: null, partition, offset, timestamp: 0, headers: {} };
}

/** The records of `partition` at offsets [from, to). */
function span(partition: number, from: number, to: number): PipelineRecord[] {
  return Array.from({ length: to - from }, (_, i) => record(partition, from + i));
}

function idsOf(records: readonly PipelineRecord[]): string[] {
  return records.map((r) => r.value.id as string);
}

function batchOf(records: PipelineRecord[], positions: Record<number, number>): SinkBatch {
  return { records, positions: new Map(Object.entries(positions).map(([p, o]) => [Number(p), o])) };
}

const ok: Responder = (_request, res) => res.writeHead(200).end('{"ok":true}');
const status =
  (code: number, headers: Record<string, string> = {}, body = ''): Responder =>
  (_request, res) =>
    res.writeHead(code, headers).end(body);

describe('webhook sink', () => {
  let server: Server;
  let endpoint: string;
  let received: Received[] = [];
  /** Answers for the next requests, in order; `ok` once they run out. */
  let script: Responder[] = [];
  let directory: string;
  let log: EmbeddedLog;
  let sinks = 0;

  before(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const timestamp = String(req.headers['x-tributary-timestamp']);
        const expected = `sha256=${createHmac('sha256', SECRET).update(`${timestamp}.`).update(raw).digest('hex')}`;
        const request: Received = {
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          body: raw.toString(),
          records: (JSON.parse(raw.toString()) as { records: unknown[] }).records,
          signatureValid: req.headers['x-tributary-signature'] === expected,
        };
        received.push(request);
        (script.shift() ?? ok)(request, res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/orders`;
    directory = mkdtempSync(path.join(tmpdir(), 'tributary-webhook-'));
    log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
    await log.ensureTopic(TOPIC, { partitions: 2 });
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await log.close();
    rmSync(directory, { recursive: true, force: true });
  });

  beforeEach(() => {
    received = [];
    script = [];
  });

  /**
   * The log as a process that dies right after its requests: committing the sink's positions fails
   * ("killed") while `crashing`; the marks (groups …/pending/<n>) written before the requests are kept,
   * but for the groups `crashingOn` matches.
   */
  function crashingLog(): Pick<Log, 'committedOffsets' | 'commitOffsets'> & {
    crashing: boolean;
    crashingOn?: RegExp;
  } {
    const wrapped: ReturnType<typeof crashingLog> = {
      crashing: true,
      committedOffsets: (group: string, topic: string) => log.committedOffsets(group, topic),
      commitOffsets: async (group: string, topic: string, offsets: ReadonlyMap<number, number>) => {
        if ((wrapped.crashing && !group.includes('/pending/')) || wrapped.crashingOn?.test(group))
          throw new Error('killed');
        await log.commitOffsets(group, topic, offsets);
      },
    };
    return wrapped;
  }

  /**
   * A sink of its own name whose first run sends `batch` and dies before its commit. `restart()` opens it
   * again, on `wrapped`: the log, which crashes no more unless told to.
   */
  async function sentBeforeACrash(config: Record<string, unknown>, batch: SinkBatch) {
    const wrapped = crashingLog();
    const name = `hook-${++sinks}`;
    const restart = async () => {
      const restarted = sink({ name, ...config }, { log: wrapped }).sink;
      await restarted.open();
      return restarted;
    };
    await assert.rejects((await restart()).write(batch), /killed/);
    wrapped.crashing = false;
    return { wrapped, restart };
  }

  /** Per record id received, the Idempotency-Keys it came under. */
  function idempotencyKeysByRecord(): Map<string, Set<string>> {
    const keysOf = new Map<string, Set<string>>();
    for (const request of received)
      for (const value of request.records as Array<{ id: string }>)
        (keysOf.get(value.id) ?? keysOf.set(value.id, new Set()).get(value.id)!).add(
          String(request.headers['idempotency-key']),
        );
    return keysOf;
  }

  /**
   * What a receiver that drops repeated Idempotency-Keys sees of `received`: every record of `ids` came
   * under one key alone, and a key came again only with the same records (so dropping it loses nothing).
   */
  function assertSameRequestsWhenSentAgain(ids: readonly string[], context = ''): void {
    const keysOf = idempotencyKeysByRecord();
    assert.deepEqual([...keysOf.keys()].sort(), [...ids].sort(), context);
    assert.deepEqual(
      [...keysOf].filter(([, keys]) => keys.size > 1).map(([id]) => id),
      [],
      `records sent again under another key ${context}`,
    );
    const recordsOf = new Map<string, string>();
    for (const request of received) {
      const key = String(request.headers['idempotency-key']);
      const carried = JSON.stringify(request.records);
      assert.equal(recordsOf.get(key) ?? carried, carried, `a key sent again with other records ${context}`);
      recordsOf.set(key, carried);
    }
  }

  /** A sink with its own name (so its own consumer group); waits are recorded, not slept. */
  function sink(
    config: Record<string, unknown> = {},
    options: Partial<WebhookSinkOptions> = {},
  ): { sink: WebhookSink; waits: number[] } {
    const waits: number[] = [];
    const created = new WebhookSink({
      config: webhookSinkSchema.parse({
        type: 'webhook',
        name: `hook-${++sinks}`,
        url: endpoint,
        secret: SECRET,
        ...config,
      }),
      pipeline: 'orders',
      sourceTopic: TOPIC,
      log,
      logger,
      sleep: async (ms) => {
        waits.push(ms);
      },
      random: () => 0.5,
      ...options,
    });
    return { sink: created, waits };
  }

  it('is created by its definition, named after the URL without its query', async () => {
    const definition: SinkDefinition = webhookSinkDefinition;
    const created = await definition.create(
      definition.schema.parse({ type: 'webhook', url: `${endpoint}?token=abc` }),
      { pipeline: 'orders', sourceTopic: TOPIC, projectRoot: '.', log, logger, resources: createResources() },
    );
    assert.match(created.name, new RegExp(`^webhook:${new URL(endpoint).host}/hooks/…#[0-9a-f]{12}$`));
    // A token rotated in the query keeps the sink's name (its positions).
    const rotated = new WebhookSink({
      config: webhookSinkSchema.parse({ type: 'webhook', url: `${endpoint}?token=xyz` }),
      pipeline: 'orders',
      sourceTopic: TOPIC,
      log,
      logger,
    });
    assert.equal(rotated.name, created.name);
    assert.deepEqual(await created.open(), new Map());
    await created.close();
  });

  it('keeps a secret in the URL path out of its name and messages, and takes over the positions of its old name', async () => {
    const host = new URL(endpoint).host;
    const url = `http://${host}/services/T000/B000/XXXXSECRET`;
    // Positions committed under the name earlier versions gave it (the whole path).
    await log.commitOffsets(`orders/webhook:${host}/services/T000/B000/XXXXSECRET`, TOPIC, new Map([[0, 4]]));
    const s = new WebhookSink({
      config: webhookSinkSchema.parse({ type: 'webhook', url }),
      pipeline: 'orders',
      sourceTopic: TOPIC,
      log,
      logger,
      sleep: async () => undefined,
    });
    assert.doesNotMatch(s.name, /SECRET|B000/);
    assert.deepEqual(await s.open(), new Map([[0, 4]]));
    script = [status(404)];
    const error = await s.write(batchOf([record(0, 4)], { 0: 5 })).then(
      () => assert.fail('a 404 fails'),
      (e: Error) => e,
    );
    assert.doesNotMatch(`${error.message} ${JSON.stringify(error)}`, /SECRET|B000/);
    assert.match(error.message, /services\/…/);
  });

  it('sends the user and password of its URL as basic authorization, never in a message', async () => {
    const url = endpoint.replace('http://', 'http://alice:S3cr3tPW@');
    const { sink: s } = sink({ url });
    await s.open();
    await s.write(batchOf([record(0, 100)], { 0: 101 }));
    assert.equal(
      received[0]?.headers.authorization,
      `Basic ${Buffer.from('alice:S3cr3tPW').toString('base64')}`,
    );
    // A configured Authorization header wins (in any case), alone.
    const { sink: bearer } = sink({ url, headers: { AUTHORIZATION: 'Bearer t0k' } });
    await bearer.open();
    await bearer.write(batchOf([record(0, 200)], { 0: 201 }));
    assert.equal(received.at(-1)?.headers.authorization, 'Bearer t0k');
    script = [status(401)];
    const error = await s.write(batchOf([record(0, 101)], { 0: 102 })).then(
      () => assert.fail('a 401 fails'),
      (e: Error) => e,
    );
    assert.doesNotMatch(`${error.message} ${JSON.stringify(error)}`, /S3cr3tPW/);
    // A header value with a line break is refused when the configuration is read, without repeating it.
    const parsed = webhookSinkSchema.safeParse({
      type: 'webhook',
      url: endpoint,
      headers: { Authorization: 'Bearer tok-SECRET\nX' },
    });
    assert.equal(parsed.success, false);
    assert.doesNotMatch(JSON.stringify(parsed.error?.issues), /tok-SECRET/);
  });

  it('sends signed requests of batch_size records in order, then commits its positions to the log', async () => {
    const { sink: s, waits } = sink({ batch_size: 10, headers: { Authorization: 'Bearer t0k' } });
    await s.open();
    const records = [
      ...Array.from({ length: 15 }, (_, i) => record(0, i)),
      ...Array.from({ length: 10 }, (_, i) => record(1, i)),
    ];
    assert.deepEqual(await s.write(batchOf(records, { 0: 15, 1: 10 })), {});
    assert.equal(received.length, 3);
    assert.deepEqual(
      received.flatMap((r) => r.records),
      records.map((r) => r.value),
    );
    assert.deepEqual(
      received.map((r) => r.records.length),
      [10, 5, 10],
      'a request holds one partition',
    );
    for (const request of received) {
      assert.equal(request.method, 'POST');
      assert.equal(request.url, '/hooks/orders');
      assert.ok(request.signatureValid, 'the HMAC-SHA256 of the timestamp and the raw body');
      assert.match(String(request.headers['x-tributary-timestamp']), /^\d{10}$/);
      assert.ok(Math.abs(Number(request.headers['x-tributary-timestamp']) - Date.now() / 1000) < 60);
      assert.equal(request.headers['content-type'], 'application/json');
      assert.equal(request.headers.authorization, 'Bearer t0k');
      assert.match(String(request.headers['idempotency-key']), /^[0-9a-f]{64}$/);
      assert.deepEqual(Object.keys(JSON.parse(request.body) as object), ['records']);
    }
    assert.equal(new Set(received.map((r) => r.headers['idempotency-key'])).size, 3);
    assert.deepEqual(waits, []);
    assert.deepEqual(
      await log.committedOffsets(s.group, TOPIC),
      new Map([
        [0, 15],
        [1, 10],
      ]),
    );
    assert.equal(s.group, `orders/${s.name}`);
    // A restart reads them back.
    const again = new WebhookSink({
      config: webhookSinkSchema.parse({ type: 'webhook', name: s.name, url: endpoint }),
      pipeline: 'orders',
      sourceTopic: TOPIC,
      log,
      logger,
    });
    assert.deepEqual(
      await again.open(),
      new Map([
        [0, 15],
        [1, 10],
      ]),
    );
  });

  it('retries a 500 with exponential backoff and full jitter, with the same idempotency key', async () => {
    const { sink: s, waits } = sink({ retry: { initial_backoff: '100ms', max_backoff: '250ms' } });
    await s.open();
    script = [status(500), status(502), status(504), ok];
    await s.write(batchOf([record(0, 0), record(0, 1)], { 0: 2 }));
    assert.equal(received.length, 4);
    assert.equal(new Set(received.map((r) => r.headers['idempotency-key'])).size, 1);
    assert.ok(received.every((r) => r.signatureValid));
    // random() = 0.5 of 100, 200, then min(400, 250).
    assert.deepEqual(waits, [50, 100, 125]);
  });

  it('honours Retry-After on 429 and 503, in seconds or as an HTTP date', async () => {
    const { sink: s, waits } = sink();
    await s.open();
    const inAMinute = new Date(Date.now() + 60_000).toUTCString();
    script = [status(429, { 'Retry-After': '2' }), status(503, { 'Retry-After': inAMinute }), ok];
    await s.write(batchOf([record(0, 0)], { 0: 1 }));
    assert.equal(received.length, 3);
    assert.equal(waits[0], 2000);
    assert.ok(waits[1]! > 55_000 && waits[1]! <= 60_000, `waited ${waits[1]} ms for ${inAMinute}`);
  });

  it('fails permanently on 400, with the answer, and commits nothing', async () => {
    const { sink: s, waits } = sink();
    await s.open();
    script = [status(400, { 'content-type': 'application/json' }, '{"error":"field id must be a number"}')];
    await assert.rejects(s.write(batchOf([record(0, 0)], { 0: 1 })), (error: unknown) => {
      assert.ok(isTributaryError(error, 'INVALID_INPUT'), String(error));
      assert.equal(error.retryable, false);
      assert.equal(error.context.status, 400);
      assert.match(error.message, /answered 400 Bad Request: \{"error":"field id must be a number"\}/);
      assert.ok(error.hint);
      return true;
    });
    assert.equal(received.length, 1, 'not retried');
    assert.deepEqual(waits, []);
    assert.deepEqual(await log.committedOffsets(s.group, TOPIC), new Map());
  });

  it('fails permanently on 401 and 404 with a hint, and never shows the token', async () => {
    const { sink: s } = sink({
      url: `${endpoint}?token=query-s3cret`,
      headers: { Authorization: 'Bearer header-s3cret' },
    });
    await s.open();
    for (const [code, hint] of [
      [401, /credentials/],
      [404, /url and method/],
    ] as const) {
      script = [status(code)];
      await assert.rejects(s.write(batchOf([record(0, 0)], { 0: 1 })), (error: unknown) => {
        assert.ok(isTributaryError(error, 'SERVICE_UNAVAILABLE'), String(error));
        assert.equal(error.retryable, false);
        assert.match(error.hint ?? '', hint);
        assert.ok(!JSON.stringify({ m: error.message, c: error.context, n: s.name }).includes('s3cret'));
        return true;
      });
    }
  });

  it('gives up after max_attempts with a retryable error; the runtime retry sends the same request again', async () => {
    const { sink: s, waits } = sink({ retry: { max_attempts: 2 } });
    await s.open();
    script = [status(500), status(500)];
    await assert.rejects(s.write(batchOf([record(0, 0)], { 0: 1 })), (error: unknown) => {
      assert.ok(isTributaryError(error, 'SERVICE_UNAVAILABLE') && error.retryable, String(error));
      assert.match(error.message, /gave up after 2 attempts/);
      return true;
    });
    assert.equal(waits.length, 1);
    await s.write(batchOf([record(0, 0)], { 0: 1 }));
    assert.equal(received.length, 3);
    assert.equal(new Set(received.map((r) => r.headers['idempotency-key'])).size, 1);
  });

  it('skips the requests that already succeeded when the runtime retries a batch in the same process', async () => {
    const { sink: s } = sink({ batch_size: 2, retry: { max_attempts: 1 } });
    await s.open();
    const records = [record(0, 0), record(0, 1), record(0, 2), record(0, 3), record(0, 4)];
    script = [ok, status(503)];
    await assert.rejects(
      s.write(batchOf(records, { 0: 5 })),
      (error: unknown) => isTributaryError(error) && error.retryable,
    );
    await s.write(batchOf(records, { 0: 5 }));
    assert.deepEqual(
      received.map((r) => r.records.length),
      [2, 2, 2, 1],
      'the first request is not sent again',
    );
    assert.deepEqual(received[1]!.headers['idempotency-key'], received[2]!.headers['idempotency-key']);
  });

  it('sends every record under one idempotency key through crashes and retries of a growing batch', async () => {
    const batch = (n: number) => batchOf(span(0, 0, n), { 0: n });
    const { wrapped, restart } = await sentBeforeACrash(
      { batch_size: 3, retry: { max_attempts: 1 } },
      batch(4),
    );
    // Restarted: the batch read again is longer; its last request fails once, and the write is retried.
    wrapped.crashing = true;
    const second = await restart();
    script = [ok, ok, ok, status(500)];
    await assert.rejects(second.write(batch(8)), /500/);
    await assert.rejects(second.write(batch(8)), /killed/); // the retry delivers it, then the process dies
    wrapped.crashing = false;
    await (await restart()).write(batch(9));
    assertSameRequestsWhenSentAgain(idsOf(span(0, 0, 9)));
  });

  it('cuts a batch read again from fewer partitions (a backlog) into the same requests', async () => {
    const { restart } = await sentBeforeACrash(
      { batch_size: 25 },
      batchOf([...span(0, 0, 30), ...span(1, 0, 30)], { 0: 30, 1: 30 }),
    );
    // Read again with a backlog: the first partition fills the batch, the second comes next.
    const second = await restart();
    await second.write(batchOf(span(0, 0, 50), { 0: 50 }));
    await second.write(batchOf(span(1, 0, 30), { 1: 30 }));
    assertSameRequestsWhenSentAgain(idsOf([...span(0, 0, 50), ...span(1, 0, 30)]));
  });

  it('sends a batch read again in smaller batches (limits lowered) in the same requests, under the same keys', async () => {
    // Sent as 0-3, 4-7, 8-9; restarted with lower batch limits, the first batch read again ends inside 4-7.
    const { restart } = await sentBeforeACrash({ batch_size: 4 }, batchOf(span(0, 0, 10), { 0: 10 }));
    const second = await restart();
    await second.write(batchOf(span(0, 0, 6), { 0: 6 }));
    await second.write(batchOf(span(0, 6, 10), { 0: 10 }));
    assertSameRequestsWhenSentAgain(idsOf(span(0, 0, 10)));
    assert.deepEqual(await log.committedOffsets(second.group, TOPIC), new Map([[0, 10]]));
  });

  it('sends a partition again in the same requests when a backlog ends the batch read again inside it', async () => {
    // At the head, the batch limit (10 records) took 3 of partition 0 and 7 of partition 1.
    const { restart } = await sentBeforeACrash(
      { batch_size: 5 },
      batchOf([...span(0, 0, 3), ...span(1, 0, 7)], { 0: 3, 1: 7 }),
    );
    // Read again, partition 0 has grown and takes 6 of the 10: partition 1 ends inside its first request.
    const second = await restart();
    await second.write(batchOf([...span(0, 0, 6), ...span(1, 0, 4)], { 0: 6, 1: 4 }));
    await second.write(batchOf(span(1, 4, 10), { 0: 6, 1: 10 }));
    assertSameRequestsWhenSentAgain(idsOf([...span(0, 0, 6), ...span(1, 0, 10)]));
  });

  it('holds back the records of a request it cannot send whole, and commits only up to them', async () => {
    const { wrapped, restart } = await sentBeforeACrash(
      { batch_size: 4 },
      batchOf(span(0, 0, 10), { 0: 10 }),
    );
    const second = await restart();
    received = [];
    await second.write(batchOf(span(0, 0, 6), { 0: 6 }));
    assert.deepEqual(
      received.map((r) => r.records.length),
      [4],
      'records 4 and 5 wait for 6 and 7',
    );
    assert.deepEqual(await log.committedOffsets(second.group, TOPIC), new Map([[0, 4]]));
    // A batch of another partition (another lane's) leaves that position where it is.
    await second.write(batchOf([record(1, 0)], { 0: 6, 1: 1 }));
    assert.deepEqual(
      await log.committedOffsets(second.group, TOPIC),
      new Map([
        [0, 4],
        [1, 1],
      ]),
    );
    received = received.filter((r) => r.records.length === 4);
    // The process dies once the next batch completed that request: the restart sends it whole again.
    wrapped.crashing = true;
    await assert.rejects(second.write(batchOf(span(0, 6, 8), { 0: 8 })), /killed/);
    wrapped.crashing = false;
    const third = await restart();
    assert.deepEqual(
      await log.committedOffsets(third.group, TOPIC),
      new Map([
        [0, 4],
        [1, 1],
      ]),
    );
    await third.write(batchOf(span(0, 4, 10), { 0: 10, 1: 1 }));
    assert.deepEqual(
      received.map((r) => r.records.length),
      [4, 4, 4, 2],
    );
    assertSameRequestsWhenSentAgain(idsOf(span(0, 0, 10)));
  });

  it('keeps the marks still ahead when it dies while rewriting those its positions passed', async () => {
    // Mark 0: partition 0 ends at 3; mark 1: partition 1 ends at 7.
    const { wrapped, restart } = await sentBeforeACrash({ batch_size: 5 }, batchOf(span(0, 0, 3), { 0: 3 }));
    const dies = async (batch: SinkBatch) => assert.rejects((await restart()).write(batch), /killed/);
    wrapped.crashing = true;
    await dies(batchOf([...span(0, 0, 3), ...span(1, 0, 7)], { 0: 3, 1: 7 }));
    // Partition 1 is read again to 4 only: its records wait, partition 0 is committed and mark 0 passed;
    // the process dies while moving mark 1 down to group 0.
    wrapped.crashing = false;
    wrapped.crashingOn = /\/pending\/0$/;
    await dies(batchOf([...span(0, 0, 3), ...span(1, 0, 4)], { 0: 3, 1: 4 }));
    wrapped.crashingOn = undefined;
    const last = await restart();
    assert.deepEqual(
      await log.committedOffsets(last.group, TOPIC),
      new Map([
        [0, 3],
        [1, 0],
      ]),
    );
    await last.write(batchOf(span(1, 0, 10), { 0: 3, 1: 10 }));
    assertSameRequestsWhenSentAgain(idsOf([...span(0, 0, 3), ...span(1, 0, 10)]));
  });

  it('sends every request again whole, under its key, wherever crashes and the batches read again end', async () => {
    // One partition of 11 records, 5 left out by a transform, in requests of 4: run 1 sends [0, a) and
    // dies before its commit; run 2 reads batches of b records, its second write fails on a 503 at its
    // first request, and the process dies at the commit of the retry; run 3 reads batches of c to the end.
    const n = 11;
    const records = span(0, 0, n).filter((r) => r.offset !== 5);
    const ids = idsOf(records);
    const wrapped = crashingLog();
    /** A run from the positions the sink opens with, in batches of `size`; write `dies` (0-based) dies. */
    const run = async (name: string, size: number, until: number, dies?: number): Promise<void> => {
      const s = sink({ name, batch_size: 4, retry: { max_attempts: 1 } }, { log: wrapped }).sink;
      let from = (await s.open()).get(0) ?? 0;
      for (let i = 0; from < until; i++) {
        const end = Math.min(from + size, until);
        const batch = batchOf(
          records.filter((r) => r.offset >= from && r.offset < end),
          { 0: end },
        );
        wrapped.crashing = i === dies;
        if (i !== dies) await s.write(batch);
        else {
          script = i === 0 ? [] : [status(503)];
          const failure = await s.write(batch).then(
            () => assert.fail('the commit dies'),
            (error: Error) => error.message,
          );
          script = [];
          if (/503/.test(failure)) await assert.rejects(s.write(batch), /killed/);
          else assert.match(failure, /killed/);
          return;
        }
        from = end;
      }
    };
    for (let a = 1; a <= n; a++) {
      for (let b = 1; b <= n; b++) {
        received = [];
        const name = `hook-${++sinks}`;
        const c = ((a * b) % 4) + 1;
        await run(name, a, a, 0);
        await run(name, b, n, 1);
        await run(name, c, n);
        assertSameRequestsWhenSentAgain(ids, `(a=${a}, b=${b}, c=${c})`);
      }
    }
  });

  it('delivers a batch again after a crash before its commit, with the same idempotency keys', async () => {
    // The crash: the process dies after the requests, before the consumer-group offsets are committed
    // (where the batch ends was recorded before the requests, in a group of its own).
    const crashing = crashingLog();
    const { sink: first } = sink({ batch_size: 3 }, { log: crashing });
    await first.open();
    const records = [...[0, 1, 2, 3, 4].map((o) => record(0, o)), ...[0, 1].map((o) => record(1, o))];
    await assert.rejects(first.write(batchOf(records, { 0: 5, 1: 2 })), /killed/);
    const firstKeys = received.map((r) => r.headers['idempotency-key']);
    received = [];

    const restarted = new WebhookSink({
      config: webhookSinkSchema.parse({
        type: 'webhook',
        name: first.name,
        url: endpoint,
        secret: SECRET,
        batch_size: 3,
      }),
      pipeline: 'orders',
      sourceTopic: TOPIC,
      log,
      logger,
    });
    assert.deepEqual(await restarted.open(), new Map(), 'nothing was committed');
    // Read again, the batch holds records that arrived meanwhile, in another order: the ones sent before
    // go in the same requests, the new ones in others, each partition's in order.
    const more = [record(1, 2), ...records.slice(5), record(0, 5), ...records.slice(0, 5)];
    await restarted.write(batchOf(more, { 0: 6, 1: 3 }));
    assert.equal(firstKeys.length, 3);
    assert.deepEqual(
      received.map((r) => [firstKeys.includes(r.headers['idempotency-key']), r.records]),
      [
        [true, [0, 1, 2].map((o) => record(0, o).value)],
        [true, [3, 4].map((o) => record(0, o).value)],
        [false, [record(0, 5).value]],
        [true, [0, 1].map((o) => record(1, o).value)],
        [false, [record(1, 2).value]],
      ],
    );
    // Offered again once committed (two workers, a stale runtime): nothing is sent.
    received = [];
    await restarted.write(batchOf(more, { 0: 6, 1: 3 }));
    assert.equal(received.length, 0);
  });

  it('commits positions of a batch with no records (all filtered out) without a request', async () => {
    const { sink: s } = sink();
    await s.open();
    await s.write(batchOf([], { 0: 7, 1: 3 }));
    assert.equal(received.length, 0);
    assert.deepEqual(
      await log.committedOffsets(s.group, TOPIC),
      new Map([
        [0, 7],
        [1, 3],
      ]),
    );
  });

  it('retries a refused connection and a timeout, then reports them as retryable', async () => {
    const port = await freePort();
    const { sink: refused, waits } = sink({ url: `http://127.0.0.1:${port}/x`, retry: { max_attempts: 3 } });
    await refused.open();
    await assert.rejects(refused.write(batchOf([record(0, 0)], { 0: 1 })), (error: unknown) => {
      assert.ok(isTributaryError(error, 'SERVICE_UNAVAILABLE') && error.retryable, String(error));
      assert.match(error.message, /ECONNREFUSED/);
      return true;
    });
    assert.equal(waits.length, 2);

    script = [(_request, res) => setTimeout(() => res.writeHead(200).end(), 2000)];
    const { sink: slow } = sink({ timeout: '200ms', retry: { max_attempts: 1 } });
    await slow.open();
    const started = Date.now();
    await assert.rejects(slow.write(batchOf([record(0, 0)], { 0: 1 })), (error: unknown) => {
      assert.ok(isTributaryError(error, 'SERVICE_UNAVAILABLE') && error.retryable, String(error));
      assert.match(error.message, /timed out after 200 ms/);
      return true;
    });
    assert.ok(Date.now() - started < 1500);
  });

  it('stops waiting when closed', async () => {
    const s = new WebhookSink({
      config: webhookSinkSchema.parse({ type: 'webhook', name: `hook-${++sinks}`, url: endpoint }),
      pipeline: 'orders',
      sourceTopic: TOPIC,
      log,
      logger,
    });
    await s.open();
    script = [status(429, { 'Retry-After': '600' })];
    const writing = s.write(batchOf([record(0, 0)], { 0: 1 }));
    while (received.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    await s.close();
    await assert.rejects(
      writing,
      (error: unknown) => isTributaryError(error) && /closed/.test(error.message),
    );
  });

  it('checks for doctor that the endpoint accepts connections, without sending a request', async () => {
    const definition: SinkDefinition = webhookSinkDefinition;
    const context = {
      pipeline: 'orders',
      sourceTopic: TOPIC,
      projectRoot: '.',
      log: undefined as unknown as Log,
      logger,
      resources: createResources(),
    };
    const check = (url: string) =>
      definition.check!(definition.schema.parse({ type: 'webhook', url }), context);
    assert.deepEqual(
      (await check(`${endpoint}?token=s3cret`)).map((r) => r.status),
      ['pass'],
    );
    assert.equal(received.length, 0, 'no request was sent');
    const refused = await check(`http://127.0.0.1:${await freePort()}/x`);
    assert.equal(refused[0]?.status, 'fail');
    assert.match(refused[0]?.detail ?? '', /ECONNREFUSED/);
    // Not loopback (on Linux, connecting to 0.0.0.0 reaches this host: refused at once).
    const plain = await check(`http://0.0.0.0:${await freePort()}/hook`);
    assert.deepEqual(
      plain.map((r) => r.status),
      ['fail', 'warn'],
    );
  });

  it('checks its configuration', () => {
    const issues = (config: Record<string, unknown>) => {
      const result = webhookSinkSchema.safeParse({ type: 'webhook', url: endpoint, ...config });
      return result.success ? [] : result.error.issues.map((i) => i.path.join('.'));
    };
    assert.deepEqual(issues({}), []);
    assert.deepEqual(issues({ url: 'ftp://example.com/x' }), ['url']);
    assert.deepEqual(issues({ headers: { 'Idempotency-Key': 'x' } }), ['headers']);
    assert.deepEqual(issues({ headers: { 'bad header': 'x' } }), ['headers.bad header']);
    assert.deepEqual(issues({ batch_size: 0 }), ['batch_size']);
    assert.deepEqual(issues({ retry: { max_attempts: 0 } }), ['retry.max_attempts']);
    assert.deepEqual(issues({ timeout: 'soon' }), ['timeout']);
  });
});
