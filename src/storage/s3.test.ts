import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTributaryError } from '../errors.ts';
import { parseS3Location, S3Storage } from './index.ts';

describe('S3 locations', () => {
  it('splits s3://, s3a:// and s3n:// locations into bucket and verbatim key', () => {
    assert.deepEqual(parseS3Location('s3://bucket/w/a b/100%.json'), {
      bucket: 'bucket',
      key: 'w/a b/100%.json',
    });
    assert.deepEqual(parseS3Location('s3a://bucket/k'), { bucket: 'bucket', key: 'k' });
    assert.deepEqual(parseS3Location('S3N://bucket//double'), { bucket: 'bucket', key: '/double' });
    assert.deepEqual(parseS3Location('s3://bucket', { allowEmptyKey: true }), { bucket: 'bucket', key: '' });
    assert.deepEqual(parseS3Location('s3://bucket/', { allowEmptyKey: true }), { bucket: 'bucket', key: '' });
  });

  it('refuses locations that name no object, or are not S3, as invalid-location', async () => {
    for (const location of [
      's3://bucket',
      's3://bucket/',
      's3:///key',
      'file:///tmp/x',
      '/tmp/x',
      'gs://b/k',
    ]) {
      assert.throws(
        () => parseS3Location(location),
        (error: unknown) =>
          isTributaryError(error, 'STORAGE_IO') &&
          error.context.reason === 'invalid-location' &&
          error.message.includes(JSON.stringify(location)),
        location,
      );
    }
    const storage = new S3Storage({ region: 'us-east-1', endpoint: 'http://127.0.0.1:9' });
    try {
      await assert.rejects(storage.read('file:///tmp/x'), (error: unknown) =>
        isTributaryError(error, 'STORAGE_IO'),
      );
    } finally {
      storage.destroy();
    }
  });

  it('has no local paths', async () => {
    const storage = new S3Storage({ region: 'us-east-1', endpoint: 'http://127.0.0.1:9' });
    try {
      assert.equal(storage.localPath('s3://bucket/t/data/a.parquet'), undefined);
    } finally {
      storage.destroy();
    }
  });
});
