/**
 * The composition root: the components Tributary ships, and the pipeline file schema built from them.
 * The CLI, the server and the docs generator start here; nothing below imports it.
 */
import { pipelineSchemaFor } from './core/config/pipeline.ts';
import { sinkDefinitions } from './sinks/index.ts';
import { transformDefinitions } from './transforms/index.ts';

export { sinkDefinitions, transformDefinitions };

export const pipelineSchema = pipelineSchemaFor({ transforms: transformDefinitions, sinks: sinkDefinitions });
