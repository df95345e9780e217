/** The `postgres` sink's configuration. */
import { z } from 'zod';
import { duration } from '../../core/config/units.ts';
import { COLUMN_TYPE, IDENTIFIER, parseQualified } from './identifiers.ts';

const identifier = z
  .string()
  .regex(IDENTIFIER, 'must be a plain identifier: a letter or _, then letters, digits or _ (at most 63)');

const qualifiedName = (description: string) =>
  z
    .string()
    .refine((text) => parseQualified(text) !== undefined, {
      message: 'must be table or schema.table, each a plain identifier (letters, digits, _)',
    })
    .describe(description);

export const postgresSinkSchema = z
  .strictObject({
    type: z
      .literal('postgres')
      .describe(
        'Writes records as rows of a PostgreSQL table, exactly once: the source positions are committed in ' +
          'the same transaction as the rows.',
      ),
    name: z
      .string()
      .min(1)
      .max(200)
      .optional()
      .describe(
        'Name of the sink, under which its positions are stored (default `postgres:<schema>.<table>`). ' +
          'Changing it makes the sink start over.',
      ),
    url: z
      .string()
      .regex(/^postgres(?:ql)?:\/\//, 'must be a postgresql:// URL')
      .describe(
        'postgresql://user:password@host:port/database. Keep the password out of the file: write ' +
          '`${DATABASE_URL}` or `postgresql://app:${PG_PASSWORD}@db:5432/app`.',
      ),
    table: qualifiedName(
      'The table: `schema.table`, or `table` in schema public. Plain identifiers only; names are quoted, ' +
        'so case is kept.',
    ),
    mode: z
      .enum(['append', 'upsert'])
      .default('append')
      .describe(
        'append: every record becomes a new row. upsert: a record inserts or updates the row with the same ' +
          '`key` (INSERT … ON CONFLICT DO UPDATE): the columns of its fields are set, the others keep their ' +
          'values; records of one key in a batch are applied in order: the last one (by partition and offset) ' +
          'wins, also for a key spelled two ways (1 and "1", one instant at two UTC offsets) in rows the batch ' +
          'writes with different statements (records with different fields; over 50,000 rows or 16 MB). Limit: ' +
          'where PostgreSQL cannot tell which spellings are one key before the write (a BEFORE INSERT trigger, ' +
          'a unique index with its own collation or operator class, a key in the batch its column ' +
          'cannot hold), such spellings in different statements are applied in statement order.',
      ),
    key: z
      .array(identifier)
      .min(1)
      .optional()
      .describe(
        'Columns identifying a row, for upsert (the table needs a primary key or unique index on exactly ' +
          'these columns; a table the sink creates gets it).',
      ),
    columns: z
      .record(
        identifier,
        z.string().regex(COLUMN_TYPE, 'must be a PostgreSQL type such as text, bigint, numeric(12,2), jsonb'),
      )
      .optional()
      .describe(
        'Column name → PostgreSQL type, for the table the sink creates and the fields it writes. Without it ' +
          'an existing table is written as it is, and a missing one is created from the first batch: ' +
          'integers bigint, other numbers double precision, booleans boolean, strings text, objects and ' +
          'arrays jsonb.',
      ),
    create_table: z
      .boolean()
      .default(true)
      .describe(
        'Create the table (and its schema) when it does not exist; false: a missing table is an error.',
      ),
    extra_fields: z
      .enum(['reject', 'ignore'])
      .optional()
      .describe(
        'A record with a non-null field that has no column: reject sends it to the dead-letter queue, ' +
          'ignore drops the field. Default: ignore when `columns` is set, reject otherwise.',
      ),
    positions_table: qualifiedName(
      'Table of committed source positions (pipeline, sink, partition, next_offset), created when ' +
        'missing; unqualified names are in the schema of `table`.',
    ).default('tributary_sink_positions'),
    rejections_table: qualifiedName(
      'Table remembering which records of the last batch of each partition the table refused (so that after a crash the ' +
        'dead-letter queue still gets them exactly once); created when missing, in the schema of `table` ' +
        'unless qualified.',
    ).default('tributary_sink_rejections'),
    ssl: z
      .strictObject({
        mode: z
          .enum(['disable', 'require', 'verify-full'])
          .describe(
            'disable: no TLS. require: TLS without checking the certificate. verify-full: TLS, with the ' +
              "server's certificate checked against `ca` (or the system's CAs) and its host name.",
          ),
        ca: z
          .string()
          .optional()
          .describe('PEM file of the certificate authority to trust, relative to the project.'),
        cert: z.string().optional().describe('PEM file of a client certificate, relative to the project.'),
        key: z
          .string()
          .optional()
          .describe("PEM file of the client certificate's key, relative to the project."),
      })
      .optional()
      .describe('TLS to the server. Without it, `sslmode` in the URL (or PGSSLMODE) decides.'),
    connect_timeout: duration('How long to wait for a connection.').default(10_000),
    statement_timeout: duration(
      'How long one statement may run before the server cancels it (a retryable failure).',
    ).default(60_000),
  })
  .superRefine((config, ctx) => {
    if (config.mode === 'upsert' && !config.key) {
      ctx.addIssue({
        code: 'custom',
        path: ['key'],
        message: 'upsert needs `key`: the columns that identify a row',
      });
    }
    if (config.mode === 'append' && config.key) {
      ctx.addIssue({ code: 'custom', path: ['key'], message: '`key` is only used with mode: upsert' });
    }
    if (config.key && new Set(config.key).size !== config.key.length) {
      ctx.addIssue({ code: 'custom', path: ['key'], message: 'a column is listed twice' });
    }
    if (config.columns) {
      for (const column of config.key ?? []) {
        if (!(column in config.columns)) {
          ctx.addIssue({
            code: 'custom',
            path: ['key'],
            message: `key column "${column}" is not in \`columns\``,
          });
        }
      }
    }
    if (config.ssl) {
      let params: URLSearchParams | undefined;
      try {
        params = new URL(config.url).searchParams;
      } catch {
        // An unparsable URL is reported when connecting.
      }
      if (params && ['ssl', 'sslmode', 'sslcert', 'sslkey', 'sslrootcert'].some((p) => params.has(p))) {
        ctx.addIssue({
          code: 'custom',
          path: ['ssl'],
          message: 'TLS is set both in the URL (ssl…) and in `ssl`: keep one',
        });
      }
    }
  })
  .describe('PostgreSQL sink.');

export type PostgresSinkConfig = z.output<typeof postgresSinkSchema>;
