import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LogRecord } from '../log/log.ts';
import { batchOf, decodeBatch, type EncodedRecords } from '../log/record-batch.ts';
import { AppendWriter, decodeAppends } from './append-codec.ts';
import { fingerprint, print, seedOf } from './id-index.ts';

/** Words 0–2 of each id's fingerprint in `stream` (all 0 for none), as the worker receives them. */
function printsOf(stream: string, ids: ReadonlyArray<string | undefined>): Uint32Array {
  const prints = new Uint32Array(3 * ids.length);
  ids.forEach((id, i) => {
    if (id === undefined) return;
    fingerprint(seedOf(stream), id);
    prints.set(print.subarray(0, 3), 3 * i);
  });
  return prints;
}

/** The records as the log reads them back from a batch of them. */
function recordsOf(encoded: EncodedRecords) {
  return decodeBatch(batchOf([encoded.bytes], encoded.count), 't', 0, 0).map(
    ({ key, value, headers, timestamp }) => ({ key, value: Buffer.from(value), headers, timestamp }),
  );
}

describe('append codec', () => {
  it('carries appends to the worker unchanged: keys, headers, timestamps, values, dedupe ids', () => {
    const writer = new AppendWriter(16); // tiny, so that it grows
    const value = (text: string) => Buffer.from(text);
    const big = value('x'.repeat(100_000));
    const before = Date.now();
    writer.write(1, 'events.a', [
      {
        value: value('{"a":1}'),
        key: 'user-é',
        headers: { 'tributary-event-id': 'e1', h: '😀' },
        timestamp: 5,
      },
      { value: new Uint8Array(0) },
      { value: big, key: null, headers: { ['__proto__']: 'kept', ['x'.repeat(300)]: 'long name' } },
    ]);
    const deduplicated: LogRecord[] = [
      { value: value('{}'), headers: { 'tributary-event-id': 'é1', 'tributary-dedupe': '1' }, timestamp: 9 },
      { value: value('{}'), headers: { 'tributary-event-id': 'server-made' }, timestamp: 7 },
    ];
    writer.write(2, 'events.b', deduplicated, 'stream-é');
    writer.write(3, 'events.c', [{ value: value('{}'), timestamp: 1 }], 'c', false);
    const marked = (id: unknown) =>
      ({ 'tributary-event-id': id, 'tributary-dedupe': '1' }) as unknown as Record<string, string>;
    writer.write(
      5,
      'events.e',
      [
        { value: value('{}'), headers: marked('a\ud800') },
        { value: value('{}'), headers: marked(Symbol('not stored')) },
        { value: value('{}'), headers: marked('ü') },
      ],
      'e',
    );
    assert.equal(writer.appends, 4);
    assert.equal(writer.records, 9);
    assert.throws(() =>
      writer.write(4, 'events.d', [
        { value: value('{}') },
        { value: value('{}'), headers: { n: 1n } as unknown as Record<string, string> },
      ]),
    );
    assert.equal(writer.appends, 4, 'a failed write leaves nothing behind');
    const { buffer, length } = writer.take();
    assert.equal(writer.appends, 0);
    const [a, b, c, d, ...rest] = decodeAppends(new Uint8Array(buffer, 0, length));
    assert.equal(rest.length, 0);
    assert.equal(a!.id, 1);
    assert.equal(a!.topic, 'events.a');
    assert.equal(a!.dedupe, undefined);
    assert.equal(a!.records.count, 3);
    assert.equal(a!.records.keyed, true);
    assert.equal(a!.records.valueBytes, 7 + 100_000);
    assert.ok(a!.records.maxTimestamp >= before, 'records without a timestamp get the time of the append');
    const [first, second, third] = recordsOf(a!.records);
    assert.deepEqual(first, {
      key: 'user-é',
      value: value('{"a":1}'),
      headers: { 'tributary-event-id': 'e1', h: '😀' },
      timestamp: 5,
    });
    assert.equal(second!.key, null);
    assert.equal(second!.value.length, 0);
    assert.ok(second!.timestamp >= before);
    assert.deepEqual(third!.value, big);
    assert.deepEqual(Object.entries(third!.headers), [
      ['__proto__', 'kept'],
      ['x'.repeat(300), 'long name'],
    ]);
    assert.equal(b!.id, 2);
    assert.equal(b!.topic, 'events.b');
    assert.deepEqual(b!.dedupe, { stream: 'stream-é', prints: printsOf('stream-é', ['é1', undefined]) });
    assert.equal(b!.records.keyed, false);
    assert.equal(b!.records.maxTimestamp, 9);
    assert.deepEqual(
      recordsOf(b!.records).map((r) => r.headers),
      deduplicated.map((r) => r.headers),
    );
    assert.deepEqual(c!.dedupe, { stream: 'c', prints: new Uint32Array(3) });
    assert.deepEqual(
      d!.dedupe?.prints,
      printsOf('e', ['a\ud800', undefined, 'ü']),
      'the fingerprints of the ids as the headers keep them',
    );
    assert.notDeepEqual(printsOf('e', ['a\ud800']), printsOf('e', ['a\ufffd']));
    assert.equal(a!.positions, true);
    assert.equal(c!.positions, false, 'an append whose answer needs no positions');
  });
});
