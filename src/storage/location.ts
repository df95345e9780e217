/**
 * Locations and local paths. Iceberg writers spell local files `file:///abs/path` (pyiceberg) or
 * `file:/abs/path` (Java's HadoopFileIO); both, `file://localhost/abs/path` and a plain absolute path name the
 * same file. The path is taken verbatim, never percent-decoded, because neither pyiceberg nor Java encodes it.
 */
import path from 'node:path';
import { TributaryError } from '../errors.ts';

const SCHEME = /^([a-zA-Z][a-zA-Z0-9+.-]*):/;

/** The URI scheme of a location, lower case ("file", "s3"), or undefined for a plain path. */
export function schemeOf(location: string): string | undefined {
  return SCHEME.exec(location)?.[1]?.toLowerCase();
}

/**
 * The location spelled one way per object: `s3a://` and `s3n://` (Hadoop's and Spark's names for S3) as
 * `s3://`, so that two spellings of one object compare equal. Other locations are returned as they are.
 */
export function canonicalLocation(location: string): string {
  return location.replace(/^s3[an]:\/\//i, 's3://');
}

/** True when the location names a local file: a `file:` URI or an absolute path. */
export function isLocalLocation(location: string): boolean {
  const scheme = schemeOf(location);
  return scheme === undefined ? path.isAbsolute(location) : scheme === 'file';
}

/**
 * The local path of a `file:` URI or absolute path. STORAGE_IO (`context.reason: 'invalid-location'`) for
 * anything else: another scheme, a relative path, another host, a NUL character.
 */
export function localPathOf(location: string): string {
  const scheme = schemeOf(location);
  let result: string;
  if (scheme === undefined) result = location;
  else if (scheme !== 'file') throw invalidLocation(location, `the scheme "${scheme}:" is not a local file`);
  else {
    const rest = location.slice('file:'.length);
    if (rest.startsWith('//')) {
      const slash = rest.indexOf('/', 2);
      const host = slash === -1 ? rest.slice(2) : rest.slice(2, slash);
      if (host !== '' && host.toLowerCase() !== 'localhost')
        throw invalidLocation(location, `the host "${host}" is not this machine`);
      result = slash === -1 ? '' : rest.slice(slash);
    } else result = rest;
  }
  if (!path.isAbsolute(result)) throw invalidLocation(location, 'the path is not absolute');
  if (result.includes('\0')) throw invalidLocation(location, 'the path contains a NUL character');
  return result;
}

/** `file:///abs/path` for an absolute local path, the form pyiceberg writes. Relative paths are refused. */
export function fileLocationOf(localPath: string): string {
  if (!path.isAbsolute(localPath)) {
    throw invalidLocation(localPath, 'the path is not absolute', 'Resolve it against the project directory.');
  }
  return `file://${localPath}`;
}

function invalidLocation(location: string, why: string, hint?: string): TributaryError {
  return new TributaryError('STORAGE_IO', `Invalid local location ${JSON.stringify(location)}: ${why}`, {
    context: { location, reason: 'invalid-location' },
    hint: hint ?? 'Use an absolute path or a file:///absolute/path URI.',
  });
}
