/**
 * A Tributary project on disk: `tributary.yaml` at its root, one file per pipeline in `pipelines/` and one
 * per source (change data capture) in `sources/`. Relative paths in the configuration are relative to the
 * project root, wherever the command runs from.
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { TributaryError } from '../errors.ts';
import { loadConfigFile, type LoadOptions } from './config/load-file.ts';
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
  readonly platform: PlatformConfig;
  readonly platformSecretPaths: SecretPaths;
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

export interface ProjectLoadOptions extends LoadOptions {
  /** The schema pipeline files are validated with: the registered components' (src/components.ts). */
  readonly pipelineSchema?: z.ZodType;
  /** The schema source files are validated with: the registered sources' (src/components.ts). */
  readonly sourceSchema?: z.ZodType;
}

export function loadProject(start?: string, options: ProjectLoadOptions = {}): Project {
  const root = findProjectRoot(start);
  const platformFile = path.join(root, PLATFORM_FILE);
  const platform = loadConfigFile(platformFile, platformSchema, options);
  // Pipelines and sources are read when first asked for: a command that uses neither (query, tables,
  // models) does not need, say, the CDC source's password in its environment.
  let pipelines: Map<string, Pipeline> | undefined;
  let sources: Map<string, SourceFile> | undefined;
  return {
    root,
    platformFile,
    platform: platform.value,
    platformSecretPaths: platform.secretPaths,
    get pipelines() {
      return (pipelines ??= loadNamedFiles<Pipeline>(
        path.join(root, PIPELINES_DIR),
        'pipeline',
        options.pipelineSchema ?? genericPipelineSchema,
        options,
      ));
    },
    get sources() {
      return (sources ??= loadNamedFiles<SourceFile>(
        path.join(root, SOURCES_DIR),
        'source',
        options.sourceSchema ?? genericSourceSchema,
        options,
      ));
    },
  };
}

/** `pipelines/*.yaml` or `sources/*.yaml`: one pipeline or source per file, named by the file. */
function loadNamedFiles<Loaded extends Pipeline | SourceFile>(
  dir: string,
  kind: 'pipeline' | 'source',
  schema: z.ZodType,
  options: ProjectLoadOptions,
): Map<string, Loaded> {
  const loaded = new Map<string, Loaded>();
  const files = existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => /\.ya?ml$/.test(f))
        .sort()
    : [];
  for (const fileName of files) {
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

/** A path from the configuration, resolved against the project root. */
export function projectPath(project: Pick<Project, 'root'>, configured: string): string {
  return path.resolve(project.root, configured);
}
