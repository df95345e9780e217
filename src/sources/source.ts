/**
 * Sources write into the log from outside systems (change data capture). Each is configured in
 * `sources/<name>.yaml`, declares one zod schema, and runs as a long-lived task with a status that the
 * server's /readyz reports and a `stop()` that ends it cleanly.
 */
import type { z } from 'zod';
import type { CheckResult } from '../core/doctor.ts';
import type { Logger } from '../core/logger.ts';
import type { Project } from '../core/project.ts';
import type { Log } from '../log/log.ts';
import type { Registry } from 'prom-client';

export type SourceState =
  'starting' | 'snapshotting' | 'streaming' | 'reconnecting' | 'stopping' | 'stopped' | 'done' | 'failed';

export interface TableProgress {
  readonly table: string;
  readonly kind: 'initial' | 'backfill';
  readonly rows: number;
  readonly estimated?: number;
  readonly chunks: number;
}

export interface SourceStatus {
  readonly name: string;
  readonly type: string;
  readonly state: SourceState;
  /** Ready for /readyz: running, and not stalled past the source's threshold. */
  readonly healthy: boolean;
  /** One sentence on what the source is doing, or why it is not healthy. */
  readonly detail: string;
  readonly topic: string;
  readonly confirmedLsn?: string;
  readonly receivedLsn?: string;
  readonly lagBytes?: number;
  readonly lagSeconds?: number;
  readonly snapshots: readonly TableProgress[];
  readonly error?: string;
}

export interface SourceContext {
  readonly name: string;
  readonly project: Project;
  readonly log: Log;
  readonly logger: Logger;
  /** Where metrics are registered (the server's /metrics registry). */
  readonly registry?: Registry;
}

export interface RunningSource {
  readonly name: string;
  status(): SourceStatus;
  /** Runs until stopped or failed; rejects with the error that stopped it. */
  run(): Promise<void>;
  /** Asks the source to stop: it confirms what pipelines committed, closes its connections, and `run` resolves. */
  stop(): void;
}

export interface NamedCheck {
  readonly name: string;
  readonly result: CheckResult;
}

export interface SourceDefinition<Schema extends z.ZodObject = z.ZodObject> {
  readonly type: string;
  readonly schema: Schema;
  create(config: z.output<Schema>, context: SourceContext): RunningSource;
  /** The log topic the source named `name` writes into. */
  topic(name: string, config: z.output<Schema>): string;
  /** Preflight checks for `tributary doctor`, each named; must not change anything. */
  check?(config: z.output<Schema>, context: Omit<SourceContext, 'log'>): Promise<NamedCheck[]>;
}
