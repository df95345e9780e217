import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  deleteField,
  fieldPathProblem,
  getField,
  hasField,
  parseFieldPath,
  replaceObjectAt,
  setField,
} from './field-path.ts';
import { nonJsonProblem } from './json-value.ts';

const path = parseFieldPath;

describe('field paths', () => {
  it('reads nested fields and tells missing from null', () => {
    const value = { user: { id: 7, name: null }, list: [1] };
    assert.equal(getField(value, path('user.id')), 7);
    assert.equal(hasField(value, path('user.name')), true);
    assert.equal(hasField(value, path('user.email')), false);
    assert.equal(hasField(value, path('list.0')), false, 'arrays are not traversed');
    assert.equal(getField(value, path('user.id.deeper')), undefined);
  });

  it('replaces and deletes without touching the input', () => {
    const value = { user: { id: 7, name: 'a' }, other: { x: 1 } };
    const frozen = JSON.stringify(value);
    const set = setField(value, path('user.id'), '7');
    assert.deepEqual(set, { user: { id: '7', name: 'a' }, other: { x: 1 } });
    assert.equal(set.other, value.other, 'untouched branches are shared');
    assert.deepEqual(deleteField(value, path('user.name')), { user: { id: 7 }, other: { x: 1 } });
    assert.equal(JSON.stringify(value), frozen);
  });

  it('leaves the value as is when the parent is missing', () => {
    const value = { a: 1 };
    assert.equal(setField(value, path('b.c'), 2), value);
    assert.equal(deleteField(value, path('b')), value);
    assert.equal(
      replaceObjectAt(value, path('a'), () => ({})),
      value,
    );
  });

  it('refuses malformed paths and prototype names', () => {
    assert.equal(fieldPathProblem('user.id'), undefined);
    assert.match(fieldPathProblem('user..id') ?? '', /empty segment/);
    assert.match(fieldPathProblem('') ?? '', /empty/);
    assert.match(fieldPathProblem('a.__proto__') ?? '', /__proto__/);
  });
});

describe('nonJsonProblem', () => {
  it('finds what JSON cannot hold', () => {
    assert.equal(nonJsonProblem({ a: [1, 'x', null, { b: true }], c: undefined }), undefined);
    assert.equal(nonJsonProblem({ a: { b: 1n } }), '/a/b is a bigint, which JSON cannot represent');
    assert.match(nonJsonProblem({ when: new Date(0) }) ?? '', /\/when is a Date.*toISOString/);
    assert.match(nonJsonProblem({ n: NaN }) ?? '', /NaN/);
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    assert.match(nonJsonProblem(cycle) ?? '', /refers back/);
    const shared = { x: 1 };
    assert.equal(nonJsonProblem({ a: shared, b: shared }), undefined, 'a shared object is not a cycle');
  });
});
