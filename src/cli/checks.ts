/** Every doctor check of the project: the platform's, the catalog's, and each pipeline component's. */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import {
  openProjectLog,
  projectResources,
  sinkDefinitions,
  sourceDefinitions,
  transformDefinitions,
} from '../components.ts';
import { didYouMean } from '../did-you-mean.ts';
import { redactUriPassword } from '../core/config/redact.ts';
import { openStorage, resolveWarehouse } from '../catalog/open.ts';
import {
  checkWritableDir,
  placeholderChecks,
  platformChecks,
  type CheckResult,
  type DoctorCheck,
} from '../core/doctor.ts';
import { createLogger } from '../core/logger.ts';
import type { ComponentContext } from '../core/pipeline/components.ts';
import type { Project } from '../core/project.ts';
import { isTributaryError } from '../errors.ts';
import type { Log } from '../log/log.ts';
import { serverChecks } from '../server/checks.ts';
import { streamDlqTopic, streamTopic } from '../server/streams.ts';
import { dlqTopic } from '../sinks/iceberg/dlq.ts';
import { isAlreadyExists, isLocalLocation, localPathOf, S3Storage, storageFor } from '../storage/index.ts';
import { openProjectCatalog } from './project-catalog.ts';

function failure(error: unknown, fallbackFix: string): CheckResult {
  return {
    status: 'fail',
    detail: error instanceof Error ? error.message : String(error),
    fix: isTributaryError(error) && error.hint ? error.hint : fallbackFix,
  };
}

/**
 * The warehouse as the catalog opens it: a relative path or a `file:` URI is a local directory, which must
 * be writable; an `s3://` one is a bucket to reach (`s3WarehouseCheck`), with local staging and cache
 * directories.
 */
const warehouseCheck: DoctorCheck = {
  component: 'platform',
  name: 'warehouse directory',
  async run(project) {
    let location: string;
    try {
      location = resolveWarehouse(project.platform.warehouse, project.root);
      if (!isLocalLocation(location)) return await s3WarehouseCheck(project, location);
      storageFor(location);
      return checkWritableDir(localPathOf(location));
    } catch (error) {
      return failure(
        error,
        'set warehouse in tributary.yaml to a local directory, a file:// URI or an s3://bucket/prefix URI',
      );
    }
  },
};

/**
 * Heads the bucket, then makes one `writeExclusive` twice under the warehouse: the second must fail with
 * `exists` — a store that ignores If-None-Match would let two writers overwrite each other's table
 * metadata. The probe object is deleted afterwards.
 */
async function s3WarehouseCheck(project: Project, warehouse: string): Promise<CheckResult> {
  const { storage } = openStorage(warehouse, { baseDir: project.root, storage: project.platform.storage });
  const probe = `${warehouse.replace(/\/+$/, '')}/.tributary-doctor-${randomUUID()}`;
  try {
    await storage.exists(probe); // a missing bucket, refused credentials or a wrong region fail here
    const body = new TextEncoder().encode('tributary doctor: conditional write probe\n');
    await storage.writeExclusive(probe, body);
    try {
      let refused = false;
      try {
        await storage.writeExclusive(probe, body);
      } catch (error) {
        if (!isAlreadyExists(error)) throw error;
        refused = true;
      }
      if (!refused)
        return {
          status: 'fail',
          detail: `${warehouse}: the store overwrote an object on a conditional write (If-None-Match: *)`,
          fix: "use a store that supports conditional writes (Amazon S3, MinIO, Cloudflare R2, Ceph RGW with If-None-Match): otherwise two writers can overwrite each other's table metadata",
        };
    } finally {
      await storage.delete(probe);
    }
    const staging = checkWritableDir(path.resolve(project.root, project.platform.storage.staging));
    if (staging.status !== 'pass') return staging;
    const cache = checkWritableDir(path.resolve(project.root, project.platform.storage.cache.path));
    if (cache.status !== 'pass') return cache;
    return { status: 'pass', detail: `${warehouse}: reachable, conditional writes refuse a second writer` };
  } finally {
    if (storage instanceof S3Storage) storage.destroy();
  }
}

const catalogCheck: DoctorCheck = {
  component: 'catalog',
  name: 'catalog reachable',
  async run(project) {
    const uri = redactUriPassword(project.platform.catalog.uri);
    try {
      const catalog = await openProjectCatalog(project);
      try {
        const namespaces = await catalog.registry.listNamespaces();
        const tables = (await catalog.listAllTables()).length;
        return { status: 'pass', detail: `${uri}: ${namespaces.length} namespace(s), ${tables} table(s)` };
      } finally {
        catalog.close();
      }
    } catch (error) {
      return failure(error, 'check catalog.uri in tributary.yaml and that the database is running');
    }
  },
};

/** With log.backend kafka: the brokers answer (and take the credentials), and the project's topics are listed. */
const kafkaCheck: DoctorCheck = {
  component: 'log',
  name: 'kafka brokers reachable',
  async run(project) {
    const config = project.platform.log;
    if (config.backend !== 'kafka') return { status: 'pass', detail: 'embedded log: no brokers' };
    const brokers = config.brokers.join(', ');
    try {
      const log = await openProjectLog(project);
      try {
        const topics = await log.listTopics();
        return {
          status: 'pass',
          detail: `${brokers} answer; ${topics.length} topic(s)${config.prefix ? ` under prefix "${config.prefix}"` : ''}`,
        };
      } finally {
        await log.close();
      }
    } catch (error) {
      return failure(
        error,
        `check that the brokers ${brokers} run and that log.brokers, log.tls and log.sasl are right`,
      );
    }
  },
};

/**
 * A check per configured transform and sink: a sink's or transform's own `check` where it declares one;
 * any other transform is built as the pipeline would build it (its schema file read and compiled, its SQL
 * checked, its module loaded) and closed, so that what stops `up` stops `doctor` too.
 */
function componentChecks(project: Project): DoctorCheck[] {
  const checks: DoctorCheck[] = [];
  for (const pipeline of project.pipelines.values()) {
    const components = [
      ...pipeline.config.transforms.map((config) => ({
        config,
        definition: transformDefinitions.find((d) => d.type === config.type),
      })),
      ...pipeline.config.sinks.map((config) => ({
        config,
        definition: sinkDefinitions.find((d) => d.type === config.type),
      })),
    ];
    for (const { config, definition } of components) {
      if (!definition || (!definition.check && definition.kind === 'sink')) continue;
      const check = async (context: ComponentContext): Promise<CheckResult[]> => {
        if (definition.check) return definition.check(config, context);
        const transform = await definition.create(config, context);
        await transform.close?.();
        return [{ status: 'pass', detail: 'built as the pipeline builds it' }];
      };
      checks.push({
        component: `${pipeline.name}: ${definition.kind} ${config.type}`,
        name: definition.kind === 'sink' ? 'reachable and compatible' : 'configured',
        async run() {
          const resources = projectResources(project);
          const context: ComponentContext = {
            pipeline: pipeline.name,
            sourceTopic: pipeline.config.source.topic,
            projectRoot: project.root,
            log: undefined as unknown as Log, // checks read their own systems, never the log
            logger: createLogger({ level: 'silent' }),
            resources,
          };
          try {
            const results = await check(context);
            const worst =
              results.find((r) => r.status === 'fail') ??
              results.find((r) => r.status === 'warn') ??
              results[0];
            return worst ?? { status: 'pass', detail: 'ok' };
          } catch (error) {
            return failure(error, `check the ${config.type} settings in ${pipeline.file}`);
          } finally {
            await resources.closeAll();
          }
        },
      });
    }
  }
  return checks;
}

/** The named checks of each source (postgres_cdc: wal_level, privileges, publication, identity, slot…). */
const SOURCE_CHECK_NAMES: Record<string, readonly string[]> = {
  postgres_cdc: [
    'connection',
    'wal_level',
    'replication privilege',
    'tables',
    'publication',
    'replica identity',
    'slot',
    'slot holder',
    'slot lag',
    'max_slot_wal_keep_size',
  ],
};

function sourceChecks(project: Project): DoctorCheck[] {
  const checks: DoctorCheck[] = [];
  for (const source of project.sources.values()) {
    const definition = sourceDefinitions.find((d) => d.type === source.config.type);
    if (!definition?.check) continue;
    const check = definition.check.bind(definition);
    // One connection for all of a source's checks: run them once, report each.
    let results: ReturnType<typeof check> | undefined;
    const all = () =>
      (results ??= check(definition.schema.parse(source.config), {
        name: source.name,
        project,
        logger: createLogger({ level: 'silent' }),
      }));
    for (const name of SOURCE_CHECK_NAMES[source.config.type] ?? ['configured']) {
      checks.push({
        component: `source ${source.name}`,
        name,
        async run() {
          try {
            const found = await all();
            const result = found.find((c) => c.name === name) ?? found.find((c) => c.name === 'queries');
            if (result) return result.result;
            // A check the source did not make: it could not connect, or there is nothing to check yet.
            const connected = found.find((c) => c.name === 'connection')?.result.status === 'pass';
            return connected
              ? { status: 'pass', detail: 'nothing to check yet (see the slot check)' }
              : { status: 'warn', detail: 'not checked: no connection (see the connection check)' };
          } catch (error) {
            return failure(error, `check ${source.file}`);
          }
        },
      });
    }
  }
  return checks;
}

/**
 * Per pipeline: something of the project writes the topic it reads — a stream, a source, a pipeline's
 * DLQ. Only a warning: a topic may be written from outside (`tributary topics produce`, a Kafka producer),
 * but a misspelt one would otherwise be made empty by the pipeline, which waits on it for ever.
 */
function topicChecks(project: Project): DoctorCheck[] {
  const writers = new Map<string, string>();
  for (const [name, config] of Object.entries(project.platform.streams ?? {})) {
    writers.set(streamTopic(name, config), `stream ${name}`);
    writers.set(streamDlqTopic(name, config), `stream ${name} (its rejected events)`);
  }
  for (const source of project.sources.values()) {
    const definition = sourceDefinitions.find((d) => d.type === source.config.type);
    if (definition) writers.set(definition.topic(source.name, source.config), `source ${source.name}`);
  }
  for (const name of project.pipelines.keys()) writers.set(dlqTopic(name), `pipeline ${name} (its DLQ)`);
  return [...project.pipelines.values()].map((pipeline) => ({
    component: `pipeline ${pipeline.name}`,
    name: 'source topic',
    async run(): Promise<CheckResult> {
      const topic = pipeline.config.source.topic;
      const writer = writers.get(topic);
      if (writer) return { status: 'pass', detail: `${topic}, written by ${writer}` };
      // A stream's or source's name given for its topic is the likely slip.
      const suggestion =
        [`events.${topic}`, `cdc.${topic}`].find((t) => writers.has(t)) ?? didYouMean(topic, writers.keys());
      return {
        status: 'warn',
        detail: `no stream, source or pipeline of this project writes topic ${topic}${suggestion ? ` (did you mean ${suggestion}?)` : ''}`,
        fix: `set source.topic in ${path.relative(project.root, pipeline.file)} to the topic that is written (a stream writes events.<stream>, a CDC source cdc.<source>), or ignore this if something outside the project writes ${topic}`,
      };
    },
  }));
}

/**
 * Checks made from the configuration. Where making them reads a value that is unresolved here (listed by
 * the placeholder checks), one failed check says so, and the other checks still run.
 */
function checksOf(component: string, make: () => DoctorCheck[]): DoctorCheck[] {
  try {
    return make();
  } catch (error) {
    if (
      !isTributaryError(error, 'CONFIG_UNRESOLVED_VARIABLE') &&
      !isTributaryError(error, 'CONFIG_SECRET_FILE')
    )
      throw error;
    return [
      {
        component,
        name: 'configured',
        run: () => Promise.resolve(failure(error, 'see the placeholder checks')),
      },
    ];
  }
}

export function allChecks(project: Project): DoctorCheck[] {
  return [
    ...placeholderChecks(project),
    ...platformChecks,
    warehouseCheck,
    catalogCheck,
    ...(project.platform.log.backend === 'kafka' ? [kafkaCheck] : []),
    ...checksOf('server', () => serverChecks(project)),
    ...checksOf('pipelines', () => topicChecks(project)),
    ...checksOf('pipelines', () => componentChecks(project)),
    ...checksOf('sources', () => sourceChecks(project)),
  ];
}
