/**
 * The conformance suite every `Storage` implementation passes: call `storageCases` from a test file with a
 * factory of fresh, empty locations (`local.test.ts` for local disk, test/integration/storage-s3.test.ts for S3).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { isTributaryError } from '../errors.ts';
import { isAlreadyExists, type Storage } from './storage.ts';

export interface StorageFixture {
  readonly storage: Storage;
  /** A directory location, empty and unique to one test, under which the test may write anything. */
  readonly root: string;
  /** Removes what the test left; optional. */
  readonly dispose?: () => Promise<void>;
}

const text = (value: string): Uint8Array => new TextEncoder().encode(value);
const decode = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

async function collect(iterable: AsyncIterable<{ location: string; size: number }>) {
  const entries: { location: string; size: number }[] = [];
  for await (const { location, size } of iterable) entries.push({ location, size });
  return entries.sort((a, b) => (a.location < b.location ? -1 : a.location > b.location ? 1 : 0));
}

export function storageCases(name: string, setup: () => Promise<StorageFixture>): void {
  const withFixture = (work: (fixture: StorageFixture) => Promise<void>) => async () => {
    const fixture = await setup();
    try {
      await work(fixture);
    } finally {
      await fixture.dispose?.();
    }
  };

  describe(`Storage conformance: ${name}`, () => {
    it(
      'reads back what it wrote, replaces on write, and reports size and existence',
      withFixture(async ({ storage, root }) => {
        const location = `${root}/a/b/c/file.bin`;
        assert.equal(await storage.exists(location), false);
        await storage.write(location, text('first version'));
        assert.equal(decode(await storage.read(location)), 'first version');
        assert.equal(await storage.exists(location), true);
        const before = await storage.stat(location);
        assert.equal(before.size, 13);
        assert.ok(Math.abs(before.modifiedMs - Date.now()) < 60_000, 'modifiedMs is a recent epoch time');
        await storage.write(location, text('v2'));
        assert.equal(decode(await storage.read(location)), 'v2');
        assert.equal((await storage.stat(location)).size, 2);
      }),
    );

    it(
      'writes and reads an empty file',
      withFixture(async ({ storage, root }) => {
        await storage.write(`${root}/empty`, new Uint8Array());
        assert.equal((await storage.read(`${root}/empty`)).length, 0);
        assert.equal((await storage.stat(`${root}/empty`)).size, 0);
      }),
    );

    it(
      'answers STORAGE_NOT_FOUND for a missing file, and a delete of one is not an error',
      withFixture(async ({ storage, root }) => {
        const missing = `${root}/nope/missing.json`;
        const notFound = (error: unknown) => isTributaryError(error, 'STORAGE_NOT_FOUND');
        await assert.rejects(storage.read(missing), notFound);
        await assert.rejects(storage.readRange(missing, 0, 1), notFound);
        await assert.rejects(storage.stat(missing), notFound);
        assert.equal(await storage.exists(missing), false);
        await storage.delete(missing);
      }),
    );

    it(
      'reads exact byte ranges and refuses one past the end',
      withFixture(async ({ storage, root }) => {
        const location = `${root}/range.bin`;
        await storage.write(
          location,
          Uint8Array.from({ length: 256 }, (_, i) => i),
        );
        assert.deepEqual([...(await storage.readRange(location, 10, 4))], [10, 11, 12, 13]);
        assert.deepEqual([...(await storage.readRange(location, 252, 4))], [252, 253, 254, 255]);
        assert.equal((await storage.readRange(location, 256, 0)).length, 0);
        await assert.rejects(storage.readRange(location, 250, 10), (error: unknown) =>
          isTributaryError(error, 'STORAGE_IO'),
        );
      }),
    );

    it(
      'writeFile stores a local file (in parts when large), replacing one there, and names a missing one',
      withFixture(async ({ storage, root }) => {
        const staging = await mkdtemp(path.join(tmpdir(), 'tributary-staging-'));
        try {
          // Big enough for a multipart upload of two parts where the threshold is low (5 MiB parts).
          const big = Uint8Array.from({ length: 6 * 1024 * 1024 + 7 }, (_, i) => (i * 31) % 251);
          const location = `${root}/data/p=1/big.parquet`;
          await storage.write(location, text('old'));
          await writeFile(path.join(staging, 'big.parquet'), big);
          await storage.writeFile(location, path.join(staging, 'big.parquet'));
          assert.ok(Buffer.from(await storage.read(location)).equals(big));
          assert.equal((await storage.stat(location)).size, big.length);
          await writeFile(path.join(staging, 'small.parquet'), 'PAR1');
          await storage.writeFile(`${root}/data/small.parquet`, path.join(staging, 'small.parquet'));
          assert.equal(decode(await storage.read(`${root}/data/small.parquet`)), 'PAR1');
          const missing = path.join(staging, 'gone.parquet');
          await assert.rejects(storage.writeFile(`${root}/data/gone.parquet`, missing), (error: unknown) => {
            assert.ok(isTributaryError(error, 'STORAGE_IO'), String(error));
            assert.match(error.message, /gone\.parquet/);
            return true;
          });
          assert.equal(await storage.exists(`${root}/data/gone.parquet`), false);
        } finally {
          await rm(staging, { recursive: true, force: true });
        }
      }),
    );

    it(
      'deletes a file',
      withFixture(async ({ storage, root }) => {
        const location = `${root}/doomed.txt`;
        await storage.write(location, text('x'));
        await storage.delete(location);
        assert.equal(await storage.exists(location), false);
        await storage.delete(location);
      }),
    );

    it(
      'writeExclusive creates a file once and never overwrites it',
      withFixture(async ({ storage, root }) => {
        const location = `${root}/metadata/00001-a.metadata.json`;
        await storage.writeExclusive(location, text('{"winner":true}'));
        const error = await storage.writeExclusive(location, text('{"winner":false}')).then(
          () => undefined,
          (rejection: unknown) => rejection,
        );
        assert.ok(isAlreadyExists(error), `expected an already-exists error, got ${String(error)}`);
        assert.ok(isTributaryError(error) && error.message.includes(location), 'the error names the file');
        assert.equal(decode(await storage.read(location)), '{"winner":true}');
      }),
    );

    it(
      'of many racing writeExclusive calls exactly one wins, and its bytes are the file',
      withFixture(async ({ storage, root }) => {
        const location = `${root}/metadata/v2.metadata.json`;
        const racers = Array.from({ length: 12 }, (_, i) => `writer ${i} `.repeat(5_000));
        const outcomes = await Promise.allSettled(
          racers.map((body) => storage.writeExclusive(location, text(body))),
        );
        const winners = outcomes.flatMap((outcome, i) => (outcome.status === 'fulfilled' ? [i] : []));
        assert.equal(winners.length, 1);
        for (const outcome of outcomes) {
          if (outcome.status === 'rejected')
            assert.ok(isAlreadyExists(outcome.reason), String(outcome.reason));
        }
        assert.equal(decode(await storage.read(location)), racers[winners[0] ?? -1]);
      }),
    );

    it(
      'lists every file under a prefix, recursively, with sizes, and nothing for a missing prefix',
      withFixture(async ({ storage, root }) => {
        const files = {
          'table/metadata/v1.metadata.json': 'one',
          'table/metadata/snap-1.avro': 'four',
          'table/data/p=1/a.parquet': 'parquet',
          'table/data/p=2/b.parquet': 'bb',
          'table2/data/c.parquet': 'not under table/',
        };
        for (const [key, body] of Object.entries(files)) await storage.write(`${root}/${key}`, text(body));
        const expected = Object.entries(files)
          .filter(([key]) => key.startsWith('table/'))
          .map(([key, body]) => ({ location: `${root}/${key}`, size: body.length }))
          .sort((a, b) => (a.location < b.location ? -1 : 1));
        assert.deepEqual(await collect(storage.list(`${root}/table`)), expected);
        assert.deepEqual(await collect(storage.list(`${root}/table/`)), expected);
        assert.deepEqual(await collect(storage.list(`${root}/absent`)), []);
        for await (const entry of storage.list(`${root}/table/metadata`)) {
          assert.equal(typeof entry.modifiedMs, 'number');
        }
      }),
    );

    it(
      'never shows a reader part of a file while it is being replaced',
      withFixture(async ({ storage, root }) => {
        const location = `${root}/hot.bin`;
        const size = 1 << 20;
        const versions = [new Uint8Array(size).fill(0x61), new Uint8Array(size).fill(0x62)] as const;
        await storage.write(location, versions[0]);
        let writing = true;
        const writer = (async () => {
          try {
            for (let i = 1; i <= 20; i += 1) await storage.write(location, versions[i % 2] ?? versions[0]);
          } finally {
            writing = false;
          }
        })();
        const reader = async () => {
          let reads = 0;
          while (writing || reads === 0) {
            const bytes = await storage.read(location);
            assert.equal(bytes.length, size, 'a read saw a file of the wrong size');
            const first = bytes[0];
            assert.ok(first === 0x61 || first === 0x62);
            assert.ok(
              bytes.every((byte) => byte === first),
              'a read saw a mix of two versions',
            );
            reads += 1;
          }
        };
        await Promise.all([writer, reader(), reader()]);
      }),
    );

    it(
      'lists only complete files while writes are in flight',
      withFixture(async ({ storage, root }) => {
        const names = Array.from({ length: 40 }, (_, i) => `${root}/data/part-${i}.parquet`);
        const body = new Uint8Array(64 * 1024).fill(7);
        const writes = Promise.all(names.map((name) => storage.write(name, body)));
        const seen = new Set<string>();
        for (let round = 0; round < 5; round += 1) {
          for await (const entry of storage.list(`${root}/data`)) seen.add(entry.location);
        }
        await writes;
        for (const location of seen) assert.ok(names.includes(location), `listed an unexpected ${location}`);
        const final = await collect(storage.list(`${root}/data`));
        assert.deepEqual(
          final.map((entry) => entry.location),
          [...names].sort(),
        );
        assert.ok(final.every((entry) => entry.size === body.length));
      }),
    );
  });
}
