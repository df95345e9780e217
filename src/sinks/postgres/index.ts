/** The `postgres` sink: rows in a PostgreSQL table, positions committed in the same transaction. */
import type { ComponentDefinition } from '../../core/pipeline/components.ts';
import { postgresSinkSchema } from './config.ts';
import { PostgresSink } from './postgres-sink.ts';

export { postgresSinkSchema, type PostgresSinkConfig } from './config.ts';
export { PostgresSink, type PostgresSinkOptions } from './postgres-sink.ts';

export const postgresSinkDefinition: ComponentDefinition<'sink', typeof postgresSinkSchema> = {
  kind: 'sink',
  type: 'postgres',
  schema: postgresSinkSchema,
  async check(config, context) {
    const sink = new PostgresSink({
      config,
      pipeline: context.pipeline,
      projectRoot: context.projectRoot,
      logger: context.logger,
    });
    try {
      return await sink.check();
    } finally {
      await sink.close();
    }
  },
  async create(config, context) {
    return new PostgresSink({
      config,
      pipeline: context.pipeline,
      projectRoot: context.projectRoot,
      logger: context.logger,
    });
  },
};
