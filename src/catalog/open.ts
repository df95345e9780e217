/** Opens the catalog a project is configured with: the SQL registry plus the warehouse's storage. */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { storageFor } from '../storage/index.ts';
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
  /**
   * What the project keeps on disk besides its tables (its configuration file, the embedded log's
   * folder): with it, the catalog knows `baseDir` as the project, and sweeps of files no table names spare
   * them, the project and a SQLite catalog's database (`Catalog.sweepGuard`).
   */
  readonly kept?: readonly string[];
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
  return new Catalog({
    name: settings.name,
    registry,
    storage: storageFor(warehouse, { fsync: settings.fsync ?? true }),
    warehouse,
    ...(settings.kept
      ? { project: { root: path.resolve(settings.baseDir), kept: [...settings.kept, ...database] } }
      : {}),
  });
}
