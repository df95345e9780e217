/**
 * `tributary dlq replay` as a user runs it, with two pipelines on one topic: the records replayed for one
 * reach it once, with the headers they came with, and never the other pipeline, whose file would
 * otherwise hold them twice. (A stream's invalid events: stream-dlq.test.ts.)
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { HEADER_REPLAY_FOR } from '../../src/core/pipeline/runner.ts';
import { EmbeddedLog } from '../../src/log/embedded-log.ts';
import { tributary } from '../cli.ts';

describe('tributary dlq replay with two pipelines on one topic', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'tributary-dlq-replay-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  const ok = async (...args: string[]) => {
    const result = await tributary(args, { cwd: root });
    assert.equal(result.code, 0, `tributary ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  /** A file sink's lines as "n headers", in the order written. */
  const lines = (file: string) =>
    readFileSync(path.join(root, file), 'utf8')
      .trim()
      .split('\n')
      .map((line) => {
        const { value, headers } = JSON.parse(line) as { value: { n: number }; headers: object };
        return `${value.n} ${JSON.stringify(headers)}`;
      });
  const schema = (url: string) =>
    writeFileSync(
      path.join(root, 'pageview.json'),
      JSON.stringify({ type: 'object', required: ['n', 'url'], properties: { url: { type: url } } }),
    );

  it('sends the records back to the pipeline they were rejected by alone', async () => {
    writeFileSync(
      path.join(root, 'tributary.yaml'),
      ['project: replay', 'log: {backend: embedded, partitions: 1}', ''].join('\n'),
    );
    mkdirSync(path.join(root, 'pipelines'));
    const pipeline = (name: string, transforms: string) =>
      writeFileSync(
        path.join(root, 'pipelines', `${name}.yaml`),
        [
          'source: {type: topic, topic: events.pageviews}',
          `transforms: [${transforms}]`,
          `sinks: [{type: file, path: ${name}.ndjson, metadata: true}]`,
          'batch: {interval: 10ms}',
          '',
        ].join('\n'),
      );
    pipeline('bronze_pageviews', '{type: validate, schema: pageview.json}');
    pipeline('archive_pageviews', '');
    schema('string');

    // Records as the HTTP API appends them, with their headers; two have a url the schema refuses.
    const log = await EmbeddedLog.open({ directory: path.join(root, '.tributary', 'log') });
    await log.ensureTopic('events.pageviews', { partitions: 1 });
    await log.append(
      'events.pageviews',
      [0, 1, 2, 3].map((n) => ({
        value: new TextEncoder().encode(JSON.stringify({ n, url: n % 2 ? 7 : `/p/${n}` })),
        headers: { 'tributary-event-id': `e-${n}`, 'tributary-idempotency-key': 'k-1' },
      })),
    );
    await log.close();
    await ok('run', 'bronze_pageviews', '--once');
    await ok('run', 'archive_pageviews', '--once');
    const dlq = async () =>
      (JSON.parse(await ok('dlq', 'list', 'bronze_pageviews', '--json')) as { offset: string }[])
        .map((r) => Number(r.offset))
        .sort();
    assert.deepEqual(await dlq(), [1, 3]);

    schema('integer');
    assert.match(
      await ok('dlq', 'replay', 'bronze_pageviews'),
      /Replayed 2 record\(s\) into events\.pageviews/,
    );
    assert.deepEqual(await dlq(), []);
    await ok('run', 'bronze_pageviews', '--once');
    await ok('run', 'archive_pageviews', '--once');

    const sent = (n: number) =>
      JSON.stringify({ 'tributary-event-id': `e-${n}`, 'tributary-idempotency-key': 'k-1' });
    // The Idempotency-Key named the request that appended the record, which the replay is not.
    const replayed = (n: number) =>
      JSON.stringify({ 'tributary-event-id': `e-${n}`, [HEADER_REPLAY_FOR]: 'bronze_pageviews' });
    // The other pipeline on the topic got each record once.
    assert.deepEqual(
      lines('archive_pageviews.ndjson'),
      [0, 1, 2, 3].map((n) => `${n} ${sent(n)}`),
    );
    assert.deepEqual(lines('bronze_pageviews.ndjson'), [
      `0 ${sent(0)}`,
      `2 ${sent(2)}`,
      `1 ${replayed(1)}`,
      `3 ${replayed(3)}`,
    ]);
  });
});
