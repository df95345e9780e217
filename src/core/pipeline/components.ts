/**
 * Components declare themselves here: a type name, one zod schema (from which validation, defaults, the
 * JSON Schema and the reference docs all come) and a factory. The pipeline file schema is assembled from
 * the registered components, so core code never imports a component.
 */
import { z } from 'zod';
import { didYouMean } from '../../did-you-mean.ts';
import { TributaryError } from '../../errors.ts';
import type { CheckResult } from '../doctor.ts';
import type { Logger } from '../logger.ts';
import type { Log } from '../../log/log.ts';
import type { Sink, Transform } from './model.ts';

/** What a component's factory gets besides its own configuration. */
export interface ComponentContext {
  readonly pipeline: string;
  /** The log topic the pipeline reads (sinks that keep positions in consumer-group offsets need it). */
  readonly sourceTopic: string;
  /** The project root: relative paths in component configs are relative to it. */
  readonly projectRoot: string;
  readonly log: Log;
  readonly logger: Logger;
  /** Shared resources (the catalog, a DuckDB engine) created once and closed with the pipeline. */
  readonly resources: PipelineResources;
}

/**
 * Shared resources (the catalog, a DuckDB engine) that the composition root provides by name and
 * components use; each is created on first use, once, and closed with the pipeline.
 */
export interface PipelineResources {
  provide<T>(name: string, create: () => Promise<T>, close?: (value: T) => Promise<void> | void): void;
  get<T>(name: string): Promise<T>;
  closeAll(): Promise<void>;
}

export interface ComponentDefinition<
  Kind extends 'transform' | 'sink',
  Schema extends z.ZodObject = z.ZodObject,
> {
  readonly kind: Kind;
  readonly type: string;
  /** A strict object schema whose `type` field is the literal `type`. */
  readonly schema: Schema;
  create(
    config: z.output<Schema>,
    context: ComponentContext,
  ): Promise<Kind extends 'sink' ? Sink : Transform>;
  /** Preflight checks for `tributary doctor`: reachable, permitted, compatible. Must not change anything. */
  check?(config: z.output<Schema>, context: ComponentContext): Promise<CheckResult[]>;
}

export type TransformDefinition = ComponentDefinition<'transform'>;
export type SinkDefinition = ComponentDefinition<'sink'>;

export function createResources(): PipelineResources {
  type Entry = {
    create: () => Promise<unknown>;
    close?: (value: never) => Promise<void> | void;
    value?: Promise<unknown>;
  };
  const entries = new Map<string, Entry>();
  return {
    provide(name, create, close) {
      entries.set(name, { create, close: close });
    },
    async get<T>(name: string): Promise<T> {
      const entry = entries.get(name);
      if (!entry) throw new TributaryError('INTERNAL', `no shared resource named ${name} was provided`);
      entry.value ??= entry.create();
      return entry.value as Promise<T>;
    },
    async closeAll() {
      for (const entry of [...entries.values()].reverse()) {
        if (!entry.value) continue;
        const value = await entry.value.catch(() => undefined);
        entry.value = undefined;
        if (value !== undefined) await entry.close?.(value as never);
      }
    },
  };
}

/** A discriminated union of the components' schemas (or, for an empty list, any object with a type). */
export function componentUnion(definitions: readonly ComponentDefinition<'transform' | 'sink'>[]): z.ZodType {
  const schemas = definitions.map((d) => d.schema);
  if (schemas.length === 0) return z.looseObject({ type: z.string() });
  if (schemas.length === 1) return schemas[0]!;
  const types = definitions.map((d) => d.type);
  return z.discriminatedUnion('type', schemas as unknown as [z.ZodObject, z.ZodObject, ...z.ZodObject[]], {
    // A type that is none of them: name them, and the likely one (zod's own message says neither).
    error: (issue) => {
      if (issue.code !== 'invalid_union' || issue.errors.length > 0) return undefined;
      const given = (issue.input as { type?: unknown } | undefined)?.type;
      const suggestion = typeof given === 'string' ? didYouMean(given, types) : undefined;
      return `must be one of ${types.map((t) => `"${t}"`).join(', ')}${suggestion ? ` — did you mean "${suggestion}"?` : ''}`;
    },
  });
}
