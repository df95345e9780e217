/**
 * A lock file holding the id of the process that took it, for what one process at a time may do on this
 * machine: write a file sink's file, run a pipeline. The file is created exclusively; a lock whose process
 * is gone (killed with -9, so it could not remove it) is taken over — and so is one holding this process's
 * own id that this process did not take: in a container the process has the same id after each restart
 * (often 1), so its predecessor's lock would otherwise hold it out for good. Not for several machines: a
 * process id means nothing on another host.
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { TributaryError } from '../errors.ts';

export interface PidLock {
  readonly file: string;
  /** Removes the lock file (when it is still this process's). */
  release(): void;
}

/**
 * Takes the lock at `file` (its directory must exist), or throws what `heldBy(pid)` makes of the process
 * that holds it. `onTakeOver` hears of a lock taken from a process that is gone.
 */
/** The lock files this process holds (the only way to tell its own lock from a predecessor's). */
const held = new Set<string>();

export function takePidLock(
  file: string,
  heldBy: (pid: number | undefined) => TributaryError,
  onTakeOver?: (pid: number) => void,
): PidLock {
  if (held.has(file)) throw heldBy(process.pid);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      try {
        writeSync(fd, String(process.pid));
      } finally {
        closeSync(fd);
      }
      held.add(file);
      return {
        file,
        release() {
          if (!held.delete(file)) return;
          if (lockHolder(file) === process.pid) rmSync(file, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    let owner: number | undefined;
    try {
      owner = Number(readFileSync(file, 'utf8').trim() || 'NaN');
    } catch {
      continue; // released meanwhile: try again
    }
    if (Number.isInteger(owner) && owner > 0 && (owner === process.pid || !isAlive(owner))) {
      onTakeOver?.(owner);
      rmSync(file, { force: true });
      continue;
    }
    throw heldBy(Number.isInteger(owner) && owner > 0 ? owner : undefined);
  }
  throw new TributaryError('STORAGE_IO', `cannot take the lock ${file}`, {
    context: { file },
    retryable: true,
  });
}

/** The live process holding the lock at `file`, if any. */
export function lockHolder(file: string): number | undefined {
  try {
    const owner = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(owner) && owner > 0 && isAlive(owner) ? owner : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
