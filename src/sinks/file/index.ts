/** The `file` sink: NDJSON appended to a file, exactly once through a positions file committed after fsync. */
import type { ComponentDefinition } from '../../core/pipeline/components.ts';
import { fileSinkSchema } from './config.ts';
import { FileSink } from './file-sink.ts';

export { fileSinkSchema, type FileSinkConfig } from './config.ts';
export { FileSink, type FileSinkOptions } from './file-sink.ts';

export const fileSinkDefinition: ComponentDefinition<'sink', typeof fileSinkSchema> = {
  kind: 'sink',
  type: 'file',
  schema: fileSinkSchema,
  async check(config, context) {
    return new FileSink({
      config,
      pipeline: context.pipeline,
      projectRoot: context.projectRoot,
      logger: context.logger,
    }).check();
  },
  async create(config, context) {
    return new FileSink({
      config,
      pipeline: context.pipeline,
      projectRoot: context.projectRoot,
      logger: context.logger,
    });
  },
};
