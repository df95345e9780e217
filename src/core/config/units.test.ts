import assert from 'node:assert/strict';
import { it } from 'node:test';
import { parseByteSize, parseDuration } from './units.ts';

it('parses durations and sizes, and refuses what is not one', () => {
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('7d'), 7 * 86_400_000);
  assert.equal(parseDuration('7 days'), undefined);
  assert.equal(parseByteSize('16MiB'), 16 * 1024 * 1024);
  assert.equal(parseByteSize('1GB'), 1e9);
  assert.equal(parseByteSize('512'), 512);
  assert.equal(parseByteSize('lots'), undefined);
});
