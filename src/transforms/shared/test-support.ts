/** Builders shared by the transforms' tests: records, a component context, config parsing. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { z } from 'zod';
import type { ComponentContext, ComponentDefinition } from '../../core/pipeline/components.ts';
import { createResources } from '../../core/pipeline/components.ts';
import type { PipelineRecord, Transform } from '../../core/pipeline/model.ts';
import type { Log } from '../../log/log.ts';

export function record(
  value: Record<string, unknown>,
  overrides: Partial<PipelineRecord> = {},
): PipelineRecord {
  return {
    value,
    key: null,
    partition: 0,
    offset: 0,
    timestamp: 1_700_000_000_000,
    headers: {},
    ...overrides,
  };
}

/** Records with consecutive offsets in partition 0, one per value. */
export function records(values: readonly Record<string, unknown>[], partition = 0): PipelineRecord[] {
  return values.map((value, offset) => record(value, { partition, offset }));
}

export function context(projectRoot = process.cwd()): ComponentContext {
  return {
    pipeline: 'test',
    sourceTopic: 'events',
    projectRoot,
    log: {} as Log,
    logger: pino({ level: 'silent' }),
    resources: createResources(),
  };
}

/** Parses `config` with the definition's schema (as the pipeline loader does) and creates the transform. */
export async function create<Schema extends z.ZodObject>(
  definition: ComponentDefinition<'transform', Schema>,
  config: Record<string, unknown>,
  projectRoot?: string,
): Promise<Transform> {
  const parsed = definition.schema.parse({ type: definition.type, ...config });
  return definition.create(parsed, context(projectRoot));
}

/** The issues a config fails with, as "path: message" lines (empty when it is valid). */
export function configIssues(definition: ComponentDefinition<'transform'>, config: Record<string, unknown>) {
  const result = definition.schema.safeParse({ type: definition.type, ...config });
  return result.success ? [] : result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

/** A temporary directory holding `files` (name → text), removed with `dispose()`. */
export function tempProject(files: Record<string, string> = {}): { root: string; dispose(): void } {
  const root = mkdtempSync(path.join(tmpdir(), 'tributary-transform-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(root, name), text);
  return { root, dispose: () => rmSync(root, { recursive: true, force: true }) };
}
