import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { configIssues, create, records } from '../shared/test-support.ts';
import { renameTransform } from './rename.ts';

async function rename(fields: Record<string, string>, values: Record<string, unknown>[]) {
  const transform = await create(renameTransform, { fields });
  const result = await transform.process(records(values));
  assert.deepEqual(result.rejected, []);
  return result.records.map((r) => r.value);
}

describe('rename', () => {
  it('renames top-level and nested fields in place, keeping key order', async () => {
    const input = { id: 1, userName: 'ada', user: { mail: 'a@x.org', age: 3 }, z: true };
    const [output] = await rename({ userName: 'user_name', 'user.mail': 'email' }, [input]);
    assert.deepEqual(output, { id: 1, user_name: 'ada', user: { email: 'a@x.org', age: 3 }, z: true });
    assert.deepEqual(Object.keys(output ?? {}), ['id', 'user_name', 'user', 'z']);
    assert.deepEqual(input.user, { mail: 'a@x.org', age: 3 }, 'the input is not mutated');
  });

  it('skips missing fields and returns untouched values as they are', async () => {
    const transform = await create(renameTransform, { fields: { 'a.b': 'c', x: 'y' } });
    const batch = records([{ a: 'not an object' }, { q: 1 }, { x: null }]);
    const result = await transform.process(batch);
    assert.equal(result.records[0]?.value, batch[0]?.value);
    assert.deepEqual(result.records[2]?.value, { y: null });
    assert.deepEqual(
      result.records.map((r) => r.offset),
      [0, 1, 2],
    );
  });

  it('swaps fields, replaces an existing target, and renames a parent and its child together', async () => {
    assert.deepEqual(await rename({ a: 'b', b: 'a' }, [{ a: 1, b: 2 }]), [{ b: 1, a: 2 }]);
    assert.deepEqual(await rename({ a: 'b' }, [{ a: 1, b: 2, c: 3 }]), [{ b: 1, c: 3 }]);
    assert.deepEqual(await rename({ a: 'x', 'a.b': 'c' }, [{ a: { b: 1 } }]), [{ x: { c: 1 } }]);
  });

  it('refuses paths as new names, clashes and empty maps', () => {
    assert.deepEqual(configIssues(renameTransform, { fields: { a: 'b.c' } }), [
      'fields.a: a new name, not a path: the field stays in the same object',
    ]);
    assert.deepEqual(configIssues(renameTransform, { fields: { a: 'c', b: 'c' } }), [
      'fields.b: a is also renamed to c',
    ]);
    assert.deepEqual(configIssues(renameTransform, { fields: {} }), ['fields: list at least one field']);
  });
});
