/**
 * The server on two HTTP threads (server.threads: 2, the log on its worker thread as `tributary serve`
 * runs it). Every request opens its own connection, so the kernel spreads them over both threads: what the
 * threads share — event-id dedupe, rate limits, Idempotency-Keys, metrics — must hold whichever serves.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../../src/server/test-support.ts';

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

/** One request on a connection of its own (no keep-alive agent). */
function send(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: options.method ?? 'GET', headers: options.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, text: Buffer.concat(chunks).toString() }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** The value of a metric's sample in Prometheus text (0 when absent). */
function sample(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

describe('server on two HTTP threads', () => {
  let t: TestServer;
  let key: string;
  let queryKey: string;
  const events = (stream: string) => `${t.url}/v1/streams/${stream}/events`;
  const auth = () => ({ 'content-type': 'application/json', authorization: `Bearer ${key}` });

  before(async () => {
    t = await startTestServer({
      threadedLog: true,
      yaml: `
server:
  threads: 2
  body_limit: 16KiB
  rate_limit:
    per_key: {requests_per_second: 0}
    per_ip: {requests_per_second: 0}
streams:
  clicks: {}
  agents:
    enrich: {user_agent: true}
  browser:
    cors_origins: [https://shop.example.com]
  limited:
    rate_limit:
      per_key: {requests_per_second: 0.001, burst: 10}
`,
    });
    key = await t.key(['clicks', 'agents', 'limited']);
    queryKey = await t.key(['lab.readings'], 'query');
  });
  after(async () => t.close());

  it('serves events on both threads, deduplicating ids whichever thread takes them', async () => {
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        send(events('clicks'), {
          method: 'POST',
          headers: auth(),
          // Every id twice: half of the requests are duplicates, on whichever thread.
          body: JSON.stringify([{ id: `e${i % 20}`, n: i }]),
        }),
      ),
    );
    for (const answer of answers) assert.equal(answer.status, 202, answer.text);
    const duplicates = answers.reduce(
      (n, a) => n + (JSON.parse(a.text) as { duplicates: number }).duplicates,
      0,
    );
    assert.equal(duplicates, 20);
    assert.equal(await t.count('events.clicks'), 20);

    // This thread's own registry counted some requests; the /metrics of either thread counts all of them.
    const own = sample(
      await t.registry.metrics(),
      'tributary_http_requests_total',
      'stream="clicks",status="202"',
    );
    assert.ok(own > 0 && own < 40, `the first thread served ${own} of 40 (the kernel spreads connections)`);
    const metrics = await send(`${t.url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.equal(sample(metrics.text, 'tributary_http_requests_total', 'stream="clicks",status="202"'), 40);
    assert.equal(sample(metrics.text, 'tributary_ingest_events_accepted_total', 'stream="clicks"'), 20);
  });

  it("counts a key's rate limit once across the threads", async () => {
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        send(events('limited'), { method: 'POST', headers: auth(), body: JSON.stringify({ n: i }) }),
      ),
    );
    const statuses = answers.map((a) => a.status).sort();
    assert.equal(statuses.filter((s) => s === 202).length, 10, statuses.join(','));
    assert.equal(statuses.filter((s) => s === 429).length, 20, statuses.join(','));
    assert.equal(await t.count('events.limited'), 10);
  });

  it('answers an Idempotency-Key retry with the first answer, whichever thread takes each', async () => {
    const headers = { ...auth(), 'idempotency-key': 'batch-7' };
    const body = JSON.stringify([{ n: 1 }, { n: 2 }]);
    const answers = await Promise.all(
      Array.from({ length: 12 }, () => send(events('clicks'), { method: 'POST', headers, body })),
    );
    for (const answer of answers) assert.equal(answer.status, 202, answer.text);
    const ids = new Set(answers.map((a) => JSON.stringify((JSON.parse(a.text) as { ids: string[] }).ids)));
    assert.equal(ids.size, 1, 'every answer carries the same event ids');
    assert.equal(answers.filter((a) => a.headers['idempotent-replayed'] === 'true').length, 11);
    const other = await send(events('clicks'), {
      method: 'POST',
      headers,
      body: JSON.stringify([{ n: 3 }]),
    });
    assert.equal(other.status, 422);
  });

  it('answers every other endpoint on any connection as the first thread does', async () => {
    for (let i = 0; i < 12; i++) {
      const health = await send(`${t.url}/healthz`);
      assert.equal(health.status, 200);
      assert.deepEqual(JSON.parse(health.text), { status: 'ok' });
      assert.equal(health.headers['x-content-type-options'], 'nosniff');

      const ready = await send(`${t.url}/readyz`);
      assert.equal(ready.status, 200, ready.text);
      const components = (JSON.parse(ready.text) as { components: Record<string, { status: string }> })
        .components;
      assert.equal(components['http threads']?.status, 'ok');

      const openapi = await send(`${t.url}/openapi.json`);
      assert.equal(openapi.status, 200);
      assert.match(openapi.text, /"openapi"/);

      const missing = await send(`${t.url}/v1/nothing-here`, { method: 'POST', body: 'x' });
      assert.equal(missing.status, 404);
      assert.match(missing.text, /no endpoint POST \/v1\/nothing-here/);

      const unknown = await send(events('nope'), { method: 'POST', headers: auth(), body: '{}' });
      assert.equal(unknown.status, 404);

      const large = await send(`${t.url}/v1/query`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${queryKey}` },
        body: Buffer.alloc(20 * 1024, 0x20),
      });
      assert.equal(large.status, 413, large.text);
    }
  });

  it('checks a request it hands over before reading its body, and adds nothing to it', async () => {
    // Headers only, a body announced and never sent: refused at once on every connection.
    const refusals = await Promise.all(
      Array.from({ length: 12 }, (_, i) => {
        return new Promise<number>((resolve, reject) => {
          const req = request(
            events(i % 2 ? 'clicks' : 'nope'),
            {
              method: 'POST',
              agent: false,
              headers: {
                'content-type': 'application/json',
                'content-length': '1000',
                'idempotency-key': `k${i}`,
              },
            },
            (res) => {
              res.resume();
              resolve(res.statusCode!);
              req.destroy();
            },
          );
          req.on('error', (error: NodeJS.ErrnoException) => {
            if (error.code !== 'ECONNRESET') reject(error);
          });
          req.setTimeout(5000, () => reject(new Error('no answer before the body: it waited for it')));
          req.flushHeaders();
        });
      }),
    );
    assert.deepEqual(refusals.sort(), [...Array<number>(6).fill(401), ...Array<number>(6).fill(404)]);

    // No User-Agent sent, none stored, on whichever thread.
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        send(events('agents'), {
          method: 'POST',
          headers: { ...auth(), 'idempotency-key': `agent-${i}` },
          body: JSON.stringify({ n: i }),
        }),
      ),
    );
    for (const answer of answers) assert.equal(answer.status, 202, answer.text);
    for (const value of await t.values('events.agents')) assert.equal(value._user_agent, undefined);
  });

  it('answers HEAD and preflights with the lengths the first thread gives', async () => {
    for (let i = 0; i < 12; i++) {
      const head = await send(`${t.url}/healthz`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], String(JSON.stringify({ status: 'ok' }).length));
      assert.equal(head.text, '');
      const preflight = await send(events('browser'), {
        method: 'OPTIONS',
        headers: { origin: 'https://shop.example.com', 'access-control-request-method': 'POST' },
      });
      assert.equal(preflight.status, 204);
      assert.equal(preflight.headers['content-length'], undefined);
      assert.equal(preflight.headers['access-control-allow-origin'], 'https://shop.example.com');
    }
  });

  it('starts a thread that stopped again, its counts kept in the sums', async () => {
    const count = async () =>
      sample(
        (await send(`${t.url}/metrics`)).text,
        'tributary_http_requests_total',
        'stream="clicks",status="202"',
      );
    const post = (i: number) =>
      send(events('clicks'), { method: 'POST', headers: auth(), body: JSON.stringify({ id: `again-${i}` }) });
    for (let i = 0; i < 20; i++) assert.equal((await post(i)).status, 202);
    const before = await count(); // collects the thread's metrics: what it counted stays counted
    const stopped = t.server.httpThreads!.worker(1)!;
    await stopped.terminate();
    const ready = await send(`${t.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.match(ready.text, /thread 1 exited with code 1 \(starting again\)/);
    for (let i = 0; (await send(`${t.url}/readyz`)).status !== 200; i++) {
      assert.ok(i < 100, 'the thread serves again within 10 s');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.notEqual(t.server.httpThreads!.worker(1), stopped);
    const own = sample(
      await t.registry.metrics(),
      'tributary_http_requests_total',
      'stream="clicks",status="202"',
    );
    for (let i = 20; i < 60; i++) assert.equal((await post(i)).status, 202);
    const served =
      sample(await t.registry.metrics(), 'tributary_http_requests_total', 'stream="clicks",status="202"') -
      own;
    assert.ok(served < 40, `the new thread served ${40 - served} of 40`);
    assert.equal(await count(), before + 40);
  });

  it('refuses a port another socket holds, even one that shares it', async () => {
    const other = createServer();
    await new Promise<void>((resolve) =>
      other.listen({ host: '127.0.0.1', port: 0, reusePort: true }, resolve),
    );
    const port = (other.address() as { port: number }).port;
    try {
      await assert.rejects(
        startTestServer({ threadedLog: true, port, yaml: 'server: {threads: 2}\nstreams: {s: {}}\n' }),
        /cannot listen on 127\.0\.0\.1:\d+.*EADDRINUSE|another process uses port/s,
      );
    } finally {
      other.close();
    }
  });
});
