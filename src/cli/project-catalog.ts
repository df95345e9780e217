/** The catalog and DuckDB engine of the current project, for commands that work with tables. */
import type { Catalog } from '../catalog/catalog.ts';
import { parseTableIdentifier, type TableIdentifier } from '../catalog/identifier.ts';
import { openCatalog, projectCatalogSettings } from '../catalog/open.ts';
import type { Project } from '../core/project.ts';
import { openEngine, type Engine } from '../iceberg/duckdb.ts';

export function openProjectCatalog(project: Project): Promise<Catalog> {
  return openCatalog(projectCatalogSettings(project));
}

/** Runs `work` with the project's catalog and a DuckDB engine, closing both afterwards. */
export async function withCatalog<T>(
  project: Project,
  work: (catalog: Catalog, engine: Engine) => Promise<T>,
): Promise<T> {
  const catalog = await openProjectCatalog(project);
  const engine = await openEngine();
  try {
    return await work(catalog, engine);
  } finally {
    engine.close();
    catalog.close();
  }
}

export function tableArgument(text: string): TableIdentifier {
  return parseTableIdentifier(text);
}
