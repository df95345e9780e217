/**
 * pyiceberg, the independent reader and writer of our Iceberg tables, in a Python virtual environment
 * from PyPI. Cached in ~/.cache/tributary per version; nothing to start: tests run Python scripts in it.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { CACHE_ROOT, installPythonVenv, runChecked, type ServiceDefinition } from './harness.ts';

export const PYICEBERG_VERSION = '0.12.0';
const venvDir = path.join(CACHE_ROOT, `pyiceberg-${PYICEBERG_VERSION}`);
const python = path.join(venvDir, 'bin', 'python');
const marker = path.join(venvDir, '.installed');

export interface PyicebergInfo {
  /** The venv's python, with pyiceberg, pyarrow and SQLAlchemy installed. */
  readonly python: string;
  readonly version: string;
}

export const pyiceberg: ServiceDefinition<PyicebergInfo> = {
  name: 'pyiceberg',

  async install() {
    await installPythonVenv(
      'pyiceberg',
      venvDir,
      `pyiceberg[sql-sqlite,sql-postgres,pyarrow]==${PYICEBERG_VERSION}`,
      ['pyiceberg', 'pyarrow', 'sqlalchemy'],
    );
  },

  async start() {
    return { python, version: PYICEBERG_VERSION };
  },

  async isRunning(info) {
    return existsSync(info.python) && existsSync(marker);
  },

  async stop() {},
};

/** Runs a Python script in the pyiceberg environment; returns its standard output. */
export async function runPython(
  info: PyicebergInfo,
  script: string,
  env: Record<string, string> = {},
): Promise<string> {
  return runChecked(info.python, ['-c', script], { env: { ...process.env, ...env } });
}
