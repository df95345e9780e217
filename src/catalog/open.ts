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

export async function openCatalog(settings: CatalogSettings): Promise<Catalog> {
  const uri = resolveCatalogUri(settings.uri, settings.baseDir);
  if (uri.startsWith('sqlite:') && uri !== 'sqlite::memory:')
    mkdirSync(path.dirname(uri.slice('sqlite:'.length)), { recursive: true });
  const warehouse = resolveWarehouse(settings.warehouse, settings.baseDir);
  if (isLocalLocation(warehouse)) mkdirSync(localPathOf(warehouse), { recursive: true });
  const registry = await openSqlCatalog({ name: settings.name, uri, warehouse });
  return new Catalog({
    name: settings.name,
    registry,
    storage: storageFor(warehouse, { fsync: settings.fsync ?? true }),
    warehouse,
  });
}
