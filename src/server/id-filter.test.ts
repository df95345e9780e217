import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IdFilter } from './id-filter.ts';

describe('id filter', () => {
  it('never forgets an id within its rotation period, and rarely claims one it never saw', () => {
    let now = 0;
    const filter = new IdFilter(1000, () => now);
    for (let i = 0; i < 100_000; i++) filter.add('s', `id-${i}`);
    for (let i = 0; i < 100_000; i++) assert.ok(filter.mayHave('s', `id-${i}`));
    let false_positives = 0;
    for (let i = 0; i < 100_000; i++) if (filter.mayHave('s', `other-${i}`)) false_positives++;
    for (let i = 0; i < 100_000; i++) if (filter.mayHave('t', `id-${i}`)) false_positives++;
    assert.ok(false_positives < 200, `${false_positives} false positives`);
    now = 1500;
    assert.ok(filter.mayHave('s', 'id-5'), 'kept through one rotation');
    now = 2600;
    assert.ok(!filter.mayHave('s', 'id-5'), 'gone after two');
  });

  it('answers for an id before adding it, and keeps one seen in the previous generation', () => {
    let now = 0;
    const filter = new IdFilter(1000, () => now);
    assert.equal(filter.mayHaveThenAdd('s', 'a'), false);
    assert.equal(filter.mayHaveThenAdd('s', 'a'), true);
    assert.equal(filter.mayHave('s', 'a'), true);
    now = 1500;
    assert.equal(filter.mayHaveThenAdd('s', 'a'), true, 'from the previous generation');
    now = 2600;
    assert.equal(filter.mayHave('s', 'a'), true, 'added again to the current one');
  });
});
