/** Invariant 1 of log.ts under the harshest failure: the process killed with -9 while producers append. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { it } from 'node:test';
import { EmbeddedLog } from './embedded-log.ts';

const producer = (directory: string) => `
import { EmbeddedLog } from ${JSON.stringify(new URL('./embedded-log.ts', import.meta.url).href)};
const log = await EmbeddedLog.open({ directory: ${JSON.stringify(directory)}, retentionIntervalMs: 0 });
await log.ensureTopic('events', { partitions: 3 });
let n = 0;
// 20 concurrent producers, one record per append: group commit under load.
await Promise.all(Array.from({ length: 20 }, async (_, producer) => {
  for (;;) {
    const value = 'p' + producer + '-' + n++;
    const [position] = await log.append('events', [{ key: String(producer), value: new TextEncoder().encode(value) }]);
    process.stdout.write(value + ' ' + position.partition + ' ' + position.offset + '\\n');
  }
}));
`;

it('loses no acknowledged record when killed with -9 mid-append', async () => {
  const directory = mkdtempSync(path.join(tmpdir(), 'tributary-log-crash-'));
  for (let round = 0; round < 3; round++) {
    const child = spawn(process.execPath, ['--input-type=module', '-e', producer(directory)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const acknowledged: Array<{ value: string; partition: number; offset: number }> = [];
    const target = 500 + Math.floor(Math.random() * 1500);
    await new Promise<void>((resolve) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        const [value, partition, offset] = line.split(' ');
        acknowledged.push({ value: value!, partition: Number(partition), offset: Number(offset) });
        if (acknowledged.length === target) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.once('exit', () => resolve());
    });
    await new Promise((resolve) =>
      child.exitCode !== null || child.signalCode !== null ? resolve(undefined) : child.once('exit', resolve),
    );
    assert.ok(
      acknowledged.length >= target,
      `round ${round}: the producer acknowledged ${acknowledged.length} records`,
    );
    const log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
    try {
      for (const { value, partition, offset } of acknowledged) {
        const [record] = await log.read('events', partition, offset, { maxRecords: 1 });
        assert.equal(record?.offset, offset);
        assert.equal(new TextDecoder().decode(record.value), value, `record at ${partition}:${offset}`);
      }
      // Offsets stay consecutive after the crash.
      for (const { partition, end } of await log.offsets('events')) {
        const all = await log.read('events', partition, 0, { maxRecords: 1_000_000 });
        assert.deepEqual(
          all.map((r) => r.offset),
          Array.from({ length: end }, (_, i) => i),
        );
      }
    } finally {
      await log.close();
    }
  }
});

it('opens from many processes at the same moment without "database is locked"', async () => {
  // A CLI command and a running source often open the same log together; the first of them creates it.
  for (let round = 0; round < 5; round++) {
    const directory = mkdtempSync(path.join(tmpdir(), 'tributary-log-open-'));
    const opener = `
import { EmbeddedLog } from ${JSON.stringify(new URL('./embedded-log.ts', import.meta.url).href)};
const log = await EmbeddedLog.open({ directory: ${JSON.stringify(directory)}, retentionIntervalMs: 0 });
await log.ensureTopic('events', { partitions: 2 });
await log.append('events', [{ key: 'k', value: new TextEncoder().encode('v') }]);
await log.close();
`;
    const results = await Promise.all(
      Array.from({ length: 6 }, async () => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', opener], {
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
        return { code, stderr };
      }),
    );
    for (const { code, stderr } of results) assert.equal(code, 0, `round ${round}: ${stderr}`);
    const log = await EmbeddedLog.open({ directory, retentionIntervalMs: 0 });
    try {
      const total = (await log.offsets('events')).reduce((sum, p) => sum + p.end - p.start, 0);
      assert.equal(total, 6, 'every process appended its record');
    } finally {
      await log.close();
    }
  }
});
