/**
 * S3Storage on a real S3 server (the harness's moto, with authentication on): the shared storage suite, then
 * what only S3 has — multipart uploads, paginated listings, conditional writes racing from two clients, and
 * the errors of a missing bucket, wrong credentials, throttling and dropped connections.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import {
  DeleteObjectsCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { isTributaryError } from '../../src/errors.ts';
import { isAlreadyExists, S3Storage, type S3StorageOptions } from '../../src/storage/index.ts';
import { storageCases } from '../../src/storage/storage.case.ts';
import { useService } from '../services/index.ts';
import type { S3Info } from '../services/s3.ts';

const s3 = await useService('s3');
const MiB = 1024 * 1024;

function storageOn(info: S3Info, options: S3StorageOptions = {}): S3Storage {
  return new S3Storage({
    region: info.region,
    endpoint: info.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: info.accessKeyId, secretAccessKey: info.secretAccessKey },
    ...options,
  });
}

function rawClient(info: S3Info): S3Client {
  return new S3Client({
    region: info.region,
    endpoint: info.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: info.accessKeyId, secretAccessKey: info.secretAccessKey },
  });
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
}

/** Deletes every object under `root` (an s3:// or s3a:// location), a thousand keys a request. */
async function removeAll(info: S3Info, root: string): Promise<void> {
  const prefix = `${root.replace(/^s3a?:\/\/[^/]+\//, '')}/`;
  const client = rawClient(info);
  try {
    let token: string | undefined;
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: info.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      const keys = (page.Contents ?? []).flatMap((object) => (object.Key ? [{ Key: object.Key }] : []));
      if (keys.length)
        await client.send(new DeleteObjectsCommand({ Bucket: info.bucket, Delete: { Objects: keys } }));
      token = page.NextContinuationToken;
    } while (token);
  } finally {
    client.destroy();
  }
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => assert.fail('expected a failure'),
    (error: unknown) => error,
  );
}

async function uploadsUnder(info: S3Info, prefix: string): Promise<number> {
  const client = rawClient(info);
  try {
    const { Uploads } = await client.send(
      new ListMultipartUploadsCommand({ Bucket: info.bucket, Prefix: prefix }),
    );
    return Uploads?.length ?? 0;
  } finally {
    client.destroy();
  }
}

describe('S3Storage on an S3 server', { skip: s3.skip }, () => {
  const info = s3.info as S3Info;

  for (const [name, scheme, options] of [
    ['s3:// locations', 's3', {}],
    // Everything above 512 KiB as a multipart upload: the suite's 1 MiB replacements go up in parts.
    ['s3a:// locations, multipart above 512 KiB', 's3a', { multipartThresholdBytes: 512 * 1024 }],
  ] as const) {
    storageCases(`S3Storage (${name})`, async () => {
      const storage = storageOn(info, options);
      const root = `${scheme}://${info.bucket}/${randomUUID()}`;
      return {
        storage,
        root,
        dispose: async () => {
          await removeAll(info, root);
          storage.destroy();
        },
      };
    });
  }

  describe('S3Storage specifics', () => {
    const storage = storageOn(info);
    const root = `s3://${info.bucket}/${randomUUID()}`;
    after(async () => {
      await removeAll(info, root);
      storage.destroy();
    });

    it('uploads a file above the multipart threshold in parts, and reads it back whole', async () => {
      const location = `${root}/big/data.parquet`;
      const bytes = new Uint8Array(17 * MiB + 3);
      for (let i = 0; i < bytes.length; i += 4096) bytes[i] = (i / 4096) % 251;
      await storage.write(location, bytes);
      assert.equal((await storage.stat(location)).size, bytes.length);
      assert.ok(Buffer.from(await storage.read(location)).equals(bytes));
      assert.deepEqual(
        [...(await storage.readRange(location, 16 * MiB - 2, 8))],
        [...bytes.subarray(16 * MiB - 2, 16 * MiB + 6)],
      );
      const client = rawClient(info);
      try {
        const head = await client.send(
          new HeadObjectCommand({ Bucket: info.bucket, Key: location.slice(`s3://${info.bucket}/`.length) }),
        );
        assert.match(head.ETag ?? '', /-2"$/, 'a multipart object of two parts');
      } finally {
        client.destroy();
      }
      assert.equal(await uploadsUnder(info, `${root.slice(`s3://${info.bucket}/`.length)}/big/`), 0);
    });

    it('aborts a multipart upload that fails, leaving no parts behind', async () => {
      const small = storageOn(info, { multipartThresholdBytes: 1024, partSizeBytes: 5 * MiB });
      try {
        const location = `${root}/exclusive/big.bin`;
        await small.writeExclusive(location, new Uint8Array(6 * MiB).fill(1));
        const error = await failure(small.writeExclusive(location, new Uint8Array(6 * MiB).fill(2)));
        assert.ok(isAlreadyExists(error), String(error));
        assert.equal((await small.read(location))[0], 1);
        assert.equal(await uploadsUnder(info, `${root.slice(`s3://${info.bucket}/`.length)}/exclusive/`), 0);
      } finally {
        small.destroy();
      }
    });

    it('lists past one page: 1,005 keys with S3 pages of 1,000, and 23 keys in pages of 5', async () => {
      const many = `${root}/many`;
      const names = Array.from({ length: 1005 }, (_, i) => `${many}/k${String(i).padStart(4, '0')}`);
      const queue = [...names];
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let name = queue.pop(); name !== undefined; name = queue.pop())
            await storage.write(name, new Uint8Array(1));
        }),
      );
      const listed = [];
      for await (const entry of storage.list(many)) listed.push(entry.location);
      assert.deepEqual(listed.sort(), names);

      const paged = storageOn(info, { listPageSize: 5 });
      try {
        const some = names.slice(0, 23).map((name) => name.replace('/many/', '/few/'));
        for (const name of some) await paged.write(name, new Uint8Array(2));
        const seen = [];
        for await (const entry of paged.list(`${root}/few/`)) seen.push(entry.location);
        assert.deepEqual(seen.sort(), some);
      } finally {
        paged.destroy();
      }
    });

    it('of two clients racing writeExclusive for one key, exactly one wins, round after round', async () => {
      const other = storageOn(info);
      try {
        for (let round = 0; round < 10; round += 1) {
          const location = `${root}/race/v${round}.metadata.json`;
          const outcomes = await Promise.allSettled([
            storage.writeExclusive(location, new TextEncoder().encode(`first ${round}`)),
            other.writeExclusive(location, new TextEncoder().encode(`second ${round}`)),
          ]);
          const won = outcomes.map((outcome) => outcome.status === 'fulfilled');
          assert.equal(won.filter(Boolean).length, 1, `round ${round}`);
          const lost = outcomes.find((outcome) => outcome.status === 'rejected');
          assert.ok(lost && isAlreadyExists(lost.reason), String(lost?.reason));
          const content = new TextDecoder().decode(await storage.read(location));
          assert.equal(content, won[0] ? `first ${round}` : `second ${round}`);
        }
      } finally {
        other.destroy();
      }
    });

    it('names a missing bucket and says to create it, for every operation', async () => {
      const location = 's3://tributary-no-such-bucket/t/metadata/v1.metadata.json';
      const fresh = storageOn(info);
      try {
        for (const [operation, call] of [
          ['read', () => fresh.read(location)],
          ['write', () => fresh.write(location, new Uint8Array(1))],
          ['writeExclusive', () => fresh.writeExclusive(location, new Uint8Array(1))],
          ['exists', () => fresh.exists(location)],
          ['stat', () => fresh.stat(location)],
          ['list', () => collect(fresh.list('s3://tributary-no-such-bucket/t'))],
        ] as const) {
          const error = await failure(call());
          assert.ok(isTributaryError(error, 'STORAGE_IO'), `${operation}: ${String(error)}`);
          assert.equal(error.context.reason, 'no-bucket', operation);
          assert.match(error.message, /tributary-no-such-bucket/, operation);
          assert.match(error.message, /does not exist/, operation);
          assert.match(error.hint ?? '', /Create the bucket tributary-no-such-bucket/, operation);
          assert.equal(error.retryable, false, operation);
        }
      } finally {
        fresh.destroy();
      }
    });

    it('refuses wrong credentials with a message naming the location and storage.s3 credentials', async () => {
      const location = `${root}/secret.json`;
      await storage.write(location, new Uint8Array(3));
      for (const credentials of [
        { accessKeyId: info.accessKeyId, secretAccessKey: 'not-the-secret' },
        { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: info.secretAccessKey },
      ]) {
        const wrong = storageOn(info, { credentials });
        try {
          for (const [operation, call] of [
            ['read', () => wrong.read(location)],
            ['write', () => wrong.write(location, new Uint8Array(1))],
            ['exists', () => wrong.exists(location)],
            ['list', () => collect(wrong.list(root))],
            ['delete', () => wrong.delete(location)],
          ] as const) {
            const error = await failure(call());
            assert.ok(isTributaryError(error, 'STORAGE_IO'), `${operation}: ${String(error)}`);
            assert.ok(['credentials', 'access-denied'].includes(String(error.context.reason)), operation);
            assert.ok(error.message.includes(operation === 'list' ? root : location), error.message);
            assert.match(error.hint ?? '', /Check storage\.s3 credentials/, operation);
            assert.equal(error.retryable, false, operation);
          }
          // A GET's body says which: the secret or the key id.
          const error = await failure(wrong.read(location));
          assert.ok(isTributaryError(error) && error.context.reason === 'credentials', String(error));
        } finally {
          wrong.destroy();
        }
      }
      assert.equal((await storage.read(location)).length, 3, 'nothing was changed');
    });
  });
});

/** A loopback HTTP server answering every request with `respond`; counts the requests. */
async function fakeEndpoint(
  respond: (request: IncomingMessage, answer: (status: number, body: string) => void) => void,
): Promise<{ endpoint: string; requests: () => number; close: () => Promise<void> }> {
  let count = 0;
  const server: Server = createServer((incoming, response) => {
    count += 1;
    incoming.resume();
    respond(incoming, (status, body) => {
      response.writeHead(status, { 'content-type': 'application/xml' }).end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests: () => count,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const errorXml = (code: string, message: string) =>
  `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;

describe('S3Storage when the service fails', () => {
  const options = (endpoint: string): S3StorageOptions => ({
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'secret' },
    maxAttempts: 2,
  });

  for (const [status, code] of [
    [503, 'SlowDown'],
    [500, 'InternalError'],
  ] as const) {
    it(`retries ${status} ${code}, then reports it as retryable STORAGE_IO`, async () => {
      const fake = await fakeEndpoint((_, answer) =>
        answer(status, errorXml(code, 'Please reduce your request rate.')),
      );
      const storage = new S3Storage(options(fake.endpoint));
      try {
        const error = await failure(storage.write('s3://bucket/t/data/a.parquet', new Uint8Array(4)));
        assert.ok(isTributaryError(error, 'STORAGE_IO'), String(error));
        assert.equal(error.retryable, true);
        assert.equal(error.context.code, code);
        assert.match(error.message, /s3:\/\/bucket\/t\/data\/a\.parquet/);
        assert.equal(fake.requests(), 2, 'the SDK retried once (maxAttempts: 2)');
      } finally {
        storage.destroy();
        await fake.close();
      }
    });
  }

  it('reports a dropped connection as retryable, and a closed port with the endpoint to check', async () => {
    const fake = await fakeEndpoint((incoming) => incoming.socket.destroy());
    const storage = new S3Storage(options(fake.endpoint));
    try {
      const error = await failure(storage.read('s3://bucket/k'));
      assert.ok(isTributaryError(error, 'STORAGE_IO'), String(error));
      assert.equal(error.retryable, true);
    } finally {
      storage.destroy();
      await fake.close();
    }
    const closed = new S3Storage(options(fake.endpoint)); // nothing listens there any more
    try {
      const error = await failure(closed.read('s3://bucket/k'));
      assert.ok(isTributaryError(error, 'STORAGE_IO'), String(error));
      assert.equal(error.retryable, true);
      assert.match(error.hint ?? '', /storage\.s3 endpoint/);
    } finally {
      closed.destroy();
    }
  });
});

describe('S3Storage when a response is lost', { skip: s3.skip }, () => {
  it('takes a 412 on its retried writeExclusive for its own success when the object holds its bytes', async () => {
    const info = s3.info as S3Info;
    // A proxy to the S3 server that forwards the first conditional PUT and then drops the connection
    // before the answer arrives: the SDK retries, and S3 answers 412 to the retry.
    const target = new URL(info.endpoint);
    let dropped = 0;
    const proxy = createServer((incoming, response) => {
      const forward = request(
        {
          host: target.hostname,
          port: target.port,
          method: incoming.method,
          path: incoming.url,
          headers: incoming.headers,
        },
        (answer) => {
          if (incoming.method === 'PUT' && incoming.headers['if-none-match'] === '*' && dropped === 0) {
            dropped += 1;
            answer.resume();
            incoming.socket.destroy();
            return;
          }
          response.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(response);
        },
      );
      incoming.pipe(forward);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const storage = storageOn(info, {
      endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    });
    const location = `s3://${info.bucket}/${randomUUID()}/metadata/v1.metadata.json`;
    try {
      await storage.writeExclusive(location, new TextEncoder().encode('{"mine":true}'));
      assert.equal(dropped, 1, 'the first answer was dropped');
      assert.equal(new TextDecoder().decode(await storage.read(location)), '{"mine":true}');
      // Someone else's bytes there are still a lost race.
      dropped = 0;
      const error = await failure(
        storage.writeExclusive(location, new TextEncoder().encode('{"mine":false}')),
      );
      assert.ok(isAlreadyExists(error), String(error));
    } finally {
      await storage.delete(location);
      storage.destroy();
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });
});
