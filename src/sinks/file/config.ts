/** The `file` sink's configuration. */
import { z } from 'zod';

export const fileSinkSchema = z
  .strictObject({
    type: z
      .literal('file')
      .describe(
        'Appends records as JSON lines (NDJSON) to a file, exactly once: each batch is fsynced, then a ' +
          'positions file `<path>.positions.json` recording the positions and the data length they cover is ' +
          'replaced atomically; on start, bytes past that length (a crash mid-batch) are cut off.',
      ),
    name: z
      .string()
      .min(1)
      .max(200)
      .optional()
      .describe('Name of the sink (default `file:<path>`), recorded in the positions file.'),
    path: z
      .string()
      .min(1)
      .describe(
        'The file, relative to the project (or absolute). Created with its directories; one pipeline sink ' +
          'per file (a `<path>.lock` file keeps a second writer out).',
      ),
    metadata: z
      .boolean()
      .default(false)
      .describe(
        'false: a line is the record\'s value. true: {"partition", "offset", "key", "timestamp", "headers", "value"}.',
      ),
  })
  .describe('File sink.');

export type FileSinkConfig = z.output<typeof fileSinkSchema>;
