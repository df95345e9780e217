/**
 * The file sink's commit protocol under the harshest failure: a writer killed with -9 at random moments,
 * many of them between fsyncing a batch's lines and replacing the positions file. After each kill, a new
 * sink must hold exactly the records below its committed positions — none lost, none twice — and carry on.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { it } from 'node:test';
import { pino } from 'pino';
import { fileSinkSchema } from './config.ts';
import { FileSink } from './file-sink.ts';

const PARTITIONS = 3;

const writer = (root: string) => `
import { pino } from 'pino';
import { FileSink } from ${JSON.stringify(new URL('./file-sink.ts', import.meta.url).href)};
const sink = new FileSink({
  config: { type: 'file', path: 'events.ndjson', metadata: false },
  pipeline: 'orders',
  projectRoot: ${JSON.stringify(root)},
  logger: pino({ level: 'silent' }),
  // Widens the window between the data's fsync and the commit, where a kill is the most interesting.
  afterDataSync: () => new Promise((resolve) => setTimeout(resolve, Math.random() < 0.5 ? 2 : 0)),
});
const next = await sink.open();
for (;;) {
  const records = [];
  for (let p = 0; p < ${PARTITIONS}; p++) {
    const from = next.get(p) ?? 0;
    const count = Math.floor(Math.random() * 40);
    for (let o = from; o < from + count; o++) {
      records.push({ value: { p, o, pad: 'x'.repeat(o % 200) }, key: null, partition: p, offset: o, timestamp: 0, headers: {} });
    }
    next.set(p, from + count);
  }
  await sink.write({ records, positions: new Map(next) });
  process.stdout.write(JSON.stringify([...next]) + '\\n');
}
`;

function check(file: string, positions: ReadonlyMap<number, number>): void {
  const seen = new Map<number, number>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line) continue;
    const { p, o } = JSON.parse(line) as { p: number; o: number };
    assert.equal(o, seen.get(p) ?? 0, `partition ${p}: offset ${o} follows ${(seen.get(p) ?? 0) - 1}`);
    seen.set(p, o + 1);
  }
  for (let p = 0; p < PARTITIONS; p++) {
    assert.equal(
      seen.get(p) ?? 0,
      positions.get(p) ?? 0,
      `partition ${p}: the file ends at the committed position`,
    );
  }
}

it(
  'holds every committed record exactly once across kills with -9 mid-write',
  { timeout: 120_000 },
  async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'tributary-file-crash-'));
    let cut = 0;
    const logger = pino(
      { level: 'warn' },
      { write: (line: string) => void (line.includes('cut off') && cut++) },
    );
    let total = 0;
    try {
      for (let round = 0; round < 8; round++) {
        const child = spawn(process.execPath, ['--input-type=module', '-e', writer(root)], {
          cwd: import.meta.dirname,
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let acknowledged = new Map<number, number>();
        let batches = 0;
        const target = 20 + Math.floor(Math.random() * 200);
        const exited = new Promise((resolve) => child.once('exit', resolve));
        await new Promise<void>((resolve) => {
          createInterface({ input: child.stdout }).on('line', (line) => {
            acknowledged = new Map(JSON.parse(line) as Array<[number, number]>);
            if (++batches === target) {
              // Let it get into the next write, then kill it.
              setTimeout(() => child.kill('SIGKILL'), Math.random() * 3);
              resolve();
            }
          });
          child.once('exit', () => resolve());
        });
        await exited;
        assert.equal(child.signalCode, 'SIGKILL', `round ${round}: the writer was killed, not crashed`);

        const sink = new FileSink({
          config: fileSinkSchema.parse({ type: 'file', path: 'events.ndjson' }),
          pipeline: 'orders',
          projectRoot: root,
          logger,
        });
        const positions = await sink.open();
        await sink.close();
        for (const [partition, offset] of acknowledged) {
          assert.ok(
            (positions.get(partition) ?? 0) >= offset,
            `round ${round}: an acknowledged batch was lost`,
          );
        }
        check(path.join(root, 'events.ndjson'), positions);
        total = [...positions.values()].reduce((a, b) => a + b, 0);
      }
      assert.ok(total > 0);
      console.log(
        `file sink crash test: ${total} records, ${cut} of 8 kills left uncommitted lines to cut off`,
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  },
);
