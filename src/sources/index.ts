/** Every source Tributary ships, and the schema of `sources/*.yaml` built from them. */
import { z } from 'zod';
import { postgresCdcDefinition } from './postgres-cdc/index.ts';
import type { SourceDefinition } from './source.ts';

export const sourceDefinitions: readonly SourceDefinition[] = [postgresCdcDefinition];

/** `sources/<name>.yaml`: one source, its `type` choosing which. */
export const sourceSchema: z.ZodType =
  sourceDefinitions.length === 1
    ? sourceDefinitions[0]!.schema
    : z.discriminatedUnion(
        'type',
        sourceDefinitions.map((d) => d.schema) as unknown as [z.ZodObject, z.ZodObject, ...z.ZodObject[]],
      );

export { cdcTransform } from './postgres-cdc/index.ts';
export type { RunningSource, SourceContext, SourceDefinition, SourceStatus } from './source.ts';
