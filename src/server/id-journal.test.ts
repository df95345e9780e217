import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { IdJournal } from './id-journal.ts';

const PERIOD = 3_600_000;
const NOW = 500 * PERIOD; // every write of a test in one period's file

/** `n` entries seen at NOW, fingerprints from `base`. */
function entries(n: number, base: number): Uint32Array {
  const words = new Uint32Array(4 * n);
  for (let i = 0; i < n; i++) words.set([base + i, 7, 1 + i, NOW / 1000], 4 * i);
  return words;
}

function readBack(directory: string, readBytes?: number): { firsts: number[]; marks: Map<string, number> } {
  const firsts: number[] = [];
  const journal = new IdJournal(directory);
  const marks = journal.read(NOW - 1000, (words, at) => firsts.push(words[at]!), readBytes);
  journal.close();
  return { firsts, marks };
}

describe('id journal', () => {
  it('reads a file a piece at a time: chunks across pieces, and pieces smaller than a chunk', () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'id-journal-'));
    const journal = new IdJournal(directory);
    for (let i = 0; i < 20; i++)
      journal.append(entries(i % 4, 100 * i), i % 4, new Map([['t\0' + '0', i]]), NOW, PERIOD);
    journal.close();
    const whole = readBack(directory);
    assert.equal(whole.firsts.length, 30);
    for (const readBytes of [1, 7, 16, 64, 100, 1000])
      assert.deepEqual(readBack(directory, readBytes), whole);
    // A torn tail is cut however the file is read.
    const [file] = readdirSync(directory);
    truncateSync(path.join(directory, file!), statSync(path.join(directory, file!)).size - 5);
    const torn = readBack(directory, 64);
    assert.deepEqual(torn.firsts, whole.firsts.slice(0, -3));
    assert.deepEqual(readBack(directory), torn, 'cut at the last whole chunk');
  });

  it('stops at a chunk whose length says more than the file holds, and cuts the file there', () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'id-journal-'));
    const journal = new IdJournal(directory);
    journal.append(entries(2, 10), 2, new Map(), NOW, PERIOD);
    const [file] = readdirSync(directory);
    const cut = statSync(path.join(directory, file!)).size;
    journal.append(entries(1, 20), 1, new Map(), NOW, PERIOD);
    journal.close();
    const bytes = readFileSync(path.join(directory, file!));
    bytes.writeUInt32LE(0xfffffff0, cut + 4); // the second chunk's entries length
    writeFileSync(path.join(directory, file!), bytes);
    assert.deepEqual(readBack(directory, 8).firsts, [10, 11]);
    assert.equal(statSync(path.join(directory, file!)).size, cut);
  });

  it('reads entries and the newest watermarks back, up to a torn write, and goes on after it', () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'id-journal-'));
    const journal = new IdJournal(directory);
    journal.append(entries(2, 10), 2, new Map([['t\0' + '0', 5]]), NOW, PERIOD);
    journal.append(entries(0, 0), 0, new Map([['t\0' + '1', 9]]), NOW, PERIOD);
    journal.append(entries(1, 20), 1, new Map([['t\0' + '0', 7]]), NOW, PERIOD);
    journal.close();
    assert.deepEqual(readBack(directory), {
      firsts: [10, 11, 20],
      marks: new Map([
        ['t\0' + '0', 7],
        ['t\0' + '1', 9],
      ]),
    });
    const [file] = readdirSync(directory);
    const size = statSync(path.join(directory, file!)).size;
    truncateSync(path.join(directory, file!), size - 3); // a crash cut the last write short
    assert.deepEqual(readBack(directory), {
      firsts: [10, 11],
      marks: new Map([
        ['t\0' + '0', 5],
        ['t\0' + '1', 9],
      ]),
    });
    const after = new IdJournal(directory);
    after.append(entries(1, 30), 1, new Map(), NOW, PERIOD);
    after.close();
    assert.deepEqual(readBack(directory).firsts, [10, 11, 30], 'written after the cut, read back');
  });

  it('cuts off a write that failed part-way, so that later ones are read back', () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'id-journal-'));
    const script = path.join(directory, 'fill.ts');
    writeFileSync(
      script,
      `import { IdJournal } from ${JSON.stringify(path.join(import.meta.dirname, 'id-journal.ts'))};
const journal = new IdJournal(${JSON.stringify(directory)});
const entries = (n, base) => { const w = new Uint32Array(4 * n); for (let i = 0; i < n; i++) w.set([base + i, 7, 1 + i, ${NOW / 1000}], 4 * i); return w; };
for (let c = 0; c < 6; c++) {
  try { journal.append(entries(100, 1000 * c), 100, new Map(), ${NOW}, ${PERIOD}); } catch (e) { console.log(e.code); }
}
journal.close();`,
    );
    // A file size limit of 8 KiB: the sixth chunk of 1,616 bytes fails part-way (EFBIG).
    const child = spawnSync('bash', ['-c', `ulimit -f 8 && exec "${process.execPath}" "${script}"`], {
      encoding: 'utf8',
    });
    assert.equal(child.status, 0, child.stderr);
    assert.match(child.stdout, /EFBIG/);
    const journal = new IdJournal(directory);
    journal.append(entries(100, 5000), 100, new Map(), NOW, PERIOD); // written again, space being back
    journal.close();
    const { firsts } = readBack(directory);
    assert.equal(firsts.length, 600);
    assert.equal(firsts.at(-1), 5099);
  });

  it('deletes the files whose every entry is past, whatever period they were written with', () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'id-journal-'));
    const journal = new IdJournal(directory);
    journal.append(entries(1, 1), 1, new Map(), 100_000, 100_000); // ids-100000-200000
    journal.append(entries(1, 2), 1, new Map(), 150_000, 10_000); // a shorter period after a restart
    journal.append(entries(1, 3), 1, new Map(), 165_000, 10_000);
    journal.close();
    journal.deleteBefore(165_000);
    assert.deepEqual(readdirSync(directory).sort(), ['ids-100000-200000.bin', 'ids-160000-170000.bin']);
    journal.deleteBefore(202_000);
    assert.deepEqual(readdirSync(directory), []);
  });
});
