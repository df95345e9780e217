/**
 * `tributary config check | print | schema`: the configuration checked without connecting to anything, the
 * configuration as Tributary sees it, and its JSON Schema.
 */
import path from 'node:path';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { pipelineSchema, sourceSchema } from '../../components.ts';
import { configSchemas } from '../../core/config/json-schema.ts';
import { redactSecrets } from '../../core/config/redact.ts';
import { isBigInteger } from '../../core/json.ts';
import { unresolvedPlaceholders } from '../../core/project.ts';
import { isTributaryError, TributaryError } from '../../errors.ts';
import { loadModels } from '../../query/models/project.ts';
import type { CliContext } from '../context.ts';

export function registerConfig(program: Command, context: () => CliContext): void {
  const config = program
    .command('config')
    .description('Check the configuration, show it rendered, or print its JSON Schema.');

  config
    .command('check')
    .description(
      'Check every configuration file (tributary.yaml, pipelines, sources, models) without connecting to ' +
        'anything; list every placeholder that cannot be resolved here; exit 2 on any problem.',
    )
    .action(() => {
      const project = context().loadProject(); // tributary.yaml: a mistake in it stops here, as everywhere
      const problems: TributaryError[] = unresolvedPlaceholders(project);
      // Each as the commands that use it read it (the first unresolved placeholder of pipelines/ and
      // sources/ stops that, and is listed already).
      const counts: string[] = [];
      for (const [what, read] of [
        ['pipeline(s)', () => project.pipelines.size],
        ['source(s)', () => project.sources.size],
        ['model(s)', () => loadModels(project.root).models.size],
      ] as const) {
        try {
          counts.push(`${read()} ${what}`);
        } catch (error) {
          if (!isTributaryError(error)) throw error;
          if (!problems.some((p) => p.message === error.message)) problems.push(error);
        }
      }
      if (problems.length > 0) {
        for (const problem of problems)
          console.log(problem.hint ? `${problem.message} → ${problem.hint}` : problem.message);
        throw new TributaryError(
          'CONFIG_CHECK_FAILED',
          `${problems.length} configuration problem${problems.length > 1 ? 's' : ''}`,
          {
            hint: 'fix what is listed above; a placeholder needs its variable (or secret file) where the command runs',
          },
        );
      }
      console.log(`Configuration ok: tributary.yaml, ${counts.join(', ')}.`);
    });

  config
    .command('print')
    .description(
      'Print the configuration with placeholders substituted, defaults filled in and secrets redacted; ' +
        'a value of tributary.yaml whose placeholder cannot be resolved here shows as «unresolved».',
    )
    .option('--json', 'print JSON instead of YAML')
    .action((options: { json?: boolean }) => {
      const project = context().loadProject();
      const rendered = {
        root: project.root,
        platform: redactSecrets(project.platform, project.platformSecretPaths),
        pipelines: Object.fromEntries(
          [...project.pipelines.values()].map((p) => [p.name, redactSecrets(p.config, p.secretPaths)]),
        ),
        sources: Object.fromEntries(
          [...project.sources.values()].map((s) => [s.name, redactSecrets(s.config, s.secretPaths)]),
        ),
      };
      // YAML writes a bigint as its digits (JSON writes a BigInteger so by itself).
      const yaml = () =>
        stringify(rendered, (_key, value: unknown) => (isBigInteger(value) ? BigInt(value.rawJSON) : value));
      console.log(options.json ? JSON.stringify(rendered, null, 2) : yaml().trimEnd());
      // What shows as «unresolved», and why: on stderr, so that the output stays the configuration.
      for (const { errors } of project.platformUnresolved)
        for (const error of errors) console.error(`warning: ${error.toLine()}`);
    });

  config
    .command('schema')
    .description(
      'Print the JSON Schema of tributary.yaml, of pipeline files or of source files, for editor completion.',
    )
    .argument('[file]', 'which file: tributary.yaml, pipelines/*.yaml or sources/*.yaml', 'tributary.yaml')
    .action((file: string) => {
      const schemas = configSchemas(pipelineSchema, sourceSchema);
      const key = file.includes('pipeline')
        ? 'pipelines/*.yaml'
        : file.includes('source')
          ? 'sources/*.yaml'
          : path.basename(file);
      if (!(key in schemas)) {
        throw new TributaryError('USAGE', `no schema for "${file}"`, {
          hint: `choose ${Object.keys(schemas).join(' or ')}`,
        });
      }
      console.log(JSON.stringify(schemas[key as keyof typeof schemas], null, 2));
    });
}
