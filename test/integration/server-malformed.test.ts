/**
 * Untrusted bodies: truncated JSON, deep nesting, huge strings, invalid UTF-8, wrong types, empty bodies,
 * lying Content-Length, and a few hundred random mutations of valid requests. The server never crashes,
 * answers each with 202 or a 4xx error body, and never half-accepts: a refused request appends nothing,
 * an accepted one exactly what it reports.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../../src/server/test-support.ts';

const SCHEMA = JSON.stringify({
  type: 'object',
  required: ['user'],
  properties: { user: { type: 'string', maxLength: 100 }, n: { type: 'integer' }, tags: { type: 'array' } },
});

describe('malformed bodies', () => {
  let t: TestServer;
  let total = 0;

  before(async () => {
    t = await startTestServer({
      yaml: `
server:
  body_limit: 256KiB
  max_depth: 16
  rate_limit:
    per_ip: {requests_per_second: 0}
streams:
  strict:
    auth: none
    schema: schema.json
  loose:
    auth: none
  lenient:
    auth: none
    on_invalid: dlq
`,
      files: { 'schema.json': SCHEMA },
    });
  });
  after(async () => t.close());

  /** Posts and checks the outcome against the log: nothing appended unless 202, then exactly `accepted`. */
  async function send(
    stream: string,
    body: string | Uint8Array,
    headers: Record<string, string> = { 'content-type': 'application/json' },
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    const topic = `events.${stream}`;
    const before = await t.count(topic);
    const response = await fetch(`${t.url}/v1/streams/${stream}/events`, { method: 'POST', headers, body });
    const text = await response.text();
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      assert.fail(`status ${response.status} with a body that is not JSON: ${text.slice(0, 200)}`);
    }
    const after = await t.count(topic);
    if (response.status === 202) {
      const fresh = (parsed.accepted as number) - (parsed.duplicates as number);
      assert.equal(after - before, fresh, 'appended exactly what was acknowledged');
      total += fresh;
    } else {
      assert.ok(response.status >= 400 && response.status < 500, `status ${response.status}: ${text}`);
      assert.equal(typeof (parsed.error as { code?: unknown })?.code, 'string', text);
      assert.equal(after, before, `nothing appended for a ${response.status}`);
    }
    return { status: response.status, body: parsed };
  }

  it('refuses truncated JSON, wrong types and empty bodies with 400', async () => {
    const cases = [
      '{"user": "a", "n": [1, 2',
      '[{"user":"a"},',
      '{"user": "a"} trailing',
      '42',
      '"just a string"',
      'null',
      'true',
      '[1, 2]',
      '[null]',
      '[[]]',
      '',
      '   \n\t ',
      '[]',
      '{"user": "a\u0000b"',
      '\u0000',
      '{"user": 5}',
      '{"user": "a", "n": 1.5}',
      '{"user": "a", "id": {"nested": true}}',
      '{"user": "a", "id": ""}',
      `{"user": "a", "id": "${'x'.repeat(300)}"}`,
    ];
    for (const body of cases) {
      const { status } = await send('strict', body);
      assert.equal(status, 400, JSON.stringify(body.slice(0, 60)));
    }
    for (const body of ['{"a":1}\n{"a":', '\n\n', 'not json at all']) {
      assert.equal((await send('strict', body, { 'content-type': 'application/x-ndjson' })).status, 400);
    }
  });

  it('refuses deep nesting without recursing, and accepts nesting within the limit', async () => {
    const deepObject = '{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000);
    const deep = await send('loose', deepObject);
    assert.equal(deep.status, 400);
    const deepArray = `[${'['.repeat(50_000)}${']'.repeat(50_000)}]`;
    assert.equal((await send('loose', deepArray)).status, 400);
    const fine = '{"a":'.repeat(15) + '1' + '}'.repeat(15);
    assert.equal((await send('loose', fine)).status, 202);
    const tooDeepInline = `{"user":"a","tags":${'['.repeat(20)}${']'.repeat(20)}}`;
    const refused = await send('strict', tooDeepInline);
    assert.match(JSON.stringify(refused.body), /deeper than 16 levels/);
    // An integer beyond 2^53 is read with a reviver, which recursed past the stack at such depths.
    const ok = '{"name":"ok","n":12345678901234567890}';
    const deepBeside = `[${ok},{"name":"deep","a":${'['.repeat(20_000)}${']'.repeat(20_000)}}]`;
    const split = await send('lenient', deepBeside);
    assert.equal(split.status, 202, JSON.stringify(split.body));
    assert.equal(split.body.accepted, 1);
    assert.match(JSON.stringify(split.body.dlq), /deeper than 16 levels/);
    const stored = (await t.records('events.lenient')).at(-1)!;
    assert.match(new TextDecoder().decode(stored.value), /^\{"name":"ok","n":12345678901234567890[,}]/);
  });

  it('handles huge strings: within the body limit accepted, beyond it 413', async () => {
    assert.equal((await send('loose', JSON.stringify({ big: 'x'.repeat(200 * 1024) }))).status, 202);
    assert.equal((await send('loose', JSON.stringify({ big: 'x'.repeat(300 * 1024) }))).status, 413);
    assert.equal((await send('strict', JSON.stringify({ user: 'y'.repeat(1000) }))).status, 400, 'maxLength');
  });

  it('refuses invalid UTF-8 and broken gzip; keeps escaped oddities intact', async () => {
    const invalid = Buffer.concat([
      Buffer.from('{"user":"'),
      Buffer.from([0xc3, 0x28, 0xff]),
      Buffer.from('"}'),
    ]);
    const refused = await send('strict', invalid);
    assert.equal(refused.status, 400);
    assert.match((refused.body.error as { message: string }).message, /UTF-8/);
    const overlong = Buffer.concat([Buffer.from('{"user":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]);
    assert.equal((await send('strict', overlong)).status, 400);
    const truncatedGzip = gzipSync('{"user":"a"}').subarray(0, 10);
    assert.equal(
      (
        await send('strict', truncatedGzip, {
          'content-type': 'application/json',
          'content-encoding': 'gzip',
        })
      ).status,
      400,
    );
    const odd = await send(
      'strict',
      '\ufeff{"user":"\\ud800 \\u0000 \u2028 😀","__proto__":{"polluted":true}}',
    );
    assert.equal(odd.status, 202);
    assert.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution');
    const stored = (await t.values('events.strict')).at(-1)!;
    assert.equal(stored.user, '\ud800 \u0000 \u2028 😀');
  });

  it('survives lying Content-Length and connections cut mid-body', async () => {
    const raw = (text: string) =>
      new Promise<string>((resolve) => {
        const url = new URL(t.url);
        const socket = connect(Number(url.port), url.hostname, () => socket.end(text));
        let out = '';
        socket.on('data', (chunk: Buffer) => (out += chunk.toString()));
        socket.on('close', () => resolve(out));
        socket.on('error', () => resolve(out));
        socket.setTimeout(3000, () => socket.destroy());
      });
    const head = 'POST /v1/streams/loose/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n';
    const before = await t.count('events.loose');
    await raw(`${head}content-length: 100\r\n\r\n{"cut":`);
    const shorter = await raw(`${head}content-length: 5\r\nconnection: close\r\n\r\n{"a":1}`);
    assert.match(shorter, /^HTTP\/1.1 400/);
    const garbage = await raw('POST /v1/streams/loose/events HTTP/1.1\r\ncontent-length: nope\r\n\r\n{}');
    assert.match(garbage, /^HTTP\/1.1 400[^]*\{"error":\{"code":"INVALID_INPUT"/);
    const chunked = await raw(
      `${head}transfer-encoding: chunked\r\nconnection: close\r\n\r\n7\r\n{"a":1}\r\n0\r\n\r\n`,
    );
    assert.match(chunked, /^HTTP\/1.1 202/);
    const absolute = await raw(
      `${head.replace('/v1/', 'http://x/v1/')}content-length: 7\r\nconnection: close\r\n\r\n{"a":1}`,
    );
    assert.match(absolute, /^HTTP\/1.1 202/, 'the absolute form of the URL');
    // A chunked body has no length to refuse it by: it is refused once it passes the limit.
    const huge = `{"a":"${'x'.repeat(300 * 1024)}"}`;
    const overLimit = await raw(
      `${head}transfer-encoding: chunked\r\n\r\n${huge.length.toString(16)}\r\n${huge}\r\n0\r\n\r\n`,
    );
    assert.match(overLimit, /^HTTP\/1.1 413/);
    assert.equal(await t.count('events.loose'), before + 2);
    total += 2;
    assert.equal((await fetch(`${t.url}/healthz`)).status, 200);
  });

  it('answers a few hundred random mutations of valid requests with 202 or a 4xx, never half-accepting', async () => {
    let seed = 42;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    const valid = JSON.stringify(
      Array.from({ length: 5 }, (_, i) => ({ user: `u${i}`, n: i, tags: ['a', { b: [i] }] })),
    );
    const alphabet = '{}[]":,\\ 0123456789abcdefnulltrue\u0000\u00ff\ud83d';
    const outcomes = new Map<number, number>();
    for (let round = 0; round < 300; round++) {
      let bytes = Buffer.from(valid);
      const mutations = 1 + Math.floor(random() * 4);
      for (let m = 0; m < mutations; m++) {
        const at = Math.floor(random() * bytes.length);
        const kind = random();
        if (kind < 0.3) bytes = bytes.subarray(0, at);
        else if (kind < 0.6) bytes[at] = Math.floor(random() * 256);
        else if (kind < 0.8)
          bytes = Buffer.concat([
            bytes.subarray(0, at),
            Buffer.from(alphabet[Math.floor(random() * alphabet.length)]!),
            bytes.subarray(at),
          ]);
        else
          bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1 + Math.floor(random() * 10))]);
      }
      const format = random() < 0.8 ? 'application/json' : 'application/x-ndjson';
      const { status } = await send(round % 2 ? 'strict' : 'loose', bytes, { 'content-type': format });
      outcomes.set(status, (outcomes.get(status) ?? 0) + 1);
    }
    assert.ok((outcomes.get(400) ?? 0) > 50, JSON.stringify([...outcomes]));
    assert.ok((outcomes.get(202) ?? 0) > 0, JSON.stringify([...outcomes]));
    assert.equal((await fetch(`${t.url}/healthz`)).status, 200);
    const streams = ['strict', 'loose', 'lenient'];
    let stored = 0;
    for (const stream of streams) stored += await t.count(`events.${stream}`);
    assert.equal(stored, total);
  });

  it('answers a client stalled mid-body with 408 on time, and does not wait for it to shut down', async () => {
    const slow = await startTestServer({
      yaml: 'server:\n  request_timeout: 1s\nstreams:\n  s:\n    auth: none\n',
    });
    const url = new URL(slow.url);
    const stall = () => {
      const socket = connect(Number(url.port), url.hostname);
      let out = '';
      socket.on('data', (chunk: Buffer) => (out += chunk.toString()));
      const closed = new Promise<string>((resolve) => socket.on('close', () => resolve(out)));
      socket.on('error', () => undefined);
      socket.write(
        'POST /v1/streams/s/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a":',
      );
      return closed;
    };
    const started = Date.now();
    assert.match(
      await stall(),
      /^HTTP\/1.1 408[^]*\{"error":\{"code":"INVALID_INPUT","message":"the request was not sent in time"/,
    );
    assert.ok(Date.now() - started < 4000, `408 after ${Date.now() - started} ms`);
    const stalled = stall();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closing = Date.now();
    await slow.server.close();
    assert.ok(Date.now() - closing < 4000, `closed after ${Date.now() - closing} ms`);
    await stalled;
    await slow.close();
  });

  it('finishes the append of a request whose client left before it shuts down', async () => {
    const appended: string[] = [];
    const slow = await startTestServer({
      yaml: 'streams:\n  s:\n    auth: none\n',
      wrapLog: (log) =>
        new Proxy(log, {
          get(target, property, receiver) {
            if (property === 'append')
              return async (...args: Parameters<typeof log.append>) => {
                await new Promise((resolve) => setTimeout(resolve, 300));
                appended.push(args[0]);
                return target.append(...args);
              };
            const value = Reflect.get(target, property, receiver) as unknown;
            return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
          },
        }),
    });
    const url = new URL(slow.url);
    const socket = connect(Number(url.port), url.hostname, () =>
      socket.write(
        'POST /v1/streams/s/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{"a":1}',
      ),
    );
    socket.on('error', () => undefined);
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.destroy(); // the client leaves while its append waits
    await new Promise((resolve) => setTimeout(resolve, 20));
    await slow.server.close();
    assert.deepEqual(appended, ['events.s'], 'the append ran before close() resolved');
    assert.equal(await slow.count('events.s'), 1);
    await slow.close();
  });
});
