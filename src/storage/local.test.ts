import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { isTributaryError } from '../errors.ts';
import { fileLocationOf, LocalStorage, localPathOf, S3Storage, storageFor } from './index.ts';
import { storageCases } from './storage.case.ts';

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'tributary-storage-'));
}

for (const fsync of [true, false]) {
  storageCases(`LocalStorage (fsync: ${fsync}, file:// locations)`, async () => {
    const dir = await tempDir();
    return {
      storage: new LocalStorage({ fsync }),
      root: fileLocationOf(dir),
      dispose: () => rm(dir, { recursive: true, force: true }),
    };
  });
}
storageCases('LocalStorage (plain paths)', async () => {
  const dir = await tempDir();
  return { storage: new LocalStorage(), root: dir, dispose: () => rm(dir, { recursive: true, force: true }) };
});

describe('LocalStorage locations', () => {
  it('reads one file through every spelling of its location', async () => {
    const dir = await tempDir();
    try {
      const storage = new LocalStorage();
      const file = path.join(dir, 'with space', '100%.json');
      await storage.write(file, new TextEncoder().encode('{}'));
      for (const location of [file, `file://${file}`, `file:${file}`, `file://localhost${file}`]) {
        assert.equal(new TextDecoder().decode(await storage.read(location)), '{}', location);
        assert.equal(storage.localPath(location), file);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('lists locations in the form of the prefix', async () => {
    const dir = await tempDir();
    try {
      const storage = new LocalStorage({ fsync: false });
      await storage.write(path.join(dir, 'm', 'a.json'), new Uint8Array(1));
      for (const prefix of [`file://${dir}/m`, `file:${dir}/m/`, `${dir}/m`]) {
        const listed = [];
        for await (const entry of storage.list(prefix)) listed.push(entry.location);
        assert.deepEqual(listed, [`${prefix.replace(/\/$/, '')}/a.json`]);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses locations that are not local absolute paths', async () => {
    const storage = new LocalStorage();
    for (const location of [
      'relative/file',
      's3://bucket/key',
      'file://otherhost/x',
      'file:relative',
      '/a\0b',
    ]) {
      await assert.rejects(
        storage.read(location),
        (error: unknown) =>
          isTributaryError(error, 'STORAGE_IO') &&
          error.context.reason === 'invalid-location' &&
          error.message.includes(JSON.stringify(location)),
        location,
      );
    }
  });

  it('converts between paths and file URIs verbatim', () => {
    assert.equal(fileLocationOf('/w/a b/100%'), 'file:///w/a b/100%');
    assert.equal(localPathOf('file:///w/a b/100%'), '/w/a b/100%');
    assert.equal(localPathOf('file:/w/x'), '/w/x');
    assert.throws(
      () => fileLocationOf('relative/dir'),
      (error: unknown) => isTributaryError(error, 'STORAGE_IO'),
    );
  });
});

describe('LocalStorage failures', () => {
  it('reports a write onto a directory as STORAGE_IO and leaves no temporary file', async () => {
    const dir = await tempDir();
    try {
      const storage = new LocalStorage();
      mkdirSync(path.join(dir, 'taken', 'child'), { recursive: true });
      await assert.rejects(
        storage.write(path.join(dir, 'taken'), new Uint8Array(3)),
        (error: unknown) => isTributaryError(error, 'STORAGE_IO') && error.context.reason === undefined,
      );
      assert.deepEqual(readdirSync(dir), ['taken']);
      assert.equal(await storage.exists(path.join(dir, 'taken')), false, 'a directory is not a file');
      await assert.rejects(storage.stat(path.join(dir, 'taken')), (error: unknown) =>
        isTributaryError(error, 'STORAGE_NOT_FOUND'),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reports a file standing where a directory should be as STORAGE_IO', async () => {
    const dir = await tempDir();
    try {
      writeFileSync(path.join(dir, 'file'), 'x');
      const storage = new LocalStorage();
      for (const write of [storage.write.bind(storage), storage.writeExclusive.bind(storage)]) {
        await assert.rejects(
          write(path.join(dir, 'file', 'below.json'), new Uint8Array(1)),
          (error: unknown) => isTributaryError(error, 'STORAGE_IO') && error.context.reason === undefined,
        );
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('does not list a temporary file a crashed writer left behind', async () => {
    const dir = await tempDir();
    try {
      writeFileSync(path.join(dir, '.v3.metadata.json.0b7e5a3c-1f2d-4e5f-8a9b-0c1d2e3f4a5b.tmp'), 'partial');
      writeFileSync(path.join(dir, 'v2.metadata.json'), '{}');
      const listed = [];
      for await (const entry of new LocalStorage().list(dir)) listed.push(path.basename(entry.location));
      assert.deepEqual(listed, ['v2.metadata.json']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('storageFor', () => {
  it('gives local storage for file URIs and absolute paths', async () => {
    const dir = await tempDir();
    try {
      for (const uri of [fileLocationOf(dir), dir]) {
        const storage = storageFor(uri, { fsync: false });
        assert.ok(storage instanceof LocalStorage);
        await storage.write(`${uri}/x`, new Uint8Array(2));
        assert.equal(storage.localPath(`${uri}/x`), path.join(dir, 'x'));
      }
      assert.ok(existsSync(path.join(dir, 'x')));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('opens S3 for s3://, s3a:// and s3n://, and refuses other schemes and relative paths with CONFIG_INVALID', () => {
    for (const uri of ['s3://bucket/warehouse', 's3a://bucket', 's3n://bucket/w/']) {
      const storage = storageFor(uri, { s3: { region: 'us-east-1' } });
      assert.ok(storage instanceof S3Storage, uri);
      storage.destroy();
    }
    for (const [uri, words] of [
      ['gs://bucket/warehouse', /Unsupported storage scheme "gs:"/],
      ['.tributary/warehouse', /not absolute/],
    ] as const) {
      assert.throws(
        () => storageFor(uri),
        (error: unknown) => isTributaryError(error, 'CONFIG_INVALID') && words.test(error.message),
        uri,
      );
    }
  });
});

describe('LocalStorage.writeFile', () => {
  it('moves a staged file into place, in new directories, and copies it from another filesystem', async () => {
    const dir = await tempDir();
    try {
      const staged = path.join(dir, 'staging', 'a.parquet');
      mkdirSync(path.dirname(staged), { recursive: true });
      writeFileSync(staged, 'PAR1');
      const target = path.join(dir, 'data', 'ts_day=2026-11-23', 'a.parquet');
      await new LocalStorage().writeFile(fileLocationOf(target), staged);
      assert.equal(readFileSync(target, 'utf8'), 'PAR1');
      assert.equal(existsSync(staged), false, 'renamed, not copied');
      // /dev/shm is another filesystem (tmpfs) where there is one: rename fails with EXDEV there.
      if (existsSync('/dev/shm')) {
        const shm = await mkdtemp('/dev/shm/tributary-');
        try {
          writeFileSync(path.join(shm, 'b.parquet'), 'PAR2');
          await new LocalStorage().writeFile(fileLocationOf(target), path.join(shm, 'b.parquet'));
          assert.equal(readFileSync(target, 'utf8'), 'PAR2');
          assert.equal(existsSync(path.join(shm, 'b.parquet')), false);
          assert.deepEqual(readdirSync(path.dirname(target)), ['a.parquet'], 'no temporary file left');
        } finally {
          await rm(shm, { recursive: true, force: true });
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
