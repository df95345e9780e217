/**
 * NativeFiles through a staging and a cache directory, as for S3, here over local storage reached only
 * through the Storage interface (CachedFiles never asks for local paths): files are downloaded once, checked
 * against their manifest size, kept within the size limit least recently used first but never while pinned,
 * and a table's appends, deletes, upserts (with the key index) and compaction read and write through it.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isTributaryError } from '../errors.ts';
import { fileLocationOf, LocalStorage } from '../storage/index.ts';
import { openEngine, type Engine } from './duckdb.ts';
import { nativeFiles, type CacheSettings } from './native-files.ts';
import { KeyIndex } from './operations/key-index.ts';
import { compact, expireSnapshots, removeOrphanFiles } from './operations/maintenance.ts';
import { append, deleteWhere, upsert } from './operations/write.ts';
import { planFiles, planScan, scanSql } from './scan.ts';
import { Table } from './table.ts';
import { createTestTable } from './test-support.ts';

/**
 * Local storage that counts its reads of Parquet files, and uploads as S3 does: `writeFile` copies,
 * leaving the staged file for the cache to keep.
 */
class RemoteLikeStorage extends LocalStorage {
  reads = 0;
  override async read(location: string): Promise<Uint8Array> {
    if (location.endsWith('.parquet')) this.reads++;
    return super.read(location);
  }
  override async readRange(location: string, offset: number, length: number): Promise<Uint8Array> {
    if (location.endsWith('.parquet')) this.reads++;
    return super.readRange(location, offset, length);
  }
  override async writeFile(location: string, localPath: string): Promise<void> {
    await this.write(location, readFileSync(localPath));
  }
}

let root: string;
let engine: Engine;
let counter = 0;

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'tributary-native-files-'));
  engine = await openEngine({ threads: 2 });
});
after(() => {
  engine.close();
  rmSync(root, { recursive: true, force: true });
});

function settings(maxCacheBytes = 1 << 30): CacheSettings & { dir: string } {
  const dir = path.join(root, `c${counter++}`);
  return {
    dir,
    stagingDirectory: path.join(dir, 'staging'),
    cacheDirectory: path.join(dir, 'cache'),
    maxCacheBytes,
  };
}

function remoteFile(name: string, body: string): { location: string; size: number } {
  const file = path.join(root, 'remote', name);
  writeFileSync(file, body);
  return { location: fileLocationOf(file), size: Buffer.byteLength(body) };
}

const cacheName = (location: string) => `${createHash('sha256').update(location).digest('hex')}.parquet`;

describe('NativeFiles with a read cache', () => {
  it('downloads a file once, under the SHA-256 of its location, and reads it from the cache after', async () => {
    const storage = new RemoteLikeStorage({ fsync: false });
    const { cacheDirectory } = settings();
    const files = nativeFiles(storage, {
      stagingDirectory: path.join(root, 's'),
      cacheDirectory,
      maxCacheBytes: 1e9,
    });
    mkdirRemote();
    const a = remoteFile('a.parquet', 'aaaa');
    const first = await files.readable([a, a]);
    assert.ok(existsSync(path.join(cacheDirectory, cacheName(a.location))));
    assert.ok(first.path(a.location).startsWith(`${cacheDirectory}/.pins/${process.pid}-`), 'a pin link');
    assert.equal(readFileSync(first.path(a.location), 'utf8'), 'aaaa');
    assert.equal(storage.reads, 1);
    const again = await files.readable([a]);
    assert.equal(storage.reads, 1, 'read from the cache');
    assert.throws(
      () => again.path(fileLocationOf('/elsewhere.parquet')),
      (e) => isTributaryError(e, 'INTERNAL'),
    );
    first.release();
    again.release();
    // Removed behind its back (another process sharing the directory evicted it): downloaded again.
    rmSync(path.join(cacheDirectory, cacheName(a.location)));
    const after = await files.readable([a]);
    assert.equal(readFileSync(after.path(a.location), 'utf8'), 'aaaa');
    assert.equal(storage.reads, 2);
    after.release();
    // Another process (a new cache over the same directory) adopts the file instead of downloading it.
    const other = nativeFiles(storage, {
      stagingDirectory: path.join(root, 's'),
      cacheDirectory,
      maxCacheBytes: 1e9,
    });
    (await other.readable([a])).release();
    assert.equal(storage.reads, 2);
  });

  it('refuses a file whose size is not the manifest size, and keeps no copy of it', async () => {
    const { cacheDirectory, stagingDirectory } = settings();
    const files = nativeFiles(new LocalStorage({ fsync: false }), {
      stagingDirectory,
      cacheDirectory,
      maxCacheBytes: 1e9,
    });
    mkdirRemote();
    // Left by a process that ended: its pin folder goes at the first use.
    mkdirSync(path.join(cacheDirectory, '.pins', '2147483646-dead'), { recursive: true });
    const b = remoteFile('b.parquet', 'bbbb');
    await assert.rejects(
      files.readable([{ location: b.location, size: 5 }]),
      (error) => isTributaryError(error, 'STORAGE_IO') && error.context.reason === 'size-mismatch',
    );
    assert.deepEqual(readdirSync(cacheDirectory), ['.pins']);
    assert.deepEqual(
      readdirSync(path.join(cacheDirectory, '.pins')).map((folder) => folder.split('-')[0]),
      [String(process.pid)],
    );
  });

  it('evicts the least recently used files beyond its limit, never a pinned one', async () => {
    const { cacheDirectory, stagingDirectory } = settings(10);
    const files = nativeFiles(new LocalStorage({ fsync: false }), {
      stagingDirectory,
      cacheDirectory,
      maxCacheBytes: 10,
    });
    mkdirRemote();
    const [x, y, z] = ['x', 'y', 'z'].map((n) => remoteFile(`${n}.parquet`, n.repeat(6)));
    const held = await files.readable([x!]);
    // Another process sharing the directory evicts x: the pin link keeps it readable.
    rmSync(path.join(cacheDirectory, cacheName(x!.location)));
    assert.equal(readFileSync(held.path(x!.location), 'utf8'), 'xxxxxx');
    const second = await files.readable([y!]);
    // 12 bytes, over the limit of 10, but both are pinned: both stay.
    assert.ok(existsSync(held.path(x!.location)) && existsSync(second.path(y!.location)));
    second.release();
    const third = await files.readable([z!]);
    assert.ok(existsSync(held.path(x!.location)), 'pinned: kept');
    assert.equal(existsSync(path.join(cacheDirectory, cacheName(y!.location))), false, 'unpinned: evicted');
    assert.ok(existsSync(third.path(z!.location)));
    held.release();
    third.release();
    await files.forget([z!.location]);
    assert.equal(existsSync(path.join(cacheDirectory, cacheName(z!.location))), false, 'forgotten');
  });

  it('publishes staged files and deletes what it stored when one fails', async () => {
    class FailingStorage extends RemoteLikeStorage {
      override async writeFile(location: string, localPath: string): Promise<void> {
        if (location.endsWith('bad.parquet')) throw new Error('disk full');
        return super.writeFile(location, localPath);
      }
    }
    const { cacheDirectory, stagingDirectory } = settings();
    const files = nativeFiles(new FailingStorage({ fsync: false }), {
      stagingDirectory,
      cacheDirectory,
      maxCacheBytes: 1e9,
    });
    const target = path.join(root, 'published');
    const staging = await files.stage(fileLocationOf(target));
    writeFileSync(path.join(staging.path, 'good.parquet'), 'good');
    await staging.publish([
      {
        localPath: path.join(staging.path, 'good.parquet'),
        location: fileLocationOf(path.join(target, 'good.parquet')),
      },
    ]);
    assert.equal(readFileSync(path.join(target, 'good.parquet'), 'utf8'), 'good');
    assert.ok(
      existsSync(path.join(cacheDirectory, cacheName(fileLocationOf(path.join(target, 'good.parquet'))))),
      'kept in the cache',
    );
    writeFileSync(path.join(staging.path, 'ok.parquet'), 'ok');
    writeFileSync(path.join(staging.path, 'bad.parquet'), 'bad');
    await assert.rejects(
      staging.publish(
        ['ok', 'bad'].map((n) => ({
          localPath: path.join(staging.path, `${n}.parquet`),
          location: fileLocationOf(path.join(target, `${n}.parquet`)),
        })),
      ),
      /disk full/,
    );
    assert.equal(existsSync(path.join(target, 'ok.parquet')), false, 'removed again');
    await staging.dispose();
    assert.equal(existsSync(staging.path), false);
  });

  it('serves a table: appends, deletes, upserts with a key index, compaction and expiry', async () => {
    const storage = new RemoteLikeStorage({ fsync: false });
    const cache = settings(1 << 30);
    const { table } = await createTestTable({
      storage,
      files: nativeFiles(storage, cache),
      directory: path.join(root, 'table'),
      identifier: { namespace: ['test'], name: 'cached' },
      fields: [
        { name: 'id', type: 'long', required: true },
        { name: 'v', type: 'string' },
      ],
      identifierFields: ['id'],
      partition: 'bucket(2, id)',
      properties: { 'write.delete.mode': 'merge-on-read' },
    });
    await append(table, engine, `(select i::BIGINT as id, 'a' as v from range(10) r(i))`);
    await append(table, engine, `(select i::BIGINT as id, 'b' as v from range(10, 20) r(i))`);
    await deleteWhere(table, engine, 'id % 5 = 0');
    const index = new KeyIndex();
    await upsert(table, engine, `(select * from (values (1::BIGINT, 'u'), (30, 'n')) t(id, v))`, {
      keyIndex: index,
    });
    await upsert(table, engine, `(select * from (values (2::BIGINT, 'w'), (31, 'n')) t(id, v))`, {
      keyIndex: index,
    });
    await index.drop();
    const expected = [
      ...Array.from({ length: 20 }, (_, i) => i)
        .filter((i) => i % 5 !== 0)
        .map((i) => ({ id: String(i), v: i === 1 ? 'u' : i === 2 ? 'w' : i < 10 ? 'a' : 'b' })),
      { id: '30', v: 'n' },
      { id: '31', v: 'n' },
    ];
    assert.deepEqual(await rows(table), expected);
    assert.equal(storage.reads, 0, 'every file written was kept in the cache, none downloaded');
    const compacted = await compact(table, engine);
    assert.ok(compacted.rewrittenFiles > 0);
    assert.deepEqual(await rows(table), expected);
    // Another process, with a cache of its own, downloads what it reads.
    const fresh = await createTestTable({
      storage,
      files: nativeFiles(storage, { ...cache, cacheDirectory: path.join(cache.dir, 'fresh') }),
      directory: path.join(root, 'unused'),
      identifier: { namespace: ['test'], name: 'unused' },
      fields: [{ name: 'id', type: 'long' }],
    });
    const reread = new Table(
      table.identifier,
      { ...table.operations, files: fresh.table.files },
      table.state,
    );
    assert.deepEqual(await rows(reread), expected);
    assert.ok(storage.reads > 0, 'downloaded');
    const expired = await expireSnapshots(table, { olderThanMs: Date.now() + 1 });
    assert.ok(expired.deletedFiles > 0);
    assert.deepEqual(await rows(table), expected);
    // Only the live files' copies are left in the cache: expiry forgot the deleted ones.
    const plan = await planScan(table.metadata, table.storage);
    const cached = readdirSync(cache.cacheDirectory).filter((name) => name.endsWith('.parquet'));
    assert.equal(cached.length, planFiles(plan).length);
    assert.deepEqual(readdirSync(cache.stagingDirectory), [], 'no staging left behind');
    // An orphan that was read once leaves the cache with the file.
    const orphan = { location: `${table.location}/data/orphan.parquet`, size: 4 };
    await storage.write(orphan.location, new TextEncoder().encode('PAR1'));
    (await table.files.readable([orphan])).release();
    assert.ok(existsSync(path.join(cache.cacheDirectory, cacheName(orphan.location))));
    assert.deepEqual(await removeOrphanFiles(table, { olderThanMs: Date.now() + 60_000 }), [orphan.location]);
    assert.equal(existsSync(path.join(cache.cacheDirectory, cacheName(orphan.location))), false);
  });
});

/** An empty folder standing for the remote store's files. */
function mkdirRemote(): void {
  rmSync(path.join(root, 'remote'), { recursive: true, force: true });
  mkdirSync(path.join(root, 'remote'), { recursive: true });
}

async function rows(table: Table): Promise<unknown[]> {
  const plan = await planScan(table.metadata, table.storage);
  const readable = await table.files.readable(planFiles(plan));
  try {
    const reader = await engine.connection.runAndReadAll(
      `select id, v from ${scanSql(plan, readable)} order by id`,
    );
    return reader.getRowObjectsJson();
  } finally {
    readable.release();
  }
}
