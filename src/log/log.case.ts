/**
 * The conformance suite every log backend runs: `logCases('embedded', open)` registers the tests.
 * `open(dir)` opens (or reopens) a log whose state lives in `dir`.
 *
 * A backend whose retention is its server's (Kafka removes old segments on its own schedule) says so with
 * `retention: 'server'` and gives `removeBefore`, which removes a partition's records below an offset as
 * retention would: the suite then checks that reads start after them, instead of timing removal itself.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { Log, LogRecord } from './log.ts';

const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const records = (from: number, to: number, key?: string): LogRecord[] =>
  Array.from({ length: to - from }, (_, i) => ({ key: key ?? null, value: encode(String(from + i)) }));

export interface LogCaseOptions {
  readonly retention?: 'enforced' | 'server';
  /** With `retention: 'server'`: removes the records of a partition below `offset`, as retention does. */
  readonly removeBefore?: (
    directory: string,
    topic: string,
    partition: number,
    offset: number,
  ) => Promise<void>;
}

export function logCases(
  name: string,
  open: (directory: string) => Promise<Log>,
  options: LogCaseOptions = {},
): void {
  const fresh = () => mkdtempSync(path.join(tmpdir(), `tributary-log-${name}-`));

  describe(`log conformance: ${name}`, () => {
    it('keeps per-partition order with consecutive offsets from 0', async () => {
      const log = await open(fresh());
      try {
        await log.ensureTopic('events', { partitions: 3 });
        const positions = await log.append('events', records(0, 50, 'k'));
        const partition = positions[0]!.partition;
        assert.ok(
          positions.every((p) => p.partition === partition),
          'one key, one partition',
        );
        assert.deepEqual(
          positions.map((p) => p.offset),
          Array.from({ length: 50 }, (_, i) => i),
        );
        const more = await log.append('events', records(50, 60, 'k'));
        assert.deepEqual(
          more.map((p) => p.offset),
          Array.from({ length: 10 }, (_, i) => 50 + i),
        );
        const read = await log.read('events', partition, 0, { maxRecords: 100 });
        assert.deepEqual(
          read.map((r) => decode(r.value)),
          Array.from({ length: 60 }, (_, i) => String(i)),
        );
        assert.deepEqual(
          read.map((r) => r.offset),
          Array.from({ length: 60 }, (_, i) => i),
        );
        const from = await log.read('events', partition, 55);
        assert.deepEqual(
          from.map((r) => r.offset),
          [55, 56, 57, 58, 59],
        );
      } finally {
        await log.close();
      }
    });

    it('reads a run of appends in pieces, each piece where the last stopped, every record once', async () => {
      const log = await open(fresh());
      try {
        await log.ensureTopic('events', { partitions: 1 });
        for (let from = 0; from < 300; from += 100) await log.append('events', records(from, from + 100));
        const pieces: string[][] = [];
        let next = 0;
        for (const [maxRecords, maxBytes] of [
          [30, undefined],
          [100, undefined],
          [1000, 40],
          [45, undefined],
          [1000, undefined],
        ] as const) {
          const read = await log.read('events', 0, next, { maxRecords, maxBytes });
          pieces.push(read.map((r) => decode(r.value)));
          assert.deepEqual(
            read.map((r) => r.offset),
            Array.from({ length: read.length }, (_, i) => next + i),
          );
          next += read.length;
        }
        assert.deepEqual(
          pieces.flat(),
          Array.from({ length: 300 }, (_, i) => String(i)),
        );
        assert.deepEqual(
          pieces.map((p) => p.length),
          [30, 100, 13, 45, 112],
          'maxBytes stops after about that many bytes of values',
        );
      } finally {
        await log.close();
      }
    });

    it('spreads unkeyed records over partitions and offsets stay monotonic under concurrent appends', async () => {
      const log = await open(fresh());
      try {
        await log.ensureTopic('events', { partitions: 4 });
        const results = await Promise.all(
          Array.from({ length: 200 }, (_, i) => log.append('events', [{ value: encode(`r${i}`) }])),
        );
        const offsets = await log.offsets('events');
        assert.equal(
          offsets.reduce((n, p) => n + p.end, 0),
          200,
        );
        assert.ok(offsets.filter((p) => p.end > 0).length > 1, 'more than one partition used');
        for (const { partition, end } of offsets) {
          const read = await log.read('events', partition, 0, { maxRecords: 1000 });
          assert.deepEqual(
            read.map((r) => r.offset),
            Array.from({ length: end }, (_, i) => i),
          );
        }
        const seen = new Set(results.flat().map((p) => `${p.partition}:${p.offset}`));
        assert.equal(seen.size, 200, 'every record has its own position');
      } finally {
        await log.close();
      }
    });

    it('puts each record of a mixed append where its position says: keyed ones by key, the rest together', async () => {
      const log = await open(fresh());
      try {
        await log.ensureTopic('events', { partitions: 3 });
        const keys = ['a', null, 'b', 'b', null, 'ключ', 'a', 'c', null, 'c'];
        const mixed: LogRecord[] = keys.map((key, i) => ({
          key,
          value: encode(`v${i}`),
          ...(i % 3 === 0 ? { headers: { n: String(i), é: 'ü' } } : {}),
          ...(i % 2 === 0 ? { timestamp: 1000 + i } : {}),
        }));
        const positions = await log.append('events', mixed);
        assert.equal(positions.length, keys.length);
        const unkeyed = positions.filter((_, i) => keys[i] === null).map((p) => p.partition);
        assert.equal(new Set(unkeyed).size, 1, 'the records without a key share a partition');
        for (const key of ['a', 'b', 'c', 'ключ']) {
          const partitions = positions.filter((_, i) => keys[i] === key).map((p) => p.partition);
          assert.equal(new Set(partitions).size, 1, `key ${key}: one partition`);
        }
        for (let i = 0; i < mixed.length; i++) {
          const { partition, offset } = positions[i]!;
          const [read] = await log.read('events', partition, offset, { maxRecords: 1 });
          assert.equal(read?.offset, offset);
          assert.equal(decode(read.value), `v${i}`, `record ${i}`);
          assert.equal(read.key, keys[i]);
          assert.deepEqual(read.headers, mixed[i]!.headers ?? {});
          if (mixed[i]!.timestamp !== undefined) assert.equal(read.timestamp, mixed[i]!.timestamp);
        }
        const stored = (await log.offsets('events')).reduce((n, p) => n + p.end, 0);
        assert.equal(stored, keys.length);
      } finally {
        await log.close();
      }
    });

    it('keeps every acknowledged record, headers and keys across close and reopen', async () => {
      const dir = fresh();
      let log = await open(dir);
      await log.ensureTopic('events', { partitions: 2 });
      await log.append('events', [
        { key: 'a', value: encode('1'), headers: { source: 'test' }, timestamp: 1234 },
      ]);
      await log.append('events', records(0, 99, 'a'));
      await log.close();
      log = await open(dir);
      try {
        const info = await log.describeTopic('events');
        assert.equal(info?.partitions, 2);
        const [first] = await log.offsets('events').then((o) => o.filter((p) => p.end > 0));
        const read = await log.read('events', first!.partition, 0, { maxRecords: 1000 });
        assert.equal(read.length, 100);
        assert.deepEqual(read[0]?.headers, { source: 'test' });
        assert.equal(read[0]?.key, 'a');
        assert.equal(read[0]?.timestamp, 1234);
        const next = await log.append('events', [{ key: 'a', value: encode('after') }]);
        assert.equal(next[0]?.offset, 100, 'offsets continue after reopen');
      } finally {
        await log.close();
      }
    });

    it('stores consumer-group offsets durably and per group', async () => {
      const dir = fresh();
      let log = await open(dir);
      await log.ensureTopic('events', { partitions: 2 });
      assert.equal((await log.committedOffsets('silver', 'events')).size, 0);
      await log.commitOffsets(
        'silver',
        'events',
        new Map([
          [0, 10],
          [1, 3],
        ]),
      );
      await log.commitOffsets('gold', 'events', new Map([[0, 1]]));
      await log.commitOffsets('silver', 'events', new Map([[0, 12]]));
      await log.close();
      log = await open(dir);
      try {
        assert.deepEqual([...(await log.committedOffsets('silver', 'events'))].sort(), [
          [0, 12],
          [1, 3],
        ]);
        assert.deepEqual([...(await log.committedOffsets('gold', 'events'))], [[0, 1]]);
      } finally {
        await log.close();
      }
    });

    it('waits for records when asked to, and returns at once otherwise', async () => {
      const log = await open(fresh());
      try {
        await log.ensureTopic('events', { partitions: 1 });
        assert.deepEqual(await log.read('events', 0, 0), []);
        const waiting = log.read('events', 0, 0, { waitMs: 5000 });
        setTimeout(() => void log.append('events', records(0, 1)), 50);
        const started = Date.now();
        const read = await waiting;
        assert.equal(read.length, 1);
        assert.ok(Date.now() - started < 4000, 'woken by the append');
      } finally {
        await log.close();
      }
    });

    it('keeps the retention asked for on the topic, and takes it off again', async () => {
      const log = await open(fresh());
      try {
        const asked = { partitions: 2, retentionMs: 3_600_000, retentionBytes: 1_000_000 };
        assert.deepEqual(await log.ensureTopic('kept', asked), { name: 'kept', ...asked });
        assert.deepEqual(await log.describeTopic('kept'), { name: 'kept', ...asked });
        assert.deepEqual(
          (await log.listTopics()).find((t) => t.name === 'kept'),
          { name: 'kept', ...asked },
        );
        await log.ensureTopic('kept', { partitions: 1 });
        assert.deepEqual(
          await log.describeTopic('kept'),
          { name: 'kept', partitions: 2 },
          'kept forever, never shrunk',
        );
        await log.ensureTopic('kept', { partitions: 3 });
        assert.equal((await log.describeTopic('kept'))?.partitions, 3, 'grown');
        assert.equal(await log.describeTopic('never-made'), undefined);
      } finally {
        await log.close();
      }
    });

    if (options.retention === 'server') {
      it('reads from the start offset when records below it were removed', async () => {
        const dir = fresh();
        const log = await open(dir);
        try {
          await log.ensureTopic('old', { partitions: 1, retentionMs: 60_000 });
          for (let i = 0; i < 5; i++) await log.append('old', records(i, i + 1));
          await options.removeBefore!(dir, 'old', 0, 3);
          const [old] = await log.offsets('old');
          assert.deepEqual(old, { partition: 0, start: 3, end: 5 });
          assert.deepEqual(
            (await log.read('old', 0, 0)).map((r) => [r.offset, decode(r.value)]),
            [
              [3, '3'],
              [4, '4'],
            ],
          );
          assert.equal(typeof (await log.enforceRetention()), 'number');
        } finally {
          await log.close();
        }
      });
    } else {
      it('removes records past retention by age and by size, and reads start after them', async () => {
        const log = await open(fresh());
        try {
          await log.ensureTopic('old', { partitions: 1, retentionMs: 60_000 });
          const now = Date.now();
          // Retention removes whole appends (record batches, as Kafka removes whole segments): append one by one.
          await log.append('old', [{ value: encode('ancient'), timestamp: now - 120_000 }]);
          await log.append('old', [{ value: encode('older'), timestamp: now - 90_000 }]);
          await log.append('old', [{ value: encode('recent'), timestamp: now }]);
          await log.ensureTopic('big', { partitions: 1, retentionBytes: 50 });
          for (let i = 0; i < 30; i++) await log.append('big', [{ value: encode('x'.repeat(10)) }]);
          assert.ok((await log.enforceRetention()) >= 2);
          const [old] = await log.offsets('old');
          assert.deepEqual(old, { partition: 0, start: 2, end: 3 });
          assert.deepEqual(
            (await log.read('old', 0, 0)).map((r) => decode(r.value)),
            ['recent'],
          );
          const [big] = await log.offsets('big');
          assert.equal(big?.end, 30);
          assert.equal(big?.start, 25, 'the newest 50 bytes are kept');
        } finally {
          await log.close();
        }
      });
    }

    it('refuses bad topic names, unknown topics and partitions', async () => {
      const log = await open(fresh());
      try {
        await assert.rejects(log.ensureTopic('no spaces', { partitions: 1 }), /not a valid topic name/);
        await assert.rejects(log.append('missing', records(0, 1)), /does not exist/);
        await log.ensureTopic('events', { partitions: 1 });
        await assert.rejects(log.read('events', 7, 0), /no partition 7/);
      } finally {
        await log.close();
      }
    });
  });
}
