/**
 * The storage module's entry point: `storageFor` picks the implementation a location needs, and the helpers
 * convert between local paths and the `file:` URIs Iceberg metadata holds.
 */
import path from 'node:path';
import { TributaryError } from '../errors.ts';
import { LocalStorage, type LocalStorageOptions } from './local.ts';
import { schemeOf } from './location.ts';
import { parseS3Location, S3Storage, type S3StorageOptions } from './s3.ts';
import type { Storage } from './storage.ts';

export type { Storage, StorageEntry, StorageStat } from './storage.ts';
export { comparableLocation, isAlreadyExists, locationWithin } from './storage.ts';
export { LocalStorage, type LocalStorageOptions } from './local.ts';
export { parseS3Location, S3Storage, type S3Credentials, type S3StorageOptions } from './s3.ts';
export { canonicalLocation, fileLocationOf, isLocalLocation, localPathOf, schemeOf } from './location.ts';

export interface StorageOptions extends LocalStorageOptions {
  /** How to reach an `s3://` location. */
  readonly s3?: S3StorageOptions;
}

/**
 * The storage for a warehouse or table location: `file:` URIs and absolute paths get `LocalStorage`,
 * `s3://` (also `s3a://`, `s3n://`) `S3Storage`. CONFIG_INVALID for a relative path and any other scheme.
 */
export function storageFor(uri: string, options: StorageOptions = {}): Storage {
  const scheme = schemeOf(uri);
  if (scheme === undefined) {
    if (!path.isAbsolute(uri)) {
      throw new TributaryError('CONFIG_INVALID', `Storage location ${JSON.stringify(uri)} is not absolute`, {
        context: { uri },
        hint: 'Resolve it against the project directory, or write it as a file:///absolute/path URI.',
      });
    }
    return new LocalStorage(options);
  }
  if (scheme === 'file') return new LocalStorage(options);
  if (scheme === 's3' || scheme === 's3a' || scheme === 's3n') {
    parseS3Location(uri, { allowEmptyKey: true }); // a bucket is named
    return new S3Storage(options.s3);
  }
  throw new TributaryError('CONFIG_INVALID', `Unsupported storage scheme "${scheme}:" in ${uri}`, {
    context: { uri, scheme },
    hint: 'Use a local directory path, a file:// URI or an s3://bucket/prefix URI.',
  });
}
