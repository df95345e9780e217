/** `tributary catalog info`: how other engines open this project's catalog. */
import type { Command } from 'commander';
import { resolveCatalogUri, resolveWarehouse } from '../../catalog/open.ts';
import { redactUriPassword } from '../../core/config/redact.ts';
import type { CliContext } from '../context.ts';
import { withCatalog } from '../project-catalog.ts';

export function registerCatalog(program: Command, context: () => CliContext): void {
  const catalog = program.command('catalog').description('The Iceberg catalog of the project.');
  catalog
    .command('info')
    .description('Print how pyiceberg, DuckDB and other engines connect to the catalog.')
    .option('--json', 'print type, name, uri and warehouse as JSON')
    .action(async (options: { json?: boolean }) => {
      const project = context().loadProject();
      const uri = resolveCatalogUri(project.platform.catalog.uri, project.root);
      const warehouse = resolveWarehouse(project.platform.warehouse, project.root);
      const info = {
        type: 'sql',
        name: project.platform.catalog.name,
        uri: redactUriPassword(uri),
        warehouse,
      };
      if (options.json) {
        console.log(JSON.stringify(info, null, 2));
        return;
      }
      // SQLAlchemy spells an absolute SQLite path with four slashes, and knows no `postgres://` (1.4 dropped it).
      const sqlalchemy = uri.startsWith('sqlite:')
        ? `sqlite:///${uri.slice('sqlite:'.length)}`
        : info.uri.replace(/^postgres(?:ql)?:/, 'postgresql+psycopg2:');
      const tables = await withCatalog(project, async (opened) => {
        const rows: Array<{ name: string; metadata: string }> = [];
        for (const identifier of await opened.listAllTables()) {
          rows.push({
            name: [...identifier.namespace, identifier.name].join('.'),
            metadata: await opened.registry.getMetadataLocation(identifier),
          });
        }
        // Tables first, internal ones (the DLQ tables, `_dlq`) last.
        return rows.sort(
          (a, b) =>
            Number(a.name.includes('._')) - Number(b.name.includes('._')) || a.name.localeCompare(b.name),
        );
      });
      console.log(`Catalog "${info.name}" (SQL catalog, the tables of Iceberg's JDBC catalog)
  uri        ${info.uri}
  warehouse  ${warehouse}

pyiceberg:
  from pyiceberg.catalog.sql import SqlCatalog
  catalog = SqlCatalog(${JSON.stringify(info.name)}, uri=${JSON.stringify(sqlalchemy)}, warehouse=${JSON.stringify(warehouse)})
  catalog.load_table(${JSON.stringify(tables[0]?.name ?? 'namespace.table')}).scan().to_arrow()

DuckDB (iceberg extension), one table at its current metadata file:
  INSTALL iceberg; LOAD iceberg;`);
      for (const table of tables.slice(0, 20)) {
        console.log(`  SELECT * FROM iceberg_scan('${table.metadata}');  -- ${table.name}`);
      }
      if (tables.length === 0) console.log(`  SELECT * FROM iceberg_scan('<metadata file of the table>');`);
      console.log(
        `\nOr through Tributary: tributary query "select * from ${tables[0]?.name ?? 'namespace.table'} limit 10"`,
      );
    });
}
