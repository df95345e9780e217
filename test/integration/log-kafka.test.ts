/**
 * KafkaLog on a real broker (the harness's Kafka 4.1, one KRaft node): the shared log suite, each test's
 * topics and groups under a prefix of its own, then what only Kafka has — records other Kafka clients
 * read as written, and the errors of unreachable brokers.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Admin } from '@platformatic/kafka';
import { isTributaryError } from '../../src/errors.ts';
import { KafkaLog, type KafkaLogOptions } from '../../src/log/kafka-log.ts';
import { logCases } from '../../src/log/log.case.ts';
import { freePort } from '../services/harness.ts';
import { useService } from '../services/index.ts';

const kafka = await useService('kafka');
const brokers = kafka.info?.brokers ?? [];
/** Each conformance test's directory stands for a log of its own: its topics get a prefix of their own. */
const prefixOf = (directory: string) => `${path.basename(directory)}.`;
const open = (options: Partial<KafkaLogOptions> = {}) => KafkaLog.open({ brokers, ...options });

describe('KafkaLog', { skip: kafka.skip }, () => {
  logCases('kafka', (directory) => open({ prefix: prefixOf(directory) }), {
    retention: 'server',
    async removeBefore(directory, topic, partition, offset) {
      const admin = new Admin({ clientId: 'test', bootstrapBrokers: [...brokers] });
      try {
        await admin.deleteRecords({
          topics: [
            { name: prefixOf(directory) + topic, partitions: [{ partition, offset: BigInt(offset) }] },
          ],
        });
      } finally {
        await admin.close();
      }
    },
  });

  it('writes what other Kafka clients read: the key partitioning, the headers, a prefix', async () => {
    const prefix = `interop-${process.pid}-${Date.now()}.`;
    const log = await open({ prefix });
    const admin = new Admin({ clientId: 'test', bootstrapBrokers: [...brokers] });
    try {
      await log.ensureTopic('orders', { partitions: 4, retentionMs: 86_400_000 });
      const topics = await admin.listTopics();
      assert.ok(topics.includes(`${prefix}orders`));
      const [described] = await admin.describeConfigs({
        resources: [
          {
            resourceType: 2,
            resourceName: `${prefix}orders`,
            configurationKeys: ['retention.ms', 'retention.bytes'],
          },
        ],
      });
      assert.deepEqual(Object.fromEntries(described!.configs.map((c) => [c.name, c.value])), {
        'retention.ms': '86400000',
        'retention.bytes': '-1',
      });
      await log.commitOffsets('silver', 'orders', new Map([[2, 7]]));
      const [group] = await admin.listConsumerGroupOffsets({ groups: [`${prefix}silver`] });
      assert.deepEqual(
        group!.topics.flatMap((t) => t.partitions.map((p) => [t.name, p.partitionIndex, p.committedOffset])),
        [[`${prefix}orders`, 2, 7n]],
      );
      assert.deepEqual(
        (await log.listTopics()).map((t) => t.name),
        ['orders'],
        "topics outside the prefix are not the log's",
      );
    } finally {
      await admin.close();
      await log.close();
    }
  });

  it('appends many records of a large append over several requests, each at its position', async () => {
    const log = await open({ prefix: `large-${process.pid}-${Date.now()}.` });
    try {
      await log.ensureTopic('big', { partitions: 2 });
      const value = new Uint8Array(10_000).fill(120);
      const positions = await log.append(
        'big',
        Array.from({ length: 300 }, (_, i) => ({ key: `k${i % 7}`, value, headers: { i: String(i) } })),
      );
      for (const index of [0, 1, 150, 299]) {
        const { partition, offset } = positions[index]!;
        const [read] = await log.read('big', partition, offset, { maxRecords: 1 });
        assert.equal(read?.headers.i, String(index));
      }
      const stored = (await log.offsets('big')).reduce((n, p) => n + p.end, 0);
      assert.equal(stored, 300);
    } finally {
      await log.close();
    }
  });

  it('fails to open, retryably and naming the brokers, when no broker answers', async () => {
    const port = await freePort();
    const started = Date.now();
    await assert.rejects(
      KafkaLog.open({ brokers: [`127.0.0.1:${port}`], timeoutMs: 2_000 }),
      (error: unknown) =>
        isTributaryError(error) &&
        error.code === 'SERVICE_UNAVAILABLE' &&
        error.retryable &&
        error.message.includes(`127.0.0.1:${port}`) &&
        /log\.brokers/.test(error.hint ?? ''),
    );
    assert.ok(Date.now() - started < 20_000);
  });

  it('stops a read waiting for records when its signal aborts, and closes at once', async () => {
    const log = await open({ prefix: `abort-${process.pid}-${Date.now()}.` });
    await log.ensureTopic('quiet', { partitions: 1 });
    const controller = new AbortController();
    const started = Date.now();
    const waiting = log.read('quiet', 0, 0, { waitMs: 10_000, signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    assert.deepEqual(await waiting, []);
    assert.ok(Date.now() - started < 5_000, 'the wait ended with the signal');
    const closing = Date.now();
    await log.close();
    assert.ok(Date.now() - closing < 5_000, 'closed promptly');
  });
});
