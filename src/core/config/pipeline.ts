/**
 * `pipelines/<name>.yaml`: one pipeline — a source, ordered transforms and one or more sinks. The file name
 * (without `.yaml`) is the pipeline's name. Component schemas live with their components; this file
 * assembles them.
 */
import { z } from 'zod';

export const PIPELINES_DIR = 'pipelines';
export const PIPELINE_NAME = /^[a-z][a-z0-9_-]{0,62}$/;

const topicSource = z
  .strictObject({
    type: z.literal('topic').describe('Reads a topic of the log.'),
    topic: z.string().min(1).describe('Name of the topic.'),
  })
  .describe('Where records come from.');

const stdoutSink = z
  .strictObject({
    type: z.literal('stdout').describe('Prints each record as one JSON line; for debugging.'),
  })
  .describe('Where records go.');

export const pipelineSchema = z
  .strictObject({
    description: z
      .string()
      .optional()
      .describe('What the pipeline is for, shown by `tributary pipelines list`.'),
    source: topicSource,
    sinks: z.array(stdoutSink).min(1).describe('Where the records go; each commits independently.'),
  })
  .describe('A pipeline: source → transforms → sinks.');

export type PipelineConfig = z.output<typeof pipelineSchema>;
