/**
 * The test-services harness. Each service (PostgreSQL, pyiceberg, an S3 server, Kafka; later a REST catalog) is one
 * module exporting a `ServiceDefinition`: how to install it (cached across runs), start it on loopback on a
 * private port, and stop it. Tests call `useService(name)`; `npm run services -- start <name>` does the same
 * by hand.
 *
 * State (data directories, logs, the running service's address) lives in `<repo>/.tributary/services/<name>`;
 * installs are cached in `~/.cache/tributary` so a fresh clone does not download again.
 *
 * When a service cannot be provisioned, its suites are skipped with one line saying what is missing —
 * unless TRIBUTARY_REQUIRE_SERVICES=1 (set by .ci/run), which turns that into a failure.
 */
import { spawn, type SpawnOptions } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
export const STATE_ROOT = path.join(REPO_ROOT, '.tributary', 'services');
export const CACHE_ROOT =
  process.env.TRIBUTARY_CACHE_DIR ??
  path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'), 'tributary');

/** A service cannot be provisioned on this machine; `reason` says what is missing and how to get it. */
export class ServiceUnavailable extends Error {
  readonly service: string;
  readonly reason: string;
  constructor(service: string, reason: string) {
    super(`${service} unavailable: ${reason}`);
    this.service = service;
    this.reason = reason;
  }
}

export interface ServiceDefinition<Info> {
  readonly name: string;
  /** Makes the service runnable (install packages, build environments); cached; throws ServiceUnavailable. */
  install(): Promise<void>;
  /** Starts the service on loopback and returns how to reach it. Called with the service lock held. */
  start(stateDir: string): Promise<Info>;
  /** True when a previously started instance described by `info` still answers. */
  isRunning(info: Info): Promise<boolean>;
  stop(info: Info, stateDir: string): Promise<void>;
}

interface StateFile<Info> {
  readonly info: Info;
  /** Started by a test run (stopped by its teardown) or by hand (left alone). */
  readonly startedByTests: boolean;
}

export function stateDirOf(name: string): string {
  return path.join(STATE_ROOT, name);
}

function stateFileOf(name: string): string {
  return path.join(stateDirOf(name), 'state.json');
}

export function readState<Info>(name: string): StateFile<Info> | undefined {
  try {
    return JSON.parse(readFileSync(stateFileOf(name), 'utf8')) as StateFile<Info>;
  } catch {
    return undefined;
  }
}

/** Ensures the service runs and returns its connection info. Safe to call from parallel test files. */
export async function ensureService<Info>(
  definition: ServiceDefinition<Info>,
  startedByTests: boolean,
): Promise<Info> {
  const stateDir = stateDirOf(definition.name);
  mkdirSync(stateDir, { recursive: true });
  return withLock(path.join(stateDir, 'lock'), async () => {
    const state = readState<Info>(definition.name);
    if (state && (await definition.isRunning(state.info))) return state.info;
    await definition.install();
    const info = await definition.start(stateDir);
    writeFileSync(
      stateFileOf(definition.name),
      JSON.stringify({ info, startedByTests } satisfies StateFile<Info>, null, 2),
    );
    return info;
  });
}

export async function stopService<Info>(
  definition: ServiceDefinition<Info>,
  onlyIfStartedByTests: boolean,
): Promise<boolean> {
  const state = readState<Info>(definition.name);
  if (!state || (onlyIfStartedByTests && !state.startedByTests)) return false;
  if (await definition.isRunning(state.info)) await definition.stop(state.info, stateDirOf(definition.name));
  rmSync(stateFileOf(definition.name), { force: true });
  return true;
}

/** A lock file holding the owner's pid; a lock whose owner died is taken over. */
async function withLock<T>(lockFile: string, work: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    try {
      const fd = openSync(lockFile, 'wx');
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      let owner: number;
      try {
        owner = Number(readFileSync(lockFile, 'utf8') || 'NaN');
      } catch {
        continue; // released meanwhile: try again
      }
      if (Number.isInteger(owner) && !isAlive(owner)) rmSync(lockFile, { force: true });
      else if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${lockFile} held by pid ${owner}`, { cause: error });
      else await sleep(200);
    }
  }
  try {
    return await work();
  } finally {
    rmSync(lockFile, { force: true });
  }
}

/** Whether a process of this id runs (one of another user's counts). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Stops a service's process: SIGTERM, then SIGKILL if it is still there after `graceMs`. */
export async function stopProcess(pid: number, graceMs: number): Promise<void> {
  if (!isAlive(pid)) return;
  process.kill(pid, 'SIGTERM');
  for (let waited = 0; waited < graceMs && isAlive(pid); waited += 100) await sleep(100);
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
}

/** A free TCP port on loopback. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program to completion, capturing its output; never throws for a non-zero exit. */
export async function run(
  command: string,
  args: readonly string[],
  options: SpawnOptions & { input?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      ...options,
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    // Decoded as a stream: a character split between two chunks of the pipe is not two U+FFFD.
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => (stdout += chunk));
    child.stderr?.on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** Like `run`, but a non-zero exit is an error carrying the output. */
export async function runChecked(
  command: string,
  args: readonly string[],
  options: SpawnOptions & { input?: string } = {},
): Promise<string> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${result.code}:\n${result.stderr || result.stdout}`);
  }
  return result.stdout;
}

export function commandExists(command: string): boolean {
  return (process.env.PATH ?? '')
    .split(path.delimiter)
    .some((dir) => dir && existsSync(path.join(dir, command)));
}

export function requireServices(): boolean {
  return process.env.TRIBUTARY_REQUIRE_SERVICES === '1';
}

/**
 * A Python virtual environment in the cache with one pip requirement installed, for the services that are
 * Python packages (pyiceberg, moto): made once per version, `venvDir/.installed` marking it complete.
 * Returns the venv's python.
 */
export async function installPythonVenv(
  service: string,
  venvDir: string,
  requirement: string,
  modules: readonly string[],
): Promise<string> {
  const python = path.join(venvDir, 'bin', 'python');
  const marker = path.join(venvDir, '.installed');
  if (existsSync(marker)) return python;
  if (!commandExists('python3'))
    throw new ServiceUnavailable(service, 'python3 is not installed: install Python 3.9 or later');
  rmSync(venvDir, { recursive: true, force: true });
  const venv = await run('python3', ['-m', 'venv', venvDir]);
  if (venv.code !== 0)
    throw new ServiceUnavailable(
      service,
      `python3 -m venv failed (install python3-venv): ${venv.stderr.trim()}`,
    );
  await runChecked(python, ['-m', 'pip', 'install', '-q', '--disable-pip-version-check', requirement]);
  await runChecked(python, ['-c', `import ${modules.join(', ')}`]);
  await runChecked('touch', [marker]);
  return python;
}
