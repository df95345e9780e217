/** The `stdout` sink: one JSON line per record, for debugging; at-least-once. */
import type { ComponentDefinition } from '../../core/pipeline/components.ts';
import { stdoutSinkSchema } from './config.ts';
import { StdoutSink } from './stdout-sink.ts';

export { stdoutSinkSchema, type StdoutSinkConfig } from './config.ts';
export { StdoutSink, type StdoutSinkOptions } from './stdout-sink.ts';

export const stdoutSinkDefinition: ComponentDefinition<'sink', typeof stdoutSinkSchema> = {
  kind: 'sink',
  type: 'stdout',
  schema: stdoutSinkSchema,
  async create(config, context) {
    return new StdoutSink({
      config,
      pipeline: context.pipeline,
      sourceTopic: context.sourceTopic,
      log: context.log,
      logger: context.logger,
    });
  },
};
