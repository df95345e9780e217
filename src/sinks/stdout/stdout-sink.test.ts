import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { createResources } from '../../core/pipeline/components.ts';
import type { PipelineRecord } from '../../core/pipeline/model.ts';
import { isTributaryError } from '../../errors.ts';
import type { Log } from '../../log/log.ts';
import { StdoutSink, stdoutSinkDefinition, stdoutSinkSchema } from './index.ts';

const logger = pino({ level: 'silent' });

/** The two methods of a log the sink uses, in memory. */
function memoryLog(): Pick<Log, 'committedOffsets' | 'commitOffsets'> & {
  groups: Map<string, Map<number, number>>;
} {
  const groups = new Map<string, Map<number, number>>();
  return {
    groups,
    committedOffsets: async (group, topic) => new Map(groups.get(`${group}@${topic}`) ?? []),
    commitOffsets: async (group, topic, offsets) => {
      groups.set(`${group}@${topic}`, new Map(offsets));
    },
  };
}

function record(partition: number, offset: number, value: Record<string, unknown>): PipelineRecord {
  return { value, key: `k${offset}`, partition, offset, timestamp: 1_700_000_000_000, headers: { h: 'v' } };
}

function capture() {
  const output = new PassThrough();
  let text = '';
  output.on('data', (chunk: Buffer) => (text += chunk.toString()));
  return { output, text: () => text };
}

describe('stdout sink', () => {
  it('prints one JSON line per record and commits its positions to the consumer group', async () => {
    const log = memoryLog();
    const out = capture();
    const sink = new StdoutSink({
      config: stdoutSinkSchema.parse({ type: 'stdout' }),
      pipeline: 'orders',
      sourceTopic: 'events',
      log,
      logger,
      output: out.output,
    });
    assert.equal(sink.name, 'stdout');
    assert.equal(sink.group, 'orders/stdout');
    assert.deepEqual(await sink.open(), new Map());
    await sink.write({
      records: [record(0, 0, { id: 1, text: 'line\nbreak' }), record(1, 0, { id: 2 })],
      positions: new Map([
        [0, 1],
        [1, 1],
      ]),
    });
    assert.equal(out.text(), '{"id":1,"text":"line\\nbreak"}\n{"id":2}\n');
    assert.deepEqual(
      log.groups.get('orders/stdout@events'),
      new Map([
        [0, 1],
        [1, 1],
      ]),
    );

    // A restart reads the positions; a batch offered again prints nothing new.
    const again = new StdoutSink({
      config: stdoutSinkSchema.parse({ type: 'stdout' }),
      pipeline: 'orders',
      sourceTopic: 'events',
      log,
      logger,
      output: out.output,
    });
    assert.deepEqual(
      await again.open(),
      new Map([
        [0, 1],
        [1, 1],
      ]),
    );
    await again.write({ records: [record(0, 0, { id: 1 })], positions: new Map([[0, 1]]) });
    assert.equal(out.text().split('\n').length, 3);
  });

  it('prints the metadata too when asked', async () => {
    const out = capture();
    const sink = new StdoutSink({
      config: stdoutSinkSchema.parse({ type: 'stdout', name: 'debug', metadata: true }),
      pipeline: 'orders',
      sourceTopic: 'events',
      log: memoryLog(),
      logger,
      output: out.output,
    });
    await sink.open();
    await sink.write({ records: [record(2, 5, { id: 1 })], positions: new Map([[2, 6]]) });
    assert.deepEqual(JSON.parse(out.text()), {
      partition: 2,
      offset: 5,
      key: 'k5',
      timestamp: 1_700_000_000_000,
      headers: { h: 'v' },
      value: { id: 1 },
    });
  });

  it('reports a closed output as a failure', async () => {
    const output = new PassThrough();
    output.destroy();
    const sink = new StdoutSink({
      config: stdoutSinkSchema.parse({ type: 'stdout' }),
      pipeline: 'orders',
      sourceTopic: 'events',
      log: memoryLog(),
      logger,
      output,
    });
    await sink.open();
    await assert.rejects(
      sink.write({ records: [record(0, 0, { id: 1 })], positions: new Map([[0, 1]]) }),
      (error: unknown) => isTributaryError(error, 'STORAGE_IO') && !error.retryable,
    );
  });

  it('is created by its definition', async () => {
    const log = memoryLog() as unknown as Log;
    const sink = await stdoutSinkDefinition.create(stdoutSinkSchema.parse({ type: 'stdout' }), {
      pipeline: 'p',
      sourceTopic: 't',
      projectRoot: '.',
      log,
      logger,
      resources: createResources(),
    });
    assert.equal(sink.name, 'stdout');
    assert.equal(stdoutSinkSchema.safeParse({ type: 'stdout', extra: 1 }).success, false);
  });
});
