import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { splitHeader } from './project.ts';
import { scheduleFileSchema } from './config.ts';

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

describe('models/schedule.yaml', () => {
  it('refuses a remove-orphan-files job younger than a day: a write in progress has such files', () => {
    const job = (olderThan: string) => ({
      jobs: [{ name: 'orphans', kind: 'remove-orphan-files', schedule: '0 4 * * *', older_than: olderThan }],
    });
    const refused = scheduleFileSchema.safeParse(job('23h'));
    assert.equal(refused.success, false);
    assert.match(refused.error?.issues[0]?.message ?? '', /at least 1d/);
    assert.deepEqual(refused.error?.issues[0]?.path, ['jobs', 0, 'older_than']);
    assert.equal(scheduleFileSchema.safeParse(job('1d')).success, true);
    // Other kinds keep any age.
    assert.equal(
      scheduleFileSchema.safeParse({ jobs: [{ ...job('5m').jobs[0], kind: 'expire' }] }).success,
      true,
    );
  });
});
