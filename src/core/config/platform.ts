/**
 * `tributary.yaml`: the platform a project runs on — where the log, the catalog and the warehouse live, and
 * how the server and the logs behave. Embedded defaults need no services; production swaps components by
 * configuration alone.
 */
import { z } from 'zod';

export const PLATFORM_FILE = 'tributary.yaml';

const embeddedLog = z
  .strictObject({
    backend: z.literal('embedded').describe('The embedded log: SQLite files on local disk, no services.'),
    path: z
      .string()
      .default('.tributary/log')
      .describe('Directory of the log files, relative to the project.'),
    durability: z
      .enum(['fsync', 'os'])
      .default('fsync')
      .describe(
        'fsync: an append is acknowledged only after it is on disk (survives power loss). os: after the ' +
          'operating system has it (survives a crash of Tributary, not of the machine); faster.',
      ),
    partitions: z
      .number()
      .int()
      .min(1)
      .max(1024)
      .default(4)
      .describe('Partitions of a topic created implicitly.'),
  })
  .describe('The durable log every source writes into and every pipeline reads from.');

const sqlCatalog = z
  .strictObject({
    type: z
      .literal('sql')
      .describe("A SQL catalog: the tables of Iceberg's JDBC catalog and pyiceberg's SqlCatalog."),
    name: z.string().min(1).default('tributary').describe('Catalog name, as other engines will call it.'),
    uri: z
      .string()
      .default('sqlite:.tributary/catalog.db')
      .describe('sqlite:<path> (relative to the project) or postgresql://user:password@host:port/database.'),
  })
  .describe('Where tables are registered.');

export const platformSchema = z
  .strictObject({
    project: z
      .string()
      .min(1)
      .default('tributary')
      .describe('Name of the project, used in logs and metrics.'),
    warehouse: z
      .string()
      .default('.tributary/warehouse')
      .describe('Root of table data and metadata: a directory relative to the project.'),
    log: embeddedLog.prefault({ backend: 'embedded' }),
    catalog: sqlCatalog.prefault({ type: 'sql' }),
    server: z
      .strictObject({
        host: z
          .string()
          .default('127.0.0.1')
          .describe('Address the HTTP server listens on (0.0.0.0 for all).'),
        port: z.number().int().min(0).max(65535).default(8080).describe('Port the HTTP server listens on.'),
      })
      .prefault({})
      .describe('The HTTP server: ingest, health, metrics and query API.'),
    logging: z
      .strictObject({
        level: z
          .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
          .default('info')
          .describe('Lowest level logged.'),
        format: z
          .enum(['auto', 'pretty', 'json'])
          .default('auto')
          .describe('auto: readable on a terminal, JSON lines otherwise.'),
      })
      .prefault({})
      .describe('Log output.'),
  })
  .describe('tributary.yaml: the platform of a Tributary project.');

export type PlatformConfig = z.output<typeof platformSchema>;
