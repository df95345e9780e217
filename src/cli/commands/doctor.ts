/** `tributary doctor`: preflight checks of every configured component, as a table with fixes. */
import type { Command } from 'commander';
import { runChecks, type CheckStatus } from '../../core/doctor.ts';
import { allChecks } from '../checks.ts';
import { TributaryError } from '../../errors.ts';
import type { CliContext } from '../context.ts';
import { color, formatTable } from '../output.ts';

const marks: Record<CheckStatus, string> = {
  pass: color('green', 'pass'),
  warn: color('yellow', 'warn'),
  fail: color('red', 'fail'),
};

export function registerDoctor(program: Command, context: () => CliContext): void {
  program
    .command('doctor')
    .description('Check the configuration and every configured component; print pass/warn/fail with fixes.')
    .option('--json', 'print the results as JSON')
    .action(async (options: { json?: boolean }) => {
      const project = context().loadProject();
      const outcomes = await runChecks(project, allChecks(project));
      if (options.json) {
        console.log(JSON.stringify(outcomes, null, 2));
      } else {
        // A failure several checks meet (the catalog down fails every check that needs it) is told once.
        const told = new Map<string, string>();
        const rows = outcomes.map(({ component, name, result }) => {
          const text = result.fix ? `${result.detail} → ${result.fix}` : result.detail;
          const first = result.status === 'pass' ? undefined : told.get(text);
          if (result.status !== 'pass' && first === undefined) told.set(text, `${component}: ${name}`);
          return [marks[result.status], component, name, first ? `the same as ${first}, above` : text];
        });
        console.log(formatTable(['status', 'component', 'check', 'detail'], rows));
      }
      const failed = outcomes.filter((o) => o.result.status === 'fail').length;
      const warned = outcomes.filter((o) => o.result.status === 'warn').length;
      if (failed > 0) {
        throw new TributaryError('DOCTOR_FAILED', `${failed} check${failed > 1 ? 's' : ''} failed`, {
          hint: 'fix what the table says, then run `tributary doctor` again',
        });
      }
      if (!options.json)
        console.log(`\n${outcomes.length} checks passed${warned ? `, ${warned} with warnings` : ''}.`);
    });
}
