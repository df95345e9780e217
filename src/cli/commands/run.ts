/**
 * `tributary run <pipeline>` runs one pipeline (a worker); `tributary up` runs every source and pipeline of
 * the project and the HTTP server, sharing one log and one metrics registry; `tributary serve` (serve.ts) runs
 * the server alone. SIGTERM and SIGINT stop intake (the server answers the requests in flight once their
 * events are durable), finish and commit the pipelines' batches in flight, and exit 0 within the
 * pipelines' shutdown timeout.
 *
 * With the server running, a pipeline that fails does not stop the process: ingest goes on (events are
 * durable in the log), /readyz reports the failed pipeline, and the exit code is 1 when the process stops.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { buildPipeline, openProjectLog, startSources, type SourceHandle } from '../../components.ts';
import { createLogger, type Logger } from '../../core/logger.ts';
import { createPipelineMetrics } from '../../core/metrics.ts';
import type { PipelineRunner } from '../../core/pipeline/runner.ts';
import type { Log } from '../../log/log.ts';
import { takePidLock, type PidLock } from '../../core/pid-lock.ts';
import { projectPath, requireResolvedPlatform, type Project } from '../../core/project.ts';
import { TributaryError } from '../../errors.ts';
import { openStorage, resolveWarehouse } from '../../catalog/open.ts';
import { S3Storage } from '../../storage/index.ts';
import { healthOption, port, withHealthOptions } from '../options.ts';
import { loadModels, type ModelProject } from '../../query/models/project.ts';
import { jobsOf } from '../../query/scheduler/jobs.ts';
import { startScheduler, type SchedulerHandle } from '../../query/scheduler/scheduler.ts';
import { readiness } from '../../server/health.ts';
import { startProbeServer, type ProbeServer } from '../../server/probe-server.ts';
import { openServerLog, startProjectServer } from '../../server/start.ts';
import type { CliContext } from '../context.ts';

export function registerRun(program: Command, context: () => CliContext): void {
  withHealthOptions(program.command('run'), 'serve /healthz, /readyz and /metrics on this port (for probes)')
    .description('Run one pipeline until stopped (SIGTERM/SIGINT finish and commit the batch in flight).')
    .argument('<pipeline>', 'the pipeline name (its file in pipelines/)')
    .option('--once', 'stop when the source topic has no more records')
    .action(async (name: string, options: { once?: boolean; healthPort?: number; healthHost: string }) => {
      const project = context().loadProject();
      await runPipelines(project, [name], options.once ?? false, context().verbose, {
        health: healthOption(options),
      });
    });

  withHealthOptions(
    program.command('up'),
    'with --no-server: serve /healthz, /readyz and /metrics on this port (for probes)',
  )
    .description(
      'Run every source and pipeline of the project, the scheduler of its models, and the HTTP server (event ingest, health, metrics) until stopped.',
    )
    .option(
      '--once',
      'stop each pipeline when its source topic has no more records (no server, sources or scheduler)',
    )
    .option('--no-server', 'run without the HTTP server')
    .option('--host <address>', "the HTTP server's address (default: server.host)")
    .option('--port <port>', "the HTTP server's port; 0 picks a free one (default: server.port)", port)
    .action(
      async (options: {
        once?: boolean;
        server?: boolean;
        host?: string;
        port?: number;
        healthPort?: number;
        healthHost: string;
      }) => {
        const project = context().loadProject();
        const names = [...project.pipelines.keys()];
        const once = options.once ?? false;
        const serve = options.server !== false && !once;
        if (!serve && (options.host !== undefined || options.port !== undefined))
          throw new TributaryError(
            'USAGE',
            "--host and --port are the HTTP server's, which does not run here",
            {
              hint: once
                ? '--once runs the pipelines alone: leave out --host and --port'
                : 'with --no-server, the probes listen on --health-port (and --health-host)',
            },
          );
        // Sources and the scheduler never run out of work: not with --once. Models are read before anything
        // starts, so a broken model file stops `up` with its error at once.
        const models = once ? undefined : loadModels(project.root);
        const hasWork =
          names.length > 0 ||
          (serve && Object.keys(project.platform.streams ?? {}).length > 0) ||
          (!once && project.sources.size > 0) ||
          (models !== undefined && jobsOf(models).length > 0);
        if (!hasWork) {
          throw new TributaryError('USAGE', `the project in ${project.root} has nothing to run`, {
            hint: 'add a pipeline to pipelines/, a source to sources/, a scheduled model to models/, or a stream to tributary.yaml',
          });
        }
        await runPipelines(project, names, once, context().verbose, {
          serve,
          host: options.host,
          port: options.port,
          sources: !once,
          models,
          health: serve ? undefined : healthOption(options),
        });
      },
    );
}

export function projectLogger(project: Project, verbose: boolean): Logger {
  return createLogger({
    level: verbose ? 'debug' : project.platform.logging.level,
    format: project.platform.logging.format,
  });
}

export async function runPipelines(
  project: Project,
  names: readonly string[],
  once: boolean,
  verbose: boolean,
  options: {
    serve?: boolean;
    host?: string;
    port?: number;
    sources?: boolean;
    /** The project's models: their scheduled and triggered jobs run while the pipelines do. */
    models?: ModelProject | undefined;
    /** Without the server: where to serve the probes (probe-server.ts). */
    health?: { host: string; port: number } | undefined;
  } = {},
): Promise<void> {
  // The server needs every value of tributary.yaml: an unresolved one stops it before anything starts.
  if (options.serve) requireResolvedPlatform(project);
  // A warehouse no storage can open (another scheme, incomplete storage.s3 settings) fails every
  // pipeline's first commit: refuse to start, rather than take events that no table can receive.
  const { storage } = openStorage(resolveWarehouse(project.platform.warehouse, project.root), {
    baseDir: project.root,
    storage: project.platform.storage,
  });
  if (storage instanceof S3Storage) storage.destroy();
  // Read before anything starts, like every setting: an unresolved one stops the start, not a probe.
  const stallAfterMs = options.health ? project.platform.server.stall_after : 0;
  const logger = projectLogger(project, verbose);
  // One process runs a pipeline: a second one's commits would fail against the first's, and stop it.
  const locks = lockPipelines(project, names, logger);
  let log: Log;
  try {
    // With the server, the embedded log runs on a worker thread so that its commits never block requests.
    log = options.serve ? await openServerLog(project) : await openProjectLog(project);
  } catch (error) {
    for (const lock of locks) lock.release();
    throw error;
  }
  const registry = new Registry();
  // The process's CPU, memory, event-loop delay and GC pauses, under prom-client's standard names.
  collectDefaultMetrics({ register: registry });
  const metrics = createPipelineMetrics(registry);
  const built: Array<{
    runner: PipelineRunner;
    close: () => Promise<void>;
    timeout: number;
    topic: string;
  }> = [];
  let server: { url: string; close: () => Promise<void> } | undefined;
  let probes: ProbeServer | undefined;
  let sources: SourceHandle[] = [];
  let sourceFailure: Error | undefined;
  let scheduler: SchedulerHandle | undefined;
  try {
    const models = options.models;
    for (const name of names) {
      const pipeline = await buildPipeline(project, name, { log, logger, metrics, exitWhenIdle: once });
      const config = project.pipelines.get(name)!.config;
      built.push({ ...pipeline, timeout: config.shutdown_timeout, topic: config.source.topic });
    }
    if (options.serve) {
      server = await startProjectServer(project, {
        log,
        registry,
        logger,
        pipelines: () => built.map(({ runner, topic }) => ({ runner, topic })),
        sources: () => sources,
        host: options.host,
        port: options.port,
      });
      console.log(`Tributary server listening on ${server.url}`);
    }
    if (options.sources && project.sources.size > 0) {
      sources = startSources(project, { log, logger, registry });
      for (const source of sources)
        source.done.catch((error: unknown) => {
          sourceFailure ??= error instanceof Error ? error : new Error(String(error));
          logger.error({ err: error, source: source.name }, `source ${source.name} failed`);
        });
    }
    if (options.health && !server) {
      const startedAt = Date.now();
      probes = await startProbeServer({
        ...options.health,
        registry,
        readiness: () =>
          readiness({
            log,
            pipelines: () => built.map(({ runner, topic }) => ({ runner, topic })),
            sources: () => sources,
            stallAfterMs,
            startedAt,
          }),
      });
      console.log(`Probes listening on ${probes.url} (/healthz, /readyz, /metrics)`);
    }
    if (models && jobsOf(models).length > 0) {
      // It says it started, with its jobs.
      scheduler = await startScheduler(project, { logger, metrics: registry, models });
    }
    let stopServer: (() => void) | undefined;
    const serverStopped = server
      ? new Promise<void>((resolve) => {
          stopServer = resolve;
        })
      : Promise.resolve();
    const stop = (signal: string) => {
      logger.info({ signal }, `${signal} received: finishing the requests and batches in flight`);
      stopServer?.();
      for (const source of sources) void source.stop();
      void scheduler?.stop();
      for (const { runner } of built) runner.stop();
      const timeout = Math.max(10_000, ...built.map((b) => b.timeout));
      setTimeout(() => {
        logger.error(`did not stop within ${timeout} ms; exiting`);
        process.exit(1);
      }, timeout).unref();
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    process.once('SIGTERM', onTerm);
    process.once('SIGINT', onInt);
    try {
      const running = built.map(({ runner }) => runner.run());
      if (!server) {
        // Without the server nothing would report a failure: the first one stops everything and is the
        // exit status. The scheduler runs until a signal (its `stopped`), the pipelines until idle with --once.
        const work = [...running, ...sources.map((s) => s.done), ...(scheduler ? [scheduler.stopped] : [])];
        try {
          await Promise.all(work);
        } catch (error) {
          for (const source of sources) void source.stop();
          void scheduler?.stop();
          for (const { runner } of built) runner.stop();
          await Promise.allSettled(work);
          throw error;
        }
        return;
      }
      // With the server, a failed pipeline is reported by /readyz; the process stops on a signal.
      const results = Promise.allSettled(running);
      await serverStopped;
      await server.close();
      server = undefined;
      const failed = (await results).find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      if (sourceFailure) throw sourceFailure;
    } finally {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
    }
  } finally {
    await probes?.close();
    await server?.close();
    await Promise.all(sources.map((source) => source.stop()));
    await scheduler?.stop();
    for (const { close } of built) await close();
    await log.close();
    for (const lock of locks) lock.release();
  }
}

/**
 * Takes each pipeline's lock (`<log.path>/pipelines/<name>.lock`), or fails naming the process that runs
 * it. Machine-wide only, as the embedded log is.
 */
function lockPipelines(project: Project, names: readonly string[], logger: Logger): PidLock[] {
  const directory = path.join(projectPath(project, project.platform.log.path), 'pipelines');
  mkdirSync(directory, { recursive: true });
  const locks: PidLock[] = [];
  try {
    for (const name of names)
      locks.push(
        takePidLock(
          path.join(directory, `${name}.lock`),
          (pid) =>
            new TributaryError(
              'PIPELINE_RUNNING',
              `pipeline ${name} already runs in process ${pid ?? '(unknown)'} on this machine`,
              {
                context: { pipeline: name, pid },
                hint: `stop that process (tributary up or tributary run ${name}) first: a second one running the pipeline would fail its commits against the first's and stop it`,
              },
            ),
          (pid) =>
            logger.warn(
              { pipeline: name, pid },
              `pipeline ${name}: taking over the lock of process ${pid}, which is gone`,
            ),
        ),
      );
  } catch (error) {
    for (const lock of locks) lock.release();
    throw error;
  }
  return locks;
}
