import assert from 'node:assert/strict';
import { it } from 'node:test';
import { didYouMean } from './did-you-mean.ts';

it('suggests a close candidate and nothing for a distant one', () => {
  assert.equal(didYouMean('catlog', ['catalog', 'log', 'server']), 'catalog');
  assert.equal(didYouMean('sever', ['catalog', 'log', 'server']), 'server');
  assert.equal(didYouMean('zzzzzzzz', ['catalog', 'log', 'server']), undefined);
});
