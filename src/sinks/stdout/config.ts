/** The `stdout` sink's configuration. */
import { z } from 'zod';

export const stdoutSinkSchema = z
  .strictObject({
    type: z
      .literal('stdout')
      .describe(
        'Prints each record as one line of JSON on standard output, for debugging. At-least-once: positions ' +
          "are kept in the log's consumer-group offsets after the lines are written, so a crash in between " +
          'prints the batch again.',
      ),
    name: z
      .string()
      .min(1)
      .max(200)
      .optional()
      .describe(
        'Name of the sink (default `stdout`): its positions are the consumer group `<pipeline>/<name>`.',
      ),
    metadata: z
      .boolean()
      .default(false)
      .describe(
        'false: print the record\'s value. true: print {"partition", "offset", "key", "timestamp", "headers", "value"}.',
      ),
  })
  .describe('Standard-output sink.');

export type StdoutSinkConfig = z.output<typeof stdoutSinkSchema>;
