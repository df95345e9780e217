import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { splitHeader } from './project.ts';
import type { z } from 'zod';
import { isTributaryError } from '../../errors.ts';
import { modelConfigSchema, scheduleFileSchema, testsFileSchema } from './config.ts';
import { parseYamlConfig } from './yaml.ts';

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

describe('model configuration errors', () => {
  const hintOf = (text: string, schema: z.ZodType): string => {
    try {
      parseYamlConfig({ file: '/project/models/x.yaml', text }, schema);
    } catch (error) {
      assert.ok(isTributaryError(error, 'CONFIG_INVALID'));
      return `${error.message} | ${error.hint}`;
    }
    return assert.fail('no error');
  };

  it('suggests the likely key or data test, also under a map of tables', () => {
    assert.match(
      hintOf('materialised: table\n', modelConfigSchema),
      /unknown key "materialised" \| did you mean "materialized"\?/,
    );
    assert.match(
      hintOf('tables:\n  gold.a:\n    test:\n      - not_null: [x]\n', testsFileSchema),
      /tables\.gold\.a\.test: unknown key "test" \| did you mean "tests"\?/,
    );
    assert.match(
      hintOf('tables:\n  gold.a:\n    tests:\n      - not_nul: [x]\n', testsFileSchema),
      /:4: tables\.gold\.a\.tests\.0: is not one of the accepted forms \| did you mean "not_null"\?/,
    );
  });
});
