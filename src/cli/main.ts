/**
 * Entry point of the `tributary` command. Exit codes: 0 ok, 1 the work failed, 2 usage or configuration
 * error. An error prints as one line saying what to do next; --verbose adds the stack trace.
 */
import { CommanderError } from 'commander';
import { isTributaryError } from '../errors.ts';
import { buildProgram } from './program.ts';
import { color } from './output.ts';

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  program.commands.forEach(function override(command) {
    command.exitOverride();
    command.commands.forEach(override);
  });
  const verbose = argv.includes('--verbose') || argv.includes('-v');
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has already printed its message (or the help, or the version).
      return error.exitCode === 0 ||
        error.code === 'commander.helpDisplayed' ||
        error.code === 'commander.version'
        ? 0
        : 2;
    }
    if (isTributaryError(error)) {
      console.error(`${color('red', 'error')} [${error.code}] ${error.toLine()}`);
      if (verbose) console.error(error.stack, error.cause ?? '');
      return error.exitCode;
    }
    console.error(`${color('red', 'error')} ${error instanceof Error ? error.message : String(error)}`);
    console.error(
      verbose
        ? error
        : '(this looks like a bug in Tributary: run again with --verbose and report the output)',
    );
    return 1;
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
