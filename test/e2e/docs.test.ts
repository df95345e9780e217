import assert from 'node:assert/strict';
import path from 'node:path';
import { it } from 'node:test';
import { REPO_ROOT, run } from '../services/harness.ts';

it('the generated reference docs match the code (npm run docs)', async () => {
  const result = await run(process.execPath, [path.join(REPO_ROOT, 'scripts', 'docs.ts'), '--check'], {
    cwd: REPO_ROOT,
  });
  assert.equal(result.code, 0, result.stderr);
});
