import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { splitHeader } from './project.ts';

describe('model file headers', () => {
  it('ends a /* --- */ header at the */ that ends a line, not at one inside a cron schedule', () => {
    const text = [
      '/* ---',
      'schedule: "*/15 * * * *"',
      'tests:',
      '  - expression: revenue >= 0',
      '--- */',
      'select 1 as revenue',
      '',
    ].join('\n');
    const { yaml, sql } = splitHeader(text);
    assert.match(yaml ?? '', /schedule: "\*\/15 \* \* \* \*"/);
    assert.match(yaml ?? '', /- expression: revenue >= 0/);
    assert.equal(sql.trim(), 'select 1 as revenue');
  });

  it('reads a header whose first line is a key, and -- --- line headers', () => {
    assert.equal(splitHeader('/* materialized: view */\nselect 1').yaml?.trim(), 'materialized: view');
    const lines = splitHeader('-- ---\n-- schedule: "*/5 * * * *"\n-- ---\nselect 2');
    assert.equal(lines.yaml?.trim(), 'schedule: "*/5 * * * *"');
    assert.equal(lines.sql.trim(), 'select 2');
  });

  it('leaves an ordinary leading comment to the SQL', () => {
    const text = '/* daily revenue, by day */\nselect 1';
    assert.deepEqual(splitHeader(text), { yaml: undefined, sql: text, lineOffset: 0 });
  });
});
