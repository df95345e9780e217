/** Every doctor check of the project: the platform's, then the catalog's. Each component adds its own here. */
import { redactUriPassword } from '../core/config/redact.ts';
import { platformChecks, type DoctorCheck } from '../core/doctor.ts';
import { isTributaryError } from '../errors.ts';
import { openProjectCatalog } from './project-catalog.ts';

const catalogChecks: readonly DoctorCheck[] = [
  {
    component: 'catalog',
    name: 'catalog reachable',
    async run(project) {
      const uri = redactUriPassword(project.platform.catalog.uri);
      try {
        const catalog = await openProjectCatalog(project);
        try {
          let tables = 0;
          const namespaces = await catalog.registry.listNamespaces();
          for (const namespace of namespaces) tables += (await catalog.registry.listTables(namespace)).length;
          return { status: 'pass', detail: `${uri}: ${namespaces.length} namespace(s), ${tables} table(s)` };
        } finally {
          catalog.close();
        }
      } catch (error) {
        return {
          status: 'fail',
          detail: `${uri}: ${error instanceof Error ? error.message : String(error)}`,
          fix:
            isTributaryError(error) && error.hint
              ? error.hint
              : 'check catalog.uri in tributary.yaml and that the database is running',
        };
      }
    },
  },
];

export const allChecks: readonly DoctorCheck[] = [...platformChecks, ...catalogChecks];
