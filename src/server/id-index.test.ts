import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fingerprint, IdIndex, print, seedOf } from './id-index.ts';

describe('id index', () => {
  it('holds every id added within the window, exactly, and no other', () => {
    let now = 0;
    const index = new IdIndex({ windowMs: 1000, periodMs: 100, maxIds: 10_000_000, now: () => now });
    for (let i = 0; i < 300_000; i++) index.add('s', `id-${i}`);
    for (let i = 0; i < 300_000; i++) assert.ok(index.has('s', `id-${i}`, 0));
    for (let i = 0; i < 300_000; i++) {
      assert.ok(!index.has('s', `other-${i}`, 0));
      assert.ok(!index.has('t', `id-${i}`, 0), 'another stream');
    }
    assert.equal(index.size, 300_000);
    index.add('s', 'id-299999');
    assert.equal(index.size, 300_000, 'an id added again is held once in a generation');
    index.add('s', 'id-7'); // in an older generation (256 Ki ids each): remembered anew from now
    assert.equal(index.size, 300_001);
    now = 500;
    index.add('s', 'late');
    assert.ok(!index.has('s', 'id-5', 400), 'older than asked for');
    assert.ok(index.has('s', 'late', 400));
    now = 1400;
    index.add('s', 'later'); // a new generation: those past the window go
    assert.ok(!index.has('s', 'id-5', 0));
    assert.ok(index.has('s', 'late', 0));
    assert.equal(index.size, 2);
  });

  it('keeps its filter sharp when more than maxIds ids come within a window, and still finds the newest', () => {
    // 1 MiB filter (the smallest), 8,192 ids held at most: 2 million ids would set most of its bits.
    const index = new IdIndex({ windowMs: 3_600_000, periodMs: 3_600_000, maxIds: 8192 });
    for (let i = 0; i < 2_000_000; i++) index.add('s', `id-${i}`);
    assert.ok(index.size <= 8192);
    for (let i = 2_000_000 - 7000; i < 2_000_000; i++) assert.ok(index.has('s', `id-${i}`, 0), `id-${i}`);
    const before = index.searches;
    for (let i = 0; i < 10_000; i++) assert.ok(!index.has('s', `new-${i}`, 0));
    // A filter holding every id since the start answers "maybe" for about a quarter of new ids.
    assert.ok(index.searches - before < 100, `${index.searches - before} of 10,000 new ids searched`);
  });

  it('finds every id held when the limit is below one table (a filter never rotates away a held id)', () => {
    // dedupe_max_ids may be 1000, a table holds 1024 at least: the index holds up to 1024.
    const index = new IdIndex({ windowMs: 3_600_000, periodMs: 3_600_000, maxIds: 1000, now: () => 0 });
    for (let i = 0; i <= 43_000; i++) index.add('s', `id-${i}`, 0);
    assert.ok(index.size > 1000, `${index.size} held`);
    for (let i = 43_001 - index.size; i <= 43_000; i++) assert.ok(index.has('s', `id-${i}`, 0), `id-${i}`);
  });

  it('fingerprints ids of any length and text, distinctly', () => {
    const seen = new Set<string>();
    const ids = ['', 'a', 'ab', 'abcdefg', 'abcdefgh', 'abcdefghi', 'é', '😀', 'x'.repeat(256)];
    for (const stream of ['s', 'st', 'stream-with-a-longer-name'])
      for (const id of ids) {
        fingerprint(seedOf(stream), id);
        seen.add([...print.slice(0, 3)].join(','));
        assert.notEqual(print[2], 0);
      }
    assert.equal(seen.size, 27);
    fingerprint(seedOf('s'), 'a');
    const first = [...print];
    // The journal keeps fingerprints: they must never change (these were computed when it was written).
    assert.deepEqual(first.slice(0, 3), [2037521311, 1687421791, 216294579]);
    fingerprint(seedOf('stream'), '3f2b8c1e-9d4a-4e6b-8f21-0c7d5e9a1b34');
    assert.deepEqual([...print.slice(0, 3)], [4067844750, 597448837, 171626841]);
    fingerprint(seedOf('s'), 'a');
    assert.deepEqual([...print], first, 'the same every time');
    fingerprint(seedOf('sa'), '');
    assert.notDeepEqual([...print], first, 'the stream and the id stay apart');
    fingerprint(seedOf('t'), 'a');
    assert.notDeepEqual([...print], first, 'the same id in another stream');
  });
});
