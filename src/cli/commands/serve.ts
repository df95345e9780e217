/**
 * `tributary serve`: the HTTP server alone — event ingest, Segment-compatible endpoints, health, metrics —
 * for deployments that run pipelines as separate workers (`tributary run`). `tributary up` runs it
 * together with the pipelines.
 */
import type { Command } from 'commander';
import { TributaryError } from '../../errors.ts';
import type { CliContext } from '../context.ts';
import { runPipelines } from './run.ts';

export function registerServe(program: Command, context: () => CliContext): void {
  program
    .command('serve')
    .description(
      'Run the HTTP server alone (event ingest, health, metrics) until stopped; pipelines run with `tributary run`.',
    )
    .option('--host <address>', 'listen on this address (default: server.host)')
    .option('--port <port>', 'listen on this port; 0 picks a free one (default: server.port)')
    .action(async (options: { host?: string; port?: string }) => {
      const project = context().loadProject();
      let port: number | undefined;
      if (options.port !== undefined) {
        port = Number(options.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535) {
          throw new TributaryError('USAGE', `--port ${options.port} is not a port number`, {
            hint: 'use a whole number from 0 to 65535',
          });
        }
      }
      await runPipelines(project, [], false, context().verbose, { serve: true, host: options.host, port });
    });
}
