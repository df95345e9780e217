/** `tributary init [dir]`: scaffolds a project that runs as it is. */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { TributaryError } from '../../errors.ts';
import { renderCommentedYaml, toJsonSchema } from '../../core/config/json-schema.ts';
import { PIPELINES_DIR } from '../../core/config/pipeline.ts';
import { PLATFORM_FILE, platformSchema } from '../../core/config/platform.ts';

export function registerInit(program: Command): void {
  program
    .command('init')
    .description(
      'Create a project: tributary.yaml, pipelines/, schemas/ and models/, with comments on every key.',
    )
    .argument('[dir]', 'directory to create the project in', '.')
    .option('--force', 'overwrite an existing tributary.yaml')
    .action((dir: string, options: { force?: boolean }) => {
      const root = path.resolve(dir);
      const created = initProject(root, options.force ?? false);
      console.log(`Created a Tributary project in ${root}:`);
      for (const file of created) console.log(`  ${file}`);
      const shown = path.relative(process.cwd(), root);
      console.log(`\nNext: cd ${shown.startsWith('..') ? root : shown || '.'} && tributary doctor`);
    });
}

/** The first thing most projects add: a stream, as an example under the commented outline of `streams`. */
const STREAM_EXAMPLE = `
# For example (then: tributary keys create --stream pageviews --name web):
# streams:
#   pageviews:
#     schema: schemas/pageview.json # a JSON Schema you write there: every event must match it
#     on_invalid: dlq # invalid events go to events.pageviews.dlq, the valid ones are accepted
#     cors_origins: ["https://www.example.com"] # browsers of this site may send
`;

const PIPELINE_EXAMPLE = `For example, \`pipelines/bronze_pageviews.yaml\`:

\`\`\`yaml
source: { type: topic, topic: events.pageviews } # what the stream pageviews writes
sinks:
  - { type: iceberg, table: bronze.pageviews }
\`\`\`
`;

export function initProject(root: string, force: boolean): string[] {
  const platformFile = path.join(root, PLATFORM_FILE);
  if (existsSync(platformFile) && !force) {
    throw new TributaryError('INIT_NOT_EMPTY', `${platformFile} already exists`, {
      hint: 'choose another directory, or pass --force to overwrite tributary.yaml',
    });
  }
  const header = [
    '# Tributary platform configuration. Every key is optional: the values below are the defaults, which run',
    '# on one machine with no services. Values may use ${VAR}, ${VAR:-default} and ${file:/path/to/secret}.',
    '# JSON Schema for editor completion: `tributary config schema`.',
    '',
  ].join('\n');
  const defaults = platformSchema.parse({}) as Record<string, unknown>;
  const files: Record<string, string> = {
    [PLATFORM_FILE]:
      header +
      renderCommentedYaml(toJsonSchema(platformSchema), { ...defaults, project: path.basename(root) }) +
      STREAM_EXAMPLE,
    [path.join(PIPELINES_DIR, 'README.md')]:
      '# Pipelines\n\nOne YAML file per pipeline: a source, ordered transforms and sinks. The file name is the pipeline name.\n' +
      'The keys: `tributary config schema pipelines/*.yaml`, docs/pipelines.md and docs/reference/configuration.md.\n\n' +
      PIPELINE_EXAMPLE,
    [path.join('schemas', 'README.md')]:
      '# Schemas\n\nJSON Schemas that `validate` transforms and streams refer to.\n',
    [path.join('models', 'README.md')]:
      '# Models\n\nSQL models that build gold tables from bronze and silver tables.\n',
    '.gitignore': '.tributary/\n',
  };
  const written: string[] = [];
  for (const [relative, content] of Object.entries(files)) {
    const file = path.join(root, relative);
    if (existsSync(file) && relative !== PLATFORM_FILE) continue;
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, content);
    written.push(relative);
  }
  return written;
}
