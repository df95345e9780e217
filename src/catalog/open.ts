/** Opens the catalog a project is configured with: the SQL registry plus the warehouse's storage. */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { TributaryError } from '../errors.ts';
import { nativeFiles, type NativeFiles } from '../iceberg/native-files.ts';
import { storageFor, type S3StorageOptions, type Storage } from '../storage/index.ts';
import { fileLocationOf, isLocalLocation, localPathOf, schemeOf } from '../storage/location.ts';
import { Catalog } from './catalog.ts';
import { openSqlCatalog } from './sql-catalog.ts';

export interface CatalogSettings {
  readonly name: string;
  /** `sqlite:<path>` or `postgresql://…`; relative SQLite paths are resolved against `baseDir`. */
  readonly uri: string;
  /** A directory (relative to `baseDir`) or a location URI. */
  readonly warehouse: string;
  readonly baseDir: string;
  /** fsync written files (default true); benchmarks and tests may turn it off. */
  readonly fsync?: boolean;
  /** tributary.yaml's `storage`: needed by a remote (s3://) warehouse, unused by a local one. */
  readonly storage?: StorageSettings;
  /**
   * What the project keeps on disk besides its tables (its configuration file, the embedded log's
   * folder): with it, the catalog knows `baseDir` as the project, and sweeps of files no table names spare
   * them, the project and a SQLite catalog's database (`Catalog.sweepGuard`).
   */
  readonly kept?: readonly string[];
}

/**
 * The `storage` section of tributary.yaml. Its values are read only for a remote warehouse: a credential
 * whose placeholder is unresolved (a getter that throws) stops nothing else.
 */
export interface StorageSettings {
  readonly s3: {
    readonly region?: string | undefined;
    readonly endpoint?: string | undefined;
    readonly path_style: boolean;
    readonly access_key_id?: string | undefined;
    readonly secret_access_key?: string | undefined;
    readonly session_token?: string | undefined;
  };
  /** Directories relative to the project. */
  readonly staging: string;
  readonly cache: { readonly path: string; readonly max_bytes: number };
}

/** The catalog URI with a relative SQLite path made absolute. */
export function resolveCatalogUri(uri: string, baseDir: string): string {
  if (!uri.startsWith('sqlite:') || uri === 'sqlite::memory:') return uri;
  const file = uri.slice('sqlite:'.length);
  return `sqlite:${path.resolve(baseDir, file)}`;
}

/** The warehouse as a location URI (file:///… for a local directory). */
export function resolveWarehouse(warehouse: string, baseDir: string): string {
  return schemeOf(warehouse) === undefined ? fileLocationOf(path.resolve(baseDir, warehouse)) : warehouse;
}

/** The parts of a project's configuration its catalog is opened with. */
export interface ProjectCatalogConfig {
  readonly root: string;
  readonly platform: {
    readonly warehouse: string;
    readonly catalog: { readonly name: string; readonly uri: string };
    readonly log?: { readonly path?: string };
    readonly storage?: StorageSettings;
  };
}

/** The settings of a project's catalog, sweeps sparing the project's log and catalog database. */
export function projectCatalogSettings(project: ProjectCatalogConfig): CatalogSettings {
  const log = project.platform.log?.path;
  return {
    name: project.platform.catalog.name,
    uri: project.platform.catalog.uri,
    warehouse: project.platform.warehouse,
    baseDir: project.root,
    ...(project.platform.storage ? { storage: project.platform.storage } : {}),
    kept: log === undefined ? [] : [path.resolve(project.root, log)],
  };
}

export async function openCatalog(settings: CatalogSettings): Promise<Catalog> {
  const uri = resolveCatalogUri(settings.uri, settings.baseDir);
  if (uri.startsWith('sqlite:') && uri !== 'sqlite::memory:')
    mkdirSync(path.dirname(uri.slice('sqlite:'.length)), { recursive: true });
  const warehouse = resolveWarehouse(settings.warehouse, settings.baseDir);
  if (isLocalLocation(warehouse)) mkdirSync(localPathOf(warehouse), { recursive: true });
  const registry = await openSqlCatalog({ name: settings.name, uri, warehouse });
  const database =
    uri.startsWith('sqlite:') && uri !== 'sqlite::memory:' ? [uri.slice('sqlite:'.length)] : [];
  const { storage, files } = openStorage(warehouse, settings);
  return new Catalog({
    name: settings.name,
    registry,
    storage,
    ...(files ? { files } : {}),
    warehouse,
    ...(settings.kept
      ? { project: { root: path.resolve(settings.baseDir), kept: [...settings.kept, ...database] } }
      : {}),
  });
}

/**
 * The warehouse's storage, and for a remote one (no local paths) the staging and cache directories DuckDB
 * reaches its files through.
 */
export function openStorage(
  warehouse: string,
  settings: Pick<CatalogSettings, 'baseDir' | 'fsync' | 'storage'>,
): { storage: Storage; files?: NativeFiles } {
  if (isLocalLocation(warehouse))
    return { storage: storageFor(warehouse, { fsync: settings.fsync ?? true }) };
  const configured = settings.storage;
  if (configured === undefined)
    throw new TributaryError('CONFIG_INVALID', `The warehouse ${warehouse} needs storage settings`, {
      context: { warehouse },
      hint: 'Open the catalog with the storage section of tributary.yaml.',
    });
  const storage = storageFor(warehouse, { s3: s3Options(configured.s3) });
  const files = nativeFiles(storage, {
    stagingDirectory: path.resolve(settings.baseDir, configured.staging),
    cacheDirectory: path.resolve(settings.baseDir, configured.cache.path),
    maxCacheBytes: configured.cache.max_bytes,
  });
  return { storage, files };
}

function s3Options(s3: StorageSettings['s3']): S3StorageOptions {
  const accessKeyId = s3.access_key_id;
  const secretAccessKey = s3.secret_access_key;
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined))
    throw new TributaryError(
      'CONFIG_INVALID',
      `storage.s3 has ${accessKeyId === undefined ? 'secret_access_key without access_key_id' : 'access_key_id without secret_access_key'}`,
      {
        hint: "Set both storage.s3 access_key_id and secret_access_key, or neither (then the SDK's default chain: AWS_ACCESS_KEY_ID, AWS_PROFILE, the pod or instance role).",
      },
    );
  const sessionToken = s3.session_token;
  return {
    ...(s3.region === undefined ? {} : { region: s3.region }),
    ...(s3.endpoint === undefined ? {} : { endpoint: s3.endpoint }),
    forcePathStyle: s3.path_style,
    ...(accessKeyId === undefined || secretAccessKey === undefined
      ? {}
      : {
          credentials: {
            accessKeyId,
            secretAccessKey,
            ...(sessionToken === undefined ? {} : { sessionToken }),
          },
        }),
  };
}
