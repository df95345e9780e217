/** `drop`: removes fields (top-level or nested) from every record; missing fields are ignored. */
import { z } from 'zod';
import type { ComponentDefinition } from '../../core/pipeline/components.ts';
import type { PipelineRecord, Transform } from '../../core/pipeline/model.ts';
import { deleteField, fieldPath, parseFieldPath } from '../shared/field-path.ts';

// Also the `type` field's description: the generated reference shows that one.
const SUMMARY = 'Removes fields from every record.';

const schema = z
  .strictObject({
    type: z.literal('drop').describe(SUMMARY),
    fields: z
      .array(fieldPath('A field to remove.'))
      .min(1)
      .describe('The fields to remove; missing ones are ignored.'),
  })
  .describe(SUMMARY);

export const dropTransform: ComponentDefinition<'transform', typeof schema> = {
  kind: 'transform',
  type: 'drop',
  schema,
  async create(config) {
    const paths = config.fields.map(parseFieldPath);
    const transform: Transform = {
      name: 'drop',
      async process(records: readonly PipelineRecord[]) {
        return {
          records: records.map((record) => ({
            ...record,
            value: paths.reduce((value, path) => deleteField(value, path), record.value),
          })),
          rejected: [],
        };
      },
    };
    return transform;
  },
};
