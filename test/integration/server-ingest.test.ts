/**
 * The event collection API through real HTTP requests to a started server (127.0.0.1, a free port): every
 * status code, idempotency, keys, webhook signatures, CORS, enrichment, Segment endpoints, health, metrics.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it, type TestContext } from 'node:test';
import { TributaryError } from '../../src/errors.ts';
import type { Log } from '../../src/log/log.ts';
import { sign } from '../../src/server/hmac.ts';
import { startTestServer, type TestServer } from '../../src/server/test-support.ts';

const json = { 'content-type': 'application/json' };
const ndjson = { 'content-type': 'application/x-ndjson' };

async function post(
  url: string,
  body: string | Uint8Array | undefined,
  headers: Record<string, string> = json,
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const response = await fetch(url, { method: 'POST', headers, body });
  const text = await response.text();
  return {
    status: response.status,
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
    headers: response.headers,
  };
}

type ErrorBody = {
  error: {
    code: string;
    message: string;
    hint?: string;
    events?: Array<{ index: number | null; line?: number; errors: Array<{ path: string; message: string }> }>;
  };
};
const errorOf = (body: Record<string, unknown>) => (body as unknown as ErrorBody).error;

const SCHEMA = JSON.stringify({
  type: 'object',
  required: ['user', 'amount'],
  properties: { user: { type: 'string' }, amount: { type: 'number', minimum: 0 } },
});

describe('event collection API', () => {
  let t: TestServer;
  let key: string;
  const events = (stream: string) => `${t.url}/v1/streams/${stream}/events`;

  before(async () => {
    t = await startTestServer({
      yaml: `
server:
  body_limit: 64KiB
  max_events: 50
  max_depth: 8
  rate_limit:
    per_key: {requests_per_second: 0}
    per_ip: {requests_per_second: 0}
  segment:
    stream: web
streams:
  orders:
    schema: order.schema.json
    partition_key: user
    enrich: {client_ip: truncated, user_agent: true}
  lenient:
    schema: order.schema.json
    on_invalid: dlq
  open:
    auth: none
    topic: open-events
    enrich: {received_at: false}
  limited:
    auth: none
    rate_limit:
      per_ip: {requests_per_second: 1, burst: 2}
  keyed_limited:
    rate_limit:
      per_key: {requests_per_second: 1, burst: 1}
  hooks:
    auth: hmac
    hmac: {secret: "\${HOOK_SECRET:-whsec}"}
  stripe:
    auth: hmac
    hmac: {secret: whsec, format: stripe}
  browser:
    auth: none
    cors_origins: [https://shop.example.com]
  web:
    cors_origins: ["*"]
`,
      files: { 'order.schema.json': SCHEMA },
      keyCacheTtlMs: 0,
    });
    key = await t.key(['orders', 'lenient', 'keyed_limited', 'web']);
  });
  after(async () => t.close());

  const auth = () => ({ ...json, authorization: `Bearer ${key}` });

  it('accepts a JSON object, an array, NDJSON and gzip with 202 once the events are in the log', async () => {
    const one = await post(events('orders'), JSON.stringify({ id: 'o-1', user: 'ann', amount: 3 }), auth());
    assert.equal(one.status, 202, JSON.stringify(one.body));
    assert.deepEqual(one.body, { accepted: 1, duplicates: 0, ids: ['o-1'] });
    const many = await post(
      events('orders'),
      JSON.stringify([
        { user: 'bob', amount: 1 },
        { id: 7, user: 'bob', amount: 2 },
      ]),
      { ...auth(), 'x-api-key': key, authorization: '' },
    );
    assert.equal(many.status, 202);
    const ids = many.body.ids as string[];
    assert.equal(ids.length, 2);
    assert.match(ids[0]!, /^[0-9a-f-]{36}$/, 'a generated id');
    assert.equal(ids[1], '7');
    const lines = await post(
      events('orders'),
      '{"id":"o-4","user":"cy","amount":4}\n\n{"id":"o-5","user":"cy","amount":5}\n',
      { ...ndjson, authorization: `Bearer ${key}` },
    );
    assert.equal(lines.status, 202);
    assert.equal(lines.body.accepted, 2);
    const gz = await post(events('orders'), gzipSync(JSON.stringify({ id: 'o-6', user: 'dee', amount: 6 })), {
      ...auth(),
      'content-encoding': 'gzip',
    });
    assert.equal(gz.status, 202);

    const stored = await t.records('events.orders');
    assert.equal(stored.length, 6);
    const values = await t.values('events.orders');
    const first = values.find((v) => v.id === 'o-1')!;
    assert.equal(first._client_ip, '127.0.0.0', 'truncated to its /24');
    assert.equal(first._user_agent, 'node');
    assert.ok(Date.parse(first._received_at as string) > Date.now() - 60_000);
    const bobs = stored.filter((r) => r.key === 'bob');
    assert.equal(bobs.length, 2, 'partition_key keys the records');
    assert.equal(new Set(bobs.map((r) => r.partition)).size, 1, 'same key, same partition');
    assert.equal(
      stored.find((r) => r.headers['tributary-event-id'] === 'o-1')?.headers['tributary-dedupe'],
      '1',
    );
  });

  it('stores events as sent, with the added fields spliced in, equal to their parsed value', async () => {
    // Strings holding braces, brackets, commas and escaped quotes; nesting; whitespace; a BOM; an empty
    // object; a field enrichment adds already present (replaced); unicode.
    const body =
      '\ufeff [ {"id":"b-1","s":"}{][,\\"\\\\","n":{"a":[1,{"b":"}"}]},"k":1e2} ,\n' +
      '  {}, { "id" : "b-3", "_received_at" : "client", "_client_ip": 1 } , {"id":"b-4","u":"é€😀"}\t]\n';
    const sent = JSON.parse(body.slice(1)) as Array<Record<string, unknown>>;
    const answer = await post(events('open'), body, json);
    assert.equal(answer.status, 202, JSON.stringify(answer.body));
    const ids = answer.body.ids as string[];
    const stored = (await t.records('open-events')).filter((r) =>
      ids.includes(r.headers['tributary-event-id']!),
    );
    assert.equal(stored.length, 4);
    const byId = new Map(stored.map((r) => [r.headers['tributary-event-id']!, r]));
    sent.forEach((event, index) => {
      const record = byId.get(ids[index]!)!;
      const value = JSON.parse(new TextDecoder().decode(record.value)) as Record<string, unknown>;
      // The stream "open" adds no fields (received_at: false); "orders" below adds them.
      assert.deepEqual(value, event, `event ${index}`);
    });
    assert.equal(
      new TextDecoder().decode(byId.get('b-1')!.value),
      '{"id":"b-1","s":"}{][,\\"\\\\","n":{"a":[1,{"b":"}"}]},"k":1e2}',
      'the bytes the client sent',
    );

    const enriched = await post(
      events('orders'),
      '[{"id":"e-1","user":"ann","amount":1,"note":"a } in a string"} , {"id":"e-2","user":"bob","amount":2,"_client_ip":"spoofed"}]',
      auth(),
    );
    assert.equal(enriched.status, 202, JSON.stringify(enriched.body));
    const values = (await t.values('events.orders')).filter((v) => v.id === 'e-1' || v.id === 'e-2');
    assert.equal(values.length, 2);
    for (const value of values) {
      assert.equal(value._client_ip, '127.0.0.0', 'set by the server, whatever the client sent');
      assert.equal(value._user_agent, 'node');
      assert.ok(Date.parse(value._received_at as string) > Date.now() - 60_000);
    }
    assert.equal(values.find((v) => v.id === 'e-1')!.note, 'a } in a string');
  });

  it('stores an event whose object repeats a key as it was validated, not as sent', async () => {
    // JSON.parse keeps the last of the duplicates, which the schema checks; a reader keeping the first
    // would read the bytes as sent otherwise: user an object, amount not a number.
    const body =
      '[{"id":"dupk1","user":{"evil":[1,2,3]},"amount":"not-a-number","user":"ok","amount":1},' +
      '{"id":"dupk2","user":"ann","amount":2,"meta":{"n":12345678901234567890,"x":"a:b","x":2}},' +
      '{"id":"dupk3","user":"bob","amount":3,"note":"a:b"}]';
    const answer = await post(events('orders'), body, auth());
    assert.equal(answer.status, 202, JSON.stringify(answer.body));
    const texts = new Map(
      (await t.records('events.orders')).map((r) => [
        r.headers['tributary-event-id']!,
        new TextDecoder().decode(r.value),
      ]),
    );
    assert.match(texts.get('dupk1')!, /^\{"id":"dupk1","user":"ok","amount":1,"_received_at"/);
    assert.match(
      texts.get('dupk2')!,
      /^\{"id":"dupk2","user":"ann","amount":2,"meta":\{"n":12345678901234567890,"x":2\},/,
    );
    assert.match(
      texts.get('dupk3')!,
      /^\{"id":"dupk3","user":"bob","amount":3,"note":"a:b","_received_at"/,
      'as sent',
    );
    const one = await post(events('orders'), '{"id":"dupk4","user":1,"user":"cy","amount":4}', auth());
    assert.equal(one.status, 202, JSON.stringify(one.body));
    const [stored] = (await t.records('events.orders')).filter(
      (r) => r.headers['tributary-event-id'] === 'dupk4',
    );
    assert.match(new TextDecoder().decode(stored!.value), /^\{"id":"dupk4","user":"cy","amount":4,/);
    // Without a schema, the id is all the server reads: a repeated one is stored as read too.
    const id = await post(events('open'), '{"id":"dupk5","a":1,"id":"dupk6"}', json);
    assert.deepEqual(id.body.ids, ['dupk6']);
    const [open] = (await t.records('open-events')).filter(
      (r) => r.headers['tributary-event-id'] === 'dupk6',
    );
    assert.equal(new TextDecoder().decode(open!.value), '{"id":"dupk6","a":1}');
  });

  it('answers 400 with the JSON path and message of every violation, and accepts nothing', async () => {
    const before = await t.count('events.orders');
    const bad = await post(
      events('orders'),
      JSON.stringify([{ user: 'ann', amount: 1 }, { user: 5, amount: -1 }, 'text', { user: 'x' }]),
      auth(),
    );
    assert.equal(bad.status, 400);
    const error = errorOf(bad.body);
    assert.equal(error.code, 'INVALID_INPUT');
    assert.match(error.message, /3 of 4 event\(s\) are invalid; nothing was accepted/);
    assert.deepEqual(
      error.events?.map((e) => e.index),
      [1, 2, 3],
    );
    assert.deepEqual(error.events?.[0]?.errors, [
      { path: '/user', message: 'must be string' },
      { path: '/amount', message: 'must be >= 0' },
    ]);
    assert.deepEqual(error.events?.[1]?.errors, [{ path: '', message: 'must be a JSON object' }]);
    assert.deepEqual(error.events?.[2]?.errors, [
      { path: '/amount', message: "must have required property 'amount'" },
    ]);
    const lines = await post(events('orders'), '{"user":"a","amount":1}\n{"user":\n', {
      ...ndjson,
      authorization: `Bearer ${key}`,
    });
    assert.equal(lines.status, 400);
    assert.equal(errorOf(lines.body).events?.[0]?.line, 2);
    assert.equal(await t.count('events.orders'), before, 'nothing appended');
  });

  it('with on_invalid: dlq, accepts the valid events and sends the invalid ones to the DLQ with reasons', async () => {
    const mixed = await post(
      events('lenient'),
      JSON.stringify([{ id: 'l-1', user: 'ann', amount: 1 }, { id: 'l-2', user: 'bob' }, 42]),
      auth(),
    );
    assert.equal(mixed.status, 202);
    assert.equal(mixed.body.accepted, 1);
    const dlq = mixed.body.dlq as {
      topic: string;
      count: number;
      events: Array<{ index: number; id: string; errors: unknown[] }>;
    };
    assert.equal(dlq.topic, 'events.lenient.dlq');
    assert.equal(dlq.count, 2);
    assert.deepEqual(dlq.events.map((e) => [e.index, e.id]).slice(0, 1), [[1, 'l-2']]);
    assert.deepEqual(
      (await t.values('events.lenient')).map((v) => v.id),
      ['l-1'],
    );
    const rejected = await t.values('events.lenient.dlq');
    assert.equal(rejected.length, 2);
    const l2 = rejected.find((r) => r.id === 'l-2')!;
    assert.equal(l2.stream, 'lenient');
    assert.match(l2.error as string, /\/amount: must have required property 'amount'/);
    assert.deepEqual(JSON.parse(l2.payload as string), { id: 'l-2', user: 'bob' });
    assert.equal(rejected.find((r) => r.index === 2)?.payload, '42');
  });

  it('answers 401 without a valid key and 403 for a key not allowed on the stream', async () => {
    const body = JSON.stringify({ user: 'a', amount: 1 });
    const none = await post(events('orders'), body);
    assert.equal(none.status, 401);
    assert.equal(errorOf(none.body).code, 'AUTH_REQUIRED');
    assert.match(errorOf(none.body).hint!, /Authorization: Bearer/);
    assert.equal(
      (await post(events('orders'), body, { ...json, authorization: 'Bearer trk_nope' })).status,
      401,
    );
    const forged = `${key.slice(0, -4)}AAAA`;
    assert.equal((await post(events('orders'), body, { ...json, 'x-api-key': forged })).status, 401);
    const other = await t.key(['open']);
    const forbidden = await post(events('orders'), body, { ...json, authorization: `Bearer ${other}` });
    assert.equal(forbidden.status, 403);
    assert.equal(errorOf(forbidden.body).code, 'AUTH_FORBIDDEN');
    assert.match(errorOf(forbidden.body).message, /may not send events to stream orders/);
    const query = await t.key(['*'], 'query');
    const asQuery = await post(events('orders'), body, { ...json, authorization: `Bearer ${query}` });
    assert.equal(asQuery.status, 403);
    // Told its role is the matter, not the stream.
    assert.match(errorOf(asQuery.body).message, /is a query key: it sends no events/);
    assert.match(errorOf(asQuery.body).hint!, /an ingest key: tributary keys create --stream orders/);
    const revoked = await t.keys.create({ name: 'to-revoke', role: 'ingest', streams: ['orders'] });
    assert.equal(
      (await post(events('orders'), body, { ...json, authorization: `Bearer ${revoked.secret}` })).status,
      202,
    );
    await t.keys.revoke('to-revoke');
    assert.equal(
      (await post(events('orders'), body, { ...json, authorization: `Bearer ${revoked.secret}` })).status,
      401,
    );
  });

  it('answers 404 for an unknown stream or endpoint, 413 over the limits, 415 for unsupported types', async () => {
    const unknown = await post(events('nope'), '{}', auth());
    assert.equal(unknown.status, 404);
    assert.equal(errorOf(unknown.body).code, 'STREAM_NOT_FOUND');
    assert.equal((await fetch(`${t.url}/v2/whatever`)).status, 404);
    assert.equal((await post(events('no stream!'), '{}', auth())).status, 404);

    const big = JSON.stringify({ user: 'a', amount: 1, pad: 'x'.repeat(70 * 1024) });
    const tooBig = await post(events('orders'), big, auth());
    assert.equal(tooBig.status, 413);
    assert.equal(errorOf(tooBig.body).code, 'PAYLOAD_TOO_LARGE');
    const bomb = gzipSync(JSON.stringify({ user: 'a', amount: 1, pad: ' '.repeat(1024 * 1024) }));
    assert.ok(bomb.length < 64 * 1024);
    assert.equal((await post(events('orders'), bomb, { ...auth(), 'content-encoding': 'gzip' })).status, 413);
    const many = JSON.stringify(Array.from({ length: 51 }, () => ({ user: 'a', amount: 1 })));
    assert.equal((await post(events('orders'), many, auth())).status, 413);

    for (const type of [
      'text/xml',
      'application/x-www-form-urlencoded',
      'application/json; charset=iso-8859-1',
    ]) {
      const response = await post(events('orders'), '{}', {
        'content-type': type,
        authorization: `Bearer ${key}`,
      });
      assert.equal(response.status, 415, type);
      assert.equal(errorOf(response.body).code, 'UNSUPPORTED_MEDIA_TYPE');
    }
    assert.equal((await post(events('open'), new Uint8Array([123, 125]), {})).status, 415, 'no content type');
    assert.equal((await post(events('orders'), '{}', { ...auth(), 'content-encoding': 'br' })).status, 415);
  });

  it('answers 429 with Retry-After over a client IP or key rate limit', async () => {
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 4; i++) {
      const response = await post(events('limited'), '{}');
      statuses.push(response.status);
      if (response.status === 429) {
        retryAfter = response.headers.get('retry-after');
        assert.equal(errorOf(response.body).code, 'RATE_LIMITED');
      }
    }
    assert.deepEqual(statuses.slice(0, 2), [202, 202]);
    assert.equal(statuses[3], 429);
    assert.equal(retryAfter, '1');
    const body = JSON.stringify({});
    assert.equal((await post(events('keyed_limited'), body, auth())).status, 202);
    const limited = await post(events('keyed_limited'), body, auth());
    assert.equal(limited.status, 429);
    assert.match(errorOf(limited.body).message, /key [0-9a-f]{12} is over its rate limit/);
  });

  it('drops retried events by id and replays the answer to a retried Idempotency-Key', async () => {
    const body = JSON.stringify([
      { id: 'r-1', user: 'a', amount: 1 },
      { id: 'r-2', user: 'a', amount: 2 },
    ]);
    const before = await t.count('events.orders');
    assert.equal((await post(events('orders'), body, auth())).body.duplicates, 0);
    const retry = await post(events('orders'), body, auth());
    assert.equal(retry.status, 202);
    assert.deepEqual(retry.body, { accepted: 2, duplicates: 2, ids: ['r-1', 'r-2'] });
    const within = await post(
      events('orders'),
      JSON.stringify([
        { id: 'r-3', user: 'a', amount: 1 },
        { id: 'r-3', user: 'a', amount: 1 },
      ]),
      auth(),
    );
    assert.equal(within.body.duplicates, 1);
    assert.equal(await t.count('events.orders'), before + 3);

    // Concurrent retries of the same ids: one append.
    const concurrent = JSON.stringify([{ id: 'c-1', user: 'a', amount: 1 }]);
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => post(events('orders'), concurrent, auth())),
    );
    assert.ok(answers.every((a) => a.status === 202));
    assert.equal(answers.filter((a) => a.body.duplicates === 0).length, 1);
    assert.equal(await t.count('events.orders'), before + 4);

    const batch = JSON.stringify([
      { user: 'no-id', amount: 1 },
      { user: 'no-id', amount: 2 },
    ]);
    const headers = { ...auth(), 'idempotency-key': 'batch-0001' };
    const first = await post(events('orders'), batch, headers);
    const second = await post(events('orders'), batch, headers);
    assert.equal(second.status, 202);
    assert.equal(second.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(second.body, first.body, 'the same answer, the same generated ids');
    assert.equal(await t.count('events.orders'), before + 6);
    const conflict = await post(events('orders'), JSON.stringify([{ user: 'other', amount: 1 }]), headers);
    assert.equal(conflict.status, 422);
    assert.equal(errorOf(conflict.body).code, 'IDEMPOTENCY_CONFLICT');
    // Another client's key has a scope of its own: the same Idempotency-Key is a new request there, and
    // taking a key first cannot refuse or answer another client's request.
    const otherClient = await t.key(['orders']);
    const theirs = await post(events('orders'), JSON.stringify([{ user: 'theirs', amount: 1 }]), {
      ...json,
      authorization: `Bearer ${otherClient}`,
      'idempotency-key': 'batch-0001',
    });
    assert.equal(theirs.status, 202);
    assert.equal(theirs.headers.get('idempotent-replayed'), null);
    assert.equal(await t.count('events.orders'), before + 7);
    assert.equal(
      (await post(events('orders'), batch, { ...auth(), 'idempotency-key': 'bad key with spaces' })).status,
      400,
    );
  });

  it('verifies HMAC signatures over the raw body (GitHub and Stripe formats)', async () => {
    const body = JSON.stringify({ action: 'opened', number: 1 });
    const bytes = new TextEncoder().encode(body);
    const signature = `sha256=${createHash('sha256').update('unused').digest('hex')}`;
    assert.equal(
      (await post(events('hooks'), body, { ...json, 'x-hub-signature-256': signature })).status,
      401,
    );
    assert.equal((await post(events('hooks'), body)).status, 401);
    const good = sign({ secret: 'whsec', format: 'github' }, bytes);
    const accepted = await post(events('hooks'), body, { ...json, 'x-hub-signature-256': good });
    assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
    const gz = await post(events('hooks'), gzipSync(body), {
      ...json,
      'content-encoding': 'gzip',
      'x-hub-signature-256': good,
    });
    assert.equal(gz.status, 202, 'the signature covers the decoded body');
    const stripe = sign({ secret: 'whsec', format: 'stripe' }, bytes);
    assert.equal((await post(events('stripe'), body, { ...json, 'stripe-signature': stripe })).status, 202);
    const tampered = stripe.slice(0, -1) + (stripe.endsWith('0') ? '1' : '0');
    assert.equal((await post(events('stripe'), body, { ...json, 'stripe-signature': tampered })).status, 401);
  });

  it('answers CORS preflights from allowed origins and refuses other origins', async () => {
    const preflight = await fetch(events('browser'), {
      method: 'OPTIONS',
      headers: { origin: 'https://shop.example.com', 'access-control-request-method': 'POST' },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), 'https://shop.example.com');
    assert.match(preflight.headers.get('access-control-allow-headers')!, /idempotency-key/);
    assert.match(preflight.headers.get('access-control-allow-methods')!, /POST/);
    const denied = await fetch(events('browser'), {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example' },
    });
    assert.equal(denied.status, 403);
    assert.equal(denied.headers.get('access-control-allow-origin'), null);
    const sent = await post(events('browser'), '{"page":"/"}', {
      ...json,
      origin: 'https://shop.example.com',
    });
    assert.equal(sent.status, 202);
    assert.equal(sent.headers.get('access-control-allow-origin'), 'https://shop.example.com');
    assert.equal(
      (await post(events('browser'), '{}', { ...json, origin: 'https://evil.example' })).status,
      403,
    );
    // An origin no browser sends is refused, even one that is an allowed origin with slashes after it.
    for (const origin of ['https://shop.example.com', 'https://a'].map((o) => o + '/'.repeat(8000))) {
      const refused = await post(events('browser'), '{}', { ...json, origin: origin + 'x' });
      assert.equal(refused.status, 403);
      assert.equal((await post(events('browser'), '{}', { ...json, origin })).status, 403);
    }
  });

  it('sends security headers on every response', async () => {
    for (const response of [
      await fetch(`${t.url}/healthz`),
      await fetch(events('nope'), { method: 'POST' }),
    ]) {
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(
        response.headers.get('content-security-policy'),
        "default-src 'none'; frame-ancestors 'none'",
      );
      assert.equal(response.headers.get('cache-control'), 'no-store');
    }
  });

  it("answers the router's errors in the API's shape, with the security headers, and counts them", async () => {
    const unmatched = async (status: number) => {
      const metrics = await (await fetch(`${t.url}/metrics`)).text();
      const line = new RegExp(
        `tributary_http_requests_total\\{route="unmatched",stream="-",status="${status}"\\} (\\d+)`,
      );
      return Number(line.exec(metrics)?.[1] ?? 0);
    };
    const before = { 400: await unmatched(400), 404: await unmatched(404) };
    const badPath = await fetch(`${t.url}/v1/streams/%E0%A4%A/events`, {
      method: 'POST',
      headers: json,
      body: '{}',
    });
    assert.equal(badPath.status, 400);
    assert.equal(errorOf((await badPath.json()) as Record<string, unknown>).code, 'INVALID_INPUT');
    assert.equal(badPath.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(badPath.headers.get('cache-control'), 'no-store');
    // Over the router's parameter length: the preflight gets what the POST gets.
    const long = events('s'.repeat(300));
    for (const method of ['POST', 'OPTIONS']) {
      const response = await fetch(long, {
        method,
        headers: { ...json, origin: 'https://shop.example.com' },
        ...(method === 'POST' ? { body: '{}' } : {}),
      });
      assert.equal(response.status, 404, method);
      const error = errorOf((await response.json()) as Record<string, unknown>);
      assert.equal(error.code, 'STREAM_NOT_FOUND', method);
      assert.match(error.message, /^no stream named "s{100}"$/, method);
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff', method);
    }
    assert.equal(await unmatched(400), before[400] + 1);
    assert.equal(await unmatched(404), before[404] + 1, 'the POST is counted under its route');
  });

  it('maps Segment calls onto the configured stream, with the write key as basic auth or in the body', async () => {
    const basic = `Basic ${Buffer.from(`${key}:`).toString('base64')}`;
    const track = await post(
      `${t.url}/v1/track`,
      JSON.stringify({
        userId: 'u1',
        event: 'Order Completed',
        messageId: 'm-1',
        properties: { total: 9 },
        timestamp: '2026-01-01T00:00:00Z',
        sentAt: '2026-01-01T00:00:05Z',
      }),
      { ...json, authorization: basic },
    );
    assert.equal(track.status, 200, JSON.stringify(track.body));
    assert.equal(track.body.success, true);
    const batch = await post(
      `${t.url}/v1/batch`,
      JSON.stringify({
        batch: [
          { type: 'identify', userId: 'u1', traits: { plan: 'pro' }, messageId: 'm-2' },
          { type: 'page', anonymousId: 'a1', name: 'Home', messageId: 'm-3' },
          { type: 'track', userId: 'u1', event: 'Order Completed', messageId: 'm-1' },
        ],
        context: { library: { name: 'analytics-node' } },
      }),
      { ...json, authorization: basic },
    );
    assert.equal(batch.status, 200);
    assert.equal(batch.body.duplicates, 1, 'messageId m-1 again');
    const browser = await post(`${t.url}/v1/p`, JSON.stringify({ anonymousId: 'a2', writeKey: key }), {
      'content-type': 'text/plain',
    });
    assert.equal(browser.status, 200);
    const stored = await t.values('events.web');
    assert.deepEqual(
      stored.map((e) => e.type),
      ['track', 'identify', 'page', 'page'],
    );
    assert.ok(!JSON.stringify(stored).includes(key), 'the write key is never stored');
    const tracked = stored[0]!;
    assert.equal(tracked.originalTimestamp, '2026-01-01T00:00:00Z');
    const skew = Date.parse(tracked.receivedAt as string) - Date.parse(tracked.timestamp as string);
    assert.equal(skew, 5000, 'timestamp corrected for the client clock');
    assert.deepEqual((stored[1]!.context as Record<string, unknown>).library, { name: 'analytics-node' });
    assert.equal((await post(`${t.url}/v1/track`, JSON.stringify({ userId: 'u1', event: 'x' }))).status, 401);
    const invalid = await post(`${t.url}/v1/track`, JSON.stringify({ event: 'x' }), {
      ...json,
      authorization: basic,
    });
    assert.equal(invalid.status, 400);
    assert.equal(errorOf(invalid.body).events?.[0]?.errors[0]?.path, '/userId');
    // A call is one object: an array is refused, whatever its length (/v1/batch takes several calls).
    for (const length of [1, 2]) {
      const calls = Array.from({ length }, (_, i) => ({ userId: 'u1', event: 'x', messageId: `arr-${i}` }));
      const array = await post(`${t.url}/v1/track`, JSON.stringify(calls), { ...json, authorization: basic });
      assert.equal(array.status, 400, `${length} call(s) in an array`);
      assert.equal(errorOf(array.body).message, 'a Segment call must be a JSON object, not an array');
      assert.match(errorOf(array.body).hint ?? '', /\/v1\/batch/);
    }
    // Not JSON at all: what a Segment call is, not the events endpoint's forms.
    const garbled = await post(`${t.url}/v1/track`, '{"userId": ', { ...json, authorization: basic });
    assert.equal(garbled.status, 400);
    assert.equal(
      errorOf(garbled.body).hint,
      'send one call as a JSON object; several go to /v1/batch as {"batch": [calls…]}',
    );
    // A timestamp and a sentAt so far apart that the corrected time is no date: the event keeps its own.
    const extreme = await post(
      `${t.url}/v1/track`,
      JSON.stringify({
        userId: 'u9',
        event: 'e',
        messageId: 'm-9',
        timestamp: '+275760-09-13T00:00:00.000Z',
        sentAt: '2020-01-01T00:00:00Z',
      }),
      { ...json, authorization: basic },
    );
    assert.equal(extreme.status, 200, JSON.stringify(extreme.body));
    assert.equal((await t.values('events.web')).at(-1)?.timestamp, '+275760-09-13T00:00:00.000Z');
  });

  it('serves /healthz, /readyz, /metrics and /openapi.json', async () => {
    assert.deepEqual(await (await fetch(`${t.url}/healthz`)).json(), { status: 'ok' });
    const ready = await fetch(`${t.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(((await ready.json()) as { components: Record<string, unknown> }).components, {
      log: { status: 'ok' },
      catalog: { status: 'ok' },
      'dedupe store': { status: 'ok' },
    });
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    assert.match(
      metrics,
      /tributary_http_requests_total\{route="\/v1\/streams\/:stream\/events",stream="orders",status="202"\} \d+/,
    );
    assert.match(metrics, /tributary_http_requests_total\{[^}]*stream="-",status="404"\}/);
    assert.match(metrics, /tributary_ingest_events_accepted_total\{stream="orders"\} \d+/);
    assert.match(metrics, /tributary_ingest_events_dlq_total\{stream="lenient"\} 2/);
    assert.match(metrics, /tributary_ingest_log_append_seconds_bucket/);
    assert.match(metrics, /tributary_http_request_duration_seconds_bucket/);
    assert.doesNotMatch(metrics, /stream="nope"/, 'no label from untrusted input');
    const openapi = (await (await fetch(`${t.url}/openapi.json`)).json()) as {
      openapi: string;
      paths: Record<string, unknown>;
    };
    assert.equal(openapi.openapi, '3.1.0');
    assert.ok(openapi.paths['/v1/streams/{stream}/events']);
    assert.ok(openapi.paths['/v1/track']);
    assert.ok(openapi.paths['/v1/query'] && openapi.paths['/v1/tables/{table}/snapshots'], 'the query API');
  });
});

describe('query API', () => {
  it(
    'answers read-only SQL and table listings for keys with the query role only',
    { timeout: 60_000 },
    async () => {
      const t = await startTestServer({ yaml: 'streams:\n  s: {}\n' });
      try {
        const query = await t.key(['*'], 'query');
        const ingest = await t.key(['s']);
        const ask = (key: string | undefined, body: string, type = 'application/json') =>
          fetch(`${t.url}/v1/query`, {
            method: 'POST',
            headers: { 'content-type': type, ...(key ? { authorization: `Bearer ${key}` } : {}) },
            body,
          });
        assert.equal((await ask(undefined, '{"sql":"select 1"}')).status, 401);
        assert.equal((await ask(ingest, '{"sql":"select 1"}')).status, 403);
        const answer = await ask(query, '{"sql":"select 42 as answer"}');
        assert.equal(answer.status, 200);
        assert.deepEqual(((await answer.json()) as { rows: unknown[] }).rows, [{ answer: 42 }]);
        const text = await ask(query, 'select 1 as one', 'text/plain');
        assert.equal(text.status, 200);
        assert.equal((await ask(query, '{"sql":"drop table x"}')).status, 400, 'read-only');
        assert.equal((await ask(query, '<sql/>', 'text/xml')).status, 415);
        // What curl -d sends unless told otherwise: the hint says which header to set.
        const form = await ask(query, '{"sql": "select 1"}', 'application/x-www-form-urlencoded');
        assert.equal(form.status, 415);
        assert.equal(
          ((await form.json()) as { error: { hint: string } }).error.hint,
          'set Content-Type: application/json (curl -d sends application/x-www-form-urlencoded)',
        );
        const tables = await fetch(`${t.url}/v1/tables`, { headers: { authorization: `Bearer ${query}` } });
        assert.equal(tables.status, 200);
        const shop = await t.key(['shop.*'], 'query');
        assert.equal((await ask(shop, '{"sql":"select 1 as one"}')).status, 200);
        const refused = await ask(shop, '{"sql":"select * from hr.salaries"}');
        assert.equal(refused.status, 403, 'a table the key is not granted');
        assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'AUTH_FORBIDDEN');
        const described = await fetch(`${t.url}/v1/tables/hr.salaries`, {
          headers: { authorization: `Bearer ${shop}` },
        });
        assert.equal(described.status, 403);
      } finally {
        await t.close();
      }
    },
  );
});

describe('TLS', () => {
  /** A self-signed certificate for 127.0.0.1 as project files; the test is skipped if openssl cannot make one. */
  function certificateFiles(t: TestContext): Record<string, string> | undefined {
    const dir = mkdtempSync(path.join(tmpdir(), 'tributary-tls-'));
    const made = spawnSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '30',
        '-subj',
        '/CN=127.0.0.1',
        '-keyout',
        path.join(dir, 'key.pem'),
        '-out',
        path.join(dir, 'cert.pem'),
      ],
      { encoding: 'utf8' },
    );
    if (made.status !== 0) {
      t.skip(`openssl cannot make a test certificate: ${made.error?.message ?? made.stderr}`);
      return undefined;
    }
    return {
      'cert.pem': readFileSync(path.join(dir, 'cert.pem'), 'utf8'),
      'key.pem': readFileSync(path.join(dir, 'key.pem'), 'utf8'),
    };
  }

  it('serves HTTPS with the configured certificate and sends Strict-Transport-Security', async (t) => {
    const files = certificateFiles(t);
    if (!files) return;
    // On one thread, and on two (each of the 12 requests on its own connection: both threads answer).
    for (const threads of [1, 2]) {
      const server = await startTestServer({
        yaml: `server:\n  threads: ${threads}\n  tls: {cert: cert.pem, key: key.pem}\nstreams:\n  s: {auth: none}\n`,
        files,
        threadedLog: threads > 1,
      });
      const send = (url: string, method: string, body?: string) =>
        new Promise<{ status: number; hsts: string | undefined }>((resolve, reject) => {
          const request = httpsRequest(
            url,
            {
              method,
              agent: false,
              rejectUnauthorized: false,
              headers: { 'content-type': 'application/json' },
            },
            (res) => {
              res.resume();
              res.on('end', () =>
                resolve({
                  status: res.statusCode ?? 0,
                  hsts: res.headers['strict-transport-security'],
                }),
              );
            },
          );
          request.on('error', reject);
          request.end(body);
        });
      try {
        assert.match(server.url, /^https:\/\//);
        for (let i = 0; i < 12; i++) {
          const response = await send(`${server.url}/v1/streams/s/events`, 'POST', '{"over":"tls"}');
          assert.equal(response.status, 202, `threads: ${threads}`);
          assert.match(response.hsts ?? '', /max-age=/);
          const health = await send(`${server.url}/healthz`, 'GET');
          assert.equal(health.status, 200);
          assert.match(health.hsts ?? '', /max-age=/);
        }
        assert.equal(await server.count('events.s'), 12);
      } finally {
        await server.close();
      }
    }
  });

  it('closes a connection that does not complete the TLS handshake within request_timeout', async (t) => {
    const files = certificateFiles(t);
    if (!files) return;
    for (const threads of [1, 2]) {
      const server = await startTestServer({
        yaml: `server:\n  threads: ${threads}\n  request_timeout: 1s\n  tls: {cert: cert.pem, key: key.pem}\nstreams:\n  s: {auth: none}\n`,
        files,
        threadedLog: threads > 1,
      });
      try {
        // Connections that send nothing, several so that both threads get some. Node's default is 120 s.
        const started = performance.now();
        await Promise.all(
          Array.from({ length: 4 }, async () => {
            const socket = connect(server.server.port, '127.0.0.1');
            socket.on('error', () => {}); // a reset closes it too
            socket.setTimeout(10_000, () => socket.destroy());
            await once(socket, 'close');
          }),
        );
        const seconds = (performance.now() - started) / 1000;
        assert.ok(seconds < 10, `threads: ${threads}: the server held the connections for ${seconds} s`);
      } finally {
        await server.close();
      }
    }
  });
});

describe('trusted proxies, backpressure and readiness', () => {
  it('believes X-Forwarded-For only from trusted proxies', async () => {
    const yaml = (trusted: string) =>
      `server:\n  trusted_proxies: [${trusted}]\nstreams:\n  s:\n    auth: none\n    enrich: {client_ip: full}\n`;
    for (const [trusted, expected] of [
      ['127.0.0.1/32', '203.0.113.9'],
      ['10.0.0.1', '127.0.0.1'],
    ] as const) {
      const t = await startTestServer({ yaml: yaml(trusted) });
      try {
        const response = await post(`${t.url}/v1/streams/s/events`, '{}', {
          ...json,
          'x-forwarded-for': '203.0.113.9',
        });
        assert.equal(response.status, 202);
        assert.equal((await t.values('events.s'))[0]!._client_ip, expected, `trusted ${trusted}`);
      } finally {
        await t.close();
      }
    }
  });

  it('counts IPv6 clients by their /64 for the per-IP rate limit', async () => {
    const t = await startTestServer({
      yaml:
        'server:\n  trusted_proxies: [127.0.0.1/32]\nstreams:\n  s:\n    auth: none\n' +
        '    enrich: {client_ip: full}\n    rate_limit: {per_ip: {requests_per_second: 0.01, burst: 2}}\n',
    });
    try {
      const from = async (client: string) =>
        (await post(`${t.url}/v1/streams/s/events`, '{}', { ...json, 'x-forwarded-for': client })).status;
      // Three addresses of one /64: one bucket of two.
      assert.deepEqual(
        [await from('2001:db8:0:1::1'), await from('2001:db8:0:1::2'), await from('2001:db8:0:1:a:b:c:d')],
        [202, 202, 429],
      );
      assert.equal(await from('2001:db8:0:2::1'), 202, 'another /64');
      assert.deepEqual([await from('203.0.113.9'), await from('::ffff:cb00:7109')], [202, 202]);
      assert.equal(await from('::ffff:203.0.113.9'), 429, 'IPv4-mapped: the IPv4 address');
      assert.deepEqual(
        (await t.values('events.s')).map((e) => e._client_ip).sort(),
        ['2001:db8:0:1::1', '2001:db8:0:1::2', '2001:db8:0:2::1', '203.0.113.9', '203.0.113.9'].sort(),
        'events keep the whole address, an IPv4-mapped one (in any spelling) as the IPv4 address',
      );
    } finally {
      await t.close();
    }
  });

  it('answers 503 with Retry-After when too many appends are in flight or the log fails, storing nothing', async () => {
    let release: () => void = () => undefined;
    let gate: Promise<void> = Promise.resolve();
    let fail = false;
    const t = await startTestServer({
      yaml: 'server:\n  max_pending_appends: 1\nstreams:\n  s:\n    auth: none\n',
      wrapLog: (log): Log =>
        new Proxy(log, {
          get(target, property, receiver) {
            if (property === 'append') {
              return async (...args: Parameters<Log['append']>) => {
                if (fail) throw new TributaryError('STORAGE_IO', 'disk on fire', { retryable: true });
                await gate;
                return target.append(...args);
              };
            }
            const value = Reflect.get(target, property, receiver) as unknown;
            return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
          },
        }),
    });
    try {
      gate = new Promise((resolve) => (release = resolve));
      const slow = post(`${t.url}/v1/streams/s/events`, '{"n":1}');
      await sleep(100);
      const refused = await post(`${t.url}/v1/streams/s/events`, '{"n":2}');
      assert.equal(refused.status, 503);
      const pending = await (await fetch(`${t.url}/metrics`)).text();
      assert.match(pending, /tributary_ingest_pending_appends 1\n/, 'read when scraped');
      assert.match(pending, /tributary_ingest_pending_bytes [1-9]\d*\n/);
      assert.equal(refused.headers.get('retry-after'), '1');
      assert.equal(errorOf(refused.body).code, 'OVERLOADED');
      release();
      assert.equal((await slow).status, 202);
      fail = true;
      const failed = await post(`${t.url}/v1/streams/s/events`, '{"n":3}');
      assert.equal(failed.status, 503);
      assert.equal(failed.headers.get('retry-after'), '1');
      assert.equal(await t.count('events.s'), 1);
    } finally {
      release();
      await t.close();
    }
  });

  it('is ready only when no pipeline failed or stalled, naming the unhealthy one', async () => {
    let status = 'running';
    let lastCommitAt = Date.now();
    const runner = {
      name: 'orders',
      get status() {
        return status;
      },
      get error() {
        return new Error('sink exploded');
      },
      get lastCommitAt() {
        return lastCommitAt;
      },
    };
    const t = await startTestServer({
      yaml: 'server:\n  stall_after: 1s\nstreams:\n  s:\n    auth: none\n',
      pipelines: () => [{ runner: runner as never, topic: 'events.s' }],
    });
    try {
      assert.equal((await fetch(`${t.url}/readyz`)).status, 200);
      await post(`${t.url}/v1/streams/s/events`, '{}');
      lastCommitAt = Date.now() - 5000;
      await sleep(1100);
      const stalled = await fetch(`${t.url}/readyz`);
      assert.equal(stalled.status, 503);
      const body = (await stalled.json()) as {
        unhealthy: string[];
        components: Record<string, { detail: string }>;
      };
      assert.deepEqual(body.unhealthy, ['pipeline orders']);
      assert.match(body.components['pipeline orders']!.detail, /stalled: 1 record\(s\) waiting/);
      status = 'failed';
      const failed = (await (await fetch(`${t.url}/readyz`)).json()) as {
        components: Record<string, { detail: string }>;
      };
      assert.match(failed.components['pipeline orders']!.detail, /failed: sink exploded/);
      // Ready to take events all the same: what a Kubernetes readiness probe asks (deploy/kubernetes).
      const ingest = await fetch(`${t.url}/readyz?exclude=pipelines,sources`);
      assert.equal(ingest.status, 200);
      const ingestBody = (await ingest.json()) as { components: object; excluded: string[] };
      assert.equal('pipeline orders' in ingestBody.components, false);
      assert.deepEqual(ingestBody.excluded, ['pipelines', 'sources']);
      assert.equal((await fetch(`${t.url}/readyz?exclude=pipelines&exclude=sources`)).status, 200);
      const unknown = await fetch(`${t.url}/readyz?exclude=log`);
      assert.equal(unknown.status, 400);
      const { error } = (await unknown.json()) as { error: { message: string } };
      assert.equal(error.message, 'exclude: "log" is not something /readyz can leave out');
    } finally {
      await t.close();
    }
  });
});

describe('stream retention', () => {
  it('keeps a stream topic as long as its retention says, and removes what is past it', async () => {
    const t = await startTestServer({
      yaml: `
server:
  rate_limit:
    per_key: {requests_per_second: 0}
    per_ip: {requests_per_second: 0}
streams:
  clicks:
    auth: none
    partitions: 1
    retention: {max_bytes: 2KiB, max_age: 7d}
`,
    });
    try {
      for (const topic of ['events.clicks', 'events.clicks.dlq']) {
        const info = await t.log.describeTopic(topic);
        assert.equal(info?.retentionBytes, 2048, topic);
        assert.equal(info?.retentionMs, 7 * 86_400_000, topic);
      }
      for (let i = 0; i < 20; i++) {
        const body = JSON.stringify(
          Array.from({ length: 10 }, (_, j) => ({ id: `e${i}-${j}`, page: 'x'.repeat(50) })),
        );
        assert.equal((await post(`${t.url}/v1/streams/clicks/events`, body)).status, 202);
      }
      const before = (await t.records('events.clicks')).length;
      assert.equal(before, 200);
      assert.ok((await t.log.enforceRetention()) > 0, 'records past max_bytes are removed');
      const [partition] = await t.log.offsets('events.clicks');
      assert.ok(partition!.start > 0 && partition!.end === 200, JSON.stringify(partition));
    } finally {
      await t.close();
    }
  });
});

describe('integers beyond ±2^53', () => {
  it('stores every digit, whatever way the event is stored, and takes such an integer as an event id', async () => {
    const t = await startTestServer({
      yaml: `
server:
  rate_limit: {per_key: {requests_per_second: 0}, per_ip: {requests_per_second: 0}}
  segment: {stream: web}
streams:
  open: {auth: none, schema: ids.schema.json, partition_key: user.id}
  web: {}
`,
      files: {
        'ids.schema.json': JSON.stringify({
          type: 'object',
          properties: { user: { type: 'object', properties: { id: { type: 'integer', minimum: 0 } } } },
        }),
      },
    });
    try {
      const url = `${t.url}/v1/streams/open/events`;
      // A JSON body is stored as sent; NDJSON lines, and events holding a field the server adds, are
      // serialized again from their values.
      assert.equal((await post(url, '{"user": {"id": 1234567890123456789}}')).status, 202);
      assert.equal((await post(url, '{"user": {"id": 1234567890123456788}}\n', ndjson)).status, 202);
      assert.equal(
        (await post(url, '{"user": {"id": 18446744073709551615}, "_received_at": "then"}')).status,
        202,
      );
      const refused = await post(url, '{"user": {"id": -1234567890123456789}}');
      assert.equal(refused.status, 400, 'the schema sees the number, and its sign');
      assert.deepEqual(errorOf(refused.body).events?.[0]?.errors, [
        { path: '/user/id', message: 'must be >= 0' },
      ]);
      // Ids that round to one double are two ids; the same id twice is stored once.
      const ids = await post(
        url,
        '[{"id": 9007199254740993}, {"id": 9007199254740992}, {"id": 9007199254740993}]',
      );
      assert.equal(ids.status, 202);
      assert.deepEqual(
        [ids.body.accepted, ids.body.duplicates, ids.body.ids],
        [3, 1, ['9007199254740993', '9007199254740992', '9007199254740993']],
      );
      const stored = (await t.records('events.open')).sort(
        (a, b) => a.timestamp - b.timestamp || a.offset - b.offset,
      );
      const texts = stored.map((r) => new TextDecoder().decode(r.value));
      for (const digits of [
        '1234567890123456789',
        '1234567890123456788',
        '18446744073709551615',
        '9007199254740993',
        '9007199254740992',
      ])
        assert.ok(
          texts.some((text) => new RegExp(`:\\s*${digits}[,}]`).test(text)),
          `${digits} in ${texts.join('\n')}`,
        );
      assert.ok(
        stored.some((r) => r.key === '1234567890123456789') &&
          stored.some((r) => r.key === '1234567890123456788'),
        'partition keys are the exact digits',
      );

      const key = await t.key(['web']);
      const track = await fetch(`${t.url}/v1/track`, {
        method: 'POST',
        headers: { ...json, authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}` },
        body: '{"event": "order", "userId": "u1", "properties": {"order_id": 1234567890123456789}}',
      });
      assert.equal(track.status, 200);
      const [segment] = await t.records('events.web');
      assert.match(new TextDecoder().decode(segment!.value), /"order_id":1234567890123456789[,}]/);
      // Such an integer is read with a reviver, which recursed past the stack on a deep event.
      const deep = await fetch(`${t.url}/v1/batch`, {
        method: 'POST',
        headers: { ...json, authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}` },
        body: `{"batch": [{"type": "track", "event": "order", "userId": "u1", "properties": {"order_id": 1234567890123456789}}, {"type": "track", "event": "deep", "userId": "u1", "properties": {"a": ${'['.repeat(20_000)}${']'.repeat(20_000)}}}]}`,
      });
      const deepError = errorOf((await deep.json()) as Record<string, unknown>);
      assert.equal(deep.status, 400);
      assert.deepEqual(
        deepError.events?.map((e) => e.index),
        [1],
        'the deep event alone is invalid',
      );
      assert.match(JSON.stringify(deepError.events), /deeper than 64 levels/);
    } finally {
      await t.close();
    }
  });
});
