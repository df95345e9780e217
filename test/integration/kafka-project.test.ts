/**
 * A project whose log is Kafka (`log.backend: kafka`), through the CLI as a user runs it: `doctor` checks
 * the brokers, `up` takes events over HTTP into the topic on the broker and a pipeline writes them into an
 * Iceberg table exactly once — events sent twice (a client's retry) are one row, and a second `up` after
 * the first stopped neither loses nor repeats any.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { Admin } from '@platformatic/kafka';
import { startCli, tributary, type StartedCli } from '../cli.ts';
import { freePort } from '../services/harness.ts';
import { useService } from '../services/index.ts';

const kafka = await useService('kafka');

function project(brokers: readonly string[], prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tributary-kafka-project-'));
  writeFileSync(
    path.join(dir, 'tributary.yaml'),
    [
      'project: shop',
      'logging: {format: json}',
      'log:',
      '  backend: kafka',
      `  brokers: [${brokers.join(', ')}]`,
      `  prefix: ${prefix}`,
      '  partitions: 3',
      'streams:',
      '  clicks:',
      '    auth: none',
      '',
    ].join('\n'),
  );
  mkdirSync(path.join(dir, 'pipelines'));
  writeFileSync(
    path.join(dir, 'pipelines', 'clicks.yaml'),
    'source: {type: topic, topic: events.clicks}\nsinks:\n  - type: iceberg\n    table: bronze.clicks\nbatch: {interval: 100ms}\n',
  );
  return dir;
}

async function post(url: string, events: readonly object[]): Promise<void> {
  const response = await fetch(`${url}/v1/streams/clicks/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(events),
  });
  assert.equal(response.status, 202, await response.text());
}

async function rows(dir: string): Promise<{ rows: number; ids: number }> {
  const result = await tributary(
    ['query', 'select count(*) as rows, count(distinct id) as ids from bronze.clicks', '--format', 'json'],
    { cwd: dir },
  );
  assert.equal(result.code, 0, result.stderr);
  const [row] = JSON.parse(result.stdout) as Array<{ rows: number | string; ids: number | string }>;
  return { rows: Number(row!.rows), ids: Number(row!.ids) };
}

/** Waits until the pipeline has committed `count` records (its metric), or fails after a minute. */
async function committed(url: string, count: number): Promise<void> {
  const pattern = new RegExp(`tributary_pipeline_records_out_total\\{pipeline="clicks"[^}]*\\} ${count}\\b`);
  let metrics = '';
  for (let i = 0; i < 300 && !pattern.test(metrics); i++) {
    await sleep(200);
    metrics = await (await fetch(`${url}/metrics`)).text();
  }
  assert.match(metrics, pattern);
}

async function stop(up: StartedCli): Promise<void> {
  up.child.kill('SIGTERM');
  assert.equal(await up.exited, 0, up.stderr());
}

describe('a project on Kafka', { skip: kafka.skip }, () => {
  it(
    'ingests over HTTP into Kafka and into an Iceberg table exactly once, across a restart',
    { timeout: 180_000 },
    async () => {
      const brokers = kafka.info!.brokers;
      const prefix = `shop-${process.pid}-${Date.now()}.`;
      const dir = project(brokers, prefix);

      const doctor = await tributary(['doctor'], { cwd: dir });
      assert.match(
        doctor.stdout + doctor.stderr,
        new RegExp(`kafka brokers reachable.*${brokers[0]!.replace(/[.]/g, '\\.')} answer`),
      );

      const first = Array.from({ length: 40 }, (_, i) => ({ id: `c${i}`, page: `/p${i % 3}` }));
      let up = startCli(['up', '--host', '127.0.0.1', '--port', String(await freePort())], dir);
      try {
        const url = await up.url;
        await post(url, first);
        await post(url, first.slice(0, 10)); // a client retrying: the same ids again
        await committed(url, 40);
      } finally {
        await stop(up);
      }
      assert.deepEqual(await rows(dir), { rows: 40, ids: 40 });

      // The stream's topic and the pipeline's consumer group are on the broker, under the project's prefix.
      const admin = new Admin({ clientId: 'test', bootstrapBrokers: [...brokers] });
      try {
        assert.ok((await admin.listTopics()).includes(`${prefix}events.clicks`));
        const [group] = await admin.listConsumerGroupOffsets({ groups: [`${prefix}pipeline/clicks`] });
        const committedOffsets = group!.topics.flatMap((t) =>
          t.partitions.map((p) => Number(p.committedOffset)),
        );
        assert.equal(
          committedOffsets.reduce((a, b) => a + b, 0),
          40,
        );
      } finally {
        await admin.close();
      }

      // A second run continues where the first committed.
      const second = Array.from({ length: 15 }, (_, i) => ({ id: `d${i}`, page: '/q' }));
      up = startCli(['up', '--host', '127.0.0.1', '--port', String(await freePort())], dir);
      try {
        const url = await up.url;
        await post(url, [...first.slice(30), ...second]); // ten seen before (deduplicated), fifteen new
        await committed(url, 15);
      } finally {
        await stop(up);
      }
      assert.deepEqual(await rows(dir), { rows: 55, ids: 55 });
    },
  );
});
