/** `sources/<name>.yaml` for `type: postgres_cdc`: change data capture from PostgreSQL into a log topic. */
import { z } from 'zod';
import { topicRetention } from '../../core/config/platform.ts';
import { durationOrMs as duration } from '../../core/config/units.ts';

const IDENT = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;
const QUALIFIED = /^[A-Za-z_][A-Za-z0-9_$]{0,62}\.[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

export const SNAPSHOT_MODES = ['initial', 'never', 'when_needed', 'initial_only'] as const;

export const postgresCdcSchema = z
  .strictObject({
    type: z
      .literal('postgres_cdc')
      .describe(
        'Captures every insert, update and delete of the tables from PostgreSQL logical replication (pgoutput) into a log topic.',
      ),
    description: z.string().optional().describe('What the source is for.'),
    host: z.string().min(1).default('localhost').describe('PostgreSQL host.'),
    port: z.number().int().min(1).max(65535).default(5432).describe('PostgreSQL port.'),
    database: z.string().min(1).describe('The database whose tables are captured.'),
    user: z
      .string()
      .min(1)
      .describe('A role with the REPLICATION attribute (or superuser) that can read the tables.'),
    password: z
      .string()
      .optional()
      .describe('Keep it out of the file: `${PG_PASSWORD}` or `${file:/run/secrets/pg}`.'),
    sslmode: z
      .enum(['disable', 'prefer', 'require', 'verify-ca', 'verify-full'])
      .default('prefer')
      .describe(
        "As libpq's: prefer tries TLS and falls back to plain; require encrypts without checking the certificate; verify-ca and verify-full check it (against sslrootcert, else the system's CAs).",
      ),
    sslrootcert: z
      .string()
      .optional()
      .describe('PEM file of the CA that signed the server certificate, relative to the project.'),
    tables: z
      .array(z.string().regex(QUALIFIED, 'must be schema.table (plain identifiers)'))
      .min(1)
      .describe('The tables to capture, each `schema.table`; each needs a primary key.'),
    topic: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,200}$/)
      .optional()
      .describe(
        'The log topic the changes go to (default `cdc.<source name>`). Pipelines read it with `source: {type: topic, topic: …}`.',
      ),
    partitions: z
      .number()
      .int()
      .min(1)
      .max(1024)
      .optional()
      .describe(
        "Partitions of the topic when it is created (default: the log's). Records are keyed by table and primary key, so the changes of a row stay in order.",
      ),
    retention: topicRetention(
      "How long the log keeps the source's changes in its topic (default: forever); the topics of its state " +
        "and of its tables' column types are kept. Removal does not wait for pipelines: keep it well above " +
        'the longest time a pipeline may be stopped, or changes it has not read are lost (a backfill copies ' +
        'the tables again).',
      'Changes older than this are removed from the topic.',
    ),
    slot_name: z
      .string()
      .regex(/^[a-z0-9_]{1,63}$/, 'must be lower-case letters, digits and _ (at most 63)')
      .optional()
      .describe('The logical replication slot (default `tributary_<source name>`); created when absent.'),
    publication_name: z
      .string()
      .regex(IDENT, 'must be a plain identifier')
      .optional()
      .describe('The publication (default `tributary_<source name>`).'),
    create_publication: z
      .boolean()
      .default(true)
      .describe(
        'Create the publication when absent and add configured tables missing from it. false: it must exist with the tables (`tributary doctor` checks).',
      ),
    snapshot_mode: z
      .enum(SNAPSHOT_MODES)
      .default('initial')
      .describe(
        'initial: copy the tables once when the slot is created, then stream. never: stream only. when_needed: also copy again when the slot was lost. initial_only: copy, then stop.',
      ),
    snapshot: z
      .strictObject({
        chunk_size: z
          .number()
          .int()
          .min(1)
          .max(1_000_000)
          .default(20_000)
          .describe('Rows per snapshot chunk, read by primary key; progress is saved after each chunk.'),
      })
      .prefault({})
      .describe('How tables are copied (the initial snapshot and `tributary cdc backfill`).'),
    heartbeat_interval: duration(
      'How often a heartbeat message is written into the WAL (pg_logical_emit_message), so that the slot advances while the captured tables are idle, and lag is measured. 0s: never.',
    ).default(10_000),
    replica_identity_full: z
      .boolean()
      .default(false)
      .describe(
        'Set REPLICA IDENTITY FULL on captured tables that lack it (needs ownership), so updates carry the old row and unchanged TOASTed values are filled from it rather than read back.',
      ),
    acknowledge: z
      .strictObject({
        pipelines: z
          .array(z.string())
          .optional()
          .describe(
            "Pipelines that must commit a change before its LSN is confirmed to PostgreSQL (default: every pipeline reading the source's topic; [] confirms once the log has it).",
          ),
        interval: duration('How often the confirmed LSN is computed and sent.').default(1000),
      })
      .prefault({})
      .describe(
        'When PostgreSQL may drop WAL: the LSN is confirmed only after every acknowledging pipeline committed it.',
      ),
    stall_threshold: duration(
      'The source reports itself stalled (not ready) when it has been disconnected, or its confirmed LSN has not moved while changes wait, for this long.',
    ).default(300_000),
    max_batch_records: z
      .number()
      .int()
      .min(1)
      .max(50_000)
      .default(10_000)
      .describe(
        'Records per append to the log at most (whole transactions are appended together when they fit).',
      ),
  })
  .describe('A PostgreSQL change data capture source.');

export type PostgresCdcConfig = z.output<typeof postgresCdcSchema>;

/** The settings a source's name implies. */
export function resolvedNames(name: string, config: PostgresCdcConfig) {
  const safe = name.replace(/[^a-z0-9_]/g, '_');
  return {
    topic: config.topic ?? `cdc.${name}`,
    slot: config.slot_name ?? `tributary_${safe}`,
    publication: config.publication_name ?? `tributary_${safe}`,
  };
}
