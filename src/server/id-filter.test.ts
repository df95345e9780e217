import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IdFilter } from './id-filter.ts';

describe('id filter', () => {
  it('never forgets an id within its rotation period, and rarely claims one it never saw', () => {
    let now = 0;
    const filter = new IdFilter(1000, () => now);
    for (let i = 0; i < 100_000; i++) filter.add(`s\0id-${i}`);
    for (let i = 0; i < 100_000; i++) assert.ok(filter.mayHave(`s\0id-${i}`));
    let false_positives = 0;
    for (let i = 0; i < 100_000; i++) if (filter.mayHave(`s\0other-${i}`)) false_positives++;
    assert.ok(false_positives < 100, `${false_positives} false positives`);
    now = 1500;
    assert.ok(filter.mayHave('s\0id-5'), 'kept through one rotation');
    now = 2600;
    assert.ok(!filter.mayHave('s\0id-5'), 'gone after two');
  });
});
