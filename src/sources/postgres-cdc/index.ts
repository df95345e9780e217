/** The `postgres_cdc` source and its `cdc` transform, as registered components. */
import type { SourceDefinition } from '../source.ts';
import { checkPostgresCdc } from './checks.ts';
import { postgresCdcSchema, resolvedNames } from './config.ts';
import { PostgresCdcSource } from './source.ts';

export { cdcTransform } from './transform.ts';
export { PostgresCdcSource } from './source.ts';
export { postgresCdcSchema, resolvedNames, type PostgresCdcConfig } from './config.ts';
export { requestBackfill, sourceStatus, tableSchemas, type OfflineStatus } from './admin.ts';

export const postgresCdcDefinition: SourceDefinition<typeof postgresCdcSchema> = {
  type: 'postgres_cdc',
  schema: postgresCdcSchema,
  create(config, context) {
    return new PostgresCdcSource({ name: context.name, config: config, context });
  },
  topic(name, config) {
    return resolvedNames(name, config).topic;
  },
  check(config, context) {
    return checkPostgresCdc(context.name, config, context.project.root);
  },
};
