/** `tributary config print | schema`: the configuration as Tributary sees it, and its JSON Schema. */
import path from 'node:path';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { pipelineSchema, sourceSchema } from '../../components.ts';
import { configSchemas } from '../../core/config/json-schema.ts';
import { redactSecrets } from '../../core/config/redact.ts';
import { isBigInteger } from '../../core/json.ts';
import { TributaryError } from '../../errors.ts';
import type { CliContext } from '../context.ts';

export function registerConfig(program: Command, context: () => CliContext): void {
  const config = program.command('config').description('Show the rendered configuration or its JSON Schema.');

  config
    .command('print')
    .description(
      'Print the configuration with placeholders substituted, defaults filled in and secrets redacted.',
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
