/**
 * An HTTP stream's DLQ as a user works with it: invalid events sent to a running server are listed and
 * shown by `tributary dlq`, printed back as the events themselves with the ids they were given, and once
 * fixed, sent to the stream again — twice, and stored once. `topics read` reads a partition from an offset.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, it } from 'node:test';
import { startCli, tributary } from '../cli.ts';

it('lists, shows and gives back a stream’s invalid events to send again', { timeout: 60_000 }, async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'tributary-stream-dlq-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  writeFileSync(
    path.join(root, 'tributary.yaml'),
    [
      'project: stream-dlq',
      'log: {backend: embedded, partitions: 1}',
      'server: {port: 0}',
      'streams:',
      '  orders: {on_invalid: dlq, schema: order.json}',
      '  clicks: {}',
      '',
    ].join('\n'),
  );
  const schema = (amount: string) =>
    writeFileSync(
      path.join(root, 'order.json'),
      JSON.stringify({ type: 'object', required: ['amount'], properties: { amount: { type: amount } } }),
    );
  schema('number');
  const cli = async (...args: string[]) => {
    const result = await tributary(args, { cwd: root });
    assert.equal(result.code, 0, `tributary ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  const key = /trk_\S+/.exec(await cli('keys', 'create', '--stream', 'orders', '--name', 'shop'))![0];
  const post = async (url: string, body: string) => {
    const response = await fetch(`${url}/v1/streams/orders/events`, {
      method: 'POST',
      body,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-ndjson' },
    });
    assert.equal(response.status, 202);
    return (await response.json()) as { accepted: number; duplicates: number; ids: string[] };
  };

  let server = startCli(['serve'], root);
  let sent: { ids: string[] };
  try {
    sent = await post(
      await server.url,
      [
        '{"id":"o-1","amount":5}',
        '{"amount":"12.50","big":12345678901234567890}',
        '{"id":"o-3","amount":"7"}',
      ].join('\n'),
    );
  } finally {
    server.child.kill('SIGTERM');
    await server.exited;
  }
  const given = sent.ids[1]!; // the id the server gave the event sent without one

  const listed = await cli('dlq', 'list', 'orders');
  assert.match(listed, new RegExp(`0:1\\s+o-3\\s+/amount: must be number`));
  assert.match(listed, new RegExp(`0:0\\s+${given}\\s+/amount: must be number`));
  assert.ok(listed.indexOf('o-3') < listed.indexOf(given), `newest first:\n${listed}`);
  assert.equal((await cli('dlq', 'list', 'orders', '--limit', '1')).includes(given), false);
  const shown = JSON.parse(await cli('dlq', 'show', 'orders', '0:1')) as Record<string, unknown>;
  assert.equal(shown.id, 'o-3');
  assert.equal(shown.payload, '{"id":"o-3","amount":"7"}');
  const missing = await tributary(['dlq', 'show', 'orders', '0:7'], { cwd: root });
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /no invalid event of orders at 0:7/);

  // The events themselves, in the order received, each with its id; big integers keep their digits.
  const payloads = await cli('dlq', 'list', 'orders', '--payloads');
  assert.deepEqual(payloads.trim().split('\n'), [
    `{"amount":"12.50","big":12345678901234567890,"id":"${given}"}`,
    '{"id":"o-3","amount":"7"}',
  ]);
  const replay = await tributary(['dlq', 'replay', 'orders'], { cwd: root });
  assert.equal(replay.code, 2);
  assert.match(replay.stderr, /tributary dlq list orders --payloads/);
  const rejecting = await tributary(['dlq', 'list', 'clicks'], { cwd: root });
  assert.equal(rejecting.code, 2);
  assert.match(
    rejecting.stderr,
    /stream clicks refuses invalid events \(on_invalid: reject\): it has no DLQ/,
  );

  // Fixed by the schema (amounts as strings are now valid), sent again twice: stored once.
  schema('string');
  server = startCli(['serve'], root);
  try {
    const url = await server.url;
    const first = await post(url, payloads);
    assert.deepEqual([first.accepted, first.duplicates, first.ids], [2, 0, [given, 'o-3']]);
    const again = await post(url, payloads);
    assert.deepEqual([again.accepted, again.duplicates], [2, 2]);
  } finally {
    server.child.kill('SIGTERM');
    await server.exited;
  }
  const stored = (await cli('topics', 'read', 'events.orders', '--from', '1', '--values'))
    .trim()
    .split('\n')
    .map((line) => (JSON.parse(line) as { id: string }).id);
  assert.deepEqual(stored, [given, 'o-3'], 'o-1, then each fixed event once');
  const last = await cli('topics', 'read', 'events.orders', '--partition', '0', '--last', '1');
  assert.equal((JSON.parse(last) as { offset: number }).offset, 2);
  assert.match(last, /"headers":\{"tributary-event-id":"o-3"/);
});
