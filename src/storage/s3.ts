/**
 * `Storage` on Amazon S3 and S3-compatible object stores (MinIO, Cloudflare R2, Ceph, moto) through the AWS
 * SDK v3. Locations are `s3://bucket/key` (`s3a://` and `s3n://`, as Hadoop and Spark write them, name the
 * same object); the key is taken verbatim, never percent-decoded.
 *
 * How the contract maps onto S3:
 * - `write` is one PUT, which S3 makes visible whole or not at all; above `multipartThresholdBytes` a
 *   multipart upload, which becomes visible only when it completes (and is aborted when it fails, so no
 *   parts are left to pay for). Neither is ever listed half-written: there are no temporary objects.
 * - `writeExclusive` is a conditional PUT (`If-None-Match: *`, S3 since 2024, MinIO, moto): S3 answers 412
 *   when the key exists, which is the `exists` error; and 409 ConditionalRequestConflict when another
 *   conditional write of the key is in flight, which AWS says to retry (it then succeeds or gets 412).
 * - `writeFile` uploads a local file the same way, a part at a time from disk above the threshold.
 * - S3 is strongly consistent (read-after-write, list-after-write), so nothing more is needed for a reader to
 *   see a write that returned, and a PUT that returned is durable.
 * - `localPath` is always undefined: native readers and writers (DuckDB) go through local staging and a read
 *   cache instead (docs/architecture.md, "Storage").
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  type CompletedPart,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { type FileHandle, open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { isTributaryError, TributaryError } from '../errors.ts';
import type { Storage, StorageEntry, StorageStat } from './storage.ts';

export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** For temporary credentials (STS). */
  readonly sessionToken?: string;
}

export interface S3StorageOptions {
  /** The buckets' region. Default: the SDK's chain (AWS_REGION, then the profile in ~/.aws/config). */
  readonly region?: string;
  /** The service's URL for an S3-compatible store (`http://127.0.0.1:9000`). Default: AWS's for the region. */
  readonly endpoint?: string;
  /**
   * Path-style addressing (`endpoint/bucket/key`) instead of virtual-hosted (`bucket.endpoint/key`): MinIO,
   * moto and most self-hosted stores need it. Default false.
   */
  readonly forcePathStyle?: boolean;
  /**
   * An access key. Default: the SDK's chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE and
   * its SSO or assume-role settings, web identity on Kubernetes, the ECS task or EC2 instance role).
   */
  readonly credentials?: S3Credentials;
  /** Files larger than this go up as multipart uploads (default 16 MiB). */
  readonly multipartThresholdBytes?: number;
  /** Part size of a multipart upload (default 16 MiB; S3's minimum is 5 MiB, its maximum 10,000 parts). */
  readonly partSizeBytes?: number;
  /** Parts of one upload in flight at once (default 4). */
  readonly partConcurrency?: number;
  /** Attempts of each request, the first included, before its error reaches the caller (default 4). */
  readonly maxAttempts?: number;
  /** Time to open a connection (default 5 s). */
  readonly connectionTimeoutMs?: number;
  /** Time a request may wait for the next byte of a response (default 60 s). */
  readonly requestTimeoutMs?: number;
  /** Keys per ListObjectsV2 page, 1 to 1000 (default 1000, S3's maximum). */
  readonly listPageSize?: number;
}

const MiB = 1024 * 1024;
const MIN_PART_SIZE = 5 * MiB;
const MAX_PARTS = 10_000;
/** Attempts of a conditional write that keeps meeting a concurrent one (409), before it gives up retryable. */
const CONFLICT_ATTEMPTS = 5;

const NOT_FOUND_CODES = new Set(['NoSuchKey', 'NotFound']);
const CREDENTIAL_CODES = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'CredentialsProviderError',
  'InvalidClientTokenId',
]);
const REGION_CODES = new Set(['PermanentRedirect', 'AuthorizationHeaderMalformed', 'IncorrectEndpoint']);
const RETRYABLE_CODES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestThrottled',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'InternalError',
  'ServiceUnavailable',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  'ConditionalRequestConflict',
]);
const RETRYABLE_NETWORK = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
]);

type Operation = 'read' | 'write' | 'check' | 'delete' | 'list';

interface ObjectLocation {
  readonly bucket: string;
  readonly key: string;
}

/** What the SDK puts on its errors; read defensively, as network errors carry none of it. */
interface SdkError {
  readonly name?: string;
  readonly code?: string;
  readonly message?: string;
  readonly $retryable?: unknown;
  readonly $metadata?: { readonly httpStatusCode?: number; readonly attempts?: number };
}

export class S3Storage implements Storage {
  readonly #client: S3Client;
  readonly #options: S3StorageOptions;
  readonly #threshold: number;
  readonly #partSize: number;
  readonly #partConcurrency: number;
  readonly #listPageSize: number;
  /** Buckets seen to exist, so that a HEAD's bare 404 is not asked about the bucket again. */
  readonly #knownBuckets = new Set<string>();

  constructor(options: S3StorageOptions = {}) {
    this.#options = options;
    this.#threshold = options.multipartThresholdBytes ?? 16 * MiB;
    this.#partSize = Math.max(options.partSizeBytes ?? 16 * MiB, MIN_PART_SIZE);
    this.#partConcurrency = Math.max(1, options.partConcurrency ?? 4);
    this.#listPageSize = Math.min(1000, Math.max(1, options.listPageSize ?? 1000));
    this.#client = new S3Client({
      ...(options.region === undefined ? {} : { region: options.region }),
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
      forcePathStyle: options.forcePathStyle ?? false,
      // A bucket in another region than the one configured is followed there instead of failing.
      followRegionRedirects: true,
      // The SDK retries what may succeed later (throttling such as 503 SlowDown, 500s, timeouts, dropped
      // connections) with exponential backoff and jitter. 'standard' rather than 'adaptive': adaptive also
      // rate-limits every later request of this client after a throttle, and one client serves a whole
      // process (commits, scans, maintenance), whose callers retry our retryable errors themselves; the
      // standard mode's retry quota already stops retry storms when the service is down. Four attempts
      // (the default is three) ride out S3's prefix-scaling SlowDowns without holding a commit for long.
      retryMode: 'standard',
      maxAttempts: options.maxAttempts ?? 4,
      requestHandler: {
        connectionTimeout: options.connectionTimeoutMs ?? 5_000,
        requestTimeout: options.requestTimeoutMs ?? 60_000,
      },
    });
  }

  /** Closes the client's connections. */
  destroy(): void {
    this.#client.destroy();
  }

  async read(location: string): Promise<Uint8Array> {
    const { bucket, key } = parseS3Location(location);
    try {
      const output = await this.#client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      const bytes = output.Body ? await output.Body.transformToByteArray() : new Uint8Array();
      this.#knownBuckets.add(bucket);
      if (output.ContentLength !== undefined && bytes.length !== output.ContentLength) {
        throw new TributaryError(
          'STORAGE_IO',
          `Could not read ${location}: the response ended after ${bytes.length} of ${output.ContentLength} bytes`,
          { context: { location, bucket, key }, retryable: true },
        );
      }
      return bytes;
    } catch (error) {
      throw this.#error(error, 'read', location);
    }
  }

  async readRange(location: string, offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new TributaryError('INTERNAL', `Invalid byte range ${offset}+${length} of ${location}`, {
        context: { location, offset, length },
      });
    }
    const { bucket, key } = parseS3Location(location);
    if (length === 0) {
      await this.stat(location); // STORAGE_NOT_FOUND when absent, as for any other range
      return new Uint8Array();
    }
    let bytes: Uint8Array;
    try {
      const output = await this.#client.send(
        new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${offset}-${offset + length - 1}` }),
      );
      bytes = output.Body ? await output.Body.transformToByteArray() : new Uint8Array();
      this.#knownBuckets.add(bucket);
      // A server that ignores Range answers 200 with the whole object.
      if (output.ContentRange === undefined) bytes = bytes.subarray(offset, offset + length);
    } catch (error) {
      // 416: the object ends at or before `offset`.
      if (statusOf(error) === 416 || codeOf(error) === 'InvalidRange') bytes = new Uint8Array();
      else throw this.#error(error, 'read', location);
    }
    if (bytes.length < length) {
      throw new TributaryError(
        'STORAGE_IO',
        `${location} ends at byte ${offset + bytes.length}, before the ${length} bytes asked for at offset ${offset}`,
        {
          context: { location, offset, length, available: bytes.length },
          hint: 'The object is shorter than its metadata says: it may be truncated or replaced.',
        },
      );
    }
    return bytes.length === length ? bytes : bytes.subarray(0, length);
  }

  async write(location: string, bytes: Uint8Array): Promise<void> {
    const target = parseS3Location(location);
    try {
      if (bytes.length > this.#threshold) await this.#multipartUpload(target, inMemory(bytes), false);
      else
        await this.#client.send(
          new PutObjectCommand({ Bucket: target.bucket, Key: target.key, Body: bytes }),
        );
      this.#knownBuckets.add(target.bucket);
    } catch (error) {
      throw this.#error(error, 'write', location);
    }
  }

  async writeFile(location: string, localPath: string): Promise<void> {
    const target = parseS3Location(location);
    let handle: FileHandle | undefined;
    try {
      handle = await open(localPath, 'r');
      const size = (await handle.stat()).size;
      if (size > this.#threshold) await this.#multipartUpload(target, onDisk(handle, size), false);
      else
        await this.#client.send(
          new PutObjectCommand({ Bucket: target.bucket, Key: target.key, Body: await handle.readFile() }),
        );
      this.#knownBuckets.add(target.bucket);
    } catch (error) {
      if (handle === undefined)
        throw new TributaryError('STORAGE_IO', `Could not read ${localPath} to upload it to ${location}`, {
          context: { location, localPath, operation: 'write' },
          cause: error,
          hint: 'The staged file is gone: check that nothing else cleans the staging directory.',
        });
      throw this.#error(error, 'write', location);
    } finally {
      await handle?.close();
    }
  }

  async writeExclusive(location: string, bytes: Uint8Array): Promise<void> {
    const target = parseS3Location(location);
    for (let attempt = 1; ; attempt += 1) {
      try {
        if (bytes.length > this.#threshold) await this.#multipartUpload(target, inMemory(bytes), true);
        else
          await this.#client.send(
            new PutObjectCommand({ Bucket: target.bucket, Key: target.key, Body: bytes, IfNoneMatch: '*' }),
          );
        this.#knownBuckets.add(target.bucket);
        return;
      } catch (error) {
        if (statusOf(error) === 412 || codeOf(error) === 'PreconditionFailed') {
          // When the SDK sent the request more than once, the 412 may answer our own earlier attempt,
          // which was stored but whose response was lost: then the object holds exactly our bytes.
          if (attemptsOf(error) > 1 && (await this.#holds(target, bytes))) return;
          throw new TributaryError('STORAGE_IO', `${location} already exists`, {
            context: { location, bucket: target.bucket, key: target.key, reason: 'exists' },
            cause: error,
            hint: 'Another writer created it first: pick another name or reload the table.',
          });
        }
        if (codeOf(error) === 'ConditionalRequestConflict' && attempt < CONFLICT_ATTEMPTS) {
          // Another conditional write of this key is in flight: S3 asks to retry, which then either
          // succeeds (the other one failed) or gets 412.
          await sleep(25 * 2 ** attempt * (0.5 + Math.random()));
          continue;
        }
        throw this.#error(error, 'write', location);
      }
    }
  }

  async exists(location: string): Promise<boolean> {
    try {
      await this.stat(location);
      return true;
    } catch (error) {
      if (isTributaryError(error, 'STORAGE_NOT_FOUND')) return false;
      throw error;
    }
  }

  async stat(location: string): Promise<StorageStat> {
    const target = parseS3Location(location);
    try {
      const output = await this.#client.send(
        new HeadObjectCommand({ Bucket: target.bucket, Key: target.key }),
      );
      this.#knownBuckets.add(target.bucket);
      return { size: output.ContentLength ?? 0, modifiedMs: output.LastModified?.getTime() ?? 0 };
    } catch (error) {
      if (isNotFound(error)) await this.#refuseMissingBucket(target.bucket, 'check', location, error);
      throw this.#error(error, 'check', location);
    }
  }

  async delete(location: string): Promise<void> {
    const target = parseS3Location(location);
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: target.bucket, Key: target.key }));
      this.#knownBuckets.add(target.bucket);
    } catch (error) {
      if (codeOf(error) === 'NoSuchKey') return; // S3 answers 204 anyway; some compatible stores 404
      throw this.#error(error, 'delete', location);
    }
  }

  async *list(prefix: string): AsyncIterable<StorageEntry> {
    const { bucket, key } = parseS3Location(prefix, { allowEmptyKey: true });
    const keyPrefix = key === '' || key.endsWith('/') ? key : `${key}/`;
    const base = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.#client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: keyPrefix,
            MaxKeys: this.#listPageSize,
            ...(token === undefined ? {} : { ContinuationToken: token }),
          }),
        );
      } catch (error) {
        throw this.#error(error, 'list', prefix);
      }
      this.#knownBuckets.add(bucket);
      for (const object of page.Contents ?? []) {
        // A key ending in '/' is a folder marker some tools create, not a file.
        if (object.Key === undefined || object.Key.endsWith('/')) continue;
        yield {
          location: `${base}/${object.Key.slice(keyPrefix.length)}`,
          size: object.Size ?? 0,
          modifiedMs: object.LastModified?.getTime() ?? 0,
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  localPath(_location: string): undefined {
    return undefined;
  }

  /**
   * A multipart upload: the parts in parallel (`partConcurrency` at a time, each read from the source only
   * when its turn comes, so a file is never in memory whole), then the completion, which
   * makes the object visible at once. Any failure aborts the upload, after the parts in flight settled,
   * so that S3 keeps no orphaned parts.
   */
  async #multipartUpload(target: ObjectLocation, source: UploadSource, exclusive: boolean): Promise<void> {
    const { bucket, key } = target;
    const partSize = Math.max(this.#partSize, Math.ceil(source.size / MAX_PARTS));
    const count = Math.ceil(source.size / partSize);
    const created = await this.#client.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ChecksumAlgorithm: 'CRC32' }),
    );
    const uploadId = created.UploadId;
    if (uploadId === undefined) {
      throw new TributaryError('STORAGE_IO', `S3 started no multipart upload for s3://${bucket}/${key}`, {
        context: { bucket, key },
        retryable: true,
      });
    }
    try {
      const parts: CompletedPart[] = [];
      let next = 0;
      let failed = false;
      const uploadParts = async () => {
        while (!failed && next < count) {
          const index = next;
          next += 1;
          try {
            const output = await this.#client.send(
              new UploadPartCommand({
                Bucket: bucket,
                Key: key,
                UploadId: uploadId,
                PartNumber: index + 1,
                Body: await source.slice(index * partSize, Math.min(source.size, (index + 1) * partSize)),
                ChecksumAlgorithm: 'CRC32',
              }),
            );
            parts[index] = { PartNumber: index + 1, ETag: output.ETag, ChecksumCRC32: output.ChecksumCRC32 };
          } catch (error) {
            failed = true;
            throw error;
          }
        }
      };
      const outcomes = await Promise.allSettled(
        Array.from({ length: Math.min(this.#partConcurrency, count) }, uploadParts),
      );
      const rejected = outcomes.find((outcome) => outcome.status === 'rejected');
      if (rejected) throw rejected.reason;
      await this.#client.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts },
          ...(exclusive ? { IfNoneMatch: '*' } : {}),
        }),
      );
    } catch (error) {
      try {
        await this.#client.send(
          new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }),
        );
      } catch {
        // Left to the bucket's lifecycle rule for incomplete uploads (docs/architecture.md, "Storage").
      }
      throw error;
    }
  }

  /** True when the object at `target` holds exactly `bytes`. */
  async #holds(target: ObjectLocation, bytes: Uint8Array): Promise<boolean> {
    try {
      const stored = await this.read(`s3://${target.bucket}/${target.key}`);
      return stored.length === bytes.length && Buffer.from(stored).equals(bytes);
    } catch {
      return false;
    }
  }

  /**
   * A HEAD answers a bare 404 both for a missing key and a missing bucket: ask about the bucket, once per
   * bucket per client, so that a wrong bucket name is reported as such rather than as an empty store.
   */
  async #refuseMissingBucket(
    bucket: string,
    operation: Operation,
    location: string,
    cause: unknown,
  ): Promise<void> {
    if (this.#knownBuckets.has(bucket)) return;
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket: bucket }));
      this.#knownBuckets.add(bucket);
    } catch (error) {
      if (statusOf(error) === 404) throw this.#noSuchBucket(bucket, operation, location, cause);
      // Anything else (403 without s3:ListBucket): no better answer than the object's own 404.
    }
  }

  #noSuchBucket(bucket: string, operation: Operation, location: string, cause: unknown): TributaryError {
    const where = this.#options.endpoint ?? (this.#options.region ? `region ${this.#options.region}` : 'S3');
    return new TributaryError(
      'STORAGE_IO',
      `Could not ${operation} ${location}: the bucket ${bucket} does not exist (at ${where})`,
      {
        context: { location, bucket, operation, reason: 'no-bucket' },
        cause,
        hint: `Create the bucket ${bucket}${this.#options.region ? ` in ${this.#options.region}` : ''}, or correct the bucket in the location (and storage.s3 endpoint and region).`,
      },
    );
  }

  /** The TributaryError for a failed S3 call (TributaryErrors pass through). */
  #error(error: unknown, operation: Operation, location: string): TributaryError {
    if (error instanceof TributaryError) return error;
    const { bucket, key } = parseS3Location(location, { allowEmptyKey: true });
    const code = codeOf(error);
    const status = statusOf(error);
    const detail = messageOf(error);
    const context = {
      location,
      bucket,
      key,
      operation,
      ...(code ? { code } : {}),
      ...(status ? { status } : {}),
      ...(attemptsOf(error) > 1 ? { attempts: attemptsOf(error) } : {}),
    };
    const fail = (why: string, reason: string | undefined, hint: string, retryable = false) =>
      new TributaryError('STORAGE_IO', `Could not ${operation} ${location}: ${why}`, {
        context: reason ? { ...context, reason } : context,
        cause: error,
        hint,
        retryable,
      });

    if (NOT_FOUND_CODES.has(code) || (status === 404 && code === '')) {
      return new TributaryError('STORAGE_NOT_FOUND', `${location} does not exist`, { context, cause: error });
    }
    if (code === 'NoSuchBucket') return this.#noSuchBucket(bucket, operation, location, error);
    if (CREDENTIAL_CODES.has(code) || /could not load credentials/i.test(detail)) {
      return fail(
        `the credentials were refused (${code || detail})`,
        'credentials',
        'Check storage.s3 credentials: the access key id and its secret, or (when none are configured) what the SDK finds in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the instance or pod role; and that the clock is right.',
      );
    }
    if (code === 'AccessDenied' || status === 403) {
      return fail(
        `access denied${code ? ` (${code})` : ''}`,
        'access-denied',
        `Check storage.s3 credentials, and that they may ${operation} in bucket ${bucket}: s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket (without s3:ListBucket, S3 answers 403 for a missing object).`,
      );
    }
    if (REGION_CODES.has(code) || status === 301) {
      return fail(
        `the bucket ${bucket} is not in the region or at the endpoint configured (${code || status}: ${detail})`,
        'region',
        `Set storage.s3 region to the bucket's region${this.#options.endpoint ? ', or check storage.s3 endpoint' : ''}.`,
      );
    }
    if (/region is missing/i.test(detail)) {
      return fail(
        'no region is configured',
        'config',
        'Set storage.s3 region (or AWS_REGION) to the bucket region.',
      );
    }
    const network = networkCodeOf(error);
    if (network !== '') {
      return fail(
        `the connection to ${this.#options.endpoint ?? 'S3'} failed (${network})`,
        undefined,
        network === 'ENOTFOUND' || network === 'ECONNREFUSED'
          ? 'Check storage.s3 endpoint: nothing answers there.'
          : 'The network dropped the request; it may succeed when retried.',
        RETRYABLE_NETWORK.has(network),
      );
    }
    if (
      RETRYABLE_CODES.has(code) ||
      status === 429 ||
      (status !== undefined && status >= 500) ||
      (error as SdkError | undefined)?.$retryable !== undefined
    ) {
      return fail(
        `S3 is busy or failing (${code || status}: ${detail})${attemptsOf(error) > 1 ? `, after ${attemptsOf(error)} attempts` : ''}`,
        undefined,
        code === 'SlowDown' || status === 429 || status === 503
          ? 'S3 is throttling these requests: retry later, or spread the load over more prefixes.'
          : 'The same call may succeed later.',
        true,
      );
    }
    return fail(`${code || status || 'error'}: ${detail}`, undefined, 'See the cause for the details.');
  }
}

/** The bytes of an upload, read a part at a time. */
interface UploadSource {
  readonly size: number;
  slice(start: number, end: number): Promise<Uint8Array>;
}

function inMemory(bytes: Uint8Array): UploadSource {
  return { size: bytes.length, slice: (start, end) => Promise.resolve(bytes.subarray(start, end)) };
}

function onDisk(handle: FileHandle, size: number): UploadSource {
  return {
    size,
    async slice(start, end) {
      const part = new Uint8Array(end - start);
      let filled = 0;
      while (filled < part.length) {
        const { bytesRead } = await handle.read(part, filled, part.length - filled, start + filled);
        if (bytesRead === 0) throw new Error(`the file ended at byte ${start + filled}, before ${size}`);
        filled += bytesRead;
      }
      return part;
    },
  };
}

/**
 * Bucket and key of an `s3://bucket/key` location (also `s3a://`, `s3n://`). STORAGE_IO with
 * `context.reason: 'invalid-location'` for anything else, and for a location without a key unless
 * `allowEmptyKey` (list prefixes may name a whole bucket).
 */
export function parseS3Location(location: string, options: { allowEmptyKey?: boolean } = {}): ObjectLocation {
  const match = /^(s3|s3a|s3n):\/\/([^/]*)(?:\/(.*))?$/is.exec(location);
  const invalid = (why: string) =>
    new TributaryError('STORAGE_IO', `Invalid S3 location ${JSON.stringify(location)}: ${why}`, {
      context: { location, reason: 'invalid-location' },
      hint: 'Write it as s3://bucket/key.',
    });
  if (!match) throw invalid('it does not start with s3://');
  const bucket = match[2] ?? '';
  const key = match[3] ?? '';
  if (bucket === '') throw invalid('it names no bucket');
  if (key === '' && !options.allowEmptyKey) throw invalid('it names no object in the bucket');
  return { bucket, key };
}

function codeOf(error: unknown): string {
  const sdk = error as SdkError | undefined;
  const name = typeof sdk?.name === 'string' ? sdk.name : '';
  // Errors without a code in their body (HEAD) come as 'NotFound', 'Forbidden' or 'Unknown'.
  if (name === 'Error' || name === 'Unknown' || name === 'UnknownError' || name === 'Forbidden') return '';
  return name;
}

function statusOf(error: unknown): number | undefined {
  return (error as SdkError | undefined)?.$metadata?.httpStatusCode;
}

function attemptsOf(error: unknown): number {
  return (error as SdkError | undefined)?.$metadata?.attempts ?? 1;
}

function messageOf(error: unknown): string {
  const message = (error as SdkError | undefined)?.message;
  return typeof message === 'string' && message !== '' && message !== 'UnknownError' ? message : 'no details';
}

/** The system error code of a failed connection (ECONNRESET…), or '' when the error is not one. */
function networkCodeOf(error: unknown): string {
  for (let current: unknown = error, depth = 0; current && depth < 4; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z_]+$/.test(code)) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return '';
}

function isNotFound(error: unknown): boolean {
  return NOT_FOUND_CODES.has(codeOf(error)) || (statusOf(error) === 404 && codeOf(error) === '');
}
