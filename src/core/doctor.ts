/**
 * Preflight checks for `tributary doctor`. Each component contributes checks of what it needs
 * (connectivity, permissions, versions); each check says pass, warn or fail, and how to fix a problem.
 */
import { accessSync, constants, existsSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { isTributaryError } from '../errors.ts';
import { projectPath, unresolvedPlaceholders, type Project } from './project.ts';

export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface CheckResult {
  readonly status: CheckStatus;
  readonly detail: string;
  /** What to do about a warning or failure. */
  readonly fix?: string;
}

export interface DoctorCheck {
  /** The component checked, e.g. "platform", "catalog", "sink orders_silver.iceberg". */
  readonly component: string;
  readonly name: string;
  run(project: Project): Promise<CheckResult>;
}

export interface CheckOutcome {
  readonly component: string;
  readonly name: string;
  readonly result: CheckResult;
}

export const MIN_NODE_MAJOR = 24;
const LOW_DISK_BYTES = 1024 ** 3;

export async function runChecks(project: Project, checks: readonly DoctorCheck[]): Promise<CheckOutcome[]> {
  const outcomes: CheckOutcome[] = [];
  for (const check of checks) {
    let result: CheckResult;
    try {
      result = await check.run(project);
    } catch (error) {
      // Such as a value of tributary.yaml the check read that is unresolved here: its hint is the fix.
      result = {
        status: 'fail',
        detail: error instanceof Error ? error.message : String(error),
        ...(isTributaryError(error) && error.hint ? { fix: error.hint } : {}),
      };
    }
    outcomes.push({ component: check.component, name: check.name, result });
  }
  return outcomes;
}

/** The nearest directory at or above `dir` that exists. */
function existingAncestor(dir: string): string {
  let current = dir;
  while (!existsSync(current)) {
    const parent = path.dirname(current);
    if (parent === current) break;
    current = parent;
  }
  return current;
}

/** Whether this user can create and write `dir` (or its nearest existing ancestor), and the disk space there. */
export function checkWritableDir(dir: string): CheckResult {
  const probe = existingAncestor(dir);
  try {
    accessSync(probe, constants.W_OK);
  } catch {
    return {
      status: 'fail',
      detail: `${probe} is not writable`,
      fix: `give this user write access to ${probe}, or configure another path`,
    };
  }
  const free = statfsSync(probe);
  const bytes = Number(free.bavail) * Number(free.bsize);
  if (bytes < LOW_DISK_BYTES) {
    return {
      status: 'warn',
      detail: `${dir}: only ${(bytes / 1024 ** 2).toFixed(0)} MiB free`,
      fix: 'free disk space or move the data elsewhere',
    };
  }
  return { status: 'pass', detail: `${dir} (${(bytes / 1024 ** 3).toFixed(1)} GiB free)` };
}

function writableDirCheck(name: string, configured: (project: Project) => string): DoctorCheck {
  return {
    component: 'platform',
    name,
    async run(project) {
      return checkWritableDir(configured(project));
    },
  };
}

/**
 * A failed check per placeholder of the configuration files that cannot be resolved here (all of them, where
 * the commands stop at the first they read), or one that passes.
 */
export function placeholderChecks(project: Project): DoctorCheck[] {
  const unresolved = unresolvedPlaceholders(project);
  if (unresolved.length === 0)
    return [
      {
        component: 'config',
        name: 'placeholders',
        run: () =>
          Promise.resolve({
            status: 'pass',
            detail: 'every ${…} of tributary.yaml, pipelines/ and sources/ resolves',
          }),
      },
    ];
  return unresolved.map((error) => ({
    component: 'config',
    name: 'placeholders',
    run: () =>
      Promise.resolve({ status: 'fail', detail: error.message, ...(error.hint ? { fix: error.hint } : {}) }),
  }));
}

/**
 * The checks of the machine. The warehouse's is the CLI's (`warehouseCheck` in cli/checks.ts): a warehouse
 * may be a URI, which the storage module reads.
 */
export const platformChecks: readonly DoctorCheck[] = [
  {
    component: 'platform',
    name: 'node version',
    async run() {
      const major = Number(process.versions.node.split('.')[0]);
      return major >= MIN_NODE_MAJOR
        ? { status: 'pass', detail: `Node.js ${process.versions.node}` }
        : {
            status: 'fail',
            detail: `Node.js ${process.versions.node}`,
            fix: `install Node.js ${MIN_NODE_MAJOR} or later`,
          };
    },
  },
  writableDirCheck('log directory', (project) => projectPath(project, project.platform.log.path)),
  {
    component: 'platform',
    name: 'embedded SQL engine (node:sqlite)',
    async run() {
      const { DatabaseSync } = await import('node:sqlite');
      const db = new DatabaseSync(':memory:');
      const row = db.prepare('select sqlite_version() as version').get() as { version: string };
      db.close();
      return { status: 'pass', detail: `SQLite ${row.version}` };
    },
  },
  {
    component: 'platform',
    name: 'query engine (DuckDB)',
    async run() {
      const { DuckDBInstance } = await import('@duckdb/node-api');
      const instance = await DuckDBInstance.create(':memory:');
      const connection = await instance.connect();
      const reader = await connection.runAndReadAll('select version() as version');
      const version = String(reader.getRowObjects()[0]?.version);
      connection.closeSync();
      instance.closeSync();
      return { status: 'pass', detail: `DuckDB ${version}` };
    },
  },
];
