import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { configIssues, create, records } from '../shared/test-support.ts';
import { dropTransform } from './drop.ts';

describe('drop', () => {
  it('removes top-level and nested fields, ignores missing ones, keeps order', async () => {
    const transform = await create(dropTransform, { fields: ['password', 'user.ssn', 'absent.deep'] });
    const input = [
      { id: 1, password: 'x', user: { name: 'ada', ssn: '123' } },
      { id: 2, user: 'not an object' },
      { id: 3 },
    ];
    const result = await transform.process(records(input));
    assert.deepEqual(
      result.records.map((r) => [r.offset, r.value]),
      [
        [0, { id: 1, user: { name: 'ada' } }],
        [1, { id: 2, user: 'not an object' }],
        [2, { id: 3 }],
      ],
    );
    assert.deepEqual(
      input[0],
      { id: 1, password: 'x', user: { name: 'ada', ssn: '123' } },
      'input untouched',
    );
    assert.deepEqual(result.rejected, []);
    assert.deepEqual(await transform.process([]), { records: [], rejected: [] });
  });

  it('needs at least one well-formed path', () => {
    assert.equal(configIssues(dropTransform, { fields: [] }).length, 1);
    assert.match(configIssues(dropTransform, { fields: ['a.'] })[0] ?? '', /^fields\.0: .*empty segment/);
  });
});
