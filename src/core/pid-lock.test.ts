import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { TributaryError } from '../errors.ts';
import { lockHolder, takePidLock } from './pid-lock.ts';

const heldBy = (pid: number | undefined) => new TributaryError('PIPELINE_RUNNING', `held by ${pid}`);

it('holds a lock for one process, and takes over one whose process is gone', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tributary-pid-lock-'));
  const file = path.join(dir, 'p.lock');
  const lock = takePidLock(file, heldBy);
  assert.equal(readFileSync(file, 'utf8'), String(process.pid));
  assert.equal(lockHolder(file), process.pid);
  assert.throws(() => takePidLock(file, heldBy), /held by \d+/, 'not twice in one process');
  lock.release();
  assert.equal(existsSync(file), false);

  // A live process (the one that started this test) holds it.
  writeFileSync(file, String(process.ppid));
  assert.throws(() => takePidLock(file, heldBy), new RegExp(`held by ${process.ppid}`));
  // A process that is gone, or this one's id left by its predecessor (a container restarted: same id).
  const takenOver: number[] = [];
  for (const stale of [2 ** 22 + 1, process.pid]) {
    writeFileSync(file, String(stale));
    const taken = takePidLock(file, heldBy, (pid) => takenOver.push(pid));
    assert.equal(readFileSync(file, 'utf8'), String(process.pid));
    taken.release();
  }
  assert.deepEqual(takenOver, [2 ** 22 + 1, process.pid]);
});
