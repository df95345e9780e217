/**
 * `tributary serve`: the HTTP server alone — event ingest, Segment-compatible endpoints, health, metrics —
 * for deployments that run pipelines as separate workers (`tributary run`). `tributary up` runs it
 * together with the pipelines.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.ts';
import { port } from '../options.ts';
import { runPipelines } from './run.ts';

export function registerServe(program: Command, context: () => CliContext): void {
  program
    .command('serve')
    .description(
      'Run the HTTP server alone (event ingest, health, metrics) until stopped; pipelines run with `tributary run`.',
    )
    .option('--host <address>', 'listen on this address (default: server.host)')
    .option('--port <port>', 'listen on this port; 0 picks a free one (default: server.port)', port)
    .action(async (options: { host?: string; port?: number }) => {
      const project = context().loadProject();
      await runPipelines(project, [], false, context().verbose, {
        serve: true,
        host: options.host,
        port: options.port,
      });
    });
}
