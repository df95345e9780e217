/** The README's code blocks marked `sh runnable` work as shown, with `tributary` on the PATH. */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { CLI } from '../cli.ts';
import { REPO_ROOT, run } from '../services/harness.ts';

const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/```sh runnable\n([\s\S]*?)```/g)].map((m) => m[1]!);

it('README has runnable examples', () => {
  assert.ok(blocks.length > 0);
});

blocks.forEach((block, i) => {
  it(`README runnable block ${i + 1} succeeds`, { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tributary-readme-'));
    const bin = path.join(dir, 'bin');
    (await import('node:fs')).mkdirSync(bin);
    writeFileSync(path.join(bin, 'tributary'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`);
    chmodSync(path.join(bin, 'tributary'), 0o755);
    const result = await run('bash', ['-euo', 'pipefail', '-c', block], {
      cwd: dir,
      env: { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}`, NO_COLOR: '1' },
    });
    assert.equal(result.code, 0, `block ${i + 1} failed:\n${result.stdout}\n${result.stderr}`);
  });
});
