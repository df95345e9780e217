/**
 * The composition root: the components Tributary ships, the pipeline file schema built from them, and
 * how a configured project becomes running pipelines. The CLI, the server and the docs generator start
 * here; nothing below imports it.
 */
import { readFileSync } from 'node:fs';
import { openCatalog } from './catalog/open.ts';
import { pipelineSchemaFor } from './core/config/pipeline.ts';
import { didYouMean } from './did-you-mean.ts';
import type { Logger } from './core/logger.ts';
import type { PipelineMetrics } from './core/metrics.ts';
import {
  createResources,
  type ComponentContext,
  type PipelineResources,
  type TransformDefinition,
} from './core/pipeline/components.ts';
import type { Sink, Transform } from './core/pipeline/model.ts';
import { PipelineRunner } from './core/pipeline/runner.ts';
import { projectPath, type Project } from './core/project.ts';
import { TributaryError } from './errors.ts';
import { openEngine } from './iceberg/duckdb.ts';
import { EmbeddedLog } from './log/embedded-log.ts';
import { KafkaLog, type KafkaLogOptions } from './log/kafka-log.ts';
import type { Log } from './log/log.ts';
import { DlqSink, DLQ_TABLE_NAME } from './sinks/iceberg/dlq.ts';
import { sinkDefinitions } from './sinks/index.ts';
import { cdcTransform, sourceDefinitions, sourceSchema } from './sources/index.ts';
import type { RunningSource, SourceStatus } from './sources/index.ts';
import { transformDefinitions as builtinTransforms } from './transforms/index.ts';
import type { Registry } from 'prom-client';

/** The transforms of transforms/, and those that come with a source (`cdc`). */
export const transformDefinitions: readonly TransformDefinition[] = [...builtinTransforms, cdcTransform];

export { sinkDefinitions, sourceDefinitions, sourceSchema };

export const pipelineSchema = pipelineSchemaFor({ transforms: transformDefinitions, sinks: sinkDefinitions });

/** The project's log, as tributary.yaml configures it. */
export async function openProjectLog(project: Project): Promise<Log> {
  const config = project.platform.log;
  if (config.backend === 'kafka') return KafkaLog.open(kafkaLogOptions(project));
  return EmbeddedLog.open({ directory: projectPath(project, config.path), durability: config.durability });
}

const SASL_MECHANISMS = {
  plain: 'PLAIN',
  'scram-sha-256': 'SCRAM-SHA-256',
  'scram-sha-512': 'SCRAM-SHA-512',
} as const;

/** The KafkaLog options of a project whose log.backend is kafka; TLS files are read here. */
export function kafkaLogOptions(project: Project): KafkaLogOptions {
  const config = project.platform.log;
  if (config.backend !== 'kafka') throw new TributaryError('INTERNAL', 'log.backend is not kafka');
  const file = (key: string, relative: string | undefined) => {
    if (relative === undefined) return undefined;
    const location = projectPath(project, relative);
    try {
      return readFileSync(location);
    } catch (cause) {
      throw new TributaryError(
        'CONFIG_INVALID',
        `log.tls.${key}: cannot read ${location}: ${(cause as Error).message}`,
        {
          cause,
          hint: 'give a PEM file, relative to the project',
        },
      );
    }
  };
  const tls = config.tls;
  return {
    brokers: config.brokers,
    clientId: config.client_id,
    prefix: config.prefix,
    ...(config.replication_factor === undefined ? {} : { replicationFactor: config.replication_factor }),
    ...(tls === undefined || tls === false
      ? {}
      : tls === true
        ? { tls: true }
        : {
            tls: Object.fromEntries(
              Object.entries({
                ca: file('ca', tls.ca),
                cert: file('cert', tls.cert),
                key: file('key', tls.key),
              }).filter(([, value]) => value !== undefined),
            ),
          }),
    ...(config.sasl
      ? {
          sasl: {
            mechanism: SASL_MECHANISMS[config.sasl.mechanism],
            username: config.sasl.username,
            password: config.sasl.password,
          },
        }
      : {}),
  };
}

export interface BuildOptions {
  readonly log: Log;
  readonly logger: Logger;
  readonly metrics?: PipelineMetrics;
  readonly exitWhenIdle?: boolean;
}

/** The DLQ table of a pipeline: configured, else `_dlq` in the namespace of its first Iceberg sink. */
export function dlqTableOf(project: Project, name: string): string {
  const config = project.pipelines.get(name)?.config;
  if (config?.dlq.table) return config.dlq.table;
  const iceberg = config?.sinks.find((s) => s.type === 'iceberg');
  const namespace = typeof iceberg?.table === 'string' ? iceberg.table.split('.').slice(0, -1).join('.') : '';
  return `${namespace || 'tributary'}.${DLQ_TABLE_NAME}`;
}

export function pipelineNamed(project: Project, name: string) {
  const pipeline = project.pipelines.get(name);
  if (!pipeline) {
    const suggestion = didYouMean(name, project.pipelines.keys());
    throw new TributaryError('USAGE', `no pipeline named "${name}" in ${project.root}/pipelines`, {
      hint: suggestion
        ? `did you mean "${suggestion}"?`
        : `pipelines: ${[...project.pipelines.keys()].join(', ') || 'none yet'}`,
    });
  }
  return pipeline;
}

/** The shared resources components use (the project's catalog, a DuckDB engine), opened on first use. */
export function projectResources(project: Project): PipelineResources {
  const resources = createResources();
  resources.provide(
    'catalog',
    () =>
      openCatalog({
        name: project.platform.catalog.name,
        uri: project.platform.catalog.uri,
        warehouse: project.platform.warehouse,
        baseDir: project.root,
        storage: project.platform.storage,
      }),
    (catalog) => catalog.close(),
  );
  // One DuckDB thread per pipeline: the pipeline's JavaScript thread decodes the next batch meanwhile, and
  // a second DuckDB thread mostly spun waiting on the first (a fifth more CPU per record, bench pipeline).
  resources.provide(
    'engine',
    () => openEngine({ threads: 1 }),
    (engine) => engine.close(),
  );
  return resources;
}

export async function buildPipeline(
  project: Project,
  name: string,
  options: BuildOptions,
): Promise<{ runner: PipelineRunner; close: () => Promise<void> }> {
  const pipeline = pipelineNamed(project, name);
  const resources = projectResources(project);
  const context: ComponentContext = {
    pipeline: name,
    sourceTopic: pipeline.config.source.topic,
    projectRoot: project.root,
    log: options.log,
    logger: options.logger.child({ pipeline: name }),
    resources,
  };
  try {
    // Component configs were validated (and defaulted, durations made milliseconds) by the pipeline schema,
    // which is built from these definitions' schemas: they are passed on as they are.
    const transforms: Transform[] = [];
    for (const config of pipeline.config.transforms) {
      const definition = transformDefinitions.find((d) => d.type === config.type);
      if (!definition)
        throw new TributaryError(
          'CONFIG_INVALID',
          `${pipeline.file}: unknown transform type "${config.type}"`,
        );
      transforms.push(await definition.create(config, context));
    }
    const sinks: Sink[] = [];
    for (const config of pipeline.config.sinks) {
      const definition = sinkDefinitions.find((d) => d.type === config.type);
      if (!definition)
        throw new TributaryError('CONFIG_INVALID', `${pipeline.file}: unknown sink type "${config.type}"`);
      sinks.push(await definition.create(config, context));
    }
    const dlq = new DlqSink({
      pipeline: name,
      topic: pipeline.config.source.topic,
      table: dlqTableOf(project, name),
      projectRoot: project.root,
      log: options.log,
      catalog: () => resources.get('catalog'),
      engine: () => resources.get('engine'),
    });
    const runner = new PipelineRunner({
      name,
      config: pipeline.config,
      log: options.log,
      transforms,
      sinks,
      dlq,
      logger: context.logger,
      metrics: options.metrics,
      defaultPartitions: project.platform.log.partitions,
      exitWhenIdle: options.exitWhenIdle,
    });
    return { runner, close: () => resources.closeAll() };
  } catch (error) {
    await resources.closeAll();
    throw error;
  }
}

export interface SourceOptions {
  readonly log: Log;
  readonly logger: Logger;
  /** Where source metrics go (the /metrics registry, e.g. `createPipelineMetrics().registry`). */
  readonly registry?: Registry;
}

export function sourceNamed(project: Project, name: string) {
  const source = project.sources.get(name);
  if (!source) {
    const suggestion = didYouMean(name, project.sources.keys());
    throw new TributaryError('USAGE', `no source named "${name}" in ${project.root}/sources`, {
      hint: suggestion
        ? `did you mean "${suggestion}"?`
        : `sources: ${[...project.sources.keys()].join(', ') || 'none yet'}`,
    });
  }
  return source;
}

/** One configured source, ready to `run()`. */
export function buildSource(project: Project, name: string, options: SourceOptions): RunningSource {
  const source = sourceNamed(project, name);
  const definition = sourceDefinitions.find((d) => d.type === source.config.type);
  if (!definition)
    throw new TributaryError(
      'CONFIG_INVALID',
      `${source.file}: unknown source type "${source.config.type}"`,
      {
        hint: `types: ${sourceDefinitions.map((d) => d.type).join(', ')}`,
      },
    );
  return definition.create(definition.schema.parse(source.config), {
    name,
    project,
    log: options.log,
    logger: options.logger,
    ...(options.registry ? { registry: options.registry } : {}),
  });
}

export interface SourceHandle {
  readonly name: string;
  /** For /readyz: `healthy` is false while starting, when stalled past the threshold, or failed. */
  status(): SourceStatus;
  /** Stops the source (it confirms what the pipelines committed and closes its connections). */
  stop(): Promise<void>;
  /** Settles when the source ends: resolves when stopped (or done), rejects when it failed. */
  readonly done: Promise<void>;
}

/** Starts every source of the project (or those named) in this process; for `tributary up`. */
export function startSources(
  project: Project,
  options: SourceOptions & { readonly names?: readonly string[]; readonly signal?: AbortSignal },
): SourceHandle[] {
  const names = options.names ?? [...project.sources.keys()];
  const handles = names.map((name) => {
    const source = buildSource(project, name, options);
    const done = source.run();
    done.catch(() => undefined); // the caller observes `done`; an unobserved failure must not crash
    return {
      name,
      status: () => source.status(),
      stop: async () => {
        source.stop();
        await done.catch(() => undefined);
      },
      done,
    };
  });
  options.signal?.addEventListener('abort', () => handles.forEach((h) => void h.stop()), { once: true });
  return handles;
}
