/**
 * The `tributary` command tree. Commands are thin: they parse arguments, call into the modules and print.
 * `buildProgram` is also read by scripts/docs.ts to generate docs/reference/cli.md.
 */
import { createRequire } from 'node:module';
import { Command } from 'commander';
import { registerCatalog } from './commands/catalog.ts';
import { registerCdc } from './commands/cdc.ts';
import { registerConfig } from './commands/config.ts';
import { registerDlq } from './commands/dlq.ts';
import { registerDoctor } from './commands/doctor.ts';
import { registerInit } from './commands/init.ts';
import { registerModels } from './commands/models.ts';
import { registerPrivacy } from './commands/privacy.ts';
import { registerKeys } from './commands/keys.ts';
import { registerQuery } from './commands/query.ts';
import { registerRun } from './commands/run.ts';
import { registerRuns } from './commands/runs.ts';
import { registerServe } from './commands/serve.ts';
import { registerTables } from './commands/tables.ts';
import { registerTopics } from './commands/topics.ts';
import { registerValidate } from './commands/validate.ts';
import { createContext, type CliContext } from './context.ts';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

export function buildProgram(): Command {
  const program = new Command('tributary')
    .description('Tributary: events and database changes into Apache Iceberg tables, exactly once.')
    .version(version, '-V, --version', 'print the version')
    .option(
      '-p, --project <dir>',
      'project directory (default: the nearest tributary.yaml above the current directory)',
    )
    .option('-v, --verbose', 'print stack traces and debug logs')
    .showHelpAfterError('(run with --help for usage)')
    .showSuggestionAfterError(true);

  let context: CliContext | undefined;
  const getContext = (): CliContext =>
    (context ??= createContext(program.opts<{ project?: string; verbose?: boolean }>()));

  registerInit(program);
  registerDoctor(program, getContext);
  registerConfig(program, getContext);
  registerCatalog(program, getContext);
  registerTables(program, getContext);
  registerQuery(program, getContext);
  registerRun(program, getContext);
  registerServe(program, getContext);
  registerKeys(program, getContext);
  registerTopics(program, getContext);
  registerDlq(program, getContext);
  registerModels(program, getContext);
  registerValidate(program, getContext);
  registerRuns(program, getContext);
  registerPrivacy(program, getContext);
  registerCdc(program, getContext);
  return program;
}
