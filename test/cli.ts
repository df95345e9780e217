/** Runs the real `tributary` command, as a user would, for end-to-end tests. */
import { spawn, type ChildProcess } from 'node:child_process';
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

export interface StartedCli {
  readonly child: ChildProcess;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
  /** The server's URL, from its "listening on" line; rejects when it exits first. */
  readonly url: Promise<string>;
  /** What it printed to stderr so far. */
  stderr(): string;
}

/** Starts a long-running `tributary` command (`serve`, `up`, `run --health-port`) in `cwd`. */
export function startCli(
  args: readonly string[],
  cwd: string,
  options: { env?: Record<string, string> } = {},
): StartedCli {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (match) resolve(match[1]!);
    });
    void exited.then((code) =>
      reject(new Error(`tributary ${args.join(' ')} exited with ${code}:\n${stderr}`)),
    );
  });
  return { child, exited, url, stderr: () => stderr };
}
