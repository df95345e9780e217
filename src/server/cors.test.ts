import assert from 'node:assert/strict';
import { it } from 'node:test';
import { canonicalOrigin, MAX_ORIGIN_LENGTH, originAllowed } from './cors.ts';

it('compares origins without trailing slashes, in lower case, and refuses over-long ones', () => {
  const allowed = new Set([canonicalOrigin('https://Shop.example.com/')]);
  assert.ok(originAllowed('https://shop.example.com', false, allowed));
  assert.ok(originAllowed('HTTPS://SHOP.example.com//', false, allowed));
  assert.ok(!originAllowed('https://evil.example', false, allowed));
  assert.ok(originAllowed('https://evil.example', true, allowed), '"*" allows any');
  const padded = 'https://shop.example.com' + '/'.repeat(MAX_ORIGIN_LENGTH);
  assert.ok(!originAllowed(padded, false, allowed), 'over the bound, even if it would match');
  assert.ok(!originAllowed(padded, true, allowed), 'over the bound, even with "*"');
});

it('strips trailing slashes in linear time (many slashes then another character)', () => {
  // /\/+$/ took about 30 s on this; the loop well under a millisecond.
  const origin = 'https://a' + '/'.repeat(200_000) + 'x';
  const started = performance.now();
  assert.equal(canonicalOrigin(origin), origin.toLowerCase());
  assert.equal(canonicalOrigin('https://a' + '/'.repeat(200_000)), 'https://a');
  assert.ok(performance.now() - started < 1000, `took ${performance.now() - started} ms`);
});
