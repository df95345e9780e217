import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppendWriter, decodeAppends } from './append-codec.ts';

describe('append codec', () => {
  it('carries appends to the worker unchanged: keys, headers, timestamps, values, dedupe', () => {
    const writer = new AppendWriter(16); // tiny, so that it grows
    const value = (text: string) => new TextEncoder().encode(text);
    const big = value('x'.repeat(100_000));
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
    writer.write(2, 'events.b', [{ value: value('{}'), headers: {} }], 'stream-é');
    writer.write(3, 'events.c', [{ value: value('{}') }], 'c', false);
    assert.equal(writer.appends, 3);
    assert.equal(writer.records, 5);
    assert.throws(() =>
      writer.write(4, 'events.d', [
        {
          value: value('{}'),
          headers: Object.fromEntries(Array.from({ length: 70_000 }, (_, i) => [`h${i}`, ''])),
        },
      ]),
    );
    assert.equal(writer.appends, 3, 'a failed write leaves nothing behind');
    const { buffer, length } = writer.take();
    assert.equal(writer.appends, 0);
    const [a, b, c, ...rest] = decodeAppends(new Uint8Array(buffer, 0, length));
    assert.equal(rest.length, 0);
    assert.equal(a!.id, 1);
    assert.equal(a!.topic, 'events.a');
    assert.equal(a!.dedupe, undefined);
    assert.deepEqual(a!.records[0], {
      key: 'user-é',
      value: value('{"a":1}'),
      headers: { 'tributary-event-id': 'e1', h: '😀' },
      timestamp: 5,
    });
    assert.deepEqual(a!.records[1], { key: null, value: new Uint8Array(0), headers: {} });
    assert.deepEqual(a!.records[2]!.value, big);
    assert.equal(Object.getPrototypeOf(a!.records[2]!.headers), Object.prototype);
    assert.deepEqual(Object.entries(a!.records[2]!.headers ?? {}), [
      ['__proto__', 'kept'],
      ['x'.repeat(300), 'long name'],
    ]);
    assert.deepEqual(b, {
      id: 2,
      topic: 'events.b',
      records: [{ key: null, value: value('{}'), headers: {} }],
      dedupe: 'stream-é',
      positions: true,
    });
    assert.equal(c!.dedupe, 'c');
    assert.equal(a!.positions, true);
    assert.equal(c!.positions, false, 'an append whose answer needs no positions');
  });
});
