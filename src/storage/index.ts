/**
 * The storage module's entry point: `storageFor` picks the implementation a location needs, and the helpers
 * convert between local paths and the `file:` URIs Iceberg metadata holds.
 */
import path from 'node:path';
import { TributaryError } from '../errors.ts';
import { LocalStorage, type LocalStorageOptions } from './local.ts';
import { schemeOf } from './location.ts';
import type { Storage } from './storage.ts';

export type { Storage, StorageEntry, StorageStat } from './storage.ts';
export { comparableLocation, isAlreadyExists, locationWithin } from './storage.ts';
export { LocalStorage, type LocalStorageOptions } from './local.ts';
export { parseS3Location, S3Storage, type S3Credentials, type S3StorageOptions } from './s3.ts';
export { canonicalLocation, fileLocationOf, isLocalLocation, localPathOf, schemeOf } from './location.ts';

export type StorageOptions = LocalStorageOptions;

/**
 * The storage for a warehouse or table location: `file:` URIs and absolute paths get `LocalStorage`.
 * CONFIG_INVALID for a relative path, for `s3://` (not supported yet) and for any other scheme.
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
    throw new TributaryError('CONFIG_INVALID', `S3 storage is not supported yet: ${uri}`, {
      context: { uri, scheme },
      hint: 'Use a local warehouse (a directory path or a file:// URI) for now.',
    });
  }
  throw new TributaryError('CONFIG_INVALID', `Unsupported storage scheme "${scheme}:" in ${uri}`, {
    context: { uri, scheme },
    hint: 'Use a local directory path or a file:// URI.',
  });
}
