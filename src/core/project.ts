/**
 * A Tributary project on disk: `tributary.yaml` at its root, one file per pipeline in `pipelines/` and one
 * per source (change data capture) in `sources/`. Relative paths in the configuration are relative to the
 * project root, wherever the command runs from.
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { TributaryError } from '../errors.ts';
import {
  findUnresolvedPlaceholders,
  loadConfigFile,
  type LoadOptions,
  type UnresolvedValue,
} from './config/load-file.ts';
import { z } from 'zod';
import {
  genericPipelineSchema,
  PIPELINE_NAME,
  PIPELINES_DIR,
  type PipelineConfig,
} from './config/pipeline.ts';
import { PLATFORM_FILE, platformSchema, type PlatformConfig } from './config/platform.ts';
import type { SecretPaths } from './config/placeholders.ts';

/** Where source files live: `sources/<name>.yaml`, one source each. */
export const SOURCES_DIR = 'sources';

/** A source file before its type's schema is applied (the composition root injects the real one). */
export const genericSourceSchema = z.looseObject({ type: z.string() });

export interface SourceFile {
  readonly name: string;
  readonly file: string;
  readonly config: { readonly type: string } & Record<string, unknown>;
  readonly secretPaths: SecretPaths;
}

export interface Pipeline {
  readonly name: string;
  readonly file: string;
  readonly config: PipelineConfig;
  readonly secretPaths: SecretPaths;
}

export interface Project {
  readonly root: string;
  readonly platformFile: string;
  /**
   * tributary.yaml. A value that depends on a variable not set here (or a secret file not readable) throws
   * CONFIG_UNRESOLVED_VARIABLE (CONFIG_SECRET_FILE) when read, naming file, line and variable: a command
   * stops when it reads what it cannot have, not before (see config/load-file.ts).
   */
  readonly platform: PlatformConfig;
  readonly platformSecretPaths: SecretPaths;
  /** Where `platform` throws when read, and why (empty when every placeholder resolved). */
  readonly platformUnresolved: readonly UnresolvedValue[];
  readonly pipelines: ReadonlyMap<string, Pipeline>;
  /** The sources of `sources/*.yaml` (change data capture into log topics), by name. */
  readonly sources: ReadonlyMap<string, SourceFile>;
}

/** The nearest directory at or above `start` that holds a tributary.yaml. */
export function findProjectRoot(start: string = process.cwd()): string {
  let dir = path.resolve(start);
  for (;;) {
    if (existsSync(path.join(dir, PLATFORM_FILE))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new TributaryError(
        'CONFIG_NOT_FOUND',
        `no ${PLATFORM_FILE} in ${path.resolve(start)} or any parent directory`,
        {
          hint: 'run `tributary init` to create a project, or pass --project <dir>',
        },
      );
    }
    dir = parent;
  }
}

export interface ProjectLoadOptions extends Pick<LoadOptions, 'env'> {
  /** The schema pipeline files are validated with: the registered components' (src/components.ts). */
  readonly pipelineSchema?: z.ZodType;
  /** The schema source files are validated with: the registered sources' (src/components.ts). */
  readonly sourceSchema?: z.ZodType;
}

export function loadProject(start?: string, options: ProjectLoadOptions = {}): Project {
  const root = findProjectRoot(start);
  const platformFile = path.join(root, PLATFORM_FILE);
  const env = options.env;
  // tributary.yaml is read at once — a mistake in it stops every command — but a value of it that needs a
  // variable not set here stops only the commands that read it: the server's TLS key need not be on a
  // developer's machine for `tributary query`. Pipelines and sources are read when first asked for, whole:
  // a command that uses neither (query, tables, models) does not need, say, the CDC source's password.
  const platform = loadConfigFile(platformFile, platformSchema, { env, unresolved: 'defer' });
  let pipelines: Map<string, Pipeline> | undefined;
  let sources: Map<string, SourceFile> | undefined;
  return {
    root,
    platformFile,
    platform: platform.value,
    platformSecretPaths: platform.secretPaths,
    platformUnresolved: platform.unresolved,
    get pipelines() {
      return (pipelines ??= loadNamedFiles<Pipeline>(
        path.join(root, PIPELINES_DIR),
        'pipeline',
        options.pipelineSchema ?? genericPipelineSchema,
        { env },
      ));
    },
    get sources() {
      return (sources ??= loadNamedFiles<SourceFile>(
        path.join(root, SOURCES_DIR),
        'source',
        options.sourceSchema ?? genericSourceSchema,
        { env },
      ));
    },
  };
}

/** `pipelines/*.yaml` or `sources/*.yaml`: one pipeline or source per file, named by the file. */
function loadNamedFiles<Loaded extends Pipeline | SourceFile>(
  dir: string,
  kind: 'pipeline' | 'source',
  schema: z.ZodType,
  options: LoadOptions,
): Map<string, Loaded> {
  const loaded = new Map<string, Loaded>();
  for (const fileName of yamlFiles(dir)) {
    const name = fileName.replace(/\.ya?ml$/, '');
    const file = path.join(dir, fileName);
    if (!PIPELINE_NAME.test(name)) {
      throw new TributaryError(
        'CONFIG_INVALID',
        `${path.relative(process.cwd(), file)}: "${name}" is not a valid ${kind} name`,
        { hint: 'rename the file: lower-case letters, digits, _ and -, starting with a letter' },
      );
    }
    if (loaded.has(name)) {
      throw new TributaryError('CONFIG_DUPLICATE', `two files define ${kind} "${name}" (.yaml and .yml)`, {
        hint: 'keep one of them',
      });
    }
    const { value, secretPaths } = loadConfigFile(file, schema, options);
    // The schema is the registered components' (or the generic one): it gave the config its shape.
    loaded.set(name, { name, file, config: value, secretPaths } as Loaded);
  }
  return loaded;
}

function yamlFiles(dir: string): string[] {
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => /\.ya?ml$/.test(f))
        .sort()
    : [];
}

/**
 * Every placeholder of the project's configuration files (tributary.yaml, pipelines/, sources/) that cannot
 * be resolved in this environment, each an error naming file, line and variable: what `config check` and
 * `doctor` report, all at once, where other commands stop at the first they read.
 */
export function unresolvedPlaceholders(
  project: Pick<Project, 'root' | 'platformUnresolved'>,
  options: Pick<LoadOptions, 'env'> = {},
): TributaryError[] {
  const files = [PIPELINES_DIR, SOURCES_DIR].flatMap((dir) =>
    yamlFiles(path.join(project.root, dir)).map((f) => path.join(project.root, dir, f)),
  );
  return [
    ...project.platformUnresolved.flatMap((value) => value.errors),
    ...files.flatMap((file) => findUnresolvedPlaceholders(file, options)),
  ];
}

/**
 * For a process that reads all of tributary.yaml and runs for long (the server): throws now, before
 * anything starts, when any of its values is unresolved, rather than when a request first reads it.
 */
export function requireResolvedPlatform(project: Pick<Project, 'platformUnresolved'>): void {
  const errors = project.platformUnresolved.flatMap((value) => value.errors);
  const first = errors[0];
  if (!first) return;
  throw errors.length === 1
    ? first
    : new TributaryError(first.code, `${first.message} (and ${errors.length - 1} more unresolved)`, {
        context: first.context,
        hint: `${first.hint ?? ''}; \`tributary config check\` lists them all`,
      });
}

/** A path from the configuration, resolved against the project root. */
export function projectPath(project: Pick<Project, 'root'>, configured: string): string {
  return path.resolve(project.root, configured);
}
