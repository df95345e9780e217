/**
 * Readiness gating: a model with `readiness:` runs only once each of its inputs has committed within
 * `max_age`; until then it waits (looking again every `poll`), and fails with INPUTS_NOT_FRESH after
 * `timeout`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Catalog } from '../../catalog/catalog.ts';
import { parseTableIdentifier, tableIdentifierToString } from '../../catalog/identifier.ts';
import { isTributaryError, TributaryError } from '../../errors.ts';
import { formatMs } from './config.ts';
import type { Model, ModelProject } from './project.ts';

export interface Staleness {
  readonly table: string;
  /** Age of its last commit in ms; undefined when it has none (or does not exist). */
  readonly ageMs: number | undefined;
}

/** The inputs of the model that are not fresh now (empty: ready). */
export async function staleInputs(
  catalog: Catalog,
  project: ModelProject,
  model: Model,
  now: number = Date.now(),
): Promise<Staleness[]> {
  const readiness = model.config.readiness;
  if (!readiness) return [];
  const tables = (readiness.tables ?? model.refs)
    .map((t) => tableIdentifierToString(parseTableIdentifier(t)))
    .filter((t) => project.models.get(t)?.config.materialized !== 'view');
  const stale: Staleness[] = [];
  for (const name of tables) {
    let committed: number | undefined;
    try {
      committed = (await catalog.loadTable(parseTableIdentifier(name))).currentSnapshot?.['timestamp-ms'];
    } catch (error) {
      if (!isTributaryError(error, 'TABLE_NOT_FOUND') && !isTributaryError(error, 'NAMESPACE_NOT_FOUND'))
        throw error;
    }
    const age = committed === undefined ? undefined : now - committed;
    if (age === undefined || age > readiness.max_age) stale.push({ table: name, ageMs: age });
  }
  return stale;
}

/** Waits until the model's inputs are fresh; INPUTS_NOT_FRESH after its readiness timeout. */
export async function awaitReadiness(
  catalog: Catalog,
  project: ModelProject,
  model: Model,
  options: { signal?: AbortSignal; onWait?: (stale: readonly Staleness[]) => void } = {},
): Promise<void> {
  const readiness = model.config.readiness;
  if (!readiness) return;
  const deadline = Date.now() + readiness.timeout;
  for (;;) {
    const stale = await staleInputs(catalog, project, model);
    if (stale.length === 0) return;
    if (Date.now() + readiness.poll > deadline || options.signal?.aborted) {
      const list = stale
        .map(
          (s) =>
            `${s.table} (${s.ageMs === undefined ? 'no commit' : `last commit ${formatMs(Math.round(s.ageMs / 1000) * 1000)} ago`})`,
        )
        .join(', ');
      throw new TributaryError(
        'INPUTS_NOT_FRESH',
        `model ${model.name}: inputs not fresh within ${formatMs(readiness.timeout)}: ${list}`,
        {
          hint: `the inputs must have committed within ${formatMs(readiness.max_age)}; check the pipelines that feed them`,
          retryable: true,
          context: { model: model.name, stale },
        },
      );
    }
    options.onWait?.(stale);
    await sleep(readiness.poll, undefined, options.signal ? { signal: options.signal } : undefined).catch(
      () => undefined,
    );
  }
}
