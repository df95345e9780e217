/** Runs the real `tributary` command, as a user would, for end-to-end tests. */
import path from 'node:path';
import { REPO_ROOT, run, type RunResult } from './services/harness.ts';

export const CLI = path.join(REPO_ROOT, 'bin', 'tributary.js');

export async function tributary(
  args: readonly string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<RunResult> {
  return run(process.execPath, [CLI, ...args], {
    cwd: options.cwd ?? REPO_ROOT,
    env: { ...process.env, NO_COLOR: '1', ...options.env },
  });
}
