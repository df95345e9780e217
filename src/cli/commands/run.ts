/**
 * `tributary run <pipeline>` runs one pipeline (a worker); `tributary up` runs every pipeline of the
 * project. SIGTERM and SIGINT stop intake, finish and commit the batch in flight, and exit 0 within the
 * pipeline's shutdown timeout.
 */
import type { Command } from 'commander';
import { buildPipeline, openProjectLog } from '../../components.ts';
import { createLogger } from '../../core/logger.ts';
import { createPipelineMetrics } from '../../core/metrics.ts';
import type { PipelineRunner } from '../../core/pipeline/runner.ts';
import type { Project } from '../../core/project.ts';
import { TributaryError } from '../../errors.ts';
import type { CliContext } from '../context.ts';

export function registerRun(program: Command, context: () => CliContext): void {
  program
    .command('run')
    .description('Run one pipeline until stopped (SIGTERM/SIGINT finish and commit the batch in flight).')
    .argument('<pipeline>', 'the pipeline name (its file in pipelines/)')
    .option('--once', 'stop when the source topic has no more records')
    .action(async (name: string, options: { once?: boolean }) => {
      const project = context().loadProject();
      await runPipelines(project, [name], options.once ?? false, context().verbose);
    });

  program
    .command('up')
    .description('Run every pipeline of the project until stopped.')
    .option('--once', 'stop each pipeline when its source topic has no more records')
    .action(async (options: { once?: boolean }) => {
      const project = context().loadProject();
      const names = [...project.pipelines.keys()];
      if (names.length === 0) {
        throw new TributaryError('USAGE', `the project in ${project.root} has no pipelines`, {
          hint: 'add a pipeline file to pipelines/',
        });
      }
      await runPipelines(project, names, options.once ?? false, context().verbose);
    });
}

export async function runPipelines(
  project: Project,
  names: readonly string[],
  once: boolean,
  verbose: boolean,
): Promise<void> {
  const logger = createLogger({
    level: verbose ? 'debug' : project.platform.logging.level,
    format: project.platform.logging.format,
  });
  const log = await openProjectLog(project);
  const metrics = createPipelineMetrics();
  const built: Array<{ runner: PipelineRunner; close: () => Promise<void>; timeout: number }> = [];
  try {
    for (const name of names) {
      const pipeline = await buildPipeline(project, name, { log, logger, metrics, exitWhenIdle: once });
      built.push({ ...pipeline, timeout: project.pipelines.get(name)!.config.shutdown_timeout });
    }
    const stop = (signal: string) => {
      logger.info({ signal }, `${signal} received: finishing the batches in flight`);
      for (const { runner } of built) runner.stop();
      const timeout = Math.max(...built.map((b) => b.timeout));
      setTimeout(() => {
        logger.error(`pipelines did not stop within ${timeout} ms; exiting`);
        process.exit(1);
      }, timeout).unref();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    const results = await Promise.allSettled(built.map(({ runner }) => runner.run()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      for (const { runner } of built) runner.stop();
      throw failed.reason;
    }
  } finally {
    for (const { close } of built) await close();
    await log.close();
  }
}
